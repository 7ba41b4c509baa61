//! The pickletools-compatible disassembler: never panics, output proportional to the input
//! (each line indented by at most `indentlevel * max_marks` blanks).
#![no_main]

use brinery::disasm::{disassemble, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for options in [
        Options::default(),
        Options {
            annotate: 30,
            indentlevel: 2,
            max_marks: 50,
        },
    ] {
        let mut out = Vec::new();
        match disassemble(data, &mut out, &options) {
            Ok(end) => assert!(end <= data.len()),
            Err(e) => {
                let offset = e.offset().expect("disassembler errors carry an offset");
                assert!(offset <= data.len() as u64);
            }
        }
        let widest_indent = options.indentlevel * options.max_marks;
        assert!(out.len() <= (256 + widest_indent) * data.len() + 4096);
    }
});
