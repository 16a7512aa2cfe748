//! Where incidents go. Closed ones: metrics, stdout (text or JSON line), the incident
//! directory (final write), the journal. Open ones (`update`, from the correlator's
//! provisional reports): the incident directory only, as soon as they open and at most once a
//! second after (see [`super::durable`]). One failing sink never stops the others or the agent.
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::Stdout;
use crate::sinks::incident_dir::{Extras, IncidentDir, Retention};
use crate::sinks::journald::{incident_fields, Journal};
use crate::sinks::messages;
use crate::sinks::metrics::Shared;
use crate::sources::identity;
use crate::sources::procscan::SeenCache;
use crate::{info, warn};
use hangwatch_core::incident::Incident;

use super::durable::Durable;

pub struct Output {
    pub stdout: Stdout,
    pub dir: Option<IncidentDir>,
    /// Incident directories older than this are deleted (checked on the timer).
    pub max_age: Option<Duration>,
    pub journal: Option<Journal>,
    pub metrics: Option<Shared>,
    /// Incidents emitted so far.
    pub count: u64,
    /// Open incidents' early writes and the facts captured when they opened.
    pub durable: Durable,
    /// Ids found final on disk when they opened again: closed and reported before a kill -9
    /// left the kmsg cursor behind them. Neither rewritten nor reported again.
    pub reported_before: std::collections::HashSet<String>,
    /// Closed incidents whose write failed (a full disk), retried on the timer. While any is
    /// here, or any was dropped from here, the kmsg cursor stays before their records.
    pub unstored: Unstored,
}

/// At most this many unwritten incidents are kept in memory for a retry.
const MAX_UNSTORED: usize = 16;

/// Closed incidents not written yet.
#[derive(Default)]
pub struct Unstored {
    queue: std::collections::VecDeque<(Incident, Extras)>,
    /// Dropped from the queue when it was full: only a restart (re-reading the kernel log
    /// from the held cursor) writes them.
    dropped: u64,
}

impl Unstored {
    /// True when an incident read from the kernel log is not on disk: the cursor must not
    /// move past its records.
    pub fn holds_cursor(&self) -> bool {
        !self.queue.is_empty() || self.dropped > 0
    }

