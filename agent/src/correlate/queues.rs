//! The active-queue table for compute attribution: which processes hold KFD compute/SDMA
//! queues or 7.x user queues on which GPU, fed by `QueueCreated`/`QueueDestroyed` (probes or
//! the `/sys/class/kfd` proc poll), user-queue fences and states, SMI events and KFD/MES log
//! lines. ROCm submits through doorbells, not the CS ioctl, so without this table a HWS/MES
//! hang or a "pid 0" fault has no owner at all. Rules: docs/compute.md "Attribution".
//!
//! Pure and bounded: at most [`MAX_LIVE`] live queues (oldest evicted, counted), the last
//! [`MAX_GONE`] destroyed ones (a queue destroyed just before the hang was detected still
//! counts), and the last [`MAX_NOTES`] compute log/SMI/state notes.
use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

use super::incident::{render_time, Open};
use crate::incident::{Candidate, ComputeAttribution, Confidence, Evidence, Incident, QueueRef};
use crate::incident::{IncidentKind, ProcessRef, Victim};
use crate::model::{
    Event, EventBody, JobKey, KfdLogKind, QueueInfo, QueueKind, QueueOrigin, SmiKind, Source,
};

pub const MAX_LIVE: usize = 4096;
pub const MAX_GONE: usize = 1024;
pub const MAX_NOTES: usize = 512;
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

/// A compute-relevant observation kept for the incidents that may claim it.
#[derive(Clone, Debug)]
pub struct Note {
    pub t_ns: u64,
    pub gpu: Option<String>,
    pub source: Source,
    pub what: NoteKind,
    pub line: Option<String>,
}

#[derive(Clone, Debug)]
pub enum NoteKind {
    Log(KfdLogKind),
    Smi(SmiKind),
    UserqHung { doorbell: u64, client_id: u64 },
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
    notes: VecDeque<Note>,
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

