//! Renderings of an [`crate::incident::Incident`] that need no I/O: the terminal text, the
//! report markdown, the Perfetto trace and the ROCm section. Writing them to disk is the
//! agent's job (its `sinks`).
pub mod compute_text;
pub mod markdown;
pub mod perfetto;
pub mod rocm;
pub mod text;

use crate::incident::Incident;

/// The incident's `kernel.log`: every evidence line, in evidence order. Read back by
/// `hangwatch analyze`, it gives the same incident.
pub fn kernel_log(incident: &Incident) -> String {
    let mut log = String::new();
    for e in &incident.evidence {
        for l in &e.lines {
            log.push_str(l);
            log.push('\n');
        }
    }
    log
}
