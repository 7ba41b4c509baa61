//! The scanner: never panics on any input, plain or as a container; every finding carries a rule
//! code and a message; a clean verdict is only given to a stream that decodes to its last byte
//! and ends with STOP.
#![no_main]

use brinery::scan::{scan, scan_container, ContainerOptions, Policy};
use brinery::decode::Decoder;
use brinery::{Limits, Opcode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let policy = Policy::default();
    let limits = Limits::builder().max_depth(200).max_memo(10_000).build();
    let report = scan(data, &policy, &limits);
    for f in &report.findings {
        assert!(f.rule.code().starts_with("BRS"));
        assert!(!f.message.is_empty());
        assert!(f.offset <= data.len() as u64);
    }
    if report.is_ok() {
        // the scan validated the whole stream: every byte is an operation, the last is STOP
        let ops: Vec<_> = Decoder::new(data)
            .collect::<Result<_, _>>()
            .expect("scan said ok but the stream does not decode");
        assert_eq!(ops.last().map(|o| o.opcode), Some(Opcode::STOP));
        assert_eq!(ops.iter().filter(|o| o.opcode == Opcode::STOP).count(), 1);
    }
    let options = ContainerOptions {
        max_decompressed: 1 << 22,
        max_nesting: 4,
    };
    let _ = scan_container(data, &policy, &limits, &options);
});
