//! Durability of incidents. An incident is written as soon as it opens,
//! `provisional`, rewritten at most once a second while evidence arrives, and written a last
//! time with `provisional` cleared when it closes. Every write is a whole incident directory,
//! fsynced and swapped in atomically (`IncidentDir::replace`), so `kill -9` or a power loss
//! loses at most the last second of an open incident.
//!
//! After a restart, the incidents a stopped agent left provisional are recognised, and never
//! duplicated. The kmsg cursor never moves past the records of an open incident, so the
//! restarted agent re-reads them and the correlator regenerates the incident: its writes go
//! to the stale incident's directory and id (the same id when the same kernel record opened
//! it; otherwise the stale incident of the same boot and GPU whose time span overlaps), and
//! it keeps the facts captured when the stale one opened (the devcoredump may have expired
//! since). A stale incident nothing regenerates (no cursor, another boot, records
//! overwritten) is finalised as it was last written, with a note in its reasoning.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::sinks::incident_dir::{Extras, IncidentDir};
use crate::sinks::store::{self, Stored};
use crate::sources::hostfacts::Roots;
use crate::sources::procscan::SeenCache;
use crate::{info, warn};
use hangwatch_core::incident::Incident;

use super::capture;

/// At most one provisional write per incident per this long.
pub const REWRITE_EVERY: Duration = Duration::from_secs(1);
/// Two incidents of one boot and GPU whose spans come this close are the same hang seen
/// twice (the correlator's settle time: closer events would have joined one incident).
const SAME_HANG_SLACK_NS: u64 = 5_000_000_000;

/// An open incident the agent has captured facts for.
struct Tracked {
    /// The id it is written under: the stale incident's when it regenerates one.
    id: String,
    extras: Extras,
    last_write: Option<Instant>,
    /// A version of it is on disk (written by us, or left by a stopped agent).
    on_disk: bool,
    /// The newest provisional version not written yet (rate limit).
    pending: Option<Incident>,
}

#[derive(Default)]
pub struct Durable {
    /// Open incidents, by the correlator's id.
    tracked: HashMap<String, Tracked>,
    /// Provisional incidents found in the output directory at start (a stopped agent's).
    stale: Vec<Stored>,
    roots: Roots,
}

/// Whether stale incident `old` and the incident `new` are the same hang.
fn same_hang(old: &Incident, new: &Incident) -> bool {
    if old.id == new.id {
        return true;
    }
    let same_boot = matches!((&old.boot_id, &new.boot_id), (Some(a), Some(b)) if a == b);
    let same_gpu = hangwatch_core::model::same_gpu(old.gpu.as_deref(), new.gpu.as_deref());
    let overlap = old.started_ns <= new.ended_ns.saturating_add(SAME_HANG_SLACK_NS)
        && new.started_ns <= old.ended_ns.saturating_add(SAME_HANG_SLACK_NS);
    same_boot && same_gpu && old.clock == new.clock && overlap
}

impl Durable {
    /// Finds the provisional incidents a stopped agent left in `dir`.
    pub fn load_stale(&mut self, dir: &IncidentDir) {
        let stale: Vec<Stored> = match store::list(dir.root()) {
            Ok((all, _)) => all
                .into_iter()
                .filter(|s| s.incident.provisional)
                .filter(|s| !self.tracked.values().any(|t| t.id == s.incident.id))
                .collect(),
            Err(e) => {
                warn!("cannot look for incidents left open by a stopped agent: {e:#}");
                Vec::new()
            }
        };
        if !stale.is_empty() {
            info!(
                "{} incident(s) left provisional by a stopped agent: completed from the kernel log if it still holds them, else finalised as written",
                stale.len()
            );
        }
        self.stale = stale;
    }

    /// The stale incident `inc` regenerates, taken out of the stale list.
    fn adopt_stale(&mut self, inc: &Incident) -> Option<Stored> {
        let i = self
            .stale
            .iter()
            .position(|s| same_hang(&s.incident, inc))?;
        Some(self.stale.swap_remove(i))
    }

    /// The id and facts for `inc` the first time it is seen: a stale incident's, or new ones.
    fn start_tracking(&mut self, inc: &Incident, dir: &IncidentDir, seen: &SeenCache) -> Tracked {
        if let Some(s) = self.adopt_stale(inc) {
            info!(
                "incident {} (left provisional by a stopped agent) regenerated from the kernel log",
                s.incident.id
            );
            let mut extras = dir
                .load_extras(&s.name)
                .unwrap_or_else(|_| capture::at_open(inc, seen, &self.roots));
            capture::refresh(&mut extras, inc, seen, &self.roots);
            return Tracked {
                id: s.incident.id,
                extras,
                last_write: None,
                on_disk: true,
                pending: None,
            };
        }
        Tracked {
            id: inc.id.clone(),
            extras: capture::at_open(inc, seen, &self.roots),
            last_write: None,
            on_disk: false,
            pending: None,
        }
    }

