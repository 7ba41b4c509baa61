//! Scanner throughput (issue 4, requirement 7): opcodes per second on opcode-dense pickles and
//! bytes per second on pickles dominated by large buffers.
//!
//! Inputs: two synthetic streams built here (an opcode-dense list of small ints, short memoized
//! strings, floats and tuples; a protocol-5 stream of 16 MiB buffers), plus the CPython pickles of
//! `scripts/gen_bench_inputs.py` when `BRINERY_BENCH_INPUTS` (default `target/bench-inputs`) has
//! them. Run with `bash bench/run-scan.sh`; results in `bench/results/scan.md`.

#![expect(
    missing_docs,
    reason = "criterion's macros generate undocumented functions"
)]

use std::path::PathBuf;

use brinery::scan::{scan, Policy};
use brinery::Limits;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// An opcode-dense protocol-4 pickle: a list of `n` items in APPENDS batches of 1000.
fn opcode_dense(n: usize) -> Vec<u8> {
    let mut v = b"\x80\x04]\x94".to_vec();
    let mut i = 0;
    while i < n {
        v.push(b'(');
        for _ in 0..1000.min(n - i) {
            match i % 4 {
                0 => v.extend_from_slice(&[b'K', (i % 251) as u8]),
                1 => {
                    v.extend_from_slice(b"\x8c\x03abc\x94");
                }
                2 => {
                    v.push(b'G');
                    v.extend_from_slice(&(i as f64).to_be_bytes());
                }
                _ => v.extend_from_slice(b"K\x01K\x02\x86"),
            }
            i += 1;
        }
        v.push(b'e');
    }
    v.push(b'.');
    v
}

/// A protocol-5 list of `count` buffers of `size` bytes each (BYTEARRAY8 and BINBYTES8).
fn buffers(count: usize, size: usize) -> Vec<u8> {
    let mut v = b"\x80\x05]\x94(".to_vec();
    for i in 0..count {
        v.push(if i % 2 == 0 { 0x8e } else { 0x96 });
        v.extend_from_slice(&(size as u64).to_le_bytes());
        v.extend(std::iter::repeat_n((i % 256) as u8, size));
    }
    v.extend_from_slice(b"e.");
    v
}

fn inputs_dir() -> PathBuf {
    std::env::var_os("BRINERY_BENCH_INPUTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-inputs")
        })
}

fn bench(c: &mut Criterion) {
    let policy = Policy::default();
    let limits = Limits::default();
    let mut inputs = vec![
        ("opcode_dense", opcode_dense(4_000_000)),
        ("buffers_16MiB", buffers(16, 16 << 20)),
    ];
    for name in ["records", "floats", "int_columns", "strings", "blob"] {
        if let Ok(data) = std::fs::read(inputs_dir().join(format!("{name}.pkl"))) {
            inputs.push((name, data));
        }
    }
    let mut ops = c.benchmark_group("scan_opcodes");
    ops.sample_size(20);
    for (name, data) in &inputs {
        let report = scan(data, &policy, &limits);
        assert!(report.is_ok(), "{name}: {:?}", report.findings.first());
        eprintln!("{name}: {} bytes, {} opcodes", data.len(), report.opcodes);
        ops.throughput(Throughput::Elements(report.opcodes));
        ops.bench_with_input(BenchmarkId::new("scan", name), data, |b, data| {
            b.iter(|| scan(data, &policy, &limits))
        });
    }
    ops.finish();
    let mut bytes = c.benchmark_group("scan_bytes");
    bytes.sample_size(20);
    for (name, data) in &inputs {
        bytes.throughput(Throughput::Bytes(data.len() as u64));
        bytes.bench_with_input(BenchmarkId::new("scan", name), data, |b, data| {
            b.iter(|| scan(data, &policy, &limits))
        });
    }
    bytes.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
