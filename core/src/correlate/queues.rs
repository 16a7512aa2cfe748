//! The active-queue table for compute attribution: which processes hold KFD compute/SDMA
//! queues or 7.x user queues on which GPU, fed by `QueueCreated`/`QueueDestroyed` (probes or
//! the `/sys/class/kfd` proc poll) and user-queue fences. ROCm submits through doorbells, not
//! the CS ioctl, so without this table a HWS/MES hang or a "pid 0" fault has no owner at all.
//! It also keeps the latest compute notes (KFD/MES lines, SMI events, hung user queues) so an
//! incident opening after them can adopt them (KFD prints its preemption failures seconds
//! before the reset that opens the incident). The rules that read it are `compute.rs`.
//!
//! Pure and bounded: at most [`MAX_LIVE`] live queues (oldest evicted, counted), the last
//! [`MAX_GONE`] destroyed ones (a queue destroyed just before the hang was detected still
//! counts), and the last [`MAX_RECENT_NOTES`] notes. Queues are per GPU: every lookup takes
//! the incident's device (an unknown device on either side matches any).
use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

use crate::incident::QueueRef;
use crate::model::{
    same_gpu, Event, EventBody, JobKey, KfdLogKind, QueueInfo, QueueKind, QueueOrigin, SmiEvent,
    SmiKind, Source, UserqFence,
};

pub const MAX_LIVE: usize = 4096;
pub const MAX_GONE: usize = 1024;
/// Compute notes kept for incidents that open after them.
pub const MAX_RECENT_NOTES: usize = 512;
/// Compute notes this long before an incident's first event still belong to it: KFD prints
/// its preemption failures up to `queue_preemption_timeout_ms` (9 s by default) before the
/// reset that opens the incident.
pub const NOTE_LOOKBACK_NS: u64 = 12_000_000_000;
/// A queue destroyed at most this long before the incident began still counts as active.
pub const GONE_SLACK_NS: u64 = 1_000_000_000;
/// User-queue state `AMDGPU_USERQ_STATE_HUNG`.
pub const USERQ_STATE_HUNG: u32 = 3;

/// One queue's life.
#[derive(Clone, Debug)]
pub struct QueueRec {
    pub info: QueueInfo,
    pub gpu: Option<String>,
    pub created_ns: u64,
    pub destroyed_ns: Option<u64>,
    /// User queues: fences emitted (jobs), the time and key of the last one.
    pub fences: u64,
    pub last_fence_ns: Option<u64>,
    pub last_fence: Option<(u64, u64)>,
}

/// Key: KFD queue ids are unique per process; user-queue doorbells per device.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Kfd { pid: u32, queue_id: u32 },
    Userq { gpu: Option<String>, doorbell: u64 },
}

#[derive(Default)]
pub struct Queues {
    live: HashMap<Key, QueueRec>,
    gone: VecDeque<QueueRec>,
    /// The latest compute notes (events for which [`is_note`] holds), for adoption.
    recent: VecDeque<Event>,
    /// Sources that reported queues (for the attribution's note).
    from_probe: bool,
    from_sysfs: bool,
    pub evicted: u64,
}

fn key(info: &QueueInfo, gpu: &Option<String>) -> Option<Key> {
    match (info.origin, info.queue_id, info.doorbell) {
        (Some(QueueOrigin::Userq), _, Some(d)) => Some(Key::Userq {
            gpu: gpu.clone(),
            doorbell: d,
        }),
        (_, Some(q), _) if info.task.pid != 0 => Some(Key::Kfd {
            pid: info.task.pid,
            queue_id: q,
        }),
        _ => None,
    }
}

/// Fill `into`'s unknown fields from `from` (two sources describing one queue).
fn merge(into: &mut QueueInfo, from: &QueueInfo) {
    if into.task.comm.is_empty() {
        into.task.comm.clone_from(&from.task.comm);
    }
    into.origin = into.origin.or(from.origin);
    into.kind = into.kind.or(from.kind);
    into.gpu_id = into.gpu_id.or(from.gpu_id);
    into.doorbell = into.doorbell.or(from.doorbell);
    into.doorbell_offset = into.doorbell_offset.or(from.doorbell_offset);
    into.pasid = into.pasid.or(from.pasid);
    into.client_id = into.client_id.or(from.client_id);
}

