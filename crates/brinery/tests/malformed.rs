//! Malformed pickles: each one fails with an exact message that says what went wrong and where
//! (`... at byte N (OPCODE)`), and no small input makes the reader do large work or allocate
//! large memory.

use std::time::{Duration, Instant};

use brinery::{Limits, Pickle, Value};

/// `(input, the exact error message)`.
const TABLE: &[(&[u8], &str)] = &[
    // --- empty input, missing STOP, unknown opcodes ---
    (b"", "pickle data was truncated: empty input at byte 0"),
    (b"K\x01", "pickle data was truncated: no STOP opcode at byte 2"),
    (b"\xff", "invalid opcode byte 0xff at byte 0"),
    (b"K\x01\x00.", "invalid opcode byte 0x00 at byte 2"),
    // --- truncation in every argument kind ---
    (
        b"K",
        "pickle data was truncated: argument runs past the end of the input at byte 0 (BININT1)",
    ),
    (
        b"M\x01",
        "pickle data was truncated: argument runs past the end of the input at byte 0 (BININT2)",
    ),
    (
        b"N0j\x01\x02",
        "pickle data was truncated: argument runs past the end of the input at byte 2 (LONG_BINGET)",
    ),
    (
        b"J\x01\x02\x03",
        "pickle data was truncated: argument runs past the end of the input at byte 0 (BININT)",
    ),
    (
        b"\x80\x04\x95\x01\x00",
        "pickle data was truncated: argument runs past the end of the input at byte 2 (FRAME)",
    ),
    (
        b"G\x00\x00",
        "pickle data was truncated: argument runs past the end of the input at byte 0 (BINFLOAT)",
    ),
    (
        b"\x8a",
        "pickle data was truncated: argument runs past the end of the input at byte 0 (LONG1)",
    ),
    (
        b"\x8a\x05\x01",
        "length 5 exceeds the 1 bytes left in the input at byte 0 (LONG1)",
    ),
    (
        b"\x8b\x01\x00",
        "pickle data was truncated: argument runs past the end of the input at byte 0 (LONG4)",
    ),
    (
        b"U",
        "pickle data was truncated: argument runs past the end of the input at byte 0 (SHORT_BINSTRING)",
    ),
    (
        b"C\x03ab",
        "length 3 exceeds the 2 bytes left in the input at byte 0 (SHORT_BINBYTES)",
    ),
    (
        b"\x8c\x05abc",
        "length 5 exceeds the 3 bytes left in the input at byte 0 (SHORT_BINUNICODE)",
    ),
    (
        b"X\x01\x00",
        "pickle data was truncated: argument runs past the end of the input at byte 0 (BINUNICODE)",
    ),
    (
        b"B\x05\x00\x00\x00ab",
        "length 5 exceeds the 2 bytes left in the input at byte 0 (BINBYTES)",
    ),
    (
        b"\x96\x03\x00\x00\x00\x00\x00\x00\x00a",
        "length 3 exceeds the 1 bytes left in the input at byte 0 (BYTEARRAY8)",
    ),
    (
        b"I12",
        "pickle data was truncated: no newline at the end of a text argument at byte 0 (INT)",
    ),
    (
        b"cmod\nname",
        "pickle data was truncated: no newline at the end of a text argument at byte 0 (GLOBAL)",
    ),
    // --- negative and lying lengths ---
    (
        b"T\xff\xff\xff\xff",
        "BINSTRING pickle has negative byte count -1 at byte 0 (BINSTRING)",
    ),
    (
        b"\x8b\xfe\xff\xff\xff",
        "LONG pickle has negative byte count -2 at byte 0 (LONG4)",
    ),
    (
        b"\x80\x04\x8e\x00\x00\x00\x00\x00\x00\x00\x40abc.",
        "length 4611686018427387904 exceeds the 4 bytes left in the input at byte 2 (BINBYTES8)",
    ),
    (
        b"\x8b\xff\xff\xff\x7f\x01\x02\x03.",
        "length 2147483647 exceeds the 4 bytes left in the input at byte 0 (LONG4)",
    ),
    (
        b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00N.",
        "length 16 exceeds the 2 bytes left in the input at byte 2 (FRAME)",
    ),
    // --- bad text arguments ---
    (
        b"Iabc\n.",
        "invalid literal for int() with base 0: 'abc' at byte 0 (INT)",
    ),
    (
        b"I1x\n.",
        "invalid literal for int() with base 0: '1x' at byte 0 (INT)",
    ),
    (
        b"I\n.",
        "pickle data was truncated: empty INT argument at byte 0 (INT)",
    ),
    (
        b"Lxyz\n.",
        "invalid literal for int() with base 0: 'xyz' at byte 0 (LONG)",
    ),
    (
        b"Fabc\n.",
        "could not convert string to float: 'abc' at byte 0 (FLOAT)",
    ),
    (
        b"S'abc\n.",
        "the STRING opcode argument must be quoted at byte 0 (STRING)",
    ),
    (
        b"S'\\x4'\n.",
        "invalid \\x escape at position 0 at byte 0 (STRING)",
    ),
    (
        b"V\\u12\n.",
        "'rawunicodeescape' codec can't decode bytes in position 0-3: truncated \\uXXXX escape at byte 0 (UNICODE)",
    ),
    (
        b"gx\n.",
        "invalid literal for int() with base 10: 'x' at byte 0 (GET)",
    ),
    (b"N0g-1\n.", "negative GET argument at byte 2 (GET)"),
    // --- bad UTF-8 ---
    (
        b"X\x02\x00\x00\x00\xff\xfe.",
        "'utf-8' codec can't decode byte 0xff in position 0 at byte 0 (BINUNICODE)",
    ),
    (
        b"\x80\x04\x8c\x02a\x80.",
        "'utf-8' codec can't decode byte 0x80 in position 1 at byte 2 (SHORT_BINUNICODE)",
    ),
    (
        b"cmod\xff\nname\n.",
        "module name is not valid UTF-8: 'utf-8' codec can't decode byte 0xff in position 3 at byte 0 (GLOBAL)",
    ),
    (
        b"P\xff\n.",
        "persistent IDs in protocol 0 must be ASCII strings at byte 0 (PERSID)",
    ),
    // --- the memo ---
    (
        b"\x80\x04h\x07.",
        "memo index 7 was never stored at byte 2 (BINGET)",
    ),
    (b"g7\n.", "memo index 7 was never stored at byte 0 (GET)"),
    (
        b"N0j\xff\xff\xff\xff.",
        "memo index 4294967295 was never stored at byte 2 (LONG_BINGET)",
    ),
    (
        b"q\x00.",
        "stack underflow: needs 1 item(s), found 0 at byte 0 (BINPUT)",
    ),
    (
        b"\x94.",
        "stack underflow: needs 1 item(s), found 0 at byte 0 (MEMOIZE)",
    ),
    // --- stack underflow, for every opcode that consumes values ---
    (
        b"K\x01a.",
        "stack underflow: needs 2 item(s), found 1 at byte 2 (APPEND)",
    ),
    (
        b"](a.",
        "stack underflow: needs 2 item(s) above the MARK, found 0 at byte 2 (APPEND)",
    ),
    (
        b"}K\x01s.",
        "stack underflow: needs 3 item(s), found 2 at byte 3 (SETITEM)",
    ),
    (
        b"(K\x01e.",
        "APPENDS without a target below the MARK at byte 3 (APPENDS)",
    ),
    (
        b"(K\x01K\x02u.",
        "SETITEMS without a target below the MARK at byte 5 (SETITEMS)",
    ),
    (
        b"(\x90.",
        "ADDITEMS without a target below the MARK at byte 1 (ADDITEMS)",
    ),
    (
        b"\x85.",
        "stack underflow: needs 1 item(s), found 0 at byte 0 (TUPLE1)",
    ),
    (
        b"K\x01\x86.",
        "stack underflow: needs 2 item(s), found 1 at byte 2 (TUPLE2)",
    ),
    (
        b"K\x01(K\x02K\x03\x87.",
        "stack underflow: needs 3 item(s) above the MARK, found 2 at byte 7 (TUPLE3)",
    ),
    (
        b"N(R.",
        "stack underflow: needs 2 item(s) above the MARK, found 0 at byte 2 (REDUCE)",
    ),
    (
        b")R.",
        "stack underflow: needs 2 item(s), found 1 at byte 1 (REDUCE)",
    ),
    (
        b"Nb.",
        "stack underflow: needs 2 item(s), found 1 at byte 1 (BUILD)",
    ),
    (
        b"N\x81.",
        "stack underflow: needs 2 item(s), found 1 at byte 1 (NEWOBJ)",
    ),
    (
        b"N)\x92.",
        "stack underflow: needs 3 item(s), found 2 at byte 2 (NEWOBJ_EX)",
    ),
    (
        b"X\x00\x00\x00\x00\x93.",
        "stack underflow: needs 2 item(s), found 1 at byte 5 (STACK_GLOBAL)",
    ),
    (
        b"Q.",
        "stack underflow: needs 1 item(s), found 0 at byte 0 (BINPERSID)",
    ),
    (
        b"0.",
        "stack underflow: needs 1 item(s), found 0 at byte 0 (POP)",
    ),
    (
        b"2.",
        "stack underflow: needs 1 item(s), found 0 at byte 0 (DUP)",
    ),
    (
        b"\x98.",
        "stack underflow: needs 1 item(s), found 0 at byte 0 (READONLY_BUFFER)",
    ),
    (
        b"(o.",
        "stack underflow: needs 1 item(s) above the MARK, found 0 at byte 1 (OBJ)",
    ),
    (
        b".",
        "stack underflow: needs 1 item(s), found 0 at byte 0 (STOP)",
    ),
    (
        b"N(.",
        "stack underflow: needs 1 item(s) above the MARK, found 0 at byte 2 (STOP)",
    ),
    // --- MARK missing ---
    (b"K\x01t.", "no MARK on the stack at byte 2 (TUPLE)"),
    (b"l.", "no MARK on the stack at byte 0 (LIST)"),
    (b"d.", "no MARK on the stack at byte 0 (DICT)"),
    (b"]K\x01e.", "no MARK on the stack at byte 3 (APPENDS)"),
    (b"\x91.", "no MARK on the stack at byte 0 (FROZENSET)"),
    (b"1.", "no MARK on the stack at byte 0 (POP_MARK)"),
    (b"imod\nname\n.", "no MARK on the stack at byte 0 (INST)"),
    // --- wrong shapes and values ---
    (b"(K\x01d.", "odd number of items for DICT at byte 3 (DICT)"),
    (
        b"}(K\x01u.",
        "odd number of items for SETITEMS at byte 4 (SETITEMS)",
    ),
    (
        b"K\x01K\x02\x93.",
        "STACK_GLOBAL requires str at byte 4 (STACK_GLOBAL)",
    ),
    (b"\x80\x06.", "unsupported pickle protocol 6 at byte 0 (PROTO)"),
    (b"\x80\xff.", "unsupported pickle protocol 255 at byte 0 (PROTO)"),
    (b"\x82\x00.", "EXT specifies code <= 0 at byte 0 (EXT1)"),
    (b"\x83\x00\x00.", "EXT specifies code <= 0 at byte 0 (EXT2)"),
    (
        b"\x84\x00\x00\x00\x00.",
        "EXT specifies code <= 0 at byte 0 (EXT4)",
    ),
    // --- the default depth limit ---
    (
        &[b'('; 10_001],
        "depth limit of 10000 exceeded at byte 10000 (MARK)",
    ),
];

