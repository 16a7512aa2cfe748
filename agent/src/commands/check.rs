//! `hangwatch check`: what this host can observe, and for everything it cannot, why and the fix.
//! `--attach` really loads and attaches every available probe (proves the verifier accepts
//! them), then detaches. `--json` prints one object (schema in docs/probes.md).
use std::path::Path;

use serde::Serialize;

use crate::devices::{self, Plan};
use crate::probes::{self, AttachOptions, Host, ProbeStatus, Status};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Load and attach every available probe, then detach.
    #[arg(long)]
    pub attach: bool,
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
    amdgpu_loaded: bool,
    amdgpu_version: Option<String>,
    kmsg_readable: bool,
    /// Which GPU probe events will be attributed to, and how (exact or guessed).
    device_labels: &'a Plan,
    probes: &'a [ProbeStatus],
    /// Something can run (a probe or the kernel-log reader).
    runnable: bool,
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
    let host = Host::detect();
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
    let report = Report {
        kernel: read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
        root: host.root,
        tracefs: host.tracefs.as_ref().map(|p| p.display().to_string()),
        btf_vmlinux: btf_dir.join("vmlinux").exists(),
        btf_modules: interesting,
        btf_module_count: count,
        kprobe_btf: &a.btf_note,
        amdgpu_loaded: Path::new("/sys/module/amdgpu").exists(),
        amdgpu_version: read_trim("/sys/module/amdgpu/version")
            .or_else(|| read_trim("/sys/module/amdgpu/srcversion")),
        kmsg_readable: kmsg,
        device_labels: &plan,
        probes: &a.probes,
        runnable,
    };
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some(e), Some(o)) = (&attach_error, v.as_object_mut()) {
            o.insert("attach_error".into(), e.clone().into());
        }
        println!("{v}");
    } else {
        print!("{}", render(&report));
        if let Some(e) = &attach_error {
            println!("attach: {e}");
        }
        if !runnable {
            println!("nothing can run: no probe is available and /dev/kmsg is not readable");
        }
    }
    Ok(if runnable { 0 } else { 1 })
}

fn render(r: &Report) -> String {
    let mut s = String::new();
    s += &format!("kernel:   {}\n", r.kernel);
    s += &format!(
        "root:     {}\n",
        if r.root {
            "yes"
        } else {
            "no (probes need root: run with sudo)"
        }
    );
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
    s += &format!("gpus:     {}\n", r.device_labels.summary());
    for m in &r.device_labels.methods {
        s += &format!(
            "          {} {:11} {}\n",
            if m.exact { "exact" } else { "guess" },
            m.method.as_str(),
            m.how
        );
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
