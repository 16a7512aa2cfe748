//! Readable one-screen rendering of an incident (placeholder until the report module lands).
use crate::incident::Incident;

pub fn render(incident: &Incident) -> String {
    let culprit = incident
        .culprit
        .as_ref()
        .map(|c| format!("{} (pid {})", c.comm, c.pid))
        .unwrap_or_else(|| "unknown".into());
    format!("{:?} on {}: culprit {} [{:?}]\n", incident.kind, incident.ring.as_deref().unwrap_or("-"), culprit, incident.confidence)
}
