//! Probe availability and attaching. [`Host::detect`] gathers what the running kernel offers,
//! [`assess`] decides per probe (available / missing + why, with the fix when there is one),
//! and [`attach`] loads the eBPF object with the layouts as load-time globals and attaches each
//! available program — a failure disables only that probe.
pub mod catalogue;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use agent_common::{DevLayout, FenceLayout, IvFilter, JobLayout, KfdLayout, TpLayout};
use aya::programs::{KProbe, TracePoint};
use aya::{Ebpf, EbpfLoader};
use serde::Serialize;

use crate::sources::formats::{build_layout, read_format};
use crate::sources::{btf, recorder};
use catalogue::{Hook, ProbeSpec, CATALOGUE};

/// The eBPF object built by `agent/build.rs`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/agent"));

/// Fix printed when tracefs is not mounted.
pub const TRACEFS_FIX: &str = "mount -t tracefs nodev /sys/kernel/tracing";

/// What the running kernel offers, read once.
#[derive(Clone, Debug, Default)]
pub struct Host {
    /// The effective capabilities can load and attach eBPF programs (CAP_BPF + CAP_PERFMON,
    /// or CAP_SYS_ADMIN): checked with capget, not the uid, so a least-privilege service works.
    pub root: bool,
    /// tracefs root with an `events/` directory.
    pub tracefs: Option<PathBuf>,
    pub kallsyms: String,
    /// `available_filter_functions` names (suffix ` [module]` stripped); `None` if unreadable.
    pub filter_functions: Option<HashSet<String>>,
    pub btf_dir: PathBuf,
    pub kprobes_supported: bool,
}

impl Host {
    pub fn detect() -> Host {
        let root = crate::capabilities::CapSet::current().can_load_probes();
        let tracefs = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("events").is_dir());
        let filter_functions = tracefs.as_ref().and_then(|t| {
            std::fs::read_to_string(t.join("available_filter_functions"))
                .ok()
                .map(|s| {
                    s.lines()
                        .filter_map(|l| l.split_whitespace().next())
                        .map(str::to_string)
                        .collect()
                })
        });
        let kprobes_supported = tracefs
            .as_ref()
            .is_some_and(|t| t.join("kprobe_events").exists());
        Host {
            root,
            kallsyms: std::fs::read_to_string("/proc/kallsyms").unwrap_or_default(),
            filter_functions,
            btf_dir: PathBuf::from("/sys/kernel/btf"),
            kprobes_supported,
            tracefs,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Available,
    Missing,
    Attached,
    Failed,
    /// Present, but per-job detail that `run` attaches only with `--trace-all`.
    Off,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Available => "available",
            Status::Missing => "missing",
            Status::Attached => "attached",
            Status::Failed => "failed",
            Status::Off => "off",
        }
    }
}

/// One probe's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeStatus {
    pub name: &'static str,
    pub status: Status,
    /// Why missing/failed, or a note (which tracepoint variant, degraded reads).
    pub reason: String,
    #[serde(skip)]
    pub spec: &'static ProbeSpec,
    /// Chosen tracepoint (sys, event).
    #[serde(skip)]
    pub tracepoint: Option<(&'static str, &'static str)>,
    #[serde(skip)]
    pub layout: Option<TpLayout>,
}

/// Default in-kernel `amdgpu_iv` filter: SOC15 VM-fault interrupts, i.e. IH clients VMC (0x12),
/// VMC1 (0x13) and UTCL2 (0x1b) with src_id 0 (`VMC_1_0__SRCID__VM_FAULT`,
/// `UTCL2_1_0__SRCID__FAULT`), as registered by gmc_v9/v10/v11/v12. Pre-SOC15 GMC v6–v8
/// (legacy client, src 146/147) is not covered: its faults still come from the kernel log.
pub fn default_iv_filter() -> IvFilter {
    IvFilter {
        client_mask: (1 << 0x12) | (1 << 0x13) | (1 << 0x1b),
        src_mask: 1,
    }
}

