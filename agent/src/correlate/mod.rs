//! The correlator: a pure state machine from [`Event`]s to [`Incident`]s.
//!
//! No I/O, no clock reads: time only advances through event timestamps and `advance`.
//! Memory is bounded: `ring_depth` jobs per ring, `max_processes` identities (LRU), and
//! `max_open` open incidents, and the last RECENT_EVIDENCE evidence items. Rules are documented in `docs/attribution.md`.
mod attribute;
mod incident;
mod processes;
pub mod queues;
mod recorder;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

use crate::incident::{Evidence, Incident, JobSnapshot, ProcessSummary};
use crate::model::{BootInfo, Clock, Event, EventBody};

pub use incident::Open;
use processes::Processes;
use recorder::Recorder;

#[derive(Clone, Debug)]
pub struct Config {
    /// Jobs kept per ring in the flight recorder.
    pub ring_depth: usize,
    /// How far before a timeout/reset page faults are considered evidence.
    pub fault_window_ns: u64,
    /// An incident with a timeout or reset closes this long after its last related event.
    pub settle_ns: u64,
    /// Process identities kept (least recently seen evicted first).
    pub max_processes: usize,
    /// Open incidents kept at once (the oldest is closed early when exceeded).
    pub max_open: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ring_depth: 256,
            fault_window_ns: 30_000_000_000,
            settle_ns: 5_000_000_000,
            max_processes: 4096,
            max_open: 16,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub events: u64,
    pub dropped: u64,
    /// Per ring: jobs recorded and jobs evicted from the flight recorder.
    pub ring_jobs_seen: HashMap<String, u64>,
    pub ring_jobs_evicted: HashMap<String, u64>,
    /// Per process: submissions seen.
    pub submissions: HashMap<u32, u64>,
    /// Scheduler/fence events that matched no recorded job (RunJob without Submit, ...).
    pub unmatched_joins: u64,
    /// Process identities evicted from the bounded table.
    pub process_evictions: u64,
    /// Incidents emitted.
    pub incidents: u64,
}

pub struct Correlator {
    config: Config,
    stats: Stats,
    procs: Processes,
    recorder: Recorder,
    open: Vec<Open>,
    summary: HashMap<u32, ProcessSummary>,
    /// The latest evidence across incidents, bounded, for exports of arbitrary windows.
    recent: VecDeque<Evidence>,
    /// The boot the current events belong to (from the last `EventBody::Boot`).
    boot: Option<BootInfo>,
    /// Compute queues (KFD, user queues) for compute attribution (`queues.rs`).
    queues: queues::Queues,
}

/// Evidence items kept for `evidence_between` (a few incidents' worth; storms are capped
/// per incident already).
const RECENT_EVIDENCE: usize = 1024;

impl Correlator {
    pub fn new(config: Config) -> Self {
        Correlator {
            procs: Processes::new(config.max_processes),
            recorder: Recorder::new(config.ring_depth),
            config,
            stats: Stats::default(),
            open: Vec::new(),
            summary: HashMap::default(),
            recent: VecDeque::new(),
            boot: None,
            queues: queues::Queues::new(),
        }
    }

    /// Feed one event; returns incidents that this event closed.
    pub fn push(&mut self, event: Event) -> Vec<Incident> {
        self.stats.events += 1;
        if let EventBody::Boot(info) = &event.body {
            return self.boot(info);
        }
        let mut out = self.advance(event.t_ns);
        self.procs.observe(&event, &mut self.stats);
        self.queues.observe(&event);
        self.recorder
            .observe(&event, &mut self.procs, &mut self.stats);
        if let Some(role) = incident::role(&event) {
            let idx = self.find_open(&event, role);
            let idx = match idx {
                Some(i) => i,
                None if role.opens() => {
                    if self.open.len() >= self.config.max_open.max(1) {
                        let o = self.open.remove(0);
                        out.push(self.close(o));
                    }
                    self.open.push(Open::new(&event));
                    self.open.len() - 1
                }
                None => return out,
            };
            let open = &mut self.open[idx];
            let before = open.evidence.len();
            open.add(&event, role, &self.procs, &self.recorder);
            if open.evidence.len() > before {
                if let Some(e) = open.evidence.last() {
                    if self.recent.len() >= RECENT_EVIDENCE {
                        self.recent.pop_front();
                    }
                    self.recent.push_back(e.clone());
                }
            }
        }
        // A user-queue fence is a job, a hung user queue a timeout (queues::derived).
        if let Some(d) = self.queues.derived(&event) {
            out.extend(self.push(d));
        }
        out
    }

    /// Evidence (faults, timeouts, resets, rejections) recorded in [from_ns, to_ns], from the
    /// last RECENT_EVIDENCE items, for `hangwatch export` of an arbitrary window.
    pub fn evidence_between(&self, from_ns: u64, to_ns: u64) -> Vec<Evidence> {
        self.recent
            .iter()
            .filter(|e| e.t_ns >= from_ns && e.t_ns <= to_ns)
            .cloned()
            .collect()
    }

