//! `/etc/hangwatch/config.toml`: the service's settings. `hangwatch run` reads a config file
//! only when given `--config` (the packaged unit does), so an interactive run never picks up
//! the service's metrics port or output directory; its flags override the file. `check`
//! validates the file and prints the effective settings. A key missing from the file means
//! the interactive default; unknown keys are errors (a typo must not be silently ignored).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Where the packaged service reads its configuration.
pub const DEFAULT_CONFIG: &str = "/etc/hangwatch/config.toml";
/// A config file larger than this is not a config file.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The file as written (every key optional).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub output: OutputSection,
    #[serde(default)]
    pub agent: AgentSection,
    #[serde(default)]
    pub control: ControlSection,
    #[serde(default)]
    pub metrics: MetricsSection,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Incident directories are written here (`hangwatch list/show` read it).
    pub dir: Option<PathBuf>,
    /// What goes to stdout per incident: "text", "json" (one line each) or "none".
    pub stdout: Option<String>,
    /// Retention: keep at most this many incidents ...
    pub max_incidents: Option<usize>,
    /// ... taking at most this much space ("256M", "1G", bytes) ...
    pub max_size: Option<String>,
    /// ... none older than this ("30d", "12h"; "0" = no age limit).
    pub max_age: Option<String>,
    /// Structured journal entry per incident: "auto" (when running under systemd), "on", "off".
    pub journal: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Jobs kept per ring in the flight recorder.
    pub ring_depth: Option<usize>,
    /// eBPF ring buffer size in KiB.
    pub ring_kib: Option<u32>,
    /// Open incidents kept at once (a reset storm closes the oldest early instead of growing).
    pub max_open_incidents: Option<usize>,
    /// A begun GPU reset keeps its incident open until the reset ends, at most this long
    /// ("120s", "2m"): MxGPU function-level resets take seconds, some full resets tens of seconds.
    pub reset_cap: Option<String>,
    /// A ring whose oldest unfinished job has run this long opens a `stall` incident
    /// ("5s"; "0" = never).
    pub stall_after: Option<String>,
    /// A reset loop: this many incidents with a reset on one GPU within `reset_loop_window`
    /// (0 or 1 = off).
    pub reset_loop_resets: Option<usize>,
    /// The reset loop's window ("10m"); a loop ends when it passes without another reset.
    pub reset_loop_window: Option<String>,
    /// Persistent state (the /dev/kmsg cursor); "" = none (kernel log read from its end).
    pub state_dir: Option<PathBuf>,
    /// false = kernel log only (hosts where eBPF cannot load).
    pub probes: Option<bool>,
    /// false = no /dev/kmsg cross-check.
    pub kernel_log: Option<bool>,
    /// true = also the per-job detail probes (scheduler queue/run, hardware fences, VMID grab).
    pub trace_all: Option<bool>,
    /// false = no flight recorder in the kernel: every job's events go to the agent.
    pub recorder: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// Control socket for `hangwatch export`; "" disables it.
    pub socket: Option<PathBuf>,
    /// Group allowed to use the socket (mode 0660); unset = owner only (0600).
    pub group: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Prometheus exposition address ("127.0.0.1:9464"); "" = off.
    pub listen: Option<String>,
    /// Distinct process names given their own label value; the rest count as "_other".
    pub max_comm_labels: Option<usize>,
}

/// How incidents go to stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stdout {
    Text,
    Json,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalMode {
    Auto,
    On,
    Off,
}