/// Result of [`assess`]: per-probe statuses and the kprobes' BTF layout.
pub struct Assessment {
    pub probes: Vec<ProbeStatus>,
    pub job_layout: JobLayout,
    /// Which module's BTF gave `job_layout` or why it could not.
    pub btf_note: String,
    /// The KFD queue probes' offsets (`kfd::layout`) and where they came from.
    pub kfd_layout: KfdLayout,
    pub kfd_note: String,
    /// BTF paths from scheduler objects to their device name (for kernels whose tracepoints
    /// do not print `dev`), and which paths exist or why none does.
    pub dev_layout: DevLayout,
    pub dev_note: String,
    /// `struct dma_fence` offsets (vmlinux BTF) for the recorder's ≤ 6.16 finish event, or
    /// why there are none.
    pub fence_layout: Result<FenceLayout, String>,
    /// The flight recorder's mode and pinning, decided at attach.
    pub recorder: recorder::Plan,
}

/// Why probes cannot load without the capabilities, naming the missing ones.
fn no_caps_reason() -> String {
    let caps = crate::capabilities::CapSet::current();
    let mut missing = caps.missing_for_probes();
    if missing.is_empty() {
        missing = vec!["CAP_BPF", "CAP_PERFMON"];
    }
    crate::capabilities::probe_caps_fix(&missing)
}

/// tracefs usually exists but is mode 0700: say it cannot be read, and what grants it,
/// instead of "not mounted".
fn no_tracefs_reason(host: &Host) -> String {
    let t = Path::new("/sys/kernel/tracing");
    let unreadable = t.is_dir()
        && std::fs::read_dir(t).is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
    if !host.root && t.is_dir() {
        format!(
            "tracefs not readable: {} and CAP_DAC_READ_SEARCH",
            no_caps_reason()
        )
    } else if unreadable {
        "tracefs (/sys/kernel/tracing, mode 0700) not readable: missing CAP_DAC_READ_SEARCH (or run as root)".into()
    } else {
        format!("tracefs not mounted: {TRACEFS_FIX}")
    }
}

fn amdgpu_hint(sys: &str) -> &'static str {
    match sys {
        "amdgpu" if !Path::new("/sys/module/amdgpu").exists() => " (module amdgpu not loaded)",
        "gpu_scheduler" if !Path::new("/sys/module/gpu_sched").exists() => {
            " (module gpu_sched not loaded)"
        }
        _ => "",
    }
}

fn assess_tracepoint(
    host: &Host,
    spec: &'static ProbeSpec,
    variants: &'static [catalogue::TpVariant],
) -> ProbeStatus {
    let mut st = ProbeStatus {
        name: spec.name,
        status: Status::Missing,
        reason: String::new(),
        spec,
        tracepoint: None,
        layout: None,
    };
    let Some(tracefs) = &host.tracefs else {
        st.reason = no_tracefs_reason(host);
        return st;
    };
    let Some(var) = variants
        .iter()
        .find(|v| tracefs.join("events").join(v.sys).join(v.event).is_dir())
    else {
        let names: Vec<_> = variants
            .iter()
            .map(|v| format!("{}:{}", v.sys, v.event))
            .collect();
        st.reason = format!(
            "tracepoint {} absent on this kernel{}",
            names.join(" / "),
            amdgpu_hint(variants[0].sys)
        );
        return st;
    };
    st.tracepoint = Some((var.sys, var.event));
    let layout = if var.bindings.is_empty() {
        Ok(TpLayout {
            present: 1,
            ..Default::default()
        })
    } else {
        read_format(tracefs, var.sys, var.event).and_then(|f| build_layout(&f, var.bindings))
    };
    match layout {
        Ok(l) => {
            st.layout = Some(l);
            st.status = Status::Available;
            st.reason = format!("{}:{}", var.sys, var.event);
        }
        Err(e) => st.reason = format!("unsupported format of {}:{}: {e}", var.sys, var.event),
    }
    if !host.root && st.status == Status::Available {
        st.status = Status::Missing;
        st.reason = format!("{}; {}", no_caps_reason(), st.reason);
    }
    st
}

