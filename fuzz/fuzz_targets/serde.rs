//! The serde deserializer (`brinery::from_slice`): never panics, whatever `T` asks for, on any
//! input; errors are ordinary `Error`s. `serde_json::Value` drives `deserialize_any` through the
//! whole graph; the typed targets drive the other entry points (structs, enums, maps with
//! non-string keys, tuples, options, bytes, narrow integers).
#![no_main]

use std::collections::{BTreeMap, HashMap};

use brinery::Limits;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
struct Record {
    id: u32,
    name: String,
    score: Option<f64>,
    tags: Vec<String>,
    #[serde(default)]
    nested: Option<Box<Record>>,
}

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
enum Shape {
    Unit,
    Newtype(i16),
    Tuple(u8, char),
    Struct { w: f32, h: f32 },
}

fn all(data: &[u8], limits: &Limits) {
    let _ = brinery::serde::from_slice_with::<serde_json::Value>(data, limits);
    let _ = brinery::serde::from_slice_with::<Record>(data, limits);
    let _ = brinery::serde::from_slice_with::<Vec<Shape>>(data, limits);
    let _ = brinery::serde::from_slice_with::<HashMap<i64, (bool, Option<u64>)>>(data, limits);
    let _ = brinery::serde::from_slice_with::<BTreeMap<String, Vec<u8>>>(data, limits);
    let _ = brinery::serde::from_slice_with::<(i128, u128, String)>(data, limits);
    let _ = brinery::serde::from_slice_with::<serde_bytes_like::Bytes>(data, limits);
    // borrowing from the read graph
    if let Ok(p) = brinery::Pickle::from_slice_with(data, limits) {
        let _ = brinery::serde::from_pickle_with::<&str>(&p, limits);
        let _ = brinery::serde::from_pickle_with::<Vec<&str>>(&p, limits);
    }
}

/// `Vec<u8>` through `deserialize_byte_buf` (a `bytes` value), without the serde_bytes crate.
mod serde_bytes_like {
    use serde::de::{Deserializer, Visitor};
    pub struct Bytes(#[allow(dead_code)] pub Vec<u8>);
    impl<'de> serde::Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Bytes;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(v.to_vec()))
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                    Ok(Bytes(v))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let tight = Limits::builder()
        .max_depth(64)
        .max_alloc(1 << 16)
        .max_memo(256)
        .build();
    all(data, &tight);
    all(data, &Limits::default());
});
