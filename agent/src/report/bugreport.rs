//! A drm/amd bug report from an incident directory: a ready-to-paste markdown body plus a
//! .tar.gz with everything the driver developer asks for. Every item that cannot be read is
//! listed under "Missing" with the reason — a silently absent VBIOS version wastes a round trip.
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::incident_dir::Extras;
use super::procinfo::identify;
use crate::incident::Incident;

/// Where system facts are read from; tests point these at a fake tree.
#[derive(Clone, Debug)]
pub struct Roots {
    /// Prefix for /sys, /proc, /etc and /var paths ("/" on a real host).
    pub root: PathBuf,
    /// $HOME, for redaction.
    pub home: Option<String>,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            root: PathBuf::from("/"),
            home: std::env::var("HOME").ok(),
        }
    }
}

pub struct Bugreport {
    pub markdown: String,
    /// (item, reason) for everything that could not be read.
    pub missing: Vec<(String, String)>,
    /// Files for the archive: (name inside the archive, contents).
    pub files: Vec<(String, Vec<u8>)>,
}

fn reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => "permission denied (run as root)".into(),
        io::ErrorKind::NotFound => "not present on this kernel/host".into(),
        _ => e.to_string(),
    }
}

struct Ctx<'a> {
    roots: &'a Roots,
    missing: Vec<(String, String)>,
}

impl Ctx<'_> {
    fn path(&self, abs: &str) -> PathBuf {
        self.roots.root.join(abs.trim_start_matches('/'))
    }
    fn read(&mut self, item: &str, abs: &str) -> Option<String> {
        match fs::read_to_string(self.path(abs)) {
            Ok(s) => Some(s.trim().to_string()),
            Err(e) => {
                self.missing.push((format!("{item} ({abs})"), reason(&e)));
                None
            }
        }
    }
}

/// Replace user names and home paths (and drop process arguments, which the report never shows).
pub struct Redactor {
    users: Vec<String>,
}

impl Redactor {
    pub fn new(roots: &Roots) -> Self {
        let mut users: Vec<String> = fs::read_to_string(roots.root.join("etc/passwd"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                let uid: u32 = f.get(2)?.parse().ok()?;
                (1000..65534).contains(&uid).then(|| f[0].to_string())
            })
            .collect();
        if let Some(h) = &roots.home {
            if let Some(u) = h.trim_end_matches('/').rsplit('/').next() {
                if !u.is_empty() && u != "root" {
                    users.push(u.to_string());
                }
            }
        }
        users.retain(|u| u.len() >= 2);
        users.sort_by_key(|u| std::cmp::Reverse(u.len()));
        users.dedup();
        Redactor { users }
    }
    pub fn apply(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        // /home/<anything> → /home/<redacted>
        let mut rest = s;
        while let Some(i) = rest.find("/home/") {
            out.push_str(&rest[..i + 6]);
            let after = &rest[i + 6..];
            let end = after
                .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == ')')
                .unwrap_or(after.len());
            out.push_str("<redacted>");
            rest = &after[end..];
        }
        out.push_str(rest);
        for u in &self.users {
            out = replace_word(&out, u, "<user>");
        }
        out
    }
}

fn replace_word(s: &str, word: &str, with: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(word) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + word.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric() && c != '_');
        out.push_str(&rest[..i]);
        out.push_str(if boundary(before) && boundary(after) {
            with
        } else {
            word
        });
        rest = &rest[i + word.len()..];
    }
    out.push_str(rest);
    out
}

