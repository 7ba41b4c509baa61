//! The verdict scan a safe load runs (`brinery::scan::scan_verdict` with all built-in
//! profiles), on one file in a loop, for callgrind or `perf`:
//! `cargo run --release -p brinery-bench --example scan_profile -- FILE [N]`.
//!
//! The first scan builds the profiles' tables and fills the policy's verdict cache; the other
//! `N - 1` run in [`steady`], which callgrind can count alone:
//! `valgrind --tool=callgrind --toggle-collect='scan_profile::steady' scan_profile FILE 201`
//! gives 200 steady-state scans.

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
    if n > 1 {
        report = steady(&data, &policy, &limits, n - 1);
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

/// `n` verdict scans of `data` (after the first, which set up the policy): the steady state.
#[inline(never)]
fn steady(
    data: &[u8],
    policy: &brinery::scan::Policy,
    limits: &brinery::Limits,
    n: usize,
) -> brinery::scan::Report {
    let mut report = brinery::scan::scan_verdict(black_box(data), policy, limits);
    for _ in 1..n {
        report = brinery::scan::scan_verdict(black_box(data), policy, limits);
    }
    report
}
