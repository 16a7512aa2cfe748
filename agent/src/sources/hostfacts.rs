//! Facts about the host and GPU captured when an incident opens — kernel, command line, OS,
//! amdgpu module and its parameters, PCI ids, VBIOS and firmware versions, devcoredumps — so a
//! bug report written days later or on another machine describes the machine that hung
//! (a devcoredump expires five minutes after the reset). Every item that cannot be read keeps
//! the reason. Saved in the incident directory as `host.json` plus `devcoredump/<name>`.
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const HOST_SCHEMA: &str = "hangwatch.host/1";
/// A sysfs/proc text file larger than this is not a fact we want (firmware info is ~3 KiB).
const MAX_TEXT: u64 = 256 << 10;
/// amdgpu devcoredumps are text (IB and ring dumps); a few MiB in practice.
pub const MAX_DEVCOREDUMP: u64 = 64 << 20;
/// At most this many devcoredumps are saved with an incident (and read from one).
pub const MAX_DEVCOREDUMPS: usize = 4;
const MAX_PARAMS: usize = 512;

/// Where facts are read from; tests point this at a fake tree.
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

impl Roots {
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }
}

/// One fact: its value, or why it is missing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Where it was read from (absolute path on the host).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

impl Item {
    pub fn get(&self) -> Option<&str> {
        self.value.as_deref()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuFacts {
    /// Validated PCI address (`DDDD:BB:DD.F`).
    pub pci: String,
    /// vendor, device, subsystem_vendor, subsystem_device, revision, vbios_version, product_name,
    /// serial_number (redacted by `bugreport --redact`).
    pub ids: BTreeMap<String, Item>,
    /// The driver bound to the device (`amdgpu` expected).
    pub driver: Item,
    /// debugfs `amdgpu_firmware_info` of the DRI minor serving this device.
    pub firmware_info: Item,
}

/// A devcoredump copied at capture time; the bytes live in `devcoredump/<file>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Devcoredump {
    /// Where it was read (`/sys/class/devcoredump/devcd3/data`).
    pub source: String,
    /// File name under the incident's `devcoredump/` directory.
    pub file: String,
    /// Size kept.
    pub bytes: u64,
    /// True when the dump was larger than MAX_DEVCOREDUMP and was cut there.
    pub truncated: bool,
    #[serde(skip)]
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    pub schema: String,
    /// CLOCK_REALTIME at capture, Unix seconds.
    pub captured_unix_s: u64,
    pub boot_id: Item,
    pub hostname: Item,
    pub kernel_release: Item,
    /// `/proc/version` (includes the kernel's build user@host).
    pub kernel_version: Item,
    pub cmdline: Item,
    pub os_release: Item,
    pub amdgpu_version: Item,
    pub amdgpu_srcversion: Item,
    /// DKMS-installed amdgpu versions, or why it is in-tree.
    pub amdgpu_dkms: Item,
    /// `/sys/module/amdgpu/parameters/*` that are readable (lockup_timeout, gpu_recovery, mes, ...).
    pub module_params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_params_missing: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_missing: Option<String>,
    pub devcoredumps: Vec<Devcoredump>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devcoredump_missing: Option<String>,
}

/// True for a PCI address as sysfs names devices (`0000:c3:00.0`; domains up to 8 hex digits):
/// the incident's `gpu` field comes from logs and must never become `../..` in a path.
pub fn valid_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(dom_len) = s.find(':') else {
        return false;
    };
    let hex = |x: &[u8]| !x.is_empty() && x.iter().all(|c| c.is_ascii_hexdigit());
    (4..=8).contains(&dom_len)
        && b.len() == dom_len + 8
        && hex(&b[..dom_len])
        && b[dom_len] == b':'
        && hex(&b[dom_len + 1..dom_len + 3])
        && b[dom_len + 3] == b':'
        && hex(&b[dom_len + 4..dom_len + 6])
        && b[dom_len + 6] == b'.'
        && (b'0'..=b'7').contains(&b[dom_len + 7])
}

pub fn reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied (run as root)".into(),
        std::io::ErrorKind::NotFound => "not present on this kernel/host".into(),
        _ => e.to_string(),
    }
}

fn read_capped(p: &Path, max: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let mut v = Vec::new();
    std::fs::File::open(p)?.take(max + 1).read_to_end(&mut v)?;
    let cut = v.len() as u64 > max;
    v.truncate(max as usize);
    Ok((v, cut))
}

