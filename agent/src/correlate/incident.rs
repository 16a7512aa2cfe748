//! Open incidents: which events join one, when it closes, and the facts kept for attribution.
use super::processes::Processes;
use super::recorder::Recorder;
use super::Config;
use crate::incident::Evidence;
use crate::model::{Clock, Event, EventBody, IllegalKind, JobKey, KmsgKind, Task};

/// Per-incident caps so a fault storm cannot grow memory without bound.
pub const MAX_EVIDENCE: usize = 256;
pub const MAX_FAULTS: usize = 1024;

/// What an event means to incident clustering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Fault,
    Illegal,
    Timeout,
    Reset,
    /// Only joins an open incident (post-reset refusals, devcoredump, other errors).
    After,
}

impl Role {
    pub fn opens(self) -> bool {
        !matches!(self, Role::After)
    }
}

pub fn role(ev: &Event) -> Option<Role> {
    Some(match &ev.body {
        EventBody::VmFault(_) => Role::Fault,
        EventBody::JobTimedOut { .. } => Role::Timeout,
        EventBody::ResetBegin { .. } | EventBody::ResetEnd { .. } => Role::Reset,
        EventBody::SubmitRejected { errno, .. } if *errno == -125 => Role::After,
        EventBody::Kmsg(r) => match &r.kind {
            KmsgKind::PageFault { .. } => Role::Fault,
            KmsgKind::IllegalCommand { .. } => Role::Illegal,
            KmsgKind::RingTimeout { .. } => Role::Timeout,
            KmsgKind::ResetBegin { .. }
            | KmsgKind::ResetResult { .. }
            | KmsgKind::ResetStep { .. }
            | KmsgKind::MesFailure { .. }
            | KmsgKind::RingReset { .. }
            | KmsgKind::VramLost => Role::Reset,
            KmsgKind::SoftRecovered { .. } => Role::Timeout,
            KmsgKind::ParserInitFailed { .. }
            | KmsgKind::Devcoredump { .. }
            | KmsgKind::OtherError { .. } => Role::After,
        },
        _ => return None,
    })
}

#[derive(Clone, Debug)]
pub struct FaultRec {
    /// 0 when the kernel could not map the PASID.
    pub pid: u32,
    pub comm: String,
    pub t_ns: u64,
    /// Seen by a probe (else by the kernel log); a probe fault and its log line are one fault.
    pub probe: bool,
    pub paired: bool,
}

#[derive(Clone, Debug)]
pub struct Open {
    pub gpu: Option<String>,
    pub clock: Clock,
    pub start_ns: u64,
    pub last_ns: u64,
    pub faults: Vec<FaultRec>,
    pub illegal: bool,
    pub timeout_ring: Option<String>,
    pub timeout_t: Option<u64>,
    /// The kernel's "Process X pid N" after the timeout line.
    pub kmsg_blamed: Option<Task>,
    pub signaled: Option<u64>,
    pub emitted: Option<u64>,
    /// The probe's timed-out job owner (pid, comm) and key.
    pub hung_job: Option<(u32, String, JobKey)>,
    pub reset_seen: bool,
    pub reset: Option<String>,
    pub reset_t: Option<u64>,
    pub rejected: Vec<(Task, u64)>,
    pub parser_refused: u32,
    pub mes: bool,
    /// Which source families already reported a timeout (for probe/kmsg de-duplication).
    pub probe_timeout: bool,
    pub log_timeout: bool,
    pub evidence: Vec<Evidence>,
    /// Evidence/faults beyond the per-incident caps (fault storms), counted not kept.
    pub evidence_omitted: u64,
    pub dropped_at_open: u64,
}

impl Open {
    pub fn new(ev: &Event) -> Self {
        Open {
            gpu: ev.gpu.clone(),
            clock: ev.clock,
            start_ns: ev.t_ns,
            last_ns: ev.t_ns,
            faults: Vec::new(),
            illegal: false,
            timeout_ring: None,
            timeout_t: None,
            kmsg_blamed: None,
            signaled: None,
            emitted: None,
            hung_job: None,
            reset_seen: false,
            reset: None,
            reset_t: None,
            rejected: Vec::new(),
            parser_refused: 0,
            mes: false,
            probe_timeout: false,
            log_timeout: false,
            evidence: Vec::new(),
            evidence_omitted: 0,
            dropped_at_open: 0,
        }
    }

    fn decisive(&self) -> bool {
        self.timeout_t.is_some() || self.reset_seen
    }

    /// Faults/illegal IRQs wait `fault_window` for a timeout or reset to claim them;
    /// once a timeout or reset is in, the incident settles after `settle`.
    pub fn close_at(&self, cfg: &Config) -> u64 {
        if self.decisive() {
            self.last_ns.saturating_add(cfg.settle_ns)
        } else {
            self.last_ns.saturating_add(cfg.fault_window_ns)
        }
    }

