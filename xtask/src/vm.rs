//! `cargo xtask vm`: kernel packages -> simulator module -> initramfs -> qemu -> results, for
//! one kernel or the whole matrix (tests/vm/matrix.toml). Phase A boots with the real
//! amdgpu.ko; phase B with the simulator and runs the kernel's scenarios sequentially in ONE
//! boot. Results land in `target/vm-results/<build>/` as JSON files that tests/tests/vm.rs
//! asserts on; target/vm-results/index.json maps each series to the build it ran.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::initramfs::{self, Spec};
use crate::kernel::{self, Kernel};
use crate::matrix::{self, Matrix};
use crate::qemu;
use crate::result::{Files, ScenarioResult};
use crate::util::{root, run, target_dir};

/// The host's util-linux setpriv, copied into phase A (the capability experiment) and phase B
/// (scenarios' `agent_wrapper`).
const SETPRIV: &str = "/usr/bin/setpriv";

/// What `cargo xtask vm` boots without `--kernel`: the series of Debian 12's kernel.
pub const DEFAULT_KERNEL: &str = "6.1";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    A,
    B,
    All,
}

pub struct Opts {
    /// Builds or series; empty = DEFAULT_KERNEL.
    pub kernels: Vec<String>,
    /// Explicit scenario files; empty = the matrix's selection for each kernel.
    pub scenarios: Vec<PathBuf>,
    pub phase: Phase,
    pub demo: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            kernels: Vec::new(),
            scenarios: Vec::new(),
            phase: Phase::All,
            demo: false,
        }
    }
}

const USAGE: &str = "usage: cargo xtask vm [--kernel VER|SERIES]... [--matrix] [--scenario FILE]... [--phase a|b|all]";

pub fn parse_args(args: &[String]) -> Result<Opts> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--kernel" => o.kernels.push(
                it.next()
                    .context("--kernel needs a build or series")?
                    .clone(),
            ),
            "--matrix" => o
                .kernels
                .extend(load_matrix()?.kernel.into_iter().map(|k| k.series)),
            "--scenario" => o
                .scenarios
                .push(PathBuf::from(it.next().context("--scenario needs a file")?)),
            "--phase" => {
                o.phase = match it.next().map(String::as_str) {
                    Some("a") => Phase::A,
                    Some("b") => Phase::B,
                    Some("all") => Phase::All,
                    other => bail!("--phase takes a, b or all (got {other:?})"),
                }
            }
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    Ok(o)
}

pub fn load_matrix() -> Result<Matrix> {
    matrix::load_matrix(&root()).map_err(anyhow::Error::msg)
}

pub fn results_root() -> PathBuf {
    target_dir().join("vm-results")
}

pub fn results_dir(build: &str) -> PathBuf {
    results_root().join(build)
}

/// All scenario files, sorted by name (their numeric prefix orders them).
pub fn all_scenarios() -> Result<Vec<PathBuf>> {
    matrix::scenario_files(&root().join("tests/scenarios")).map_err(anyhow::Error::msg)
}

pub struct Bins {
    pub hangwatch: PathBuf,
    pub hwdriver: PathBuf,
}

/// Builds the binaries the VM runs: the release build users run (the suite's numbers and the
/// flood scenario's zero-drop claim are about that build, not rustc's debug codegen).
pub fn build_bins() -> Result<Bins> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (pkg, bin) in [("agent", "hangwatch"), ("xtask", "hwdriver")] {
        run(Command::new(&cargo)
            .args(["build", "-q", "--release", "-p", pkg, "--bin", bin])
            .current_dir(root()))?;
    }
    let d = target_dir().join("release");
    Ok(Bins {
        hangwatch: d.join("hangwatch"),
        hwdriver: d.join("hwdriver"),
    })
}

/// One kernel's outcome, as recorded in index.json.
pub struct KernelRun {
    pub requested: String,
    pub build: Option<String>,
    pub error: Option<String>,
}

