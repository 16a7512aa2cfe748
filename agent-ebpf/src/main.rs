//! hangwatch eBPF programs: small and boring. Every tracepoint program copies the fields its
//! load-time [`TpLayout`] names into one [`RawEvent`] and pushes it to the `EVENTS` ring buffer;
//! the kprobes follow [`JobLayout`] offsets read from module BTF. No kernel offset is compiled
//! in: a zero layout means "not present" and the loader does not attach that program.
//!
//! Built for `bpfel-unknown-none` by `agent/build.rs`; a host build (`cargo clippy --workspace`)
//! only type-checks the programs, with std and an empty `main`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

use agent_common::{
    dev_path, field, flags, kind, slot, DevLayout, FaultSlots, FieldLoc, IvFilter, JobLayout,
    JobSlots, KjobSlots, RawEvent, RetSlots, TpLayout, NAME_LEN, WORDS,
};
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        generated,
    },
    macros::{kprobe, kretprobe, map, tracepoint},
    maps::{ring_buf::RingBufEntry, HashMap, PerCpuArray, RingBuf},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
    EbpfContext,
};

mod kfd;
mod recorder;

/// The one event channel. Resized by the loader (`--ring-bytes`); 4 MiB holds ~29k events.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Events lost because `EVENTS` was full, per CPU (index 0). The agent sums and reports them.
#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Processes the agent has seen submitting; `sched_process_exit` reports only these.
#[map]
static SEEN_TGIDS: HashMap<u32, u8> = HashMap::with_max_entries(8192, 0);

const ZERO_LAYOUT: TpLayout = TpLayout {
    fields: [FieldLoc::ABSENT; slot::COUNT],
    present: 0,
};

const ZERO_JOB: JobLayout = JobLayout {
    job_base: 0,
    job_pasid: 0,
    sjob_sched: 0,
    sjob_s_fence: 0,
    sjob_id: u32::MAX,
    sched_name: 0,
    sched_name_is_ptr: 0,
    sfence_finished: 0,
    fence_context: 0,
    fence_seqno: 0,
    reset_src: u32::MAX,
    valid: 0,
};

// Load-time globals, one layout per tracepoint program (set by the agent with `set_global`).
#[no_mangle]
static CS_IOCTL_LAYOUT: TpLayout = ZERO_LAYOUT;
#[no_mangle]
static SCHED_RUN_JOB_LAYOUT: TpLayout = ZERO_LAYOUT;
#[no_mangle]
static SCHED_QUEUE_LAYOUT: TpLayout = ZERO_LAYOUT;
#[no_mangle]
static SCHED_RUN_LAYOUT: TpLayout = ZERO_LAYOUT;
#[no_mangle]
static SCHED_DONE_LAYOUT: TpLayout = ZERO_LAYOUT;
#[no_mangle]
static FENCE_INIT_LAYOUT: TpLayout = ZERO_LAYOUT;
#[no_mangle]
static FENCE_SIGNALED_LAYOUT: TpLayout = ZERO_LAYOUT;
#[no_mangle]
static VM_GRAB_ID_LAYOUT: TpLayout = ZERO_LAYOUT;
#[no_mangle]
static PASID_ALLOC_LAYOUT: TpLayout = ZERO_LAYOUT;
#[no_mangle]
static PASID_FREE_LAYOUT: TpLayout = ZERO_LAYOUT;
#[no_mangle]
static IV_LAYOUT: TpLayout = ZERO_LAYOUT;
/// dma_fence events are kept only when `driver` equals this NUL-padded string ("amdgpu").
#[no_mangle]
static FENCE_DRIVER: [u8; 16] = *b"amdgpu\0\0\0\0\0\0\0\0\0\0";
#[no_mangle]
static IV_FILTER: IvFilter = IvFilter {
    client_mask: 0,
    src_mask: 0,
};
#[no_mangle]
static JOB_LAYOUT: JobLayout = ZERO_JOB;
#[no_mangle]
static DEV_LAYOUT: DevLayout = DevLayout {
    entity_rq: 0,
    rq_sched: 0,
    sched_dev: 0,
    adev_dev: 0,
    dev_name: 0,
    valid: 0,
};