fn item(roots: &Roots, abs: &str) -> Item {
    let mut it = Item {
        source: abs.into(),
        ..Default::default()
    };
    match read_capped(&roots.path(abs), MAX_TEXT) {
        Ok((b, _)) => it.value = Some(String::from_utf8_lossy(&b).trim().to_string()),
        Err(e) => it.missing = Some(reason(&e)),
    }
    it
}

fn dkms(roots: &Roots) -> Item {
    let abs = "/var/lib/dkms/amdgpu";
    let mut it = Item {
        source: abs.into(),
        ..Default::default()
    };
    match std::fs::read_dir(roots.path(abs)) {
        Ok(rd) => {
            let mut v: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            it.value = Some(format!("DKMS amdgpu installed ({})", v.join(", ")));
        }
        Err(_) => it.value = Some("in-tree (no /var/lib/dkms/amdgpu)".into()),
    }
    it
}

fn module_params(roots: &Roots, f: &mut HostFacts) {
    let dir = roots.path("/sys/module/amdgpu/parameters");
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) => {
            f.module_params_missing = Some(format!(
                "/sys/module/amdgpu/parameters: {} (amdgpu not loaded?)",
                reason(&e)
            ));
            return;
        }
    };
    for e in rd.flatten().take(MAX_PARAMS) {
        let name = e.file_name().to_string_lossy().into_owned();
        // Write-only parameters fail to read: they are not facts.
        if let Ok((b, _)) = read_capped(&e.path(), 4096) {
            f.module_params
                .insert(name, String::from_utf8_lossy(&b).trim().to_string());
        }
    }
}

/// The debugfs DRI minor serving `gpu` (its `name` mentions the PCI address).
fn firmware_info(roots: &Roots, gpu: &str) -> Item {
    let abs = "/sys/kernel/debug/dri";
    let mut it = Item {
        source: format!("{abs}/N/amdgpu_firmware_info"),
        ..Default::default()
    };
    let rd = match std::fs::read_dir(roots.path(abs)) {
        Ok(rd) => rd,
        Err(e) => {
            it.missing = Some(format!("{} — debugfs not mounted or not root", reason(&e)));
            return it;
        }
    };
    let mut minors: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    minors.sort();
    let pick = minors.iter().find(|m| {
        read_capped(&m.join("name"), 4096)
            .is_ok_and(|(n, _)| String::from_utf8_lossy(&n).contains(gpu))
    });
    match pick {
        Some(m) => {
            if let Some(n) = m.file_name() {
                it.source = format!("{abs}/{}/amdgpu_firmware_info", n.to_string_lossy());
            }
            match read_capped(&m.join("amdgpu_firmware_info"), MAX_TEXT) {
                Ok((b, _)) => it.value = Some(String::from_utf8_lossy(&b).trim().to_string()),
                Err(e) => it.missing = Some(reason(&e)),
            }
        }
        None => it.missing = Some(format!("no DRI minor in debugfs names {gpu}")),
    }
    it
}

fn gpu_facts(roots: &Roots, gpu: &str) -> GpuFacts {
    let base = format!("/sys/bus/pci/devices/{gpu}");
    let mut g = GpuFacts {
        pci: gpu.into(),
        ..Default::default()
    };
    for f in [
        "vendor",
        "device",
        "subsystem_vendor",
        "subsystem_device",
        "revision",
        "vbios_version",
        "product_name",
        "serial_number",
    ] {
        g.ids.insert(f.into(), item(roots, &format!("{base}/{f}")));
    }
    g.driver.source = format!("{base}/driver");
    match std::fs::read_link(roots.path(&g.driver.source)) {
        Ok(link) => {
            g.driver.value = link.file_name().map(|n| n.to_string_lossy().into_owned());
        }
        Err(e) => g.driver.missing = Some(reason(&e)),
    }
    g.firmware_info = firmware_info(roots, gpu);
    g
}

/// The dump the kernel linked into the GPU's own sysfs directory (`devcoredump`, which is
/// `/sys/class/drm/cardN/device/devcoredump`); the name of the devcd device it is.
fn device_devcoredump(roots: &Roots, gpu: &str, f: &mut HostFacts) -> Option<String> {
    let abs = format!("/sys/bus/pci/devices/{gpu}/devcoredump");
    let link = roots.path(&abs);
    let name = std::fs::read_link(&link)
        .ok()?
        .file_name()?
        .to_string_lossy()
        .into_owned();
    match read_capped(&link.join("data"), MAX_DEVCOREDUMP) {
        Ok((data, truncated)) => f.devcoredumps.push(Devcoredump {
            source: format!("{abs}/data"),
            file: format!("{name}.txt"),
            bytes: data.len() as u64,
            truncated,
            data,
        }),
        Err(e) => f.devcoredump_missing = Some(format!("{abs}/data: {}", reason(&e))),
    }
    Some(name)
}