/// Runs every requested kernel; one kernel's harness failure (download, boot) is recorded and
/// the others still run. Returns the results root.
pub fn run_vm(o: &Opts) -> Result<Vec<KernelRun>> {
    let specs = if o.kernels.is_empty() {
        vec![DEFAULT_KERNEL.to_string()]
    } else {
        o.kernels.clone()
    };
    let m = load_matrix()?;
    // The first kernel's download (network) overlaps the binaries' build (CPU).
    let first = specs[0].clone();
    let fetch = std::thread::spawn(move || prepare_timed(&first));
    let bins = build_bins();
    let mut fetched = Some(
        fetch
            .join()
            .unwrap_or_else(|_| (Err(anyhow!("the kernel download panicked")), Duration::ZERO)),
    );
    let bins = bins?;
    let mut runs = Vec::new();
    for spec in &specs {
        let (k, prep) = fetched.take().unwrap_or_else(|| prepare_timed(spec));
        let r = k.and_then(|k| run_kernel(spec, &k, prep, o, &m, &bins));
        let run = match r {
            Ok(build) => KernelRun {
                requested: spec.clone(),
                build: Some(build),
                error: None,
            },
            Err(e) => {
                eprintln!("xtask vm: kernel {spec}: {e:#}");
                KernelRun {
                    requested: spec.clone(),
                    build: None,
                    error: Some(format!("{e:#}")),
                }
            }
        };
        record_index(&m, &run)?;
        runs.push(run);
    }
    Ok(runs)
}

/// The matrix entry a requested kernel belongs to: its series (`7`), or the series covering
/// an exact build (`7.3.4+deb13-amd64` -> `7`, `6.1.0-57-amd64` -> `6.1`).
pub fn matrix_series(m: &Matrix, spec: &str, build: &str) -> Option<String> {
    if m.entry(spec).is_some() {
        return Some(spec.to_string());
    }
    let s = kernel::series_of(build);
    let major = s.split('.').next().unwrap_or("");
    m.kernel
        .iter()
        .map(|k| &k.series)
        .find(|k| **k == s)
        .or_else(|| m.kernel.iter().map(|k| &k.series).find(|k| **k == major))
        .cloned()
}

/// index.json: matrix series (or the requested spec) -> {requested, build, error}. Merged,
/// so a run of one kernel keeps the others' entries.
fn record_index(m: &Matrix, r: &KernelRun) -> Result<()> {
    let p = results_root().join("index.json");
    fs::create_dir_all(results_root())?;
    let mut idx: Map<String, Value> = fs::read_to_string(&p)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let key = r
        .build
        .as_deref()
        .and_then(|b| matrix_series(m, &r.requested, b))
        .or_else(|| m.entry(&r.requested).map(|k| k.series.clone()))
        .unwrap_or_else(|| r.requested.clone());
    idx.insert(
        key,
        json!({"requested": r.requested, "build": r.build, "error": r.error}),
    );
    write_json(&p, &Value::Object(idx))
}

/// The scenarios one kernel runs: the explicit ones, else the matrix's selection (which says
/// which pending scenarios it skips, and why).
fn scenarios_for(o: &Opts, m: &Matrix, series: Option<&str>) -> Result<Vec<PathBuf>> {
    if !o.scenarios.is_empty() {
        return Ok(o.scenarios.clone());
    }
    let pending =
        matrix::pending_scenarios(&root().join("tests/scenarios")).map_err(anyhow::Error::msg)?;
    for (f, p) in pending {
        if series.is_none_or(|s| m.series_for(&p).iter().any(|x| x == s)) {
            eprintln!(
                "xtask vm: SKIPPED {} (pending: {})",
                f.display(),
                p.pending.unwrap_or_default()
            );
        }
    }
    let mut v = Vec::new();
    for f in all_scenarios()? {
        let p = matrix::placement(&f).map_err(anyhow::Error::msg)?;
        let on = match series {
            Some(s) => m.series_for(&p).iter().any(|x| x == s),
            None => true, // a kernel outside the matrix runs everything
        };
        if on {
            v.push(f);
        }
    }
    Ok(v)
}

/// `kernel::prepare` and how long it took.
fn prepare_timed(spec: &str) -> (Result<Kernel>, Duration) {
    let t = Instant::now();
    (kernel::prepare(spec), t.elapsed())
}