fn assess_kprobe(
    host: &Host,
    spec: &'static ProbeSpec,
    symbol: &str,
    jl: &JobLayout,
    btf_note: &str,
) -> ProbeStatus {
    let mut st = ProbeStatus {
        name: spec.name,
        status: Status::Missing,
        reason: String::new(),
        spec,
        tracepoint: None,
        layout: None,
    };
    if host.tracefs.is_none() {
        st.reason = no_tracefs_reason(host);
        return st;
    }
    if !host.kprobes_supported {
        st.reason = "kprobes not supported by this kernel (no kprobe_events in tracefs)".into();
        return st;
    }
    let in_kallsyms = btf::symbol_module(&host.kallsyms, symbol).is_some();
    let in_filter = host.filter_functions.as_ref().map(|f| f.contains(symbol));
    match (in_kallsyms, in_filter) {
        (false, _) => {
            st.reason = format!(
                "symbol {symbol} not in /proc/kallsyms{}",
                amdgpu_hint("amdgpu")
            );
            return st;
        }
        (true, Some(false)) => {
            st.reason =
                format!("symbol {symbol} not in available_filter_functions (inlined or notrace)");
            return st;
        }
        _ => {}
    }
    st.status = Status::Available;
    st.reason = if spec.needs_btf && jl.valid == 0 {
        format!("degraded: {btf_note}; reports only that it fired")
    } else {
        String::new()
    };
    if !host.root {
        st.status = Status::Missing;
        st.reason = no_caps_reason();
    }
    st
}

/// Decides every probe of the catalogue on `host`.
pub fn assess(host: &Host) -> Assessment {
    let (btf, btf_note) = match btf::symbol_module(&host.kallsyms, "amdgpu_job_timedout") {
        None => (
            Err("amdgpu_job_timedout not in kallsyms".to_string()),
            String::new(),
        ),
        Some(m) if m.is_empty() => (load_btf(host, "vmlinux"), "vmlinux".to_string()),
        Some(m) => (load_btf(host, &m), m),
    };
    let (job_layout, btf_note) = match btf.as_ref().map(btf::job_layout) {
        Ok(Ok(l)) => (l, format!("BTF of {btf_note}")),
        Ok(Err(e)) => (JobLayout::default(), e),
        Err(e) => (JobLayout::default(), e.clone()),
    };
    let (dev_layout, dev_note) = match btf.as_ref() {
        Ok(b) => btf::dev_layout(b),
        Err(e) => (DevLayout::default(), e.clone()),
    };
    let fence_layout = match btf.as_ref() {
        Ok(b) => btf::fence_layout(b),
        Err(_) => load_btf(host, "vmlinux").and_then(|b| btf::fence_layout(&b)),
    };
    let mut probes: Vec<ProbeStatus> = CATALOGUE
        .iter()
        .map(|spec| match spec.hook {
            Hook::Tracepoint { variants } => assess_tracepoint(host, spec, variants),
            Hook::Kprobe { symbol } | Hook::Kretprobe { symbol } => {
                assess_kprobe(host, spec, symbol, &job_layout, &btf_note)
            }
        })
        .collect();
    let (kfd_layout, kfd_note) =
        crate::sources::kfd::layout::for_host(&host.kallsyms, &host.btf_dir);
    compute_notes(&mut probes, &kfd_layout, &kfd_note);
    Assessment {
        probes,
        job_layout,
        btf_note,
        dev_layout,
        dev_note,
        kfd_layout,
        kfd_note,
        fence_layout,
        recorder: recorder::Plan::default(),
    }
}

/// Whether the three job probes can feed the in-kernel recorder on this kernel.
pub fn recorder_usable(a: &Assessment) -> Result<(), String> {
    let status = |name: &str| a.probes.iter().find(|p| p.name == name);
    for name in ["amdgpu_cs_ioctl", "amdgpu_sched_run_job", "sched_job_done"] {
        match status(name) {
            Some(p) if p.status == Status::Available => {}
            _ => return Err(format!("{name} is not available")),
        }
    }
    let legacy_done = status("sched_job_done")
        .and_then(|p| p.tracepoint)
        .is_some_and(|(_, event)| event == "drm_sched_process_job");
    match (&a.fence_layout, legacy_done) {
        (Err(why), true) => Err(format!("drm_sched_process_job needs dma_fence BTF ({why})")),
        _ => Ok(()),
    }
}

