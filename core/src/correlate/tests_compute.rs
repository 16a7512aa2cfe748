//! Compute attribution (rules C1–C5, `compute.rs`) on event streams: the candidates and the
//! kernel's flags against the queue table, then whole incidents through the correlator with
//! the real KFD lines of each era (read through `kfd::lines::parse_text`, as `analyze` and
//! the live kmsg source read them).
use super::compute::candidates_of;
use super::queues::tests::{created, ev, kfd_queue, log};
use super::queues::USERQ_STATE_HUNG;
use super::{Config, Correlator};
use crate::incident::{Candidate, Confidence, Incident, IncidentKind, JobState};
use crate::model::{
    EventBody, JobKey, KfdLogKind, QueueKind, QueueOrigin, Source, Task, UserqFence,
};

/// The incident's reasoning says `text`.
fn reasons(inc: &Incident, text: &str) {
    assert!(inc.reasoning.contains(text), "{}", inc.reasoning);
}

/// Feeds `log` (read as the live kmsg source reads it, with the KFD hook) to `c`, closes
/// everything, and checks that exactly one incident came out.
fn only_incident(c: &mut Correlator, log: &str) -> Vec<Incident> {
    let mut out = Vec::new();
    for e in crate::kmsg::kfd::parse_text(log, Source::Kmsg) {
        out.extend(c.push(e));
    }
    out.extend(c.finish());
    assert_eq!(out.len(), 1, "{out:#?}");
    out
}

/// Candidates for an incident on 0000:03:00.0 spanning [from_s, to_s] that holds the notes
/// among `events`.
fn run(
    events: &[crate::model::Event],
    from_s: u64,
    to_s: u64,
) -> (Option<Candidate>, Vec<Candidate>) {
    let s = 1_000_000_000;
    candidates_of(events, Some("0000:03:00.0"), from_s * s, to_s * s)
}

#[test]
fn two_rocm_processes_and_no_flag_are_unknown_candidates() {
    let (flagged, c) = run(
        &[
            created(1, Source::Ebpf, 10, "python3", 0),
            created(1, Source::Ebpf, 10, "python3", 1),
            created(2, Source::Kfd, 20, "ollama", 0),
        ],
        5,
        6,
    );
    assert!(flagged.is_none());
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].comm, "python3", "more compute queues ranks first");
    assert_eq!(c[0].queues.len(), 2);
    assert!(c.iter().all(|c| c.confidence == Confidence::Unknown));
}

#[test]
fn single_process_with_a_hws_hang_is_likely() {
    let (_, c) = run(
        &[
            created(1, Source::Ebpf, 10, "python3", 0),
            log(5, KfdLogKind::HwsHang),
        ],
        6,
        7,
    );
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].confidence, Confidence::Likely);
}

#[test]
fn the_kernel_flag_wins_by_doorbell_process_or_pasid() {
    let base = vec![
        ev(
            1,
            Source::Ebpf,
            EventBody::QueueCreated(kfd_queue(10, "python3", 0, Some(0x1002))),
        ),
        ev(
            1,
            Source::Ebpf,
            EventBody::QueueCreated(kfd_queue(20, "ollama", 0, Some(0x1804))),
        ),
    ];
    let mut e = base.clone();
    e.push(log(5, KfdLogKind::QueuePreemptFailed { doorbell: 0x1804 }));
    let (f, c) = run(&e, 6, 7);
    let f = f.unwrap();
    assert_eq!((f.pid, f.confidence), (20, Confidence::Certain));
    assert_eq!(c[0].pid, 20, "flagged first");
    let mut e = base.clone();
    e.push(log(
        5,
        KfdLogKind::DestroyFailed {
            pasid: 0x8000 + 10,
            queue_id: 0,
            ret: -62,
        },
    ));
    let f = run(&e, 6, 7).0.unwrap();
    assert_eq!((f.pid, f.confidence), (10, Confidence::Likely));
    let mut e = base.clone();
    e.push(log(
        5,
        KfdLogKind::QueuesReset {
            task: Task::new(20, 21, "ollama"),
        },
    ));
    e.push(log(
        5,
        KfdLogKind::EvictFailed {
            pasid: Some(0x8000 + 10),
            pid: None,
            what: "x".into(),
        },
    ));
    let f = run(&e, 6, 7).0.unwrap();
    assert_eq!(f.pid, 20, "certain beats a later likely");
    // A doorbell nobody owns flags nobody.
    let mut e = base;
    e.push(log(5, KfdLogKind::MesRemoveFailed { doorbell: 0x9999 }));
    assert!(run(&e, 6, 7).0.is_none());
}

