//! A drm/amd bug report from an incident directory: a ready-to-paste markdown body plus a
//! .tar.gz with everything the driver developer asks for. It describes the machine from the
//! host facts saved in the incident directory at the hang (`host.json`), never silently from
//! the machine `bugreport` runs on. Every item that is not there is listed under "Missing"
//! with the reason — a silently absent VBIOS version wastes a round trip.
//!
//! The incident directory is read without following symlinks and only regular single-link
//! files are taken ([`crate::fsafe`]): a planted `kernel.log -> /etc/shadow` is refused.
//! Everything from it is data and is escaped ([`hangwatch_core::escape`]).
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::incident_dir::Extras;
use super::redact::Redactor;
use crate::fsafe::SafeDir;
pub use crate::sources::hostfacts::Roots;
use crate::sources::hostfacts::{reason, HostFacts, Item, MAX_DEVCOREDUMP, MAX_DEVCOREDUMPS};
use crate::sources::procinfo::identify;
use hangwatch_core::escape::{md_block, md_code};
use hangwatch_core::incident::Incident;
use hangwatch_core::render::markdown;

/// Incident files larger than this are not read (a truncated incident stays far below).
const MAX_FILE: u64 = 64 << 20;

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Remove user names, host names, addresses, serials and UUIDs (docs/security.md).
    pub redact: bool,
    /// Attach the devcoredumps saved with the incident (they hold ring and IB contents).
    pub with_devcoredump: bool,
    /// Describe the machine bugreport runs on when the incident has no saved host facts.
    pub host_facts_now: bool,
}

pub struct Bugreport {
    pub markdown: String,
    /// (item, reason) for everything that could not be read.
    pub missing: Vec<(String, String)>,
    /// Files for the archive: (name inside the archive, contents).
    pub files: Vec<(String, Vec<u8>)>,
}

/// Where the host facts in the report come from.
enum Host {
    /// Saved in the incident directory when the incident opened.
    Saved(HostFacts),
    /// Read now: the incident is from this boot of this machine, or the user asked.
    Now(HostFacts, &'static str),
    None,
}

impl Host {
    fn facts(&self) -> Option<&HostFacts> {
        match self {
            Host::Saved(f) | Host::Now(f, _) => Some(f),
            Host::None => None,
        }
    }
}

/// Everything the sections read, loaded once.
struct Input {
    dir: SafeDir,
    incident: Incident,
    extras: Option<Extras>,
    host: Host,
    missing: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
}

impl Input {
    fn miss(&mut self, item: impl Into<String>, why: impl Into<String>) {
        self.missing.push((item.into(), why.into()));
    }

    /// A file of the incident directory, or None with the reason recorded.
    fn read(&mut self, name: &str, what: &str) -> Option<Vec<u8>> {
        match self.dir.read_file(name, MAX_FILE) {
            Ok(b) => Some(b),
            Err(e) => {
                self.miss(format!("{what} ({name})"), reason(&e));
                None
            }
        }
    }

