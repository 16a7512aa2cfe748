//! Small process helpers: every external tool the harness runs goes through here so a failure
//! names the command that failed.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The workspace root (xtask's manifest dir is `<root>/xtask`).
pub fn root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

/// The workspace target dir (honours CARGO_TARGET_DIR).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Runs `cmd`, inheriting stdio; fails with the command line if it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Runs `cmd` with stdout and stderr captured (and echoed to stderr); on failure the error
/// carries the whole output, so a caller can report the first compiler error.
pub fn run_captured(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{text}");
    if !out.status.success() {
        bail!("{cmd:?} failed with {}:\n{text}", out.status);
    }
    Ok(())
}

/// The first compiler error (`file:line:col: error: ...`), else the first missing tool
/// (`gcc-10: not found`), else the first make failure (`*** ...`), else the first line: what a
/// failed-build test names.
pub fn first_error_line(text: &str) -> String {
    let find = |pred: &dyn Fn(&str) -> bool| text.lines().find(|l| pred(l));
    find(&|l| l.contains(": error:") || l.contains(": fatal error:"))
        .or_else(|| find(&|l| l.contains(": not found") || l.contains("No such file or directory")))
        .or_else(|| find(&|l| l.contains("*** ")))
        .or_else(|| text.lines().next())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Runs `cmd` and returns its stdout; fails with stderr if it exits non-zero.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True if `prog` is on PATH.
pub fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_compiler_error_is_picked_out_of_a_build_log() {
        let log = "make: Entering directory\n  CC [M]  /x/amdgpu_sim.o\n/x/amdgpu_sim.c:120:9: error: too few arguments to function 'drm_sched_init'\n/x/amdgpu_sim.c:300:1: error: second\nmake[2]: *** [x] Error 1\n";
        assert_eq!(
            first_error_line(log),
            "/x/amdgpu_sim.c:120:9: error: too few arguments to function 'drm_sched_init'"
        );
        assert_eq!(first_error_line("only line"), "only line");
        let missing = "arch/x86/Makefile:155: CONFIG_X86_X32 enabled but no binutils support\nmake[1]: gcc-10: No such file or directory\n/bin/sh: 1: gcc-10: not found\nmake[2]: *** [x] Error 127\n";
        assert_eq!(
            first_error_line(missing),
            "make[1]: gcc-10: No such file or directory"
        );
    }
}
