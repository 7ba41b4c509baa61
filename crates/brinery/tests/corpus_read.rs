//! Every pickle of the CPython-generated corpus reads, and the values mean what Python meant.
//!
//! Generate the corpus first: `.venv/bin/python scripts/gen_corpus.py target/corpus` (or point
//! `BRINERY_CORPUS` at one). Without it these tests fail; they never pass vacuously.

mod common;

use brinery::{BigInt, CallKind, Global, Mutation, Pickle, Value, ValueId};
use common::{entries, entry, manifest, Entry};

fn read(e: &Entry) -> Pickle {
    Pickle::from_slice(&e.bytes()).unwrap_or_else(|err| panic!("{}: {err}", e.file))
}

fn int_of(v: &Value) -> Option<BigInt> {
    match v {
        Value::Int(i) => Some(BigInt::from(*i)),
        Value::BigInt(b) => Some((**b).clone()),
        _ => None,
    }
}

fn items<'p>(p: &'p Pickle, id: ValueId, file: &str) -> &'p [ValueId] {
    match &p[id] {
        Value::List(items) | Value::Tuple(items) | Value::Set(items) | Value::FrozenSet(items) => {
            items
        }
        other => panic!("{file}: expected a list, tuple or set, got {other:?}"),
    }
}

fn pairs<'p>(p: &'p Pickle, id: ValueId, file: &str) -> &'p [(ValueId, ValueId)] {
    match &p[id] {
        Value::Dict(pairs) => pairs,
        other => panic!("{file}: expected a dict, got {other:?}"),
    }
}

fn global_of(p: &Pickle, id: ValueId) -> Option<(String, String)> {
    match &p[id] {
        Value::Global(g) => {
            let Global { module, name } = &**g;
            Some((module.to_string(), name.to_string()))
        }
        _ => None,
    }
}

fn code_points(v: &Value) -> Option<Vec<u32>> {
    match v {
        Value::Str(s) => Some(s.code_points().collect()),
        _ => None,
    }
}

