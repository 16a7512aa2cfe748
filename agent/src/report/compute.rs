//! Plain-text lines of an incident's compute attribution (KFD / user queues), for `text::render`
//! (terminal, report.md): who had queues on the GPU, which one the kernel flagged.
use std::fmt::Write as _;

use crate::incident::{Candidate, ComputeAttribution};

fn queues(c: &Candidate) -> String {
    let q: Vec<String> = c
        .queues
        .iter()
        .map(|q| {
            let mut s = format!("{} {}", q.origin, q.kind);
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

/// `compute:` block: the flagged process (if any), then every candidate with its queues.
pub fn render(c: &ComputeAttribution) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "compute:  {}", c.note);
    if let Some(f) = &c.flagged {
        let _ = writeln!(o, "  flagged: {}[{}]: {}", f.comm, f.pid, f.reason);
    }
    for k in &c.candidates {
        let _ = writeln!(
            o,
            "  - {}[{}] ({}): {} — {}",
            k.comm,
            k.pid,
            super::text::confidence_name(k.confidence),
            queues(k),
            k.reason
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{Confidence, QueueRef};

    #[test]
    fn lists_flag_and_candidates_with_queues() {
        let cand = Candidate {
            pid: 7,
            comm: "python3".into(),
            queues: vec![QueueRef {
                origin: "kfd".into(),
                kind: "compute".into(),
                queue_id: Some(0),
                doorbell: Some(0x1000),
                gpu: None,
                gpu_id: None,
            }],
            confidence: Confidence::Likely,
            reason: "r".into(),
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
}
