//! serde against the real interpreter, both ways: Python pickles plain data at every protocol and
//! Rust reads it into typed values; Rust writes typed values at every protocol and Python loads
//! them and compares with a Python literal.
//!
//! The interpreter is `$BRINERY_PYTHON`, or `<workspace>/.venv/bin/python` (made by
//! `scripts/setup.sh`). A missing interpreter fails the tests; they never skip. Each test runs
//! one Python process for all its cases.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::{Deserialize, Deserializer};

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("BRINERY_PYTHON") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = root.join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python interpreter: set BRINERY_PYTHON or run scripts/setup.sh to create {}",
        venv.display()
    );
    venv
}

/// Run `script` with `stdin` as its standard input; return its standard output.
fn run_python(script: &str, stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(python())
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the Python interpreter");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write to python");
    drop(input);
    let out = child.wait_with_output().expect("python did not finish");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Pickle each named Python expression at every protocol; returns `name -> [pickle; 6]`.
fn python_pickles(cases: &[(&str, &str)]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut script = String::from("import pickle, sys, json, collections, datetime\ncases = {}\n");
    for (name, expr) in cases {
        script.push_str(&format!("cases[{name:?}] = lambda: ({expr})\n"));
    }
    script.push_str(
        "out = {n: [pickle.dumps(f(), p).hex() for p in range(6)] for n, f in cases.items()}\n\
         json.dump(out, sys.stdout)\n",
    );
    let out = run_python(&script, b"");
    let hex: BTreeMap<String, Vec<String>> = serde_json::from_slice(&out).expect("json");
    hex.into_iter()
        .map(|(k, v)| (k, v.iter().map(|h| unhex(h)).collect()))
        .collect()
}