    fn item(&mut self, label: &str, it: &Item) -> Option<String> {
        match (&it.value, &it.missing) {
            (Some(v), _) => Some(v.clone()),
            (None, why) => {
                let why = why.clone().unwrap_or_else(|| "not captured".into());
                self.miss(format!("{label} ({})", it.source), why);
                None
            }
        }
    }
}

fn load(dir: &Path, roots: &Roots, opts: &Options) -> Result<Input> {
    let sd = SafeDir::open_given(dir).with_context(|| format!("opening {}", dir.display()))?;
    let bytes = sd.read_file("incident.json", MAX_FILE).with_context(|| {
        format!(
            "reading {}/incident.json (is this an incident directory?)",
            dir.display()
        )
    })?;
    let incident: Incident = serde_json::from_slice(&bytes)
        .with_context(|| format!("parsing {}/incident.json", dir.display()))?;
    let mut inp = Input {
        dir: sd,
        incident,
        extras: None,
        host: Host::None,
        missing: Vec::new(),
        files: vec![("incident.json".into(), bytes)],
    };
    if let Some(b) = inp.read("processes.json", "userspace driver mappings") {
        match serde_json::from_slice(&b) {
            Ok(x) => inp.extras = Some(x),
            Err(e) => inp.miss(
                "userspace driver mappings (processes.json)",
                format!("unparseable: {e}"),
            ),
        }
    }
    inp.host = host_facts(&mut inp, roots, opts);
    Ok(inp)
}

/// Saved host facts, else this machine's when that is known to be right (same boot) or asked
/// for; otherwise none, and the report says why.
fn host_facts(inp: &mut Input, roots: &Roots, opts: &Options) -> Host {
    match inp.dir.read_file("host.json", MAX_FILE) {
        Ok(b) => match serde_json::from_slice::<HostFacts>(&b) {
            Ok(mut f) => {
                // The bytes of saved devcoredumps are read only when attached.
                for d in f.devcoredumps.iter_mut() {
                    d.data.clear();
                }
                return Host::Saved(f);
            }
            Err(e) => inp.miss("host facts (host.json)", format!("unparseable: {e}")),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => inp.miss("host facts (host.json)", reason(&e)),
    }
    let gpu = inp.incident.gpu.clone();
    let this_boot = std::fs::read_to_string(roots.path("/proc/sys/kernel/random/boot_id"))
        .ok()
        .map(|s| s.trim().to_string());
    let same_boot = this_boot.is_some() && inp.incident.boot_id == this_boot;
    if same_boot {
        return Host::Now(
            crate::sources::hostfacts::collect(roots, gpu.as_deref()),
            "read when this report was built, on the machine and boot the incident is from (not saved at the hang)",
        );
    }
    if opts.host_facts_now {
        return Host::Now(
            crate::sources::hostfacts::collect(roots, gpu.as_deref()),
            "read when this report was built (--host-facts-now): they describe the machine that built the report",
        );
    }
    inp.miss(
        "system, GPU and firmware facts (host.json)",
        "not saved with this incident (written by `analyze` or before host facts were captured at the hang); \
         this report does not describe the machine it was built on — pass --host-facts-now if that is the machine that hung",
    );
    Host::None
}

fn summary(md: &mut String, inc: &Incident) {
    let _ = writeln!(md, "## Summary\n");
    let culprit = match &inc.culprit {
        // Rule T4: a suspect from timing alone is not a verdict; the summary must not read as one.
        Some(c) if hangwatch_core::render::text::is_suspect(inc) => format!(
            "hangwatch has a suspect, not a verdict: **{}** (confidence unknown: {})",
            markdown::process(c),
            hangwatch_core::render::text::suspicion_basis(inc)
        ),
        c => format!(
            "hangwatch attributes it to **{}** (confidence {})",
            c.as_ref()
                .map_or_else(|| "an unknown process".into(), markdown::process),
            inc.confidence.name()
        ),
    };
    let _ = writeln!(
        md,
        "{} on GPU {} ring {}; {}.\n",
        inc.kind.name(),
        inc.gpu
            .as_deref()
            .map(md_code)
            .unwrap_or_else(|| "(unknown)".into()),
        inc.ring
            .as_deref()
            .map(md_code)
            .unwrap_or_else(|| "(unknown)".into()),
        culprit,
    );
    let facts = [
        ("When", &inc.wall_time),
        ("Host", &inc.hostname),
        ("Boot", &inc.boot_id),
    ];
    for (label, v) in facts {
        if let Some(v) = v {
            let _ = writeln!(md, "- {label}: {}", md_code(v));
        }
    }
    if facts.iter().any(|(_, v)| v.is_some()) {
        md.push('\n');
    }
    if inc.provisional {
        let _ = writeln!(
            md,
            "**Provisional:** the incident was still open when it was last written (the agent \
             was still watching it, or stopped before it closed): evidence after that is missing.\n"
        );
    }
}

fn system(md: &mut String, inp: &mut Input) {
    let _ = writeln!(md, "## System\n");
    let Some(f) = inp.host.facts().cloned() else {
        let _ = writeln!(md, "Not captured with this incident (see Missing).\n");
        return;
    };
    if let Host::Now(_, why) = &inp.host {
        let _ = writeln!(md, "_These facts were {why}._\n");
    }
    let mut line = |md: &mut String, label: &str, it: &Item| {
        let v = inp.item(label, it);
        let _ = writeln!(
            md,
            "- {label}: {}",
            v.as_deref()
                .map(md_code)
                .unwrap_or_else(|| "(missing)".into())
        );
    };
    line(md, "Kernel", &f.kernel_release);
    line(md, "Build", &f.kernel_version);
    line(md, "Command line", &f.cmdline);
    let os = Item {
        value: f.os_release.value.as_deref().map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .unwrap_or(s)
                .trim_matches('"')
                .to_string()
        }),
        ..f.os_release.clone()
    };
    line(md, "OS", &os);
    line(md, "amdgpu module version", &f.amdgpu_version);
    line(md, "amdgpu module srcversion", &f.amdgpu_srcversion);
    line(md, "amdgpu packaging", &f.amdgpu_dkms);
    if let Some(why) = &f.module_params_missing {
        inp.miss("amdgpu module parameters", why.clone());
    } else {
        // The ones that decide what a hang does; the full list is in host.json.
        let keys = [
            "lockup_timeout",
            "gpu_recovery",
            "mes",
            "reset_method",
            "job_hang_limit",
            "vm_fault_stop",
            "sched_hw_submission",
        ];
        let shown: Vec<String> = keys
            .iter()
            .filter_map(|k| f.module_params.get(*k).map(|v| format!("{k}={v}")))
            .collect();
        if shown.is_empty() {
            let _ = writeln!(md, "- amdgpu parameters: (none readable)");
            inp.miss(
                "amdgpu module parameters (/sys/module/amdgpu/parameters)",
                format!("none of {} readable (amdgpu not loaded?)", keys.join(", ")),
            );
        } else {
            let _ = writeln!(md, "- amdgpu parameters: {}", md_code(&shown.join(" ")));
        }
    }
    md.push('\n');
}

fn gpu(md: &mut String, inp: &mut Input) {
    let _ = writeln!(md, "## GPU\n");
    let Some(f) = inp.host.facts().cloned() else {
        let _ = writeln!(md, "Not captured with this incident (see Missing).\n");
        return;
    };
    let Some(g) = &f.gpu else {
        inp.miss(
            "GPU PCI id, name, VBIOS",
            f.gpu_missing.clone().unwrap_or_default(),
        );
        return;
    };
    let mut fields = Vec::new();
    for (k, it) in &g.ids {
        if k == "serial_number" || k == "product_name" {
            continue;
        }
        if let Some(v) = inp.item(&format!("GPU {k}"), it) {
            fields.push(format!("{k} {v}"));
        }
    }
    let _ = writeln!(
        md,
        "- PCI {}: {}",
        md_code(&g.pci),
        md_code(&fields.join(", "))
    );
    if let Some(name) = g.ids.get("product_name").and_then(|i| i.value.clone()) {
        let _ = writeln!(md, "- Name: {}", md_code(&name));
    }
    if let Some(drv) = inp.item("GPU driver", &g.driver) {
        let _ = writeln!(md, "- Driver: {}", md_code(&drv));
        if drv != "amdgpu" {
            inp.miss(
                "GPU identity",
                format!(
                    "{} is bound to {drv}, not amdgpu: the PCI facts above describe that device",
                    g.pci
                ),
            );
        }
    }
    if let Some(fw) = inp.item("firmware versions", &g.firmware_info) {
        let _ = write!(
            md,
            "\n<details><summary>Firmware (amdgpu_firmware_info)</summary>\n{}</details>\n",
            md_block([fw.as_str()])
        );
        inp.files
            .push(("amdgpu_firmware_info.txt".into(), fw.into_bytes()));
    }
    md.push('\n');
}