#[test]
fn user_queue_fences_and_hung_state() {
    let f = UserqFence {
        task: Task::new(30, 31, "gnome-shell"),
        doorbell: 4100,
        client_id: 5,
        queue_type: 0,
        context: 9,
        seqno: 1,
    };
    let (flag, c) = run(
        &[
            ev(1, Source::Ebpf, EventBody::UserqFence(f)),
            ev(
                4,
                Source::Ebpf,
                EventBody::UserqState {
                    doorbell: 4100,
                    client_id: 5,
                    queue_type: 0,
                    to: USERQ_STATE_HUNG,
                },
            ),
        ],
        5,
        6,
    );
    let flag = flag.unwrap();
    assert_eq!((flag.pid, flag.confidence), (30, Confidence::Certain));
    assert_eq!(c[0].queues[0].origin, QueueOrigin::Userq);
    assert_eq!(c[0].queues[0].kind, QueueKind::Gfx);
}

/// A 6.1 HWS hang end to end through the correlator: queues from the proc poll, the real
/// 6.1 KFD lines and reset lines from the kernel log.
#[test]
fn hws_hang_through_the_correlator_names_the_process_whose_destroy_failed() {
    let mut c = Correlator::new(Config::default());
    for (pid, comm, pasid) in [(4242, "python3", 0x8003), (5151, "ollama", 0x8004)] {
        let mut q = kfd_queue(pid, comm, 1, None);
        q.pasid = Some(pasid);
        c.push(ev(90, Source::Kfd, EventBody::QueueCreated(q)));
    }
    let log = "[100.000000] amdgpu: HIQ MQD's queue_doorbell_id0 is not 0, Queue preemption time out\n\
[100.000100] amdgpu: Pasid 0x8003 destroy queue 1 failed, ret -62\n\
[101.000000] amdgpu: The cp might be in an unrecoverable state due to an unsuccessful queues preemption\n\
[101.100000] amdgpu 0000:03:00.0: amdgpu: GPU reset begin!\n\
[102.000000] amdgpu 0000:03:00.0: amdgpu: GPU reset(1) succeeded!\n";
    let out = only_incident(&mut c, log);
    let inc = &out[0];
    assert_eq!(inc.kind, IncidentKind::GpuReset);
    let culprit = inc.culprit.as_ref().expect("compute culprit");
    assert_eq!((culprit.pid, inc.confidence), (4242, Confidence::Likely));
    let comp = inc.compute.as_ref().unwrap();
    assert_eq!(comp.candidates.len(), 2);
    assert!(
        inc.victims.iter().any(|v| v.comm == "ollama"),
        "{:?}",
        inc.victims
    );
    assert!(inc
        .evidence
        .iter()
        .any(|e| e.what.contains("destroying queue 1")));
    reasons(inc, "Rule C4: python3 (pid 4242)");
}