/// The KFD queue probes degrade with their own BTF (`KfdLayout`): without it they still say
/// who created or destroyed a queue, but not which one. The user-queue fence filter runs on
/// every dma_fence signal, so it is only attached where user queues exist (7.x).
fn compute_notes(probes: &mut [ProbeStatus], l: &KfdLayout, note: &str) {
    let userq = probes
        .iter()
        .any(|p| p.name == "amdgpu_userq_emit_fence" && p.status == Status::Available);
    if let Some(p) = probes
        .iter_mut()
        .find(|p| p.name == "userq_fence_signaled" && p.status == Status::Available && !userq)
    {
        p.status = Status::Missing;
        p.reason = "no user queues on this kernel (amdgpu:amdgpu_userq_emit_fence absent)".into();
    }
    for p in probes
        .iter_mut()
        .filter(|p| p.status == Status::Available && p.spec.program.starts_with("hw_kfd"))
    {
        let doorbell = p.spec.program.starts_with("hw_kfd_queue_doorbell");
        if l.valid_ioctl == 0 || (doorbell && l.valid_queue == 0) {
            p.reason = format!("degraded: {note}; reports only that it fired");
        } else {
            p.reason = note.to_string();
        }
    }
}

fn load_btf(host: &Host, module: &str) -> Result<btf::Btf, String> {
    if module == "vmlinux" {
        std::fs::read(host.btf_dir.join("vmlinux"))
            .map_err(|e| format!("no vmlinux BTF: {e}"))
            .and_then(|b| btf::Btf::parse(&b))
    } else {
        btf::load_module(&host.btf_dir, module)
    }
}

/// Options for [`attach`].
#[derive(Clone, Debug)]
pub struct AttachOptions {
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_bytes: u32,
    pub iv_filter: IvFilter,
    /// Read device names through BTF ([`Assessment::dev_layout`]) in the scheduler and
    /// kprobe programs. Costs a few probe reads per scheduler event; worth it only when the
    /// host has more than one GPU (`devices::Devices::needs_kernel_names`).
    pub device_names: bool,
    /// Attach the per-job detail probes too ([`catalogue::DETAIL`]); else they stay `Off`.
    pub trace_all: bool,
    /// Keep the flight recorder in the kernel where it can run (else per-job events).
    pub recorder: bool,
    /// Pin the recorder under this directory, so a restart continues its history.
    pub pin_root: Option<PathBuf>,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            ring_bytes: 4 << 20,
            iv_filter: default_iv_filter(),
            device_names: false,
            trace_all: true,
            recorder: true,
            pin_root: None,
        }
    }
}

/// First useful line of a load/attach error: for verifier failures, the verifier's verdict
/// (see [`verifier_verdict`]).
pub fn first_error_line(e: &aya::programs::ProgramError) -> String {
    if let aya::programs::ProgramError::LoadError {
        io_error,
        verifier_log,
    } = e
    {
        let log = verifier_log.to_string();
        return format!(
            "verifier rejected it ({io_error}): {}",
            verifier_verdict(&log)
        );
    }
    let s = format!("{e}");
    s.lines().next().unwrap_or("").to_string()
}

/// The line of a verifier log that says why it refused: the last line that is neither an
/// instruction dump, a register-state line nor the closing statistics. Verifiers before 5.12
/// open every log with notes such as "arg#0 type is not a struct" that are not the verdict.
pub fn verifier_verdict(log: &str) -> &str {
    let chatter = |l: &str| {
        l.starts_with(|c: char| c.is_ascii_digit() || c == ';' || c == '(')
            || [
                "processed ",
                "verification time",
                "stack depth",
                "from ",
                "last_idx ",
                "regs=",
            ]
            .iter()
            .any(|p| l.starts_with(p))
    };
    let lines = log.lines().map(str::trim).filter(|l| !l.is_empty());
    lines
        .clone()
        .rfind(|l| !chatter(l))
        .or_else(|| lines.clone().next())
        .unwrap_or("")
}

