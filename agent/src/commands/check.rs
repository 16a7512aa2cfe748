//! `hangwatch check`: what this host can observe, and for everything it cannot, why and the fix.
//! `--attach` really loads and attaches every available probe (proves the verifier accepts
//! them), then detaches. `--json` prints one object (schema in docs/probes.md).
use std::path::Path;

use serde::Serialize;

use crate::sinks::messages;
use crate::sources::devices::{self, Plan};
use crate::sources::probes::{self, AttachOptions, Host, ProbeStatus, Status};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Load and attach every available probe, then detach.
    #[arg(long)]
    pub attach: bool,
    /// Validate this config file and print the effective settings
    /// [default: /etc/hangwatch/config.toml when it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Attempt to attach even without CAP_BPF/CAP_PERFMON, so the kernel's own refusal shows
    /// (the capability experiment in docs/operations.md).
    #[arg(long, hide = true)]
    pub ignore_capabilities: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    kernel: String,
    root: bool,
    tracefs: Option<String>,
    btf_vmlinux: bool,
    /// Modules with BTF that own a probed symbol (or all DRM-ish ones), and the total count.
    btf_modules: Vec<String>,
    btf_module_count: usize,
    kprobe_btf: &'a str,
    /// Where the flight recorder runs (in the kernel, or per-job events) and why.
    flight_recorder: String,
    amdgpu_loaded: bool,
    amdgpu_version: Option<String>,
    kmsg_readable: bool,
    /// Which GPU probe events will be attributed to, and how (exact or guessed).
    device_labels: &'a Plan,
    /// Effective capabilities the agent uses: (name, present, why).
    capabilities: Vec<(&'static str, bool, &'static str)>,
    /// The config file checked and its effective settings (or the error).
    config: Option<ConfigReport>,
    /// Set when kernel.perf_event_paranoid > 2 refuses perf_event_open to this process.
    perf_event_paranoid_blocks: Option<String>,
    probes: &'a [ProbeStatus],
    /// Something can run (a probe or the kernel-log reader).
    runnable: bool,
}

#[derive(Serialize)]
struct ConfigReport {
    path: String,
    error: Option<String>,
    effective: Option<crate::config::Settings>,
}

/// The config to check: the one given, else the service's when it exists.
fn check_config(path: Option<&Path>) -> Option<ConfigReport> {
    let default = Path::new(crate::config::DEFAULT_CONFIG);
    let path = path.or_else(|| default.exists().then_some(default))?;
    let r = crate::config::load(path).and_then(|f| crate::config::Settings::from_file(&f, path));
    Some(match r {
        Ok(s) => ConfigReport {
            path: path.display().to_string(),
            error: None,
            effective: Some(s),
        },
        Err(e) => ConfigReport {
            path: path.display().to_string(),
            error: Some(format!("{e:#}")),
            effective: None,
        },
    })
}

fn read_trim(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Whether `/dev/kmsg` can be opened for reading (the always-on kernel-log cross-check).
pub fn kmsg_readable() -> bool {
    std::fs::File::open("/dev/kmsg").is_ok()
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut host = Host::detect();
    host.root |= args.ignore_capabilities;
    let mut a = probes::assess(&host);
    let plan = devices::plan(&a, &devices::discover(Path::new("/sys")));
    let mut attach_error = None;
    if args.attach && a.probes.iter().any(|p| p.status == Status::Available) {
        let opts = AttachOptions {
            device_names: plan.needs_kernel_names(),
            ..Default::default()
        };
        match probes::attach(&mut a, &opts) {
            Ok(ebpf) => drop(ebpf), // detaches everything
            Err(e) => attach_error = Some(format!("{e:#}")),
        }
        let level =
            crate::capabilities::perf_paranoid_blocks(crate::capabilities::CapSet::current());
        crate::daemon::start::annotate_paranoid(&mut a, level);
    }
    let btf_dir = Path::new("/sys/kernel/btf");
    let mut mods: Vec<String> = std::fs::read_dir(btf_dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    mods.retain(|m| m != "vmlinux");
    mods.sort();
    let count = mods.len();
    let interesting: Vec<String> = mods
        .into_iter()
        .filter(|m| {
            m.contains("amdgpu") || m.contains("sched") || m.starts_with("drm") || m.contains("gpu")
        })
        .collect();
    let kmsg = kmsg_readable();
    let usable = a
        .probes
        .iter()
        .any(|p| matches!(p.status, Status::Available | Status::Attached));
    let runnable = usable || kmsg;
    let caps = crate::capabilities::CapSet::current();
    let config = check_config(args.config.as_deref());
    let config_bad = config.as_ref().is_some_and(|c| c.error.is_some());
    let report = Report {
        kernel: read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
        root: host.root,
        tracefs: host.tracefs.as_ref().map(|p| p.display().to_string()),
        btf_vmlinux: btf_dir.join("vmlinux").exists(),
        btf_modules: interesting,
        btf_module_count: count,
        kprobe_btf: &a.btf_note,
        flight_recorder: if a.recorder.note.is_empty() {
            crate::sources::recorder::plan(probes::recorder_usable(&a), true, false).note
        } else {
            a.recorder.note.clone()
        },
        amdgpu_loaded: Path::new("/sys/module/amdgpu").exists(),
        amdgpu_version: read_trim("/sys/module/amdgpu/version")
            .or_else(|| read_trim("/sys/module/amdgpu/srcversion")),
        kmsg_readable: kmsg,
        device_labels: &plan,
        capabilities: crate::capabilities::NEEDS
            .iter()
            .map(|n| (n.name, caps.has(n.cap), n.why))
            .collect(),
        config,
        perf_event_paranoid_blocks: crate::capabilities::perf_paranoid_blocks(caps)
            .map(crate::capabilities::perf_paranoid_fix),
        probes: &a.probes,
        runnable,
    };
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some(e), Some(o)) = (&attach_error, v.as_object_mut()) {
            o.insert("attach_error".into(), e.clone().into());
        }
        messages::stdout(&format!("{v}\n"));
    } else {
        let mut out = render(&report);
        if let Some(e) = &attach_error {
            out += &format!("attach: {e}\n");
        }
        if !runnable {
            out += "nothing can run: no probe is available and /dev/kmsg is not readable\n";
        }
        messages::stdout(&out);
    }
    Ok(if runnable && !config_bad { 0 } else { 1 })
}

