//! What every event handler shares: the correlator, the decoder, the first-sight cache and
//! the output. Handlers feed events in through [`State::push`] / [`State::probe_event`].
use std::path::Path;

use aya::maps::{HashMap as BpfHashMap, MapData};

use crate::decode::{kind_name, Decoder};
use crate::sources::procscan::SeenCache;
use crate::sources::recorder::KernelRecorder;
use hangwatch_core::correlate::Correlator;
use hangwatch_core::escape;
use hangwatch_core::model::{Event, EventBody, KmsgKind};

use super::output::Output;

pub struct State {
    pub corr: Correlator,
    pub decoder: Decoder,
    pub seen: SeenCache,
    /// The eBPF side's set of watched tgids (the exit probe reports only these).
    pub seen_map: Option<BpfHashMap<MapData, u32, u8>>,
    pub out: Output,
    /// Which GPU each probe event is on (devices.rs).
    pub labeler: crate::sources::devices::Labeler,
    /// Events known lost outside the kernel ring buffer (kmsg overwritten, ...).
    pub user_drops: u64,
    /// The in-kernel flight recorder, when the probes keep one: read back before every event
    /// that is not a job's, so the correlator sees the jobs before what they explain.
    pub recorder: Option<KernelRecorder>,
}

impl State {
    pub fn push(&mut self, ev: Event) {
        if !per_job(&ev.body) {
            self.catch_up(ev.t_ns);
        }
        self.count_for_metrics(&ev);
        let before = self.corr.open_count();
        let out = self.corr.push(ev);
        // Closed by this event plus open now, against open before: something opened.
        let opened = self.corr.open_count() + out.len() > before;
        self.emit(out);
        if opened {
            self.write_open();
        }
    }

    /// Writes the open incidents that changed (the correlator's provisional reports): new
    /// ones now, others when their last write is a second old. Called when an incident opens
    /// and on the 1 s timer.
    pub fn write_open(&mut self) {
        if self.out.dir.is_some() {
            let changed = self.corr.changed_open();
            self.out.update(changed, &self.seen);
        }
    }

    pub fn emit(&mut self, out: Vec<hangwatch_core::incident::Incident>) {
        if !out.is_empty() {
            self.out.emit(out, &self.seen);
        }
    }

    /// The once-a-second stall poll (rule S1): a new stall is announced at once, long before
    /// its incident closes (the kernel's timeout, if any, comes later).
    pub fn poll_stalls(&mut self, now_ns: u64) {
        // With the recorder in the kernel, the correlator has its jobs only when it asks.
        let after = self.corr.stall_after_ns();
        let suspect = after > 0
            && self
                .recorder
                .as_ref()
                .is_some_and(|r| r.oldest_running(now_ns.saturating_sub(after)).is_some());
        if self.recorder.is_some() {
            // Its jobs reach the correlator only at a catch-up, so its own view is stale.
            if !suspect {
                return;
            }
            self.catch_up(now_ns);
        }
        for (ev, first) in self.corr.stall_reports(now_ns) {
            if first {
                announce_stall(&ev, now_ns);
            }
            self.push(ev);
        }
    }

    pub fn note_dropped(&mut self, n: u64) {
        self.user_drops += n;
        self.corr.note_dropped(n);
    }

    /// Page faults by the process the kernel named (the probes' faults carry only a PASID).
    fn count_for_metrics(&self, ev: &Event) {
        let (Some(m), EventBody::Kmsg(rec)) = (&self.out.metrics, &ev.body) else {
            return;
        };
        if let KmsgKind::PageFault { task, .. } = &rec.kind {
            let comm = task
                .as_ref()
                .filter(|t| t.pid != 0)
                .map(|t| t.comm.as_str());
            if let Ok(mut m) = m.lock() {
                m.record_page_fault(comm.unwrap_or(""));
            }
        }
    }

    /// A probe event: labelled with its GPU, then as [`State::source_event`].
    pub fn probe_event(&mut self, mut ev: Event) {
        self.labeler.label(&mut ev);
        self.source_event(ev);
    }

    /// An event of a source that names processes (probes, the KFD sources): the first time a
    /// submitter or queue owner is seen, record its exe/comm and mapped libraries (it may be
    /// gone by the time an incident is written: ROCm libraries for compute candidates) and
    /// let the exit probe watch it.
    pub fn source_event(&mut self, ev: Event) {
        let pid = submitter(&ev.body);
        if pid != 0 {
            if let Some(info) = self.seen.first_sight(Path::new("/proc"), pid, ev.t_ns) {
                self.watch_pid(pid);
                self.push(info);
            }
        }
        self.push(ev);
    }