    /// Provisional versions of open incidents (`Correlator::changed_open`): facts captured for
    /// the new ones, each queued for its next write.
    pub fn update(&mut self, incidents: Vec<Incident>, dir: &IncidentDir, seen: &SeenCache) {
        for inc in incidents {
            if !self.tracked.contains_key(&inc.id) {
                let t = self.start_tracking(&inc, dir, seen);
                self.tracked.insert(inc.id.clone(), t);
            }
            if let Some(t) = self.tracked.get_mut(&inc.id) {
                t.pending = Some(inc);
            }
        }
    }

    /// Writes every queued version whose incident was not written in the last second.
    pub fn flush(&mut self, now: Instant, dir: &mut IncidentDir, seen: &SeenCache) {
        for t in self.tracked.values_mut() {
            if t.last_write
                .is_some_and(|w| now.duration_since(w) < REWRITE_EVERY)
            {
                continue;
            }
            let Some(mut inc) = t.pending.take() else {
                continue;
            };
            inc.id.clone_from(&t.id);
            capture::refresh(&mut t.extras, &inc, seen, &self.roots);
            match dir.replace(&inc, &t.extras) {
                Ok(p) if !t.on_disk => info!(
                    "incident {} opened: written to {} (provisional until it closes)",
                    inc.id,
                    p.display()
                ),
                Ok(_) => {}
                Err(e) => warn!("cannot write open incident {}: {e:#}", inc.id),
            }
            t.on_disk = true;
            t.last_write = Some(now);
        }
    }

    /// A closed incident: its id set to the one it was written under, and its facts — those
    /// captured at its open, or read now when it was never seen open. The final write
    /// replaces whatever version of it is on disk: the same id means the same opening event
    /// (a GPU and its time), so an incident re-read after a restart is never written twice.
    pub fn close(&mut self, inc: &mut Incident, dir: &IncidentDir, seen: &SeenCache) -> Extras {
        let t = match self.tracked.remove(&inc.id) {
            Some(t) => t,
            None => self.start_tracking(inc, dir, seen),
        };
        inc.id = t.id;
        let mut extras = t.extras;
        capture::refresh(&mut extras, inc, seen, &self.roots);
        extras
    }

    /// Stale incidents the kernel-log backlog did not regenerate: written once more as they
    /// were, no longer provisional, with a note saying what may be missing.
    pub fn finalise_stale(&mut self, dir: &mut IncidentDir) {
        for s in std::mem::take(&mut self.stale) {
            let mut inc = s.incident;
            inc.provisional = false;
            inc.reasoning.push_str(
                " The agent stopped while this incident was open and the kernel log no longer \
                 held its records when it restarted: this is its last provisional state \
                 (evidence after that is missing).",
            );
            let extras = dir.load_extras(&s.name).unwrap_or_default();
            match dir.replace(&inc, &extras) {
                Ok(p) => info!(
                    "incident {} left open by a stopped agent: finalised as written ({})",
                    inc.id,
                    p.display()
                ),
                Err(e) => warn!("cannot finalise incident {}: {e:#}", inc.id),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangwatch_core::testkit::disputed_incident;

    fn inc(id: &str, gpu: &str, start_s: u64, end_s: u64) -> Incident {
        let mut i = disputed_incident();
        i.id = id.into();
        i.gpu = Some(gpu.into());
        i.boot_id = Some("b1".into());
        i.started_ns = start_s * 1_000_000_000;
        i.ended_ns = end_s * 1_000_000_000;
        i
    }

    #[test]
    fn the_same_hang_is_recognised_by_id_or_by_boot_gpu_and_time() {
        let old = inc("0000:c3:00.0-100", "0000:c3:00.0", 100, 103);
        // The same kernel record opened it again: same id.
        assert!(same_hang(
            &old,
            &inc("0000:c3:00.0-100", "0000:c3:00.0", 100, 110)
        ));
        // A probe opened the stale one a few ms before the log's line: overlapping spans.
        assert!(same_hang(
            &old,
            &inc("0000:c3:00.0-101", "0000:c3:00.0", 101, 110)
        ));
        // Another GPU, another boot, or a hang a minute later: different incidents.
        assert!(!same_hang(
            &old,
            &inc("0000:03:00.0-101", "0000:03:00.0", 101, 110)
        ));
        let mut other_boot = inc("0000:c3:00.0-101", "0000:c3:00.0", 101, 110);
        other_boot.boot_id = Some("b2".into());
        assert!(!same_hang(&old, &other_boot));
        assert!(!same_hang(
            &old,
            &inc("0000:c3:00.0-170", "0000:c3:00.0", 170, 175)
        ));
    }
}
