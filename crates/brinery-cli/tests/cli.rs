//! The `brinery` command as a user runs it: real process, real pipes, real exit codes.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;

use common::{brinery, run, text};

fn temp_file(name: &str, data: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brinery-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write temp file");
    path
}

// pickle.dumps({'a': [1, 2.5, None]}, protocol=2)
const SMALL: &[u8] =
    b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00Nes.";

#[test]
fn dis_reads_a_file_and_stdin_alike() {
    let path = temp_file("small.pkl", SMALL);
    let from_file = run(&["dis", path.to_str().expect("utf-8 path")], b"");
    let from_stdin = run(&["dis", "-"], SMALL);
    assert_eq!(
        from_file.status.code(),
        Some(0),
        "{}",
        text(&from_file.stderr)
    );
    assert_eq!(from_file.stdout, from_stdin.stdout);
    let out = text(&from_file.stdout);
    assert!(out.starts_with("    0: \\x80 PROTO      2\n"), "{out}");
    assert!(
        out.ends_with("highest protocol among opcodes = 2\n"),
        "{out}"
    );
    assert!(from_file.stderr.is_empty());
}

#[test]
fn dis_annotate_adds_descriptions() {
    let out = run(&["dis", "--annotate", "-"], SMALL);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("Protocol version indicator."),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn json_prints_plain_data_as_plain_json() {
    let out = run(&["json", "--compact", "-"], SMALL);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "{\"a\":[1,2.5,null]}\n");
}

#[test]
fn errors_say_what_and_where_and_exit_2() {
    // BINGET of a memo slot that was never stored.
    let out = run(&["json", "-"], b"\x80\x04h\x07.");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        "error: cannot read standard input\n  cause: memo index 7 was never stored at byte 2 (BINGET)\n"
    );

    let out = run(&["dis", "/nonexistent/file.pkl"], b"");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: cannot read /nonexistent/file.pkl\n  cause: "),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

#[test]
fn dis_shows_what_it_could_before_an_error() {
    // A truncated pickle: the lines before the damage are printed, then the error.
    let out = run(&["dis", "-"], &SMALL[..20]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("    0: \\x80 PROTO      2\n"),
        "{stdout}"
    );
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: cannot disassemble standard input\n  cause: "),
        "{err}"
    );
}

#[test]
fn dis_stops_at_hostile_mark_nesting() {
    // 200 KB of MARKs: pickletools would print 80 GB of indentation. brinery prints the first
    // 1,000 levels, then says where it stopped and how to go further.
    let mut data = b"\x80\x02".to_vec();
    data.extend(std::iter::repeat_n(b'(', 200_000));
    data.push(b'.');
    let out = run(&["dis", "-"], &data);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout).lines().count(), 1001);
    assert_eq!(
        text(&out.stderr),
        "error: cannot disassemble standard input\n  cause: open MARK limit of 1000 exceeded at byte 1002 (MARK)\n"
    );
    // A user who trusts the input can raise the bound.
    let nested = [&b"\x80\x02"[..], &[b'('; 1500], &[b't'; 1500], b"."].concat();
    assert_eq!(run(&["dis", "-"], &nested).status.code(), Some(2));
    let out = run(&["dis", "--max-marks", "1500", "-"], &nested);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with("highest protocol among opcodes = 2\n"));
}

