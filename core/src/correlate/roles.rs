//! What an open incident knows, one state per role: faults (and illegal-command IRQs), the
//! reset (full and per-ring), and post-reset refusals; ring timeouts are in `timeout.rs`.
//! Each handler records its event and returns the evidence sentence; every list is capped and
//! its overflow counted.
use super::processes::Processes;
use crate::model::{FaultInfo, IllegalKind, KmsgKind, Task};

/// Fault records kept per incident (a fault storm cannot grow memory).
pub const MAX_FAULTS: usize = 1024;
/// Processes listed as refused after a reset; refusals from further processes are counted.
pub const MAX_REFUSING_PIDS: usize = 32;
/// Refusals kept as evidence; the rest are counted (a client retrying for an hour is one line).
pub const MAX_REFUSAL_EVIDENCE: u32 = 8;
/// Per-ring resets tracked per incident.
pub const MAX_RING_RESETS: usize = 16;

/// When an event happened and in which order it reached its incident. Logs without stamps
/// give every line the same time, so "before the timeout" falls back to arrival order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct At {
    pub t: u64,
    pub ord: u64,
}

/// Which VM hub a fault came through; it bounds which rings could have issued the access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hub {
    Gfx,
    Mm,
    Unknown,
}

impl Hub {
    fn parse(hub: &str) -> Hub {
        if hub.starts_with("gfxhub") {
            Hub::Gfx
        } else if hub.starts_with("mmhub") {
            Hub::Mm
        } else {
            Hub::Unknown
        }
    }

