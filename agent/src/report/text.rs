//! One-screen rendering of an incident for the operator's terminal: who did it, how sure we
//! are, and — prominently — when the kernel's own blame disagrees with the evidence. A culprit
//! named with confidence `unknown` (rule T4: a fault before the timeout, no progress evidence)
//! is shown as a suspect and the kernel's blame as questioned, never as a verdict. Every
//! string from the incident goes through [`terminal`]: names are chosen by any local user.
use std::fmt::Write;

use crate::escape::terminal;

use crate::incident::{Confidence, Incident, IncidentKind, ProcessRef};
use crate::model::Source;

pub(crate) fn kind_name(kind: IncidentKind) -> &'static str {
    match kind {
        IncidentKind::RingTimeout => "ring timeout",
        IncidentKind::PageFault => "page fault",
        IncidentKind::GpuReset => "GPU reset",
        IncidentKind::IllegalCommand => "illegal command",
    }
}

pub(crate) fn confidence_name(c: Confidence) -> &'static str {
    match c {
        Confidence::Unknown => "unknown",
        Confidence::Likely => "likely",
        Confidence::Certain => "certain",
    }
}

pub(crate) fn source_name(s: Source) -> &'static str {
    match s {
        Source::Ebpf => "ebpf",
        Source::Kmsg => "kmsg",
        Source::Log => "log",
        Source::Proc => "proc",
        Source::Kfd => "kfd",
    }
}

/// `comm[pid] (exe)`, escaped for a terminal.
pub(crate) fn process_name(p: &ProcessRef) -> String {
    match &p.exe {
        Some(exe) => format!("{}[{}] ({})", terminal(&p.comm), p.pid, terminal(exe)),
        None => format!("{}[{}]", terminal(&p.comm), p.pid),
    }
}

/// A culprit named without enough evidence for a verdict (confidence `unknown`, rule T4).
pub(crate) fn is_suspect(incident: &Incident) -> bool {
    incident.culprit.is_some() && incident.confidence == Confidence::Unknown
}

/// Why a suspect is only a suspect: the probes' flight recorder is the only progress evidence.
pub(crate) fn suspicion_basis(incident: &Incident) -> &'static str {
    if incident.evidence.iter().any(|e| e.source == Source::Ebpf) {
        "no progress evidence: timing only"
    } else {
        "log only: no progress evidence"
    }
}

/// The reset outcome in words; "began" and "resuming" say the result is not in the input.
pub(crate) fn reset_name(reset: Option<&str>) -> &str {
    match reset {
        None => "none seen",
        Some("began") => "began, no result seen",
        Some("resuming") => "hardware reset succeeded, the resume's result not seen",
        Some(r) => r,
    }
}

