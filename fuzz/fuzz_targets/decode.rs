//! The opcode decoder: any input splits into operations or one error, with sane offsets; and
//! `pickle_extent` never panics and agrees with it on where the first pickle ends.
#![no_main]

use brinery::decode::{pickle_extent, Decoder, Extent};
use brinery::Opcode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let extent = pickle_extent(data);
    match extent {
        Extent::Complete(n) => assert!(n >= 1 && n <= data.len() && data[n - 1] == b'.'),
        Extent::Incomplete(n) => assert!(n > data.len()),
        Extent::Invalid(n) => assert!(n < data.len()),
    }
    // where the decoder meets a STOP before any error, that is where the first pickle ends
    for op in Decoder::new(data) {
        match op {
            Ok(op) if op.opcode == Opcode::STOP => {
                assert_eq!(extent, Extent::Complete(op.offset + 1));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
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
