//! The VM suite's kernel matrix (tests/vm/matrix.toml) and which scenario runs on which
//! kernel. Shared by `cargo xtask vm` (what to boot) and tests/tests/vm.rs (which tests to
//! generate) through `#[path]`, so the two can never disagree.
#![allow(
    dead_code,
    reason = "each includer reads a different part (xtask: series and selection; the tests: the rest)"
)]
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Deserialize, Debug, Clone)]
pub struct Matrix {
    pub kernel: Vec<KernelEntry>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct KernelEntry {
    /// `--kernel` alias: `6.1`, `7`.
    pub series: String,
    #[serde(default)]
    pub archive: String,
    #[serde(default)]
    pub why: String,
    pub scenarios: Selection,
    #[serde(default)]
    pub degraded: Vec<String>,
    #[serde(default)]
    pub features: Vec<String>,
    /// Probe -> the `system:event` hangwatch check must name for it on this series (the
    /// tracepoint variant the catalogue picked).
    #[serde(default)]
    pub hooks: std::collections::BTreeMap<String, String>,
    /// Whether the kernel exposes module BTF (/sys/kernel/btf/amdgpu); 5.10 does not.
    #[serde(default = "yes")]
    pub module_btf: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Selection {
    /// `"all"`.
    All(String),
    Names(Vec<String>),
}

/// The selection keys of a scenario file (the rest is the driver's and the test's business).
#[derive(Deserialize, Debug, Clone, Default)]
pub struct Placement {
    pub name: String,
    /// Exactly these matrix series.
    #[serde(default)]
    pub kernels: Option<Vec<String>>,
    /// Every matrix series at or above this one.
    #[serde(default)]
    pub min_series: Option<String>,
    /// Features the series must declare in the matrix.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Why the scenario is not in the suite yet (what the agent still lacks). Only files under
    /// tests/scenarios/pending/ carry it; the suite skips them and says why.
    #[serde(default)]
    pub pending: Option<String>,
}

/// Where scenarios wait until the agent can meet their expectations.
pub const PENDING_DIR: &str = "pending";

pub fn matrix_path(workspace: &Path) -> PathBuf {
    workspace.join("tests/vm/matrix.toml")
}

pub fn load_matrix(workspace: &Path) -> Result<Matrix, String> {
    let p = matrix_path(workspace);
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let m: Matrix = toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
    for k in &m.kernel {
        if let Selection::All(s) = &k.scenarios {
            if s != "all" {
                return Err(format!(
                    "{}: series {}: scenarios is \"all\" or a list of names, not {s:?}",
                    p.display(),
                    k.series
                ));
            }
        }
    }
    Ok(m)
}

impl Matrix {
    pub fn entry(&self, series: &str) -> Option<&KernelEntry> {
        self.kernel.iter().find(|k| k.series == series)
    }

    /// The matrix series a scenario runs on (in matrix order).
    pub fn series_for(&self, p: &Placement) -> Vec<String> {
        self.kernel
            .iter()
            .filter(|k| runs_on(k, p))
            .map(|k| k.series.clone())
            .collect()
    }
}

fn runs_on(k: &KernelEntry, p: &Placement) -> bool {
    if !p.requires.iter().all(|f| k.features.contains(f)) {
        return false;
    }
    if let Some(list) = &p.kernels {
        return list.contains(&k.series);
    }
    if let Some(min) = &p.min_series {
        return series_key(&k.series) >= series_key(min);
    }
    match &k.scenarios {
        Selection::All(_) => true,
        Selection::Names(n) => n.contains(&p.name),
    }
}

/// `6.12` -> `[6, 12]`; `7` -> `[7]` (so `7` sorts above every 6.x).
pub fn series_key(s: &str) -> Vec<u64> {
    s.split('.').map(|n| n.parse().unwrap_or(0)).collect()
}

/// Every scenario file in `dir`, sorted by file name (their numeric prefix orders them).
pub fn scenario_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    Ok(v)
}

/// A scenario file's selection keys. A `pending` key outside tests/scenarios/pending/ is an
/// error: the suite would run the scenario and fail on what the agent cannot do yet.
pub fn placement(file: &Path) -> Result<Placement, String> {
    let p = read_placement(file)?;
    let in_pending = file
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == PENDING_DIR);
    match (&p.pending, in_pending) {
        (Some(_), false) => Err(format!(
            "{}: a scenario with `pending` belongs in tests/scenarios/{PENDING_DIR}/ (move it, or delete the key once the agent meets its expectations)",
            file.display()
        )),
        (None, true) => Err(format!(
            "{}: a scenario in tests/scenarios/{PENDING_DIR}/ needs `pending = \"what the agent still lacks\"`",
            file.display()
        )),
        (Some(why), true) if why.trim().is_empty() => {
            Err(format!("{}: `pending` is empty; say what the agent still lacks", file.display()))
        }
        _ => Ok(p),
    }
}

fn read_placement(file: &Path) -> Result<Placement, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))
}

/// The pending scenarios (tests/scenarios/pending/*.toml) with their placement, sorted by name.
/// The suite does not run them; `cargo xtask vm --scenario FILE` runs one.
pub fn pending_scenarios(scenarios_dir: &Path) -> Result<Vec<(PathBuf, Placement)>, String> {
    let dir = scenarios_dir.join(PENDING_DIR);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    scenario_files(&dir)?
        .into_iter()
        .map(|f| placement(&f).map(|p| (f, p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Every pending scenario says why it waits, would run on some kernel of the matrix, and
    /// has a name no suite scenario uses (its results would overwrite the other's).
    #[test]
    fn pending_scenarios_say_why_and_run_somewhere() {
        let ws = workspace();
        let m = load_matrix(&ws).unwrap();
        let dir = ws.join("tests/scenarios");
        let pending = pending_scenarios(&dir).unwrap();
        let names: Vec<String> = scenario_files(&dir)
            .unwrap()
            .iter()
            .map(|f| placement(f).unwrap().name)
            .collect();
        for (f, p) in &pending {
            assert!(
                !m.series_for(p).is_empty(),
                "{}: runs on no kernel",
                f.display()
            );
            assert!(
                !names.contains(&p.name),
                "{}: name {} is taken",
                f.display(),
                p.name
            );
        }
    }

    #[test]
    fn pending_key_outside_the_pending_dir_is_refused() {
        let dir = std::env::temp_dir().join(format!("hw-pending-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(PENDING_DIR)).unwrap();
        let top = dir.join("x.toml");
        std::fs::write(&top, "name = \"x\"\npending = \"later\"\n").unwrap();
        assert!(placement(&top)
            .unwrap_err()
            .contains("belongs in tests/scenarios/pending/"));
        let inner = dir.join(PENDING_DIR).join("y.toml");
        std::fs::write(&inner, "name = \"y\"\n").unwrap();
        assert!(placement(&inner).unwrap_err().contains("needs `pending"));
        std::fs::write(&inner, "name = \"y\"\npending = \"the stall incident\"\n").unwrap();
        assert_eq!(
            placement(&inner).unwrap().pending.as_deref(),
            Some("the stall incident")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
