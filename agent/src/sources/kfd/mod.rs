//! KFD (ROCm) and user-queue sources that need no eBPF: the `/sys/class/kfd` topology and
//! per-process queue table ([`sysfs`]), `/dev/kfd` SMI events ([`smi`]), and the KFD / MES
//! kernel-log lines (`hangwatch_core::kmsg::kfd`). They all become `model::Event`s; the queue table that answers
//! "who had compute queues on this GPU when it hung" is `correlate::queues` (pure).
pub mod layout;
pub mod smi;
pub mod sysfs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use hangwatch_core::model::{Clock, Event, EventBody, QueueInfo, Source};

/// CLOCK_MONOTONIC in ns: the clock of probe and /dev/kmsg events.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// How often the proc table is re-read: a queue that lives shorter than this is missed by this
/// source (the create/destroy kprobes see every one).
pub const PROC_POLL: Duration = Duration::from_secs(2);

/// The queue table as last seen in `/sys/class/kfd/kfd/proc`, diffed into created/destroyed
/// events on each poll.
pub struct ProcTable {
    root: PathBuf,
    /// gpu_id → PCI address, from the topology.
    gpus: BTreeMap<u32, Option<String>>,
    known: BTreeMap<(u32, u32), QueueInfo>,
    /// Our own pid: opening /dev/kfd for SMI events makes the agent a KFD process too.
    own_pid: u32,
}

impl ProcTable {
    pub fn new(root: &Path) -> Self {
        ProcTable {
            root: root.to_path_buf(),
            gpus: sysfs::gpu_nodes(root)
                .into_iter()
                .map(|n| (n.gpu_id, n.pci))
                .collect(),
            known: BTreeMap::new(),
            own_pid: std::process::id(),
        }
    }

    /// Whether the host has KFD at all.
    pub fn present(&self) -> bool {
        sysfs::kfd_dir(&self.root).join("proc").is_dir()
    }

    /// One scan: an event per queue that appeared or disappeared since the last scan.
    pub fn poll(&mut self, now_ns: u64) -> Vec<Event> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for (pid, (pasid, queues)) in sysfs::scan_procs(&self.root) {
            if pid == self.own_pid {
                continue;
            }
            let comm = std::fs::read_to_string(self.root.join(format!("proc/{pid}/comm")))
                .map(|c| c.trim_end().chars().take(16).collect::<String>())
                .unwrap_or_default();
            for q in queues {
                let key = (pid, q.queue_id);
                seen.insert(key);
                if self.known.contains_key(&key) {
                    continue;
                }
                let info = sysfs::queue_info(&q, pasid, &comm);
                self.known.insert(key, info.clone());
                out.push(self.event(now_ns, EventBody::QueueCreated(info)));
            }
        }
        let gone: Vec<(u32, u32)> = self
            .known
            .keys()
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for k in gone {
            if let Some(info) = self.known.remove(&k) {
                out.push(self.event(now_ns, EventBody::QueueDestroyed(info)));
            }
        }
        out
    }

    fn event(&self, t_ns: u64, body: EventBody) -> Event {
        let gpu_id = match &body {
            EventBody::QueueCreated(q) | EventBody::QueueDestroyed(q) => q.gpu_id,
            _ => None,
        };
        Event {
            t_ns,
            clock: Clock::Monotonic,
            source: Source::Kfd,
            gpu: gpu_id.and_then(|g| self.gpus.get(&g).cloned().flatten()),
            body,
        }
    }
}

/// What the no-eBPF compute sources did, for the run's closing stats line (their threads are
/// detached, so they count here).
#[derive(Debug, Default)]
pub struct Counters {
    pub polls: AtomicU64,
    pub queue_events: AtomicU64,
    pub smi_lines: AtomicU64,
    /// SMI lines that did not parse (unknown event numbers or formats).
    pub smi_unparsed: AtomicU64,
    /// SMI bytes dropped because a line exceeded the bound.
    pub smi_overlong: AtomicU64,
}

impl Counters {
    /// (what, count) for the metrics exposition, in the order of [`Counters::line`].
    pub fn values(&self) -> [(&'static str, u64); 5] {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("proc_polls", g(&self.polls)),
            ("queue_events", g(&self.queue_events)),
            ("smi_lines", g(&self.smi_lines)),
            ("smi_unparsed", g(&self.smi_unparsed)),
            ("smi_overlong_bytes", g(&self.smi_overlong)),
        ]
    }

    pub fn line(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "KFD: proc table polls {} ({} queue events); SMI lines {} (unparsed {}, overlong bytes {})",
            g(&self.polls),
            g(&self.queue_events),
            g(&self.smi_lines),
            g(&self.smi_unparsed),
            g(&self.smi_overlong)
        )
    }
}

