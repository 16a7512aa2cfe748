//! `RawEvent` → [`Event`]: reads each kind's named slots (`agent_common::JobSlots`, ...,
//! documented in `docs/events.md`). Unknown kinds are counted, never guessed at.
use agent_common::{
    flags, kind, FaultSlots, FenceSlots, GrabSlots, JobSlots, KjobSlots, KqueueSlots, PasidSlots,
    RawEvent, RetSlots, UserqSlots,
};

use hangwatch_core::model::{
    Clock, Event, EventBody, FaultInfo, JobKey, QueueInfo, QueueKind, QueueOrigin, Source, Task,
    UserqFence,
};

/// Number of known kinds + 1 (index 0 = unknown).
pub const KINDS: usize = kind::USERQ_FENCE_DONE as usize + 1;

/// Human name of a kind for stats lines.
pub fn kind_name(k: u32) -> &'static str {
    match k {
        kind::CS_IOCTL => "cs_ioctl",
        kind::SCHED_RUN_JOB => "sched_run_job",
        kind::SCHED_QUEUE => "sched_queue",
        kind::SCHED_RUN => "sched_run",
        kind::SCHED_DONE => "sched_done",
        kind::FENCE_INIT => "fence_init",
        kind::FENCE_SIGNALED => "fence_signaled",
        kind::VM_GRAB_ID => "vm_grab_id",
        kind::PASID_ALLOC => "pasid_alloc",
        kind::PASID_FREE => "pasid_free",
        kind::VM_FAULT => "vm_fault",
        kind::JOB_TIMEDOUT => "job_timedout",
        kind::RESET_BEGIN => "reset_begin",
        kind::RESET_END => "reset_end",
        kind::CS_REJECTED => "cs_rejected",
        kind::PROCESS_EXIT => "process_exit",
        kind::KFD_QUEUE_CREATE => "kfd_queue_create",
        kind::KFD_QUEUE_DESTROY => "kfd_queue_destroy",
        kind::KFD_QUEUE_DOORBELL => "kfd_queue_doorbell",
        kind::USERQ_CREATE => "userq_create",
        kind::USERQ_DESTROY => "userq_destroy",
        kind::USERQ_FENCE => "userq_fence",
        kind::USERQ_STATE => "userq_state",
        kind::USERQ_FENCE_DONE => "userq_fence_done",
        _ => "unknown",
    }
}

/// Decoder with per-kind counters.
#[derive(Clone, Debug, Default)]
pub struct Decoder {
    /// Index = kind; index 0 counts unknown kinds.
    pub counts: [u64; KINDS],
    /// Records shorter than a RawEvent.
    pub short: u64,
}

/// Reads a RawEvent from ring-buffer bytes (unaligned-safe); `None` if too short.
pub fn raw_from_bytes(b: &[u8]) -> Option<RawEvent> {
    if b.len() < std::mem::size_of::<RawEvent>() {
        return None;
    }
    // SAFETY: length checked; RawEvent is plain #[repr(C)] data valid for any bit pattern.
    Some(unsafe { std::ptr::read_unaligned(b.as_ptr() as *const RawEvent) })
}

/// NUL-terminated bytes → String (lossy).
fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn task(r: &RawEvent) -> Task {
    Task::new(r.tgid, r.tid, cstr(&r.comm))
}

fn has_flag(r: &RawEvent, f: u32) -> bool {
    r.flags & f != 0
}

/// Job identity from a scheduler/amdgpu job event ([`JobSlots`]).
fn job_key(r: &RawEvent) -> JobKey {
    let (context, seqno) = fence_key(r, JobSlots::CONTEXT, JobSlots::SEQNO);
    JobKey {
        context,
        seqno,
        sched_job_id: r.get(JobSlots::JOB_ID),
        sched_fence: r.get(JobSlots::FENCE),
    }
}

/// Job identity read by a kprobe ([`KjobSlots`]); the `drm_sched_job` pointer is not the
/// scheduler-fence pointer the legacy events join on, so it is not offered as one.
fn kjob_key(r: &RawEvent) -> JobKey {
    let (context, seqno) = fence_key(r, KjobSlots::CONTEXT, KjobSlots::SEQNO);
    JobKey {
        context,
        seqno,
        sched_job_id: r.get(KjobSlots::JOB_ID),
        sched_fence: None,
    }
}

