//! docs/incident-schema.json is the schema derived from the incident types, and the validator
//! rejects what it forbids (tests/tests/{golden,corpus}.rs validate every result with it). `HANGWATCH_UPDATE_SCHEMA=1` rewrites the committed file.
#![cfg(all(feature = "schema", feature = "testkit"))]
use std::path::Path;

use hangwatch_core::incident::json_schema;
use hangwatch_core::schema_check::validate;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn committed_schema_is_the_generated_one() {
    let path = root().join("docs/incident-schema.json");
    let generated = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
    if std::env::var_os("HANGWATCH_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run HANGWATCH_UPDATE_SCHEMA=1 cargo test -p hangwatch-core --features schema --test schema",
        path.display()
    );
}

#[test]
fn validator_rejects_what_the_schema_forbids() {
    let schema = json_schema();
    let first = serde_json::to_value(hangwatch_core::testkit::disputed_incident()).unwrap();
    assert_eq!(validate(&schema, &first), Vec::<String>::new());
    // Identities (culprit, kernel-blamed, victims, compute candidates) are in the schema.
    let with_ids = serde_json::to_value(hangwatch_core::testkit::hostile("zed")).unwrap();
    assert_eq!(validate(&schema, &with_ids), Vec::<String>::new());
    let mut bad_runtime = with_ids.clone();
    bad_runtime["culprit"]["identity"]["container"]["runtime"] = "lxc".into();
    assert!(!validate(&schema, &bad_runtime).is_empty());
    let broken = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = first.clone();
        f(&mut v);
        validate(&schema, &v)
    };
    assert!(!broken(&|v| v["reset"] = "rebooted".into()).is_empty());
    assert!(!broken(&|v| v["kind"] = "hang".into()).is_empty());
    assert!(!broken(&|v| v["confidence"] = 3.into()).is_empty());
    assert!(!broken(&|v| {
        v.as_object_mut().unwrap().remove("evidence");
    })
    .is_empty());
    assert!(!broken(&|v| v["surprise"] = true.into()).is_empty());
    assert!(!broken(&|v| v["culprit"]["pid"] = (-1).into()).is_empty());
}
