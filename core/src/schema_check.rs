//! A validator for the JSON Schema subset `schemars` emits for the incident types: `$ref` into
//! `$defs`, `type` (one or a list), `properties`/`required`, `items`, `enum`, `const`,
//! `oneOf`/`anyOf`, `minimum`/`maximum`. Anything else in the schema is an error, so a schema
//! that grows a keyword fails the test instead of passing unchecked.
use serde_json::Value;

/// Errors found validating `doc` against `schema`, each with its JSON path; empty when valid.
pub fn validate(schema: &Value, doc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, schema, doc, "$", &mut errors);
    errors
}

const KNOWN: &[&str] = &[
    "$schema",
    "$id",
    "title",
    "description",
    "$defs",
    "$ref",
    "type",
    "properties",
    "required",
    "items",
    "enum",
    "const",
    "oneOf",
    "anyOf",
    "minimum",
    "maximum",
    "format",
    "default",
];

fn check(root: &Value, s: &Value, doc: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(s) = s.as_object() else {
        if s != &Value::Bool(true) {
            errors.push(format!("{path}: schema {s} is not an object"));
        }
        return;
    };
    for k in s.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
        errors.push(format!(
            "{path}: schema keyword {k} is not supported by this validator"
        ));
    }
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        match root["$defs"].get(name) {
            Some(d) => check(root, d, doc, path, errors),
            None => errors.push(format!("{path}: unresolved $ref {r}")),
        }
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => t.as_str().into_iter().collect(),
        };
        if !types.iter().any(|t| has_type(doc, t)) {
            errors.push(format!("{path}: {doc} is not of type {t}"));
            return;
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(doc) {
            errors.push(format!("{path}: {doc} is not one of {e:?}"));
        }
    }
    if let Some(c) = s.get("const") {
        if c != doc {
            errors.push(format!("{path}: {doc} is not {c}"));
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            let ok = alts
                .iter()
                .filter(|a| validate_at(root, a, doc, path).is_empty())
                .count();
            if ok == 0 || (key == "oneOf" && ok > 1) {
                errors.push(format!(
                    "{path}: {doc} matches {ok} of the {key} alternatives"
                ));
            }
        }
    }
    if let (Some(n), Some(min)) = (doc.as_f64(), s.get("minimum").and_then(Value::as_f64)) {
        if n < min {
            errors.push(format!("{path}: {n} < minimum {min}"));
        }
    }
    if let (Some(n), Some(max)) = (doc.as_f64(), s.get("maximum").and_then(Value::as_f64)) {
        if n > max {
            errors.push(format!("{path}: {n} > maximum {max}"));
        }
    }
    object(root, s, doc, path, errors);
    if let (Some(items), Some(a)) = (s.get("items"), doc.as_array()) {
        for (i, v) in a.iter().enumerate() {
            check(root, items, v, &format!("{path}[{i}]"), errors);
        }
    }
}

fn object(
    root: &Value,
    s: &serde_json::Map<String, Value>,
    doc: &Value,
    path: &str,
    errors: &mut Vec<String>,
) {
    let Some(o) = doc.as_object() else { return };
    for r in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = r.as_str().filter(|r| !o.contains_key(*r)) {
            errors.push(format!("{path}: required field {r} missing"));
        }
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, v) in o {
            match props.get(k) {
                Some(p) => check(root, p, v, &format!("{path}.{k}"), errors),
                // Stricter than JSON Schema defaults: the writer never emits an undeclared field.
                None => errors.push(format!("{path}: field {k} is not in the schema")),
            }
        }
    }
}

fn validate_at(root: &Value, s: &Value, doc: &Value, path: &str) -> Vec<String> {
    let mut errors = Vec::new();
    check(root, s, doc, path, &mut errors);
    errors
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "integer" => v.is_u64() || v.is_i64(),
        "number" => v.is_number(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

/// docs/incident-schema.json as committed (the `schema` feature's test keeps it equal to the
/// types).
static SCHEMA: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    serde_json::from_str(include_str!("../../docs/incident-schema.json")).unwrap_or(Value::Null)
});

/// Whether `incident` conforms to the committed schema; the errors, each with its JSON path.
pub fn check_schema(incident: &Value) -> Result<(), String> {
    if SCHEMA.is_null() {
        return Err("docs/incident-schema.json is not valid JSON".into());
    }
    let errors = validate(&SCHEMA, incident);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "not a valid hangwatch.incident/1 document: {}\n{incident}",
            errors.join("; ")
        ))
    }
}

/// Panics naming the errors when `incident` does not conform to the committed schema (for tests).
pub fn assert_schema(incident: &Value) {
    if let Err(e) = check_schema(incident) {
        panic!("{e}");
    }
}
