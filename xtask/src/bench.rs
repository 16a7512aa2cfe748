//! `cargo xtask bench`: one VM boot with the simulator measuring the submission path untraced,
//! under hangwatch, under `trace-cmd record` and under an equivalent bpftrace script (same eight
//! events), plus the host-side analysis throughput example. Prints a table; asserts nothing.
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use crate::initramfs::{self, Spec};
use crate::util::{output, root};
use crate::{kernel, kmod, qemu, vm};

/// BPF program type numbers of `enum bpf_prog_type` that tracers here load.
fn prog_type(t: u64) -> &'static str {
    match t {
        2 => "kprobe",
        5 => "tracepoint",
        26 => "tracing",
        _ => "other",
    }
}

/// The in-kernel cost per program (kernel.bpf_stats_enabled: run_time_ns / run_cnt), read in
/// the same VM run as the rows above, so it is reported apart from the userspace consumer and
/// most of the TCG noise of the wall numbers.
fn print_bpf_stats(res: &serde_json::Map<String, Value>, n: u64) {
    if res.get("bpf_stats_enabled") != Some(&Value::Bool(true)) {
        println!("in-kernel cost: kernel.bpf_stats_enabled could not be set in the VM");
        return;
    }
    println!("in-kernel cost per BPF program (bpf_stats: run_time_ns / run_cnt; same VM run)");
    let mut per_sub = Vec::new();
    for tracer in ["hangwatch", "bpftrace"] {
        let Some(progs) = res.get(tracer).and_then(|v| v["bpf_stats"].as_array()) else {
            continue;
        };
        let (mut ns, mut runs) = (0u64, 0u64);
        for p in progs {
            let (t, c) = (
                p["run_time_ns"].as_u64().unwrap_or(0),
                p["run_cnt"].as_u64().unwrap_or(0),
            );
            if c == 0 {
                continue; // attached to nothing this load fires (or never attached)
            }
            ns += t;
            runs += c;
            println!(
                "  {tracer:<10} {:<10} {:<16} {:>9} runs {:>8.0} ns/run",
                prog_type(p["type"].as_u64().unwrap_or(0)),
                p["name"].as_str().unwrap_or("?"),
                c,
                t as f64 / c as f64
            );
        }
        if runs == 0 {
            println!("  {tracer:<10} none of its programs ran: it measured nothing (its output is in bench.log)");
            continue;
        }
        let sub = ns as f64 / n.max(1) as f64;
        println!(
            "  {tracer:<10} total: {runs} runs, {:.0} ns/run, {sub:.0} ns in BPF per submission",
            ns as f64 / runs.max(1) as f64
        );
        per_sub.push((tracer, sub));
    }
    if let [(a, x), (b, y)] = per_sub[..] {
        if y > 0.0 {
            println!("  in-kernel ratio {a}/{b}: {:.2}", x / y);
        }
    }
}

/// Runs `cargo run --release -p agent --example NAME` and prints its output under `label`.
fn host_example(name: &str, label: &str) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    match output(
        Command::new(cargo)
            .args(["run", "-q", "--release", "-p", "agent", "--example", name])
            .current_dir(root()),
    ) {
        Ok(o) => println!("{label}: {}", o.trim()),
        Err(e) => println!("{label}: failed: {e:#}"),
    }
}

fn which(prog: &str) -> Option<PathBuf> {
    output(Command::new("sh").args(["-c", &format!("command -v {prog}")]))
        .ok()
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| p.is_absolute())
}

/// `cargo xtask bench --host`: the real eBPF programs and bpftrace's counting script on the
/// host tracepoint `task:task_rename`, timed by bpf_stats on this machine's CPU (no VM, no
/// amdgpu; needs root). A fast loop for the programs' cost; the VM bench has the whole path.
fn host_bench() -> Result<u8> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["run", "-q", "-p", "agent", "--example", "host_bpf_bench"])
        .current_dir(root())
        .status()?;
    Ok(if st.success() { 0 } else { 1 })
}

