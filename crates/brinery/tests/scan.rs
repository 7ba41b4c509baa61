//! The scanner's tables: every evasion class of issue 4 built as bytes (and the safety corpus
//! when present), the structural-validation table with exact messages, containers, and no
//! panic on mutated inputs.

use brinery::scan::{scan, scan_file_bytes, Access, Policy, Profile, Rule};
use brinery::Limits;

fn policy() -> Policy {
    Policy::default()
}

fn rules(data: &[u8]) -> Vec<Rule> {
    scan(data, &policy(), &Limits::default())
        .findings
        .iter()
        .map(|f| f.rule)
        .collect()
}

fn messages(data: &[u8]) -> Vec<String> {
    scan(data, &policy(), &Limits::default())
        .findings
        .iter()
        .map(|f| format!("{} {}", f.rule.code(), f.message))
        .collect()
}

/// Protocol-4 frame around `body` (which ends with STOP).
fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = b"\x80\x04\x95".to_vec();
    v.extend_from_slice(&(body.len() as u64).to_le_bytes());
    v.extend_from_slice(body);
    v
}

fn su(s: &str) -> Vec<u8> {
    let mut v = vec![0x8c, s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

fn stack_global(m: &str, n: &str) -> Vec<u8> {
    let mut v = su(m);
    v.extend(su(n));
    v.push(0x93);
    v
}

/// The module of scikit-learn's `HistGradientBoosting*`, whose `_raw_predict` the built-in
/// policy lists as a method an instance keeps bound to itself.
const HGB: &str = "sklearn.ensemble._hist_gradient_boosting.gradient_boosting";

#[test]
fn evasions_are_all_flagged() {
    let mut cases: Vec<(&str, Vec<u8>, Rule)> = vec![
        ("os.system", b"cos\nsystem\n(S'echo x'\ntR.".to_vec(), Rule::DangerousGlobal),
        ("posix alias", b"cposix\nsystem\n(S'echo x'\ntR.".to_vec(), Rule::DangerousGlobal),
        ("nt alias", b"cnt\nsystem\n(S'echo x'\ntR.".to_vec(), Rule::DangerousGlobal),
        ("__builtin__ at protocol 2", b"\x80\x02c__builtin__\neval\nX\x01\x00\x00\x001\x85R.".to_vec(), Rule::DangerousGlobal),
        ("_operator alias", b"c_operator\nattrgetter\n(S'x'\ntR.".to_vec(), Rule::DangerousGlobal),
        ("_io alias", b"c_io\nopen\n(S'/etc/passwd'\ntR.".to_vec(), Rule::DangerousGlobal),
        ("dotted name through attributes", framed(&[stack_global("pathlib", "os.system"), b"\x8c\x01x\x85R.".to_vec()].concat()), Rule::DangerousGlobal),
        ("numpy.load in an allowed library", b"cnumpy\nload\n(S'x.npy'\ntR.".to_vec(), Rule::DangerousGlobal),
        ("pandas.read_pickle", b"cpandas\nread_pickle\n(S'x.pkl'\ntR.".to_vec(), Rule::DangerousGlobal),
        ("numpy.testing runner", b"cnumpy.testing._private.utils\nrunstring\n(S'1'\n}tR.".to_vec(), Rule::DangerousGlobal),
        ("joblib.load", b"cjoblib\nload\n(S'x'\ntR.".to_vec(), Rule::DangerousGlobal),
        ("importlib.import_module then call", b"cimportlib\nimport_module\n(S'os'\ntR(S'ls'\ntR.".to_vec(), Rule::DangerousGlobal),
        ("functools.partial", b"cfunctools\npartial\n(cos\nsystem\nS'x'\ntR)R.".to_vec(), Rule::DangerousGlobal),
        ("pkgutil.resolve_name", b"cpkgutil\nresolve_name\n(S'os:system'\ntR.".to_vec(), Rule::DangerousGlobal),
        ("pydoc.locate", b"cpydoc\nlocate\n(S'os.system'\ntR.".to_vec(), Rule::DangerousGlobal),
        ("this on import", b"cthis\ns\n.".to_vec(), Rule::DangerousGlobal),
        ("antigravity on import", b"cantigravity\ngeohash\n.".to_vec(), Rule::DangerousGlobal),
        ("methodcaller", b"coperator\nmethodcaller\n(S'system'\ntR.".to_vec(), Rule::DangerousGlobal),
        ("nested pickle in an argument", [b"ccollections\nOrderedDict\n(C\x0e".to_vec(), b"\x80\x02cos\nsystem\n.".to_vec(), b"tR.".to_vec()].concat(), Rule::DangerousGlobal),
        ("nested protocol-0 pickle in an argument", [b"ccollections\nOrderedDict\n(C\x15".to_vec(), b"cos\nsystem\n(S'ls'\ntR.".to_vec(), b"tR.".to_vec()].concat(), Rule::DangerousGlobal),
        ("unknown module", b"cmypkg.models\nModel\n)R.".to_vec(), Rule::DisallowedGlobal),
        // `_codecs.encode` result used as STACK_GLOBAL module name
        ("computed global name", framed(&[b"c_codecs\nencode\n".to_vec(), su("os"), su("latin1"), b"\x86R".to_vec(), su("system"), b"\x93\x8c\x01x\x85R.".to_vec()].concat()), Rule::ComputedGlobal),
        ("STACK_GLOBAL with a non-string", framed(&[b"K\x01".to_vec(), su("system"), b"\x93.".to_vec()].concat()), Rule::ComputedGlobal),
        ("calling the result of a call", b"ccollections\nOrderedDict\n)R)R.".to_vec(), Rule::CallOfComputed),
        ("calling a memoized call result", b"\x80\x02ccollections\nOrderedDict\n)Rq\x000h\x00)R.".to_vec(), Rule::CallOfComputed),
        // getattr on an instance of an allowed class: `Class.name` must be listed (a bound method)
        ("getattr of an unlisted method of an instance", b"\x80\x02cbuiltins\ngetattr\nccollections\nOrderedDict\n)RX\x04\x00\x00\x00keys\x86R.".to_vec(), Rule::DisallowedGlobal),
        ("getattr of a special name of an instance", b"\x80\x02cbuiltins\ngetattr\nccollections\nOrderedDict\n)RX\x08\x00\x00\x00__init__\x86R.".to_vec(), Rule::UnsafeGetattr),
        ("getattr on a plain list", b"\x80\x02cbuiltins\ngetattr\n]X\x06\x00\x00\x00append\x86R.".to_vec(), Rule::UnsafeGetattr),
        ("getattr on a bound method", framed(&[stack_global("builtins", "getattr"), b"\x94h\x00".to_vec(), stack_global(HGB, "HistGradientBoostingClassifier"), b")\x81".to_vec(), su("_raw_predict"), b"\x86R".to_vec(), su("__func__"), b"\x86R.".to_vec()].concat()), Rule::UnsafeGetattr),
        // a method forwards attribute lookups to its function: BUILD or a container opcode on
        // it writes to the function (session 13's red team)
        ("BUILD on a bound method", framed(&[stack_global(HGB, "HistGradientBoostingClassifier"), b"\x94)\x81\x94".to_vec(), stack_global("builtins", "getattr"), b"h\x01".to_vec(), su("_raw_predict"), b"\x86R}".to_vec(), su("append"), stack_global("collections", "OrderedDict"), b"sb.".to_vec()].concat()), Rule::GlobalMutation),
        ("APPEND on a bound method", framed(&[stack_global("builtins", "getattr"), stack_global(HGB, "HistGradientBoostingClassifier"), b")\x81".to_vec(), su("_raw_predict"), b"\x86RK\x01a.".to_vec()].concat()), Rule::GlobalMutation),
        ("SETITEMS on a bound method", framed(&[stack_global("builtins", "getattr"), stack_global(HGB, "HistGradientBoostingClassifier"), b")\x81".to_vec(), su("_raw_predict"), b"\x86R(K\x01K\x02u.".to_vec()].concat()), Rule::GlobalMutation),
        // a defaultdict's factory is called by a missing key (session 13's red team)
        ("defaultdict of a value-only function", b"\x80\x02ccollections\ndefaultdict\ncsklearn.metrics.pairwise\nrbf_kernel\n\x85R.".to_vec(), Rule::UnsafeArguments),
        ("BUILD on a defaultdict", b"\x80\x02ccollections\ndefaultdict\n)RN}X\x0f\x00\x00\x00default_factoryccollections\nOrderedDict\ns\x86b.".to_vec(), Rule::UnsafeArguments),
        ("calling a bound method", framed(&[stack_global("builtins", "getattr"), stack_global(HGB, "HistGradientBoostingClassifier"), b")\x81".to_vec(), su("_raw_predict"), b"\x86R)R.".to_vec()].concat()), Rule::CallOfComputed),
        ("getattr on an instance a helper made of a ref-only class", b"\x80\x02cbuiltins\ngetattr\nccopyreg\n_reconstructor\ncbuiltins\nobject\ncbuiltins\nobject\nN\x87RX\x04\x00\x00\x00keys\x86R.".to_vec(), Rule::UnsafeGetattr),
        ("getattr with a computed name", b"\x80\x02cbuiltins\ngetattr\nccollections\nOrderedDict\nccollections\nOrderedDict\n)R\x86R.".to_vec(), Rule::UnsafeGetattr),
        ("getattr reaching globals", b"\x80\x02cbuiltins\ngetattr\nccollections\nOrderedDict\nX\x0b\x00\x00\x00__globals__\x86R.".to_vec(), Rule::DangerousGlobal),
        ("getattr smuggled as a value", b"\x80\x02ccollections\nOrderedDict\ncbuiltins\ngetattr\n\x85R.".to_vec(), Rule::UnsafeGetattr),
        ("BUILD on a global", b"\x80\x02ccollections\nOrderedDict\n}X\x01\x00\x00\x00xK\x01sb.".to_vec(), Rule::GlobalMutation),
        ("SETITEMS on a global", b"\x80\x02ccollections\nOrderedDict\n(X\x01\x00\x00\x00xK\x01u.".to_vec(), Rule::GlobalMutation),
        ("APPENDS on a global", b"\x80\x02ccollections\nOrderedDict\n(K\x01e.".to_vec(), Rule::GlobalMutation),
        ("APPEND on a global", b"\x80\x02ccollections\nOrderedDict\nK\x01a.".to_vec(), Rule::GlobalMutation),
        ("SETITEM on a global", b"\x80\x02ccollections\nOrderedDict\nX\x01\x00\x00\x00xK\x01s.".to_vec(), Rule::GlobalMutation),
        ("ref-only global called", b"\x80\x02cbuiltins\nobject\n)R.".to_vec(), Rule::RefOnlyCalled),
        ("constructor helper given a ref-only class", b"\x80\x02ccopyreg\n_reconstructor\ncbuiltins\nobject\ncbuiltins\nobject\nN\x87R.".to_vec(), Rule::UnsafeArguments),
        ("_codecs.encode with a computed argument", b"\x80\x02c_codecs\nencode\nccollections\nOrderedDict\n)R\x85R.".to_vec(), Rule::UnsafeArguments),
        ("extension code", b"\x80\x02\x82\x01.".to_vec(), Rule::ExtensionCode),
        ("persistent id", b"\x80\x02X\x01\x00\x00\x00xQ.".to_vec(), Rule::PersistentId),
        ("payload then crash", b"cos\nsystem\n(S'x'\ntR\xff".to_vec(), Rule::DangerousGlobal),
        ("memo trick: the payload stored then fetched", b"\x80\x02cposix\nsystem\nq\x000h\x00X\x01\x00\x00\x00x\x85R.".to_vec(), Rule::DangerousGlobal),
        ("stacked pickle", b"\x80\x02N.cos\nsystem\n(S'x'\ntR.".to_vec(), Rule::TrailingData),
        // red-team F12: getattr(pandas.DataFrame, 'query') as a value (DataFrame.query is not listed)
        ("getattr result not listed (F12)", framed(&[stack_global("builtins", "getattr"), stack_global("pandas", "DataFrame"), su("query"), b"\x86R.".to_vec()].concat()), Rule::DisallowedGlobal),
        // red-team F12: _new_IntervalIndex(SimpleNamespace(...), {...}) calls cls.from_arrays
        ("helper given an instance as its class (F12)", framed(&[stack_global("pandas.core.indexes.interval", "_new_IntervalIndex"), stack_global("types", "SimpleNamespace"), b")R}\x86R.".to_vec()].concat()), Rule::UnsafeArguments),
        // red-team F12b: an estimator instance in place of the namespace
        ("helper given an estimator instance (F12b)", framed(&[stack_global("pandas.core.indexes.base", "_new_Index"), stack_global("sklearn.linear_model", "LinearRegression"), b")\x81}\x86R.".to_vec()].concat()), Rule::UnsafeArguments),
        // red-team F11: __generator_ctor(x, f) calls f(x)
        ("generator helper given another constructor (F11)", framed(&[stack_global("numpy.random._pickle", "__generator_ctor"), su("MT19937"), stack_global("builtins", "slice"), b"\x86R.".to_vec()].concat()), Rule::UnsafeArguments),
        // red-team F6: _reconstructor's base calls base.__new__ / base.__init__
        ("_reconstructor base not a builtin type (F6)", b"\x80\x02ccopyreg\n_reconstructor\ncpandas\nDataFrame\nccollections\nOrderedDict\nN\x87R.".to_vec(), Rule::UnsafeArguments),
        ("_reconstructor base a call result (F6)", b"\x80\x02ccopyreg\n_reconstructor\ncpandas\nDataFrame\nctypes\nSimpleNamespace\n)RN\x87R.".to_vec(), Rule::UnsafeArguments),
        // red-team F4: BUILD on the cached tzoffset / the tzutc singleton / an enum member
        ("BUILD on a cached tzoffset (F4)", b"\x80\x02cdateutil.tz\ntzoffset\nX\x03\x00\x00\x00ESTJ\xb0\xb9\xff\xff\x86R}X\x07\x00\x00\x00_offsetcdatetime\ntimedelta\nK\x00M\x90~\x86Rsb0N.".to_vec(), Rule::GlobalMutation),
        ("BUILD on the tzutc singleton (F4)", b"\x80\x02cdateutil.tz\ntzutc\n)R}X\t\x00\x00\x00utcoffsetNsb0N.".to_vec(), Rule::GlobalMutation),
        ("BUILD on an enum member (F4)", b"\x80\x02cuuid\nSafeUUID\nK\x00\x85R}X\x06\x00\x00\x00_name_X\x06\x00\x00\x00hackedsb0N.".to_vec(), Rule::GlobalMutation),
        // red-team F10: an object dtype whose BUILD state clears its flags
        ("numpy dtype state with cleared object flags (F10)", b"\x80\x04\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02O8\x89\x88\x87R(K\x03\x8c\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb.".to_vec(), Rule::UnsafeArguments),
        // red-team F10c: a 6-item dtype state
        ("numpy dtype state of 6 items (F10c)", b"\x80\x04\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02i8\x89\x88\x87R(K\x03\x8c\x01<NJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb.".to_vec(), Rule::UnsafeArguments),
        // red-team F2 addendum: dateutil's _unpickle does cls.__new__(cls), obj._load_from_data(...)
        ("tzfile helper given another class", b"\x80\x02cdateutil.tz._tzfile\n_unpickle\n(ccollections\nOrderedDict\nNNNtR.".to_vec(), Rule::UnsafeArguments),
    ];
    // INST / OBJ / NEWOBJ forms
    cases.push((
        "INST",
        b"(S'x'\nios\nsystem\n.".to_vec(),
        Rule::DangerousGlobal,
    ));
    cases.push((
        "OBJ on a call result",
        b"\x80\x02(ccollections\nOrderedDict\n)Ro.".to_vec(),
        Rule::CallOfComputed,
    ));
    let mut missed = Vec::new();
    for (name, data, rule) in &cases {
        let got = rules(data);
        if !got.contains(rule) {
            missed.push(format!(
                "{name}: expected {rule}, got {got:?} ({:?})",
                messages(data)
            ));
        }
    }
    assert!(missed.is_empty(), "missed evasions:\n{}", missed.join("\n"));
}

#[test]
fn structural_validation_table() {
    let table: &[(&[u8], &[&str])] = &[
        (b"", &["BRS011 empty input: no pickle at byte 0"]),
        (b"\x80\x04K", &["BRS011 pickle data was truncated: argument runs past the end of the input at byte 2 (BININT1)"]),
        (b"\x80\x04K\x01", &["BRS011 pickle data was truncated: no STOP opcode at byte 4"]),
        (b"N.N", &["BRS012 1 byte(s) of trailing data after STOP (a loader reading on would run them as another pickle) at byte 2", "BRS011 pickle data was truncated: no STOP opcode at byte 3"]),
        (b"\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00K\x01K\x02\x86.", &["BRS013 opcode runs past the end of its frame at byte 14 (the FRAME length does not match the opcodes inside it) at byte 13 (BININT1)"]),
        (b"\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00N.", &["BRS013 FRAME of 255 bytes runs past the end of the input (2 bytes left) at byte 2 (FRAME)"]),
        (b"\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00N.N", &["BRS013 STOP inside a frame that ends at byte 14 at byte 12 (STOP)", "BRS012 1 byte(s) of trailing data after STOP (a loader reading on would run them as another pickle) at byte 13", "BRS011 pickle data was truncated: no STOP opcode at byte 14"]),
        (b"\x80\x02h\x07.", &["BRS014 memo index 7 was never stored at byte 2 (BINGET)"]),
        (b"\x80\x02t.", &["BRS015 no MARK on the stack at byte 2 (TUPLE)"]),
        (b"\x80\x020.", &["BRS015 stack underflow: the stack is empty at byte 2 (POP)", "BRS015 STOP with 0 items on the stack (expected exactly 1) at byte 3 (STOP)"]),
        (b"\x80\x02(\x85.", &["BRS015 stack underflow: a MARK where a value was expected at byte 3 (TUPLE1)", "BRS015 STOP with a MARK still open at byte 4 (STOP)"]),
        (b"NN.", &["BRS015 STOP with 2 items on the stack (expected exactly 1) at byte 2 (STOP)"]),
        (b"\x80\x02\x80\x04N.", &["BRS016 PROTO repeated at byte 2 (PROTO)"]),
        (b"N\x80\x02.", &["BRS016 PROTO not at the start of the pickle at byte 1 (PROTO)"]),
        (b"\x80\x09N.", &["BRS016 unsupported pickle protocol 9 at byte 0 (PROTO)"]),
        (b"\xffN.", &["BRS011 invalid opcode byte 0xff at byte 0"]),
    ];
    let mut wrong = Vec::new();
    for (data, expected) in table {
        let got = messages(data);
        if got != *expected {
            wrong.push(format!(
                "{data:?}:\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn benign_shapes_are_clean() {
    let cases: &[&[u8]] = &[
        // pickle.dumps({"a": [1, 2]}, protocol=4)
        b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94]\x94(K\x01K\x02es.",
        // bytes at protocol 2: _codecs.encode('\xe9', 'latin1')
        b"\x80\x02c_codecs\nencode\nq\x00X\x02\x00\x00\x00\xc3\xa9q\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.",
        // collections.OrderedDict at protocol 2, items set by SETITEMS on the instance
        b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00aq\x02K\x01s.",
        // defaultdict(list) and defaultdict(None) at protocol 2
        b"\x80\x02ccollections\ndefaultdict\ncbuiltins\nlist\n\x85R.",
        b"\x80\x02ccollections\ndefaultdict\nN\x85R.",
    ];
    for data in cases {
        let r = scan(data, &policy(), &Limits::default());
        assert!(r.is_ok(), "{data:?}: {:?}", r.findings);
    }
    // an attribute by name: getattr(<allowed class>, 'NAME') is clean when the policy lists the
    // result (red-team F12: never any attribute of an allowed class)
    let by_name =
        b"\x80\x02cbuiltins\ngetattr\ncdecimal\nDecimal\nX\x04\x00\x00\x00realq\x00\x86R.";
    assert_eq!(rules(by_name), vec![Rule::DisallowedGlobal]);
    let listed = Policy::builder()
        .all_profiles()
        .allow_dotted_ref("decimal:Decimal.real")
        .unwrap()
        .build();
    let r = scan(by_name, &listed, &Limits::default());
    assert!(r.is_ok(), "{:?}", r.findings);
    // a method an instance keeps bound to itself, listed as `Class.method`: scikit-learn's
    // HistGradientBoosting* with early stopping on a `scoring=` keeps `self._raw_predict`
    // (protocols 2+ make the instance with NEWOBJ, 0 and 1 with copyreg._reconstructor)
    let bound_method_of = |module: &str, class: &str| {
        framed(
            &[
                stack_global(module, class),
                b"\x94)\x81\x94".to_vec(),
                stack_global("builtins", "getattr"),
                b"h\x01".to_vec(),
                su("_raw_predict"),
                b"\x86R\x86.".to_vec(),
            ]
            .concat(),
        )
    };
    let r = scan(
        &bound_method_of(HGB, "HistGradientBoostingClassifier"),
        &policy(),
        &Limits::default(),
    );
    assert!(r.is_ok(), "{:?}", r.findings);
    let reconstructed = format!(
        "(ccopyreg\n_reconstructor\n(c{HGB}\nHistGradientBoostingRegressor\ncbuiltins\nobject\nNtRp0\ncbuiltins\ngetattr\n(g0\nV_raw_predict\ntRt."
    );
    let r = scan(reconstructed.as_bytes(), &policy(), &Limits::default());
    assert!(r.is_ok(), "{:?}", r.findings);
    // the same method of another class (whose instances keep no such method) is not listed
    assert_eq!(
        rules(&bound_method_of("sklearn.linear_model", "LinearRegression")),
        vec![Rule::DisallowedGlobal]
    );
    // the scan reports the global and the call
    let r = scan(cases[2], &policy(), &Limits::default());
    assert_eq!(r.global_names(), vec!["collections.OrderedDict"]);
    assert_eq!(r.calls.len(), 1);
    assert_eq!(r.calls[0].offset, 30);
    // and nothing is allowed under an empty policy
    let r = scan(cases[2], &Policy::empty(), &Limits::default());
    assert_eq!(r.findings[0].rule, Rule::DisallowedGlobal);
    assert_eq!(
        r.findings[0].message,
        "global collections.OrderedDict is not allowed by the policy at byte 2 (GLOBAL)"
    );
    // a dotted name needs every step of its attribute chain allowed; a user entry for a nested
    // name lists its steps as references by itself
    let chain = b"\x80\x02cmypkg\nOuter.Inner\n)R.";
    let p = Policy::builder().allow_call("mypkg", "Outer.Inner").build();
    assert!(scan(chain, &p, &Limits::default()).is_ok());
    assert_eq!(p.lookup("mypkg", "Outer"), Some(Access::Ref));
    // the outer class comes in as a reference only: calling it is still a finding
    let outer = b"\x80\x02cmypkg\nOuter\n)R.";
    assert_eq!(
        scan(outer, &p, &Limits::default()).findings[0].rule,
        Rule::RefOnlyCalled
    );
    // a user entry allows it
    let p = Policy::builder()
        .profile(Profile::Numpy)
        .allow_dotted("collections.OrderedDict")
        .unwrap()
        .build();
    assert!(scan(cases[2], &p, &Limits::default()).is_ok());
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zip_stored(name: &str, data: &[u8], bad_crc: bool) -> Vec<u8> {
    let crc: u32 = if bad_crc { 0xdeadbeef } else { 0 };
    let mut out = Vec::new();
    out.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(data);
    let cd = out.len();
    out.extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    let cd_len = out.len() - cd;
    out.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x00");
    out.extend_from_slice(&(cd_len as u32).to_le_bytes());
    out.extend_from_slice(&(cd as u32).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

#[test]
fn containers_are_opened_by_content() {
    let evil: &[u8] = b"\x80\x02cposix\nsystem\nX\x01\x00\x00\x00x\x85R.";
    let limits = Limits::default();
    let r = scan_file_bytes(&gzip(evil), &policy(), &limits);
    assert_eq!(r.findings[0].rule, Rule::DangerousGlobal);
    assert_eq!(r.findings[0].member.as_deref(), Some("(gzip)"));
    let z = zip_stored("archive/data.pkl", evil, true);
    let r = scan_file_bytes(&z, &policy(), &limits);
    assert_eq!(r.findings[0].member.as_deref(), Some("archive/data.pkl"));
    assert_eq!(r.findings[0].rule, Rule::DangerousGlobal);
    // red-team F16: a protocol-0 pickle in a member not named like one is found by content
    let p0: &[u8] = b"cos\nsystem\n(S'touch x'\ntR.";
    let r = scan_file_bytes(
        &zip_stored("model/weights.bin", p0, false),
        &policy(),
        &limits,
    );
    assert_eq!(
        r.findings[0].rule,
        Rule::DangerousGlobal,
        "{:?}",
        r.findings
    );
    assert_eq!(r.findings[0].member.as_deref(), Some("model/weights.bin"));
    // raw data that merely ends with b'.' is not mistaken for one
    let r = scan_file_bytes(
        &zip_stored("data/0", b"\x00\x01\x02.", false),
        &policy(),
        &limits,
    );
    assert!(r.is_ok(), "{:?}", r.findings);
    // a gzip inside a zip
    let r = scan_file_bytes(&zip_stored("x.gz", &gzip(evil), false), &policy(), &limits);
    assert_eq!(r.findings[0].member.as_deref(), Some("x.gz/(gzip)"));
    // .npy with an object array: the pickle after the header
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }          \n";
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header);
    npy.extend_from_slice(evil);
    let r = scan_file_bytes(&npy, &policy(), &limits);
    assert_eq!(r.findings[0].rule, Rule::DangerousGlobal);
    // a decompression bomb is a finding, not an allocation
    let bomb = gzip(&vec![0u8; 4 << 20]);
    let opts = brinery::scan::ContainerOptions {
        max_decompressed: 1 << 20,
        max_nesting: 4,
        pickles_only: false,
    };
    let r = brinery::scan::scan_container(&bomb, &policy(), &limits, &opts);
    assert_eq!(r.findings[0].rule, Rule::LimitExceeded);
}

/// What `brinery scan` skips in a directory: content that holds no pickle. Everything that
/// would run something under `pickle.load`, whatever its name, is still a pickle.
#[test]
fn content_that_holds_no_pickle_is_told_apart() {
    use brinery::scan::{has_pickle_name, may_hold_pickle};
    let (p, l) = (policy(), Limits::default());
    let pickles: [&[u8]; 7] = [
        b"\x80\x04N.",                                       // PROTO
        b"\x80\x02cposix\nsystem\nX\x01\x00\x00\x00x\x85R.", // PROTO, evil
        b"(dp0\nVa\np1\nI1\ns.",                             // protocol 0, well formed
        b"cos\nsystem\n(S'echo hi'\ntR garbage",             // payload, then a crash
        b"}q\x00X\x01\x00\x00\x00aq\x01K\x01s.",             // protocol 1
        b"index\nfoo\nbar\n", // INST of ndex.foo: could run, so scanned
        b"\x82\x01R garbage", // an extension code, called, then a crash
    ];
    // a payload behind more MARKs than the scan's depth limit (red-team, session 10)
    let mut deep = vec![b'('; 10_001];
    deep.extend_from_slice(b"cos\nsystem\n(S'x'\ntR.");
    assert!(may_hold_pickle(&deep, &p, &l));
    for data in pickles {
        assert!(
            may_hold_pickle(data, &p, &l),
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
    let not_pickles: [&[u8]; 6] = [
        b"id,name\n1,alice\n2,bob\n", // INST reads `d,name`: not an identifier
        b"{\"a\": [1, 2]}",           // `{` is no opcode
        b"\x89PNG\r\n\x1a\n",         // neither
        b"",
        b"col\n1\n2\n3.", // GLOBAL of `ol` then garbage: no name
        b"# notes\n",
    ];
    for data in not_pickles {
        assert!(
            !may_hold_pickle(data, &p, &l),
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
    assert!(has_pickle_name("model.PKL") && has_pickle_name("m.joblib") && has_pickle_name("w.pt"));
    assert!(!has_pickle_name("data.csv") && !has_pickle_name("pkl"));

    // with pickles_only, what holds none is listed as skipped, never a finding; a pickle inside
    // a container is scanned as before
    let only = brinery::scan::ContainerOptions {
        pickles_only: true,
        ..Default::default()
    };
    let csv: &[u8] = b"id,name\n1,alice\n";
    let r = brinery::scan::scan_container(csv, &p, &l, &only);
    assert!(r.findings.is_empty() && r.opcodes == 0, "{:?}", r.findings);
    assert_eq!(r.skipped, [""]);
    let r = brinery::scan::scan_container(&gzip(csv), &p, &l, &only);
    assert_eq!(r.skipped, ["(gzip)"]);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    let evil: &[u8] = b"cos\nsystem\n(S'x'\ntR.";
    let r = brinery::scan::scan_container(&gzip(evil), &p, &l, &only);
    assert_eq!(r.findings[0].rule, Rule::DangerousGlobal);
    // without it (a file named on the command line), a CSV is a malformed pickle
    assert!(!scan_file_bytes(csv, &p, &l).is_ok());
    // zip members that hold no pickle are listed, whatever the option
    let r = scan_file_bytes(&zip_stored("table.csv", csv, false), &p, &l);
    assert!(r.is_ok() && r.members.is_empty(), "{:?}", r.findings);
    assert_eq!(r.skipped, ["table.csv"]);
}

#[test]
fn mutated_inputs_never_panic() {
    let seeds: Vec<Vec<u8>> = vec![
        b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94]\x94(K\x01K\x02es."
            .to_vec(),
        b"\x80\x02cbuiltins\ngetattr\ncdecimal\nDecimal\nX\x04\x00\x00\x00realq\x00\x86R.".to_vec(),
        b"\x80\x02ccopyreg\n_reconstructor\ncbuiltins\nobject\ncbuiltins\nobject\nN\x87R.".to_vec(),
        zip_stored("a.pkl", b"\x80\x02N.", false),
        gzip(b"\x80\x02N."),
    ];
    let mut extra = Vec::new();
    if let Ok(dir) = std::env::var("BRINERY_SAFETY_CORPUS") {
        for sub in ["malicious", "benign"] {
            if let Ok(rd) = std::fs::read_dir(std::path::Path::new(&dir).join(sub)) {
                for e in rd.flatten().take(60) {
                    extra.push(std::fs::read(e.path()).unwrap());
                }
            }
        }
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for seed in seeds.iter().chain(&extra) {
        for _ in 0..300 {
            let mut d = seed.clone();
            for _ in 0..(next() % 4 + 1) {
                if d.is_empty() {
                    break;
                }
                let i = (next() as usize) % d.len();
                match next() % 3 {
                    0 => d[i] = next() as u8,
                    1 => d.truncate(i),
                    _ => d.insert(i, next() as u8),
                }
            }
            let _ = scan_file_bytes(&d, &policy(), &Limits::default());
        }
    }
}

#[test]
fn safety_corpus_when_present() {
    let Ok(dir) = std::env::var("BRINERY_SAFETY_CORPUS") else {
        return; // the pytest suite generates and checks it; here it is an extra
    };
    let dir = std::path::Path::new(&dir);
    let mut missed = Vec::new();
    for e in std::fs::read_dir(dir.join("malicious")).unwrap().flatten() {
        let data = std::fs::read(e.path()).unwrap();
        if scan_file_bytes(&data, &policy(), &Limits::default()).is_ok() {
            missed.push(e.path().display().to_string());
        }
    }
    assert!(
        missed.is_empty(),
        "malicious files scanned clean: {missed:?}"
    );
}

#[test]
fn real_joblib_files_are_read_as_joblib_load_reads_them() {
    // made by joblib.dump (raw, zlib and lzma): numpy arrays follow their NumpyArrayWrapper
    // as raw bytes, the object array as a nested pickle
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/scan/");
    for name in ["arrays.joblib", "arrays.joblib.z", "arrays.joblib.lzma"] {
        let data = std::fs::read(format!("{dir}{name}")).unwrap();
        let r = scan_file_bytes(&data, &policy(), &Limits::default());
        assert!(r.is_ok(), "{name}: {:?}", r.findings);
        assert!(r
            .global_names()
            .contains(&"joblib.numpy_pickle.NumpyArrayWrapper".to_owned()));
    }
    // read as a plain pickle stream, the array bytes are not opcodes: not loadable as one
    let data = std::fs::read(format!("{dir}arrays.joblib")).unwrap();
    assert!(!scan(&data, &policy(), &Limits::default()).is_ok());
    // a payload after the array data is still found
    let mut evil = data.clone();
    let stop = evil.len() - 1;
    evil.truncate(stop);
    evil.extend_from_slice(b"0\x8c\x05posix\x8c\x06system\x93\x8c\x01x\x85R.");
    let r = scan_file_bytes(&evil, &policy(), &Limits::default());
    assert!(
        r.findings.iter().any(|f| f.rule == Rule::DangerousGlobal),
        "{:?}",
        r.findings
    );
}

/// Red-team F6: an index first stored far away (`LONG_BINPUT 5000`), then covered by the memo's
/// dense growth and stored again, must count once, as in the loader; otherwise every later
/// MEMOIZE lands one slot off and `GET 3` hides `builtins.getattr` from the scan.
#[test]
fn memo_far_index_covered_by_dense_growth_counts_once() {
    let data = b"\x80\x04Nr\x88\x13\x00\x000Nr\xff\x0f\x00\x000Nr\x88\x13\x00\x000Nr\x03\x00\x00\x000cbuiltins\ngetattr\n\x940ctypes\nSimpleNamespace\n)R(\x8c\x07__new__j\x03\x00\x00\x00db.";
    let report = scan(data, &policy(), &Limits::default());
    assert!(
        report.findings.iter().any(|f| f.rule == Rule::UnsafeGetattr
            && f.global == Some(("builtins".into(), "getattr".into()))),
        "{:?}",
        messages(data)
    );
}

mod memo_differential {
    use super::*;
    use brinery::value::Value;
    use brinery::Pickle;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// One memo store: `None` is MEMOIZE, `Some(i)` is LONG_BINPUT i (BINPUT when small).
    fn store() -> impl Strategy<Value = Option<u32>> {
        prop_oneof![
            Just(None),
            (0u32..24).prop_map(Some),
            (4085u32..4110).prop_map(Some),
            (4990u32..5010).prop_map(Some),
            (9000u32..9010).prop_map(Some),
            (13_000u32..13_010).prop_map(Some),
        ]
    }

    /// The stream: each store memoizes a distinct string `m<k>`; then every stored index is
    /// fetched and used as the module of a STACK_GLOBAL, all in one list. The scan reports the
    /// globals it resolves in order; the value reader and a plain map (CPython's memo: MEMOIZE
    /// stores at the number of distinct indices) say what the loader fetches.
    fn program(stores: &[Option<u32>]) -> (Vec<u8>, Vec<String>) {
        let mut model: HashMap<u32, String> = HashMap::new();
        let mut p = b"\x80\x04".to_vec();
        for (k, s) in stores.iter().enumerate() {
            let text = format!("m{k}");
            p.extend(su(&text));
            let idx = match s {
                None => {
                    p.push(0x94);
                    model.len() as u32
                }
                Some(i) if *i < 256 => {
                    p.extend([b'q', *i as u8]);
                    *i
                }
                Some(i) => {
                    p.push(b'r');
                    p.extend(i.to_le_bytes());
                    *i
                }
            };
            model.insert(idx, text);
            p.push(b'0');
        }
        let mut idxs: Vec<u32> = model.keys().copied().collect();
        idxs.sort_unstable();
        p.extend(b"](");
        for i in &idxs {
            p.push(b'j');
            p.extend(i.to_le_bytes());
            p.extend(su("n"));
            p.push(0x93);
        }
        p.extend(b"e.");
        (p, idxs.iter().map(|i| model[i].clone()).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn scan_memo_matches_the_loader(stores in proptest::collection::vec(store(), 1..40)) {
            let (data, expected) = program(&stores);
            let report = scan(&data, &Policy::default(), &Limits::default());
            let scanned: Vec<String> = report.globals.iter().map(|g| g.module.clone()).collect();
            prop_assert_eq!(&scanned, &expected);
            let pickle = Pickle::from_slice(&data).expect("the value reader reads the stream");
            let Some(Value::List(items)) = pickle.get(pickle.root()) else {
                panic!("root is not a list");
            };
            let loaded: Vec<String> = items
                .iter()
                .map(|id| match pickle.get(*id) {
                    Some(Value::Global(g)) => g.module.to_string(),
                    other => panic!("not a global: {other:?}"),
                })
                .collect();
            prop_assert_eq!(&loaded, &expected);
        }
    }
}

/// Red-team F14: `slice(slice(...))` nested through call results, with no MARK at all, is bounded
/// (a million levels crash CPython when the object is freed).
#[test]
fn call_results_nested_too_deep_are_a_finding() {
    let nested = |depth: usize| {
        // callee memoized at 0; `depth` callees fetched, then the innermost argument tuple,
        // then one REDUCE per level
        let mut q = b"\x80\x04".to_vec();
        q.extend(stack_global("builtins", "slice"));
        q.extend(b"\x94");
        q.extend(b"h\x00".repeat(depth - 1));
        q.extend(b"N\x85R");
        q.extend(b"\x85R".repeat(depth - 1));
        q.push(b'.');
        q
    };
    let report = scan(&nested(3000), &policy(), &Limits::default());
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.rule == Rule::LimitExceeded && f.message.contains("nested")),
        "{:?}",
        &report.findings[..report.findings.len().min(3)]
    );
    let ok = scan(&nested(3), &policy(), &Limits::default());
    assert!(ok.is_ok(), "{:?}", ok.findings);
}

/// Red-team F8/F9: a long dotted name is refused by length before any quadratic work, and one
/// name referenced many times through the memo is recorded at most `MAX_RECORDED` times.
#[test]
fn long_names_are_refused_and_repeated_names_stay_small() {
    let name = "a.".repeat(40_000) + "a";
    let mut p = b"\x80\x04".to_vec();
    p.extend(b"\x8c\x08builtins");
    p.push(b'X');
    p.extend((name.len() as u32).to_le_bytes());
    p.extend(name.as_bytes());
    p.extend(b"\x93.");
    let r = scan(&p, &policy(), &Limits::default());
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    assert_eq!(r.findings[0].rule, Rule::Malformed);
    assert!(r.findings[0].message.contains("longer than the limit"));
    // 200 000 references to one allowed name, all in one list
    let mut q = b"\x80\x04\x8c\x0bcollections\x940\x8c\x0bOrderedDict\x940](".to_vec();
    q.extend(b"h\x00h\x01\x93".repeat(200_000));
    q.extend(b"e.");
    let r = scan(&q, &policy(), &Limits::default());
    assert!(r.is_ok(), "{:?}", &r.findings[..r.findings.len().min(3)]);
    assert_eq!(r.globals.len(), brinery::scan::Report::MAX_RECORDED);
}

/// `pyarrow.lib._restore_array((<ty>, 2, 0, 0, [None, py_buffer(<buffer>)], [], None))`, as
/// pandas' arrow-backed arrays pickle (protocol 4), with `<ty>` = `type_for_alias(<alias>)`
/// unless `ty` is given.
fn arrow_array(alias: &[u8], buffer: &[u8], ty: Option<&[u8]>) -> Vec<u8> {
    let mut b = stack_global("pyarrow.lib", "_restore_array");
    b.push(b'(');
    match ty {
        Some(t) => b.extend_from_slice(t),
        None => {
            b.extend(stack_global("pyarrow.lib", "type_for_alias"));
            b.extend_from_slice(alias);
            b.extend_from_slice(b"\x85R");
        }
    }
    b.extend_from_slice(b"K\x02K\x00K\x00](N");
    b.extend(stack_global("pyarrow.lib", "py_buffer"));
    b.extend_from_slice(buffer);
    b.extend_from_slice(b"\x85Re]Nt\x85R.");
    framed(&b)
}

#[test]
fn arrow_arrays_follow_the_argument_rules() {
    let bytes8 = |d: &[u8]| {
        let mut v = vec![0x96];
        v.extend_from_slice(&(d.len() as u64).to_le_bytes());
        v.extend_from_slice(d);
        v
    };
    let clean = arrow_array(&su("large_string"), &bytes8(b"ab"), None);
    let r = scan(&clean, &policy(), &Limits::default());
    assert!(r.is_ok(), "{:?}", r.findings);
    let bad: &[(&str, Vec<u8>)] = &[
        ("alias int", arrow_array(b"K\x05", &bytes8(b"ab"), None)),
        ("alias odd", arrow_array(&su("x; y"), &bytes8(b"ab"), None)),
        ("buffer str", arrow_array(&su("string"), &su("text"), None)),
        (
            "type str",
            arrow_array(b"", &bytes8(b"ab"), Some(&su("string"))),
        ),
    ];
    for (what, data) in bad {
        let m = messages(data);
        assert!(
            m.iter()
                .any(|m| m.starts_with("BRS008") && m.contains("pyarrow.lib.")),
            "{what}: {m:?}"
        );
    }
    // the three names are the pandas profile's: an empty policy refuses them
    let r = scan(&clean, &Policy::empty(), &Limits::default());
    assert!(r.findings.iter().all(|f| f.rule == Rule::DisallowedGlobal) && !r.is_ok());
}

/// Outside joblib files the scan keeps no table of dict entries (`Sym::Dict` without one): a
/// dict must still be a dict, not inert data, wherever a rule tells them apart. A numpy dtype's
/// BUILD state must be numpy's tuple: a dict there (empty, filled by SETITEMS or SETITEM,
/// built by DICT, fetched from the memo, in the fast loop or not) is a finding in the full
/// scan and in the verdict a safe load runs.
#[test]
fn dicts_without_an_entry_table_are_still_dicts_to_the_rules() {
    let dtype = b"\x80\x04\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02i8\x89\x88\x87R".to_vec();
    let states: [(&str, &[u8]); 6] = [
        ("empty dict", b"}"),
        (
            "dict filled by SETITEMS",
            b"}(\x8c\x01aK\x01\x8c\x01bK\x02u",
        ),
        ("dict filled by SETITEM", b"}\x8c\x05dtypeK\x01s"),
        ("dict built by DICT", b"(\x8c\x05shapeK\x01d"),
        ("dict fetched from the memo", b"}\x94(\x8c\x01aK\x01u0h\x00"),
        ("dict through PUT and GET", b"}q\x07\x8c\x01aK\x01s0h\x07"),
    ];
    for (what, state) in states {
        let mut data = dtype.clone();
        data.extend_from_slice(state);
        data.extend_from_slice(b"b.");
        let full = scan(&data, &policy(), &Limits::default());
        let verdict = brinery::scan::scan_verdict(&data, &policy(), &Limits::default());
        for (how, report) in [("scan", &full), ("scan_verdict", &verdict)] {
            let rules: Vec<Rule> = report.findings.iter().map(|f| f.rule).collect();
            assert_eq!(
                rules,
                vec![Rule::UnsafeArguments],
                "{what} ({how}): {:?}",
                report.findings
            );
        }
    }
    // the same stream with numpy's own tuple state is clean (the findings above are the dicts)
    let mut data = dtype;
    data.extend_from_slice(b"(K\x03\x8c\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb.");
    assert!(scan(&data, &policy(), &Limits::default()).is_ok());
}

#[test]
fn a_scan_sees_nothing_of_the_scan_before_it() {
    // Each thread keeps the (emptied) tables of its last scan for the next one: whatever the
    // previous scan left in its memo, globals, tuples, calls or intern table (findings, a
    // clean load, a stream cut short, one too large for its tables to be kept) must not show
    // in the next scan's verdict or report.
    let limits = Limits::default();
    let evil =
        b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x04echo\x94\x85\x94R\x94.".to_vec();
    // a clean stream that fetches memo slots 0-2 (GET of slots the evil one filled with the
    // global, its name and the call; here they hold plain strings)
    let clean = b"\x80\x04(\x8c\x01a\x94\x8c\x01b\x94\x8c\x01c\x94h\x00h\x01h\x02t\x94.".to_vec();
    // fetches a memo slot it never stored (the evil stream stored it): a finding
    let unstored = b"\x80\x04h\x02.".to_vec();
    let truncated = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94".to_vec();
    // a list of 20k memoized strings: tables too large to be kept
    let mut big = b"\x80\x04](".to_vec();
    for _ in 0..20_000 {
        big.extend_from_slice(b"\x8c\x01x\x94");
    }
    big.extend_from_slice(b"e.");
    let expect = |data: &[u8]| {
        (
            scan(data, &policy(), &limits).findings.len(),
            scan(data, &policy(), &limits).globals.len(),
        )
    };
    let first: Vec<_> = [&evil, &clean, &unstored, &truncated, &big]
        .iter()
        .map(|d| expect(d))
        .collect();
    assert!(first[0].0 > 0 && first[0].1 == 1, "{:?}", first[0]);
    assert_eq!(first[1], (0, 0));
    assert!(first[2].0 > 0, "{:?}", first[2]);
    assert!(first[3].0 > 0, "{:?}", first[3]);
    assert_eq!(first[4], (0, 0));
    let order = [0, 1, 2, 0, 3, 1, 4, 1, 0, 2, 4, 3, 1, 1, 0];
    let all = [&evil, &clean, &unstored, &truncated, &big];
    for &i in &order {
        assert_eq!(expect(all[i]), first[i], "stream {i} after others");
        let verdict = brinery::scan::scan_verdict(all[i], &policy(), &limits);
        assert_eq!(
            verdict.findings.is_empty(),
            first[i].0 == 0,
            "verdict of stream {i}"
        );
    }
}

/// A global the policy let through as written is cached with the policy, and later scans find
/// it by its bytes; below protocol 3 the loader maps Python 2 names first, so the same bytes
/// there must still be resolved through the mapping, never from that cache.
#[test]
fn cached_verdicts_do_not_skip_the_python2_mapping() {
    let policy = Policy::builder()
        .allow_call("UserDict", "IterableUserDict")
        .build();
    let call = [
        stack_global("UserDict", "IterableUserDict"),
        b")R.".to_vec(),
    ]
    .concat();
    let at = |proto: u8| {
        let mut v = vec![0x80, proto];
        v.extend_from_slice(&call);
        scan(&v, &policy, &Limits::default())
            .findings
            .iter()
            .map(|f| format!("{} {}", f.rule.code(), f.message))
            .collect::<Vec<_>>()
    };
    // twice: the first resolves and caches the name, the second finds it in the cache
    assert_eq!(at(4), Vec::<String>::new());
    assert_eq!(at(4), Vec::<String>::new());
    // protocol 2: `UserDict.IterableUserDict` is loaded as `collections.UserDict`
    let findings = at(2);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        findings[0].contains("collections.UserDict is not allowed by the policy"),
        "{findings:?}"
    );
}

/// `functools.partial(f, ...)`: clean when `f` is a global the policy allows to call, in the
/// call and in the BUILD state that replaces it; anything else is a finding.
#[test]
fn partial_wraps_only_allowed_functions() {
    // partial(<func>) then BUILD((<state func>, (), {}, None)), protocol 4
    fn partial_of(func: &[u8], state_func: &[u8]) -> Vec<u8> {
        let mut b = stack_global("functools", "partial");
        b.extend_from_slice(func);
        b.push(0x85); // TUPLE1
        b.push(b'R');
        b.push(b'(');
        b.extend_from_slice(state_func);
        b.extend_from_slice(b")}N"); // EMPTY_TUPLE, EMPTY_DICT, NONE
        b.push(b't');
        b.push(b'b');
        b.push(b'.');
        framed(&b)
    }
    let check_array = stack_global("sklearn.utils.validation", "check_array");
    let ordered = stack_global("collections", "OrderedDict");
    // what HistGradientBoosting's categorical preprocessing pickles
    assert_eq!(
        rules(&partial_of(&check_array, &check_array)),
        [],
        "{:?}",
        messages(&partial_of(&check_array, &check_array))
    );
    assert_eq!(rules(&partial_of(&ordered, &ordered)), []);
    // a reference-only global (tzfile(path) opens the path), a helper with rules of its own,
    // getattr, a call result, a denied global: in the call or in the state
    let tzfile = stack_global("dateutil.tz", "tzfile");
    let reconstructor = stack_global("copyreg", "_reconstructor");
    let mut result = ordered.clone();
    result.extend_from_slice(b")R");
    // a reference-only one is named (BRS002, as for a direct call): the user may allow it
    for data in [
        partial_of(&tzfile, &check_array),
        partial_of(&check_array, &tzfile),
    ] {
        assert_eq!(rules(&data), [Rule::RefOnlyCalled], "{:?}", messages(&data));
        assert!(
            messages(&data)[0].starts_with(
                "BRS002 global dateutil.tz.tzfile is given to functools.partial, which would call it"
            ),
            "{:?}",
            messages(&data)
        );
    }
    for bad in [&reconstructor, &result] {
        let r = rules(&partial_of(bad, &check_array));
        assert!(r.contains(&Rule::UnsafeArguments), "{r:?}");
        let m = messages(&partial_of(&check_array, bad));
        assert!(
            m.iter()
                .any(|m| m
                    .starts_with("BRS008 BUILD state of a functools.partial whose function is")),
            "{m:?}"
        );
    }
    assert!(rules(&partial_of(
        &stack_global("builtins", "getattr"),
        &check_array
    ))
    .iter()
    .any(|r| matches!(r, Rule::UnsafeGetattr | Rule::UnsafeArguments)));
    let system = stack_global("os", "system");
    assert!(rules(&partial_of(&check_array, &system)).contains(&Rule::DangerousGlobal));
    // calling the partial during the load is calling a call result
    let mut b = stack_global("functools", "partial");
    b.extend_from_slice(&check_array);
    b.extend_from_slice(b"\x85R)R.");
    assert!(rules(&framed(&b)).contains(&Rule::CallOfComputed));
    // a state the scan cannot read into is refused
    let mut b = stack_global("functools", "partial");
    b.extend_from_slice(&check_array);
    b.extend_from_slice(b"\x85RNb.");
    assert!(rules(&framed(&b)).contains(&Rule::UnsafeArguments));
}

/// A tar archive of `(name, content)` regular files (ustar headers, as Python's tarfile writes).
fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let entries: Vec<(&str, u8, Option<&str>, &[u8])> =
        files.iter().map(|(n, c)| (*n, b'0', None, *c)).collect();
    tar_raw(&entries)
}

/// A tar archive of `(name, type flag, size field or None for the content's, content)`.
fn tar_raw(files: &[(&str, u8, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, flag, size_field, content) in files {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        let size = match size_field {
            Some(f) => format!("{f:\0<12}"),
            None => format!("{:011o}\0", content.len()),
        };
        h[124..136].copy_from_slice(size.as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = *flag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(content);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn tar_archives_are_opened_by_content() {
    let (p, l) = (policy(), Limits::default());
    let evil: &[u8] = b"\x80\x02cposix\nsystem\nX\x01\x00\x00\x00x\x85R.";
    let clean: &[u8] = b"\x80\x04N.";
    let csv: &[u8] = b"id,name\n1,alice\n";
    let archive = tar(&[("table.csv", csv), ("frame.pkl", clean), ("weights", evil)]);
    let r = scan_file_bytes(&archive, &p, &l);
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    assert_eq!(r.findings[0].rule, Rule::DangerousGlobal);
    assert_eq!(r.findings[0].member.as_deref(), Some("weights"));
    assert_eq!(r.members, ["frame.pkl", "weights"]);
    assert_eq!(r.skipped, ["table.csv"]);
    // inside gzip, as `to_pickle("x.pkl.tar.gz")` would not write but a user might
    let r = scan_file_bytes(&gzip(&tar(&[("a.pkl", clean)])), &p, &l);
    assert!(
        r.is_ok() && r.members == ["(gzip)/a.pkl"],
        "{:?} {:?}",
        r.findings,
        r.members
    );
    // a damaged header is a finding, not a silent skip
    let mut bad = tar(&[("a.pkl", clean), ("b.pkl", evil)]);
    bad[1024 + 10] ^= 0xff; // the second header's name: its checksum no longer adds up
    let r = scan_file_bytes(&bad, &p, &l);
    assert_eq!(r.findings[0].rule, Rule::BadContainer, "{:?}", r.findings);
    // a pickle holding "ustar" at offset 257 is still a pickle
    let mut data = b"\x80\x04\x95\x00\x01\x00\x00\x00\x00\x00\x00B\xf0\x00\x00\x00".to_vec();
    data.resize(257, b'a');
    data.extend_from_slice(b"ustar");
    data.resize(16 + 0xf0, b'a');
    data.extend_from_slice(b"0.");
    let r = scan_file_bytes(&data, &p, &l);
    assert!(r.members.is_empty(), "{:?}", r.members);

    // red-team, session 10: what Python's tarfile reads, the scan reads too
    // - a member of a type tarfile reads as a regular file
    let r = scan_file_bytes(&tar_raw(&[("x", b'Z', None, evil)]), &p, &l);
    assert_eq!(
        r.findings[0].rule,
        Rule::DangerousGlobal,
        "{:?}",
        r.findings
    );
    // - a size that is not plain octal (tarfile reads `0_1000` as 512) is a finding, not 0
    let mut a = tar_raw(&[("x", b'0', Some("0_1000"), &[])]);
    a.truncate(512);
    a.extend_from_slice(&tar(&[("y", evil)]));
    let r = scan_file_bytes(&a, &p, &l);
    assert!(
        r.findings.iter().any(|f| f.rule == Rule::BadContainer),
        "{:?}",
        r.findings
    );
    // - a pax header's size applies to the next member
    let rec = format!(
        "{} size={}\n",
        9 + evil.len().to_string().len() + 1,
        evil.len()
    );
    let rec = if rec.len() != rec[..rec.find(' ').unwrap()].parse::<usize>().unwrap() {
        format!("{} size={}\n", rec.len(), evil.len())
    } else {
        rec
    };
    let mut hidden = evil.to_vec();
    hidden.resize(512, 0);
    let a = tar_raw(&[
        ("pax", b'x', None, rec.as_bytes()),
        ("x", b'0', Some("0"), &hidden),
    ]);
    let r = scan_file_bytes(&a, &p, &l);
    assert!(
        r.findings.iter().any(|f| f.rule == Rule::DangerousGlobal),
        "{:?} {:?}",
        r.findings,
        r.members
    );
    // - a tar whose first header is also a pickle (`cos\nsystem\n...` in the name field)
    let name = "cos\nsystem\n(S'x'\ntR.";
    let r = scan_file_bytes(&tar(&[(name, clean)]), &p, &l);
    assert!(
        r.findings.iter().any(|f| f.rule == Rule::DangerousGlobal),
        "{:?}",
        r.findings
    );
}

/// Protocol-0 integers are read as `_pickle.c` reads them (`strtol` base 0 for `INT`, the
/// text ends at a NUL), so the size an allocating call is given is the one `pickle.load`
/// passes. Before, `I0x7fffffffff` (512 GB to CPython) and `I1099511627776\0` were integers
/// the scan could not read, which its size rule lets through as data.
#[test]
fn text_integers_are_read_as_the_loader_reads_them() {
    let bytearray_of = |arg: &[u8]| {
        let mut v = b"cbuiltins\nbytearray\n(".to_vec();
        v.extend_from_slice(arg);
        v.extend_from_slice(b"tR.");
        v
    };
    for too_big in [
        &b"I0x7fffffffff\n"[..],
        b"I1099511627776\0junk\n",
        b"L0o17777777777777L\n",
        b"I\x0b1099511627776\n",
        b"I1_099_511_627_776\n",
    ] {
        let found = messages(&bytearray_of(too_big));
        assert!(
            found.len() == 1 && found[0].contains("is given a size of"),
            "{too_big:?}: {found:?}"
        );
    }
    assert!(rules(&bytearray_of(b"I017\n")).is_empty()); // octal 15
    assert_eq!(
        messages(&bytearray_of(b"Iabc\n")),
        ["BRS011 invalid literal for int() with base 0: 'abc' at byte 21 (INT)"]
    );
    // memo indices too: `p1\0x` stores slot 1, which the GET then finds
    assert!(rules(b"I5\np1\0x\n0g1\n.").is_empty());
    assert_eq!(
        messages(b"I5\np-1\n."),
        ["BRS011 negative PUT argument at byte 3 (PUT)"]
    );
}