impl Queues {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn live_len(&self) -> usize {
        self.live.len()
    }

    /// Updates the table from `ev` and remembers it when it is a compute note.
    pub fn observe(&mut self, ev: &Event) {
        let t = ev.t_ns;
        match &ev.body {
            EventBody::QueueCreated(info) => self.created(info, ev, t),
            EventBody::QueueDestroyed(info) => {
                if let Some(k) = key(info, &ev.gpu) {
                    self.destroy(&k, t);
                }
            }
            EventBody::ProcessExit { task } => self.process_gone(task.pid, t),
            EventBody::KfdSmi(SmiEvent {
                kind: SmiKind::ProcessEnd { pid, .. },
                ..
            }) => self.process_gone(*pid, t),
            EventBody::UserqFence(f) => self.fence(f, ev),
            _ => {}
        }
        if is_note(ev) {
            if self.recent.len() >= MAX_RECENT_NOTES {
                self.recent.pop_front();
            }
            self.recent.push_back(ev.clone());
        }
    }

    /// Every queue of `pid` is gone (it exited, or KFD said its process ended).
    fn process_gone(&mut self, pid: u32, t: u64) {
        let keys: Vec<Key> = self
            .live
            .iter()
            .filter(|(_, r)| r.info.task.pid == pid)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.destroy(&k, t);
        }
    }

    /// A user-queue fence: a job on that queue, which exists if it was created before the
    /// agent started (the fence's submitter owns it then).
    fn fence(&mut self, f: &UserqFence, ev: &Event) {
        let k = Key::Userq {
            gpu: ev.gpu.clone(),
            doorbell: f.doorbell,
        };
        if !self.live.contains_key(&k) {
            let info = QueueInfo {
                task: f.task.clone(),
                origin: Some(QueueOrigin::Userq),
                kind: Some(QueueKind::from_userq_ip(f.queue_type)),
                doorbell: Some(f.doorbell),
                client_id: Some(f.client_id),
                ..QueueInfo::default()
            };
            self.created(&info, ev, ev.t_ns);
        }
        if let Some(r) = self.live.get_mut(&k) {
            r.fences += 1;
            r.last_fence_ns = Some(ev.t_ns);
            r.last_fence = Some((f.context, f.seqno));
            r.info.client_id = r.info.client_id.or(Some(f.client_id));
            if r.info.task.pid == 0 {
                r.info.task = f.task.clone();
            }
        }
    }

    fn created(&mut self, info: &QueueInfo, ev: &Event, t: u64) {
        let Some(k) = key(info, &ev.gpu) else {
            return;
        };
        match ev.source {
            Source::Ebpf => self.from_probe = true,
            Source::Kfd => self.from_sysfs = true,
            _ => {}
        }
        if let Some(r) = self.live.get_mut(&k) {
            merge(&mut r.info, info);
            r.gpu = r.gpu.take().or_else(|| ev.gpu.clone());
            return;
        }
        if self.live.len() >= MAX_LIVE {
            if let Some(old) = self
                .live
                .iter()
                .min_by_key(|(_, r)| r.created_ns)
                .map(|(k, _)| k.clone())
            {
                self.live.remove(&old);
                self.evicted += 1;
            }
        }
        self.live.insert(
            k,
            QueueRec {
                info: info.clone(),
                gpu: ev.gpu.clone(),
                created_ns: t,
                destroyed_ns: None,
                fences: 0,
                last_fence_ns: None,
                last_fence: None,
            },
        );
    }

    fn destroy(&mut self, k: &Key, t: u64) {
        if let Some(mut r) = self.live.remove(k) {
            r.destroyed_ns = Some(t);
            if self.gone.len() >= MAX_GONE {
                self.gone.pop_front();
            }
            self.gone.push_back(r);
        }
    }

    /// Queues on `gpu` (any GPU when either side is unknown) that existed during [from, to].
    pub fn active(&self, gpu: Option<&str>, from: u64, to: u64) -> Vec<&QueueRec> {
        self.live
            .values()
            .chain(self.gone.iter())
            .filter(|r| r.info.task.pid != 0 && r.created_ns <= to)
            .filter(|r| {
                r.destroyed_ns
                    .is_none_or(|d| d.saturating_add(GONE_SLACK_NS) >= from)
            })
            .filter(|r| same_gpu(gpu, r.gpu.as_deref()))
            .collect()
    }

    /// The remembered notes on `gpu` within [from, to], for an incident opening now.
    pub fn lookback(&self, gpu: Option<&str>, from: u64, to: u64) -> Vec<Event> {
        self.recent
            .iter()
            .filter(|n| n.t_ns >= from && n.t_ns <= to && same_gpu(gpu, n.gpu.as_deref()))
            .cloned()
            .collect()
    }

    /// The owner of a queue created with `pasid` (KFD processes carry theirs in the proc table).
    pub fn pid_of_pasid(&self, pasid: u32) -> Option<u32> {
        self.live
            .values()
            .chain(self.gone.iter().rev())
            .find(|r| r.info.pasid == Some(pasid) && r.info.task.pid != 0)
            .map(|r| r.info.task.pid)
    }

    pub fn by_doorbell(
        &self,
        gpu: Option<&str>,
        doorbell: u64,
        from: u64,
        to: u64,
    ) -> Option<&QueueRec> {
        // A live queue first, else the newest one destroyed in the window.
        self.active(gpu, from, to)
            .into_iter()
            .filter(|r| r.info.doorbell == Some(doorbell))
            .max_by_key(|r| (r.destroyed_ns.is_none(), r.created_ns))
    }
}

