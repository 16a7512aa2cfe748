//! The VM suite's assertions, generated per kernel of the matrix (tests/vm/matrix.toml) and
//! per scenario (tests/scenarios/*.toml: adding a TOML adds its tests). `cargo xtask vm` boots
//! each kernel under qemu (phase A: the real amdgpu.ko; phase B: tests/kmod's simulator and
//! that kernel's scenarios) and writes what happened inside to target/vm-results/<build>/
//! (index.json maps each series to its build); these tests check it.
//!
//! Test names: `<series>/<check>`, e.g. `6.1/phase_a_real_amdgpu_every_probe_attached`,
//! `7/scenario/01-zed-fault-wedges-gfx`. VM tests are ignored by default so `cargo test
//! --workspace` stays host-only; `cargo xtask test` runs them with `--ignored` after the boots
//! (HANGWATCH_VM_RESULTS points at the results root). One kernel: `-- --ignored 6.1/`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hangwatch_core::incident::{Incident, IncidentKind};
use hangwatch_core::testkit::expect::{check, IncidentExpect};
use libtest_mimic::{Arguments, Trial};
use serde::Deserialize;
use serde_json::Value;

#[path = "../vm/matrix.rs"]
mod matrix;
use matrix::{KernelEntry, Matrix};
#[path = "../vm/result.rs"]
mod result;
use result::{AgentRun, ScenarioResult};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn results_root() -> PathBuf {
    std::env::var_os("HANGWATCH_VM_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/vm-results"))
}

/// One kernel's results: its series, the exact build that ran, and where its files are.
struct Run {
    entry: KernelEntry,
    build: String,
    dir: PathBuf,
}

