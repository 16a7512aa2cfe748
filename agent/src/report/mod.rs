//! Renderings of an [`crate::incident::Incident`].
pub mod bugreport;
pub mod compute;
pub mod incident_dir;
pub mod markdown;
pub mod perfetto;
pub mod procinfo;
pub mod redact;
pub mod rocm;
pub mod text;
