//! `cargo xtask vm`: kernel packages -> simulator module -> initramfs -> qemu -> results.
//! Phase A boots with the real amdgpu.ko; phase B with the simulator and runs every scenario
//! sequentially in ONE boot. Results land in target/vm-results/<kernel>/ as JSON files that
//! tests/tests/vm.rs asserts on.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::initramfs::{self, Spec};
use crate::kernel;
use crate::qemu;
use crate::util::{root, run, target_dir};

pub const DEFAULT_KERNEL: &str = "6.1.0-56-amd64";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    A,
    B,
    All,
}

pub struct Opts {
    pub kernel: String,
    pub scenarios: Vec<PathBuf>,
    pub phase: Phase,
    pub demo: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            kernel: DEFAULT_KERNEL.into(),
            scenarios: Vec::new(),
            phase: Phase::All,
            demo: false,
        }
    }
}

pub fn parse_args(args: &[String]) -> Result<Opts> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--kernel" => o.kernel = it.next().context("--kernel needs a build or series")?.clone(),
            "--scenario" => o.scenarios.push(PathBuf::from(it.next().context("--scenario needs a file")?)),
            "--phase" => {
                o.phase = match it.next().map(String::as_str) {
                    Some("a") => Phase::A,
                    Some("b") => Phase::B,
                    Some("all") => Phase::All,
                    other => bail!("--phase takes a, b or all (got {other:?})"),
                }
            }
            other => bail!("unknown argument {other:?}; usage: cargo xtask vm [--kernel VER|SERIES] [--scenario FILE]... [--phase a|b|all]"),
        }
    }
    Ok(o)
}

pub fn results_dir(kernel: &str) -> PathBuf {
    target_dir().join("vm-results").join(kernel)
}

/// All scenario files, sorted by name (their numeric prefix orders them).
pub fn all_scenarios() -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(root().join("tests/scenarios"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    Ok(v)
}

pub struct Bins {
    pub hangwatch: PathBuf,
    pub hwdriver: PathBuf,
}

/// Builds the binaries the VM runs. The test suite uses the debug profile (already built for
/// the host tests); the bench uses release, since an unoptimised agent would measure rustc's
/// debug codegen, not hangwatch.
pub fn build_bins(release: bool) -> Result<Bins> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let profile: &[&str] = if release { &["--release"] } else { &[] };
    run(Command::new(&cargo)
        .args(["build", "-q", "-p", "agent", "--bin", "hangwatch"])
        .args(profile)
        .current_dir(root()))?;
    run(Command::new(&cargo)
        .args(["build", "-q", "-p", "xtask", "--bin", "hwdriver"])
        .args(profile)
        .current_dir(root()))?;
    let d = target_dir().join(if release { "release" } else { "debug" });
    Ok(Bins {
        hangwatch: d.join("hangwatch"),
        hwdriver: d.join("hwdriver"),
    })
}

