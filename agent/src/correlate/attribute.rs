//! Turning a closed [`Open`] incident into an [`Incident`]: kind, culprit, victims,
//! confidence, kernel blame. The rules are numbered as in docs/attribution.md.
use super::incident::{render_time, Open};
use super::processes::Processes;
use super::recorder::Recorder;
use super::Config;
use crate::incident::{Confidence, Incident, IncidentKind, ProcessRef, Victim, SCHEMA};

pub fn attribute(o: &Open, procs: &Processes, rec: &Recorder, cfg: &Config) -> Incident {
    let kind = if o.timeout_t.is_some() {
        IncidentKind::RingTimeout
    } else if o.reset_seen {
        IncidentKind::GpuReset
    } else if !o.faults.is_empty() {
        IncidentKind::PageFault
    } else {
        IncidentKind::IllegalCommand
    };
    let ring = o.timeout_ring.clone();
    let mut evidence = o.evidence.clone();
    evidence.sort_by_key(|e| e.t_ns);

    // The hung job's owner: probe evidence first, then the kernel's Process line.
    let hung: Option<(u32, String)> = o
        .hung_job
        .as_ref()
        .map(|(p, c, _)| (*p, c.clone()))
        .or_else(|| o.kmsg_blamed.as_ref().map(|t| (t.pid, t.comm.clone())));
    let kernel_blamed: Option<ProcessRef> = match kind {
        IncidentKind::PageFault => o
            .faults
            .iter()
            .find(|f| f.pid != 0)
            .map(|f| procs.reference(f.pid, &f.comm)),
        _ => o
            .kmsg_blamed
            .as_ref()
            .map(|t| procs.reference(t.pid, &t.comm))
            .or_else(|| o.hung_job.as_ref().map(|(p, c, _)| procs.reference(*p, c))),
    };
    // Faults that can be evidence: within fault_window before the timeout/reset.
    let anchor = o.timeout_t.or(o.reset_t).unwrap_or(o.last_ns);
    let named_faults: Vec<&super::incident::FaultRec> = o
        .faults
        .iter()
        .filter(|f| f.pid != 0 && f.t_ns.saturating_add(cfg.fault_window_ns) >= anchor)
        .collect();
    let pid0_faults = o.faults.iter().filter(|f| f.pid == 0).count();

    let mut culprit: Option<ProcessRef> = None;
    let mut confidence = Confidence::Unknown;
    let mut victims: Vec<Victim> = Vec::new();
    let mut reasoning: String;
    let ring_name = ring.clone().unwrap_or_else(|| "the ring".into());

    match kind {
        IncidentKind::RingTimeout => {
            let hung_faulted = hung
                .as_ref()
                .is_some_and(|(p, _)| named_faults.iter().any(|f| f.pid == *p));
            let other = named_faults
                .iter()
                .rev()
                .find(|f| hung.as_ref().is_none_or(|(p, _)| f.pid != *p));
            if let (Some((hp, hc)), true) = (&hung, hung_faulted || (o.illegal && other.is_none()))
            {
                // Rule (a).
                culprit = Some(procs.reference(*hp, hc));
                confidence = Confidence::Certain;
                reasoning = if hung_faulted {
                    format!("The job of {hc} (pid {hp}) timed out on {ring_name} and the same process page-faulted shortly before.")
                } else {
                    format!("The job of {hc} (pid {hp}) timed out on {ring_name} right after an illegal-command IRQ on the same GPU; the CP stalls on the packet it rejected, so the IRQ and the timeout are the same job.")
                };
            } else if let Some(f) = other {
                // Rule (b).
                let a = procs.reference(f.pid, &f.comm);
                confidence = Confidence::Likely;
                if let Some((hp, hc)) = &hung {
                    let hc = procs.reference(*hp, hc).comm;
                    if ran_just_before(rec, &ring_name, o, f.pid) {
                        confidence = Confidence::Certain;
                    }
                    victims.push(Victim {
                        pid: *hp,
                        comm: hc.clone(),
                        reason: format!(
                            "its job on {ring_name} timed out behind {}'s faulting work",
                            a.comm
                        ),
                    });
                    reasoning = format!(
                        "{} (pid {}) page-faulted before the timeout; the job of {hc} (pid {hp}) that the kernel blamed timed out behind it.",
                        a.comm, a.pid
                    );
                } else {
                    reasoning = format!("{} (pid {}) page-faulted before the timeout; the hung job's owner is unknown.", a.comm, a.pid);
                }
                culprit = Some(a);
            } else if let Some((hp, hc)) = &hung {
                // Rule (c).
                culprit = Some(procs.reference(*hp, hc));
                confidence = Confidence::Likely;
                reasoning = format!("The job of {hc} (pid {hp}) timed out on {ring_name}; no fault evidence points elsewhere.");
            } else {
                reasoning =
                    "A ring timed out but neither the kernel nor the probes named the job's owner."
                        .into();
            }
        }
        IncidentKind::GpuReset => {
            if let Some(f) = named_faults.last() {
                culprit = Some(procs.reference(f.pid, &f.comm));
                confidence = Confidence::Likely;
                reasoning = format!(
                    "A GPU reset without a ring timeout followed a page fault from {} (pid {}).",
                    f.comm, f.pid
                );
            } else {
                let active = active_before(rec, o);
                reasoning = format!(
                    "A GPU reset{} happened without a ring timeout, so no job was blamed.",
                    if o.mes {
                        " after MES firmware failures"
                    } else {
                        ""
                    }
                );
                if !active.is_empty() {
                    reasoning.push_str(&format!(
                        " Processes active just before: {}.",
                        active.join(", ")
                    ));
                }
            }
        }
        IncidentKind::PageFault => {
            if let Some(f) = o.faults.iter().find(|f| f.pid != 0) {
                culprit = Some(procs.reference(f.pid, &f.comm));
                confidence = Confidence::Likely;
                reasoning = format!(
                    "{} (pid {}) page-faulted; no timeout or reset followed.",
                    f.comm, f.pid
                );
            } else {
                reasoning =
                    "A page fault with pid 0: the kernel could not map the PASID to a process."
                        .into();
            }
        }
        IncidentKind::IllegalCommand => {
            reasoning =
                "An illegal-command IRQ with nothing following; the IRQ names no process.".into();
        }
    }
    if pid0_faults > 0 && kind != IncidentKind::PageFault {
        reasoning.push_str(&format!(" {pid0_faults} fault(s) had pid 0 (the kernel could not map the PASID) and are unattributed."));
    }

    if o.evidence_omitted > 0 {
        reasoning.push_str(&format!(
            " {} further related events were counted but not kept as evidence.",
            o.evidence_omitted
        ));
    }
    let culprit_pid = culprit.as_ref().map(|c| c.pid);
    let add_victim = |v: Victim, victims: &mut Vec<Victim>| {
        if Some(v.pid) != culprit_pid && v.pid != 0 && !victims.iter().any(|x| x.pid == v.pid) {
            victims.push(v);
        }
    };
    // Other jobs in flight on the hung ring.
    if let Some(r) = &ring {
        for j in rec.jobs_on(&o.gpu, r) {
            let in_window = match (o.signaled, o.emitted, j.hw_seqno) {
                (Some(s), Some(e), Some(h)) => h > s && h <= e,
                _ => {
                    j.run_ns.is_some()
                        && j.done_ns.is_none()
                        && j.run_ns.is_some_and(|t| t <= o.last_ns)
                }
            };
            if in_window && j.pid != 0 {
                let comm = procs.reference(j.pid, &j.comm).comm;
                add_victim(
                    Victim {
                        pid: j.pid,
                        comm,
                        reason: format!("job in flight on {r} when it hung"),
                    },
                    &mut victims,
                );
            }
        }
    }
    for (t, _) in &o.rejected {
        let comm = procs.reference(t.pid, &t.comm).comm;
        add_victim(
            Victim {
                pid: t.pid,
                comm,
                reason: "submission refused with -ECANCELED after reset".into(),
            },
            &mut victims,
        );
    }

    let disputed = match (&kernel_blamed, &culprit) {
        (Some(k), Some(c)) => k.pid != c.pid,
        (Some(_), None) => false,
        _ => false,
    };
    let jobs = match &ring {
        Some(r) => rec.snapshot_on(
            &o.gpu,
            Some(r),
            o.start_ns.saturating_sub(cfg.fault_window_ns),
            o.last_ns,
            None,
            procs,
        ),
        None => Vec::new(),
    };
    let started_ns = evidence.first().map_or(o.start_ns, |e| e.t_ns);
    let kind_name = match kind {
        IncidentKind::RingTimeout => "ring_timeout",
        IncidentKind::PageFault => "page_fault",
        IncidentKind::GpuReset => "gpu_reset",
        IncidentKind::IllegalCommand => "illegal_command",
    };
    Incident {
        schema: SCHEMA.to_string(),
        id: format!(
            "{}-{kind_name}-{started_ns}",
            o.gpu.clone().unwrap_or_else(|| "gpu".into())
        ),
        gpu: o.gpu.clone(),
        kind,
        ring,
        culprit,
        confidence,
        kernel_blamed,
        kernel_blame_disputed: disputed,
        victims,
        evidence,
        started_at: render_time(o.clock, started_ns),
        started_ns,
        ended_ns: o.last_ns,
        clock: o.clock,
        reasoning: reasoning.trim().to_string(),
        reset: o.reset.clone(),
        jobs,
        dropped_events: 0,
        wall_time: None,
        boot_id: None,
        hostname: None,
        provisional: false,
        compute: None,
    }
}

/// Rule (b) upgrade: the job run on `ring` immediately before the hung job belongs to
/// `pid` and never completed.
fn ran_just_before(rec: &Recorder, ring: &str, o: &Open, pid: u32) -> bool {
    let Some((_, _, key)) = &o.hung_job else {
        return false;
    };
    let mut ran: Vec<_> = rec
        .jobs_on(&o.gpu, ring)
        .filter(|j| j.run_ns.is_some())
        .collect();
    ran.sort_by_key(|j| j.run_ns);
    let Some(pos) = ran.iter().position(|j| {
        rec.find_on(&o.gpu, Some(ring), key)
            .is_some_and(|h| std::ptr::eq(*j, h))
    }) else {
        return false;
    };
    pos > 0 && ran[pos - 1].pid == pid && ran[pos - 1].done_ns.is_none()
}

/// Processes with jobs in flight or submissions in the 5 s before the incident's reset.
fn active_before(rec: &Recorder, o: &Open) -> Vec<String> {
    let until = o.reset_t.unwrap_or(o.last_ns);
    let from = o.start_ns.saturating_sub(5_000_000_000);
    let mut names: Vec<String> = Vec::new();
    let _ = rec;
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
