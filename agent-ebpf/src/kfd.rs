//! Compute-queue programs (docs/compute.md): KFD queue create/destroy as entry+return probe
//! pairs (the entry stashes the ioctl's kernel copy of its args per thread; the return reads
//! the result the handler wrote there, through [`KfdLayout`] offsets from module BTF), the
//! doorbell of each new queue from `create_queue_cpsch`, and the 7.x user-queue tracepoints.
use agent_common::{flags, kind, KfdLayout, KqueueSlots, RawEvent, TpLayout};
use aya_ebpf::{
    bindings::BPF_RB_FORCE_WAKEUP,
    helpers::bpf_get_current_pid_tgid,
    macros::{kprobe, kretprobe, map, tracepoint},
    maps::HashMap,
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};

use agent_common::slot;

use super::{generic_tp, kread, read_tp_str, reserve, vol, SEEN_TGIDS, ZERO_LAYOUT};

/// Per thread (pid_tgid): the args pointer of the KFD ioctl in progress and the process's
/// pasid (u64::MAX unknown). Entries are removed on return; a thread killed inside the ioctl
/// leaves one behind, so the map is bounded and reused by key.
#[map]
static KFD_IOCTL_STASH: HashMap<u64, [u64; 2]> = HashMap::with_max_entries(1024, 0);

/// Per thread: the `struct queue *` given to `create_queue_cpsch` (nested inside the ioctl).
#[map]
static KFD_QUEUE_STASH: HashMap<u64, u64> = HashMap::with_max_entries(1024, 0);

#[no_mangle]
static KFD_LAYOUT: KfdLayout = KfdLayout::NONE;
#[no_mangle]
static USERQ_CREATE_LAYOUT: TpLayout = ZERO_LAYOUT;
#[no_mangle]
static USERQ_DESTROY_LAYOUT: TpLayout = ZERO_LAYOUT;
#[no_mangle]
static USERQ_FENCE_LAYOUT: TpLayout = ZERO_LAYOUT;
#[no_mangle]
static USERQ_STATE_LAYOUT: TpLayout = ZERO_LAYOUT;
#[no_mangle]
static USERQ_DONE_LAYOUT: TpLayout = ZERO_LAYOUT;
/// The dma_fence driver name of user-queue fences, NUL-padded.
#[no_mangle]
static USERQ_FENCE_DRIVER: [u8; 32] = *b"amdgpu_userq_fence\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// Reads a u32 at `base + off` into `slot` when the member exists; false if the read failed.
#[inline(always)]
fn read_u32(ev: &mut RawEvent, base: u64, off: u32, slot: usize) -> bool {
    if off == u32::MAX {
        return true;
    }
    // SAFETY: probe read of a kernel address.
    match unsafe { kread::<u32>(base, off) } {
        Ok(v) => {
            ev.set(slot, v as u64);
            true
        }
        Err(_) => false,
    }
}

/// Entry of `kfd_ioctl_*_queue(struct file *, struct kfd_process *p, void *data)`.
#[inline(always)]
fn stash_ioctl(ctx: &ProbeContext) -> u32 {
    let l: KfdLayout = vol(&KFD_LAYOUT);
    let p: u64 = ctx.arg(1).unwrap_or(0);
    let data: u64 = ctx.arg(2).unwrap_or(0);
    let mut pasid = u64::MAX;
    if l.process_pasid != u32::MAX && p != 0 {
        // SAFETY: probe read.
        if let Ok(v) = unsafe { kread::<u32>(p, l.process_pasid) } {
            pasid = v as u64;
        }
    }
    let _ = KFD_IOCTL_STASH.insert(bpf_get_current_pid_tgid(), [data, pasid], 0);
    0
}

/// The stashed (args, pasid) of this thread's ioctl, removed; args 0 when nothing was
/// stashed. A plain value rather than an `Option`: with an `Option` LLVM may spill the
/// payload only on the `Some` path and reload it on both, and 5.10's verifier rejects that
/// read of an uninitialised stack slot ("invalid read from stack").
#[inline(always)]
fn take_ioctl() -> [u64; 2] {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: read-only copy of a plain value.
    let v = unsafe { KFD_IOCTL_STASH.get(key) }
        .copied()
        .unwrap_or([0, u64::MAX]);
    let _ = KFD_IOCTL_STASH.remove(key);
    v
}

/// The submitter of a queue is watched by the exit probe like a CS submitter.
#[inline(always)]
fn watch_exit() {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = SEEN_TGIDS.insert(tgid, 1, 0);
}

#[kprobe]
pub fn hw_kfd_create_queue(ctx: ProbeContext) -> u32 {
    stash_ioctl(&ctx)
}

