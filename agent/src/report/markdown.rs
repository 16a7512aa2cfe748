//! `report.md`: the incident summary for people who read it later (ticket, chat, bug report).
use std::fmt::Write;

use super::text::{confidence_name, kind_name, process_name, source_name};
use crate::incident::Incident;

/// Render `incident` as a markdown document.
pub fn render(incident: &Incident) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# hangwatch incident `{}`\n", incident.id);
    let _ = writeln!(o, "- **Kind:** {}", kind_name(incident.kind));
    let _ = writeln!(
        o,
        "- **GPU:** {}",
        incident.gpu.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(o, "- **Ring:** {}", incident.ring.as_deref().unwrap_or("-"));
    let _ = writeln!(o, "- **Started:** {}", incident.started_at);
    let _ = writeln!(
        o,
        "- **Reset:** {}",
        incident.reset.as_deref().unwrap_or("none seen")
    );
    let _ = writeln!(o, "\n## Culprit\n");
    match &incident.culprit {
        Some(c) => {
            let _ = writeln!(
                o,
                "**{}** — confidence **{}**\n",
                process_name(c),
                confidence_name(incident.confidence)
            );
        }
        None => {
            let _ = writeln!(
                o,
                "Unknown — confidence **{}**\n",
                confidence_name(incident.confidence)
            );
        }
    }
    if !incident.reasoning.is_empty() {
        let _ = writeln!(o, "{}\n", incident.reasoning);
    }
    let _ = writeln!(o, "## What the kernel said\n");
    match &incident.kernel_blamed {
        Some(k) if incident.kernel_blame_disputed => {
            let _ = writeln!(
                o,
                "> **Disputed:** the kernel blamed {}, but the evidence points to {}.\n",
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
                "The kernel blamed {}, which agrees with the evidence.\n",
                process_name(k)
            );
        }
        None => {
            let _ = writeln!(o, "The kernel named no process.\n");
        }
    }
    let _ = writeln!(o, "## Victims\n");
    if incident.victims.is_empty() {
        let _ = writeln!(o, "None identified.\n");
    } else {
        for v in &incident.victims {
            let _ = writeln!(o, "- {}[{}]: {}", v.comm, v.pid, v.reason);
        }
        o.push('\n');
    }
    let _ = writeln!(o, "## Evidence timeline\n");
    let _ = writeln!(o, "| time | source | what |\n|---|---|---|");
    for e in &incident.evidence {
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            e.at,
            source_name(e.source),
            e.what.replace('|', "\\|")
        );
    }
    let lines: Vec<&String> = incident
        .evidence
        .iter()
        .flat_map(|e| e.lines.iter())
        .collect();
    if !lines.is_empty() {
        let _ = writeln!(o, "\n## Kernel log excerpt\n\n```");
        for l in lines {
            let _ = writeln!(o, "{l}");
        }
        let _ = writeln!(o, "```");
    }
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
mod tests {
    use super::*;
    use crate::report::text::tests::disputed_incident;

    #[test]
    fn markdown_has_every_section_and_the_dispute() {
        let md = render(&disputed_incident());
        for s in [
            "## Culprit",
            "## What the kernel said",
            "## Victims",
            "## Evidence timeline",
            "## Kernel log excerpt",
        ] {
            assert!(md.contains(s), "missing {s}:\n{md}");
        }
        assert!(
            md.contains("**Disputed:** the kernel blamed Xwayland[6518]"),
            "{md}"
        );
        assert!(
            md.contains("| 45766.649480 | log | ring gfx_0.0.0 timeout"),
            "{md}"
        );
        assert!(md.contains("process Xwayland pid 6518"), "{md}");
    }
}
