//! The eBPF ring-buffer event source: decode records into the correlator, bounded per call
//! so kmsg, signals and the control socket get their turn during a flood; the kernel's drop
//! counter (per-CPU `DROPS`) is read on the timer.
use aya::maps::{MapData, PerCpuArray, RingBuf};
use tokio::io::unix::{AsyncFd, AsyncFdReadyMutGuard};

use crate::warn;

use super::state::State;

type ReadyGuard<'a> = AsyncFdReadyMutGuard<'a, RingBuf<MapData>>;

pub struct RingSource {
    ring: AsyncFd<RingBuf<MapData>>,
    drops: Option<PerCpuArray<MapData, u64>>,
    /// Kernel drops already reported.
    pub kernel_drops: u64,
}

/// Records decoded per wakeup before yielding to the other sources.
const BATCH: usize = 4096;

impl RingSource {
    pub fn new(
        ring: RingBuf<MapData>,
        drops: Option<PerCpuArray<MapData, u64>>,
    ) -> anyhow::Result<Self> {
        // SAFETY: the RingBuf owns its map fd and keeps it open until the AsyncFd is dropped.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("cannot poll the ring buffer: {}", e.into_parts().1))?;
        Ok(RingSource {
            ring,
            drops,
            kernel_drops: 0,
        })
    }

    /// Waits until the ring is readable.
    pub async fn readable(&mut self) -> std::io::Result<ReadyGuard<'_>> {
        self.ring.readable_mut().await
    }

    /// Drains one batch; clears readiness when the ring was empty.
    pub fn on_ready(mut g: ReadyGuard<'_>, st: &mut State) {
        if drain(g.get_inner_mut(), st) == 0 {
            g.clear_ready();
        }
    }

    /// Everything waiting (per-job events are submitted without a wakeup until 64 KiB wait;
    /// see agent-ebpf submit_flags): on the 100 ms tick and at shutdown.
    pub fn drain_all(&mut self, st: &mut State) {
        while drain(self.ring.get_mut(), st) > 0 {}
    }

    /// Reports new kernel drops to the correlator and the log.
    pub fn check_drops(&mut self, st: &mut State) {
        let total = self.total_drops();
        if total > self.kernel_drops {
            let n = total - self.kernel_drops;
            st.corr.note_dropped(n);
            warn!("{n} events dropped (ring buffer full; try --ring-kib)");
            self.kernel_drops = total;
        }
    }

    pub fn total_drops(&self) -> u64 {
        self.drops
            .as_ref()
            .and_then(|d| d.get(&0, 0).ok())
            .map(|v| v.iter().sum())
            .unwrap_or(self.kernel_drops)
    }
}

/// Decodes up to BATCH records; returns how many were read.
fn drain(rb: &mut RingBuf<MapData>, st: &mut State) -> usize {
    let mut read = 0;
    while read < BATCH {
        // Decode, then release the slot (the item's drop) before correlating.
        let Some(ev) = rb.next().map(|item| st.decoder.decode_bytes(&item)) else {
            break;
        };
        read += 1;
        if let Some(ev) = ev {
            st.probe_event(ev);
        }
    }
    read
}
