//! `report.md`: the incident summary for people who read it later (ticket, chat, bug report).
//! Every string from the incident is data (see [`crate::escape`]): it appears only inside code
//! spans or indented code blocks, never as markdown.
use std::fmt::Write;

use super::text::{is_kernel_word, is_suspect, suspicion_basis, KERNEL_WORD};
use crate::escape::{md_block, md_cell, md_code};
use crate::identity::ProcessIdentity;
use crate::incident::{Incident, JobSnapshot, ProcessRef, ResetOutcome};

/// Rows in the "last jobs on the hung ring" table; the full history is in incident.json.
pub const JOB_ROWS: usize = 16;

/// `` `comm`[pid] client `name` (`exe`) `` for markdown prose.
pub fn process(p: &ProcessRef) -> String {
    let comm = format!(
        "{}[{}]{}",
        md_code(&p.comm),
        p.pid,
        client(p.identity.as_ref())
    );
    match &p.exe {
        Some(exe) => format!("{comm} ({})", md_code(exe)),
        None => comm,
    }
}

/// `` client `names` ``: the DRM client names a process gave itself.
fn client(id: Option<&ProcessIdentity>) -> String {
    match id {
        Some(i) if !i.drm_client_names.is_empty() => {
            format!(" client {}", md_code(&i.client_names()))
        }
        _ => String::new(),
    }
}

/// `` — `unit …, user …, container …` `` after a process, or nothing.
fn who(id: Option<&ProcessIdentity>) -> String {
    let s = id.map(ProcessIdentity::summary).unwrap_or_default();
    if s.is_empty() {
        return String::new();
    }
    format!(" — who: {}", md_code(&s))
}

/// Seconds since boot as the kernel prints them: flight-recorder jobs are always on the
/// probes' CLOCK_MONOTONIC, like the evidence timestamps beside them.
fn secs(ns: u64) -> String {
    format!("{}.{:06}", ns / 1_000_000_000, (ns % 1_000_000_000) / 1000)
}

fn opt_secs(ns: Option<u64>) -> String {
    ns.map(secs).unwrap_or_else(|| "-".into())
}

/// The hung ring's last jobs that ran, oldest first, then the first jobs queued behind them
/// (never run), JOB_ROWS in all: (shown, earlier jobs left out, queued jobs left out). A wedged ring queues
/// thousands of jobs before the timeout; the rows keep the jobs that ran, where it stopped.
pub fn hung_ring_jobs(incident: &Incident) -> (Vec<&JobSnapshot>, usize, usize) {
    let mut jobs: Vec<&JobSnapshot> = incident
        .jobs
        .iter()
        .filter(|j| incident.ring.as_deref().is_none_or(|r| j.ring == r))
        .collect();
    jobs.sort_by_key(|j| (j.submit_ns.or(j.run_ns).unwrap_or(0), j.seqno));
    // Without a run probe no job has a run time: then every job counts as ran.
    let probed = jobs.iter().any(|j| j.run_ns.is_some());
    let (mut ran, queued): (Vec<_>, Vec<_>) = jobs
        .into_iter()
        .partition(|j| !probed || j.run_ns.is_some());
    let ran_rows = ran.len().min(JOB_ROWS - queued.len().min(JOB_ROWS / 4));
    let mut shown = ran.split_off(ran.len() - ran_rows);
    let queued_rows = queued.len().min(JOB_ROWS - ran_rows);
    shown.extend(queued.iter().take(queued_rows));
    shown.sort_by_key(|j| (j.submit_ns.or(j.run_ns).unwrap_or(0), j.seqno));
    (shown, ran.len(), queued.len() - queued_rows)
}

