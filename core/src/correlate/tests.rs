//! Event streams reproducing the fixture logs (as probe events, as kmsg records, and both
//! interleaved) plus the edge cases from docs/attribution.md.
use super::{consequence, Config, Correlator};
use crate::incident::{Confidence, Incident, IncidentKind, JobState, ResetOutcome};
use crate::model::*;

const S: u64 = 1_000_000_000;
const GPU: &str = "0002:00:00.0";

fn ev(t: u64, source: Source, body: EventBody) -> Event {
    super::testev::on(GPU, t, source, body)
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
/// Submit → VmGrabId → RunJob → HwFenceEmitted for one job (run 20 ns after `t`); `done`
/// signals its hardware fence at that time.
#[allow(
    clippy::too_many_arguments,
    reason = "a job event is its fields; a struct would only rename them"
)]
fn job(
    t: u64,
    pid: u32,
    comm: &str,
    ring: &str,
    id: u64,
    pasid: u32,
    hw: u64,
    done: Option<u64>,
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
    if let Some(d) = done {
        v.push(probe(
            d,
            EventBody::HwFenceSignaled {
                ring: ring.into(),
                context: 1,
                seqno: hw,
            },
        ));
    }
    v
}
/// A job that completes 1 µs after it was submitted.
#[allow(
    clippy::too_many_arguments,
    reason = "a job event is its fields; a struct would only rename them"
)]
fn quick_job(t: u64, pid: u32, comm: &str, ring: &str, id: u64, pasid: u32, hw: u64) -> Vec<Event> {
    job(t, pid, comm, ring, id, pasid, hw, Some(t + 1000))
}
fn timed_out(t: u64, ring: &str, id: u64, pasid: u32) -> Event {
    probe(
        t,
        EventBody::JobTimedOut {
            ring: Some(ring.into()),
            job: key(id),
            pasid: Some(pasid),
        },
    )
}
fn reset_begin(t: u64) -> Event {
    probe(
        t,
        EventBody::ResetBegin {
            job: None,
            pasid: None,
            ring: None,
            reset_source: Some(1),
        },
    )
}
/// The incident's reasoning says `what`.
#[track_caller]
fn says(i: &Incident, what: &str) {
    assert!(i.reasoning.contains(what), "{}", i.reasoning);
}
/// Some evidence entry of the incident says `what`.
#[track_caller]
fn shows(i: &Incident, what: &str) {
    let whats: Vec<&str> = i.evidence.iter().map(|e| e.what.as_str()).collect();
    assert!(
        whats.iter().any(|w| w.contains(what)),
        "{what} not in {whats:?}"
    );
}
/// The incident names `who` with `confidence`.
#[track_caller]
fn blamed(i: &Incident, who: (u32, &str), confidence: Confidence) {
    assert_eq!(culprit(i), Some(who), "{}", i.reasoning);
    assert_eq!(i.confidence, confidence, "{}", i.reasoning);
}
fn culprit(i: &Incident) -> Option<(u32, &str)> {
    i.culprit.as_ref().map(|c| (c.pid, c.comm.as_str()))
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

/// v710-zed-fault-then-timeout as probe events: gnome-shell's gfx jobs complete, zed's job
/// runs and page-faults twice (its fence signals after the faults when `zed_job_done`, else
/// never), Xwayland's next gfx job never completes and times out.
fn zed_probe_stream(zed_job_done: bool) -> Vec<Event> {
    let mut v = vec![
        info(7587, "zed", 32819),
        info(6518, "Xwayland", 32820),
        info(4242, "gnome-shell", 32821),
    ];
    for k in 0..5u64 {
        v.extend(quick_job(
            130 * S + k * S,
            4242,
            "gnome-shell",
            "gfx_0.0.0",
            50 + k,
            32821,
            571734500 + k,
        ));
    }
    v.extend(job(
        135_784_000_000,
        7587,
        "zed",
        "gfx_0.0.0",
        1,
        32819,
        571734510,
        zed_job_done.then_some(135_960_000_000),
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
        None,
    ));
    v.push(timed_out(146_437_245_000, "gfx_0.0.0", 2, 32820));
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

/// zed culprit, Xwayland (whom the kernel blamed) its victim; `behind` is in the victim reason.
fn assert_zed(inc: &Incident, confidence: Confidence) {
    assert_eq!(inc.kind, IncidentKind::RingTimeout);
    assert_eq!(inc.ring.as_deref(), Some("gfx_0.0.0"));
    assert_eq!(culprit(inc), Some((7587, "zed")), "{inc:#?}");
    assert_eq!(inc.confidence, confidence, "{}", inc.reasoning);
    assert_eq!(inc.kernel_blamed.as_ref().map(|c| c.pid), Some(6518));
    assert!(inc.kernel_blame_disputed);
    let x = inc
        .victims
        .iter()
        .find(|v| v.pid == 6518)
        .expect("Xwayland is a victim");
    assert!(x.reason.contains("timed out behind zed"), "{}", x.reason);
    assert_eq!(inc.reset, Some(ResetOutcome::Succeeded));
}

#[test]
fn zed_probe_only() {
    let (incs, _) = run(zed_probe_stream(true));
    assert_eq!(incs.len(), 1, "{incs:#?}");
    assert_zed(&incs[0], Confidence::Likely);
    says(&incs[0], "Rule T3");
    says(&incs[0], "CP retired zed's faulting job");
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
    let hung: Vec<_> = incs[0]
        .jobs
        .iter()
        .filter(|j| j.state == JobState::Hung)
        .collect();
    assert_eq!(hung.len(), 1);
    assert_eq!(hung[0].pid, 6518);
    assert_eq!(hung[0].pasid, Some(32820));
    assert_eq!(hung[0].hw_seqno, Some(571734511));
    assert_eq!(hung[0].job_id, Some(2));
    assert_eq!(hung[0].done_ns, None, "a hung job never signaled");
    assert!(incs[0]
        .jobs
        .iter()
        .any(|j| j.pid == 7587 && j.state == JobState::Done));
}

#[test]
fn zed_certain_when_its_unfinished_job_ran_just_before() {
    let (incs, _) = run(zed_probe_stream(false));
    assert_eq!(incs.len(), 1);
    assert_zed(&incs[0], Confidence::Certain);
    says(&incs[0], "stopped at zed's job");
}

#[test]
fn zed_kmsg_only() {
    let (incs, _) = run(zed_kmsg_stream());
    assert_eq!(incs.len(), 1, "{incs:#?}");
    // Rule T4: the log has no progress evidence, so zed stays the suspect (DISPUTED) but the
    // confidence is lowered, and the reasoning says why.
    assert_zed(&incs[0], Confidence::Unknown);
    says(&incs[0], "Rule T4");
    says(&incs[0], "no progress evidence");
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
    assert_zed(&incs[0], Confidence::Likely);
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
    says(&incs[0], "could not map the PASID");
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
    v.extend(job(45_760 * S, 300, "python3", "gfx_0.0.0", 7, 9, 50, None));
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
    assert_eq!(i.reset, Some(ResetOutcome::Succeeded));
    says(i, "python3 (pid 300)");
    says(i, "pid 0");
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
            None,
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
    let (all, c) = run(v);
    // Three resets within 10 minutes are also a reset loop (rule L2), reported after them.
    let (loops, incs): (Vec<Incident>, Vec<Incident>) = all
        .into_iter()
        .partition(|i| i.kind == IncidentKind::ResetLoop);
    assert_eq!(loops.len(), 1, "{loops:#?}");
    assert_eq!(loops[0].reset_loop.as_ref().map(|l| l.resets), Some(3));
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
    v.extend(job(S, 20, "trainer", "comp_1.0.0", 1, 22, 5, None));
    for k in 0..5u64 {
        v.extend(quick_job(
            2 * S + k * S,
            10,
            "gnome-shell",
            "gfx_0.0.0",
            10 + k,
            21,
            100 + k,
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
        v.extend(quick_job(
            i * 1_000_000,
            100 + (i as u32 % 10),
            "p",
            "gfx_0.0.0",
            i,
            1,
            i,
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
    // 8 finished jobs, plus the unmatched run that never finished: never aged out.
    assert_eq!(c.recorder.ring_len("gfx_0.0.0"), 9);
    assert_eq!(c.stats().ring_jobs_seen["gfx_0.0.0"], 21);
    assert_eq!(c.stats().ring_jobs_evicted["gfx_0.0.0"], 12);
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
        super::clock::render_time(Clock::Realtime, 1_700_000_000_123_456_789),
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
    assert_zed(&out[0], Confidence::Likely);
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
        None,
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
    // The storm cannot crowd out the timeout that follows it.
    v.push(kmsg(
        3 * S,
        KmsgKind::RingTimeout {
            ring: "gfx_0.0.0".into(),
            signaled: None,
            emitted: None,
            task: Some(task(42, "game")),
        },
        "ring gfx_0.0.0 timeout",
    ));
    let (incs, _) = run(v);
    assert_eq!(incs.len(), 1);
    let i = &incs[0];
    assert_eq!(i.evidence.len(), super::open::MAX_FAULT_EVIDENCE + 1);
    assert!(i.evidence.iter().any(|e| e.what.contains("timed out")));
    says(i, "1808 further related events");
    assert_eq!(i.omitted.evidence, 1808);
    assert_eq!(i.omitted.faults, 2000 - super::roles::MAX_FAULTS as u64);
    assert_eq!(culprit(i), Some((42, "game")));
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
                kernel: None,
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

    /// Nothing from one boot reaches another: identities (pids and PASIDs are reused), the
    /// flight recorder's jobs, recent evidence for exports, and the per-process summary.
    #[test]
    fn a_new_boot_forgets_identities_jobs_and_evidence() {
        let mut c = Correlator::new(Config::default());
        let mut out = c.push(boot(0, "aaaa", None));
        let mut first = vec![info(7587, "zed", 32819)];
        first.extend(quick_job(S, 7587, "zed", "gfx_0.0.0", 1, 32819, 1));
        first.extend(job(2 * S, 7587, "zed", "gfx_0.0.0", 2, 32819, 2, None));
        first.push(timed_out(4 * S, "gfx_0.0.0", 2, 32819));
        for e in first {
            out.extend(c.push(e));
        }
        out.extend(c.push(boot(1, "bbbb", None)));
        assert_eq!(
            out.len(),
            1,
            "the first boot's timeout closed at the boot change"
        );
        assert!(c.evidence_between(0, u64::MAX).is_empty());
        assert!(c.jobs_between(0, u64::MAX).is_empty());
        // Boot 1: the same PASID and job key again, but no identity was learnt for them.
        let second = vec![
            probe(3 * S, EventBody::VmFault(fault(32819))),
            timed_out(5 * S, "gfx_0.0.0", 2, 32819),
            kmsg(
                5 * S + 1,
                KmsgKind::RingTimeout {
                    ring: "gfx_0.0.0".into(),
                    signaled: None,
                    emitted: None,
                    task: Some(task(7587, "kworker")),
                },
                "ring gfx_0.0.0 timeout",
            ),
        ];
        for e in second {
            out.extend(c.push(e));
        }
        out.extend(c.finish());
        assert_eq!(out.len(), 2, "{out:#?}");
        let b1 = &out[1];
        assert_eq!(b1.boot_id.as_deref(), Some("bbbb"));
        assert!(
            b1.evidence
                .iter()
                .any(|e| e.what.contains("unknown process (pasid 32819 not mapped)")),
            "{:#?}",
            b1.evidence
        );
        assert!(
            b1.evidence.iter().any(|e| e
                .what
                .contains("a job on gfx_0.0.0 timed out (owner not recorded)")),
            "{:#?}",
            b1.evidence
        );
        assert_eq!(culprit(b1), Some((7587, "kworker")));
        // The summary keeps pid 7587 of each boot apart.
        let s: Vec<_> = c.summary().into_iter().filter(|s| s.pid == 7587).collect();
        assert_eq!(s.len(), 2, "{s:#?}");
        assert_eq!(s[0].comm, "zed");
        assert_eq!(s[1].comm, "kworker");
    }
}

/// Rules F1–F4 and T1–T6 of docs/attribution.md: a fault implicates a timeout only when its
/// job ran on the hung ring and the ring made no progress after it.
mod blame_rules {
    use super::*;

    /// A job of `pid` on `ring` that page-faults 200 µs after it runs and completes 300 µs
    /// later (the simulator's `fault_at`).
    #[allow(
        clippy::too_many_arguments,
        reason = "a job event is its fields; a struct would only rename them"
    )]
    fn faulting_job(
        t: u64,
        pid: u32,
        comm: &str,
        ring: &str,
        id: u64,
        pasid: u32,
        hw: u64,
    ) -> Vec<Event> {
        let mut v = job(t, pid, comm, ring, id, pasid, hw, Some(t + 500_000));
        v.push(probe(t + 200_000, EventBody::VmFault(fault(pasid))));
        v
    }

    fn find_timeout(incs: &[Incident]) -> &Incident {
        let t: Vec<_> = incs
            .iter()
            .filter(|i| i.kind == IncidentKind::RingTimeout)
            .collect();
        assert_eq!(t.len(), 1, "{incs:#?}");
        t[0]
    }

    /// The VM reproduction: mpv's recoverable faults hit gfx while its later gfx jobs keep
    /// completing; python3's compute job hangs. The kernel, which named python3, was right.
    #[test]
    fn noisy_faulter_next_to_an_unrelated_compute_hang() {
        let mut v = vec![info(100, "mpv", 41), info(200, "python3", 42)];
        for k in 0..30u64 {
            v.extend(faulting_job(
                S + k * S / 10,
                100,
                "mpv",
                "gfx_0.0.0",
                1000 + k,
                41,
                1000 + k,
            ));
        }
        v.extend(quick_job(S, 200, "python3", "comp_1.0.0", 1, 42, 10));
        v.extend(job(
            3 * S / 2,
            200,
            "python3",
            "comp_1.0.0",
            2,
            42,
            11,
            None,
        ));
        v.push(timed_out(7 * S / 2, "comp_1.0.0", 2, 42));
        v.push(reset_begin(7 * S / 2 + 100));
        v.push(probe(36 * S / 10, EventBody::ResetEnd { result: 0 }));
        let (incs, _) = run(v);
        let i = find_timeout(&incs);
        assert_eq!(i.ring.as_deref(), Some("comp_1.0.0"));
        blamed(i, (200, "python3"), Confidence::Likely);
        assert_eq!(i.kernel_blamed.as_ref().map(|k| k.pid), Some(200));
        assert!(!i.kernel_blame_disputed);
        assert!(!i.victims.iter().any(|v| v.pid == 100), "{:?}", i.victims);
        says(i, "Rule T5");
        says(
            i,
            "mpv (pid 100): its job at the time ran on gfx_0.0.0, not comp_1.0.0",
        );
    }

    /// firefox's faults on gfx are followed by completed gfx work; zed's fault wedges gfx;
    /// Xwayland's next job times out. zed is the culprit, firefox is not.
    #[test]
    fn two_faulters_one_of_which_wedges() {
        let mut v = vec![
            info(10, "firefox", 51),
            info(20, "zed", 52),
            info(30, "Xwayland", 53),
            info(40, "gnome-shell", 54),
        ];
        for k in 0..10u64 {
            v.extend(faulting_job(
                S + k * S / 10,
                10,
                "firefox",
                "gfx_0.0.0",
                100 + k,
                51,
                100 + k,
            ));
        }
        v.extend(quick_job(
            2 * S,
            40,
            "gnome-shell",
            "gfx_0.0.0",
            110,
            54,
            110,
        ));
        v.extend(quick_job(
            21 * S / 10,
            40,
            "gnome-shell",
            "gfx_0.0.0",
            111,
            54,
            111,
        ));
        // zed: faults, the CP retires the job (its fence signals), and gfx is wedged after it.
        v.extend(faulting_job(
            5 * S / 2,
            20,
            "zed",
            "gfx_0.0.0",
            112,
            52,
            112,
        ));
        v.extend(job(3 * S, 30, "Xwayland", "gfx_0.0.0", 113, 53, 113, None));
        v.push(timed_out(5 * S, "gfx_0.0.0", 113, 53));
        let (incs, _) = run(v);
        let i = find_timeout(&incs);
        blamed(i, (20, "zed"), Confidence::Likely);
        assert!(i.kernel_blame_disputed);
        assert!(i.victims.iter().any(|v| v.pid == 30));
        assert!(!i.victims.iter().any(|v| v.pid == 10), "{:?}", i.victims);
        says(i, "Rule T3");
        says(
            i,
            "firefox (pid 10): gfx_0.0.0 kept completing work after it",
        );
    }

    /// A fault on the hung ring, but the ring completed other jobs after it: F2, the kernel's
    /// blame stands.
    #[test]
    fn fault_on_the_hung_ring_followed_by_progress_is_unrelated() {
        let mut v = vec![info(10, "zed", 51), info(30, "Xwayland", 53)];
        v.extend(faulting_job(S, 10, "zed", "gfx_0.0.0", 1, 51, 1));
        for k in 0..5u64 {
            v.extend(quick_job(
                S + (k + 1) * S / 5,
                30,
                "Xwayland",
                "gfx_0.0.0",
                2 + k,
                53,
                2 + k,
            ));
        }
        v.extend(job(5 * S / 2, 30, "Xwayland", "gfx_0.0.0", 9, 53, 9, None));
        v.push(timed_out(9 * S / 2, "gfx_0.0.0", 9, 53));
        let (incs, _) = run(v);
        let i = find_timeout(&incs);
        blamed(i, (30, "Xwayland"), Confidence::Likely);
        assert!(!i.kernel_blame_disputed);
    }

    /// The hung job's owner faulted, but on another ring whose later jobs completed: not T1's
    /// certainty, the kernel's blame stands as likely.
    #[test]
    fn hung_owners_unrelated_fault_does_not_make_it_certain() {
        let mut v = vec![info(30, "blender", 53)];
        v.extend(faulting_job(S, 30, "blender", "gfx_0.0.0", 1, 53, 1));
        v.extend(quick_job(11 * S / 10, 30, "blender", "gfx_0.0.0", 2, 53, 2));
        v.extend(job(2 * S, 30, "blender", "comp_1.0.0", 3, 53, 1, None));
        v.push(timed_out(4 * S, "comp_1.0.0", 3, 53));
        let (incs, _) = run(v);
        let i = find_timeout(&incs);
        blamed(i, (30, "blender"), Confidence::Likely);
    }

    /// F1 also works from logs: an mmhub fault cannot stall gfx.
    #[test]
    fn mmhub_fault_cannot_stall_gfx() {
        let mut f = fault(77);
        f.hub = "mmhub0".into();
        let v = vec![
            kmsg(
                10 * S,
                KmsgKind::PageFault {
                    fault: f,
                    task: Some(task(5, "vlc")),
                },
                "[mmhub0] page fault",
            ),
            kmsg(
                12 * S,
                KmsgKind::RingTimeout {
                    ring: "gfx_0.0.0".into(),
                    signaled: Some(1),
                    emitted: Some(2),
                    task: Some(task(6, "kwin_wayland")),
                },
                "ring gfx_0.0.0 timeout",
            ),
        ];
        let (incs, _) = run(v);
        let i = find_timeout(&incs);
        blamed(i, (6, "kwin_wayland"), Confidence::KernelOnly);
        says(i, "came through mmhub");
    }

    /// The probes started after the fault: no progress evidence for it (F4), as from a log.
    #[test]
    fn probes_that_started_after_the_fault_give_timing_only() {
        let mut v = vec![
            kmsg(
                S,
                KmsgKind::PageFault {
                    fault: fault(51),
                    task: Some(task(10, "zed")),
                },
                "[gfxhub] page fault",
            ),
            info(30, "Xwayland", 53),
        ];
        v.extend(quick_job(5 * S, 30, "Xwayland", "gfx_0.0.0", 1, 53, 1));
        v.extend(job(6 * S, 30, "Xwayland", "gfx_0.0.0", 2, 53, 2, None));
        v.push(timed_out(8 * S, "gfx_0.0.0", 2, 53));
        let (incs, _) = run(v);
        let i = find_timeout(&incs);
        blamed(i, (10, "zed"), Confidence::Unknown);
        assert!(i.kernel_blame_disputed);
        says(i, "Rule T4");
    }

    /// Degraded probes (no scheduler run events): the recorder cannot say what ran, so no
    /// progress evidence (F4), not "nothing of zed's ran on gfx" (F2).
    #[test]
    fn without_run_events_a_fault_is_timing_only() {
        let mut v = zed_probe_stream(true);
        v.retain(|e| !matches!(e.body, EventBody::RunJob { .. }));
        let (incs, _) = run(v);
        let i = find_timeout(&incs);
        blamed(i, (7587, "zed"), Confidence::Unknown);
    }

    /// G1's exclusion: the faulter's later work completed before the reset.
    #[test]
    fn reset_after_a_fault_whose_process_kept_working_names_nobody() {
        let mut v = vec![info(10, "zed", 51)];
        v.extend(faulting_job(S, 10, "zed", "gfx_0.0.0", 1, 51, 1));
        v.extend(quick_job(3 * S / 2, 10, "zed", "gfx_0.0.0", 2, 51, 2));
        v.push(kmsg(
            3 * S,
            KmsgKind::ResetBegin { source: None },
            "GPU reset begin!",
        ));
        v.push(kmsg(
            4 * S,
            KmsgKind::ResetResult {
                ok: true,
                counter: Some(1),
                error: None,
            },
            "GPU reset(1) succeeded!",
        ));
        let (incs, _) = run(v);
        assert_eq!(incs.len(), 1, "{incs:#?}");
        let i = &incs[0];
        assert_eq!(i.kind, IncidentKind::GpuReset);
        assert!(i.culprit.is_none(), "{}", i.reasoning);
        says(i, "its later job on gfx_0.0.0 completed");
    }

    /// `cat v710-illegal-opcode.log v710-zed-fault-then-timeout.log | hangwatch
    /// analyze` lost the DISPUTED verdict (the second log's clock restarts, and its fault
    /// joined the first log's incident).
    #[test]
    fn illegal_opcode_log_then_zed_log_keeps_disputed() {
        let text = [
            include_str!("../../../testdata/dmesg/v710-illegal-opcode.log"),
            include_str!("../../../testdata/dmesg/v710-zed-fault-then-timeout.log"),
        ]
        .concat();
        let (incs, _) = run_unsorted(crate::kmsg::parse_text(&text, Source::Log));
        assert_eq!(incs.len(), 2, "{incs:#?}");
        let illegal = incs
            .iter()
            .find(|i| culprit(i) == Some((2948129, "zed")))
            .expect("illegal-opcode incident");
        assert_eq!(illegal.confidence, Confidence::Certain);
        let zed = incs
            .iter()
            .find(|i| culprit(i) == Some((7587, "zed")))
            .expect("zed incident");
        assert!(zed.kernel_blame_disputed, "{zed:#?}");
        assert_eq!(zed.kernel_blamed.as_ref().map(|k| k.pid), Some(6518));
    }
}

/// Feeds events in the given order (a concatenation of logs is not in time order).
fn run_unsorted(events: Vec<Event>) -> (Vec<Incident>, Correlator) {
    let mut c = Correlator::new(Config::default());
    let mut out = Vec::new();
    for e in events {
        out.extend(c.push(e));
    }
    out.extend(c.finish());
    (out, c)
}

/// Long resets, per-ring resets and results (docs/attribution.md "Clustering").
mod resets {
    use super::*;

    /// An MxGPU (SR-IOV) reset whose result comes 8.5 s after its begin was a second
    /// incident "GPU reset without a ring timeout". Times and pids from the V710 report (its
    /// excerpt elides the seq numbers; these are placeholders).
    const MXGPU: &str = "\
[1895721.227015] amdgpu 0002:00:00.0: amdgpu: ring gfx_0.0.0 timeout, signaled seq=571790001, emitted seq=571790003
[1895721.227021] amdgpu 0002:00:00.0: amdgpu:  Process Xwayland pid 2960107 thread Xwayland pid 2960107
[1895721.227030] amdgpu 0002:00:00.0: amdgpu: GPU reset begin!. Source:  1
[1895729.782658] amdgpu 0002:00:00.0: amdgpu: GPU reset(11) succeeded!
[1895729.783030] amdgpu 0002:00:00.0: [drm] *ERROR* Failed to initialize parser -125!
";

    #[test]
    fn mxgpu_reset_taking_8_5_s_is_one_incident() {
        let (incs, _) = run_unsorted(crate::kmsg::parse_text(MXGPU, Source::Log));
        assert_eq!(incs.len(), 1, "{incs:#?}");
        let i = &incs[0];
        assert_eq!(i.kind, IncidentKind::RingTimeout);
        assert_eq!(i.reset, Some(ResetOutcome::Succeeded));
        assert_eq!(culprit(i), Some((2960107, "Xwayland")));
        assert_eq!(i.ended_ns, 1_895_729_783_030_000);
    }

    /// Live, the reset keeps the incident open past `settle` until its result arrives.
    #[test]
    fn a_pending_reset_keeps_its_incident_open_until_it_ends() {
        let events = crate::kmsg::parse_text(MXGPU, Source::Kmsg);
        let mut c = Correlator::new(Config::default());
        let (before, after): (Vec<_>, Vec<_>) =
            events.into_iter().partition(|e| e.t_ns < 1_895_729 * S);
        for e in before {
            assert!(c.push(e).is_empty());
        }
        assert!(
            c.advance(1_895_729 * S).is_empty(),
            "closed while the reset was pending"
        );
        assert_eq!(c.changed_open().len(), 1);
        let mut out = Vec::new();
        for e in after {
            out.extend(c.push(e));
        }
        assert!(out.is_empty());
        out.extend(c.advance(1_895_735 * S));
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].reset, Some(ResetOutcome::Succeeded));
    }

    /// A reset with no timeout (host-initiated FLR), 8.5 s long: one `gpu_reset` incident.
    #[test]
    fn a_long_reset_without_timeout_is_one_incident() {
        let text: String = MXGPU.lines().skip(2).map(|l| format!("{l}\n")).collect();
        let (incs, _) = run_unsorted(crate::kmsg::parse_text(&text, Source::Log));
        assert_eq!(incs.len(), 1, "{incs:#?}");
        assert_eq!(incs[0].kind, IncidentKind::GpuReset);
        assert_eq!(incs[0].reset, Some(ResetOutcome::Succeeded));
    }

    /// A begun reset that never reports a result closes at the configured cap, as "began".
    #[test]
    fn a_reset_that_never_ends_closes_at_the_cap() {
        let cfg = Config {
            reset_cap_ns: 30 * S,
            ..Config::default()
        };
        let mut c = Correlator::new(cfg);
        assert!(c
            .push(kmsg(
                10 * S,
                KmsgKind::ResetBegin { source: None },
                "GPU reset begin!"
            ))
            .is_empty());
        assert!(c.advance(39 * S).is_empty());
        let out = c.advance(41 * S);
        assert_eq!(out.len(), 1);
        // It began and its result never came: "began", not null ("no reset seen").
        assert_eq!(out[0].reset, Some(ResetOutcome::Began));
    }

    /// pop-os/cosmic-epoch#3764 (RX 5700 XT, 7.0): a per-ring reset fails and escalates to a
    /// full reset: one incident.
    const RING_RESET: &str = "\
[  312.522692] amdgpu 0000:28:00.0: ring gfx_0.0.0 timeout, signaled seq=57638, emitted seq=57641
[  312.522700] amdgpu 0000:28:00.0:  Process cosmic-comp pid 2288 thread cosmic-com:cs0 pid 2316
[  312.522706] amdgpu 0000:28:00.0: Starting gfx_0.0.0 ring reset
[  312.774528] amdgpu 0000:28:00.0: Ring gfx_0.0.0 reset failed
[  312.774536] amdgpu 0000:28:00.0: GPU reset begin!. Source:  1
[  312.943480] amdgpu 0000:28:00.0: BACO reset
[  316.082456] amdgpu 0000:28:00.0: GPU reset succeeded, trying to resume
[  316.082669] amdgpu 0000:28:00.0: VRAM is lost due to GPU reset!
";

    #[test]
    fn ring_reset_escalating_to_a_full_reset_is_one_incident() {
        let events = crate::kmsg::parse_text(RING_RESET, Source::Log);
        let (incs, _) = run_unsorted(events);
        assert_eq!(incs.len(), 1, "{incs:#?}");
        let i = &incs[0];
        assert_eq!(i.kind, IncidentKind::RingTimeout);
        assert_eq!(culprit(i), Some((2288, "cosmic-comp")));
        let whats: Vec<&str> = i.evidence.iter().map(|e| e.what.as_str()).collect();
        assert!(whats.contains(&"ring gfx_0.0.0 reset failed"), "{whats:?}");
        assert!(
            whats.iter().any(|w| w.starts_with("GPU reset began")),
            "{whats:?}"
        );
    }

    /// A per-ring reset whose result comes after `settle`, and a full reset's result from the
    /// probe (no PCI address), both reach the incident waiting for them.
    #[test]
    fn per_ring_reset_result_after_settle_joins_its_incident() {
        let v = vec![
            kmsg(
                10 * S,
                KmsgKind::RingTimeout {
                    ring: "comp_1.0.0".into(),
                    signaled: None,
                    emitted: None,
                    task: Some(task(5, "ollama")),
                },
                "ring comp_1.0.0 timeout",
            ),
            kmsg(
                10 * S + 1,
                KmsgKind::RingReset {
                    ring: "comp_1.0.0".into(),
                    ok: None,
                },
                "Starting comp_1.0.0 ring reset",
            ),
            kmsg(
                18 * S,
                KmsgKind::RingReset {
                    ring: "comp_1.0.0".into(),
                    ok: Some(true),
                },
                "Ring comp_1.0.0 reset succeeded",
            ),
        ];
        let (incs, _) = run(v);
        assert_eq!(incs.len(), 1, "{incs:#?}");
        assert_eq!(incs[0].reset, Some(ResetOutcome::Succeeded));
    }
}

/// Every per-incident list and identity table is capped, overflow counted, and an incident
/// closes within a bounded time after its reset even while refusals continue.
mod bounds {
    use super::*;

    /// A process refused with -ECANCELED after a reset kept the incident open as long
    /// as it submitted (+94 B per refusal, 377 MB after 4 M). Now the incident closes `settle`
    /// after the reset's result; later refusals are counted, not kept.
    #[test]
    fn four_million_refusals_are_bounded_and_the_incident_closes() {
        let mut c = Correlator::new(Config::default());
        let mut out = Vec::new();
        for e in zed_kmsg_stream() {
            out.extend(c.push(e));
        }
        let reset_end = 146_667_459_000u64;
        let mut closed_at = None;
        for k in 0..4_000_000u64 {
            let t = reset_end + 1_000_000 + k * 1_000_000;
            let pid = 1000 + (k % 40) as u32;
            let o = c.push(probe(
                t,
                EventBody::SubmitRejected {
                    task: task(pid, "client"),
                    errno: -125,
                },
            ));
            if !o.is_empty() && closed_at.is_none() {
                closed_at = Some(t);
            }
            out.extend(o);
        }
        out.extend(c.finish());
        assert_eq!(out.len(), 1, "{out:#?}");
        let closed_at = closed_at.expect("closed while the refusals continued");
        assert!(
            closed_at <= reset_end + 5 * S + 2_000_000,
            "closed at {closed_at}"
        );
        let i = &out[0];
        assert!(i.ended_ns <= reset_end + 5 * S + 1_000_000);
        let refusal_evidence = i
            .evidence
            .iter()
            .filter(|e| e.what.contains("refused"))
            .count();
        assert_eq!(
            refusal_evidence,
            super::super::roles::MAX_REFUSAL_EVIDENCE as usize
        );
        let refused_victims = i
            .victims
            .iter()
            .filter(|v| v.reason.contains("ECANCELED"))
            .count();
        assert_eq!(refused_victims, super::super::roles::MAX_REFUSING_PIDS);
        assert!(
            i.omitted.refusals > 4000 && i.omitted.refusing_processes > 0,
            "{:?}",
            i.omitted
        );
        assert!(c.stats().unattached > 3_990_000);
        assert!(c.open.is_empty());
    }

    #[test]
    fn identity_tables_evict_in_constant_time_and_count_it() {
        let cfg = Config {
            max_processes: 4,
            max_pasids: 8,
            ..Config::default()
        };
        let mut c = Correlator::new(cfg);
        for p in 0..100u32 {
            c.push(probe(
                u64::from(p),
                EventBody::PasidAllocated {
                    pasid: 1 + p,
                    task: task(10 + p, "client"),
                },
            ));
        }
        assert_eq!(c.procs.pasids(), 8);
        assert_eq!(c.stats().pasid_evictions, 92);
        assert_eq!(c.procs.pid_of_pasid(100), Some(109));
        assert_eq!(c.procs.pid_of_pasid(1), None);
        assert_eq!(c.procs.len(), 4);
        assert_eq!(c.stats().process_evictions, 96);
    }

    #[test]
    fn per_process_submission_counters_are_bounded() {
        let mut c = Correlator::new(Config::default());
        let n = super::super::SUBMISSION_PIDS as u32 + 100;
        for p in 0..n {
            c.push(probe(
                u64::from(p),
                EventBody::Submit {
                    task: task(1 + p, "client"),
                    ring: "gfx_0.0.0".into(),
                    job: key(u64::from(p)),
                    num_ibs: 1,
                },
            ));
        }
        assert_eq!(c.stats().submissions.len(), super::super::SUBMISSION_PIDS);
        assert_eq!(c.stats().submissions_untracked, 100);
    }
}

/// `changed_open`: provisional snapshots of open incidents for durability.
mod provisional {
    use super::*;

    #[test]
    fn changed_open_reports_each_change_once_with_the_final_id() {
        let mut c = Correlator::new(Config::default());
        let mut events = zed_kmsg_stream().into_iter();
        let first = events.next().unwrap();
        assert!(c.changed_open().is_empty());
        c.push(first);
        let p = c.changed_open();
        assert_eq!(p.len(), 1);
        assert!(p[0].provisional);
        assert_eq!(p[0].kind, IncidentKind::PageFault);
        let id = p[0].id.clone();
        assert!(c.changed_open().is_empty(), "nothing changed since");
        let mut out = Vec::new();
        for e in events {
            out.extend(c.push(e));
        }
        let p = c.changed_open();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].kind, IncidentKind::RingTimeout);
        assert_eq!(p[0].id, id);
        assert_eq!(
            c.stats().incidents,
            0,
            "provisional reports are not emitted incidents"
        );
        out.extend(c.finish());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id, id);
        assert!(!out[0].provisional);
        assert_eq!(c.summary().iter().map(|s| s.culprit).sum::<u32>(), 1);
    }
}

