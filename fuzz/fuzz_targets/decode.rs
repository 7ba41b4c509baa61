//! The opcode decoder: any input splits into operations or one error, with sane offsets.
#![no_main]

use brinery::decode::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut last: Option<usize> = None;
    for op in Decoder::new(data) {
        match op {
            Ok(op) => {
                assert!(op.offset < data.len());
                assert!(last.map_or(true, |prev| op.offset > prev));
                assert_eq!(data[op.offset], op.opcode.byte());
                last = Some(op.offset);
            }
            Err(e) => {
                let offset = e.offset().expect("decoder errors carry an offset");
                assert!(offset <= data.len() as u64);
            }
        }
    }
});