/// The flight recorder's last jobs on the hung ring as a compact table — the submission
/// history is what no other tool gives a driver developer. Empty when no job was recorded.
pub fn jobs_table(incident: &Incident) -> String {
    let (jobs, earlier, queued) = hung_ring_jobs(incident);
    let mut o = String::new();
    if jobs.is_empty() {
        let _ = writeln!(
            o,
            "No jobs recorded (log-only analysis, or the probes saw no submission on this ring).\n"
        );
        return o;
    }
    let _ = writeln!(
        o,
        "| process | ring | job (ctx / seq / hw seq) | submitted | ran | signaled | state |\n|---|---|---|---|---|---|---|"
    );
    for j in &jobs {
        let id = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "?".into());
        let signaled = match j.done_ns {
            Some(t) => secs(t),
            None => "**never**".into(),
        };
        let _ = writeln!(
            o,
            "| {}[{}] | {} | {} / {} / {} | {} | {} | {} | {} |",
            md_cell(&j.comm),
            j.pid,
            md_cell(&j.ring),
            id(j.context),
            id(j.seqno),
            id(j.hw_seqno),
            opt_secs(j.submit_ns),
            opt_secs(j.run_ns),
            signaled,
            md_cell(j.state.name())
        );
    }
    let never = jobs.iter().filter(|j| j.done_ns.is_none()).count();
    let _ = writeln!(
        o,
        "\n{} of these {} jobs never signaled their fence{}{}.\n",
        never,
        jobs.len(),
        if earlier > 0 {
            format!("; {earlier} earlier jobs are in incident.json and trace.perfetto")
        } else {
            String::new()
        },
        if queued > 0 {
            format!("; {queued} more jobs queued behind them never ran")
        } else {
            String::new()
        }
    );
    o
}

fn header(o: &mut String, incident: &Incident) {
    let _ = writeln!(o, "# hangwatch incident {}\n", md_code(&incident.id));
    let _ = writeln!(o, "- **Kind:** {}", incident.kind.name());
    let opt =
        |v: &Option<String>, none: &str| v.as_deref().map(md_code).unwrap_or_else(|| none.into());
    let _ = writeln!(o, "- **GPU:** {}", opt(&incident.gpu, "unknown"));
    let _ = writeln!(o, "- **Ring:** {}", opt(&incident.ring, "-"));
    let _ = writeln!(o, "- **Started:** {}", md_code(&incident.started_at));
    if let Some(first) = &incident.consequence_of {
        let _ = writeln!(
            o,
            "- **Consequence of:** incident {} (rule L1)",
            md_code(first)
        );
    }
    if let Some(w) = &incident.wall_time {
        let _ = writeln!(o, "- **Wall clock:** {}", md_code(w));
    }
    if let Some(h) = &incident.hostname {
        let _ = writeln!(o, "- **Host:** {}", md_code(h));
    }
    // A sentence stays prose; a bare JSON value is shown as one, in a code span.
    let reset = match incident.reset {
        r @ (None | Some(ResetOutcome::Began | ResetOutcome::Resuming)) => {
            ResetOutcome::describe(r).to_string()
        }
        Some(r) => md_code(r.name()),
    };
    let _ = writeln!(o, "- **Reset:** {reset}");
    if let Some(c) = &incident.reset_cause {
        let _ = writeln!(o, "- **Reset cause (KFD SMI):** {}", md_code(c));
    }
    if incident.provisional {
        let _ = writeln!(
            o,
            "- **Provisional:** the incident was still open when this was written"
        );
    }
}

fn culprit(o: &mut String, incident: &Incident) {
    let _ = writeln!(o, "\n## Culprit\n");
    let conf = incident.confidence.name();
    match &incident.culprit {
        Some(c) if is_suspect(incident) => {
            let _ = writeln!(
                o,
                "Suspect, not a verdict: **{}** — confidence **unknown** ({})\n",
                process(c),
                suspicion_basis(incident)
            );
        }
        Some(c) if is_kernel_word(incident) => {
            let _ = writeln!(
                o,
                "**{}** — confidence **{conf}** ({KERNEL_WORD})\n",
                process(c)
            );
        }
        Some(c) => {
            let _ = writeln!(o, "**{}** — confidence **{conf}**\n", process(c));
        }
        None => {
            let _ = writeln!(o, "Unknown — confidence **{conf}**\n");
        }
    }
    let id = incident.culprit.as_ref().and_then(|c| c.identity.as_ref());
    let w = who(id);
    if !w.is_empty() {
        let _ = writeln!(o, "Who:{}\n", w.trim_start_matches(" — who:"));
    }
    if !incident.reasoning.is_empty() {
        let _ = writeln!(o, "Why: {}\n", md_code(&incident.reasoning));
    }
}