    /// Feeds the correlator the recorder's jobs up to `until_ns` it has not seen yet.
    pub fn catch_up(&mut self, until_ns: u64) {
        let Some(mut rec) = self.recorder.take() else {
            return;
        };
        for ev in rec.catch_up(until_ns) {
            self.probe_event(ev);
        }
        self.recorder = Some(rec);
    }

    /// Tells the exit probe to report `pid`.
    pub fn watch_pid(&mut self, pid: u32) {
        if let Some(m) = self.seen_map.as_mut() {
            let _ = m.insert(pid, 1, 0);
        }
    }

    /// Mirrors the counters the metrics show as gauges (called on the timer).
    /// `kmsg_drops`: records overwritten unread, records written by userspace.
    pub fn refresh_metrics(&self, kernel_drops: u64, kmsg_records: u64, kmsg_drops: [u64; 2]) {
        let [kmsg_lost, kmsg_user] = kmsg_drops;
        let Some(m) = &self.out.metrics else { return };
        let Ok(mut m) = m.lock() else { return };
        for (k, n) in self.decoder.counts.iter().enumerate() {
            if *n > 0 {
                m.probe_events.insert(kind_name(k as u32).to_string(), *n);
            }
        }
        m.dropped.insert("kernel_ring_buffer", kernel_drops);
        m.dropped.insert("kmsg_overwritten", kmsg_lost);
        m.dropped.insert("kmsg_from_userspace", kmsg_user);
        m.dropped.insert("short_record", self.decoder.short);
        m.kmsg_records = kmsg_records;
        m.open_incidents = self.corr.open_count() as u64;
        m.reset_loop_resets = self
            .corr
            .reset_loops_under_way()
            .into_iter()
            .map(|(gpu, n)| (gpu.unwrap_or_default(), u64::from(n)))
            .collect();
        let cs = self.corr.stats();
        for (what, n) in [
            ("unmatched_join", cs.unmatched_joins),
            ("process_eviction", cs.process_evictions),
            ("pasid_eviction", cs.pasid_evictions),
            ("unattached", cs.unattached),
            ("summary_overflow", cs.summary_overflow),
            ("submission_untracked", cs.submissions_untracked),
        ] {
            m.correlator.insert(what, n);
        }
        // Kept jobs: finished ones up to the depth plus every unfinished one, so no cap here.
        for (ring, seen) in &cs.ring_jobs_seen {
            let evicted = cs.ring_jobs_evicted.get(ring).copied().unwrap_or(0);
            let refused = cs.ring_jobs_refused.get(ring).copied().unwrap_or(0);
            let kept = seen.saturating_sub(evicted).saturating_sub(refused);
            m.recorder_jobs.insert(ring.clone(), kept);
        }
    }
}

impl State {
    /// Mirrors the compute sources' counters and the queue table's size and evictions (on
    /// the timer, after [`State::refresh_metrics`]).
    pub fn refresh_compute_metrics(&self, kfd: &crate::sources::kfd::Counters) {
        let Some(m) = &self.out.metrics else { return };
        let Ok(mut m) = m.lock() else { return };
        for (what, n) in kfd.values() {
            m.compute_sources.insert(what, n);
        }
        let (live, evicted) = self.corr.queue_table();
        m.compute_queues = live as u64;
        m.correlator.insert("queue_eviction", evicted);
    }
}

/// The process an event shows submitting GPU work or holding a queue (0: none).
fn submitter(body: &EventBody) -> u32 {
    match body {
        EventBody::Submit { task, .. }
        | EventBody::SchedQueued { task, .. }
        | EventBody::SubmitRejected { task, .. } => task.pid,
        EventBody::QueueCreated(q) => q.task.pid,
        EventBody::UserqFence(f) => f.task.pid,
        _ => 0,
    }
}

/// The warning line of a stall seen for the first time.
fn announce_stall(ev: &Event, now_ns: u64) {
    if let EventBody::RingStall {
        ring,
        task,
        running_since_ns,
        ..
    } = &ev.body
    {
        let secs = now_ns.saturating_sub(*running_since_ns) as f64 / 1e9;
        crate::warn!(
            "stall: GPU {} ring {}: the job {}[{}] submitted has run {secs:.1} s without finishing",
            escape::terminal(ev.gpu.as_deref().unwrap_or("?")),
            escape::terminal(ring),
            escape::terminal(&task.comm),
            task.pid
        );
    }
}

/// A job's own event (submitted, queued, run, finished, its fences): the recorder holds these,
/// so they need no catch-up first.
fn per_job(body: &EventBody) -> bool {
    matches!(
        body,
        EventBody::Submit { .. }
            | EventBody::SchedQueued { .. }
            | EventBody::RunJob { .. }
            | EventBody::JobDone { .. }
            | EventBody::HwFenceEmitted { .. }
            | EventBody::HwFenceSignaled { .. }
            | EventBody::VmGrabId { .. }
    )
}
