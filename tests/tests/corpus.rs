//! Corpus tests: every real kernel log in testdata/corpus/ goes through
//! `hangwatch analyze --json`, the command a user runs on a log pasted from a bug report, and
//! is compared field by field with the expectation written by hand from the thread
//! (testdata/corpus/<id>.toml; the table and the known disagreements are in docs/corpus.md).
//!
//! Why the binary and not the library (as golden.rs does): a pasted log meets analyze's file
//! handling and format detection first, and those are changing; only the CLI is the contract.
//! Cargo hands `CARGO_BIN_EXE_*` only to tests of the binary's own package, so this test asks
//! the cargo that runs it to build `hangwatch` (a no-op when it is fresh) and runs the
//! executable cargo reports: it never runs a stale binary. `HANGWATCH_BIN` overrides that, to
//! check a release or installed build against the same corpus.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/corpus");

/// One `<id>.toml`: where the log came from, what its thread establishes, what hangwatch
/// should say. Unknown keys are refused so a typo cannot silently drop an expectation.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Case {
    source: String,
    title: String,
    gpu_model: String,
    kernel: String,
    form: String,
    #[serde(default)]
    trimmed: Option<String>,
    established: String,
    expected_incidents: usize,
    #[serde(default)]
    incident: Vec<Expected>,
}

/// One expected incident, in start order. `ring`/`reset` "none" and culprit "unknown" /
/// kernel_blamed "none" stand for JSON null; an absent `reset` is not checked (the log was cut
/// before the reset's result).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct Expected {
    kind: String,
    ring: String,
    gpu: String,
    culprit: Who,
    kernel_blamed: Who,
    confidence: String,
    #[serde(default)]
    reset: Option<String>,
    /// The pids of the compute candidates (`compute.candidates`, docs/compute.md), in order;
    /// `[]` for a compute section naming nobody. Absent: not checked.
    #[serde(default)]
    compute_candidates: Option<Vec<u32>>,
    why: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
enum Who {
    Named { comm: String, pid: u32 },
    Nobody(String),
}

impl Who {
    fn render(&self) -> String {
        match self {
            Who::Named { comm, pid } => format!("{comm} (pid {pid})"),
            Who::Nobody(_) => "null".to_string(),
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `hangwatch` executable, built once per test process.
fn hangwatch() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("HANGWATCH_BIN") {
        Some(p) => PathBuf::from(p),
        None => build_hangwatch(),
    })
}

/// `cargo build -p agent --bin hangwatch` with the profile this test was built with; the path
/// comes from cargo's own artifact message, so a custom target dir works too.
fn build_hangwatch() -> PathBuf {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-p", "agent", "--bin", "hangwatch"])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(workspace());
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("cannot run cargo to build hangwatch");
    assert!(
        out.status.success(),
        "building hangwatch failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "hangwatch")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no hangwatch executable")
}

fn load_case(id: &str) -> Case {
    let path = format!("{CORPUS}/{id}.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `hangwatch analyze --json <log>`: the incident documents, or a failure message.
fn analyze(id: &str) -> Result<Vec<Value>, String> {
    let log = format!("{CORPUS}/{id}.log");
    let out = Command::new(hangwatch())
        .args(["analyze", "--json"])
        .arg(&log)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", hangwatch().display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("hangwatch analyze exited {}: {stderr}", out.status));
    }
    let mut incidents = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| format!("output line is not JSON ({e}): {line}"))?;
        if v.get("schema").is_some() {
            tests::check_schema(&v)?;
            incidents.push(v);
        }
    }
    Ok(incidents)
}

/// JSON null or string, rendered for messages.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn nullable(s: &str) -> String {
    if s == "none" {
        "null".to_string()
    } else {
        s.to_string()
    }
}

fn who(v: &Value) -> String {
    if v.is_null() {
        "null".to_string()
    } else {
        format!("{} (pid {})", text(&v["comm"]), v["pid"])
    }
}

