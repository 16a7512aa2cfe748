//! Scenario driver that runs inside the test VM (the initramfs's `/bin/hwdriver`).
//!
//! Modes:
//! - `hwdriver vm-main PLAN` — the VM's main program (called by `/init`): runs phase A (real
//!   amdgpu.ko) or phase B (the simulator + scenarios) and prints one `HWRESULT <name> <key> <json>`
//!   line per result on the console, which `cargo xtask vm` collects from the serial port.
//! - `hwdriver child SCENARIO INDEX` — one simulated GPU client. It is exec'd through a hard link
//!   named after the process (`/usr/bin/Xwayland`, `/usr/bin/zed`, ...) so comm, `argv[0]` and
//!   /proc/PID/exe are all real. It opens /dev/amdgpu_sim, waits for "go" on stdin, submits its
//!   jobs on schedule, then prints a JSON summary and exits.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};

mod result;
use result::{AgentRun, Artifacts, ChildSummary, Collected, Devcoredump, Files, ProcessResult};
use result::{ScenarioResult, Uevent};

const DEVICE: &str = "/dev/amdgpu_sim";
const HANGWATCH: &str = "/bin/hangwatch";

/// The plan `cargo xtask vm` bakes into the initramfs.
#[derive(Deserialize)]
struct Plan {
    phase: String,
    #[serde(default)]
    scenarios: Vec<PathBuf>,
    #[serde(default = "default_timeout_ms")]
    sim_timeout_ms: u32,
    /// `cargo xtask demo`: run the agent in text mode (human-readable attribution).
    #[serde(default)]
    demo: bool,
    /// Submissions per bench configuration (phase "bench").
    #[serde(default = "default_bench_count")]
    bench_count: u64,
}

fn default_bench_count() -> u64 {
    20000
}

fn default_timeout_ms() -> u32 {
    2000
}

/// The part of a scenario file the driver needs (the `expect` table is for the host test).
#[derive(Deserialize, Clone)]
pub struct Scenario {
    pub name: String,
    #[serde(default = "default_duration")]
    pub duration_s: u64,
    #[serde(default)]
    pub open_before_agent: bool,
    /// Return the first incident directory and a `hangwatch bugreport` of it as artifacts
    /// (the host test checks them; `cargo xtask examples` commits them under docs/examples).
    #[serde(default)]
    pub bugreport: bool,
    /// kernel.perf_event_paranoid while the scenario runs (Debian's default 3 refuses
    /// perf_event_open without CAP_SYS_ADMIN); restored afterwards.
    #[serde(default)]
    pub perf_event_paranoid: Option<i32>,
    #[serde(default)]
    pub process: Vec<Process>,
    /// Extra `hangwatch run` arguments (after the driver's own).
    #[serde(default)]
    pub agent_args: Vec<String>,
    /// A command the agent runs under, e.g. `["setpriv", "--reuid=1000", "--inh-caps=...",
    /// "--ambient-caps=...", "--"]`: the agent becomes its last argument's child.
    #[serde(default)]
    pub agent_wrapper: Vec<String>,
    /// Simulated GPUs (the simulator's `devices=` module parameter when > 1).
    #[serde(default = "one_device")]
    pub devices: u32,
    /// Extra simulator module parameters, verbatim (`["name=value"]`).
    #[serde(default)]
    pub sim_params: Vec<String>,
    /// SIGKILL the agent this long after the clients start, and start it again at once: same
    /// arguments, output directory and pinned flight recorder.
    #[serde(default)]
    pub restart_agent_at_ms: Option<u64>,
}

fn one_device() -> u32 {
    1
}

/// The character device of simulated GPU `n` (`/dev/amdgpu_sim`, `/dev/amdgpu_sim1`, ...).
fn device_path(n: u32) -> String {
    if n == 0 {
        DEVICE.to_string()
    } else {
        format!("{DEVICE}{n}")
    }
}

fn default_duration() -> u64 {
    10
}

#[derive(Deserialize, Clone)]
pub struct Process {
    pub name: String,
    /// Exit this long after "go" (scenario 5: the culprit is gone before the timeout fires).
    #[serde(default)]
    pub exit_at_ms: Option<u64>,
    /// Which simulated GPU the process opens (0-based).
    #[serde(default)]
    pub device: u32,
    #[serde(default)]
    pub submit: Vec<Submit>,
    /// ROCm-like work through /dev/kfd (queues, doorbell dispatches); see `kfd_child`.
    #[serde(default)]
    pub kfd: Vec<KfdOp>,
    /// One thread per ring (a game's render and copy threads): each ring's `submit` entries
    /// run in order on their own thread, instead of all entries one after the other.
    #[serde(default)]
    pub concurrent: bool,
}

#[derive(Deserialize, Clone)]
pub struct Submit {
    #[serde(default)]
    pub at_ms: u64,
    #[serde(default = "default_ring")]
    pub ring: String,
    #[serde(default = "one")]
    pub count: u64,
    /// Submissions per second; 0 = as fast as possible.
    #[serde(default)]
    pub rate_hz: u64,
    #[serde(default)]
    pub duration_us: u64,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub fault_addr: u64,
}

fn default_ring() -> String {
    "gfx".into()
}
fn one() -> u64 {
    1
}

/// `struct sim_submit` of tests/kmod/amdgpu_sim_uapi.h.
#[repr(C)]
struct SimSubmit {
    ring: u32,
    flags: u32,
    duration_us: u64,
    fault_addr: u64,
    num_ibs: u32,
    pad: u32,
}

/// `_IOW('S', 1, struct sim_submit)`.
const SIM_IOCTL_SUBMIT: u64 =
    (1 << 30) | ((std::mem::size_of::<SimSubmit>() as u64) << 16) | ((b'S' as u64) << 8) | 1;

/// `struct sim_query` of tests/kmod/amdgpu_sim_uapi.h (flags: the AMDGPU_CTX_QUERY2_FLAGS_*).
#[repr(C)]
#[derive(Default)]
struct SimQuery {
    flags: u32,
    pad: u32,
}

/// `_IOR('S', 2, struct sim_query)`.
const SIM_IOCTL_QUERY_STATE: u64 =
    (2 << 30) | ((std::mem::size_of::<SimQuery>() as u64) << 16) | ((b'S' as u64) << 8) | 2;
const SIM_QUERY_GUILTY: u32 = 1 << 2;
const ECANCELED: i32 = -125;

fn ring_index(name: &str) -> Result<u32> {
    Ok(match name {
        "gfx" | "gfx_0.0.0" => 0,
        "compute" | "comp" | "comp_1.0.0" => 1,
        "sdma" | "sdma0" => 2,
        other => bail!("unknown ring {other:?} (use gfx, compute or sdma)"),
    })
}

fn flag_bits(flags: &[String]) -> Result<u32> {
    let mut bits = 0;
    for f in flags {
        bits |= match f.as_str() {
            "never_completes" => 1,
            "fault_at" => 2,
            "fault_and_wedge" => 4,
            other => bail!("unknown flag {other:?}"),
        };
    }
    Ok(bits)
}

fn result_line(name: &str, key: &str, value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "HWRESULT {name} {key} {value}");
    let _ = out.flush();
}