/// Runs the requested phases; returns the results directory.
pub fn run_vm(o: &Opts) -> Result<PathBuf> {
    let t0 = Instant::now();
    let k = kernel::prepare(&o.kernel)?;
    eprintln!(
        "xtask vm: kernel {} ready ({:.1}s)",
        k.version,
        t0.elapsed().as_secs_f64()
    );
    let bins = build_bins(false)?;
    // The demo runs the agent in text mode: keep its results away from the suite's JSON ones.
    let out = if o.demo {
        results_dir(&k.version).join("demo")
    } else {
        results_dir(&k.version)
    };
    fs::create_dir_all(out.join("scenarios"))?;
    let probe = initramfs::build(
        &k,
        &Spec {
            name: "probe",
            modules: &[],
            extra_modules: vec![],
            binaries: vec![],
            files: vec![],
        },
    )?;
    let accel = qemu::pick_accel(&k, &probe)?;
    let mut timings = Map::new();
    if matches!(o.phase, Phase::A | Phase::All) && !o.demo {
        let t = Instant::now();
        let initrd = initramfs::build(
            &k,
            &Spec {
                name: "phase-a",
                modules: &["amdgpu"],
                extra_modules: vec![],
                binaries: vec![bins.hangwatch.clone(), bins.hwdriver.clone()],
                files: vec![("plan.toml".into(), b"phase = \"a\"\n".to_vec())],
            },
        )?;
        let boot = qemu::boot(
            &k,
            &initrd,
            accel,
            Duration::from_secs(15 * 60),
            &out.join("phase-a.log"),
        )?;
        let mut m = collect(&boot, "phase-a");
        m.insert("boot".into(), boot_info(&boot));
        write_json(&out.join("phase-a.json"), &Value::Object(m))?;
        eprintln!(
            "xtask vm: phase A ({accel}) took {:.1}s",
            t.elapsed().as_secs_f64()
        );
        timings.insert("phase_a_s".into(), json!(t.elapsed().as_secs_f64()));
    }
    if matches!(o.phase, Phase::B | Phase::All) {
        let t = Instant::now();
        let ko = crate::kmod::build_sim(&k)?;
        let scenarios = if o.scenarios.is_empty() {
            all_scenarios()?
        } else {
            o.scenarios.clone()
        };
        let mut files = Vec::new();
        let mut plan = format!("phase = \"b\"\ndemo = {}\nscenarios = [", o.demo);
        let mut budget = 180u64;
        for s in &scenarios {
            let text = fs::read_to_string(s).with_context(|| format!("reading {}", s.display()))?;
            let v: toml::Value =
                toml::from_str(&text).with_context(|| format!("parsing {}", s.display()))?;
            budget += v
                .get("duration_s")
                .and_then(toml::Value::as_integer)
                .unwrap_or(10) as u64
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
        let initrd = initramfs::build(
            &k,
            &Spec {
                name: "phase-b",
                modules: &["gpu-sched", "drm"],
                extra_modules: vec![ko],
                binaries: vec![bins.hangwatch.clone(), bins.hwdriver.clone()],
                files,
            },
        )?;
        let boot = qemu::boot(
            &k,
            &initrd,
            accel,
            Duration::from_secs(budget),
            &out.join("phase-b.log"),
        )?;
        let mut m = collect(&boot, "phase-b");
        m.insert("boot".into(), boot_info(&boot));
        for r in qemu::results(&boot.lines) {
            if r.key == "result" {
                let mut value = r.value.clone();
                write_artifacts(&out.join("scenarios").join(&r.name), &mut value)?;
                write_json(
                    &out.join("scenarios").join(format!("{}.json", r.name)),
                    &value,
                )?;
                if o.demo {
                    print_demo(&r.name, &r.value);
                }
            }
        }
        write_json(&out.join("phase-b.json"), &Value::Object(m))?;
        eprintln!(
            "xtask vm: phase B ({accel}, {} scenarios) took {:.1}s",
            scenarios.len(),
            t.elapsed().as_secs_f64()
        );
        timings.insert("phase_b_s".into(), json!(t.elapsed().as_secs_f64()));
    }
    timings.insert("total_s".into(), json!(t0.elapsed().as_secs_f64()));
    timings.insert("accel".into(), json!(accel));
    write_json(&out.join("timings.json"), &Value::Object(timings))?;
    Ok(out)
}

/// A scenario's `artifacts.files` (path -> hex bytes, see hwdriver) become real files under
/// `dir`; the JSON keeps only their names so the result file stays readable.
fn write_artifacts(dir: &Path, value: &mut Value) -> Result<()> {
    let Some(files) = value
        .get_mut("artifacts")
        .and_then(|a| a.get_mut("files"))
        .and_then(Value::as_object_mut)
    else {
        return Ok(());
    };
    let _ = fs::remove_dir_all(dir);
    let mut names = Vec::new();
    for (name, hex) in std::mem::take(files) {
        let rel = Path::new(&name);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            anyhow::bail!("VM artifact with an unsafe path: {name}");
        }
        let bytes = unhex(hex.as_str().unwrap_or(""))
            .with_context(|| format!("VM artifact {name} is not hex"))?;
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&p, bytes)?;
        names.push(json!(name));
    }
    names.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    value["artifacts"]["files"] = Value::Array(names);
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

fn print_demo(name: &str, v: &Value) {
    println!("== scenario {name}: hangwatch run output inside the VM ==");
    let text = v["agent_stdout_text"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if text.is_empty() {
        println!("(hangwatch printed no attribution; its stderr follows)");
        for l in v["agent_stderr"].as_array().cloned().unwrap_or_default() {
            println!("  {}", l.as_str().unwrap_or(""));
        }
    }
    for l in text {
        println!("{}", l.as_str().unwrap_or(""));
    }
    println!("== kernel log (what the kernel itself said) ==");
    for l in v["dmesg"].as_array().cloned().unwrap_or_default() {
        let l = l.as_str().unwrap_or("");
        if l.contains("amdgpu") || l.contains("drm") {
            println!("  {l}");
        }
    }
}
