//! The JSON export (`brinery json`, `Pickle::to_json`): never panics on a pickle that reads; the
//! output is valid JSON, compact and pretty forms hold the same document, and its size stays
//! linear in the input (docs/json-mapping.md: shared values are written once, then `$ref`; a
//! short string may be repeated, at most 6 output bytes per byte of a 64-byte string per GET).
#![no_main]

use brinery::json::{to_json, to_json_pretty, to_writer, Options};
use brinery::{Limits, Pickle};
use libfuzzer_sys::fuzz_target;

/// `text` with each surrogate escape (`\\udXXX`, how the export writes a lone surrogate: valid
/// JSON that Python's `json.loads` reads, but serde_json refuses it) replaced by `\\ufffd`.
fn without_surrogates(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let esc = b.get(i..i + 6).filter(|e| {
            e[0] == b'\\'
                && e[1] == b'u'
                && e[2] == b'd'
                && matches!(e[3], b'8'..=b'9' | b'a'..=b'f')
                && e[4].is_ascii_hexdigit()
                && e[5].is_ascii_hexdigit()
        });
        if esc.is_some() {
            out.push_str("\\ufffd");
            i += 6;
        } else {
            let ch = text[i..].chars().next().expect("i is on a char boundary");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// The JSON document `text` (surrogates replaced), nested as deep as the pickle was.
fn parse(text: &str) -> serde_json::Result<serde_json::Value> {
    use serde::Deserialize;
    let text = without_surrogates(text);
    let mut de = serde_json::Deserializer::from_str(&text);
    de.disable_recursion_limit();
    let v = serde_json::Value::deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::builder().max_depth(500).max_memo(10_000).build();
    let Ok(pickle) = Pickle::from_slice_with(data, &limits) else {
        return;
    };
    let compact = to_json(&pickle);
    let pretty = to_json_pretty(&pickle);
    let a = parse(&compact)
        .unwrap_or_else(|e| panic!("compact output is not JSON ({e}): {compact:.200}"));
    let b =
        parse(&pretty).unwrap_or_else(|e| panic!("pretty output is not JSON ({e}): {pretty:.200}"));
    assert_eq!(a, b, "compact and pretty outputs differ");
    // the writer gives the same bytes as the string form
    let mut written = Vec::new();
    to_writer(&pickle, &mut written, &Options { pretty: false }).expect("a Vec never fails");
    assert_eq!(written, compact.as_bytes());
    // linear: a 2-byte GET of a 64-byte string of control characters is ~400 bytes of JSON;
    // pretty printing adds at most 200 blanks of indentation and a newline per value
    let n = data.len();
    assert!(
        compact.len() <= 512 * n + 4096,
        "{} bytes of JSON for {n}",
        compact.len()
    );
    assert!(
        pretty.len() <= 1024 * n + 4096,
        "{} bytes of JSON for {n}",
        pretty.len()
    );
});