fn sh(cmd: &str, args: &[&str]) -> Value {
    match Command::new(cmd).args(args).output() {
        Ok(o) => json!({
            "status": o.status.code(),
            "stdout": String::from_utf8_lossy(&o.stdout),
            "stderr": String::from_utf8_lossy(&o.stderr),
        }),
        Err(e) => json!({"status": null, "stdout": "", "stderr": format!("{cmd}: {e}")}),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let r = match args.get(1).map(String::as_str) {
        Some("vm-main") if args.len() == 3 => vm_main(Path::new(&args[2])),
        Some("child") if args.len() == 4 => child(Path::new(&args[2]), &args[3]),
        Some("read-proc") if args.len() == 3 => {
            println!("{}", read_proc(&args[2]));
            Ok(())
        }
        _ => Err(anyhow::anyhow!(
            "usage: hwdriver vm-main PLAN | hwdriver child SCENARIO INDEX | hwdriver read-proc PID"
        )),
    };
    if let Err(e) = r {
        eprintln!("hwdriver: {e:#}");
        result_line("hwdriver", "error", &json!(format!("{e:#}")));
        std::process::exit(1);
    }
}

fn vm_main(plan_path: &Path) -> Result<()> {
    let plan: Plan = toml::from_str(&std::fs::read_to_string(plan_path)?)?;
    let kernel = sh("uname", &["-r"])["stdout"]
        .as_str()
        .unwrap_or("")
        .trim()
        .to_string();
    result_line("vm", "kernel", &json!(kernel));
    match plan.phase.as_str() {
        "a" => phase_a(),
        "b" => phase_b(&plan),
        "bench" => phase_bench(&plan),
        other => bail!("unknown phase {other:?}"),
    }
}

/// Phase A: the real amdgpu.ko (no hardware), then what hangwatch can see and attach.
fn phase_a() -> Result<()> {
    let t = Instant::now();
    result_line("phase-a", "modprobe", &sh("modprobe", &["amdgpu"]));
    result_line(
        "phase-a",
        "modprobe_ms",
        &json!(t.elapsed().as_millis() as u64),
    );
    result_line(
        "phase-a",
        "events",
        &json!(list_dir("/sys/kernel/tracing/events/amdgpu")),
    );
    result_line(
        "phase-a",
        "gpu_scheduler_events",
        &json!(list_dir("/sys/kernel/tracing/events/gpu_scheduler")),
    );
    result_line(
        "phase-a",
        "formats",
        &Value::Object(read_formats(&["amdgpu", "gpu_scheduler", "dma_fence"])),
    );
    result_line("phase-a", "check", &agent_check());
    result_line("phase-a", "caps", &caps_experiment());
    let run = run_agent_only(8)?;
    result_line("phase-a", "run", &json!(run));
    Ok(())
}

/// Phase B: the simulator, its tracefs formats and BTF, then every scenario in order.
fn phase_b(plan: &Plan) -> Result<()> {
    let timeout = format!("timeout_ms={}", plan.sim_timeout_ms);
    result_line(
        "phase-b",
        "modprobe",
        &sh("modprobe", &["amdgpu", &timeout]),
    );
    result_line(
        "phase-b",
        "formats",
        &Value::Object(read_formats(&["amdgpu"])),
    );
    result_line(
        "phase-b",
        "btf",
        &json!(Path::new("/sys/kernel/btf/amdgpu").exists()),
    );
    if !plan.demo {
        result_line("phase-b", "check", &agent_check());
    }
    for path in &plan.scenarios {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let sc: Scenario =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        // A fresh simulator per scenario: no wedged ring, guilty context, seqno or
        // devcoredump carries over.
        clear_devcoredumps();
        sh("modprobe", &["-r", "amdgpu"]);
        let args = sim_args(&timeout, &sc);
        let load = sh(
            "modprobe",
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        sh("dmesg", &["-c"]);
        let t = Instant::now();
        let paranoid = sc.perf_event_paranoid.map(set_perf_paranoid);
        let mut res = run_scenario(path, &sc, plan.demo).unwrap_or_else(|e| ScenarioResult {
            error: Some(format!("{e:#}")),
            ..Default::default()
        });
        if let Some(old) = paranoid {
            set_perf_paranoid(old);
        }
        if load["status"] != 0 {
            res.modprobe = Some(load);
        }
        res.wall_ms = t.elapsed().as_millis() as u64;
        res.dmesg = sh("dmesg", &[])["stdout"]
            .as_str()
            .unwrap_or("")
            .lines()
            .map(str::to_string)
            .collect();
        result_line(&sc.name, "result", &json!(res));
    }
    Ok(())
}

/// `modprobe amdgpu timeout_ms=.. [devices=N] [sim_params..]` for one scenario.
fn sim_args(timeout: &str, sc: &Scenario) -> Vec<String> {
    let mut v = vec!["amdgpu".to_string(), timeout.to_string()];
    if sc.devices > 1 {
        v.push(format!("devices={}", sc.devices));
    }
    v.extend(sc.sim_params.iter().cloned());
    v
}

fn list_dir(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `system/event` -> format file text, for every event of the given trace systems.
fn read_formats(systems: &[&str]) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for sys in systems {
        for ev in list_dir(&format!("/sys/kernel/tracing/events/{sys}")) {
            let p = format!("/sys/kernel/tracing/events/{sys}/{ev}/format");
            if let Ok(text) = std::fs::read_to_string(&p) {
                m.insert(format!("{sys}/{ev}"), json!(text));
            }
        }
    }
    m
}

fn agent_check() -> Value {
    let o = sh(HANGWATCH, &["check", "--json", "--attach"]);
    let parsed = o["stdout"]
        .as_str()
        .and_then(|s| serde_json::from_str::<Value>(s.trim()).ok());
    json!({"status": o["status"], "json": parsed, "stdout": o["stdout"], "stderr": o["stderr"]})
}

/// A running `hangwatch run`, with its stdout/stderr lines arriving on channels.
struct Agent {
    child: Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
    started: Instant,
}

/// How a scenario runs the agent: extra arguments and a wrapper command (none for phase A).
#[derive(Default)]
struct AgentHow<'a> {
    args: &'a [String],
    wrapper: &'a [String],
}

/// What one scenario must not inherit from the one before: the output directory and the
/// pinned flight recorder (a never-finished job of the last scenario would be a stall here).
fn clean_slate() {
    let _ = std::fs::remove_dir_all("/tmp/hw-out");
    if let Ok(rd) = std::fs::read_dir("/sys/fs/bpf/hangwatch") {
        for d in rd.flatten() {
            let _ = std::fs::remove_file(d.path().join("recorder"));
            let _ = std::fs::remove_dir(d.path());
        }
    }
    let _ = std::fs::remove_dir("/sys/fs/bpf/hangwatch");
}

fn start_agent(duration_s: u64, demo: bool, how: &AgentHow) -> Result<Agent> {
    let dur = duration_s.to_string();
    let mut args = vec!["run", "--output", "/tmp/hw-out", "--duration", &dur];
    if !demo {
        args.insert(1, "--json");
    }
    args.extend(how.args.iter().map(String::as_str));
    let mut child = wrapped(how.wrapper, HANGWATCH)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting hangwatch run")?;
    let out = pipe_lines(child.stdout.take());
    let err = pipe_lines(child.stderr.take());
    Ok(Agent {
        child,
        out,
        err,
        started: Instant::now(),
    })
}

fn pipe_lines<R: Read + Send + 'static>(r: Option<R>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(r) = r {
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
    }
    rx
}