    pub fn observe(&mut self, ev: &Event) {
        let t = ev.t_ns;
        match &ev.body {
            EventBody::QueueCreated(info) => self.created(info, ev, t),
            EventBody::QueueDestroyed(info) => {
                if let Some(k) = key(info, &ev.gpu) {
                    self.destroy(&k, t);
                }
            }
            EventBody::ProcessExit { task } => {
                let keys: Vec<Key> = self
                    .live
                    .iter()
                    .filter(|(_, r)| r.info.task.pid == task.pid)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    self.destroy(&k, t);
                }
            }
            EventBody::UserqFence(f) => {
                let k = Key::Userq {
                    gpu: ev.gpu.clone(),
                    doorbell: f.doorbell,
                };
                if !self.live.contains_key(&k) {
                    // Created before the agent started: the fence's submitter owns it.
                    let info = QueueInfo {
                        task: f.task.clone(),
                        origin: Some(QueueOrigin::Userq),
                        kind: Some(userq_kind(f.queue_type)),
                        doorbell: Some(f.doorbell),
                        client_id: Some(f.client_id),
                        ..QueueInfo::default()
                    };
                    self.created(&info, ev, t);
                }
                if let Some(r) = self.live.get_mut(&k) {
                    r.fences += 1;
                    r.last_fence_ns = Some(t);
                    r.last_fence = Some((f.context, f.seqno));
                    r.info.client_id = r.info.client_id.or(Some(f.client_id));
                    if r.info.task.pid == 0 {
                        r.info.task = f.task.clone();
                    }
                }
            }
            EventBody::UserqState {
                doorbell,
                client_id,
                to,
                ..
            } if *to == USERQ_STATE_HUNG => self.note(
                ev,
                NoteKind::UserqHung {
                    doorbell: *doorbell,
                    client_id: *client_id,
                },
                None,
            ),
            EventBody::KfdLog(r) => self.note(ev, NoteKind::Log(r.kind.clone()), Some(&r.line)),
            EventBody::KfdSmi(s) => match &s.kind {
                SmiKind::Other { .. } | SmiKind::QueueRestore { .. } => {}
                SmiKind::ProcessEnd { pid, .. } => {
                    let keys: Vec<Key> = self
                        .live
                        .iter()
                        .filter(|(_, r)| r.info.task.pid == *pid)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in keys {
                        self.destroy(&k, t);
                    }
                }
                k => self.note(ev, NoteKind::Smi(k.clone()), None),
            },
            _ => {}
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

    fn note(&mut self, ev: &Event, what: NoteKind, line: Option<&str>) {
        if self.notes.len() >= MAX_NOTES {
            self.notes.pop_front();
        }
        self.notes.push_back(Note {
            t_ns: ev.t_ns,
            gpu: ev.gpu.clone(),
            source: ev.source,
            what,
            line: line.map(str::to_string),
        });
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

    /// Notes on `gpu` within [from, to].
    pub fn notes(&self, gpu: Option<&str>, from: u64, to: u64) -> Vec<&Note> {
        self.notes
            .iter()
            .filter(|n| n.t_ns >= from && n.t_ns <= to && same_gpu(gpu, n.gpu.as_deref()))
            .collect()
    }

    /// The owner of a queue created with `pasid` (KFD processes carry theirs in the proc table).
    fn pid_of_pasid(&self, pasid: u32) -> Option<u32> {
        self.live
            .values()
            .chain(self.gone.iter().rev())
            .find(|r| r.info.pasid == Some(pasid) && r.info.task.pid != 0)
            .map(|r| r.info.task.pid)
    }

    fn by_doorbell(
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
    let ip = match userq_kind(queue_type) {
        QueueKind::Gfx => "gfx",
        QueueKind::Compute => "compute",
        QueueKind::Sdma => "sdma",
        QueueKind::Other => "other",
    };
    format!("userq_{ip}.{doorbell}")
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
        Some(QueueKind::Compute) => "compute",
        Some(QueueKind::Sdma) => "sdma",
        Some(QueueKind::Gfx) => "gfx",
        _ => "queue",
    };
    format!("kfd_{k}.{doorbell}")
}

fn same_gpu(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// `AMDGPU_HW_IP_*` of a user queue.
pub fn userq_kind(ip: u32) -> QueueKind {
    match ip {
        0 => QueueKind::Gfx,
        1 => QueueKind::Compute,
        2 => QueueKind::Sdma,
        _ => QueueKind::Other,
    }
}

fn queue_ref(r: &QueueRec) -> QueueRef {
    QueueRef {
        origin: match r.info.origin {
            Some(QueueOrigin::Userq) => "userq",
            _ => "kfd",
        }
        .into(),
        kind: match r.info.kind {
            Some(QueueKind::Compute) => "compute",
            Some(QueueKind::Sdma) => "sdma",
            Some(QueueKind::Gfx) => "gfx",
            _ => "other",
        }
        .into(),
        queue_id: r.info.queue_id,
        doorbell: r.info.doorbell,
        gpu: r.gpu.clone(),
        gpu_id: r.info.gpu_id,
    }
}

/// What the kernel or MES singled out, resolved to a process.
struct Flag {
    pid: u32,
    comm: String,
    confidence: Confidence,
    why: String,
}

/// Lookups into the correlator's identity table, so this module stays independent of it.
pub struct Identity<'a> {
    pub pid_of_pasid: &'a dyn Fn(u32) -> Option<u32>,
    pub comm_of: &'a dyn Fn(u32) -> Option<String>,
    /// The identity table's reference (comm and exe) of a pid, with a fallback comm.
    pub reference: &'a dyn Fn(u32, &str) -> ProcessRef,
}

/// Resolve the notes of the window to the most specific flag (certain beats likely; later
/// beats earlier among equals).
fn flag(
    q: &Queues,
    notes: &[&Note],
    gpu: Option<&str>,
    from: u64,
    to: u64,
    id: &Identity,
) -> Option<Flag> {
    let owner = |r: &QueueRec| (r.info.task.pid, r.info.task.comm.clone());
    let pasid_pid = |p: u32| q.pid_of_pasid(p).or_else(|| (id.pid_of_pasid)(p));
    let mut best: Option<Flag> = None;
    for n in notes {
        let f = match &n.what {
            NoteKind::Log(KfdLogKind::QueuesReset { task }) => Some((
                task.pid,
                task.comm.clone(),
                Confidence::Certain,
                "the kernel reset its queues after a HWS hang (\"Queues reset on process\")".to_string(),
            )),
            NoteKind::Log(KfdLogKind::QueuePreemptFailed { doorbell }) => {
                q.by_doorbell(gpu, *doorbell, from, to).map(|r| {
                    let (p, c) = owner(r);
                    (p, c, Confidence::Certain, format!("its queue (doorbell 0x{doorbell:x}) did not preempt (\"Queue preemption failed\")"))
                })
            }
            NoteKind::UserqHung { doorbell, .. } => q.by_doorbell(gpu, *doorbell, from, to).map(|r| {
                let (p, c) = owner(r);
                (p, c, Confidence::Certain, format!("the kernel marked its user queue (doorbell {doorbell}) hung"))
            }),
            NoteKind::Log(KfdLogKind::MesRemoveFailed { doorbell }) => {
                q.by_doorbell(gpu, *doorbell, from, to).map(|r| {
                    let (p, c) = owner(r);
                    (p, c, Confidence::Likely, format!("MES failed to remove its queue (doorbell 0x{doorbell:x}); MES itself may be the one hung"))
                })
            }
            NoteKind::Log(KfdLogKind::DestroyFailed { pasid, queue_id, .. }) => {
                pasid_pid(*pasid).map(|p| {
                    (p, String::new(), Confidence::Likely, format!("destroying its queue {queue_id} failed (the queue did not preempt)"))
                })
            }
            NoteKind::Log(KfdLogKind::EvictFailed { pasid, pid, what }) => pid
                .or_else(|| pasid.and_then(pasid_pid))
                .map(|p| (p, String::new(), Confidence::Likely, format!("KFD: \"{what}\" it")))
                ,
            NoteKind::Log(KfdLogKind::UnhandledException { pid, .. }) => Some((
                *pid,
                String::new(),
                Confidence::Likely,
                "KFD reported an unhandled GPU exception in it".to_string(),
            )),
            NoteKind::Smi(SmiKind::VmFault { pid, comm }) => Some((
                *pid,
                comm.clone(),
                Confidence::Likely,
                "KFD's SMI event attributed a VM fault to it".to_string(),
            )),
            _ => None,
        };
        let Some((pid, comm, confidence, why)) = f.filter(|f| f.0 != 0) else {
            continue;
        };
        if best.as_ref().is_none_or(|b| confidence >= b.confidence) {
            let comm = if comm.is_empty() {
                (id.comm_of)(pid).unwrap_or_default()
            } else {
                comm
            };
            best = Some(Flag {
                pid,
                comm,
                confidence,
                why,
            });
        }
    }
    best
}

/// Candidates: every process with active queues in the window, flagged one first, then by
/// number of compute queues. Pure: the correlator's identity table is passed in.
pub fn compute_candidates(
    q: &Queues,
    gpu: Option<&str>,
    from: u64,
    to: u64,
    id: &Identity,
) -> (Option<Candidate>, Vec<Candidate>) {
    let notes = q.notes(gpu, from.saturating_sub(NOTE_LOOKBACK_NS), to);
    let flagged = flag(q, &notes, gpu, from, to, id);
    let mut by_pid: Vec<(u32, String, Vec<QueueRef>)> = Vec::new();
    for r in q.active(gpu, from, to) {
        let pid = r.info.task.pid;
        match by_pid.iter_mut().find(|(p, _, _)| *p == pid) {
            Some((_, _, qs)) => qs.push(queue_ref(r)),
            None => by_pid.push((pid, r.info.task.comm.clone(), vec![queue_ref(r)])),
        }
    }
    let hang_evidence = notes.iter().any(|n| {
        matches!(
            n.what,
            NoteKind::Log(KfdLogKind::HwsHang | KfdLogKind::PreemptTimeout)
                | NoteKind::Log(KfdLogKind::MesRemoveFailed { .. })
        )
    });
    let single = by_pid.len() == 1;
    let mut cands: Vec<Candidate> = by_pid
        .into_iter()
        .map(|(pid, comm, mut queues)| {
            queues.sort_by_key(|r| (r.queue_id, r.doorbell));
            let comm = if comm.is_empty() {
                (id.comm_of)(pid).unwrap_or_default()
            } else {
                comm
            };
            let n = queues.len();
            let (confidence, reason) = match &flagged {
                Some(f) if f.pid == pid => (f.confidence, f.why.clone()),
                _ if single && hang_evidence => (
                    Confidence::Likely,
                    format!("the only process with queues on the GPU when its scheduler hung ({n} queue(s))"),
                ),
                _ => (
                    Confidence::Unknown,
                    format!("had {n} queue(s) on the GPU at the time; nothing names it"),
                ),
            };
            Candidate {
                pid,
                comm,
                queues,
                confidence,
                reason,
            }
        })
        .collect();
    cands.sort_by_key(|c| {
        let compute = c.queues.iter().filter(|q| q.kind == "compute").count();
        (
            std::cmp::Reverse(c.confidence),
            std::cmp::Reverse(compute),
            c.pid,
        )
    });
    let flagged = flagged.map(|f| {
        cands
            .iter()
            .find(|c| c.pid == f.pid)
            .cloned()
            .unwrap_or(Candidate {
                pid: f.pid,
                comm: f.comm.clone(),
                queues: Vec::new(),
                confidence: f.confidence,
                reason: f.why.clone(),
            })
    });
    if let Some(f) = &flagged {
        if !cands.iter().any(|c| c.pid == f.pid) {
            cands.insert(0, f.clone());
        }
    }
    (flagged, cands)
}

/// At most this many compute notes become incident evidence.
const MAX_NOTE_EVIDENCE: usize = 32;

/// Adds the compute section to a closed incident and, when the CS-side attribution named
/// nobody (or less surely than the kernel's own compute flag), the compute culprit.
pub fn attribute(inc: &mut Incident, open: &Open, q: &Queues, id: &Identity) {
    let gpu = inc.gpu.clone().or_else(|| open.gpu.clone());
    let from = inc.started_ns.min(open.start_ns);
    let to = open.last_ns;
    let notes = q.notes(gpu.as_deref(), from.saturating_sub(NOTE_LOOKBACK_NS), to);
    let (flagged, candidates) = compute_candidates(q, gpu.as_deref(), from, to, id);
    let relevant = !notes.is_empty()
        || flagged.is_some()
        || (!candidates.is_empty()
            && (inc.culprit.is_none()
                || open.mes
                || inc.ring.as_deref().is_some_and(|r| r.starts_with("comp"))));
    if !relevant {
        return;
    }
    add_note_evidence(inc, &notes);
    let choice = flagged.clone().or_else(|| {
        candidates
            .first()
            .filter(|c| c.confidence == Confidence::Likely)
            .cloned()
    });
    if let Some(c) = &choice {
        let stronger = c.confidence > inc.confidence
            && (c.confidence == Confidence::Certain || inc.culprit.is_none());
        let same = inc.culprit.as_ref().is_some_and(|x| x.pid == c.pid);
        if stronger && same {
            // The kernel's own compute flag confirms the CS-side answer.
            inc.confidence = c.confidence;
            inc.reasoning
                .push_str(&format!(" Compute: confirmed, {}.", c.reason));
        } else if stronger {
            inc.culprit = Some((id.reference)(c.pid, &c.comm));
            inc.confidence = c.confidence;
            inc.victims.retain(|v| v.pid != c.pid);
            inc.reasoning.push_str(&format!(
                " Compute: {} (pid {}): {}.",
                c.comm, c.pid, c.reason
            ));
        } else if inc.culprit.as_ref().is_some_and(|x| x.pid != c.pid) {
            inc.reasoning.push_str(&format!(
                " Compute: KFD/MES also pointed at {} (pid {}): {}.",
                c.comm, c.pid, c.reason
            ));
        }
    } else if !candidates.is_empty() {
        let names: Vec<String> = candidates
            .iter()
            .map(|c| format!("{} (pid {})", c.comm, c.pid))
            .collect();
        inc.reasoning.push_str(&format!(
            " Compute: nothing names the queue; processes with queues on the GPU at the time: {} (candidates, confidence unknown).",
            names.join(", ")
        ));
    }
    add_reset_victims(inc, &candidates);
    inc.compute = Some(ComputeAttribution {
        flagged,
        candidates,
        note: source_note(q),
    });
}

fn add_note_evidence(inc: &mut Incident, notes: &[&Note]) {
    for n in notes.iter().take(MAX_NOTE_EVIDENCE) {
        let what = match &n.what {
            NoteKind::Log(k) => format!("KFD/MES: {}", log_summary(k)),
            NoteKind::Smi(k) => format!("KFD SMI event: {k:?}"),
            NoteKind::UserqHung {
                doorbell,
                client_id,
            } => {
                format!("user queue (doorbell {doorbell}, client {client_id}) marked hung")
            }
        };
        inc.evidence.push(Evidence {
            at: render_time(inc.clock, n.t_ns),
            t_ns: n.t_ns,
            source: n.source,
            what,
            lines: n.line.iter().cloned().collect(),
        });
    }
    inc.evidence.sort_by_key(|e| e.t_ns);
}

fn log_summary(k: &KfdLogKind) -> String {
    match k {
        KfdLogKind::HwsHang => {
            "the hardware scheduler did not preempt the queues (HWS hang)".into()
        }
        KfdLogKind::PreemptTimeout => "a user queue did not respond to preemption".into(),
        KfdLogKind::QueuePreemptFailed { doorbell } => {
            format!("queue with doorbell 0x{doorbell:x} failed to preempt")
        }
        KfdLogKind::MesRemoveFailed { doorbell } => {
            format!("MES failed to remove the queue with doorbell 0x{doorbell:x}")
        }
        KfdLogKind::QueuesReset { task } => {
            format!("queues of {} (pid {}) were reset", task.comm, task.pid)
        }
        KfdLogKind::DestroyFailed {
            pasid,
            queue_id,
            ret,
        } => format!("destroying queue {queue_id} of pasid {pasid} failed ({ret})"),
        KfdLogKind::EvictFailed { what, .. } => what.clone(),
        KfdLogKind::UnhandledException { pid, .. } => {
            format!("unhandled GPU exception in pid {pid}")
        }
        KfdLogKind::QueueReset { text } => text.clone(),
    }
}

/// After a GPU reset every other process's queues are gone too: victims — once a culprit is
/// named (while nobody is, each candidate may be it, so none is called a victim).
fn add_reset_victims(inc: &mut Incident, candidates: &[Candidate]) {
    if inc.reset.is_none() && inc.kind != IncidentKind::GpuReset {
        return;
    }
    let Some(culprit) = inc.culprit.as_ref().map(|c| c.pid) else {
        return;
    };
    let culprit = Some(culprit);
    for c in candidates {
        if Some(c.pid) == culprit || inc.victims.iter().any(|v| v.pid == c.pid) {
            continue;
        }
        inc.victims.push(Victim {
            pid: c.pid,
            comm: c.comm.clone(),
            reason: format!(
                "its {} queue(s) on the GPU were lost in the reset",
                c.queues.len()
            ),
        });
    }
}

fn source_note(q: &Queues) -> String {
    let mut s = match (q.from_probe, q.from_sysfs) {
        (true, true) => "queue table from the KFD/user-queue probes and /sys/class/kfd/kfd/proc",
        (true, false) => "queue table from the KFD/user-queue probes",
        (false, true) => "queue table from /sys/class/kfd/kfd/proc (polled: queues shorter than the poll interval are missed)",
        (false, false) => "no queue table (no KFD probe attached and /sys/class/kfd absent): only the kernel's own lines",
    }
    .to_string();
    if q.evicted > 0 {
        s.push_str(&format!(
            "; {} queue(s) evicted from the bounded table",
            q.evicted
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Clock, KfdLogRecord, Task, UserqFence};

    fn ev(t_s: u64, source: Source, body: EventBody) -> Event {
        Event {
            t_ns: t_s * 1_000_000_000,
            clock: Clock::Monotonic,
            source,
            gpu: Some("0000:03:00.0".into()),
            body,
        }
    }

    fn kfd_queue(pid: u32, comm: &str, qid: u32, doorbell: Option<u64>) -> QueueInfo {
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

    fn created(t_s: u64, source: Source, pid: u32, comm: &str, qid: u32) -> Event {
        ev(
            t_s,
            source,
            EventBody::QueueCreated(kfd_queue(pid, comm, qid, None)),
        )
    }

    /// The incident's reasoning says `text`.
    fn reasons(inc: &Incident, text: &str) {
        assert!(inc.reasoning.contains(text), "{}", inc.reasoning);
    }

    fn log(t_s: u64, kind: KfdLogKind) -> Event {
        ev(
            t_s,
            Source::Kmsg,
            EventBody::KfdLog(KfdLogRecord {
                kind,
                line: "line".into(),
            }),
        )
    }

    fn ident() -> (impl Fn(u32) -> Option<u32>, impl Fn(u32) -> Option<String>) {
        (
            |pasid: u32| (pasid > 0x8000).then(|| pasid - 0x8000),
            |pid: u32| Some(format!("proc{pid}")),
        )
    }

    fn run(events: &[Event], from_s: u64, to_s: u64) -> (Option<Candidate>, Vec<Candidate>) {
        let mut q = Queues::new();
        for e in events {
            q.observe(e);
        }
        let (a, b) = ident();
        let r = |pid: u32, comm: &str| ProcessRef {
            pid,
            comm: comm.to_string(),
            exe: None,
        };
        let id = Identity {
            pid_of_pasid: &a,
            comm_of: &b,
            reference: &r,
        };
        compute_candidates(
            &q,
            Some("0000:03:00.0"),
            from_s * 1_000_000_000,
            to_s * 1_000_000_000,
            &id,
        )
    }

    #[test]
    fn two_rocm_processes_and_no_flag_are_unknown_candidates() {
        let (flagged, c) = run(
            &[
                created(1, Source::Ebpf, 10, "python3", 0),
                created(1, Source::Ebpf, 10, "python3", 1),
                created(2, Source::Kfd, 20, "ollama", 0),
            ],
            5,
            6,
        );
        assert!(flagged.is_none());
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].comm, "python3", "more compute queues ranks first");
        assert_eq!(c[0].queues.len(), 2);
        assert!(c.iter().all(|c| c.confidence == Confidence::Unknown));
    }

    #[test]
    fn single_process_with_a_hws_hang_is_likely() {
        let (_, c) = run(
            &[
                created(1, Source::Ebpf, 10, "python3", 0),
                log(5, KfdLogKind::HwsHang),
            ],
            6,
            7,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].confidence, Confidence::Likely);
    }

    #[test]
    fn the_kernel_flag_wins_by_doorbell_process_or_pasid() {
        let base = vec![
            ev(
                1,
                Source::Ebpf,
                EventBody::QueueCreated(kfd_queue(10, "python3", 0, Some(0x1002))),
            ),
            ev(
                1,
                Source::Ebpf,
                EventBody::QueueCreated(kfd_queue(20, "ollama", 0, Some(0x1804))),
            ),
        ];
        let mut e = base.clone();
        e.push(log(5, KfdLogKind::QueuePreemptFailed { doorbell: 0x1804 }));
        let (f, c) = run(&e, 6, 7);
        let f = f.unwrap();
        assert_eq!((f.pid, f.confidence), (20, Confidence::Certain));
        assert_eq!(c[0].pid, 20, "flagged first");
        let mut e = base.clone();
        e.push(log(
            5,
            KfdLogKind::DestroyFailed {
                pasid: 0x8000 + 10,
                queue_id: 0,
                ret: -62,
            },
        ));
        let f = run(&e, 6, 7).0.unwrap();
        assert_eq!((f.pid, f.confidence), (10, Confidence::Likely));
        let mut e = base.clone();
        e.push(log(
            5,
            KfdLogKind::QueuesReset {
                task: Task::new(20, 21, "ollama"),
            },
        ));
        e.push(log(
            5,
            KfdLogKind::EvictFailed {
                pasid: Some(0x8000 + 10),
                pid: None,
                what: "x".into(),
            },
        ));
        let f = run(&e, 6, 7).0.unwrap();
        assert_eq!(f.pid, 20, "certain beats a later likely");
        // A doorbell nobody owns flags nobody.
        let mut e = base;
        e.push(log(5, KfdLogKind::MesRemoveFailed { doorbell: 0x9999 }));
        assert!(run(&e, 6, 7).0.is_none());
    }

    #[test]
    fn destroyed_long_before_is_not_active_exited_just_before_is() {
        let mut e = vec![
            created(1, Source::Ebpf, 10, "old", 0),
            ev(
                2,
                Source::Ebpf,
                EventBody::QueueDestroyed(kfd_queue(10, "old", 0, None)),
            ),
            created(3, Source::Ebpf, 11, "quitter", 0),
        ];
        e.push(ev(
            10,
            Source::Ebpf,
            EventBody::ProcessExit {
                task: Task::new(11, 11, "quitter"),
            },
        ));
        let (_, c) = run(&e, 10, 12);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].comm, "quitter");
        let (_, c) = run(&e, 20, 22);
        assert!(c.is_empty());
    }