impl Run {
    /// Finds the build index.json recorded for `entry`'s series; a harness failure recorded
    /// there (download, boot) fails the test with that error.
    fn find(entry: &KernelEntry) -> Run {
        let series = &entry.series;
        let p = results_root().join("index.json");
        let idx: Value = std::fs::read_to_string(&p)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| {
                panic!(
                    "{}: missing; run `cargo xtask vm --kernel {series}` (or `cargo xtask test`) first",
                    p.display()
                )
            });
        let e = &idx[series.as_str()];
        if let Some(err) = e["error"].as_str() {
            panic!("the VM harness failed for kernel {series}: {err}");
        }
        let build = e["build"].as_str().unwrap_or_else(|| {
            panic!("no VM results for kernel {series}: run `cargo xtask vm --kernel {series}`")
        });
        Run {
            entry: entry.clone(),
            build: build.to_string(),
            dir: results_root().join(build),
        }
    }

    fn load(&self, rel: &str) -> Value {
        let p = self.dir.join(rel);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo xtask vm --kernel {}` first",
                p.display(),
                self.entry.series
            )
        });
        serde_json::from_str(&text).unwrap()
    }

    /// scenarios/`name`.json: what the driver reported for that scenario.
    fn scenario(&self, name: &str) -> ScenarioResult {
        let rel = format!("scenarios/{name}.json");
        serde_json::from_value(self.load(&rel))
            .unwrap_or_else(|e| panic!("{rel} of {}: {e}", self.build))
    }

    /// phase-b.json, failing clearly when the simulator did not build for this kernel.
    fn phase_b(&self) -> Value {
        let b = self.load("phase-b.json");
        if let Some(err) = b["sim_build_error"].as_str() {
            panic!("simulator did not build for {}: {err}", self.build);
        }
        b
    }
}

/// A format file without its `ID:` line (event ids depend on load order) and trailing blanks.
fn without_id(s: &str) -> String {
    s.lines()
        .filter(|l| !l.starts_with("ID:"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

fn vm_formats(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .expect("formats object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// The probes hangwatch has for every kernel of the matrix: all must be present and attached
/// (fully, except the series' expected `degraded` ones, which must say why).
const PROBES: &[&str] = &[
    "amdgpu_cs_ioctl",
    "amdgpu_sched_run_job",
    "sched_job_queue",
    "sched_job_run",
    "sched_job_done",
    "dma_fence_init",
    "dma_fence_signaled",
    "amdgpu_vm_grab_id",
    "amdgpu_pasid_allocated",
    "amdgpu_pasid_freed",
    "amdgpu_iv",
    "sched_process_exit",
    "kprobe:amdgpu_job_timedout",
    "kprobe:amdgpu_device_gpu_recover",
    "kretprobe:amdgpu_device_gpu_recover",
    "kretprobe:amdgpu_cs_ioctl",
];

/// Probes that exist only where the series has a feature (tests/vm/matrix.toml `features`):
/// elsewhere `check` must report them missing (docs/compute.md per-kernel table).
const FEATURE_PROBES: &[(&str, &str)] = &[
    ("amdgpu_userq_create", "userq"),
    ("amdgpu_userq_destroy", "userq"),
    ("amdgpu_userq_emit_fence", "userq"),
    ("amdgpu_userq_state_changed", "userq"),
    ("userq_fence_signaled", "userq"),
];

/// How many of [`FEATURE_PROBES`] the series `k` lacks the feature for.
fn absent_feature_probes(k: &KernelEntry) -> usize {
    FEATURE_PROBES
        .iter()
        .filter(|(_, f)| !k.features.iter().any(|x| x == f))
        .count()
}

fn assert_all_probes_attached(check: &Value, k: &KernelEntry, what: &str) {
    assert_eq!(
        check["status"], 0,
        "{what}: hangwatch check failed: {}",
        check["stderr"]
    );
    let probes = check["json"]["probes"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no probes in {check}"));
    let mut bad = Vec::new();
    for p in probes {
        let name = p["name"].as_str().unwrap_or("");
        let reason = p["reason"].as_str().unwrap_or("");
        if let Some((_, f)) = FEATURE_PROBES.iter().find(|(n, _)| *n == name) {
            if !k.features.iter().any(|x| x == f) {
                if p["status"] != "missing" {
                    bad.push(format!(
                        "{name} {} ({reason}); expected missing without {f}",
                        p["status"]
                    ));
                }
                continue;
            }
        }
        let expect_degraded = k.degraded.iter().any(|d| d == name);
        let degraded = reason.contains("degraded");
        if p["status"] != "attached" || degraded != expect_degraded {
            bad.push(format!(
                "{name} {} ({reason}){}",
                p["status"],
                if expect_degraded {
                    "; expected attached degraded on this series"
                } else {
                    ""
                }
            ));
        }
    }
    assert!(bad.is_empty(), "{what}: probes not as expected: {bad:#?}");
    for (probe, hook) in &k.hooks {
        let p = probes.iter().find(|p| p["name"] == probe.as_str());
        let reason = p.and_then(|p| p["reason"].as_str()).unwrap_or("");
        assert!(
            reason.starts_with(hook.as_str()),
            "{what}: on series {} check should name {hook} for {probe}, says {reason:?}",
            k.series
        );
    }
    let names: Vec<&str> = probes.iter().filter_map(|p| p["name"].as_str()).collect();
    for want in PROBES {
        assert!(
            names.contains(want),
            "{what}: probe {want} missing from hangwatch check: {names:?}"
        );
    }
}

fn phase_a_real_amdgpu_every_probe_attached(r: &Run) {
    let a = r.load("phase-a.json");
    assert_eq!(
        a["boot"]["reached_end"], true,
        "phase A boot did not finish: {}",
        a["boot"]
    );
    assert_eq!(
        a["kernel"].as_str(),
        Some(r.build.as_str()),
        "booted kernel differs from the build"
    );
    assert_eq!(
        a["modprobe"]["status"], 0,
        "modprobe amdgpu failed: {}",
        a["modprobe"]
    );
    assert_all_probes_attached(&a["check"], &r.entry, "phase A");
    let run: AgentRun = serde_json::from_value(a["run"].clone()).unwrap();
    assert!(
        run.attached,
        "hangwatch run never reported attached: {:?}",
        run.agent_stderr
    );
    assert_eq!(run.agent_exit, Some(0));
    let line = run
        .agent_stderr
        .iter()
        .find(|l| l.contains("probes attached:"))
        .expect("probes attached line");
    let counts = line.rsplit(' ').next().unwrap();
    let (n, m) = counts.split_once('/').unwrap();
    let (n, m): (usize, usize) = (n.parse().unwrap(), m.parse().unwrap());
    // The per-job detail probes stay off while the flight recorder runs in the kernel.
    let off = run
        .agent_stderr
        .iter()
        .filter(|l| l.contains(": off: per-job detail"))
        .count();
    assert_eq!(
        n + off + absent_feature_probes(&r.entry),
        m,
        "hangwatch run attached only {counts} ({off} off)"
    );
    assert!(n >= PROBES.len());
}

/// A committed capture: testdata/formats/<major.minor>.txt, `# build: X` then `== sys/event`
/// sections (see docs/vm-harness.md).
struct Capture {
    build: String,
    events: BTreeMap<String, String>,
}

fn series_of(build: &str) -> String {
    build
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}

fn load_capture(series: &str) -> Option<Capture> {
    let p = workspace()
        .join("testdata/formats")
        .join(format!("{series}.txt"));
    let text = std::fs::read_to_string(p).ok()?;
    let mut build = String::new();
    let mut events = BTreeMap::new();
    let mut cur: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(b) = line.strip_prefix("# build: ") {
            build = b.trim().to_string();
        } else if let Some(name) = line.strip_prefix("== ") {
            if let Some((k, v)) = cur.take() {
                events.insert(k, v);
            }
            cur = Some((name.trim().to_string(), String::new()));
        } else if let Some((_, v)) = cur.as_mut() {
            v.push_str(line);
            v.push('\n');
        }
    }
    if let Some((k, v)) = cur {
        events.insert(k, v);
    }
    Some(Capture { build, events })
}

