//! The `hangwatch.incident/1` document: what the correlator produces and every report
//! (text, JSON lines, incident directory, Perfetto, bug report) consumes. Documented in
//! `docs/incident-schema.md`; keep the two in step.

use serde::{Deserialize, Serialize};

use crate::identity::ProcessIdentity;
use crate::model::{Clock, QueueKind, QueueOrigin, Source};

pub const SCHEMA: &str = "hangwatch.incident/1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum IncidentKind {
    /// A ring's job exceeded the scheduler timeout.
    RingTimeout,
    /// VM page fault(s) with no timeout or reset following within the window.
    PageFault,
    /// A GPU reset with no preceding ring timeout (MES/HWS/RAS/user initiated).
    GpuReset,
    /// Illegal opcode / register / instruction IRQ with nothing else following.
    IllegalCommand,
    /// A ring's oldest unfinished job ran longer than `stall_after` and no ring timeout
    /// followed (yet): timeouts disabled, or long compute timeouts.
    Stall,
    /// Repeated resets of one device: `Config::loop_resets` incidents with a reset, each
    /// within `Config::loop_window_ns` of the previous one (rule L2). It sums them up; each
    /// reset also has its own incident.
    ResetLoop,
}

impl IncidentKind {
    /// The kind in words, for people (`ring timeout`); the JSON spelling is serde's.
    pub fn name(self) -> &'static str {
        match self {
            IncidentKind::RingTimeout => "ring timeout",
            IncidentKind::PageFault => "page fault",
            IncidentKind::GpuReset => "GPU reset",
            IncidentKind::IllegalCommand => "illegal command",
            IncidentKind::Stall => "ring stall",
            IncidentKind::ResetLoop => "reset loop",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Confidence {
    /// No verdict: nobody named, or a suspect from timing alone.
    Unknown,
    /// The kernel's blame is the only evidence naming the culprit.
    KernelOnly,
    /// The evidence points to the culprit; something could still contradict it.
    Likely,
    /// The evidence shows it.
    Certain,
}

impl Confidence {
    /// The level as the JSON and every report spell it.
    pub fn name(self) -> &'static str {
        match self {
            Confidence::Unknown => "unknown",
            Confidence::KernelOnly => "kernel_only",
            Confidence::Likely => "likely",
            Confidence::Certain => "certain",
        }
    }
}

/// What became of a reset, as `Incident::reset` spells it (docs/incident-schema.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ResetOutcome {
    Succeeded,
    Failed,
    /// The reset began; its result is not in the input (the log ends first, or the incident
    /// closed at the reset cap).
    Began,
    /// The hardware reset succeeded (`GPU reset succeeded, trying to resume`) and the resume's
    /// result is not in the input: more than `Began` says, less than `Succeeded`.
    Resuming,
}

impl ResetOutcome {
    /// The outcome as the JSON spells it.
    pub fn name(self) -> &'static str {
        match self {
            ResetOutcome::Succeeded => "succeeded",
            ResetOutcome::Failed => "failed",
            ResetOutcome::Began => "began",
            ResetOutcome::Resuming => "resuming",
        }
    }

    /// The outcome in words; "began" and "resuming" say the result is not in the input.
    pub fn describe(reset: Option<ResetOutcome>) -> &'static str {
        match reset {
            None => "none seen",
            Some(ResetOutcome::Began) => "began, no result seen",
            Some(ResetOutcome::Resuming) => {
                "hardware reset succeeded, the resume's result not seen"
            }
            Some(r) => r.name(),
        }
    }
}

/// Where a job from the flight recorder stood when the incident closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum JobState {
    /// The job the timeout named.
    Hung,
    /// Handed to the ring, fence not signaled, not cancelled.
    InFlight,
    /// Its fence signaled.
    Done,
    /// Force-signaled by a reset, which is not a completion.
    Cancelled,
}

