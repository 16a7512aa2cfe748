//! `/proc` facts: which processes hold amdgpu fds (pasid, drm-client-id) at start-up, and the
//! exe/comm of a pid the first time it is seen submitting, so that processes which opened the
//! GPU before the agent started — or exited before an incident is written — are still named.
use std::collections::{HashMap, VecDeque};
use std::path::Path;

use hangwatch_core::identity::ProcessIdentity;
use hangwatch_core::model::{Clock, Event, EventBody, Source};

use crate::sources::identity;

/// What one amdgpu fdinfo file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdInfo {
    pub pasid: Option<u32>,
    pub client_id: Option<u64>,
    pub pdev: Option<String>,
}

/// Parses one fdinfo text; `None` unless it is an amdgpu DRM fd. Handles the 6.1–6.4 form
/// (amdgpu prints everything, `drm-client-id` is a fence context) and the ≥ 6.8 form (DRM core
/// prints `drm-client-id`, amdgpu adds `pasid:`).
pub fn parse_fdinfo(text: &str) -> Option<FdInfo> {
    let mut amdgpu = false;
    let mut info = FdInfo::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "drm-driver" => amdgpu = v == "amdgpu",
            "pasid" => info.pasid = v.parse().ok(),
            "drm-client-id" => info.client_id = v.parse().ok(),
            "drm-pdev" => info.pdev = Some(v.to_string()),
            _ => {}
        }
    }
    amdgpu.then_some(info)
}

/// `/proc/PID/exe` and `/proc/PID/comm` (None when the process is gone or not readable).
pub fn exe_comm(proc_root: &Path, pid: u32) -> (Option<String>, Option<String>) {
    let dir = proc_root.join(pid.to_string());
    let exe = std::fs::read_link(dir.join("exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let comm = std::fs::read_to_string(dir.join("comm"))
        .ok()
        .map(|s| s.trim_end().to_string());
    (exe, comm)
}

/// Scans `proc_root/*/fdinfo/*` for amdgpu fds; one `ProcessInfo` event per process.
pub fn scan(proc_root: &Path, now_ns: u64) -> Vec<Event> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return out;
    };
    for ent in dir.flatten() {
        let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(ent.path().join("fdinfo")) else {
            continue;
        };
        let (mut pasids, mut clients, mut gpu) = (Vec::new(), Vec::new(), None);
        for fd in fds.flatten() {
            let Ok(text) = std::fs::read_to_string(fd.path()) else {
                continue;
            };
            if let Some(i) = parse_fdinfo(&text) {
                pasids.extend(i.pasid.filter(|p| !pasids.contains(p)));
                clients.extend(i.client_id.filter(|c| !clients.contains(c)));
                gpu = gpu.or(i.pdev);
            }
        }
        if pasids.is_empty() && clients.is_empty() {
            continue;
        }
        let (exe, comm) = exe_comm(proc_root, pid);
        out.push(Event {
            t_ns: now_ns,
            clock: Clock::Monotonic,
            source: Source::Proc,
            gpu,
            body: EventBody::ProcessInfo {
                pid,
                comm: comm.unwrap_or_default(),
                exe,
                pasids,
                client_ids: clients,
            },
        });
    }
    out
}

/// Bounded "first time seen" cache: `first_sight` returns a `ProcessInfo` event only for pids
/// not seen recently, so `run` reads /proc once per submitter, not once per job. It also keeps
/// the GPU driver libraries the process had mapped then: a process that is submitting has its
/// userspace driver loaded, and it may be dead by the time an incident is written. For the
/// same reason it keeps the process's identity (unit, user, container, pod, Slurm job).
pub struct SeenCache {
    cap: usize,
    seen: HashMap<u32, Seen>,
    order: VecDeque<u32>,
}

/// What was read about a process when it was first seen.
struct Seen {
    maps: Vec<String>,
    identity: ProcessIdentity,
}