/// Lines only in `old` as `-`, lines only in `new` as `+` (format files are short and their
/// lines unique, so this reads like a diff).
fn line_diff(old: &str, new: &str) -> String {
    let (o, n) = (without_id(old), without_id(new));
    let ol: Vec<&str> = o.lines().collect();
    let nl: Vec<&str> = n.lines().collect();
    let mut d = String::new();
    for l in &ol {
        if !nl.contains(l) {
            d += &format!("    -{l}\n");
        }
    }
    for l in &nl {
        if !ol.contains(l) {
            d += &format!("    +{l}\n");
        }
    }
    d
}

/// Format drift between a capture and a run: `(event, what)` per difference, over the trace
/// systems the capture covers.
fn format_drift(cap: &BTreeMap<String, String>, vm: &BTreeMap<String, String>) -> Vec<String> {
    let systems: Vec<&str> = cap.keys().filter_map(|k| k.split('/').next()).collect();
    let mut out = Vec::new();
    for (ev, old) in cap {
        match vm.get(ev) {
            None => out.push(format!("  {ev}: removed")),
            Some(new) if without_id(new) != without_id(old) => {
                out.push(format!("  {ev}: changed\n{}", line_diff(old, new)))
            }
            Some(_) => {}
        }
    }
    for ev in vm.keys() {
        let sys = ev.split('/').next().unwrap_or("");
        if systems.contains(&sys) && !cap.contains_key(ev) {
            out.push(format!("  {ev}: added"));
        }
    }
    out
}

/// The real driver's formats against the committed capture of this build's series. A change
/// within a series fails as FORMAT DRIFT (not a harness failure): see docs/vm-harness.md.
fn phase_a_formats_match_series_capture(r: &Run) {
    let a = r.load("phase-a.json");
    let vm = vm_formats(&a["formats"]);
    assert!(!vm.is_empty(), "phase A read no tracefs formats");
    let series = series_of(&r.build);
    let accept = format!("review it, then `cargo xtask formats --accept {}` and commit testdata/formats/{series}.txt", r.entry.series);
    let Some(cap) = load_capture(&series) else {
        panic!(
            "no committed format capture for series {series} (first seen in {}): {accept}",
            r.build
        );
    };
    let drift = format_drift(&cap.events, &vm);
    assert!(
        drift.is_empty(),
        "FORMAT DRIFT within series {series}: captured from {}, now {}:\n{}\n{accept}",
        cap.build,
        r.build,
        drift.join("\n")
    );
}

/// The amdgpu events hangwatch attaches to; the simulator must expose the ones the real
/// driver of the same build has, byte-identical.
const SIM_EVENTS: &[&str] = &[
    "amdgpu/amdgpu_cs_ioctl",
    "amdgpu/amdgpu_sched_run_job",
    "amdgpu/amdgpu_vm_grab_id",
    "amdgpu/amdgpu_iv",
    "amdgpu/amdgpu_pasid_allocated",
    "amdgpu/amdgpu_pasid_freed",
];

fn phase_b_simulator_formats_are_byte_identical_to_real_amdgpu(r: &Run) {
    let b = r.phase_b();
    let sim = vm_formats(&b["formats"]);
    let real = vm_formats(&r.load("phase-a.json")["formats"]);
    let mut compared = 0;
    for name in SIM_EVENTS {
        let Some(w) = real.get(*name) else { continue };
        let got = sim
            .get(*name)
            .unwrap_or_else(|| panic!("simulator lacks {name} (the real {} has it)", r.build));
        assert_eq!(
            without_id(got),
            without_id(w),
            "simulator's {name} differs from the real driver's on {}",
            r.build
        );
        compared += 1;
    }
    // Every other event the simulator defines must match the real one too.
    for (name, got) in &sim {
        if let Some(w) = real.get(name) {
            assert_eq!(
                without_id(got),
                without_id(w),
                "simulator's {name} differs on {}",
                r.build
            );
        }
    }
    assert!(
        compared >= 4,
        "only {compared} of {SIM_EVENTS:?} compared on {}",
        r.build
    );
}

/// Byte identity per kernel series: every amdgpu event the simulator defines is in the
/// committed capture of the real amdgpu.ko of this series (testdata/formats/<series>.txt) and
/// identical to it (ID lines aside). Unlike the phase-A comparison, this holds even when phase A
/// did not run in the same `cargo xtask vm`, and it pins the simulator to what the real driver
/// of that era exposes (5.10's signed `__data_loc`, 7.x's u64 fence keys).
fn phase_b_simulator_formats_match_series_capture(r: &Run) {
    let b = r.phase_b();
    let sim = vm_formats(&b["formats"]);
    let series = series_of(&r.build);
    let cap = load_capture(&series).unwrap_or_else(|| {
        panic!(
            "no committed format capture for series {series}: `cargo xtask formats --accept {}`",
            r.entry.series
        )
    });
    let mut compared = Vec::new();
    for (name, got) in sim.iter().filter(|(n, _)| n.starts_with("amdgpu/")) {
        let want = cap.events.get(name).unwrap_or_else(|| {
            panic!(
                "the simulator defines {name}, which the real amdgpu.ko of {} (capture {}) does not have",
                r.build, cap.build
            )
        });
        assert_eq!(
            without_id(got),
            without_id(want),
            "simulator's {name} on {} differs from the {series} capture ({}):\n{}",
            r.build,
            cap.build,
            line_diff(want, got)
        );
        compared.push(name.as_str());
    }
    for ev in SIM_EVENTS {
        assert!(
            compared.contains(ev),
            "the simulator on {} lacks {ev}: {compared:?}",
            r.build
        );
    }
}