/// Userspace drivers the involved processes had mapped; returns (RADV seen, radeonsi seen).
fn userspace_drivers(md: &mut String, inp: &mut Input) -> (bool, bool) {
    let _ = writeln!(md, "## Userspace drivers of involved processes\n");
    let inc = &inp.incident;
    let mut involved: Vec<(u32, String)> = Vec::new();
    if let Some(c) = &inc.culprit {
        involved.push((c.pid, c.comm.clone()));
    }
    for v in &inc.victims {
        if !involved.iter().any(|(p, _)| *p == v.pid) {
            involved.push((v.pid, v.comm.clone()));
        }
    }
    let (mut radv, mut radeonsi) = (false, false);
    let mut missing = Vec::new();
    for (pid, comm) in &involved {
        let who = format!("{}[{pid}]", md_code(comm));
        let maps = inp
            .extras
            .as_ref()
            .and_then(|x| x.process_maps.iter().find(|(p, _)| p == pid))
            .map(|(_, m)| m);
        match maps {
            Some(lines) if !lines.is_empty() => {
                let mut drivers: Vec<String> = Vec::new();
                for l in lines {
                    let path = hangwatch_core::render::rocm::maps_path(l);
                    if let Some((name, ver)) = identify(path) {
                        radv |= name == "Mesa RADV";
                        radeonsi |= name == "Mesa radeonsi";
                        let d = format!(
                            "{name} {} ({})",
                            ver.as_deref().unwrap_or("(version not in path)"),
                            md_code(path)
                        );
                        if !drivers.contains(&d) {
                            drivers.push(d);
                        }
                    }
                }
                let list = if drivers.is_empty() {
                    "no known AMD driver mapped".into()
                } else {
                    drivers.join("; ")
                };
                let _ = writeln!(md, "- {who}: {list}");
            }
            Some(_) => {
                let _ = writeln!(
                    md,
                    "- {who}: no AMD userspace driver library in its maps (captured while it ran; it submits through libdrm directly or a driver hangwatch does not know)"
                );
            }
            None => missing.push((
                format!("userspace driver of {}[{pid}]", hangwatch_core::escape::terminal(comm)),
                "no /proc/PID/maps captured at incident time (log-only analysis or the process had exited)".to_string(),
            )),
        }
    }
    inp.missing.extend(missing);
    md.push('\n');
    (radv, radeonsi)
}

/// ROCm (compute) processes: the runtime and libraries each compute candidate, the culprit
/// and the victims had mapped, from the maps captured while they lived (processes.json), and
/// the ROCm next steps; nothing for a graphics-only incident (`report::rocm`).
fn rocm(md: &mut String, inp: &Input) {
    let maps = inp.extras.as_ref().map_or(&[][..], |x| &x.process_maps[..]);
    if let Some(section) = hangwatch_core::render::rocm::section(&inp.incident, maps) {
        let _ = writeln!(md, "{section}");
    }
}

fn attribution(md: &mut String, inc: &Incident) {
    let text = hangwatch_core::render::text::render(inc);
    let _ = write!(md, "## Attribution (hangwatch)\n{}", md_block(text.lines()));
    let _ = write!(
        md,
        "## Last jobs on the hung ring\n\n{}",
        markdown::jobs_table(inc)
    );
}

fn kernel_log(md: &mut String, inp: &mut Input) {
    let _ = writeln!(md, "## Kernel log excerpt");
    match inp.read("kernel.log", "kernel-log excerpt") {
        Some(b) => {
            let s = String::from_utf8_lossy(&b).into_owned();
            md.push_str(&md_block(s.trim_end_matches('\n').lines()));
            inp.files.push(("kernel.log".into(), b));
        }
        None => md.push_str("\n(not available, see Missing)\n\n"),
    }
}