/// 6.12+: KFD names the queue that did not preempt and resets it, without a GPU reset:
/// a timeout of that queue, its owner certain. The line is printed inside the destroy
/// ioctl, so the destroy's return probe may be read before it (`destroyed_first`).
#[test]
fn queue_preemption_failure_is_that_queues_timeout() {
    for destroyed_first in [false, true] {
        let mut c = Correlator::new(Config::default());
        let python = kfd_queue(4242, "python3", 0, Some(0x1800));
        c.push(ev(
            90,
            Source::Ebpf,
            EventBody::QueueCreated(python.clone()),
        ));
        c.push(created(90, Source::Kfd, 5151, "ollama", 0));
        if destroyed_first {
            c.push(ev(100, Source::Ebpf, EventBody::QueueDestroyed(python)));
        }
        let log = "[100.000000] amdgpu 0000:03:00.0: amdgpu: Queue preemption failed for queue with doorbell_id: 1800\n\
[100.000100] amdgpu 0000:03:00.0: amdgpu: Queues reset on process python3 tid 4242 thread python3 pid 4242\n";
        let out = only_incident(&mut c, log);
        let inc = &out[0];
        assert_eq!(inc.kind, IncidentKind::RingTimeout);
        assert_eq!(
            inc.ring.as_deref(),
            Some("kfd_compute.6144"),
            "{destroyed_first}"
        );
        let culprit = inc.culprit.as_ref().unwrap();
        assert_eq!((culprit.pid, inc.confidence), (4242, Confidence::Certain));
        assert!(inc.victims.is_empty(), "no GPU reset: {:?}", inc.victims);
        assert_eq!(inc.compute.as_ref().unwrap().candidates.len(), 2);
    }
}

/// The RX 7900 XTX pattern: a pid-0 fault, MES failing, a reset: candidates, not a guess.
#[test]
fn pid0_fault_on_a_mes_gpu_lists_candidates_with_unknown_confidence() {
    let mut c = Correlator::new(Config::default());
    c.push(created(90, Source::Kfd, 4242, "python3", 0));
    c.push(created(90, Source::Kfd, 5151, "llama-server", 0));
    c.push(created(90, Source::Kfd, 5151, "llama-server", 1));
    let log = include_str!("../../../testdata/dmesg/rx7900xtx-mes-mode1-reset.log")
        .replace("0000:2f:00.0", "0000:03:00.0")
        .replace("[4576", "[10");
    let out = only_incident(&mut c, &log);
    let inc = &out[0];
    assert_eq!(
        (inc.kind, inc.confidence),
        (IncidentKind::GpuReset, Confidence::Unknown)
    );
    assert!(inc.culprit.is_none());
    let comp = inc.compute.as_ref().expect("compute candidates");
    let names: Vec<&str> = comp.candidates.iter().map(|c| c.comm.as_str()).collect();
    assert_eq!(
        names,
        ["llama-server", "python3"],
        "more compute queues first"
    );
    assert!(comp
        .candidates
        .iter()
        .all(|c| c.confidence == Confidence::Unknown));
    assert!(
        inc.victims.is_empty(),
        "no candidate is called a victim: {:?}",
        inc.victims
    );
    reasons(inc, "candidates, confidence unknown");
}

