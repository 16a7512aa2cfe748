//! Support shared by the integration tests (golden, corpus, VM): the committed
//! `hangwatch.incident/1` schema and a check that a result conforms to it.
use std::sync::LazyLock;

use serde_json::Value;

/// docs/incident-schema.json (hangwatch-core's `schema` test keeps it equal to the types).
static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/incident-schema.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
});

/// Whether `incident` conforms to the committed schema; the errors, each with its JSON path.
pub fn check_schema(incident: &Value) -> Result<(), String> {
    let errors = hangwatch_core::schema_check::validate(&SCHEMA, incident);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "not a valid hangwatch.incident/1 document: {}\n{incident}",
            errors.join("; ")
        ))
    }
}

/// Panics naming the errors when `incident` does not conform to the committed schema.
pub fn assert_schema(incident: &Value) {
    if let Err(e) = check_schema(incident) {
        panic!("{e}");
    }
}