/// The flight recorder's view of a reset, as the "last jobs on the hung ring" table shows it.
#[test]
fn jobs_force_signaled_by_a_reset_are_cancelled_not_done() {
    let mut v = vec![info(10, "game", 51), info(20, "compositor", 52)];
    v.extend(job(S, 10, "game", "gfx_0.0.0", 1, 51, 1, None));
    v.extend(job(
        S + S / 2,
        20,
        "compositor",
        "gfx_0.0.0",
        2,
        52,
        2,
        None,
    ));
    v.push(timed_out(3 * S, "gfx_0.0.0", 1, 51));
    v.push(reset_begin(3 * S + 10));
    // amdgpu_fence_driver_force_completion signals everything the ring still held.
    v.push(probe(
        3 * S + 20,
        EventBody::HwFenceSignaled {
            ring: "gfx_0.0.0".into(),
            context: 1,
            seqno: 2,
        },
    ));
    v.push(probe(3 * S + 30, EventBody::ResetEnd { result: 0 }));
    v.extend(quick_job(S / 2, 20, "compositor", "gfx_0.0.0", 3, 52, 0));
    let (incs, _) = run(v);
    let i = &incs[0];
    let state = |id: u64| {
        let j = i
            .jobs
            .iter()
            .find(|j| j.job_id == Some(id))
            .expect("job in snapshot");
        (j.state.name(), j.done_ns)
    };
    assert_eq!(state(1), ("hung", None));
    assert_eq!(state(2), ("cancelled", None));
    assert_eq!(state(3), ("done", Some(S / 2 + 1000)));
    assert!(i
        .victims
        .iter()
        .any(|v| v.pid == 20 && v.reason.contains("in flight")));
}

