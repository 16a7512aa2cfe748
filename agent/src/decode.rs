//! `RawEvent` → [`Event`]: the one place that knows what each generic slot means per kind
//! (documented in `docs/events.md`). Unknown kinds are counted, never guessed at.
use agent_common::{flags, kind, RawEvent};

use crate::model::{Clock, Event, EventBody, FaultInfo, JobKey, Source, Task};

/// Number of known kinds + 1 (index 0 = unknown).
pub const KINDS: usize = kind::PROCESS_EXIT as usize + 1;

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

fn has(r: &RawEvent, f: u32) -> bool {
    r.flags & f != 0
}

/// Job identity from the generic slots.
fn job_key(r: &RawEvent) -> JobKey {
    let fence = has(r, flags::HAS_FENCE_KEY);
    let id = has(r, flags::HAS_JOB_ID) && !has(r, flags::JOB_ID_IS_CLIENT);
    JobKey {
        context: fence.then_some(r.context),
        seqno: fence.then_some(r.seqno),
        sched_job_id: id.then_some(r.job_id),
        sched_fence: has(r, flags::HAS_PTR).then_some(r.ptr),
    }
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
            gpu: None,
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
            num_ibs: r.arg[0] as u32,
        },
        kind::SCHED_QUEUE => EventBody::SchedQueued {
            task: task(r),
            ring,
            job: job_key(r),
            client_id: (has(r, flags::JOB_ID_IS_CLIENT) && has(r, flags::HAS_JOB_ID))
                .then_some(r.job_id),
        },
        kind::SCHED_RUN_JOB | kind::SCHED_RUN => EventBody::RunJob {
            ring,
            job: job_key(r),
            worker_tid: r.tid,
        },
        kind::SCHED_DONE => EventBody::JobDone { job: job_key(r) },
        kind::FENCE_INIT => EventBody::HwFenceEmitted {
            ring,
            context: r.context,
            seqno: r.seqno,
            emitter_tid: r.tid,
        },
        kind::FENCE_SIGNALED => EventBody::HwFenceSignaled {
            ring,
            context: r.context,
            seqno: r.seqno,
        },
        kind::VM_GRAB_ID => EventBody::VmGrabId {
            ring,
            pasid: r.pasid,
            vmid: r.vmid,
            worker_tid: r.tid,
        },
        kind::PASID_ALLOC => EventBody::PasidAllocated {
            pasid: r.pasid,
            task: task(r),
        },
        kind::PASID_FREE => EventBody::PasidFreed { pasid: r.pasid },
        kind::VM_FAULT => EventBody::VmFault(fault(r)),
        kind::JOB_TIMEDOUT => {
            let ok = !has(r, flags::READ_FAILED);
            let job = JobKey {
                sched_fence: None,
                ..job_key(r)
            };
            EventBody::JobTimedOut {
                ring: opt_ring(r),
                job,
                pasid: (ok && r.pasid != 0).then_some(r.pasid),
            }
        }
        kind::RESET_BEGIN => {
            let with_job = r.arg[2] == 1;
            let ok = !has(r, flags::READ_FAILED);
            EventBody::ResetBegin {
                job: with_job.then(|| JobKey {
                    sched_fence: None,
                    ..job_key(r)
                }),
                pasid: (with_job && ok && r.pasid != 0).then_some(r.pasid),
                ring: opt_ring(r),
                reset_source: (r.arg[1] == 1).then_some(r.arg[0] as u32),
            }
        }
        kind::RESET_END => EventBody::ResetEnd {
            result: r.arg[0] as i64,
        },
        kind::CS_REJECTED => EventBody::SubmitRejected {
            task: task(r),
            errno: r.arg[0] as i64,
        },
        kind::PROCESS_EXIT => EventBody::ProcessExit { task: task(r) },
        _ => return None,
    })
}

