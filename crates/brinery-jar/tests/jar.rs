//! The jar end to end: round trips, history, branches, dedup figures, crash states, concurrent
//! savers, corruption detection, gc.

use std::fs;
use std::path::{Path, PathBuf};

use brinery::encode::Encoder;
use brinery::Opcode;
use brinery_jar::{Buffer, Error, Jar, Key, LoadOptions, PieceSource, SaveInput, VersionSpec};

fn jar_in(dir: &Path) -> Jar {
    Jar::init(dir.join(".brinery"))
        .expect("jar")
        .with_key(Some(Key::from_bytes([3; 32])))
}

/// Deterministic incompressible bytes (like random float64s).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 32);
    let mut i = 0u64;
    while out.len() < n {
        out.extend_from_slice(
            blake3::hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat()).as_bytes(),
        );
        i += 1;
    }
    out.truncate(n);
    out
}

/// A protocol-5 pickle of `[NEXT_BUFFER, ...]` for `n` buffers, with an in-band payload.
fn oob_pickle(n: usize, inband: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(5).unwrap();
    e.start();
    e.empty_list();
    e.mark();
    e.opcode_boundary().unwrap();
    e.bytes(inband).unwrap();
    for _ in 0..n {
        e.opcode_boundary().unwrap();
        e.opcode(Opcode::NEXT_BUFFER);
    }
    e.opcode(Opcode::APPENDS);
    e.finish().unwrap()
}

fn save(jar: &Jar, branch: &str, name: &str, pickle: &[u8], bufs: &[&[u8]]) -> u64 {
    let mut input = SaveInput::new(pickle);
    input.buffers = bufs.to_vec();
    input.meta = serde_json::json!({"type": "test.Thing"});
    let v = jar.save(branch, name, &input).expect("save");
    v.manifest.expect("manifest").stored
}

fn load_all(jar: &Jar, branch: &str, name: &str, spec: VersionSpec) -> (Vec<u8>, Vec<Vec<u8>>) {
    let l = jar
        .load(branch, name, &spec, LoadOptions { map: false })
        .unwrap_or_else(|e| panic!("load {name}@{spec:?}: {e}"));
    let bufs = l.buffers.iter().map(|b| b.to_vec().unwrap()).collect();
    (l.pickle, bufs)
}

fn chunk_path(jar: &Jar, c: &brinery_jar::ChunkRef) -> PathBuf {
    let f = if c.zstd {
        format!("{}.zst", c.hash)
    } else {
        c.hash.clone()
    };
    jar.root().join("chunks").join(&c.hash[..2]).join(f)
}

/// The manifest file of `name@spec` on main.
fn manifest_path(jar: &Jar, name: &str, spec: VersionSpec) -> PathBuf {
    let id = jar.info("main", name, &spec).unwrap().id.unwrap();
    jar.root()
        .join("manifests")
        .join(&id[..2])
        .join(format!("{id}.json"))
}

fn entry_files(jar: &Jar, branch: &str, name: &str) -> Vec<PathBuf> {
    let dir = jar.root().join("log").join(branch).join(name);
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn round_trip_with_small_and_large_buffers_mapped_or_read() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    let large = noise(3 * (1 << 20) + 12345, 1);
    let zeros = vec![0u8; 2 << 20];
    let small = noise(5000, 2);
    let pickle = oob_pickle(3, b"hello");
    save(&jar, "main", "x", &pickle, &[&large, &small, &zeros]);
    let (p, bufs) = load_all(&jar, "main", "x", VersionSpec::Latest);
    assert_eq!(p, pickle);
    assert_eq!(bufs, vec![large.clone(), small.clone(), zeros.clone()]);

    let mapped = jar
        .load("main", "x", &VersionSpec::Latest, LoadOptions { map: true })
        .unwrap();
    let Buffer::Mapped(m) = &mapped.buffers[0] else {
        panic!("large buffer is mapped")
    };
    assert_eq!(m.len, large.len() as u64);
    assert_eq!(m.pieces.len(), 4);
    for p in &m.pieces {
        assert_eq!(p.offset % (1 << 20), 0);
        assert!(
            matches!(p.source, PieceSource::File(_)),
            "random data stays raw"
        );
    }
    assert!(matches!(mapped.buffers[1], Buffer::Bytes(_)));
    // Zeros compress: the zero-copy layout gives up mapping for a 3x saving.
    let Buffer::Mapped(z) = &mapped.buffers[2] else {
        panic!("large")
    };
    assert!(z
        .pieces
        .iter()
        .all(|p| matches!(p.source, PieceSource::Bytes(_))));
    assert_eq!(mapped.buffers[2].to_vec().unwrap(), zeros);
    assert_eq!(
        mapped.info.manifest.as_ref().unwrap().meta["type"],
        "test.Thing"
    );
    assert_eq!(mapped.info.signature, brinery_jar::SignatureStatus::Trusted);
    // Another user's key sees the version as untrusted.
    let other = Jar::open(jar.root())
        .unwrap()
        .with_key(Some(Key::from_bytes([4; 32])));
    assert_eq!(
        other
            .info("main", "x", &VersionSpec::Latest)
            .unwrap()
            .signature,
        brinery_jar::SignatureStatus::Untrusted
    );
}

