//! Reading and writing the value model, brinery vs serde-pickle, on the same CPython pickles.
//!
//! Inputs come from `scripts/gen_bench_inputs.py` (run by `bench/run-rust.sh`), in the directory
//! named by `BRINERY_BENCH_INPUTS` (default `target/bench-inputs`). Both libraries read the same
//! bytes into their own value model, and write their value model back at protocol 3, which both
//! support; throughput is reported in bytes of pickle per second.

#![expect(
    missing_docs,
    reason = "criterion's macros generate undocumented functions"
)]

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const INPUTS: &[&str] = &["records", "floats", "int_columns", "strings", "blob"];

fn inputs_dir() -> PathBuf {
    std::env::var_os("BRINERY_BENCH_INPUTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-inputs")
        })
}

fn load(name: &str) -> Vec<u8> {
    let path = inputs_dir().join(format!("{name}.pkl"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run bench/run-rust.sh (it generates the inputs)",
            path.display()
        )
    })
}

fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    group.sample_size(20);
    for name in INPUTS {
        let data = load(name);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(BenchmarkId::new("brinery", name), &data, |b, data| {
            b.iter(|| brinery::Pickle::from_slice(data).expect("brinery reads the input"))
        });
        group.bench_with_input(BenchmarkId::new("serde-pickle", name), &data, |b, data| {
            b.iter(|| {
                serde_pickle::value_from_slice(data, serde_pickle::DeOptions::new())
                    .expect("serde-pickle reads the input")
            })
        });
    }
    group.finish();
}

fn write(c: &mut Criterion) {
    let mut group = c.benchmark_group("write");
    group.sample_size(20);
    for name in INPUTS {
        let data = load(name);
        let ours = brinery::Pickle::from_slice(&data).expect("brinery reads the input");
        let theirs = serde_pickle::value_from_slice(&data, serde_pickle::DeOptions::new())
            .expect("serde-pickle reads the input");
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(BenchmarkId::new("brinery", name), &ours, |b, p| {
            b.iter(|| p.to_vec(3).expect("brinery writes"))
        });
        group.bench_with_input(BenchmarkId::new("serde-pickle", name), &theirs, |b, v| {
            b.iter(|| {
                serde_pickle::value_to_vec(v, serde_pickle::SerOptions::new())
                    .expect("serde-pickle writes")
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = read, write
}
criterion_main!(benches);