/// Loads the eBPF object and attaches every `Available` probe in `a.probes`, updating each
/// status to `Attached` or `Failed` (with the error). The returned [`Ebpf`] owns the links:
/// dropping it detaches everything.
pub fn attach(a: &mut Assessment, opts: &AttachOptions) -> anyhow::Result<Ebpf> {
    a.recorder = recorder::plan(recorder_usable(a), opts.recorder, opts.trace_all);
    if a.recorder.recording() {
        if let Some(root) = &opts.pin_root {
            recorder::prepare_pin(&mut a.recorder, root);
        }
    }
    let mut ebpf = match load(a, opts) {
        Ok(e) => e,
        // A pinned recorder this agent cannot reuse (another owner, a damaged pin) must not
        // cost the probes: load again with a private, unpinned one.
        Err(e) if a.recorder.pin.is_some() => {
            a.recorder.pin = None;
            a.recorder.note +=
                &format!("; the pinned recorder is unusable ({e}): running unpinned");
            load(a, opts).map_err(|e| anyhow::anyhow!("loading the eBPF object failed: {e}"))?
        }
        Err(e) => anyhow::bail!("loading the eBPF object failed: {e}"),
    };
    if a.recorder.recording() && !opts.trace_all {
        switch_off_detail(&mut a.probes);
    }
    for p in a
        .probes
        .iter_mut()
        .filter(|p| p.status == Status::Available)
    {
        let r = attach_one(&mut ebpf, p);
        match r {
            Ok(()) => p.status = Status::Attached,
            Err(e) => {
                p.status = Status::Failed;
                p.reason = e;
            }
        }
    }
    Ok(ebpf)
}

/// Loads the object with every load-time global of `a` and `opts`, and the recorder's pin.
fn load(a: &Assessment, opts: &AttachOptions) -> Result<Ebpf, aya::EbpfError> {
    let mut loader = EbpfLoader::new();
    for p in &a.probes {
        if let (Some(g), Some(l)) = (p.spec.layout_global, p.layout.as_ref()) {
            loader.override_global(g, l, true);
        }
    }
    loader.override_global("JOB_LAYOUT", &a.job_layout, true);
    loader.override_global("KFD_LAYOUT", &a.kfd_layout, true);
    loader.override_global("IV_FILTER", &opts.iv_filter, true);
    let dev = if opts.device_names {
        a.dev_layout
    } else {
        DevLayout::default()
    };
    loader.override_global("DEV_LAYOUT", &dev, true);
    let fence = a.fence_layout.clone().unwrap_or_default();
    loader.override_global("FENCE_LAYOUT", &fence, true);
    loader.override_global("REC_MODE", &a.recorder.mode, true);
    if let Some(pin) = &a.recorder.pin {
        loader.map_pin_path("RECORDER", pin.as_path());
    }
    loader.map_max_entries("EVENTS", opts.ring_bytes.max(4096).next_power_of_two());
    loader.load(EBPF_OBJECT)
}

/// Leaves the per-job detail probes unattached, saying how to get them.
fn switch_off_detail(probes: &mut [ProbeStatus]) {
    let detail = probes
        .iter_mut()
        .filter(|p| p.status == Status::Available && catalogue::DETAIL.contains(&p.name));
    for p in detail {
        p.status = Status::Off;
        p.reason =
            "per-job detail, attached with --trace-all (the flight recorder runs in the kernel)"
                .into();
    }
}

fn attach_one(ebpf: &mut Ebpf, p: &ProbeStatus) -> Result<(), String> {
    let prog = ebpf
        .program_mut(p.spec.program)
        .ok_or_else(|| format!("program {} not in the eBPF object", p.spec.program))?;
    match p.spec.hook {
        Hook::Tracepoint { .. } => {
            let (sys, event) = p.tracepoint.ok_or("no tracepoint chosen")?;
            let tp: &mut TracePoint = prog.try_into().map_err(|e| format!("{e}"))?;
            tp.load().map_err(|e| first_error_line(&e))?;
            tp.attach(sys, event).map_err(|e| first_error_line(&e))?;
        }
        Hook::Kprobe { symbol } | Hook::Kretprobe { symbol } => {
            let kp: &mut KProbe = prog.try_into().map_err(|e| format!("{e}"))?;
            kp.load().map_err(|e| first_error_line(&e))?;
            kp.attach(symbol, 0).map_err(|e| first_error_line(&e))?;
        }
    }
    Ok(())
}