/// What the real-log corpus (testdata/corpus/, docs/corpus.md) taught the correlator: several
/// rings timing out in one hang, IRQs printed during the recovery, the outcome of an
/// escalation, and notices printed before the timeout they belong to.
mod corpus_lessons {
    use super::*;

    fn analyze(text: &str) -> (Vec<Incident>, Correlator) {
        run_unsorted(crate::kmsg::parse_text(text, Source::Log))
    }

    /// NixOS/nixpkgs#176915 (HD 7970): gfx times out naming VRising.exe, then in the same
    /// second sdma0 with pid 0. The ring was `sdma0` and the reasoning said "VRising.exe timed
    /// out on sdma0": the ring must be the blamed timeout's.
    #[test]
    fn second_ring_timing_out_keeps_the_blamed_timeouts_ring() {
        let (incs, _) = analyze(
            "\
[ 1000.100000] [drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring gfx timeout, signaled seq=241742, emitted seq=241745
[ 1000.100001] [drm:amdgpu_job_timedout [amdgpu]] *ERROR* Process information: process VRising.exe pid 1896 thread dxvk-submit pid 1958
[ 1000.200000] [drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring sdma0 timeout, signaled seq=43529, emitted seq=43531
[ 1000.200001] [drm:amdgpu_job_timedout [amdgpu]] *ERROR* Process information: process  pid 0 thread  pid 0
",
        );
        assert_eq!(incs.len(), 1, "{incs:#?}");
        let i = &incs[0];
        assert_eq!(i.ring.as_deref(), Some("gfx"));
        blamed(i, (1896, "VRising.exe"), Confidence::KernelOnly);
        says(i, "timed out on gfx;");
        says(i, "sdma0 at 1000.200000 (no process named)");
        assert!(!i.reasoning.contains("on sdma0"), "{}", i.reasoning);
        assert_eq!(i.kernel_blamed.as_ref().map(|k| k.pid), Some(1896));
    }

    /// An unnamed timeout first and a named one after: the named one is blamed and gives the
    /// ring; a second named process is a victim of the same hang, not ignored.
    #[test]
    fn the_first_named_timeout_is_blamed_and_other_named_ones_are_victims() {
        let t = |ring: &str, task: Option<Task>| KmsgKind::RingTimeout {
            ring: ring.into(),
            signaled: None,
            emitted: None,
            task,
        };
        let v = vec![
            kmsg(10 * S, t("sdma0", Some(task(0, ""))), "ring sdma0 timeout"),
            kmsg(10 * S + 5, t("comp_1.0.0", Some(task(7, "ollama"))), "c"),
            kmsg(10 * S + 9, t("gfx_0.0.0", Some(task(8, "kwin"))), "g"),
        ];
        let (incs, _) = run(v);
        assert_eq!(incs.len(), 1, "{incs:#?}");
        let i = &incs[0];
        assert_eq!(i.ring.as_deref(), Some("comp_1.0.0"));
        blamed(i, (7, "ollama"), Confidence::KernelOnly);
        assert_eq!(i.kernel_blamed.as_ref().map(|k| k.pid), Some(7));
        says(i, "sdma0 at 10.000000 (no process named)");
        says(i, "gfx_0.0.0 at 10.000000 (the job of kwin (pid 8))");
        assert!(
            i.victims
                .iter()
                .any(|v| v.pid == 8 && v.reason.contains("gfx_0.0.0 also timed out")),
            "{:?}",
            i.victims
        );
    }

    /// The probe and the kernel log reporting the same timeout are one timeout, not two.
    #[test]
    fn probe_and_log_reports_of_one_timeout_are_one() {
        let (incs, _) = run(zed_kmsg_stream()
            .into_iter()
            .chain(zed_probe_stream(false))
            .collect());
        assert_eq!(incs.len(), 1);
        assert!(
            !incs[0].reasoning.contains("Other timeouts"),
            "{}",
            incs[0].reasoning
        );
    }

    /// The same job timing out again (the probe's job key, or the log's seqs) is one timeout;
    /// a different job on the same ring is another.
    #[test]
    fn the_same_job_timing_out_again_is_one_timeout() {
        let line = |t: u64, signaled: u64| {
            kmsg(
                t,
                KmsgKind::RingTimeout {
                    ring: "gfx".into(),
                    signaled: Some(signaled),
                    emitted: Some(9),
                    task: Some(task(5, "game")),
                },
                "ring gfx timeout",
            )
        };
        let mut v = vec![info(5, "game", 55)];
        v.extend(job(S, 5, "game", "gfx", 1, 55, 9, None));
        v.push(timed_out(3 * S, "gfx", 1, 55));
        v.push(timed_out(4 * S, "gfx", 1, 55));
        v.push(line(3 * S, 7));
        v.push(line(4 * S, 7));
        let (incs, _) = run(v.clone());
        assert_eq!(incs.len(), 1, "{incs:#?}");
        assert!(
            !incs[0].reasoning.contains("Other timeouts"),
            "{}",
            incs[0].reasoning
        );
        v.push(line(5 * S, 8));
        let (incs, _) = run(v);
        says(
            &incs[0],
            "Other timeouts in the same incident: gfx at 5.000000",
        );
    }

    /// A compute ring's timeout and its successful per-ring reset, then a gfx timeout `gap`
    /// later naming gnome-shell (`ring` for the second timeout).
    fn two_rings(second: &str, gap_ms: u64) -> String {
        let t = 34.965512 + gap_ms as f64 / 1000.0;
        format!(
            "\
[   34.965321] amdgpu 0000:03:00.0: amdgpu: ring comp_1.1.0 timeout, signaled seq=7, emitted seq=9
[   34.965331] amdgpu 0000:03:00.0: amdgpu:  Process python3 pid 4087 thread python3:cs0 pid 4213
[   34.965338] amdgpu 0000:03:00.0: amdgpu: Starting comp_1.1.0 ring reset
[   34.965512] amdgpu 0000:03:00.0: amdgpu: Ring comp_1.1.0 reset succeeded
[{t:13.6}] amdgpu 0000:03:00.0: amdgpu: ring {second} timeout, signaled seq=70, emitted seq=72
[{t:13.6}] amdgpu 0000:03:00.0: amdgpu:  Process gnome-shell pid 1800 thread gnome-shel:cs0 pid 1801
"
        )
    }

    /// One hang on two rings: gfx times out 3 ms after the compute ring's reset succeeded.
    /// Two incidents (a timeout after a reset ended is a new one), the second linked to the
    /// first as its consequence (rule L1), with an evidence entry and a reasoning sentence.
    #[test]
    fn one_hang_on_two_rings_links_the_second_as_a_consequence() {
        let (incs, _) = analyze(&two_rings("gfx_0.0.0", 3));
        assert_eq!(incs.len(), 2, "{incs:#?}");
        let (first, second) = (&incs[0], &incs[1]);
        assert_eq!(first.ring.as_deref(), Some("comp_1.1.0"));
        assert_eq!(first.consequence_of, None);
        assert_eq!(second.ring.as_deref(), Some("gfx_0.0.0"));
        assert_eq!(second.consequence_of.as_deref(), Some(first.id.as_str()));
        says(second, "Rule L1: a consequence of incident 0000:03:00.0-");
        says(
            second,
            "comp_1.1.0 timed out on the same GPU and its reset ended 3.0 ms before",
        );
        assert!(
            second
                .evidence
                .iter()
                .any(|e| e.what.starts_with("consequence of incident")),
            "{:#?}",
            second.evidence
        );
        let json = serde_json::to_value(second).unwrap();
        assert_eq!(json["consequence_of"], first.id.as_str());
        assert!(serde_json::to_value(first)
            .unwrap()
            .get("consequence_of")
            .is_none());
    }

    /// Rule L1 live: the same hang from the probes. The provisional report of the second
    /// incident already carries the link, and so does the final one.
    #[test]
    fn one_hang_on_two_rings_from_the_probes() {
        let mut v = job(S, 200, "python3", "comp_1.0.0", 1, 42, 10, None);
        v.extend(job(S, 100, "gnome-shell", "gfx_0.0.0", 2, 41, 20, None));
        v.push(timed_out(11 * S, "comp_1.0.0", 1, 42));
        v.push(reset_begin(11 * S + 100));
        v.push(probe(11 * S + S / 2, EventBody::ResetEnd { result: 0 }));
        v.push(timed_out(11 * S + S / 2 + 2_000_000, "gfx_0.0.0", 2, 41));
        let mut c = Correlator::new(Config::default());
        let mut out = Vec::new();
        for e in v {
            out.extend(c.push(e));
        }
        let live = c.changed_open();
        let second = live.iter().find(|i| i.ring.as_deref() == Some("gfx_0.0.0"));
        let first = live
            .iter()
            .find(|i| i.ring.as_deref() == Some("comp_1.0.0"));
        let (first, second) = (first.expect("comp incident"), second.expect("gfx incident"));
        assert!(second.provisional);
        assert_eq!(second.consequence_of.as_deref(), Some(first.id.as_str()));
        out.extend(c.finish());
        assert_eq!(out.len(), 2, "{out:#?}");
        assert_eq!(out[1].consequence_of.as_deref(), Some(out[0].id.as_str()));
        says(&out[1], "its reset ended 2.0 ms before");
    }

    /// Rule L1's bounds: past its window, or the same ring timing out again, is no consequence.
    #[test]
    fn a_later_or_same_ring_timeout_is_no_consequence() {
        let late = consequence::WINDOW_NS / 1_000_000 + 1;
        for log in [two_rings("gfx_0.0.0", late), two_rings("comp_1.1.0", 3)] {
            let (incs, _) = analyze(&log);
            assert_eq!(incs.len(), 2, "{incs:#?}");
            assert_eq!(incs[1].consequence_of, None, "{incs:#?}");
        }
    }

    /// Log only, nothing but the kernel's Process line names gnome-shell: the kernel's word
    /// alone is `kernel_only`, below `likely`. The probe's hung job is evidence of its own.
    #[test]
    fn kernel_word_alone_is_kernel_only() {
        let (incs, _) = analyze(
            "\
[ 50.000000] amdgpu 0000:03:00.0: amdgpu: ring gfx_0.0.0 timeout, signaled seq=7, emitted seq=9
[ 50.000002] amdgpu 0000:03:00.0: amdgpu:  Process gnome-shell pid 1800 thread gnome-shel:cs0 pid 1801
",
        );
        assert_eq!(incs.len(), 1, "{incs:#?}");
        blamed(&incs[0], (1800, "gnome-shell"), Confidence::KernelOnly);
        says(&incs[0], "only the kernel's Process line names it");
        assert!(Confidence::KernelOnly < Confidence::Likely);
        assert!(Confidence::Unknown < Confidence::KernelOnly);
        let json = serde_json::to_value(Confidence::KernelOnly).unwrap();
        assert_eq!(json, "kernel_only");
    }

    /// ValveSoftware/SteamOS#2802 (RX 7800 XT, 7.2.5): the `Illegal opcode` IRQ is printed
    /// 76 µs after the timeout, after `Starting gfx_0.0.0 ring reset`: raised during the
    /// recovery. Rule T2 needs it before the timeout, so the kernel's word stays alone
    /// (`kernel_only`).
    #[test]
    fn illegal_opcode_printed_after_the_timeout_is_not_rule_t2() {
        let (incs, _) = analyze(
            "\
[ 6765.045954] amdgpu 0000:03:00.0: ring gfx_0.0.0 timeout, signaled seq=10045651, emitted seq=10045655
[ 6765.045956] amdgpu 0000:03:00.0:  Process main pid 9232 thread vkd3d_queue pid 9408
[ 6765.045958] amdgpu 0000:03:00.0: Starting gfx_0.0.0 ring reset
[ 6765.046030] [drm:gfx_v11_0_bad_op_irq [amdgpu]] *ERROR* Illegal opcode in command stream
",
        );
        assert_eq!(incs.len(), 1, "{incs:#?}");
        blamed(&incs[0], (9232, "main"), Confidence::KernelOnly);
        says(&incs[0], "Rule T5");
        says(&incs[0], "printed after the timeout");
    }

    /// wayvr-org/wayvr#650: the same without stamps (every line at 0): the order of the lines
    /// is the only order there is. Lines in the other order keep rule T2.
    #[test]
    fn without_stamps_line_order_decides_before_and_after() {
        let timeout = "amdgpu 0000:2d:00.0: ring gfx_0.0.0 timeout, signaled seq=6715782, emitted seq=6715785\namdgpu 0000:2d:00.0: Process wayvr pid 41460 thread wayvr pid 41460\n";
        let irq = "[drm:gfx_v11_0_bad_op_irq [amdgpu]] *ERROR* Illegal opcode in command stream\n";
        let (after, _) = analyze(&format!("{timeout}{irq}"));
        assert_eq!(after.len(), 1, "{after:#?}");
        blamed(&after[0], (41460, "wayvr"), Confidence::KernelOnly);
        let (before, _) = analyze(&format!("{irq}{timeout}"));
        assert_eq!(before.len(), 1, "{before:#?}");
        blamed(&before[0], (41460, "wayvr"), Confidence::Certain);
        says(&before[0], "Rule T2");
    }

    fn reset_of(text: &str) -> Option<&'static str> {
        let (incs, _) = analyze(text);
        assert_eq!(incs.len(), 1, "{incs:#?}");
        incs[0].reset.map(|r| r.name())
    }