/// The flight-recorder "ring" of a user queue: its IP and doorbell (`userq_gfx.4100`).
pub fn userq_ring(queue_type: u32, doorbell: u64) -> String {
    format!(
        "userq_{}.{doorbell}",
        QueueKind::from_userq_ip(queue_type).name()
    )
}

impl Queues {
    /// The CS-side event a user-queue event stands for, so user queues are recorded and
    /// attributed like rings: a fence is a submitted job on the queue's "ring"; the kernel
    /// marking the queue hung is that ring's timeout, on its last fence.
    pub fn derived(&self, ev: &Event) -> Option<Event> {
        let body = match &ev.body {
            EventBody::UserqFence(f) => EventBody::Submit {
                task: f.task.clone(),
                ring: userq_ring(f.queue_type, f.doorbell),
                job: JobKey {
                    context: Some(f.context),
                    seqno: Some(f.seqno),
                    ..JobKey::default()
                },
                num_ibs: 0,
            },
            EventBody::UserqState {
                doorbell,
                queue_type,
                to,
                ..
            } if *to == USERQ_STATE_HUNG => {
                let r = self.live.get(&Key::Userq {
                    gpu: ev.gpu.clone(),
                    doorbell: *doorbell,
                });
                let (context, seqno) = r.and_then(|r| r.last_fence).unzip();
                EventBody::JobTimedOut {
                    ring: Some(userq_ring(*queue_type, *doorbell)),
                    job: JobKey {
                        context,
                        seqno,
                        ..JobKey::default()
                    },
                    pasid: None,
                }
            }
            // 6.12+: KFD names the queue that did not preempt and resets it (no GPU reset):
            // that queue's timeout, owned through its pasid when the table knows it.
            EventBody::KfdLog(r) => match &r.kind {
                KfdLogKind::QueuePreemptFailed { doorbell } => {
                    // The line is printed inside the destroy ioctl, whose return probe may be
                    // read first: a queue destroyed just now still counts.
                    let gpu = ev.gpu.as_deref();
                    let q = self.by_doorbell(gpu, *doorbell, ev.t_ns, ev.t_ns);
                    EventBody::JobTimedOut {
                        ring: Some(kfd_ring(q.and_then(|q| q.info.kind), *doorbell)),
                        job: JobKey::default(),
                        pasid: q.and_then(|q| q.info.pasid),
                    }
                }
                _ => return None,
            },
            _ => return None,
        };
        Some(Event {
            t_ns: ev.t_ns,
            clock: ev.clock,
            source: ev.source,
            gpu: ev.gpu.clone(),
            body,
        })
    }
}

