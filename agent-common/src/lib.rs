//! Types shared by the eBPF programs (`agent-ebpf`) and the userspace agent.
//!
//! Everything here is `#[repr(C)]` plain data: the eBPF side writes [`RawEvent`]s into a ring
//! buffer and reads its layouts ([`TpLayout`], [`JobLayout`]) from load-time globals that the
//! agent fills from the running kernel's tracefs `format` files and module BTF. No kernel offset
//! is ever hard-coded on either side.
#![no_std]

/// Length of a task comm (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;
/// Room for a ring / timeline / driver name. amdgpu ring names are at most ~16 bytes
/// (`vcn_unified_0`, `comp_1.3.1`, `mes_kiq_3.1.0`); 32 leaves margin for new IPs.
pub const NAME_LEN: usize = 32;

/// What a [`RawEvent`] describes. `u32` on the wire; unknown values are counted and skipped
/// by the decoder so an old agent never misreads a newer eBPF object.
pub mod kind {
    /// `amdgpu:amdgpu_cs_ioctl` — a job submitted, in the submitting thread.
    pub const CS_IOCTL: u32 = 1;
    /// `amdgpu:amdgpu_sched_run_job` — the job handed to the hardware ring.
    pub const SCHED_RUN_JOB: u32 = 2;
    /// `gpu_scheduler:drm_sched_job` (≤ 6.16) / `drm_sched_job_queue` (≥ 6.17).
    pub const SCHED_QUEUE: u32 = 3;
    /// `gpu_scheduler:drm_run_job` (≤ 6.16) / `drm_sched_job_run` (≥ 6.17).
    pub const SCHED_RUN: u32 = 4;
    /// `gpu_scheduler:drm_sched_process_job` (≤ 6.16, fence pointer) / `drm_sched_job_done`.
    pub const SCHED_DONE: u32 = 5;
    /// `dma_fence:dma_fence_init` filtered to driver "amdgpu": a hardware fence emitted.
    pub const FENCE_INIT: u32 = 6;
    /// `dma_fence:dma_fence_signaled` filtered to driver "amdgpu".
    pub const FENCE_SIGNALED: u32 = 7;
    /// `amdgpu:amdgpu_vm_grab_id` — pasid and vmid of the job being prepared on a ring.
    pub const VM_GRAB_ID: u32 = 8;
    /// `amdgpu:amdgpu_pasid_allocated`.
    pub const PASID_ALLOC: u32 = 9;
    /// `amdgpu:amdgpu_pasid_freed`.
    pub const PASID_FREE: u32 = 10;
    /// `amdgpu:amdgpu_iv` filtered to VM page-fault interrupts.
    pub const VM_FAULT: u32 = 11;
    /// kprobe `amdgpu_job_timedout`.
    pub const JOB_TIMEDOUT: u32 = 12;
    /// kprobe `amdgpu_device_gpu_recover`.
    pub const RESET_BEGIN: u32 = 13;
    /// kretprobe `amdgpu_device_gpu_recover`.
    pub const RESET_END: u32 = 14;
    /// kretprobe `amdgpu_cs_ioctl` with a negative return (e.g. -ECANCELED after a reset).
    pub const CS_REJECTED: u32 = 15;
    /// `sched:sched_process_exit` for a process the agent has seen submit (userspace keeps its identity).
    pub const PROCESS_EXIT: u32 = 16;
}

/// One event from the kernel. Generic slots keep every probe on one fixed-size record; what
/// each slot means per [`kind`] is documented in `docs/events.md` and decoded once in
/// `agent/src/decode.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawEvent {
    pub kind: u32,
    /// Bit flags, see [`flags`].
    pub flags: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Current task when the event fired (the submitter for CS events; a kworker for scheduler
    /// events; whatever was interrupted for IRQ events — userspace knows which are meaningful).
    pub tgid: u32,
    pub tid: u32,
    pub comm: [u8; COMM_LEN],
    /// Ring / timeline name, NUL-padded.
    pub ring: [u8; NAME_LEN],
    /// Fence context (u32 on ≤ 6.16 formats, u64 on ≥ 6.17).
    pub context: u64,
    /// Fence seqno.
    pub seqno: u64,
    /// `sched_job_id` / drm_sched `id`, or `client_id` on ≥ 6.17 scheduler events.
    pub job_id: u64,
    /// A kernel pointer used only as a join key (the scheduler fence), never dereferenced.
    pub ptr: u64,
    pub pasid: u32,
    pub vmid: u32,
    /// Kind-specific values (num_ibs, fault src_data, return code, reset source ...).
    pub arg: [u64; 4],
}

impl RawEvent {
    pub const fn zeroed() -> Self {
        RawEvent {
            kind: 0,
            flags: 0,
            ts_ns: 0,
            tgid: 0,
            tid: 0,
            comm: [0; COMM_LEN],
            ring: [0; NAME_LEN],
            context: 0,
            seqno: 0,
            job_id: 0,
            ptr: 0,
            pasid: 0,
            vmid: 0,
            arg: [0; 4],
        }
    }
}

/// [`RawEvent::flags`] bits.
pub mod flags {
    /// The kernel string was longer than [`super::NAME_LEN`] and was cut.
    pub const RING_TRUNCATED: u32 = 1 << 0;
    /// `job_id` holds a drm client id (≥ 6.17 scheduler events), not a job id.
    pub const JOB_ID_IS_CLIENT: u32 = 1 << 1;
    /// `context`/`seqno` were read (the format has them); otherwise only `ptr`/`job_id` join.
    pub const HAS_FENCE_KEY: u32 = 1 << 2;
    /// `job_id` was read.
    pub const HAS_JOB_ID: u32 = 1 << 3;
    /// `ptr` was read.
    pub const HAS_PTR: u32 = 1 << 4;
    /// A BTF-driven kernel read in a kprobe failed; the fields it would have filled are zero.
    pub const READ_FAILED: u32 = 1 << 5;
}