fn phase_b_simulator_has_module_btf_and_every_probe_attaches(r: &Run) {
    let b = r.phase_b();
    assert_eq!(
        b["modprobe"]["status"], 0,
        "modprobe amdgpu (the simulator) failed: {}",
        b["modprobe"]
    );
    assert_eq!(
        b["btf"], r.entry.module_btf,
        "/sys/kernel/btf/amdgpu (the simulator) present = {}, expected {} on series {}",
        b["btf"], r.entry.module_btf, r.entry.series
    );
    assert_all_probes_attached(&b["check"], &r.entry, "phase B");
}

// ---- scenarios ----

#[derive(Deserialize)]
struct ScenarioFile {
    name: String,
    #[serde(default)]
    agent_args: Vec<String>,
    #[serde(default)]
    process: Vec<ProcessSpec>,
    expect: Expect,
}

#[derive(Deserialize)]
struct ProcessSpec {
    name: String,
}

#[derive(Deserialize)]
struct Expect {
    ring_timeouts: usize,
    #[serde(default)]
    submissions: Option<u64>,
    /// Exact kernel ring-buffer drops (flood: 0 = the release agent kept up).
    #[serde(default)]
    kernel_drops: Option<u64>,
    /// Each must match an incident by kind, ring and culprit; the rest is then checked.
    #[serde(default)]
    incident: Vec<IncidentExpect>,
}

fn comm(v: &Value) -> Option<&str> {
    v["comm"].as_str()
}

fn check_scenario(run: &Run, path: &Path) {
    run.phase_b();
    let sc: ScenarioFile = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let r = run.scenario(&sc.name);
    assert!(r.error.is_none(), "{}: driver error {:?}", sc.name, r.error);
    assert!(
        r.run.attached,
        "{}: agent never attached: {:?}",
        sc.name, r.run.agent_stderr
    );
    assert_eq!(
        r.run.agent_exit,
        Some(0),
        "{}: agent exit: {:?}",
        sc.name,
        r.run.agent_stderr
    );
    let procs = &r.processes;
    assert_eq!(
        procs.len(),
        sc.process.len(),
        "{}: not every process ran",
        sc.name
    );
    for (p, spec) in procs.iter().zip(&sc.process) {
        assert_eq!(p.name, spec.name);
    }
    let raw = &r.run.incidents;
    raw.iter().for_each(tests::assert_schema);
    let summary: Vec<String> = raw
        .iter()
        .map(|i| {
            format!(
                "{} ring={} culprit={} kernel_blamed={} victims={}",
                i["kind"], i["ring"], i["culprit"], i["kernel_blamed"], i["victims"]
            )
        })
        .collect();
    let incidents: Vec<Incident> = raw
        .iter()
        .map(|i| serde_json::from_value(i.clone()).unwrap())
        .collect();
    let timeouts = incidents
        .iter()
        .filter(|i| i.kind == IncidentKind::RingTimeout)
        .count();
    assert_eq!(
        timeouts, sc.expect.ring_timeouts,
        "{}: ring_timeout incidents: {summary:#?}",
        sc.name
    );
    for want in &sc.expect.incident {
        assert!(
            want.kind.is_some(),
            "{}: an [[expect.incident]] names no kind",
            sc.name
        );
        let n = incidents
            .iter()
            .position(|i| want.identifies(i))
            .unwrap_or_else(|| {
                panic!(
                    "{}: no {} incident; got {summary:#?}",
                    sc.name,
                    want.describe()
                )
            });
        if let Err(e) = check(want, &incidents[n]) {
            panic!("{}: {e}\nin {}", sc.name, summary[n]);
        }
    }
    if let Some(n) = sc.expect.submissions {
        let submitted: u64 = procs
            .iter()
            .map(|p| p.summary.as_ref().map_or(0, |s| s.submitted))
            .sum();
        assert_eq!(
            submitted, n,
            "{}: the driver did not submit everything",
            sc.name
        );
        let stderr_line = |key: &str| {
            r.run
                .agent_stderr
                .iter()
                .find(|l| l.contains(key))
                .unwrap_or_else(|| panic!("{}: no {key:?} line from hangwatch run", sc.name))
        };
        let stats = stderr_line("stats:");
        let seen = number_after(stats, "probe events ").unwrap_or(0);
        if sc.agent_args.iter().any(|a| a == "--trace-all") {
            // Every submission fires 8 per-job probes (cs_ioctl, sched queue/run_job/run/done,
            // vm_grab_id, fence init/signaled): each must be either processed or counted dropped.
            let dropped = number_after(stats, "kernel ring buffer ").unwrap_or(0)
                + number_after(stats, "userspace ").unwrap_or(0);
            assert!(
                seen + dropped >= 8 * n,
                "{}: {n} submissions = {} probe events, but only {seen} processed + {dropped} counted dropped: {stats}",
                sc.name,
                8 * n
            );
        } else {
            // The flight recorder in the kernel counts every submission; none reaches the
            // agent as an event but a new submitter's first.
            let rec = stderr_line("kernel flight recorder:");
            assert_eq!(
                number_after(rec, "kernel flight recorder: "),
                Some(n),
                "{}: the kernel recorder's count: {rec}",
                sc.name
            );
            assert!(
                seen < n / 100,
                "{}: per-job events reached the agent: {stats}",
                sc.name
            );
        }
        let kernel_drops = number_after(stats, "kernel ring buffer ").unwrap_or(u64::MAX);
        if let Some(want) = sc.expect.kernel_drops {
            assert_eq!(
                kernel_drops, want,
                "{}: kernel ring-buffer drops under the flood: {stats}",
                sc.name
            );
        }
        let window_ms = procs
            .iter()
            .filter_map(|p| p.summary.as_ref().map(|s| s.submit_ms))
            .max()
            .unwrap_or(0)
            .max(1);
        println!(
            "{} on {}: {:.0} submissions/s, {:.0} probe events/s processed, {kernel_drops} kernel ring-buffer drops ({n} submissions in {window_ms} ms)",
            sc.name,
            run.build,
            n as f64 * 1000.0 / window_ms as f64,
            seen as f64 * 1000.0 / window_ms as f64
        );
    }
}

