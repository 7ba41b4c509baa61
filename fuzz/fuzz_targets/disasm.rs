//! The pickletools-compatible disassembler: never panics, output proportional to the input
//! (each line indented by at most `indentlevel * max_marks` blanks). The input is also split in
//! two and disassembled as two pickles sharing one memo (`pickletools -m`).
#![no_main]

use brinery::disasm::{disassemble, disassemble_shared, Options, SharedMemo};
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
    if let Some((&cut, rest)) = data.split_first() {
        let (first, second) = rest.split_at(cut as usize % (rest.len() + 1));
        let mut memo = SharedMemo::default();
        let mut out = Vec::new();
        let _ = disassemble_shared(first, &mut out, &Options::default(), &mut memo);
        let before = memo.len();
        match disassemble_shared(second, &mut out, &Options::default(), &mut memo) {
            Ok(end) => assert!(end <= second.len()),
            Err(e) => assert!(e.offset().is_some_and(|o| o <= second.len() as u64)),
        }
        // a memo only grows: nothing the first pickle stored is forgotten
        assert!(memo.len() >= before);
    }
});