fn unhex(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Bytes read through `deserialize_bytes` (what `serde_bytes::ByteBuf` does).
#[derive(Debug, PartialEq)]
struct ByteBuf(Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[derive(Debug, PartialEq, Deserialize)]
enum Shape {
    Dot,
    Circle(f64),
    Line(i32, i32),
    Rect { w: u32, h: u32 },
}

#[derive(Debug, PartialEq, Deserialize)]
struct Everything {
    ints: HashMap<String, Vec<i64>>,
    nested: BTreeMap<String, BTreeMap<String, Vec<Option<f64>>>>,
    pair: (i32, String, bool),
    set: BTreeSet<i64>,
    frozen: BTreeSet<String>,
    data: ByteBuf,
    empty_data: ByteBuf,
    high_data: Vec<u8>,
    buf: Vec<u8>,
    buf_bytes: ByteBuf,
    big: u128,
    neg_big: i128,
    u64max: u64,
    float: f64,
    int_as_float: f32,
    none: Option<i32>,
    some: Option<i32>,
    unit: (),
    flags: Vec<bool>,
    text: String,
    ch: char,
    ordered: Vec<(String, i32)>,
    ordered_map: BTreeMap<String, i32>,
    shapes: Vec<Shape>,
    int_keys: HashMap<i64, String>,
    tuple_keys: BTreeMap<(i32, i32), String>,
}

const EVERYTHING: &str = r#"{
    "ints": {"a": [1, 2, 3], "b": [], "c": [-1, 2**40, -2**63]},
    "nested": {"x": {"k": [1.5, None, -0.0]}, "y": {}},
    "pair": (-7, "seven", True),
    "set": {3, 1, 2},
    "frozen": frozenset({"p", "q"}),
    "data": b"\x00abc\xff",
    "empty_data": b"",
    "high_data": b"\x80\x81\xfe",
    "buf": bytearray(b"xy\x00"),
    "buf_bytes": bytearray(b"\xe9t\xe9"),
    "big": 2**127 + 5,
    "neg_big": -2**100,
    "u64max": 2**64 - 1,
    "float": 3.25,
    "int_as_float": 4,
    "none": None,
    "some": 42,
    "unit": None,
    "flags": [True, False],
    "text": "h\xe9llo w\xf6rld \u2713 \U0001F600",
    "ch": "\u00df",
    "ordered": [("z", 1), ("a", 2)],
    "ordered_map": collections.OrderedDict([("z", 1), ("a", 2)]),
    "shapes": ["Dot", {"Circle": 0.5}, {"Line": (1, 2)}, {"Rect": {"w": 3, "h": 4}}],
    "int_keys": {1: "one", -2: "minus two"},
    "tuple_keys": {(1, 2): "a", (0, 0): "b"},
}"#;

fn expected_everything() -> Everything {
    Everything {
        ints: HashMap::from([
            ("a".into(), vec![1, 2, 3]),
            ("b".into(), vec![]),
            ("c".into(), vec![-1, 1 << 40, i64::MIN]),
        ]),
        nested: BTreeMap::from([
            (
                "x".into(),
                BTreeMap::from([("k".into(), vec![Some(1.5), None, Some(-0.0)])]),
            ),
            ("y".into(), BTreeMap::new()),
        ]),
        pair: (-7, "seven".into(), true),
        set: BTreeSet::from([1, 2, 3]),
        frozen: BTreeSet::from(["p".into(), "q".into()]),
        data: ByteBuf(b"\x00abc\xff".to_vec()),
        empty_data: ByteBuf(vec![]),
        high_data: vec![0x80, 0x81, 0xfe],
        buf: b"xy\x00".to_vec(),
        buf_bytes: ByteBuf(b"\xe9t\xe9".to_vec()),
        big: (1u128 << 127) + 5,
        neg_big: -(1i128 << 100),
        u64max: u64::MAX,
        float: 3.25,
        int_as_float: 4.0,
        none: None,
        some: Some(42),
        unit: (),
        flags: vec![true, false],
        text: "héllo wörld ✓ 😀".into(),
        ch: 'ß',
        ordered: vec![("z".into(), 1), ("a".into(), 2)],
        ordered_map: BTreeMap::from([("z".into(), 1), ("a".into(), 2)]),
        shapes: vec![
            Shape::Dot,
            Shape::Circle(0.5),
            Shape::Line(1, 2),
            Shape::Rect { w: 3, h: 4 },
        ],
        int_keys: HashMap::from([(1, "one".into()), (-2, "minus two".into())]),
        tuple_keys: BTreeMap::from([((1, 2), "a".into()), ((0, 0), "b".into())]),
    }
}

#[test]
fn rust_reads_what_python_pickled_at_every_protocol() {
    let pickles = python_pickles(&[
        ("everything", EVERYTHING),
        (
            "dict_of_lists",
            r#"{"a": [1, 2], "b": list(range(2500)), "c": []}"#,
        ),
        (
            "json_like",
            r#"{"n": None, "b": [True, False], "i": -3, "f": 0.5, "s": "\u00e9",
                "l": [1, [2, [3]]], "t": (1, "x"), "set": {7}, "d": {"k": {"v": 2**62}},
                "od": collections.OrderedDict(a=1), "u": 2**64 - 1}"#,
        ),
        (
            "shared",
            r#"(lambda l: {"a": l, "b": l, "c": [l, l]})([1, 2])"#,
        ),
        ("big_set", "set(range(1500))"),
    ]);
    let expected = expected_everything();
    for (p, data) in pickles["everything"].iter().enumerate() {
        let got: Everything =
            brinery::from_slice(data).unwrap_or_else(|e| panic!("protocol {p}: {e}"));
        assert_eq!(got, expected, "protocol {p}");
    }
    for (p, data) in pickles["dict_of_lists"].iter().enumerate() {
        let got: HashMap<String, Vec<i64>> = brinery::from_slice(data).unwrap();
        assert_eq!(got["a"], [1, 2], "protocol {p}");
        assert_eq!(got["b"], (0..2500).collect::<Vec<_>>(), "protocol {p}");
        assert!(got["c"].is_empty(), "protocol {p}");
    }
    let json = serde_json::json!({
        "n": null, "b": [true, false], "i": -3, "f": 0.5, "s": "é",
        "l": [1, [2, [3]]], "t": [1, "x"], "set": [7], "d": {"k": {"v": 1u64 << 62}},
        "od": {"a": 1}, "u": u64::MAX,
    });
    for (p, data) in pickles["json_like"].iter().enumerate() {
        let got: serde_json::Value =
            brinery::from_slice(data).unwrap_or_else(|e| panic!("protocol {p}: {e}"));
        assert_eq!(got, json, "protocol {p}");
    }
    for (p, data) in pickles["shared"].iter().enumerate() {
        let got: BTreeMap<String, serde_json::Value> = brinery::from_slice(data).unwrap();
        assert_eq!(got["a"], serde_json::json!([1, 2]), "protocol {p}");
        assert_eq!(
            got["c"],
            serde_json::json!([[1, 2], [1, 2]]),
            "protocol {p}"
        );
    }
    for (p, data) in pickles["big_set"].iter().enumerate() {
        let got: BTreeSet<u16> = brinery::from_slice(data).unwrap();
        assert_eq!(got, (0..1500).collect(), "protocol {p}");
    }
}