/// 7.x: a user queue's fences are its jobs; the kernel marking it hung is a timeout on its
/// last fence, attributed like a CS job next to a CS submitter that keeps running.
#[test]
fn user_queue_hang_is_a_ring_timeout_on_its_last_fence() {
    let mut c = Correlator::new(Config::default());
    let cs = |t: u64, seq: u64| {
        ev(
            t,
            Source::Ebpf,
            EventBody::Submit {
                task: Task::new(50, 50, "Xwayland"),
                ring: "gfx_0.0.0".into(),
                job: JobKey {
                    context: Some(1),
                    seqno: Some(seq),
                    ..JobKey::default()
                },
                num_ibs: 1,
            },
        )
    };
    let mut out = Vec::new();
    out.extend(c.push(cs(1, 1)));
    for (t, seq) in [(1, 10), (2, 11), (3, 12)] {
        out.extend(c.push(ev(
            t,
            Source::Ebpf,
            EventBody::UserqFence(UserqFence {
                task: Task::new(30, 31, "gnome-shell"),
                doorbell: 4100,
                client_id: 5,
                queue_type: 0,
                context: 77,
                seqno: seq,
            }),
        )));
    }
    out.extend(c.push(cs(4, 2)));
    out.extend(c.push(ev(
        6,
        Source::Ebpf,
        EventBody::UserqState {
            doorbell: 4100,
            client_id: 5,
            queue_type: 0,
            to: USERQ_STATE_HUNG,
        },
    )));
    out.extend(c.finish());
    assert_eq!(out.len(), 1, "{out:#?}");
    let inc = &out[0];
    assert_eq!(inc.kind, IncidentKind::RingTimeout);
    assert_eq!(inc.ring.as_deref(), Some("userq_gfx.4100"));
    let culprit = inc.culprit.as_ref().unwrap();
    assert_eq!(
        (culprit.comm.as_str(), inc.confidence),
        ("gnome-shell", Confidence::Certain)
    );
    assert!(
        inc.jobs
            .iter()
            .any(|j| j.seqno == Some(12) && j.state == JobState::Hung),
        "{:#?}",
        inc.jobs
    );
    assert_eq!(
        inc.compute.as_ref().unwrap().flagged.as_ref().unwrap().pid,
        30
    );
}

/// An eviction failure at a reset names a process that had queues, not the one that hung
/// (rocm-6313): a candidate with unknown confidence, with its queues when the table knows it,
/// never the culprit; certain and likely flags are untouched by it.
#[test]
fn eviction_failure_names_a_candidate_not_a_culprit() {
    let evict = |t| {
        log(
            t,
            KfdLogKind::EvictFailed {
                pasid: None,
                pid: Some(10),
                what: "Failed to suspend process".into(),
            },
        )
    };
    // Known to the queue table: its queues, the eviction as the reason.
    let (flag, c) = run(
        &[
            created(1, Source::Kfd, 10, "python3", 0),
            created(1, Source::Kfd, 20, "ollama", 0),
            evict(5),
        ],
        6,
        7,
    );
    assert!(flag.is_none());
    let py = c.iter().find(|c| c.pid == 10).unwrap();
    assert_eq!((py.confidence, py.queues.len()), (Confidence::Unknown, 1));
    assert!(
        py.reason.contains("Failed to suspend process"),
        "{}",
        py.reason
    );
    // Log only: a candidate without queues.
    let (flag, c) = run(&[evict(5)], 6, 7);
    assert!(flag.is_none());
    assert_eq!((c.len(), c[0].pid, c[0].queues.len()), (1, 10, 0));
    // Through the correlator: an SDMA timeout with no process line, its ring reset pending
    // (rocm-6313's shape), stays unknown.
    let mut corr = Correlator::new(Config::default());
    let log = "[100.000000] amdgpu 0000:01:00.0: ring sdma0 timeout, signaled seq=309, emitted seq=313\n\
[100.000100] amdgpu 0000:01:00.0: Starting sdma0 ring reset\n\
[109.000000] amdgpu 0000:01:00.0: The cp might be in an unrecoverable state due to an unsuccessful queues preemption\n\
[109.000100] amdgpu: Failed to suspend process pid 3484\n";
    let out = only_incident(&mut corr, log);
    let inc = &out[0];
    assert!(inc.culprit.is_none(), "{:?}", inc.culprit);
    assert_eq!(inc.confidence, Confidence::Unknown);
    let comp = inc.compute.as_ref().unwrap();
    assert_eq!(comp.candidates[0].pid, 3484);
    reasons(inc, "Rule C3");
    reasons(inc, "pid 3484");
}