    fn push(&mut self, inc: Incident, ex: Extras) {
        if self.queue.len() >= MAX_UNSTORED {
            if let Some((old, _)) = self.queue.pop_front() {
                self.dropped += 1;
                warn!(
                    "incident {} is not written and no longer retried; a restart re-reads it from the kernel log",
                    old.id
                );
            }
        }
        self.queue.push_back((inc, ex));
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

    /// The incident directory, at start or on a reload: in a directory new to this agent,
    /// what a stopped agent left open is looked for.
    pub fn set_dir(&mut self, dir: Option<IncidentDir>) {
        if let Some(d) = &dir {
            if self.dir.as_ref().map(IncidentDir::root) != Some(d.root()) {
                self.durable.load_stale(d);
            }
        }
        self.dir = dir;
    }

    /// Closed incidents.
    pub fn emit(&mut self, incidents: Vec<Incident>, seen: &SeenCache) {
        for mut inc in incidents {
            attach_identities(&mut inc, seen);
            self.count += 1;
            // First: a regenerated incident takes the id it was written under before.
            let extras = self
                .dir
                .as_ref()
                .map(|d| self.durable.close(&mut inc, d, seen));
            // Closed and reported before a kill -9 that left the kmsg cursor behind it: the
            // restart re-read its records. Not printed, logged or counted twice.
            if self.reported_before.remove(&inc.id)
                || self.dir.as_ref().is_some_and(|d| d.holds_final(&inc.id))
            {
                self.count -= 1;
                info!(
                    "incident {} was already reported before the restart",
                    inc.id
                );
                continue;
            }
            if let Some(m) = &self.metrics {
                if let Ok(mut m) = m.lock() {
                    m.record_incident(&inc);
                }
            }
            self.print(&inc);
            let written = match (self.dir.as_mut(), extras) {
                (Some(d), Some(ex)) => match d.replace(&inc, &ex) {
                    Ok(p) => {
                        info!("incident written to {}", p.display());
                        Some(p)
                    }
                    Err(e) => {
                        warn!(
                            "cannot write incident {}: {e:#}; retried every second, and the kmsg cursor stays before its records",
                            inc.id
                        );
                        self.unstored.push(inc.clone(), ex);
                        None
                    }
                },
                _ => None,
            };
            self.log_journal(&inc, written.as_deref());
        }
    }

    /// Retries the closed incidents whose write failed, oldest first; stops at the first
    /// that fails again.
    pub fn retry_unstored(&mut self) {
        let Some(d) = self.dir.as_mut() else {
            return;
        };
        while let Some((inc, ex)) = self.unstored.queue.front() {
            match d.replace(inc, ex) {
                Ok(p) => info!("incident {} written to {} (on retry)", inc.id, p.display()),
                Err(_) => return,
            }
            self.unstored.queue.pop_front();
        }
    }

    /// Provisional versions of open incidents (new or changed): written now, or as soon as
    /// their incident's last write is a second old.
    pub fn update(&mut self, mut incidents: Vec<Incident>, seen: &SeenCache) {
        let Some(d) = self.dir.as_mut() else {
            return;
        };
        let before = &mut self.reported_before;
        incidents.retain(|i| {
            if before.contains(&i.id) || d.holds_final(&i.id) {
                before.insert(i.id.clone());
                return false;
            }
            true
        });
        for inc in &mut incidents {
            attach_identities(inc, seen);
        }
        if !incidents.is_empty() {
            self.durable.update(incidents, d, seen);
        }
        self.durable.flush(Instant::now(), d, seen);
    }

    /// After the kernel-log backlog: what a stopped agent left open and the backlog did not
    /// regenerate is finalised as it was written.
    pub fn finalise_stale(&mut self) {
        if let Some(d) = self.dir.as_mut() {
            self.durable.finalise_stale(d);
        }
    }

    fn print(&self, inc: &Incident) {
        match self.stdout {
            Stdout::Json => match serde_json::to_string(inc) {
                Ok(s) => messages::stdout(&(s + "\n")),
                Err(e) => warn!("cannot serialise incident {}: {e}", inc.id),
            },
            Stdout::Text => messages::stdout(&hangwatch_core::render::text::render(inc)),
            Stdout::None => {}
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
        match crate::sinks::store::prune_older_than(d.root(), age) {
            Ok(0) => {}
            Ok(n) => info!(
                "retention: removed {n} incident(s) older than {} days",
                age.as_secs() / 86400
            ),
            Err(e) => warn!("retention by age: {e:#}"),
        }
    }
}

/// The identity of each involved process: as captured when it was first seen, else read now
/// from /proc when that pid still runs a process of the same name (a pid named only by the
/// kernel log may have been reused since).
fn attach_identities(inc: &mut Incident, seen: &SeenCache) {
    let mut passwd = None;
    hangwatch_core::identity::attach(inc, |pid, comm| {
        if let Some(id) = seen.identity(pid) {
            return Some(id.clone());
        }
        let pw = passwd.get_or_insert_with(identity::passwd);
        identity::read_live(Path::new("/proc"), pid, comm, pw)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// First-sight identities are attached; a process named only by the log is read live,
    /// and only when its pid still runs a process of that name.
    #[test]
    fn identities_come_from_first_sight_else_a_live_read_of_the_same_comm() {
        let root = std::env::temp_dir().join(format!("hw-out-ident-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("7021")).unwrap();
        std::fs::write(root.join("7021/comm"), "zed\n").unwrap();
        std::fs::write(root.join("7021/status"), "Uid:\t4321\t4321\t4321\t4321\n").unwrap();
        let mut seen = SeenCache::new(8);
        assert!(seen.first_sight(&root, 7021, 1).is_some());
        let me = std::process::id();
        let my_comm = std::fs::read_to_string(format!("/proc/{me}/comm")).unwrap();
        let mut inc = hangwatch_core::testkit::disputed_incident();
        let k = inc.kernel_blamed.as_mut().unwrap();
        (k.pid, k.comm) = (me, my_comm.trim_end().to_string());
        inc.victims[0].pid = me; // same pid, another name: not read
        attach_identities(&mut inc, &seen);
        let uid =
            |i: &Option<hangwatch_core::identity::ProcessIdentity>| i.as_ref().and_then(|i| i.uid);
        assert_eq!(uid(&inc.culprit.as_ref().unwrap().identity), Some(4321));
        assert_eq!(
            uid(&inc.kernel_blamed.as_ref().unwrap().identity),
            Some(rustix::process::getuid().as_raw())
        );
        assert!(inc.victims[0].identity.is_none(), "{:?}", inc.victims[0]);
        let _ = std::fs::remove_dir_all(&root);
    }
}