/// Every field of one incident that differs: "field: expected X, got Y".
fn compare_incident(want: &Expected, got: &Value) -> Vec<String> {
    let mut fields = vec![
        ("kind", want.kind.clone(), text(&got["kind"])),
        ("ring", nullable(&want.ring), text(&got["ring"])),
        ("gpu", nullable(&want.gpu), text(&got["gpu"])),
        ("culprit", want.culprit.render(), who(&got["culprit"])),
        (
            "kernel_blamed",
            want.kernel_blamed.render(),
            who(&got["kernel_blamed"]),
        ),
        (
            "confidence",
            want.confidence.clone(),
            text(&got["confidence"]),
        ),
    ];
    if let Some(reset) = &want.reset {
        fields.push(("reset", nullable(reset), text(&got["reset"])));
    }
    if let Some(pids) = &want.compute_candidates {
        let got_pids = match got["compute"]["candidates"].as_array() {
            Some(c) => format!(
                "{:?}",
                c.iter()
                    .filter_map(|c| c["pid"].as_u64())
                    .collect::<Vec<_>>()
            ),
            None => "no compute section".to_string(),
        };
        fields.push(("compute_candidates", format!("{pids:?}"), got_pids));
    }
    fields
        .into_iter()
        .filter(|(_, w, g)| w != g)
        .map(|(f, w, g)| format!("{f}: expected {w}, got {g}"))
        .collect()
}

/// All mismatches between a case and hangwatch's incidents, each naming the incident.
fn compare(case: &Case, got: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    if got.len() != case.expected_incidents {
        let seen: Vec<String> = got
            .iter()
            .map(|i| {
                format!(
                    "{} {} at {}",
                    text(&i["kind"]),
                    text(&i["ring"]),
                    text(&i["started_at"])
                )
            })
            .collect();
        out.push(format!(
            "incident count: expected {}, got {} [{}]",
            case.expected_incidents,
            got.len(),
            seen.join("; ")
        ));
    }
    for (n, (want, inc)) in case.incident.iter().zip(got).enumerate() {
        for m in compare_incident(want, inc) {
            out.push(format!("incident {}/{}: {m}", n + 1, case.incident.len()));
        }
    }
    out
}

fn check(id: &str) {
    let case = load_case(id);
    let mismatches = match analyze(id) {
        Ok(got) => compare(&case, &got),
        Err(e) => vec![e],
    };
    assert!(
        mismatches.is_empty(),
        "testdata/corpus/{id}.log ({}) disagrees with its expectation:\n  {}",
        case.source,
        mismatches.join("\n  ")
    );
}

/// The expectation file itself is well formed: a source URL, the thread's finding, one
/// `[[incident]]` per expected incident, known kinds and confidences, null spelled one way.
fn validate(id: &str, case: &Case) -> Vec<String> {
    let mut bad = Vec::new();
    let mut need = |ok: bool, what: &str| {
        if !ok {
            bad.push(format!("{id}.toml: {what}"));
        }
    };
    need(
        case.source.starts_with("https://"),
        "source must be the thread URL",
    );
    for (name, v) in [
        ("title", &case.title),
        ("gpu_model", &case.gpu_model),
        ("kernel", &case.kernel),
        ("form", &case.form),
        ("established", &case.established),
    ] {
        need(!v.trim().is_empty(), &format!("{name} is empty"));
    }
    need(
        case.trimmed.as_deref().is_none_or(|t| !t.trim().is_empty()),
        "trimmed is empty (omit it instead)",
    );
    need(
        case.incident.len() == case.expected_incidents,
        "expected_incidents differs from the number of [[incident]] tables",
    );
    for e in &case.incident {
        let kinds = ["ring_timeout", "page_fault", "gpu_reset", "illegal_command"];
        need(kinds.contains(&e.kind.as_str()), "unknown kind");
        let confidences = ["certain", "likely", "kernel_only", "unknown"];
        need(
            confidences.contains(&e.confidence.as_str()),
            "unknown confidence",
        );
        need(
            matches!(&e.culprit, Who::Named { .. })
                || matches!(&e.culprit, Who::Nobody(s) if s == "unknown"),
            "culprit must be {comm, pid} or \"unknown\"",
        );
        need(
            matches!(&e.kernel_blamed, Who::Named { .. })
                || matches!(&e.kernel_blamed, Who::Nobody(s) if s == "none"),
            "kernel_blamed must be {comm, pid} or \"none\"",
        );
        need(!e.why.trim().is_empty(), "why is empty");
    }
    bad
}

