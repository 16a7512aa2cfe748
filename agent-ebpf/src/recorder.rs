//! The flight recorder in BPF maps (docs/probes.md, "The flight recorder"). Each job's
//! submission, run and finish update its slot in its entity's [`RecEntity`], found by the
//! finished fence's (context, seqno): a hash lookup per event, an insert only at an entity's
//! first use. Nothing goes to userspace per job; the agent reads the map when it needs to.
use agent_common::{
    rec::{MODE_BOTH, MODE_EVENTS, REC_ENTITIES},
    FenceLayout, JobSlots, RecEntity, TpLayout, COMM_LEN,
};
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
    programs::TracePointContext,
};

use super::{read_int, read_tp_str, vol};

/// The recorder: fence context → entity. Pinned by the agent so a restart keeps it.
#[map]
static RECORDER: HashMap<u64, RecEntity> = HashMap::with_max_entries(REC_ENTITIES, 0);

/// One all-zero entity, the value a new entity is inserted with (the BPF stack is too small
/// to build one).
#[map]
static REC_ZERO: Array<RecEntity> = Array::with_max_entries(1, 0);

/// Entities not created because `RECORDER` was full, per CPU (index 0).
#[map]
static REC_FULL: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// `rec::MODE_*`, set by the loader.
#[no_mangle]
static REC_MODE: u32 = MODE_EVENTS;

/// `struct dma_fence` offsets for the ≤ 6.16 finish event (fence address only).
#[no_mangle]
static FENCE_LAYOUT: FenceLayout = FenceLayout {
    context: 0,
    seqno: 0,
    valid: 0,
    _pad: 0,
};

/// Whether the per-job events go out as well (events only, or `--trace-all`).
#[inline(always)]
pub fn events_too() -> bool {
    let m = vol(&REC_MODE);
    m == MODE_EVENTS || m == MODE_BOTH
}

#[inline(always)]
fn recording() -> bool {
    vol(&REC_MODE) != MODE_EVENTS
}

/// The (context, seqno) words of a job tracepoint, both 0 when absent.
#[inline(always)]
fn job_key(ctx: &TracePointContext, layout: &'static TpLayout) -> (u64, u64) {
    let f = &layout.fields;
    let c = vol(&f[JobSlots::CONTEXT]);
    let s = vol(&f[JobSlots::SEQNO]);
    if !c.is_present() || !s.is_present() {
        return (0, 0);
    }
    (read_int(ctx, c), read_int(ctx, s))
}

/// The entity of `context`, created on first use; `(entity, created)`.
#[inline(always)]
fn entity(context: u64) -> Option<(*mut RecEntity, bool)> {
    if let Some(e) = RECORDER.get_ptr_mut(context) {
        return Some((e, false));
    }
    let zero = REC_ZERO.get(0)?;
    if RECORDER.insert(context, zero, BPF_NOEXIST as u64).is_err() {
        // Full, or another CPU created it just now.
        let e = RECORDER.get_ptr_mut(context);
        if e.is_none() {
            super::bump(&REC_FULL);
        }
        return e.map(|e| (e, false));
    }
    RECORDER.get_ptr_mut(context).map(|e| (e, true))
}

/// `amdgpu_cs_ioctl`, in the submitter: records the job; true when this is the entity's
/// first use (the caller then sends the submission as an event, for the identity).
#[inline(always)]
pub fn submitted(ctx: &TracePointContext, layout: &'static TpLayout) -> bool {
    if !recording() {
        return false;
    }
    let (context, seqno) = job_key(ctx, layout);
    if context == 0 {
        return false;
    }
    let Some((e, created)) = entity(context) else {
        return false;
    };
    // SAFETY: a helper without arguments or memory access.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: a map value pointer from a successful lookup; the map is preallocated.
    let e = unsafe { &mut *e };
    if created || e.submitted == e.done {
        // New, or idle: the scheduler may have moved an idle entity to another ring.
        read_tp_str(
            ctx,
            vol(&layout.fields[agent_common::slot::RING]),
            &mut e.ring,
        );
    }
    if created {
        own(e, context, now);
    }
    let j = &mut e.jobs[RecEntity::slot(seqno)];
    if j.unfinished() && j.seqno != seqno {
        e.unrecorded += 1;
    } else {
        j.seqno = seqno;
        j.submit_ns = now;
        j.run_ns = 0;
        j.done_ns = 0;
    }
    e.count += 1;
    if seqno > e.submitted {
        e.submitted = seqno;
    }
    created
}

/// Fills a new entity's owner: the current task.
#[inline(always)]
fn own(e: &mut RecEntity, context: u64, now: u64) {
    e.context = context;
    e.first_ns = now;
    let pt = bpf_get_current_pid_tgid();
    e.tgid = (pt >> 32) as u32;
    e.tid = pt as u32;
    let comm: [u8; COMM_LEN] = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    e.comm = comm;
}

/// `amdgpu_sched_run_job`: the job went to the ring.
#[inline(always)]
pub fn ran(ctx: &TracePointContext, layout: &'static TpLayout) {
    if !recording() {
        return;
    }
    let (context, seqno) = job_key(ctx, layout);
    mark(context, seqno, false);
}

/// The scheduler's finish event: `drm_sched_job_done` (≥ 6.17: context and seqno) or
/// `drm_sched_process_job` (the finished fence's address, read through [`FENCE_LAYOUT`]).
#[inline(always)]
pub fn finished(ctx: &TracePointContext, layout: &'static TpLayout) {
    if !recording() {
        return;
    }
    let (mut context, mut seqno) = job_key(ctx, layout);
    let fence_loc = vol(&layout.fields[JobSlots::FENCE]);
    if context == 0 && fence_loc.is_present() {
        let fl = vol(&FENCE_LAYOUT);
        let fence = read_int(ctx, fence_loc);
        if fl.valid == 0 || fence == 0 {
            return;
        }
        // SAFETY: probe reads (bpf_probe_read_kernel checks the address).
        unsafe {
            context = super::kread::<u64>(fence, fl.context).unwrap_or(0);
            seqno = super::kread::<u64>(fence, fl.seqno).unwrap_or(0);
        }
    }
    mark(context, seqno, true);
}

/// Stamps the job's run (or finish) time, if its slot still holds it.
#[inline(always)]
fn mark(context: u64, seqno: u64, done: bool) {
    if context == 0 {
        return;
    }
    let Some(e) = RECORDER.get_ptr_mut(context) else {
        return;
    };
    // SAFETY: a map value pointer from a successful lookup; the map is preallocated.
    let e = unsafe { &mut *e };
    // SAFETY: a helper without arguments or memory access.
    let now = unsafe { bpf_ktime_get_ns() };
    let j = &mut e.jobs[RecEntity::slot(seqno)];
    let here = j.seqno == seqno;
    if done {
        if here && j.done_ns == 0 {
            j.done_ns = now;
        }
        if seqno > e.done {
            e.done = seqno;
        }
    } else {
        if here && j.run_ns == 0 {
            j.run_ns = now;
        }
        if seqno > e.ran {
            e.ran = seqno;
        }
    }
}