#[test]
fn history_numbers_tags_and_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    for i in 0..3u8 {
        save(&jar, "main", "df", &oob_pickle(0, &[i; 10]), &[]);
    }
    let first = load_all(&jar, "main", "df", VersionSpec::Number(1)).0;
    assert_eq!(first, oob_pickle(0, &[0; 10]));
    assert_eq!(
        load_all(&jar, "main", "df", VersionSpec::Number(-1)).0,
        oob_pickle(0, &[2; 10])
    );
    let e = jar
        .load(
            "main",
            "df",
            &VersionSpec::Number(4),
            LoadOptions::default(),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "\"df\" has no version 4 on branch \"main\" (it has 3)"
    );
    jar.tag("main", "df", &VersionSpec::Number(2), "clean")
        .unwrap();
    assert!(matches!(
        jar.tag("main", "df", &VersionSpec::Number(3), "clean"),
        Err(Error::TagExists { .. })
    ));
    assert_eq!(
        load_all(&jar, "main", "df", VersionSpec::Tag("clean".into())).0,
        oob_pickle(0, &[1; 10])
    );
    let log = jar.log("main", "df").unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[1].tags, vec!["clean".to_string()]);

    jar.delete("main", "df").unwrap();
    assert!(jar.names("main").unwrap().is_empty());
    assert!(matches!(
        jar.load("main", "df", &VersionSpec::Latest, LoadOptions::default()),
        Err(Error::Deleted { .. })
    ));
    // History is kept until gc; explicit versions still load.
    assert_eq!(
        load_all(&jar, "main", "df", VersionSpec::Number(1)).0,
        first
    );
    // A new save continues the history.
    save(&jar, "main", "df", &oob_pickle(0, b"again"), &[]);
    assert_eq!(
        jar.info("main", "df", &VersionSpec::Latest)
            .unwrap()
            .version,
        Some(4)
    );
    assert_eq!(jar.log("main", "df").unwrap().len(), 5);
}

#[test]
fn branches_see_their_fork_point_and_leave_each_other_alone() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    save(&jar, "main", "model", &oob_pickle(0, b"m1"), &[]);
    save(&jar, "main", "data", &oob_pickle(0, b"d1"), &[]);
    jar.create_branch("lemmatize", "main").unwrap();
    assert!(matches!(
        jar.create_branch("lemmatize", "main"),
        Err(Error::BranchExists(_))
    ));
    save(&jar, "lemmatize", "model", &oob_pickle(0, b"lem"), &[]);
    save(&jar, "main", "model", &oob_pickle(0, b"m2"), &[]);
    save(&jar, "main", "late", &oob_pickle(0, b"late"), &[]);
    assert_eq!(
        load_all(&jar, "lemmatize", "model", VersionSpec::Latest).0,
        oob_pickle(0, b"lem")
    );
    assert_eq!(
        load_all(&jar, "main", "model", VersionSpec::Latest).0,
        oob_pickle(0, b"m2")
    );
    // The branch inherited version 1 and added its own version 2.
    let log = jar.log("lemmatize", "model").unwrap();
    assert_eq!(
        log.iter()
            .map(|v| (v.branch.as_str(), v.version))
            .collect::<Vec<_>>(),
        vec![("main", Some(1)), ("lemmatize", Some(2))]
    );
    assert_eq!(jar.names("lemmatize").unwrap(), vec!["data", "model"]);
    assert_eq!(jar.names("main").unwrap(), vec!["data", "late", "model"]);
    // A branch of a branch.
    jar.create_branch("deeper", "lemmatize").unwrap();
    jar.delete("deeper", "data").unwrap();
    assert_eq!(jar.names("deeper").unwrap(), vec!["model"]);
    assert_eq!(jar.names("lemmatize").unwrap(), vec!["data", "model"]);
    assert_eq!(jar.branches().unwrap(), vec!["deeper", "lemmatize", "main"]);
    assert!(matches!(
        jar.save("nope", "x", &SaveInput::new(&oob_pickle(0, b""))),
        Err(Error::NoBranch(_))
    ));
    // gc keeps everything any branch still sees.
    jar.gc().unwrap();
    assert_eq!(
        load_all(&jar, "deeper", "model", VersionSpec::Number(1)).0,
        oob_pickle(0, b"m1")
    );
    assert!(jar.verify().unwrap().ok);
}

#[test]
fn a_changed_column_of_a_wide_float_block_adds_less_than_half() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    // A pandas float block is (columns x rows), C-contiguous: one column is one contiguous run.
    let (cols, rows) = (16usize, 100_000usize);
    let mut block = noise(cols * rows * 8, 7);
    let pickle = oob_pickle(1, b"DataFrame header and index");
    let first = save(&jar, "main", "df", &pickle, &[&block]);
    assert!(
        first as usize >= block.len(),
        "random floats are stored raw: {first}"
    );
    let col = 5;
    let fresh = noise(rows * 8, 8);
    block[col * rows * 8..(col + 1) * rows * 8].copy_from_slice(&fresh);
    let second = save(&jar, "main", "df", &pickle, &[&block]);
    assert!(
        second * 2 < first,
        "second version added {second} of {first}"
    );
    let (_, bufs) = load_all(&jar, "main", "df", VersionSpec::Latest);
    assert_eq!(bufs[0], block);

    // Content-defined chunking: bytes inserted at the front of an in-band payload.
    let payload = noise(2 << 20, 9);
    let a = save(&jar, "main", "blob", &oob_pickle(0, &payload), &[]);
    let mut shifted = b"a few new bytes".to_vec();
    shifted.extend_from_slice(&payload);
    let b = save(&jar, "main", "blob", &oob_pickle(0, &shifted), &[]);
    assert!(b * 2 < a, "shifted version added {b} of {a}");
}

