//! Renderings of an [`crate::incident::Incident`].
pub mod incident_dir;
pub mod text;