fn number_after(s: &str, key: &str) -> Option<u64> {
    let rest = &s[s.find(key)? + key.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The incident directory `hangwatch run --output` wrote for scenario 1 and the bug
/// report `hangwatch bugreport` built from it, both inside the VM (hwdriver returns them as
/// artifacts; xtask writes them under scenarios/zed-fault-wedges-gfx/).
fn scenario_1_incident_dir_and_bugreport_built_in_the_vm(run: &Run) {
    let name = "zed-fault-wedges-gfx";
    run.phase_b();
    let r = run.scenario(name);
    let a = r
        .artifacts
        .as_ref()
        .unwrap_or_else(|| panic!("{name}: no artifacts returned"));
    assert!(a.error.is_none(), "{name}: {:?}", a.error);
    assert_eq!(
        a.bugreport_exit,
        Some(0),
        "hangwatch bugreport failed in the VM: {}",
        a.bugreport_stderr
    );
    let dir = run.dir.join("scenarios").join(name);
    let read = |rel: &str| std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    for f in [
        "incident.json",
        "report.md",
        "trace.perfetto",
        "kernel.log",
        "processes.json",
        "host.json",
    ] {
        assert!(
            !read(&format!("incident/{f}")).is_empty(),
            "incident/{f} is empty"
        );
    }
    let inc: Value = serde_json::from_slice(&read("incident/incident.json")).unwrap();
    tests::assert_schema(&inc);
    assert_eq!(inc["schema"], "hangwatch.incident/1");
    captured_at_the_open_and_written_while_open(&r, &inc, &read("incident/host.json"));
    assert_eq!(comm(&inc["culprit"]), Some("zed"), "{inc}");
    let zed_pid = inc["culprit"]["pid"].as_u64().unwrap();
    // The live agent captured the culprit's mappings while it ran (the simulated clients map no
    // GPU userspace driver, so the entry is there with no driver lines).
    let procs: Value = serde_json::from_slice(&read("incident/processes.json")).unwrap();
    assert!(
        procs["process_maps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e[0].as_u64() == Some(zed_pid)),
        "no maps captured for zed[{zed_pid}]: {procs}"
    );
    let kernel_log = String::from_utf8(read("incident/kernel.log")).unwrap();
    assert!(
        kernel_log.contains("ring gfx_0.0.0 timeout"),
        "{kernel_log}"
    );

    let md = String::from_utf8(read("bugreport.md")).unwrap();
    let mut at = 0;
    for section in [
        "## Summary",
        "## System",
        "## GPU",
        "## Userspace drivers of involved processes",
        "## Attribution (hangwatch)",
        "## Kernel log excerpt",
        "## Suggested next steps",
        "## Missing",
    ] {
        let i = md[at..]
            .find(section)
            .unwrap_or_else(|| panic!("bug report lacks {section:?} (in order):\n{md}"));
        at += i + section.len();
    }
    assert!(md.contains(&run.build), "kernel version missing:\n{md}");
    assert!(md.contains(&format!("zed[{zed_pid}]")), "{md}");
    assert!(md.contains("no AMD userspace driver library"), "{md}");
    assert!(md.contains("umr") && md.contains("gfx_0.0.0"), "{md}");
    // The simulator is not a PCI device: the GPU facts must be listed as missing with a reason.
    let missing = &md[md.find("## Missing").unwrap()..];
    assert!(
        missing.lines().filter(|l| l.starts_with("- ")).count() >= 1,
        "{missing}"
    );

    let tar = std::process::Command::new("tar")
        .arg("tzf")
        .arg(dir.join("bugreport.tar.gz"))
        .output()
        .unwrap();
    assert!(
        tar.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let list = String::from_utf8_lossy(&tar.stdout);
    for f in [
        "bugreport.md",
        "incident.json",
        "trace.perfetto",
        "kernel.log",
    ] {
        assert!(
            list.lines().any(|l| l.ends_with(f)),
            "{f} not in the archive:\n{list}"
        );
    }
}

/// `2026-11-29T19:48:05.249493Z` -> Unix seconds.
fn unix_seconds(rfc3339: &str) -> f64 {
    let (date, time) = rfc3339.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    // Days from the civil date (H. Hinnant's algorithm).
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let t: Vec<f64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    days as f64 * 86400.0 + t[0] * 3600.0 + t[1] * 60.0 + t[2]
}

/// Wave 2 in the VM: the agent wrote the incident when it opened (provisional) and the host
/// facts in it were read then — not at the final write, which comes at least the settle time
/// (5 s) after the reset — and the final version is no longer provisional.
fn captured_at_the_open_and_written_while_open(r: &ScenarioResult, inc: &Value, host_json: &[u8]) {
    let said = r.run.agent_stderr.join("\n");
    assert!(
        said.contains("provisional until it closes"),
        "no provisional write when the incident opened: {said}"
    );
    assert!(inc.get("provisional").is_none(), "the final write: {inc}");
    let host: Value = serde_json::from_slice(host_json).unwrap();
    let captured = host["captured_unix_s"].as_f64().unwrap();
    let opened = unix_seconds(inc["wall_time"].as_str().expect("wall_time"));
    let span_s = (inc["ended_ns"].as_f64().unwrap() - inc["started_ns"].as_f64().unwrap()) / 1e9;
    assert!(
        captured >= opened.floor() - 1.0 && captured <= opened + 3.0,
        "host facts captured at {captured}, the incident opened at {opened} and lasted {span_s:.1} s"
    );
}

/// `hangwatch export --since 60s` against the running agent in scenario 1 (control socket ->
/// flight recorder -> Perfetto), decoded with protoc, not with our writer.
fn scenario_1_export_from_the_running_agent_decodes(run: &Run) {
    let name = "zed-fault-wedges-gfx";
    run.phase_b();
    let r = run.scenario(name);
    let a = r
        .artifacts
        .as_ref()
        .unwrap_or_else(|| panic!("{name}: no artifacts returned"));
    assert_eq!(
        a.export_exit,
        Some(0),
        "hangwatch export failed: {}",
        a.export_stderr
    );
    let trace = run.dir.join("scenarios").join(name).join("export.perfetto");
    let out = std::process::Command::new("protoc")
        .arg(format!("-I{}", workspace().join("tests/proto").display()))
        .arg("--decode=perfetto.protos.Trace")
        .arg("perfetto_subset.proto")
        .stdin(std::fs::File::open(&trace).unwrap_or_else(|e| panic!("{}: {e}", trace.display())))
        .output()
        .expect("protoc (protobuf-compiler) is installed by cargo xtask setup");
    assert!(
        out.status.success(),
        "protoc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("name: \"ring gfx_0.0.0\""), "{text}");
    for comm in ["zed", "Xwayland", "gnome-shell"] {
        assert!(
            text.contains(&format!("name: \"{comm} [")),
            "no track for {comm}'s submissions:\n{text}"
        );
    }
    assert!(text.matches("TYPE_SLICE_BEGIN").count() >= 30, "{text}");
    // The agent's recent evidence comes along: the fault, the timeout and the reset as instants.
    for instant in ["page fault: ", "timeout: ", "reset: "] {
        assert!(
            text.contains(&format!("name: \"{instant}")),
            "no {instant:?} instant in the export:\n{text}"
        );
    }
}

// ---- least privilege (the packaged service's user and capabilities) ----

/// The least-privilege scenario (40): the agent as uid 65534 with the service's capabilities.
const LEAST_PRIVILEGE: &str = "least-privilege";

/// The fields that make an attribution: the same for root and the least-privilege agent.
fn attribution(i: &Value) -> String {
    let mut victims: Vec<&str> = i["victims"]
        .as_array()
        .map(|v| v.iter().filter_map(comm).collect())
        .unwrap_or_default();
    victims.sort();
    format!(
        "{} ring={} culprit={:?} confidence={} kernel_blamed={:?} disputed={} victims={victims:?} reset={}",
        i["kind"],
        i["ring"],
        comm(&i["culprit"]),
        i["confidence"],
        comm(&i["kernel_blamed"]),
        i["kernel_blame_disputed"],
        i["reset"]
    )
}

fn attach_line(r: &ScenarioResult) -> String {
    r.run
        .agent_stderr
        .iter()
        .find(|l| l.contains("probes attached:"))
        .cloned()
        .unwrap_or_default()
}

/// Scenario 40 against scenario 1 on the same kernel: every probe root attaches attaches, and
/// the incidents are the same (culprit, victims, confidence, kernel blame), with the culprit's
/// exe read from another user's /proc.
fn least_privilege_agent_gets_the_same_incidents_as_root(run: &Run) {
    run.phase_b();
    let root = run.scenario(SCENARIO_1);
    let lp = run.scenario(LEAST_PRIVILEGE);
    let stderr = &lp.run.agent_stderr;
    let said = |what: &str| stderr.iter().any(|l| l.contains(what));
    assert!(
        said("control socket: /tmp/hw-run/control.sock"),
        "the control socket in a directory of its own: {stderr:?}"
    );
    assert_eq!(
        attach_line(&lp),
        attach_line(&root),
        "as uid 65534 with the service's capabilities every probe root attaches must attach: {stderr:?}"
    );
    let list =
        |r: &ScenarioResult| -> Vec<String> { r.run.incidents.iter().map(attribution).collect() };
    let want = list(&root);
    assert!(
        !want.is_empty(),
        "scenario 1 had no incident: {:?}",
        root.run.agent_stderr
    );
    assert_eq!(
        list(&lp),
        want,
        "least privilege vs root; agent stderr: {stderr:?}"
    );
    // /proc of other users' processes was readable: the culprit's exe and driver maps.
    let inc = &lp.run.incidents[0];
    assert_eq!(inc["culprit"]["exe"], "/usr/bin/zed", "{inc}");
}

/// Phase A's capability experiment (hwdriver `caps_experiment`): `check --attach` and /proc
/// reads as uid 65534 with the service's five capabilities, each one removed, and none.
fn phase_a_every_service_capability_is_needed(run: &Run) {
    let a = run.load("phase-a.json");
    let caps = &a["caps"];
    let rows = caps["rows"]
        .as_object()
        .unwrap_or_else(|| panic!("no caps experiment: {caps}"));
    // With perf_event_paranoid=2 (upstream's default) the five capabilities are enough: every
    // probe root attaches here attaches (the 7.x user-queue probes are missing on older
    // kernels for root too).
    let all = &rows["all"];
    let of = a["check"]["json"]["probes"].as_array().map_or(0, |p| {
        p.iter().filter(|p| p["status"] == "attached").count() as u64
    });
    assert!(of > 0, "root attached nothing: {}", a["check"]);
    assert_eq!(
        all["check"]["attached"].as_u64(),
        Some(of),
        "all five: {all}"
    );
    assert_eq!(all["check"]["kmsg_readable"], true, "{all}");
    for k in ["fdinfo", "exe", "maps", "kmsg", "tracefs_format"] {
        assert_eq!(all["read_proc"][k], "ok", "all five, {k}: {all}");
    }
    let first = |label: &str| {
        rows[label]["check"]["first_failure"].to_string()
            + &rows[label]["check"]["attach_error"].to_string()
    };
    let attached = |label: &str| rows[label]["check"]["attached"].as_u64();
    // Each capability removed costs what docs/operations.md says.
    assert!(
        attached("-CAP_BPF") == Some(0) && first("-CAP_BPF").contains("failed to create map"),
        "{}",
        rows["-CAP_BPF"]
    );
    assert!(
        attached("-CAP_PERFMON") == Some(0) && first("-CAP_PERFMON").contains("not permitted"),
        "{}",
        rows["-CAP_PERFMON"]
    );
    assert!(
        attached("-CAP_DAC_READ_SEARCH") == Some(0)
            && first("-CAP_DAC_READ_SEARCH").contains("CAP_DAC_READ_SEARCH"),
        "{}",
        rows["-CAP_DAC_READ_SEARCH"]
    );
    let r = &rows["-CAP_SYSLOG"];
    assert!(
        attached("-CAP_SYSLOG") == Some(of) && r["check"]["kmsg_readable"] == false,
        "{r}"
    );
    let r = &rows["-CAP_SYS_PTRACE"];
    assert!(
        attached("-CAP_SYS_PTRACE") == Some(of)
            && r["read_proc"]["fdinfo"] != "ok"
            && r["read_proc"]["exe"] != "ok",
        "{r}"
    );
    // Debian boots with perf_event_paranoid=3: then nothing attaches without CAP_SYS_ADMIN,
    // and the agent says so.
    if caps["boot_perf_event_paranoid"].as_i64() > Some(2) {
        let r = &rows["all@boot-paranoid"];
        assert_eq!(attached("all@boot-paranoid"), Some(0), "{r}");
        assert!(
            first("all@boot-paranoid").contains("perf_event_paranoid"),
            "{r}"
        );
    }
}

// ---- the generated suite ----

/// Scenario 1 carries the incident-directory, bug-report and export checks.
const SCENARIO_1: &str = "zed-fault-wedges-gfx";

fn vm_trial(
    series: &str,
    check: &str,
    f: impl FnOnce(&Run) + Send + 'static,
    k: &KernelEntry,
) -> Trial {
    let k = k.clone();
    Trial::test(format!("{series}/{check}"), move || {
        f(&Run::find(&k));
        Ok(())
    })
    .with_ignored_flag(true)
}

/// Per kernel: the phase-A checks, and where any scenario runs the phase-B checks and one
/// test per scenario placed on it.
fn kernel_trials(
    m: &Matrix,
    k: &KernelEntry,
    scenarios: &[(PathBuf, matrix::Placement)],
) -> Vec<Trial> {
    let s = &k.series;
    let mut v = vec![
        vm_trial(
            s,
            "phase_a_real_amdgpu_every_probe_attached",
            phase_a_real_amdgpu_every_probe_attached,
            k,
        ),
        vm_trial(
            s,
            "phase_a_formats_match_series_capture",
            phase_a_formats_match_series_capture,
            k,
        ),
    ];
    let here: Vec<&(PathBuf, matrix::Placement)> = scenarios
        .iter()
        .filter(|(_, p)| m.series_for(p).contains(s))
        .collect();
    if here.is_empty() {
        return v;
    }
    v.push(vm_trial(
        s,
        "phase_b_simulator_formats_are_byte_identical_to_real_amdgpu",
        phase_b_simulator_formats_are_byte_identical_to_real_amdgpu,
        k,
    ));
    v.push(vm_trial(
        s,
        "phase_b_simulator_formats_match_series_capture",
        phase_b_simulator_formats_match_series_capture,
        k,
    ));
    v.push(vm_trial(
        s,
        "phase_b_simulator_has_module_btf_and_every_probe_attaches",
        phase_b_simulator_has_module_btf_and_every_probe_attaches,
        k,
    ));
    if here.iter().any(|(_, p)| p.name == LEAST_PRIVILEGE) {
        v.push(vm_trial(
            s,
            "phase_a_every_service_capability_is_needed",
            phase_a_every_service_capability_is_needed,
            k,
        ));
    }
    for (path, p) in here {
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let path = path.clone();
        v.push(vm_trial(
            s,
            &format!("scenario/{stem}"),
            move |r| check_scenario(r, &path),
            k,
        ));
        if p.name == SCENARIO_1 {
            v.push(vm_trial(
                s,
                "scenario_1_incident_dir_and_bugreport_built_in_the_vm",
                scenario_1_incident_dir_and_bugreport_built_in_the_vm,
                k,
            ));
            v.push(vm_trial(
                s,
                "scenario_1_export_from_the_running_agent_decodes",
                scenario_1_export_from_the_running_agent_decodes,
                k,
            ));
        }
        if p.name == LEAST_PRIVILEGE {
            v.push(vm_trial(
                s,
                "least_privilege_agent_gets_the_same_incidents_as_root",
                least_privilege_agent_gets_the_same_incidents_as_root,
                k,
            ));
        }
    }
    v
}

/// Host-side (not ignored): every scenario parses, says what it expects, runs somewhere, and
/// every name the matrix lists is a real scenario.
fn every_scenario_file_parses_and_runs_on_some_kernel(
    m: &Matrix,
    scenarios: &[(PathBuf, matrix::Placement)],
) {
    let mut names = Vec::new();
    for (p, placement) in scenarios {
        let sc: ScenarioFile = toml::from_str(&std::fs::read_to_string(p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            !sc.name.contains(' ') && !sc.name.contains('/'),
            "{}: scenario names are result file names",
            p.display()
        );
        assert!(
            sc.expect.incident.len() >= sc.expect.ring_timeouts.min(1)
                || sc.expect.submissions.is_some(),
            "{}: expects nothing checkable",
            p.display()
        );
        for s in placement.kernels.iter().flatten() {
            assert!(
                m.entry(s).is_some(),
                "{}: kernels names {s}, not a series of tests/vm/matrix.toml",
                p.display()
            );
        }
        assert!(
            !m.series_for(placement).is_empty(),
            "{}: runs on no kernel of the matrix",
            p.display()
        );
        names.push(sc.name);
    }
    assert!(names.len() >= 7, "scenarios: {names:?}");
    for k in &m.kernel {
        if let matrix::Selection::Names(list) = &k.scenarios {
            for n in list {
                assert!(
                    names.contains(n),
                    "tests/vm/matrix.toml: series {} lists unknown scenario {n}",
                    k.series
                );
            }
        }
    }
}

fn main() {
    let args = Arguments::from_args();
    let ws = workspace();
    let m = matrix::load_matrix(&ws).unwrap_or_else(|e| panic!("{e}"));
    let files =
        matrix::scenario_files(&ws.join("tests/scenarios")).unwrap_or_else(|e| panic!("{e}"));
    let scenarios: Vec<(PathBuf, matrix::Placement)> = files
        .into_iter()
        .map(|f| {
            let p = matrix::placement(&f).unwrap_or_else(|e| panic!("{e}"));
            (f, p)
        })
        .collect();
    let mut trials = Vec::new();
    {
        let (m, sc) = (m.clone(), scenarios.clone());
        trials.push(Trial::test(
            "every_scenario_file_parses_and_runs_on_some_kernel",
            move || {
                every_scenario_file_parses_and_runs_on_some_kernel(&m, &sc);
                Ok(())
            },
        ));
    }
    for k in &m.kernel {
        trials.extend(kernel_trials(&m, k, &scenarios));
    }
    libtest_mimic::run(&args, trials).exit();
}