#[test]
fn crash_states_leave_older_versions_loadable_and_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    let big1 = noise(2 << 20, 11);
    let big2 = noise(2 << 20, 12);
    let big3 = noise(2 << 20, 13);
    let p = |t: &[u8]| oob_pickle(1, t);
    save(&jar, "main", "obj", &p(b"one"), &[&big1]);
    save(&jar, "main", "obj", &p(b"two"), &[&big2]);
    let check_old = |jar: &Jar| {
        assert_eq!(
            load_all(jar, "main", "obj", VersionSpec::Number(1)).1[0],
            big1
        );
        assert_eq!(
            load_all(jar, "main", "obj", VersionSpec::Number(2)).1[0],
            big2
        );
    };

    // 1. Killed before the log entry: chunks and manifest exist, nothing points at them.
    save(&jar, "main", "obj", &p(b"three"), &[&big3]);
    let entries = entry_files(&jar, "main", "obj");
    fs::remove_file(entries.last().unwrap()).unwrap();
    check_old(&jar);
    assert_eq!(
        jar.info("main", "obj", &VersionSpec::Latest)
            .unwrap()
            .version,
        Some(2)
    );
    assert!(jar.verify().unwrap().ok, "orphans are not damage");
    let gc = jar.gc().unwrap();
    assert_eq!((gc.manifests, gc.chunks), (1, 3), "{gc:?}");
    check_old(&jar);

    // 2. Killed while writing a temporary file.
    fs::write(jar.root().join("tmp").join("123-torn.tmp"), &big3[..1000]).unwrap();
    check_old(&jar);
    let v = jar.verify().unwrap();
    assert!(v.ok && v.temporary == 1, "{v:?}");
    assert_eq!(jar.gc().unwrap().temporary, 1);

    // 3. A torn or garbled log entry (every truncation length, and a flipped byte) is ignored.
    save(&jar, "main", "obj", &p(b"three"), &[&big3]);
    let last = entry_files(&jar, "main", "obj").pop().unwrap();
    let good = fs::read(&last).unwrap();
    let mut damaged: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
    let mut flipped = good.clone();
    flipped[good.len() / 3] ^= 0x20;
    damaged.push(flipped);
    for bad in damaged {
        fs::remove_file(&last).unwrap();
        fs::write(&last, &bad).unwrap();
        check_old(&jar);
        let info = jar.info("main", "obj", &VersionSpec::Latest).unwrap();
        assert_eq!(info.version, Some(2));
        let v = jar.verify().unwrap();
        assert!(!v.ok);
        assert_eq!(v.problems.len(), 1, "{v:?}");
        assert!(
            v.problems[0].problem.starts_with("log entry ignored: "),
            "{v:?}"
        );
        assert_eq!(v.problems[0].versions, vec!["main:obj (one entry lost)"]);
    }
    // The torn entry keeps its sequence number: the next save lands after it.
    save(&jar, "main", "obj", &p(b"four"), &[&big3]);
    assert_eq!(
        jar.info("main", "obj", &VersionSpec::Latest)
            .unwrap()
            .version,
        Some(3)
    );
    check_old(&jar);
    // gc keeps the damaged entry (what it held is unknown) and verify still reports it
    jar.gc().unwrap();
    check_old(&jar);
    assert!(last.exists());
    assert!(!jar.verify().unwrap().ok);
    // the newest save is version 3 by count, but the damaged entry before it may have been a
    // save: asking for "3" is refused, naming the entry, rather than answered with a guess
    let e = jar
        .info("main", "obj", &VersionSpec::Number(3))
        .unwrap_err();
    assert!(matches!(e, Error::Renumbered { .. }), "{e}");
    assert!(e.to_string().contains(&last.display().to_string()), "{e}");
    // numbers before it, the newest by -1, and the latest still resolve
    jar.info("main", "obj", &VersionSpec::Number(2)).unwrap();
    assert_eq!(
        jar.info("main", "obj", &VersionSpec::Number(-1))
            .unwrap()
            .version,
        Some(3)
    );
    let e = jar
        .info("main", "obj", &VersionSpec::Number(-2))
        .unwrap_err();
    assert!(matches!(e, Error::Renumbered { .. }), "{e}");
    // removing the damaged entry by hand (after verify named it) renumbers, as the user chose
    fs::remove_file(&last).unwrap();
    assert!(jar.verify().unwrap().ok);

    // 4. A garbled manifest: that version fails with a clear error, the others load.
    let v3 = jar.info("main", "obj", &VersionSpec::Number(3)).unwrap();
    let id = v3.id.clone().unwrap();
    let mpath = jar
        .root()
        .join("manifests")
        .join(&id[..2])
        .join(format!("{id}.json"));
    let mut m = fs::read(&mpath).unwrap();
    m[10] ^= 1;
    fs::write(&mpath, &m).unwrap();
    let e = jar
        .load(
            "main",
            "obj",
            &VersionSpec::Number(3),
            LoadOptions::default(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("corrupt manifest: content does not match its hash at "),
        "{e}"
    );
    check_old(&jar);
    let v = jar.verify().unwrap();
    assert_eq!(v.problems.len(), 1, "{v:?}");
    assert_eq!(v.problems[0].versions, vec!["main:obj@3"]);
    assert!(matches!(jar.gc(), Err(Error::GcRefused(_))));
    m[10] ^= 1;
    fs::write(&mpath, &m).unwrap();

    // 5. A truncated chunk of one version: that version fails, the others load, verify names it.
    let mf = v3.manifest.unwrap();
    let c = &mf.buffers[0].chunks[1];
    let cpath = chunk_path(&jar, c);
    let data = fs::read(&cpath).unwrap();
    fs::write(&cpath, &data[..data.len() / 2]).unwrap();
    for map in [false, true] {
        let e = jar
            .load("main", "obj", &VersionSpec::Number(3), LoadOptions { map })
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("corrupt chunk: "), "{e}");
    }
    check_old(&jar);
    let v = jar.verify().unwrap();
    assert_eq!(v.problems.len(), 1, "{v:?}");
    assert!(v.problems[0].problem.starts_with("corrupt chunk: "));
    assert_eq!(v.problems[0].versions, vec!["main:obj@3"]);
    // Saving the same content again repairs the damaged chunk.
    save(&jar, "main", "obj", &p(b"four"), &[&big3]);
    assert!(jar.verify().unwrap().ok);
    assert_eq!(
        load_all(&jar, "main", "obj", VersionSpec::Number(3)).1[0],
        big3
    );

    // 6. A torn branch record and a torn tag record.
    jar.create_branch("exp", "main").unwrap();
    jar.tag("main", "obj", &VersionSpec::Number(1), "first")
        .unwrap();
    let bpath = jar.root().join("branches").join("exp.json");
    let b = fs::read(&bpath).unwrap();
    fs::write(&bpath, &b[..b.len() - 5]).unwrap();
    let tpath = jar.root().join("tags").join("obj").join("first.json");
    let t = fs::read(&tpath).unwrap();
    fs::write(&tpath, &t[..t.len() / 2]).unwrap();
    assert!(matches!(
        jar.names("exp"),
        Err(Error::Corrupt {
            what: "branch record",
            ..
        })
    ));
    check_old(&jar);
    let v = jar.verify().unwrap();
    let kinds: Vec<&str> = v.problems.iter().map(|p| p.versions[0].as_str()).collect();
    assert_eq!(kinds, vec!["branch exp", "obj#first"], "{v:?}");
    // gc will not guess what an unreadable branch needs.
    let e = jar.gc().unwrap_err().to_string();
    assert!(
        e.starts_with("gc refused: a branch record is unreadable (corrupt branch record: "),
        "{e}"
    );
    check_old(&jar);
}