/// Devcoredumps saved with the incident: attached only when asked for, and the report says
/// which way it went.
fn devcoredump(md: &mut String, inp: &mut Input, opts: &Options) {
    let _ = writeln!(md, "## Devcoredump\n");
    let Some(f) = inp.host.facts().cloned() else {
        let _ = writeln!(md, "Not captured with this incident.\n");
        return;
    };
    if f.devcoredumps.is_empty() {
        let why = f
            .devcoredump_missing
            .clone()
            .unwrap_or_else(|| "none captured".into());
        let _ = writeln!(md, "None captured: {}\n", md_code(&why));
        inp.miss("devcoredump", why);
        return;
    }
    let saved = matches!(inp.host, Host::Saved(_));
    let mut seen: Vec<&str> = Vec::new();
    for (i, d) in f.devcoredumps.iter().enumerate() {
        // host.json is data: a list naming one large file many times is read once, and only
        // the first few entries are looked at.
        if i >= MAX_DEVCOREDUMPS || seen.contains(&d.file.as_str()) {
            let why = format!("more than {MAX_DEVCOREDUMPS} entries or a repeated name");
            let _ = writeln!(md, "- {}: **not included**: {why}", md_code(&d.file));
            inp.miss(format!("devcoredump {}", d.file), why);
            continue;
        }
        seen.push(&d.file);
        let cut = if d.truncated {
            ", truncated at capture"
        } else {
            ""
        };
        let what = format!(
            "{} ({} bytes{cut}) from {}",
            md_code(&d.file),
            d.bytes,
            md_code(&d.source)
        );
        if !opts.with_devcoredump {
            let _ = writeln!(md, "- {what}: **not included** (pass `--with-devcoredump` to attach it; it holds ring and IB contents)");
            continue;
        }
        let data = if saved {
            inp.dir
                .subdir("devcoredump")
                .and_then(|s| Ok(s.read_file(&d.file, MAX_DEVCOREDUMP + 4096)?))
        } else {
            Ok(d.data.clone())
        };
        match data {
            Ok(b) if opts.redact && std::str::from_utf8(&b).is_err() => {
                let _ = writeln!(
                    md,
                    "- {what}: **not included**: it is not text, so --redact cannot clean it"
                );
            }
            Ok(b) => {
                let red = if opts.redact { " (redacted)" } else { "" };
                let _ = writeln!(
                    md,
                    "- {what}: **included**{red} as {}",
                    md_code(&format!("devcoredump/{}", d.file))
                );
                inp.files.push((format!("devcoredump/{}", d.file), b));
            }
            Err(e) => {
                let _ = writeln!(
                    md,
                    "- {what}: **not included**: {}",
                    md_code(&format!("{e:#}"))
                );
                inp.miss(format!("devcoredump {}", d.file), format!("{e:#}"));
            }
        }
    }
    md.push('\n');
}

/// Suggested next steps, each checked against the tool's own documentation (cited beside it).
fn next_steps(md: &mut String, ring: Option<&str>, radv: bool, radeonsi: bool) {
    // The ring name comes from the log: only a plain debugfs ring name goes into a command.
    let ring = ring
        .filter(|r| {
            !r.is_empty()
                && r.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.".contains(c))
        })
        .unwrap_or("gfx_0.0.0");
    let _ = writeln!(
        md,
        "## Suggested next steps\n\n**With what was captured:**\n"
    );
    // Documentation/gpu/amdgpu/debugging.rst and the job table above: the submission history
    // names the jobs that never signaled; attach the archive with this report.
    let _ = writeln!(md, "- Attach the archive written with this report (incident.json holds the flight recorder's jobs, trace.perfetto opens in the Perfetto UI).");
    // Documentation/ABI/testing/devcoredump: the kernel keeps a dump 5 minutes; hangwatch
    // copies it into the incident when the incident opens.
    let _ = writeln!(md, "- If a devcoredump was captured, attach it (`hangwatch bugreport --with-devcoredump`): it holds the hung ring's contents and IBs.");
    let _ = writeln!(md, "\n**Before the next hang:**\n");
    if radv || !radeonsi {
        // docs.mesa3d.org/drivers/amd/hang-debugging.html: RADV_DEBUG=hang makes RADV check
        // for hangs and save a report to ~/radv_dumps_<pid>_<time> (fuller with umr installed).
        let _ = writeln!(md, "- Vulkan (RADV): run the application with `RADV_DEBUG=hang`; after a hang RADV writes `~/radv_dumps_<pid>_<time>/` (install umr for register and wave dumps). Attach that directory.");
    }
    if radeonsi || !radv {
        // Mesa docs/envvars.rst, radeonsi AMD_DEBUG: `check_vm` — "Check VM faults and dump
        // debug info."
        let _ = writeln!(md, "- OpenGL (radeonsi): run the application with `AMD_DEBUG=check_vm` to dump debug info when it causes a VM fault.");
    }
    // umr docs, "Ring and IB Decoding": `umr --ring-stream <name>[.]` decodes the packets
    // between the read and write pointers; ring names are the debugfs amdgpu_ring_* names.
    // `umr -O halt_waves -wa` is what Mesa's radeonsi runs to dump active waves (si_debug.c).
    let _ = writeln!(
        md,
        "- With umr installed, while the ring is still hung: {} (pending packets) and `sudo umr -O halt_waves -wa` (active waves).",
        md_code(&format!("sudo umr --ring-stream {ring}[.]"))
    );
    // Documentation/gpu/amdgpu/module-parameters.rst: gpu_recovery (-1 auto, 0 off, 1 on),
    // lockup_timeout (ms per ring type).
    let _ = writeln!(md, "- To get time for umr on a test machine only: boot with `amdgpu.gpu_recovery=0` (the GPU then stays hung until reboot) or a longer `amdgpu.lockup_timeout`.");
    // The devcoredump expires after 5 minutes (Documentation/ABI/testing/devcoredump).
    let _ = writeln!(md, "- Keep `hangwatch run --output DIR` running so the devcoredump and host facts are saved at the hang, before they expire.\n");
}

fn missing_section(md: &mut String, missing: &[(String, String)]) {
    let _ = writeln!(md, "## Missing\n");
    if missing.is_empty() {
        let _ = writeln!(md, "Nothing: every item was readable.");
    }
    for (item, why) in missing {
        let _ = writeln!(md, "- {}: {}", md_code(item), md_code(why));
    }
}

/// The archive's copies of the incident files (already validated reads).
fn archive_files(inp: &mut Input) {
    for f in [
        "report.md",
        "trace.perfetto",
        "processes.json",
        "host.json",
        "TRUNCATED.txt",
    ] {
        if let Ok(b) = inp.dir.read_file(f, MAX_FILE) {
            inp.files.push((f.into(), b));
        }
    }
    if let Host::Now(h, _) = &inp.host {
        if let Ok(b) = serde_json::to_vec_pretty(h) {
            inp.files.push(("host.json".into(), b));
        }
    }
}

