//! What KFD publishes in sysfs, read without eBPF:
//! - the topology (`/sys/class/kfd/kfd/topology/nodes/N/{gpu_id,properties}`): which KFD
//!   `gpu_id` is which PCI device;
//! - the per-process table (`/sys/class/kfd/kfd/proc/<pid>/{pasid,queues/<qid>/{type,gpuid,size}}`,
//!   present since 5.x): which processes hold KFD queues right now.
//!
//! Everything read here is kernel-formatted but still treated as untrusted text: sizes are
//! bounded and unparsable entries are skipped, never fatal.
use std::collections::BTreeMap;
use std::path::Path;

use hangwatch_core::model::{QueueInfo, QueueKind, QueueOrigin, Task};

/// `/sys/class/kfd/kfd` under `root` (`/` on a real host).
pub fn kfd_dir(root: &Path) -> std::path::PathBuf {
    root.join("sys/class/kfd/kfd")
}

/// One GPU node of the KFD topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuNode {
    pub gpu_id: u32,
    /// PCI address `DDDD:BB:DD.F` from `domain` and `location_id`, when the properties have them.
    pub pci: Option<String>,
}

/// GPU nodes (gpu_id != 0) of the KFD topology, in node order. Empty when KFD is absent.
pub fn gpu_nodes(root: &Path) -> Vec<GpuNode> {
    let nodes = kfd_dir(root).join("topology/nodes");
    let mut idx: Vec<u32> = read_dir_names(&nodes)
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    idx.sort_unstable();
    idx.into_iter()
        .filter_map(|i| {
            let d = nodes.join(i.to_string());
            let gpu_id: u32 = read_small(&d.join("gpu_id"))?.trim().parse().ok()?;
            if gpu_id == 0 {
                return None; // a CPU node
            }
            let props = read_small(&d.join("properties")).unwrap_or_default();
            Some(GpuNode {
                gpu_id,
                pci: pci_from_properties(&props),
            })
        })
        .collect()
}

/// `domain` + `location_id` (bus << 8 | devfn) of a topology `properties` file → PCI address.
pub fn pci_from_properties(props: &str) -> Option<String> {
    let get = |key: &str| -> Option<u64> {
        props.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
    };
    let loc = get("location_id")?;
    let domain = get("domain").unwrap_or(0);
    if loc > 0xffff || domain > 0xffff_ffff {
        return None;
    }
    Some(format!(
        "{domain:04x}:{:02x}:{:02x}.{}",
        loc >> 8,
        (loc >> 3) & 0x1f,
        loc & 7
    ))
}

/// A queue as the KFD proc table shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcQueue {
    pub pid: u32,
    pub queue_id: u32,
    pub gpu_id: Option<u32>,
    /// KFD's internal `enum kfd_queue_type`: 0 compute and 1 SDMA on every kernel; the other
    /// values moved between kernels, so they are reported as "other".
    pub kind: Option<u32>,
}

/// Every process in `/sys/class/kfd/kfd/proc` with its pasid (when the file exists and parses)
/// and its queues. `pid` directories that vanish mid-scan are skipped.
pub fn scan_procs(root: &Path) -> BTreeMap<u32, (Option<u32>, Vec<ProcQueue>)> {
    let proc_dir = kfd_dir(root).join("proc");
    let mut out = BTreeMap::new();
    for name in read_dir_names(&proc_dir) {
        let Ok(pid) = name.parse::<u32>() else {
            continue;
        };
        let d = proc_dir.join(&name);
        let pasid = read_small(&d.join("pasid")).and_then(|s| s.trim().parse().ok());
        let mut queues = Vec::new();
        for q in read_dir_names(&d.join("queues")) {
            let Ok(queue_id) = q.parse::<u32>() else {
                continue;
            };
            let qd = d.join("queues").join(&q);
            queues.push(ProcQueue {
                pid,
                queue_id,
                gpu_id: read_small(&qd.join("gpuid")).and_then(|s| s.trim().parse().ok()),
                kind: read_small(&qd.join("type")).and_then(|s| s.trim().parse().ok()),
            });
        }
        queues.sort();
        out.insert(pid, (pasid, queues));
    }
    out
}