/// A fence key is a pair: both halves or neither.
fn fence_key(r: &RawEvent, c: usize, s: usize) -> (Option<u64>, Option<u64>) {
    match (r.get(c), r.get(s)) {
        (Some(c), Some(s)) => (Some(c), Some(s)),
        _ => (None, None),
    }
}

fn word(r: &RawEvent, slot: usize) -> u64 {
    r.get(slot).unwrap_or(0)
}

fn opt_ring(r: &RawEvent) -> Option<String> {
    Some(cstr(&r.ring)).filter(|s| !s.is_empty())
}

impl Decoder {
    pub fn decode_bytes(&mut self, b: &[u8]) -> Option<Event> {
        match raw_from_bytes(b) {
            Some(r) => self.decode(&r),
            None => {
                self.short += 1;
                None
            }
        }
    }

    pub fn decode(&mut self, r: &RawEvent) -> Option<Event> {
        let body = body(r);
        let idx = if body.is_some() { r.kind as usize } else { 0 };
        self.counts[idx] += 1;
        Some(Event {
            t_ns: r.ts_ns,
            clock: Clock::Monotonic,
            source: Source::Ebpf,
            // The device the kernel named (7.x tracepoint `dev`, or a BTF read); the rest is
            // labelled by `devices::Labeler`.
            gpu: Some(cstr(&r.dev)).filter(|d| !d.is_empty()),
            body: body?,
        })
    }
}

fn body(r: &RawEvent) -> Option<EventBody> {
    let ring = cstr(&r.ring);
    Some(match r.kind {
        kind::CS_IOCTL => EventBody::Submit {
            task: task(r),
            ring,
            job: job_key(r),
            num_ibs: word(r, JobSlots::NUM_IBS) as u32,
        },
        kind::SCHED_QUEUE => EventBody::SchedQueued {
            task: task(r),
            ring,
            job: job_key(r),
            client_id: r.get(JobSlots::CLIENT_ID),
        },
        kind::SCHED_RUN_JOB | kind::SCHED_RUN => EventBody::RunJob {
            ring,
            job: job_key(r),
            worker_tid: r.tid,
        },
        kind::SCHED_DONE => EventBody::JobDone { job: job_key(r) },
        kind::FENCE_INIT => EventBody::HwFenceEmitted {
            ring,
            context: word(r, FenceSlots::CONTEXT),
            seqno: word(r, FenceSlots::SEQNO),
            emitter_tid: r.tid,
        },
        kind::FENCE_SIGNALED => EventBody::HwFenceSignaled {
            ring,
            context: word(r, FenceSlots::CONTEXT),
            seqno: word(r, FenceSlots::SEQNO),
        },
        kind::VM_GRAB_ID => EventBody::VmGrabId {
            ring,
            pasid: word(r, GrabSlots::PASID) as u32,
            vmid: word(r, GrabSlots::VMID) as u32,
            worker_tid: r.tid,
        },
        kind::PASID_ALLOC => EventBody::PasidAllocated {
            pasid: word(r, PasidSlots::PASID) as u32,
            task: task(r),
        },
        kind::PASID_FREE => EventBody::PasidFreed {
            pasid: word(r, PasidSlots::PASID) as u32,
        },
        kind::VM_FAULT => EventBody::VmFault(fault(r)),
        kind::JOB_TIMEDOUT => EventBody::JobTimedOut {
            ring: opt_ring(r),
            job: kjob_key(r),
            pasid: kprobe_pasid(r),
        },
        kind::RESET_BEGIN => {
            let with_job = r.get(KjobSlots::WITH_JOB) == Some(1);
            EventBody::ResetBegin {
                job: with_job.then(|| kjob_key(r)),
                pasid: kprobe_pasid(r).filter(|_| with_job),
                ring: opt_ring(r),
                reset_source: r.get(KjobSlots::RESET_SRC).map(|s| s as u32),
            }
        }
        kind::RESET_END => EventBody::ResetEnd {
            result: word(r, RetSlots::RET) as i64,
        },
        kind::CS_REJECTED => EventBody::SubmitRejected {
            task: task(r),
            errno: word(r, RetSlots::RET) as i64,
        },
        kind::PROCESS_EXIT => EventBody::ProcessExit { task: task(r) },
        kind::KFD_QUEUE_CREATE | kind::KFD_QUEUE_DOORBELL => EventBody::QueueCreated(kfd_queue(r)),
        kind::KFD_QUEUE_DESTROY => EventBody::QueueDestroyed(kfd_queue(r)),
        kind::USERQ_CREATE => EventBody::QueueCreated(userq(r)),
        kind::USERQ_DESTROY => EventBody::QueueDestroyed(userq(r)),
        kind::USERQ_FENCE => EventBody::UserqFence(UserqFence {
            task: task(r),
            doorbell: word(r, UserqSlots::DOORBELL),
            client_id: word(r, UserqSlots::CLIENT_ID),
            queue_type: word(r, UserqSlots::QUEUE_TYPE) as u32,
            context: word(r, UserqSlots::CONTEXT),
            seqno: word(r, UserqSlots::SEQNO),
        }),
        kind::USERQ_FENCE_DONE => {
            let (context, seqno) = fence_key(r, FenceSlots::CONTEXT, FenceSlots::SEQNO);
            EventBody::JobDone {
                job: JobKey {
                    context,
                    seqno,
                    ..JobKey::default()
                },
            }
        }
        kind::USERQ_STATE => EventBody::UserqState {
            doorbell: word(r, UserqSlots::DOORBELL),
            client_id: word(r, UserqSlots::CLIENT_ID),
            queue_type: word(r, UserqSlots::QUEUE_TYPE) as u32,
            to: word(r, UserqSlots::STATE) as u32,
        },
        _ => return None,
    })
}