/// incident.json and report.md of an incident already stripped of its process identities
/// (unit, user, container, pod, Slurm job, DRM client names): they say who ran what.
fn without_identities(inp: &mut Input) {
    let truncated = inp
        .files
        .iter()
        .find(|(n, _)| n == "TRUNCATED.txt")
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned());
    for (name, bytes) in inp.files.iter_mut() {
        match name.as_str() {
            "incident.json" => {
                *bytes = serde_json::to_vec_pretty(&inp.incident).unwrap_or_default();
            }
            "report.md" => {
                let mut md = markdown::render(&inp.incident);
                if let Some(t) = &truncated {
                    md += &format!("\n## Truncated\n\n{t}");
                }
                *bytes = md.into_bytes();
            }
            _ => {}
        }
    }
}

/// Redact the markdown and every text file; the binary trace is re-encoded from the redacted
/// incident.
fn redact(md: &mut String, inp: &mut Input, roots: &Roots) {
    let mut hosts: Vec<&str> = Vec::new();
    if let Some(h) = &inp.incident.hostname {
        hosts.push(h);
    }
    let mut r = Redactor::new(roots, inp.host.facts(), &hosts);
    r.learn(md);
    for (_, b) in &inp.files {
        r.learn(&String::from_utf8_lossy(b));
    }
    *md = r.apply(md);
    for (name, bytes) in inp.files.iter_mut() {
        if name != "trace.perfetto" {
            if let Ok(s) = std::str::from_utf8(bytes) {
                *bytes = r.apply(s).into_bytes();
            }
        }
    }
    let inc = inp
        .files
        .iter()
        .find(|(n, _)| n == "incident.json")
        .and_then(|(_, b)| serde_json::from_slice::<Incident>(b).ok());
    for (n, bytes) in inp.files.iter_mut() {
        if n == "trace.perfetto" {
            match &inc {
                Some(i) => *bytes = hangwatch_core::render::perfetto::encode(i),
                None => bytes.clear(),
            }
        }
    }
    inp.files
        .retain(|(n, b)| !(n == "trace.perfetto" && b.is_empty()));
}

/// Assemble the bug report for the incident in `dir`.
pub fn build(dir: &Path, roots: &Roots, opts: &Options) -> Result<Bugreport> {
    let mut inp = load(dir, roots, opts)?;
    if opts.redact {
        hangwatch_core::identity::strip(&mut inp.incident);
    }
    let mut md = String::new();
    let inc = inp.incident.clone();
    summary(&mut md, &inc);
    system(&mut md, &mut inp);
    gpu(&mut md, &mut inp);
    let (radv, radeonsi) = userspace_drivers(&mut md, &mut inp);
    rocm(&mut md, &inp);
    attribution(&mut md, &inc);
    kernel_log(&mut md, &mut inp);
    devcoredump(&mut md, &mut inp, opts);
    next_steps(&mut md, inc.ring.as_deref(), radv, radeonsi);
    let missing = inp.missing.clone();
    missing_section(&mut md, &missing);
    archive_files(&mut inp);
    if opts.redact {
        let _ = writeln!(md, "\n_Redacted: user names, host names, addresses, serials and UUIDs were replaced, and process identities (unit, user, container, pod, job, DRM client name) removed (docs/security.md)._");
        without_identities(&mut inp);
        redact(&mut md, &mut inp, roots);
    } else {
        let _ = writeln!(md, "\n_Not redacted: this report identifies the host (host name, user names, addresses, serials). `hangwatch bugreport --redact` replaces them._");
    }
    let mut files = inp.files;
    files.push(("bugreport.md".into(), md.clone().into_bytes()));
    Ok(Bugreport {
        markdown: md,
        missing,
        files,
    })
}

