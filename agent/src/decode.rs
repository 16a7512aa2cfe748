//! `RawEvent` → [`Event`]: reads each kind's named slots (`agent_common::JobSlots`, ...,
//! documented in `docs/events.md`). Unknown kinds are counted, never guessed at.
use agent_common::{
    flags, EventKind, FaultSlots, FenceSlots, GrabSlots, JobSlots, KjobSlots, KqueueSlots,
    PasidSlots, RawEvent, RetSlots, UserqSlots,
};

use hangwatch_core::model::{
    Clock, Event, EventBody, FaultInfo, JobKey, QueueInfo, QueueKind, QueueOrigin, Source, Task,
    UserqFence,
};

/// Number of known kinds + 1 (index 0 = unknown).
pub const KINDS: usize = EventKind::ALL.len() + 1;

/// Human name of a wire kind for stats lines.
pub fn kind_name(k: u32) -> &'static str {
    EventKind::try_from(k).map_or("unknown", event_kind_name)
}

fn event_kind_name(k: EventKind) -> &'static str {
    match k {
        EventKind::CsIoctl => "cs_ioctl",
        EventKind::SchedRunJob => "sched_run_job",
        EventKind::SchedQueue => "sched_queue",
        EventKind::SchedRun => "sched_run",
        EventKind::SchedDone => "sched_done",
        EventKind::FenceInit => "fence_init",
        EventKind::FenceSignaled => "fence_signaled",
        EventKind::VmGrabId => "vm_grab_id",
        EventKind::PasidAlloc => "pasid_alloc",
        EventKind::PasidFree => "pasid_free",
        EventKind::VmFault => "vm_fault",
        EventKind::JobTimedout => "job_timedout",
        EventKind::ResetBegin => "reset_begin",
        EventKind::ResetEnd => "reset_end",
        EventKind::CsRejected => "cs_rejected",
        EventKind::ProcessExit => "process_exit",
        EventKind::KfdQueueCreate => "kfd_queue_create",
        EventKind::KfdQueueDestroy => "kfd_queue_destroy",
        EventKind::KfdQueueDoorbell => "kfd_queue_doorbell",
        EventKind::UserqCreate => "userq_create",
        EventKind::UserqDestroy => "userq_destroy",
        EventKind::UserqFence => "userq_fence",
        EventKind::UserqState => "userq_state",
        EventKind::UserqFenceDone => "userq_fence_done",
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
/// A NUL-padded kernel string (comm, ring, device name) as text.
pub(crate) fn cstr(b: &[u8]) -> String {
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
    let kind = EventKind::try_from(r.kind).ok()?;
    Some(match kind {
        EventKind::CsIoctl => EventBody::Submit {
            task: task(r),
            ring,
            job: job_key(r),
            num_ibs: word(r, JobSlots::NUM_IBS) as u32,
        },
        EventKind::SchedQueue => EventBody::SchedQueued {
            task: task(r),
            ring,
            job: job_key(r),
            client_id: r.get(JobSlots::CLIENT_ID),
        },
        EventKind::SchedRunJob | EventKind::SchedRun => EventBody::RunJob {
            ring,
            job: job_key(r),
            worker_tid: r.tid,
        },
        EventKind::SchedDone => EventBody::JobDone { job: job_key(r) },
        EventKind::FenceInit => EventBody::HwFenceEmitted {
            ring,
            context: word(r, FenceSlots::CONTEXT),
            seqno: word(r, FenceSlots::SEQNO),
            emitter_tid: r.tid,
        },
        EventKind::FenceSignaled => EventBody::HwFenceSignaled {
            ring,
            context: word(r, FenceSlots::CONTEXT),
            seqno: word(r, FenceSlots::SEQNO),
        },
        EventKind::VmGrabId => EventBody::VmGrabId {
            ring,
            pasid: word(r, GrabSlots::PASID) as u32,
            vmid: word(r, GrabSlots::VMID) as u32,
            worker_tid: r.tid,
        },
        EventKind::PasidAlloc => EventBody::PasidAllocated {
            pasid: word(r, PasidSlots::PASID) as u32,
            task: task(r),
        },
        EventKind::PasidFree => EventBody::PasidFreed {
            pasid: word(r, PasidSlots::PASID) as u32,
        },
        EventKind::VmFault => EventBody::VmFault(fault(r)),
        EventKind::JobTimedout => EventBody::JobTimedOut {
            ring: opt_ring(r),
            job: kjob_key(r),
            pasid: kprobe_pasid(r),
        },
        EventKind::ResetBegin => {
            let with_job = r.get(KjobSlots::WITH_JOB) == Some(1);
            EventBody::ResetBegin {
                job: with_job.then(|| kjob_key(r)),
                pasid: kprobe_pasid(r).filter(|_| with_job),
                ring: opt_ring(r),
                reset_source: r.get(KjobSlots::RESET_SRC).map(|s| s as u32),
            }
        }
        EventKind::ResetEnd => EventBody::ResetEnd {
            result: word(r, RetSlots::RET) as i64,
        },
        EventKind::CsRejected => EventBody::SubmitRejected {
            task: task(r),
            errno: word(r, RetSlots::RET) as i64,
        },
        EventKind::ProcessExit => EventBody::ProcessExit { task: task(r) },
        EventKind::KfdQueueCreate | EventKind::KfdQueueDoorbell => {
            EventBody::QueueCreated(kfd_queue(r))
        }
        EventKind::KfdQueueDestroy => EventBody::QueueDestroyed(kfd_queue(r)),
        EventKind::UserqCreate => EventBody::QueueCreated(userq(r)),
        EventKind::UserqDestroy => EventBody::QueueDestroyed(userq(r)),
        EventKind::UserqFence => EventBody::UserqFence(UserqFence {
            task: task(r),
            doorbell: word(r, UserqSlots::DOORBELL),
            client_id: word(r, UserqSlots::CLIENT_ID),
            queue_type: word(r, UserqSlots::QUEUE_TYPE) as u32,
            context: word(r, UserqSlots::CONTEXT),
            seqno: word(r, UserqSlots::SEQNO),
        }),
        EventKind::UserqFenceDone => {
            let (context, seqno) = fence_key(r, FenceSlots::CONTEXT, FenceSlots::SEQNO);
            EventBody::JobDone {
                job: JobKey {
                    context,
                    seqno,
                    ..JobKey::default()
                },
            }
        }
        EventKind::UserqState => EventBody::UserqState {
            doorbell: word(r, UserqSlots::DOORBELL),
            client_id: word(r, UserqSlots::CLIENT_ID),
            queue_type: word(r, UserqSlots::QUEUE_TYPE) as u32,
            to: word(r, UserqSlots::STATE) as u32,
        },
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
    let gone = ret == 0 || (r.kind == EventKind::KfdQueueDestroy as u32 && ret == -62);
    let doorbell_probe = r.kind == EventKind::KfdQueueDoorbell as u32;
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
    use agent_common::kind;

    /// `NAME = value` of every `pub const NAME: u32 = value;` in agent-common's `kind` module.
    fn wire_constants() -> Vec<(String, u32)> {
        let src = include_str!("../../agent-common/src/lib.rs");
        let start = src
            .find("pub mod kind {")
            .expect("agent-common declares `mod kind`");
        let module = &src[start..start + src[start..].find("\n}").expect("mod kind ends")];
        module
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub const "))
            .map(|l| {
                let (name, rest) = l.split_once(": u32 = ").expect("kind consts are u32");
                let value = rest.trim_end_matches(';').parse().expect("a literal value");
                (name.to_string(), value)
            })
            .collect()
    }

    /// Every `kind::NAME` the eBPF programs emit, read from their sources.
    fn ebpf_kinds() -> Vec<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../agent-ebpf/src");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).expect("agent-ebpf/src") {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for (at, _) in text.match_indices("kind::") {
                let name: String = text[at + 6..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    names.push(name);
                }
            }
        }
        names
    }

    /// The wire constants, the enum and the eBPF side agree: each constant has a variant (and
    /// so an arm in the exhaustive `body` match), each variant a constant, and each kind the
    /// eBPF programs emit is one of them.
    #[test]
    fn every_ebpf_kind_has_a_variant_and_a_decode_arm() {
        let consts = wire_constants();
        assert_eq!(consts.len(), EventKind::ALL.len(), "{consts:?}");
        for (name, value) in &consts {
            let k = EventKind::try_from(*value)
                .unwrap_or_else(|v| panic!("kind::{name} = {v} has no EventKind variant"));
            assert_eq!(k as u32, *value);
            assert_ne!(kind_name(*value), "unknown", "kind::{name}");
            let mut r = raw(*value);
            r.ring[0] = b'x';
            assert!(
                Decoder::default().decode(&r).is_some(),
                "kind::{name} does not decode"
            );
        }
        let used = ebpf_kinds();
        assert!(used.len() >= 20, "found only {used:?} in agent-ebpf/src");
        for name in used {
            assert!(
                consts.iter().any(|(n, _)| *n == name),
                "agent-ebpf emits kind::{name}, which agent-common does not declare"
            );
        }
        assert!(EventKind::try_from(0).is_err());
        assert!(EventKind::try_from(EventKind::ALL.len() as u32 + 1).is_err());
    }

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