/// Adds one to the per-CPU counter `counter` (index 0): `DROPS`, the recorder's `REC_FULL`.
#[inline(always)]
fn bump(counter: &PerCpuArray<u64>) {
    if let Some(p) = counter.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

/// Bytes waiting in `EVENTS` before a per-job event wakes the agent (~390 events).
const WAKE_BYTES: u64 = 64 << 10;
/// Bytes one event takes in the ring buffer: the record and its 8-byte header.
const RECORD_BYTES: u64 = core::mem::size_of::<RawEvent>() as u64 + 8;

/// The per-job events of every submission: frequent, so they wake nobody by themselves.
#[inline(always)]
fn per_job(k: u32) -> bool {
    matches!(
        k,
        kind::CS_IOCTL
            | kind::SCHED_RUN_JOB
            | kind::SCHED_QUEUE
            | kind::SCHED_RUN
            | kind::SCHED_DONE
            | kind::FENCE_INIT
            | kind::FENCE_SIGNALED
            | kind::VM_GRAB_ID
            | kind::USERQ_FENCE
            | kind::USERQ_FENCE_DONE
    )
}

/// Events that do not run in the task that caused them (scheduler workers, fence callbacks,
/// interrupts, the reset worker): their comm names a kernel thread, so it is not read. Their
/// tid is kept: the decoder joins a worker's events by it.
#[inline(always)]
fn worker_context(k: u32) -> bool {
    matches!(
        k,
        kind::SCHED_RUN_JOB
            | kind::SCHED_RUN
            | kind::SCHED_DONE
            | kind::FENCE_INIT
            | kind::FENCE_SIGNALED
            | kind::VM_GRAB_ID
            | kind::VM_FAULT
            | kind::USERQ_FENCE_DONE
            | kind::JOB_TIMEDOUT
            | kind::RESET_BEGIN
            | kind::RESET_END
            | kind::PASID_FREE
    )
}

/// Wakeup policy of one reserved event. A per-job event wakes the agent only when its own
/// record took the waiting bytes across a multiple of WAKE_BYTES: one irq_work per 64 KiB of
/// records, however far the agent lags. A wakeup per event would cost the submitting CPU an
/// irq_work, often an IPI, on every event while the agent lags. Waking on the first crossing
/// only is not enough: a consumer that cleared its readiness above the threshold, or
/// concurrent producers stepping over the one crossing, would leave the agent asleep until its
/// 100 ms tick, and a flood fills the buffer in that time. Everything else (faults, timeouts,
/// resets, rejections, pasids, exits) is rare and wakes it at once.
#[inline(always)]
fn submit_flags(k: u32) -> u64 {
    if !per_job(k) {
        return BPF_RB_FORCE_WAKEUP as u64;
    }
    // Counts reserved records too, this one included.
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if waiting >= WAKE_BYTES && waiting % WAKE_BYTES < RECORD_BYTES {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Reserves one event in `EVENTS` (built in place: the BPF stack is only 512 bytes) with the
/// common header filled; `None` (and a counted drop) when the ring buffer is full.
#[inline(always)]
fn reserve(k: u32) -> Option<RingBufEntry<RawEvent>> {
    let Some(mut entry) = EVENTS.reserve::<RawEvent>(0) else {
        bump(&DROPS);
        return None;
    };
    let p = entry.as_mut_ptr();
    // SAFETY: `p` points at a reserved, exclusively owned RawEvent-sized slot.
    unsafe {
        core::ptr::write_bytes(p as *mut u8, 0, core::mem::size_of::<RawEvent>());
        let ev = &mut *p;
        ev.kind = k;
        ev.ts_ns = bpf_ktime_get_ns();
        let pt = bpf_get_current_pid_tgid();
        ev.tgid = (pt >> 32) as u32;
        ev.tid = pt as u32;
        if !worker_context(k) {
            if let Ok(c) = bpf_get_current_comm() {
                ev.comm = c;
            }
        }
    }
    Some(entry)
}

/// Reads a kernel string at `src` into `dst`; returns false when the read failed.
#[inline(always)]
unsafe fn read_str<const N: usize>(src: *const u8, dst: &mut [u8; N]) -> bool {
    let n = generated::bpf_probe_read_kernel_str(dst.as_mut_ptr().cast(), N as u32, src.cast());
    n >= 0
}

/// Loads a `$ty` at the constant context offset `$k` that equals `$off`, else `$fallback`.
/// The offsets are load-time globals in the frozen `.rodata`, so the verifier knows `$off`,
/// follows one arm, and rewrites the others away: the JIT keeps one direct load. A `ctx + off`
/// pointer would be rejected ("dereference of modified ctx ptr"); inline asm keeps LLVM from
/// folding the arms back into one. The tracepoint ABI disallows offsets below 8 (common fields).
#[cfg(target_arch = "bpf")]
macro_rules! ctx_load {
    ($base:expr, $off:expr, $ty:literal, $fallback:expr, [$($k:literal)*]) => {{
        let base = $base;
        let off = $off;
        $(if off == $k {
            let v: u64;
            // SAFETY: a read of the tracepoint context at a constant offset inside the record
            // (the verifier checks it against the event's size at attach).
            unsafe {
                core::arch::asm!(
                    concat!("{v} = *(", $ty, " *)({b} + ", stringify!($k), ")"),
                    v = out(reg) v, b = in(reg) base, options(nostack, readonly, preserves_flags)
                )
            };
            v
        } else)* { $fallback }
    }};
}

/// The 4-byte word of the context at `off` (a multiple of 4).
#[inline(always)]
fn ctx_u32(ctx: &TracePointContext, off: usize) -> u64 {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad layout yields 0, not a fault.
    let slow = || unsafe { ctx.read_at::<u32>(off).map(|v| v as u64).unwrap_or(0) };
    #[cfg(target_arch = "bpf")]
    {
        ctx_load!(ctx.as_ptr(), off, "u32", slow(), [
            8 12 16 20 24 28 32 36 40 44 48 52 56 60 64 68 72 76 80 84 88 92 96 100 104 108 112
            116 120 124 128 132 136 140 144 148 152 156 160 164 168 172 176 180 184 188 192 196
            200 204 208 212 216 220 224 228 232 236 240 244 248 252
        ])
    }
    #[cfg(not(target_arch = "bpf"))]
    slow()
}

/// The 8-byte word of the context at `off` (a multiple of 8).
#[inline(always)]
fn ctx_u64(ctx: &TracePointContext, off: usize) -> u64 {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad layout yields 0, not a fault.
    let slow = || unsafe { ctx.read_at::<u64>(off).unwrap_or(0) };
    #[cfg(target_arch = "bpf")]
    {
        ctx_load!(ctx.as_ptr(), off, "u64", slow(), [
            8 16 24 32 40 48 56 64 72 80 88 96 104 112 120 128 136 144 152 160 168 176 184 192
            200 208 216 224 232 240 248
        ])
    }
    #[cfg(not(target_arch = "bpf"))]
    slow()
}

/// Reads an unsigned integer field of 1, 2, 4 or 8 bytes (element `loc.index` of an array).
/// Fields of 4 and 8 bytes (every integer the catalogue binds on the kernels of the matrix)
/// load directly from the context; 1 and 2 bytes go through the probe-read helper, because a
/// wider load could pass the record's last field, and the attach refuses that.
#[inline(always)]
fn read_int(ctx: &TracePointContext, loc: FieldLoc) -> u64 {
    let off = loc.offset as usize + (loc.index as usize & 0xf) * loc.size as usize;
    // SAFETY: bpf_probe_read_kernel checks the address; a bad layout yields 0, not a fault.
    unsafe {
        match loc.size {
            8 => ctx_u64(ctx, off),
            4 => ctx_u32(ctx, off),
            2 => ctx.read_at::<u16>(off).map(|v| v as u64).unwrap_or(0),
            1 => ctx.read_at::<u8>(off).map(|v| v as u64).unwrap_or(0),
            _ => 0,
        }
    }
}

/// Reads a string field (any of the three encodings) into `dst`. Returns false if absent/failed.
#[inline(always)]
fn read_tp_str<const N: usize>(ctx: &TracePointContext, loc: FieldLoc, dst: &mut [u8; N]) -> bool {
    let base = ctx.as_ptr() as *const u8;
    // SAFETY: all reads go through bpf_probe_read_kernel*; offsets come from the format file.
    unsafe {
        match loc.kind {
            field::DATA_LOC_STR => {
                let v = ctx_u32(ctx, loc.offset as usize);
                read_str(base.add((v & 0xffff) as usize), dst)
            }
            field::STR_PTR => read_str(ctx_u64(ctx, loc.offset as usize) as *const u8, dst),
            field::INLINE_STR => read_str(base.add(loc.offset as usize), dst),
            _ => false,
        }
    }
}

/// Fills `ev` from the tracepoint record following `layout`: the string slots, then every
/// bound body word (marked present). What each word means is the kind's slot struct.
#[inline(always)]
fn fill(ctx: &TracePointContext, layout: &'static TpLayout, ev: &mut RawEvent) {
    let f = &layout.fields;
    let ring = vol(&f[slot::RING]);
    if ring.is_present() {
        read_tp_str(ctx, ring, &mut ev.ring);
        if ev.ring[NAME_LEN - 1] == 0 && ev.ring[NAME_LEN - 2] != 0 {
            ev.flags |= flags::RING_TRUNCATED;
        }
    }
    let dev = vol(&f[slot::DEV]);
    if dev.is_present() {
        read_tp_str(ctx, dev, &mut ev.dev);
    }
    // Unrolled by hand: the verifier must see every layout read at a constant `.rodata`
    // offset, or it cannot follow one arm of the direct context loads (`ctx_load!`).
    macro_rules! word {
        ($($i:literal)*) => {$(
            let loc = vol(&f[slot::WORD0 + $i]);
            if loc.is_present() {
                ev.set(slot::WORD0 + $i, read_int(ctx, loc));
            }
        )*};
    }
    word!(0 1 2 3 4 5 6 7);
    const _: () = assert!(WORDS == 8);
}

/// Reads a load-time global; volatile so LLVM does not const-fold the compiled-in zero.
#[inline(always)]
fn vol<T: Copy>(x: &'static T) -> T {
    // SAFETY: a plain static the loader rewrote before load.
    unsafe { core::ptr::read_volatile(x) }
}

#[inline(always)]
fn generic_tp(ctx: &TracePointContext, global: &'static TpLayout, k: u32) -> u32 {
    if let Some(mut e) = reserve(k) {
        // SAFETY: reserved slot, initialised by `reserve`.
        fill(ctx, global, unsafe { &mut *e.as_mut_ptr() });
        e.submit(submit_flags(k));
    }
    0
}

/// A job submitted: into the recorder; as an event too at the entity's first use (the
/// agent reads the submitter's identity then), or always outside recorder-only mode.
#[tracepoint]
pub fn hw_cs_ioctl(ctx: TracePointContext) -> u32 {
    let first = recorder::submitted(&ctx, &CS_IOCTL_LAYOUT);
    if first || recorder::events_too() {
        generic_tp(&ctx, &CS_IOCTL_LAYOUT, kind::CS_IOCTL);
    }
    0
}

#[tracepoint]
pub fn hw_sched_run_job(ctx: TracePointContext) -> u32 {
    recorder::ran(&ctx, &SCHED_RUN_JOB_LAYOUT);
    if recorder::events_too() {
        generic_tp(&ctx, &SCHED_RUN_JOB_LAYOUT, kind::SCHED_RUN_JOB);
    }
    0
}

/// Scheduler queue/run events: like [`generic_tp`], plus the device name through
/// `entity->rq->sched->dev` when the format has no `dev` but an `entity` (≤ 6.16).
#[inline(always)]
fn sched_tp(ctx: &TracePointContext, global: &'static TpLayout, k: u32) -> u32 {
    if let Some(mut e) = reserve(k) {
        // SAFETY: reserved slot, initialised by `reserve`.
        let ev = unsafe { &mut *e.as_mut_ptr() };
        fill(ctx, global, ev);
        let d = vol(&DEV_LAYOUT);
        let want = dev_path::SCHED | dev_path::ENTITY;
        if ev.dev[0] == 0 && d.valid & want == want {
            if let Some(entity) = ev.get(JobSlots::ENTITY) {
                // SAFETY: probe read (bpf_probe_read_kernel checks the address).
                if let Ok(rq) = unsafe { kread::<u64>(entity, d.entity_rq) } {
                    // SAFETY: as above.
                    if let Ok(sched) = unsafe { kread::<u64>(rq, d.rq_sched) } {
                        read_sched_dev(sched, &d, ev);
                    }
                }
            }
        }
        e.submit(submit_flags(k));
    }
    0
}

#[tracepoint]
pub fn hw_sched_queue(ctx: TracePointContext) -> u32 {
    sched_tp(&ctx, &SCHED_QUEUE_LAYOUT, kind::SCHED_QUEUE)
}

#[tracepoint]
pub fn hw_sched_run(ctx: TracePointContext) -> u32 {
    sched_tp(&ctx, &SCHED_RUN_LAYOUT, kind::SCHED_RUN)
}

#[tracepoint]
pub fn hw_sched_done(ctx: TracePointContext) -> u32 {
    recorder::finished(&ctx, &SCHED_DONE_LAYOUT);
    if recorder::events_too() {
        generic_tp(&ctx, &SCHED_DONE_LAYOUT, kind::SCHED_DONE);
    }
    0
}

#[tracepoint]
pub fn hw_vm_grab_id(ctx: TracePointContext) -> u32 {
    generic_tp(&ctx, &VM_GRAB_ID_LAYOUT, kind::VM_GRAB_ID)
}

#[tracepoint]
pub fn hw_pasid_alloc(ctx: TracePointContext) -> u32 {
    generic_tp(&ctx, &PASID_ALLOC_LAYOUT, kind::PASID_ALLOC)
}

#[tracepoint]
pub fn hw_pasid_free(ctx: TracePointContext) -> u32 {
    generic_tp(&ctx, &PASID_FREE_LAYOUT, kind::PASID_FREE)
}

/// dma_fence events: every fence in the system passes here, so compare `driver` before
/// building the event.
#[inline(always)]
fn fence_tp(ctx: &TracePointContext, global: &'static TpLayout, k: u32) -> u32 {
    let mut drv = [0u8; 16];
    if !read_tp_str(ctx, vol(&global.fields[slot::DRIVER]), &mut drv) {
        return 0;
    }
    let want: [u8; 16] = vol(&FENCE_DRIVER);
    let mut i = 0;
    while i < 16 {
        if drv[i] != want[i] {
            return 0;
        }
        if want[i] == 0 {
            break;
        }
        i += 1;
    }
    generic_tp(ctx, global, k)
}

#[tracepoint]
pub fn hw_fence_init(ctx: TracePointContext) -> u32 {
    fence_tp(&ctx, &FENCE_INIT_LAYOUT, kind::FENCE_INIT)
}

#[tracepoint]
pub fn hw_fence_signaled(ctx: TracePointContext) -> u32 {
    fence_tp(&ctx, &FENCE_SIGNALED_LAYOUT, kind::FENCE_SIGNALED)
}

/// `amdgpu_iv`: keep only VM-fault interrupts (client/src id masks from the loader).
#[tracepoint]
pub fn hw_iv(ctx: TracePointContext) -> u32 {
    let filter: IvFilter = vol(&IV_FILTER);
    let client = read_int(&ctx, vol(&IV_LAYOUT.fields[FaultSlots::CLIENT_ID]));
    let src = read_int(&ctx, vol(&IV_LAYOUT.fields[FaultSlots::SRC_ID]));
    if client >= 64 || src >= 64 {
        return 0;
    }
    if filter.client_mask & (1u64 << client) == 0 || filter.src_mask & (1u64 << src) == 0 {
        return 0;
    }
    generic_tp(&ctx, &IV_LAYOUT, kind::VM_FAULT)
}

/// Reads `T` at kernel address `base + off`.
#[inline(always)]
unsafe fn kread<T>(base: u64, off: u32) -> Result<T, i32> {
    bpf_probe_read_kernel((base + off as u64) as *const T)
}

/// `dev_name()` of the `struct device *` at `dev` into `ev.dev` (via `kobj.name`).
#[inline(always)]
fn read_dev_name(dev: u64, d: &DevLayout, ev: &mut RawEvent) {
    if dev == 0 {
        return;
    }
    // SAFETY: probe reads only.
    unsafe {
        if let Ok(name) = kread::<u64>(dev, d.dev_name) {
            read_str(name as *const u8, &mut ev.dev);
        }
    }
}

/// The device of the `struct drm_gpu_scheduler *` at `sched`, if `sched->dev` is known.
#[inline(always)]
fn read_sched_dev(sched: u64, d: &DevLayout, ev: &mut RawEvent) {
    if d.valid & dev_path::SCHED == 0 || sched == 0 {
        return;
    }
    // SAFETY: probe read.
    if let Ok(dev) = unsafe { kread::<u64>(sched, d.sched_dev) } {
        read_dev_name(dev, d, ev);
    }
}

/// Reads ring name, fence key and id of a `struct drm_sched_job *` through BTF offsets into
/// the [`KjobSlots`] of `ev`, and the scheduler's device name when [`DevLayout`] allows.
#[inline(always)]
fn read_sched_job(s_job: u64, l: &JobLayout, ev: &mut RawEvent) -> bool {
    // SAFETY: all dereferences go through bpf_probe_read_kernel.
    unsafe {
        let sched: u64 = match kread(s_job, l.sjob_sched) {
            Ok(v) => v,
            Err(_) => return false,
        };
        read_sched_dev(sched, &vol(&DEV_LAYOUT), ev);
        let name_ok = if l.sched_name_is_ptr != 0 {
            match kread::<u64>(sched, l.sched_name) {
                Ok(p) => read_str(p as *const u8, &mut ev.ring),
                Err(_) => false,
            }
        } else {
            read_str((sched + l.sched_name as u64) as *const u8, &mut ev.ring)
        };
        let s_fence: u64 = match kread(s_job, l.sjob_s_fence) {
            Ok(v) => v,
            Err(_) => return false,
        };
        let fin = s_fence + l.sfence_finished as u64;
        let ctx_ok = match (
            kread::<u64>(fin, l.fence_context),
            kread::<u64>(fin, l.fence_seqno),
        ) {
            (Ok(c), Ok(s)) => {
                ev.set(KjobSlots::CONTEXT, c);
                ev.set(KjobSlots::SEQNO, s);
                true
            }
            _ => false,
        };
        if l.sjob_id != u32::MAX {
            if let Ok(id) = kread::<u64>(s_job, l.sjob_id) {
                ev.set(KjobSlots::JOB_ID, id);
            }
        }
        name_ok && ctx_ok
    }
}

/// Reads `job->pasid` (`job` is the `struct amdgpu_job *`) into [`KjobSlots::PASID`].
#[inline(always)]
fn read_pasid(job: u64, l: &JobLayout, ev: &mut RawEvent) -> bool {
    // SAFETY: probe read.
    match unsafe { kread::<u32>(job, l.job_pasid) } {
        Ok(p) => {
            ev.set(KjobSlots::PASID, p as u64);
            true
        }
        Err(_) => false,
    }
}

#[inline(always)]
fn job_layout() -> JobLayout {
    vol(&JOB_LAYOUT)
}

/// kprobe `amdgpu_job_timedout(struct drm_sched_job *s_job)`.
#[kprobe]
pub fn hw_job_timedout(ctx: ProbeContext) -> u32 {
    let Some(mut e) = reserve(kind::JOB_TIMEDOUT) else {
        return 0;
    };
    // SAFETY: reserved slot, initialised by `reserve`.
    let ev = unsafe { &mut *e.as_mut_ptr() };
    let l = job_layout();
    let s_job: u64 = ctx.arg(0).unwrap_or(0);
    if l.valid != 0 && s_job != 0 {
        ev.set(KjobSlots::S_JOB, s_job);
        let ok = read_sched_job(s_job, &l, ev);
        let ok = read_pasid(s_job.wrapping_sub(l.job_base as u64), &l, ev) && ok;
        if !ok {
            ev.flags |= flags::READ_FAILED;
        }
    } else {
        ev.flags |= flags::READ_FAILED;
    }
    e.submit(BPF_RB_FORCE_WAKEUP as u64);
    0
}

/// kprobe `amdgpu_device_gpu_recover(adev, struct amdgpu_job *job, reset_context)`.
#[kprobe]
pub fn hw_gpu_recover(ctx: ProbeContext) -> u32 {
    let Some(mut e) = reserve(kind::RESET_BEGIN) else {
        return 0;
    };
    // SAFETY: reserved slot, initialised by `reserve`.
    let ev = unsafe { &mut *e.as_mut_ptr() };
    let l = job_layout();
    let job: u64 = ctx.arg(1).unwrap_or(0);
    let rctx: u64 = ctx.arg(2).unwrap_or(0);
    if job != 0 {
        ev.set(KjobSlots::WITH_JOB, 1);
    }
    if l.valid != 0 {
        let mut ok = true;
        if job != 0 {
            let s_job = job + l.job_base as u64;
            ev.set(KjobSlots::S_JOB, s_job);
            ok &= read_sched_job(s_job, &l, ev);
            ok &= read_pasid(job, &l, ev);
        }
        if rctx != 0 && l.reset_src != u32::MAX {
            // SAFETY: probe read.
            if let Ok(src) = unsafe { kread::<u32>(rctx, l.reset_src) } {
                ev.set(KjobSlots::RESET_SRC, src as u64);
            }
        }
        if !ok {
            ev.flags |= flags::READ_FAILED;
        }
    }
    let d = vol(&DEV_LAYOUT);
    if ev.dev[0] == 0 && d.valid & dev_path::ADEV != 0 {
        let adev: u64 = ctx.arg(0).unwrap_or(0);
        if adev != 0 {
            // SAFETY: probe read.
            if let Ok(dev) = unsafe { kread::<u64>(adev, d.adev_dev) } {
                read_dev_name(dev, &d, ev);
            }
        }
    }
    e.submit(BPF_RB_FORCE_WAKEUP as u64);
    0
}

/// Submits a kretprobe event carrying the return value in [`RetSlots::RET`].
#[inline(always)]
fn ret_event(k: u32, r: i32) {
    if let Some(mut e) = reserve(k) {
        // SAFETY: reserved slot, initialised by `reserve`.
        unsafe { (*e.as_mut_ptr()).set(RetSlots::RET, r as i64 as u64) };
        e.submit(BPF_RB_FORCE_WAKEUP as u64);
    }
}

/// kretprobe `amdgpu_device_gpu_recover`.
#[kretprobe]
pub fn hw_gpu_recover_ret(ctx: RetProbeContext) -> u32 {
    let r: i64 = ctx.ret::<i64>();
    ret_event(kind::RESET_END, r as i32);
    0
}

/// kretprobe `amdgpu_cs_ioctl`: only failures (the submitter learning its context is guilty).
#[kretprobe]
pub fn hw_cs_ioctl_ret(ctx: RetProbeContext) -> u32 {
    let r = ctx.ret::<i64>() as i32;
    if r < 0 {
        ret_event(kind::CS_REJECTED, r);
    }
    0
}

/// `sched:sched_process_exit`: a submitter's process ended (group leader only).
#[tracepoint]
pub fn hw_process_exit(_ctx: TracePointContext) -> u32 {
    let pt = bpf_get_current_pid_tgid();
    let tgid = (pt >> 32) as u32;
    if tgid != pt as u32 {
        return 0;
    }
    // SAFETY: read-only lookup of a u8 value.
    if unsafe { SEEN_TGIDS.get(tgid) }.is_none() {
        return 0;
    }
    let _ = SEEN_TGIDS.remove(tgid);
    if let Some(e) = reserve(kind::PROCESS_EXIT) {
        e.submit(BPF_RB_FORCE_WAKEUP as u64);
    }
    0
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

// Only for the eBPF target: a host `cargo clippy --workspace` checks this crate with std
// linked in through feature unification (agent-common/user), which has its own handler.
#[cfg(all(not(test), target_arch = "bpf"))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