    pub fn accepts(&self, t: u64, role: Role, from_probe: bool, cfg: &Config) -> bool {
        if t <= self.last_ns.saturating_add(cfg.settle_ns) {
            // A second timeout from the same kind of source after the reset finished is a new
            // hang; from the other kind (kmsg after probe, or the reverse) it is the same hang
            // reported twice, possibly delivered late.
            let seen = if from_probe {
                self.probe_timeout
            } else {
                self.log_timeout
            };
            return !(role == Role::Timeout && self.reset.is_some() && seen);
        }
        !self.decisive()
            && matches!(role, Role::Timeout | Role::Reset)
            && t <= self.last_ns.saturating_add(cfg.fault_window_ns)
    }

    /// Count a fault once when both the probe and the kernel log reported it (same pid,
    /// within 1 s, not yet paired).
    fn push_fault(&mut self, f: FaultRec) {
        if self.faults.len() >= MAX_FAULTS {
            return;
        }
        if let Some(other) = self.faults.iter_mut().find(|o| {
            !o.paired
                && o.probe != f.probe
                && o.pid == f.pid
                && o.t_ns.abs_diff(f.t_ns) < 1_000_000_000
        }) {
            other.paired = true;
            if other.pid == 0 && f.pid != 0 {
                other.pid = f.pid;
                other.comm = f.comm;
            }
            return;
        }
        self.faults.push(f);
    }

