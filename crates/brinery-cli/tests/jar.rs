//! `brinery jar ...` as a user runs it: real process, real jar folder, real exit codes; export
//! checked by loading the exported file with the stock `pickle` of a real CPython with numpy and
//! pandas (`$BRINERY_PYTHON`, default `.venv/bin/python`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use brinery_jar::{Jar, Key, SaveInput};
use common::text;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn python() -> PathBuf {
    let python = std::env::var_os("BRINERY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "no Python at {} (set BRINERY_PYTHON, or create the venv with scripts/setup.sh)",
        python.display()
    );
    python
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn jar_path(&self) -> PathBuf {
        self.dir.path().join(".brinery")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("key")
    }

    /// `brinery jar ARGS` to run in the temp dir (so the jar is found by walking up).
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_brinery"));
        cmd.arg("jar")
            .args(args)
            .current_dir(self.dir.path())
            .env("BRINERY_KEY_FILE", self.key_path())
            .env_remove("BRINERY_JAR")
            .env_remove("BRINERY_BRANCH");
        cmd
    }

    /// Run `brinery jar ARGS` in the temp dir.
    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("brinery runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "brinery jar {args:?}:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Run `brinery jar ARGS`, expect exit 2, return standard error.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(2), "brinery jar {args:?}");
        text(&out.stderr)
    }

    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, data).expect("write");
        p
    }

    fn jar(&self) -> Jar {
        Jar::init(self.jar_path())
            .expect("jar")
            .with_key(Some(Key::load_or_create(&self.key_path()).expect("key")))
    }
}

// pickle.dumps({'a': [1, 2.5, None]}, protocol=2)
const SMALL: &[u8] =
    b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00Nes.";
// pickle.dumps([1, 2], protocol=4)
const OTHER: &[u8] = b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e.";

#[test]
fn sizes_are_written_in_decimal_units() {
    // as the Python API, its notebook tables and the jar's error messages write them
    let env = Env::new();
    // pickle.dumps(bytes(2_000_000), protocol=4) without its frame
    let mut data = b"\x80\x04B".to_vec();
    data.extend_from_slice(&2_000_000u32.to_le_bytes());
    data.resize(data.len() + 2_000_000, 0);
    data.push(b'.');
    let file = env.file("zeros.pkl", &data);
    env.ok(&["import", "zeros", file.to_str().unwrap()]);
    let ls = env.ok(&["ls"]);
    let row = ls
        .lines()
        .find(|l| l.starts_with("zeros"))
        .expect("zeros listed");
    assert!(row.contains(" 2.0 MB"), "{ls}");
    let log = env.ok(&["log", "zeros"]);
    assert!(log.contains(" 2.0 MB"), "{log}");
    for out in [ls, log, env.ok(&["show", "zeros"])] {
        assert!(!out.contains("iB"), "{out}");
    }
}

