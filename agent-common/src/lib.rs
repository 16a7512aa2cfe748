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
    // ---- compute (docs/compute.md) ----
    /// kretprobe `kfd_ioctl_create_queue` (its args stashed by the kprobe): a KFD queue.
    pub const KFD_QUEUE_CREATE: u32 = 17;
    /// kretprobe `kfd_ioctl_destroy_queue`.
    pub const KFD_QUEUE_DESTROY: u32 = 18;
    /// kretprobe `create_queue_cpsch`: the queue's doorbell as MES/HWS lines print it.
    pub const KFD_QUEUE_DOORBELL: u32 = 19;
    /// `amdgpu:amdgpu_userq_create_end` (7.x user queues).
    pub const USERQ_CREATE: u32 = 20;
    /// `amdgpu:amdgpu_userq_destroy_end`.
    pub const USERQ_DESTROY: u32 = 21;
    /// `amdgpu:amdgpu_userq_emit_fence`: a job on a user queue, in the submitter.
    pub const USERQ_FENCE: u32 = 22;
    /// `amdgpu:amdgpu_userq_state_changed`.
    pub const USERQ_STATE: u32 = 23;
    /// `dma_fence:dma_fence_signaled` filtered to driver "amdgpu_userq_fence": a user-queue
    /// job done ([`FenceSlots`](crate::FenceSlots)).
    pub const USERQ_FENCE_DONE: u32 = 24;
}

/// Every [`kind`] as an enum whose discriminants are the wire constants, so userspace decodes
/// with an exhaustive `match`: a new kind without a decode arm does not compile.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    CsIoctl = kind::CS_IOCTL,
    SchedRunJob = kind::SCHED_RUN_JOB,
    SchedQueue = kind::SCHED_QUEUE,
    SchedRun = kind::SCHED_RUN,
    SchedDone = kind::SCHED_DONE,
    FenceInit = kind::FENCE_INIT,
    FenceSignaled = kind::FENCE_SIGNALED,
    VmGrabId = kind::VM_GRAB_ID,
    PasidAlloc = kind::PASID_ALLOC,
    PasidFree = kind::PASID_FREE,
    VmFault = kind::VM_FAULT,
    JobTimedout = kind::JOB_TIMEDOUT,
    ResetBegin = kind::RESET_BEGIN,
    ResetEnd = kind::RESET_END,
    CsRejected = kind::CS_REJECTED,
    ProcessExit = kind::PROCESS_EXIT,
    KfdQueueCreate = kind::KFD_QUEUE_CREATE,
    KfdQueueDestroy = kind::KFD_QUEUE_DESTROY,
    KfdQueueDoorbell = kind::KFD_QUEUE_DOORBELL,
    UserqCreate = kind::USERQ_CREATE,
    UserqDestroy = kind::USERQ_DESTROY,
    UserqFence = kind::USERQ_FENCE,
    UserqState = kind::USERQ_STATE,
    UserqFenceDone = kind::USERQ_FENCE_DONE,
}

impl EventKind {
    /// Every kind, in wire order.
    pub const ALL: [EventKind; 24] = [
        EventKind::CsIoctl,
        EventKind::SchedRunJob,
        EventKind::SchedQueue,
        EventKind::SchedRun,
        EventKind::SchedDone,
        EventKind::FenceInit,
        EventKind::FenceSignaled,
        EventKind::VmGrabId,
        EventKind::PasidAlloc,
        EventKind::PasidFree,
        EventKind::VmFault,
        EventKind::JobTimedout,
        EventKind::ResetBegin,
        EventKind::ResetEnd,
        EventKind::CsRejected,
        EventKind::ProcessExit,
        EventKind::KfdQueueCreate,
        EventKind::KfdQueueDestroy,
        EventKind::KfdQueueDoorbell,
        EventKind::UserqCreate,
        EventKind::UserqDestroy,
        EventKind::UserqFence,
        EventKind::UserqState,
        EventKind::UserqFenceDone,
    ];
}

impl TryFrom<u32> for EventKind {
    /// The unknown wire value (a newer eBPF object, or a corrupt record).
    type Error = u32;

    fn try_from(v: u32) -> Result<Self, u32> {
        // Kinds are numbered from 1 without gaps; the check keeps that an assumption, not a risk.
        let at = (v as usize).wrapping_sub(1);
        match EventKind::ALL.get(at) {
            Some(&k) if k as u32 == v => Ok(k),
            _ => Err(v),
        }
    }
}

