//! A closed stdout is a normal end for every command: `hangwatch analyze FILE | head -1`
//! exits 0 without a "Broken pipe" message, and `--output DIR` still writes every incident.
//! The binary runs for real, its stdout a pipe whose reader is already closed, so the first
//! write fails with EPIPE (Rust ignores SIGPIPE, so the write error is what the binary sees).
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_hangwatch");

fn log(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/dmesg")
        .join(name)
}

fn scratch(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("hw-epipe-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// Runs `hangwatch ARGS` with stdout a pipe nobody reads any more.
fn run_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run hangwatch")
}

/// Incidents `analyze --json` finds in `file` when stdout is read (the last line is the summary).
fn incidents_in(file: &Path) -> usize {
    let out = Command::new(BIN)
        .args(["analyze", "--json"])
        .arg(file)
        .output()
        .expect("run hangwatch");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    String::from_utf8(out.stdout).unwrap().lines().count() - 1
}

fn assert_quiet_success(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {err}");
    assert!(!err.to_lowercase().contains("broken pipe"), "stderr: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
    assert!(
        err.is_empty(),
        "a closed stdout is a normal end, yet stderr says: {err}"
    );
}

#[test]
fn analyze_into_a_closed_pipe_exits_0_silently() {
    for json in [false, true] {
        let file = log("v710-zed-fault-then-timeout.log");
        let mut args = vec!["analyze"];
        if json {
            args.push("--json");
        }
        args.push(file.to_str().unwrap());
        assert_quiet_success(&run_into_closed_pipe(&args));
    }
}

#[test]
fn analyze_output_into_a_closed_pipe_still_writes_every_incident() {
    let file = log("rx7900xtx-mes-mode1-reset.log");
    let file2 = log("v710-zed-fault-then-timeout.log");
    let want = incidents_in(&file) + incidents_in(&file2);
    assert!(
        want >= 2,
        "the inputs should hold several incidents, found {want}"
    );
    let dir = scratch("output");
    let out = run_into_closed_pipe(&[
        "analyze",
        "--output",
        dir.to_str().unwrap(),
        file.to_str().unwrap(),
        file2.to_str().unwrap(),
    ]);
    assert_quiet_success(&out);
    let written = std::fs::read_dir(&dir)
        .expect("the output directory exists")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("incident.json").is_file())
        .count();
    assert_eq!(
        written,
        want,
        "incident directories under {}",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_into_a_closed_pipe_does_not_panic() {
    for args in [&["check"][..], &["check", "--json"][..]] {
        let out = run_into_closed_pipe(args);
        let err = String::from_utf8_lossy(&out.stderr);
        // `check` exits 1 on a host where nothing can run; never 101 (a panic) or 2 (an error).
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{args:?}: {out:?}"
        );
        assert!(
            !err.to_lowercase().contains("broken pipe"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
