//! `cargo xtask package`: `target/package/hangwatch_<version>_amd64.deb` and
//! `hangwatch-<version>-x86_64-linux.tar.gz` from one staged tree: the release binary (the
//! eBPF object is embedded in it), the systemd unit and sysusers file, the default config, the
//! fleet files (alert rules, dashboard, node-problem-detector configs), man pages and
//! bash/zsh/fish completions generated from the CLI definition (agent/examples/gen_docs.rs). Built with dpkg-deb on the staged tree; nothing on the
//! target needs Rust.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{output, root, run, target_dir};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = to.parent() {
        fs::create_dir_all(d)?;
    }
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `libc6 (>= 2.NN)` from the newest GLIBC_ symbol version the binary needs, plus libgcc-s1
/// when it links libgcc_s (what dpkg-shlibdeps would say, without a debian/ source tree).
fn depends(bin: &Path) -> Result<String> {
    let dynsyms = output(Command::new("objdump").arg("-T").arg(bin))?;
    let newest = dynsyms
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut it = v.split('.').map(|n| n.parse::<u32>().ok());
            Some((it.next()??, it.next().flatten().unwrap_or(0)))
        })
        .max()
        .context("no GLIBC_ symbol versions in the binary")?;
    let mut deps = vec![format!("libc6 (>= {}.{})", newest.0, newest.1)];
    let needed = output(Command::new("objdump").arg("-p").arg(bin))?;
    if needed
        .lines()
        .any(|l| l.contains("NEEDED") && l.contains("libgcc_s"))
    {
        deps.push("libgcc-s1 (>= 4.2)".into());
    }
    Ok(deps.join(", "))
}

fn du_kib(dir: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        match e.metadata() {
            Ok(m) if m.is_dir() => total += du_kib(&e.path()),
            Ok(m) => total += m.len().div_ceil(1024),
            Err(_) => {}
        }
    }
    total
}

/// Release binary (stripped of debug info; the eBPF object lives in .rodata) and docs.
fn build_inputs(cargo: &str, gen: &Path) -> Result<PathBuf> {
    run(Command::new(cargo)
        .args([
            "build",
            "-q",
            "--release",
            "-p",
            "agent",
            "--bin",
            "hangwatch",
        ])
        .current_dir(root()))?;
    let _ = fs::remove_dir_all(gen);
    run(Command::new(cargo)
        .args(["run", "-q", "-p", "agent", "--example", "gen_docs", "--"])
        .arg(gen)
        .current_dir(root()))?;
    Ok(target_dir().join("release/hangwatch"))
}

/// Files copied as they are: (under packaging/, installed path, mode). The fleet integration
/// (docs/operations.md, "Fleet").
const EXTRAS: &[(&str, &str, u32)] = &[
    (
        "prometheus/hangwatch-rules.yml",
        "usr/share/hangwatch/prometheus/hangwatch-rules.yml",
        0o644,
    ),
    (
        "prometheus/hangwatch-rules.test.yml",
        "usr/share/hangwatch/prometheus/hangwatch-rules.test.yml",
        0o644,
    ),
    (
        "grafana/hangwatch-dashboard.json",
        "usr/share/hangwatch/grafana/hangwatch-dashboard.json",
        0o644,
    ),
    (
        "npd/hangwatch-monitor.json",
        "usr/share/hangwatch/npd/hangwatch-monitor.json",
        0o644,
    ),
    (
        "npd/hangwatch-plugin-monitor.json",
        "usr/share/hangwatch/npd/hangwatch-plugin-monitor.json",
        0o644,
    ),
    (
        "npd/hangwatch-npd-check",
        "usr/share/hangwatch/npd/hangwatch-npd-check",
        0o755,
    ),
    // packaging/notify/ (the companion's user unit and autostart entry) is not installed
    // until `hangwatch notify` exists: an autostart entry for a missing command fails at
    // every login.
];

