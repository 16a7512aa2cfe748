//! Event streams reproducing the fixture logs (as probe events, as kmsg records, and both
//! interleaved) plus the edge cases from docs/attribution.md.
use super::{Config, Correlator};
use crate::incident::{Confidence, Incident, IncidentKind};
use crate::model::*;

const S: u64 = 1_000_000_000;
const GPU: &str = "0002:00:00.0";

fn ev(t: u64, source: Source, body: EventBody) -> Event {
    Event {
        t_ns: t,
        clock: Clock::Monotonic,
        source,
        gpu: Some(GPU.into()),
        body,
    }
}
fn probe(t: u64, body: EventBody) -> Event {
    let mut e = ev(t, Source::Ebpf, body);
    e.gpu = None;
    e
}
fn kmsg(t: u64, kind: KmsgKind, line: &str) -> Event {
    ev(
        t,
        Source::Kmsg,
        EventBody::Kmsg(KmsgRecord {
            kind,
            lines: vec![line.into()],
        }),
    )
}
fn task(pid: u32, comm: &str) -> Task {
    Task::new(pid, pid, comm)
}
fn key(id: u64) -> JobKey {
    JobKey {
        sched_job_id: Some(id),
        ..JobKey::default()
    }
}
fn fault(pasid: u32) -> FaultInfo {
    FaultInfo {
        hub: "gfxhub".into(),
        pasid,
        vmid: 7,
        src_id: Some(0),
        ring_id: Some(40),
        address: Some(0),
        retry: None,
        write: None,
        client: None,
        status: None,
        status_fields: vec![],
    }
}
fn info(pid: u32, comm: &str, pasid: u32) -> Event {
    let mut e = ev(
        1,
        Source::Proc,
        EventBody::ProcessInfo {
            pid,
            comm: comm.into(),
            exe: Some(format!("/usr/bin/{comm}")),
            pasids: vec![pasid],
            client_ids: vec![],
        },
    );
    e.gpu = None;
    e
}
/// Submit → VmGrabId → RunJob → HwFenceEmitted for one job; `done` adds the fence signal.
#[allow(clippy::too_many_arguments)]
fn job(
    t: u64,
    pid: u32,
    comm: &str,
    ring: &str,
    id: u64,
    pasid: u32,
    hw: u64,
    done: bool,
) -> Vec<Event> {
    let worker = if ring.starts_with("gfx") { 900 } else { 901 };
    let mut v = vec![
        probe(
            t,
            EventBody::Submit {
                task: task(pid, comm),
                ring: ring.into(),
                job: key(id),
                num_ibs: 1,
            },
        ),
        probe(
            t + 10,
            EventBody::VmGrabId {
                ring: ring.into(),
                pasid,
                vmid: 7,
                worker_tid: worker,
            },
        ),
        probe(
            t + 20,
            EventBody::RunJob {
                ring: ring.into(),
                job: key(id),
                worker_tid: worker,
            },
        ),
        probe(
            t + 30,
            EventBody::HwFenceEmitted {
                ring: ring.into(),
                context: 1,
                seqno: hw,
                emitter_tid: worker,
            },
        ),
    ];
    if done {
        v.push(probe(
            t + 1000,
            EventBody::HwFenceSignaled {
                ring: ring.into(),
                context: 1,
                seqno: hw,
            },
        ));
    }
    v
}
fn run(events: Vec<Event>) -> (Vec<Incident>, Correlator) {
    run_cfg(events, Config::default())
}
fn run_cfg(mut events: Vec<Event>, cfg: Config) -> (Vec<Incident>, Correlator) {
    events.sort_by_key(|e| e.t_ns);
    let mut c = Correlator::new(cfg);
    let mut out = Vec::new();
    for e in events {
        out.extend(c.push(e));
    }
    out.extend(c.finish());
    (out, c)
}