#[test]
fn python_objects_and_bad_data_give_exact_errors() {
    let pickles = python_pickles(&[
        ("wrong_type", r#"{"a": "x"}"#),
        ("out_of_range", r#"{"a": 300}"#),
        ("negative", "-1"),
        ("too_big", "2**200"),
        ("date", "datetime.date(2024, 1, 2)"),
        ("date_in_list", "[1, datetime.date(2024, 1, 2)]"),
        ("cycle", "(lambda l: (l.append(l), l)[1])([])"),
        ("dict_cycle", "(lambda d: (d.__setitem__('me', d), d)[1])({})"),
        (
            "laughs",
            "(lambda f: f(f, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 9))(lambda f, x, n: x if n == 0 else f(f, [x] * 10, n - 1))",
        ),
        ("deep", "(lambda f: f(f, 200))(lambda f, n: [] if n == 0 else [f(f, n - 1)])"),
        ("surrogate", r#""a\ud800""#),
        ("missing_field", r#"{"x": 1}"#),
    ]);
    fn all<T: serde::de::DeserializeOwned + fmt::Debug>(pickles: &[Vec<u8>], want: &str) {
        for (p, data) in pickles.iter().enumerate() {
            let err = brinery::from_slice::<T>(data).unwrap_err();
            assert_eq!(err.to_string(), want, "protocol {p}");
        }
    }
    all::<HashMap<String, Vec<i64>>>(
        &pickles["wrong_type"],
        "invalid type: string \"x\", expected a sequence",
    );
    all::<HashMap<String, u8>>(&pickles["out_of_range"], "integer 300 does not fit in u8");
    all::<u32>(&pickles["negative"], "integer -1 does not fit in u32");
    all::<i128>(
        &pickles["too_big"],
        "integer 16069380442589902755...02993782792835301376 (61 digits) does not fit in i128",
    );
    all::<String>(
        &pickles["date"],
        "cannot deserialize a datetime.date object into a string",
    );
    all::<Vec<i32>>(
        &pickles["date_in_list"],
        "cannot deserialize a datetime.date object into i32",
    );
    all::<serde_json::Value>(
        &pickles["date"],
        "cannot deserialize a datetime.date object into any valid JSON value",
    );
    // Protocol 0 has no memo-free way to make a cycle differently; all protocols keep it.
    all::<serde_json::Value>(
        &pickles["cycle"],
        "value graph has a cycle: a list contains itself",
    );
    all::<serde_json::Value>(
        &pickles["dict_cycle"],
        "value graph has a cycle: a dict contains itself",
    );
    for (p, data) in pickles["laughs"].iter().enumerate() {
        assert!(data.len() < 500, "protocol {p}: {} bytes", data.len());
        let arena = brinery::Pickle::from_slice(data).unwrap().len() as u64;
        let budget = arena * brinery::serde::EXPANSION_FACTOR + brinery::serde::EXPANSION_FLOOR;
        let err = brinery::from_slice::<serde_json::Value>(data).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("value graph expands beyond {budget} values (shared references or a cycle)"),
            "protocol {p}"
        );
    }
    all::<serde_json::Value>(&pickles["deep"], "depth limit of 128 exceeded");
    all::<String>(
        &pickles["surrogate"],
        "str contains the lone surrogate U+D800, which a Rust string cannot hold \
         (deserialize it as bytes to get its surrogatepass UTF-8)",
    );
    for data in &pickles["surrogate"] {
        let b: ByteBuf = brinery::from_slice(data).unwrap();
        assert_eq!(b.0, b"a\xed\xa0\x80");
    }
    #[derive(Debug, Deserialize)]
    #[expect(dead_code, reason = "only the error is looked at")]
    struct Point {
        x: i32,
        y: i32,
    }
    all::<Point>(&pickles["missing_field"], "missing field `y`");
    // A deep value within a raised depth limit reads; the default cap applies otherwise.
    let limits = brinery::Limits::builder().max_depth(300).build();
    for data in &pickles["deep"] {
        brinery::serde::from_slice_with::<serde_json::Value>(data, &limits).unwrap();
    }
}