    /// Whether work on `ring` goes through this hub. GFX and compute queues translate through
    /// the GC hub (gfxhub), video engines through mmhub; SDMA moved between ASIC generations.
    pub fn serves(self, ring: &str) -> bool {
        let gc = ["gfx", "comp", "kiq", "mes"]
            .iter()
            .any(|p| ring.starts_with(p));
        let mm = ["vcn", "jpeg", "uvd", "vce"]
            .iter()
            .any(|p| ring.starts_with(p));
        match self {
            Hub::Gfx => !mm,
            Hub::Mm => !gc,
            Hub::Unknown => true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct FaultRec {
    /// 0 when the kernel could not map the PASID.
    pub pid: u32,
    pub comm: String,
    pub t_ns: u64,
    pub pasid: Option<u32>,
    pub hub: Hub,
    /// Seen by a probe (else by the kernel log); a probe fault and its log line are one fault.
    pub probe: bool,
    pub paired: bool,
}

impl FaultRec {
    /// "zed (pid 7587)" for reasoning text.
    pub fn who(&self) -> String {
        format!("{} (pid {})", self.comm, self.pid)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub list: Vec<FaultRec>,
    /// Faults beyond MAX_FAULTS, counted not kept.
    pub omitted: u64,
    pub illegal: u32,
    /// The earliest illegal-command IRQ (rule T2 needs one before the blamed timeout).
    pub illegal_first: Option<At>,
}

impl Faults {
    pub fn named(&self) -> impl Iterator<Item = &FaultRec> {
        self.list.iter().filter(|f| f.pid != 0)
    }

    pub fn unnamed(&self) -> usize {
        self.list.iter().filter(|f| f.pid == 0).count()
    }

    pub fn on_probe(&mut self, t: u64, f: &FaultInfo, procs: &Processes) -> String {
        let pid = procs.pid_of_pasid(f.pasid).unwrap_or(0);
        let comm = procs.comm(pid);
        let who = if pid == 0 {
            format!("unknown process (pasid {} not mapped)", f.pasid)
        } else {
            format!("{comm} (pid {pid})")
        };
        self.push(fault_rec(pid, comm, t, f, true));
        format!("{} page fault at {} from {who}", f.hub, addr(f.address))
    }

    pub fn on_log(
        &mut self,
        t: u64,
        f: &FaultInfo,
        task: Option<&Task>,
        procs: &Processes,
    ) -> String {
        let (pid, comm) = match task {
            Some(t) if t.pid != 0 => (t.pid, t.comm.clone()),
            _ => {
                let pid = procs.pid_of_pasid(f.pasid).unwrap_or(0);
                (pid, procs.comm(pid))
            }
        };
        let what = if pid == 0 {
            format!("{} page fault at {} (pasid {}); the kernel could not map the PASID to a process (pid 0)", f.hub, addr(f.address), f.pasid)
        } else {
            format!(
                "{} page fault at {} from {comm} (pid {pid})",
                f.hub,
                addr(f.address)
            )
        };
        self.push(fault_rec(pid, comm, t, f, false));
        what
    }

    /// Whether an illegal-command IRQ came before `at`.
    pub fn illegal_before(&self, at: At) -> bool {
        self.illegal_first.is_some_and(|i| i < at)
    }

    pub fn on_illegal(&mut self, at: At, what: &IllegalKind) -> String {
        self.illegal += 1;
        self.illegal_first = Some(self.illegal_first.map_or(at, |i| i.min(at)));
        let w = match what {
            IllegalKind::Opcode => "opcode",
            IllegalKind::RegisterAccess => "register access",
            IllegalKind::Instruction => "instruction",
        };
        format!("illegal {w} in a command stream (the IRQ names no process)")
    }

    /// Count a fault once when both the probe and the kernel log reported it (same pid,
    /// within 1 s, not yet paired; only recent records are searched).
    fn push(&mut self, f: FaultRec) {
        let recent = self.list.len().saturating_sub(64);
        if let Some(other) = self.list[recent..].iter_mut().find(|o| {
            !o.paired
                && o.probe != f.probe
                && o.pid == f.pid
                && o.t_ns.abs_diff(f.t_ns) < 1_000_000_000
        }) {
            other.paired = true;
            return;
        }
        if self.list.len() >= MAX_FAULTS {
            self.omitted += 1;
            return;
        }
        self.list.push(f);
    }
}

fn fault_rec(pid: u32, comm: String, t: u64, f: &FaultInfo, probe: bool) -> FaultRec {
    FaultRec {
        pid,
        comm,
        t_ns: t,
        pasid: (f.pasid != 0).then_some(f.pasid),
        hub: Hub::parse(&f.hub),
        probe,
        paired: false,
    }
}

/// A per-ring reset (`Starting X ring reset` … `Ring X reset succeeded|failed`).
#[derive(Clone, Debug)]
pub struct RingReset {
    pub ring: String,
    pub ok: Option<bool>,
}

/// Reset activity: full GPU resets (begin, steps, result), per-ring resets, MES failures.
/// A begun reset is pending until its result; the incident waits for it (up to a cap).
#[derive(Clone, Debug, Default)]
pub struct Reset {
    /// Any reset activity (including MES failures, which precede a reset).
    pub seen: bool,
    /// First begin (full, per-ring or a reset step).
    pub begun_t: Option<u64>,
    full_pending: bool,
    /// Result of the last full reset.
    pub result: Option<bool>,
    /// When the last full reset ended: a begin reported at or before it is that reset's,
    /// from the other source, late. A per-ring reset's result does not end a full reset: the
    /// `GPU reset begin!` its failure escalates to often carries the same stamp.
    full_ended_t: Option<u64>,
    pub ring_resets: Vec<RingReset>,
    pub ring_resets_omitted: u64,
    /// When the latest reset result (full or per-ring) was reported.
    pub result_t: Option<u64>,
    pub mes: bool,
    pub vram_lost: bool,
    /// Ring the probe's `amdgpu_device_gpu_recover` named.
    pub probe_ring: Option<String>,
    /// The latest reset step is the full reset (else a per-ring reset): a per-ring reset that
    /// fails escalates to a full one, whose outcome is the incident's.
    last_full: bool,
    /// The pending full reset printed `GPU reset succeeded, trying to resume`: the ASIC came
    /// back, the driver's resume has not reported yet.
    asic_reset_ok: bool,
}

/// The step amdgpu prints between a successful ASIC reset and the resume of its IP blocks.
const RESUMING_STEP: &str = "GPU reset succeeded, trying to resume";

pub use crate::incident::ResetOutcome as Outcome;

impl Outcome {
    fn of(ok: Option<bool>) -> Outcome {
        match ok {
            Some(true) => Outcome::Succeeded,
            Some(false) => Outcome::Failed,
            None => Outcome::Began,
        }
    }
}

impl Reset {
    pub fn pending(&self) -> bool {
        self.full_pending || self.ring_resets.iter().any(|r| r.ok.is_none())
    }

    /// A reset result was seen and nothing is pending.
    pub fn ended(&self) -> bool {
        !self.pending()
            && (self.result.is_some() || self.ring_resets.iter().any(|r| r.ok.is_some()))
    }

    /// The outcome of the escalation's last step: a per-ring reset that failed and escalated
    /// to a full reset ends as the full reset does; a step that began without a result is
    /// `Began`. None when no reset began or ended (MES failures alone).
    pub fn outcome(&self) -> Option<Outcome> {
        let full = if self.full_pending && self.asic_reset_ok {
            Some(Outcome::Resuming)
        } else if self.full_pending {
            Some(Outcome::Began)
        } else {
            self.result.map(|ok| Outcome::of(Some(ok)))
        };
        let ring = self.ring_resets.last().map(|r| Outcome::of(r.ok));
        if self.last_full {
            full.or(ring)
        } else {
            ring.or(full)
        }
    }

    /// Whether a result for `ring` (None: a full reset) would end a reset pending here.
    pub fn awaits(&self, ring: Option<&str>) -> bool {
        match ring {
            None => self.full_pending,
            Some(r) => self
                .ring_resets
                .iter()
                .any(|x| x.ring == r && x.ok.is_none()),
        }
    }

    fn begin(&mut self, t: u64) {
        self.seen = true;
        self.begun_t.get_or_insert(t);
    }

    /// A begin reported after this reset already ended (the other source, late) starts nothing.
    pub fn on_begin(&mut self, t: u64, ring: Option<&String>) {
        self.begin(t);
        self.last_full = true;
        if ring.is_some() && self.probe_ring.is_none() {
            self.probe_ring = ring.cloned();
        }
        if self.full_ended_t.is_none_or(|e| t > e) {
            self.full_pending = true;
            self.asic_reset_ok = false;
        }
    }

    pub fn on_result(&mut self, t: u64, ok: bool) {
        self.seen = true;
        self.last_full = true;
        self.full_pending = false;
        self.result = Some(ok);
        self.result_t = Some(self.result_t.map_or(t, |e| e.max(t)));
        self.full_ended_t = Some(self.full_ended_t.map_or(t, |e| e.max(t)));
    }

    /// MODE1/MODE2/soft-reset steps and VRAM loss: a full reset is under way until its result.
    fn on_step(&mut self, t: u64) {
        self.begin(t);
        self.last_full = true;
        if self.result.is_none() {
            self.full_pending = true;
        }
    }

    fn on_ring(&mut self, t: u64, ring: &str, ok: Option<bool>) {
        self.seen = true;
        match ok {
            None => {
                self.begin(t);
                self.last_full = false;
                if !self.awaits(Some(ring)) {
                    self.push_ring(ring, None);
                }
            }
            Some(ok) => {
                self.result_t = Some(self.result_t.map_or(t, |e| e.max(t)));
                match self
                    .ring_resets
                    .iter_mut()
                    .rev()
                    .find(|x| x.ring == ring && x.ok.is_none())
                {
                    Some(x) => x.ok = Some(ok),
                    None => self.push_ring(ring, Some(ok)),
                }
            }
        }
    }

    fn push_ring(&mut self, ring: &str, ok: Option<bool>) {
        if self.ring_resets.len() >= MAX_RING_RESETS {
            self.ring_resets_omitted += 1;
            return;
        }
        self.ring_resets.push(RingReset {
            ring: ring.to_string(),
            ok,
        });
    }

    fn on_mes(&mut self) {
        self.seen = true;
        self.mes = true;
    }

    /// Records a reset-related kernel-log record; the evidence sentence.
    pub fn on_kmsg(&mut self, t: u64, kind: &KmsgKind) -> Option<String> {
        Some(match kind {
            KmsgKind::RingReset { ring, ok } => {
                self.on_ring(t, ring, *ok);
                match ok {
                    None => format!("ring {ring} reset started"),
                    Some(true) => format!("ring {ring} reset succeeded"),
                    Some(false) => format!("ring {ring} reset failed"),
                }
            }
            KmsgKind::ResetBegin { source } => {
                self.on_begin(t, None);
                match source {
                    Some(s) => format!("GPU reset began (source {s})"),
                    None => "GPU reset began".into(),
                }
            }
            KmsgKind::ResetResult { ok, .. } => {
                self.on_result(t, *ok);
                format!("GPU reset {}", if *ok { "succeeded" } else { "failed" })
            }
            KmsgKind::ResetStep { what } => {
                self.on_step(t);
                if what == RESUMING_STEP && self.full_pending {
                    self.asic_reset_ok = true;
                }
                format!("reset step: {what}")
            }
            KmsgKind::VramLost => {
                self.on_step(t);
                self.vram_lost = true;
                "VRAM was lost in the reset".into()
            }
            KmsgKind::MesFailure { msg } => {
                self.on_mes();
                format!(
                    "MES firmware failed to respond{}",
                    msg.as_ref().map(|m| format!(" ({m})")).unwrap_or_default()
                )
            }
            _ => return None,
        })
    }
}

/// Submissions refused after the reset (-ECANCELED): victims, counted, a few kept as evidence.
#[derive(Clone, Debug, Default)]
pub struct Refusals {
    /// Refused processes (first MAX_REFUSING_PIDS) with their refusal counts.
    pub by_pid: Vec<(Task, u64)>,
    pub total: u64,
    /// Refusals from processes beyond MAX_REFUSING_PIDS.
    pub unlisted: u64,
    /// "Failed to initialize parser -125!" lines (no pid in the log).
    pub parser: u64,
    /// Refusals (either kind) not kept as evidence.
    pub omitted: u64,
    kept: u32,
}

impl Refusals {
    /// Records a refusal by `task`; the evidence sentence while under the evidence cap.
    pub fn on_probe(&mut self, task: &Task, errno: i64) -> Option<String> {
        self.total += 1;
        if let Some((_, n)) = self.by_pid.iter_mut().find(|(t, _)| t.pid == task.pid) {
            *n += 1;
        } else if self.by_pid.len() < MAX_REFUSING_PIDS {
            self.by_pid.push((task.clone(), 1));
        } else {
            self.unlisted += 1;
        }
        self.keep().then(|| {
            format!(
                "submission of {} (pid {}) refused with {errno}",
                task.comm, task.pid
            )
        })
    }

    pub fn on_parser(&mut self, errno: i64) -> Option<String> {
        self.total += 1;
        self.parser += 1;
        self.keep().then(|| {
            format!(
                "a context was refused after reset (process not named in the log), errno {errno}"
            )
        })
    }

    fn keep(&mut self) -> bool {
        if self.kept < MAX_REFUSAL_EVIDENCE {
            self.kept += 1;
            true
        } else {
            self.omitted += 1;
            false
        }
    }
}

pub fn addr(a: Option<u64>) -> String {
    a.map(|a| format!("0x{a:x}"))
        .unwrap_or_else(|| "an unknown address".into())
}
