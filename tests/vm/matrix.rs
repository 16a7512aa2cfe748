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
}

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

pub fn placement(file: &Path) -> Result<Placement, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))
}
