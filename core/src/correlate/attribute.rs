//! Turning an [`Open`] incident into an [`Incident`]: kind, culprit, victims, confidence,
//! kernel blame. One function per incident kind; the rules are numbered as in
//! docs/attribution.md (T1–T6 ring timeouts, G1–G2 resets, P1–P2 faults, I1 illegal commands).
use super::blame::{later_work_completed, HungRing, Verdict};
use super::clock::render_time;
use super::compute;
use super::open::Open;
use super::processes::Processes;
use super::recorder::Recorder;
use super::roles::{At, FaultRec, MAX_FAULTS};
use super::timeout::RingTimeout;
use super::verdict::{Blame, Ctx};
use super::Config;
use crate::incident::{Confidence, Incident, IncidentKind, Omitted, ProcessRef, SCHEMA};

pub fn kind_of(o: &Open) -> IncidentKind {
    if o.timeout.seen() {
        IncidentKind::RingTimeout
    } else if o.stall.is_some() {
        IncidentKind::Stall
    } else if o.reset.seen {
        IncidentKind::GpuReset
    } else if !o.faults.list.is_empty() {
        IncidentKind::PageFault
    } else {
        IncidentKind::IllegalCommand
    }
}

/// The ring of the blamed timeout (the probe's reset names it when no timeout line did).
fn hung_ring(o: &Open) -> Option<String> {
    o.timeout
        .blamed()
        .and_then(|b| b.ring.clone())
        .or_else(|| o.reset.probe_ring.clone().filter(|_| o.timeout.seen()))
}

/// The incident `o` stands for now; `id` is its fixed id (`Open::id`).
pub fn attribute(o: &Open, id: String, cx: &Ctx) -> Incident {
    let kind = kind_of(o);
    let ring = match (&o.stall, kind) {
        (Some(s), IncidentKind::Stall) => Some(s.ring.clone()),
        _ => hung_ring(o),
    };
    let mut b = match kind {
        IncidentKind::RingTimeout => ring_timeout(o, ring.as_deref(), cx),
        // An open incident is never a loop (`reset_loop.rs` builds those from closed ones).
        IncidentKind::GpuReset | IncidentKind::ResetLoop => gpu_reset(o, cx),
        IncidentKind::PageFault => page_fault(o, cx),
        IncidentKind::Stall => stall(o, cx),
        IncidentKind::IllegalCommand => Blame::new(
            "Rule I1: an illegal-command IRQ with nothing following; the IRQ names no process."
                .into(),
        ),
    };
    o.mesa.apply(&mut b, cx.procs);
    in_flight_victims(o, ring.as_deref(), cx, &mut b);
    for (t, _) in &o.refusals.by_pid {
        let comm = cx.procs.reference(t.pid, &t.comm).comm;
        b.victim(
            t.pid,
            comm,
            "submission refused with -ECANCELED after reset".into(),
        );
    }
    let compute = compute::attribute(o, kind, ring.as_deref(), cx, &mut b);
    notes(o, kind, &mut b.reasoning);
    if let Some(l) = &o.link {
        b.reasoning.push_str(&l.reasoning());
    }
    let mut inc = assemble(o, kind, ring, b, cx);
    inc.consequence_of = o.link.as_ref().map(|l| l.of.clone());
    inc.compute = compute;
    inc.id = id;
    inc
}

/// Named faults within the fault window before `t`.
fn faults_before<'a>(o: &'a Open, t: u64, cfg: &Config) -> Vec<&'a FaultRec> {
    o.faults
        .named()
        .filter(|f| f.t_ns <= t && f.t_ns.saturating_add(cfg.fault_window_ns) >= t)
        .collect()
}