    #[test]
    fn probe_and_sysfs_reports_of_one_queue_merge() {
        let mut probe = kfd_queue(10, "python3", 0, Some(0x1002));
        probe.pasid = None;
        let mut sys = kfd_queue(10, "", 0, None);
        sys.pasid = Some(77);
        let mut q = Queues::new();
        q.observe(&ev(1, Source::Ebpf, EventBody::QueueCreated(probe)));
        q.observe(&ev(2, Source::Kfd, EventBody::QueueCreated(sys)));
        assert_eq!(q.live_len(), 1);
        let r = q.active(None, 0, u64::MAX)[0];
        assert_eq!(
            (r.info.doorbell, r.info.pasid, r.info.task.comm.as_str()),
            (Some(0x1002), Some(77), "python3")
        );
        assert_eq!(
            source_note(&q),
            "queue table from the KFD/user-queue probes and /sys/class/kfd/kfd/proc"
        );
    }

    #[test]
    fn user_queue_fences_and_hung_state() {
        let f = UserqFence {
            task: Task::new(30, 31, "gnome-shell"),
            doorbell: 4100,
            client_id: 5,
            queue_type: 0,
            context: 9,
            seqno: 1,
        };
        let (flag, c) = run(
            &[
                ev(1, Source::Ebpf, EventBody::UserqFence(f)),
                ev(
                    4,
                    Source::Ebpf,
                    EventBody::UserqState {
                        doorbell: 4100,
                        client_id: 5,
                        queue_type: 0,
                        to: USERQ_STATE_HUNG,
                    },
                ),
            ],
            5,
            6,
        );
        let flag = flag.unwrap();
        assert_eq!((flag.pid, flag.confidence), (30, Confidence::Certain));
        assert_eq!(c[0].queues[0].origin, "userq");
        assert_eq!(c[0].queues[0].kind, "gfx");
    }