#[test]
fn concurrent_savers_of_one_name_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    let threads = 4;
    let per = 8;
    std::thread::scope(|s| {
        for t in 0..threads {
            let jar = &jar;
            s.spawn(move || {
                for i in 0..per {
                    let payload = format!("thread {t} save {i}");
                    save(
                        jar,
                        "main",
                        "shared",
                        &oob_pickle(0, payload.as_bytes()),
                        &[],
                    );
                }
            });
        }
    });
    let log = jar.log("main", "shared").unwrap();
    assert_eq!(log.len(), threads * per);
    let mut seen: Vec<Vec<u8>> = (1..=log.len())
        .map(|v| load_all(&jar, "main", "shared", VersionSpec::Number(v as i64)).0)
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), threads * per, "every save is its own version");
    assert!(jar.verify().unwrap().ok);
}

#[test]
fn corruption_of_a_small_chunk_is_detected_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    let payload = noise(1_500_000, 21);
    save(&jar, "main", "p", &oob_pickle(0, &payload), &[]);
    let m = jar
        .info("main", "p", &VersionSpec::Latest)
        .unwrap()
        .manifest
        .unwrap();
    let c = &m.pickle.chunks[2];
    let path = chunk_path(&jar, c);
    let mut data = fs::read(&path).unwrap();
    data[100] ^= 0xff;
    fs::write(&path, &data).unwrap();
    let e = jar
        .load("main", "p", &VersionSpec::Latest, LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "corrupt chunk: content does not match its hash at {}",
            path.display()
        )
    );
}