/// Runs `k`'s phases; `prep` is how long fetching and preparing it took.
fn run_kernel(
    spec: &str,
    k: &Kernel,
    prep: Duration,
    o: &Opts,
    m: &Matrix,
    bins: &Bins,
) -> Result<String> {
    let t0 = Instant::now();
    let series = matrix_series(m, spec, &k.version);
    eprintln!(
        "xtask vm: kernel {} ready ({:.1}s; matrix series {})",
        k.version,
        prep.as_secs_f64(),
        series.as_deref().unwrap_or("none")
    );
    // The demo runs the agent in text mode: keep its results away from the suite's JSON ones.
    let out = if o.demo {
        results_dir(&k.version).join("demo")
    } else {
        results_dir(&k.version)
    };
    fs::create_dir_all(out.join("scenarios"))?;
    write_json(
        &out.join("kernel.json"),
        &json!({"requested": spec, "build": k.version, "series": kernel::series_of(&k.version), "matrix_series": series}),
    )?;
    let accel = crate::accel::pick_accel(k)?;
    let mut timings = Map::new();
    if matches!(o.phase, Phase::A | Phase::All) && !o.demo {
        let t = Instant::now();
        phase_a(k, bins, accel, &out)?;
        eprintln!(
            "xtask vm: {} phase A ({accel}) took {:.1}s",
            k.version,
            t.elapsed().as_secs_f64()
        );
        timings.insert("phase_a_s".into(), json!(t.elapsed().as_secs_f64()));
    }
    if matches!(o.phase, Phase::B | Phase::All) {
        let t = Instant::now();
        let scenarios = scenarios_for(o, m, series.as_deref())?;
        phase_b(k, bins, accel, &out, &scenarios, o.demo)?;
        eprintln!(
            "xtask vm: {} phase B ({accel}, {} scenarios) took {:.1}s",
            k.version,
            scenarios.len(),
            t.elapsed().as_secs_f64()
        );
        timings.insert("phase_b_s".into(), json!(t.elapsed().as_secs_f64()));
    }
    timings.insert("total_s".into(), json!((prep + t0.elapsed()).as_secs_f64()));
    timings.insert("accel".into(), json!(accel));
    write_json(&out.join("timings.json"), &Value::Object(timings))?;
    eprintln!("xtask vm: results in {}", out.display());
    Ok(k.version.clone())
}

/// The agent, the driver and util-linux's setpriv (`agent_wrapper`, the capability experiment;
/// busybox's has no --reuid/--regid): it lands at /bin/setpriv before busybox installs its
/// applet links, so it wins.
fn vm_binaries(bins: &Bins) -> Vec<PathBuf> {
    let mut binaries = vec![bins.hangwatch.clone(), bins.hwdriver.clone()];
    if Path::new(SETPRIV).exists() {
        binaries.push(PathBuf::from(SETPRIV));
    }
    binaries
}

fn phase_a(k: &Kernel, bins: &Bins, accel: &'static str, out: &Path) -> Result<()> {
    let _ = fs::remove_file(out.join("phase-a.json")); // never assert on a stale run
    let initrd = initramfs::build(
        k,
        &Spec {
            name: "phase-a",
            modules: &["amdgpu"],
            extra_modules: vec![],
            binaries: vm_binaries(bins),
            files: vec![("plan.toml".into(), b"phase = \"a\"\n".to_vec())],
        },
    )?;
    let boot = qemu::boot(
        k,
        &initrd,
        accel,
        Duration::from_secs(15 * 60),
        &out.join("phase-a.log"),
    )?;
    let mut m = collect(&boot, "phase-a");
    m.insert("boot".into(), boot_info(&boot));
    write_json(&out.join("phase-a.json"), &Value::Object(m))
}

/// Files for the initramfs's /hw: (relative path, contents).
type HwFiles = Vec<(String, Vec<u8>)>;

