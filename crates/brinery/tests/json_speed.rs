//! How fast the JSON export is on a large, typical pickle. Ignored by default (it wants a release
//! build and never asserts time); run with
//! `cargo test --release -p brinery --test json_speed -- --ignored --nocapture`.

use std::time::Instant;

use brinery::{Pickle, Value};

/// `[{"id": i, "name": "row", "score": i / 4, "tags": ["a", "b"]} for i in range(1_000_000)]` at
/// protocol 4, built by hand in the exact layout CPython writes (memoized keys, `BINGET` after
/// the first row, `SETITEMS`/`APPENDS` in batches of 1000).
fn big_pickle() -> Vec<u8> {
    let mut d = b"\x80\x04]\x94(".to_vec();
    for i in 0..1_000_000u32 {
        if i > 0 && i % 1000 == 0 {
            d.extend_from_slice(b"e(");
        }
        d.extend_from_slice(b"}\x94(");
        if i == 0 {
            d.extend_from_slice(b"\x8c\x02id\x94");
        } else {
            d.extend_from_slice(b"h\x02");
        }
        d.push(b'J');
        d.extend_from_slice(&(i as i32).to_le_bytes());
        if i == 0 {
            d.extend_from_slice(b"\x8c\x04name\x94\x8c\x03row\x94\x8c\x05score\x94");
        } else {
            d.extend_from_slice(b"h\x03h\x04h\x05");
        }
        d.push(b'G');
        d.extend_from_slice(&(i as f64 / 4.0).to_be_bytes());
        if i == 0 {
            d.extend_from_slice(b"\x8c\x04tags\x94]\x94(\x8c\x01a\x94\x8c\x01b\x94eu");
        } else {
            d.extend_from_slice(b"h\x06](h\x08h\x09eu");
        }
    }
    d.extend_from_slice(b"e.");
    d
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn one_million_small_dicts() {
    let data = big_pickle();
    let p = Pickle::from_slice(&data).unwrap();
    let Value::List(items) = &p[p.root()] else {
        panic!()
    };
    assert_eq!(items.len(), 1_000_000);
    for (name, pretty) in [("compact", false), ("pretty", true)] {
        let t = Instant::now();
        let out = if pretty {
            brinery::json::to_json_pretty(&p)
        } else {
            brinery::json::to_json(&p)
        };
        let dt = t.elapsed();
        println!(
            "{name}: {} MB of JSON from {} MB of pickle in {dt:?} ({:.0} MB/s)",
            out.len() >> 20,
            data.len() >> 20,
            out.len() as f64 / dt.as_secs_f64() / 1e6
        );
        if !pretty {
            assert!(out.starts_with(
                r#"[{"id":0,"name":"row","score":0.0,"tags":["a","b"]},{"id":1,"name":"row","score":0.25,"#
            ));
        }
    }
    let t = Instant::now();
    let mut sink = std::io::sink();
    brinery::json::to_writer(&p, &mut sink, &Default::default()).unwrap();
    println!("to_writer(io::sink()): {:?}", t.elapsed());
}