/// Room for a device name (`dev_name()`: PCI `0000:03:00.0` is 12 bytes).
pub const DEV_LEN: usize = 16;
/// Integer words in a [`Body`]: the widest per-kind slot struct ([`FaultSlots`]) has 8.
pub const WORDS: usize = 8;

/// One event from the kernel: a common header, two string slots (`ring`, `dev`) and a
/// [`Body`] whose words mean what the kind's slot struct names them. Fixed size on the wire.
#[repr(C)]
#[derive(Clone, Copy)]
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
    /// Ring / timeline / scheduler name ([`slot::RING`]), NUL-padded.
    pub ring: [u8; NAME_LEN],
    /// Device name ([`slot::DEV`]) when the kernel gave one, NUL-padded.
    pub dev: [u8; DEV_LEN],
    /// Bit `i` set: `body` word `i` was read from the kernel. An absent field stays 0 and unset,
    /// so a real 0 and "not on this kernel" never look alike.
    pub present: u32,
    pub _pad: u32,
    pub body: Body,
}

/// The kind-specific words of a [`RawEvent`], viewed through the slot struct of its kind.
/// Every view is plain `u64`s, so any bit pattern is valid in every view.
#[repr(C)]
#[derive(Clone, Copy)]
pub union Body {
    pub words: [u64; WORDS],
    pub job: JobSlots,
    pub fence: FenceSlots,
    pub grab: GrabSlots,
    pub pasid: PasidSlots,
    pub fault: FaultSlots,
    pub kjob: KjobSlots,
    pub ret: RetSlots,
    pub kqueue: KqueueSlots,
    pub userq: UserqSlots,
}