/// How a tracepoint field is stored, from its `format` line.
pub mod field {
    /// Not in this kernel's format: leave the slot zero.
    pub const ABSENT: u8 = 0;
    /// Little-endian unsigned integer of `size` bytes (1, 2, 4 or 8).
    pub const INT: u8 = 1;
    /// `__data_loc char[]`: a u32 at `offset` whose low 16 bits are the string's offset in
    /// the record and high 16 bits its length.
    pub const DATA_LOC_STR: u8 = 2;
    /// `char *` / `const char *`: a kernel pointer to a NUL-terminated string.
    pub const STR_PTR: u8 = 3;
    /// Fixed `char name[N]` inline in the record.
    pub const INLINE_STR: u8 = 4;
}

/// Where one field lives in a tracepoint record on the running kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldLoc {
    pub offset: u16,
    pub size: u16,
    /// One of [`field`].
    pub kind: u8,
    pub _pad: [u8; 3],
}

impl FieldLoc {
    pub const ABSENT: FieldLoc = FieldLoc {
        offset: 0,
        size: 0,
        kind: field::ABSENT,
        _pad: [0; 3],
    };
    pub const fn new(offset: u16, size: u16, kind: u8) -> Self {
        FieldLoc {
            offset,
            size,
            kind,
            _pad: [0; 3],
        }
    }
    pub const fn is_present(&self) -> bool {
        self.kind != field::ABSENT
    }
}

/// Slots of a [`TpLayout`]: which [`RawEvent`] field each tracepoint field lands in.
pub mod slot {
    /// String → `RawEvent::ring` (ring, sched `name`, or fence `timeline`).
    pub const RING: usize = 0;
    /// String used only for the in-kernel driver filter (dma_fence `driver`).
    pub const DRIVER: usize = 1;
    pub const CONTEXT: usize = 2;
    pub const SEQNO: usize = 3;
    pub const JOB_ID: usize = 4;
    pub const PTR: usize = 5;
    pub const PASID: usize = 6;
    pub const VMID: usize = 7;
    /// → `arg[0]` .. `arg[3]` (num_ibs; iv client_id/src_id/src_data; vm_hub ...).
    pub const ARG0: usize = 8;
    pub const ARG1: usize = 9;
    pub const ARG2: usize = 10;
    pub const ARG3: usize = 11;
    pub const COUNT: usize = 12;
}

/// Per-tracepoint decoding table, built by userspace from the `format` file and passed to the
/// program as a load-time global. `present == 0` means the program should not be attached
/// (the loader never attaches it), so the eBPF side need not check.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TpLayout {
    pub fields: [FieldLoc; slot::COUNT],
    /// For `slot::ARG*` fields that are arrays (`src_data[4]`): element index to read, else 0.
    pub arg_index: [u8; 4],
    pub present: u32,
    /// [`flags`] bits OR-ed into every event from this tracepoint (e.g. `JOB_ID_IS_CLIENT` when
    /// `slot::JOB_ID` is bound to a 6.17 `client_id`). Appended field: additive ABI change.
    pub flags: u32,
}

/// In-kernel filter for `amdgpu:amdgpu_iv`: keep only VM page-fault interrupts.
/// Bit `n` of `client_mask` keeps `client_id == n`; bit `n` of `src_mask` keeps `src_id == n`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IvFilter {
    pub client_mask: u64,
    pub src_mask: u64,
}

/// Struct offsets for the kprobes on `amdgpu_job_timedout(struct drm_sched_job *)` and
/// `amdgpu_device_gpu_recover(adev, struct amdgpu_job *, struct amdgpu_reset_context *)`,
/// read from the owning module's BTF at load time. `valid == 0`: the kprobe reports only
/// that it fired (the kmsg line carries the rest).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobLayout {
    /// `offsetof(struct amdgpu_job, base)`.
    pub job_base: u32,
    /// `offsetof(struct amdgpu_job, pasid)`.
    pub job_pasid: u32,
    /// `offsetof(struct drm_sched_job, sched)` (pointer).
    pub sjob_sched: u32,
    /// `offsetof(struct drm_sched_job, s_fence)` (pointer).
    pub sjob_s_fence: u32,
    /// `offsetof(struct drm_sched_job, id)`; `u32::MAX` when the member does not exist.
    pub sjob_id: u32,
    /// `offsetof(struct drm_gpu_scheduler, name)`.
    pub sched_name: u32,
    /// 1: `name` is `const char *`; 0: an inline char array.
    pub sched_name_is_ptr: u32,
    /// `offsetof(struct drm_sched_fence, finished)`.
    pub sfence_finished: u32,
    /// `offsetof(struct dma_fence, context)` (u64).
    pub fence_context: u32,
    /// `offsetof(struct dma_fence, seqno)` (u64).
    pub fence_seqno: u32,
    /// `offsetof(struct amdgpu_reset_context, src)`; `u32::MAX` when unknown.
    pub reset_src: u32,
    pub valid: u32,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] data with no padding-dependent invariants; any bit pattern is valid.
    unsafe impl aya::Pod for super::TpLayout {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IvFilter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::JobLayout {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RawEvent {}
}