/// Waits until the agent says its probes are attached (or exits, or 90 s pass under TCG).
fn wait_attached(agent: &mut Agent, err_lines: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        match agent.err.recv_timeout(Duration::from_millis(100)) {
            Ok(l) => {
                let attached = l.contains("probes attached");
                err_lines.push(l);
                if attached {
                    return true;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(_)) = agent.child.try_wait() {
                    return false;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return false,
        }
    }
    false
}

/// Waits for the agent to end on its own (`--duration`), killing it after a grace period.
fn finish_agent(mut agent: Agent, limit: Duration, mut err_lines: Vec<String>) -> AgentRun {
    let deadline = agent.started + limit;
    let status = loop {
        match agent.child.try_wait() {
            Ok(Some(s)) => break s.code(),
            Ok(None) if Instant::now() > deadline => {
                let _ = agent.child.kill();
                let _ = agent.child.wait();
                err_lines.push("hwdriver: agent killed after its duration + grace".into());
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(_) => break None,
        }
    };
    // The reader threads end at EOF; give them a moment to drain.
    std::thread::sleep(Duration::from_millis(200));
    err_lines.extend(agent.err.try_iter());
    let out_lines: Vec<String> = agent.out.try_iter().collect();
    let mut incidents = Vec::new();
    let mut text = Vec::new();
    for l in &out_lines {
        match serde_json::from_str::<Value>(l) {
            Ok(v) if v.is_object() => incidents.push(v),
            _ => text.push(l.clone()),
        }
    }
    AgentRun {
        attached: false,
        agent_exit: status,
        agent_runtime_ms: agent.started.elapsed().as_millis() as u64,
        incidents,
        agent_stdout_text: text,
        agent_stderr: err_lines,
    }
}

fn run_agent_only(duration_s: u64) -> Result<AgentRun> {
    let mut agent = start_agent(duration_s, false, &AgentHow::default())?;
    let mut err = Vec::new();
    let attached = wait_attached(&mut agent, &mut err);
    let run = finish_agent(agent, Duration::from_secs(duration_s + 120), err);
    Ok(AgentRun { attached, ..run })
}

fn spawn_children(path: &Path, sc: &Scenario) -> Result<Vec<(String, Child)>> {
    let mut kids = Vec::new();
    for (i, p) in sc.process.iter().enumerate() {
        let exe = format!("/usr/bin/{}", p.name);
        if !Path::new(&exe).exists() {
            std::fs::hard_link("/bin/hwdriver", &exe).with_context(|| format!("linking {exe}"))?;
        }
        let child = Command::new(&exe)
            .arg0(&p.name)
            .args(["child", &path.to_string_lossy(), &i.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning {exe}"))?;
        kids.push((p.name.clone(), child));
    }
    Ok(kids)
}

/// Each child prints "open" once its device is open; wait for all of them.
fn wait_opened(kids: &mut [(String, Child)]) -> Vec<BufReader<std::process::ChildStdout>> {
    let mut readers = Vec::new();
    for (_, k) in kids.iter_mut() {
        if let Some(out) = k.stdout.take() {
            let mut r = BufReader::new(out);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            readers.push(r);
        }
    }
    readers
}

fn go(kids: &mut [(String, Child)]) {
    for (_, k) in kids.iter_mut() {
        if let Some(stdin) = k.stdin.as_mut() {
            let _ = stdin.write_all(b"go\n");
            let _ = stdin.flush();
        }
    }
}

fn run_scenario(path: &Path, sc: &Scenario, demo: bool) -> Result<ScenarioResult> {
    let uevents = UeventMonitor::start();
    let mut v = run_clients(path, sc, demo)?;
    v.uevents = match uevents {
        Ok(m) => Collected::Items(m.stop()),
        Err(e) => Collected::Error {
            error: format!("{e:#}"),
        },
    };
    v.devcoredumps = devcoredumps();
    Ok(v)
}

fn run_clients(path: &Path, sc: &Scenario, demo: bool) -> Result<ScenarioResult> {
    let (mut agent, attached, mut err, mut kids);
    let how = AgentHow {
        args: &sc.agent_args,
        wrapper: &sc.agent_wrapper,
    };
    clean_slate();
    if sc.open_before_agent {
        kids = spawn_children(path, sc)?;
        let readers = wait_opened(&mut kids);
        std::thread::sleep(Duration::from_millis(300));
        agent = start_agent(sc.duration_s, demo, &how)?;
        err = Vec::new();
        attached = wait_attached(&mut agent, &mut err);
        go(&mut kids);
        finish_scenario(agent, attached, err, kids, readers, sc, Instant::now())
    } else {
        agent = start_agent(sc.duration_s, demo, &how)?;
        err = Vec::new();
        attached = wait_attached(&mut agent, &mut err);
        kids = spawn_children(path, sc)?;
        let readers = wait_opened(&mut kids);
        go(&mut kids);
        let went = Instant::now();
        let (agent, attached) = match sc.restart_agent_at_ms {
            Some(ms) => restart_agent(
                agent,
                went + Duration::from_millis(ms),
                sc,
                demo,
                &how,
                &mut err,
            )?,
            None => (agent, attached),
        };
        finish_scenario(agent, attached, err, kids, readers, sc, went)
    }
}

/// Kills the agent with SIGKILL at `at` and starts another; the new one and whether it
/// attached. The first one's stderr is kept, its stdout (no incident yet) is not.
fn restart_agent(
    mut agent: Agent,
    at: Instant,
    sc: &Scenario,
    demo: bool,
    how: &AgentHow,
    err: &mut Vec<String>,
) -> Result<(Agent, bool)> {
    sleep_until(at);
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    std::thread::sleep(Duration::from_millis(100));
    err.extend(agent.err.try_iter());
    err.push("hwdriver: agent killed with SIGKILL and started again".into());
    let mut again = start_agent(sc.duration_s, demo, how)?;
    let attached = wait_attached(&mut again, err);
    Ok((again, attached))
}

fn finish_scenario(
    agent: Agent,
    attached: bool,
    err: Vec<String>,
    mut kids: Vec<(String, Child)>,
    mut readers: Vec<BufReader<std::process::ChildStdout>>,
    sc: &Scenario,
    went: Instant,
) -> Result<ScenarioResult> {
    // While the agent still runs (its --duration counts from attach, just before "go"):
    // `hangwatch export` fetches its flight recorder over the control socket, 3 s before the
    // end, when the scenario's jobs are all in (the window covers the whole scenario).
    let export = sc.bugreport.then(|| {
        let _ = std::fs::remove_file("/tmp/export.perfetto");
        sleep_until(went + Duration::from_secs(sc.duration_s.saturating_sub(3)));
        sh(
            HANGWATCH,
            &["export", "--since", "60s", "--out", "/tmp/export.perfetto"],
        )
    });
    let run = AgentRun {
        attached,
        ..finish_agent(agent, Duration::from_secs(sc.duration_s + 120), err)
    };
    // The agent's run is over: tell children to finish (EOF on stdin) and collect summaries.
    let mut procs = Vec::new();
    for ((name, mut k), r) in kids.drain(..).zip(readers.iter_mut()) {
        drop(k.stdin.take());
        let mut rest = String::new();
        let _ = r.read_to_string(&mut rest);
        let _ = k.wait();
        let summary = rest
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<ChildSummary>(l).ok());
        procs.push(ProcessResult {
            name,
            pid: k.id(),
            summary,
        });
    }
    Ok(ScenarioResult {
        run,
        processes: procs,
        artifacts: export.map(|e| artifacts(&e)),
        ..Default::default()
    })
}

// ---- what the kernel publishes besides its log: uevents and devcoredumps ----

/// CLOCK_MONOTONIC in seconds, the clock of the kernel log's timestamps (near enough to order
/// a uevent against a dmesg line).
fn monotonic_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Kernel uevents of the `drm` and `devcoredump` subsystems, read from the kobject-uevent
/// netlink group (what udev and a desktop listen to) while a scenario runs.
struct UeventMonitor {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Uevent>>,
}

/// At most this many uevents are kept per scenario.
const MAX_UEVENTS: usize = 200;

impl UeventMonitor {
    fn start() -> Result<Self> {
        // SAFETY: plain socket(2); the fd is checked and owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        };
        if fd < 0 {
            bail!("uevent socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: fd is a new socket nothing else owns.
        let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: an all-zero sockaddr_nl is valid; the fields set below are plain integers.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = 1;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: addr and tv are valid for the sizes passed; fd is the socket above.
        let ok = unsafe {
            libc::bind(
                fd,
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            ) == 0
                && libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const libc::timeval as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as u32,
                ) == 0
        };
        if !ok {
            bail!("uevent socket: {}", std::io::Error::last_os_error());
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || uevent_loop(&sock, &flag));
        Ok(Self { stop, thread })
    }

    fn stop(self) -> Vec<Uevent> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn uevent_loop(sock: &std::os::fd::OwnedFd, stop: &std::sync::atomic::AtomicBool) -> Vec<Uevent> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(sock);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: buf is valid for buf.len() bytes; fd is the bound netlink socket.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        let fields: Vec<String> = buf[..n as usize]
            .split(|b| *b == 0)
            .filter(|f| !f.is_empty())
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        let wanted = fields
            .iter()
            .any(|f| f == "SUBSYSTEM=drm" || f == "SUBSYSTEM=devcoredump");
        if wanted && out.len() < MAX_UEVENTS {
            out.push(Uevent {
                monotonic_s: monotonic_s(),
                fields,
            });
        }
    }
    out
}

/// At most this much of each devcoredump's data is returned.
const DEVCOREDUMP_HEAD: usize = 64 * 1024;

/// The dumps under /sys/class/devcoredump (`devcdN`; the class also has a `disabled` file).
fn dump_names() -> Vec<String> {
    list_dir("/sys/class/devcoredump")
        .into_iter()
        .filter(|n| n.starts_with("devcd"))
        .collect()
}

/// Every devcoredump present now: name, failing device, size and the head of its text.
fn devcoredumps() -> Vec<Devcoredump> {
    let mut v = Vec::new();
    for name in dump_names() {
        let dir = Path::new("/sys/class/devcoredump").join(&name);
        let failing = std::fs::read_link(dir.join("failing_device"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let data = std::fs::read(dir.join("data")).unwrap_or_default();
        let head = String::from_utf8_lossy(&data[..data.len().min(DEVCOREDUMP_HEAD)]);
        v.push(Devcoredump {
            name,
            failing_device: failing,
            bytes: data.len(),
            head: head.into_owned(),
        });
    }
    v
}

/// Deletes every devcoredump (a write to `data` frees it), so none outlives its scenario's
/// simulator.
fn clear_devcoredumps() {
    for name in dump_names() {
        let _ = std::fs::write(
            Path::new("/sys/class/devcoredump").join(name).join("data"),
            "1",
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first incident directory `hangwatch run --output` wrote, `hangwatch bugreport` of it
/// (built here, inside the VM, where the incident happened) and the `hangwatch export` trace
/// taken from the running agent, as `path -> hex bytes` so binary files survive the console. Problems become `error` entries the host test reports.
fn artifacts(export: &Value) -> Artifacts {
    let failed = |e: String| Artifacts {
        error: Some(e),
        ..Default::default()
    };
    let mut files = BTreeMap::new();
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir("/tmp/hw-out") {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.is_dir()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect(),
        Err(e) => return failed(format!("/tmp/hw-out: {e}")),
    };
    dirs.sort();
    let Some(dir) = dirs.first() else {
        return failed("hangwatch run --output wrote no incident directory".into());
    };
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(b) = std::fs::read(e.path()) {
                files.insert(
                    format!("incident/{}", e.file_name().to_string_lossy()),
                    hex(&b),
                );
            }
        }
    }
    let dir_s = dir.to_string_lossy().into_owned();
    let br = sh(
        HANGWATCH,
        &["bugreport", &dir_s, "--out", "/tmp/bugreport.tar.gz"],
    );
    files.insert(
        "bugreport.md".into(),
        hex(br["stdout"].as_str().unwrap_or("").as_bytes()),
    );
    if let Ok(b) = std::fs::read("/tmp/bugreport.tar.gz") {
        files.insert("bugreport.tar.gz".into(), hex(&b));
    }
    if let Ok(b) = std::fs::read("/tmp/export.perfetto") {
        files.insert("export.perfetto".into(), hex(&b));
    }
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let code = |v: &Value| v.as_i64().and_then(|c| i32::try_from(c).ok());
    Artifacts {
        error: None,
        export_exit: code(&export["status"]),
        export_stderr: text(&export["stderr"]),
        incident_dir: dir.file_name().map(|n| n.to_string_lossy().into_owned()),
        bugreport_exit: code(&br["status"]),
        bugreport_stderr: text(&br["stderr"]),
        files: Files::Hex(files),
    }
}

/// One simulated GPU client (see module docs).
fn child(path: &Path, index: &str) -> Result<()> {
    let sc: Scenario = toml::from_str(&std::fs::read_to_string(path)?)?;
    let idx: usize = index.parse()?;
    let p = sc
        .process
        .get(idx)
        .context("process index out of range")?
        .clone();
    let name = std::ffi::CString::new(p.name.as_bytes())?;
    // SAFETY: PR_SET_NAME copies at most 16 bytes from a valid NUL-terminated string.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
    let path = device_path(p.device);
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {path}"))?;
    println!("open");
    std::io::stdout().flush()?;
    let kfd = kfd_open(&p)?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let t0 = Instant::now();
    let kfd_thread = kfd.map(|k| kfd_spawn(k, p.kfd.clone(), t0, p.exit_at_ms));
    let fd = std::os::fd::AsRawFd::as_raw_fd(&dev);
    let counts = submit_all(fd, &p, t0)?;
    let kfd_summary = kfd_thread.map(|t| {
        t.join()
            .unwrap_or_else(|_| json!({"error": "kfd thread panicked"}))
    });
    let submit_ms = t0.elapsed().as_millis() as u64;
    let summary = json!(ChildSummary {
        submitted: counts.ok,
        errors: counts.errors,
        submit_ms,
        kfd: kfd_summary,
        mesa: counts.mesa,
    });
    if let Some(exit) = p.exit_at_ms {
        sleep_until(t0 + Duration::from_millis(exit));
        // Exiting early is the point (scenario 5): nobody reads this summary's timing.
        println!("{summary}");
        std::process::exit(0);
    }
    // Stay alive (device open) until the driver closes our stdin at the end of the scenario.
    let mut rest = String::new();
    let _ = std::io::stdin().read_to_string(&mut rest);
    println!("{summary}");
    drop(dev);
    Ok(())
}

/// What one client's submissions did: accepted, refused by errno, and the Mesa verdict line it
/// logged (at most one).
#[derive(Default)]
struct Counts {
    ok: u64,
    errors: BTreeMap<i32, u64>,
    mesa: Vec<String>,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.ok += other.ok;
        for (e, n) in other.errors {
            *self.errors.entry(e).or_default() += n;
        }
        self.mesa.extend(other.mesa);
    }
}

/// The process's `submit` entries in `at_ms` order: all on this thread, or, when the process
/// is `concurrent`, each ring's on its own thread (so a ring's entries never overtake each
/// other, whatever the lag).
fn submit_all(fd: i32, p: &Process, t0: Instant) -> Result<Counts> {
    let logged = std::sync::atomic::AtomicBool::new(false);
    let mut entries: Vec<&Submit> = p.submit.iter().collect();
    entries.sort_by_key(|s| s.at_ms);
    let mut lanes: BTreeMap<String, Vec<&Submit>> = BTreeMap::new();
    for s in entries {
        let lane = if p.concurrent {
            s.ring.clone()
        } else {
            String::new()
        };
        lanes.entry(lane).or_default().push(s);
    }
    let run_lane = |lane: &[&Submit]| -> Result<Counts> {
        let mut c = Counts::default();
        for s in lane {
            c.add(submit_entry(fd, s, t0, p.exit_at_ms, &logged)?);
        }
        Ok(c)
    };
    if !p.concurrent {
        // On the main thread: the kernel sees one thread, pid == tgid.
        return lanes
            .values()
            .next()
            .map_or(Ok(Counts::default()), |l| run_lane(l));
    }
    let mut total = Counts::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = lanes
            .values()
            .map(|lane| scope.spawn(|| run_lane(lane)))
            .collect();
        for h in handles {
            match h.join() {
                Ok(c) => total.add(c?),
                Err(_) => bail!("a submit thread panicked"),
            }
        }
        Ok(total)
    })
}

/// One `submit` entry on its schedule. The first -ECANCELED of the process makes it log Mesa's
/// verdict, as radv does after a cancelled submission.
fn submit_entry(
    fd: i32,
    s: &Submit,
    t0: Instant,
    exit_at_ms: Option<u64>,
    logged: &std::sync::atomic::AtomicBool,
) -> Result<Counts> {
    let ring = ring_index(&s.ring)?;
    let flags = flag_bits(&s.flags)?;
    let mut c = Counts::default();
    sleep_until(t0 + Duration::from_millis(s.at_ms));
    let start = Instant::now();
    for n in 0..s.count {
        if let Some(us) = (n * 1_000_000).checked_div(s.rate_hz) {
            sleep_until(start + Duration::from_micros(us));
        }
        if exit_at_ms.is_some_and(|exit| t0.elapsed() >= Duration::from_millis(exit)) {
            break;
        }
        let mut req = SimSubmit {
            ring,
            flags,
            duration_us: s.duration_us,
            fault_addr: s.fault_addr,
            num_ibs: 1,
            pad: 0,
        };
        match ioctl(fd, SIM_IOCTL_SUBMIT, &mut req) {
            Ok(()) => c.ok += 1,
            Err(errno) => {
                *c.errors.entry(errno).or_default() += 1;
                if errno == ECANCELED && !logged.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    c.mesa.push(mesa_verdict(fd));
                }
            }
        }
    }
    Ok(c)
}

/// radv's line after a cancelled submission, from the context's reset state. Written to
/// stderr (the VM has no journald), and returned for the summary.
fn mesa_verdict(fd: i32) -> String {
    let mut q = SimQuery::default();
    let verdict = match ioctl(fd, SIM_IOCTL_QUERY_STATE, &mut q) {
        Ok(()) if q.flags & SIM_QUERY_GUILTY != 0 => "guilty of a hard recovery",
        Ok(()) => "innocent",
        Err(e) => return format!("query state failed: errno {e}"),
    };
    let line = format!(
        "radv/amdgpu: The CS has been cancelled because the context is lost. This context is {verdict}."
    );
    eprintln!("{line}");
    line
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

// ---- least privilege ----

/// The wrapper that runs a command as the packaged service runs the agent: uid/gid 65534, no
/// groups, exactly `caps` (inheritable + ambient, so they survive the exec as permitted and
/// effective). The same util-linux `setpriv` line a scenario's `agent_wrapper` gives (scenario
/// 40), so the capability experiment and the least-privilege scenario use one mechanism.
fn setpriv_wrapper(caps: &[&str]) -> Vec<String> {
    let set: String = std::iter::once("-all".to_string())
        .chain(
            caps.iter()
                .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase())),
        )
        .collect::<Vec<_>>()
        .join(",");
    [
        "setpriv".to_string(),
        "--reuid=65534".into(),
        "--regid=65534".into(),
        "--clear-groups".into(),
        format!("--inh-caps={set}"),
        format!("--ambient-caps={set}"),
        "--".into(),
    ]
    .to_vec()
}

/// `wrapper... program`: the command a wrapper line (agent_wrapper, setpriv_wrapper) makes.
fn wrapped(wrapper: &[String], program: &str) -> Command {
    match wrapper.split_first() {
        Some((w, rest)) => {
            let mut c = Command::new(w);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Sets kernel.perf_event_paranoid; returns the previous value.
fn set_perf_paranoid(level: i32) -> i32 {
    const P: &str = "/proc/sys/kernel/perf_event_paranoid";
    let old = std::fs::read_to_string(P)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(2);
    let _ = std::fs::write(P, level.to_string());
    old
}

/// `hwdriver read-proc PID`: what this process may read of another user's process (the
/// agent's /proc needs) and of the kernel log.
fn read_proc(pid: &str) -> Value {
    let p = format!("/proc/{pid}");
    let fdinfo = std::fs::read_dir(format!("{p}/fdinfo"))
        .map_err(|e| e.to_string())
        .and_then(|mut rd| {
            let e = rd.next().ok_or("empty")?.map_err(|e| e.to_string())?;
            std::fs::read_to_string(e.path()).map_err(|e| e.to_string())
        });
    let r = |x: std::io::Result<String>| match x {
        Ok(_) => json!("ok"),
        Err(e) => json!(e.to_string()),
    };
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    json!({
        "uid": uid,
        "fdinfo": match fdinfo { Ok(_) => json!("ok"), Err(e) => json!(e) },
        "exe": r(std::fs::read_link(format!("{p}/exe")).map(|x| x.display().to_string())),
        "maps": r(std::fs::read_to_string(format!("{p}/maps"))),
        "kmsg": r(std::fs::File::open("/dev/kmsg").map(|_| String::new())),
        "tracefs_format": r(std::fs::read_to_string("/sys/kernel/tracing/events/amdgpu/amdgpu_cs_ioctl/format")),
        "kallsyms_addresses": std::fs::read_to_string("/proc/kallsyms")
            .map(|k| k.lines().take(50).any(|l| !l.starts_with("0000000000000000")))
            .unwrap_or(false),
    })
}

/// The capability experiment behind the service's set (docs/operations.md): `check --json
/// --attach` and `read-proc` of this (root) process, as uid 65534 with all five
/// capabilities, with each one removed, and with none.
fn caps_experiment() -> Value {
    const ALL: [&str; 5] = [
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_DAC_READ_SEARCH",
        "CAP_SYSLOG",
        "CAP_SYS_PTRACE",
    ];
    let sysctl = |k: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{k}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let tracefs_mode = std::fs::metadata("/sys/kernel/tracing")
        .map(|m| {
            format!(
                "{:o}",
                std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777
            )
        })
        .unwrap_or_default();
    let mut rows = serde_json::Map::new();
    let mut configs: Vec<(String, Vec<String>)> =
        vec![("all".into(), ALL.iter().map(|s| s.to_string()).collect())];
    for drop in ALL {
        configs.push((
            format!("-{drop}"),
            ALL.iter()
                .filter(|c| **c != drop)
                .map(|s| s.to_string())
                .collect(),
        ));
    }
    configs.push(("none".into(), vec![]));
    // The rows above run with the upstream default perf_event_paranoid=2; this one with the
    // value the kernel booted with (Debian's 3 refuses perf_event_open without CAP_SYS_ADMIN).
    configs.push((
        "all@boot-paranoid".into(),
        ALL.iter().map(|s| s.to_string()).collect(),
    ));
    let me = std::process::id().to_string();
    let boot_paranoid = set_perf_paranoid(2);
    for (label, caps) in configs {
        let restore = (label == "all@boot-paranoid").then(|| set_perf_paranoid(boot_paranoid));
        let names: Vec<&str> = caps.iter().map(String::as_str).collect();
        let wrapper = setpriv_wrapper(&names);
        // Past the agent's own capability pre-check, so the kernel's refusal shows.
        let c = wrapped(&wrapper, HANGWATCH)
            .args(["check", "--json", "--attach", "--ignore-capabilities"])
            .output();
        let p = wrapped(&wrapper, "/bin/hwdriver")
            .args(["read-proc", &me])
            .output();
        let check_json = c
            .as_ref()
            .ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok());
        let summary = check_json.as_ref().map(|v| {
            let probes = v["probes"].as_array().cloned().unwrap_or_default();
            let attached = probes.iter().filter(|p| p["status"] == "attached").count();
            let first_failure = probes.iter().find(|p| p["status"] != "attached").map(|p| format!("{} {}: {}", p["name"], p["status"], p["reason"]));
            json!({"attached": attached, "of": probes.len(), "kmsg_readable": v["kmsg_readable"], "attach_error": v["attach_error"], "first_failure": first_failure})
        });
        rows.insert(label, json!({
            "caps": caps,
            "check": summary,
            "check_stderr": c.as_ref().map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_else(|e| e.to_string()),
            "read_proc": p.ok().and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok()),
        }));
        if restore.is_some() {
            set_perf_paranoid(2);
        }
    }
    set_perf_paranoid(boot_paranoid);
    json!({
        "boot_perf_event_paranoid": boot_paranoid,
        "dmesg_restrict": sysctl("dmesg_restrict"),
        "kptr_restrict": sysctl("kptr_restrict"),
        "perf_event_paranoid": sysctl("perf_event_paranoid"),
        "unprivileged_bpf_disabled": sysctl("unprivileged_bpf_disabled"),
        "tracefs_mode": tracefs_mode,
        "rows": rows,
    })
}

// ---- bench ----

/// Opens the device, submits `n` zero-duration gfx jobs flat out and closes it; closing waits
/// for the scheduler to drain the entity, so the time covers the whole submission path.
fn submit_loop(n: u64) -> Result<Value> {
    let t = Instant::now();
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(DEVICE)
        .with_context(|| format!("opening {DEVICE}"))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&dev);
    let mut failed = 0u64;
    for _ in 0..n {
        let mut req = SimSubmit {
            ring: 0,
            flags: 0,
            duration_us: 0,
            fault_addr: 0,
            num_ibs: 1,
            pad: 0,
        };
        if ioctl(fd, SIM_IOCTL_SUBMIT, &mut req).is_err() {
            failed += 1;
        }
    }
    drop(dev);
    let ns = t.elapsed().as_nanos() as f64;
    Ok(
        json!({"n": n, "failed": failed, "wall_ms": ns / 1e6, "ns_per_submission": ns / n as f64, "submissions_per_s": n as f64 * 1e9 / ns}),
    )
}

/// utime + stime of `pid` and its direct children (trace-cmd records from per-CPU child
/// processes), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let hz = if hz > 0.0 { hz } else { 100.0 };
    let mut ticks = 0.0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let Some((head, after)) = stat.rsplit_once(')') else {
            continue;
        };
        let this: u32 = head
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let f: Vec<&str> = after.split_whitespace().collect();
        // After "pid (comm)": state, ppid, ... utime (14th field) and stime (15th) are 11, 12.
        let ppid: u32 = f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        if this == pid || ppid == pid {
            ticks += f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
                + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        }
    }
    ticks / hz
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with(key))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

