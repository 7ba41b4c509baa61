//! serde never panics on damaged input: valid pickles written by `to_vec` at every protocol,
//! with random bytes flipped, inserted, removed or cut off, are read into typed values and into
//! `serde_json::Value`; each read returns `Ok` or `Err`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum Kind {
    A,
    B(i8),
    C { x: Option<u128> },
}

#[derive(Debug, Serialize, Deserialize)]
struct Row {
    kinds: Vec<Kind>,
    map: BTreeMap<String, Vec<i64>>,
    pair: (u8, String, f64),
    blob: Vec<u8>,
}

fn seeds() -> Vec<Vec<u8>> {
    let row = Row {
        kinds: vec![Kind::A, Kind::B(-1), Kind::C { x: Some(1 << 100) }],
        map: BTreeMap::from([("a".into(), vec![1, -2, 1 << 40]), ("b".into(), vec![])]),
        pair: (7, "é".into(), 0.25),
        blob: vec![0, 255],
    };
    let mut out: Vec<Vec<u8>> = (0..=5).map(|p| brinery::to_vec(&row, p).unwrap()).collect();
    // Old-protocol encodings of sets and bytes, and a shared list, as CPython writes them.
    out.push(b"\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.".to_vec());
    out.push(b"c_codecs\nencode\np0\n(Vab\np1\nVlatin1\np2\ntp3\nRp4\n.".to_vec());
    out.push(b"\x80\x02]q\x00(]q\x01h\x01h\x01e.".to_vec());
    out
}

fn read_all(data: &[u8]) {
    let _ = brinery::from_slice::<Row>(data);
    let _ = brinery::from_slice::<serde_json::Value>(data);
    let _ = brinery::from_slice::<Vec<Vec<u8>>>(data);
    let _ = brinery::from_slice::<(String, BTreeMap<i64, Option<f32>>)>(data);
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Remove),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn damaged_pickles_never_panic(seed in 0usize..9, edits in prop::collection::vec(edit(), 1..4)) {
        let mut data = seeds().swap_remove(seed);
        for e in edits {
            let n = data.len().max(1);
            match e {
                Edit::Flip(i, b) => { let i = i % n; if i < data.len() { data[i] ^= b | 1; } }
                Edit::Insert(i, b) => data.insert(i % (data.len() + 1), b),
                Edit::Remove(i) => { if !data.is_empty() { data.remove(i % data.len()); } }
                Edit::Truncate(i) => data.truncate(i % n),
            }
        }
        read_all(&data);
    }

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..64)) {
        read_all(&data);
    }
}

#[test]
fn from_reader_reads_what_to_writer_wrote() {
    for p in 0..=5 {
        let mut buf = Vec::new();
        brinery::to_writer(&mut buf, &BTreeMap::from([("k", (1, 2.5))]), p).unwrap();
        let back: BTreeMap<String, (i32, f64)> = brinery::from_reader(&buf[..]).unwrap();
        assert_eq!(back["k"], (1, 2.5));
    }
}
