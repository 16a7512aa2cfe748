//! The correlator: a pure state machine from [`Event`]s to [`Incident`]s.
//!
//! No I/O, no clock reads: time only advances through event timestamps and `advance`.
//! Memory is bounded: `ring_depth` finished jobs per ring plus its unfinished ones (at most
//! `recorder::MAX_UNFINISHED`), `max_processes` identities and `max_pasids`
//! PASID mappings (O(1) LRUs), `max_open` open incidents with capped per-role lists, and the
//! last RECENT_EVIDENCE evidence items; whatever a cap turns away is counted in [`Stats`] or
//! the incident's `omitted`. Rules are documented in `docs/attribution.md`.
mod attribute;
mod blame;
mod clock;
mod compute;
mod consequence;
mod lru;
mod mesa;
mod notes;
mod open;
mod pending;
mod processes;
pub mod queues;
mod recorder;
mod reset_loop;
mod roles;
#[cfg(test)]
mod testev;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_busy;
#[cfg(test)]
mod tests_compute;
#[cfg(test)]
mod tests_stall;
mod timeout;
mod verdict;
mod wedged;

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

use crate::incident::{Evidence, Incident, JobSnapshot, ProcessSummary};
use crate::model::{BootInfo, Clock, Event, EventBody, Source, Task};

pub use open::Open;
use pending::Pending;
use processes::Processes;
use recorder::Recorder;

/// RFC 3339 UTC rendering of ns since the epoch (as incidents' `wall_time`).
/// The `RingStall` report of the stalled job `j` at `now_ns`.
fn stall_event(j: &recorder::Job, now_ns: u64) -> Event {
    Event {
        t_ns: now_ns,
        clock: Clock::Monotonic,
        source: Source::Ebpf,
        gpu: j.gpu.clone(),
        body: EventBody::RingStall {
            ring: j.ring.clone(),
            job: j.key,
            task: Task::new(j.pid, j.tid, j.comm.as_str()),
            running_since_ns: j.run_ns.unwrap_or(now_ns),
        },
    }
}

/// Which stall a report is about: its device, ring and the stalled job's run time.
type StallId = (Option<String>, String, u64);

fn stall_id(ev: &Event) -> StallId {
    match &ev.body {
        EventBody::RingStall {
            ring,
            running_since_ns,
            ..
        } => (ev.gpu.clone(), ring.clone(), *running_since_ns),
        _ => (ev.gpu.clone(), String::new(), 0),
    }
}