/// The "ring" of a KFD queue in incidents: its kind and doorbell (`kfd_compute.6144`).
pub fn kfd_ring(kind: Option<QueueKind>, doorbell: u64) -> String {
    let k = match kind {
        None | Some(QueueKind::Other) => "queue",
        Some(k) => k.name(),
    };
    format!("kfd_{k}.{doorbell}")
}

/// Whether a compute event is a note an incident keeps (`compute.rs`): a KFD/MES line, an
/// SMI event that says something about a hang (faults, resets, evictions), a user queue
/// marked hung. Queue bookkeeping (restore, process start/end, other SMI events) is not.
pub fn is_note(ev: &Event) -> bool {
    match &ev.body {
        EventBody::KfdLog(_) => true,
        EventBody::KfdSmi(s) => !matches!(
            s.kind,
            SmiKind::Other { .. }
                | SmiKind::QueueRestore { .. }
                | SmiKind::ProcessStart { .. }
                | SmiKind::ProcessEnd { .. }
        ),
        EventBody::UserqState { to, .. } => *to == USERQ_STATE_HUNG,
        _ => false,
    }
}

pub fn queue_ref(r: &QueueRec) -> QueueRef {
    QueueRef {
        origin: r.info.origin.unwrap_or(QueueOrigin::Kfd),
        kind: r.info.kind.unwrap_or(QueueKind::Other),
        queue_id: r.info.queue_id,
        doorbell: r.info.doorbell,
        gpu: r.gpu.clone(),
        gpu_id: r.info.gpu_id,
    }
}