/// Loads (verifies) every program of the object with the given layouts, without attaching:
/// `(program, Ok | first error line)`. Lets a kernel without the hooks still prove that its
/// verifier accepts the code (see the root-only test below).
pub fn verify_all(
    tp: &TpLayout,
    job: &JobLayout,
    kfd: &KfdLayout,
    dev: &DevLayout,
    rec_mode: u32,
) -> anyhow::Result<Vec<(&'static str, Result<(), String>)>> {
    let iv = default_iv_filter();
    let mut loader = EbpfLoader::new();
    for spec in CATALOGUE {
        if let Some(g) = spec.layout_global {
            loader.override_global(g, tp, true);
        }
    }
    loader.override_global("JOB_LAYOUT", job, true);
    loader.override_global("KFD_LAYOUT", kfd, true);
    loader.override_global("IV_FILTER", &iv, true);
    loader.override_global("DEV_LAYOUT", dev, true);
    // The recorder's paths are live only when its mode says so (the verifier prunes the rest).
    let fence = FenceLayout {
        context: 24,
        seqno: 32,
        valid: 1,
        _pad: 0,
    };
    loader.override_global("FENCE_LAYOUT", &fence, true);
    loader.override_global("REC_MODE", &rec_mode, true);
    let mut ebpf = loader.load(EBPF_OBJECT)?;
    let mut out = Vec::new();
    for spec in CATALOGUE {
        let r = match ebpf.program_mut(spec.program) {
            None => Err("not in object".to_string()),
            Some(prog) => match spec.hook {
                Hook::Tracepoint { .. } => <&mut TracePoint>::try_from(prog)
                    .map_err(|e| e.to_string())
                    .and_then(|t| t.load().map_err(|e| first_error_line(&e))),
                _ => <&mut KProbe>::try_from(prog)
                    .map_err(|e| e.to_string())
                    .and_then(|k| k.load().map_err(|e| first_error_line(&e))),
            },
        };
        out.push((spec.program, r));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_tracefs(dir: &Path, events: &[(&str, &str, &str)]) {
        for (sys, ev, fmt) in events {
            let d = dir.join("events").join(sys).join(ev);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("format"), fmt).unwrap();
        }
    }

    fn status<'a>(a: &'a Assessment, name: &str) -> &'a ProbeStatus {
        a.probes.iter().find(|p| p.name == name).unwrap()
    }

    #[test]
    fn no_tracefs_names_the_mount_fix() {
        let a = assess(&Host {
            root: true,
            ..Default::default()
        });
        assert!(a.probes.iter().all(|p| p.status == Status::Missing));
        assert!(status(&a, "amdgpu_cs_ioctl").reason.contains(TRACEFS_FIX));
        assert!(status(&a, "kprobe:amdgpu_job_timedout")
            .reason
            .contains(TRACEFS_FIX));
    }

    #[test]
    fn picks_617_scheduler_events_and_reports_bad_formats() {
        let dir = std::env::temp_dir().join(format!("hw-probes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let queue = "name: drm_sched_job_queue\nformat:\n\tfield:__data_loc char[] name;\toffset:8;\tsize:4;\tsigned:0;\n\
\tfield:u64 fence_context;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:u64 fence_seqno;\toffset:24;\tsize:8;\tsigned:0;\n\
\tfield:u64 client_id;\toffset:32;\tsize:8;\tsigned:0;\nprint fmt: \"\"\n";
        fake_tracefs(
            &dir,
            &[
                ("gpu_scheduler", "drm_sched_job_queue", queue),
                ("gpu_scheduler", "drm_sched_job", "garbage"),
                ("dma_fence", "dma_fence_init", "name: dma_fence_init\nformat:\n\tfield:int x;\toffset:8;\tsize:4;\tsigned:1;\nprint fmt: \"\"\n"),
            ],
        );
        let host = Host {
            root: true,
            tracefs: Some(dir.clone()),
            kprobes_supported: false,
            ..Default::default()
        };
        let a = assess(&host);
        let q = status(&a, "sched_job_queue");
        assert_eq!(q.status, Status::Available, "{}", q.reason);
        assert_eq!(q.tracepoint, Some(("gpu_scheduler", "drm_sched_job_queue")));
        let f = status(&a, "dma_fence_init");
        assert_eq!(f.status, Status::Missing);
        assert!(
            f.reason.contains("unsupported format") && f.reason.contains("driver"),
            "{}",
            f.reason
        );
        assert!(status(&a, "amdgpu_iv").reason.contains("absent"));
        assert!(status(&a, "kprobe:amdgpu_job_timedout")
            .reason
            .contains("kprobes not supported"));
        let nonroot = assess(&Host {
            root: false,
            ..host
        });
        assert!(status(&nonroot, "sched_job_queue")
            .reason
            .contains("CAP_PERFMON"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Root-only: the running kernel's verifier accepts every program with realistic layouts
    /// (all slots bound, valid JobLayout so the kprobes' read paths are live).
    #[test]
    fn verifier_accepts_all_programs_on_this_kernel() {
        if !crate::capabilities::CapSet::current().can_load_probes() {
            eprintln!("no CAP_BPF + CAP_PERFMON; skipping");
            return;
        }
        use agent_common::{field, slot, FieldLoc};
        let mut tp = TpLayout {
            present: 1,
            ..Default::default()
        };
        let s = |o| FieldLoc::new(o, 4, field::DATA_LOC_STR);
        tp.fields[slot::RING] = s(12);
        tp.fields[slot::DRIVER] = s(8);
        tp.fields[slot::DEV] = FieldLoc::new(8, 8, field::STR_PTR);
        // Every body word bound, with every integer size and an array index.
        for (i, size) in [4, 8, 2, 1, 4, 4, 8, 4].into_iter().enumerate() {
            tp.fields[slot::WORD0 + i] = FieldLoc::new(16, size, field::INT).at(i as u8 % 4);
        }
        let job = JobLayout {
            job_base: 0,
            job_pasid: 600,
            sjob_sched: 80,
            sjob_s_fence: 72,
            sjob_id: 96,
            sched_name: 32,
            sched_name_is_ptr: 1,
            sfence_finished: 64,
            fence_context: 32,
            fence_seqno: 40,
            reset_src: 8,
            valid: 1,
        };
        // The real 6.1 offsets (docs/compute.md), and the degraded layout.
        let kfd = KfdLayout {
            create_gpu_id: 36,
            create_queue_type: 40,
            create_queue_id: 52,
            create_doorbell_offset: 24,
            destroy_queue_id: 0,
            q_queue_id: 48,
            q_doorbell_off: 104,
            q_type: 40,
            process_pasid: 160,
            valid_ioctl: 1,
            valid_queue: 1,
            _pad: 0,
        };
        use agent_common::rec::{MODE_BOTH, MODE_EVENTS, MODE_RECORDER};
        let cases = [
            (1, kfd, MODE_BOTH),
            (0, KfdLayout::NONE, MODE_RECORDER),
            (1, kfd, MODE_EVENTS),
        ];
        for (inline, kfd, mode) in cases {
            let job = JobLayout {
                sched_name_is_ptr: inline,
                ..job
            };
            let dev = DevLayout {
                entity_rq: 48,
                rq_sched: 0,
                sched_dev: 1500,
                adev_dev: 8,
                dev_name: 0,
                valid: agent_common::dev_path::SCHED
                    | agent_common::dev_path::ENTITY
                    | agent_common::dev_path::ADEV,
            };
            let res = verify_all(&tp, &job, &kfd, &dev, mode).unwrap();
            let bad: Vec<_> = res.iter().filter(|(_, r)| r.is_err()).collect();
            assert!(bad.is_empty(), "{bad:?}");
            assert_eq!(res.len(), CATALOGUE.len());
        }
    }

    #[test]
    fn kprobe_symbol_checks() {
        let dir = std::env::temp_dir().join(format!("hw-probes-k-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("events")).unwrap();
        let host = Host {
            root: true,
            tracefs: Some(dir.clone()),
            kprobes_supported: true,
            kallsyms: "0 t amdgpu_job_timedout\t[simgpu]\n0 T amdgpu_cs_ioctl\t[simgpu]\n".into(),
            filter_functions: Some(["amdgpu_job_timedout".to_string()].into_iter().collect()),
            btf_dir: dir.join("nobtf"),
        };
        let a = assess(&host);
        let t = status(&a, "kprobe:amdgpu_job_timedout");
        assert_eq!(t.status, Status::Available);
        // The owner module comes from kallsyms, not a hard-coded name.
        assert!(a.btf_note.contains("simgpu"), "{}", a.btf_note);
        assert!(t.reason.contains("degraded"));
        assert!(status(&a, "kretprobe:amdgpu_cs_ioctl")
            .reason
            .contains("available_filter_functions"));
        assert!(status(&a, "kprobe:amdgpu_device_gpu_recover")
            .reason
            .contains("kallsyms"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_verdict_is_the_last_line_before_the_statistics() {
        // Shape of a 5.10 rejection: a benign BTF note first, the verdict last.
        let log = "func#0 @0\narg#0 type is not a struct\n0: (79) r7 = *(u64 *)(r1 +80)\n\
                   689: (79) r3 = *(u64 *)(r10 -40)\ninvalid read from stack off -40+0 size 8\n\
                   processed 143 insns (limit 1000000) max_states_per_insn 0\n";
        assert_eq!(
            verifier_verdict(log),
            "invalid read from stack off -40+0 size 8"
        );
        assert_eq!(verifier_verdict("0: (b7) r0 = 0\n"), "0: (b7) r0 = 0");
        assert_eq!(verifier_verdict(""), "");
    }

    /// The committed real-driver captures of every kernel series in the VM matrix
    /// (testdata/formats/<series>.txt) as a tracefs: every tracepoint probe binds, 7.x picks the
    /// uAPI scheduler events with their `dev`, the older series the legacy ones with `entity`.
    #[test]
    fn every_series_capture_binds_and_picks_its_scheduler_events() {
        use agent_common::{slot, JobSlots};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/formats");
        let mut series = 0;
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(s) = name.strip_suffix(".txt") else {
                continue;
            };
            let root = std::env::temp_dir().join(format!("hw-cap-{}-{s}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            let text = std::fs::read_to_string(e.path()).unwrap();
            let mut events = Vec::new();
            for chunk in text.split("\n== ").skip(1) {
                let (id, body) = chunk.split_once('\n').unwrap();
                let (sys, ev) = id.trim().split_once('/').unwrap();
                events.push((sys.to_string(), ev.to_string(), body.to_string()));
            }
            events.push(("sched".into(), "sched_process_exit".into(), String::new()));
            let ev_refs: Vec<(&str, &str, &str)> = events
                .iter()
                .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
                .collect();
            fake_tracefs(&root, &ev_refs);
            let a = assess(&Host {
                root: true,
                tracefs: Some(root.clone()),
                ..Default::default()
            });
            let new = s.starts_with('7');
            for p in a
                .probes
                .iter()
                .filter(|p| p.tracepoint.is_some() || p.layout.is_some())
            {
                // The user-queue fence filter binds dma_fence_signaled, but is only attached
                // where user queues exist (7.x).
                let want = if p.name == "userq_fence_signaled" && !new {
                    Status::Missing
                } else {
                    Status::Available
                };
                assert_eq!(p.status, want, "{s}: {} {}", p.name, p.reason);
            }
            let tp = |n: &str| status(&a, n).tracepoint.map(|(_, e)| e);
            let layout = |n: &str| status(&a, n).layout.unwrap();
            assert_eq!(
                tp("sched_job_queue"),
                Some(if new {
                    "drm_sched_job_queue"
                } else {
                    "drm_sched_job"
                }),
                "{s}"
            );
            assert_eq!(
                tp("sched_job_done"),
                Some(if new {
                    "drm_sched_job_done"
                } else {
                    "drm_sched_process_job"
                }),
                "{s}"
            );
            for n in ["sched_job_queue", "sched_job_run"] {
                let l = layout(n);
                assert_eq!(l.fields[slot::DEV].is_present(), new, "{s} {n} dev");
                assert_eq!(
                    l.fields[JobSlots::ENTITY].is_present(),
                    !new,
                    "{s} {n} entity"
                );
                assert_eq!(l.fields[JobSlots::CLIENT_ID].is_present(), new, "{s} {n}");
            }
            // 7.x amdgpu events: u64 fence keys, no sched_job_id.
            let cs = layout("amdgpu_cs_ioctl");
            assert_eq!(
                cs.fields[JobSlots::CONTEXT].size,
                if new { 8 } else { 4 },
                "{s}"
            );
            assert_eq!(cs.fields[JobSlots::JOB_ID].is_present(), !new, "{s}");
            let _ = std::fs::remove_dir_all(&root);
            series += 1;
        }
        assert!(series >= 4, "captures: {series}");
    }
}
