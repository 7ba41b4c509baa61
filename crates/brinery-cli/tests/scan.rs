//! `brinery scan` as a user runs it: the readable report, `--json`, `--policy`, `--allow`,
//! directories, and the exit codes (0 clean, 1 findings, 2 errors).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{run, text};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("brinery-scan-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("sub")).expect("temp dir");
    d
}

// pickle.dumps({'a': [1, 2]}, protocol=4)
const CLEAN: &[u8] =
    b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94]\x94(K\x01K\x02es.";
// a reduce of posix.system, protocol 2
const EVIL: &[u8] = b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00hi\x85R.";
// collections.OrderedDict() at protocol 2 with a class outside every profile
const MINE: &[u8] = b"\x80\x02cmypkg.models\nModel\n)R.";

#[test]
fn clean_file_exits_0() {
    let d = dir("clean");
    let p = d.join("ok.pkl");
    std::fs::write(&p, CLEAN).unwrap();
    let out = run(&["scan", p.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{}: ok (0 global(s), 14 opcode(s))\n", p.display())
    );
}

#[test]
fn findings_exit_1_with_offset_opcode_global_rule_and_why() {
    let out = run(&["scan", "-"], EVIL);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "standard input: 1 finding(s)\n  byte 2 GLOBAL posix.system: BRS003 dangerous-global: \
         global posix.system is never allowed: it runs commands and touches files at byte 2 (GLOBAL)\n"
    );
}

#[test]
fn allow_and_policy_choose_what_is_allowed() {
    let out = run(&["scan", "-"], MINE);
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out.stdout);
    assert!(s.contains("BRS001 disallowed-global"), "{s}");
    assert!(
        s.contains(
            "hint: if you trust this file, allow its globals with --allow mypkg.models.Model"
        ),
        "{s}"
    );
    let out = run(&["scan", "--allow", "mypkg.models.Model", "-"], MINE);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    // the deny-list wins over --allow
    let out = run(&["scan", "--allow", "posix.system", "-"], EVIL);
    assert_eq!(out.status.code(), Some(1));
    // OrderedDict is in stdlib-data, not in numpy
    let od = b"\x80\x02ccollections\nOrderedDict\n)R.";
    assert_eq!(
        run(&["scan", "--policy", "stdlib-data", "-"], od)
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        run(&["scan", "--policy", "numpy", "-"], od).status.code(),
        Some(1)
    );
    assert_eq!(
        run(&["scan", "--policy", "none", "-"], od).status.code(),
        Some(1)
    );
    let out = run(&["scan", "--policy", "nope", "-"], od);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown profile \"nope\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn json_output_one_object_per_file_and_directories_recursed() {
    let d = dir("json");
    std::fs::write(d.join("a.pkl"), CLEAN).unwrap();
    std::fs::write(d.join("sub").join("b.pkl"), EVIL).unwrap();
    let out = run(&["scan", "--json", d.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["ok"], true);
    assert!(lines[0]["path"].as_str().unwrap().ends_with("a.pkl"));
    assert_eq!(lines[1]["ok"], false);
    let f = &lines[1]["findings"][0];
    assert_eq!(f["rule"], "BRS003");
    assert_eq!(f["name"], "dangerous-global");
    assert_eq!(f["offset"], 2);
    assert_eq!(f["opcode"], "GLOBAL");
    assert_eq!(f["global"], "posix.system");
    assert_eq!(lines[1]["globals"][0], "posix.system");
}

#[test]
fn unreadable_path_exits_2_even_with_findings() {
    let d = dir("missing");
    let evil = d.join("evil.pkl");
    std::fs::write(&evil, EVIL).unwrap();
    let out = run(
        &[
            "scan",
            evil.to_str().unwrap(),
            d.join("nope.pkl").to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: cannot read"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("BRS003"));
}

#[test]
fn containers_name_their_members() {
    // a zip with a stored member, as PyTorch writes them (the CRC here is wrong on purpose)
    let name = b"archive/data.pkl";
    let mut z = Vec::new();
    z.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00\xef\xbe\xad\xde");
    z.extend_from_slice(&(EVIL.len() as u32).to_le_bytes());
    z.extend_from_slice(&(EVIL.len() as u32).to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&[0, 0]);
    z.extend_from_slice(name);
    z.extend_from_slice(EVIL);
    let out = run(&["scan", "-"], &z);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("  [archive/data.pkl] byte 2 GLOBAL posix.system: BRS003"),
        "{}",
        text(&out.stdout)
    );
}

/// Red-team F15: an untrusted tree with a `model.pkl -> /dev/zero` link, a FIFO and links back
/// to its parent: only regular files are read, links met while walking are not followed, and
/// the walk ends.
#[cfg(unix)]
#[test]
fn directory_walk_reads_regular_files_only_and_never_loops() {
    let d = dir("hostile-tree");
    std::fs::write(d.join("sub").join("ok.pkl"), CLEAN).expect("write");
    std::os::unix::fs::symlink("/dev/zero", d.join("model.pkl")).expect("symlink");
    for name in ["a", "b", "c"] {
        std::os::unix::fs::symlink("..", d.join("sub").join(name)).expect("symlink");
    }
    let fifo = d.join("fifo.pkl");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    let out = run(&["scan", d.to_str().expect("utf-8 path")], b"");
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("ok.pkl: ok"), "{stdout}");
    assert!(
        stderr.contains(
            "model.pkl: symbolic link to something other than a regular file (not followed)"
        ),
        "{stderr}"
    );
    if made {
        assert!(stderr.contains("fifo.pkl: not a regular file"), "{stderr}");
        // named on the command line, a FIFO is an error, never opened
        let out = run(&["scan", fifo.to_str().expect("utf-8 path")], b"");
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// A data directory holds CSV and JSON files next to its pickles: those are skipped and
/// counted, while anything that may be a pickle, whatever its name, is scanned.
#[test]
fn directory_walk_skips_files_that_hold_no_pickle() {
    let d = dir("data-dir");
    std::fs::write(d.join("model.pkl"), CLEAN).unwrap();
    std::fs::write(d.join("table.csv"), b"id,name\n1,alice\n2,bob\n").unwrap();
    std::fs::write(d.join("sub").join("config.json"), b"{\"a\": [1, 2]}").unwrap();
    // a protocol-0 payload named like a CSV, and one that crashes after its call
    std::fs::write(
        d.join("sub").join("x.csv"),
        b"cos\nsystem\n(S'echo hi'\ntR.",
    )
    .unwrap();
    std::fs::write(
        d.join("notes.txt"),
        b"cposix\nsystem\n(S'x'\ntR and then text",
    )
    .unwrap();
    // a damaged file named like a pickle is a finding, not "no pickle"
    std::fs::write(d.join("broken.joblib"), b"not a pickle").unwrap();
    let path = d.to_str().expect("utf-8 path");
    let out = run(&["scan", path], b"");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let files: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("  ")).collect();
    assert_eq!(files.len(), 4, "{stdout}");
    assert!(
        files[0].ends_with("broken.joblib: 1 finding(s)"),
        "{stdout}"
    );
    assert!(
        files[1].ends_with("model.pkl: ok (0 global(s), 14 opcode(s))"),
        "{stdout}"
    );
    assert!(stdout.contains("GLOBAL posix.system: BRS003"), "{stdout}");
    assert!(stdout.contains("GLOBAL os.system: BRS003"), "{stdout}");
    assert!(
        !stdout.contains("table.csv") && !stdout.contains("config.json"),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "brinery scan: 2 file(s) under {path} hold no pickle by content or name and were \
             not scanned (--all-files scans them)"
        )),
        "{stderr}"
    );
    // --all-files scans them too; a file named on the command line is always scanned
    let out = run(&["scan", "--all-files", "-q", path], b"");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("table.csv: ") && stdout.contains("config.json: "),
        "{stdout}"
    );
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
    let csv = d.join("table.csv");
    let out = run(&["scan", csv.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("BRS011 malformed"),
        "{}",
        text(&out.stdout)
    );
    // a directory of data files only is clean
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("table.csv"), b"id,name\n1,alice\n").unwrap();
    let out = run(&["scan", "--json", path], b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    let _ = std::fs::remove_dir_all(&d);
}