    /// The open incident on the same GPU that `event` belongs to, if any.
    fn find_open(&self, event: &Event, role: incident::Role) -> Option<usize> {
        self.open.iter().rposition(|o| {
            let gpu_ok = match (&o.gpu, &event.gpu) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            gpu_ok
                && o.accepts(
                    event.t_ns,
                    role,
                    event.source == crate::model::Source::Ebpf,
                    &self.config,
                )
        })
    }

    /// A new boot closes everything still open (no incident spans boots); the same boot again
    /// only adds facts.
    fn boot(&mut self, info: &BootInfo) -> Vec<Incident> {
        match self.boot.as_mut() {
            Some(b) if b.seq == info.seq => {
                b.boot_id = b.boot_id.take().or_else(|| info.boot_id.clone());
                b.hostname = b.hostname.take().or_else(|| info.hostname.clone());
                b.realtime_offset_ns = b.realtime_offset_ns.or(info.realtime_offset_ns);
                Vec::new()
            }
            _ => {
                let out = self.finish();
                self.boot = Some(info.clone());
                out
            }
        }
    }

    /// Close incidents whose settle time has passed at `now_ns` (live mode calls this on a timer).
    pub fn advance(&mut self, now_ns: u64) -> Vec<Incident> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.open.len() {
            if now_ns > self.open[i].close_at(&self.config) {
                let o = self.open.remove(i);
                out.push(self.close(o));
            } else {
                i += 1;
            }
        }
        out.sort_by_key(|x| x.started_ns);
        out
    }

    /// End of input: close everything still open.
    pub fn finish(&mut self) -> Vec<Incident> {
        let open = std::mem::take(&mut self.open);
        let mut out: Vec<Incident> = open.into_iter().map(|o| self.close(o)).collect();
        out.sort_by_key(|x| x.started_ns);
        out
    }

    fn close(&mut self, open: Open) -> Incident {
        let mut inc = attribute::attribute(&open, &self.procs, &self.recorder, &self.config);
        let procs = &self.procs;
        let id = queues::Identity {
            pid_of_pasid: &|p| procs.pid_of_pasid(p),
            comm_of: &|p| procs.get(p).map(|x| x.comm.clone()),
            reference: &|p, c| procs.reference(p, c),
        };
        queues::attribute(&mut inc, &open, &self.queues, &id);
        inc.dropped_events = self.stats.dropped.saturating_sub(open.dropped_at_open);
        if let Some(b) = &self.boot {
            inc.boot_id.clone_from(&b.boot_id);
            inc.hostname.clone_from(&b.hostname);
        }
        inc.wall_time = self.wall_time(inc.clock, inc.started_ns);
        self.stats.incidents += 1;
        self.count_summary(&inc, &open);
        inc
    }

    /// RFC 3339 UTC of `t_ns` on `clock`, when the wall clock is known.
    fn wall_time(&self, clock: Clock, t_ns: u64) -> Option<String> {
        let offset = match clock {
            Clock::Realtime => 0,
            Clock::Monotonic => self.boot.as_ref()?.realtime_offset_ns?,
        };
        let wall = i64::try_from(t_ns).ok()?.checked_add(offset)?;
        Some(incident::render_time(
            Clock::Realtime,
            u64::try_from(wall).ok()?,
        ))
    }

    fn count_summary(&mut self, inc: &Incident, open: &Open) {
        let summary = &mut self.summary;
        if let Some(c) = &inc.culprit {
            summary_entry(summary, c.pid, &c.comm).culprit += 1;
        }
        for v in &inc.victims {
            summary_entry(summary, v.pid, &v.comm).victim += 1;
        }
        for f in open.faults.iter().filter(|f| f.pid != 0) {
            summary_entry(summary, f.pid, &f.comm).faults += 1;
        }
        if let Some(k) = &inc.kernel_blamed {
            let e = summary_entry(summary, k.pid, &k.comm);
            e.kernel_blamed += 1;
            if inc.kernel_blame_disputed {
                e.kernel_blamed_but_evidence_disagrees += 1;
            }
        }
    }

    /// Record events lost before reaching the correlator (ring buffer full, ...).
    pub fn note_dropped(&mut self, n: u64) {
        self.stats.dropped += n;
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// Per-process counters over everything seen.
    pub fn summary(&self) -> Vec<ProcessSummary> {
        let mut v: Vec<ProcessSummary> = self.summary.values().cloned().collect();
        v.sort_by_key(|s| s.pid);
        v
    }
    /// Flight-recorder jobs overlapping [from_ns, to_ns] (all rings), for `hangwatch export`.
    pub fn jobs_between(&self, from_ns: u64, to_ns: u64) -> Vec<JobSnapshot> {
        self.recorder
            .snapshot(None, from_ns, to_ns, None, &self.procs)
    }
}

fn summary_entry<'a>(
    m: &'a mut HashMap<u32, ProcessSummary>,
    pid: u32,
    comm: &str,
) -> &'a mut ProcessSummary {
    let e = m.entry(pid).or_default();
    e.pid = pid;
    if e.comm.is_empty() {
        e.comm = comm.to_string();
    }
    e
}