/// v710-zed-fault-then-timeout as probe events.
fn zed_probe_stream(zed_job_done: bool) -> Vec<Event> {
    let mut v = vec![info(7587, "zed", 32819), info(6518, "Xwayland", 32820)];
    v.extend(job(
        130 * S,
        7587,
        "zed",
        "gfx_0.0.0",
        1,
        32819,
        571734510,
        zed_job_done,
    ));
    v.push(probe(135_794_048_000, EventBody::VmFault(fault(32819))));
    v.push(probe(135_957_526_000, EventBody::VmFault(fault(32819))));
    v.extend(job(
        136 * S,
        6518,
        "Xwayland",
        "gfx_0.0.0",
        2,
        32820,
        571734511,
        false,
    ));
    v.push(probe(
        146_437_245_000,
        EventBody::JobTimedOut {
            ring: Some("gfx_0.0.0".into()),
            job: key(2),
            pasid: Some(32820),
        },
    ));
    v.push(probe(
        146_437_258_000,
        EventBody::ResetBegin {
            job: Some(key(2)),
            pasid: Some(32820),
            ring: Some("gfx_0.0.0".into()),
            reset_source: Some(1),
        },
    ));
    v.push(probe(146_667_459_000, EventBody::ResetEnd { result: 0 }));
    v.push(probe(
        146_667_901_000,
        EventBody::SubmitRejected {
            task: task(7587, "zed"),
            errno: -125,
        },
    ));
    v
}
fn zed_kmsg_stream() -> Vec<Event> {
    let zed = Some(task(7587, "zed"));
    vec![
        kmsg(
            135_794_048_000,
            KmsgKind::PageFault {
                fault: fault(32819),
                task: zed.clone(),
            },
            "[gfxhub] page fault (src_id:0 ring:40 vmid:7 pasid:32819)",
        ),
        kmsg(
            135_957_526_000,
            KmsgKind::PageFault {
                fault: fault(32819),
                task: zed,
            },
            "[gfxhub] page fault (src_id:0 ring:40 vmid:7 pasid:32819)",
        ),
        kmsg(
            146_437_245_000,
            KmsgKind::RingTimeout {
                ring: "gfx_0.0.0".into(),
                signaled: Some(571734509),
                emitted: Some(571734511),
                task: Some(task(6518, "Xwayland")),
            },
            "ring gfx_0.0.0 timeout, signaled seq=571734509, emitted seq=571734511",
        ),
        kmsg(
            146_437_258_000,
            KmsgKind::ResetBegin { source: Some(1) },
            "GPU reset begin!. Source:  1",
        ),
        kmsg(
            146_667_459_000,
            KmsgKind::ResetResult {
                ok: true,
                counter: Some(1),
                error: None,
            },
            "GPU reset(1) succeeded!",
        ),
        kmsg(
            146_667_901_000,
            KmsgKind::ParserInitFailed { errno: -125 },
            "Failed to initialize parser -125!",
        ),
    ]
}

fn assert_zed(inc: &Incident) {
    assert_eq!(inc.kind, IncidentKind::RingTimeout);
    assert_eq!(inc.ring.as_deref(), Some("gfx_0.0.0"));
    assert_eq!(
        inc.culprit.as_ref().map(|c| (c.pid, c.comm.as_str())),
        Some((7587, "zed"))
    );
    assert_eq!(inc.kernel_blamed.as_ref().map(|c| c.pid), Some(6518));
    assert!(inc.kernel_blame_disputed);
    let x = inc
        .victims
        .iter()
        .find(|v| v.pid == 6518)
        .expect("Xwayland is a victim");
    assert!(x.reason.contains("timed out behind zed"), "{}", x.reason);
    assert_eq!(inc.reset.as_deref(), Some("succeeded"));
}

#[test]
fn zed_probe_only() {
    let (incs, _) = run(zed_probe_stream(true));
    assert_eq!(incs.len(), 1, "{incs:#?}");
    assert_zed(&incs[0]);
    assert_eq!(incs[0].confidence, Confidence::Likely);
    assert_eq!(
        incs[0]
            .culprit
            .as_ref()
            .and_then(|c| c.exe.clone())
            .as_deref(),
        Some("/usr/bin/zed")
    );
    // zed is the culprit, so its refused submission does not make it a victim.
    assert!(!incs[0].victims.iter().any(|v| v.pid == 7587));
    let hung: Vec<_> = incs[0].jobs.iter().filter(|j| j.state == "hung").collect();
    assert_eq!(hung.len(), 1);
    assert_eq!(hung[0].pid, 6518);
    assert_eq!(hung[0].pasid, Some(32820));
    assert_eq!(hung[0].hw_seqno, Some(571734511));
    assert!(incs[0]
        .jobs
        .iter()
        .any(|j| j.pid == 7587 && j.state == "done"));
}

#[test]
fn zed_certain_when_its_unfinished_job_ran_just_before() {
    let (incs, _) = run(zed_probe_stream(false));
    assert_eq!(incs.len(), 1);
    assert_zed(&incs[0]);
    assert_eq!(incs[0].confidence, Confidence::Certain);
}

