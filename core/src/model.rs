//! The correlator's input: one [`Event`] type for everything hangwatch observes.
//!
//! Probe events (decoded from `agent_common::RawEvent` in `decode.rs`), kernel-log records
//! (from `kmsg/`) and process facts (from `/proc` scans in `procscan.rs`) all become `Event`s,
//! so the correlator is one pure state machine that works the same live (`hangwatch run`) and
//! offline (`hangwatch analyze`, where only `Kmsg` events exist).

use serde::{Deserialize, Serialize};

/// Where an event came from; copied into incident evidence as `source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Source {
    /// An eBPF probe.
    Ebpf,
    /// The live kernel log (`/dev/kmsg`) read by `hangwatch run`.
    Kmsg,
    /// A saved log (dmesg output, journal) read by `hangwatch analyze`.
    Log,
    /// A `/proc` scan (fdinfo, exe) done by the agent itself.
    Proc,
    /// The agent's own read of KFD interfaces: `/dev/kfd` SMI events and the
    /// `/sys/class/kfd/kfd/proc` queue table (no eBPF needed).
    Kfd,
    /// A kernel uevent (the kobject-uevent netlink group) read by the agent.
    Uevent,
}

impl Source {
    /// The source as the JSON and every report spell it.
    pub fn name(self) -> &'static str {
        match self {
            Source::Ebpf => "ebpf",
            Source::Kmsg => "kmsg",
            Source::Log => "log",
            Source::Proc => "proc",
            Source::Kfd => "kfd",
            Source::Uevent => "uevent",
        }
    }
}

/// Which clock `Event::t_ns` is on. Live events and `[sec.usec]` dmesg stamps are
/// CLOCK_MONOTONIC-like (ns since boot); `dmesg -T`, ISO and journal realtime stamps are
/// ns since the Unix epoch. One stream never mixes the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Clock {
    #[default]
    Monotonic,
    Realtime,
}

/// Whether two things may be on the same GPU: equal PCI addresses, or either one unknown
/// (a line or record without an address matches any device).
pub fn same_gpu(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// One observation.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Nanoseconds on `clock`. Events are pushed to the correlator in (roughly) this order.
    pub t_ns: u64,
    pub clock: Clock,
    pub source: Source,
    /// GPU PCI address (`0000:2f:00.0`) when the source names one; probe events leave it
    /// `None` until the loader learns which device a ring belongs to.
    pub gpu: Option<String>,
    pub body: EventBody,
}

/// A task as the kernel or a probe identified it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Task {
    /// Process id (tgid). 0 = unknown (e.g. "pid 0" in a fault line).
    pub pid: u32,
    /// Thread id; equal to `pid` for the main thread. 0 = unknown.
    pub tid: u32,
    /// Process name (group leader comm).
    pub comm: String,
    /// Thread name, when different information is available.
    pub thread_comm: Option<String>,
}

/// Identity of a GPU job. Any subset may be known; the correlator joins on what it has:
/// (`context`,`seqno`) on every kernel with fence keys, `sched_job_id` on ≤ 6.16 formats,
/// `sched_fence` (the scheduler fence pointer) for legacy gpu_scheduler events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct JobKey {
    pub context: Option<u64>,
    pub seqno: Option<u64>,
    pub sched_job_id: Option<u64>,
    pub sched_fence: Option<u64>,
}

/// Which VM hub a fault came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FaultInfo {
    /// `gfxhub`, `mmhub0`, ... as printed; from probes: `gfxhub` when vmid_src == 0 else `mmhub`.
    pub hub: String,
    pub pasid: u32,
    pub vmid: u32,
    pub src_id: Option<u32>,
    pub ring_id: Option<u32>,
    /// Faulting GPU virtual address, when known.
    pub address: Option<u64>,
    pub retry: Option<bool>,
    pub write: Option<bool>,
    /// UTCL2 client id / name when printed ("CB/DB (0x0)", "10").
    pub client: Option<String>,
    /// `GCVM_L2_PROTECTION_FAULT_STATUS` raw value and decoded fields, when printed.
    pub status: Option<u32>,
    pub status_fields: Vec<(String, String)>,
}