pub fn render_wall(t_ns: u64) -> String {
    clock::render_time(Clock::Realtime, t_ns)
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Jobs kept per ring in the flight recorder.
    pub ring_depth: usize,
    /// How far before a timeout/reset page faults are considered evidence.
    pub fault_window_ns: u64,
    /// An incident with a timeout or reset closes this long after its last related event.
    pub settle_ns: u64,
    /// A begun reset keeps its incident open until the reset ends, at most this long (MxGPU
    /// function-level resets take seconds; some full resets tens of seconds).
    pub reset_cap_ns: u64,
    /// Process identities kept (least recently seen evicted first).
    pub max_processes: usize,
    /// PASID → pid mappings kept. amdgpu PASIDs are 16 bits, so the default never evicts a
    /// live mapping on a real system.
    pub max_pasids: usize,
    /// Open incidents kept at once (the oldest is closed early when exceeded).
    pub max_open: usize,
    /// A ring whose oldest unfinished job has run this long is reported stalled (rule S1);
    /// 0 = never. Well below the kernel's shortest default timeout (10 s).
    pub stall_after_ns: u64,
    /// A reset loop (rule L2): this many incidents with a reset on one device within
    /// `loop_window_ns`. Below 2 turns reset loops off.
    pub loop_resets: usize,
    /// The reset loop's window; a loop closes when it passes without another reset.
    pub loop_window_ns: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ring_depth: 256,
            fault_window_ns: 30_000_000_000,
            settle_ns: 5_000_000_000,
            reset_cap_ns: 120_000_000_000,
            max_processes: 4096,
            max_pasids: 65_536,
            max_open: 16,
            stall_after_ns: 5_000_000_000,
            loop_resets: 3,
            loop_window_ns: 600_000_000_000,
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
    /// Per ring: jobs not recorded because the ring already held `recorder::MAX_UNFINISHED`
    /// unfinished jobs (only lost completion events can get there).
    pub ring_jobs_refused: HashMap<String, u64>,
    /// Per process: submissions seen (for at most SUBMISSION_PIDS pids; the rest in
    /// `submissions_untracked`).
    pub submissions: HashMap<u32, u64>,
    pub submissions_untracked: u64,
    /// Scheduler/fence events that matched no recorded job (RunJob without Submit, ...).
    pub unmatched_joins: u64,
    /// Process identities and PASID mappings evicted from the bounded tables.
    pub process_evictions: u64,
    pub pasid_evictions: u64,
    /// Events that only join an incident (refusals, devcoredump, ...) that no incident took:
    /// refusals arriving when none was open, and devcoredump/driver-error notices no incident
    /// adopted within a few seconds (`pending.rs`). Counted, not kept.
    pub unattached: u64,
    /// Per-process summary entries not kept (more processes than `max_processes`).
    pub summary_overflow: u64,
    /// Compute queues evicted from the bounded queue table in earlier boots (the current
    /// boot's are in [`Correlator::queue_table`]).
    pub queue_evictions: u64,
    /// Incidents emitted.
    pub incidents: u64,
    /// Resets that no reset loop could track: every tracked device had a loop under way.
    pub reset_loop_refused: u64,
}

/// Processes whose submissions `Stats` counts one by one.
const SUBMISSION_PIDS: usize = 4096;

impl Stats {
    /// Counts a submission by `pid`; past SUBMISSION_PIDS processes, in one untracked total.
    fn submitted(&mut self, pid: u32) {
        if let Some(n) = self.submissions.get_mut(&pid) {
            *n += 1;
        } else if self.submissions.len() < SUBMISSION_PIDS {
            self.submissions.insert(pid, 1);
        } else {
            self.submissions_untracked += 1;
        }
    }
}

pub struct Correlator {
    config: Config,
    stats: Stats,
    procs: Processes,
    recorder: Recorder,
    open: Vec<Open>,
    /// Join-only records waiting briefly for the incident that follows them.
    pending: Pending,
    /// Per (boot, pid): pids are reused across boots.
    summary: HashMap<(u32, u32), ProcessSummary>,
    /// The latest evidence across incidents of this boot, bounded, for exports of arbitrary
    /// windows.
    recent: VecDeque<Evidence>,
    /// The boot the current events belong to (from the last `EventBody::Boot`).
    boot: Option<BootInfo>,
    /// Compute queues (KFD, user queues) for compute attribution (`queues.rs`).
    queues: queues::Queues,
    /// The stalls the last poll reported ([`Correlator::poll_stalls`]).
    stalls_reported: std::collections::HashSet<StallId>,
    /// Reset loops per device (rule L2), and the loop incidents closed but not yet returned.
    loops: reset_loop::Loops,
    loops_done: Vec<Incident>,
}

/// Evidence items kept for `evidence_between` (a few incidents' worth; storms are capped
/// per incident already).
const RECENT_EVIDENCE: usize = 1024;