impl Queues {
    /// Where the queue table came from, for the incident's compute note.
    pub fn source_note(&self) -> String {
        let mut s = match (self.from_probe, self.from_sysfs) {
            (true, true) => "queue table from the KFD/user-queue probes and /sys/class/kfd/kfd/proc",
            (true, false) => "queue table from the KFD/user-queue probes",
            (false, true) => "queue table from /sys/class/kfd/kfd/proc (polled: queues shorter than the poll interval are missed)",
            (false, false) => "no queue table (neither the KFD/user-queue probes nor /sys/class/kfd fed this: a kernel log alone, or amdkfd absent): only the kernel's own lines",
        }
        .to_string();
        if self.evicted > 0 {
            s.push_str(&format!(
                "; {} queue(s) evicted from the bounded table",
                self.evicted
            ));
        }
        s
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::{Clock, KfdLogRecord, Task};

    pub fn ev(t_s: u64, source: Source, body: EventBody) -> Event {
        Event {
            t_ns: t_s * 1_000_000_000,
            clock: Clock::Monotonic,
            source,
            gpu: Some("0000:03:00.0".into()),
            body,
        }
    }

    pub fn kfd_queue(pid: u32, comm: &str, qid: u32, doorbell: Option<u64>) -> QueueInfo {
        QueueInfo {
            task: Task::new(pid, pid, comm),
            origin: Some(QueueOrigin::Kfd),
            kind: Some(QueueKind::Compute),
            queue_id: Some(qid),
            gpu_id: Some(48152),
            doorbell,
            pasid: Some(0x8000 + pid),
            ..QueueInfo::default()
        }
    }

    pub fn created(t_s: u64, source: Source, pid: u32, comm: &str, qid: u32) -> Event {
        ev(
            t_s,
            source,
            EventBody::QueueCreated(kfd_queue(pid, comm, qid, None)),
        )
    }

    pub fn log(t_s: u64, kind: KfdLogKind) -> Event {
        ev(
            t_s,
            Source::Kmsg,
            EventBody::KfdLog(KfdLogRecord {
                kind,
                line: "line".into(),
            }),
        )
    }

    fn table(events: &[Event]) -> Queues {
        let mut q = Queues::new();
        for e in events {
            q.observe(e);
        }
        q
    }

    fn owners(q: &Queues, from_s: u64, to_s: u64) -> Vec<String> {
        let s = 1_000_000_000;
        q.active(Some("0000:03:00.0"), from_s * s, to_s * s)
            .iter()
            .map(|r| r.info.task.comm.clone())
            .collect()
    }

    #[test]
    fn destroyed_long_before_is_not_active_exited_just_before_is() {
        let q = table(&[
            created(1, Source::Ebpf, 10, "old", 0),
            ev(
                2,
                Source::Ebpf,
                EventBody::QueueDestroyed(kfd_queue(10, "old", 0, None)),
            ),
            created(3, Source::Ebpf, 11, "quitter", 0),
            ev(
                10,
                Source::Ebpf,
                EventBody::ProcessExit {
                    task: Task::new(11, 11, "quitter"),
                },
            ),
        ]);
        assert_eq!(owners(&q, 10, 12), ["quitter"]);
        assert!(owners(&q, 20, 22).is_empty());
    }

    /// Queues are per GPU: another device's queue is never a candidate.
    #[test]
    fn another_gpus_queues_are_not_active_here() {
        let mut other = created(1, Source::Ebpf, 12, "other-gpu", 0);
        other.gpu = Some("0000:04:00.0".into());
        let q = table(&[created(1, Source::Ebpf, 10, "here", 0), other]);
        assert_eq!(owners(&q, 2, 3), ["here"]);
        assert_eq!(q.active(None, 0, u64::MAX).len(), 2, "unknown device: any");
    }

    #[test]
    fn probe_and_sysfs_reports_of_one_queue_merge() {
        let mut probe = kfd_queue(10, "python3", 0, Some(0x1002));
        probe.pasid = None;
        let mut sys = kfd_queue(10, "", 0, None);
        sys.pasid = Some(77);
        let q = table(&[
            ev(1, Source::Ebpf, EventBody::QueueCreated(probe)),
            ev(2, Source::Kfd, EventBody::QueueCreated(sys)),
        ]);
        assert_eq!(q.live_len(), 1);
        let r = q.active(None, 0, u64::MAX)[0];
        assert_eq!(
            (r.info.doorbell, r.info.pasid, r.info.task.comm.as_str()),
            (Some(0x1002), Some(77), "python3")
        );
        assert_eq!(
            q.source_note(),
            "queue table from the KFD/user-queue probes and /sys/class/kfd/kfd/proc"
        );
    }

    #[test]
    fn notes_are_remembered_per_gpu_for_the_lookback() {
        let mut other = log(5, KfdLogKind::HwsHang);
        other.gpu = Some("0000:04:00.0".into());
        let q = table(&[
            log(1, KfdLogKind::PreemptTimeout),
            log(5, KfdLogKind::HwsHang),
            other,
            created(5, Source::Kfd, 10, "python3", 0),
        ]);
        let s = 1_000_000_000;
        assert_eq!(q.lookback(Some("0000:03:00.0"), 2 * s, 6 * s).len(), 1);
        assert_eq!(q.lookback(None, 0, 6 * s).len(), 3);
    }

    #[test]
    fn bounded() {
        let mut q = Queues::new();
        for i in 0..(MAX_LIVE as u32 + 10) {
            q.observe(&ev(
                1,
                Source::Ebpf,
                EventBody::QueueCreated(kfd_queue(i + 1, "p", 0, None)),
            ));
        }
        assert_eq!(q.live_len(), MAX_LIVE);
        assert_eq!(q.evicted, 10);
        for i in 0..(MAX_RECENT_NOTES + 5) as u64 {
            q.observe(&log(i, KfdLogKind::HwsHang));
        }
        assert_eq!(q.recent.len(), MAX_RECENT_NOTES);
    }
}