/// What happened. Probe-only variants carry exactly what the probe can see; the kernel-log
/// variants carry what the message prints (see `docs/kmsg.md`).
#[derive(Clone, Debug, PartialEq)]
pub enum EventBody {
    // ---- probes (source = Ebpf) ----
    /// `amdgpu_cs_ioctl`: `task` submitted `job` on `ring`.
    Submit {
        task: Task,
        ring: String,
        job: JobKey,
        num_ibs: u32,
    },
    /// The scheduler queued a job (`drm_sched_job` / `drm_sched_job_queue`), in the submitter.
    SchedQueued {
        task: Task,
        ring: String,
        job: JobKey,
        client_id: Option<u64>,
    },
    /// The job was handed to the ring (`amdgpu_sched_run_job`, `drm_run_job`, `drm_sched_job_run`).
    /// `worker_tid` is the scheduler thread, used to join the hardware fence emitted next.
    RunJob {
        ring: String,
        job: JobKey,
        worker_tid: u32,
    },
    /// The scheduler fence signaled (`drm_sched_process_job` / `drm_sched_job_done`).
    JobDone {
        job: JobKey,
    },
    /// An amdgpu hardware fence was emitted on `ring` (`dma_fence_init`); `emitter_tid` is the
    /// thread that emitted it (the scheduler worker that ran the job just before).
    HwFenceEmitted {
        ring: String,
        context: u64,
        seqno: u64,
        emitter_tid: u32,
    },
    /// An amdgpu hardware fence signaled (`dma_fence_signaled`).
    HwFenceSignaled {
        ring: String,
        context: u64,
        seqno: u64,
    },
    /// `amdgpu_vm_grab_id`: the job about to run on `ring` belongs to `pasid`.
    VmGrabId {
        ring: String,
        pasid: u32,
        vmid: u32,
        worker_tid: u32,
    },
    /// `amdgpu_pasid_allocated` in the opening process.
    PasidAllocated {
        pasid: u32,
        task: Task,
    },
    PasidFreed {
        pasid: u32,
    },
    /// A VM page fault interrupt (`amdgpu_iv` filtered in-kernel).
    VmFault(FaultInfo),
    /// kprobe `amdgpu_job_timedout`: the scheduler declared this job hung.
    JobTimedOut {
        ring: Option<String>,
        job: JobKey,
        pasid: Option<u32>,
    },
    /// The agent's once-a-second poll of the in-kernel recorder: the oldest unfinished job on
    /// `ring` has run since `running_since_ns` (same clock as `t_ns`, the poll time) for
    /// longer than `stall_after`. `task` submitted it. Source Ebpf, `gpu` set. Sent while
    /// the ring stays stalled; repeats for the same job only keep its incident open.
    RingStall {
        ring: String,
        job: JobKey,
        task: Task,
        running_since_ns: u64,
    },
    /// kprobe `amdgpu_device_gpu_recover`: reset begins; `job` is the guilty job if any.
    ResetBegin {
        job: Option<JobKey>,
        pasid: Option<u32>,
        ring: Option<String>,
        reset_source: Option<u32>,
    },
    /// kretprobe `amdgpu_device_gpu_recover`.
    ResetEnd {
        result: i64,
    },
    /// kretprobe `amdgpu_cs_ioctl` < 0: `task`'s submission was refused (-125 after a reset).
    SubmitRejected {
        task: Task,
        errno: i64,
    },
    /// A process that submitted work exited (identity is kept by the correlator).
    ProcessExit {
        task: Task,
    },

    // ---- /proc (source = Proc) ----
    /// What the agent learnt about a process: from fdinfo at start-up (`pasid`, `client_id`),
    /// or from `/proc/PID/exe` the first time it was seen.
    ProcessInfo {
        pid: u32,
        comm: String,
        exe: Option<String>,
        pasids: Vec<u32>,
        client_ids: Vec<u64>,
    },

    // ---- kernel log (source = Kmsg or Log) ----
    Kmsg(KmsgRecord),

    // ---- any source ----
    /// A boot began, or facts about the current boot became known. Log readers emit it on a
    /// clock going backwards, `-- Boot <id> --`, `_BOOT_ID` and `Linux version` lines; the live
    /// agent once at start-up. A `seq` different from the previous one is a new boot: the
    /// correlator closes every open incident (no incident spans boots). The same `seq` again
    /// only adds facts (a hostname learnt later).
    Boot(BootInfo),

