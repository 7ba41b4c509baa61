//! Mutated corpus pickles never make the reader, the decoder or the disassembler panic, hang or
//! blow up.
//!
//! Two parts: an exhaustive sweep (every truncation and a byte substitution at every offset of
//! the small corpus pickles) and a `proptest` run that stacks random mutations (bit flips,
//! inserted and deleted bytes, truncation, splicing two files, huge values written over length
//! fields). `PROPTEST_CASES` changes the number of random cases (default 6000).
//!
//! Needs the corpus (`.venv/bin/python scripts/gen_corpus.py target/corpus`); fails without it.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use brinery::decode::Decoder;
use brinery::disasm::{disassemble, Options};
use brinery::value::Reader;
use brinery::{Limits, Pickle};
use proptest::prelude::*;
use proptest::sample::Index;

/// Files above this size are left out: mutating them only costs time.
const MAX_FILE: usize = 64 * 1024;

/// How long one input may take through all consumers (debug build, shared machine). Everything
/// here runs in microseconds; this only catches hangs and super-linear blow-ups.
const SLOW: Duration = Duration::from_secs(5);

fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let files: Vec<Vec<u8>> = common::manifest()
            .iter()
            .map(|e| e.bytes())
            .filter(|b| b.len() <= MAX_FILE)
            .collect();
        assert!(files.len() > 500, "corpus looks incomplete");
        files
    })
}

/// Run every consumer over `data`; panics (failing the test) only through a bug.
fn exercise(data: &[u8]) {
    let start = Instant::now();
    let limits = Limits::default();

    if let Err(e) = Pickle::from_slice(data) {
        // Errors always say where.
        let offset = e.offset().expect("error without an offset");
        assert!(offset <= data.len() as u64, "{e}");
    }

    // Stacked pickles: keep reading until the input ends or fails.
    let mut reader = Reader::new(data, &limits);
    for _ in 0..data.len() + 1 {
        if reader.at_end() || reader.read().is_err() {
            break;
        }
    }

    // `pickle_extent` agrees with the decoder on where the first pickle ends: where the
    // decoder meets a STOP before any error, and the whole corpus pickle when unmutated
    let extent = brinery::decode::pickle_extent(data);
    for op in Decoder::new(data) {
        match op {
            Ok(op) if op.opcode == brinery::Opcode::STOP => {
                assert_eq!(extent, brinery::decode::Extent::Complete(op.offset + 1));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }

    let mut last = None;
    for op in Decoder::new(data) {
        match op {
            Ok(op) => {
                assert!(last.map_or(true, |prev| op.offset > prev));
                assert!(op.offset < data.len());
                last = Some(op.offset);
            }
            Err(e) => {
                assert!(e.offset().is_some_and(|o| o <= data.len() as u64), "{e}");
            }
        }
    }

    let mut out = Vec::new();
    match disassemble(data, &mut out, &Options::default()) {
        Ok(end) => assert!(end <= data.len()),
        Err(e) => assert!(e.offset().is_some_and(|o| o <= data.len() as u64), "{e}"),
    }
    // Without indentation the text stays proportional to the input (each opcode's line shows
    // at most its bytes, escaped, plus a bounded prefix). With it, as in `pickletools`, every
    // line is indented by its MARK depth, so a stream of nested MARKs grows quadratically
    // (a mutation of a 53 KB pickle gave 3.7 MB): that is pickletools' layout, not a leak.
    out.clear();
    let flat = Options {
        indentlevel: 0,
        ..Options::default()
    };
    let _ = disassemble(data, &mut out, &flat);
    assert!(
        out.len() <= 64 * data.len() + 4096,
        "{} bytes of disassembly for {} bytes of input",
        out.len(),
        data.len()
    );

    let took = start.elapsed();
    assert!(took < SLOW, "{took:?} for {} bytes", data.len());
}

#[test]
fn every_truncation_and_substitution_of_small_pickles() {
    // Bytes that matter: zero, all ones, sign bits, MARK, STOP, a GET, a length-carrying opcode.
    const SUBSTITUTES: [u8; 8] = [0x00, 0xff, 0x80, 0x7f, b'(', b'.', b'h', 0x8e];
    let small: Vec<&Vec<u8>> = corpus().iter().filter(|b| b.len() <= 200).collect();
    assert!(small.len() > 100);
    let mut inputs = 0usize;
    for (n, data) in small.into_iter().enumerate() {
        for end in 0..data.len() {
            exercise(&data[..end]);
            inputs += 1;
        }
        // One substitute per offset, rotating so that across files every offset sees each.
        let mut copy = data.clone();
        for i in 0..copy.len() {
            let original = copy[i];
            copy[i] = SUBSTITUTES[(i + n) % SUBSTITUTES.len()];
            exercise(&copy);
            inputs += 1;
            copy[i] = original;
        }
    }
    assert!(inputs > 50_000, "{inputs}");
}

/// One mutation of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
    /// Replace everything from a point with the tail of another corpus file.
    Splice(Index, Index, Index),
    /// Write a huge little-endian value of `width` bytes at a point (length fields, memo indices).
    Huge(Index, u8, u64),
    /// Duplicate a range (repeats opcodes: more MARKs, more PUTs, ...).
    Repeat(Index, usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let huge = prop_oneof![
        Just(u64::MAX),
        Just(1u64 << 62),
        Just(i64::MAX as u64),
        Just(u32::MAX as u64),
        Just(i32::MAX as u64),
        Just(0x8000_0000),
        Just(0xffff),
        any::<u64>(),
    ];
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        2 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(a, f, b)| Mutation::Splice(a, f, b)),
        2 => (any::<Index>(), prop_oneof![Just(1u8), Just(2), Just(4), Just(8)], huge)
            .prop_map(|(i, w, v)| Mutation::Huge(i, w, v)),
        1 => (any::<Index>(), 1usize..32, 1u8..8).prop_map(|(i, n, k)| Mutation::Repeat(i, n, k)),
    ]
}

