//! The identity reader against a real container: podman runs a process from a local image
//! (a busybox root file system imported with `podman import`), and the agent's reader must
//! name runtime podman and the id `podman inspect` gives, and map the pid through NSpid.
//! Skipped, with the reason printed, only when podman is not installed or `podman info`
//! fails; any later failure fails the test.
use std::path::Path;
use std::process::{Command, Output};

use hangwatch::sources::identity;
use hangwatch_core::identity::Runtime;

const IMAGE: &str = "localhost/hangwatch-identity-test";

fn podman(args: &[&str]) -> std::io::Result<Output> {
    Command::new("podman").args(args).output()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Why podman cannot run here, or `None` when it can.
fn cannot_run() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root: the reader test runs rootful podman".into());
    }
    match podman(&["info"]) {
        Err(e) => Some(format!(
            "podman is not installed ({e}); apt-get install podman runc"
        )),
        Ok(o) if !o.status.success() => Some(format!("`podman info` failed: {}", text(&o))),
        Ok(_) => None,
    }
}

/// The test image: a static busybox as the whole root file system.
fn ensure_image() {
    if podman(&["image", "exists", IMAGE]).is_ok_and(|o| o.status.success()) {
        return;
    }
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox (static) is needed for the test image: apt-get install busybox-static");
    let root = std::env::temp_dir().join(format!("hw-podman-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tar = Command::new("tar")
        .args(["-C", root.to_str().unwrap(), "-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar.status.success(), "tar: {}", text(&tar));
    let mut import = Command::new("podman")
        .args(["import", "-", IMAGE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    import.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    let o = import.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&root);
    assert!(o.status.success(), "podman import: {}", text(&o));
}

/// Starts `sleep` in a container: podman's default runtime first, then runc (crun refuses a
/// hybrid cgroup hierarchy). The rlimits are lowered because raising them needs
/// CAP_SYS_RESOURCE, which a sandboxed root may lack.
fn start() -> String {
    let mut errors = Vec::new();
    for runtime in [&[][..], &["--runtime", "runc"][..]] {
        let mut args: Vec<&str> = runtime.to_vec();
        args.extend([
            "run",
            "-d",
            "--rm",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            IMAGE,
            "/bin/sleep",
            "120",
        ]);
        let o = podman(&args).unwrap();
        if o.status.success() {
            return String::from_utf8_lossy(&o.stdout).trim().to_string();
        }
        errors.push(format!("podman {}: {}", args.join(" "), text(&o)));
    }
    panic!(
        "podman is installed but could not run a container:\n{}",
        errors.join("\n")
    );
}

#[test]
fn podman_container_identity_matches_podman_inspect() {
    if let Some(why) = cannot_run() {
        println!("SKIPPED podman_container_identity_matches_podman_inspect: {why}");
        return;
    }
    ensure_image();
    let id = start();
    let inspect = podman(&["inspect", "--format", "{{.Id}} {{.State.Pid}}", &id]).unwrap();
    let out = text(&inspect);
    // Read while the process lives, then remove the container.
    let parsed = out
        .trim()
        .split_once(' ')
        .map(|(i, p)| (i.to_string(), p.parse::<u32>()));
    let got = match &parsed {
        Some((_, Ok(pid))) => Some(identity::read(
            Path::new("/proc"),
            *pid,
            &identity::passwd(),
        )),
        _ => None,
    };
    let _ = podman(&["rm", "-f", "-t", "0", &id]);
    let (Some((full_id, Ok(pid))), Some(got)) = (parsed, got) else {
        panic!("podman inspect gave no id and pid: {out}");
    };
    println!("container {full_id} pid {pid}: {got:?}");
    let c = got.container.as_ref().expect("a container identity");
    assert_eq!(c.runtime, Runtime::Podman, "{got:?}");
    assert_eq!(c.id, full_id, "{got:?}");
    assert_eq!(
        got.nspid,
        vec![pid, 1],
        "the container's pid 1 maps to the host pid"
    );
    assert_eq!((got.uid, got.user.as_deref()), (Some(0), Some("root")));
}
