//! Renderings of an [`crate::incident::Incident`] that need no I/O: the terminal text, the
//! report markdown, the Perfetto trace and the ROCm section. Writing them to disk is the
//! agent's job (its `sinks`).
pub mod compute_text;
pub mod markdown;
pub mod perfetto;
pub mod rocm;
pub mod text;
