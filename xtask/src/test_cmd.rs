//! `cargo xtask test`: setup, host tests, then the VM suite over the whole kernel matrix
//! (tests/vm/matrix.toml: per kernel one phase-A boot and one phase-B boot with that kernel's
//! scenarios) asserted by tests/tests/vm.rs, and the package installed into a clean Debian root
//! (tests/tests/package.rs). Ends with `N passed, N failed` for the VM tests, which is what CI reads. `cargo xtask test --kernel 6.1` limits the VM part to one kernel.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::util::root;
use crate::{setup, vm};

/// One lint of the gate: its name, its command and the environment it needs.
type Lint = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

/// The lint gate. Each counts as one test in the summary line.
const LINTS: &[Lint] = &[
    ("fmt", &["cargo", "fmt", "--all", "--check"], &[]),
    (
        "clippy",
        &[
            "cargo",
            "clippy",
            "-q",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    ),
    // Broken intra-doc links, unclosed HTML tags and other rustdoc warnings fail the gate.
    (
        "rustdoc",
        &[
            "cargo",
            "doc",
            "-q",
            "--no-deps",
            "--workspace",
            "--exclude",
            "agent-ebpf",
        ],
        &[("RUSTDOCFLAGS", "-D warnings")],
    ),
    // The eBPF crate for its own target (the host check above sees it with std unified in).
    (
        "clippy-ebpf",
        &[
            "cargo",
            "+nightly",
            "clippy",
            "-q",
            "-p",
            "agent-ebpf",
            "-Z",
            "build-std=core",
            "--target",
            "bpfel-unknown-none",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    ),
    // Declared-but-unused dependencies (installed under target/tools by setup).
    ("unused-deps", &["cargo-machete"], &[]),
];

/// Runs every lint; returns (passed, failed).
fn lint_gate() -> (u64, u64) {
    let (mut passed, mut failed) = (0, 0);
    for (name, argv, env) in LINTS {
        let ok = Command::new(argv[0])
            .args(&argv[1..])
            .envs(env.iter().copied())
            .current_dir(root())
            .status()
            .is_ok_and(|s| s.success());
        println!("lint {name} ... {}", if ok { "ok" } else { "FAILED" });
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    (passed, failed)
}

/// Runs `cargo ARGS`, echoing its stdout and adding up libtest summary lines.
fn cargo_counted(args: &[&str], env: &[(&str, &std::path::Path)]) -> Result<(bool, u64, u64)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(args).current_dir(root()).stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running cargo {args:?}"))?;
    let (mut passed, mut failed) = (0u64, 0u64);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some((p, f)) = parse_libtest_summary(&line) {
                passed += p;
                failed += f;
            }
        }
    }
    Ok((child.wait()?.success(), passed, failed))
}

pub fn test(args: &[String]) -> Result<u8> {
    setup::setup(setup::Scope::All)?;
    let (lint_passed, lint_failed) = lint_gate();
    // agent-ebpf is a no_std bpfel binary (built by agent/build.rs): it cannot link as a host test.
    let (host_ok, host_passed, host_failed) =
        cargo_counted(&["test", "--workspace", "--exclude", "agent-ebpf"], &[])?;
    // The .deb for tests/tests/package.rs (installed into a clean Debian root below).
    if let Err(e) = crate::package::package() {
        eprintln!("xtask test: cargo xtask package failed: {e:#}");
    }
    let mut opts = vm::parse_args(args)?;
    if opts.kernels.is_empty() {
        opts.kernels = vm::load_matrix()?
            .kernel
            .into_iter()
            .map(|k| k.series)
            .collect();
    }
    // A kernel whose harness failed (download, boot) is in index.json with its error: its tests
    // fail with it, the other kernels' tests still run.
    if let Err(e) = vm::run_vm(&opts) {
        // The harness itself failed (matrix, build): CI still gets its summary line.
        eprintln!("xtask test: VM suite could not run: {e:#}");
        println!(
            "{} passed, {} failed",
            lint_passed + host_passed,
            lint_failed + host_failed + 1
        );
        return Ok(1);
    }
    let dir = vm::results_root();
    let mut vm_args = vec![
        "test",
        "-p",
        "tests",
        "--test",
        "vm",
        "--test",
        "package",
        "--",
        "--ignored",
    ];
    let filters = vm_filter(&opts);
    vm_args.extend(filters.iter().map(String::as_str));
    let (vm_ok, vm_passed, vm_failed) =
        cargo_counted(&vm_args, &[("HANGWATCH_VM_RESULTS", dir.as_path())])?;
    if !host_ok {
        eprintln!("xtask test: host tests FAILED");
    }
    let passed = lint_passed + host_passed + vm_passed;
    let failed = lint_failed + host_failed + vm_failed;
    // Host + lint + VM tests; a crashed runner with no summary still fails the run.
    println!("{passed} passed, {failed} failed");
    Ok(if host_ok && vm_ok && failed == 0 {
        0
    } else {
        1
    })
}

/// With `--kernel X` only X's tests run (the other kernels have no fresh results): every
/// matrix series not asked for is skipped (`--skip 6.12/`).
fn vm_filter(o: &vm::Opts) -> Vec<String> {
    let Ok(m) = vm::load_matrix() else {
        return Vec::new();
    };
    m.kernel
        .iter()
        .filter(|k| !o.kernels.contains(&k.series))
        .flat_map(|k| ["--skip".to_string(), format!("{}/", k.series)])
        .collect()
}

/// `test result: ok. 7 passed; 0 failed; ...` -> (7, 0).
fn parse_libtest_summary(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let num = |word: &str| -> Option<u64> {
        let idx = rest.find(word)?;
        rest[..idx]
            .trim_end()
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((num(" passed")?, num(" failed")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_summary_is_parsed() {
        assert_eq!(
            parse_libtest_summary("test result: FAILED. 5 passed; 2 failed; 0 ignored; 0 measured"),
            Some((5, 2))
        );
        assert_eq!(parse_libtest_summary("running 7 tests"), None);
    }
}
