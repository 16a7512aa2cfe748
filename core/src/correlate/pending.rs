//! Join-only records that arrived when no incident was open to take them, held briefly for
//! the incident that follows. Since 6.12 the kernel writes the devcoredump (and prints
//! "AMDGPU device coredump file has been created") before it prints `ring X timeout`, so the
//! notice comes first; without this buffer the report would never say a coredump exists.
//! Bounded: at most MAX_PENDING records, each for at most PENDING_NS; what leaves unadopted
//! is returned to be counted (`Stats::unattached`).
use std::collections::VecDeque;

use crate::model::{same_gpu, Event};

/// Records held at once; the oldest leaves first.
pub const MAX_PENDING: usize = 16;
/// How long before an incident's opening event a held record may be adopted by it.
pub const PENDING_NS: u64 = 5_000_000_000;

#[derive(Debug, Default)]
pub struct Pending {
    held: VecDeque<Event>,
}

impl Pending {
    /// Holds `ev`; returns how many records left unadopted to make room (0 or 1).
    pub fn hold(&mut self, ev: Event) -> u64 {
        let mut gone = 0;
        if self.held.len() >= MAX_PENDING {
            self.held.pop_front();
            gone = 1;
        }
        self.held.push_back(ev);
        gone
    }

    /// Drops records too old for an incident opening at `now`; returns how many.
    pub fn expire(&mut self, now: u64) -> u64 {
        let before = self.held.len();
        self.held
            .retain(|e| e.t_ns.saturating_add(PENDING_NS) >= now);
        (before - self.held.len()) as u64
    }

    /// Takes the records an incident opened by `opener` adopts, in arrival order: same clock,
    /// same GPU (a record or an opener without a PCI address matches any), within PENDING_NS.
    pub fn adopt(&mut self, opener: &Event) -> Vec<Event> {
        let fits = |e: &Event| {
            same_gpu(e.gpu.as_deref(), opener.gpu.as_deref())
                && e.clock == opener.clock
                && e.t_ns.abs_diff(opener.t_ns) <= PENDING_NS
        };
        let (taken, kept): (Vec<Event>, Vec<Event>) = self.held.drain(..).partition(fits);
        self.held = kept.into();
        taken
    }

    /// Empties the buffer (end of input, new boot); returns how many records were dropped.
    pub fn clear(&mut self) -> u64 {
        let n = self.held.len() as u64;
        self.held.clear();
        n
    }
}
