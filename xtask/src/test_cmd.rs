//! `cargo xtask test`: setup, host tests, then the VM suite (one phase-A boot, one phase-B boot
//! with every scenario) asserted by tests/tests/vm.rs, and the package installed into a clean
//! Debian root (tests/tests/package.rs). Ends with `N passed, N failed` for the VM
//! tests, which is what CI reads.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::util::root;
use crate::{setup, vm};

pub fn test(args: &[String]) -> Result<u8> {
    setup::setup()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let host_ok = Command::new(&cargo)
        // agent-ebpf is a no_std bpfel binary (built by agent/build.rs): it cannot link as a host test.
        .args(["test", "--workspace", "--exclude", "agent-ebpf"])
        .current_dir(root())
        .status()?
        .success();
    // The .deb for tests/tests/package.rs (installed into a clean Debian root below).
    if let Err(e) = crate::package::package() {
        eprintln!("xtask test: cargo xtask package failed: {e:#}");
    }
    let opts = vm::parse_args(args)?;
    let dir = match vm::run_vm(&opts) {
        Ok(d) => d,
        Err(e) => {
            // The harness itself failed (download, build, boot): CI still gets its summary line.
            eprintln!("xtask test: VM suite could not run: {e:#}");
            println!("0 passed, 1 failed");
            return Ok(1);
        }
    };
    let mut child = Command::new(&cargo)
        .args([
            "test",
            "-p",
            "tests",
            "--test",
            "vm",
            "--test",
            "package",
            "--",
            "--ignored",
            "--test-threads",
            "1",
        ])
        .env("HANGWATCH_VM_RESULTS", &dir)
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .context("running the VM assertions")?;
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
    let vm_ok = child.wait()?.success();
    if !host_ok {
        eprintln!("xtask test: host tests FAILED");
    }
    println!("{passed} passed, {failed} failed");
    Ok(if host_ok && vm_ok && failed == 0 {
        0
    } else {
        1
    })
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