/// The effective settings of one `hangwatch run`: defaults < config file < flags.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Settings {
    /// The file these came from (SIGHUP re-reads it); None = flags and defaults only.
    pub config_path: Option<PathBuf>,
    pub output_dir: Option<PathBuf>,
    pub stdout: Stdout,
    pub max_incidents: usize,
    pub max_bytes: u64,
    /// None = no age limit.
    #[serde(serialize_with = "ser_opt_secs")]
    pub max_age: Option<Duration>,
    pub journal: JournalMode,
    pub ring_depth: usize,
    pub ring_kib: u32,
    pub max_open_incidents: usize,
    #[serde(serialize_with = "ser_secs")]
    pub reset_cap: Duration,
    /// None = no stall incidents.
    #[serde(serialize_with = "ser_opt_secs")]
    pub stall_after: Option<Duration>,
    pub reset_loop_resets: usize,
    #[serde(serialize_with = "ser_secs")]
    pub reset_loop_window: Duration,
    pub state_dir: Option<PathBuf>,
    pub probes: bool,
    pub kernel_log: bool,
    pub trace_all: bool,
    pub recorder: bool,
    pub socket: Option<PathBuf>,
    pub socket_group: Option<String>,
    pub metrics: Option<SocketAddr>,
    pub max_comm_labels: usize,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

fn ser_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs()),
        None => s.serialize_none(),
    }
}

impl Default for Settings {
    /// An interactive `hangwatch run` with no flags.
    fn default() -> Self {
        Settings {
            config_path: None,
            output_dir: None,
            stdout: Stdout::Text,
            max_incidents: 100,
            max_bytes: 256 << 20,
            max_age: None,
            journal: JournalMode::Auto,
            ring_depth: 256,
            ring_kib: 4096,
            max_open_incidents: 16,
            reset_cap: Duration::from_nanos(
                hangwatch_core::correlate::Config::default().reset_cap_ns,
            ),
            stall_after: Some(Duration::from_nanos(
                hangwatch_core::correlate::Config::default().stall_after_ns,
            )),
            reset_loop_resets: hangwatch_core::correlate::Config::default().loop_resets,
            reset_loop_window: Duration::from_nanos(
                hangwatch_core::correlate::Config::default().loop_window_ns,
            ),
            state_dir: None,
            probes: true,
            trace_all: false,
            recorder: true,
            kernel_log: true,
            socket: Some(PathBuf::from(crate::sinks::control::DEFAULT_SOCKET)),
            socket_group: None,
            metrics: None,
            max_comm_labels: 50,
        }
    }
}

/// Reads and parses a config file (regular file, not a symlink target swap: opened once).
pub fn load(path: &Path) -> Result<File> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, and a reload
    // (SIGHUP) with it would hold off SIGTERM. The type is checked before anything is read.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        bail!("config {} is not a regular file", path.display());
    }
    let mut text = String::new();
    f.take(MAX_CONFIG_BYTES)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read config {} (not UTF-8?)", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "config {}: {} (see docs/operations.md for the keys)",
            path.display(),
            e.to_string().trim_end()
        )
    })
}

/// "256M", "1G", "4096K", "100000" → bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("bad size {s:?}: expected e.g. 256M, 1G or a byte count"))?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => bail!("bad size unit in {s:?}: use K, M or G"),
    };
    n.checked_mul(mul)
        .with_context(|| format!("size {s:?} too large"))
}

/// "120s", "2m" → the reset cap, between 1 s and 1 h (longer would hold every incident of a
/// reset that never reports its end for that long).
pub fn parse_reset_cap(s: &str) -> Result<Duration> {
    let ns = parse_duration_ns(s)?;
    let d = Duration::from_nanos(ns);
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d) {
        bail!("reset cap {s:?}: use 1s to 1h (e.g. \"120s\")");
    }
    Ok(d)
}

/// "5s", "2m", "0" → how long a job runs before its ring counts as stalled (0 = never).
pub fn parse_stall_after(s: &str) -> Result<Option<Duration>> {
    let d = Duration::from_nanos(parse_duration_ns(s)?);
    if d.is_zero() {
        return Ok(None);
    }
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d) {
        bail!("stall_after {s:?}: use 1s to 1h, or \"0\" for no stall incidents (e.g. \"5s\")");
    }
    Ok(Some(d))
}