#[test]
fn gc_drops_deleted_history_and_unreferenced_data_only() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    let keep = noise(2 << 20, 31);
    let drop_ = noise(2 << 20, 32);
    save(&jar, "main", "keep", &oob_pickle(1, b"k"), &[&keep]);
    save(&jar, "main", "gone", &oob_pickle(1, b"g"), &[&drop_]);
    save(&jar, "main", "gone", &oob_pickle(1, b"g2"), &[&drop_]);
    jar.delete("main", "gone").unwrap();
    let r = jar.gc().unwrap();
    // Two versions: 2 entries, 2 manifests, 2 pickle chunks and the 2 chunks of the shared buffer.
    assert_eq!((r.entries, r.manifests, r.chunks), (2, 2, 4), "{r:?}");
    assert!(r.bytes >= 2 << 20);
    assert!(jar.log("main", "gone").unwrap().iter().all(|v| v.deleted));
    assert_eq!(
        load_all(&jar, "main", "keep", VersionSpec::Latest).1[0],
        keep
    );
    assert!(jar.verify().unwrap().ok);
    // Saving the name again goes on after the tombstone, numbering included (it recorded
    // the two versions before it).
    save(&jar, "main", "gone", &oob_pickle(1, b"g3"), &[&drop_]);
    assert_eq!(
        jar.info("main", "gone", &VersionSpec::Latest)
            .unwrap()
            .version,
        Some(3)
    );
    assert_eq!(jar.gc().unwrap(), brinery_jar::GcReport::default());
}

#[test]
fn save_rejects_a_buffer_count_mismatch_and_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    let e = jar
        .save("main", "x", &SaveInput::new(&oob_pickle(2, b"")))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "the pickle has 2 out-of-band buffers but 0 were given in main:x (new version)"
    );
    let e = jar
        .save("main", "a@b", &SaveInput::new(&oob_pickle(0, b"")))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "invalid name \"a@b\": '@' separates a name from its version"
    );
    assert!(jar.names("main").unwrap().is_empty());
    let odd = "ünï/cödé name.v1";
    save(&jar, "main", odd, &oob_pickle(0, b"ok"), &[]);
    assert_eq!(jar.names("main").unwrap(), vec![odd.to_string()]);
}

#[test]
fn imported_pickles_are_not_signed_and_saves_are() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    let p = oob_pickle(0, b"from elsewhere");
    save(&jar, "main", "own", &p, &[]);
    let file = dir.path().join("downloaded.pkl");
    fs::write(&file, &p).unwrap();
    jar.import_pickle("main", "downloaded", &file, None)
        .expect("import");
    let status = |name: &str| {
        jar.info("main", name, &VersionSpec::Latest)
            .expect("info")
            .signature
    };
    // A file from outside the jar is not one of the key holder's own saves: signing it would let
    // the Python layer load it with full pickle semantics.
    assert_eq!(status("downloaded"), brinery_jar::SignatureStatus::Unsigned);
    assert_eq!(status("own"), brinery_jar::SignatureStatus::Trusted);
    // its bytes are the file's
    assert_eq!(
        load_all(&jar, "main", "downloaded", VersionSpec::Latest).0,
        p
    );
}

#[test]
fn reads_by_a_name_no_save_accepts_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    save(&jar, "main", "a", &oob_pickle(0, b"x"), &[]);
    for bad in ["", "a@1", "a\nb"] {
        let err = jar
            .info("main", bad, &VersionSpec::Latest)
            .expect_err("refused");
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
        assert!(jar.log("main", bad).is_err(), "{bad:?}");
    }
}

/// A jar owns its folder (gc clears its `tmp/`): a new one is made only in a new or empty
/// folder, or one an interrupted `init` left; a folder of other things is refused, untouched.
#[test]
fn a_new_jar_is_made_only_in_an_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    fs::create_dir_all(project.join("tmp")).unwrap();
    fs::write(project.join("tmp").join("scratch.csv"), b"a,b\n").unwrap();
    fs::write(project.join("analysis.ipynb"), b"{}").unwrap();
    let e = Jar::init(&project).unwrap_err();
    assert!(matches!(e, Error::NotEmpty { .. }), "{e}");
    assert!(e.to_string().starts_with("not a jar and not empty"), "{e}");
    assert!(!project.join("jar.json").exists() && !project.join("chunks").exists());
    // only jar folders, but one of them holds a user's file: refused too
    let logs = dir.path().join("logs");
    fs::create_dir_all(logs.join("log")).unwrap();
    fs::write(logs.join("log").join("run.txt"), b"x").unwrap();
    assert!(matches!(Jar::init(&logs), Err(Error::NotEmpty { .. })));
    // new, empty, interrupted (empty jar folders and the lock), and existing: fine
    let fresh = dir.path().join("fresh");
    let jar = Jar::init(&fresh).unwrap();
    save(&jar, "main", "x", b"\x80\x04N.", &[]);
    fs::remove_file(fresh.join("jar.json")).unwrap();
    fs::remove_dir_all(fresh.join("log")).unwrap();
    fs::remove_dir_all(fresh.join("manifests")).unwrap();
    fs::remove_dir_all(fresh.join("chunks")).unwrap();
    Jar::init(&fresh).unwrap();
    Jar::init(&fresh).unwrap();
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    Jar::init(&empty).unwrap();
}

