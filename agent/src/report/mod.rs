//! Renderings of an [`crate::incident::Incident`].
pub mod text;