#[test]
fn every_corpus_pickle_reads() {
    let manifest = manifest();
    let mut failures = Vec::new();
    for e in &manifest {
        match Pickle::from_slice(&e.bytes()) {
            Ok(p) => {
                // CPython writes PROTO from protocol 2 on; the reader reports it.
                if !e.hand && e.protocol >= 2 && p.protocol() != e.protocol {
                    failures.push(format!(
                        "{}: protocol {} reported as {}",
                        e.file,
                        e.protocol,
                        p.protocol()
                    ));
                }
                // Every id in the arena points inside the arena.
                let n = p.len();
                for v in p.values() {
                    v.for_each_child(|c| {
                        if c.index() >= n {
                            failures.push(format!("{}: dangling id {c:?}", e.file));
                        }
                    });
                }
            }
            Err(err) => failures.push(format!("{}: {err}", e.file)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus pickles failed:\n{}",
        failures.len(),
        manifest.len(),
        failures.join("\n")
    );
    assert!(manifest.len() > 900, "corpus looks incomplete");
}

#[test]
fn ints_decode_to_their_values() {
    let two = BigInt::from(2);
    let ten = BigInt::from(10);
    let cases: Vec<(&str, BigInt)> = vec![
        ("int_0", 0.into()),
        ("int_1", 1.into()),
        ("int_neg1", (-1).into()),
        ("int_255", 255.into()),
        ("int_256", 256.into()),
        ("int_65535", 65535.into()),
        ("int_65536", 65536.into()),
        ("int_2p31", (1i64 << 31).into()),
        ("int_neg2p31", (-(1i64 << 31)).into()),
        ("int_2p31m1", ((1i64 << 31) - 1).into()),
        ("int_neg2p31m1", (-(1i64 << 31) - 1).into()),
        ("int_2p63", (1u64 << 63).into()),
        ("int_neg2p63", i64::MIN.into()),
        ("int_2p63m1", i64::MAX.into()),
        ("int_2p64", (1u128 << 64).into()),
        ("int_10p100", ten.pow(100)),
        ("int_neg10p300", -ten.pow(300)),
        ("int_huge_2p100000", two.pow(100_000)),
    ];
    for (case, want) in cases {
        for e in entries(case) {
            let p = read(&e);
            let got = int_of(&p[p.root()]).unwrap_or_else(|| panic!("{}: not an int", e.file));
            assert_eq!(got, want, "{}", e.file);
            // Small values must not be boxed.
            if i64::try_from(&want).is_ok() {
                assert!(matches!(p[p.root()], Value::Int(_)), "{}", e.file);
            }
        }
    }
    for e in entries("int_list_mixed") {
        let p = read(&e);
        let got: Vec<BigInt> = items(&p, p.root(), &e.file)
            .iter()
            .map(|&id| int_of(&p[id]).unwrap())
            .collect();
        let want: Vec<BigInt> = vec![
            0.into(),
            1.into(),
            (-1).into(),
            255.into(),
            256.into(),
            (-256).into(),
            (1i64 << 31).into(),
            (1u64 << 63).into(),
            -BigInt::from(1u128 << 64),
            ten.pow(30),
        ];
        assert_eq!(got, want, "{}", e.file);
    }
}

#[test]
fn none_and_bools() {
    for (case, want) in [
        ("none", Value::None),
        ("true", Value::Bool(true)),
        ("false", Value::Bool(false)),
    ] {
        for e in entries(case) {
            let p = read(&e);
            assert_eq!(p[p.root()], want, "{}", e.file);
        }
    }
}

#[test]
fn floats_keep_their_bits() {
    let cases: [(&str, f64); 10] = [
        ("float_0", 0.0),
        ("float_neg0", -0.0),
        ("float_1_5", 1.5),
        ("float_1e300", 1e300),
        ("float_5em324", 5e-324),
        ("float_inf", f64::INFINITY),
        ("float_neginf", f64::NEG_INFINITY),
        ("float_nan", f64::NAN),
        ("float_0_1", 0.1),
        ("float_neg_2_5e_m10", -2.5e-10),
    ];
    for (case, want) in cases {
        for e in entries(case) {
            let p = read(&e);
            let Value::Float(got) = p[p.root()] else {
                panic!("{}: {:?}", e.file, p[p.root()])
            };
            if want.is_nan() {
                assert!(got.is_nan(), "{}", e.file);
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{}: {got}", e.file);
            }
        }
    }
}

#[test]
fn strings_decode_to_their_code_points() {
    let cases: Vec<(&str, String)> = vec![
        ("str_empty", String::new()),
        ("str_ascii", "hello, world".into()),
        ("str_quotes", "it's \"quoted\" 'twice'".into()),
        ("str_backslash", "back\\slash \\u0041 \\n".into()),
        ("str_newlines", "line1\nline2\n".into()),
        ("str_cr", "a\rb\r\n".into()),
        ("str_ctrl_1a", "x\x1ay".into()),
        ("str_nul", "a\0b\0".into()),
        ("str_latin1", "café crème ÿ".into()),
        ("str_cjk", "中文字符 日本語".into()),
        ("str_emoji", "snake \u{1f40d} and \u{1f600}".into()),
        (
            "str_all_escapes",
            "\\\n\r\x1a\0\t\x7f\u{80}\u{ff}\u{100}\u{ffff}".into(),
        ),
        ("str_70k", "abcdéfgh\u{4e2d}".repeat(7000)),
    ];
    for (case, want) in &cases {
        for e in entries(case) {
            let p = read(&e);
            assert_eq!(p[p.root()].as_str(), Some(want.as_str()), "{}", e.file);
        }
    }
    let surrogates: [(&str, &[u32]); 3] = [
        ("str_lone_surrogate", &[0xD800]),
        ("str_lone_low_surrogate", &[0x61, 0xDFFF, 0x62]),
        ("str_surrogate_pair_points", &[0xD83D, 0xDE00]),
    ];
    for (case, want) in surrogates {
        for e in entries(case) {
            let p = read(&e);
            assert_eq!(
                code_points(&p[p.root()]).as_deref(),
                Some(want),
                "{}",
                e.file
            );
            assert_eq!(p[p.root()].as_str(), None, "{}: not valid UTF-8", e.file);
        }
    }
    for e in entries("str_many_small") {
        let p = read(&e);
        let list = items(&p, p.root(), &e.file);
        assert_eq!(list.len(), 2500, "{}", e.file);
        assert_eq!(
            p[list[7]].as_str(),
            Some("item-00007-xxxxxxx"),
            "{}",
            e.file
        );
    }
}

#[test]
fn bytes_and_bytearrays() {
    // bytes are written natively from protocol 3 on (before that through _codecs.encode).
    let b70k: Vec<u8> = (0..=255u8).cycle().take(256 * 280).collect();
    let b1m = b"brinery-".repeat(1 << 17);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bytes_empty", vec![]),
        ("bytes_short", b"abc\x00\xff".to_vec()),
        ("bytes_all_values", (0..=255u8).collect()),
        ("bytes_70k", b70k.clone()),
        ("bytes_1m", b1m),
    ];
    for (case, want) in &cases {
        for e in entries(case).iter().filter(|e| e.protocol >= 3) {
            let p = read(e);
            assert_eq!(p[p.root()], Value::Bytes(want.clone().into()), "{}", e.file);
        }
    }
    for (case, want) in [
        ("bytearray_empty", vec![]),
        ("bytearray_short", b"ab\x00\xfe".to_vec()),
        ("bytearray_70k", b70k),
    ] {
        let e = entry(case, 5);
        let p = read(&e);
        assert_eq!(p[p.root()], Value::ByteArray(want.into()), "{}", e.file);
    }
    let e = entry("bytes_300", 4);
    let p = read(&e);
    assert!(matches!(&p[p.root()], Value::Bytes(b) if b.len() == 300));
}

#[test]
fn container_sizes_and_contents() {
    for n in 0..6usize {
        for e in entries(&format!("tuple_{n}")) {
            let p = read(&e);
            let got: Vec<BigInt> = items(&p, p.root(), &e.file)
                .iter()
                .map(|&id| int_of(&p[id]).unwrap())
                .collect();
            let want: Vec<BigInt> = (0..n as i64).map(BigInt::from).collect();
            assert_eq!(got, want, "{}", e.file);
        }
    }
    for e in entries("list_2500") {
        let p = read(&e);
        let list = items(&p, p.root(), &e.file);
        assert_eq!(list.len(), 2500, "{}", e.file);
        for (i, &id) in list.iter().enumerate() {
            assert_eq!(int_of(&p[id]), Some(BigInt::from(i)), "{}", e.file);
        }
    }
    for e in entries("dict_2500") {
        let p = read(&e);
        let pairs = pairs(&p, p.root(), &e.file);
        assert_eq!(pairs.len(), 2500, "{}", e.file);
        let (k, v) = pairs[1234];
        assert_eq!(p[k].as_str(), Some("k1234"), "{}", e.file);
        assert_eq!(p[v], Value::Int(1234), "{}", e.file);
    }
    // Sets are native from protocol 4 on; before, `builtins.set` is called with a list.
    for e in entries("set_2500").iter().filter(|e| e.protocol >= 4) {
        let p = read(e);
        let Value::Set(set) = &p[p.root()] else {
            panic!("{}: {:?}", e.file, p[p.root()])
        };
        let mut got: Vec<i64> = set
            .iter()
            .map(|&id| match p[id] {
                Value::Int(i) => i,
                ref other => panic!("{other:?}"),
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..2500).collect::<Vec<_>>(), "{}", e.file);
    }
    for e in entries("set_2500").iter().filter(|e| e.protocol < 4) {
        let p = read(e);
        let Value::Object(obj) = &p[p.root()] else {
            panic!("{}: {:?}", e.file, p[p.root()])
        };
        // Protocols 0-2 write Python 2 names (`fix_imports`).
        let module = if e.protocol < 3 {
            "__builtin__"
        } else {
            "builtins"
        };
        assert_eq!(
            global_of(&p, obj.callable),
            Some((module.into(), "set".into())),
            "{}",
            e.file
        );
    }
    for e in entries("frozenset_small")
        .iter()
        .filter(|e| e.protocol >= 4)
    {
        let p = read(e);
        assert!(
            matches!(&p[p.root()], Value::FrozenSet(s) if s.len() == 3),
            "{}",
            e.file
        );
    }
    for e in entries("dict_nonstr_keys") {
        let p = read(&e);
        let pairs = pairs(&p, p.root(), &e.file);
        assert_eq!(pairs.len(), 6, "{}", e.file);
        assert!(
            pairs.iter().any(|&(k, _)| p[k] == Value::None),
            "{}: None key",
            e.file
        );
        assert!(
            pairs
                .iter()
                .any(|&(k, _)| matches!(&p[k], Value::Tuple(t) if t.len() == 2)),
            "{}: tuple key",
            e.file
        );
    }
}

#[test]
fn shared_references_are_the_same_id() {
    for e in entries("shared_list") {
        let p = read(&e);
        let list = items(&p, p.root(), &e.file);
        assert_eq!(list.len(), 2, "{}", e.file);
        assert_eq!(list[0], list[1], "{}", e.file);
        assert_eq!(items(&p, list[0], &e.file).len(), 1, "{}", e.file);
    }
    for e in entries("shared_str") {
        let p = read(&e);
        let list = items(&p, p.root(), &e.file);
        assert_eq!(list[0], list[1], "{}", e.file);
        let (_, v) = pairs(&p, list[2], &e.file)[0];
        assert_eq!(v, list[0], "{}", e.file);
        assert_eq!(
            p[list[0]].as_str(),
            Some("shared-string-shared-string-shared-string-")
        );
    }
    for e in entries("shared_tuple") {
        let p = read(&e);
        let pairs = pairs(&p, p.root(), &e.file);
        let a = pairs[0].1;
        let b = items(&p, pairs[1].1, &e.file);
        assert_eq!(b, &[a, a], "{}", e.file);
    }
}

#[test]
fn cycles_point_back_up() {
    for e in entries("cycle_list") {
        let p = read(&e);
        assert_eq!(items(&p, p.root(), &e.file), &[p.root()], "{}", e.file);
    }
    for e in entries("cycle_dict") {
        let p = read(&e);
        let pairs = pairs(&p, p.root(), &e.file);
        assert_eq!(pairs.len(), 1, "{}", e.file);
        assert_eq!(p[pairs[0].0].as_str(), Some("self"), "{}", e.file);
        assert_eq!(pairs[0].1, p.root(), "{}", e.file);
    }
    for e in entries("cycle_tuple") {
        // t = ([],); t[0].append(t): the root tuple's list holds the root tuple.
        let p = read(&e);
        let Value::Tuple(t) = &p[p.root()] else {
            panic!("{}: {:?}", e.file, p[p.root()])
        };
        assert_eq!(t.len(), 1, "{}", e.file);
        assert_eq!(items(&p, t[0], &e.file), &[p.root()], "{}", e.file);
    }
    for e in entries("cycle_object").iter().filter(|e| e.protocol >= 2) {
        // p.me = p: the BUILD state refers to the object itself.
        let p = read(e);
        let Value::Object(obj) = &p[p.root()] else {
            panic!("{}: {:?}", e.file, p[p.root()])
        };
        let state = obj
            .state()
            .unwrap_or_else(|| panic!("{}: no state", e.file));
        let me = pairs(&p, state, &e.file)
            .iter()
            .find(|&&(k, _)| p[k].as_str() == Some("me"))
            .map(|&(_, v)| v);
        assert_eq!(me, Some(p.root()), "{}", e.file);
    }
}

#[test]
fn deep_nesting_reads_without_recursion() {
    for (case, depth) in [("deep_list_900", 900), ("deep_list_20000", 20000)] {
        for e in entries(case) {
            let p = read(&e);
            let mut id = p.root();
            let mut levels = 0;
            loop {
                let list = items(&p, id, &e.file);
                match list {
                    [] => break,
                    [inner] => {
                        id = *inner;
                        levels += 1;
                    }
                    _ => panic!("{}: unexpected list {list:?}", e.file),
                }
            }
            assert_eq!(levels, depth, "{}", e.file);
        }
    }
}

#[test]
fn out_of_band_buffers_match_the_manifest() {
    let oob: Vec<Entry> = manifest()
        .into_iter()
        .filter(|e| e.oob_buffers > 0)
        .collect();
    assert!(oob.len() >= 4, "expected several out-of-band cases");
    for e in &oob {
        let p = read(e);
        let indices: Vec<u32> = p
            .values()
            .iter()
            .filter_map(|v| match v {
                Value::Buffer { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        let distinct: std::collections::BTreeSet<u32> = indices.iter().copied().collect();
        assert_eq!(distinct.len(), e.oob_buffers, "{}: {indices:?}", e.file);
        assert_eq!(
            distinct.iter().copied().max().map(|m| m as usize + 1),
            Some(e.oob_buffers),
            "{}",
            e.file
        );
        assert_eq!(e.buffers.len(), e.oob_buffers, "{}", e.file);
    }
    let p = read(&entry("oob_readonly", 5));
    assert_eq!(
        p[p.root()],
        Value::Buffer {
            index: 0,
            readonly: true
        }
    );
    let p = read(&entry("oob_bytearray", 5));
    assert_eq!(
        p[p.root()],
        Value::Buffer {
            index: 0,
            readonly: false
        }
    );
    // Pickles without out-of-band buffers have no Buffer values.
    for e in manifest().iter().filter(|e| e.oob_buffers == 0 && !e.hand) {
        let p = read(e);
        assert!(
            !p.values().iter().any(|v| matches!(v, Value::Buffer { .. })),
            "{}",
            e.file
        );
    }
}

#[test]
fn globals_and_objects() {
    for e in entries("reduce_string") {
        let p = read(&e);
        assert_eq!(
            global_of(&p, p.root()),
            Some(("corpus_classes".into(), "SINGLETON".into())),
            "{}",
            e.file
        );
    }
    for e in entries("module_function") {
        let p = read(&e);
        assert_eq!(
            global_of(&p, p.root()),
            Some(("corpus_classes".into(), "module_function".into())),
            "{}",
            e.file
        );
    }
    for e in entries("obj_plain").iter().filter(|e| e.protocol >= 2) {
        let p = read(e);
        let Value::Object(obj) = &p[p.root()] else {
            panic!("{}: {:?}", e.file, p[p.root()])
        };
        assert_eq!(obj.kind, CallKind::NewObj, "{}", e.file);
        assert_eq!(
            global_of(&p, obj.callable),
            Some(("corpus_classes".into(), "Plain".into())),
            "{}",
            e.file
        );
        let state = obj.state().unwrap();
        let keys: Vec<_> = pairs(&p, state, &e.file)
            .iter()
            .map(|&(k, _)| p[k].as_str().unwrap().to_string())
            .collect();
        assert_eq!(keys, ["a", "b", "c"], "{}", e.file);
    }
    for e in entries("getnewargs_ex").iter().filter(|e| e.protocol >= 4) {
        let p = read(e);
        assert!(
            matches!(&p[p.root()], Value::Object(o) if o.kind == CallKind::NewObjEx && o.kwargs.is_some()),
            "{}",
            e.file
        );
    }
    for e in entries("reduce_4_listitems")
        .iter()
        .filter(|e| e.protocol >= 2)
    {
        let p = read(e);
        let Value::Object(obj) = &p[p.root()] else {
            panic!("{}: {:?}", e.file, p[p.root()])
        };
        let appended = obj
            .mutations
            .iter()
            .filter(|m| matches!(m, Mutation::Append(_)))
            .count();
        assert_eq!(appended, 3, "{}", e.file);
    }
    for e in entries("ext_codes").iter().filter(|e| e.protocol >= 2) {
        let p = read(e);
        let codes: Vec<u32> = items(&p, p.root(), &e.file)
            .iter()
            .map(|&id| match p[id] {
                Value::Ext(code) => code,
                ref other => panic!("{}: {other:?}", e.file),
            })
            .collect();
        assert_eq!(codes, [0xF0, 0x1234, 0x1234_5678, 0xF0], "{}", e.file);
    }
    for e in entries("persistent_ids") {
        let p = read(&e);
        let list = items(&p, p.root(), &e.file);
        let Value::PersistentId(pid) = p[list[0]] else {
            panic!("{}: {:?}", e.file, p[list[0]])
        };
        assert_eq!(p[pid].as_str(), Some("ext:alpha"), "{}", e.file);
    }
}

#[test]
fn hand_written_pickles() {
    let hand = |name: &str| {
        let e = manifest()
            .into_iter()
            .find(|e| e.case == format!("hand_{name}"))
            .unwrap_or_else(|| panic!("no hand-written pickle {name}"));
        (read(&e), e)
    };

    let (p, _) = hand("dup_self_list");
    assert_eq!(items(&p, p.root(), "dup_self_list"), &[p.root()]);

    let (p, _) = hand("dup_tuple");
    let t = items(&p, p.root(), "dup_tuple");
    assert_eq!(t[0], t[1]);

    let (p, _) = hand("pop");
    assert_eq!(p[p.root()], Value::Int(1));
    let (p, _) = hand("pop_mark");
    assert_eq!(p[p.root()], Value::Int(1));
    let (p, _) = hand("pop_mark_empty");
    assert_eq!(p[p.root()], Value::Int(7));

    let (p, _) = hand("int_bools");
    let got: Vec<Value> = items(&p, p.root(), "int_bools")
        .iter()
        .map(|&id| p[id].clone())
        .collect();
    // `I0042` is octal, as `strtol(s, NULL, 0)` reads it.
    assert_eq!(
        got,
        [
            Value::Bool(false),
            Value::Bool(true),
            Value::Int(-5),
            Value::Int(7),
            Value::Int(34)
        ]
    );

    let (p, _) = hand("long_text");
    let got: Vec<Option<BigInt>> = items(&p, p.root(), "long_text")
        .iter()
        .map(|&id| int_of(&p[id]))
        .collect();
    assert_eq!(
        got,
        [
            Some(BigInt::from(12_345_678_901_234_567_890u64)),
            Some(BigInt::from(-5)),
            Some(BigInt::from(0))
        ]
    );

    let (p, _) = hand("string_quoted");
    let got: Vec<Value> = items(&p, p.root(), "string_quoted")
        .iter()
        .map(|&id| p[id].clone())
        .collect();
    assert_eq!(
        got,
        [
            Value::LegacyStr(b"hello".to_vec().into()),
            Value::LegacyStr(b"dq 'x'".to_vec().into()),
            Value::LegacyStr(b"esc\nA\\".to_vec().into()),
        ]
    );
    let (p, _) = hand("string_latin1");
    assert_eq!(p[p.root()], Value::LegacyStr(b"caf\xe9".to_vec().into()));

    let (p, _) = hand("unicode_escapes");
    assert_eq!(p[p.root()].as_str(), Some("é\u{1f600}x\\"));

    let (p, _) = hand("dict_dup_keys");
    assert_eq!(pairs(&p, p.root(), "dict_dup_keys").len(), 2);

    let (p, _) = hand("binput_sparse");
    let t = items(&p, p.root(), "binput_sparse");
    assert_eq!((&p[t[0]], &p[t[1]]), (&Value::Int(1), &Value::Int(2)));

    let (p, _) = hand("memoize_after_put");
    let t = items(&p, p.root(), "memoize_after_put");
    assert_eq!(t[0], t[1]);

    let (p, _) = hand("get_put_text");
    let l = items(&p, p.root(), "get_put_text");
    assert_eq!(l[1], p.root());

    for name in ["ext1", "ext2", "ext4"] {
        let (p, _) = hand(name);
        assert!(matches!(p[p.root()], Value::Ext(_)), "{name}");
    }
    let (p, _) = hand("persid");
    let l = items(&p, p.root(), "persid");
    assert!(matches!(p[l[1]], Value::PersistentId(id) if p[id].as_str() == Some("ext:beta")));

    let (p, _) = hand("inst");
    let Value::Object(obj) = &p[p.root()] else {
        panic!("{:?}", p[p.root()])
    };
    assert_eq!(obj.kind, CallKind::Inst);
    let (p, _) = hand("obj_with_args");
    let Value::Object(obj) = &p[p.root()] else {
        panic!("{:?}", p[p.root()])
    };
    assert_eq!(obj.kind, CallKind::Obj);
    assert_eq!(items(&p, obj.args, "obj_with_args").len(), 2);

    // Two pickles back to back: from_slice reads the first, a Reader reads both.
    let (p, e) = hand("stacked");
    assert_eq!(p[p.root()], Value::Int(1));
    let data = e.bytes();
    let limits = brinery::Limits::default();
    let mut reader = brinery::value::Reader::new(&data, &limits);
    let first = reader.read().unwrap();
    assert_eq!(first[first.root()], Value::Int(1));
    assert!(!reader.at_end());
    let second = reader.read().unwrap();
    assert_eq!(items(&second, second.root(), "stacked").len(), 2);
    assert!(reader.at_end());
}