/// "10m", "1h" → the reset loop's window, between 1 s and 1 day.
pub fn parse_loop_window(s: &str) -> Result<Duration> {
    let d = Duration::from_nanos(parse_duration_ns(s)?);
    if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&d) {
        bail!("reset loop window {s:?}: use 1s to 1d (e.g. \"10m\")");
    }
    Ok(d)
}

/// "30d", "12h", "90m", "0" → duration (0 = none).
pub fn parse_age(s: &str) -> Result<Option<Duration>> {
    let ns = parse_duration_ns(s)?;
    Ok((ns > 0).then(|| Duration::from_nanos(ns)))
}

fn empty_is_none(p: PathBuf) -> Option<PathBuf> {
    (!p.as_os_str().is_empty()).then_some(p)
}

impl Settings {
    /// Applies a config file over the defaults; `path` is remembered for SIGHUP.
    pub fn from_file(file: &File, path: &Path) -> Result<Settings> {
        let mut s = Settings {
            config_path: Some(path.to_path_buf()),
            ..Settings::default()
        };
        let o = &file.output;
        if let Some(d) = &o.dir {
            s.output_dir = empty_is_none(d.clone());
        }
        if let Some(v) = &o.stdout {
            s.stdout = match v.as_str() {
                "text" => Stdout::Text,
                "json" => Stdout::Json,
                "none" => Stdout::None,
                other => bail!("output.stdout = {other:?}: use \"text\", \"json\" or \"none\""),
            };
        }
        if let Some(n) = o.max_incidents {
            if n == 0 {
                bail!("output.max_incidents = 0 would delete every incident: use 1 or more");
            }
            s.max_incidents = n;
        }
        if let Some(v) = &o.max_size {
            s.max_bytes = parse_size(v).context("output.max_size")?;
        }
        if let Some(v) = &o.max_age {
            s.max_age = parse_age(v).context("output.max_age")?;
        }
        if let Some(v) = &o.journal {
            s.journal = match v.as_str() {
                "auto" => JournalMode::Auto,
                "on" => JournalMode::On,
                "off" => JournalMode::Off,
                other => bail!("output.journal = {other:?}: use \"auto\", \"on\" or \"off\""),
            };
        }
        let a = &file.agent;
        if let Some(n) = a.ring_depth {
            s.ring_depth = n.clamp(1, 1 << 20);
        }
        if let Some(n) = a.ring_kib {
            s.ring_kib = n.clamp(4, 1 << 20);
        }
        if let Some(n) = a.max_open_incidents {
            s.max_open_incidents = n.clamp(1, 4096);
        }
        if let Some(v) = &a.reset_cap {
            s.reset_cap = parse_reset_cap(v).context("agent.reset_cap")?;
        }
        if let Some(v) = &a.stall_after {
            s.stall_after = parse_stall_after(v).context("agent.stall_after")?;
        }
        if let Some(n) = a.reset_loop_resets {
            s.reset_loop_resets = n.min(1000);
        }
        if let Some(v) = &a.reset_loop_window {
            s.reset_loop_window = parse_loop_window(v).context("agent.reset_loop_window")?;
        }
        if let Some(d) = &a.state_dir {
            s.state_dir = empty_is_none(d.clone());
        }
        s.probes = a.probes.unwrap_or(s.probes);
        s.kernel_log = a.kernel_log.unwrap_or(s.kernel_log);
        s.trace_all = a.trace_all.unwrap_or(s.trace_all);
        s.recorder = a.recorder.unwrap_or(s.recorder);
        let c = &file.control;
        if let Some(p) = &c.socket {
            s.socket = empty_is_none(p.clone());
        }
        s.socket_group = c.group.clone().filter(|g| !g.is_empty());
        if let Some(g) = &s.socket_group {
            group_id(g).context("control.group")?;
        }
        let m = &file.metrics;
        if let Some(l) = &m.listen {
            s.metrics = parse_listen(l).context("metrics.listen")?;
        }
        if let Some(n) = m.max_comm_labels {
            s.max_comm_labels = n.min(10_000);
        }
        Ok(s)
    }