macro_rules! corpus {
    ($($name:ident => $id:literal,)*) => {
        $(
            #[test]
            fn $name() {
                check($id);
            }
        )*
        /// Every log with a test above.
        const IDS: &[&str] = &[$($id),*];
    };
}

corpus! {
    bazzite_4464 => "bazzite-4464-rx9070xt-vkd3d-ring-reset-failed",
    cachyos_678 => "cachyos-678-kwin-repeated-ring-resets",
    cosmic_3764 => "cosmic-3764-rx5700xt-ring-reset-failed-baco",
    cosmic_comp_2626 => "cosmic-comp-2626-navi10-journal-baco",
    fuzzyhsa_2 => "fuzzyhsa-2-2x7900xtx-sdma-mes-kfd-reset",
    gamescope_545 => "gamescope-545-rx6700xt-soft-recovered-then-timeout",
    hyprland_8930 => "hyprland-8930-vcn-dec-vlc-mode1",
    libva_291 => "libva-291-vce0-reset-failed",
    llamacpp_1087 => "llamacpp-1087-gmcv9-no-retry-fault-main",
    llamacpp_21724 => "llamacpp-21724-gfx90c-journal-polish-ring-reset",
    llamacpp_3896 => "llamacpp-3896-llama-serve-sdma-fault-nostamps",
    loongson_89 => "loongson-89-rx550-webkit-baco",
    mbab_48 => "mbab-48-gmcv9-journal-dutch-vmc-fault",
    mesa_183 => "mesa-183-journal-wrapped-powerplay-xorg",
    nixpkgs_176915 => "nixpkgs-176915-hd7970-recovery-disabled-two-rings",
    nixpkgs_207109 => "nixpkgs-207109-r5-5600g-retry-fault-midrecord",
    ollama_738 => "ollama-738-pid0-cpc-faults",
    picom_1390 => "picom-1390-journal-picom-mode2",
    pop_2132 => "pop-2132-syslog-nohost-xorg-mode1",
    rocdecode_429 => "rocdecode-429-mi300-vcn-unified-nostamps",
    rocm_2205 => "rocm-2205-gfx11-rocm-bandwidth-sdma-fault-trailing-spaces",
    rocm_2533 => "rocm-2533-rx7900xt-syslog-sdma0-pid0-mes",
    rocm_2820 => "rocm-2820-rx7900xtx-mes-unrecoverable-msg14",
    rocm_3265 => "rocm-3265-rx7900xtx-sq-intr-mes-msg3",
    rocm_3580 => "rocm-3580-rx7900xt-journal-nov-plasmashell",
    rocm_5051 => "rocm-5051-gfx1100-journal-interleaved-python-fault",
    rocm_5581 => "rocm-5581-gfx1201-comfy-python3-fault-elided",
    rocm_5890 => "rocm-5890-gfx1151-python-cpf-fault",
    rocm_5997 => "rocm-5997-firefox-comp-ring-reset-pid0-fault",
    rocm_6127 => "rocm-6127-gfx1201-gst-plugin-scan-comp-ring-reset",
    rocm_6139 => "rocm-6139-gfx1151-llama-cli-fault",
    rocm_6273 => "rocm-6273-apu-code-ring-reset-failed-mode2",
    rocm_6313 => "rocm-6313-bc250-journal-czech-sdma-ring-reset-stuck",
    rocm_amdgpu_202 => "rocm-amdgpu-202-rx9060xt-glretrace-invalid-shader",
    solus_7986 => "solus-7986-rdna4-python3-sdma-fault",
    steamos_2802_fremont => "steamos-2802-fremont-dmesg-T-mes-reset-failed",
    steamos_2802_rx7800xt => "steamos-2802-rx7800xt-illegal-opcode-mes-reset",
    steamos_921 => "steamos-921-deck-journal-illegal-register-steamwebhelper",
    therock_3107 => "therock-3107-gfx1151-dmesg-T-chinese-python-fault",
    therock_986 => "therock-986-gfx1151-dmesg-T-python3-midrecord",
    waydroid_2399 => "waydroid-2399-rx9070xt-nostamps-ring-reset-failed",
    wayvr_650 => "wayvr-650-gfx11-nostamps-illegal-opcode-mode1",
    yoga_38 => "yoga-38-sdma0-pid0-mode2-nostamps",
    yuzu_2559 => "yuzu-2559-rx6800xt-syslog-ts-yuzu",
    zed_62621 => "zed-62621-gfx9-journal-nohost-illegal-opcode",
}