    const TIMEOUT: &str = "\
[  312.522692] amdgpu 0000:28:00.0: ring gfx_0.0.0 timeout, signaled seq=57638, emitted seq=57641
[  312.522700] amdgpu 0000:28:00.0:  Process cosmic-comp pid 2288 thread cosmic-com:cs0 pid 2316
";
    const RING_STARTS: &str = "[  312.522706] amdgpu 0000:28:00.0: Starting gfx_0.0.0 ring reset\n";
    const RING_FAILS: &str = "[  312.774528] amdgpu 0000:28:00.0: Ring gfx_0.0.0 reset failed\n";
    const FULL_BEGINS: &str = "\
[  312.774536] amdgpu 0000:28:00.0: GPU reset begin!. Source:  1
[  312.943480] amdgpu 0000:28:00.0: BACO reset
[  316.082456] amdgpu 0000:28:00.0: GPU reset succeeded, trying to resume
";

    /// The reset outcome is the escalation's last step: a failed per-ring reset followed by
    /// a full reset that succeeds is `succeeded`, not `failed`.
    #[test]
    fn escalation_reports_the_full_resets_outcome() {
        let ok = "[  316.300000] amdgpu 0000:28:00.0: GPU reset(2) succeeded!\n";
        let bad = "[  316.300000] amdgpu 0000:28:00.0: GPU reset(2) failed\n";
        let esc = format!("{TIMEOUT}{RING_STARTS}{RING_FAILS}{FULL_BEGINS}");
        assert_eq!(reset_of(&format!("{esc}{ok}")), Some("succeeded"));
        assert_eq!(reset_of(&format!("{esc}{bad}")), Some("failed"));
        // A per-ring reset alone keeps its own outcome.
        let ring = format!("{TIMEOUT}{RING_STARTS}{RING_FAILS}");
        assert_eq!(reset_of(&ring), Some("failed"));
        let ring_ok = format!(
            "{TIMEOUT}{RING_STARTS}[  312.522800] amdgpu 0000:28:00.0: Ring gfx_0.0.0 reset succeeded\n"
        );
        assert_eq!(reset_of(&ring_ok), Some("succeeded"));
    }