impl SeenCache {
    pub fn new(cap: usize) -> Self {
        SeenCache {
            cap: cap.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// `Some(event)` the first time `pid` is seen (evicting the oldest entry when full).
    pub fn first_sight(&mut self, proc_root: &Path, pid: u32, now_ns: u64) -> Option<Event> {
        if pid == 0 || self.seen.contains_key(&pid) {
            return None;
        }
        if self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        let maps = crate::sources::procinfo::read_maps_capped(
            &proc_root.join(pid.to_string()).join("maps"),
        )
        .map(|m| crate::sources::procinfo::driver_lines(&m))
        .unwrap_or_default();
        let identity = identity::read(proc_root, pid, &identity::passwd());
        self.seen.insert(pid, Seen { maps, identity });
        self.order.push_back(pid);
        let (exe, comm) = exe_comm(proc_root, pid);
        comm.as_ref()?;
        Some(Event {
            t_ns: now_ns,
            clock: Clock::Monotonic,
            source: Source::Proc,
            gpu: None,
            body: EventBody::ProcessInfo {
                pid,
                comm: comm.unwrap_or_default(),
                exe,
                pasids: vec![],
                client_ids: vec![],
            },
        })
    }

    /// Driver library lines of `/proc/PID/maps` captured when `pid` was first seen.
    pub fn driver_maps(&self, pid: u32) -> Option<&[String]> {
        self.seen.get(&pid).map(|v| v.maps.as_slice())
    }

    /// The identity read when `pid` was first seen (`None` when not seen or nothing known).
    pub fn identity(&self, pid: u32) -> Option<&ProcessIdentity> {
        self.seen
            .get(&pid)
            .map(|s| &s.identity)
            .filter(|i| !i.is_empty())
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FDINFO_61: &str = "pos:\t0\nflags:\t02100002\nmnt_id:\t26\nino:\t1043\n\
pasid:\t32770\ndrm-driver:\tamdgpu\ndrm-pdev:\t0000:2f:00.0\ndrm-client-id:\t18\n\
drm-memory-vram:\t12288 KiB\ndrm-memory-gtt:\t2052 KiB\ndrm-engine-gfx:\t1240813 ns\n";

    const FDINFO_68: &str = "pos:\t0\nflags:\t02100002\ndrm-driver:\tamdgpu\ndrm-client-id:\t7\n\
drm-pdev:\t0000:03:00.0\npasid:\t32771\ndrm-total-vram:\t8192 KiB\ndrm-resident-vram:\t8192 KiB\n\
amd-evicted-vram:\t0 KiB\ndrm-engine-gfx:\t5000 ns\n";

    #[test]
    fn parses_61_and_68_forms() {
        assert_eq!(
            parse_fdinfo(FDINFO_61),
            Some(FdInfo {
                pasid: Some(32770),
                client_id: Some(18),
                pdev: Some("0000:2f:00.0".into())
            })
        );
        assert_eq!(
            parse_fdinfo(FDINFO_68),
            Some(FdInfo {
                pasid: Some(32771),
                client_id: Some(7),
                pdev: Some("0000:03:00.0".into())
            })
        );
    }

    #[test]
    fn other_drivers_and_plain_files_are_ignored() {
        assert_eq!(
            parse_fdinfo("pos:\t0\ndrm-driver:\ti915\ndrm-client-id:\t3\n"),
            None
        );
        assert_eq!(parse_fdinfo("pos:\t0\nflags:\t0100002\n"), None);
        assert_eq!(parse_fdinfo(""), None);
    }

    #[test]
    fn scan_fake_proc_tree() {
        let root = std::env::temp_dir().join(format!("hw-proc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (pid, files) in [
            ("4242", vec![FDINFO_61, FDINFO_61]),
            ("77", vec!["pos:\t0\n"]),
        ] {
            let d = root.join(pid).join("fdinfo");
            std::fs::create_dir_all(&d).unwrap();
            for (i, f) in files.iter().enumerate() {
                std::fs::write(d.join(i.to_string()), f).unwrap();
            }
            std::fs::write(root.join(pid).join("comm"), "zed\n").unwrap();
        }
        let ev = scan(&root, 5);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].gpu.as_deref(), Some("0000:2f:00.0"));
        match &ev[0].body {
            EventBody::ProcessInfo {
                pid,
                comm,
                pasids,
                client_ids,
                ..
            } => {
                assert_eq!((*pid, comm.as_str()), (4242, "zed"));
                assert_eq!(
                    (pasids.as_slice(), client_ids.as_slice()),
                    (&[32770][..], &[18][..])
                );
            }
            b => panic!("{b:?}"),
        }
        std::fs::write(
            root.join("4242").join("maps"),
            "7f00-7f10 r-xp 00000000 08:01 12 /usr/lib/x86_64-linux-gnu/libc.so.6\n\
7f20-7f30 r-xp 00000000 08:01 13 /usr/lib/x86_64-linux-gnu/libvulkan_radeon.so\n",
        )
        .unwrap();
        std::fs::write(
            root.join("4242").join("status"),
            "Uid:\t1000\t1000\t1000\t1000\n",
        )
        .unwrap();
        let mut c = SeenCache::new(1);
        assert!(c.first_sight(&root, 4242, 1).is_some());
        let maps = c.driver_maps(4242).unwrap();
        assert_eq!(maps.len(), 1);
        assert!(maps[0].ends_with("libvulkan_radeon.so"), "{maps:?}");
        assert!(c.first_sight(&root, 4242, 2).is_none());
        assert_eq!(c.identity(4242).and_then(|i| i.uid), Some(1000));
        assert!(c.identity(77).is_none(), "77 was never seen");
        assert!(c.first_sight(&root, 77, 3).is_some()); // evicts 4242
        assert!(
            c.driver_maps(4242).is_none(),
            "evicted entries drop their maps too"
        );
        assert!(c.first_sight(&root, 4242, 4).is_some());
        assert_eq!(c.len(), 1);
        let _ = std::fs::remove_dir_all(&root);
    }
}
