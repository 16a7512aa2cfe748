//! One directory per incident (incident.json, report.md, trace.perfetto, kernel-log excerpt).
//! CONTRACT (used by `run --output` and `analyze --output`); placeholder until the report module lands.
use std::path::{Path, PathBuf};

use crate::incident::Incident;

/// Limits so a reset storm cannot fill the disk.
#[derive(Clone, Debug)]
pub struct Retention {
    pub max_incidents: usize,
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { max_incidents: 100, max_bytes: 256 << 20 }
    }
}

/// What the live agent captured at incident time besides the incident itself.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    /// `/proc/PID/maps` lines mentioning GPU userspace drivers, per involved pid, captured while alive.
    pub process_maps: Vec<(u32, Vec<String>)>,
}

pub struct IncidentDir {
    root: PathBuf,
    #[allow(dead_code)]
    retention: Retention,
}

impl IncidentDir {
    pub fn open(root: &Path, retention: Retention) -> anyhow::Result<Self> {
        Ok(IncidentDir { root: root.to_path_buf(), retention })
    }
    /// Write one incident; returns its directory.
    pub fn write(&mut self, incident: &Incident, _extras: &Extras) -> anyhow::Result<PathBuf> {
        anyhow::bail!("incident directory writer not implemented yet ({} under {})", incident.id, self.root.display())
    }
}
