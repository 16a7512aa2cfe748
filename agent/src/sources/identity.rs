//! The identity of a live process (unit, user, container, pod, Slurm job, NSpid chain, DRM
//! client names), read from `/proc/PID` while it runs and parsed by
//! [`hangwatch_core::identity`]. Every file is opened beneath a `/proc/PID` directory held by
//! descriptor, without following any symlink, and read up to a bound.
use std::path::Path;

use hangwatch_core::identity::{self, ProcessIdentity, MAX_TEXT_BYTES};

use crate::fsafe::SafeDir;

/// At most this many fdinfo entries are read per process (a DRM fd is among the first few;
/// a process may hold a million fds).
pub const MAX_FDINFO: usize = 1024;
/// An fdinfo file is a few hundred bytes; a larger one is not read.
const MAX_FDINFO_BYTES: u64 = 16 << 10;
/// The passwd database is read up to this size (a local one holds a few hundred users).
const MAX_PASSWD_BYTES: u64 = 4 << 20;

/// `proc_root/PID`'s identity; empty fields for whatever cannot be read (the process exited,
/// or a file is missing on this kernel). `passwd` is the passwd database text.
pub fn read(proc_root: &Path, pid: u32, passwd: &[u8]) -> ProcessIdentity {
    let Ok(dir) = SafeDir::open_nofollow(&proc_root.join(pid.to_string())) else {
        return ProcessIdentity::default();
    };
    let file = |name: &str| {
        dir.read_file(name, MAX_TEXT_BYTES as u64)
            .unwrap_or_default()
    };
    let mut id = identity::parse(&file("cgroup"), &file("status"), passwd);
    for name in client_names(&dir) {
        identity::add_client_name(&mut id, name);
    }
    id
}

/// `proc_root/PID`'s identity when its comm is `comm` (a pid named in an old kernel-log line
/// may belong to another process now); `None` otherwise.
pub fn read_live(proc_root: &Path, pid: u32, comm: &str, passwd: &[u8]) -> Option<ProcessIdentity> {
    let dir = SafeDir::open_nofollow(&proc_root.join(pid.to_string())).ok()?;
    let now = dir.read_file("comm", 64).ok()?;
    let now = String::from_utf8_lossy(&now);
    if comm.is_empty() || now.trim_end_matches('\n') != comm {
        return None;
    }
    Some(read(proc_root, pid, passwd)).filter(|i| !i.is_empty())
}

/// `drm-client-name` of the process's amdgpu fds (fdinfo files, never the `fd/` links).
fn client_names(dir: &SafeDir) -> Vec<String> {
    let Ok(fdinfo) = dir.subdir("fdinfo") else {
        return Vec::new();
    };
    let Ok(entries) = fdinfo.entries() else {
        return Vec::new();
    };
    entries
        .iter()
        .take(MAX_FDINFO)
        .filter_map(|(n, _)| fdinfo.read_file(n, MAX_FDINFO_BYTES).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .filter(|t| crate::sources::procscan::parse_fdinfo(t).is_some())
        .filter_map(|t| identity::drm_client_name(&t))
        .collect()
}

/// The passwd database (`/etc/passwd`, not through a symlink), or nothing.
pub fn passwd() -> Vec<u8> {
    SafeDir::open_nofollow(Path::new("/etc"))
        .and_then(|d| Ok(d.read_file("passwd", MAX_PASSWD_BYTES)?))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /proc/PID with a podman cgroup, a nested pid namespace and two amdgpu fds.
    #[test]
    fn reads_cgroup_status_and_client_names_of_a_proc_tree() {
        let root = std::env::temp_dir().join(format!("hw-ident-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let d = root.join("4242");
        std::fs::create_dir_all(d.join("fdinfo")).unwrap();
        let cid = "241e2ce08bbb31cda60f9f1886a31c5e5b095a53ef12e86d0e086e18fe06a6ef";
        std::fs::write(
            d.join("cgroup"),
            format!("0::/libpod_parent/libpod-{cid}\n"),
        )
        .unwrap();
        std::fs::write(
            d.join("status"),
            "Uid:\t1000\t1000\t1000\t1000\nNSpid:\t4242\t1\n",
        )
        .unwrap();
        let fd = |name: &str| format!("pos:\t0\ndrm-driver:\tamdgpu\ndrm-client-name:\t{name}\n");
        std::fs::write(d.join("fdinfo/5"), fd("guest-vkcube")).unwrap();
        std::fs::write(d.join("fdinfo/6"), fd("guest-vkcube")).unwrap();
        std::fs::write(
            d.join("fdinfo/7"),
            "drm-driver:\ti915\ndrm-client-name:\tnot-ours\n",
        )
        .unwrap();
        // A planted symlink is never followed.
        std::os::unix::fs::symlink("/etc/shadow", d.join("fdinfo/8")).unwrap();
        let id = read(&root, 4242, b"alice:x:1000:1000::/home/alice:/bin/sh\n");
        let c = id.container.clone().unwrap();
        assert_eq!((c.runtime.name(), c.id.as_str()), ("podman", cid));
        assert_eq!(id.user.as_deref(), Some("alice"));
        assert_eq!(id.nspid, vec![4242, 1]);
        assert_eq!(id.drm_client_names, vec!["guest-vkcube".to_string()]);
        assert!(
            read(&root, 9, b"").is_empty(),
            "a gone process has no identity"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Our own process, through the real /proc: its uid and cgroup are read; a live read
    /// under another name is refused (the pid may have been reused).
    #[test]
    fn reads_our_own_process() {
        let proc = Path::new("/proc");
        let pid = std::process::id();
        let id = read(proc, pid, &passwd());
        assert_eq!(id.uid, Some(rustix::process::getuid().as_raw()));
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(read_live(proc, pid, comm.trim_end(), &passwd()), Some(id));
        assert_eq!(read_live(proc, pid, "not-us", &passwd()), None);
    }
}