fn kernel_said(o: &mut String, incident: &Incident) {
    let _ = writeln!(o, "## What the kernel said\n");
    match &incident.kernel_blamed {
        Some(k) if incident.kernel_blame_disputed && is_suspect(incident) => {
            let _ = writeln!(
                o,
                "> **Kernel blame questioned:** the kernel blamed {}; {} is a suspect from timing alone, which does not overrule it.\n",
                process(k),
                incident.culprit.as_ref().map(process).unwrap_or_default()
            );
        }
        Some(k) if incident.kernel_blame_disputed => {
            let _ = writeln!(
                o,
                "> **Disputed:** the kernel blamed {}, but the evidence points to {}.\n",
                process(k),
                incident
                    .culprit
                    .as_ref()
                    .map(process)
                    .unwrap_or_else(|| "another process".into())
            );
        }
        Some(k) if is_kernel_word(incident) => {
            let _ = writeln!(
                o,
                "The kernel blamed {}. Its word is the only evidence naming a culprit.\n",
                process(k)
            );
        }
        Some(k) => {
            let _ = writeln!(
                o,
                "The kernel blamed {}, which agrees with the evidence.\n",
                process(k)
            );
        }
        None => {
            let _ = writeln!(o, "The kernel named no process.\n");
        }
    }
    if let Some(k) = &incident.kernel_blamed {
        let w = who(k.identity.as_ref());
        if !w.is_empty() && incident.culprit.as_ref().map(|c| c.pid) != Some(k.pid) {
            let _ = writeln!(o, "Kernel-blamed process{w}\n");
        }
    }
}

fn victims(o: &mut String, incident: &Incident) {
    let _ = writeln!(o, "## Victims\n");
    if incident.victims.is_empty() {
        let _ = writeln!(o, "None identified.\n");
        return;
    }
    for v in &incident.victims {
        let _ = writeln!(
            o,
            "- {}[{}]{}: {}{}",
            md_code(&v.comm),
            v.pid,
            client(v.identity.as_ref()),
            md_code(&v.reason),
            who(v.identity.as_ref())
        );
    }
    o.push('\n');
}