#[test]
fn history_tags_delete_and_gc_through_the_cli() {
    let env = Env::new();
    let a = env.file("a.pkl", SMALL);
    let b = env.file("b.pkl", OTHER);
    // import creates the jar where none exists yet (here: the current directory).
    let out = env.ok(&["import", "cfg", a.to_str().unwrap(), "--note", "first"]);
    assert!(out.starts_with("saved cfg@1 on branch main"), "{out}");
    env.ok(&["import", "cfg", b.to_str().unwrap()]);
    let ls = env.ok(&["ls"]);
    assert!(ls.starts_with("NAME"), "{ls}");
    assert!(ls.lines().nth(1).unwrap().starts_with("cfg   2 "), "{ls}");

    let log = env.ok(&["log", "cfg"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines[1].starts_with("1 ") && lines[1].ends_with("first"),
        "{log}"
    );

    assert_eq!(
        env.ok(&["tag", "cfg", "1", "good"]),
        "tagged cfg@1 as good\n"
    );
    let show = env.ok(&["show", "cfg@good"]);
    assert!(show.starts_with("cfg@1  (branch main"), "{show}");
    // an imported file is not one of the key holder's own saves: stored unsigned, it loads
    // through the safe loader
    assert!(show.contains("signature  unsigned"), "{show}");
    assert!(show.contains("tags       good"), "{show}");
    let shown: serde_json::Value =
        serde_json::from_str(&env.ok(&["show", "cfg@-1", "--json"])).expect("json");
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["meta"]["imported_from"], "b.pkl");

    // Export of an in-band pickle is the same bytes.
    let exported = env.dir.path().join("out.pkl");
    env.ok(&["export", "cfg@1", exported.to_str().unwrap()]);
    assert_eq!(std::fs::read(&exported).unwrap(), SMALL);

    // Branches: a save on an experiment branch leaves main alone.
    assert_eq!(
        env.ok(&["branch", "exp"]),
        "created branch exp from main (use it with `--branch=exp` or BRINERY_BRANCH=exp)\n"
    );
    let again = env.fails(&["branch", "exp"]);
    assert!(again.contains("branch \"exp\" already exists"), "{again}");
    let missing = env.fails(&["--branch", "nope", "branch", "exp2"]);
    assert!(
        missing.contains("branch \"nope\" does not exist"),
        "{missing}"
    );
    env.ok(&["--branch", "exp", "import", "cfg", a.to_str().unwrap()]);
    assert!(env.ok(&["log", "cfg"]).lines().count() == 3);
    assert!(env.ok(&["log", "cfg", "--branch", "exp"]).lines().count() == 4);
    assert_eq!(env.ok(&["branches"]), "  exp\n* main\n");
    // a branch of the branch sees what exp saw at the fork
    env.ok(&["--branch", "exp", "branch", "exp2"]);
    assert!(env.ok(&["log", "cfg", "--branch", "exp2"]).lines().count() == 4);
    assert_eq!(
        env.ok(&["branches", "--branch", "exp2"]),
        "  exp\n* exp2\n  main\n"
    );

    assert!(env
        .ok(&["rm", "cfg"])
        .starts_with("deleted cfg on branch main"));
    assert_eq!(
        env.ok(&["ls"]),
        format!(
            "no objects on branch main in {}\n",
            env.jar_path().display()
        )
    );
    let log = env.ok(&["log", "cfg"]);
    assert!(log.contains("(deleted)"), "{log}");
    let gc: serde_json::Value = serde_json::from_str(&env.ok(&["gc", "--json"])).expect("json");
    // The branch still sees main's history, so nothing of it may go.
    assert_eq!(gc["manifests"], 0, "{gc}");
    assert!(env
        .ok(&["show", "cfg@1", "--branch", "exp", "--json"])
        .contains("\"version\": 1"));
    let verify = env.ok(&["verify"]);
    assert!(verify.starts_with("ok: "), "{verify}");
}

