//! Benchmarks live in `benches/`; run them with `bash bench/run-rust.sh`.
#![forbid(unsafe_code)]
