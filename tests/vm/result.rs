//! One scenario's result: hwdriver builds it in the VM and prints it, xtask stores it as
//! `scenarios/<name>.json`, and the host tests (tests/tests/vm.rs) read it. One type for all
//! three, so a field the driver adds or renames is a compile error on the other sides.
//!
//! Incidents stay JSON documents here: the driver does not link the core, and the host tests
//! check each against the committed `hangwatch.incident/1` schema before reading it.
#![allow(
    dead_code,
    reason = "each side (driver, xtask, host tests) uses a part of the type"
)]
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One `hangwatch run` under the driver: how it ended and everything it printed.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentRun {
    /// Whether the agent said it attached before the clients started.
    pub attached: bool,
    /// The exit code; null when a signal ended it (killed after its duration + grace).
    pub agent_exit: Option<i32>,
    pub agent_runtime_ms: u64,
    /// The `hangwatch.incident/1` documents it printed on stdout, in order.
    pub incidents: Vec<Value>,
    /// Its other stdout lines (the demo's text attribution).
    pub agent_stdout_text: Vec<String>,
    /// Its stderr lines (the attach and stats lines), then the driver's own notes.
    pub agent_stderr: Vec<String>,
}

/// A scenario run: the agent's run, the simulated clients, what the kernel published.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ScenarioResult {
    /// Why the driver could not run the scenario; the other fields are then empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub run: AgentRun,
    /// Each scenario process, in the file's order.
    pub processes: Vec<ProcessResult>,
    /// drm and devcoredump uevents seen while the scenario ran.
    pub uevents: Collected<Uevent>,
    /// Devcoredumps present when the scenario ended.
    pub devcoredumps: Vec<Devcoredump>,
    /// The incident directory, bug report and export (scenarios with `bugreport = true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Artifacts>,
    /// The simulator's `modprobe` (status, stdout, stderr), only when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modprobe: Option<Value>,
    pub wall_ms: u64,
    /// The kernel log of the scenario, one line each.
    pub dmesg: Vec<String>,
}

/// One simulated GPU client.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ProcessResult {
    pub name: String,
    pub pid: u32,
    /// Its last JSON line; none when it printed none (it crashed).
    pub summary: Option<ChildSummary>,
}

/// What a client says it did.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ChildSummary {
    /// Submissions the driver accepted.
    pub submitted: u64,
    /// Refused submissions by errno.
    pub errors: BTreeMap<i32, u64>,
    /// From "go" to the last submission.
    pub submit_ms: u64,
    /// The KFD thread's summary, when the process has `kfd` operations.
    pub kfd: Option<Value>,
    /// Mesa-style messages the client printed (a context lost, a job refused).
    pub mesa: Vec<String>,
}

/// A list the driver gathered, or why it could not.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Collected<T> {
    Items(Vec<T>),
    Error { error: String },
}

impl<T> Default for Collected<T> {
    fn default() -> Self {
        Collected::Items(Vec::new())
    }
}

/// One kernel uevent: when the driver read it and its `KEY=value` fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct Uevent {
    pub monotonic_s: f64,
    pub fields: Vec<String>,
}

/// One /sys/class/devcoredump entry.
#[derive(Debug, Serialize, Deserialize)]
pub struct Devcoredump {
    pub name: String,
    pub failing_device: String,
    pub bytes: usize,
    /// The start of its data, as text.
    pub head: String,
}

/// What the driver built from the agent's output inside the VM.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Artifacts {
    /// Why there is nothing (no incident directory); the other fields are then empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub export_exit: Option<i32>,
    pub export_stderr: String,
    /// The incident directory's name under the agent's `--output`.
    pub incident_dir: Option<String>,
    pub bugreport_exit: Option<i32>,
    pub bugreport_stderr: String,
    pub files: Files,
}

/// The artifact files: their bytes as the driver sends them, or their names once xtask has
/// written them under `scenarios/<name>/`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Files {
    /// Relative path -> hex bytes (binary files survive the serial console).
    Hex(BTreeMap<String, String>),
    /// Relative paths, sorted.
    Written(Vec<String>),
}

impl Default for Files {
    fn default() -> Self {
        Files::Written(Vec::new())
    }
}