/// The `QueueInfo` of a proc-table queue (the comm is filled by the caller from /proc).
pub fn queue_info(q: &ProcQueue, pasid: Option<u32>, comm: &str) -> QueueInfo {
    QueueInfo {
        task: Task::new(q.pid, 0, comm),
        origin: Some(QueueOrigin::Kfd),
        kind: Some(match q.kind {
            Some(0) => QueueKind::Compute,
            Some(1) => QueueKind::Sdma,
            _ => QueueKind::Other,
        }),
        queue_id: Some(q.queue_id),
        gpu_id: q.gpu_id,
        pasid,
        ..QueueInfo::default()
    }
}

fn read_dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .take(65536)
        .collect()
}

/// A sysfs attribute is at most a page; anything larger is not one of ours.
fn read_small(p: &Path) -> Option<String> {
    use std::io::Read;
    let mut s = String::new();
    std::fs::File::open(p)
        .ok()?
        .take(4096)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fake `/sys/class/kfd/kfd` like the real driver's (and the simulator's).
    pub fn fake_kfd(root: &Path) {
        let k = kfd_dir(root);
        let n0 = k.join("topology/nodes/0");
        let n1 = k.join("topology/nodes/1");
        std::fs::create_dir_all(&n0).unwrap();
        std::fs::create_dir_all(&n1).unwrap();
        std::fs::write(n0.join("gpu_id"), "0\n").unwrap();
        std::fs::write(n1.join("gpu_id"), "48152\n").unwrap();
        std::fs::write(
            n1.join("properties"),
            "cpu_cores_count 0\nsimd_count 192\nlocation_id 12032\ndrm_render_minor 128\ndomain 0\n",
        )
        .unwrap();
        let q = k.join("proc/4242/queues/0");
        std::fs::create_dir_all(&q).unwrap();
        std::fs::write(k.join("proc/4242/pasid"), "32771\n").unwrap();
        std::fs::write(q.join("type"), "0").unwrap();
        std::fs::write(q.join("gpuid"), "48152").unwrap();
        std::fs::write(q.join("size"), "65536").unwrap();
        let q = k.join("proc/4242/queues/1");
        std::fs::create_dir_all(&q).unwrap();
        std::fs::write(q.join("type"), "1").unwrap();
        std::fs::write(q.join("gpuid"), "48152").unwrap();
        // A process without queues, and junk the scan must skip.
        std::fs::create_dir_all(k.join("proc/77")).unwrap();
        std::fs::create_dir_all(k.join("proc/notapid/queues/0")).unwrap();
        std::fs::create_dir_all(k.join("proc/4242/queues/x")).unwrap();
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("hw-kfd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn topology_maps_gpu_ids_to_pci() {
        let root = tmp("topo");
        fake_kfd(&root);
        assert_eq!(
            gpu_nodes(&root),
            vec![GpuNode {
                gpu_id: 48152,
                // location_id 12032 = 0x2f00: bus 0x2f, device 0, function 0.
                pci: Some("0000:2f:00.0".into())
            }]
        );
        assert_eq!(
            pci_from_properties("location_id 769\ndomain 1\n").as_deref(),
            Some("0001:03:00.1")
        );
        assert_eq!(pci_from_properties("location_id x\n"), None);
        assert_eq!(pci_from_properties("location_id 99999999\n"), None);
        assert!(gpu_nodes(&root.join("nothing")).is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn proc_table_lists_queues_and_pasids() {
        let root = tmp("proc");
        fake_kfd(&root);
        let t = scan_procs(&root);
        assert_eq!(t.len(), 2, "{t:?}");
        let (pasid, qs) = &t[&4242];
        assert_eq!(*pasid, Some(32771));
        assert_eq!(qs.len(), 2);
        assert_eq!(
            (qs[0].queue_id, qs[0].kind, qs[0].gpu_id),
            (0, Some(0), Some(48152))
        );
        let qi = queue_info(&qs[1], *pasid, "python3");
        assert_eq!(qi.kind, Some(QueueKind::Sdma));
        assert_eq!(qi.task.comm, "python3");
        assert_eq!(t[&77], (None, vec![]));
        let _ = std::fs::remove_dir_all(&root);
    }
}