/// The installed tree under `stage` (no DEBIAN/).
fn stage_tree(stage: &Path, bin: &Path, gen: &Path) -> Result<()> {
    let pk = root().join("packaging");
    let usr_bin = stage.join("usr/bin/hangwatch");
    copy(bin, &usr_bin, 0o755)?;
    run(Command::new("strip").arg("--strip-debug").arg(&usr_bin))?;
    copy(
        &pk.join("hangwatch.service"),
        &stage.join("usr/lib/systemd/system/hangwatch.service"),
        0o644,
    )?;
    copy(
        &pk.join("hangwatch.sysusers"),
        &stage.join("usr/lib/sysusers.d/hangwatch.conf"),
        0o644,
    )?;
    copy(
        &pk.join("config.toml"),
        &stage.join("etc/hangwatch/config.toml"),
        0o644,
    )?;
    let doc = stage.join("usr/share/doc/hangwatch");
    copy(&pk.join("debian/copyright"), &doc.join("copyright"), 0o644)?;
    copy(
        &root().join("docs/operations.md"),
        &doc.join("operations.md"),
        0o644,
    )?;
    copy(&root().join("README.md"), &doc.join("README.md"), 0o644)?;
    // Not active: lowering perf_event_paranoid is the operator's decision (docs/operations.md).
    copy(
        &pk.join("60-hangwatch-perf.sysctl"),
        &doc.join("examples/60-hangwatch-perf.conf"),
        0o644,
    )?;
    for (from, to, mode) in EXTRAS {
        copy(&pk.join(from), &stage.join(to), *mode)?;
    }
    let man = stage.join("usr/share/man/man1");
    fs::create_dir_all(&man)?;
    for e in fs::read_dir(gen.join("man1"))?.flatten() {
        let to = man.join(e.file_name());
        copy(&e.path(), &to, 0o644)?;
        // -n: no name or time stamp in the header, so the package is reproducible.
        run(Command::new("gzip").args(["-9nf"]).arg(&to))?;
    }
    let comp = gen.join("completions");
    copy(
        &comp.join("hangwatch"),
        &stage.join("usr/share/bash-completion/completions/hangwatch"),
        0o644,
    )?;
    copy(
        &comp.join("_hangwatch"),
        &stage.join("usr/share/zsh/vendor-completions/_hangwatch"),
        0o644,
    )?;
    copy(
        &comp.join("hangwatch.fish"),
        &stage.join("usr/share/fish/vendor_completions.d/hangwatch.fish"),
        0o644,
    )?;
    Ok(())
}

fn control(stage: &Path, bin: &Path) -> Result<()> {
    let pk = root().join("packaging/debian");
    let deb = stage.join("DEBIAN");
    fs::create_dir_all(&deb)?;
    for s in ["postinst", "prerm", "postrm"] {
        copy(&pk.join(s), &deb.join(s), 0o755)?;
    }
    fs::write(deb.join("conffiles"), "/etc/hangwatch/config.toml\n")?;
    let text = format!(
        "Package: hangwatch\nVersion: {VERSION}\nArchitecture: amd64\nMaintainer: hangwatch developers <hangwatch@localhost>\nInstalled-Size: {}\nDepends: {}\nRecommends: systemd\nSection: admin\nPriority: optional\nDescription: which process hung the AMD GPU?\n hangwatch attributes amdgpu GPU hangs, page faults and resets to the processes\n that caused them, from eBPF probes and the kernel log, and writes incident\n directories, Perfetto traces and drm/amd bug reports. Runs as a least-privilege\n systemd service with Prometheus metrics and structured journal entries.\n",
        du_kib(stage) - du_kib(&deb),
        depends(bin)?,
    );
    fs::write(deb.join("control"), text)?;
    Ok(())
}

/// Builds both packages; returns the .deb's path.
pub fn package() -> Result<PathBuf> {
    for tool in ["dpkg-deb", "objdump", "strip", "gzip", "tar"] {
        if !crate::util::have(tool) {
            bail!("{tool} not found (dpkg, binutils, gzip, tar: cargo xtask setup installs them)");
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = target_dir().join("package");
    let gen = out.join("gen");
    let stage = out.join(format!("hangwatch-{VERSION}-x86_64"));
    let bin = build_inputs(&cargo, &gen)?;
    let _ = fs::remove_dir_all(&stage);
    stage_tree(&stage, &bin, &gen)?;
    let tarball = out.join(format!("hangwatch-{VERSION}-x86_64-linux.tar.gz"));
    run(Command::new("tar")
        .args([
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--sort=name",
            "-czf",
        ])
        .arg(&tarball)
        .arg("-C")
        .arg(&out)
        .arg(stage.file_name().context("stage name")?))?;
    control(&stage, &bin)?;
    let deb = out.join(format!("hangwatch_{VERSION}_amd64.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    for p in [&deb, &tarball] {
        let size = fs::metadata(p)?.len();
        eprintln!(
            "xtask package: {} ({:.1} MiB)",
            p.display(),
            size as f64 / (1 << 20) as f64
        );
    }
    Ok(deb)
}