fn ring_timeout(o: &Open, ring: Option<&str>, cx: &Ctx) -> Blame {
    let blamed = o.timeout.blamed();
    let at = blamed.map_or(
        At {
            t: o.last_ns,
            ord: u64::MAX,
        },
        |b| b.at,
    );
    let t = at.t;
    let ring_name = ring.unwrap_or("the ring");
    let hung = blamed.and_then(RingTimeout::owner);
    let hung_key = blamed.and_then(|b| b.hung_job.as_ref()).map(|h| &h.key);
    let judge = HungRing::new(
        cx.rec,
        &o.gpu,
        ring_name,
        t,
        hung_key,
        cx.cfg.fault_window_ns,
        o.clock,
    );
    let verdicts: Vec<(&FaultRec, Verdict)> = faults_before(o, t, cx.cfg)
        .into_iter()
        .map(|f| (f, judge.judge(f)))
        .collect();
    let is_hung = |f: &FaultRec| hung.as_ref().is_some_and(|(p, _)| f.pid == *p);
    let counts = |v: &Verdict| !matches!(v, Verdict::Unrelated(_));
    let hung_faulted = verdicts.iter().any(|(f, v)| is_hung(f) && counts(v));
    let implicated = verdicts
        .iter()
        .find(|(f, v)| !is_hung(f) && matches!(v, Verdict::Implicated { .. }));
    let timing = verdicts
        .iter()
        .rev()
        .find(|(f, v)| !is_hung(f) && *v == Verdict::TimingOnly);
    let unrelated = unrelated_note(&verdicts);
    let b = match (&hung, implicated, timing) {
        (Some((hp, hc)), None, _) if hung_faulted => {
            Blame::new(format!("Rule T1: the job of {hc} (pid {hp}) timed out on {ring_name} and the same process page-faulted shortly before."))
                .blame(cx.procs.reference(*hp, hc), Confidence::Certain)
        }
        (Some((hp, hc)), None, None) if o.faults.illegal_before(at) => {
            Blame::new(format!("Rule T2: the job of {hc} (pid {hp}) timed out on {ring_name} right after an illegal-command IRQ on the same GPU; the CP stalls on the packet it rejected, so the IRQ and the timeout are the same job."))
                .blame(cx.procs.reference(*hp, hc), Confidence::Certain)
        }
        (_, Some((f, v)), _) => implicated_blame(f, v, hung.as_ref(), ring_name, cx),
        (_, None, Some((f, _))) => timing_blame(f, t, hung.as_ref(), ring_name, o.clock, cx),
        (Some((hp, hc)), None, None) => {
            kernel_stands(cx.procs.reference(*hp, hc), ring_name, blamed.is_some_and(RingTimeout::kernel_word_only))
        }
        (None, None, None) => Blame::new(
            "Rule T6: a ring timed out but neither the kernel nor the probes named the job's owner."
                .into(),
        ),
    };
    let mut b = with_note(b, unrelated);
    if o.faults.illegal > 0 && !o.faults.illegal_before(at) {
        b.reasoning.push_str(" The illegal-command IRQ was printed after the timeout, while the kernel was already recovering the ring, so it does not show which packet stalled the CP (rule T2 needs it before the timeout).");
    }
    other_timeouts(o, cx, &mut b);
    b
}

/// T5: nothing counts against the hung job's owner. Seen by a probe, the blame is likely;
/// named by the kernel's "Process" line alone, it is the kernel's word and nothing else.
fn kernel_stands(who: ProcessRef, ring: &str, kernel_only: bool) -> Blame {
    let job = format!(
        "the job of {} (pid {}) timed out on {ring}",
        who.comm, who.pid
    );
    if kernel_only {
        return Blame::new(format!("Rule T5: {job}; only the kernel's Process line names it, and no other evidence names a culprit, so confidence is kernel_only."))
            .blame(who, Confidence::KernelOnly);
    }
    Blame::new(format!(
        "Rule T5: {job}; no fault evidence points elsewhere, so the kernel's blame stands."
    ))
    .blame(who, Confidence::Likely)
}

/// The incident's other timeouts (a wedged GPU times out several rings): listed in the
/// reasoning (at most three); a process the kernel named for one of them is a victim.
fn other_timeouts(o: &Open, cx: &Ctx, b: &mut Blame) {
    let mut parts = Vec::new();
    let mut count = o.timeout.omitted;
    for r in o.timeout.others() {
        count += 1;
        let ring = r.ring.as_deref().unwrap_or("a ring");
        let named = match r.owner() {
            Some((pid, comm)) => {
                let comm = cx.procs.reference(pid, &comm).comm;
                let named = format!("the job of {comm} (pid {pid})");
                b.victim(
                    pid,
                    comm,
                    format!("its job on {ring} also timed out in this hang"),
                );
                named
            }
            None => "no process named".to_string(),
        };
        if parts.len() < 3 {
            parts.push(format!(
                "{ring} at {} ({named})",
                render_time(o.clock, r.at.t)
            ));
        }
    }
    if count == 0 {
        return;
    }
    let more = count - parts.len() as u64;
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    b.reasoning.push_str(&format!(
        " Other timeouts in the same incident: {}{more}; the blame follows the first timeout whose job has a known owner.",
        parts.join("; ")
    ));
}