/// Declares a kind's slot struct (all `u64`, one body word each) and, per field, a constant
/// naming its [`slot`] index, so the catalogue's bindings, the eBPF writers and the decoder all
/// say `JobSlots::CONTEXT` instead of agreeing on a number.
macro_rules! slots {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $f:ident => $c:ident),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name { $($(#[$fm])* pub $f: u64,)* }
        impl $name {
            $(pub const $c: usize = slot::WORD0 + core::mem::offset_of!($name, $f) / 8;)*
        }
        const _: () = assert!(core::mem::size_of::<$name>() <= WORDS * 8);
    };
}

slots! {
    /// CS_IOCTL, SCHED_RUN_JOB (amdgpu), SCHED_QUEUE, SCHED_RUN, SCHED_DONE (gpu_scheduler).
    JobSlots {
        /// Scheduler-fence context (u32 in amdgpu events ≤ 6.16, u64 from 6.17).
        context => CONTEXT,
        seqno => SEQNO,
        /// `drm_sched_job.id` (amdgpu `sched_job_id` ≤ 6.16, legacy scheduler `id`).
        job_id => JOB_ID,
        /// DRM client id (≥ 6.17 scheduler events) = fdinfo `drm-client-id`.
        client_id => CLIENT_ID,
        /// Legacy scheduler `fence` (`&s_fence->finished`): a join key, never dereferenced.
        fence => FENCE,
        /// `num_ibs` of the amdgpu events.
        num_ibs => NUM_IBS,
        /// Legacy scheduler `entity` pointer: where the eBPF side starts the module-BTF walk
        /// to the device name ([`DevLayout`]) when the event has no `dev` field.
        entity => ENTITY,
    }
}

slots! {
    /// FENCE_INIT, FENCE_SIGNALED (dma_fence, driver "amdgpu"; the timeline is `ring`).
    FenceSlots {
        context => CONTEXT,
        seqno => SEQNO,
    }
}

slots! {
    /// VM_GRAB_ID (`amdgpu_vm_grab_id`).
    GrabSlots {
        pasid => PASID,
        vmid => VMID,
        vm_hub => VM_HUB,
    }
}

slots! {
    /// PASID_ALLOC, PASID_FREE.
    PasidSlots {
        pasid => PASID,
    }
}

slots! {
    /// VM_FAULT (`amdgpu_iv` filtered to VM faults). Address and bits per gmc_v9+:
    /// `src_data0 << 12 | (src_data1 & 0xf) << 44`, retry `src_data1 & 0x80`, write `& 0x20`.
    FaultSlots {
        pasid => PASID,
        vmid => VMID,
        /// 0 = gfxhub, otherwise mmhub.
        vmid_src => VMID_SRC,
        ring_id => RING_ID,
        client_id => CLIENT_ID,
        src_id => SRC_ID,
        src_data0 => SRC_DATA0,
        src_data1 => SRC_DATA1,
    }
}

slots! {
    /// JOB_TIMEDOUT, RESET_BEGIN (kprobes reading `struct amdgpu_job` through BTF offsets).
    KjobSlots {
        /// `s_job->s_fence->finished.context`.
        context => CONTEXT,
        seqno => SEQNO,
        job_id => JOB_ID,
        /// The `struct drm_sched_job *`.
        s_job => S_JOB,
        pasid => PASID,
        /// `reset_context->src` (RESET_BEGIN).
        reset_src => RESET_SRC,
        /// 1 when `amdgpu_device_gpu_recover` was given a job (RESET_BEGIN).
        with_job => WITH_JOB,
    }
}

slots! {
    /// RESET_END, CS_REJECTED (kretprobes).
    RetSlots {
        /// Return value, sign-extended to 64 bits.
        ret => RET,
    }
}

slots! {
    /// KFD_QUEUE_CREATE, KFD_QUEUE_DESTROY, KFD_QUEUE_DOORBELL (kprobes reading the uapi ioctl
    /// args and `struct queue` through [`KfdLayout`] offsets).
    KqueueSlots {
        queue_id => QUEUE_ID,
        /// KFD topology gpu_id (create).
        gpu_id => GPU_ID,
        /// uapi `KFD_IOC_QUEUE_TYPE_*` (create) or KFD's internal type (doorbell).
        queue_type => QUEUE_TYPE,
        /// `queue_properties.doorbell_off`: the doorbell MES/HWS lines print.
        doorbell => DOORBELL,
        /// The ioctl's `doorbell_offset` (mmap cookie | offset in the process's doorbell page).
        doorbell_offset => DOORBELL_OFFSET,
        /// Return value, sign-extended.
        ret => RET,
        /// `kfd_process.pasid` (≤ 6.12; per device on 7.x, not read).
        pasid => PASID,
    }
}

slots! {
    /// USERQ_CREATE, USERQ_DESTROY, USERQ_FENCE, USERQ_STATE (7.x `amdgpu_userq_*`; the
    /// fence's `dev` is the `dev` string slot).
    UserqSlots {
        doorbell => DOORBELL,
        /// `AMDGPU_HW_IP_*`.
        queue_type => QUEUE_TYPE,
        /// create/destroy: queue state; state_changed: `to`.
        state => STATE,
        result => RESULT,
        context => CONTEXT,
        seqno => SEQNO,
        client_id => CLIENT_ID,
        xcp_id => XCP_ID,
    }
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
            dev: [0; DEV_LEN],
            present: 0,
            _pad: 0,
            body: Body { words: [0; WORDS] },
        }
    }

    /// Writes body word `slot` (a `*Slots::NAME` constant) and marks it present.
    #[inline(always)]
    pub fn set(&mut self, slot: usize, v: u64) {
        let w = slot.wrapping_sub(slot::WORD0);
        if w < WORDS {
            // SAFETY: every view of the union is plain u64 words.
            unsafe { self.body.words[w] = v };
            self.present |= 1 << w;
        }
    }

    /// Body word `slot`, `None` when the kernel did not provide it.
    #[inline(always)]
    pub fn get(&self, slot: usize) -> Option<u64> {
        let w = slot.wrapping_sub(slot::WORD0);
        // SAFETY: every view of the union is plain u64 words.
        (w < WORDS && self.present & (1 << w) != 0).then(|| unsafe { self.body.words[w] })
    }

    /// Whether body word `slot` was provided.
    #[inline(always)]
    pub fn has(&self, slot: usize) -> bool {
        self.get(slot).is_some()
    }

    /// The body as plain words.
    pub fn words(&self) -> [u64; WORDS] {
        // SAFETY: every view of the union is plain u64 words.
        unsafe { self.body.words }
    }

    /// The body viewed as [`FaultSlots`] (meaningful for `kind::VM_FAULT`).
    pub fn fault(&self) -> FaultSlots {
        // SAFETY: every view of the union is plain u64 words.
        unsafe { self.body.fault }
    }

    /// The body viewed as [`KjobSlots`] (`kind::JOB_TIMEDOUT`, `kind::RESET_BEGIN`).
    pub fn kjob(&self) -> KjobSlots {
        // SAFETY: every view of the union is plain u64 words.
        unsafe { self.body.kjob }
    }
}

impl core::fmt::Debug for RawEvent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RawEvent")
            .field("kind", &self.kind)
            .field("flags", &self.flags)
            .field("ts_ns", &self.ts_ns)
            .field("tgid", &self.tgid)
            .field("tid", &self.tid)
            .field("present", &self.present)
            .field("words", &self.words())
            .finish_non_exhaustive()
    }
}