#[test]
fn garbage_input_is_an_error_not_a_crash() {
    for input in [
        &b""[..],
        b"\xff\xfe\xfd",
        b"(((((((((",
        b"\x8e\xff\xff\xff\xff\xff\xff\xff\xff",
    ] {
        for cmd in ["dis", "json"] {
            let out = run(&[cmd, "-"], input);
            assert_eq!(out.status.code(), Some(2), "{cmd} {input:?}");
            assert!(text(&out.stderr).starts_with("error: "), "{cmd} {input:?}");
            assert!(!text(&out.stderr).contains("panicked"), "{cmd} {input:?}");
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&["frobnicate"], b"");
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["dis"], b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_closed_pipe_ends_quietly() {
    // A big list: the disassembly is far longer than what the reader takes.
    let mut data = b"\x80\x02]q\x00(".to_vec();
    for i in 0..200_000u32 {
        data.push(b'J');
        data.extend_from_slice(&i.to_le_bytes());
    }
    data.extend_from_slice(b"e.");
    let path = temp_file("big.pkl", &data);
    let mut child = brinery()
        .args(["dis", path.to_str().expect("utf-8 path")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("brinery starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read");
    assert_eq!(first, "    0: \\x80 PROTO      2\n");
    // The reader is dropped here: the pipe closes while brinery is still writing.
    let out = child.wait_with_output().expect("brinery finishes");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

/// `dis` and `json` handed a container (here gzip) say what it is and what to do, after the
/// error of the bytes themselves.
#[test]
fn dis_and_json_name_a_container_they_are_given() {
    let gz = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff\x6b\x60\x99\xca\x00\x00\x9e\x0d\x13\x5b\x04\x00\x00\x00";
    for cmd in ["dis", "json"] {
        let out = run(&[cmd, "-"], gz);
        assert_eq!(out.status.code(), Some(2));
        let err = text(&out.stderr);
        assert!(
            err.contains("the input is a gzip file, not a bare pickle"),
            "{err}"
        );
    }
}

/// The Python that runs `python -m pickletools` for comparison (`$BRINERY_PYTHON`, default
/// the project's `.venv`).
fn python() -> PathBuf {
    let python = std::env::var_os("BRINERY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
        });
    assert!(
        python.exists(),
        "no Python at {} (set BRINERY_PYTHON, or create the venv with scripts/setup.sh)",
        python.display()
    );
    python
}

/// `brinery dis` with several files, `-m`, `-p` and `-o` writes what `python -m pickletools`
/// writes with the same arguments, byte for byte, and fails on the same file: a memo shared
/// across pickles (`-m`) lets a later pickle fetch an earlier one's entries and makes storing
/// one again an error.
#[test]
fn dis_of_several_files_matches_pickletools() {
    // [1, 'x', {'k': 'x'}] at protocol 2 (PUT 0-3), a pickle fetching memo 1 and 0 (valid only
    // after the first with -m), ('y',) at protocol 4 (MEMOIZE numbers on from the memo)
    let a = temp_file(
        "multi-a.pkl",
        b"\x80\x02]q\x00(K\x01X\x01\x00\x00\x00xq\x01}q\x02X\x01\x00\x00\x00kq\x03h\x01se.",
    );
    let b = temp_file("multi-b.pkl", b"\x80\x02h\x01h\x00\x86q\x05.");
    let c = temp_file(
        "multi-c.pkl",
        b"\x80\x04\x95\x07\x00\x00\x00\x00\x00\x00\x00\x8c\x01y\x94\x85\x94.",
    );
    let (a, b, c) = (
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        c.to_str().unwrap(),
    );
    let out_dir = std::env::temp_dir().join(format!("brinery-cli-test-{}", std::process::id()));
    let cases: Vec<Vec<&str>> = vec![
        vec![a, c],
        vec![a, b, c],
        vec!["-m", a, b],
        vec!["-m", a, b, c],
        vec!["-m", "-p", "-- {name} {{x}} --", "-a", "-l", "1", a, c],
        vec!["-m", a, "-"],
    ];
    for args in cases {
        let stdin = std::fs::read(a).unwrap();
        // (pickletools cannot read a pipe: it asks the file for its position; brinery can)
        let theirs = std::process::Command::new(python())
            .args(["-m", "pickletools"])
            .args(&args)
            .stdin(std::fs::File::open(a).unwrap())
            .output()
            .expect("python runs");
        let mut ours_args = vec!["dis"];
        ours_args.extend(&args);
        let ours = run(&ours_args, &stdin);
        assert_eq!(
            text(&ours.stdout),
            text(&theirs.stdout),
            "{args:?}: {}",
            text(&theirs.stderr)
        );
        assert_eq!(
            ours.status.success(),
            theirs.status.success(),
            "{args:?}: {}",
            text(&ours.stderr)
        );
        if !theirs.status.success() {
            // the same complaint, with where
            let theirs_err = text(&theirs.stderr);
            let why = theirs_err
                .lines()
                .last()
                .unwrap()
                .trim_start_matches("ValueError: ");
            assert!(
                text(&ours.stderr).contains(why),
                "{args:?}: {} vs {why}",
                text(&ours.stderr)
            );
        }
        // -o writes the same text to a file
        let (ours_file, theirs_file) = (out_dir.join("ours.txt"), out_dir.join("theirs.txt"));
        let mut with_o = vec!["dis", "-o", ours_file.to_str().unwrap()];
        with_o.extend(&args);
        run(&with_o, &stdin);
        std::process::Command::new(python())
            .args(["-m", "pickletools", "-o", theirs_file.to_str().unwrap()])
            .args(&args)
            .stdin(std::fs::File::open(a).unwrap())
            .output()
            .unwrap();
        assert_eq!(
            std::fs::read(&ours_file).unwrap(),
            std::fs::read(&theirs_file).unwrap(),
            "-o {args:?}"
        );
    }
    let bad = run(&["dis", "-p", "{nme}", a, c], b"");
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("has a field other than {name}"));
}