#[kretprobe]
pub fn hw_kfd_create_queue_ret(ctx: RetProbeContext) -> u32 {
    let r = ctx.ret::<i64>() as i32;
    let [args, pasid] = take_ioctl();
    let Some(mut e) = reserve(kind::KFD_QUEUE_CREATE) else {
        return 0;
    };
    // SAFETY: reserved slot, initialised by `reserve`.
    let ev = unsafe { &mut *e.as_mut_ptr() };
    ev.set(KqueueSlots::RET, r as i64 as u64);
    let l: KfdLayout = vol(&KFD_LAYOUT);
    if args == 0 || l.valid_ioctl == 0 {
        ev.flags |= flags::READ_FAILED;
    } else {
        if pasid != u64::MAX {
            ev.set(KqueueSlots::PASID, pasid);
        }
        let mut ok = read_u32(ev, args, l.create_gpu_id, KqueueSlots::GPU_ID);
        ok &= read_u32(ev, args, l.create_queue_type, KqueueSlots::QUEUE_TYPE);
        if r == 0 {
            ok &= read_u32(ev, args, l.create_queue_id, KqueueSlots::QUEUE_ID);
            // SAFETY: probe read.
            match unsafe { kread::<u64>(args, l.create_doorbell_offset) } {
                Ok(v) => ev.set(KqueueSlots::DOORBELL_OFFSET, v),
                Err(_) => ok = false,
            }
        }
        if !ok {
            ev.flags |= flags::READ_FAILED;
        }
    }
    if r == 0 {
        watch_exit();
    }
    e.submit(BPF_RB_FORCE_WAKEUP as u64);
    0
}

#[kprobe]
pub fn hw_kfd_destroy_queue(ctx: ProbeContext) -> u32 {
    stash_ioctl(&ctx)
}

#[kretprobe]
pub fn hw_kfd_destroy_queue_ret(ctx: RetProbeContext) -> u32 {
    let r = ctx.ret::<i64>() as i32;
    let [args, _] = take_ioctl();
    let Some(mut e) = reserve(kind::KFD_QUEUE_DESTROY) else {
        return 0;
    };
    // SAFETY: reserved slot, initialised by `reserve`.
    let ev = unsafe { &mut *e.as_mut_ptr() };
    ev.set(KqueueSlots::RET, r as i64 as u64);
    let l: KfdLayout = vol(&KFD_LAYOUT);
    if args == 0
        || l.valid_ioctl == 0
        || !read_u32(ev, args, l.destroy_queue_id, KqueueSlots::QUEUE_ID)
    {
        ev.flags |= flags::READ_FAILED;
    }
    e.submit(BPF_RB_FORCE_WAKEUP as u64);
    0
}

/// Entry of `create_queue_cpsch(dqm, struct queue *q, qpd, ...)`.
#[kprobe]
pub fn hw_kfd_queue_doorbell(ctx: ProbeContext) -> u32 {
    let q: u64 = ctx.arg(1).unwrap_or(0);
    let _ = KFD_QUEUE_STASH.insert(bpf_get_current_pid_tgid(), q, 0);
    0
}

#[kretprobe]
pub fn hw_kfd_queue_doorbell_ret(ctx: RetProbeContext) -> u32 {
    let r = ctx.ret::<i64>() as i32;
    let key = bpf_get_current_pid_tgid();
    // SAFETY: read-only copy of a plain value.
    let q = unsafe { KFD_QUEUE_STASH.get(key) }.copied().unwrap_or(0);
    let _ = KFD_QUEUE_STASH.remove(key);
    let l: KfdLayout = vol(&KFD_LAYOUT);
    if r != 0 || q == 0 || l.valid_queue == 0 {
        return 0; // nothing to add to what the ioctl probe reports
    }
    let Some(mut e) = reserve(kind::KFD_QUEUE_DOORBELL) else {
        return 0;
    };
    // SAFETY: reserved slot, initialised by `reserve`.
    let ev = unsafe { &mut *e.as_mut_ptr() };
    let mut ok = read_u32(ev, q, l.q_queue_id, KqueueSlots::QUEUE_ID);
    ok &= read_u32(ev, q, l.q_doorbell_off, KqueueSlots::DOORBELL);
    ok &= read_u32(ev, q, l.q_type, KqueueSlots::QUEUE_TYPE);
    if !ok {
        ev.flags |= flags::READ_FAILED;
    }
    e.submit(BPF_RB_FORCE_WAKEUP as u64);
    0
}

#[tracepoint]
pub fn hw_userq_create(ctx: TracePointContext) -> u32 {
    watch_exit();
    generic_tp(&ctx, &USERQ_CREATE_LAYOUT, kind::USERQ_CREATE)
}

#[tracepoint]
pub fn hw_userq_destroy(ctx: TracePointContext) -> u32 {
    generic_tp(&ctx, &USERQ_DESTROY_LAYOUT, kind::USERQ_DESTROY)
}

#[tracepoint]
pub fn hw_userq_fence(ctx: TracePointContext) -> u32 {
    generic_tp(&ctx, &USERQ_FENCE_LAYOUT, kind::USERQ_FENCE)
}

#[tracepoint]
pub fn hw_userq_state(ctx: TracePointContext) -> u32 {
    generic_tp(&ctx, &USERQ_STATE_LAYOUT, kind::USERQ_STATE)
}

/// `dma_fence:dma_fence_signaled` for user-queue fences only (every fence passes here: the
/// driver name is compared first).
#[tracepoint]
pub fn hw_userq_fence_signaled(ctx: TracePointContext) -> u32 {
    let mut drv = [0u8; 32];
    if !read_tp_str(&ctx, vol(&USERQ_DONE_LAYOUT.fields[slot::DRIVER]), &mut drv) {
        return 0;
    }
    let want: [u8; 32] = vol(&USERQ_FENCE_DRIVER);
    let mut i = 0;
    while i < 32 {
        if drv[i] != want[i] {
            return 0;
        }
        if want[i] == 0 {
            break;
        }
        i += 1;
    }
    generic_tp(&ctx, &USERQ_DONE_LAYOUT, kind::USERQ_FENCE_DONE)
}