impl JobState {
    /// The state as the JSON spells it.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Hung => "hung",
            JobState::InFlight => "in_flight",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// A process named in an incident. `pid` 0 never appears here: an unknown process is `null`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProcessRef {
    pub pid: u32,
    pub comm: String,
    /// `/proc/PID/exe` at the time the process was first seen; null from logs.
    pub exe: Option<String>,
    /// Who the process is (unit, user, container, pod, Slurm job, DRM client names), read
    /// while it lived; omitted when unknown (always, from logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ProcessIdentity>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Victim {
    pub pid: u32,
    pub comm: String,
    /// Why this process is a victim, e.g. "job on gfx_0.0.0 timed out behind the culprit's",
    /// "submission refused with -ECANCELED after reset".
    pub reason: String,
    /// Who the process is (unit, user, container, pod, Slurm job, DRM client names), read
    /// while it lived; omitted when unknown (always, from logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ProcessIdentity>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Evidence {
    /// Timestamp rendered for humans: ISO-8601 when the wall clock is known, else
    /// seconds since boot as the kernel prints them (`45766.649480`).
    pub at: String,
    /// Raw timestamp on the incident's clock, ns.
    pub t_ns: u64,
    pub source: Source,
    /// One sentence: what was observed.
    pub what: String,
    /// The kernel log line(s), when the evidence is a log message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
}

/// A job from the flight recorder, kept in the incident so reports (Perfetto, the "last jobs
/// on the hung ring" table) can show the window without the live agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct JobSnapshot {
    /// drm_sched job id, when the kernel's tracepoints carry one (≤ 6.16).
    #[serde(default)]
    pub job_id: Option<u64>,
    pub ring: String,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub context: Option<u64>,
    pub seqno: Option<u64>,
    /// Hardware fence seqno on the ring (what "signaled seq / emitted seq" count).
    pub hw_seqno: Option<u64>,
    pub pasid: Option<u32>,
    /// When the process submitted it, the scheduler handed it to the ring, and its fence
    /// signaled. `done_ns` is null for a job that never completed: hung, still in flight, or
    /// cancelled (force-signaled by a reset, which is not a completion).
    pub submit_ns: Option<u64>,
    pub run_ns: Option<u64>,
    pub done_ns: Option<u64>,
    pub state: JobState,
}

/// Related events an incident counted but did not keep (every per-incident list is capped).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Omitted {
    /// Evidence entries beyond the cap.
    #[serde(default)]
    pub evidence: u64,
    /// Fault records beyond the cap (they still count in the reasoning's totals).
    #[serde(default)]
    pub faults: u64,
    /// Refused submissions after the reset not kept as evidence.
    #[serde(default)]
    pub refusals: u64,
    /// Refused submissions from processes beyond the victim list's cap.
    #[serde(default)]
    pub refusing_processes: u64,
}

impl Omitted {
    pub fn is_empty(&self) -> bool {
        *self == Omitted::default()
    }
}

/// Per-process counters across a whole analysis (`hangwatch analyze` summary).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProcessSummary {
    pub pid: u32,
    pub comm: String,
    pub culprit: u32,
    pub victim: u32,
    pub faults: u32,
    pub kernel_blamed: u32,
    /// Times the kernel blamed this process but the evidence named another.
    pub kernel_blamed_but_evidence_disagrees: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Incident {
    pub schema: String,
    /// `<gpu or "gpu">-<ns of the event that opened it>`, fixed at its first report: the
    /// provisional reports written while it is open and the final one share it.
    pub id: String,
    /// PCI address when known.
    pub gpu: Option<String>,
    pub kind: IncidentKind,
    pub ring: Option<String>,
    pub culprit: Option<ProcessRef>,
    pub confidence: Confidence,
    /// The process the kernel's own message named (timeout "Process ..." line, or the fault
    /// line when there was no timeout); null when it named none or "pid 0".
    pub kernel_blamed: Option<ProcessRef>,
    /// True when `kernel_blamed` is set and differs from `culprit`.
    pub kernel_blame_disputed: bool,
    pub victims: Vec<Victim>,
    pub evidence: Vec<Evidence>,
    /// Human rendering of the first evidence time (see `Evidence::at`).
    pub started_at: String,
    pub started_ns: u64,
    pub ended_ns: u64,
    pub clock: Clock,
    /// One paragraph: why the culprit was chosen and what is uncertain.
    pub reasoning: String,
    /// Reset outcome of the last reset step, or null when no reset began or ended
    /// (docs/incident-schema.md).
    pub reset: Option<ResetOutcome>,
    /// Jobs in the flight recorder around the incident (empty from logs).
    #[serde(default)]
    pub jobs: Vec<JobSnapshot>,
    /// Events the agent knows it lost while this incident was open (ring buffer full, ...).
    #[serde(default)]
    pub dropped_events: u64,
    /// Wall-clock time of `started_ns`, RFC 3339 UTC, when the wall clock is known (journal
    /// `__REALTIME_TIMESTAMP`, a syslog or `dmesg -T` stamp, CLOCK_REALTIME live).
    #[serde(default)]
    pub wall_time: Option<String>,
    /// The boot the incident happened in (`/proc/sys/kernel/random/boot_id`, `_BOOT_ID`).
    #[serde(default)]
    pub boot_id: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    /// True while the incident is still open: the live agent writes it as soon as it opens
    /// and rewrites it as evidence arrives, so a crash loses at most the last second.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
    /// What the incident counted but did not keep; omitted when nothing was.
    #[serde(default, skip_serializing_if = "Omitted::is_empty")]
    pub omitted: Omitted,
    /// Compute (KFD / 7.x user queue) attribution, when compute work may be involved: who had
    /// queues on the GPU, and which one the kernel or MES flagged (docs/compute.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<ComputeAttribution>,
    /// The recovery the kernel said the device needs (`rebind`, `bus-reset`, ...) in a DRM
    /// wedged uevent; omitted when it said none or sent none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_recovery: Option<String>,
    /// The id of the incident this one is a consequence of (rule L1: another ring of the same
    /// GPU timed out and its reset ended just before this timeout); omitted when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consequence_of: Option<String>,
    /// Why the kernel reset the GPU, from the KFD SMI reset event (`job hang on
    /// ring:gfx_0.0.0`, `job hang`, `RAS error`, `MES hang`, `HWS hang`, `user trigger`,
    /// `user queue trigger`); omitted when no SMI event gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_cause: Option<String>,
    /// A reset loop's summary (kind `reset_loop` only, rule L2); omitted otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_loop: Option<ResetLoop>,
}