    /// A reset that began and whose result is not in the log is `began`, never null (which
    /// means "no reset seen"): the log ends during the full reset of an escalation
    /// (waydroid#2399), or during a per-ring reset (SteamOS#2802). When it ends at "GPU reset
    /// succeeded, trying to resume" (cosmic-epoch#3764, Hyprland#8930) the hardware reset
    /// worked and only the resume's result is missing: `resuming`. No reset at all stays null.
    #[test]
    fn a_reset_without_its_result_is_began() {
        let begin_only = "[  312.774536] amdgpu 0000:28:00.0: GPU reset begin!. Source:  1\n[  312.943480] amdgpu 0000:28:00.0: BACO reset\n";
        let esc = format!("{TIMEOUT}{RING_STARTS}{RING_FAILS}{begin_only}");
        assert_eq!(reset_of(&esc), Some("began"));
        let full = format!("{TIMEOUT}{begin_only}");
        assert_eq!(reset_of(&full), Some("began"));
        let esc = format!("{TIMEOUT}{RING_STARTS}{RING_FAILS}{FULL_BEGINS}");
        assert_eq!(reset_of(&esc), Some("resuming"));
        let full = format!("{TIMEOUT}{FULL_BEGINS}");
        assert_eq!(reset_of(&full), Some("resuming"));
        // A new reset after the resume began: that one's outcome, not the earlier step's.
        let again =
            format!("{full}[  330.000000] amdgpu 0000:28:00.0: GPU reset begin!. Source:  1\n");
        assert_eq!(reset_of(&again), Some("began"));
        let ring = format!("{TIMEOUT}{RING_STARTS}");
        assert_eq!(reset_of(&ring), Some("began"));
        assert_eq!(reset_of(TIMEOUT), None);
        // waydroid#2399 (no stamps) and SteamOS#2802 (`dmesg -T`, whole seconds): the full
        // reset begins at the same stamp as the failed per-ring reset; it still began.
        let same_stamp = "\
amdgpu 0000:03:00.0: ring gfx_0.0.0 timeout, signaled seq=37714894, emitted seq=37714897
amdgpu 0000:03:00.0: Process allocator@4.0-s pid 1174792 thread android.ha:cs0 pid 1174913
amdgpu 0000:03:00.0: Starting gfx_0.0.0 ring reset
amdgpu 0000:03:00.0: Ring gfx_0.0.0 reset failed
amdgpu 0000:03:00.0: GPU reset begin!. Source: 1
";
        assert_eq!(reset_of(same_stamp), Some("began"));
    }