/// Dedup reuses a chunk only if its file holds exactly the bytes: a damaged one (changed or
/// emptied on disk) is replaced by the next save of the same data, which then loads right.
#[test]
fn a_save_never_reuses_a_damaged_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    let big = noise(2 << 20, 7); // raw, fixed chunks
    let text: Vec<u8> = b"compressible ".repeat(20_000); // a zstd chunk
    let pickle = oob_pickle(2, b"in-band");
    save(&jar, "main", "x", &pickle, &[&big, &text]);
    let info = jar.info("main", "x", &VersionSpec::Latest).unwrap();
    let chunks: Vec<brinery_jar::ChunkRef> = info.manifest.unwrap().chunks().cloned().collect();
    let raw = chunks
        .iter()
        .find(|c| !c.zstd && c.size >= 1 << 20)
        .expect("a raw chunk of the big buffer")
        .clone();
    let zst = chunks
        .iter()
        .find(|c| c.zstd)
        .expect("a zstd chunk")
        .clone();
    // flip bytes inside the raw chunk (same size), empty the zstd one
    let rp = chunk_path(&jar, &raw);
    let mut bytes = fs::read(&rp).unwrap();
    bytes[1000] ^= 0xff;
    fs::remove_file(&rp).unwrap();
    fs::write(&rp, &bytes).unwrap();
    let zp = chunk_path(&jar, &zst);
    fs::remove_file(&zp).unwrap();
    fs::write(&zp, b"").unwrap();
    assert!(!jar.verify().unwrap().ok);
    // saving the same data again repairs both; every version then loads the right bytes
    save(&jar, "main", "x", &pickle, &[&big, &text]);
    assert!(jar.verify().unwrap().ok, "{:?}", jar.verify().unwrap());
    for spec in [VersionSpec::Number(1), VersionSpec::Number(2)] {
        let (_, bufs) = load_all(&jar, "main", "x", spec);
        assert_eq!(bufs[0], big);
        assert_eq!(bufs[1], text);
    }
}

/// A gc that refuses (an unreadable manifest of a kept version) changes nothing: the entries
/// of deleted names, the manifests and chunks are all still there.
#[test]
fn a_refused_gc_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    let old = oob_pickle(1, b"old");
    save(&jar, "main", "old", &old, &[&noise(70_000, 1)]);
    save(
        &jar,
        "main",
        "kept",
        &oob_pickle(1, b"kept"),
        &[&noise(70_000, 2)],
    );
    jar.delete("main", "old").unwrap();
    let mpath = manifest_path(&jar, "kept", VersionSpec::Latest);
    let good = fs::read(&mpath).unwrap();
    let mut bad = good.clone();
    bad[10] ^= 1;
    fs::write(&mpath, &bad).unwrap();
    let count = |d: &str| walk_files(&jar.root().join(d));
    let before = (count("log"), count("manifests"), count("chunks"));
    let e = jar.gc().unwrap_err();
    assert!(matches!(e, Error::GcRefused(_)), "{e}");
    assert_eq!((count("log"), count("manifests"), count("chunks")), before);
    // the deleted name's history is still there to load
    let (p, _) = load_all(&jar, "main", "old", VersionSpec::Number(1));
    assert_eq!(p, old);
    // repaired, gc goes ahead
    fs::write(&mpath, &good).unwrap();
    let r = jar.gc().unwrap();
    assert!(r.entries >= 1 && r.manifests >= 1, "{r:?}");
}

fn walk_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        n += if p.is_dir() { walk_files(&p) } else { 1 };
    }
    n
}

/// A tag resolves only on a branch that sees the tagged version: a tag made on an experiment's
/// branch does not hand main the experiment's object, while tags of history a branch inherited
/// load from both.
#[test]
fn tags_do_not_leak_across_branches() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    let one = oob_pickle(0, b"main-1");
    save(&jar, "main", "x", &one, &[]);
    jar.tag("main", "x", &VersionSpec::Latest, "base").unwrap();
    jar.create_branch("exp", "main").unwrap();
    let two = oob_pickle(0, b"exp-2");
    save(&jar, "exp", "x", &two, &[]);
    jar.tag("exp", "x", &VersionSpec::Latest, "best").unwrap();
    let by_tag = |branch: &str, tag: &str| {
        jar.load(
            branch,
            "x",
            &VersionSpec::Tag(tag.into()),
            LoadOptions { map: false },
        )
        .map(|l| l.pickle)
    };
    assert_eq!(by_tag("exp", "best").unwrap(), two);
    let e = by_tag("main", "best").unwrap_err();
    assert!(matches!(e, Error::TagElsewhere { .. }), "{e}");
    assert!(e.is_not_found());
    assert_eq!(by_tag("main", "base").unwrap(), one);
    assert_eq!(by_tag("exp", "base").unwrap(), one);
    // a save on main after the fork, tagged: exp does not see it
    let three = oob_pickle(0, b"main-2");
    save(&jar, "main", "x", &three, &[]);
    jar.tag("main", "x", &VersionSpec::Latest, "later").unwrap();
    assert_eq!(by_tag("main", "later").unwrap(), three);
    assert!(matches!(
        by_tag("exp", "later"),
        Err(Error::TagElsewhere { .. })
    ));
}

