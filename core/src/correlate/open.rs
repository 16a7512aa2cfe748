//! Open incidents: which events join one, how long it stays open, and the per-role facts it
//! keeps for attribution (`roles.rs`, `timeout.rs`, `compute.rs`). Joining and closing rules:
//! docs/attribution.md "Clustering".
use super::clock::render_time;
use super::consequence::Link;
use super::notes::ComputeNotes;
use super::processes::Processes;
use super::recorder::Recorder;
use super::roles::{At, Faults, Refusals, Reset};
use super::timeout::{probe_owner, Timeouts};
use super::wedged::Wedged;
use super::Config;
use crate::incident::Evidence;
use crate::model::{Clock, Event, EventBody, JobKey, KmsgKind, Source, Task};

/// Evidence entries kept per incident; faults and illegal IRQs may fill at most
/// MAX_FAULT_EVIDENCE of them, so a fault storm never crowds out the timeout and reset.
pub const MAX_EVIDENCE: usize = 256;
pub const MAX_FAULT_EVIDENCE: usize = 192;
/// Kernel-log lines kept per evidence entry.
const MAX_LINES: usize = 32;

/// What an event means to incident clustering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Fault,
    Illegal,
    Timeout,
    Reset,
    /// Only joins an open incident (post-reset refusals, devcoredump, other errors).
    After,
    /// A compute note (KFD/MES line, SMI event, hung user queue): joins an open incident, or
    /// waits in the queue table for one opening within `queues::NOTE_LOOKBACK_NS`.
    Compute,
    /// A ring's oldest unfinished job ran past `stall_after` (the recorder poll).
    Stall,
}

impl Role {
    pub fn opens(self) -> bool {
        !matches!(self, Role::After | Role::Compute)
    }
}

pub fn role(ev: &Event) -> Option<Role> {
    Some(match &ev.body {
        EventBody::VmFault(_) => Role::Fault,
        EventBody::JobTimedOut { .. } => Role::Timeout,
        EventBody::RingStall { .. } => Role::Stall,
        EventBody::ResetBegin { .. } | EventBody::ResetEnd { .. } => Role::Reset,
        EventBody::SubmitRejected { errno, .. } if *errno == -125 => Role::After,
        EventBody::Wedged { .. } | EventBody::MesaVerdict { .. } => Role::After,
        EventBody::Kmsg(r) => match &r.kind {
            KmsgKind::PageFault { .. } => Role::Fault,
            KmsgKind::IllegalCommand { .. } => Role::Illegal,
            KmsgKind::RingTimeout { .. } | KmsgKind::SoftRecovered { .. } => Role::Timeout,
            KmsgKind::ResetBegin { .. }
            | KmsgKind::ResetResult { .. }
            | KmsgKind::ResetStep { .. }
            | KmsgKind::MesFailure { .. }
            | KmsgKind::RingReset { .. }
            | KmsgKind::VramLost => Role::Reset,
            KmsgKind::ParserInitFailed { .. }
            | KmsgKind::Devcoredump { .. }
            | KmsgKind::DeviceWedged { .. }
            | KmsgKind::OtherError { .. } => Role::After,
        },
        _ if super::queues::is_note(ev) => Role::Compute,
        _ => return None,
    })
}

/// Join-only records that an incident opening shortly after may adopt (`pending.rs`): the
/// devcoredump notice and other driver errors, which the kernel prints while handling a hang
/// before it prints the timeout. Refusals are not: they follow an earlier reset, and adopting
/// them would make their processes victims of a hang that came after.
pub fn pends(ev: &Event) -> bool {
    matches!(&ev.body, EventBody::Kmsg(r) if matches!(r.kind, KmsgKind::Devcoredump { .. } | KmsgKind::DeviceWedged { .. } | KmsgKind::OtherError { .. }))
        || matches!(
            ev.body,
            EventBody::Wedged { .. } | EventBody::MesaVerdict { .. }
        )
}

/// For a reset result: `Some(None)` for a full reset, `Some(Some(ring))` for a per-ring reset.
/// A result goes to the incident whose reset it ends, however long the reset took.
pub fn reset_result(ev: &Event) -> Option<Option<&str>> {
    match &ev.body {
        EventBody::ResetEnd { .. } => Some(None),
        EventBody::Kmsg(r) => match &r.kind {
            KmsgKind::ResetResult { .. } => Some(None),
            KmsgKind::RingReset { ring, ok: Some(_) } => Some(Some(ring.as_str())),
            _ => None,
        },
        _ => None,
    }
}