/// Write the archive as `<stem>/<file>` entries, mode 0600, to a new file renamed over `out`
/// (a symlink planted at `out` is replaced, never followed).
pub fn write_tar_gz(b: &Bugreport, out: &Path) -> Result<()> {
    let stem = out
        .file_name()
        .map(|s| s.to_string_lossy().trim_end_matches(".tar.gz").to_string())
        .unwrap_or_else(|| "bugreport".into());
    crate::fsafe::write_new_file(out, |f| {
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        for (name, bytes) in &b.files {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o600);
            h.set_mtime(0);
            h.set_cksum();
            tar.append_data(&mut h, format!("{stem}/{name}"), bytes.as_slice())?;
        }
        tar.into_inner()?.finish()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::incident_dir::{IncidentDir, Retention};
    use crate::sources::hostfacts::tests::fake_host;
    use hangwatch_core::testkit::disputed_incident;
    use hangwatch_core::testkit::{assert_inert, hostile, structure, HOSTILE};
    use std::fs;
    use std::path::PathBuf;

    fn roots(root: &Path) -> Roots {
        Roots {
            root: root.to_path_buf(),
            home: None,
        }
    }

    /// An incident directory as the live agent writes it: host facts captured at the hang.
    fn sample_dir(root: &Path, inc: &Incident, with_host: bool) -> PathBuf {
        let incidents = root.with_extension("incidents");
        let _ = fs::remove_dir_all(&incidents);
        let mut d = IncidentDir::open(&incidents, Retention::default()).unwrap();
        // A compute candidate's ROCm runtime, installed under a directory named like the
        // candidate (hostile names reach the library path too; maps escapes a newline).
        let rocm_dir = inc
            .compute
            .as_ref()
            .and_then(|c| c.candidates.first())
            .map_or("rocm".into(), |c| c.comm.replace('\n', "\\012"));
        let extras = Extras {
            process_maps: vec![
                (
                    7021,
                    vec![
                        "7f00-7f10 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libvulkan_radeon.so"
                            .into(),
                    ],
                ),
                (
                    4242,
                    vec![format!(
                        "7f00-7f10 r-xp 0 08:01 2 /opt/rocm-6.2.4/{rocm_dir}/libamdhip64.so.6.2.60204"
                    )],
                ),
            ],
            host: with_host.then(|| crate::sources::hostfacts::collect(&roots(root), inc.gpu.as_deref())),
        };
        d.write(inc, &extras).unwrap()
    }

    fn cleanup(root: &Path) {
        let _ = fs::remove_dir_all(root.with_extension("incidents"));
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn a_provisional_incident_says_so() {
        let root = fake_host("br-provisional");
        let mut inc = disputed_incident();
        inc.provisional = true;
        let dir = sample_dir(&root, &inc, true);
        let b = build(&dir, &roots(&root), &Options::default()).unwrap();
        assert!(b.markdown.contains("**Provisional:**"), "{}", b.markdown);
        let dir = sample_dir(&root, &disputed_incident(), true);
        let b = build(&dir, &roots(&root), &Options::default()).unwrap();
        assert!(!b.markdown.contains("Provisional"));
        cleanup(&root);
    }

    #[test]
    fn a_suspect_summary_is_not_a_verdict() {
        let root = fake_host("br-suspect");
        let dir = sample_dir(&root, &hangwatch_core::testkit::suspect_incident(), true);
        let b = build(&dir, &roots(&root), &Options::default()).unwrap();
        let summary = b.markdown.split("## System").next().unwrap_or_default();
        assert!(
            summary.contains("hangwatch has a suspect, not a verdict: **` zed `[7021]"),
            "{summary}"
        );
        assert!(
            summary.contains("(confidence unknown: log only: no progress evidence)"),
            "{summary}"
        );
        assert!(!summary.contains("attributes it to"), "{summary}");
        let dir = sample_dir(&root, &disputed_incident(), true);
        let b = build(&dir, &roots(&root), &Options::default()).unwrap();
        assert!(
            b.markdown.contains("hangwatch attributes it to **"),
            "{}",
            b.markdown
        );
        cleanup(&root);
    }

    #[test]
    fn every_section_from_saved_host_facts() {
        let root = fake_host("br-sections");
        let dir = sample_dir(&root, &disputed_incident(), true);
        // The facts come from host.json: the fake root could be gone by now.
        let elsewhere = Roots {
            root: PathBuf::from("/nonexistent"),
            home: None,
        };
        let b = build(&dir, &elsewhere, &Options::default()).unwrap();
        let md = &b.markdown;
        for s in [
            "## Summary",
            "## System",
            "## GPU",
            "## Userspace drivers",
            "## Attribution",
            "## Last jobs on the hung ring",
            "## Kernel log excerpt",
            "## Devcoredump",
            "## Suggested next steps",
            "## Missing",
        ] {
            assert!(md.contains(s), "missing section {s}:\n{md}");
        }
        assert!(md.contains("- Kernel: ` 6.1.0-56-amd64 `"), "{md}");
        assert!(md.contains("amdgpu.gpu_recovery=1"), "{md}");
        assert!(
            md.contains("lockup_timeout=0 gpu_recovery=-1 mes=1"),
            "{md}"
        );
        assert!(md.contains("device 0x7461"), "{md}");
        assert!(md.contains("- Driver: ` amdgpu `"), "{md}");
        assert!(md.contains("vbios_version 113-D7070100-100"), "{md}");
        assert!(md.contains("MEC feature version: 35"), "{md}");
        assert!(md.contains("` zed `[7021]: Mesa RADV"), "{md}");
        assert!(md.contains("RADV_DEBUG=hang"), "{md}");
        assert!(md.contains("umr --ring-stream gfx_0.0.0[.]"), "{md}");
        assert!(!md.contains("--dump-ring"), "not a umr option: {md}");
        assert!(md.contains("process Xwayland pid 6518"), "{md}");
        assert!(md.contains("DISPUTED"), "{md}");
        assert!(
            md.contains("identifies the host") && md.contains("`hangwatch bugreport --redact`"),
            "the unredacted report says so: {md}"
        );
        assert!(md.contains("| **never** |"), "{md}");
        assert!(
            md.contains("devcd1.txt") && md.contains("**not included**"),
            "{md}"
        );
        let missing: Vec<&str> = b.missing.iter().map(|(i, _)| i.as_str()).collect();
        assert!(
            missing.iter().any(|i| i.contains("amdgpu module version")),
            "{missing:?}"
        );
        assert!(
            missing
                .iter()
                .any(|i| i.contains("userspace driver of Xwayland[6518]")),
            "{missing:?}"
        );
        let names: Vec<&str> = b.files.iter().map(|(n, _)| n.as_str()).collect();
        for f in [
            "kernel.log",
            "incident.json",
            "trace.perfetto",
            "bugreport.md",
            "host.json",
            "amdgpu_firmware_info.txt",
        ] {
            assert!(names.contains(&f), "{f} not in {names:?}");
        }
        assert!(
            !names.iter().any(|n| n.starts_with("devcoredump")),
            "{names:?}"
        );
        // With --with-devcoredump it is attached, and the report says so.
        let opts = Options {
            with_devcoredump: true,
            ..Default::default()
        };
        let b2 = build(&dir, &elsewhere, &opts).unwrap();
        assert!(
            b2.markdown
                .contains("**included** as ` devcoredump/devcd1.txt `"),
            "{}",
            b2.markdown
        );
        let dump = b2
            .files
            .iter()
            .find(|(n, _)| n == "devcoredump/devcd1.txt")
            .unwrap();
        assert!(String::from_utf8_lossy(&dump.1).contains("AMDGPU Device Coredump"));
        // The archive opens and holds the same files.
        let out = root.with_extension("tar.gz");
        write_tar_gz(&b2, &out).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(fs::File::open(&out).unwrap()));
        let entries: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string())
            .collect();
        let stem = out
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".tar.gz")
            .to_string();
        assert!(
            entries.contains(&format!("{stem}/devcoredump/devcd1.txt")),
            "{entries:?}"
        );
        assert_eq!(entries.len(), b2.files.len());
        fs::remove_file(&out).unwrap();
        cleanup(&root);
    }

    #[test]
    fn without_saved_facts_it_never_describes_the_machine_it_runs_on() {
        let root = fake_host("br-elsewhere");
        let dir = sample_dir(&root, &disputed_incident(), false);
        let b = build(&dir, &roots(&root), &Options::default()).unwrap();
        assert!(!b.markdown.contains("6.1.0-56-amd64"), "{}", b.markdown);
        assert!(!b.markdown.contains("0x7461"), "{}", b.markdown);
        assert!(
            b.markdown
                .contains("does not describe the machine it was built on"),
            "{}",
            b.markdown
        );
        // Same boot as the incident: reading this machine now is right, and said.
        let mut inc = disputed_incident();
        inc.boot_id = Some("0b4f3c9e-6f1e-4d55-9a44-7f3ad1c2e001".into());
        let dir = sample_dir(&root, &inc, false);
        let b = build(&dir, &roots(&root), &Options::default()).unwrap();
        assert!(b.markdown.contains("6.1.0-56-amd64"), "{}", b.markdown);
        assert!(
            b.markdown.contains("machine and boot the incident is from"),
            "{}",
            b.markdown
        );
        // Or when asked.
        let opts = Options {
            host_facts_now: true,
            ..Default::default()
        };
        inc.boot_id = None;
        let dir = sample_dir(&root, &inc, false);
        let b = build(&dir, &roots(&root), &opts).unwrap();
        assert!(b.markdown.contains("(--host-facts-now)"), "{}", b.markdown);
        cleanup(&root);
    }

    #[test]
    fn the_shipped_example_does_not_pick_up_this_host() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/examples/zed-fault-wedges-gfx/incident");
        let b = build(&dir, &Roots::default(), &Options::default()).unwrap();
        let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert!(!b.markdown.contains(release.trim()), "{}", b.markdown);
        assert!(
            !b.markdown.contains(&format!(" {} ", host.trim())),
            "{}",
            b.markdown
        );
        // Either the facts saved in the VM at the hang, or a clear "not saved".
        match fs::read(dir.join("host.json")) {
            Ok(saved) => {
                let f: HostFacts = serde_json::from_slice(&saved).unwrap();
                let k = f.kernel_release.value.unwrap_or_default();
                assert!(
                    b.markdown.contains(&format!("- Kernel: ` {k} `")),
                    "{}",
                    b.markdown
                );
            }
            Err(_) => assert!(
                b.markdown.contains("not saved with this incident"),
                "{}",
                b.markdown
            ),
        }
    }

    #[test]
    fn gpu_bound_to_another_driver_is_flagged() {
        let root = fake_host("br-otherdrv");
        let link = root.join("sys/bus/pci/devices/0000:c3:00.0/driver");
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("../../../bus/pci/drivers/virtio-pci", &link).unwrap();
        let dir = sample_dir(&root, &disputed_incident(), true);
        let b = build(&dir, &roots(&root), &Options::default()).unwrap();
        assert!(
            b.markdown.contains("- Driver: ` virtio-pci `"),
            "{}",
            b.markdown
        );
        assert!(
            b.missing
                .iter()
                .any(|(i, w)| i == "GPU identity" && w.contains("bound to virtio-pci")),
            "{:?}",
            b.missing
        );
        cleanup(&root);
    }

    #[test]
    fn missing_gpu_and_traversal_are_reported() {
        let root = fake_host("br-nogpu");
        fs::remove_dir_all(root.join("sys/kernel/debug")).unwrap();
        let mut inc = disputed_incident();
        inc.gpu = Some("../../../../../etc".into());
        let dir = sample_dir(&root, &inc, true);
        let b = build(&dir, &roots(&root), &Options::default()).unwrap();
        assert!(b.markdown.contains("not a PCI address"), "{}", b.markdown);
        assert!(
            b.markdown.contains("userspace driver of Xwayland"),
            "{}",
            b.markdown
        );
        inc.gpu = Some("0000:c3:00.0".into());
        let dir = sample_dir(&root, &inc, true);
        let b = build(&dir, &roots(&root), &Options::default()).unwrap();
        assert!(b.markdown.contains("debugfs not mounted"), "{}", b.markdown);
        cleanup(&root);
    }

    #[test]
    fn redact_removes_planted_identities_everywhere() {
        let root = fake_host("br-redact");
        let mut inc = disputed_incident();
        inc.hostname = Some("gpubox7".into());
        inc.culprit.as_mut().unwrap().exe = Some("/scratch/jdoe/zed/bin/zed".into());
        inc.reasoning.push_str(" jdoe's build at 10.1.2.3");
        let dir = sample_dir(&root, &inc, true);
        let opts = Options {
            redact: true,
            with_devcoredump: true,
            ..Default::default()
        };
        let b = build(
            &dir,
            &Roots {
                root: root.clone(),
                home: Some("/home/bob".into()),
            },
            &opts,
        )
        .unwrap();
        for (name, bytes) in b
            .files
            .iter()
            .chain([("md".to_string(), b.markdown.clone().into_bytes())].iter())
        {
            let s = String::from_utf8_lossy(bytes);
            for planted in [
                "jdoe",
                "gpubox7",
                "builder@",
                "buildhost",
                "10.1.2.3",
                "SN-7F3A9C21",
                "2f6a1c8e",
                "0b4f3c9e",
                "/home/alice",
            ] {
                assert!(!s.contains(planted), "{planted} in {name}:\n{s}");
            }
        }
        assert!(
            b.markdown.contains("/scratch/<user>/zed/bin/zed"),
            "{}",
            b.markdown
        );
        assert!(
            b.markdown.contains("**included** (redacted)"),
            "{}",
            b.markdown
        );
        assert!(b.markdown.contains("_Redacted:"), "{}", b.markdown);
        cleanup(&root);
    }

    /// Identities show in the plain report and nowhere in the redacted one (the markdown and
    /// every archived file).
    #[test]
    fn identities_only_unredacted() {
        let root = fake_host("br-identity");
        let inc = hostile("podman-guest");
        let dir = sample_dir(&root, &inc, true);
        let plain = build(&dir, &roots(&root), &Options::default()).unwrap();
        assert!(
            plain.markdown.contains("client=podman-guest")
                && plain
                    .markdown
                    .contains("who: container podman 241e2ce08bbb"),
            "{}",
            plain.markdown
        );
        let opts = Options {
            redact: true,
            ..Default::default()
        };
        let red = build(&dir, &roots(&root), &opts).unwrap();
        for (name, bytes) in red
            .files
            .iter()
            .chain([("md".to_string(), red.markdown.clone().into_bytes())].iter())
        {
            let s = String::from_utf8_lossy(bytes);
            for planted in [
                "241e2ce08bbb",
                "\"identity\"",
                "slurm job",
                "client=",
                "] client `",
            ] {
                assert!(!s.contains(planted), "{planted} in {name}:\n{s}");
            }
        }
        cleanup(&root);
    }

    #[test]
    fn hostile_names_never_become_structure_in_the_bug_report() {
        let root = fake_host("br-hostile");
        let base = {
            let dir = sample_dir(&root, &hostile("zed"), true);
            structure(
                &build(&dir, &roots(&root), &Options::default())
                    .unwrap()
                    .markdown,
            )
        };
        for name in HOSTILE {
            let dir = sample_dir(&root, &hostile(name), true);
            let md = build(&dir, &roots(&root), &Options::default())
                .unwrap()
                .markdown;
            assert_eq!(
                structure(&md),
                base,
                "structure changed for {name:?}:\n{md}"
            );
            assert_inert(
                &md,
                &[
                    "<details><summary>Firmware (amdgpu_firmware_info)</summary>",
                    "</details>",
                ],
            );
        }
        cleanup(&root);
    }

    /// A compute incident: the ROCm section names each candidate's runtime from the maps
    /// captured at the incident, after the userspace drivers and before the attribution.
    #[test]
    fn compute_incident_has_the_rocm_section() {
        let root = fake_host("br-rocm");
        let mut inc = disputed_incident();
        inc.compute = Some(hangwatch_core::testkit::hostile_compute("python3"));
        let dir = sample_dir(&root, &inc, true);
        let md = build(&dir, &roots(&root), &Options::default())
            .unwrap()
            .markdown;
        let at = |s: &str| md.find(s).unwrap_or_else(|| panic!("{s} missing:\n{md}"));
        assert!(at("## Userspace drivers") < at("## ROCm (compute) processes"));
        assert!(at("## ROCm (compute) processes") < at("## Attribution"));
        assert!(
            md.contains("` python3 `[4242] (compute candidate, likely): HIP runtime 6.2.60204"),
            "{md}"
        );
        assert!(md.contains("AMD_LOG_LEVEL=4"), "{md}");
        // A graphics-only incident has none.
        let dir = sample_dir(&root, &disputed_incident(), true);
        let md = build(&dir, &roots(&root), &Options::default())
            .unwrap()
            .markdown;
        assert!(!md.contains("ROCm"), "{md}");
        cleanup(&root);
    }

    #[test]
    fn planted_symlinks_in_the_incident_are_refused() {
        let root = fake_host("br-symlink");
        let dir = sample_dir(&root, &disputed_incident(), true);
        let secret = root.join("shadow");
        fs::write(&secret, "root:$6$SECRET:19000:0:99999:7:::\n").unwrap();
        fs::remove_file(dir.join("kernel.log")).unwrap();
        std::os::unix::fs::symlink(&secret, dir.join("kernel.log")).unwrap();
        fs::hard_link(&secret, dir.join("TRUNCATED.txt")).unwrap();
        let b = build(&dir, &roots(&root), &Options::default()).unwrap();
        assert!(!b.markdown.contains("SECRET"), "{}", b.markdown);
        for (n, bytes) in &b.files {
            assert!(!String::from_utf8_lossy(bytes).contains("SECRET"), "{n}");
        }
        assert!(
            b.missing
                .iter()
                .any(|(i, w)| i.contains("kernel.log") && w.contains("symbolic link")),
            "{:?}",
            b.missing
        );
        cleanup(&root);
    }
}