    /// What changed between two settings that a running agent cannot apply (needs a restart).
    pub fn restart_needed(&self, new: &Settings) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut check = |same: bool, what: &'static str| {
            if !same {
                v.push(what);
            }
        };
        check(self.ring_depth == new.ring_depth, "agent.ring_depth");
        check(self.ring_kib == new.ring_kib, "agent.ring_kib");
        check(
            self.max_open_incidents == new.max_open_incidents,
            "agent.max_open_incidents",
        );
        check(self.reset_cap == new.reset_cap, "agent.reset_cap");
        check(self.stall_after == new.stall_after, "agent.stall_after");
        check(
            self.reset_loop_resets == new.reset_loop_resets,
            "agent.reset_loop_resets",
        );
        check(
            self.reset_loop_window == new.reset_loop_window,
            "agent.reset_loop_window",
        );
        check(self.state_dir == new.state_dir, "agent.state_dir");
        check(self.probes == new.probes, "agent.probes");
        check(self.kernel_log == new.kernel_log, "agent.kernel_log");
        check(self.trace_all == new.trace_all, "agent.trace_all");
        check(self.recorder == new.recorder, "agent.recorder");
        check(self.socket == new.socket, "control.socket");
        check(self.socket_group == new.socket_group, "control.group");
        check(self.metrics == new.metrics, "metrics.listen");
        check(
            self.max_comm_labels == new.max_comm_labels,
            "metrics.max_comm_labels",
        );
        v
    }
}

/// Settings given as `hangwatch run` flags: they win over the file, also after a reload.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub output_dir: Option<PathBuf>,
    pub json: bool,
    pub ring_depth: Option<usize>,
    pub ring_kib: Option<u32>,
    pub reset_cap: Option<Duration>,
    /// `Some(None)`: stall incidents off.
    pub stall_after: Option<Option<Duration>>,
    pub socket: Option<PathBuf>,
    pub no_socket: bool,
    pub metrics: Option<SocketAddr>,
    pub state_dir: Option<PathBuf>,
    pub kmsg_only: bool,
    pub trace_all: bool,
}

impl Overrides {
    pub fn apply(&self, s: &mut Settings) {
        if let Some(d) = &self.output_dir {
            s.output_dir = Some(d.clone());
        }
        if self.json {
            s.stdout = Stdout::Json;
        }
        if let Some(n) = self.ring_depth {
            s.ring_depth = n.max(1);
        }
        if let Some(n) = self.ring_kib {
            s.ring_kib = n;
        }
        if let Some(d) = self.reset_cap {
            s.reset_cap = d;
        }
        if let Some(d) = self.stall_after {
            s.stall_after = d;
        }
        if let Some(p) = &self.socket {
            s.socket = Some(p.clone());
        }
        if self.no_socket {
            s.socket = None;
        }
        if self.metrics.is_some() {
            s.metrics = self.metrics;
        }
        if let Some(d) = &self.state_dir {
            s.state_dir = Some(d.clone());
        }
        s.trace_all |= self.trace_all;
        if self.kmsg_only {
            s.probes = false;
        }
    }
}

/// "" → off; "127.0.0.1:9464" / `"[::1]:9464"` → address.
pub fn parse_listen(s: &str) -> Result<Option<SocketAddr>> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    s.trim()
        .parse()
        .map(Some)
        .with_context(|| format!("bad listen address {s:?}: expected IP:PORT, e.g. 127.0.0.1:9464"))
}

/// The gid of a group name (getgrnam_r), with a clear error when it does not exist.
pub fn group_id(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name).context("group name contains NUL")?;
    // SAFETY: libc::group is plain data (integers and pointers): all zeroes is a valid value,
    // which getgrnam_r overwrites.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives it.
    let r =
        unsafe { libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out) };
    if r != 0 || out.is_null() {
        bail!("group {name:?} does not exist (create it with `groupadd {name}` or unset it)");
    }
    Ok(grp.gr_gid)
}