#[test]
fn malformed_inputs_fail_with_exact_messages() {
    let mut wrong = Vec::new();
    for (input, want) in TABLE {
        let got = match Pickle::from_slice(input) {
            Ok(p) => format!("Ok({:?})", p[p.root()]),
            Err(e) => e.to_string(),
        };
        if got != *want {
            wrong.push(format!(
                "input {:?}\n   want {want}\n    got {got}",
                input.escape_ascii().to_string()
            ));
        }
    }
    assert!(TABLE.len() >= 40, "the table covers every malformation");
    assert!(
        wrong.is_empty(),
        "{} of {} messages differ:\n{}",
        wrong.len(),
        TABLE.len(),
        wrong.join("\n")
    );
}

#[test]
fn every_error_carries_its_offset_and_opcode() {
    for (input, _) in TABLE {
        let err = Pickle::from_slice(input).unwrap_err();
        let offset = err.offset().unwrap_or_else(|| panic!("{err}: no offset"));
        assert!(offset <= input.len() as u64, "{err}");
        // The opcode named is the one at that offset, when there is one.
        if let Some(op) = err.opcode() {
            assert_eq!(input.get(offset as usize), Some(&op.byte()), "{err}");
        }
    }
}

/// Errors from limits configured with [`Limits::builder`].
#[test]
fn configured_limits_name_the_limit_and_where() {
    let mut bytes_200 = vec![b'B', 200, 0, 0, 0];
    bytes_200.extend_from_slice(&[b'a'; 200]);
    bytes_200.push(b'.');
    let cases: Vec<(Limits, &[u8], &str)> = vec![
        (
            Limits::builder().max_depth(3).build(),
            b"((((",
            "depth limit of 3 exceeded at byte 3 (MARK)",
        ),
        (
            Limits::builder().max_depth(0).build(),
            b"(l.",
            "depth limit of 0 exceeded at byte 0 (MARK)",
        ),
        (
            Limits::builder().max_memo(2).build(),
            b"K\x01\x94\x94\x94.",
            "memo limit of 2 exceeded at byte 4 (MEMOIZE)",
        ),
        (
            Limits::builder().max_memo(1).build(),
            b"K\x01q\x00q\x00r\xff\xff\xff\xff.",
            "memo limit of 1 exceeded at byte 6 (LONG_BINPUT)",
        ),
        (
            Limits::builder().max_alloc(100).build(),
            &bytes_200,
            "allocation limit of 100 exceeded at byte 0 (BINBYTES)",
        ),
        (
            Limits::builder().max_input(4).build(),
            b"NNNN0000N.",
            "input size limit of 4 exceeded",
        ),
    ];
    for (limits, input, want) in cases {
        let err = Pickle::from_slice_with(input, &limits).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
    // Re-storing an existing memo slot does not count against the memo limit.
    let limits = Limits::builder().max_memo(1).build();
    let p = Pickle::from_slice_with(b"K\x01q\x00q\x00q\x00.", &limits).unwrap();
    assert_eq!(p[p.root()], Value::Int(1));
}

/// Reads `data` with `limits`, asserting it finishes quickly.
fn read_quickly(data: &[u8], limits: &Limits) -> brinery::Result<Pickle> {
    let start = Instant::now();
    let result = Pickle::from_slice_with(data, limits);
    let took = start.elapsed();
    // Generous: these inputs take microseconds; only quadratic or exponential work would fail.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    result
}

#[test]
fn billion_laughs_through_the_memo_stays_small() {
    // 30 levels; level i is a list of 10 references to level i-1: 10^30 leaves when expanded.
    let mut data = b"\x80\x02".to_vec();
    for level in 0u32..30 {
        data.push(b'(');
        for _ in 0..10 {
            if level == 0 {
                data.extend_from_slice(b"K\x01");
            } else {
                data.push(b'j');
                data.extend_from_slice(&(level - 1).to_le_bytes());
            }
        }
        data.push(b'l');
        data.push(b'r');
        data.extend_from_slice(&level.to_le_bytes());
        data.push(b'0');
    }
    data.extend_from_slice(b"j\x1d\x00\x00\x00.");
    assert!(data.len() < 2000);
    // Even a tight allocation bound is enough: sharing costs an id, not a copy.
    let limits = Limits::builder().max_alloc(64 << 10).build();
    let p = read_quickly(&data, &limits).unwrap();
    assert!(p.len() < 100, "{} values", p.len());
    let Value::List(top) = &p[p.root()] else {
        panic!("{:?}", p[p.root()])
    };
    assert_eq!(top.len(), 10);
    assert!(top.iter().all(|&id| id == top[0]));
}

#[test]
fn giant_claimed_sizes_allocate_nothing() {
    let limits = Limits::default();
    for (data, want) in [
        (
            &b"\x8b\xff\xff\xff\x7f"[..],
            "length 2147483647 exceeds the 0 bytes left in the input at byte 0 (LONG4)",
        ),
        (
            b"\x8e\xff\xff\xff\xff\xff\xff\xff\xff",
            "length 18446744073709551615 exceeds the 0 bytes left in the input at byte 0 (BINBYTES8)",
        ),
        (
            b"\x8d\x00\x00\x00\x00\x00\x00\x00\x01x",
            "length 72057594037927936 exceeds the 1 bytes left in the input at byte 0 (BINUNICODE8)",
        ),
        (
            b"\x96\xff\xff\xff\xff\xff\xff\xff\x7f",
            "length 9223372036854775807 exceeds the 0 bytes left in the input at byte 0 (BYTEARRAY8)",
        ),
        (
            b"X\xff\xff\xff\xff",
            "length 4294967295 exceeds the 0 bytes left in the input at byte 0 (BINUNICODE)",
        ),
        (
            b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xffN.",
            "length 18446744073709551615 exceeds the 2 bytes left in the input at byte 2 (FRAME)",
        ),
    ] {
        let err = read_quickly(data, &limits).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn huge_memo_indices_stay_sparse() {
    // 10,000 PUTs at indices near u32::MAX, then GETs of some of them.
    let mut data = b"\x80\x02K\x07".to_vec();
    for i in 0u32..10_000 {
        data.push(b'r');
        data.extend_from_slice(&(u32::MAX - i * 7).to_le_bytes());
    }
    data.push(b'0');
    for i in [0u32, 1, 9_999] {
        data.push(b'j');
        data.extend_from_slice(&(u32::MAX - i * 7).to_le_bytes());
    }
    data.extend_from_slice(b"\x87.");
    let p = read_quickly(&data, &Limits::default()).unwrap();
    let Value::Tuple(items) = &p[p.root()] else {
        panic!("{:?}", p[p.root()])
    };
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|&id| p[id] == Value::Int(7)));
    // The same through text PUT/GET with indices far beyond u32 (up to `isize::MAX`, as CPython).
    let p = read_quickly(
        b"K\x05p9223372036854775807\n0g9223372036854775807\n.",
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(p[p.root()], Value::Int(5));
    let err = read_quickly(b"K\x05p9223372036854775808\n.", &Limits::default()).unwrap_err();
    assert_eq!(err.to_string(), "PUT argument is too large at byte 2 (PUT)");
}

#[test]
fn a_million_marks_stop_at_the_default_depth_limit() {
    let data = vec![b'('; 1_000_000];
    let err = read_quickly(&data, &Limits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "depth limit of 10000 exceeded at byte 10000 (MARK)"
    );
    // Marks that are closed again do not accumulate.
    let mut data = Vec::new();
    for _ in 0..100_000 {
        data.extend_from_slice(b"(l0");
    }
    data.extend_from_slice(b"N.");
    let p = read_quickly(&data, &Limits::default()).unwrap();
    assert_eq!(p[p.root()], Value::None);
}

#[test]
fn many_small_values_are_charged_against_the_allocation_limit() {
    // 100,000 one-byte NONE opcodes inside one list: the allocation bound stops it early.
    let mut data = vec![b'('];
    data.extend(std::iter::repeat(b'N').take(100_000));
    data.extend_from_slice(b"l.");
    let limits = Limits::builder().max_alloc(1 << 16).build();
    let err = read_quickly(&data, &limits).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("allocation limit of 65536 exceeded at byte "),
        "{err}"
    );
    // And the default limits read it.
    let p = read_quickly(&data, &Limits::default()).unwrap();
    assert!(matches!(&p[p.root()], Value::List(items) if items.len() == 100_000));
}