/// T3: another process's fault ran on the hung ring and the ring completed nothing after it.
fn implicated_blame(
    f: &FaultRec,
    v: &Verdict,
    hung: Option<&(u32, String)>,
    ring: &str,
    cx: &Ctx,
) -> Blame {
    let a = cx.procs.reference(f.pid, &f.comm);
    let (stopped_at, job_done) = match v {
        Verdict::Implicated {
            stopped_at,
            job_done,
        } => (*stopped_at, *job_done),
        _ => (false, false),
    };
    let confidence = if stopped_at {
        Confidence::Certain
    } else {
        Confidence::Likely
    };
    let how = if stopped_at {
        format!("{ring} stopped at {}'s job, which never completed", a.comm)
    } else if job_done {
        format!(
            "the CP retired {}'s faulting job but {ring} completed nothing after it",
            a.comm
        )
    } else {
        format!("{ring} completed nothing after it")
    };
    let mut b = Blame::new(match hung {
        Some((hp, hc)) => format!("Rule T3: {} (pid {}) page-faulted in a job on {ring} and {how}; the job of {hc} (pid {hp}) that the kernel blamed timed out behind it.", a.comm, a.pid),
        None => format!("Rule T3: {} (pid {}) page-faulted in a job on {ring} and {how}; the hung job's owner is unknown.", a.comm, a.pid),
    })
    .blame(a.clone(), confidence);
    if let Some((hp, hc)) = hung {
        let comm = cx.procs.reference(*hp, hc).comm;
        b.victim(
            *hp,
            comm,
            format!(
                "its job on {ring} timed out behind {}'s faulting work",
                a.comm
            ),
        );
    }
    b
}

/// T4: kernel log only — a fault before the timeout is a suspicion from timing, not a finding.
fn timing_blame(
    f: &FaultRec,
    t: u64,
    hung: Option<&(u32, String)>,
    ring: &str,
    clock: crate::model::Clock,
    cx: &Ctx,
) -> Blame {
    let a = cx.procs.reference(f.pid, &f.comm);
    let secs = t.saturating_sub(f.t_ns) as f64 / 1e9;
    let fault = format!(
        "Rule T4: {} (pid {}) page-faulted {secs:.1} s before {ring} timed out (fault at {})",
        a.comm,
        a.pid,
        render_time(clock, f.t_ns)
    );
    let blamed = match hung {
        Some((hp, hc)) => format!(" and the kernel blamed {hc} (pid {hp})"),
        None => " and the hung job's owner is unknown".into(),
    };
    let mut b = Blame::new(format!("{fault}{blamed}. There is no progress evidence (did {ring} complete jobs after the fault? only the probes of `hangwatch run` see that), so {} is a suspect from timing alone: confidence unknown.", a.comm))
        .blame(a.clone(), Confidence::Unknown);
    if let Some((hp, hc)) = hung {
        let comm = cx.procs.reference(*hp, hc).comm;
        b.victim(
            *hp,
            comm,
            format!(
                "its job on {ring} timed out behind {}'s faulting work (from timing only)",
                a.comm
            ),
        );
    }
    b
}

/// Why faults were set aside, one clause per process (at most three).
fn unrelated_note(verdicts: &[(&FaultRec, Verdict)]) -> Option<String> {
    let mut seen: Vec<u32> = Vec::new();
    let mut parts = Vec::new();
    for (f, v) in verdicts {
        if let Verdict::Unrelated(why) = v {
            if !seen.contains(&f.pid) {
                seen.push(f.pid);
                if parts.len() < 3 {
                    parts.push(format!("{}: {why}", f.who()));
                }
            }
        }
    }
    if parts.is_empty() {
        return None;
    }
    let more = seen.len().saturating_sub(parts.len());
    let more = if more > 0 {
        format!(" (and {more} more processes)")
    } else {
        String::new()
    };
    Some(format!(
        " Page faults before the timeout that are not evidence against it (F1/F2): {}{more}.",
        parts.join("; ")
    ))
}

fn with_note(mut b: Blame, note: Option<String>) -> Blame {
    if let Some(n) = note {
        b.reasoning.push_str(&n);
    }
    b
}

