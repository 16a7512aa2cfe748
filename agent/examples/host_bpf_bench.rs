//! The in-kernel cost of hangwatch's real eBPF programs on this machine's CPU, beside
//! bpftrace's counting script, in one run. The host has no amdgpu, so the programs attach to
//! `task:task_rename` (driven by `prctl(PR_SET_NAME)`) with a layout built from that event's
//! format file, as the agent builds one from amdgpu's: one string and four integer fields.
//! `hw_cs_ioctl` runs as a submitter-context event, `hw_sched_run_job` as a worker-context one.
//! Costs come from `kernel.bpf_stats_enabled` (run_time_ns / run_cnt per program).
//! Run as root: `cargo xtask bench --host` (or `cargo run -p agent --example host_bpf_bench`).
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_common::{rec, slot, JobSlots, TpLayout};
use anyhow::{bail, Context as _, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{loaded_programs, TracePoint};
use aya::EbpfLoader;
use hangwatch::sources::formats::{build_layout, read_format, Binding, Want};
use hangwatch::sources::probes::EBPF_OBJECT;

/// The programs measured and the layout global each reads.
const PROGRAMS: &[(&str, &str)] = &[
    ("hw_cs_ioctl", "CS_IOCTL_LAYOUT"),
    ("hw_sched_run_job", "SCHED_RUN_JOB_LAYOUT"),
];

const BPFTRACE_SCRIPT: &str = "tracepoint:task:task_rename { @[probe, comm, pid] = count(); }";

/// task_rename's fields bound like amdgpu_cs_ioctl's (a string and four 4-byte integers:
/// ring name, context, seqno, job id, num_ibs on 6.1). Its only 4-byte integer is `pid`.
const BINDINGS: &[Binding] = &[
    Binding::req(slot::RING, &["newcomm"], Want::Str),
    Binding::req(JobSlots::CONTEXT, &["pid"], Want::Int),
    Binding::req(JobSlots::SEQNO, &["pid"], Want::Int),
    Binding::req(JobSlots::JOB_ID, &["pid"], Want::Int),
    Binding::req(JobSlots::NUM_IBS, &["pid"], Want::Int),
];

/// Renames this thread `n` times; returns ns per rename.
fn renames(n: u64) -> f64 {
    let names = [c"hwbench-a", c"hwbench-b"];
    let t = Instant::now();
    for i in 0..n {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, names[(i & 1) as usize].as_ptr()) };
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// (run_time_ns, run_cnt) of every loaded program, by id.
fn prog_stats() -> HashMap<u32, (String, u64, u64)> {
    loaded_programs()
        .filter_map(Result::ok)
        .map(|p| {
            let name = p.name_as_str().unwrap_or("?").to_string();
            let rt = p.run_time().as_nanos() as u64;
            (p.id(), (name, rt, p.run_count()))
        })
        .collect()
}

/// Sum of the `IWI` (irq_work) line of /proc/interrupts over all CPUs.
fn irq_work_count() -> u64 {
    let text = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    text.lines()
        .find(|l| l.trim_start().starts_with("IWI:"))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .map_while(|w| w.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// Starts bpftrace and waits until its program is loaded (a new tracepoint program appears).
fn start_bpftrace(before: &HashMap<u32, (String, u64, u64)>) -> Result<Child> {
    let mut child = Command::new("bpftrace")
        .args(["-e", BPFTRACE_SCRIPT])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start bpftrace (is it installed?)")?;
    let out = child.stdout.take().context("no bpftrace stdout")?;
    let attached = Arc::new(AtomicBool::new(false));
    let flag = attached.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("Attaching") {
                flag.store(true, Ordering::Relaxed);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let new = prog_stats().keys().any(|id| !before.contains_key(id));
        if attached.load(Ordering::Relaxed) && new {
            std::thread::sleep(Duration::from_millis(500));
            return Ok(child);
        }
        if let Some(st) = child.try_wait()? {
            bail!("bpftrace exited early ({st})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    bail!("bpftrace did not attach within 30 s")
}

/// Drains the ring buffer like the agent: on every wakeup (poll) and at least every 100 ms.
fn spawn_consumer(mut ring: RingBuf<MapData>, stop: Arc<AtomicBool>, read: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        let fd = ring.as_raw_fd();
        while !stop.load(Ordering::Relaxed) {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut pfd, 1, 100) };
            while ring.next().is_some() {
                read.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

fn main() -> Result<()> {
    let n: u64 = std::env::var("HANGWATCH_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let tracefs = Path::new("/sys/kernel/tracing");
    if !tracefs.join("events").is_dir() {
        bail!("tracefs not mounted: mount -t tracefs nodev /sys/kernel/tracing");
    }
    let fmt = read_format(tracefs, "task", "task_rename").map_err(anyhow::Error::msg)?;
    let layout = build_layout(&fmt, BINDINGS).map_err(anyhow::Error::msg)?;
    renames(n / 10); // warm-up
    let untraced = renames(n);
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("cannot enable BPF run-time statistics (root and >= 5.8 needed)")?;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "host BPF cost on task:task_rename (kernel {}, {n} renames, both tracers attached; real CPU)",
        kernel.trim()
    );
    for (what, mode) in MODES {
        println!("{what}:");
        measure(&layout, *mode, n, untraced)?;
    }
    Ok(())
}

/// The agent's two ways to run the per-job programs (`REC_MODE`).
const MODES: &[(&str, u32)] = &[
    (
        "the flight recorder in the kernel (the default)",
        rec::MODE_RECORDER,
    ),
    (
        "per-job events to the agent (no recorder, or --trace-all)",
        rec::MODE_EVENTS,
    ),
];

/// Loads the object in `mode`, attaches it beside bpftrace, renames `n` times and prints the
/// per-program costs.
fn measure(layout: &TpLayout, mode: u32, n: u64, untraced: f64) -> Result<()> {
    let mut loader = EbpfLoader::new();
    for (_, global) in PROGRAMS {
        loader.override_global(global, layout, true);
    }
    loader.override_global("REC_MODE", &mode, true);
    let mut ebpf = loader
        .load(EBPF_OBJECT)
        .context("loading the eBPF object")?;
    let mut ours = Vec::new();
    for (prog, _) in PROGRAMS {
        let tp: &mut TracePoint = ebpf
            .program_mut(prog)
            .with_context(|| format!("{prog} not in the object"))?
            .try_into()?;
        tp.load()
            .map_err(|e| anyhow::anyhow!(hangwatch::sources::probes::first_error_line(&e)))
            .with_context(|| format!("loading {prog}"))?;
        tp.attach("task", "task_rename")
            .with_context(|| format!("attaching {prog}"))?;
        ours.push((*prog, tp.info()?.id()));
    }
    let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("no EVENTS map")?)?;
    let drops: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(ebpf.take_map("DROPS").context("no DROPS map")?)?;
    let (stop, read) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    spawn_consumer(ring, stop.clone(), read.clone());

    let before_bt = prog_stats();
    let mut bpftrace = start_bpftrace(&before_bt)?;
    renames(n / 10); // warm-up
    let (s0, iwi0) = (prog_stats(), irq_work_count());
    let wall = renames(n);
    let (s1, iwi1) = (prog_stats(), irq_work_count());
    // SAFETY: signalling the child we started, by its pid.
    unsafe { libc::kill(bpftrace.id() as i32, libc::SIGINT) };
    let _ = bpftrace.wait();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);

    let delta = |id: &u32| -> Option<(String, u64, u64)> {
        let (name, t1, c1) = s1.get(id)?;
        let (_, t0, c0) = s0.get(id).cloned().unwrap_or_default();
        Some((name.clone(), t1 - t0, c1 - c0))
    };
    let mut bt_ns = None;
    for id in s1.keys().filter(|id| !before_bt.contains_key(id)) {
        if let Some((name, t, c)) = delta(id).filter(|d| d.2 > 0) {
            let per = t as f64 / c as f64;
            println!("  bpftrace   {name:<18} {c:>9} runs {per:>7.1} ns/run");
            bt_ns = Some(bt_ns.unwrap_or(0.0) + per);
        }
    }
    for (prog, id) in &ours {
        let Some((_, t, c)) = delta(id).filter(|d| d.2 > 0) else {
            println!("  hangwatch  {prog:<18} did not run");
            continue;
        };
        let per = t as f64 / c as f64;
        let ratio = bt_ns.map(|b| format!("{:.2}x bpftrace", per / b));
        println!(
            "  hangwatch  {prog:<18} {c:>9} runs {per:>7.1} ns/run  {}",
            ratio.unwrap_or_default()
        );
    }
    let dropped: u64 = drops.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0);
    println!(
        "  wall per rename: untraced {untraced:.0} ns, both attached {wall:.0} ns; events read {}, dropped {dropped}; irq_work interrupts {:.1} per 1000 renames",
        read.load(Ordering::Relaxed),
        (iwi1 - iwi0) as f64 * 1000.0 / n as f64
    );
    Ok(())
}