/// [`RawEvent::flags`] bits. Which body words were read is in [`RawEvent::present`].
pub mod flags {
    /// The kernel string was longer than [`super::NAME_LEN`] and was cut.
    pub const RING_TRUNCATED: u32 = 1 << 0;
    /// A BTF-driven kernel read in a kprobe failed; the fields it would have filled are absent.
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
    /// Element to read when the field is an integer array (`src_data[4]`), else 0.
    pub index: u8,
    pub _pad: [u8; 2],
}

impl FieldLoc {
    pub const ABSENT: FieldLoc = FieldLoc {
        offset: 0,
        size: 0,
        kind: field::ABSENT,
        index: 0,
        _pad: [0; 2],
    };
    pub const fn new(offset: u16, size: u16, kind: u8) -> Self {
        FieldLoc {
            offset,
            size,
            kind,
            index: 0,
            _pad: [0; 2],
        }
    }
    /// The same field, element `index` of its array.
    pub const fn at(mut self, index: u8) -> Self {
        self.index = index;
        self
    }
    pub const fn is_present(&self) -> bool {
        self.kind != field::ABSENT
    }
}

/// Slots of a [`TpLayout`]: where each bound tracepoint field lands in a [`RawEvent`]. String
/// slots first, then one slot per body word; the words are named per kind by the `*Slots`
/// structs (`JobSlots::CONTEXT`, `FaultSlots::SRC_DATA1`, ...), never by bare numbers.
pub mod slot {
    /// String → `RawEvent::ring` (ring, sched `name`, or fence `timeline`).
    pub const RING: usize = 0;
    /// String used only for the in-kernel driver filter (dma_fence `driver`).
    pub const DRIVER: usize = 1;
    /// String → `RawEvent::dev` (scheduler `dev` on kernels that print it).
    pub const DEV: usize = 2;
    /// First body word.
    pub const WORD0: usize = 3;
    pub const COUNT: usize = WORD0 + super::WORDS;
}

/// Per-tracepoint decoding table, built by userspace from the `format` file and passed to the
/// program as a load-time global. `present == 0` means the program should not be attached
/// (the loader never attaches it), so the eBPF side need not check.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TpLayout {
    pub fields: [FieldLoc; slot::COUNT],
    pub present: u32,
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

/// Offsets for the KFD queue kprobes, from the owning module's BTF at load time; `u32::MAX`
/// = member absent. `valid_ioctl == 0`: the ioctl probes report only who called; `valid_queue
/// == 0`: no doorbell. The uapi args structs are stable, `struct queue` is not.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KfdLayout {
    /// `struct kfd_ioctl_create_queue_args` members.
    pub create_gpu_id: u32,
    pub create_queue_type: u32,
    pub create_queue_id: u32,
    pub create_doorbell_offset: u32,
    /// `struct kfd_ioctl_destroy_queue_args.queue_id`.
    pub destroy_queue_id: u32,
    /// `struct queue.properties` + `struct queue_properties.{queue_id, doorbell_off, type}`.
    pub q_queue_id: u32,
    pub q_doorbell_off: u32,
    pub q_type: u32,
    /// `struct kfd_process.pasid`.
    pub process_pasid: u32,
    pub valid_ioctl: u32,
    pub valid_queue: u32,
    pub _pad: u32,
}

impl KfdLayout {
    pub const NONE: KfdLayout = KfdLayout {
        create_gpu_id: u32::MAX,
        create_queue_type: u32::MAX,
        create_queue_id: u32::MAX,
        create_doorbell_offset: u32::MAX,
        destroy_queue_id: u32::MAX,
        q_queue_id: u32::MAX,
        q_doorbell_off: u32::MAX,
        q_type: u32::MAX,
        process_pasid: u32::MAX,
        valid_ioctl: 0,
        valid_queue: 0,
        _pad: 0,
    };
}

impl Default for KfdLayout {
    fn default() -> Self {
        Self::NONE
    }
}

/// Struct offsets from module + vmlinux BTF that lead from a scheduler object to its device
/// name, for kernels whose tracepoints do not print `dev` (≤ 6.16). Each path is used only when
/// its bit is set in `valid`; the name lands in `RawEvent::dev`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevLayout {
    /// `offsetof(struct drm_sched_entity, rq)` (pointer).
    pub entity_rq: u32,
    /// `offsetof(struct drm_sched_rq, sched)` (pointer).
    pub rq_sched: u32,
    /// `offsetof(struct drm_gpu_scheduler, dev)` (pointer, ≥ 6.0).
    pub sched_dev: u32,
    /// `offsetof(struct amdgpu_device, dev)` (pointer): the reset kprobe's first argument.
    pub adev_dev: u32,
    /// `offsetof(struct device, kobj) + offsetof(struct kobject, name)` (`const char *`).
    pub dev_name: u32,
    /// [`dev_path`] bits.
    pub valid: u32,
}