/// Starts a tracer, waits until `ready` appears in its output or `ready_file` exists (trace-cmd
/// block-buffers its banner into a pipe, but creates its per-CPU files once recording), then
/// measures a submission loop.
fn bench_peer(
    cmd: &str,
    args: &[&str],
    ready: &str,
    ready_file: Option<&str>,
    n: u64,
) -> Result<Value> {
    let mut command = Command::new(cmd);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: sched_setaffinity is a plain syscall, safe between fork and exec. Every thread the
    // tracer starts inherits CPU 1, away from the submission path on CPU 0 (see phase_bench).
    unsafe {
        command.pre_exec(|| {
            pin(0, TRACER_CPU);
            Ok(())
        });
    }
    let progs_before = prog_ids();
    let mut child = command.spawn().with_context(|| format!("starting {cmd}"))?;
    let out = pipe_lines(child.stdout.take());
    let err = pipe_lines(child.stderr.take());
    let t = Instant::now();
    let mut seen = Vec::new();
    let mut is_ready = false;
    while t.elapsed() < Duration::from_secs(120) && !is_ready {
        for l in out.try_iter().chain(err.try_iter()) {
            is_ready |= l.contains(ready);
            seen.push(l);
        }
        if ready_file.is_some_and(|f| Path::new(f).exists()) {
            std::thread::sleep(Duration::from_secs(1));
            is_ready = true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !is_ready {
        let _ = child.kill();
        let _ = child.wait();
        return Ok(json!({"skipped": format!("{cmd} never became ready: {seen:?}")}));
    }
    let startup_ms = t.elapsed().as_millis() as u64;
    let pid = child.id();
    let c0 = cpu_seconds(pid);
    let w = Instant::now();
    let mut r = submit_loop(n)?;
    std::thread::sleep(Duration::from_millis(500));
    let cpu = cpu_seconds(pid) - c0;
    let wall = w.elapsed().as_secs_f64();
    // Read while the tracer still runs: its programs unload when it exits.
    r["bpf_stats"] = tracer_bpf_stats(&progs_before);
    if let Ok(Some(status)) = child.try_wait() {
        let seen: Vec<String> = seen
            .into_iter()
            .chain(out.try_iter())
            .chain(err.try_iter())
            .collect();
        return Ok(
            json!({"skipped": format!("{cmd} exited ({status}) during the load, so it traced nothing: {seen:?}")}),
        );
    }
    // Peak (includes start-up: BTF and format parsing) and resident right after the load.
    let rss = status_kib(pid, "VmHWM:");
    let rss_now = status_kib(pid, "VmRSS:");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(200));
    let tail: Vec<String> = out.try_iter().chain(err.try_iter()).collect();
    r["tracer_cpu_percent"] = json!(100.0 * cpu / wall);
    r["tracer_rss_kib"] = json!(rss);
    r["tracer_rss_now_kib"] = json!(rss_now);
    r["tracer_startup_ms"] = json!(startup_ms);
    r["tracer_output_tail"] = json!(tail.iter().rev().take(6).rev().collect::<Vec<_>>());
    Ok(r)
}

// ---- in-kernel cost per BPF program (kernel.bpf_stats_enabled) ----

const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// `struct bpf_prog_info` offsets (uapi, append-only since 5.1): type, `name[16]`, run_time_ns,
/// run_cnt.
const INFO_TYPE: usize = 0;
const INFO_NAME: usize = 64;
const INFO_RUN_TIME_NS: usize = 192;
const INFO_RUN_CNT: usize = 200;
const INFO_LEN: usize = 256;

fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> libc::c_long {
    // SAFETY: attr is a zeroed 128-byte union bpf_attr, larger than what these commands read.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr) as u32,
        )
    }
}