/// A log added without a test (or an expectation), or a test whose log was removed, fails
/// here; so does a malformed expectation.
#[test]
fn every_log_has_a_test_and_a_valid_expectation() {
    let mut logs: Vec<String> = std::fs::read_dir(CORPUS)
        .expect("testdata/corpus")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter_map(|n| n.strip_suffix(".log").map(str::to_string))
        .collect();
    logs.sort();
    let mut ids: Vec<String> = IDS.iter().map(|s| s.to_string()).collect();
    ids.sort();
    assert_eq!(
        logs, ids,
        "testdata/corpus/*.log and the corpus! list differ"
    );
    assert!(logs.len() >= 30, "the corpus needs at least 30 logs");
    let bad: Vec<String> = IDS
        .iter()
        .flat_map(|id| validate(id, &load_case(id)))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The comparison itself can fail: a wrong count, a wrong culprit, a wrong reset and a
/// culprit where hangwatch says null are all reported with the field and both values.
#[test]
fn comparison_reports_each_wrong_field() {
    let case: Case = toml::from_str(
        r#"
        source = "https://example.org/1"
        title = "t"
        gpu_model = "g"
        kernel = "k"
        form = "dmesg"
        established = "e"
        expected_incidents = 2
        [[incident]]
        kind = "ring_timeout"
        ring = "gfx_0.0.0"
        gpu = "0000:03:00.0"
        culprit = { comm = "zed", pid = 7 }
        kernel_blamed = { comm = "Xwayland", pid = 6 }
        confidence = "likely"
        reset = "succeeded"
        why = "w"
        [[incident]]
        kind = "page_fault"
        ring = "none"
        gpu = "0000:03:00.0"
        culprit = { comm = "python", pid = 9 }
        kernel_blamed = "none"
        confidence = "likely"
        why = "w"
        "#,
    )
    .unwrap();
    assert!(validate("self", &case).is_empty());
    let got = [serde_json::json!({
        "schema": "hangwatch.incident/1", "kind": "ring_timeout", "ring": "gfx_0.0.0",
        "gpu": "0000:03:00.0", "culprit": {"comm": "Xwayland", "pid": 6},
        "kernel_blamed": {"comm": "Xwayland", "pid": 6}, "confidence": "likely",
        "reset": null, "started_at": "1.0"
    })];
    let m = compare(&case, &got);
    assert!(
        m.iter()
            .any(|s| s.starts_with("incident count: expected 2, got 1")),
        "{m:?}"
    );
    assert!(
        m.contains(&"incident 1/2: culprit: expected zed (pid 7), got Xwayland (pid 6)".into()),
        "{m:?}"
    );
    assert!(
        m.contains(&"incident 1/2: reset: expected succeeded, got null".into()),
        "{m:?}"
    );
    assert_eq!(m.len(), 3, "{m:?}");

    let mut nobody = case.incident[0].clone();
    nobody.culprit = Who::Nobody("unknown".into());
    nobody.reset = None;
    let got_named = compare_incident(&nobody, &got[0]);
    assert_eq!(got_named, ["culprit: expected null, got Xwayland (pid 6)"]);
}
