//! One benchmark case in a loop, for `perf stat` / `perf record`:
//! `cargo run --release -p brinery-bench --example profile -- read|write brinery|serde INPUT [N]`.
//!
//! Or an interleaved comparison of every case, less sensitive to other jobs on a shared machine
//! than criterion's back-to-back runs: `... --example profile -- cmp [ROUNDS] [N]` runs brinery
//! and serde-pickle alternately, ROUNDS times N iterations each, and prints the best round of
//! each side as wall time and as CPU time of this thread (from `/proc/thread-self/schedstat`,
//! which does not count time spent waiting for a core).

use std::hint::black_box;
use std::time::Instant;

const INPUTS: &[&str] = &["records", "floats", "int_columns", "strings", "blob"];

/// CPU time of this thread in nanoseconds, if the kernel reports it.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

struct Case {
    data: Vec<u8>,
    ours: brinery::Pickle,
    theirs: serde_pickle::Value,
}

impl Case {
    fn load(dir: &str, name: &str) -> Case {
        let data = std::fs::read(format!("{dir}/{name}.pkl")).expect("input");
        let ours = brinery::Pickle::from_slice(&data).expect("brinery reads");
        let theirs = serde_pickle::value_from_slice(&data, serde_pickle::DeOptions::new())
            .expect("serde reads");
        Case { data, ours, theirs }
    }

    fn run(&self, op: &str, lib: &str) {
        match (op, lib) {
            ("read", "brinery") => drop(black_box(
                brinery::Pickle::from_slice(black_box(&self.data)).unwrap(),
            )),
            ("read", "serde") => drop(black_box(
                serde_pickle::value_from_slice(
                    black_box(&self.data),
                    serde_pickle::DeOptions::new(),
                )
                .unwrap(),
            )),
            ("write", "brinery") => drop(black_box(black_box(&self.ours).to_vec(3).unwrap())),
            ("write", "serde") => drop(black_box(
                serde_pickle::value_to_vec(
                    black_box(&self.theirs),
                    serde_pickle::SerOptions::new(),
                )
                .unwrap(),
            )),
            _ => panic!("read|write brinery|serde"),
        }
    }

    /// Best (wall, cpu) seconds per iteration over `rounds` rounds of `n` iterations.
    fn time(&self, op: &str, lib: &str, n: usize) -> (f64, f64) {
        let (t, c) = (Instant::now(), thread_cpu_ns());
        for _ in 0..n {
            self.run(op, lib);
        }
        let wall = t.elapsed().as_secs_f64() / n as f64;
        let cpu = match (c, thread_cpu_ns()) {
            (Some(a), Some(b)) => (b - a) as f64 / 1e9 / n as f64,
            _ => wall,
        };
        (wall, cpu)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::env::var("BRINERY_BENCH_INPUTS").unwrap_or("target/bench-inputs".into());
    if args.get(1).map(String::as_str) == Some("cmp") {
        let rounds: usize = args.get(2).map_or(5, |s| s.parse().expect("ROUNDS"));
        let n: usize = args.get(3).map_or(5, |s| s.parse().expect("N"));
        let only = std::env::var("ONLY").unwrap_or_default();
        println!("| case | brinery ms (cpu) | serde-pickle ms (cpu) | ratio wall | ratio cpu |");
        println!("|---|---:|---:|---:|---:|");
        for op in ["read", "write"] {
            for name in INPUTS {
                if !only.is_empty() && !only.split(',').any(|o| o == *name || o == op) {
                    continue;
                }
                let case = Case::load(&dir, name);
                let mut best = [(f64::MAX, f64::MAX); 2];
                for _ in 0..rounds {
                    for (i, lib) in ["brinery", "serde"].into_iter().enumerate() {
                        let (w, c) = case.time(op, lib, n);
                        best[i] = (best[i].0.min(w), best[i].1.min(c));
                    }
                }
                let [(bw, bc), (sw, sc)] = best;
                println!(
                    "| {op} {name} | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.2}x | {:.2}x |",
                    bw * 1e3,
                    bc * 1e3,
                    sw * 1e3,
                    sc * 1e3,
                    sw / bw,
                    sc / bc
                );
            }
        }
        return;
    }
    let (op, lib, name) = (&args[1], &args[2], &args[3]);
    let n: usize = args.get(4).map_or(50, |s| s.parse().expect("N"));
    // PRELOAD=a,b: read and drop those inputs first (both libraries), as the criterion
    // benchmark does before later inputs, so the allocator starts from the same history.
    for pre in std::env::var("PRELOAD").unwrap_or_default().split(',') {
        if let Ok(d) = std::fs::read(format!("{dir}/{pre}.pkl")) {
            drop(brinery::Pickle::from_slice(&d).expect("brinery reads"));
            drop(serde_pickle::value_from_slice(
                &d,
                serde_pickle::DeOptions::new(),
            ));
        }
    }
    let case = Case::load(&dir, name);
    let (wall, cpu) = case.time(op, lib, n);
    eprintln!(
        "{op} {lib} {name}: {:.3} ms/iter ({:.3} ms cpu), {:.0} MB/s",
        wall * 1e3,
        cpu * 1e3,
        case.data.len() as f64 / wall / 1e6
    );
}