/// A kprobe's pasid, only when every BTF read succeeded (a failed read leaves stale zeros).
fn kprobe_pasid(r: &RawEvent) -> Option<u32> {
    let ok = !has_flag(r, flags::READ_FAILED);
    r.get(KjobSlots::PASID)
        .map(|p| p as u32)
        .filter(|&p| ok && p != 0)
}

/// A KFD queue from the ioctl or `create_queue_cpsch` probes ([`KqueueSlots`]). The queue id
/// is kept only when the call succeeded (destroy: also -ETIME, after which KFD frees the queue
/// anyway), so a failed call never creates or removes a table entry.
fn kfd_queue(r: &RawEvent) -> QueueInfo {
    let ret = r.get(KqueueSlots::RET).map_or(0, |v| v as i64);
    let gone = ret == 0 || (r.kind == kind::KFD_QUEUE_DESTROY && ret == -62);
    let doorbell_probe = r.kind == kind::KFD_QUEUE_DOORBELL;
    let qtype = r.get(KqueueSlots::QUEUE_TYPE);
    QueueInfo {
        task: task(r),
        origin: Some(QueueOrigin::Kfd),
        // uapi KFD_IOC_QUEUE_TYPE_*: 0 compute, 1 SDMA, 2 compute AQL, 3 SDMA XGMI; KFD's
        // internal type (doorbell probe): 0 compute, 1 SDMA, others moved between kernels.
        kind: qtype.map(|t| match (doorbell_probe, t) {
            (_, 0) | (false, 2) => QueueKind::Compute,
            (_, 1) | (false, 3) => QueueKind::Sdma,
            _ => QueueKind::Other,
        }),
        queue_id: r
            .get(KqueueSlots::QUEUE_ID)
            .filter(|_| gone)
            .map(|q| q as u32),
        gpu_id: r.get(KqueueSlots::GPU_ID).map(|g| g as u32),
        doorbell: r.get(KqueueSlots::DOORBELL),
        doorbell_offset: r.get(KqueueSlots::DOORBELL_OFFSET),
        pasid: r.get(KqueueSlots::PASID).map(|p| p as u32),
        client_id: None,
    }
}

/// A 7.x user queue from its create/destroy tracepoint; only successful ones count.
fn userq(r: &RawEvent) -> QueueInfo {
    let ok = r.get(UserqSlots::RESULT).is_none_or(|v| v as i32 == 0);
    QueueInfo {
        task: task(r),
        origin: Some(QueueOrigin::Userq),
        kind: r
            .get(UserqSlots::QUEUE_TYPE)
            .map(|t| hangwatch_core::model::QueueKind::from_userq_ip(t as u32)),
        doorbell: r.get(UserqSlots::DOORBELL).filter(|_| ok),
        ..QueueInfo::default()
    }
}

