//! Plain-text lines of an incident's compute attribution (KFD / user queues), for `text::render`
//! (terminal, the bug report's attribution block): who had queues on the GPU, which one the
//! kernel flagged. Every string is data (a process names itself; incident.json may be edited):
//! terminal-escaped here.
use std::fmt::Write as _;

use super::text::{client, who_line};
use crate::escape::terminal;
use crate::incident::{Candidate, ComputeAttribution};

fn queues(c: &Candidate) -> String {
    let q: Vec<String> = c
        .queues
        .iter()
        .map(|q| {
            let mut s = format!("{} {}", q.origin.name(), q.kind.name());
            if let Some(id) = q.queue_id {
                let _ = write!(s, " q{id}");
            }
            if let Some(d) = q.doorbell {
                let _ = write!(s, " doorbell 0x{d:x}");
            }
            s
        })
        .collect();
    if q.is_empty() {
        "no queue recorded".into()
    } else {
        q.join(", ")
    }
}

/// `comm[pid]`, or `pid N` when the name is not known (a pid from a log line).
fn name(comm: &str, pid: u32) -> String {
    if comm.is_empty() {
        format!("pid {pid}")
    } else {
        format!("{}[{pid}]", terminal(comm))
    }
}

/// `compute:` block: the flagged process (if any), then every candidate with its queues.
pub fn render(c: &ComputeAttribution) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "compute:  {}", terminal(&c.note));
    if let Some(f) = &c.flagged {
        let _ = writeln!(
            o,
            "  flagged: {}{}: {}",
            name(&f.comm, f.pid),
            client(f.identity.as_ref()),
            terminal(&f.reason)
        );
    }
    for k in &c.candidates {
        let _ = writeln!(
            o,
            "  - {}{} ({}): {} — {}",
            name(&k.comm, k.pid),
            client(k.identity.as_ref()),
            k.confidence.name(),
            queues(k),
            terminal(&k.reason)
        );
        o.push_str(&who_line(k.identity.as_ref(), "      "));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{Confidence, QueueRef};
    use crate::model::{QueueKind, QueueOrigin};

    #[test]
    fn lists_flag_and_candidates_with_queues() {
        let cand = Candidate {
            pid: 7,
            comm: "python3".into(),
            queues: vec![QueueRef {
                origin: QueueOrigin::Kfd,
                kind: QueueKind::Compute,
                queue_id: Some(0),
                doorbell: Some(0x1000),
                gpu: None,
                gpu_id: None,
            }],
            confidence: Confidence::Likely,
            reason: "r".into(),
            identity: None,
        };
        let s = render(&ComputeAttribution {
            flagged: Some(cand.clone()),
            candidates: vec![cand],
            note: "n".into(),
        });
        assert!(s.contains("flagged: python3[7]: r"), "{s}");
        assert!(
            s.contains("python3[7] (likely): kfd compute q0 doorbell 0x1000 — r"),
            "{s}"
        );
    }

    #[test]
    fn hostile_names_and_reasons_are_escaped() {
        let evil = "\u{1b}]0;pwned\u{7}\u{202e}";
        let cand = Candidate {
            pid: 7,
            comm: evil.into(),
            queues: vec![QueueRef {
                origin: QueueOrigin::Userq,
                kind: QueueKind::Other,
                queue_id: None,
                doorbell: None,
                gpu: None,
                gpu_id: None,
            }],
            confidence: Confidence::Unknown,
            reason: evil.into(),
            identity: None,
        };
        let s = render(&ComputeAttribution {
            flagged: Some(cand.clone()),
            candidates: vec![cand],
            note: evil.into(),
        });
        assert!(s.chars().all(|c| c == '\n' || !c.is_control()), "{s:?}");
        assert!(!s.contains('\u{202e}'), "{s:?}");
        assert!(s.contains("\\x1b]0;pwned\\x07"), "{s}");
    }
}