    /// "Starting … ring reset" and "Ring … reset succeeded|failed" say what happened.
    #[test]
    fn ring_reset_evidence_keeps_the_outcome() {
        let text = format!(
            "{TIMEOUT}{RING_STARTS}{RING_FAILS}[  312.900000] amdgpu 0000:28:00.0: Starting sdma0 ring reset\n[  312.900100] amdgpu 0000:28:00.0: Ring sdma0 reset succeeded\n"
        );
        let (incs, _) = analyze(&text);
        for w in [
            "ring gfx_0.0.0 reset started",
            "ring gfx_0.0.0 reset failed",
            "ring sdma0 reset started",
            "ring sdma0 reset succeeded",
        ] {
            shows(&incs[0], w);
        }
    }

    const COREDUMP: &str = "\
[  312.522683] amdgpu 0000:28:00.0: [drm] AMDGPU device coredump file has been created
[  312.522687] amdgpu 0000:28:00.0: [drm] Check your /sys/class/drm/card1/device/devcoredump/data
";

    /// Since 6.12 the devcoredump notice is printed before the timeout (cosmic-epoch#3764,
    /// ROCm#6127, linux-cachyos#678): the incident the timeout opens adopts it.
    #[test]
    fn devcoredump_printed_before_the_timeout_is_adopted() {
        let (incs, c) = analyze(&format!("{COREDUMP}{TIMEOUT}"));
        assert_eq!(incs.len(), 1, "{incs:#?}");
        let i = &incs[0];
        shows(i, "devcoredump written at /sys/class/drm/card1");
        assert_eq!(i.started_at, "312.522683");
        assert_eq!(i.evidence[0].what, "devcoredump written");
        assert_eq!(c.stats().unattached, 0);
        blamed(i, (2288, "cosmic-comp"), Confidence::KernelOnly);
    }

