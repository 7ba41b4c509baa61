//! Lists of strings and scalars written back at their own protocol are byte-identical to
//! CPython's: the writer's runs (fresh strings with no memo lookup for strings the stream
//! referenced once, heads built in a word, short texts copied as two words; ints and floats
//! read from consecutive ids of the arena) and its general path must agree on every length
//! class, on surrogates, on texts longer than a frame, on shared strings (`BINGET` /
//! `LONG_BINGET`), on memo indices crossing 256, on every int width, and at protocols 0–5.
//!
//! Needs a Python (`BRINERY_PYTHON`, default `<workspace>/.venv/bin/python`): run
//! `scripts/setup.sh`. The test fails when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use brinery::{Pickle, Value};

fn python() -> PathBuf {
    std::env::var_os("BRINERY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"))
}

/// The values pickled, as Python source: every length from 0 to 40 (the 8-to-16-byte copy and
/// its edges), non-ASCII and lone surrogates, 255/256-byte texts (`SHORT_BINUNICODE` edge), a
/// text over a frame (64 KiB) between short ones, one string object placed several times (memo
/// fetches), and 300 fresh strings first so that memo indices pass 255.
const CASES: &str = r#"
shared = 'shared-' + 'x' * 9
long = 'L' * 70_000
cases = {
    'lengths': ['abcdefghijklmnopqrstuvwxyz0123456789ABCD'[:n] for n in range(41)],
    'unicode': ['é', 'épsilon-12', '\u20ac' * 5, '\U0001f600' * 4, '\ud800', 'a\udfffb' * 3,
                'x\ud83d\ude00y', 'θ' * 8],
    'edges': ['s' * 255, 's' * 256, 'é' * 128, ''],
    'long': ['before', long, 'after', long + 'x', 'end'],
    'shared': ['a', shared, 'b', shared, [shared, 'c'], shared, ('t', shared)],
    'many': [f'word-{i}' for i in range(300)] + [shared, 'tail', shared],
    'nested': {'k': [f'v{i}' for i in range(40)], 'k2': ('x', 'y', 'x' * 12)},
    'scalars': [0, 1, 255, 256, 65535, 65536, -1, -256, 2**31 - 1, -2**31, 2**31, -2**31 - 1,
                2**63 - 1, -2**63, 2**64, 0.5, -0.0, float('inf'), None, True, False] * 30
               + list(range(-300, 70_000, 97)) + [i / 7 for i in range(600)],
    'mixed': [x for i in range(400) for x in (i, f'k{i}', i * 1.5, None, 'same', i * 70_001)],
}
"#;

#[test]
fn string_lists_are_byte_identical_at_every_protocol() {
    let script = format!(
        "{CASES}\nimport pickle, sys\nfor name, value in cases.items():\n    for proto in range(6):\n        data = pickle.dumps(value, proto)\n        sys.stdout.buffer.write(b'%s %d %d\\n' % (name.encode(), proto, len(data)) + data)\n"
    );
    let py = python();
    let output = Command::new(&py)
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}: run scripts/setup.sh", py.display()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut rest = &output.stdout[..];
    let mut checked = 0;
    while !rest.is_empty() {
        let nl = rest.iter().position(|&b| b == b'\n').expect("header line");
        let header = std::str::from_utf8(&rest[..nl]).expect("ascii header");
        let mut parts = header.split(' ');
        let (name, proto, len) = (
            parts.next().unwrap(),
            parts.next().unwrap().parse::<u8>().unwrap(),
            parts.next().unwrap().parse::<usize>().unwrap(),
        );
        let data = &rest[nl + 1..nl + 1 + len];
        rest = &rest[nl + 1 + len..];
        let p = Pickle::from_slice(data).unwrap_or_else(|e| panic!("{name} p{proto}: {e}"));
        let out = p.to_vec(proto).unwrap();
        assert!(
            out == data,
            "{name} at protocol {proto}: not CPython's bytes\n ours {:?}\n cpython {:?}",
            String::from_utf8_lossy(&out[..out.len().min(400)]),
            String::from_utf8_lossy(&data[..data.len().min(400)])
        );
        // The same values built by hand (no knowledge of what the stream shared) go through
        // the general path: same bytes whenever no string is shared.
        if !matches!(name, "shared" | "many" | "mixed") {
            let mut hand = Pickle::new();
            let root = copy(&p, p.root(), &mut hand);
            hand.set_root(root);
            assert_eq!(hand.to_vec(proto).unwrap(), out, "{name} p{proto} by hand");
        }
        // And to_vec equals write_to (the streaming writer flushes frames as it goes).
        let mut streamed = Vec::new();
        p.write_to(&mut streamed, proto).unwrap();
        assert_eq!(streamed, out, "{name} p{proto} streamed");
        checked += 1;
    }
    assert_eq!(checked, 9 * 6);
}

/// Copy the tree under `id` (no sharing) from `from` into `to`, returning the new id.
fn copy(from: &Pickle, id: brinery::ValueId, to: &mut Pickle) -> brinery::ValueId {
    let v = match &from[id] {
        Value::List(items) => Value::List(items.iter().map(|&i| copy(from, i, to)).collect()),
        Value::Tuple(items) => Value::Tuple(items.iter().map(|&i| copy(from, i, to)).collect()),
        Value::Dict(pairs) => Value::Dict(
            pairs
                .iter()
                .map(|&(k, v)| (copy(from, k, to), copy(from, v, to)))
                .collect(),
        ),
        other => other.clone(),
    };
    to.push(v)
}