/// Parse `90s`, `10m`, `2h`, `1d`, `500ms` or plain seconds into ns.
pub fn parse_duration_ns(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("bad duration {s:?}: expected e.g. 90s, 10m, 2h"))?;
    let mul: u64 = match unit {
        "" | "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        _ => anyhow::bail!("bad duration unit in {s:?}: use ms, s, m, h or d"),
    };
    n.checked_mul(mul)
        .with_context(|| format!("duration {s:?} too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("90s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration_ns("10m").unwrap(), 600_000_000_000);
        assert_eq!(parse_duration_ns("5").unwrap(), 5_000_000_000);
        assert!(parse_duration_ns("10x").is_err());
        assert!(parse_duration_ns("").is_err());
    }

    fn parse(text: &str) -> Result<Settings> {
        let f: File = toml::from_str(text)?;
        Settings::from_file(&f, Path::new("/etc/hangwatch/config.toml"))
    }

    #[test]
    fn shipped_config_parses_to_the_service_settings() {
        let text = include_str!("../../packaging/config.toml");
        let s = parse(text).unwrap();
        assert_eq!(
            s.output_dir.as_deref(),
            Some(Path::new("/var/lib/hangwatch/incidents"))
        );
        assert_eq!(s.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(
            s.state_dir.as_deref(),
            Some(Path::new("/var/lib/hangwatch"))
        );
        assert_eq!(s.stdout, Stdout::None);
        assert_eq!(s.max_age, Some(Duration::from_secs(90 * 86400)));
    }

    #[test]
    fn missing_keys_are_interactive_defaults_and_typos_are_errors() {
        let s = parse("").unwrap();
        assert_eq!(
            Settings {
                config_path: None,
                ..s
            },
            Settings::default()
        );
        let e = parse("[output]\ndirr = \"/x\"\n").unwrap_err().to_string();
        assert!(e.contains("dirr"), "{e}");
        let e = parse("[metrics]\nlisten = \"localhost\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("IP:PORT"), "{e:#}");
        assert!(parse("[output]\nmax_incidents = 0\n").is_err());
        assert!(parse("[output]\nstdout = \"yaml\"\n").is_err());
        assert!(parse("[control]\ngroup = \"no-such-group-hw\"\n").is_err());
        let s = parse("[metrics]\nlisten = \"\"\n[control]\nsocket = \"\"\n").unwrap();
        assert_eq!((s.metrics, s.socket), (None, None));
    }

    #[test]
    fn sizes_and_ages() {
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12T").is_err());
        assert!(parse_size("99999999999999G").is_err());
        assert_eq!(
            parse_age("30d").unwrap(),
            Some(Duration::from_secs(30 * 86400))
        );
        assert_eq!(parse_age("0").unwrap(), None);
    }

    #[test]
    fn flags_override_the_file() {
        let mut s = parse("[output]\ndir = \"/from/file\"\nstdout = \"none\"\n[metrics]\nlisten = \"127.0.0.1:9464\"\n").unwrap();
        Overrides {
            output_dir: Some("/from/flag".into()),
            json: true,
            no_socket: true,
            metrics: Some("127.0.0.1:1".parse().unwrap()),
            kmsg_only: true,
            ..Default::default()
        }
        .apply(&mut s);
        assert_eq!(s.output_dir.as_deref(), Some(Path::new("/from/flag")));
        assert_eq!(s.stdout, Stdout::Json);
        assert_eq!(s.socket, None);
        assert_eq!(s.metrics, Some("127.0.0.1:1".parse().unwrap()));
        assert!(!s.probes);
        // No flags: the file's values stay.
        let mut t = parse("[output]\ndir = \"/from/file\"\n").unwrap();
        Overrides::default().apply(&mut t);
        assert_eq!(t.output_dir.as_deref(), Some(Path::new("/from/file")));
    }

    #[test]
    fn stall_after_trace_all_and_recorder_from_the_file() {
        let d = Settings::default();
        assert_eq!(d.stall_after, Some(Duration::from_secs(5)));
        assert!(!d.trace_all && d.recorder);
        let s =
            parse("[agent]\nstall_after = \"0\"\ntrace_all = true\nrecorder = false\n").unwrap();
        assert_eq!(s.stall_after, None);
        assert!(s.trace_all && !s.recorder);
        let s = parse("[agent]\nstall_after = \"2m\"\n").unwrap();
        assert_eq!(s.stall_after, Some(Duration::from_secs(120)));
        let e = parse("[agent]\nstall_after = \"500ms\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("use 1s to 1h"), "{e:#}");
        assert_eq!(
            d.restart_needed(&Settings {
                trace_all: true,
                ..d.clone()
            }),
            vec!["agent.trace_all"]
        );
    }

    #[test]
    fn reset_cap_from_the_file_and_the_flag() {
        assert_eq!(Settings::default().reset_cap, Duration::from_secs(120));
        let mut s = parse("[agent]\nreset_cap = \"5m\"\n").unwrap();
        assert_eq!(s.reset_cap, Duration::from_secs(300));
        assert!(s
            .restart_needed(&Settings {
                reset_cap: Duration::from_secs(9),
                ..s.clone()
            })
            .contains(&"agent.reset_cap"));
        Overrides {
            reset_cap: Some(parse_reset_cap("30s").unwrap()),
            ..Default::default()
        }
        .apply(&mut s);
        assert_eq!(s.reset_cap, Duration::from_secs(30));
        for bad in ["0", "2h", "soon"] {
            let e = parse(&format!("[agent]\nreset_cap = \"{bad}\"\n")).unwrap_err();
            assert!(format!("{e:#}").contains("agent.reset_cap"), "{bad}: {e:#}");
        }
    }

    #[test]
    fn reset_loop_rule_from_the_file() {
        let d = Settings::default();
        assert_eq!(
            (d.reset_loop_resets, d.reset_loop_window),
            (3, Duration::from_secs(600))
        );
        let s = parse("[agent]\nreset_loop_resets = 5\nreset_loop_window = \"1m\"\n").unwrap();
        assert_eq!(
            (s.reset_loop_resets, s.reset_loop_window),
            (5, Duration::from_secs(60))
        );
        assert_eq!(
            d.restart_needed(&s),
            ["agent.reset_loop_resets", "agent.reset_loop_window"]
        );
        for bad in ["0", "2d", "often"] {
            let e = parse(&format!("[agent]\nreset_loop_window = \"{bad}\"\n")).unwrap_err();
            assert!(
                format!("{e:#}").contains("agent.reset_loop_window"),
                "{bad}: {e:#}"
            );
        }
    }

    #[test]
    fn restart_needed_names_what_cannot_change_live() {
        let a = Settings::default();
        let mut b = a.clone();
        b.max_incidents = 5;
        b.output_dir = Some("/x".into());
        assert!(a.restart_needed(&b).is_empty());
        b.metrics = Some("127.0.0.1:1".parse().unwrap());
        b.ring_depth = 9;
        assert_eq!(
            a.restart_needed(&b),
            vec!["agent.ring_depth", "metrics.listen"]
        );
    }

    #[test]
    fn a_fifo_as_config_is_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("hw-cfg-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("hangwatch.toml");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let (tx, rx) = std::sync::mpsc::channel();
        let p2 = p.clone();
        std::thread::spawn(move || {
            let _ = tx.send(load(&p2).map(|_| ()).map_err(|e| format!("{e:#}")));
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("load() blocked on a FIFO");
        assert!(r.unwrap_err().contains("not a regular file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
