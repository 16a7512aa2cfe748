//! Golden tests: each fixture log through the kmsg parser and the correlator, compared on
//! the key fields with expectations written by hand from reading the log (tests/golden/).
use hangwatch::correlate::{Config, Correlator};
use hangwatch::incident::Incident;
use hangwatch::model::Source;
use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/dmesg/");
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/");

fn analyze(name: &str) -> Vec<Incident> {
    let text = std::fs::read_to_string(format!("{FIXTURES}{name}.log")).unwrap();
    let mut c = Correlator::new(Config::default());
    let mut out = Vec::new();
    for e in hangwatch::kmsg::parse_text(&text, Source::Log) {
        out.extend(c.push(e));
    }
    out.extend(c.finish());
    out
}

/// The fields a golden file pins, in the same shape as the golden JSON.
fn key_fields(i: &Incident) -> Value {
    let v = serde_json::to_value(i).unwrap();
    let who = |p: &Value| {
        if p.is_null() {
            Value::Null
        } else {
            json!({"pid": p["pid"], "comm": p["comm"]})
        }
    };
    json!({
        "kind": v["kind"],
        "ring": v["ring"],
        "gpu": v["gpu"],
        "culprit": who(&v["culprit"]),
        "confidence": v["confidence"],
        "kernel_blamed": who(&v["kernel_blamed"]),
        "kernel_blame_disputed": v["kernel_blame_disputed"],
        "victims": i.victims.iter().map(|x| x.pid).collect::<Vec<_>>(),
        "reset": v["reset"],
        "started_at": v["started_at"],
    })
}

fn check(name: &str) {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{GOLDEN}{name}.json")).unwrap())
            .unwrap();
    let got: Vec<Value> = analyze(name).iter().map(key_fields).collect();
    assert_eq!(Value::Array(got), expected["incidents"], "{name}");
}

#[test]
fn v710_zed_fault_then_timeout() {
    check("v710-zed-fault-then-timeout");
}

#[test]
fn rx7900xtx_mes_mode1_reset() {
    check("rx7900xtx-mes-mode1-reset");
}

#[test]
fn v710_illegal_opcode() {
    check("v710-illegal-opcode");
}

#[test]
fn evidence_is_log_sourced_with_lines() {
    for name in [
        "v710-zed-fault-then-timeout",
        "rx7900xtx-mes-mode1-reset",
        "v710-illegal-opcode",
    ] {
        for i in analyze(name) {
            assert_eq!(i.schema, "hangwatch.incident/1");
            assert!(!i.evidence.is_empty());
            assert!(
                i.evidence
                    .iter()
                    .all(|e| e.source == Source::Log && !e.lines.is_empty()),
                "{name}"
            );
        }
    }
}
