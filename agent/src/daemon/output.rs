//! Where a closed incident goes: metrics, stdout (text or JSON line), the incident directory,
//! the journal. One failing sink never stops the others or the agent.
//!
//! Wave 2 (not here yet): writing an incident as soon as it opens (provisional, rewritten as
//! evidence arrives) and capturing host facts at the hang are one more method here, e.g.
//! `Output::update(&Incident)`, called from `State::push` with each incident the correlator
//! reports as opened or changed (the provisional-incident API), beside `emit` for closed ones.
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Stdout;
use crate::incident::Incident;
use crate::journald::{incident_fields, Journal};
use crate::metrics::Shared;
use crate::procscan::SeenCache;
use crate::report::incident_dir::{Extras, IncidentDir, Retention};
use crate::report::procinfo::capture_process_maps;
use crate::{info, messages, warn};

pub struct Output {
    pub stdout: Stdout,
    pub dir: Option<IncidentDir>,
    /// Incident directories older than this are deleted (checked on the timer).
    pub max_age: Option<Duration>,
    pub journal: Option<Journal>,
    pub metrics: Option<Shared>,
    /// Incidents emitted so far.
    pub count: u64,
}

/// GPU driver libraries of the incident's culprit and victims: from the first-sight capture
/// (the process may have exited since), else read now if the process is still alive.
fn extras_for(inc: &Incident, seen: &SeenCache) -> Extras {
    let mut pids: Vec<u32> = inc.culprit.iter().map(|c| c.pid).collect();
    for v in &inc.victims {
        if !pids.contains(&v.pid) {
            pids.push(v.pid);
        }
    }
    let process_maps = pids
        .into_iter()
        .filter(|p| *p != 0)
        .filter_map(|pid| match seen.driver_maps(pid) {
            Some(m) => Some((pid, m.to_vec())),
            None => capture_process_maps(pid).ok().map(|m| (pid, m)),
        })
        .collect();
    Extras {
        process_maps,
        // Host facts and devcoredumps, read before the dump expires (5 minutes after the
        // reset). TODO(wave 2): capture when the incident opens rather than when it is written.
        host: Some(crate::hostfacts::collect(
            &crate::hostfacts::Roots::default(),
            inc.gpu.as_deref(),
        )),
    }
}

impl Output {
    /// Opens the incident directory of `dir` with the given retention.
    pub fn open_dir(
        dir: Option<&Path>,
        retention: Retention,
    ) -> anyhow::Result<Option<IncidentDir>> {
        dir.map(|p| IncidentDir::open(p, retention)).transpose()
    }

    pub fn emit(&mut self, incidents: Vec<Incident>, seen: &SeenCache) {
        for inc in incidents {
            self.count += 1;
            if let Some(m) = &self.metrics {
                if let Ok(mut m) = m.lock() {
                    m.record_incident(&inc);
                }
            }
            self.print(&inc);
            let written = self.write_dir(&inc, seen);
            self.log_journal(&inc, written.as_deref());
        }
    }

    fn print(&self, inc: &Incident) {
        match self.stdout {
            Stdout::Json => match serde_json::to_string(inc) {
                Ok(s) => messages::stdout(&(s + "\n")),
                Err(e) => warn!("cannot serialise incident {}: {e}", inc.id),
            },
            Stdout::Text => messages::stdout(&crate::report::text::render(inc)),
            Stdout::None => {}
        }
    }

    fn write_dir(&mut self, inc: &Incident, seen: &SeenCache) -> Option<PathBuf> {
        let d = self.dir.as_mut()?;
        match d.write(inc, &extras_for(inc, seen)) {
            Ok(p) => {
                info!("incident written to {}", p.display());
                Some(p)
            }
            Err(e) => {
                warn!("cannot write incident {}: {e:#}", inc.id);
                None
            }
        }
    }

    fn log_journal(&mut self, inc: &Incident, dir: Option<&Path>) {
        if let Some(j) = self.journal.as_mut() {
            if let Err(e) = j.send(&incident_fields(inc, dir)) {
                warn!("journal: cannot log incident {}: {e}", inc.id);
            }
        }
    }

    /// Deletes incident directories older than `max_age` (by incident.json mtime).
    pub fn prune_by_age(&self) {
        let (Some(d), Some(age)) = (&self.dir, self.max_age) else {
            return;
        };
        match crate::store::prune_older_than(d.root(), age) {
            Ok(0) => {}
            Ok(n) => info!(
                "retention: removed {n} incident(s) older than {} days",
                age.as_secs() / 86400
            ),
            Err(e) => warn!("retention by age: {e:#}"),
        }
    }
}