#[test]
fn zed_kmsg_only() {
    let (incs, _) = run(zed_kmsg_stream());
    assert_eq!(incs.len(), 1, "{incs:#?}");
    assert_zed(&incs[0]);
    assert_eq!(incs[0].confidence, Confidence::Likely);
    assert_eq!(incs[0].gpu.as_deref(), Some(GPU));
    assert!(incs[0]
        .evidence
        .iter()
        .any(|e| e.what.contains("refused after reset (process not named")));
    assert_eq!(incs[0].started_at, "135.794048");
}

#[test]
fn zed_probe_and_kmsg_are_one_incident() {
    let mut v = zed_probe_stream(true);
    v.extend(zed_kmsg_stream());
    let (incs, c) = run(v);
    assert_eq!(incs.len(), 1, "{incs:#?}");
    assert_zed(&incs[0]);
    assert!(incs[0].evidence.iter().any(|e| e.source == Source::Ebpf));
    assert!(incs[0]
        .evidence
        .iter()
        .any(|e| e.source == Source::Kmsg && !e.lines.is_empty()));
    assert!(incs[0].evidence.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
    // Two faults, each seen by the probe and the log: counted twice, not four times.
    let zed = c.summary().into_iter().find(|s| s.pid == 7587).unwrap();
    assert_eq!(zed.faults, 2);
}

#[test]
fn culprit_exit_keeps_identity() {
    let mut v = zed_probe_stream(true);
    v.retain(|e| !matches!(e.body, EventBody::SubmitRejected { .. }));
    v.push(probe(
        140 * S,
        EventBody::ProcessExit {
            task: task(7587, "zed"),
        },
    ));
    let (incs, _) = run(v);
    let c = incs[0].culprit.clone().expect("culprit");
    assert_eq!(
        (c.pid, c.comm.as_str(), c.exe.as_deref()),
        (7587, "zed", Some("/usr/bin/zed"))
    );
}

#[test]
fn pid0_fault_alone_is_unattributed() {
    let (incs, _) = run(vec![kmsg(
        10 * S,
        KmsgKind::PageFault {
            fault: fault(0),
            task: Some(task(0, "")),
        },
        "page fault ... pid 0",
    )]);
    assert_eq!(incs.len(), 1);
    assert_eq!(incs[0].kind, IncidentKind::PageFault);
    assert!(incs[0].culprit.is_none());
    assert!(incs[0].kernel_blamed.is_none());
    assert_eq!(incs[0].confidence, Confidence::Unknown);
    assert!(
        incs[0].reasoning.contains("could not map the PASID"),
        "{}",
        incs[0].reasoning
    );
}

#[test]
fn named_fault_alone_is_page_fault_likely() {
    let (incs, _) = run(vec![
        info(42, "game", 5),
        probe(10 * S, EventBody::VmFault(fault(5))),
    ]);
    assert_eq!(incs.len(), 1);
    assert_eq!(incs[0].kind, IncidentKind::PageFault);
    assert_eq!(incs[0].culprit.as_ref().map(|c| c.pid), Some(42));
    assert_eq!(incs[0].kernel_blamed.as_ref().map(|c| c.pid), Some(42));
    assert_eq!(incs[0].confidence, Confidence::Likely);
}

#[test]
fn mes_reset_without_timeout() {
    let mut v = vec![info(300, "python3", 9)];
    v.extend(job(
        45_760 * S,
        300,
        "python3",
        "gfx_0.0.0",
        7,
        9,
        50,
        false,
    ));
    let g = |mut e: Event| {
        e.gpu = Some("0000:2f:00.0".into());
        e
    };
    v.push(g(kmsg(
        45_766_649_480_000,
        KmsgKind::PageFault {
            fault: fault(0),
            task: Some(task(0, "")),
        },
        "pid 0",
    )));
    v.push(g(kmsg(
        45_767_021_585_000,
        KmsgKind::ResetStep {
            what: "soft reset failed".into(),
        },
        "soft reset failed",
    )));
    v.push(g(kmsg(
        45_767_270_210_000,
        KmsgKind::MesFailure {
            msg: Some("3".into()),
        },
        "MES failed to response msg=3",
    )));
    v.push(g(kmsg(
        45_768_561_065_000,
        KmsgKind::ResetStep {
            what: "MODE1 reset".into(),
        },
        "MODE1 reset",
    )));
    v.push(g(kmsg(
        45_769_536_136_000,
        KmsgKind::ResetResult {
            ok: true,
            counter: Some(2),
            error: None,
        },
        "GPU reset(2) succeeded!",
    )));
    v.push(g(kmsg(
        45_769_572_609_000,
        KmsgKind::ParserInitFailed { errno: -125 },
        "parser -125",
    )));
    let (incs, _) = run(v);
    assert_eq!(incs.len(), 1, "{incs:#?}");
    let i = &incs[0];
    assert_eq!(i.kind, IncidentKind::GpuReset);
    assert!(i.culprit.is_none());
    assert_eq!(i.confidence, Confidence::Unknown);
    assert_eq!(i.reset.as_deref(), Some("succeeded"));
    assert!(i.reasoning.contains("python3 (pid 300)"), "{}", i.reasoning);
    assert!(i.reasoning.contains("pid 0"), "{}", i.reasoning);
}

#[test]
fn illegal_opcode_then_timeout_is_certain() {
    let v = vec![
        kmsg(
            1000 * S,
            KmsgKind::IllegalCommand {
                what: IllegalKind::Opcode,
            },
            "Illegal opcode in command stream",
        ),
        kmsg(
            1000 * S + 300,
            KmsgKind::IllegalCommand {
                what: IllegalKind::RegisterAccess,
            },
            "Illegal register access in command stream",
        ),
        kmsg(
            1000 * S + 500,
            KmsgKind::RingTimeout {
                ring: "gfx_0.0.0".into(),
                signaled: Some(1),
                emitted: Some(3),
                task: Some(task(2948129, "zed")),
            },
            "timeout",
        ),
        kmsg(
            1000 * S + 900,
            KmsgKind::ResetBegin { source: Some(1) },
            "GPU reset begin!",
        ),
        kmsg(
            1001 * S,
            KmsgKind::ResetResult {
                ok: true,
                counter: Some(5),
                error: None,
            },
            "GPU reset(5) succeeded!",
        ),
    ];
    let (incs, _) = run(v);
    assert_eq!(incs.len(), 1);
    assert_eq!(incs[0].culprit.as_ref().map(|c| c.pid), Some(2948129));
    assert_eq!(incs[0].confidence, Confidence::Certain);
    assert!(!incs[0].kernel_blame_disputed);
}

#[test]
fn illegal_command_alone() {
    let (incs, _) = run(vec![kmsg(
        5 * S,
        KmsgKind::IllegalCommand {
            what: IllegalKind::Opcode,
        },
        "Illegal opcode",
    )]);
    assert_eq!(incs.len(), 1);
    assert_eq!(incs[0].kind, IncidentKind::IllegalCommand);
    assert!(incs[0].culprit.is_none());
}

#[test]
fn three_hangs_in_a_minute_are_three_incidents() {
    let mut v = vec![info(1, "a", 11), info(2, "b", 12), info(3, "c", 13)];
    for (i, (pid, comm, pasid)) in [(1u32, "a", 11u32), (2, "b", 12), (3, "c", 13)]
        .into_iter()
        .enumerate()
    {
        let t = (i as u64 * 20 + 1) * S;
        v.extend(job(
            t,
            pid,
            comm,
            "gfx_0.0.0",
            100 + i as u64,
            pasid,
            1000 + i as u64,
            false,
        ));
        v.push(probe(
            t + 10 * S,
            EventBody::JobTimedOut {
                ring: Some("gfx_0.0.0".into()),
                job: key(100 + i as u64),
                pasid: Some(pasid),
            },
        ));
        v.push(probe(
            t + 10 * S + 100,
            EventBody::ResetBegin {
                job: None,
                pasid: None,
                ring: None,
                reset_source: None,
            },
        ));
        v.push(probe(t + 11 * S, EventBody::ResetEnd { result: 0 }));
    }
    let (incs, c) = run(v);
    assert_eq!(incs.len(), 3, "{incs:#?}");
    let culprits: Vec<u32> = incs
        .iter()
        .filter_map(|i| i.culprit.as_ref().map(|c| c.pid))
        .collect();
    assert_eq!(culprits, vec![1, 2, 3]);
    assert!(incs
        .iter()
        .all(|i| i.confidence == Confidence::Likely && !i.kernel_blame_disputed));
    assert_eq!(c.summary().iter().map(|s| s.culprit).sum::<u32>(), 3);
}

#[test]
fn compute_hang_blames_only_compute_submitter() {
    let mut v = vec![info(10, "gnome-shell", 21), info(20, "trainer", 22)];
    v.extend(job(S, 20, "trainer", "comp_1.0.0", 1, 22, 5, false));
    for k in 0..5u64 {
        v.extend(job(
            2 * S + k * S,
            10,
            "gnome-shell",
            "gfx_0.0.0",
            10 + k,
            21,
            100 + k,
            true,
        ));
    }
    v.push(probe(
        11 * S,
        EventBody::JobTimedOut {
            ring: Some("comp_1.0.0".into()),
            job: key(1),
            pasid: Some(22),
        },
    ));
    let (incs, _) = run(v);
    assert_eq!(incs.len(), 1);
    assert_eq!(incs[0].ring.as_deref(), Some("comp_1.0.0"));
    assert_eq!(incs[0].culprit.as_ref().map(|c| c.pid), Some(20));
    assert!(incs[0].victims.is_empty(), "{:?}", incs[0].victims);
}

#[test]
fn flight_recorder_and_process_table_are_bounded() {
    let cfg = Config {
        ring_depth: 8,
        max_processes: 4,
        ..Config::default()
    };
    let mut v = Vec::new();
    for i in 0..20u64 {
        v.extend(job(
            i * 1_000_000,
            100 + (i as u32 % 10),
            "p",
            "gfx_0.0.0",
            i,
            1,
            i,
            true,
        ));
    }
    v.push(probe(
        S,
        EventBody::RunJob {
            ring: "gfx_0.0.0".into(),
            job: key(999),
            worker_tid: 5,
        },
    ));
    let (_, c) = run_cfg(v, cfg);
    assert_eq!(c.recorder.ring_len("gfx_0.0.0"), 8);
    assert_eq!(c.stats().ring_jobs_seen["gfx_0.0.0"], 21);
    assert_eq!(c.stats().ring_jobs_evicted["gfx_0.0.0"], 13);
    assert!(c.procs.len() <= 4);
    assert!(c.stats().process_evictions >= 6);
    assert_eq!(c.stats().unmatched_joins, 1);
    assert_eq!(c.stats().submissions[&100], 2);
}

#[test]
fn advance_closes_after_settle_only() {
    let mut c = Correlator::new(Config::default());
    for e in zed_kmsg_stream() {
        assert!(c.push(e).is_empty());
    }
    let last = 146_667_901_000;
    assert!(c.advance(last + S).is_empty());
    let out = c.advance(last + 6 * S);
    assert_eq!(out.len(), 1);
    assert!(c.finish().is_empty());
}

#[test]
fn realtime_rendering() {
    assert_eq!(
        super::incident::render_time(Clock::Realtime, 1_700_000_000_123_456_789),
        "2023-11-14T22:13:20.123456Z"
    );
}

#[test]
fn late_kmsg_timeout_after_probe_reset_is_same_incident() {
    let mut v = zed_probe_stream(true);
    let mut k = zed_kmsg_stream();
    // The kmsg reader delivered everything 1 s late (after the probe's ResetEnd).
    let mut c = Correlator::new(Config::default());
    let mut out = Vec::new();
    v.sort_by_key(|e| e.t_ns);
    for e in v.drain(..) {
        out.extend(c.push(e));
    }
    for e in k.drain(..) {
        out.extend(c.push(e));
    }
    out.extend(c.finish());
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_zed(&out[0]);
}

#[test]
fn second_probe_timeout_after_reset_is_new_incident() {
    let mut v = zed_probe_stream(true);
    v.extend(job(
        147 * S,
        6518,
        "Xwayland",
        "gfx_0.0.0",
        3,
        32820,
        571734512,
        false,
    ));
    v.push(probe(
        149 * S,
        EventBody::JobTimedOut {
            ring: Some("gfx_0.0.0".into()),
            job: key(3),
            pasid: Some(32820),
        },
    ));
    let (incs, _) = run(v);
    assert_eq!(incs.len(), 2, "{incs:#?}");
    assert_eq!(incs[1].culprit.as_ref().map(|c| c.pid), Some(6518));
    assert!(incs[0].started_ns < incs[1].started_ns);
}

#[test]
fn fault_storm_is_capped() {
    let mut v = vec![info(42, "game", 5)];
    for i in 0..2000u64 {
        v.push(probe(S + i * 1000, EventBody::VmFault(fault(5))));
    }
    let (incs, _) = run(v);
    assert_eq!(incs.len(), 1);
    assert_eq!(incs[0].evidence.len(), super::incident::MAX_EVIDENCE);
    assert!(
        incs[0].reasoning.contains("1744 further related events"),
        "{}",
        incs[0].reasoning
    );
    assert_eq!(incs[0].culprit.as_ref().map(|c| c.pid), Some(42));
}

#[test]
fn recent_evidence_serves_export_windows_after_the_incident_closed() {
    let (incs, c) = run(zed_probe_stream(true));
    assert_eq!(incs.len(), 1);
    // The whole incident's evidence is still there after it closed, in time order.
    let all = c.evidence_between(0, u64::MAX);
    assert_eq!(
        all.iter().map(|e| e.what.as_str()).collect::<Vec<_>>(),
        incs[0]
            .evidence
            .iter()
            .map(|e| e.what.as_str())
            .collect::<Vec<_>>()
    );
    // A window holding only the two faults.
    let faults = c.evidence_between(135 * S, 136 * S);
    assert_eq!(faults.len(), 2, "{faults:?}");
    assert!(faults.iter().all(|e| e.what.contains("page fault")));
    assert!(c.evidence_between(200 * S, 300 * S).is_empty());
}

#[test]
fn recent_evidence_is_bounded() {
    // Many separate fault-only incidents (each closes after the fault window) keep at most
    // RECENT_EVIDENCE items, the newest.
    let mut v = vec![info(42, "game", 5)];
    let n = super::RECENT_EVIDENCE as u64 + 100;
    for i in 0..n {
        v.push(probe(S + i * 100 * S, EventBody::VmFault(fault(5))));
    }
    let (_, c) = run(v);
    let kept = c.evidence_between(0, u64::MAX);
    assert_eq!(kept.len(), super::RECENT_EVIDENCE);
    assert_eq!(kept.last().map(|e| e.t_ns), Some(S + (n - 1) * 100 * S));
}

mod boots {
    use super::*;
    use crate::model::{BootInfo, Clock, Event, EventBody, Source};

    fn boot(seq: u32, id: &str, offset: Option<i64>) -> Event {
        Event {
            t_ns: 0,
            clock: Clock::Monotonic,
            source: Source::Log,
            gpu: None,
            body: EventBody::Boot(BootInfo {
                seq,
                boot_id: Some(id.into()),
                hostname: Some("host".into()),
                realtime_offset_ns: offset,
            }),
        }
    }

    /// A fault in one boot never joins (or disputes) a timeout in the next, even when the
    /// second boot's clock puts the timeout right after the fault.
    #[test]
    fn a_new_boot_closes_open_incidents_and_stamps_the_next() {
        let text = include_str!("../../../testdata/dmesg/v710-zed-fault-then-timeout.log");
        let events = crate::kmsg::parse_text(text, Source::Log);
        let (fault_end, _) = events
            .iter()
            .enumerate()
            .find(|(_, e)| matches!(&e.body, EventBody::Kmsg(r) if matches!(r.kind, crate::model::KmsgKind::RingTimeout { .. })))
            .expect("the fixture has a timeout");
        let mut c = Correlator::new(Config::default());
        let mut out = c.push(boot(0, "aaaa", None));
        for e in events[..fault_end].iter().cloned() {
            out.extend(c.push(e));
        }
        let closed = c.push(boot(1, "bbbb", Some(1_700_000_000_000_000_000)));
        assert_eq!(
            closed.len(),
            1,
            "the first boot's fault closes at the boot change"
        );
        assert_eq!(closed[0].boot_id.as_deref(), Some("aaaa"));
        assert_eq!(closed[0].wall_time, None, "boot 0 had no wall clock");
        for e in events[fault_end..].iter().cloned() {
            out.extend(c.push(e));
        }
        out.extend(c.finish());
        let timeout = out
            .iter()
            .find(|i| i.kind == crate::incident::IncidentKind::RingTimeout)
            .expect("a timeout incident in boot 1");
        assert!(!timeout.kernel_blame_disputed, "{timeout:#?}");
        assert_eq!(timeout.boot_id.as_deref(), Some("bbbb"));
        assert_eq!(timeout.hostname.as_deref(), Some("host"));
        assert!(
            timeout
                .wall_time
                .as_deref()
                .is_some_and(|w| w.starts_with("2023-11-1")),
            "{:?}",
            timeout.wall_time
        );
    }
}