    /// A 6.1 HWS hang end to end through the correlator: queues from the proc poll, the real
    /// 6.1 KFD lines and reset lines from the kernel log.
    #[test]
    fn hws_hang_through_the_correlator_names_the_process_whose_destroy_failed() {
        let mut c = crate::correlate::Correlator::new(crate::correlate::Config::default());
        for (pid, comm, pasid) in [(4242, "python3", 0x8003), (5151, "ollama", 0x8004)] {
            let mut q = kfd_queue(pid, comm, 1, None);
            q.pasid = Some(pasid);
            c.push(ev(90, Source::Kfd, EventBody::QueueCreated(q)));
        }
        let log = "[100.000000] amdgpu: HIQ MQD's queue_doorbell_id0 is not 0, Queue preemption time out\n\
[100.000100] amdgpu: Pasid 0x8003 destroy queue 1 failed, ret -62\n\
[101.000000] amdgpu: The cp might be in an unrecoverable state due to an unsuccessful queues preemption\n\
[101.100000] amdgpu 0000:03:00.0: amdgpu: GPU reset begin!\n\
[102.000000] amdgpu 0000:03:00.0: amdgpu: GPU reset(1) succeeded!\n";
        let mut out = Vec::new();
        for e in crate::kmsg::parse_text(log, Source::Kmsg) {
            out.extend(c.push(e));
        }
        out.extend(c.finish());
        assert_eq!(out.len(), 1, "{out:#?}");
        let inc = &out[0];
        assert_eq!(inc.kind, IncidentKind::GpuReset);
        let culprit = inc.culprit.as_ref().expect("compute culprit");
        assert_eq!((culprit.pid, inc.confidence), (4242, Confidence::Likely));
        let comp = inc.compute.as_ref().unwrap();
        assert_eq!(comp.candidates.len(), 2);
        assert!(
            inc.victims.iter().any(|v| v.comm == "ollama"),
            "{:?}",
            inc.victims
        );
        assert!(inc
            .evidence
            .iter()
            .any(|e| e.what.contains("destroying queue 1")));
        reasons(inc, "Compute: python3");
    }