/// The plan and scenario files of a phase-B initramfs, and the boot's time budget.
fn phase_b_plan(scenarios: &[PathBuf], demo: bool) -> Result<(HwFiles, u64)> {
    let mut files = Vec::new();
    let mut plan = format!("phase = \"b\"\ndemo = {demo}\nscenarios = [");
    let mut budget = 180u64;
    for s in scenarios {
        let text = fs::read_to_string(s).with_context(|| format!("reading {}", s.display()))?;
        let v: toml::Value =
            toml::from_str(&text).with_context(|| format!("parsing {}", s.display()))?;
        budget += v
            .get("duration_s")
            .and_then(toml::Value::as_integer)
            .unwrap_or(10)
            .max(0) as u64
            + 150;
        let base = s
            .file_name()
            .context("scenario without a file name")?
            .to_string_lossy()
            .into_owned();
        plan.push_str(&format!("\"/hw/scenarios/{base}\","));
        files.push((format!("scenarios/{base}"), text.into_bytes()));
    }
    plan.push_str("]\n");
    files.push(("plan.toml".into(), plan.into_bytes()));
    Ok((files, budget))
}

fn phase_b(
    k: &Kernel,
    bins: &Bins,
    accel: &'static str,
    out: &Path,
    scenarios: &[PathBuf],
    demo: bool,
) -> Result<()> {
    // Never assert on a stale run: drop the previous phase-B results first.
    let _ = fs::remove_file(out.join("phase-b.json"));
    let _ = fs::remove_dir_all(out.join("scenarios"));
    fs::create_dir_all(out.join("scenarios"))?;
    let ko = match crate::kmod::build_sim(k) {
        Ok(ko) => ko,
        Err(e) => {
            // Not a harness crash: every phase-B test of this kernel reports it.
            let first = crate::util::first_error_line(&format!("{e:#}"));
            eprintln!(
                "xtask vm: simulator did not build for {}: {first}",
                k.version
            );
            return write_json(
                &out.join("phase-b.json"),
                &json!({"sim_build_error": first, "sim_build_log": format!("{e:#}")}),
            );
        }
    };
    let (files, budget) = phase_b_plan(scenarios, demo)?;
    let binaries = vm_binaries(bins);
    let initrd = initramfs::build(
        k,
        &Spec {
            name: "phase-b",
            modules: &["gpu-sched", "drm"],
            extra_modules: vec![ko],
            binaries,
            files,
        },
    )?;
    let boot = qemu::boot(
        k,
        &initrd,
        accel,
        Duration::from_secs(budget),
        &out.join("phase-b.log"),
    )?;
    let mut m = collect(&boot, "phase-b");
    m.insert("boot".into(), boot_info(&boot));
    for r in qemu::results(&boot.lines) {
        if r.key == "result" {
            let mut res: ScenarioResult = serde_json::from_value(r.value.clone())
                .with_context(|| format!("scenario {}: hwdriver's result", r.name))?;
            write_artifacts(&out.join("scenarios").join(&r.name), &mut res)?;
            write_json(
                &out.join("scenarios").join(format!("{}.json", r.name)),
                &serde_json::to_value(&res)?,
            )?;
            if demo {
                print_demo(&r.name, &res);
            }
        }
    }
    write_json(&out.join("phase-b.json"), &Value::Object(m))
}

/// A scenario's `artifacts.files` (path -> hex bytes, see hwdriver) become real files under
/// `dir`; the JSON keeps only their names so the result file stays readable.
fn write_artifacts(dir: &Path, res: &mut ScenarioResult) -> Result<()> {
    let Some(a) = res.artifacts.as_mut() else {
        return Ok(());
    };
    let files = match std::mem::take(&mut a.files) {
        Files::Hex(files) => files,
        written => {
            a.files = written;
            return Ok(());
        }
    };
    let _ = fs::remove_dir_all(dir);
    let mut names = Vec::new();
    for (name, hex) in files {
        let rel = Path::new(&name);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            anyhow::bail!("VM artifact with an unsafe path: {name}");
        }
        let bytes = unhex(&hex).with_context(|| format!("VM artifact {name} is not hex"))?;
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&p, bytes)?;
        names.push(name);
    }
    names.sort();
    a.files = Files::Written(names);
    Ok(())
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        anyhow::bail!("odd length");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(anyhow::Error::from))
        .collect()
}

