//! The verdict scan a safe load runs (`brinery::scan::scan_verdict` with all built-in
//! profiles), on one file in a loop, for callgrind or `perf`:
//! `cargo run --release -p brinery-bench --example scan_profile -- FILE [N]`.
//!
//! The first scan builds the profiles' tables and fills the policy's verdict cache; the cost of
//! one steady-state scan is the difference between a run of `N + 1` scans and a run of one,
//! divided by `N` (e.g. callgrind's instruction totals of `FILE 201` and `FILE 1`).

use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: scan_profile FILE [N]");
        std::process::exit(2);
    };
    let data = std::fs::read(path).unwrap_or_else(|e| {
        eprintln!("error: {path}: {e}");
        std::process::exit(2);
    });
    let n: usize = args.get(2).map_or(1000, |s| s.parse().expect("N"));
    let policy = brinery::scan::Policy::builder().all_profiles().build();
    let limits = brinery::Limits::default();
    let mut report = brinery::scan::scan_verdict(&data, &policy, &limits);
    let start = std::time::Instant::now();
    for _ in 1..n {
        report = brinery::scan::scan_verdict(black_box(&data), &policy, &limits);
    }
    let per = start.elapsed().as_secs_f64() / (n.max(2) - 1) as f64;
    eprintln!(
        "{path}: {} opcodes, {} findings, {:.2} µs per scan ({:.0} M opcodes/s)",
        report.opcodes,
        report.findings.len(),
        per * 1e6,
        report.opcodes as f64 / per / 1e6
    );
}