/// The ring a timeout event names, if any.
pub fn timeout_ring(ev: &Event) -> Option<&str> {
    match &ev.body {
        EventBody::JobTimedOut { ring, .. } => ring.as_deref(),
        EventBody::Kmsg(r) => match &r.kind {
            KmsgKind::RingTimeout { ring, .. } | KmsgKind::SoftRecovered { ring } => Some(ring),
            _ => None,
        },
        _ => None,
    }
}

/// The first ring stall of an incident (rule S1 in docs/attribution.md).
#[derive(Clone, Debug)]
pub struct StallRec {
    pub ring: String,
    pub job: JobKey,
    pub task: Task,
    pub running_since_ns: u64,
    /// The poll that first reported it.
    pub t_ns: u64,
    /// Later reports of the same stalled job (they only keep the incident open).
    pub repeats: u64,
}

impl StallRec {
    /// The evidence sentence for a stall reported at `t`.
    fn sentence(
        ring: &str,
        task: &Task,
        since: u64,
        t: u64,
        clock: Clock,
        procs: &Processes,
    ) -> String {
        let who = procs.reference(task.pid, &task.comm);
        format!(
            "{ring} stalled: the job {} (pid {}) submitted has run since {} ({} ms) without finishing",
            who.comm,
            who.pid,
            render_time(clock, since),
            t.saturating_sub(since) / 1_000_000
        )
    }
}

/// Evidence kept in order of arrival, capped (see MAX_EVIDENCE); the rest is counted.
#[derive(Clone, Debug, Default)]
pub struct EvidenceLog {
    pub items: Vec<Evidence>,
    pub omitted: u64,
    faults: usize,
}

impl EvidenceLog {
    fn push(&mut self, e: Evidence, fault: bool) -> bool {
        if self.items.len() >= MAX_EVIDENCE || (fault && self.faults >= MAX_FAULT_EVIDENCE) {
            self.omitted += 1;
            return false;
        }
        self.faults += usize::from(fault);
        self.items.push(e);
        true
    }
}

#[derive(Clone, Debug)]
pub struct Open {
    /// When the event that opened it happened: with the GPU, the incident's id.
    pub opened_ns: u64,
    /// Fixed at the first report (provisional or final), so every report shares it.
    id: Option<String>,
    pub gpu: Option<String>,
    pub clock: Clock,
    /// First and last related event.
    pub start_ns: u64,
    pub last_ns: u64,
    /// Last event that keeps the incident open (refusals and post-reset faults do not).
    pub active_ns: u64,
    /// Events added so far: the arrival order that breaks ties between equal timestamps.
    arrivals: u64,
    pub faults: Faults,
    pub timeout: Timeouts,
    pub reset: Reset,
    pub refusals: Refusals,
    pub compute: ComputeNotes,
    /// The first ring stall reported, if any.
    pub stall: Option<StallRec>,
    pub wedged: Wedged,
    /// The incident this one is a consequence of (rule L1).
    pub link: Option<Link>,
    /// Mesa's verdicts from the processes' journal streams (rule M1).
    pub mesa: super::mesa::Verdicts,
    pub evidence: EvidenceLog,
    pub dropped_at_open: u64,
    /// Changed since the last provisional report.
    pub changed: bool,
}

impl Open {
    pub fn new(ev: &Event, dropped: u64) -> Self {
        Open {
            opened_ns: ev.t_ns,
            id: None,
            gpu: ev.gpu.clone(),
            clock: ev.clock,
            start_ns: ev.t_ns,
            last_ns: ev.t_ns,
            active_ns: ev.t_ns,
            arrivals: 0,
            faults: Faults::default(),
            timeout: Timeouts::default(),
            reset: Reset::default(),
            refusals: Refusals::default(),
            compute: ComputeNotes::default(),
            stall: None,
            wedged: Wedged::default(),
            link: None,
            mesa: Default::default(),
            evidence: EvidenceLog::default(),
            dropped_at_open: dropped,
            changed: true,
        }
    }

    /// `<gpu or "gpu">-<ns of the opening event>`, fixed the first time it is asked for (the
    /// PCI address may arrive after the opening event, e.g. after a `[drm:...]` line).
    pub fn id(&mut self) -> String {
        let (gpu, t) = (&self.gpu, self.opened_ns);
        self.id
            .get_or_insert_with(|| format!("{}-{t}", gpu.as_deref().unwrap_or("gpu")))
            .clone()
    }

    /// A timeout or reset activity is in: the incident settles instead of waiting for one.
    pub fn decisive(&self) -> bool {
        self.timeout.seen() || self.reset.seen
    }