/// Ids of every loaded BPF program.
fn prog_ids() -> Vec<u32> {
    let mut ids = Vec::new();
    let mut start = 0u32;
    loop {
        let mut attr = [0u64; 16];
        attr[0] = u64::from(start);
        if bpf(BPF_PROG_GET_NEXT_ID, &mut attr) != 0 {
            return ids;
        }
        start = (attr[0] >> 32) as u32; // next_id
        ids.push(start);
    }
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_ne_bytes)
        .unwrap_or(0)
}

/// `bpf_prog_info` of one program: (type, name, run_time_ns, run_cnt).
fn prog_info(id: u32) -> Option<(u32, String, u64, u64)> {
    let mut attr = [0u64; 16];
    attr[0] = u64::from(id);
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr);
    if fd < 0 {
        return None;
    }
    let mut info = [0u8; INFO_LEN];
    let mut attr = [0u64; 16];
    attr[0] = fd as u64 | ((INFO_LEN as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    let r = bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr);
    // SAFETY: fd came from BPF_PROG_GET_FD_BY_ID and is ours to close.
    unsafe { libc::close(fd as i32) };
    if r != 0 {
        return None;
    }
    let ty = u32::from_ne_bytes(info[INFO_TYPE..INFO_TYPE + 4].try_into().ok()?);
    let name = &info[INFO_NAME..INFO_NAME + 16];
    let end = name.iter().position(|&c| c == 0).unwrap_or(16);
    let name = String::from_utf8_lossy(&name[..end]).into_owned();
    Some((
        ty,
        name,
        u64_at(&info, INFO_RUN_TIME_NS),
        u64_at(&info, INFO_RUN_CNT),
    ))
}