/// A model cache links its snapshot files to blobs: a symlink to a regular file inside a
/// directory is read (and a payload behind it found), a link into a directory is not followed.
#[cfg(unix)]
#[test]
fn directory_walk_reads_links_to_regular_files() {
    let d = dir("links");
    let blobs = d.join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join("1234"), EVIL).unwrap();
    let snap = d.join("sub");
    std::os::unix::fs::symlink(blobs.join("1234"), snap.join("pytorch_model.bin")).unwrap();
    std::os::unix::fs::symlink(&blobs, snap.join("blobs-link")).unwrap();
    let out = run(&["scan", snap.to_str().unwrap()], b"");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("pytorch_model.bin: 1 finding(s)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("blobs-link: symbolic link to something other"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// `-q` keeps only files with findings in `--json` too, and `--allow` of a name the deny-list
/// never allows says so instead of doing nothing silently.
#[test]
fn quiet_json_and_allow_of_denied_names() {
    let d = dir("quiet");
    std::fs::write(d.join("a.pkl"), CLEAN).unwrap();
    std::fs::write(d.join("b.pkl"), EVIL).unwrap();
    let out = run(
        &[
            "scan",
            "-q",
            "--json",
            "--allow",
            "posix.system",
            d.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("b.pkl") && !stdout.contains("a.pkl"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr)
            .contains("--allow posix.system has no effect: posix.system is never allowed"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&d);
}