/// Assemble the bug report for the incident in `dir`.
pub fn build(dir: &Path, roots: &Roots, redact: bool) -> Result<Bugreport> {
    let inc_path = dir.join("incident.json");
    let incident: Incident = serde_json::from_slice(&fs::read(&inc_path).with_context(|| {
        format!(
            "reading {} (is this an incident directory?)",
            inc_path.display()
        )
    })?)
    .with_context(|| format!("parsing {}", inc_path.display()))?;
    let mut cx = Ctx {
        roots,
        missing: Vec::new(),
    };
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut md = String::new();
    let ring = incident.ring.clone().unwrap_or_else(|| "gfx_0.0.0".into());

    let _ = writeln!(md, "## Summary\n");
    let culprit = incident
        .culprit
        .as_ref()
        .map(super::text::process_name)
        .unwrap_or_else(|| "unknown process".into());
    let _ = writeln!(
        md,
        "{} on {} ring `{}`; hangwatch attributes it to **{}** (confidence {}).\n",
        super::text::kind_name(incident.kind),
        incident.gpu.as_deref().unwrap_or("unknown GPU"),
        ring,
        culprit,
        super::text::confidence_name(incident.confidence)
    );

    let _ = writeln!(md, "## System\n");
    let osrelease = cx.read("kernel version", "/proc/sys/kernel/osrelease");
    let version = cx.read("kernel build", "/proc/version");
    let cmdline = cx.read("kernel command line", "/proc/cmdline");
    let _ = writeln!(
        md,
        "- Kernel: {}",
        osrelease.as_deref().unwrap_or("(missing)")
    );
    if let Some(v) = version {
        let _ = writeln!(md, "- Build: `{v}`");
    }
    let _ = writeln!(
        md,
        "- Command line: `{}`",
        cmdline.as_deref().unwrap_or("(missing)")
    );
    let modver = cx.read("amdgpu module version", "/sys/module/amdgpu/version");
    let srcver = cx.read("amdgpu module srcversion", "/sys/module/amdgpu/srcversion");
    let dkms = cx.path("/var/lib/dkms/amdgpu");
    let dkms_note = match fs::read_dir(&dkms) {
        Ok(rd) => {
            let v: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect();
            format!("DKMS amdgpu installed ({})", v.join(", "))
        }
        Err(_) => "in-tree (no /var/lib/dkms/amdgpu)".into(),
    };
    let _ = writeln!(
        md,
        "- amdgpu module: version {}, srcversion {}; {}\n",
        modver.as_deref().unwrap_or("(missing)"),
        srcver.as_deref().unwrap_or("(missing)"),
        dkms_note
    );

    let _ = writeln!(md, "## GPU\n");
    match &incident.gpu {
        Some(gpu) => {
            let base = format!("/sys/bus/pci/devices/{gpu}");
            let mut fields = Vec::new();
            for f in [
                "vendor",
                "device",
                "subsystem_vendor",
                "subsystem_device",
                "revision",
                "vbios_version",
            ] {
                if let Some(v) = cx.read(&format!("GPU {f}"), &format!("{base}/{f}")) {
                    fields.push(format!("{f} {v}"));
                }
            }
            let _ = writeln!(
                md,
                "- PCI {gpu}: {}",
                if fields.is_empty() {
                    "(nothing readable)".into()
                } else {
                    fields.join(", ")
                }
            );
            if let Some(name) = cx.read("GPU product name", &format!("{base}/product_name")) {
                let _ = writeln!(md, "- Name: {name}");
            }
            // Which driver owns the device: PCI facts about some other device mislead.
            match fs::read_link(cx.path(&format!("{base}/driver"))) {
                Ok(link) => {
                    let drv = link
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let _ = writeln!(md, "- Driver: {drv}");
                    if drv != "amdgpu" {
                        cx.missing.push((
                            "GPU identity".into(),
                            format!("{gpu} is bound to {drv}, not amdgpu: the PCI facts above describe that device"),
                        ));
                    }
                }
                Err(e) => cx
                    .missing
                    .push((format!("GPU driver ({base}/driver)"), reason(&e))),
            }
        }
        None => cx.missing.push((
            "GPU PCI id, name, VBIOS".into(),
            "GPU not known (incident names no PCI address)".into(),
        )),
    }
    // Firmware: the debugfs DRI minor whose name matches the GPU, else the first with amdgpu files.
    let dri = cx.path("/sys/kernel/debug/dri");
    let mut fw = None;
    match fs::read_dir(&dri) {
        Ok(rd) => {
            let mut minors: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            minors.sort();
            let gpu = incident.gpu.clone().unwrap_or_default();
            let pick = minors
                .iter()
                .find(|m| {
                    !gpu.is_empty()
                        && fs::read_to_string(m.join("name")).is_ok_and(|n| n.contains(&gpu))
                })
                .or_else(|| {
                    minors
                        .iter()
                        .find(|m| m.join("amdgpu_firmware_info").exists())
                });
            match pick.map(|m| fs::read_to_string(m.join("amdgpu_firmware_info"))) {
                Some(Ok(s)) => fw = Some(s),
                Some(Err(e)) => cx.missing.push((
                    "firmware versions (amdgpu_firmware_info)".into(),
                    reason(&e),
                )),
                None => cx.missing.push((
                    "firmware versions (amdgpu_firmware_info)".into(),
                    "no amdgpu DRI minor in debugfs".into(),
                )),
            }
        }
        Err(e) => cx.missing.push((
            "firmware versions (/sys/kernel/debug/dri/N/amdgpu_firmware_info)".into(),
            format!("{} — debugfs not mounted or not root", reason(&e)),
        )),
    }
    if let Some(fw) = &fw {
        let _ = writeln!(md, "\n<details><summary>Firmware (amdgpu_firmware_info)</summary>\n\n```\n{}\n```\n</details>\n", fw.trim());
        files.push(("amdgpu_firmware_info.txt".into(), fw.clone().into_bytes()));
    }

    let _ = writeln!(md, "\n## Userspace drivers of involved processes\n");
    let extras: Option<Extras> = match fs::read(dir.join("processes.json")) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(x) => Some(x),
            Err(e) => {
                cx.missing.push((
                    "userspace driver mappings (processes.json)".into(),
                    format!("unparseable: {e}"),
                ));
                None
            }
        },
        Err(e) => {
            cx.missing.push((
                "userspace driver mappings (processes.json)".into(),
                reason(&e),
            ));
            None
        }
    };
    let mut involved: Vec<(u32, String)> = Vec::new();
    if let Some(c) = &incident.culprit {
        involved.push((c.pid, c.comm.clone()));
    }
    for v in &incident.victims {
        if !involved.iter().any(|(p, _)| *p == v.pid) {
            involved.push((v.pid, v.comm.clone()));
        }
    }
    let mut has_radv = false;
    let mut has_radeonsi = false;
    for (pid, comm) in &involved {
        let maps = extras
            .as_ref()
            .and_then(|x| x.process_maps.iter().find(|(p, _)| p == pid))
            .map(|(_, m)| m);
        match maps {
            Some(lines) if !lines.is_empty() => {
                let mut drivers: Vec<String> = Vec::new();
                for l in lines {
                    let path = l.split_whitespace().nth(5).unwrap_or(l);
                    if let Some((name, ver)) = identify(path) {
                        has_radv |= name == "Mesa RADV";
                        has_radeonsi |= name == "Mesa radeonsi";
                        let d = format!("{name} {} (`{path}`)", ver.as_deref().unwrap_or("(version not in path)"));
                        if !drivers.contains(&d) {
                            drivers.push(d);
                        }
                    }
                }
                let _ = writeln!(md, "- {comm}[{pid}]: {}", if drivers.is_empty() { "no known AMD driver mapped".into() } else { drivers.join("; ") });
            }
            Some(_) => {
                let _ = writeln!(
                    md,
                    "- {comm}[{pid}]: no AMD userspace driver library in /proc/{pid}/maps (captured while it ran; it submits through libdrm directly or a driver hangwatch does not know)"
                );
            }
            None => cx.missing.push((
                format!("userspace driver of {comm}[{pid}]"),
                "no /proc/PID/maps captured at incident time (log-only analysis or the process had exited)".into(),
            )),
        }
    }

    if let Some(rocm) = super::rocm::section(
        &incident,
        extras.as_ref().map_or(&[][..], |x| &x.process_maps[..]),
    ) {
        let _ = writeln!(md, "\n{rocm}");
    }

    let _ = writeln!(
        md,
        "\n## Attribution (hangwatch)\n\n```\n{}```\n",
        super::text::render(&incident)
    );

    let _ = writeln!(md, "## Kernel log excerpt\n\n```");
    match fs::read_to_string(dir.join("kernel.log")) {
        Ok(s) => {
            md.push_str(&s);
            files.push(("kernel.log".into(), s.into_bytes()));
        }
        Err(e) => cx
            .missing
            .push(("kernel-log excerpt (kernel.log)".into(), reason(&e))),
    }
    let _ = writeln!(md, "```\n");

    let dcd = cx.path("/sys/class/devcoredump");
    match fs::read_dir(&dcd) {
        Ok(rd) => {
            let mut found = false;
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                match fs::read(e.path().join("data")) {
                    Ok(b) => {
                        found = true;
                        let _ = writeln!(md, "Devcoredump `{name}` ({} bytes) is attached as `devcoredump-{name}.txt`.\n", b.len());
                        files.push((format!("devcoredump-{name}.txt"), b));
                    }
                    Err(e) => cx.missing.push((format!("devcoredump {name}"), reason(&e))),
                }
            }
            if !found {
                cx.missing.push((
                    "devcoredump".into(),
                    "none present (expired, or the kernel wrote none)".into(),
                ));
            }
        }
        Err(e) => cx
            .missing
            .push(("devcoredump (/sys/class/devcoredump)".into(), reason(&e))),
    }

    let _ = writeln!(md, "## Suggested next steps\n");
    if has_radv {
        let _ = writeln!(md, "- Re-run the RADV process with `RADV_DEBUG=hang` (writes a hang report with the IBs) and attach it.");
    }
    if has_radeonsi {
        let _ = writeln!(
            md,
            "- Re-run the radeonsi process with `AMD_DEBUG=check_vm,hang` and attach its output."
        );
    }
    if !has_radv && !has_radeonsi {
        let _ = writeln!(md, "- If the culprit uses Mesa: RADV `RADV_DEBUG=hang`, radeonsi `AMD_DEBUG=check_vm,hang`.");
    }
    let _ = writeln!(md, "- At the next hang, before the reset completes: `umr -R {ring}` and `umr --dump-ring {ring}` (ring dump), `umr -O halt_waves -wa` (wave status).");
    let _ = writeln!(md, "- Keep `amdgpu.gpu_recovery=1` and collect `/sys/class/devcoredump/devcd*/data` within 5 minutes of the reset.\n");

    let _ = writeln!(md, "## Missing\n");
    if cx.missing.is_empty() {
        let _ = writeln!(md, "Nothing: every item was readable.");
    }
    for (item, why) in &cx.missing {
        let _ = writeln!(md, "- {item}: {why}");
    }

    for f in [
        "incident.json",
        "report.md",
        "trace.perfetto",
        "processes.json",
    ] {
        if let Ok(b) = fs::read(dir.join(f)) {
            files.push((f.into(), b));
        }
    }
    let missing = cx.missing;
    if redact {
        let r = Redactor::new(roots);
        md = r.apply(&md);
        for (name, bytes) in files.iter_mut() {
            if name != "trace.perfetto" && !name.starts_with("devcoredump") {
                if let Ok(s) = std::str::from_utf8(bytes) {
                    *bytes = r.apply(s).into_bytes();
                }
            }
        }
        // The binary trace embeds process names only; re-encode from the redacted incident.
        if let Some((_, b)) = files.iter().find(|(n, _)| n == "incident.json") {
            if let Ok(inc) = serde_json::from_slice::<Incident>(b) {
                for (n, bytes) in files.iter_mut() {
                    if n == "trace.perfetto" {
                        *bytes = super::perfetto::encode(&inc);
                    }
                }
            }
        }
    }
    files.push(("bugreport.md".into(), md.clone().into_bytes()));
    Ok(Bugreport {
        markdown: md,
        missing,
        files,
    })
}