/// `amdgpu_iv` → [`FaultInfo`]; address and flag bits per gmc_v9+ (see [`FaultSlots`]).
fn fault(r: &RawEvent) -> FaultInfo {
    let f = r.fault();
    let (d0, d1) = (f.src_data0, f.src_data1);
    FaultInfo {
        hub: if f.vmid_src == 0 {
            "gfxhub".into()
        } else {
            "mmhub".into()
        },
        pasid: f.pasid as u32,
        vmid: f.vmid as u32,
        src_id: Some(f.src_id as u32),
        ring_id: r.get(FaultSlots::RING_ID).map(|v| v as u32),
        address: Some(((d0 & 0xffff_ffff) << 12) | ((d1 & 0xf) << 44)),
        retry: Some(d1 & 0x80 != 0),
        write: Some(d1 & 0x20 != 0),
        client: None,
        status: None,
        status_fields: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(k: u32) -> RawEvent {
        let mut r = RawEvent::zeroed();
        r.kind = k;
        r.ts_ns = 42;
        r.tgid = 100;
        r.tid = 101;
        r.comm[..4].copy_from_slice(b"zed\0");
        r.ring[..9].copy_from_slice(b"gfx_0.0.0");
        r
    }

    #[test]
    fn submit_with_61_keys() {
        let mut r = raw(kind::CS_IOCTL);
        r.set(JobSlots::CONTEXT, 7);
        r.set(JobSlots::SEQNO, 9);
        r.set(JobSlots::JOB_ID, 1234);
        r.set(JobSlots::NUM_IBS, 2);
        let mut d = Decoder::default();
        let e = d.decode(&r).unwrap();
        assert_eq!(
            (e.t_ns, e.source, e.clock),
            (42, Source::Ebpf, Clock::Monotonic)
        );
        match e.body {
            EventBody::Submit {
                task,
                ring,
                job,
                num_ibs,
            } => {
                assert_eq!((task.pid, task.tid, task.comm.as_str()), (100, 101, "zed"));
                assert_eq!(ring, "gfx_0.0.0");
                assert_eq!(
                    job,
                    JobKey {
                        context: Some(7),
                        seqno: Some(9),
                        sched_job_id: Some(1234),
                        sched_fence: None
                    }
                );
                assert_eq!(num_ibs, 2);
            }
            b => panic!("{b:?}"),
        }
        assert_eq!(d.counts[kind::CS_IOCTL as usize], 1);
    }

    #[test]
    fn queue_617_client_id_is_not_a_job_id() {
        let mut r = raw(kind::SCHED_QUEUE);
        r.set(JobSlots::CONTEXT, 1);
        r.set(JobSlots::SEQNO, 2);
        r.set(JobSlots::CLIENT_ID, 55);
        match Decoder::default().decode(&r).unwrap().body {
            EventBody::SchedQueued { job, client_id, .. } => {
                assert_eq!(client_id, Some(55));
                assert_eq!(job.sched_job_id, None);
                assert_eq!((job.context, job.seqno), (Some(1), Some(2)));
            }
            b => panic!("{b:?}"),
        }
    }

    #[test]
    fn legacy_done_joins_by_fence_pointer() {
        let mut r = raw(kind::SCHED_DONE);
        r.set(JobSlots::FENCE, 0xffff_8880_1234_5678);
        match Decoder::default().decode(&r).unwrap().body {
            EventBody::JobDone { job } => {
                assert_eq!(job.sched_fence, Some(0xffff_8880_1234_5678));
                assert_eq!(job.context, None);
            }
            b => panic!("{b:?}"),
        }
    }

    #[test]
    fn half_a_fence_key_is_no_key() {
        let mut r = raw(kind::SCHED_RUN);
        r.set(JobSlots::CONTEXT, 0);
        match Decoder::default().decode(&r).unwrap().body {
            EventBody::RunJob { job, .. } => assert_eq!((job.context, job.seqno), (None, None)),
            b => panic!("{b:?}"),
        }
    }

    #[test]
    fn vm_fault_address_and_bits() {
        let mut r = raw(kind::VM_FAULT);
        r.set(FaultSlots::PASID, 32770);
        r.set(FaultSlots::VMID, 3);
        r.set(FaultSlots::VMID_SRC, 1); // mmhub
        r.set(FaultSlots::CLIENT_ID, 0x1b);
        r.set(FaultSlots::SRC_ID, 0);
        r.set(FaultSlots::SRC_DATA0, 0x0001_2345);
        r.set(FaultSlots::SRC_DATA1, 0x80 | 0x20 | 0x3);
        let f = match Decoder::default().decode(&r).unwrap().body {
            EventBody::VmFault(f) => f,
            b => panic!("{b:?}"),
        };
        assert_eq!(f.hub, "mmhub");
        assert_eq!(f.address, Some((0x12345u64 << 12) | (3u64 << 44)));
        assert_eq!(
            (f.retry, f.write, f.pasid, f.vmid, f.ring_id),
            (Some(true), Some(true), 32770, 3, None)
        );
    }

    #[test]
    fn kprobe_events() {
        let mut r = raw(kind::JOB_TIMEDOUT);
        r.flags = flags::READ_FAILED;
        r.set(KjobSlots::CONTEXT, 5);
        r.set(KjobSlots::SEQNO, 6);
        r.set(KjobSlots::S_JOB, 0xffff_0000);
        r.set(KjobSlots::PASID, 9);
        match Decoder::default().decode(&r).unwrap().body {
            EventBody::JobTimedOut { ring, pasid, job } => {
                assert_eq!(ring.as_deref(), Some("gfx_0.0.0"));
                assert_eq!(pasid, None, "a failed read must not yield a pasid");
                assert_eq!(job.sched_fence, None);
                assert_eq!(job.context, Some(5));
            }
            b => panic!("{b:?}"),
        }
        // (job passed, pasid, reset source) of a RESET_BEGIN with these words set.
        let reset = |words: &[(usize, u64)]| {
            let mut r = raw(kind::RESET_BEGIN);
            for &(slot, v) in words {
                r.set(slot, v);
            }
            match Decoder::default().decode(&r).unwrap().body {
                EventBody::ResetBegin {
                    job,
                    reset_source,
                    pasid,
                    ..
                } => (job.is_some(), pasid, reset_source),
                b => panic!("{b:?}"),
            }
        };
        // No job, no pasid.
        let no_job = reset(&[(KjobSlots::RESET_SRC, 1), (KjobSlots::PASID, 9)]);
        assert_eq!(no_job, (false, None, Some(1)));
        let with_job = reset(&[(KjobSlots::WITH_JOB, 1), (KjobSlots::PASID, 9)]);
        assert_eq!(with_job, (true, Some(9), None));
        let mut r = raw(kind::CS_REJECTED);
        r.set(RetSlots::RET, (-125i64) as u64);
        assert!(matches!(
            Decoder::default().decode(&r).unwrap().body,
            EventBody::SubmitRejected { errno: -125, .. }
        ));
    }

    #[test]
    fn slot_constants_name_distinct_words() {
        let mut w = [
            JobSlots::CONTEXT,
            JobSlots::SEQNO,
            JobSlots::JOB_ID,
            JobSlots::CLIENT_ID,
            JobSlots::FENCE,
            JobSlots::NUM_IBS,
        ];
        w.sort();
        assert!(w.windows(2).all(|p| p[0] != p[1]));
        assert_eq!(FaultSlots::SRC_DATA1, agent_common::slot::COUNT - 1);
        let mut r = RawEvent::zeroed();
        r.set(agent_common::slot::RING, 1); // a string slot is not a word: ignored
        assert_eq!(r.present, 0);
    }

    #[test]
    fn unknown_kinds_and_short_records_are_counted() {
        let mut d = Decoder::default();
        assert!(d.decode(&raw(999)).is_none());
        assert!(d.decode_bytes(&[0u8; 10]).is_none());
        assert_eq!((d.counts[0], d.short), (1, 1));
        let r = raw(kind::PASID_FREE);
        // SAFETY: (test) view a RawEvent as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                &r as *const RawEvent as *const u8,
                std::mem::size_of::<RawEvent>(),
            )
        };
        assert!(matches!(
            d.decode_bytes(bytes).unwrap().body,
            EventBody::PasidFreed { pasid: 0 }
        ));
    }
}