    pub fn add(&mut self, ev: &Event, role: Role, procs: &Processes, rec: &Recorder) {
        if role == Role::Timeout {
            if ev.source == crate::model::Source::Ebpf {
                self.probe_timeout = true;
            } else {
                self.log_timeout = true;
            }
        }
        if self.gpu.is_none() {
            self.gpu = ev.gpu.clone();
        }
        self.last_ns = self.last_ns.max(ev.t_ns);
        self.start_ns = self.start_ns.min(ev.t_ns);
        let mut lines = Vec::new();
        let what = match &ev.body {
            EventBody::VmFault(f) => {
                let pid = procs.pid_of_pasid(f.pasid).unwrap_or(0);
                let comm = procs.get(pid).map(|p| p.comm.clone()).unwrap_or_default();
                self.push_fault(FaultRec {
                    pid,
                    comm: comm.clone(),
                    t_ns: ev.t_ns,
                    probe: true,
                    paired: false,
                });
                let who = if pid == 0 {
                    format!("unknown process (pasid {} not mapped)", f.pasid)
                } else {
                    format!("{comm} (pid {pid})")
                };
                format!("{} page fault at {} from {who}", f.hub, addr(f.address))
            }
            EventBody::JobTimedOut { ring, job, pasid } => {
                self.timeout_t.get_or_insert(ev.t_ns);
                if ring.is_some() {
                    self.timeout_ring = ring.clone();
                }
                let owner = rec
                    .find_on(&ev.gpu, ring.as_deref(), job)
                    .filter(|j| j.pid != 0)
                    .map(|j| (j.pid, j.comm.clone()))
                    .or_else(|| {
                        pasid.and_then(|p| procs.pid_of_pasid(p)).map(|pid| {
                            (
                                pid,
                                procs.get(pid).map(|p| p.comm.clone()).unwrap_or_default(),
                            )
                        })
                    });
                let r = ring.clone().unwrap_or_else(|| "?".into());
                match owner {
                    Some((pid, comm)) => {
                        self.hung_job = Some((pid, comm.clone(), *job));
                        format!("job of {comm} (pid {pid}) on {r} timed out")
                    }
                    None => format!("a job on {r} timed out (owner not recorded)"),
                }
            }
            EventBody::ResetBegin { ring, .. } => {
                self.reset_seen = true;
                self.reset_t.get_or_insert(ev.t_ns);
                if self.timeout_ring.is_none() {
                    self.timeout_ring = ring.clone().filter(|_| self.timeout_t.is_some());
                }
                "GPU reset began".to_string()
            }
            EventBody::ResetEnd { result } => {
                self.reset_seen = true;
                self.reset = Some(if *result == 0 { "succeeded" } else { "failed" }.to_string());
                format!("GPU reset finished with result {result}")
            }
            EventBody::SubmitRejected { task, errno } => {
                self.rejected.push((task.clone(), ev.t_ns));
                format!(
                    "submission of {} (pid {}) refused with {errno}",
                    task.comm, task.pid
                )
            }
            EventBody::Kmsg(r) => {
                lines = r.lines.clone();
                match &r.kind {
                    KmsgKind::PageFault { fault, task } => {
                        let (pid, comm) = match task {
                            Some(t) if t.pid != 0 => (t.pid, t.comm.clone()),
                            _ => {
                                let pid = procs.pid_of_pasid(fault.pasid).unwrap_or(0);
                                (
                                    pid,
                                    procs.get(pid).map(|p| p.comm.clone()).unwrap_or_default(),
                                )
                            }
                        };
                        self.push_fault(FaultRec {
                            pid,
                            comm: comm.clone(),
                            t_ns: ev.t_ns,
                            probe: false,
                            paired: false,
                        });
                        if pid == 0 {
                            format!("{} page fault at {} (pasid {}); the kernel could not map the PASID to a process (pid 0)", fault.hub, addr(fault.address), fault.pasid)
                        } else {
                            format!(
                                "{} page fault at {} from {comm} (pid {pid})",
                                fault.hub,
                                addr(fault.address)
                            )
                        }
                    }
                    KmsgKind::IllegalCommand { what } => {
                        self.illegal = true;
                        let w = match what {
                            IllegalKind::Opcode => "opcode",
                            IllegalKind::RegisterAccess => "register access",
                            IllegalKind::Instruction => "instruction",
                        };
                        format!("illegal {w} in a command stream (the IRQ names no process)")
                    }
                    KmsgKind::RingTimeout {
                        ring,
                        signaled,
                        emitted,
                        task,
                    } => {
                        self.timeout_t.get_or_insert(ev.t_ns);
                        self.timeout_ring = Some(ring.clone());
                        self.signaled = signaled.or(self.signaled);
                        self.emitted = emitted.or(self.emitted);
                        if let Some(t) = task.as_ref().filter(|t| t.pid != 0) {
                            self.kmsg_blamed = Some(t.clone());
                            format!(
                                "ring {ring} timed out; the kernel names {} (pid {})",
                                t.comm, t.pid
                            )
                        } else {
                            format!("ring {ring} timed out")
                        }
                    }
                    KmsgKind::SoftRecovered { ring } => {
                        self.timeout_t.get_or_insert(ev.t_ns);
                        self.timeout_ring = Some(ring.clone());
                        format!("ring {ring} timed out but soft recovered")
                    }
                    KmsgKind::RingReset { ring, ok } => {
                        self.reset_seen = true;
                        if let Some(ok) = ok {
                            self.reset = Some(if *ok { "succeeded" } else { "failed" }.into());
                        }
                        format!("ring {ring} reset")
                    }
                    KmsgKind::ResetBegin { source } => {
                        self.reset_seen = true;
                        self.reset_t.get_or_insert(ev.t_ns);
                        match source {
                            Some(s) => format!("GPU reset began (source {s})"),
                            None => "GPU reset began".into(),
                        }
                    }
                    KmsgKind::ResetResult { ok, .. } => {
                        self.reset_seen = true;
                        self.reset = Some(if *ok { "succeeded" } else { "failed" }.into());
                        format!("GPU reset {}", if *ok { "succeeded" } else { "failed" })
                    }
                    KmsgKind::ResetStep { what } => {
                        self.reset_seen = true;
                        self.reset_t.get_or_insert(ev.t_ns);
                        format!("reset step: {what}")
                    }
                    KmsgKind::VramLost => "VRAM was lost in the reset".into(),
                    KmsgKind::MesFailure { msg } => {
                        self.mes = true;
                        self.reset_seen = true;
                        format!(
                            "MES firmware failed to respond{}",
                            msg.as_ref().map(|m| format!(" ({m})")).unwrap_or_default()
                        )
                    }
                    KmsgKind::ParserInitFailed { errno } => {
                        self.parser_refused += 1;
                        format!("a context was refused after reset (process not named in the log), errno {errno}")
                    }
                    KmsgKind::Devcoredump { path } => format!(
                        "devcoredump written{}",
                        path.as_ref()
                            .map(|p| format!(" at {p}"))
                            .unwrap_or_default()
                    ),
                    KmsgKind::OtherError { text } => format!("driver error: {text}"),
                }
            }
            _ => return,
        };
        if self.evidence.len() >= MAX_EVIDENCE {
            self.evidence_omitted += 1;
            return;
        }
        self.evidence.push(Evidence {
            at: render_time(ev.clock, ev.t_ns),
            t_ns: ev.t_ns,
            source: ev.source,
            what,
            lines,
        });
    }
}

fn addr(a: Option<u64>) -> String {
    a.map(|a| format!("0x{a:x}"))
        .unwrap_or_else(|| "an unknown address".into())
}

/// Monotonic: seconds since boot as the kernel prints them; Realtime: RFC 3339 UTC.
pub fn render_time(clock: Clock, t_ns: u64) -> String {
    match clock {
        Clock::Monotonic => format!(
            "{}.{:06}",
            t_ns / 1_000_000_000,
            (t_ns % 1_000_000_000) / 1000
        ),
        Clock::Realtime => {
            let secs = t_ns / 1_000_000_000;
            let micros = (t_ns % 1_000_000_000) / 1000;
            let days = (secs / 86_400) as i64;
            let rem = secs % 86_400;
            // Howard Hinnant's civil_from_days.
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let d = doy - (153 * mp + 2) / 5 + 1;
            let m = if mp < 10 { mp + 3 } else { mp - 9 };
            let y = yoe + era * 400 + i64::from(m <= 2);
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
                rem / 3600,
                (rem / 60) % 60,
                rem % 60
            )
        }
    }
}