/// `amdgpu_iv` slots (see catalogue): context = vmid_src, job_id = ring_id, arg0 client_id,
/// arg1 src_id, arg2/arg3 src_data[0]/[1]. Address and flag bits per gmc_v9+ (§1.2).
fn fault(r: &RawEvent) -> FaultInfo {
    let (d0, d1) = (r.arg[2], r.arg[3]);
    FaultInfo {
        hub: if r.context == 0 {
            "gfxhub".into()
        } else {
            "mmhub".into()
        },
        pasid: r.pasid,
        vmid: r.vmid,
        src_id: Some(r.arg[1] as u32),
        ring_id: has(r, flags::HAS_JOB_ID).then_some(r.job_id as u32),
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
        r.flags = flags::HAS_FENCE_KEY | flags::HAS_JOB_ID;
        r.context = 7;
        r.seqno = 9;
        r.job_id = 1234;
        r.arg[0] = 2;
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
        r.flags = flags::HAS_FENCE_KEY | flags::HAS_JOB_ID | flags::JOB_ID_IS_CLIENT;
        r.job_id = 55;
        match Decoder::default().decode(&r).unwrap().body {
            EventBody::SchedQueued { job, client_id, .. } => {
                assert_eq!(client_id, Some(55));
                assert_eq!(job.sched_job_id, None);
            }
            b => panic!("{b:?}"),
        }
    }

    #[test]
    fn legacy_done_joins_by_fence_pointer() {
        let mut r = raw(kind::SCHED_DONE);
        r.flags = flags::HAS_PTR;
        r.ptr = 0xffff_8880_1234_5678;
        match Decoder::default().decode(&r).unwrap().body {
            EventBody::JobDone { job } => {
                assert_eq!(job.sched_fence, Some(0xffff_8880_1234_5678));
                assert_eq!(job.context, None);
            }
            b => panic!("{b:?}"),
        }
    }

    #[test]
    fn vm_fault_address_and_bits() {
        let mut r = raw(kind::VM_FAULT);
        r.pasid = 32770;
        r.vmid = 3;
        r.context = 1; // vmid_src: mmhub
        r.arg = [0x1b, 0, 0x0001_2345, 0x80 | 0x20 | 0x3];
        let f = match Decoder::default().decode(&r).unwrap().body {
            EventBody::VmFault(f) => f,
            b => panic!("{b:?}"),
        };
        assert_eq!(f.hub, "mmhub");
        assert_eq!(f.address, Some((0x12345u64 << 12) | (3u64 << 44)));
        assert_eq!(
            (f.retry, f.write, f.pasid, f.vmid),
            (Some(true), Some(true), 32770, 3)
        );
    }

    #[test]
    fn kprobe_events() {
        let mut r = raw(kind::JOB_TIMEDOUT);
        r.flags = flags::HAS_FENCE_KEY | flags::HAS_PTR | flags::READ_FAILED;
        r.pasid = 9;
        match Decoder::default().decode(&r).unwrap().body {
            EventBody::JobTimedOut { ring, pasid, job } => {
                assert_eq!(ring.as_deref(), Some("gfx_0.0.0"));
                assert_eq!(pasid, None, "a failed read must not yield a pasid");
                assert_eq!(job.sched_fence, None);
            }
            b => panic!("{b:?}"),
        }
        let mut r = raw(kind::RESET_BEGIN);
        r.arg = [1, 1, 0, 0];
        match Decoder::default().decode(&r).unwrap().body {
            EventBody::ResetBegin {
                job, reset_source, ..
            } => {
                assert_eq!(job, None);
                assert_eq!(reset_source, Some(1));
            }
            b => panic!("{b:?}"),
        }
        let mut r = raw(kind::CS_REJECTED);
        r.arg[0] = (-125i64) as u64;
        assert!(matches!(
            Decoder::default().decode(&r).unwrap().body,
            EventBody::SubmitRejected { errno: -125, .. }
        ));
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