    // ---- compute: KFD queues and 7.x user queues (see docs/compute.md) ----
    /// A compute or user-mode queue exists: KFD create-queue kprobe (source Ebpf), 7.x
    /// `amdgpu_userq_create_end` (Ebpf), or a `/sys/class/kfd/kfd/proc` scan (Kfd).
    QueueCreated(QueueInfo),
    /// A queue is gone (destroy ioctl / tracepoint, or vanished from the proc scan). Only the
    /// identifying fields of the `QueueInfo` need to be set.
    QueueDestroyed(QueueInfo),
    /// 7.x `amdgpu_userq_emit_fence`, in the submitting thread: a job on a user queue.
    UserqFence(UserqFence),
    /// 7.x `amdgpu_userq_state_changed`: a user queue moved to `to` (3 = hung).
    UserqState {
        doorbell: u64,
        client_id: u64,
        queue_type: u32,
        to: u32,
    },
    /// One KFD SMI event read from `/dev/kfd` (AMDKFD_IOC_SMI_EVENTS).
    KfdSmi(SmiEvent),
    // ---- uevents (source = Uevent) ----
    /// The DRM wedged uevent (since 6.15): `WEDGED=<method>[,...]` on the card, with the
    /// task the kernel blames (`PID=`/`TASK=`) since 6.17. `none` means the device recovered.
    /// The event's `gpu` is the card's PCI address, from its devpath.
    Wedged {
        methods: Vec<String>,
        task: Option<Task>,
    },

    /// Mesa's verdict after a reset, from a process's journal stream (`kmsg::mesa`). `task` is
    /// the process that logged it (`_PID`, `_COMM`); `logger` is its SYSLOG_IDENTIFIER when
    /// that differs from `_COMM` (a wrapper such as Steam's `srt-logger` logging for a game).
    /// No GPU address: it matches any device.
    MesaVerdict {
        task: Task,
        verdict: MesaVerdict,
        logger: Option<String>,
    },

    /// A KFD / MES / user-queue kernel-log line (`kfd::lines`): queue preemption failures,
    /// eviction failures, per-queue resets — often naming a doorbell, pasid or process.
    KfdLog(KfdLogRecord),
}

/// What Mesa said about a context after a reset: the kernel's -ECANCELED, -ENODATA or -ETIME.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MesaVerdict {
    /// `This context is innocent`: cancelled as collateral of another context's hang.
    Innocent,
    /// `guilty of a soft recovery`: its job was the one the kernel soft-recovered.
    GuiltySoft,
    /// `guilty of a hard recovery`: its job was the one the kernel reset for.
    GuiltyHard,
}

impl MesaVerdict {
    pub fn guilty(self) -> bool {
        self != MesaVerdict::Innocent
    }

    /// The verdict as Mesa words it.
    pub fn words(self) -> &'static str {
        match self {
            MesaVerdict::Innocent => "innocent",
            MesaVerdict::GuiltySoft => "guilty of a soft recovery",
            MesaVerdict::GuiltyHard => "guilty of a hard recovery",
        }
    }
}

/// Which kernel path owns a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum QueueOrigin {
    /// A ROCm/KFD user-mode queue (`/dev/kfd`, doorbell submissions).
    Kfd,
    /// A 7.x amdgpu user queue (Mesa, `DRM_IOCTL_AMDGPU_USERQ`).
    Userq,
}

impl QueueOrigin {
    /// The origin as the JSON spells it.
    pub fn name(self) -> &'static str {
        match self {
            QueueOrigin::Kfd => "kfd",
            QueueOrigin::Userq => "userq",
        }
    }
}

/// What a queue executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum QueueKind {
    Compute,
    Sdma,
    Gfx,
    Other,
}

impl QueueKind {
    /// The kind of a user queue from its `AMDGPU_HW_IP_*` type.
    pub fn from_userq_ip(ip: u32) -> QueueKind {
        match ip {
            0 => QueueKind::Gfx,
            1 => QueueKind::Compute,
            2 => QueueKind::Sdma,
            _ => QueueKind::Other,
        }
    }

    /// The kind as the JSON spells it.
    pub fn name(self) -> &'static str {
        match self {
            QueueKind::Compute => "compute",
            QueueKind::Sdma => "sdma",
            QueueKind::Gfx => "gfx",
            QueueKind::Other => "other",
        }
    }
}