fn boot_info(b: &qemu::Boot) -> Value {
    json!({
        "accel": b.accel,
        "wall_s": b.wall.as_secs_f64(),
        "timed_out": b.timed_out,
        "reached_end": b.lines.iter().any(|l| l.contains("HWEND")),
    })
}

/// The `<name> <key>` results of one phase as a JSON object keyed by `key`.
fn collect(boot: &qemu::Boot, name: &str) -> Map<String, Value> {
    let mut m = Map::new();
    for r in qemu::results(&boot.lines) {
        if r.name == name || r.name == "vm" || r.name == "hwdriver" {
            m.insert(r.key, r.value);
        }
    }
    m
}

fn write_json(p: &Path, v: &Value) -> Result<()> {
    fs::write(p, serde_json::to_string_pretty(v)?)
        .with_context(|| format!("writing {}", p.display()))
}

fn print_demo(name: &str, res: &ScenarioResult) {
    println!("== scenario {name}: hangwatch run output inside the VM ==");
    let text = &res.run.agent_stdout_text;
    if text.is_empty() {
        println!("(hangwatch printed no attribution; its stderr follows)");
        for l in &res.run.agent_stderr {
            println!("  {l}");
        }
    }
    for l in text {
        println!("{l}");
    }
    println!("== kernel log (what the kernel itself said) ==");
    for l in &res.dmesg {
        if l.contains("amdgpu") || l.contains("drm") {
            println!("  {l}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result as hwdriver prints it: the artifact bytes as hex.
    const FROM_DRIVER: &str = r#"{"attached": true, "agent_exit": 0, "agent_runtime_ms": 9,
        "incidents": [{"schema": "hangwatch.incident/1"}], "agent_stdout_text": [],
        "agent_stderr": ["hangwatch: probes attached: 22/22"],
        "processes": [{"name": "zed", "pid": 7, "summary": {"submitted": 3, "errors": {"-125": 1},
            "submit_ms": 40, "kfd": null, "mesa": []}}],
        "uevents": [{"monotonic_s": 1.5, "fields": ["SUBSYSTEM=drm"]}], "devcoredumps": [],
        "artifacts": {"export_exit": 0, "export_stderr": "", "incident_dir": "d",
            "bugreport_exit": 0, "bugreport_stderr": "",
            "files": {"incident/b.txt": "6869", "a.bin": "00ff"}},
        "wall_ms": 12, "dmesg": ["[1.0] amdgpu: x"]}"#;

    #[test]
    fn artifacts_become_files_and_every_other_field_survives() {
        let dir = std::env::temp_dir().join(format!("hw-artifacts-{}", std::process::id()));
        let mut res: ScenarioResult = serde_json::from_str(FROM_DRIVER).unwrap();
        write_artifacts(&dir, &mut res).unwrap();
        assert_eq!(fs::read(dir.join("a.bin")).unwrap(), [0, 255]);
        assert_eq!(fs::read(dir.join("incident/b.txt")).unwrap(), b"hi");
        let mut want: Value = serde_json::from_str(FROM_DRIVER).unwrap();
        want["artifacts"]["files"] = json!(["a.bin", "incident/b.txt"]);
        assert_eq!(serde_json::to_value(&res).unwrap(), want);
        // Written once: the stored result reads back and writes nothing again.
        let mut again: ScenarioResult = serde_json::from_value(want.clone()).unwrap();
        write_artifacts(&dir, &mut again).unwrap();
        assert_eq!(serde_json::to_value(&again).unwrap(), want);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_artifact_path_out_of_its_directory_is_refused() {
        let dir = std::env::temp_dir().join(format!("hw-artifacts-bad-{}", std::process::id()));
        let bad = FROM_DRIVER.replace("a.bin", "../a.bin");
        let mut res: ScenarioResult = serde_json::from_str(&bad).unwrap();
        let e = write_artifacts(&dir, &mut res).unwrap_err();
        assert!(e.to_string().contains("unsafe path: ../a.bin"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }
}