// ---- reset loops (filled by correlate::reset_loop, rule L2) ----

/// The resets of one device that made a loop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ResetLoop {
    /// Incidents with a reset in the loop (all of them, including those not listed).
    pub resets: u32,
    /// The ids of the resets' own incidents, oldest first (at most 64).
    pub incidents: Vec<String>,
    /// The resets by version of what ran: one group per kernel release seen (null when
    /// unknown, e.g. a log without a `Linux version` line).
    pub groups: Vec<ResetGroup>,
    /// Processes (by name: a relaunched program gets a new pid) named in two resets or
    /// more, most often named first.
    pub processes: Vec<LoopProcess>,
}

/// Resets that ran on one version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ResetGroup {
    /// The kernel release (`uname -r`, the log's `Linux version` line).
    pub kernel: Option<String>,
    pub resets: u32,
}

/// A process name the loop's resets share, with its roles in them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LoopProcess {
    pub comm: String,
    /// Its pids, first seen first (at most 8).
    pub pids: Vec<u32>,
    /// Resets that named it at all, and in which role.
    pub resets: u32,
    pub culprit: u32,
    pub kernel_blamed: u32,
    pub victim: u32,
}

// ---- compute attribution (filled by correlate::compute, rules C1–C5) ----

/// What hangwatch knows about compute queues at the time of an incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ComputeAttribution {
    /// The process the kernel or MES singled out (a doorbell, queue, pasid or process named in
    /// a KFD/MES line, or a user queue marked hung), when one was.
    pub flagged: Option<Candidate>,
    /// Every process with active compute or user queues on the incident's GPU, flagged first.
    pub candidates: Vec<Candidate>,
    /// How the queue table was known (probes, /sys/class/kfd, SMI) and what could not be.
    pub note: String,
}

/// A process that had queues on the GPU, with why it is listed and how sure hangwatch is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Candidate {
    pub pid: u32,
    pub comm: String,
    pub queues: Vec<QueueRef>,
    pub confidence: Confidence,
    pub reason: String,
    /// Who the process is (unit, user, container, pod, Slurm job, DRM client names), read
    /// while it lived; omitted when unknown (always, from logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ProcessIdentity>,
}

/// One queue of a candidate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct QueueRef {
    pub origin: QueueOrigin,
    /// `other` when the kind is unknown.
    pub kind: QueueKind,
    pub queue_id: Option<u32>,
    pub doorbell: Option<u64>,
    pub gpu: Option<String>,
    pub gpu_id: Option<u32>,
}

/// The JSON Schema of `hangwatch.incident/1`, derived from these types (committed as
/// docs/incident-schema.json; a test keeps the two equal).
#[cfg(feature = "schema")]
pub fn json_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Incident)).unwrap_or_default();
    if let Some(o) = schema.as_object_mut() {
        o.insert("$id".into(), SCHEMA.into());
    }
    schema
}