/// Devcoredumps of `gpu`, read before they expire: the one linked from the device itself,
/// then devcoredump devices (`/sys/class/devcoredump/devcdN`) whose failing device is `gpu`
/// (all of them when the GPU is unknown).
fn devcoredumps(roots: &Roots, gpu: Option<&str>, f: &mut HostFacts) {
    let linked = gpu.and_then(|g| device_devcoredump(roots, g, f));
    let abs = "/sys/class/devcoredump";
    let rd = match std::fs::read_dir(roots.path(abs)) {
        Ok(rd) => rd,
        Err(e) => {
            f.devcoredump_missing = Some(format!("{abs}: {}", reason(&e)));
            return;
        }
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("devcd") && Some(n) != linked.as_ref())
        .collect();
    names.sort();
    let mut skipped = Vec::new();
    for name in names {
        let dir = roots.path(&format!("{abs}/{name}"));
        if !dir.is_dir() {
            continue;
        }
        let failing = std::fs::read_link(dir.join("failing_device"))
            .ok()
            .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()));
        if let (Some(g), Some(dev)) = (gpu, failing.as_deref()) {
            if g != dev {
                skipped.push(format!("{name} (device {dev})"));
                continue;
            }
        }
        if f.devcoredumps.len() >= MAX_DEVCOREDUMPS {
            skipped.push(format!("{name} (more than {MAX_DEVCOREDUMPS})"));
            continue;
        }
        let source = format!("{abs}/{name}/data");
        match read_capped(&dir.join("data"), MAX_DEVCOREDUMP) {
            Ok((data, truncated)) => f.devcoredumps.push(Devcoredump {
                source,
                file: format!("{name}.txt"),
                bytes: data.len() as u64,
                truncated,
                data,
            }),
            Err(e) => skipped.push(format!("{name}: {}", reason(&e))),
        }
    }
    if f.devcoredumps.is_empty() {
        let mut why = format!(
            "none present in {abs} (expired — the kernel keeps one for 5 minutes — or none was written)"
        );
        if !skipped.is_empty() {
            why.push_str(&format!("; not taken: {}", skipped.join(", ")));
        }
        f.devcoredump_missing = Some(why);
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Everything a drm/amd bug report needs about this host, read now. `gpu` is the incident's
/// PCI address; an invalid one is refused (and said so) rather than turned into a path.
pub fn collect(roots: &Roots, gpu: Option<&str>) -> HostFacts {
    let mut f = HostFacts {
        schema: HOST_SCHEMA.into(),
        captured_unix_s: unix_now(),
        boot_id: item(roots, "/proc/sys/kernel/random/boot_id"),
        hostname: item(roots, "/proc/sys/kernel/hostname"),
        kernel_release: item(roots, "/proc/sys/kernel/osrelease"),
        kernel_version: item(roots, "/proc/version"),
        cmdline: item(roots, "/proc/cmdline"),
        os_release: item(roots, "/etc/os-release"),
        amdgpu_version: item(roots, "/sys/module/amdgpu/version"),
        amdgpu_srcversion: item(roots, "/sys/module/amdgpu/srcversion"),
        amdgpu_dkms: dkms(roots),
        ..Default::default()
    };
    module_params(roots, &mut f);
    let gpu = match gpu {
        Some(g) if valid_pci_address(g) => Some(g),
        Some(g) => {
            f.gpu_missing = Some(format!(
                "the incident's GPU {:?} is not a PCI address (DDDD:BB:DD.F); not used as a path",
                hangwatch_core::escape::terminal(g)
            ));
            None
        }
        None => {
            f.gpu_missing = Some("GPU not known (the incident names no PCI address)".into());
            None
        }
    };
    if let Some(g) = gpu {
        f.gpu = Some(gpu_facts(roots, g));
    }
    devcoredumps(roots, gpu, &mut f);
    f
}

impl HostFacts {
    /// What the kernel writes, or the incident learns, after the incident opened: the
    /// devcoredump (written a little after the reset) while none was captured, and the GPU's
    /// facts when its PCI address arrived after the opening event. Everything else stays as
    /// captured at the open.
    pub fn refresh(&mut self, roots: &Roots, gpu: Option<&str>) {
        let gpu = gpu.filter(|g| valid_pci_address(g));
        if self.gpu.is_none() {
            if let Some(g) = gpu {
                self.gpu = Some(gpu_facts(roots, g));
                self.gpu_missing = None;
            }
        }
        if self.devcoredumps.is_empty() {
            self.devcoredump_missing = None;
            devcoredumps(roots, gpu, self);
        }
    }

    /// `host.json` and `devcoredump/<file>` for the incident directory.
    pub fn files(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let mut v = vec![("host.json".to_string(), serde_json::to_vec_pretty(self)?)];
        for d in &self.devcoredumps {
            v.push((format!("devcoredump/{}", d.file), d.data.clone()));
        }
        Ok(v)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn put(root: &Path, p: &str, s: &str) {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    /// A fake host with one amdgpu at 0000:c3:00.0 and a devcoredump for it.
    pub(crate) fn fake_host(tag: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("hw-host-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let r = root.as_path();
        put(r, "proc/sys/kernel/osrelease", "6.1.0-56-amd64\n");
        put(r, "proc/sys/kernel/hostname", "gpubox7\n");
        put(
            r,
            "proc/sys/kernel/random/boot_id",
            "0b4f3c9e-6f1e-4d55-9a44-7f3ad1c2e001\n",
        );
        put(
            r,
            "proc/version",
            "Linux version 6.1.0-56-amd64 (builder@buildhost.corp.example) (gcc-12) #1 SMP\n",
        );
        put(
            r,
            "proc/cmdline",
            "BOOT_IMAGE=/vmlinuz root=UUID=2f6a1c8e-1111-4222-8333-944455556666 amdgpu.gpu_recovery=1 nfsroot=10.1.2.3:/srv/nfs ip=10.1.2.50::10.1.2.1:255.255.255.0:gpubox7:eth0:off\n",
        );
        put(
            r,
            "etc/os-release",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        );
        put(r, "sys/module/amdgpu/srcversion", "ABCDEF0123\n");
        put(r, "sys/module/amdgpu/parameters/lockup_timeout", "0\n");
        put(r, "sys/module/amdgpu/parameters/gpu_recovery", "-1\n");
        put(r, "sys/module/amdgpu/parameters/mes", "1\n");
        let dev = "sys/bus/pci/devices/0000:c3:00.0";
        put(r, &format!("{dev}/vendor"), "0x1002\n");
        put(r, &format!("{dev}/device"), "0x7461\n");
        put(r, &format!("{dev}/vbios_version"), "113-D7070100-100\n");
        put(r, &format!("{dev}/serial_number"), "SN-7F3A9C21\n");
        std::os::unix::fs::symlink(
            "../../../bus/pci/drivers/amdgpu",
            r.join(dev).join("driver"),
        )
        .unwrap();
        put(
            r,
            "sys/kernel/debug/dri/1/name",
            "amdgpu dev=0000:c3:00.0 unique=0000:c3:00.0\n",
        );
        put(
            r,
            "sys/kernel/debug/dri/1/amdgpu_firmware_info",
            "MEC feature version: 35, firmware version: 0x000000a0\n",
        );
        put(
            r,
            "sys/class/devcoredump/devcd1/data",
            "AMDGPU Device Coredump\nprocess_name: zed PID: 7021\nkernel: 6.1.0\n",
        );
        std::os::unix::fs::symlink(
            "../../../bus/pci/devices/0000:c3:00.0",
            r.join("sys/class/devcoredump/devcd1/failing_device"),
        )
        .unwrap();
        put(r, "sys/class/devcoredump/devcd2/data", "other device\n");
        std::os::unix::fs::symlink(
            "../../../bus/pci/devices/0000:03:00.0",
            r.join("sys/class/devcoredump/devcd2/failing_device"),
        )
        .unwrap();
        put(r, "sys/class/devcoredump/disabled", "0\n");
        put(
            r,
            "etc/passwd",
            "root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
        );
        root
    }

    #[test]
    fn a_devcoredump_written_after_the_open_is_taken_on_refresh() {
        let root = fake_host("refresh");
        let roots = Roots {
            root: root.clone(),
            home: None,
        };
        std::fs::remove_dir_all(root.join("sys/class/devcoredump")).unwrap();
        // Opened before the reset, and before the GPU's address was known.
        let mut f = collect(&roots, None);
        assert!(f.devcoredumps.is_empty() && f.gpu.is_none());
        let at_open = f.captured_unix_s;
        // The kernel writes the dump a little after the reset, linked from the device
        // (/sys/class/drm/cardN/device/devcoredump).
        put(
            &root,
            "sys/class/devcoredump/devcd7/data",
            "AMDGPU Device Coredump\nring gfx_0.0.0\n",
        );
        std::os::unix::fs::symlink(
            "../../../../class/devcoredump/devcd7",
            root.join("sys/bus/pci/devices/0000:c3:00.0/devcoredump"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "../../../bus/pci/devices/0000:c3:00.0",
            root.join("sys/class/devcoredump/devcd7/failing_device"),
        )
        .unwrap();
        f.refresh(&roots, Some("0000:c3:00.0"));
        assert_eq!(
            f.devcoredumps.len(),
            1,
            "the linked dump once: {:?}",
            f.devcoredumps
        );
        assert_eq!(f.devcoredumps[0].file, "devcd7.txt");
        assert_eq!(
            f.devcoredumps[0].source,
            "/sys/bus/pci/devices/0000:c3:00.0/devcoredump/data"
        );
        assert!(f.devcoredump_missing.is_none());
        assert_eq!(
            f.gpu.as_ref().unwrap().ids["vbios_version"].get(),
            Some("113-D7070100-100")
        );
        // The rest is what was captured at the open.
        assert_eq!(f.captured_unix_s, at_open);
        // A later refresh keeps the dump it has.
        std::fs::write(
            root.join("sys/class/devcoredump/devcd7/data"),
            "a later reset\n",
        )
        .unwrap();
        f.refresh(&roots, Some("0000:c3:00.0"));
        assert!(String::from_utf8_lossy(&f.devcoredumps[0].data).contains("ring gfx_0.0.0"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn pci_addresses_are_validated() {
        for ok in ["0000:c3:00.0", "0000:03:00.7", "10000:e1:00.0"] {
            assert!(valid_pci_address(ok), "{ok}");
        }
        for bad in [
            "../../../../etc",
            "0000:c3:00.0/../../x",
            "0000:c3:00.8",
            "000:c3:00.0",
            "0000:c3:00",
            "",
            "0000:g3:00.0",
            "0000:c3:00.0\n",
        ] {
            assert!(!valid_pci_address(bad), "{bad:?}");
        }
    }

    #[test]
    fn collects_each_fact_or_its_reason() {
        let root = fake_host("collect");
        let roots = Roots {
            root: root.clone(),
            home: None,
        };
        let f = collect(&roots, Some("0000:c3:00.0"));
        assert_eq!(f.kernel_release.get(), Some("6.1.0-56-amd64"));
        assert_eq!(f.hostname.get(), Some("gpubox7"));
        assert!(f.cmdline.get().unwrap().contains("amdgpu.gpu_recovery=1"));
        assert_eq!(
            f.module_params.get("lockup_timeout").map(String::as_str),
            Some("0")
        );
        assert_eq!(f.module_params.get("mes").map(String::as_str), Some("1"));
        assert_eq!(
            f.amdgpu_version.missing.as_deref(),
            Some("not present on this kernel/host")
        );
        let g = f.gpu.as_ref().unwrap();
        assert_eq!(g.driver.get(), Some("amdgpu"));
        assert_eq!(g.ids["vbios_version"].get(), Some("113-D7070100-100"));
        assert!(g
            .firmware_info
            .get()
            .unwrap()
            .contains("MEC feature version: 35"));
        assert_eq!(f.devcoredumps.len(), 1, "{:?}", f.devcoredumps);
        assert_eq!(f.devcoredumps[0].file, "devcd1.txt");
        assert!(String::from_utf8_lossy(&f.devcoredumps[0].data).contains("AMDGPU Device Coredump"));
        let files = f.files().unwrap();
        assert_eq!(files[1].0, "devcoredump/devcd1.txt");
        let back: HostFacts = serde_json::from_slice(&files[0].1).unwrap();
        assert_eq!(back.devcoredumps[0].bytes, f.devcoredumps[0].bytes);
        // A traversal in the incident's gpu field never becomes a path.
        let bad = collect(&roots, Some("../../../../etc"));
        assert!(bad.gpu.is_none());
        assert!(bad.gpu_missing.unwrap().contains("not a PCI address"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