/// G1/G2: a reset without a timeout.
fn gpu_reset(o: &Open, cx: &Ctx) -> Blame {
    let anchor = o.reset.begun_t.unwrap_or(o.last_ns);
    let mut set_aside = Vec::new();
    for f in faults_before(o, anchor, cx.cfg).into_iter().rev() {
        if let Some(j) = later_work_completed(cx.rec, &o.gpu, f, anchor) {
            if !set_aside.iter().any(|(p, _)| *p == f.pid) {
                set_aside.push((
                    f.pid,
                    format!("{}: its later job on {} completed", f.who(), j.ring),
                ));
            }
            continue;
        }
        return Blame::new(format!(
            "Rule G1: a GPU reset without a ring timeout followed a page fault from {} (pid {}).",
            f.comm, f.pid
        ))
        .blame(cx.procs.reference(f.pid, &f.comm), Confidence::Likely);
    }
    let mut reasoning = format!(
        "Rule G2: a GPU reset{} happened without a ring timeout, so no job was blamed.",
        if o.reset.mes {
            " after MES firmware failures"
        } else {
            ""
        }
    );
    if !set_aside.is_empty() {
        let parts: Vec<String> = set_aside.into_iter().map(|(_, s)| s).collect();
        reasoning.push_str(&format!(
            " Page faults before it are not evidence: {}.",
            parts.join("; ")
        ));
    }
    let active = active_before(cx.rec, o);
    if !active.is_empty() {
        reasoning.push_str(&format!(
            " Processes active just before: {}.",
            active.join(", ")
        ));
    }
    Blame::new(reasoning)
}

/// P1/P2: faults with nothing following.
fn page_fault(o: &Open, cx: &Ctx) -> Blame {
    match o.faults.named().next() {
        Some(f) => Blame::new(format!(
            "Rule P1: {} (pid {}) page-faulted; no timeout or reset followed.",
            f.comm, f.pid
        ))
        .blame(cx.procs.reference(f.pid, &f.comm), Confidence::Likely),
        None => Blame::new(
            "Rule P2: a page fault with pid 0: the kernel could not map the PASID to a process."
                .into(),
        ),
    }
}

/// Rule S1: a stall with no kernel timeout names the stalled job's submitter, likely (the poll
/// read who submitted it; nothing says why it stopped); an unknown submitter, nobody.
fn stall(o: &Open, cx: &Ctx) -> Blame {
    let Some(s) = &o.stall else {
        return Blame::new("Rule S1: a ring stalled; its job's submitter is not known.".into());
    };
    let ran = s.t_ns.saturating_sub(s.running_since_ns) / 1_000_000;
    let who = cx.procs.reference(s.task.pid, &s.task.comm);
    let base = format!(
        "Rule S1: {}'s oldest unfinished job had run {ran} ms at {} without finishing, and no \
         kernel timeout followed",
        s.ring,
        render_time(o.clock, s.t_ns)
    );
    if who.pid == 0 {
        return Blame::new(format!("{base}; its submitter is not known."));
    }
    Blame::new(format!(
        "{base}; {} (pid {}) submitted it.",
        who.comm, who.pid
    ))
    .blame(who, Confidence::Likely)
}

/// Other processes' jobs in flight on the incident device's hung ring: hw seqno in `signaled+1..=emitted` when
/// the timeout line gives them, else run but never completed (around this incident).
fn in_flight_victims(o: &Open, ring: Option<&str>, cx: &Ctx, b: &mut Blame) {
    let Some(r) = ring else {
        return;
    };
    let from = o.start_ns.saturating_sub(cx.cfg.fault_window_ns);
    let blamed = o.timeout.blamed();
    let seqs = (
        blamed.and_then(|b| b.signaled),
        blamed.and_then(|b| b.emitted),
    );
    for j in cx.rec.jobs_on(&o.gpu, r) {
        let in_window = match (seqs.0, seqs.1, j.hw_seqno) {
            (Some(s), Some(e), Some(h)) => h > s && h <= e,
            _ => j.done_ns.is_none() && j.run_ns.is_some_and(|t| t >= from && t <= o.last_ns),
        };
        if in_window && j.pid != 0 {
            let comm = cx.procs.reference(j.pid, &j.comm).comm;
            b.victim(j.pid, comm, format!("job in flight on {r} when it hung"));
        }
    }
}