/// Write the archive as `<stem>/<file>` entries, mode 0600.
pub fn write_tar_gz(b: &Bugreport, out: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let stem = out
        .file_name()
        .map(|s| s.to_string_lossy().trim_end_matches(".tar.gz").to_string())
        .unwrap_or_else(|| "bugreport".into());
    for (name, bytes) in &b.files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, format!("{stem}/{name}"), bytes.as_slice())?;
    }
    tar.into_inner()?.finish()?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::incident_dir::{IncidentDir, Retention};
    use crate::report::text::tests::disputed_incident;

    fn fake_root(tag: &str) -> (PathBuf, PathBuf) {
        let base =
            std::env::temp_dir().join(format!("hangwatch-bugreport-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let root = base.join("root");
        let put = |p: &str, s: &str| {
            let p = root.join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, s).unwrap();
        };
        put("proc/sys/kernel/osrelease", "6.1.0-56-amd64\n");
        put(
            "proc/cmdline",
            "BOOT_IMAGE=/vmlinuz root=/dev/sda1 amdgpu.gpu_recovery=1\n",
        );
        put("sys/module/amdgpu/srcversion", "ABCDEF0123\n");
        put("sys/bus/pci/devices/0000:c3:00.0/vendor", "0x1002\n");
        put("sys/bus/pci/devices/0000:c3:00.0/device", "0x7461\n");
        std::os::unix::fs::symlink(
            "../../../bus/pci/drivers/amdgpu",
            root.join("sys/bus/pci/devices/0000:c3:00.0/driver"),
        )
        .unwrap();
        put(
            "sys/bus/pci/devices/0000:c3:00.0/vbios_version",
            "113-D7070100-100\n",
        );
        put(
            "sys/kernel/debug/dri/1/name",
            "amdgpu dev=0000:c3:00.0 unique=0000:c3:00.0\n",
        );
        put(
            "sys/kernel/debug/dri/1/amdgpu_firmware_info",
            "MEC feature version: 35, firmware version: 0x000000a0\n",
        );
        put(
            "sys/class/devcoredump/devcd1/data",
            "AMDGPU Device Coredump\nkernel: 6.1.0\n",
        );
        put(
            "etc/passwd",
            "root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
        );
        let incidents = base.join("incidents");
        (root, incidents)
    }

    /// `build` against the fake root (no home directory to redact).
    fn build_at(root: &Path, dir: &Path, redact: bool) -> Bugreport {
        let roots = Roots {
            root: root.to_path_buf(),
            home: None,
        };
        build(dir, &roots, redact).unwrap()
    }

    fn sample_dir(incidents: &Path) -> PathBuf {
        let mut d = IncidentDir::open(incidents, Retention::default()).unwrap();
        let extras = Extras {
            process_maps: vec![(
                7021,
                vec![
                    "7f00-7f10 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libvulkan_radeon.so".into(),
                ],
            )],
        };
        d.write(&disputed_incident(), &extras).unwrap()
    }

    #[test]
    fn every_section_and_missing_items_with_reasons() {
        let (root, incidents) = fake_root("sections");
        let dir = sample_dir(&incidents);
        let b = build_at(&root, &dir, false);
        let md = &b.markdown;
        for s in [
            "## Summary",
            "## System",
            "## GPU",
            "## Userspace drivers",
            "## Attribution",
            "## Kernel log excerpt",
            "## Suggested next steps",
            "## Missing",
        ] {
            assert!(md.contains(s), "missing section {s}:\n{md}");
        }
        assert!(md.contains("- Kernel: 6.1.0-56-amd64"), "{md}");
        assert!(md.contains("amdgpu.gpu_recovery=1"), "{md}");
        assert!(md.contains("vendor 0x1002, device 0x7461"), "{md}");
        assert!(md.contains("- Driver: amdgpu"), "{md}");
        assert!(!md.contains("GPU identity"), "{md}");
        assert!(md.contains("vbios_version 113-D7070100-100"), "{md}");
        assert!(md.contains("MEC feature version: 35"), "{md}");
        assert!(md.contains("zed[7021]: Mesa RADV"), "{md}");
        assert!(md.contains("RADV_DEBUG=hang"), "{md}");
        assert!(md.contains("umr --dump-ring gfx_0.0.0"), "{md}");
        assert!(md.contains("process Xwayland pid 6518"), "{md}");
        assert!(md.contains("DISPUTED"), "{md}");
        // What the fake root lacks is listed with a reason.
        let missing: Vec<&str> = b.missing.iter().map(|(i, _)| i.as_str()).collect();
        assert!(
            missing.iter().any(|i| i.contains("amdgpu module version")),
            "{missing:?}"
        );
        assert!(
            missing.iter().any(|i| i.contains("kernel build")),
            "{missing:?}"
        );
        assert!(
            missing
                .iter()
                .any(|i| i.contains("userspace driver of Xwayland[6518]")),
            "{missing:?}"
        );
        assert!(
            !missing.iter().any(|i| i.contains("devcoredump")),
            "{missing:?}"
        );
        assert!(md.contains("- amdgpu module version (/sys/module/amdgpu/version): not present on this kernel/host"), "{md}");
        let names: Vec<&str> = b.files.iter().map(|(n, _)| n.as_str()).collect();
        for f in [
            "devcoredump-devcd1.txt",
            "kernel.log",
            "incident.json",
            "trace.perfetto",
            "bugreport.md",
            "amdgpu_firmware_info.txt",
        ] {
            assert!(names.contains(&f), "{f} not in {names:?}");
        }
        // The archive opens and holds the same files.
        let out = incidents.parent().unwrap().join("report.tar.gz");
        write_tar_gz(&b, &out).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(fs::File::open(&out).unwrap()));
        let entries: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string())
            .collect();
        assert!(
            entries.contains(&"report/devcoredump-devcd1.txt".to_string()),
            "{entries:?}"
        );
        assert_eq!(entries.len(), b.files.len());
        fs::remove_dir_all(root.parent().unwrap()).unwrap();
    }

    #[test]
    fn gpu_bound_to_another_driver_is_flagged() {
        let (root, incidents) = fake_root("otherdrv");
        let link = root.join("sys/bus/pci/devices/0000:c3:00.0/driver");
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("../../../bus/pci/drivers/virtio-pci", &link).unwrap();
        let dir = sample_dir(&incidents);
        let b = build_at(&root, &dir, false);
        assert!(
            b.markdown.contains("- Driver: virtio-pci"),
            "{}",
            b.markdown
        );
        assert!(
            b.markdown
                .contains("- GPU identity: 0000:c3:00.0 is bound to virtio-pci, not amdgpu"),
            "{}",
            b.markdown
        );
        fs::remove_dir_all(root.parent().unwrap()).unwrap();
    }

    #[test]
    fn missing_gpu_and_debugfs_are_reported() {
        let (root, incidents) = fake_root("nogpu");
        fs::remove_dir_all(root.join("sys/kernel/debug")).unwrap();
        let mut inc = disputed_incident();
        inc.gpu = None;
        let mut d = IncidentDir::open(&incidents, Retention::default()).unwrap();
        let dir = d.write(&inc, &Extras::default()).unwrap();
        let b = build_at(&root, &dir, false);
        assert!(b.markdown.contains("GPU not known"), "{}", b.markdown);
        assert!(b.markdown.contains("debugfs not mounted"), "{}", b.markdown);
        assert!(
            b.markdown.contains("userspace driver of zed[7021]"),
            "{}",
            b.markdown
        );
        fs::remove_dir_all(root.parent().unwrap()).unwrap();
    }

    #[test]
    fn redact_removes_user_names_and_home_paths() {
        let (root, incidents) = fake_root("redact");
        let dir = sample_dir(&incidents);
        let plain = build(
            &dir,
            &Roots {
                root: root.clone(),
                home: Some("/home/bob".into()),
            },
            false,
        )
        .unwrap();
        assert!(plain.markdown.contains("/home/alice/.local"));
        let mut inc = disputed_incident();
        inc.reasoning
            .push_str(" bob started it; alicea is not a user.");
        let r = Redactor::new(&Roots {
            root: root.clone(),
            home: Some("/home/bob".into()),
        });
        assert!(r.apply(&inc.reasoning).contains("<user> started it"));
        assert!(r.apply("alicea is not a user").contains("alicea"));
        let red = build(
            &dir,
            &Roots {
                root: root.clone(),
                home: Some("/home/bob".into()),
            },
            true,
        )
        .unwrap();
        assert!(!red.markdown.contains("alice"), "{}", red.markdown);
        assert!(
            red.markdown.contains("/home/<redacted>/.local/zed.app"),
            "{}",
            red.markdown
        );
        for (name, bytes) in &red.files {
            if name != "trace.perfetto" {
                assert!(
                    !String::from_utf8_lossy(bytes).contains("/home/alice"),
                    "{name}"
                );
            }
        }
        fs::remove_dir_all(root.parent().unwrap()).unwrap();
    }
}