    /// Held notices are bounded, only adopted on the same GPU and within a few seconds;
    /// the rest are counted as unattached.
    #[test]
    fn held_notices_are_bounded_same_gpu_and_recent() {
        let other_gpu = COREDUMP.replace("0000:28:00.0", "0000:29:00.0");
        let too_old = COREDUMP.replace("[  312.", "[  300.");
        for held in [other_gpu, too_old] {
            let (incs, c) = analyze(&format!("{held}{TIMEOUT}"));
            let adopted = incs[0].evidence.iter().any(|e| e.what.contains("coredump"));
            assert!(!adopted, "{held}");
            assert_eq!(c.stats().unattached, 2, "{held}");
        }

        let storm: String = (0..100)
            .map(|k| format!("[  312.{:06}] amdgpu 0000:28:00.0: [drm] AMDGPU device coredump file has been created\n", 400000 + k))
            .collect();
        let (incs, c) = analyze(&format!("{storm}{TIMEOUT}"));
        let kept = incs[0]
            .evidence
            .iter()
            .filter(|e| e.what.contains("coredump"))
            .count();
        assert_eq!(kept, super::super::pending::MAX_PENDING);
        assert_eq!(c.stats().unattached, 100 - kept as u64);
    }

    /// A notice with nothing following is counted at the end of the input, not kept.
    #[test]
    fn a_notice_no_incident_follows_is_counted() {
        let (incs, c) = analyze(COREDUMP);
        assert!(incs.is_empty());
        assert_eq!(c.stats().unattached, 2);
    }
}

