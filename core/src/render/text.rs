//! One-screen rendering of an incident for the operator's terminal: who did it, how sure we
//! are, and — prominently — when the kernel's own blame disagrees with the evidence. A culprit
//! named with confidence `unknown` (rule T4: a fault before the timeout, no progress evidence)
//! is shown as a suspect and the kernel's blame as questioned, never as a verdict. Every
//! string from the incident goes through [`terminal`]: names are chosen by any local user.
use std::fmt::Write;

use crate::escape::terminal;

use crate::identity::ProcessIdentity;
use crate::incident::{Confidence, Incident, ProcessRef, ResetLoop, ResetOutcome};
use crate::model::Source;

/// `comm[pid] client=<drm client names> (exe)`, escaped for a terminal.
pub fn process_name(p: &ProcessRef) -> String {
    let comm = format!(
        "{}[{}]{}",
        terminal(&p.comm),
        p.pid,
        client(p.identity.as_ref())
    );
    match &p.exe {
        Some(exe) => format!("{comm} ({})", terminal(exe)),
        None => comm,
    }
}

/// ` client=<names>`: the DRM client names a process gave itself, shown after its comm.
pub fn client(id: Option<&ProcessIdentity>) -> String {
    match id {
        Some(i) if !i.drm_client_names.is_empty() => {
            format!(" client={}", terminal(&i.client_names()))
        }
        _ => String::new(),
    }
}

/// `<indent>who: <unit, user, container, pod, job>` and a newline, or nothing.
pub fn who_line(id: Option<&ProcessIdentity>, indent: &str) -> String {
    let s = id.map(ProcessIdentity::summary).unwrap_or_default();
    if s.is_empty() {
        return String::new();
    }
    format!("{indent}who: {}\n", terminal(&s))
}

/// A culprit named without enough evidence for a verdict (confidence `unknown`, rule T4).
pub fn is_suspect(incident: &Incident) -> bool {
    incident.culprit.is_some() && incident.confidence == Confidence::Unknown
}

/// What a `kernel_only` confidence means, in the words every report uses.
pub const KERNEL_WORD: &str = "the kernel's word, nothing else";

/// Only the kernel's word names the culprit (rule T5, typically log only).
pub fn is_kernel_word(incident: &Incident) -> bool {
    incident.culprit.is_some() && incident.confidence == Confidence::KernelOnly
}

/// Why a suspect is only a suspect: the probes' flight recorder is the only progress evidence.
pub fn suspicion_basis(incident: &Incident) -> &'static str {
    if incident.evidence.iter().any(|e| e.source == Source::Ebpf) {
        "no progress evidence: timing only"
    } else {
        "log only: no progress evidence"
    }
}

