//! The compute event source: the KFD proc-table poller and the `/dev/kfd` SMI
//! reader of [`crate::sources::kfd`], which need no eBPF and no kernel log. Their threads send events
//! through a bounded channel (a full channel makes them wait, it loses nothing); the loop
//! drains it on its 100 ms tick. Each source degrades alone with one line in the run log.
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use crate::sources::kfd::{self, Counters};
use crate::{info, warn};
use hangwatch_core::model::Event;

use super::state::State;

/// Events waiting between two drains (a proc poll of a busy ROCm host, an SMI burst).
const CHANNEL: usize = 4096;

pub struct KfdSource {
    rx: Receiver<Event>,
    pub counters: Arc<Counters>,
}

impl KfdSource {
    /// Starts the sources under `root` (`/` on a host) and prints one line per source: live
    /// ones as status, degraded ones as warnings when KFD is there at all.
    pub fn start(root: &Path) -> KfdSource {
        let (tx, rx) = sync_channel(CHANNEL);
        let (status, counters) = kfd::spawn(root, tx);
        let kfd_present = status.iter().any(|s| s.live);
        for s in status {
            if s.live || s.expected || !kfd_present {
                info!("{}", s.line);
            } else {
                warn!("{}", s.line);
            }
        }
        KfdSource { rx, counters }
    }

    /// Feeds everything waiting to the state.
    pub fn drain(&mut self, st: &mut State) {
        while let Ok(ev) = self.rx.try_recv() {
            st.source_event(ev);
        }
    }

    /// The closing stats line.
    pub fn stats_line(&self) -> String {
        self.counters.line()
    }
}