/// Two GPUs, both with `gfx_0.0.0` and the same per-scheduler job ids (VM scenario 30): every
/// recorder lookup in attribution — the hung job's owner, progress after a fault, jobs in
/// flight, the jobs table, processes active before a reset — is the incident device's.
mod multi_gpu {
    use super::*;

    const A: &str = "0000:00:00.0";
    const B: &str = "0000:01:00.0";

    /// `events` as seen on device `gpu`.
    fn on(gpu: &str, events: Vec<Event>) -> Vec<Event> {
        events
            .into_iter()
            .map(|mut e| {
                e.gpu = Some(gpu.into());
                e
            })
            .collect()
    }

    /// gnome-shell renders on A (jobs 1..=20, the last one still running); on B blender
    /// completes jobs 1..=5 and Xwayland's job 6 never completes; B's gfx times out on job 6,
    /// an id that is gnome-shell's on A.
    fn two_gpus() -> Vec<Event> {
        let mut v = vec![
            info(10, "gnome-shell", 51),
            info(20, "blender", 52),
            info(30, "Xwayland", 53),
        ];
        for k in 1..20u64 {
            let t = S + k * S / 20;
            v.extend(on(
                A,
                quick_job(t, 10, "gnome-shell", "gfx_0.0.0", k, 51, k),
            ));
        }
        v.extend(on(
            A,
            job(2 * S, 10, "gnome-shell", "gfx_0.0.0", 20, 51, 20, None),
        ));
        for k in 1..=5u64 {
            let t = S + k * S / 10;
            v.extend(on(B, quick_job(t, 20, "blender", "gfx_0.0.0", k, 52, k)));
        }
        v.extend(on(
            B,
            job(2 * S, 30, "Xwayland", "gfx_0.0.0", 6, 53, 6, None),
        ));
        v.extend(on(B, vec![timed_out(4 * S, "gfx_0.0.0", 6, 53)]));
        v
    }

    fn names_only_b(i: &Incident) {
        assert_eq!(i.gpu.as_deref(), Some(B));
        assert!(!i.victims.iter().any(|v| v.pid == 10), "{:?}", i.victims);
        assert!(!i.jobs.iter().any(|j| j.pid == 10), "{:?}", i.jobs);
        assert!(!i.reasoning.contains("gnome-shell"), "{}", i.reasoning);
        assert!(i.jobs.iter().any(|j| j.pid == 30), "{:?}", i.jobs);
    }

    #[test]
    fn the_hung_device_names_only_its_own_processes() {
        let (incs, _) = run(two_gpus());
        assert_eq!(incs.len(), 1, "{incs:#?}");
        let i = &incs[0];
        blamed(i, (30, "Xwayland"), Confidence::Likely);
        shows(i, "job of Xwayland (pid 30) on gfx_0.0.0 timed out");
        says(i, "Rule T5");
        names_only_b(i);
    }

    /// zed faults on B's gfx and B completes nothing after it; A's gfx (same name) keeps
    /// completing gnome-shell's work. A's progress is not B's: rule T3 stands.
    #[test]
    fn another_devices_progress_does_not_clear_a_fault() {
        let mut v = two_gpus();
        v.push(info(40, "zed", 54));
        let mut zed = job(3 * S / 2, 40, "zed", "gfx_0.0.0", 7, 54, 7, None);
        zed.push(probe(3 * S / 2 + 200_000, EventBody::VmFault(fault(54))));
        v.extend(on(B, zed));
        for k in 0..5u64 {
            let t = 5 * S / 2 + k * S / 10;
            v.extend(on(
                A,
                quick_job(t, 10, "gnome-shell", "gfx_0.0.0", 30 + k, 51, 30 + k),
            ));
        }
        let (incs, _) = run(v);
        assert_eq!(incs.len(), 1, "{incs:#?}");
        let i = &incs[0];
        assert_eq!(culprit(i), Some((40, "zed")), "{}", i.reasoning);
        says(i, "Rule T3");
        names_only_b(i);
    }

    /// A reset of A force-signals A's fences (cancelled), while B's fence signaling during it
    /// is B's work completing.
    #[test]
    fn a_reset_cancels_only_its_own_devices_jobs() {
        let mut v = vec![info(10, "game", 51), info(20, "compositor", 52)];
        v.extend(on(A, job(S, 10, "game", "gfx_0.0.0", 1, 51, 1, None)));
        v.extend(on(B, job(S, 20, "compositor", "gfx_0.0.0", 1, 52, 1, None)));
        v.extend(on(A, vec![timed_out(3 * S, "gfx_0.0.0", 1, 51)]));
        v.extend(on(A, vec![reset_begin(3 * S + 10)]));
        let signal = EventBody::HwFenceSignaled {
            ring: "gfx_0.0.0".into(),
            context: 1,
            seqno: 1,
        };
        v.extend(on(B, vec![probe(3 * S + 20, signal)]));
        v.extend(on(
            A,
            vec![probe(3 * S + 30, EventBody::ResetEnd { result: 0 })],
        ));
        let (incs, c) = run(v);
        assert_eq!(incs.len(), 1, "{incs:#?}");
        assert_eq!(incs[0].gpu.as_deref(), Some(A));
        assert!(
            !incs[0].jobs.iter().any(|j| j.pid == 20),
            "{:?}",
            incs[0].jobs
        );
        let b = c
            .recorder
            .jobs_on(&Some(B.into()), "gfx_0.0.0")
            .map(|j| (j.pid, j.done_ns, j.cancelled))
            .collect::<Vec<_>>();
        assert_eq!(b, vec![(20, Some(3 * S + 20), false)]);
    }
}
