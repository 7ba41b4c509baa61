//! One benchmark case in a loop, for `perf stat` / `perf record`:
//! `cargo run --release -p brinery-bench --example profile -- read|write brinery|serde INPUT [N]`.

use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (op, lib, name) = (&args[1], &args[2], &args[3]);
    let n: usize = args.get(4).map_or(50, |s| s.parse().expect("N"));
    let dir = std::env::var("BRINERY_BENCH_INPUTS").unwrap_or("target/bench-inputs".into());
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
    let data = std::fs::read(format!("{dir}/{name}.pkl")).expect("input");
    let ours = brinery::Pickle::from_slice(&data).expect("brinery reads");
    let theirs =
        serde_pickle::value_from_slice(&data, serde_pickle::DeOptions::new()).expect("serde reads");
    let t = std::time::Instant::now();
    for _ in 0..n {
        match (op.as_str(), lib.as_str()) {
            ("read", "brinery") => drop(black_box(brinery::Pickle::from_slice(&data).unwrap())),
            ("read", "serde") => drop(black_box(
                serde_pickle::value_from_slice(&data, serde_pickle::DeOptions::new()).unwrap(),
            )),
            ("write", "brinery") => drop(black_box(ours.to_vec(3).unwrap())),
            ("write", "serde") => drop(black_box(
                serde_pickle::value_to_vec(&theirs, serde_pickle::SerOptions::new()).unwrap(),
            )),
            _ => panic!("read|write brinery|serde"),
        }
    }
    let per = t.elapsed().as_secs_f64() / n as f64;
    eprintln!(
        "{op} {lib} {name}: {:.3} ms/iter, {:.0} MB/s",
        per * 1e3,
        data.len() as f64 / per / 1e6
    );
}