/// `cargo xtask bench [--kernel VER|SERIES | --host]` (default: the 6.1 series in a VM).
pub fn bench(args: &[String]) -> Result<u8> {
    let spec = match args {
        [] => vm::DEFAULT_KERNEL,
        [flag] if flag == "--host" => return host_bench(),
        [flag, k] if flag == "--kernel" => k.as_str(),
        _ => anyhow::bail!("usage: cargo xtask bench [--kernel VER|SERIES | --host]"),
    };
    crate::setup::setup(crate::setup::Scope::All)?;
    let k = kernel::prepare(spec)?;
    let bins = vm::build_bins()?;
    let ko = kmod::build_sim(&k)?;
    let mut binaries = vec![bins.hangwatch, bins.hwdriver];
    let mut skipped = Vec::new();
    for peer in ["trace-cmd", "bpftrace"] {
        match which(peer) {
            Some(p) => binaries.push(p),
            None => skipped.push(format!("{peer}: not installed on the host")),
        }
    }
    let count: u64 = std::env::var("HANGWATCH_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20000);
    let plan = format!("phase = \"bench\"\nbench_count = {count}\n");
    let initrd = initramfs::build(
        &k,
        &Spec {
            name: "bench",
            modules: &["gpu-sched", "drm"],
            extra_modules: vec![ko],
            binaries,
            files: vec![("plan.toml".into(), plan.into_bytes())],
        },
    )?;
    let accel = crate::accel::pick_accel(&k)?;
    let out = vm::results_dir(&k.version);
    std::fs::create_dir_all(&out)?;
    let boot = qemu::boot(
        &k,
        &initrd,
        accel,
        Duration::from_secs(20 * 60),
        &out.join("bench.log"),
    )?;
    let mut res = serde_json::Map::new();
    for r in qemu::results(&boot.lines) {
        if r.name == "bench" {
            res.insert(r.key, r.value);
        }
    }
    std::fs::write(
        out.join("bench.json"),
        serde_json::to_string_pretty(&Value::Object(res.clone()))?,
    )?;
    println!("hangwatch bench — {count} zero-duration gfx submissions per row, in the VM ({accel}; absolute numbers are emulation-slow, ratios are the signal)");
    let pinned = res
        .get("pinned")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|p| p["ok"] == true).count())
        .unwrap_or(0);
    match pinned.saturating_sub(1) {
        // drm_sched runs jobs from a workqueue since 6.8: shared kworkers, nothing to pin.
        0 => println!("placement: submitter on vCPU 0, tracer on vCPU 1, the simulator's ring work on unpinned kworkers (drm_sched workqueues)"),
        k => println!("placement: submitter + {k} simulator ring thread(s) on vCPU 0, tracer on vCPU 1"),
    }
    if let Some(ev) = res.get("peer_events").and_then(Value::as_array) {
        let names: Vec<&str> = ev.iter().filter_map(Value::as_str).collect();
        println!("trace-cmd and bpftrace record: {}", names.join(" "));
    }
    if let Some(v) = res.get("idle").filter(|v| v["skipped"].is_null()) {
        println!(
            "idle agent (probes attached, metrics on, no GPU work) over {:.0} s: {:.2} % CPU, RSS {:.1} MiB (peak {:.1})",
            v["window_s"].as_f64().unwrap_or(f64::NAN),
            v["cpu_percent"].as_f64().unwrap_or(f64::NAN),
            v["rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
            v["rss_peak_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
        );
    }
    println!(
        "{:<11} {:>14} {:>12} {:>8} {:>8} {:>17}  notes",
        "config", "submissions/s", "ns/submit", "ratio", "cpu%", "rss MiB peak/now"
    );
    let base = res
        .get("untraced")
        .and_then(|v| v["ns_per_submission"].as_f64());
    for name in ["untraced", "hangwatch", "trace-cmd", "bpftrace"] {
        let Some(v) = res.get(name) else {
            println!(
                "{name:<11} (no result: boot {})",
                if boot.timed_out {
                    "timed out"
                } else {
                    "ended early"
                }
            );
            continue;
        };
        if let Some(why) = v["skipped"].as_str() {
            println!("{name:<11} skipped: {why}");
            continue;
        }
        let ns = v["ns_per_submission"].as_f64().unwrap_or(f64::NAN);
        let ratio = base.map(|b| ns / b).unwrap_or(f64::NAN);
        let cpu = v["tracer_cpu_percent"]
            .as_f64()
            .map(|c| format!("{c:.1}"))
            .unwrap_or_else(|| "-".into());
        let mib = |k: &str| v[k].as_f64().map(|r| format!("{:.1}", r / 1024.0));
        let rss = match (mib("tracer_rss_kib"), mib("tracer_rss_now_kib")) {
            (Some(peak), Some(now)) => format!("{peak}/{now}"),
            (Some(peak), None) => peak,
            _ => "-".into(),
        };
        let mut note = String::new();
        let ran: Option<u64> = v["bpf_stats"]
            .as_array()
            .map(|p| p.iter().map(|p| p["run_cnt"].as_u64().unwrap_or(0)).sum());
        if name != "untraced" && name != "trace-cmd" && ran == Some(0) {
            note = "no BPF program of it ran: this row measured nothing".into();
        }
        if name == "hangwatch" {
            if let Some(stats) = v["tracer_output_tail"].as_array().and_then(|t| {
                t.iter()
                    .filter_map(Value::as_str)
                    .find(|l| l.contains("stats:"))
            }) {
                if let Some(d) = stats.find("dropped:") {
                    note = stats[d..].to_string();
                }
            }
            if let Some(b) = base {
                note = format!("added {:.0} ns/submission; {note}", ns - b);
            }
        }
        println!(
            "{name:<11} {:>14.0} {:>12.0} {:>8.2} {:>8} {:>17}  {note}",
            v["submissions_per_s"].as_f64().unwrap_or(f64::NAN),
            ns,
            ratio,
            cpu,
            rss
        );
    }
    for s in &skipped {
        println!("skipped {s}");
    }
    print_bpf_stats(&res, count);
    // Host-side, native figures: analysis throughput on a generated 1 GB log, and the agent's
    // userspace cost per probe event (decode + correlate). The VM rows above are emulated, and
    // there the agent competes with the submitter for CPU.
    host_example("analyze_bench", "analysis throughput (host)");
    host_example("pipeline_bench", "agent userspace per event (host, native)");
    println!("targets (reported, not asserted): <= 1 us added per submission, zero unaccounted drops at 100k events/s, RSS <= 32 MiB");
    Ok(0)
}