/// Per-program run counts and in-kernel time of every program loaded since `before` (the
/// tracer's own), with `kernel.bpf_stats_enabled=1` set by phase_bench.
fn tracer_bpf_stats(before: &[u32]) -> Value {
    let mut progs = Vec::new();
    for id in prog_ids().into_iter().filter(|id| !before.contains(id)) {
        if let Some((ty, name, ns, cnt)) = prog_info(id) {
            progs.push(
                json!({"id": id, "type": ty, "name": name, "run_time_ns": ns, "run_cnt": cnt}),
            );
        }
    }
    json!(progs)
}

/// The agent as the service runs it (every probe attached, metrics on) with nothing happening,
/// over a minute: what always-on monitoring costs a machine between hangs.
fn bench_idle() -> Result<Value> {
    let mut child = Command::new(HANGWATCH)
        .args([
            "run",
            "--json",
            "--output",
            "/tmp/hw-idle",
            "--metrics",
            "127.0.0.1:9464",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting hangwatch run")?;
    let _out = pipe_lines(child.stdout.take());
    let err = pipe_lines(child.stderr.take());
    let t = Instant::now();
    let mut attached = None;
    let mut said = Vec::new();
    while attached.is_none() && t.elapsed() < Duration::from_secs(120) {
        match err.recv_timeout(Duration::from_millis(100)) {
            Ok(l) if l.contains("probes attached") => attached = Some(l),
            Ok(l) => said.push(l),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if attached.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        bail!("the agent never attached: {said:?}");
    }
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(2));
    let c0 = cpu_seconds(pid);
    let w = Instant::now();
    std::thread::sleep(Duration::from_secs(60));
    let cpu = cpu_seconds(pid) - c0;
    let window = w.elapsed().as_secs_f64();
    let rss = status_kib(pid, "VmRSS:");
    let peak = status_kib(pid, "VmHWM:");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    // Bounded: an agent that ignores SIGINT must not hang the bench (it did once, see metrics.rs).
    let stop = Instant::now();
    let mut stopped = false;
    while !stopped && stop.elapsed() < Duration::from_secs(60) {
        stopped = matches!(child.try_wait(), Ok(Some(_)));
        std::thread::sleep(Duration::from_millis(100));
    }
    if !stopped {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(
        json!({"attached": attached, "stopped_on_sigint": stopped, "window_s": window, "cpu_percent": 100.0 * cpu / window, "rss_kib": rss, "rss_peak_kib": peak}),
    )
}

const SUBMIT_CPU: usize = 0;
const TRACER_CPU: usize = 1;

/// Restrict `pid` (0 = this thread) to one CPU; false when the kernel refuses.
fn pin(pid: i32, cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Puts the submission path — this process and the simulator's drm_sched ring threads — on
/// SUBMIT_CPU for every row, so a tracer's userspace (pinned to TRACER_CPU) does not steal its
/// CPU and "added ns per submission" measures what tracing costs the submitter, not how two
/// emulated CPUs were shared. Returns what was pinned.
fn pin_submission_path() -> Value {
    let mut pinned =
        vec![json!({"pid": std::process::id(), "comm": "hwdriver", "ok": pin(0, SUBMIT_CPU)})];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if ["gfx_0.0.0", "comp_1.0.0", "sdma0"].contains(&comm) {
            pinned.push(json!({"pid": pid, "comm": comm, "ok": pin(pid, SUBMIT_CPU)}));
        }
    }
    json!(pinned)
}

/// The eight events hangwatch records per job, by this kernel's names, for trace-cmd and
/// bpftrace to record the same: the scheduler's three were renamed in 6.17
/// (`drm_sched_job_queue`/`_run`/`_done` instead of `drm_sched_job`, `drm_run_job`,
/// `drm_sched_process_job`).
fn peer_events() -> Vec<String> {
    let renamed =
        Path::new("/sys/kernel/tracing/events/gpu_scheduler/drm_sched_job_queue").exists();
    let sched = if renamed {
        [
            "drm_sched_job_queue",
            "drm_sched_job_run",
            "drm_sched_job_done",
        ]
    } else {
        ["drm_sched_job", "drm_run_job", "drm_sched_process_job"]
    };
    [
        "amdgpu:amdgpu_cs_ioctl",
        "amdgpu:amdgpu_sched_run_job",
        "amdgpu:amdgpu_vm_grab_id",
    ]
    .into_iter()
    .map(String::from)
    .chain(sched.iter().map(|e| format!("gpu_scheduler:{e}")))
    .chain(["dma_fence:dma_fence_init", "dma_fence:dma_fence_signaled"].map(String::from))
    .collect()
}

fn phase_bench(plan: &Plan) -> Result<()> {
    let timeout = format!("timeout_ms={}", plan.sim_timeout_ms);
    result_line("bench", "modprobe", &sh("modprobe", &["amdgpu", &timeout]));
    result_line(
        "bench",
        "idle",
        &bench_idle().unwrap_or_else(|e| json!({"skipped": format!("{e:#}")})),
    );
    result_line("bench", "pinned", &pin_submission_path());
    // Per-program run_time_ns/run_cnt: the in-kernel cost, apart from the userspace consumer.
    result_line(
        "bench",
        "bpf_stats_enabled",
        &json!(std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").is_ok()),
    );
    let n = plan.bench_count;
    // Warm-up (page cache, scheduler thread), then the untraced baseline.
    let _ = submit_loop(n / 10);
    result_line("bench", "untraced", &submit_loop(n)?);
    let hw = bench_peer(
        HANGWATCH,
        &[
            "run",
            "--json",
            "--output",
            "/tmp/hw-bench",
            "--duration",
            "600",
        ],
        "probes attached",
        None,
        n,
    )?;
    result_line("bench", "hangwatch", &hw);
    let events = peer_events();
    result_line("bench", "peer_events", &json!(events));
    if Path::new("/bin/trace-cmd").exists() {
        let mut args = vec!["record", "-o", "/tmp/trace.dat"];
        for e in &events {
            args.extend(["-e", e.as_str()]);
        }
        let r = bench_peer(
            "/bin/trace-cmd",
            &args,
            "Hit Ctrl^C",
            Some("/tmp/trace.dat.cpu0"),
            n,
        )?;
        result_line("bench", "trace-cmd", &r);
    } else {
        result_line(
            "bench",
            "trace-cmd",
            &json!({"skipped": "trace-cmd not in the initramfs (install it: cargo xtask setup)"}),
        );
    }
    if Path::new("/bin/bpftrace").exists() {
        let probes: Vec<String> = events.iter().map(|e| format!("tracepoint:{e}")).collect();
        let script = format!("{} {{ @[probe, comm, pid] = count(); }}", probes.join(", "));
        let r = bench_peer("/bin/bpftrace", &["-e", &script], "Attaching", None, n)?;
        result_line("bench", "bpftrace", &r);
    } else {
        result_line(
            "bench",
            "bpftrace",
            &json!({"skipped": "bpftrace not in the initramfs (install it: cargo xtask setup)"}),
        );
    }
    Ok(())
}

// ---- KFD (ROCm-like) child work: tests/kmod/kfd_sim.c ----

const KFD_DEVICE: &str = "/dev/kfd";

/// One step of a ROCm-like process: create a queue, ring its doorbell (a dispatch), destroy it.
#[derive(Deserialize, Clone)]
pub struct KfdOp {
    #[serde(default)]
    pub at_ms: u64,
    /// `create`, `dispatch`, `destroy`; 7.x user queues: `userq_create`, `userq_signal`,
    /// `userq_destroy` (their `queue` indexes count user queues separately).
    pub op: String,
    /// Index of the queue in this process's creation order (`dispatch`, `destroy`).
    #[serde(default)]
    pub queue: usize,
    /// `compute` (AQL, what HIP uses) or `sdma` (`create`); `gfx`, `compute`, `sdma`
    /// (`userq_create`).
    #[serde(default = "default_queue_type")]
    pub queue_type: String,
    /// `hang`, `fault`, `fault_pid0`, `mes_hang` (`dispatch`).
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub duration_us: u64,
    #[serde(default)]
    pub fault_addr: u64,
    #[serde(default = "one")]
    pub count: u64,
    #[serde(default)]
    pub rate_hz: u64,
}

fn default_queue_type() -> String {
    "compute".into()
}

/// `struct kfd_ioctl_create_queue_args` (include/uapi/linux/kfd_ioctl.h, 6.1 size: newer
/// kernels zero-extend the shorter struct, like the simulator).
#[repr(C)]
#[derive(Default)]
struct KfdCreateQueueArgs {
    ring_base_address: u64,
    write_pointer_address: u64,
    read_pointer_address: u64,
    doorbell_offset: u64,
    ring_size: u32,
    gpu_id: u32,
    queue_type: u32,
    queue_percentage: u32,
    queue_priority: u32,
    queue_id: u32,
    eop_buffer_address: u64,
    eop_buffer_size: u64,
    ctx_save_restore_address: u64,
    ctx_save_restore_size: u32,
    ctl_stack_size: u32,
}

/// `struct kfd_sim_dispatch` of tests/kmod/kfd_sim_uapi.h.
#[repr(C)]
struct KfdSimDispatch {
    queue_id: u32,
    flags: u32,
    duration_us: u64,
    fault_addr: u64,
}

const fn ioc(dir: u64, ty: u8, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((ty as u64) << 8) | nr
}
/// `AMDKFD_IOWR(0x02, struct kfd_ioctl_create_queue_args)`.
const AMDKFD_IOC_CREATE_QUEUE: u64 = ioc(3, b'K', 0x02, std::mem::size_of::<KfdCreateQueueArgs>());
/// `AMDKFD_IOWR(0x03, struct kfd_ioctl_destroy_queue_args)` (u32 queue_id, u32 pad).
const AMDKFD_IOC_DESTROY_QUEUE: u64 = ioc(3, b'K', 0x03, 8);
/// `_IOW('k', 1, struct kfd_sim_dispatch)`.
const KFD_SIM_IOC_DISPATCH: u64 = ioc(1, b'k', 1, std::mem::size_of::<KfdSimDispatch>());

/// `struct kfd_sim_userq` / `struct kfd_sim_userq_signal` of tests/kmod/kfd_sim_uapi.h.
#[repr(C)]
#[derive(Default)]
struct KfdSimUserq {
    ip_type: u32,
    queue_id: u32,
    doorbell: u64,
}
#[repr(C)]
struct KfdSimUserqSignal {
    queue_id: u32,
    flags: u32,
    duration_us: u64,
}
const KFD_SIM_IOC_USERQ_CREATE: u64 = ioc(3, b'k', 2, std::mem::size_of::<KfdSimUserq>());
const KFD_SIM_IOC_USERQ_DESTROY: u64 = ioc(1, b'k', 3, std::mem::size_of::<KfdSimUserq>());
const KFD_SIM_IOC_USERQ_SIGNAL: u64 = ioc(1, b'k', 4, std::mem::size_of::<KfdSimUserqSignal>());

/// Opens /dev/kfd (before "go", like ROCr at hipInit) when the process has KFD work.
fn kfd_open(p: &Process) -> Result<Option<std::fs::File>> {
    if p.kfd.is_empty() {
        return Ok(None);
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(KFD_DEVICE)
        .with_context(|| format!("opening {KFD_DEVICE}"))?;
    Ok(Some(f))
}

/// The KFD gpu_id of the first GPU node of the topology (what ROCr reads too).
fn kfd_gpu_id() -> Result<u32> {
    for n in 0..16 {
        let p = format!("/sys/class/kfd/kfd/topology/nodes/{n}/gpu_id");
        let Ok(s) = std::fs::read_to_string(&p) else {
            break;
        };
        let id: u32 = s.trim().parse().with_context(|| format!("{p}: {s:?}"))?;
        if id != 0 {
            return Ok(id);
        }
    }
    bail!("no GPU node in /sys/class/kfd/kfd/topology")
}

fn kfd_flag_bits(flags: &[String]) -> Result<u32> {
    let mut bits = 0;
    for f in flags {
        bits |= match f.as_str() {
            "hang" => 1,
            "fault" => 2,
            "fault_pid0" => 4,
            "mes_hang" => 8,
            other => bail!("unknown kfd flag {other:?}"),
        };
    }
    Ok(bits)
}

/// `ioctl(fd, cmd, arg)`: Ok, or the negated errno (the simulator's and KFD's commands).
fn ioctl<T>(fd: i32, cmd: u64, arg: &mut T) -> std::result::Result<(), i32> {
    // SAFETY: fd is open and `arg` is the #[repr(C)] struct the command encodes.
    let r = unsafe { libc::ioctl(fd, cmd as _, arg as *mut T) };
    if r == 0 {
        Ok(())
    } else {
        Err(-std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// Runs the KFD steps on their schedule in a thread; returns its summary (queues created,
/// doorbell dispatches, errors by op and errno).
fn kfd_spawn(
    dev: std::fs::File,
    ops: Vec<KfdOp>,
    t0: Instant,
    exit_at_ms: Option<u64>,
) -> std::thread::JoinHandle<Value> {
    std::thread::spawn(move || match kfd_run(&dev, &ops, t0, exit_at_ms) {
        Ok(v) => v,
        Err(e) => json!({"error": format!("{e:#}")}),
    })
}

fn kfd_run(
    dev: &std::fs::File,
    ops: &[KfdOp],
    t0: Instant,
    exit_at_ms: Option<u64>,
) -> Result<Value> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(dev);
    let gpu_id = kfd_gpu_id()?;
    let mut queues: Vec<u32> = Vec::new();
    let mut userqs: Vec<(u32, u64)> = Vec::new();
    let mut doorbells: Vec<String> = Vec::new();
    let mut dispatched = 0u64;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut order: Vec<&KfdOp> = ops.iter().collect();
    order.sort_by_key(|o| o.at_ms);
    for op in order {
        sleep_until(t0 + Duration::from_millis(op.at_ms));
        if exit_at_ms.is_some_and(|e| t0.elapsed() >= Duration::from_millis(e)) {
            break;
        }
        let r = match op.op.as_str() {
            "create" => {
                let mut a = KfdCreateQueueArgs {
                    gpu_id,
                    queue_type: if op.queue_type == "sdma" { 1 } else { 2 },
                    ring_size: 1 << 16,
                    queue_percentage: 100,
                    ring_base_address: 0x7f00_0000_0000 + queues.len() as u64 * 0x10000,
                    ..Default::default()
                };
                ioctl(fd, AMDKFD_IOC_CREATE_QUEUE, &mut a).map(|()| {
                    queues.push(a.queue_id);
                    doorbells.push(format!("0x{:x}", a.doorbell_offset));
                })
            }
            "dispatch" => {
                let qid = *queues
                    .get(op.queue)
                    .context("dispatch on a queue never created")?;
                let flags = kfd_flag_bits(&op.flags)?;
                at_rate(op, &mut dispatched, || {
                    let mut d = KfdSimDispatch {
                        queue_id: qid,
                        flags,
                        duration_us: op.duration_us,
                        fault_addr: op.fault_addr,
                    };
                    ioctl(fd, KFD_SIM_IOC_DISPATCH, &mut d)
                })
            }
            "destroy" => {
                let qid = *queues
                    .get(op.queue)
                    .context("destroy of a queue never created")?;
                let mut a = [qid, 0u32];
                ioctl(fd, AMDKFD_IOC_DESTROY_QUEUE, &mut a)
            }
            "userq_create" | "userq_signal" | "userq_destroy" => {
                kfd_userq_op(fd, op, &mut userqs, &mut dispatched)?
            }
            other => bail!("unknown kfd op {other:?}"),
        };
        if let Err(errno) = r {
            *errors.entry(format!("{}:{errno}", op.op)).or_default() += 1;
        }
    }
    Ok(
        json!({"queues": queues, "doorbell_offsets": doorbells, "userqs": userqs, "dispatched": dispatched, "errors": errors}),
    )
}

/// Runs `submit` `op.count` times at `op.rate_hz` (0 = flat out), counting successes; the last
/// result is returned.
fn at_rate(
    op: &KfdOp,
    ok: &mut u64,
    mut submit: impl FnMut() -> std::result::Result<(), i32>,
) -> std::result::Result<(), i32> {
    let start = Instant::now();
    let mut r = Ok(());
    for n in 0..op.count {
        if let Some(us) = (n * 1_000_000).checked_div(op.rate_hz) {
            sleep_until(start + Duration::from_micros(us));
        }
        r = submit();
        if r.is_ok() {
            *ok += 1;
        }
    }
    r
}

/// A 7.x user-queue step (simulated on /dev/kfd): create one, submit jobs on it, destroy it.
fn kfd_userq_op(
    fd: i32,
    op: &KfdOp,
    userqs: &mut Vec<(u32, u64)>,
    dispatched: &mut u64,
) -> Result<std::result::Result<(), i32>> {
    Ok(match op.op.as_str() {
        "userq_create" => {
            let mut a = KfdSimUserq {
                ip_type: match op.queue_type.as_str() {
                    "gfx" => 0,
                    "compute" => 1,
                    "sdma" => 2,
                    other => bail!("unknown user queue type {other:?}"),
                },
                ..Default::default()
            };
            ioctl(fd, KFD_SIM_IOC_USERQ_CREATE, &mut a)
                .map(|()| userqs.push((a.queue_id, a.doorbell)))
        }
        "userq_signal" => {
            let (qid, _) = *userqs
                .get(op.queue)
                .context("signal on a user queue never created")?;
            let flags = kfd_flag_bits(&op.flags)?;
            at_rate(op, dispatched, || {
                let mut a = KfdSimUserqSignal {
                    queue_id: qid,
                    flags,
                    duration_us: op.duration_us,
                };
                ioctl(fd, KFD_SIM_IOC_USERQ_SIGNAL, &mut a)
            })
        }
        _ => {
            let (qid, doorbell) = *userqs
                .get(op.queue)
                .context("destroy of a user queue never created")?;
            let mut a = KfdSimUserq {
                ip_type: 0,
                queue_id: qid,
                doorbell,
            };
            ioctl(fd, KFD_SIM_IOC_USERQ_DESTROY, &mut a)
        }
    })
}