/// Render `incident` as plain text, one fact per line.
pub fn render(incident: &Incident) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "== hangwatch incident {}: {} on GPU {} ring {} at {}",
        terminal(&incident.id),
        kind_name(incident.kind),
        terminal(incident.gpu.as_deref().unwrap_or("?")),
        terminal(incident.ring.as_deref().unwrap_or("-")),
        terminal(&incident.started_at)
    );
    match &incident.culprit {
        Some(c) if is_suspect(incident) => {
            let _ = writeln!(
                o,
                "suspect:  {} — confidence unknown ({})",
                process_name(c),
                suspicion_basis(incident)
            );
        }
        Some(c) => {
            let _ = writeln!(
                o,
                "culprit:  {} — confidence {}",
                process_name(c),
                confidence_name(incident.confidence)
            );
        }
        None => {
            let _ = writeln!(
                o,
                "culprit:  unknown — confidence {}",
                confidence_name(incident.confidence)
            );
        }
    }
    match &incident.kernel_blamed {
        Some(k) if incident.kernel_blame_disputed && is_suspect(incident) => {
            let _ = writeln!(
                o,
                "kernel:   blamed {} — blame questioned, not overruled ({} is a suspect from timing alone)",
                process_name(k),
                incident
                    .culprit
                    .as_ref()
                    .map(process_name)
                    .unwrap_or_default()
            );
        }
        Some(k) if incident.kernel_blame_disputed => {
            let _ = writeln!(
                o,
                "!! DISPUTED: the kernel blamed {} but the evidence points to {}.",
                process_name(k),
                incident
                    .culprit
                    .as_ref()
                    .map(process_name)
                    .unwrap_or_else(|| "another process".into())
            );
        }
        Some(k) => {
            let _ = writeln!(
                o,
                "kernel:   blamed {} (agrees with the evidence)",
                process_name(k)
            );
        }
        None => {
            let _ = writeln!(o, "kernel:   named no process");
        }
    }
    if !incident.reasoning.is_empty() {
        let _ = writeln!(o, "why:      {}", terminal(&incident.reasoning));
    }
    if !incident.victims.is_empty() {
        let _ = writeln!(o, "victims:");
        for v in &incident.victims {
            let _ = writeln!(
                o,
                "  - {}[{}]: {}",
                terminal(&v.comm),
                v.pid,
                terminal(&v.reason)
            );
        }
    }
    if let Some(c) = &incident.compute {
        o.push_str(&super::compute::render(c));
    }
    if !incident.evidence.is_empty() {
        let _ = writeln!(o, "evidence:");
        for e in &incident.evidence {
            let _ = writeln!(
                o,
                "  {:<28} {:<5} {}",
                terminal(&e.at),
                source_name(e.source),
                terminal(&e.what)
            );
        }
    }
    let _ = writeln!(
        o,
        "reset:    {}",
        terminal(reset_name(incident.reset.as_deref()))
    );
    if incident.dropped_events > 0 {
        let _ = writeln!(
            o,
            "WARNING:  {} events were dropped while this incident was open; attribution may be incomplete.",
            incident.dropped_events
        );
    }
    o
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::incident::{Evidence, JobSnapshot, Victim, SCHEMA};
    use crate::model::Clock;

    /// The V710 case: Xwayland's job timed out, but zed faulted at 0x0 first.
    pub(crate) fn disputed_incident() -> Incident {
        let ev = |t: u64, at: &str, source, what: &str, lines: &[&str]| Evidence {
            at: at.into(),
            t_ns: t,
            source,
            what: what.into(),
            lines: lines.iter().map(|s| s.to_string()).collect(),
        };
        let job = |comm: &str, pid, seq, submit, run, done: Option<u64>, state: &str| JobSnapshot {
            job_id: Some(seq),
            ring: "gfx_0.0.0".into(),
            pid,
            tid: pid,
            comm: comm.into(),
            context: Some(1),
            seqno: Some(seq),
            hw_seqno: Some(seq + 1000),
            pasid: Some(0x8001),
            submit_ns: Some(submit),
            run_ns: run,
            done_ns: done,
            state: state.into(),
        };
        Incident {
            schema: SCHEMA.into(),
            id: "0000:c3:00.0-ring_timeout-45756000000000".into(),
            gpu: Some("0000:c3:00.0".into()),
            kind: IncidentKind::RingTimeout,
            ring: Some("gfx_0.0.0".into()),
            culprit: Some(ProcessRef { pid: 7021, comm: "zed".into(), exe: Some("/home/alice/.local/zed.app/libexec/zed-editor".into()) }),
            confidence: Confidence::Likely,
            kernel_blamed: Some(ProcessRef { pid: 6518, comm: "Xwayland".into(), exe: None }),
            kernel_blame_disputed: true,
            victims: vec![Victim { pid: 6518, comm: "Xwayland".into(), reason: "job on gfx_0.0.0 timed out behind the culprit's".into() }],
            evidence: vec![
                ev(45_756_100_000_000, "45756.100000", Source::Log, "VM page fault at 0x0 from zed[7021] pasid 32769", &[
                    "amdgpu 0000:c3:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:24 vmid:3 pasid:32769, for process zed pid 7021 thread zed:cs0 pid 7025)",
                    "amdgpu 0000:c3:00.0: amdgpu:   in page starting at address 0x0000000000000000 from client 10",
                ]),
                ev(45_766_649_480_000, "45766.649480", Source::Log, "ring gfx_0.0.0 timeout, kernel names Xwayland[6518]", &[
                    "[drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring gfx_0.0.0 timeout, signaled seq=1041, emitted seq=1043",
                    "[drm:amdgpu_job_timedout [amdgpu]] *ERROR* Process information: process Xwayland pid 6518 thread Xwayland:cs0 pid 6520",
                ]),
                ev(45_766_700_000_000, "45766.700000", Source::Log, "GPU reset succeeded", &["amdgpu 0000:c3:00.0: amdgpu: GPU reset(2) succeeded!"]),
            ],
            started_at: "45756.100000".into(),
            started_ns: 45_756_100_000_000,
            ended_ns: 45_766_700_000_000,
            clock: Clock::Monotonic,
            reasoning: "zed faulted at address 0x0 on the same ring 10 s before the timeout; Xwayland's job was queued behind it.".into(),
            reset: Some("succeeded".into()),
            jobs: vec![
                job("zed", 7021, 40, 45_756_000_000_000, Some(45_756_001_000_000), None, "hung"),
                job("Xwayland", 6518, 41, 45_756_050_000_000, Some(45_756_060_000_000), Some(45_756_070_000_000), "done"),
                job("Xwayland", 6518, 42, 45_756_200_000_000, None, None, "cancelled"),
            ],
            dropped_events: 3,
            wall_time: None,
            boot_id: None,
            hostname: None,
            provisional: false,
            omitted: Default::default(),
            compute: None,
        }
    }

    #[test]
    fn disputed_blame_is_prominent() {
        let text = render(&disputed_incident());
        assert!(
            text.contains("ring timeout on GPU 0000:c3:00.0 ring gfx_0.0.0 at 45756.100000"),
            "{text}"
        );
        assert!(text.contains("culprit:  zed[7021] (/home/alice/.local/zed.app/libexec/zed-editor) — confidence likely"), "{text}");
        assert!(text.contains("!! DISPUTED: the kernel blamed Xwayland[6518] but the evidence points to zed[7021]"), "{text}");
        assert!(
            text.contains("  - Xwayland[6518]: job on gfx_0.0.0 timed out behind the culprit's"),
            "{text}"
        );
        assert!(text.contains("45766.649480"), "{text}");
        assert!(text.contains("reset:    succeeded"), "{text}");
        assert!(text.contains("3 events were dropped"), "{text}");
    }

    /// Rule T4 from a kernel log: a suspect and a questioned blame, not a verdict.
    pub(crate) fn suspect_incident() -> Incident {
        let mut inc = disputed_incident();
        inc.confidence = Confidence::Unknown;
        inc
    }

    #[test]
    fn a_suspect_is_not_presented_as_a_verdict() {
        let text = render(&suspect_incident());
        assert!(text.contains("suspect:  zed[7021] (/home/alice/.local/zed.app/libexec/zed-editor) — confidence unknown (log only: no progress evidence)"), "{text}");
        assert!(text.contains("kernel:   blamed Xwayland[6518] — blame questioned, not overruled (zed[7021] (/home/alice/.local/zed.app/libexec/zed-editor) is a suspect from timing alone)"), "{text}");
        assert!(!text.contains("culprit:"), "{text}");
        assert!(!text.contains("DISPUTED"), "{text}");
        assert!(!text.contains("points to"), "{text}");
        let mut probed = suspect_incident();
        probed.evidence[0].source = Source::Ebpf;
        assert!(render(&probed).contains("confidence unknown (no progress evidence: timing only)"));
        // A named culprit with a verdict keeps the verdict's words.
        assert!(render(&disputed_incident()).contains("culprit:  zed[7021]"));
    }

    #[test]
    fn a_reset_without_result_says_so() {
        let mut inc = disputed_incident();
        inc.reset = Some("began".into());
        assert!(render(&inc).contains("reset:    began, no result seen"));
        inc.reset = Some("resuming".into());
        assert!(render(&inc)
            .contains("reset:    hardware reset succeeded, the resume's result not seen"));
        inc.reset = None;
        assert!(render(&inc).contains("reset:    none seen"));
    }

    #[test]
    fn agreeing_blame_is_not_disputed() {
        let mut inc = disputed_incident();
        inc.kernel_blame_disputed = false;
        inc.kernel_blamed = inc.culprit.clone();
        inc.dropped_events = 0;
        let text = render(&inc);
        assert!(!text.contains("DISPUTED"), "{text}");
        assert!(text.contains("agrees with the evidence"), "{text}");
        assert!(!text.contains("dropped"), "{text}");
    }

    #[test]
    fn hostile_names_cannot_drive_the_terminal() {
        let both = |name: &str| {
            let verdict = crate::report::markdown::tests::hostile(name);
            let mut suspect = verdict.clone();
            suspect.confidence = Confidence::Unknown;
            [render(&verdict), render(&suspect)]
        };
        for name in crate::report::markdown::tests::HOSTILE {
            for text in both(name) {
                for (i, c) in text.char_indices() {
                    assert!(
                        c == '\n' || !c.is_control(),
                        "control {c:?} at {i} for {name:?}: {text:?}"
                    );
                }
                // Every line is one of ours: a name's newline cannot start a fake line.
                assert!(
                    text.lines()
                        .all(|l| !l.starts_with("/close") && !l.starts_with("# HI")),
                    "{text}"
                );
            }
        }
        let t = render(&crate::report::markdown::tests::hostile(
            "\u{1b}]0;pwned\u{7}",
        ));
        assert!(t.contains("culprit:  \\x1b]0;pwned\\x07[7021]"), "{t}");
    }
}