/// A gfx timeout naming the compositor, then KFD eviction failures during the reset
/// (rocm-3580's shape): `prefix` lines come first.
fn compositor_hang_with_evictions(prefix: &str) -> String {
    format!(
        "{prefix}\
[200.000000] amdgpu 0000:0a:00.0: amdgpu: ring gfx_0.0.0 timeout, signaled seq=3295304, emitted seq=3295306
[200.000010] amdgpu 0000:0a:00.0: amdgpu: Process information: process plasmashell pid 84232 thread plasmashel:cs0 pid 84261
[200.000100] amdgpu 0000:0a:00.0: amdgpu: GPU reset begin!
[200.000200] amdgpu 0000:0a:00.0: amdgpu: Failed to evict queue 3
[200.000300] amdgpu: Failed to suspend process 0x8015
[200.000400] amdgpu: Failed to suspend process 0x8017
"
    )
}

/// Eviction lines are compute work on the GPU (rule C1): with pasids no process is known for,
/// the compute note and the reasoning say so; the kernel's blame stands as its word alone.
#[test]
fn eviction_lines_with_unknown_pasids_are_compute_activity() {
    let mut corr = Correlator::new(Config::default());
    let out = only_incident(&mut corr, &compositor_hang_with_evictions(""));
    let inc = &out[0];
    assert_eq!(inc.culprit.as_ref().map(|c| c.pid), Some(84232));
    assert_eq!(inc.confidence, Confidence::KernelOnly);
    let comp = inc.compute.as_ref().expect("a compute section");
    assert!(comp.candidates.is_empty(), "{comp:?}");
    assert!(
        comp.note.contains(
            "KFD failed to evict the queues of pasid 0x8015, pasid 0x8017 (no process known)"
        ),
        "{}",
        comp.note
    );
    reasons(inc, "Rule C1: KFD failed to evict the queues of pasid 0x8015, pasid 0x8017 on this GPU: compute work was running on it");
    // Only a line that names nothing: still compute work, said without a pasid.
    let mut corr = Correlator::new(Config::default());
    let log = compositor_hang_with_evictions("").replace("Failed to suspend process 0x801", "x");
    let out = only_incident(&mut corr, &log);
    reasons(
        &out[0],
        "Rule C1: KFD failed to evict the queues of a process the log does not name",
    );
}

/// An eviction line's pasid resolves through a fault line printed long before (another
/// incident): that process is a compute candidate, and no pasid is left unexplained.
#[test]
fn eviction_pasid_resolves_through_an_earlier_fault_line() {
    let fault = "[100.000000] amdgpu 0000:0a:00.0: amdgpu: [gfxhub0] no-retry page fault (src_id:0 ring:24 vmid:8 pasid:32789, for process python3 pid 4242 thread python3 pid 4242)\n";
    let mut corr = Correlator::new(Config::default());
    let mut out = Vec::new();
    let log = compositor_hang_with_evictions(fault);
    for e in crate::kmsg::kfd::parse_text(&log, Source::Kmsg) {
        out.extend(corr.push(e));
    }
    out.extend(corr.finish());
    let inc = out
        .iter()
        .find(|i| i.kind == IncidentKind::RingTimeout)
        .expect("the timeout");
    let comp = inc.compute.as_ref().expect("a compute section");
    let pids: Vec<u32> = comp.candidates.iter().map(|c| c.pid).collect();
    assert_eq!(pids, vec![4242], "{comp:?}");
    assert!(comp.note.contains("pasid 0x8017"), "{}", comp.note);
    assert!(!comp.note.contains("pasid 0x8015"), "{}", comp.note);
}