/// A queue as one source saw it; any identifying field may be unknown.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct QueueInfo {
    /// The owning process (tgid) and, from probes, the creating thread.
    pub task: Task,
    pub origin: Option<QueueOrigin>,
    pub kind: Option<QueueKind>,
    /// KFD queue id (unique per process).
    pub queue_id: Option<u32>,
    /// KFD topology gpu_id of the queue's device.
    pub gpu_id: Option<u32>,
    /// The doorbell as the kernel prints it in MES/HWS messages (dword index; the userq
    /// tracepoints' `doorbell_index`).
    pub doorbell: Option<u64>,
    /// KFD: the doorbell offset returned to the process (`doorbell_offset` of the ioctl).
    pub doorbell_offset: Option<u64>,
    pub pasid: Option<u32>,
    /// 7.x user queues: the DRM client id of the file that owns the queue.
    pub client_id: Option<u64>,
}

/// `amdgpu_userq_emit_fence`: fence `context:seqno` emitted on the user queue `doorbell`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserqFence {
    pub task: Task,
    pub doorbell: u64,
    pub client_id: u64,
    pub queue_type: u32,
    pub context: u64,
    pub seqno: u64,
}

/// One line of a KFD SMI event file descriptor, decoded (formats per kernel in
/// docs/compute.md). `gpu_id` is the KFD node the fd was opened for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmiEvent {
    pub gpu_id: u32,
    pub kind: SmiKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmiKind {
    /// KFD_SMI_EVENT_VMFAULT: the process KFD attributes a VM fault to.
    VmFault {
        pid: u32,
        comm: String,
    },
    GpuPreReset {
        seq: u32,
        cause: Option<String>,
    },
    GpuPostReset {
        seq: u32,
        cause: Option<String>,
    },
    QueueEviction {
        pid: u32,
        trigger: u32,
    },
    QueueRestore {
        pid: u32,
    },
    /// 7.x KFD_SMI_EVENT_PROCESS_START / _END.
    ProcessStart {
        pid: u32,
        comm: String,
    },
    ProcessEnd {
        pid: u32,
        comm: String,
    },
    /// Any other event number (thermal, migration, page-fault start/end, unmap).
    Other {
        event: u32,
    },
}

/// A recognised KFD / MES / user-queue kernel-log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KfdLogRecord {
    pub kind: KfdLogKind,
    pub line: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KfdLogKind {
    /// `The cp might be in an unrecoverable state due to an unsuccessful queues preemption`:
    /// the HWS did not answer; KFD resets the GPU next.
    HwsHang,
    /// 6.1 `HIQ MQD's queue_doorbell_id0 is not 0, Queue preemption time out`: a user queue
    /// did not preempt; the line does not say which.
    PreemptTimeout,
    /// 6.12+ `Queue preemption failed for queue with doorbell_id: %x`: the hung queue.
    QueuePreemptFailed { doorbell: u64 },
    /// `failed to remove hardware queue from MES, doorbell=0x%x`.
    MesRemoveFailed { doorbell: u64 },
    /// 6.12+ `Queues reset on process %s tid %d thread %s pid %d`.
    QueuesReset { task: Task },
    /// `Pasid 0x%x destroy queue %d failed, ret %d`.
    DestroyFailed { pasid: u32, queue_id: u32, ret: i64 },
    /// `Pasid 0x%x DQM create queue type %d failed. ret %d` (≤ 6.x), `process pid %d DQM
    /// create queue type %d failed. ret %d` (7.x): the queue could not be mapped (rocm-2820:
    /// MES already hung), so the creating process is a victim, not the culprit.
    CreateFailed {
        pasid: Option<u32>,
        pid: Option<u32>,
        queue_type: u32,
        ret: i64,
    },
    /// `Failed to evict queues of pasid 0x%x` / `... of process pid %d`, `Failed to suspend
    /// process ...`, `Failed to evict process queues`, `Failed to restore queues ...`.
    EvictFailed {
        pasid: Option<u32>,
        pid: Option<u32>,
        what: String,
    },
    /// `Process %d (pasid 0x%x) got unhandled exception` / `Process pid %d got unhandled exception`.
    UnhandledException { pid: u32, pasid: Option<u32> },
    /// Per-queue reset lines (`Attempting queue reset on XCC ...`, `reset compute queue (...)`),
    /// 7.x user-queue hang lines (`%s queue hung, but ring reset disabled`, `Failed to detect
    /// and reset hung queues`).
    QueueReset { text: String },
}

