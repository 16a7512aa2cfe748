//! Support shared by the integration tests (corpus, VM): the committed `hangwatch.incident/1`
//! schema check, from the core.
pub use hangwatch_core::schema_check::{assert_schema, check_schema};