    /// 6.12+: KFD names the queue that did not preempt and resets it, without a GPU reset:
    /// a timeout of that queue, its owner certain. The line is printed inside the destroy
    /// ioctl, so the destroy's return probe may be read before it (`destroyed_first`).
    #[test]
    fn queue_preemption_failure_is_that_queues_timeout() {
        for destroyed_first in [false, true] {
            let mut c = crate::correlate::Correlator::new(crate::correlate::Config::default());
            let python = kfd_queue(4242, "python3", 0, Some(0x1800));
            c.push(ev(
                90,
                Source::Ebpf,
                EventBody::QueueCreated(python.clone()),
            ));
            c.push(created(90, Source::Kfd, 5151, "ollama", 0));
            if destroyed_first {
                c.push(ev(100, Source::Ebpf, EventBody::QueueDestroyed(python)));
            }
            let log = "[100.000000] amdgpu 0000:03:00.0: amdgpu: Queue preemption failed for queue with doorbell_id: 1800\n\
[100.000100] amdgpu 0000:03:00.0: amdgpu: Queues reset on process python3 tid 4242 thread python3 pid 4242\n";
            let mut out = Vec::new();
            for e in crate::kmsg::parse_text(log, Source::Kmsg) {
                out.extend(c.push(e));
            }
            out.extend(c.finish());
            assert_eq!(out.len(), 1, "{out:#?}");
            let inc = &out[0];
            assert_eq!(inc.kind, IncidentKind::RingTimeout);
            assert_eq!(
                inc.ring.as_deref(),
                Some("kfd_compute.6144"),
                "{destroyed_first}"
            );
            let culprit = inc.culprit.as_ref().unwrap();
            assert_eq!((culprit.pid, inc.confidence), (4242, Confidence::Certain));
            assert!(inc.victims.is_empty(), "no GPU reset: {:?}", inc.victims);
            assert_eq!(inc.compute.as_ref().unwrap().candidates.len(), 2);
        }
    }

