//! The correlator: a pure state machine from [`Event`]s to [`Incident`]s.
//! CONTRACT (used by run, analyze, export and the tests); placeholder bodies until it lands.
use crate::incident::{Incident, JobSnapshot, ProcessSummary};
use crate::model::Event;

#[derive(Clone, Debug)]
pub struct Config {
    /// Jobs kept per ring in the flight recorder.
    pub ring_depth: usize,
    /// How far before a timeout/reset page faults are considered evidence.
    pub fault_window_ns: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { ring_depth: 256, fault_window_ns: 30_000_000_000 }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub events: u64,
    pub dropped: u64,
}

pub struct Correlator {
    #[allow(dead_code)]
    config: Config,
    stats: Stats,
}

impl Correlator {
    pub fn new(config: Config) -> Self {
        Correlator { config, stats: Stats::default() }
    }
    /// Feed one event; returns incidents that this event closed.
    pub fn push(&mut self, _event: Event) -> Vec<Incident> {
        self.stats.events += 1;
        Vec::new()
    }
    /// Close incidents whose settle time has passed at `now_ns` (live mode calls this on a timer).
    pub fn advance(&mut self, _now_ns: u64) -> Vec<Incident> {
        Vec::new()
    }
    /// End of input: close everything still open.
    pub fn finish(&mut self) -> Vec<Incident> {
        Vec::new()
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
        Vec::new()
    }
    /// Flight-recorder jobs overlapping [from_ns, to_ns] (all rings), for `hangwatch export`.
    pub fn jobs_between(&self, _from_ns: u64, _to_ns: u64) -> Vec<JobSnapshot> {
        Vec::new()
    }
}
