//! Renderings of an [`crate::incident::Incident`].
pub mod incident_dir;
pub mod markdown;
pub mod perfetto;
pub mod text;