    /// Faults/illegal IRQs wait `fault_window` for a timeout or reset to claim them. Once one is
    /// in, the incident settles `settle` after its last active event, but a begun reset keeps
    /// it open until the reset ends; nothing keeps it open past `reset_cap + settle` after its
    /// first timeout or reset.
    pub fn close_at(&self, cfg: &Config) -> u64 {
        if !self.decisive() {
            // A stall is reported every poll while it lasts: it settles once the reports stop.
            let wait = if self.stall.is_some() {
                cfg.settle_ns
            } else {
                cfg.fault_window_ns
            };
            return self.active_ns.saturating_add(wait);
        }
        let settle = self.active_ns.saturating_add(cfg.settle_ns);
        let soft = match self.reset.begun_t {
            Some(b) if self.reset.pending() => b.saturating_add(cfg.reset_cap_ns).max(settle),
            _ => settle,
        };
        let first = [self.timeout.first_t(), self.reset.begun_t]
            .into_iter()
            .flatten()
            .min();
        let hard = first.map_or(u64::MAX, |f| {
            f.saturating_add(cfg.reset_cap_ns)
                .saturating_add(cfg.settle_ns)
        });
        soft.min(hard)
    }

    pub fn accepts(&self, ev: &Event, role: Role, cfg: &Config) -> bool {
        let t = ev.t_ns;
        // Long before this incident: another boot's clock, or older input.
        if t.saturating_add(cfg.fault_window_ns) < self.start_ns {
            return false;
        }
        // A second timeout from the same source family after the reset ended is a new hang;
        // from the other family (kmsg after probe, or the reverse) it is the same hang,
        // possibly delivered late.
        if role == Role::Timeout
            && self.reset.ended()
            && self.timeout.reported_by(ev.source == Source::Ebpf)
        {
            return false;
        }
        if self.decisive() {
            return t <= self.close_at(cfg);
        }
        // A stall merges with the kernel's timeout of the stalled ring, not of another ring.
        if let (Some(s), Some(r)) = (&self.stall, timeout_ring(ev)) {
            if s.ring != r {
                return false;
            }
        }
        let window = match role {
            Role::Timeout | Role::Reset | Role::Stall => cfg.fault_window_ns,
            _ => cfg.settle_ns,
        };
        t <= self.active_ns.saturating_add(window)
    }

    /// Marks this incident a consequence of another (rule L1), with an evidence entry at `ev`,
    /// the timeout that opened it.
    pub fn link(&mut self, link: Link, ev: &Event) {
        self.evidence.push(link.evidence(ev), false);
        self.link = Some(link);
        self.changed = true;
    }

    /// Whether a result for `ring` (None: full reset) ends a reset pending here.
    pub fn awaits(&self, ring: Option<&str>) -> bool {
        self.reset.awaits(ring)
    }

    /// Refusals and compute notes never keep an incident open; faults stop doing so once its
    /// reset began.
    fn extends(&self, role: Role) -> bool {
        match role {
            Role::After | Role::Compute => false,
            Role::Fault | Role::Illegal => self.reset.begun_t.is_none() && !self.reset.ended(),
            Role::Timeout | Role::Reset | Role::Stall => true,
        }
    }

    /// Records `ev`; returns the evidence it added, if any was kept.
    pub fn add(
        &mut self,
        ev: &Event,
        role: Role,
        procs: &Processes,
        rec: &Recorder,
    ) -> Option<&Evidence> {
        self.changed = true;
        if self.gpu.is_none() {
            self.gpu.clone_from(&ev.gpu);
        }
        if self.extends(role) {
            self.active_ns = self.active_ns.max(ev.t_ns);
        }
        self.last_ns = self.last_ns.max(ev.t_ns);
        self.start_ns = self.start_ns.min(ev.t_ns);
        let what = self.record(ev, procs, rec)?;
        let lines = match &ev.body {
            EventBody::Kmsg(r) => r.lines.iter().take(MAX_LINES).cloned().collect(),
            EventBody::KfdLog(r) => vec![r.line.clone()],
            _ => Vec::new(),
        };
        let e = Evidence {
            at: render_time(ev.clock, ev.t_ns),
            t_ns: ev.t_ns,
            source: ev.source,
            what,
            lines,
        };
        let fault = matches!(role, Role::Fault | Role::Illegal);
        if self.evidence.push(e, fault) {
            self.evidence.items.last()
        } else {
            None
        }
    }