#[test]
fn errors_exit_2_with_a_message() {
    let env = Env::new();
    let out = env.run(&["ls"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: no jar found (no .brinery folder at or above "),
        "{err}"
    );

    env.jar();
    let out = env.run(&["show", "nothing"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: no object named \"nothing\" on branch \"main\"\n"
    );
    let bad = env.file("bad.pkl", b"\x80\x04K");
    let out = env.run(&["import", "x", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("\n  cause: bad pickle: pickle data was truncated: argument runs past the end of the input at byte 2 (BININT1) in "),
        "{err}"
    );
    assert_eq!(err.matches("cause:").count(), 1, "{err}");
    let unfinished = env.file("unfinished.pkl", b"\x80\x04N");
    let out = env.run(&["import", "x", unfinished.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("cause: pickle ends without STOP at byte 3 in "),
        "{err}"
    );
}

#[test]
fn verify_exits_1_and_names_the_damaged_versions() {
    let env = Env::new();
    let jar = env.jar();
    let big: Vec<u8> = (0..300_000u32)
        .flat_map(|i| (i * 7919).to_le_bytes())
        .collect();
    let mut e = brinery::encode::Encoder::new(4).unwrap();
    e.start();
    e.bytes(&big).unwrap();
    let pickle = e.finish().unwrap();
    jar.save("main", "blob", &SaveInput::new(SMALL)).unwrap();
    jar.save("main", "blob", &SaveInput::new(&pickle)).unwrap();
    assert!(env.ok(&["verify"]).starts_with("ok: "));
    // Damage one chunk that only version 2 has.
    let m = jar
        .info("main", "blob", &brinery_jar::VersionSpec::Number(2))
        .unwrap()
        .manifest
        .unwrap();
    let c = &m.pickle.chunks[1];
    let path = env
        .jar_path()
        .join("chunks")
        .join(&c.hash[..2])
        .join(if c.zstd {
            format!("{}.zst", c.hash)
        } else {
            c.hash.clone()
        });
    let mut data = std::fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    std::fs::write(&path, &data).unwrap();
    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    assert!(report.contains("corrupt chunk: "), "{report}");
    assert!(report.contains("  affects: main:blob@2\n"), "{report}");
    assert!(report.contains("1 problems: "), "{report}");
    let json: serde_json::Value =
        serde_json::from_slice(&env.run(&["verify", "--json"]).stdout).expect("json");
    assert_eq!(json["ok"], false);
    assert_eq!(json["problems"][0]["versions"][0], "main:blob@2");
    // Version 1 still loads and exports.
    let out = env.dir.path().join("v1.pkl");
    env.ok(&["export", "blob@1", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), SMALL);
}

const MAKE: &str = r#"
import pickle, sys, pathlib
import numpy as np, pandas as pd
d = pathlib.Path(sys.argv[1])
rng = np.random.default_rng(0)
objs = {
    "arr": rng.random((700, 300)),                     # 1.6 MiB: zero-copy layout
    "small": np.arange(1000, dtype=np.int32),          # CDC layout
    "ro": np.frombuffer(bytes(range(256)) * 400, dtype=np.uint8),  # read-only buffer
    "df": pd.DataFrame({"x": rng.random(50_000), "y": rng.integers(0, 9, 50_000),
                        "s": ["a", "bb"] * 25_000}),
}
for name, obj in objs.items():
    bufs = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    (d / f"{name}.oob").write_bytes(data)
    for i, b in enumerate(bufs):
        (d / f"{name}.{i}.buf").write_bytes(b.raw())
    (d / f"{name}.expected").write_bytes(pickle.dumps(obj, protocol=5))
"#;

const CHECK: &str = r#"
import pickle, sys, pathlib
import numpy as np, pandas as pd
d = pathlib.Path(sys.argv[1])
for name in sys.argv[2:]:
    expected = pickle.loads((d / f"{name}.expected").read_bytes())
    with open(d / f"{name}.exported", "rb") as f:
        got = pickle.load(f)
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(got, expected)
    else:
        assert type(got) is type(expected) and np.array_equal(got, expected), name
        assert got.flags.writeable == expected.flags.writeable, name
    # Also through the pure-Python unpickler, which checks framing strictly.
    with open(d / f"{name}.exported", "rb") as f:
        pickle._Unpickler(f).load()
print("ok")
"#;

#[test]
fn export_rewrites_out_of_band_buffers_so_stock_pickle_loads_it() {
    let env = Env::new();
    let d = env.dir.path();
    let out = Command::new(python())
        .args(["-c", MAKE])
        .arg(d)
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let jar = env.jar();
    let names = ["arr", "small", "ro", "df"];
    for name in names {
        let pickle = std::fs::read(d.join(format!("{name}.oob"))).unwrap();
        let mut bufs = Vec::new();
        for i in 0.. {
            match std::fs::read(d.join(format!("{name}.{i}.buf"))) {
                Ok(b) => bufs.push(b),
                Err(_) => break,
            }
        }
        assert!(!bufs.is_empty(), "{name} has out-of-band buffers");
        let mut input = SaveInput::new(&pickle);
        input.buffers = bufs.iter().map(Vec::as_slice).collect();
        jar.save("main", name, &input).unwrap();
        let target = d.join(format!("{name}.exported"));
        env.ok(&["export", name, target.to_str().unwrap()]);
    }
    let out = Command::new(python())
        .args(["-c", CHECK])
        .arg(d)
        .args(names)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn pickle_of(payload: &[u8]) -> Vec<u8> {
    let mut e = brinery::encode::Encoder::new(4).unwrap();
    e.start();
    e.bytes(payload).unwrap();
    e.finish().unwrap()
}

#[test]
fn processes_saving_one_name_at_once_all_land() {
    let env = Env::new();
    env.jar();
    let files: Vec<PathBuf> = (0..6)
        .map(|i| {
            env.file(
                &format!("p{i}.pkl"),
                &pickle_of(format!("process {i}").as_bytes()),
            )
        })
        .collect();
    for _round in 0..3 {
        let children: Vec<_> = files
            .iter()
            .map(|f| {
                Command::new(env!("CARGO_BIN_EXE_brinery"))
                    .args(["jar", "import", "shared"])
                    .arg(f)
                    .current_dir(env.dir.path())
                    .env("BRINERY_KEY_FILE", env.key_path())
                    .env_remove("BRINERY_JAR")
                    .output_async()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().expect("wait");
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
    }
    let log: serde_json::Value =
        serde_json::from_str(&env.ok(&["log", "shared", "--json"])).expect("json");
    assert_eq!(log.as_array().unwrap().len(), 18, "no lost update");
    assert!(env.ok(&["verify"]).starts_with("ok: "));
}

trait SpawnPiped {
    fn output_async(&mut self) -> std::process::Child;
}

impl SpawnPiped for Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    }
}

#[test]
fn sigkill_at_random_moments_during_saves_never_damages_the_jar() {
    let env = Env::new();
    env.jar();
    let noise: Vec<u8> = (0..(2u32 << 20))
        .flat_map(|i| {
            i.wrapping_mul(2_654_435_761)
                .rotate_left(i % 31)
                .to_le_bytes()
        })
        .collect();
    let rounds = 12u64;
    let mut inputs = Vec::new();
    let mut landed = 0;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    // One uninterrupted save first, to spread the kills over a whole save on this machine.
    let first = pickle_of(&noise);
    let file = env.file("r.pkl", &first);
    let started = std::time::Instant::now();
    env.ok(&["import", "big", file.to_str().unwrap()]);
    let span = (started.elapsed().as_millis() as u64).max(10);
    inputs.push(first);
    landed += 1;
    for round in 0..rounds {
        let mut payload = format!("round {round} ").into_bytes();
        payload.extend_from_slice(&noise);
        let data = pickle_of(&payload);
        let file = env.file(&format!("r{round}.pkl"), &data);
        inputs.push(data);
        let mut child = Command::new(env!("CARGO_BIN_EXE_brinery"))
            .args(["jar", "import", "big"])
            .arg(&file)
            .current_dir(env.dir.path())
            .env("BRINERY_KEY_FILE", env.key_path())
            .env_remove("BRINERY_JAR")
            .output_async();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // From "killed at once" to "probably finished".
        std::thread::sleep(std::time::Duration::from_millis(seed % span));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().expect("wait");
        if status.success() {
            landed += 1;
        }
    }
    let out = env.run(&["log", "big", "--json"]);
    let versions = if out.status.success() {
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .expect("json")
            .as_array()
            .unwrap()
            .len()
    } else {
        0
    };
    eprintln!("{rounds} saves killed at random moments: {landed} finished, {versions} versions in the log");
    assert!(
        versions >= landed,
        "{versions} versions, {landed} saves finished"
    );
    for v in 1..=versions {
        let target = env.dir.path().join(format!("v{v}.pkl"));
        env.ok(&["export", &format!("big@{v}"), target.to_str().unwrap()]);
        let got = std::fs::read(&target).unwrap();
        assert!(
            inputs.contains(&got),
            "version {v} is one of the saved inputs"
        );
    }
    let verify = env.ok(&["verify"]);
    assert!(verify.starts_with("ok: "), "{verify}");
    env.ok(&["gc"]);
    assert!(env.ok(&["verify"]).starts_with("ok: "));
    assert_eq!(
        std::fs::read_dir(env.jar_path().join("tmp"))
            .unwrap()
            .count(),
        0,
        "gc removes the torn temporary files"
    );
}

/// Run `brinery jar ARGS` in `env`'s folder with `input` on standard input; the raw output.
fn run_with_stdin(env: &Env, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = env
        .command(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("brinery runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("brinery ends")
}

#[test]
fn dash_is_standard_input_for_import_and_standard_output_for_export() {
    let env = Env::new();
    // a relative --jar folder that does not exist yet is created where the command runs
    let out = run_with_stdin(&env, &["--jar", "rel", "import", "cfg", "-"], SMALL);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(env.dir.path().join("rel/jar.json").is_file());
    let shown = env.ok(&["--jar", "rel", "show", "cfg", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(shown["meta"]["imported_from"], "<stdin>");
    assert_eq!(shown["signature"], "unsigned");
    // export to standard output: the pickle's bytes, nothing else; a file export is the same
    let out = env.run(&["--jar", "rel", "export", "cfg", "-"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout, SMALL);
    env.ok(&["--jar", "rel", "export", "cfg", "out.pkl"]);
    assert_eq!(
        std::fs::read(env.dir.path().join("out.pkl")).unwrap(),
        SMALL
    );
    assert!(!env.dir.path().join("-").exists());
}

#[test]
fn export_to_a_closed_pipe_exits_quietly() {
    use std::io::Read;
    let env = Env::new();
    // pickle.dumps(bytes(4 << 20), protocol=4) without its frame: BINBYTES8 of 4 MiB
    let mut big = b"\x80\x04\x8e".to_vec();
    big.extend_from_slice(&(4u64 << 20).to_le_bytes());
    big.resize(big.len() + (4 << 20), 7);
    big.push(b'.');
    let file = env.file("big.pkl", &big);
    env.ok(&["import", "big", file.to_str().unwrap()]);
    let mut child = env
        .command(&["export", "big", "-"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("brinery runs");
    let mut head = [0u8; 5];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut head)
        .expect("read");
    // the read end is closed here (`| head -c 5`)
    let out = child.wait_with_output().expect("brinery ends");
    assert_eq!(&head, b"\x80\x04\x8e\x00\x00");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn a_spec_without_name_or_version_and_a_negative_version_for_tag() {
    let env = Env::new();
    let a = env.file("a.pkl", SMALL);
    env.ok(&["import", "cfg", a.to_str().unwrap()]);
    for (spec, want) in [
        ("@1", "no name in \"@1\""),
        ("cfg@", "no version after '@'"),
    ] {
        let out = env.run(&["show", spec]);
        assert_eq!(out.status.code(), Some(2), "{spec}");
        assert!(
            text(&out.stderr).contains(want),
            "{spec}: {}",
            text(&out.stderr)
        );
    }
    // a negative version needs no `--`
    assert_eq!(
        env.ok(&["tag", "cfg", "-1", "best"]),
        "tagged cfg@1 as best\n"
    );
}

/// `show` reads the saver's summary for people: the shape and columns of a frame, an
/// estimator's parameters, who saved it from where, the library versions, long lists wrapped;
/// keys it does not know are shown as they are.
#[test]
fn show_renders_the_summary_for_people() {
    let env = Env::new();
    let jar = env.jar();
    let pickle = pickle_of(b"x");
    let mut input = SaveInput::new(&pickle);
    input.meta = serde_json::json!({
        "type": "pandas.DataFrame",
        "summary": {"shape": [1000, 52], "columns": ["a", "t"],
                    "dtypes": {"a": "int64", "t": "datetime64[us, UTC]"}, "more_columns": 50},
        "size": 17045, "pickle_size": 9045, "buffers": 0, "time": "2026-11-27T13:38:43+00:00",
        "source": {"kind": "notebook", "path": "clean.ipynb"}, "saved_by": "clean.ipynb",
        "user": "ana@laptop", "python": "3.11.7", "brinery": "0.1.0",
        "libraries": {"numpy": "2.4.6", "pandas": "3.1.1"}, "protocol": 5, "note": null,
        "imported_from": "x.pkl"
    });
    jar.save("main", "df", &input).unwrap();
    input.meta = serde_json::json!({
        "type": "sklearn.linear_model.LogisticRegression",
        "summary": {"params": {"C": "1.0", "solver": "'lbfgs'"}, "fitted": true},
    });
    jar.save("main", "model", &input).unwrap();
    input.meta = serde_json::json!({"type": "numpy.ndarray", "summary": {"shape": [3, 4], "dtype": "float64"}});
    jar.save("main", "arr", &input).unwrap();

    let shown = env.ok(&["show", "df"]);
    let lines: Vec<&str> = shown.lines().collect();
    assert!(lines[0].starts_with("df@1  (branch main, id "), "{shown}");
    assert_eq!(lines[1], "type       pandas.DataFrame, shape 1000 x 52");
    assert_eq!(
        lines[2],
        "columns    a (int64), t (datetime64[us, UTC]), and 50 more"
    );
    assert!(
        lines[3].starts_with("saved      2026-")
            && lines[3].ends_with(" by ana@laptop, from clean.ipynb (notebook)"),
        "{shown}"
    );
    assert!(lines[4].starts_with("size       ") && lines[4].ends_with(" stored by this version"));
    assert!(lines[5].starts_with("signature  trusted (key "), "{shown}");
    assert_eq!(
        lines[6],
        "made with  Python 3.11.7, brinery 0.1.0, numpy 2.4.6, pandas 3.1.1 (pickle protocol 5)"
    );
    assert_eq!(lines[7], "imported from x.pkl");
    assert_eq!(lines.len(), 8, "{shown}");

    let shown = env.ok(&["show", "model"]);
    assert!(
        shown.contains("\ntype       sklearn.linear_model.LogisticRegression, fitted\nparams     C=1.0, solver='lbfgs'\n"),
        "{shown}"
    );
    let shown = env.ok(&["show", "arr"]);
    assert!(
        shown.contains("\ntype       numpy.ndarray, shape 3 x 4, float64\n"),
        "{shown}"
    );
    assert!(!shown.contains("buffer"), "{shown}");

    // Metadata cannot add lines or drive the terminal: control characters are escaped, here
    // and in the ls/log tables.
    input.note = Some("fine\nsignature  trusted (key forged)".into());
    input.meta = serde_json::json!({
        "type": "pandas.DataFrame",
        "summary": {"shape": [1, 1], "columns": ["ok\nsaved      FORGED"],
                    "summary_error": "boom\r\u{1b}[2J"},
        "user\n": "x\u{0}y",
    });
    jar.save("main", "odd", &input).unwrap();
    let shown = env.ok(&["show", "odd"]);
    assert!(
        !shown.chars().any(|c| c.is_control() && c != '\n'),
        "{shown:?}"
    );
    let signature_lines = shown.lines().filter(|l| l.starts_with("signature")).count();
    assert_eq!(signature_lines, 1, "{shown}");
    assert!(
        !shown.lines().any(|l| l.starts_with("saved      FORGED")),
        "{shown}"
    );
    assert!(
        shown.contains("note       fine\\nsignature  trusted (key forged)\n"),
        "{shown}"
    );
    assert!(
        shown.contains("columns    ok\\nsaved      FORGED\n"),
        "{shown}"
    );
    assert!(
        shown.contains("(could not be made: boom\\r\\u{1b}[2J)"),
        "{shown}"
    );
    for listing in [env.ok(&["ls"]), env.ok(&["log", "odd"])] {
        assert!(
            !listing.chars().any(|c| c.is_control() && c != '\n'),
            "{listing:?}"
        );
        assert!(listing.contains("fine\\nsignature"), "{listing}");
    }
}

/// The hint `jar branch` prints is a command that works in a shell, whatever the name.
#[test]
fn branch_hints_are_shell_words() {
    let env = Env::new();
    env.jar();
    assert_eq!(
        env.ok(&["branch", "--", "-it's b"]),
        "created branch -it's b from main (use it with `--branch='-it'\\''s b'` or BRINERY_BRANCH='-it'\\''s b')\n"
    );
    let listed = env.ok(&["--branch=-it's b", "branches"]);
    assert_eq!(listed, "* -it's b\n  main\n");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "BRINERY_BRANCH='-it'\\''s b' {} jar branches",
            env!("CARGO_BIN_EXE_brinery")
        ))
        .current_dir(env.dir.path())
        .env("BRINERY_KEY_FILE", env.key_path())
        .env_remove("BRINERY_JAR")
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), listed);
}