    /// The RX 7900 XTX pattern: a pid-0 fault, MES failing, a reset: candidates, not a guess.
    #[test]
    fn pid0_fault_on_a_mes_gpu_lists_candidates_with_unknown_confidence() {
        let mut c = crate::correlate::Correlator::new(crate::correlate::Config::default());
        c.push(created(90, Source::Kfd, 4242, "python3", 0));
        c.push(created(90, Source::Kfd, 5151, "llama-server", 0));
        c.push(created(90, Source::Kfd, 5151, "llama-server", 1));
        let log = include_str!("../../../testdata/dmesg/rx7900xtx-mes-mode1-reset.log")
            .replace("0000:2f:00.0", "0000:03:00.0")
            .replace("[4576", "[10");
        let mut out = Vec::new();
        for e in crate::kmsg::parse_text(&log, Source::Kmsg) {
            out.extend(c.push(e));
        }
        out.extend(c.finish());
        assert_eq!(out.len(), 1, "{out:#?}");
        let inc = &out[0];
        assert_eq!(
            (inc.kind, inc.confidence),
            (IncidentKind::GpuReset, Confidence::Unknown)
        );
        assert!(inc.culprit.is_none());
        let comp = inc.compute.as_ref().expect("compute candidates");
        let names: Vec<&str> = comp.candidates.iter().map(|c| c.comm.as_str()).collect();
        assert_eq!(
            names,
            ["llama-server", "python3"],
            "more compute queues first"
        );
        assert!(comp
            .candidates
            .iter()
            .all(|c| c.confidence == Confidence::Unknown));
        assert!(
            inc.victims.is_empty(),
            "no candidate is called a victim: {:?}",
            inc.victims
        );
        reasons(inc, "candidates, confidence unknown");
    }

