//! The compute role of an open incident and rules C1–C5 of docs/attribution.md: the KFD/MES
//! lines, SMI events and hung user queues an incident holds ([`ComputeNotes`]), resolved
//! against the queue table (`queues.rs`, per GPU) into who had compute or user queues on the
//! incident's GPU, which of them the kernel or MES singled out, and how sure that is.
use super::notes::{ComputeNotes, NoteKind};
use super::open::Open;
use super::processes::Processes;
use super::queues::{queue_ref, QueueRec, Queues};
use super::verdict::{Blame, Ctx};
use crate::incident::{Candidate, ComputeAttribution, Confidence, IncidentKind, QueueRef};
use crate::model::{KfdLogKind, QueueKind, SmiKind};

/// What the kernel or MES singled out (C1/C2), resolved to a process.
struct Flag {
    pid: u32,
    comm: String,
    confidence: Confidence,
    why: String,
}

/// Where the lookups of one incident point: its GPU and window, the queue table, identities.
struct Scope<'a> {
    q: &'a Queues,
    procs: &'a Processes,
    gpu: Option<&'a str>,
    from: u64,
    to: u64,
}

impl Scope<'_> {
    fn owner_of_doorbell(&self, doorbell: u64) -> Option<(u32, String)> {
        self.q
            .by_doorbell(self.gpu, doorbell, self.from, self.to)
            .map(|r: &QueueRec| (r.info.task.pid, r.info.task.comm.clone()))
    }

    /// A KFD process's pasid: the queue table's (proc table, create probe), else the
    /// identity table's (amdgpu pasid allocation, fault lines).
    fn pid_of_pasid(&self, pasid: u32) -> Option<u32> {
        self.q
            .pid_of_pasid(pasid)
            .or_else(|| self.procs.pid_of_pasid(pasid))
    }

    /// C1/C2 for one note: (pid, comm or empty, confidence, why).
    fn flag_of(&self, what: &NoteKind) -> Option<(u32, String, Confidence, String)> {
        use Confidence::{Certain, Likely};
        let with = |(p, c): (u32, String), conf, why: String| (p, c, conf, why);
        match what {
            NoteKind::Log(KfdLogKind::QueuesReset { task }) => Some((
                task.pid,
                task.comm.clone(),
                Certain,
                "the kernel reset its queues after a HWS hang (\"Queues reset on process\")".into(),
            )),
            NoteKind::Log(KfdLogKind::QueuePreemptFailed { doorbell }) => {
                self.owner_of_doorbell(*doorbell).map(|o| with(o, Certain, format!("its queue (doorbell 0x{doorbell:x}) did not preempt (\"Queue preemption failed\")")))
            }
            NoteKind::UserqHung { doorbell, .. } => self.owner_of_doorbell(*doorbell).map(|o| {
                with(o, Certain, format!("the kernel marked its user queue (doorbell {doorbell}) hung"))
            }),
            NoteKind::Log(KfdLogKind::MesRemoveFailed { doorbell }) => {
                self.owner_of_doorbell(*doorbell).map(|o| with(o, Likely, format!("MES failed to remove its queue (doorbell 0x{doorbell:x}); MES itself may be the one hung")))
            }
            NoteKind::Log(KfdLogKind::DestroyFailed { pasid, queue_id, .. }) => {
                self.pid_of_pasid(*pasid).map(|p| {
                    (p, String::new(), Likely, format!("destroying its queue {queue_id} failed (the queue did not preempt)"))
                })
            }
            NoteKind::Log(KfdLogKind::UnhandledException { pid, .. }) => Some((
                *pid,
                String::new(),
                Likely,
                "KFD reported an unhandled GPU exception in it".into(),
            )),
            NoteKind::Smi(SmiKind::VmFault { pid, comm }) => Some((
                *pid,
                comm.clone(),
                Likely,
                "KFD's SMI event attributed a VM fault to it".into(),
            )),
            // A queue creation failing (MES or the HWS already hung) names a victim, not the
            // culprit; an eviction failure names a process that had queues (`mentioned`); the
            // other notes name nobody.
            _ => None,
        }
    }

    /// C3 for a note that names a process without singling it out: `Failed to evict queues of
    /// ...` / `Failed to suspend process ...`. KFD evicts every process's queues on a GPU
    /// reset and on memory pressure, so the one whose eviction failed had queues when the
    /// scheduler stopped answering — a candidate, not a flag (rocm-6313: an SDMA ring hang,
    /// then `Failed to suspend process pid 3484`).
    fn mentioned(&self, what: &NoteKind) -> Option<(u32, String)> {
        match what {
            NoteKind::Log(KfdLogKind::EvictFailed { pasid, pid, what }) => pid
                .or_else(|| pasid.and_then(|p| self.pid_of_pasid(p)))
                .filter(|p| *p != 0)
                .map(|p| {
                    let why = format!(
                        "KFD: \"{what}\" it (every process's queues are evicted at a reset, so this says it had queues, not that it hung)"
                    );
                    (p, why)
                }),
            _ => None,
        }
    }

    /// C1 for eviction lines that name no known process: each is still compute work on the
    /// GPU. The queues they name: of the unresolved pasids, or of an unnamed process when no
    /// eviction line named a known one. None when there is nothing more to say.
    fn unnamed_evictions(&self, notes: &ComputeNotes) -> Option<String> {
        let mut pasids: Vec<String> = Vec::new();
        let (mut unnamed, mut named) = (false, false);
        for n in &notes.list {
            let NoteKind::Log(KfdLogKind::EvictFailed { pasid, .. }) = &n.what else {
                continue;
            };
            if self.mentioned(&n.what).is_some() {
                named = true;
                continue;
            }
            unnamed = true;
            let label = pasid.map(|p| format!("pasid 0x{p:x}"));
            if let Some(l) = label.filter(|l| !pasids.contains(l)) {
                pasids.push(l);
            }
        }
        if !pasids.is_empty() {
            return Some(format!("the queues of {}", pasids.join(", ")));
        }
        (unnamed && !named).then(|| "the queues of a process the log does not name".to_string())
    }

    /// The most specific flag among the notes: certain beats likely, later beats earlier
    /// among equals.
    fn flag(&self, notes: &ComputeNotes) -> Option<Flag> {
        let mut best: Option<Flag> = None;
        for n in &notes.list {
            let Some((pid, comm, confidence, why)) = self.flag_of(&n.what).filter(|f| f.0 != 0)
            else {
                continue;
            };
            if best.as_ref().is_none_or(|b| confidence >= b.confidence) {
                let comm = if comm.is_empty() {
                    self.procs.comm(pid)
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

    /// Processes with queues on the GPU during the window, each with its queues.
    fn holders(&self) -> Vec<(u32, String, Vec<QueueRef>)> {
        let mut by_pid: Vec<(u32, String, Vec<QueueRef>)> = Vec::new();
        for r in self.q.active(self.gpu, self.from, self.to) {
            let pid = r.info.task.pid;
            match by_pid.iter_mut().find(|(p, _, _)| *p == pid) {
                Some((_, _, qs)) => qs.push(queue_ref(r)),
                None => by_pid.push((pid, r.info.task.comm.clone(), vec![queue_ref(r)])),
            }
        }
        by_pid
    }
}

/// C1–C3: the flagged process and the candidates (every process with queues on the GPU in
/// the window, flagged first, then by number of compute queues).
fn candidates(s: &Scope, notes: &ComputeNotes) -> (Option<Candidate>, Vec<Candidate>) {
    let flagged = s.flag(notes);
    let holders = s.holders();
    let single = holders.len() == 1;
    let hang = notes.hang_evidence();
    let mentioned: Vec<(u32, String)> = notes
        .list
        .iter()
        .filter_map(|n| s.mentioned(&n.what))
        .collect();
    let mut cands: Vec<Candidate> = holders
        .into_iter()
        .map(|(pid, comm, mut queues)| {
            queues.sort_by_key(|r| (r.queue_id, r.doorbell));
            let comm = if comm.is_empty() { s.procs.comm(pid) } else { comm };
            let n = queues.len();
            let named = mentioned.iter().find(|(p, _)| *p == pid);
            let (confidence, reason) = match &flagged {
                Some(f) if f.pid == pid => (f.confidence, f.why.clone()),
                _ if single && hang => (
                    Confidence::Likely,
                    format!("the only process with queues on the GPU when its scheduler hung ({n} queue(s))"),
                ),
                _ if named.is_some() => (
                    Confidence::Unknown,
                    format!("had {n} queue(s) on the GPU; {}", named.map_or("", |(_, w)| w.as_str())),
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
                identity: None,
            }
        })
        .collect();
    // Named by an eviction failure but not in the queue table (log only, or it started
    // before the agent and the proc poll missed it): a candidate without queues.
    for (pid, why) in mentioned {
        if !cands.iter().any(|c| c.pid == pid) {
            cands.push(Candidate {
                pid,
                comm: s.procs.comm(pid),
                queues: Vec::new(),
                confidence: Confidence::Unknown,
                reason: why,
                identity: None,
            });
        }
    }
    cands.sort_by_key(|c| {
        let compute = c
            .queues
            .iter()
            .filter(|q| q.kind == QueueKind::Compute)
            .count();
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
                comm: f.comm,
                queues: Vec::new(),
                confidence: f.confidence,
                reason: f.why,
                identity: None,
            })
    });
    if let Some(f) = &flagged {
        if !cands.iter().any(|c| c.pid == f.pid) {
            cands.insert(0, f.clone());
        }
    }
    (flagged, cands)
}

/// The compute part of an incident's attribution (C1–C5), applied to the CS-side verdict `b`:
/// None when no compute work is involved (C0).
pub fn attribute(
    o: &Open,
    kind: IncidentKind,
    ring: Option<&str>,
    cx: &Ctx,
    b: &mut Blame,
) -> Option<ComputeAttribution> {
    let s = Scope {
        q: cx.queues,
        procs: cx.procs,
        gpu: o.gpu.as_deref(),
        from: o.start_ns,
        to: o.last_ns,
    };
    let (flagged, candidates) = candidates(&s, &o.compute);
    let compute_ring = ring.is_some_and(|r| r.starts_with("comp"));
    let relevant = !o.compute.list.is_empty()
        || flagged.is_some()
        || (!candidates.is_empty() && (b.culprit.is_none() || o.reset.mes || compute_ring));
    if !relevant {
        return None;
    }
    let choice = flagged.clone().or_else(|| {
        candidates
            .first()
            .filter(|c| c.confidence == Confidence::Likely)
            .cloned()
    });
    match &choice {
        Some(c) => culprit(b, c, cx),
        None if !candidates.is_empty() => {
            let names: Vec<String> = candidates.iter().map(|c| who(&c.comm, c.pid)).collect();
            b.reasoning.push_str(&format!(
                " Rule C3: nothing names the queue; processes with queues on the GPU at the time: {} (candidates, confidence unknown).",
                names.join(", ")
            ));
        }
        None => {}
    }
    if o.reset.outcome().is_some() || kind == IncidentKind::GpuReset {
        reset_victims(b, &candidates);
    }
    let mut note = cx.queues.source_note();
    if let Some(what) = s.unnamed_evictions(&o.compute) {
        note.push_str(&format!("; KFD failed to evict {what} (no process known)"));
        b.reasoning.push_str(&format!(
            " Rule C1: KFD failed to evict {what} on this GPU: compute work was running on it when it hung. No process is known for it, and a compute job may have caused the hang."
        ));
    }
    Some(ComputeAttribution {
        flagged,
        candidates,
        note,
    })
}

/// C4: the compute choice becomes the culprit when the CS side named nobody, or overrides a
/// less certain CS-side culprit when the kernel's own flag is certain; naming the same
/// process, it confirms (raises) the CS-side answer. Otherwise the reasoning says what
/// KFD/MES pointed at.
fn culprit(b: &mut Blame, c: &Candidate, cx: &Ctx) {
    let stronger =
        c.confidence > b.confidence && (c.confidence == Confidence::Certain || b.culprit.is_none());
    let same = b.culprit.as_ref().is_some_and(|x| x.pid == c.pid);
    if stronger && same {
        b.confidence = c.confidence;
        b.reasoning
            .push_str(&format!(" Rule C4: confirmed by KFD/MES: {}.", c.reason));
    } else if stronger {
        b.culprit = Some(cx.procs.reference(c.pid, &c.comm));
        b.confidence = c.confidence;
        b.victims.retain(|v| v.pid != c.pid);
        b.reasoning
            .push_str(&format!(" Rule C4: {}: {}.", who(&c.comm, c.pid), c.reason));
    } else if b.culprit.as_ref().is_some_and(|x| x.pid != c.pid) {
        b.reasoning.push_str(&format!(
            " Rule C4: KFD/MES also pointed at {}: {}.",
            who(&c.comm, c.pid),
            c.reason
        ));
    }
}

/// `comm (pid N)`, or `pid N` when the name is not known (a pid from a log line).
fn who(comm: &str, pid: u32) -> String {
    if comm.is_empty() {
        format!("pid {pid}")
    } else {
        format!("{comm} (pid {pid})")
    }
}

/// C5: after a GPU reset every other candidate lost its queues too: victims — once a culprit
/// is named (while nobody is, each candidate may be it, so none is called a victim).
fn reset_victims(b: &mut Blame, candidates: &[Candidate]) {
    if b.culprit.is_none() {
        return;
    }
    for c in candidates {
        b.victim(
            c.pid,
            c.comm.clone(),
            format!(
                "its {} queue(s) on the GPU were lost in the reset",
                c.queues.len()
            ),
        );
    }
}

/// The candidates of an incident on `gpu` spanning [from, to] whose notes are those of
/// `events` within `NOTE_LOOKBACK_NS` before it, with the queue table `events` build.
#[cfg(test)]
pub fn candidates_of(
    events: &[crate::model::Event],
    gpu: Option<&str>,
    from: u64,
    to: u64,
) -> (Option<Candidate>, Vec<Candidate>) {
    let mut q = Queues::new();
    let mut notes = ComputeNotes::default();
    let lookback = from.saturating_sub(super::queues::NOTE_LOOKBACK_NS);
    for e in events {
        q.observe(e);
        if super::queues::is_note(e) && (lookback..=to).contains(&e.t_ns) {
            notes.on_event(e);
        }
    }
    let procs = Processes::new(16, 16);
    let s = Scope {
        q: &q,
        procs: &procs,
        gpu,
        from,
        to,
    };
    candidates(&s, &notes)
}
