//! The .deb from `cargo xtask package` installed where users install it: a clean Debian 12 root
//! made by mmdebstrap (no Rust, no build tree), `dpkg -i`, then the installed `hangwatch`
//! (`--help`, `check` of the shipped config, `list`), the service user, the unit verified by
//! the root's own systemd, man pages and completions in place. `#[ignore]`d: it needs the
//! package and Debian's mirror; `cargo xtask test` runs it after `cargo xtask package`.
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn sh(cmd: &mut Command) -> (bool, String) {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

/// `chroot ROOT ARGS…` in a private mount namespace with /proc, /sys and /dev bound in, so
/// `hangwatch check` sees a real kernel and nothing leaks onto the host's mounts.
fn in_root(root: &Path, args: &str) -> (bool, String) {
    let r = root.display();
    let script = format!(
        "set -e; mount --bind /proc {r}/proc; mount --rbind /sys {r}/sys; mount --rbind /dev {r}/dev; exec chroot {r} {args}"
    );
    sh(Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]))
}

fn the_deb() -> PathBuf {
    let dir = workspace().join("target/package");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask package` first", dir.display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("no .deb in target/package: run `cargo xtask package`")
}

#[test]
#[ignore = "needs `cargo xtask package` and Debian's mirror: cargo xtask test"]
fn deb_installs_and_runs_in_a_clean_debian_root() {
    let deb = the_deb();
    let root = workspace().join("target/package-test/root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.parent().unwrap()).unwrap();
    // minbase + systemd (for systemd-sysusers and to verify the installed unit); no Rust.
    let (ok, out) = sh(Command::new("mmdebstrap")
        .args([
            "--variant=minbase",
            "--mode=root",
            "--include=systemd",
            "bookworm",
        ])
        .arg(&root));
    assert!(ok, "mmdebstrap: {out}");
    assert!(!root.join("usr/bin/cargo").exists() && !root.join("usr/bin/rustc").exists());
    std::fs::copy(&deb, root.join("tmp/hangwatch.deb")).unwrap();

    let (ok, out) = in_root(&root, "dpkg -i /tmp/hangwatch.deb");
    assert!(ok, "dpkg -i: {out}");
    let (ok, out) = in_root(&root, "hangwatch --help");
    assert!(
        ok && out.contains("Which process hung the AMD GPU?"),
        "{out}"
    );
    for cmd in [
        "run",
        "check",
        "list",
        "show",
        "analyze",
        "export",
        "bugreport",
    ] {
        assert!(out.contains(cmd), "--help lacks {cmd}: {out}");
    }
    let (_, out) = in_root(&root, "hangwatch check");
    assert!(
        out.contains("config:   /etc/hangwatch/config.toml valid"),
        "check in the installed root: {out}"
    );
    assert!(out.contains("CAP_BPF") && out.contains("probe "), "{out}");
    let (ok, out) = in_root(&root, "getent passwd hangwatch");
    assert!(
        ok && out.contains("/var/lib/hangwatch"),
        "service user: {out}"
    );
    let (ok, out) = in_root(
        &root,
        "systemd-analyze verify --man=no /usr/lib/systemd/system/hangwatch.service",
    );
    assert!(ok && out.trim().is_empty(), "installed unit: {out}");
    let (ok, out) = in_root(&root, "hangwatch list --dir /tmp");
    assert!(ok && out.contains("no incidents"), "{out}");
    for f in [
        "usr/share/man/man1/hangwatch-run.1.gz",
        "usr/share/bash-completion/completions/hangwatch",
        "usr/share/zsh/vendor-completions/_hangwatch",
        "usr/share/fish/vendor_completions.d/hangwatch.fish",
        "etc/hangwatch/config.toml",
    ] {
        assert!(root.join(f).exists(), "{f} not installed");
    }
    // Removal leaves the operator's config (a conffile), purge removes it.
    let (ok, out) = in_root(&root, "dpkg -r hangwatch");
    assert!(ok, "dpkg -r: {out}");
    assert!(root.join("etc/hangwatch/config.toml").exists());
    assert!(!root.join("usr/bin/hangwatch").exists());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
#[ignore = "needs `cargo xtask package`: cargo xtask test"]
fn tarball_holds_the_same_tree() {
    let dir = workspace().join("target/package");
    let tgz = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-x86_64-linux.tar.gz"))
        .expect("no tarball: run `cargo xtask package`");
    let (ok, list) = sh(Command::new("tar").arg("-tzf").arg(&tgz));
    assert!(ok, "{list}");
    for f in [
        "usr/bin/hangwatch",
        "usr/lib/systemd/system/hangwatch.service",
        "usr/lib/sysusers.d/hangwatch.conf",
        "etc/hangwatch/config.toml",
        "usr/share/man/man1/hangwatch.1.gz",
        "usr/share/doc/hangwatch/examples/60-hangwatch-perf.conf",
    ] {
        assert!(list.lines().any(|l| l.ends_with(f)), "{f} missing: {list}");
    }
    assert!(!list.contains("DEBIAN/"), "{list}");
}
