//! Helpers shared by the CLI's integration tests: run the `brinery` binary built for this test
//! run, feed it stdin, and read its output as text.
// Each test file compiles this module on its own and uses only some of it.
#![allow(
    dead_code,
    reason = "each integration test crate uses a different subset"
)]

use std::io::{ErrorKind, Write};
use std::process::{Command, Output, Stdio};

/// The `brinery` binary cargo built for these tests.
pub fn brinery() -> Command {
    Command::new(env!("CARGO_BIN_EXE_brinery"))
}

/// Run `brinery ARGS` with `stdin` as its standard input; its status and output.
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = brinery()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("brinery starts");
    // A command that fails before reading its input (a bad option) closes the pipe early; the
    // test then checks that exit status, so a broken pipe here is not the test's failure.
    let written = child.stdin.take().expect("stdin").write_all(stdin);
    if let Err(err) = written {
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "write stdin: {err}");
    }
    child.wait_with_output().expect("brinery finishes")
}

/// Output bytes as text (lossy: a test then shows what it got, whatever it is).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