/// One damaged manifest does not hide the rest of the history: `log` lists the version with
/// its problem, the others as usual; loading it still fails, naming the file.
#[test]
fn a_damaged_version_is_listed_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    save(&jar, "main", "m", &oob_pickle(0, b"one"), &[]);
    save(&jar, "main", "m", &oob_pickle(0, b"two"), &[]);
    let mpath = manifest_path(&jar, "m", VersionSpec::Number(1));
    let mut m = fs::read(&mpath).unwrap();
    m[10] ^= 1;
    fs::write(&mpath, &m).unwrap();
    let log = jar.log("main", "m").unwrap();
    assert_eq!(log.len(), 2);
    let problem = log[0].problem.as_deref().expect("v1 is damaged");
    assert!(problem.starts_with("corrupt manifest"), "{problem}");
    assert!(log[0].manifest.is_none() && log[1].problem.is_none());
    assert_eq!(log[0].to_json()["problem"], problem);
    assert_eq!(jar.names("main").unwrap(), ["m"]);
    let e = jar
        .load("main", "m", &VersionSpec::Number(1), LoadOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains(&mpath.display().to_string()), "{e}");
    let (p, _) = load_all(&jar, "main", "m", VersionSpec::Latest);
    assert_eq!(p, oob_pickle(0, b"two"));
}

/// Version numbers go on after a delete, also once gc has removed the deleted versions: a
/// number that named the old history never names a new object.
#[test]
fn version_numbers_continue_after_delete_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    for s in [b"a", b"b"] {
        save(&jar, "main", "x", &oob_pickle(0, s), &[]);
    }
    jar.delete("main", "x").unwrap();
    jar.gc().unwrap();
    let c = oob_pickle(0, b"c");
    let v = jar.save("main", "x", &{
        let mut i = SaveInput::new(&c);
        i.meta = serde_json::json!({"type": "test.Thing"});
        i
    });
    assert_eq!(v.unwrap().version, Some(3));
    let e = jar.info("main", "x", &VersionSpec::Number(2)).unwrap_err();
    assert!(matches!(e, Error::NoVersion { .. }), "{e}");
    assert_eq!(load_all(&jar, "main", "x", VersionSpec::Number(3)).0, c);
    assert_eq!(load_all(&jar, "main", "x", VersionSpec::Number(-1)).0, c);
    let versions: Vec<Option<usize>> = jar
        .log("main", "x")
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, [None, Some(3)]);
    // and again: the second delete remembers 3
    jar.delete("main", "x").unwrap();
    jar.gc().unwrap();
    save(&jar, "main", "x", &oob_pickle(0, b"d"), &[]);
    assert_eq!(
        jar.info("main", "x", &VersionSpec::Latest).unwrap().version,
        Some(4)
    );
}

/// `export` replaces a regular file atomically and keeps its permissions, writes through a
/// symbolic link to its target, and writes *into* what is not a regular file (a FIFO, a
/// device) instead of renaming over it.
#[cfg(unix)]
#[test]
fn export_respects_links_special_files_and_permissions() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    let pickle = oob_pickle(0, b"exported");
    save(&jar, "main", "x", &pickle, &[]);
    let export = |p: &Path| jar.export_pickle("main", "x", &VersionSpec::Latest, p);
    // an existing private file stays private
    let private = dir.path().join("private.pkl");
    fs::write(&private, b"old").unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();
    export(&private).unwrap();
    assert_eq!(fs::read(&private).unwrap(), pickle);
    assert_eq!(
        fs::metadata(&private).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // a link stays a link; its target gets the pickle
    let target = dir.path().join("target.pkl");
    fs::write(&target, b"").unwrap();
    let link = dir.path().join("link.pkl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    export(&link).unwrap();
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(&target).unwrap(), pickle);
    // a FIFO is written into (a reader gets the bytes) and stays a FIFO
    let fifo = dir.path().join("fifo.pkl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    if made {
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(&fifo).unwrap())
        };
        export(&fifo).unwrap();
        assert_eq!(reader.join().unwrap(), pickle);
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }
}

/// An imported file holds one pickle: bytes after its STOP are refused at import, with where,
/// rather than stored and refused at every load.
#[test]
fn import_refuses_a_second_pickle_after_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    let one = oob_pickle(0, b"one");
    let two = [one.clone(), oob_pickle(0, b"two")].concat();
    let e = jar
        .import_pickle_bytes("main", "x", &two, Some("two.pkl".into()), None)
        .unwrap_err();
    assert!(e.to_string().contains("follow the pickle's STOP"), "{e}");
    assert!(!jar.contains("main", "x").unwrap());
    jar.import_pickle_bytes("main", "x", &one, Some("one.pkl".into()), None)
        .unwrap();
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Make the chunk folder of one of `data`'s 1 MiB chunks impossible to create (a file stands
/// where the folder would go), so that a save of `data` fails part-way through its chunks.
fn block_a_chunk_of(jar: &Jar, data: &[u8]) -> PathBuf {
    let chunks = jar.root().join("chunks");
    for piece in data.chunks(1 << 20).rev() {
        let hash = blake3::hash(piece).to_hex().to_string();
        let shard = chunks.join(&hash[..2]);
        // (an empty folder, as gc leaves them, can be replaced)
        if !shard.exists() || fs::remove_dir(&shard).is_ok() {
            fs::write(&shard, b"in the way").unwrap();
            return shard;
        }
    }
    panic!("every chunk's folder exists already");
}