/// Live, the kernel's KFD lines can reach the correlator before the probe event that opens
/// their incident although they are stamped after it (/dev/kmsg is read at once, the probe ring
/// buffer on its tick): the incident still adopts them (6.1 scenario 20 in the VM: the reset
/// probe at 230.4878 drained after the HIQ and `Pasid .. destroy queue` lines of 230.4994).
#[test]
fn kfd_lines_read_before_the_probe_reset_that_opens_their_incident() {
    let mut c = Correlator::new(Config::default());
    let gpu = Some("0000:00:00.0".to_string());
    let mut q = kfd_queue(282, "python3", 0, Some(0x1800));
    q.pasid = Some(0x1001);
    let mut created = ev(200, Source::Ebpf, EventBody::QueueCreated(q));
    created.gpu.clone_from(&gpu);
    c.push(created);
    let mut out = Vec::new();
    let mut asm =
        crate::kmsg::KmsgAssembler::new(Source::Kmsg).with_line_hook(crate::kmsg::kfd::HOOK);
    for (t, l) in [
        (
            230_499_410_000,
            "amdgpu: HIQ MQD's queue_doorbell_id0 is not 0, Queue preemption time out",
        ),
        (
            230_499_611_000,
            "amdgpu: Pasid 0x1001 destroy queue 0 failed, ret -62",
        ),
    ] {
        for e in asm.push_line(t, crate::model::Clock::Monotonic, l) {
            out.extend(c.push(e));
        }
    }
    for (t, body) in [
        (
            230_487_849_000,
            EventBody::ResetBegin {
                job: None,
                pasid: None,
                ring: None,
                reset_source: Some(4),
            },
        ),
        (230_495_621_000, EventBody::ResetEnd { result: 0 }),
    ] {
        let mut e = ev(0, Source::Ebpf, body);
        e.t_ns = t;
        e.gpu.clone_from(&gpu);
        out.extend(c.push(e));
    }
    out.extend(c.finish());
    assert_eq!(out.len(), 1, "{out:#?}");
    let inc = &out[0];
    assert_eq!(
        (inc.culprit.as_ref().map(|c| c.pid), inc.confidence),
        (Some(282), Confidence::Likely)
    );
    assert!(inc
        .evidence
        .iter()
        .any(|e| e.what.contains("destroying queue 0")));
}

/// The KFD SMI reset events carry the kernel's reset cause (`amdgpu_reset_get_desc`): the
/// incident keeps the first one, whether the SMI line came just before the reset or during it.
#[test]
fn smi_reset_cause_is_carried_into_the_incident() {
    use crate::model::{SmiEvent, SmiKind};
    let smi = |t_s: u64, kind: SmiKind| {
        ev(
            t_s,
            Source::Kfd,
            EventBody::KfdSmi(SmiEvent {
                gpu_id: 48152,
                kind,
            }),
        )
    };
    let reset = |t_s: u64, body: EventBody| ev(t_s, Source::Ebpf, body);
    let begin = EventBody::ResetBegin {
        job: None,
        pasid: None,
        ring: None,
        reset_source: Some(1),
    };
    let pre = |cause: Option<&str>| SmiKind::GpuPreReset {
        seq: 1,
        cause: cause.map(str::to_string),
    };
    let post = SmiKind::GpuPostReset {
        seq: 1,
        cause: Some("user trigger".into()),
    };
    for (before, want) in [
        (true, Some("job hang on ring:gfx_0.0.0")),
        (false, Some("job hang on ring:gfx_0.0.0")),
    ] {
        let mut events = vec![];
        if before {
            events.push(smi(9, pre(want)));
        }
        events.push(reset(10, begin.clone()));
        if !before {
            events.push(smi(10, pre(want)));
        }
        events.push(smi(11, post.clone()));
        events.push(reset(12, EventBody::ResetEnd { result: 0 }));
        let mut c = Correlator::new(Config::default());
        let mut out: Vec<Incident> = events.into_iter().flat_map(|e| c.push(e)).collect();
        out.extend(c.finish());
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].reset_cause.as_deref(), want, "before: {before}");
    }
    // An SMI event without a cause (≤ 6.x) leaves it unset.
    let mut c = Correlator::new(Config::default());
    let mut out = Vec::new();
    for e in [
        smi(10, pre(None)),
        reset(10, begin),
        reset(12, EventBody::ResetEnd { result: 0 }),
    ] {
        out.extend(c.push(e));
    }
    out.extend(c.finish());
    assert_eq!(out[0].reset_cause, None);
}
