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