    /// Hands a probe event to its role's state; the evidence sentence.
    fn record(&mut self, ev: &Event, procs: &Processes, rec: &Recorder) -> Option<String> {
        let t = ev.t_ns;
        let at = At {
            t,
            ord: self.arrivals,
        };
        self.arrivals += 1;
        Some(match &ev.body {
            EventBody::VmFault(f) => self.faults.on_probe(t, f, procs),
            EventBody::JobTimedOut { ring, job, pasid } => {
                let owner = probe_owner(rec, procs, &ev.gpu, ring.as_deref(), job, *pasid);
                self.timeout.on_probe(at, ring.as_ref(), job, owner)
            }
            EventBody::ResetBegin { ring, .. } => {
                self.reset.on_begin(t, ring.as_ref());
                "GPU reset began".into()
            }
            EventBody::ResetEnd { result } => {
                self.reset.on_result(t, *result == 0);
                format!("GPU reset finished with result {result}")
            }
            EventBody::RingStall {
                ring,
                job,
                task,
                running_since_ns,
            } => return self.on_stall(t, ring, job, task, *running_since_ns, procs),
            EventBody::SubmitRejected { task, errno } => {
                return self.refusals.on_probe(task, *errno)
            }
            EventBody::Kmsg(r) => return self.record_kmsg(at, &r.kind, procs),
            EventBody::Wedged { methods, task } => self.wedged.on_event(methods, task.as_ref()),
            EventBody::MesaVerdict {
                task,
                verdict,
                logger,
            } => self.mesa.on_event(task, *verdict, logger.as_deref()),
            EventBody::KfdLog(_) | EventBody::KfdSmi(_) | EventBody::UserqState { .. } => {
                return self.compute.on_event(ev)
            }
            _ => return None,
        })
    }

    /// Records a stall report at `t`; the evidence sentence, none for a repeat of the first.
    fn on_stall(
        &mut self,
        t: u64,
        ring: &str,
        job: &JobKey,
        task: &Task,
        since: u64,
        procs: &Processes,
    ) -> Option<String> {
        match &mut self.stall {
            Some(s) if s.ring == ring && s.job == *job => {
                s.repeats += 1;
                return None;
            }
            Some(_) => {}
            None => {
                self.stall = Some(StallRec {
                    ring: ring.to_string(),
                    job: *job,
                    task: task.clone(),
                    running_since_ns: since,
                    t_ns: t,
                    repeats: 0,
                })
            }
        }
        Some(StallRec::sentence(ring, task, since, t, self.clock, procs))
    }

    /// A stall with no timeout or reset whose stalled job the recorder saw finish (completed,
    /// or cancelled by a reset): the incident is over.
    pub fn stall_over(&self, rec: &Recorder) -> bool {
        let Some(s) = self.stall.as_ref().filter(|_| !self.decisive()) else {
            return false;
        };
        rec.find_on(&self.gpu, Some(&s.ring), &s.job)
            .is_some_and(|j| j.done_ns.is_some() || j.cancelled)
    }

    /// Hands a kernel-log record to its role's state; the evidence sentence.
    fn record_kmsg(&mut self, at: At, kind: &KmsgKind, procs: &Processes) -> Option<String> {
        let t = at.t;
        Some(match kind {
            KmsgKind::PageFault { fault, task } => {
                self.faults.on_log(t, fault, task.as_ref(), procs)
            }
            KmsgKind::IllegalCommand { what } => self.faults.on_illegal(at, what),
            KmsgKind::RingTimeout {
                ring,
                signaled,
                emitted,
                task,
            } => self
                .timeout
                .on_log(at, ring, (*signaled, *emitted), task.as_ref()),
            KmsgKind::SoftRecovered { ring } => self.timeout.on_soft(at, ring),
            KmsgKind::RingReset { .. }
            | KmsgKind::ResetBegin { .. }
            | KmsgKind::ResetResult { .. }
            | KmsgKind::ResetStep { .. }
            | KmsgKind::VramLost
            | KmsgKind::MesFailure { .. } => return self.reset.on_kmsg(t, kind),
            KmsgKind::ParserInitFailed { errno } => return self.refusals.on_parser(*errno),
            KmsgKind::Devcoredump { path } => format!(
                "devcoredump written{}",
                path.as_ref()
                    .map(|p| format!(" at {p}"))
                    .unwrap_or_default()
            ),
            KmsgKind::DeviceWedged { needs_recovery } => self.wedged.on_log(*needs_recovery),
            KmsgKind::OtherError { text } => format!("driver error: {text}"),
        })
    }
}
