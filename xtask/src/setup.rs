//! `cargo xtask setup`: installs what the build, the VM, the tests, the bench and packaging
//! need on a fresh Debian 12 machine. `demo` installs only the demo's part ([`Scope::Demo`]).
//! Idempotent and fast when everything is already present.
use std::process::Command;

use anyhow::{bail, Result};

use crate::util::{have, output, run, target_dir};

/// How much a command needs installed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Build the agent and boot the VM with the simulator: `demo`, `examples`.
    Demo,
    /// The demo's part plus the tests', the bench's and packaging's tools: `setup`, `test`,
    /// `bench`, `package`.
    All,
}

/// Debian packages the demo needs: the VM (qemu, busybox, cpio, kmod, xz/zstd), the simulator
/// build (gcc-12, make, bc, pahole for its module BTF) and LLVM 22 for bpf-linker.
const DEMO_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "dwarves",
    "cpio",
    "kmod",
    "zstd",
    "xz-utils",
    "gcc-12",
    "make",
    "bc",
    "llvm-22-dev",
    "libpolly-22-dev",
];

/// Debian packages only the tests, the bench and packaging need.
const TEST_PACKAGES: &[&str] = &[
    // The Perfetto test decodes traces with protoc, an independent decoder.
    "protobuf-compiler",
    // Bench peers.
    "bpftrace",
    "trace-cmd",
    // daemon tests: promtool validates the metrics exposition and tests the alert rules,
    // systemd-analyze the unit, mmdebstrap builds the clean Debian root the .deb is installed
    // into.
    "prometheus",
    "systemd",
    "mmdebstrap",
    // desktop-file-validate checks the notify companion's autostart entry.
    "desktop-file-utils",
    // The identity test runs a process in a podman container (runc: crun refuses a hybrid
    // cgroup hierarchy) from an image holding only a static busybox.
    "podman",
    "runc",
    "busybox-static",
];

fn installed(pkg: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .map(|s| s.contains("install ok installed"))
        .unwrap_or(false)
}

pub fn setup(scope: Scope) -> Result<()> {
    let mut wanted = DEMO_PACKAGES.to_vec();
    if scope == Scope::All {
        wanted.extend_from_slice(TEST_PACKAGES);
    }
    apt_install(&wanted)?;
    demo_toolchain()?;
    if scope == Scope::All {
        lint_toolchain()?;
    }
    Ok(())
}

/// `apt-get install` of the packages not installed yet (nothing at all when none is missing).
fn apt_install(wanted: &[&str]) -> Result<()> {
    let missing: Vec<&str> = wanted.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask setup: installing {}", missing.join(" "));
    let sudo = if is_root() { vec![] } else { vec!["sudo"] };
    let apt = |args: &[&str]| {
        let mut all: Vec<&str> = sudo.clone();
        all.push("apt-get");
        all.extend_from_slice(args);
        let mut c = Command::new(all[0]);
        c.args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut c)
    };
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(missing.iter().copied());
    if let Err(e) = apt(&args) {
        // LLVM 22 is not in Debian 12's own archive: say how to get it rather than fail blind.
        bail!("{e:#}\nif llvm-22-dev is missing, add apt.llvm.org's bookworm repository (llvm-toolchain-bookworm-22) and rerun");
    }
    Ok(())
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u"))
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}

/// Where cargo-installed tools go (`cargo install --root`): under target/, so a CI cache of
/// target/ keeps bpf-linker and cargo-machete instead of rebuilding them every run.
pub fn tools_root() -> std::path::PathBuf {
    target_dir().join("tools")
}

/// Puts target/tools/bin first on PATH for this process and everything it starts (the eBPF
/// build finds bpf-linker there).
pub fn tools_on_path() {
    let bin = tools_root().join("bin");
    let old = std::env::var_os("PATH").unwrap_or_default();
    let mut parts = vec![bin.clone()];
    parts.extend(std::env::split_paths(&old).filter(|p| *p != bin));
    if let Ok(joined) = std::env::join_paths(parts) {
        // Called once at start-up, before any thread exists (set_var is not thread-safe).
        std::env::set_var("PATH", joined);
    }
}

fn rustup_component(toolchain: &str, comp: &str) -> Result<()> {
    let comps = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        toolchain,
    ]))
    .unwrap_or_default();
    if !comps.lines().any(|l| l.starts_with(comp)) {
        run(Command::new("rustup").args(["component", "add", comp, "--toolchain", toolchain]))?;
    }
    Ok(())
}

/// `cargo install --locked --root target/tools CRATE` when its binary is missing from PATH.
fn cargo_tool(krate: &str) -> Result<()> {
    if have(krate) {
        return Ok(());
    }
    run(Command::new("cargo")
        .args(["install", "--locked", krate, "--root"])
        .arg(tools_root()))
}

/// What the agent's build needs: nightly + rust-src (eBPF build-std) and bpf-linker 0.13 built
/// against LLVM 22 under target/tools.
fn demo_toolchain() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    rustup_component("nightly", "rust-src")?;
    let linker_ok = have("bpf-linker")
        && output(Command::new("bpf-linker").arg("--version"))
            .map(|v| v.contains(" 0.13."))
            .unwrap_or(false);
    if !linker_ok {
        let path = format!(
            "/usr/lib/llvm-22/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        run(Command::new("cargo")
            .args([
                "+nightly",
                "install",
                "bpf-linker",
                "--version",
                "~0.13",
                "--no-default-features",
                "--features",
                "llvm-22",
                "--root",
            ])
            .arg(tools_root())
            .env("PATH", path)
            .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22"))?;
    }
    Ok(())
}

/// What the lint gate needs: rustfmt and clippy (stable, and nightly for the eBPF crate), and
/// cargo-machete under target/tools (a source build: 7 min 38 s on a loaded 2-core host).
fn lint_toolchain() -> Result<()> {
    rustup_component("nightly", "clippy")?;
    rustup_component("stable", "rustfmt")?;
    rustup_component("stable", "clippy")?;
    cargo_tool("cargo-machete")
}
