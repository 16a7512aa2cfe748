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

use hangwatch_core::incident::Incident;
use hangwatch_core::testkit::expect::{check_all, mismatches, mismatches_all, IncidentExpect, Who};
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
    /// One expected incident, in start order; `ring`/`gpu`/`reset` "none", culprit "unknown"
    /// and kernel_blamed "none" stand for JSON null; an absent `reset` is not checked (the log
    /// was cut before the reset's result).
    #[serde(default)]
    incident: Vec<IncidentExpect>,
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

fn load_text(id: &str) -> String {
    let path = format!("{CORPUS}/{id}.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load_case(id: &str) -> Case {
    toml::from_str(&load_text(id)).unwrap_or_else(|e| panic!("{id}.toml: {e}"))
}

/// `hangwatch analyze --json <log>`: the incidents, or a failure message.
fn analyze(id: &str) -> Result<Vec<Incident>, String> {
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
            incidents.push(
                serde_json::from_value(v).map_err(|e| format!("not an incident ({e}): {line}"))?,
            );
        }
    }
    Ok(incidents)
}

fn check(id: &str) {
    let case = load_case(id);
    let result = analyze(id).and_then(|got| check_all(&case.incident, &got));
    if let Err(e) = result {
        panic!(
            "testdata/corpus/{id}.log ({}) disagrees with its expectation:\n  {}",
            case.source,
            e.replace('\n', "\n  ")
        );
    }
}

/// The expectation file itself is well formed: a source URL, the thread's finding, one
/// `[[incident]]` per expected incident stating the seven fields every case states, known
/// kinds and confidences, null spelled one way (`raw`: the file's text).
fn validate(id: &str, case: &Case, raw: &str) -> Vec<String> {
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
    let raw: toml::Table = toml::from_str(raw).unwrap_or_default();
    let raw_incidents = raw.get("incident").and_then(|i| i.as_array());
    for (n, e) in case.incident.iter().enumerate() {
        let stated = e.stated();
        for f in [
            "kind",
            "ring",
            "gpu",
            "culprit",
            "kernel_blamed",
            "confidence",
        ] {
            need(
                stated.contains(&f),
                &format!("incident {} does not state {f}", n + 1),
            );
        }
        let kinds = ["ring_timeout", "page_fault", "gpu_reset", "illegal_command"];
        need(
            e.kind.as_deref().is_some_and(|k| kinds.contains(&k)),
            "unknown kind",
        );
        let confidences = ["certain", "likely", "kernel_only", "unknown"];
        need(
            e.confidence
                .as_deref()
                .is_some_and(|c| confidences.contains(&c)),
            "unknown confidence",
        );
        let spelled = |field: &str| {
            raw_incidents
                .and_then(|i| i.get(n))
                .and_then(|i| i.get(field))
                .and_then(|v| v.as_str().map(str::to_string))
        };
        let named = |w: &Option<Who>| matches!(w, Some(Who::Process { pid: Some(_), .. }));
        need(
            named(&e.culprit) || spelled("culprit").as_deref() == Some("unknown"),
            "culprit must be {comm, pid} or \"unknown\"",
        );
        need(
            named(&e.kernel_blamed) || spelled("kernel_blamed").as_deref() == Some("none"),
            "kernel_blamed must be {comm, pid} or \"none\"",
        );
        need(
            e.why.as_deref().is_some_and(|w| !w.trim().is_empty()),
            "why is empty",
        );
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
        .flat_map(|id| validate(id, &load_case(id), &load_text(id)))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The comparison itself can fail: a wrong count, a wrong culprit, a wrong reset and a
/// culprit where hangwatch says null are all reported with the field and both values.
#[test]
fn comparison_reports_each_wrong_field() {
    let text = r#"
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
        "#;
    let case: Case = toml::from_str(text).unwrap();
    assert!(validate("self", &case, text).is_empty());
    let got: Incident = serde_json::from_value(serde_json::json!({
        "schema": "hangwatch.incident/1", "id": "x", "kind": "ring_timeout",
        "ring": "gfx_0.0.0", "gpu": "0000:03:00.0", "culprit": {"comm": "Xwayland", "pid": 6},
        "kernel_blamed": {"comm": "Xwayland", "pid": 6}, "confidence": "likely",
        "kernel_blame_disputed": false, "victims": [], "evidence": [], "reset": null,
        "started_at": "1.0", "started_ns": 1, "ended_ns": 1, "clock": "monotonic",
        "reasoning": "", "jobs": [], "dropped_events": 0
    }))
    .unwrap();
    let m = mismatches_all(&case.incident, std::slice::from_ref(&got));
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
    nobody.culprit = Some(Who::Nobody);
    nobody.reset = None;
    let got_named = mismatches(&nobody, &got);
    assert_eq!(got_named, ["culprit: expected null, got Xwayland (pid 6)"]);
}
