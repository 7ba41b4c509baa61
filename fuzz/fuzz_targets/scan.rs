//! The scanner: never panics on any input, plain or as a container; every finding carries a rule
//! code and a message; a clean verdict is only given to a stream that decodes to its last byte
//! and ends with STOP.
#![no_main]

use brinery::scan::{scan, scan_container, ContainerOptions, Policy};
use brinery::decode::Decoder;
use brinery::{Limits, Opcode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let policy = Policy::default();
    let limits = Limits::builder().max_depth(200).max_memo(10_000).build();
    let report = scan(data, &policy, &limits);
    for f in &report.findings {
        assert!(f.rule.code().starts_with("BRS"));
        assert!(!f.message.is_empty());
        assert!(f.offset <= data.len() as u64);
    }
    if report.is_ok() {
        // the scan validated the whole stream: every byte is an operation, the last is STOP
        let ops: Vec<_> = Decoder::new(data)
            .collect::<Result<_, _>>()
            .expect("scan said ok but the stream does not decode");
        assert_eq!(ops.last().map(|o| o.opcode), Some(Opcode::STOP));
        assert_eq!(ops.iter().filter(|o| o.opcode == Opcode::STOP).count(), 1);
    }
    let options = ContainerOptions {
        max_decompressed: 1 << 22,
        max_nesting: 4,
        // both ways: as a named file, and as a file met in a directory (may_hold_pickle first)
        pickles_only: data.len() % 2 == 1,
    };
    let _ = scan_container(data, &policy, &limits, &options);
    memo_differential(data);
});

/// Differential memo check: the input, read as a list of memo stores (MEMOIZE or PUT at an index
/// picked from ranges around the scan's dense/far boundary), builds a stream where every stored
/// value is a distinct string later fetched by GET and used as a STACK_GLOBAL module. The scan's
/// globals must name the same strings as the value reader's (the loader's memo semantics).
fn memo_differential(data: &[u8]) {
    use brinery::value::Value;
    use brinery::Pickle;
    use std::collections::BTreeMap;
    let su = |p: &mut Vec<u8>, s: &str| {
        p.extend([0x8c, s.len() as u8]);
        p.extend(s.as_bytes());
    };
    let mut model: BTreeMap<u32, String> = BTreeMap::new();
    let mut p = b"\x80\x04".to_vec();
    for (k, pair) in data.chunks_exact(2).take(64).enumerate() {
        let text = format!("m{k}");
        su(&mut p, &text);
        let base = [0u32, 4080, 4990, 9000, 13_000, 1 << 20][usize::from(pair[0] % 6)];
        let idx = if pair[0] >= 240 {
            p.push(0x94);
            model.len() as u32
        } else {
            let i = base + u32::from(pair[1] % 32);
            p.push(b'r');
            p.extend(i.to_le_bytes());
            i
        };
        model.insert(idx, text);
        p.push(b'0');
    }
    p.extend(b"](");
    for i in model.keys() {
        p.push(b'j');
        p.extend(i.to_le_bytes());
        su(&mut p, "n");
        p.push(0x93);
    }
    p.extend(b"e.");
    let expected: Vec<&String> = model.values().collect();
    let report = scan(&p, &Policy::default(), &Limits::default());
    let scanned: Vec<&String> = report.globals.iter().map(|g| &g.module).collect();
    assert_eq!(scanned, expected, "scan memo differs from the loader's");
    let pickle = Pickle::from_slice(&p).expect("value reader");
    let Some(Value::List(items)) = pickle.get(pickle.root()) else {
        panic!("root is not a list")
    };
    let loaded: Vec<String> = items
        .iter()
        .map(|id| match pickle.get(*id) {
            Some(Value::Global(g)) => g.module.to_string(),
            other => panic!("not a global: {other:?}"),
        })
        .collect();
    assert_eq!(
        loaded.iter().collect::<Vec<_>>(),
        expected,
        "value reader memo differs"
    );
}