/// One source's state for the run log: live, or degraded with the reason (the agent goes on
/// without it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceStatus {
    pub live: bool,
    /// Off by design (no permission the deployment meant to give): said, not warned about.
    pub expected: bool,
    pub line: String,
}

impl SourceStatus {
    fn live(line: String) -> Self {
        SourceStatus {
            live: true,
            expected: false,
            line,
        }
    }

    fn degraded(line: String) -> Self {
        SourceStatus {
            live: false,
            expected: false,
            line,
        }
    }

    fn off(line: String) -> Self {
        SourceStatus {
            live: false,
            expected: true,
            line,
        }
    }
}

/// Starts the no-eBPF compute sources under `root` (`/` on a host): the SMI reader and a
/// thread polling the proc table every [`PROC_POLL`]. Events go to `tx`; returns one status
/// per source for the run log (they degrade independently, never fatally) and counters.
pub fn spawn(root: &Path, tx: SyncSender<Event>) -> (Vec<SourceStatus>, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let mut status = Vec::new();
    let mut table = ProcTable::new(root);
    if !table.present() {
        status.push(SourceStatus::degraded(
            "KFD: /sys/class/kfd/kfd/proc absent (amdkfd not loaded): no compute queue table, no SMI events"
                .to_string(),
        ));
        return (status, counters);
    }
    let smi = smi::spawn(root, tx.clone(), counters.clone());
    for (gpu_id, pci) in &smi.subscribed {
        status.push(SourceStatus::live(format!(
            "KFD: SMI events of gpu_id {gpu_id} ({})",
            pci.as_deref().unwrap_or("PCI address unknown")
        )));
    }
    if let Some(d) = &smi.denied {
        // Since 6.0 the kernel sends another process's SMI events (VM faults, evictions) only
        // to a CAP_SYS_ADMIN reader, which the least-privilege service is not; resets are in
        // the kernel log. The queue table below does not need /dev/kfd.
        status.push(SourceStatus::off(format!(
            "KFD: SMI events not read ({d}; the shipped service does not open /dev/kfd): the queue table and the KFD kernel lines still work"
        )));
    }
    for e in &smi.errors {
        status.push(SourceStatus::degraded(format!(
            "KFD: SMI events unavailable: {e}"
        )));
    }
    let c = counters.clone();
    let spawned = std::thread::Builder::new()
        .name("hw-kfd-proc".into())
        .spawn(move || loop {
            let evs = table.poll(monotonic_ns());
            c.polls.fetch_add(1, Ordering::Relaxed);
            c.queue_events
                .fetch_add(evs.len() as u64, Ordering::Relaxed);
            for ev in evs {
                if tx.send(ev).is_err() {
                    return;
                }
            }
            std::thread::sleep(PROC_POLL);
        });
    status.push(match spawned {
        Ok(_) => SourceStatus::live(format!(
            "KFD: queue table from /sys/class/kfd/kfd/proc every {} s",
            PROC_POLL.as_secs()
        )),
        Err(e) => SourceStatus::degraded(format!("KFD: cannot poll the queue table: {e}")),
    });
    (status, counters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_table_diffs_into_created_and_destroyed() {
        let root = std::env::temp_dir().join(format!("hw-kfd-diff-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        sysfs::tests::fake_kfd(&root);
        std::fs::create_dir_all(root.join("proc/4242")).unwrap();
        std::fs::write(root.join("proc/4242/comm"), "python3\n").unwrap();
        let mut t = ProcTable::new(&root);
        assert!(t.present());
        let first = t.poll(10);
        assert_eq!(first.len(), 2);
        for e in &first {
            assert_eq!(e.gpu.as_deref(), Some("0000:2f:00.0"));
            assert_eq!(e.source, Source::Kfd);
            match &e.body {
                EventBody::QueueCreated(q) => {
                    assert_eq!((q.task.pid, q.task.comm.as_str()), (4242, "python3"));
                    assert_eq!(q.pasid, Some(32771));
                }
                b => panic!("{b:?}"),
            }
        }
        assert!(t.poll(20).is_empty(), "no change, no event");
        std::fs::remove_dir_all(sysfs::kfd_dir(&root).join("proc/4242/queues/1")).unwrap();
        let second = t.poll(30);
        assert_eq!(second.len(), 1);
        assert!(matches!(&second[0].body, EventBody::QueueDestroyed(q) if q.queue_id == Some(1)));
        let _ = std::fs::remove_dir_all(&root);
    }
}