/// Render `incident` as plain text, one fact per line.
pub fn render(incident: &Incident) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "== hangwatch incident {}: {} on GPU {} ring {} at {}",
        terminal(&incident.id),
        incident.kind.name(),
        terminal(incident.gpu.as_deref().unwrap_or("?")),
        terminal(incident.ring.as_deref().unwrap_or("-")),
        terminal(&incident.started_at)
    );
    if let Some(first) = &incident.consequence_of {
        let _ = writeln!(
            o,
            "follows:  incident {} — this is its consequence (rule L1)",
            terminal(first)
        );
    }
    match &incident.culprit {
        Some(c) if is_suspect(incident) => {
            let _ = writeln!(
                o,
                "suspect:  {} — confidence unknown ({})",
                process_name(c),
                suspicion_basis(incident)
            );
        }
        Some(c) if is_kernel_word(incident) => {
            let _ = writeln!(
                o,
                "culprit:  {} — confidence kernel_only ({KERNEL_WORD})",
                process_name(c)
            );
        }
        Some(c) => {
            let _ = writeln!(
                o,
                "culprit:  {} — confidence {}",
                process_name(c),
                incident.confidence.name()
            );
        }
        None => {
            let _ = writeln!(
                o,
                "culprit:  unknown — confidence {}",
                incident.confidence.name()
            );
        }
    }
    if let Some(c) = &incident.culprit {
        o.push_str(&who_line(c.identity.as_ref(), "          "));
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
        Some(k) if is_kernel_word(incident) => {
            let _ = writeln!(
                o,
                "kernel:   blamed {} (its word is the only evidence naming a culprit)",
                process_name(k)
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
    if let Some(k) = &incident.kernel_blamed {
        if incident.culprit.as_ref().map(|c| c.pid) != Some(k.pid) {
            o.push_str(&who_line(k.identity.as_ref(), "          "));
        }
    }
    if !incident.reasoning.is_empty() {
        let _ = writeln!(o, "why:      {}", terminal(&incident.reasoning));
    }
    if let Some(l) = &incident.reset_loop {
        o.push_str(&reset_loop(l));
    }
    if !incident.victims.is_empty() {
        let _ = writeln!(o, "victims:");
        for v in &incident.victims {
            let _ = writeln!(
                o,
                "  - {}[{}]{}: {}",
                terminal(&v.comm),
                v.pid,
                client(v.identity.as_ref()),
                terminal(&v.reason)
            );
            o.push_str(&who_line(v.identity.as_ref(), "      "));
        }
    }
    if let Some(c) = &incident.compute {
        o.push_str(&super::compute_text::render(c));
    }
    if !incident.evidence.is_empty() {
        let _ = writeln!(o, "evidence:");
        for e in &incident.evidence {
            let _ = writeln!(
                o,
                "  {:<28} {:<5} {}",
                terminal(&e.at),
                e.source.name(),
                terminal(&e.what)
            );
        }
    }
    let _ = writeln!(o, "reset:    {}", ResetOutcome::describe(incident.reset));
    if let Some(c) = &incident.reset_cause {
        let _ = writeln!(o, "cause:    {} (KFD SMI)", terminal(c));
    }
    if let Some(m) = &incident.needs_recovery {
        let _ = writeln!(o, "!! device needs recovery: {}", terminal(m));
    }
    if incident.dropped_events > 0 {
        let _ = writeln!(
            o,
            "WARNING:  {} events were dropped while this incident was open; attribution may be incomplete.",
            incident.dropped_events
        );
    }
    o
}

/// A reset loop's counts (rule L2): resets per kernel release, then the shared processes.
fn reset_loop(l: &ResetLoop) -> String {
    let mut o = String::new();
    let kernels: Vec<String> = l
        .groups
        .iter()
        .map(|g| {
            let k = g.kernel.as_deref().map_or("unknown".into(), terminal);
            format!("{} on kernel {k}", g.resets)
        })
        .collect();
    let _ = writeln!(o, "loop:     {} resets ({})", l.resets, kernels.join(", "));
    for p in &l.processes {
        let pids: Vec<String> = p.pids.iter().map(u32::to_string).collect();
        let _ = writeln!(
            o,
            "  - {} (pids {}): in {} resets — culprit {}, kernel-blamed {}, victim {}",
            terminal(&p.comm),
            pids.join(", "),
            p.resets,
            p.culprit,
            p.kernel_blamed,
            p.victim
        );
    }
    o
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testkit::{disputed_incident, hostile_loop, suspect_incident};

    #[test]
    fn smi_reset_cause_is_shown_escaped() {
        let mut inc = disputed_incident();
        assert!(!render(&inc).contains("cause:"));
        inc.reset_cause = Some("job hang on ring:gfx_0.0.0\x1b[2J".into());
        let text = render(&inc);
        assert!(
            text.contains(
                "reset:    succeeded\ncause:    job hang on ring:gfx_0.0.0\\x1b[2J (KFD SMI)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn reset_loop_shows_its_counts_per_kernel_and_shared_processes() {
        let mut inc = disputed_incident();
        inc.kind = crate::incident::IncidentKind::ResetLoop;
        inc.reset_loop = Some(hostile_loop("Cyberpunk\x1b[2J"));
        let text = render(&inc);
        assert!(text.contains(": reset loop on GPU 0000:c3:00.0"), "{text}");
        assert!(
            text.contains(
                "loop:     5 resets (4 on kernel 6.1.0-Cyberpunk\\x1b[2J, 1 on kernel unknown)"
            ),
            "{text}"
        );
        assert!(text.contains("  - Cyberpunk\\x1b[2J (pids 100, 101, 102, 103, 104): in 5 resets — culprit 5, kernel-blamed 5, victim 0"), "{text}");
        assert!(
            text.contains(
                "  - gnome-shell (pids 7): in 3 resets — culprit 0, kernel-blamed 0, victim 3"
            ),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'));
        assert!(!render(&disputed_incident()).contains("loop:"));
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
        inc.reset = Some(ResetOutcome::Began);
        assert!(render(&inc).contains("reset:    began, no result seen"));
        inc.reset = Some(ResetOutcome::Resuming);
        assert!(render(&inc)
            .contains("reset:    hardware reset succeeded, the resume's result not seen"));
        inc.reset = None;
        assert!(render(&inc).contains("reset:    none seen"));
        assert!(!render(&inc).contains("needs recovery"));
        inc.needs_recovery = Some("bus-reset\x1b[2J".into());
        let text = render(&inc);
        assert!(
            text.contains("!! device needs recovery: bus-reset"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "{text}");
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
    fn a_consequence_names_the_incident_it_follows() {
        let mut inc = disputed_incident();
        assert!(!render(&inc).contains("follows:"));
        inc.consequence_of = Some("0000:03:00.0-100\x1b[2J".into());
        let text = render(&inc);
        assert!(
            text.contains("follows:  incident 0000:03:00.0-100"),
            "{text}"
        );
        assert!(text.contains("this is its consequence (rule L1)"), "{text}");
        assert!(!text.contains('\x1b'), "{text}");
    }

    #[test]
    fn kernel_word_alone_does_not_claim_agreement() {
        let mut inc = disputed_incident();
        inc.kernel_blame_disputed = false;
        inc.kernel_blamed = inc.culprit.clone();
        inc.confidence = Confidence::KernelOnly;
        let text = render(&inc);
        assert!(!text.contains("agrees with the evidence"), "{text}");
        assert!(
            text.contains("— confidence kernel_only (the kernel's word, nothing else)"),
            "{text}"
        );
        assert!(
            text.contains("(its word is the only evidence naming a culprit)"),
            "{text}"
        );
    }

    #[test]
    fn hostile_names_cannot_drive_the_terminal() {
        let both = |name: &str| {
            let verdict = crate::testkit::hostile(name);
            let mut suspect = verdict.clone();
            suspect.confidence = Confidence::Unknown;
            [render(&verdict), render(&suspect)]
        };
        for name in crate::testkit::HOSTILE {
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
        let t = render(&crate::testkit::hostile("\u{1b}]0;pwned\u{7}"));
        assert!(t.contains("culprit:  \\x1b]0;pwned\\x07[7021]"), "{t}");
    }
}