fn apply(data: &mut Vec<u8>, m: &Mutation) {
    let len = data.len();
    let at = |i: &Index| if len == 0 { 0 } else { i.index(len) };
    match m {
        Mutation::FlipBit(i, bit) => {
            if len > 0 {
                let p = at(i);
                data[p] ^= 1 << bit;
            }
        }
        Mutation::SetByte(i, b) => {
            if len > 0 {
                let p = at(i);
                data[p] = *b;
            }
        }
        Mutation::Insert(i, bytes) => {
            let p = i.index(len + 1);
            data.splice(p..p, bytes.iter().copied());
        }
        Mutation::Delete(i, n) => {
            if len > 0 {
                let p = at(i);
                let end = (p + n).min(len);
                data.drain(p..end);
            }
        }
        Mutation::Truncate(i) => data.truncate(i.index(len + 1)),
        Mutation::Splice(a, f, b) => {
            let files = corpus();
            let other = &files[f.index(files.len())];
            let from = b.index(other.len() + 1);
            data.truncate(a.index(len + 1));
            data.extend_from_slice(&other[from..]);
        }
        Mutation::Huge(i, width, value) => {
            let bytes = value.to_le_bytes();
            let w = *width as usize;
            let p = i.index(len + 1);
            let end = (p + w).min(len);
            data.splice(p..end, bytes[..w].iter().copied());
        }
        Mutation::Repeat(i, n, times) => {
            if len > 0 {
                let p = at(i);
                let end = (p + n).min(len);
                let chunk: Vec<u8> = data[p..end].to_vec();
                for _ in 0..*times {
                    data.splice(end..end, chunk.iter().copied());
                }
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_mutations_never_panic_or_hang(
        file in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let files = corpus();
        let mut data = files[file.index(files.len())].clone();
        for m in &mutations {
            apply(&mut data, m);
        }
        exercise(&data);
    }
}
