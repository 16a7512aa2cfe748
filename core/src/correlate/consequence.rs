//! Rule L1 of docs/attribution.md: one hang on two rings. A ring times out and its reset
//! ends; moments later another ring of the same GPU times out. The second timeout opens an
//! incident of its own (a timeout after the reset ended is a new hang), linked to the first
//! as its consequence: the second ring was stuck behind the first ring's hang.
use super::clock::render_time;
use super::open::{timeout_ring, Open};
use crate::incident::Evidence;
use crate::model::Event;

/// How long after an incident's reset ended a timeout of another ring on its GPU counts as
/// its consequence. Observed: 3 ms after a compute ring's per-ring reset succeeded.
pub const WINDOW_NS: u64 = 1_000_000_000;

/// The incident a new one follows from, and why.
#[derive(Clone, Debug)]
pub struct Link {
    /// The earlier incident's id.
    pub of: String,
    /// The ring that timed out first.
    pub ring: String,
    /// From the earlier reset's end to the new timeout.
    pub gap_ns: u64,
}

/// How long after `o`'s reset ended `ev` came, when `ev` is a timeout of a ring `o` did not
/// time out on and came within [`WINDOW_NS`] of that end. The caller checks the GPU.
pub fn gap(o: &Open, ev: &Event) -> Option<u64> {
    let ring = timeout_ring(ev)?;
    let ended = o.reset.result_t.filter(|_| o.reset.ended())?;
    let other_ring = !o
        .timeout
        .list
        .iter()
        .any(|r| r.ring.as_deref() == Some(ring));
    let gap = ev.t_ns.checked_sub(ended)?;
    (o.timeout.seen() && other_ring && gap <= WINDOW_NS).then_some(gap)
}

/// The ring `o`'s blame follows (its first timeout's when none was named).
pub fn first_ring(o: &Open) -> String {
    o.timeout
        .blamed()
        .and_then(|b| b.ring.clone())
        .unwrap_or_else(|| "a ring".into())
}

impl Link {
    fn ms(&self) -> String {
        format!("{:.1} ms", self.gap_ns as f64 / 1e6)
    }

    /// The evidence entry that says so, at the new timeout's time.
    pub fn evidence(&self, ev: &Event) -> Evidence {
        Evidence {
            at: render_time(ev.clock, ev.t_ns),
            t_ns: ev.t_ns,
            source: ev.source,
            what: format!(
                "consequence of incident {} (rule L1): {} timed out on this GPU and its reset ended {} before",
                self.of,
                self.ring,
                self.ms()
            ),
            lines: Vec::new(),
        }
    }

    /// The sentence appended to the reasoning.
    pub fn reasoning(&self) -> String {
        format!(
            " Rule L1: a consequence of incident {}: {} timed out on the same GPU and its reset ended {} before this timeout, so this ring was most likely stuck behind that hang and the process named here may be its victim.",
            self.of,
            self.ring,
            self.ms()
        )
    }
}