    /// 7.x: a user queue's fences are its jobs; the kernel marking it hung is a timeout on its
    /// last fence, attributed like a CS job next to a CS submitter that keeps running.
    #[test]
    fn user_queue_hang_is_a_ring_timeout_on_its_last_fence() {
        let mut c = crate::correlate::Correlator::new(crate::correlate::Config::default());
        let cs = |t: u64, seq: u64| {
            ev(
                t,
                Source::Ebpf,
                EventBody::Submit {
                    task: Task::new(50, 50, "Xwayland"),
                    ring: "gfx_0.0.0".into(),
                    job: JobKey {
                        context: Some(1),
                        seqno: Some(seq),
                        ..JobKey::default()
                    },
                    num_ibs: 1,
                },
            )
        };
        let mut out = Vec::new();
        out.extend(c.push(cs(1, 1)));
        for (t, seq) in [(1, 10), (2, 11), (3, 12)] {
            out.extend(c.push(ev(
                t,
                Source::Ebpf,
                EventBody::UserqFence(UserqFence {
                    task: Task::new(30, 31, "gnome-shell"),
                    doorbell: 4100,
                    client_id: 5,
                    queue_type: 0,
                    context: 77,
                    seqno: seq,
                }),
            )));
        }
        out.extend(c.push(cs(4, 2)));
        out.extend(c.push(ev(
            6,
            Source::Ebpf,
            EventBody::UserqState {
                doorbell: 4100,
                client_id: 5,
                queue_type: 0,
                to: USERQ_STATE_HUNG,
            },
        )));
        out.extend(c.finish());
        assert_eq!(out.len(), 1, "{out:#?}");
        let inc = &out[0];
        assert_eq!(inc.kind, IncidentKind::RingTimeout);
        assert_eq!(inc.ring.as_deref(), Some("userq_gfx.4100"));
        let culprit = inc.culprit.as_ref().unwrap();
        assert_eq!(
            (culprit.comm.as_str(), inc.confidence),
            ("gnome-shell", Confidence::Certain)
        );
        assert!(
            inc.jobs
                .iter()
                .any(|j| j.seqno == Some(12) && j.state == "hung"),
            "{:#?}",
            inc.jobs
        );
        assert_eq!(
            inc.compute.as_ref().unwrap().flagged.as_ref().unwrap().pid,
            30
        );
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
        for i in 0..(MAX_NOTES + 5) as u64 {
            q.observe(&log(i, KfdLogKind::HwsHang));
        }
        assert_eq!(q.notes.len(), MAX_NOTES);
    }
}