fn render_capabilities(r: &Report) -> String {
    let mut s = String::new();
    for (name, has, why) in &r.capabilities {
        s += &format!(
            "          {name:<20} {}  {why}\n",
            if *has { "yes" } else { "NO " }
        );
    }
    s
}

fn render_config(c: &ConfigReport) -> String {
    match (&c.error, &c.effective) {
        (Some(e), _) => format!("config:   {} INVALID: {e}\n", c.path),
        (None, Some(eff)) => {
            let mut s = format!("config:   {} valid; effective settings:\n", c.path);
            let v = serde_json::to_value(eff).unwrap_or_default();
            if let Some(o) = v.as_object() {
                for (k, v) in o {
                    s += &format!("          {k} = {v}\n");
                }
            }
            s
        }
        (None, None) => String::new(),
    }
}

fn render(r: &Report) -> String {
    let mut s = String::new();
    s += &format!("kernel:   {}\n", r.kernel);
    s += &format!(
        "caps:     {}\n",
        if r.root {
            "can load probes"
        } else {
            "cannot load probes (need CAP_BPF + CAP_PERFMON, or root)"
        }
    );
    s += &render_capabilities(r);
    if let Some(fix) = &r.perf_event_paranoid_blocks {
        s += &format!("perf:     {fix}\n");
    }
    s += &format!(
        "tracefs:  {}\n",
        r.tracefs
            .clone()
            .unwrap_or_else(|| format!("not mounted (fix: {})", probes::TRACEFS_FIX))
    );
    s += &format!(
        "BTF:      vmlinux {}; {} modules with BTF{}{}\n",
        if r.btf_vmlinux { "yes" } else { "no" },
        r.btf_module_count,
        if r.btf_modules.is_empty() {
            String::new()
        } else {
            format!(" (GPU-related: {})", r.btf_modules.join(", "))
        },
        format_args!("; kprobe offsets: {}", r.kprobe_btf),
    );
    s += &format!(
        "amdgpu:   {}\n",
        match (r.amdgpu_loaded, &r.amdgpu_version) {
            (false, _) => "module not loaded".to_string(),
            (true, Some(v)) => format!("loaded, version {v}"),
            (true, None) => "loaded".to_string(),
        }
    );
    s += &format!("recorder: {}\n", r.flight_recorder);
    s += &format!("gpus:     {}\n", r.device_labels.summary());
    for m in &r.device_labels.methods {
        s += &format!(
            "          {} {:11} {}\n",
            if m.exact { "exact" } else { "guess" },
            m.method.as_str(),
            m.how
        );
    }
    if let Some(c) = &r.config {
        s += &render_config(c);
    }
    s += &format!(
        "kmsg:     {}\n\n",
        if r.kmsg_readable {
            "/dev/kmsg readable (kernel-log cross-check on)"
        } else {
            "/dev/kmsg not readable"
        }
    );
    let w = r
        .probes
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    s += &format!("{:w$}  {:9}  {}\n", "probe", "status", "reason");
    for p in r.probes {
        s += &format!("{:w$}  {:9}  {}\n", p.name, p.status.as_str(), p.reason);
    }
    s
}