/// Unattributed faults and counted-not-kept events, appended to the reasoning.
fn notes(o: &Open, kind: IncidentKind, reasoning: &mut String) {
    if let (Some(s), IncidentKind::RingTimeout) = (&o.stall, kind) {
        reasoning.push_str(&format!(
            " The recorder saw {} stalled at {}, before the kernel's timeout (rule S1).",
            s.ring,
            render_time(o.clock, s.t_ns)
        ));
    }
    let pid0 = o.faults.unnamed();
    if pid0 > 0 && kind != IncidentKind::PageFault {
        reasoning.push_str(&format!(
            " {pid0} fault(s) had pid 0 (the kernel could not map the PASID) and are unattributed."
        ));
    }
    if o.evidence.omitted > 0 {
        reasoning.push_str(&format!(
            " {} further related events were counted but not kept as evidence.",
            o.evidence.omitted
        ));
    }
    if o.faults.omitted > 0 {
        reasoning.push_str(&format!(
            " {} faults beyond the first {MAX_FAULTS} were counted, not weighed.",
            o.faults.omitted
        ));
    }
    let r = &o.refusals;
    if r.omitted > 0 || r.unlisted > 0 {
        reasoning.push_str(&format!(
            " {} submissions were refused after the reset; {} are counted but not kept as evidence{}.",
            r.total,
            r.omitted,
            if r.unlisted > 0 {
                format!(", {} came from processes beyond the {} listed", r.unlisted, r.by_pid.len())
            } else {
                String::new()
            }
        ));
    }
}

fn kernel_blamed(o: &Open, kind: IncidentKind, procs: &Processes) -> Option<ProcessRef> {
    match kind {
        IncidentKind::PageFault => o
            .faults
            .named()
            .next()
            .map(|f| procs.reference(f.pid, &f.comm)),
        _ => {
            let b = o.timeout.blamed()?;
            b.kernel_named
                .as_ref()
                .map(|t| procs.reference(t.pid, &t.comm))
                .or_else(|| b.hung_job.as_ref().map(|h| procs.reference(h.pid, &h.comm)))
        }
    }
}

fn assemble(o: &Open, kind: IncidentKind, ring: Option<String>, b: Blame, cx: &Ctx) -> Incident {
    let mut evidence = o.evidence.items.clone();
    evidence.sort_by_key(|e| e.t_ns);
    // W1: the wedged uevent's task when the log named no process.
    let kernel_blamed = kernel_blamed(o, kind, cx.procs).or_else(|| o.wedged.blamed(cx.procs));
    let disputed = matches!((&kernel_blamed, &b.culprit), (Some(k), Some(c)) if k.pid != c.pid);
    let jobs = match &ring {
        Some(r) => cx.rec.snapshot_on(
            &o.gpu,
            Some(r),
            o.start_ns.saturating_sub(cx.cfg.fault_window_ns),
            o.last_ns,
            None,
            cx.procs,
        ),
        None => Vec::new(),
    };
    let started_ns = evidence.first().map_or(o.start_ns, |e| e.t_ns);
    Incident {
        schema: SCHEMA.to_string(),
        id: String::new(),
        gpu: o.gpu.clone(),
        kind,
        ring,
        culprit: b.culprit,
        confidence: b.confidence,
        kernel_blamed,
        kernel_blame_disputed: disputed,
        victims: b.victims,
        evidence,
        started_at: render_time(o.clock, started_ns),
        started_ns,
        ended_ns: o.last_ns,
        clock: o.clock,
        reasoning: b.reasoning.trim().to_string(),
        reset: o.reset.outcome(),
        jobs,
        dropped_events: 0,
        wall_time: None,
        boot_id: None,
        hostname: None,
        provisional: false,
        omitted: Omitted {
            evidence: o.evidence.omitted,
            faults: o.faults.omitted,
            refusals: o.refusals.omitted,
            refusing_processes: o.refusals.unlisted,
        },
        compute: None,
        needs_recovery: o.wedged.needs_recovery(),
        consequence_of: None,
        reset_cause: o.compute.reset_cause.clone(),
        reset_loop: None,
    }
}

/// Processes with jobs on the incident's device in flight or submitted in the 5 s before its
/// reset (never another GPU's: two devices both have `gfx_0.0.0`).
fn active_before(rec: &Recorder, o: &Open) -> Vec<String> {
    let until = o.reset.begun_t.unwrap_or(o.last_ns);
    let from = o.start_ns.saturating_sub(5_000_000_000);
    let mut names: Vec<String> = Vec::new();
    for j in rec.all_jobs_on(&o.gpu) {
        let active = (j.run_ns.is_some() && j.done_ns.is_none())
            || j.submit_ns.is_some_and(|t| t >= from && t <= until);
        let n = format!("{} (pid {})", j.comm, j.pid);
        if active && j.pid != 0 && !names.contains(&n) {
            names.push(n);
        }
    }
    names
}