impl Correlator {
    pub fn new(config: Config) -> Self {
        Correlator {
            procs: Processes::new(config.max_processes, config.max_pasids),
            recorder: Recorder::new(config.ring_depth),
            config,
            stats: Stats::default(),
            open: Vec::new(),
            pending: Pending::default(),
            summary: HashMap::default(),
            stalls_reported: Default::default(),
            recent: VecDeque::new(),
            boot: None,
            queues: queues::Queues::new(),
            loops: reset_loop::Loops::default(),
            loops_done: Vec::new(),
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
        // A user-queue fence is a job; a hung user queue, or a KFD queue that did not
        // preempt, that ring's timeout (queues::derived): fed in right after the event.
        let derived = self.queues.derived(&event);
        let finishes = matches!(
            event.body,
            EventBody::HwFenceSignaled { .. }
                | EventBody::JobDone { .. }
                | EventBody::ResetEnd { .. }
        );
        self.place(event, &mut out);
        if finishes {
            self.close_finished_stalls(&mut out);
        }
        if let Some(d) = derived {
            out.extend(self.push(d));
        }
        out.append(&mut self.loops_done);
        out
    }

    /// Closes the stall incidents whose stalled job finished (rule S1).
    fn close_finished_stalls(&mut self, out: &mut Vec<Incident>) {
        let mut i = 0;
        while i < self.open.len() {
            if self.open[i].stall_over(&self.recorder) {
                let o = self.open.remove(i);
                out.push(self.close(o));
            } else {
                i += 1;
            }
        }
    }

    /// Puts `event` into the open incident it belongs to, opens one, holds it, or counts it.
    fn place(&mut self, event: Event, out: &mut Vec<Incident>) {
        let Some(role) = open::role(&event) else {
            return;
        };
        let idx = match self.route(&event, role) {
            Some(i) => i,
            None if role.opens() => {
                let link = self.consequence_of(&event);
                let i = self.open_incident(&event, out);
                self.join(i, &event, role);
                if let Some(l) = link {
                    self.open[i].link(l, &event);
                }
                return;
            }
            None if open::pends(&event) => {
                self.stats.unattached += self.pending.hold(event);
                return;
            }
            // Kept by the queue table for an incident opening soon after (NOTE_LOOKBACK_NS).
            None if role == open::Role::Compute => return,
            None => {
                self.stats.unattached += 1;
                return;
            }
        };
        self.join(idx, &event, role);
    }

    /// Rule L1: the open incident on `event`'s GPU whose hang a timeout opening a new
    /// incident follows from, when there is one (`consequence.rs`).
    fn consequence_of(&mut self, event: &Event) -> Option<consequence::Link> {
        let gpu = event.gpu.as_deref();
        let (i, gap_ns) = self
            .open
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, o)| crate::model::same_gpu(o.gpu.as_deref(), gpu))
            .find_map(|(i, o)| consequence::gap(o, event).map(|g| (i, g)))?;
        let o = &mut self.open[i];
        Some(consequence::Link {
            of: o.id(),
            ring: consequence::first_ring(o),
            gap_ns,
        })
    }

    /// Opens an incident for `event` (closing the oldest past `max_open`), adopting the held
    /// join-only records that precede it; its index.
    fn open_incident(&mut self, event: &Event, out: &mut Vec<Incident>) -> usize {
        if self.open.len() >= self.config.max_open.max(1) {
            let o = self.open.remove(0);
            out.push(self.close(o));
        }
        self.open.push(Open::new(event, self.stats.dropped));
        let idx = self.open.len() - 1;
        for held in self.pending.adopt(event) {
            self.join(idx, &held, open::Role::After);
        }
        // KFD prints its preemption failures seconds before the reset or timeout it causes.
        // Notes stamped a little after the opening event count too: sources reach the
        // correlator in their own order (/dev/kmsg is read at once, the probe ring buffer on
        // its 100 ms tick), so the kernel's lines can arrive before the probe event that
        // opens their incident (6.1 scenario 20: the KFD lines 12 ms after the probe's reset).
        let from = event.t_ns.saturating_sub(queues::NOTE_LOOKBACK_NS);
        let to = event.t_ns.saturating_add(self.config.settle_ns);
        for note in self.queues.lookback(event.gpu.as_deref(), from, to) {
            self.join(idx, &note, open::Role::Compute);
        }
        idx
    }

    /// Adds `event` to open incident `idx`, and its evidence to the recent evidence.
    fn join(&mut self, idx: usize, event: &Event, role: open::Role) {
        let open = &mut self.open[idx];
        if let Some(e) = open.add(event, role, &self.procs, &self.recorder) {
            if self.recent.len() >= RECENT_EVIDENCE {
                self.recent.pop_front();
            }
            self.recent.push_back(e.clone());
        }
    }

    /// Evidence (faults, timeouts, resets, rejections) recorded in [from_ns, to_ns], from the
    /// last RECENT_EVIDENCE items of this boot, for `hangwatch export` of an arbitrary window.
    pub fn evidence_between(&self, from_ns: u64, to_ns: u64) -> Vec<Evidence> {
        self.recent
            .iter()
            .filter(|e| e.t_ns >= from_ns && e.t_ns <= to_ns)
            .cloned()
            .collect()
    }

    /// The open incident `event` belongs to, if any: a reset result goes to the incident
    /// whose begun reset it ends (however long it took); anything else to the latest open
    /// incident on the same GPU that accepts it (events without a PCI address match any GPU).
    fn route(&self, event: &Event, role: open::Role) -> Option<usize> {
        let same_gpu = |o: &Open| crate::model::same_gpu(o.gpu.as_deref(), event.gpu.as_deref());
        if let Some(ring) = open::reset_result(event) {
            if let Some(i) = self
                .open
                .iter()
                .rposition(|o| same_gpu(o) && o.awaits(ring))
            {
                return Some(i);
            }
        }
        self.open
            .iter()
            .rposition(|o| same_gpu(o) && o.accepts(event, role, &self.config))
    }

    /// A new boot closes everything still open (no incident spans boots) and forgets the
    /// previous boot's jobs, identities (pids are reused) and recent evidence; the same boot
    /// again only adds facts. The first boot announced (seq 0) describes the events before it.
    fn boot(&mut self, info: &BootInfo) -> Vec<Incident> {
        match self.boot.as_mut() {
            Some(b) if b.seq == info.seq => {
                b.boot_id = b.boot_id.take().or_else(|| info.boot_id.clone());
                b.hostname = b.hostname.take().or_else(|| info.hostname.clone());
                b.kernel = b.kernel.take().or_else(|| info.kernel.clone());
                b.realtime_offset_ns = b.realtime_offset_ns.or(info.realtime_offset_ns);
                Vec::new()
            }
            None if info.seq == 0 => {
                self.boot = Some(info.clone());
                Vec::new()
            }
            _ => {
                let out = self.finish();
                self.boot = Some(info.clone());
                self.procs = Processes::new(self.config.max_processes, self.config.max_pasids);
                self.recorder = Recorder::new(self.config.ring_depth);
                self.stats.queue_evictions += self.queues.evicted;
                self.queues = queues::Queues::new();
                self.recent.clear();
                out
            }
        }
    }

    /// Close incidents whose settle time has passed at `now_ns` (live mode calls this on a timer).
    pub fn advance(&mut self, now_ns: u64) -> Vec<Incident> {
        self.stats.unattached += self.pending.expire(now_ns);
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
        self.close_loops(Some(now_ns));
        out.append(&mut self.loops_done);
        out
    }

    /// The stall poll (rule S1; live mode calls it once a second): a `RingStall` report for
    /// every ring whose oldest unfinished job ran past `stall_after_ns`, to be pushed like any
    /// event. Each comes with `true` when this stall was not reported before, so the caller
    /// can warn at once, long before the stall's incident closes.
    pub fn stall_reports(&mut self, now_ns: u64) -> Vec<(Event, bool)> {
        let after = self.config.stall_after_ns;
        if after == 0 {
            return Vec::new();
        }
        let reports: Vec<Event> = self
            .recorder
            .stalled(now_ns, after)
            .map(|j| stall_event(j, now_ns))
            .collect();
        let seen = std::mem::take(&mut self.stalls_reported);
        reports
            .into_iter()
            .map(|ev| {
                let id = stall_id(&ev);
                let first = !seen.contains(&id);
                self.stalls_reported.insert(id);
                (ev, first)
            })
            .collect()
    }

    /// End of input: close everything still open, reset loops last (they sum up the rest).
    pub fn finish(&mut self) -> Vec<Incident> {
        self.stats.unattached += self.pending.clear();
        let open = std::mem::take(&mut self.open);
        let mut out: Vec<Incident> = open.into_iter().map(|o| self.close(o)).collect();
        out.sort_by_key(|x| x.started_ns);
        self.close_loops(None);
        out.append(&mut self.loops_done);
        out
    }

    fn loop_rule(&self) -> reset_loop::Rule {
        reset_loop::Rule {
            resets: self.config.loop_resets,
            window_ns: self.config.loop_window_ns,
        }
    }

    /// Rule L2: a closed incident with a reset joins its device's reset loop.
    fn track_loop(&mut self, inc: &Incident) {
        let kernel = self.boot.as_ref().and_then(|b| b.kernel.clone());
        let rule = self.loop_rule();
        if let Some((gpu, l)) = self.loops.observe(inc, kernel.as_deref(), rule) {
            self.emit_loop(gpu, l);
        }
        self.stats.reset_loop_refused = self.loops.refused;
    }

    /// Closes the reset loops whose window passed at `now_ns` (`None`: all of them).
    fn close_loops(&mut self, now_ns: Option<u64>) {
        let rule = self.loop_rule();
        for (gpu, l) in self.loops.expire(now_ns, rule) {
            self.emit_loop(gpu, l);
        }
    }

    fn emit_loop(&mut self, gpu: Option<String>, l: reset_loop::Loop) {
        let mut inc = l.incident(gpu, self.loop_rule());
        if let Some(b) = &self.boot {
            inc.boot_id.clone_from(&b.boot_id);
            inc.hostname.clone_from(&b.hostname);
        }
        inc.wall_time = self.wall_time(inc.clock, inc.started_ns);
        self.stats.incidents += 1;
        self.loops_done.push(inc);
    }

    /// Per device: the resets its reset loop under way has counted (rule L2).
    pub fn reset_loops_under_way(&self) -> Vec<(Option<String>, u32)> {
        self.loops.under_way()
    }

    /// Attributions of the open incidents that changed since the last call, marked
    /// `provisional` and carrying the id the final incident will have, so the agent can write
    /// an incident as soon as it opens and rewrite it as evidence arrives (at most once a
    /// second is its choice). Pure: nothing is closed or counted.
    pub fn changed_open(&mut self) -> Vec<Incident> {
        let mut out = Vec::new();
        for i in 0..self.open.len() {
            if self.open[i].changed {
                self.open[i].changed = false;
                let id = self.open[i].id();
                let mut inc = self.build(&self.open[i], id);
                inc.provisional = true;
                out.push(inc);
            }
        }
        out
    }

    /// The incident as it stands: attribution plus boot facts and drops.
    fn build(&self, open: &Open, id: String) -> Incident {
        let cx = verdict::Ctx {
            procs: &self.procs,
            rec: &self.recorder,
            queues: &self.queues,
            cfg: &self.config,
        };
        let mut inc = attribute::attribute(open, id, &cx);
        inc.dropped_events = self.stats.dropped.saturating_sub(open.dropped_at_open);
        if let Some(b) = &self.boot {
            inc.boot_id.clone_from(&b.boot_id);
            inc.hostname.clone_from(&b.hostname);
        }
        inc.wall_time = self.wall_time(inc.clock, inc.started_ns);
        inc
    }

    fn close(&mut self, mut open: Open) -> Incident {
        let id = open.id();
        let inc = self.build(&open, id);
        self.stats.incidents += 1;
        self.count_summary(&inc, &open);
        self.track_loop(&inc);
        inc
    }

    /// RFC 3339 UTC of `t_ns` on `clock`, when the wall clock is known.
    fn wall_time(&self, clock: Clock, t_ns: u64) -> Option<String> {
        let offset = match clock {
            Clock::Realtime => 0,
            Clock::Monotonic => self.boot.as_ref()?.realtime_offset_ns?,
        };
        let wall = i64::try_from(t_ns).ok()?.checked_add(offset)?;
        Some(clock::render_time(
            Clock::Realtime,
            u64::try_from(wall).ok()?,
        ))
    }

    fn count_summary(&mut self, inc: &Incident, open: &Open) {
        let boot = self.boot.as_ref().map_or(0, |b| b.seq);
        let cap = self.config.max_processes;
        let mut s = SummaryTable {
            map: &mut self.summary,
            boot,
            cap,
            overflow: &mut self.stats.summary_overflow,
        };
        if let Some(c) = &inc.culprit {
            if let Some(e) = s.entry(c.pid, &c.comm) {
                e.culprit += 1;
            }
        }
        for v in &inc.victims {
            if let Some(e) = s.entry(v.pid, &v.comm) {
                e.victim += 1;
            }
        }
        for f in open.faults.named() {
            if let Some(e) = s.entry(f.pid, &f.comm) {
                e.faults += 1;
            }
        }
        if let Some(k) = &inc.kernel_blamed {
            if let Some(e) = s.entry(k.pid, &k.comm) {
                e.kernel_blamed += 1;
                if inc.kernel_blame_disputed {
                    e.kernel_blamed_but_evidence_disagrees += 1;
                }
            }
        }
    }

    /// Record events lost before reaching the correlator (ring buffer full, ...).
    pub fn note_dropped(&mut self, n: u64) {
        self.stats.dropped += n;
    }
    /// Incidents still open (the daemon's kmsg cursor only advances when there are none).
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Jobs kept per ring (the flight recorder's bound, for the depth gauge).
    /// 0 = no stall poll.
    pub fn stall_after_ns(&self) -> u64 {
        self.config.stall_after_ns
    }

    pub fn ring_depth(&self) -> usize {
        self.config.ring_depth
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The compute queue table: (live queues, queues evicted from it since the start).
    pub fn queue_table(&self) -> (usize, u64) {
        (
            self.queues.live_len(),
            self.stats.queue_evictions + self.queues.evicted,
        )
    }

    /// Per-process counters over everything seen (a pid per boot: pids are reused).
    pub fn summary(&self) -> Vec<ProcessSummary> {
        let mut v: Vec<(&(u32, u32), &ProcessSummary)> = self.summary.iter().collect();
        v.sort_by_key(|(k, _)| **k);
        v.into_iter().map(|(_, s)| s.clone()).collect()
    }
    /// Flight-recorder jobs overlapping [from_ns, to_ns] (all rings), for `hangwatch export`.
    pub fn jobs_between(&self, from_ns: u64, to_ns: u64) -> Vec<JobSnapshot> {
        self.recorder
            .snapshot(None, from_ns, to_ns, None, &self.procs)
    }
}

/// The per-(boot, pid) summary, bounded at `cap` entries.
struct SummaryTable<'a> {
    map: &'a mut HashMap<(u32, u32), ProcessSummary>,
    boot: u32,
    cap: usize,
    overflow: &'a mut u64,
}

impl SummaryTable<'_> {
    fn entry(&mut self, pid: u32, comm: &str) -> Option<&mut ProcessSummary> {
        let key = (self.boot, pid);
        if !self.map.contains_key(&key) && self.map.len() >= self.cap {
            *self.overflow += 1;
            return None;
        }
        let e = self.map.entry(key).or_default();
        e.pid = pid;
        if e.comm.is_empty() {
            e.comm = comm.to_string();
        }
        Some(e)
    }
}