/// `struct dma_fence` offsets from vmlinux BTF, for `drm_sched_process_job` (≤ 6.16), which
/// gives only the finished fence's address. `valid == 0`: the recorder cannot finish jobs
/// there, and the agent falls back to per-job events.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FenceLayout {
    pub context: u32,
    pub seqno: u32,
    pub valid: u32,
    pub _pad: u32,
}

/// [`DevLayout::valid`] bits.
pub mod dev_path {
    /// `sched->dev` is readable (kprobes; with `ENTITY`, the legacy scheduler events).
    pub const SCHED: u32 = 1 << 0;
    /// `entity->rq->sched` is readable.
    pub const ENTITY: u32 = 1 << 1;
    /// `adev->dev` is readable (reset kprobe).
    pub const ADEV: u32 = 1 << 2;
}

/// The in-kernel flight recorder (docs/probes.md, "The flight recorder"). One [`RecEntity`]
/// per scheduler entity, keyed by its finished-fence context: each process's submissions on
/// one ring. Its jobs live in a ring of [`REC_JOBS`](crate::rec::REC_JOBS) slots indexed by seqno, which the
/// scheduler hands out in order per entity, so submit, run and finish find their slot without
/// a per-job map. A slot is reused only once its job finished: the unfinished are never
/// overwritten; submissions that find their slot still unfinished are counted in
/// [`RecEntity::unrecorded`] (their seqnos stay known: they are the ones between).
pub mod rec {
    /// Job slots per entity (a power of two).
    pub const REC_JOBS: usize = 64;
    /// Entities kept at once (the map's size); userspace frees idle ones.
    pub const REC_ENTITIES: u32 = 2048;
    /// Bumped whenever [`RecEntity`](crate::RecEntity) or [`RecJob`](crate::RecJob) change: a pinned recorder of another
    /// version is not reused (the agent starts a clean one and says so).
    pub const REC_LAYOUT_VERSION: u32 = 1;
    /// Values of the `REC_MODE` load-time global.
    pub const MODE_EVENTS: u32 = 0;
    /// The recorder only; a job's submission is sent as an event only at the entity's first
    /// use (identity), never per job.
    pub const MODE_RECORDER: u32 = 1;
    /// Both: the recorder and every per-job event (`--trace-all`).
    pub const MODE_BOTH: u32 = 2;
}

/// One job of a [`RecEntity`]. Times are `bpf_ktime_get_ns()`; 0 = not yet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecJob {
    pub seqno: u64,
    pub submit_ns: u64,
    pub run_ns: u64,
    pub done_ns: u64,
}

impl RecJob {
    /// Submitted and not finished: its slot must not be reused.
    pub fn unfinished(&self) -> bool {
        self.seqno != 0 && self.done_ns == 0
    }
}

/// One scheduler entity's submitter and recent jobs (map `RECORDER`, key: fence context).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RecEntity {
    pub context: u64,
    /// The submitter at the entity's first use (`current` in `amdgpu_cs_ioctl`).
    pub tgid: u32,
    pub tid: u32,
    pub comm: [u8; COMM_LEN],
    /// The ring of the entity's latest submission after an idle time (the scheduler moves an
    /// entity between rings only while it is idle).
    pub ring: [u8; NAME_LEN],
    /// Highest seqno submitted, run and finished.
    pub submitted: u64,
    pub ran: u64,
    pub done: u64,
    /// Submissions counted (all of them) and not recorded (their slot held an unfinished job).
    pub count: u64,
    pub unrecorded: u64,
    pub first_ns: u64,
    pub jobs: [RecJob; rec::REC_JOBS],
}

impl RecEntity {
    /// The slot of `seqno`.
    pub fn slot(seqno: u64) -> usize {
        (seqno as usize) & (rec::REC_JOBS - 1)
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] u64/u32/u8 data; any bit pattern is valid.
    unsafe impl aya::Pod for super::RecEntity {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RecJob {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FenceLayout {}
    // SAFETY: plain #[repr(C)] data with no padding-dependent invariants; any bit pattern is valid.
    unsafe impl aya::Pod for super::TpLayout {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IvFilter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::JobLayout {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KfdLayout {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DevLayout {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RawEvent {}
}