/// What is known about the boot the following events belong to.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BootInfo {
    /// Boots in one correlator input, numbered from 0. Unique across the files of one
    /// `analyze` run, so two files that each start at boot 0 still keep their own boots.
    pub seq: u32,
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`, journal `_BOOT_ID`), when known.
    pub boot_id: Option<String>,
    pub hostname: Option<String>,
    /// The kernel release (`/proc/sys/kernel/osrelease`, a `Linux version` line), when known.
    pub kernel: Option<String>,
    /// CLOCK_REALTIME minus the stream's clock, in ns: the wall time of a monotonic `t_ns` is
    /// `t_ns + realtime_offset_ns`. `Some(0)` for realtime streams.
    pub realtime_offset_ns: Option<i64>,
}

/// A recognised amdgpu kernel-log message, with continuation lines (the split "Process"
/// line, the "in page starting at address" line, the protection-fault status block) already
/// folded in by `kmsg::Assembler`.
#[derive(Clone, Debug, PartialEq)]
pub struct KmsgRecord {
    pub kind: KmsgKind,
    /// The original line(s), for evidence and report excerpts.
    pub lines: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum IllegalKind {
    Opcode,
    RegisterAccess,
    Instruction,
}

#[derive(Clone, Debug, PartialEq)]
pub enum KmsgKind {
    /// Page fault, any era's spelling. `task` is `None` when the kernel printed no process, and
    /// `Some` with pid 0 when it printed "pid 0" (unknown PASID).
    PageFault {
        fault: FaultInfo,
        task: Option<Task>,
    },
    /// `ring X timeout, signaled seq=A, emitted seq=B`, with the following process line folded in.
    RingTimeout {
        ring: String,
        signaled: Option<u64>,
        emitted: Option<u64>,
        task: Option<Task>,
    },
    /// `ring X timeout, but soft recovered`.
    SoftRecovered { ring: String },
    /// `Starting X ring reset` / `Ring X reset succeeded|failed|failure`.
    RingReset { ring: String, ok: Option<bool> },
    /// `GPU reset begin!` (with `Source: N` on newer kernels).
    ResetBegin { source: Option<u32> },
    /// `GPU reset(N) succeeded!` / `GPU reset(N) failed` / `GPU Recovery Failed: E` /
    /// `GPU reset end with ret = E`.
    ResetResult {
        ok: bool,
        counter: Option<u32>,
        error: Option<i64>,
    },
    /// ASIC-level reset steps: `MODE1 reset`, `GPU mode1 reset`, `MODE2 reset`,
    /// `soft reset failed, will fallback to full reset!`, `GPU reset succeeded, trying to resume`.
    ResetStep { what: String },
    /// `VRAM is lost due to GPU reset!`
    VramLost,
    /// MES firmware did not answer (`MES failed to response msg=3`, `MES(0) failed to respond
    /// to msg=RESET`, ...), and its follow-ups ("failed to unmap legacy queue", ...).
    MesFailure { msg: Option<String> },
    /// Illegal opcode / register access / instruction in the command stream.
    IllegalCommand { what: IllegalKind },
    /// `Failed to initialize parser -125!` — a submission refused after a reset (no pid).
    ParserInitFailed { errno: i64 },
    /// Devcoredump created / where to read it.
    Devcoredump { path: Option<String> },
    /// DRM's line for the wedged uevent (since 6.15): `device wedged, but recovered through
    /// reset`, from 7.3 `device wedged, but no recovery needed` (both: WEDGED=none), or
    /// `device wedged, needs recovery` (a method other than none; the line does not say which).
    DeviceWedged { needs_recovery: bool },
    /// Another error-level amdgpu line kept as context (`failed to halt cp gfx`, ...).
    OtherError { text: String },
}

impl Task {
    /// A task from a probe: tgid/tid/comm of `current`.
    pub fn new(pid: u32, tid: u32, comm: impl Into<String>) -> Self {
        Task {
            pid,
            tid,
            comm: comm.into(),
            thread_comm: None,
        }
    }
}