/// Who had compute or user queues on the GPU (docs/compute.md); nothing for graphics-only
/// incidents. Every string is data: code spans only.
fn compute(o: &mut String, incident: &Incident) {
    let Some(c) = &incident.compute else { return };
    let _ = writeln!(o, "## Compute queues\n");
    let _ = writeln!(o, "Queue table: {}\n", md_code(&c.note));
    if let Some(f) = &c.flagged {
        let _ = writeln!(
            o,
            "Flagged by the kernel or MES: {}[{}]{} — {}\n",
            md_code(&f.comm),
            f.pid,
            client(f.identity.as_ref()),
            md_code(&f.reason)
        );
    }
    if c.candidates.is_empty() {
        let _ = writeln!(o, "No process with queues on the GPU is known.\n");
        return;
    }
    for k in &c.candidates {
        let queues: Vec<String> = k
            .queues
            .iter()
            .map(|q| {
                let id = q.queue_id.map(|i| format!(" q{i}")).unwrap_or_default();
                let db = q
                    .doorbell
                    .map(|d| format!(" doorbell 0x{d:x}"))
                    .unwrap_or_default();
                format!(
                    "{}{id}{db}",
                    md_code(&format!("{} {}", q.origin.name(), q.kind.name()))
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "- {}[{}]{} ({}): {} — {}{}",
            md_code(&k.comm),
            k.pid,
            client(k.identity.as_ref()),
            k.confidence.name(),
            if queues.is_empty() {
                "no queue recorded".to_string()
            } else {
                queues.join(", ")
            },
            md_code(&k.reason),
            who(k.identity.as_ref())
        );
    }
    o.push('\n');
}

/// A reset loop's counts (rule L2); nothing for other incidents. Names are code spans.
fn reset_loop(o: &mut String, incident: &Incident) {
    let Some(l) = &incident.reset_loop else {
        return;
    };
    let _ = writeln!(o, "## Reset loop\n\n{} resets.\n", l.resets);
    let _ = writeln!(o, "| kernel | resets |\n|---|---|");
    for g in &l.groups {
        let k = g.kernel.as_deref().map_or("unknown".into(), md_cell);
        let _ = writeln!(o, "| {k} | {} |", g.resets);
    }
    o.push('\n');
    if l.processes.is_empty() {
        let _ = writeln!(o, "No process was named in two of the resets.\n");
        return;
    }
    for p in &l.processes {
        let pids: Vec<String> = p.pids.iter().map(u32::to_string).collect();
        let _ = writeln!(
            o,
            "- {} (pids {}): in {} resets; culprit {}, kernel-blamed {}, victim {}",
            md_code(&p.comm),
            pids.join(", "),
            p.resets,
            p.culprit,
            p.kernel_blamed,
            p.victim
        );
    }
    o.push('\n');
}

fn evidence(o: &mut String, incident: &Incident) {
    let _ = writeln!(o, "## Evidence timeline\n");
    let _ = writeln!(o, "| time | source | what |\n|---|---|---|");
    for e in &incident.evidence {
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            md_cell(&e.at),
            e.source.name(),
            md_cell(&e.what)
        );
    }
    let lines: Vec<&str> = incident
        .evidence
        .iter()
        .flat_map(|e| e.lines.iter().map(String::as_str))
        .collect();
    if !lines.is_empty() {
        let _ = write!(o, "\n## Kernel log excerpt\n{}", md_block(lines));
    }
}

/// Render `incident` as a markdown document.
pub fn render(incident: &Incident) -> String {
    let mut o = String::new();
    header(&mut o, incident);
    culprit(&mut o, incident);
    kernel_said(&mut o, incident);
    victims(&mut o, incident);
    compute(&mut o, incident);
    reset_loop(&mut o, incident);
    let _ = writeln!(o, "## Last jobs on the hung ring\n");
    o.push_str(&jobs_table(incident));
    evidence(&mut o, incident);
    if incident.dropped_events > 0 {
        let _ = writeln!(
            o,
            "\n**Warning:** {} events were dropped while this incident was open; attribution may be incomplete.",
            incident.dropped_events
        );
    }
    o
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::incident::Confidence;
    use crate::testkit::{
        assert_inert, disputed_incident, hostile, hostile_compute, structure, HOSTILE,
    };

    #[test]
    fn markdown_has_every_section_and_the_dispute() {
        let md = render(&disputed_incident());
        for s in [
            "## Culprit",
            "## What the kernel said",
            "## Victims",
            "## Last jobs on the hung ring",
            "## Evidence timeline",
            "## Kernel log excerpt",
        ] {
            assert!(md.contains(s), "missing {s}:\n{md}");
        }
        assert!(
            md.contains("**Disputed:** the kernel blamed ` Xwayland `[6518]"),
            "{md}"
        );
        assert!(
            md.contains("| ` 45766.649480 ` | log | ` ring gfx_0.0.0 timeout"),
            "{md}"
        );
        assert!(md.contains("    [drm:amdgpu_job_timedout"), "{md}");
        assert!(md.contains("process Xwayland pid 6518"), "{md}");
    }

    #[test]
    fn a_consequence_names_the_incident_it_follows() {
        let mut inc = disputed_incident();
        assert!(!render(&inc).contains("Consequence of"));
        inc.consequence_of = Some("0000:03:00.0-100".into());
        let md = render(&inc);
        assert!(
            md.contains("- **Consequence of:** incident ` 0000:03:00.0-100 ` (rule L1)"),
            "{md}"
        );
    }

    #[test]
    fn the_kernel_word_alone_is_said_to_be_alone() {
        let mut inc = disputed_incident();
        inc.kernel_blame_disputed = false;
        inc.kernel_blamed = inc.culprit.clone();
        inc.confidence = Confidence::KernelOnly;
        let md = render(&inc);
        assert!(
            md.contains("— confidence **kernel_only** (the kernel's word, nothing else)"),
            "{md}"
        );
        assert!(
            md.contains("Its word is the only evidence naming a culprit."),
            "{md}"
        );
        assert!(!md.contains("agrees with the evidence"), "{md}");
    }

    #[test]
    fn a_suspect_is_not_presented_as_a_verdict() {
        let md = render(&crate::testkit::suspect_incident());
        assert!(
            md.contains("Suspect, not a verdict: **` zed `[7021] (` /home/alice/.local/zed.app/libexec/zed-editor `)** — confidence **unknown** (log only: no progress evidence)"),
            "{md}"
        );
        assert!(
            md.contains("> **Kernel blame questioned:** the kernel blamed ` Xwayland `[6518]; ` zed `[7021]"),
            "{md}"
        );
        assert!(
            !md.contains("Disputed") && !md.contains("points to"),
            "{md}"
        );
        let mut began = disputed_incident();
        began.reset = Some(ResetOutcome::Began);
        assert!(render(&began).contains("- **Reset:** began, no result seen"));
        assert!(render(&disputed_incident()).contains("- **Reset:** ` succeeded `"));
    }

    #[test]
    fn jobs_table_shows_history_and_what_never_signaled() {
        let md = render(&disputed_incident());
        assert!(
            md.contains("| ` zed `[7021] | ` gfx_0.0.0 ` | 1 / 40 / 1040 | 45756.000000 | 45756.001000 | **never** | ` hung ` |"),
            "{md}"
        );
        assert!(
            md.contains("| ` Xwayland `[6518] | ` gfx_0.0.0 ` | 1 / 41 / 1041 | 45756.050000 | 45756.060000 | 45756.070000 | ` done ` |"),
            "{md}"
        );
        assert!(
            md.contains("2 of these 3 jobs never signaled their fence."),
            "{md}"
        );
        let mut many = disputed_incident();
        let j = many.jobs[1].clone();
        many.jobs = (0..40)
            .map(|i| {
                let mut j = j.clone();
                j.seqno = Some(i);
                j.submit_ns = Some(1_000_000_000 * i);
                j
            })
            .collect();
        let md = render(&many);
        assert!(md.contains("24 earlier jobs are in incident.json"), "{md}");
        assert!(md.contains("/ 39 /") && !md.contains("/ 23 /"), "{md}");
        let mut none = disputed_incident();
        none.jobs.clear();
        assert!(render(&none).contains("No jobs recorded"));
    }

    #[test]
    fn compute_section_lists_the_flag_and_each_candidates_queues() {
        assert!(!render(&disputed_incident()).contains("## Compute queues"));
        let mut inc = disputed_incident();
        inc.compute = Some(hostile_compute("python3"));
        let md = render(&inc);
        assert!(
            md.contains("Flagged by the kernel or MES: ` python3 `[4242]"),
            "{md}"
        );
        assert!(
            md.contains("- ` python3 `[4242] client ` python3 ` (likely): ` kfd compute ` q0 doorbell 0x1000 — ` its queue python3 did not preempt ` — who: ` container podman 241e2ce08bbb,"),
            "{md}"
        );
        let at = |s: &str| md.find(s).unwrap();
        assert!(at("## Victims") < at("## Compute queues"));
        assert!(at("## Compute queues") < at("## Last jobs on the hung ring"));
    }

    #[test]
    fn smi_reset_cause_follows_the_reset_line() {
        let mut inc = disputed_incident();
        inc.reset_cause = Some("MES hang".into());
        let md = render(&inc);
        assert!(
            md.contains("- **Reset:** ` succeeded `\n- **Reset cause (KFD SMI):** ` MES hang `\n"),
            "{md}"
        );
        assert!(!render(&disputed_incident()).contains("Reset cause"));
    }

    #[test]
    fn reset_loop_section_lists_kernels_and_shared_processes() {
        let mut inc = disputed_incident();
        inc.reset_loop = Some(crate::testkit::hostile_loop("Cyberpunk2077"));
        let md = render(&inc);
        assert!(md.contains("## Reset loop\n\n5 resets.\n"), "{md}");
        assert!(
            md.contains("| ` 6.1.0-Cyberpunk2077 ` | 4 |\n| unknown | 1 |"),
            "{md}"
        );
        assert!(md.contains("- ` Cyberpunk2077 ` (pids 100, 101, 102, 103, 104): in 5 resets; culprit 5, kernel-blamed 5, victim 0"), "{md}");
        let at = |s: &str| md.find(s).unwrap();
        assert!(at("## Victims") < at("## Reset loop"));
        assert!(at("## Reset loop") < at("## Last jobs on the hung ring"));
        assert!(!render(&disputed_incident()).contains("## Reset loop"));
        // Hostile names stay data.
        let base = structure(&md);
        for name in HOSTILE {
            inc.reset_loop = Some(crate::testkit::hostile_loop(name));
            let md = render(&inc);
            assert_eq!(
                structure(&md),
                base,
                "structure changed for {name:?}:\n{md}"
            );
            assert_inert(&md, &[]);
        }
    }

    #[test]
    fn hostile_names_never_become_markdown_structure() {
        for confidence in [
            Confidence::Likely,
            Confidence::KernelOnly,
            Confidence::Unknown,
        ] {
            let of = |name: &str| {
                let mut inc = hostile(name);
                inc.confidence = confidence;
                inc
            };
            let base = structure(&render(&of("zed")));
            for name in HOSTILE {
                let md = render(&of(name));
                assert_eq!(
                    structure(&md),
                    base,
                    "structure changed for {name:?}:\n{md}"
                );
                assert_inert(&md, &[]);
                assert!(!md.contains('\u{1b}'), "raw ESC for {name:?}");
            }
        }
    }
}