/// A save that fails part-way (here a folder that cannot be made; a full disk in life) records
/// nothing and removes the manifest and chunk files it wrote, so a full disk is not left
/// fuller; chunks it shares with earlier versions stay. With another process in the jar, it
/// leaves them and says that gc removes them.
#[test]
fn a_failed_save_removes_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    let old = noise(3 << 20, 1);
    let pickle = oob_pickle(1, b"in-band");
    save(&jar, "main", "x", &pickle, &[&old]);
    // the new buffer starts with the old one's first chunk (deduplicated, not written again)
    let mut new = old[..1 << 20].to_vec();
    new.extend(noise(9 << 20, 2));
    let mut input = SaveInput::new(&pickle);
    input.buffers = vec![&new];

    // 1. the failure comes last, at the log entry of a new name (its folder cannot be made:
    //    a link to nowhere stands in the way): all 9 new chunks and the manifest were written,
    //    and are removed
    let log_blocker = jar.root().join("log").join("main").join("y");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &log_blocker).unwrap();
    let before = files_under(jar.root());
    let e = jar.save("main", "y", &input).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::SaveFailed { .. }), "{e:?}");
    assert!(
        msg.starts_with(
            "saving main:y failed, nothing was saved (the 9 chunk files (9.4 MB) and the manifest it had written were removed): "
        ) && msg.contains(&log_blocker.display().to_string()),
        "{msg}"
    );
    assert_eq!(files_under(jar.root()), before, "{msg}");
    assert!(jar.verify().unwrap().ok);

    // 2. another process holds the jar: the chunks stay, the message says gc removes them
    let other = fs::File::open(jar.root().join("lock")).unwrap();
    other.lock_shared().unwrap();
    let msg = jar.save("main", "y", &input).unwrap_err().to_string();
    assert!(
        msg.contains("(the 9 chunk files (9.4 MB) and the manifest it had written are left in the jar (another process was using the jar); `brinery jar gc`"),
        "{msg}"
    );
    assert!(files_under(jar.root()).len() >= before.len() + 10, "{msg}");
    drop(other);
    let r = jar.gc().unwrap();
    assert_eq!((r.chunks, r.manifests), (9, 1), "{r:?}");
    assert_eq!(files_under(jar.root()), before);

    // a damaged manifest might use them: nothing is removed, and the message says why
    let mpath = manifest_path(&jar, "x", VersionSpec::Latest);
    let good = fs::read(&mpath).unwrap();
    let mut bad = good.clone();
    bad[10] ^= 1;
    fs::write(&mpath, &bad).unwrap();
    let msg = jar.save("main", "y", &input).unwrap_err().to_string();
    assert!(
        msg.contains("it had written are left in the jar (a manifest of the jar could not be read; run verify)"),
        "{msg}"
    );
    fs::write(&mpath, &good).unwrap();
    assert_eq!(jar.gc().unwrap().chunks, 9);
    assert_eq!(files_under(jar.root()), before);
    fs::remove_file(&log_blocker).unwrap();

    // 3. the failure comes among the chunks (how many were written before it depends on the
    //    threads' timing): whatever was written is gone, x is as it was
    let blocker = block_a_chunk_of(&jar, &new);
    let before = files_under(jar.root());
    let e = jar.save("main", "x", &input).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("saving main:x failed, nothing was saved (")
            && (msg.contains("it had written were removed)")
                || msg.contains("(the chunk file (1.0 MB) it had written was removed)")
                || msg.contains("(it wrote nothing)"))
            && msg.contains(&blocker.display().to_string()),
        "{msg}"
    );
    assert_eq!(files_under(jar.root()), before, "{msg}");
    assert_eq!(jar.log("main", "x").unwrap().len(), 1);
    assert_eq!(load_all(&jar, "main", "x", VersionSpec::Latest).1[0], old);

    // with the way clear, the same save lands and both versions load
    fs::remove_file(&blocker).unwrap();
    save(&jar, "main", "x", &pickle, &[&new]);
    assert_eq!(
        load_all(&jar, "main", "x", VersionSpec::Number(1)).1[0],
        old
    );
    assert_eq!(
        load_all(&jar, "main", "x", VersionSpec::Number(2)).1[0],
        new
    );
    assert!(jar.verify().unwrap().ok);
}

/// `tag` looks the version up under the lock gc takes exclusively: a gc that runs while the
/// tag waits cannot remove the version between the lookup and the tag record (which would
/// leave a tag naming nothing, and every later gc refusing).
#[test]
fn a_tag_waits_for_gc_before_looking_the_version_up() {
    let dir = tempfile::tempdir().unwrap();
    let jar = jar_in(dir.path());
    save(&jar, "main", "x", &oob_pickle(0, b"one"), &[]);
    save(&jar, "main", "x", &oob_pickle(0, b"two"), &[]);
    jar.delete("main", "x").unwrap();
    let manifest = manifest_path(&jar, "x", VersionSpec::Number(1));
    // "gc" holds the jar
    let gc = fs::File::open(jar.root().join("lock")).unwrap();
    gc.lock().unwrap();
    let root = jar.root().to_path_buf();
    let tagger = std::thread::spawn(move || {
        Jar::open(&root)
            .unwrap()
            .tag("main", "x", &VersionSpec::Number(1), "keep")
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    // ... and removes version 1 (its manifest) before letting go
    fs::remove_file(&manifest).unwrap();
    drop(gc);
    let e = tagger.join().unwrap().unwrap_err();
    assert!(e.to_string().contains("manifest"), "{e}");
    assert!(!jar.root().join("tags").join("x").join("keep.json").exists());
}
