//! Per-ring flight recorder: the last `depth` jobs per ring, joined across the submit,
//! scheduler and hardware-fence events (see docs/attribution.md "Joins"). Rings are kept per
//! device (`Event::gpu`): two GPUs both have `gfx_0.0.0` and count job ids per scheduler.
use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap as HashMap;

use super::processes::Processes;
use super::Stats;
use crate::incident::{JobSnapshot, JobState};
use crate::model::{Event, EventBody, JobKey, Task};

#[derive(Clone, Debug, Default)]
pub struct Job {
    /// The device of the ring (`None`: not known).
    pub gpu: Option<String>,
    pub ring: String,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub key: JobKey,
    pub pasid: Option<u32>,
    pub hw_seqno: Option<u64>,
    pub submit_ns: Option<u64>,
    pub run_ns: Option<u64>,
    pub done_ns: Option<u64>,
    pub worker_tid: Option<u32>,
    pub hung: bool,
    pub cancelled: bool,
}

impl Job {
    /// A job first seen at submission by `task`.
    fn submitted(gpu: &Option<String>, ring: &str, task: &Task, key: &JobKey, t: u64) -> Job {
        Job {
            gpu: gpu.clone(),
            ring: ring.to_string(),
            pid: task.pid,
            tid: task.tid,
            comm: task.comm.clone(),
            key: *key,
            submit_ns: Some(t),
            ..Job::default()
        }
    }
}

impl Job {
    /// Its fence signaled at `t`. During a reset (begun at `reset_since`, within the last two
    /// minutes) a job that ran before the reset began was force-signaled: cancelled, not done.
    fn signaled(&mut self, t: u64, reset_since: Option<u64>) {
        let forced = reset_since.is_some_and(|r| {
            t.saturating_sub(r) < 120_000_000_000 && self.run_ns.is_some_and(|run| run <= r)
        });
        if forced {
            self.cancelled = true;
        } else if self.done_ns.is_none() {
            self.done_ns = Some(t);
        }
    }
}

fn merge_key(into: &mut JobKey, from: &JobKey) {
    into.context = into.context.or(from.context);
    into.seqno = into.seqno.or(from.seqno);
    into.sched_job_id = into.sched_job_id.or(from.sched_job_id);
    into.sched_fence = into.sched_fence.or(from.sched_fence);
}

/// Unfinished jobs kept per ring at most: far above any real queue (four clients at 60 Hz
/// queue 2 400 frames in a 10 s timeout), so only lost completion events can reach it. A job
/// past it is refused and counted (`Stats::ring_jobs_refused`), never an unfinished one evicted.
pub const MAX_UNFINISHED: usize = 65_536;

/// One ring's jobs by serial (submission order), with indexes so each event costs O(log n)
/// instead of a scan of the whole recorder: at tens of thousands of jobs per second, a
/// 256-deep linear search per event was most of the agent's CPU. Only finished jobs age out
/// (`depth` of them are kept); every unfinished job stays until it finishes or a reset ends.
#[derive(Default)]
struct RingLog {
    jobs: BTreeMap<u64, Job>,
    /// The next job's serial. Serials never repeat, so an index entry pointing at an evicted
    /// job is recognisably stale.
    next: u64,
    by_job_id: HashMap<u64, u64>,
    by_fence: HashMap<u64, u64>,
    by_ctx_seq: HashMap<(u64, u64), u64>,
    /// Hardware seqno → serial, for jobs whose hardware fence has not signaled yet.
    unsignaled: BTreeMap<u64, u64>,
    /// Scheduler worker tid → serial of the job it ran last (awaiting its hardware fence).
    last_run: HashMap<u32, u64>,
    /// Serials of finished jobs: completed, cancelled, passed by a later completion on the
    /// ring, or run before a reset ended. Only these age out, oldest first.
    finished: BTreeSet<u64>,
    /// (run time, serial) of jobs that ran and have not finished.
    running: BTreeSet<(u64, u64)>,
    /// The latest time (completion, else run or submission) of a job aged out: before it, the
    /// kept history may miss finished jobs.
    trimmed_ns: Option<u64>,
}

impl RingLog {
    fn get_mut(&mut self, serial: u64) -> Option<&mut Job> {
        self.jobs.get_mut(&serial)
    }

    fn get(&self, serial: u64) -> Option<&Job> {
        self.jobs.get(&serial)
    }

    /// Jobs kept that have not finished.
    fn unfinished(&self) -> usize {
        self.jobs.len() - self.finished.len()
    }

    /// The newest job matching `key` (any of its identities), like a reverse scan would find.
    fn lookup(&self, key: &JobKey) -> Option<u64> {
        let id = key.sched_job_id.and_then(|k| self.by_job_id.get(&k));
        let fence = key.sched_fence.and_then(|k| self.by_fence.get(&k));
        let cs = match (key.context, key.seqno) {
            (Some(c), Some(s)) => self.by_ctx_seq.get(&(c, s)),
            _ => None,
        };
        [id, fence, cs]
            .into_iter()
            .flatten()
            .copied()
            .filter(|s| self.get(*s).is_some())
            .max()
    }

    /// Index every identity `key` has. An identity maps to its newest holder (as a reverse scan
    /// would find), even when an older job gains it by a merge; so when a job is evicted and an
    /// entry still points at it, no other job holds that identity.
    fn index(&mut self, serial: u64, key: &JobKey) {
        fn newest<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u64>, k: K, serial: u64) {
            let e = m.entry(k).or_insert(serial);
            *e = (*e).max(serial);
        }
        if let Some(k) = key.sched_job_id {
            newest(&mut self.by_job_id, k, serial);
        }
        if let Some(k) = key.sched_fence {
            newest(&mut self.by_fence, k, serial);
        }
        if let (Some(c), Some(s)) = (key.context, key.seqno) {
            newest(&mut self.by_ctx_seq, (c, s), serial);
        }
    }

    fn unindex(&mut self, serial: u64, job: &Job) {
        fn drop_if<K: std::hash::Hash + Eq>(m: &mut HashMap<K, u64>, k: K, serial: u64) {
            if m.get(&k) == Some(&serial) {
                m.remove(&k);
            }
        }
        if let Some(k) = job.key.sched_job_id {
            drop_if(&mut self.by_job_id, k, serial);
        }
        if let Some(k) = job.key.sched_fence {
            drop_if(&mut self.by_fence, k, serial);
        }
        if let (Some(c), Some(s)) = (job.key.context, job.key.seqno) {
            drop_if(&mut self.by_ctx_seq, (c, s), serial);
        }
        if let Some(s) = job.hw_seqno {
            if self.unsignaled.get(&s) == Some(&serial) {
                self.unsignaled.remove(&s);
            }
        }
        if let Some(r) = job.run_ns {
            self.running.remove(&(r, serial));
        }
        self.last_run.retain(|_, s| *s != serial);
    }

    /// Ages out the oldest finished jobs beyond `depth`; how many.
    fn trim(&mut self, depth: usize) -> u64 {
        let mut n = 0;
        while self.finished.len() > depth {
            let Some(serial) = self.finished.pop_first() else {
                break;
            };
            if let Some(old) = self.jobs.remove(&serial) {
                let t = old.done_ns.or(old.run_ns).or(old.submit_ns);
                self.trimmed_ns = self.trimmed_ns.max(t);
                self.unindex(serial, &old);
                n += 1;
            }
        }
        n
    }

    /// Appends `job`; its serial, or `None` when MAX_UNFINISHED unfinished jobs are kept.
    fn push(&mut self, job: Job) -> Option<u64> {
        if self.unfinished() >= MAX_UNFINISHED {
            return None;
        }
        let serial = self.next;
        self.next += 1;
        self.index(serial, &job.key);
        self.jobs.insert(serial, job);
        Some(serial)
    }

    /// Merge `key` into job `serial` and index the identities it gained.
    fn merge(&mut self, serial: u64, key: &JobKey) {
        let merged = match self.get_mut(serial) {
            Some(j) => {
                merge_key(&mut j.key, key);
                j.key
            }
            None => return,
        };
        self.index(serial, &merged);
    }

    /// Job `serial` started running (its `run_ns` is set): unless finished, it is running.
    fn ran(&mut self, serial: u64) {
        if self.finished.contains(&serial) {
            return;
        }
        if let Some(r) = self.get(serial).and_then(|j| j.run_ns) {
            self.running.insert((r, serial));
        }
    }

    /// Job `serial` finished (completed or cancelled). A completion also finishes every job
    /// the ring ran before it: the ring runs its jobs in order, so their completions were lost.
    fn finish(&mut self, serial: u64) {
        let Some(j) = self.get(serial) else {
            return;
        };
        let (run, done) = (j.run_ns, j.done_ns.is_some());
        if let Some(r) = run {
            self.running.remove(&(r, serial));
            if done {
                let later = self.running.split_off(&(r, 0));
                let passed = std::mem::replace(&mut self.running, later);
                self.finished.extend(passed.into_iter().map(|(_, s)| s));
            }
        }
        self.finished.insert(serial);
    }
}

pub struct Recorder {
    depth: usize,
    /// Device (`None`: unknown) → ring name → jobs. Two levels so a lookup borrows the
    /// event's own strings instead of building a key per event.
    devs: HashMap<Option<String>, HashMap<String, RingLog>>,
    /// Scheduler worker tid → (pasid from the last VmGrabId).
    worker_pasid: HashMap<u32, u32>,
    /// When the first job was recorded: the recorder can speak for the rings only after this.
    first_ns: Option<u64>,
    /// Start of a GPU reset in progress per device (probe `ResetBegin` until `ResetEnd`; key
    /// `None`: the reset's device is not known): the reset force-signals every fence in flight
    /// on its device, which is a cancellation, not a completion. One entry per device at most.
    resets: HashMap<Option<String>, u64>,
}

/// The log on `ring` (any ring when `None`) of one device's rings holding the newest job that
/// matches `key`, with its serial.
fn find_in<'a>(
    d: &'a mut HashMap<String, RingLog>,
    ring: Option<&str>,
    key: &JobKey,
) -> Option<(&'a mut RingLog, u64)> {
    match ring {
        Some(r) => {
            let log = d.get_mut(r)?;
            let serial = log.lookup(key)?;
            Some((log, serial))
        }
        None => d
            .values_mut()
            .find_map(|log| log.lookup(key).map(|s| (log, s))),
    }
}

/// The stats key of a ring: `0000:03:00.0/gfx_0.0.0`, or the ring name when the device is
/// unknown.
fn ring_label(gpu: &Option<String>, ring: &str) -> String {
    match gpu {
        Some(g) => format!("{g}/{ring}"),
        None => ring.to_string(),
    }
}

impl Recorder {
    pub fn new(depth: usize) -> Self {
        Recorder {
            depth: depth.max(1),
            devs: HashMap::default(),
            worker_pasid: HashMap::default(),
            first_ns: None,
            resets: HashMap::default(),
        }
    }

    /// When the first job was recorded (probe coverage starts here, on every device).
    pub fn first_ns(&self) -> Option<u64> {
        self.first_ns
    }

    /// Whether any job on device `gpu`'s `ring` (or on a `ring` whose device is not known) was
    /// ever recorded: the probes see this ring.
    pub fn knows(&self, gpu: &Option<String>, ring: &str) -> bool {
        self.logs(gpu, Some(ring)).next().is_some()
    }

    /// The latest time of a finished job aged out of device `gpu`'s `ring` (None: nothing
    /// aged out): before it, the kept history may miss finished jobs. Never an unfinished one.
    pub fn trimmed_ns(&self, gpu: &Option<String>, ring: &str) -> Option<u64> {
        self.logs(gpu, Some(ring))
            .filter_map(|l| l.trimmed_ns)
            .max()
    }

    /// Start of the reset in progress on device `gpu`: its own, else one whose device is not
    /// known; with `gpu` unknown, the earliest of any device's.
    fn reset_since(&self, gpu: &Option<String>) -> Option<u64> {
        if gpu.is_some() {
            self.resets.get(gpu).or(self.resets.get(&None)).copied()
        } else {
            self.resets.values().min().copied()
        }
    }

    /// Jobs kept on every device's ring named `ring`.
    pub fn ring_len(&self, ring: &str) -> usize {
        self.devs
            .values()
            .filter_map(|d| d.get(ring))
            .map(|r| r.jobs.len())
            .sum()
    }

    /// The per-device ring maps that may hold device `gpu`'s jobs, its own first, then those of
    /// jobs whose device is not known; every device's when `gpu` is `None`.
    fn buckets<'a>(
        &'a self,
        gpu: &'a Option<String>,
    ) -> impl Iterator<Item = &'a HashMap<String, RingLog>> + 'a {
        let known = gpu.is_some();
        let own = self.devs.get(gpu).filter(|_| known);
        let unknown = self.devs.get(&None).filter(|_| known);
        let all = (!known).then(|| self.devs.values()).into_iter().flatten();
        own.into_iter().chain(unknown).chain(all)
    }

    /// Ring logs that may hold device `gpu`'s jobs ([`Recorder::buckets`]), optionally only
    /// rings named `ring`.
    fn logs<'a>(
        &'a self,
        gpu: &'a Option<String>,
        ring: Option<&'a str>,
    ) -> impl Iterator<Item = &'a RingLog> + 'a {
        self.buckets(gpu).flat_map(move |d| {
            d.iter()
                .filter(move |(name, _)| ring.is_none_or(|r| r == name.as_str()))
                .map(|(_, log)| log)
        })
    }

    fn log_mut(&mut self, gpu: &Option<String>, ring: &str) -> Option<&mut RingLog> {
        self.devs.get_mut(gpu)?.get_mut(ring)
    }

    /// Appends a job to its device's ring, aging out finished jobs beyond the depth; returns
    /// its serial, or `None` when the ring holds MAX_UNFINISHED unfinished jobs (counted).
    fn push_job(&mut self, job: Job, stats: &mut Stats) -> Option<u64> {
        if self.first_ns.is_none() {
            self.first_ns = job.submit_ns.or(job.run_ns);
        }
        let label = ring_label(&job.gpu, &job.ring);
        *stats.ring_jobs_seen.entry(label.clone()).or_default() += 1;
        if !self.devs.contains_key(&job.gpu) {
            self.devs.insert(job.gpu.clone(), HashMap::default());
        }
        let dev = self.devs.get_mut(&job.gpu)?;
        if !dev.contains_key(job.ring.as_str()) {
            dev.insert(job.ring.clone(), RingLog::default());
        }
        let log = dev.get_mut(job.ring.as_str())?;
        let evicted = log.trim(self.depth);
        if evicted > 0 {
            *stats.ring_jobs_evicted.entry(label.clone()).or_default() += evicted;
        }
        let serial = log.push(job);
        if serial.is_none() {
            *stats.ring_jobs_refused.entry(label).or_default() += 1;
        }
        serial
    }

    /// The ring log holding the newest job matching `key` among device `gpu`'s rings (then
    /// those of jobs whose device is not known; any device when `gpu` is `None`), on `ring` or on
    /// any ring, with that job's serial. Never another known device's: job ids repeat across
    /// devices.
    fn locate_mut(
        &mut self,
        gpu: &Option<String>,
        ring: Option<&str>,
        key: &JobKey,
    ) -> Option<(&mut RingLog, u64)> {
        if gpu.is_none() {
            return self.devs.values_mut().find_map(|d| find_in(d, ring, key));
        }
        let own = self.devs.get(gpu).is_some_and(|d| {
            d.iter()
                .any(|(n, log)| ring.is_none_or(|r| r == n) && log.lookup(key).is_some())
        });
        find_in(self.devs.get_mut(if own { gpu } else { &None })?, ring, key)
    }

    fn find_mut(
        &mut self,
        gpu: &Option<String>,
        ring: Option<&str>,
        key: &JobKey,
    ) -> Option<&mut Job> {
        let (log, serial) = self.locate_mut(gpu, ring, key)?;
        log.get_mut(serial)
    }

    /// Merge `key` into the matching job; false when no job matches.
    fn merge_into(&mut self, gpu: &Option<String>, ring: Option<&str>, key: &JobKey) -> bool {
        match self.locate_mut(gpu, ring, key) {
            Some((log, serial)) => {
                log.merge(serial, key);
                true
            }
            None => false,
        }
    }

    /// The newest job matching `key` on any device's `ring` (or any ring).
    pub fn find(&self, ring: Option<&str>, key: &JobKey) -> Option<&Job> {
        self.find_on(&None, ring, key)
    }

    /// Like [`Recorder::find`], on device `gpu` only (any device when `None`).
    pub fn find_on(&self, gpu: &Option<String>, ring: Option<&str>, key: &JobKey) -> Option<&Job> {
        // As `buckets`, spelled out so the result borrows only `self`.
        let known = gpu.is_some();
        let own = self.devs.get(gpu).filter(|_| known);
        let unknown = self.devs.get(&None).filter(|_| known);
        let all = (!known).then(|| self.devs.values()).into_iter().flatten();
        for d in own.into_iter().chain(unknown).chain(all) {
            for (name, log) in d {
                if ring.is_some_and(|r| r != name) {
                    continue;
                }
                if let Some(j) = log.lookup(key).and_then(|s| log.get(s)) {
                    return Some(j);
                }
            }
        }
        None
    }

    /// Jobs on every device's ring named `ring`.
    pub fn jobs<'a>(&'a self, ring: &'a str) -> impl Iterator<Item = &'a Job> + 'a {
        self.logs(&None, Some(ring)).flat_map(|r| r.jobs.values())
    }

    /// Jobs on device `gpu`'s ring named `ring` (every device's when `gpu` is `None`).
    pub fn jobs_on<'a>(
        &'a self,
        gpu: &'a Option<String>,
        ring: &'a str,
    ) -> impl Iterator<Item = &'a Job> + 'a {
        self.logs(gpu, Some(ring)).flat_map(|r| r.jobs.values())
    }

    pub fn observe(&mut self, ev: &Event, procs: &mut Processes, stats: &mut Stats) {
        let t = ev.t_ns;
        let gpu = &ev.gpu;
        match &ev.body {
            EventBody::Submit {
                task, ring, job, ..
            } => {
                stats.submitted(task.pid);
                if self.merge_into(gpu, Some(ring), job) {
                    return;
                }
                self.push_job(Job::submitted(gpu, ring, task, job, t), stats);
            }
            EventBody::SchedQueued {
                task, ring, job, ..
            } => {
                // Same thread as the Submit just before: merge keys (sched_fence ↔ sched_job_id).
                if self.merge_into(gpu, Some(ring), job) {
                    return;
                }
                let by_thread = self.logs(gpu, Some(ring)).find_map(|log| {
                    log.jobs
                        .iter()
                        .rev()
                        .find(|(_, j)| j.tid == task.tid && j.run_ns.is_none())
                        .map(|(s, _)| *s)
                });
                match (by_thread, self.log_mut(gpu, ring)) {
                    (Some(serial), Some(log)) => log.merge(serial, job),
                    _ => {
                        stats.submitted(task.pid);
                        self.push_job(Job::submitted(gpu, ring, task, job, t), stats);
                    }
                }
            }
            EventBody::VmGrabId {
                pasid, worker_tid, ..
            } => {
                self.worker_pasid.insert(*worker_tid, *pasid);
            }
            EventBody::RunJob {
                ring,
                job,
                worker_tid,
            } => {
                let pasid = self.worker_pasid.remove(worker_tid);
                // A worker runs one job at a time: whatever it ran before on any ring is no
                // longer the one awaiting this worker's next hardware fence.
                for log in self.devs.values_mut().flat_map(|d| d.values_mut()) {
                    log.last_run.remove(worker_tid);
                }
                let serial = match self.locate_mut(gpu, Some(ring), job) {
                    Some((log, serial)) => {
                        log.merge(serial, job);
                        if let Some(j) = log.get_mut(serial) {
                            j.run_ns = j.run_ns.or(Some(t));
                            j.worker_tid = Some(*worker_tid);
                            if pasid.is_some() {
                                j.pasid = pasid;
                            }
                        }
                        log.ran(serial);
                        Some(serial)
                    }
                    None => {
                        // Submitted before we started (or evicted): keep it, owner from pasid.
                        stats.unmatched_joins += 1;
                        let pid = pasid.and_then(|p| procs.pid_of_pasid(p)).unwrap_or(0);
                        let comm = procs.get(pid).map(|p| p.comm.clone()).unwrap_or_default();
                        let j = Job {
                            gpu: gpu.clone(),
                            ring: ring.clone(),
                            pid,
                            tid: 0,
                            comm,
                            key: *job,
                            pasid,
                            run_ns: Some(t),
                            worker_tid: Some(*worker_tid),
                            ..Job::default()
                        };
                        let serial = self.push_job(j, stats);
                        if let Some((log, s)) =
                            serial.and_then(|s| Some((self.log_mut(gpu, ring)?, s)))
                        {
                            log.ran(s);
                        }
                        serial
                    }
                };
                if let (Some(serial), Some(log)) = (serial, self.log_mut(gpu, ring)) {
                    log.last_run.insert(*worker_tid, serial);
                }
            }
            EventBody::HwFenceEmitted {
                ring,
                seqno,
                emitter_tid,
                ..
            } => {
                if let Some(log) = self.log_mut(gpu, ring) {
                    if let Some(serial) = log.last_run.remove(emitter_tid) {
                        if let Some(j) = log.get_mut(serial).filter(|j| j.hw_seqno.is_none()) {
                            j.hw_seqno = Some(*seqno);
                            if j.done_ns.is_none() {
                                log.unsignaled.insert(*seqno, serial);
                            }
                            return;
                        }
                    }
                }
                stats.unmatched_joins += 1;
            }
            EventBody::HwFenceSignaled { ring, seqno, .. } => {
                let reset_since = self.reset_since(gpu);
                if let Some(log) = self.log_mut(gpu, ring) {
                    // Fences on a ring signal in order: everything up to `seqno` is done.
                    let later = log.unsignaled.split_off(&seqno.saturating_add(1));
                    let done = std::mem::replace(&mut log.unsignaled, later);
                    for serial in done.into_values() {
                        if let Some(j) = log.get_mut(serial) {
                            j.signaled(t, reset_since);
                            log.finish(serial);
                        }
                    }
                }
            }
            EventBody::JobDone { job } => {
                let reset_since = self.reset_since(gpu);
                match self.locate_mut(gpu, None, job) {
                    Some((log, serial)) => {
                        if let Some(j) = log.get_mut(serial) {
                            j.signaled(t, reset_since);
                        }
                        log.finish(serial);
                    }
                    None => stats.unmatched_joins += 1,
                }
            }
            EventBody::ResetBegin { .. } => {
                self.resets.insert(gpu.clone(), t);
            }
            EventBody::JobTimedOut { ring, job, .. } => {
                if let Some(j) = self.find_mut(gpu, ring.as_deref(), job) {
                    j.hung = true;
                }
            }
            EventBody::ResetEnd { .. } => {
                // This device's reset is over (every device's when the device is not known;
                // a reset begun without a device ends with the device's).
                if gpu.is_some() {
                    self.resets.remove(gpu);
                    self.resets.remove(&None);
                } else {
                    self.resets.clear();
                }
                // Jobs that were run but never completed are cancelled by the reset (of this
                // device, when known), the hung one included: all of them are finished. Jobs
                // still queued are not: the scheduler runs them after the reset.
                for log in self
                    .devs
                    .iter_mut()
                    .filter(|(g, _)| gpu.is_none() || *g == gpu)
                    .flat_map(|(_, d)| d.values_mut())
                {
                    for j in log
                        .jobs
                        .values_mut()
                        .filter(|j| j.run_ns.is_some() && j.done_ns.is_none() && !j.hung)
                    {
                        j.cancelled = true;
                    }
                    for (_, serial) in std::mem::take(&mut log.running) {
                        log.finish(serial);
                    }
                }
            }
            _ => {}
        }
    }

    /// Jobs on every device's `ring` (or all rings) overlapping [from, to], with their state.
    pub fn snapshot(
        &self,
        ring: Option<&str>,
        from: u64,
        to: u64,
        hung: Option<&JobKey>,
        procs: &Processes,
    ) -> Vec<JobSnapshot> {
        self.snapshot_on(&None, ring, from, to, hung, procs)
    }

    /// Like [`Recorder::snapshot`], on device `gpu` only (every device when `None`).
    pub fn snapshot_on(
        &self,
        gpu: &Option<String>,
        ring: Option<&str>,
        from: u64,
        to: u64,
        _hung: Option<&JobKey>,
        procs: &Processes,
    ) -> Vec<JobSnapshot> {
        let mut out = Vec::new();
        for log in self.logs(gpu, ring) {
            for j in log.jobs.values() {
                let start = j.submit_ns.or(j.run_ns).unwrap_or(0);
                let end = j.done_ns.unwrap_or(u64::MAX);
                if end < from || start > to {
                    continue;
                }
                let state = if j.hung {
                    JobState::Hung
                } else if j.done_ns.is_some() {
                    JobState::Done
                } else if j.cancelled {
                    JobState::Cancelled
                } else {
                    JobState::InFlight
                };
                let comm = if j.comm.is_empty() {
                    procs.get(j.pid).map(|p| p.comm.clone()).unwrap_or_default()
                } else {
                    j.comm.clone()
                };
                out.push(JobSnapshot {
                    job_id: j.key.sched_job_id,
                    ring: j.ring.clone(),
                    pid: j.pid,
                    tid: j.tid,
                    comm,
                    context: j.key.context,
                    seqno: j.key.seqno,
                    hw_seqno: j.hw_seqno,
                    pasid: j.pasid,
                    submit_ns: j.submit_ns,
                    run_ns: j.run_ns,
                    done_ns: j.done_ns,
                    state,
                });
            }
        }
        out.sort_by_key(|j| (j.submit_ns.or(j.run_ns), j.ring.clone()));
        out
    }
}

impl Recorder {
    pub fn all_jobs(&self) -> impl Iterator<Item = &Job> {
        self.logs(&None, None).flat_map(|r| r.jobs.values())
    }

    /// Every job of device `gpu` (of every device when `None`).
    /// Per ring, its oldest unfinished job when that job has run for `after_ns` or more at
    /// `now_ns` (the stall poll, rule S1). Cancelled or hung jobs are the kernel's business.
    pub fn stalled(&self, now_ns: u64, after_ns: u64) -> impl Iterator<Item = &Job> + '_ {
        let logs = self.devs.values().flat_map(|d| d.values());
        logs.filter_map(move |log| {
            let (run, serial) = log.running.first()?;
            let job = log.get(*serial)?;
            let long = now_ns.saturating_sub(*run) >= after_ns;
            (long && !job.hung && !job.cancelled).then_some(job)
        })
    }

    pub fn all_jobs_on<'a>(
        &'a self,
        gpu: &'a Option<String>,
    ) -> impl Iterator<Item = &'a Job> + 'a {
        self.logs(gpu, None).flat_map(|r| r.jobs.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matching rule the indexes implement: any shared identity.
    fn key_match(a: &JobKey, b: &JobKey) -> bool {
        (a.sched_job_id.is_some() && a.sched_job_id == b.sched_job_id)
            || (a.sched_fence.is_some() && a.sched_fence == b.sched_fence)
            || (a.context.is_some()
                && a.seqno.is_some()
                && a.context == b.context
                && a.seqno == b.seqno)
    }

    /// Small xorshift so the test is deterministic without extra dependencies.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn random_key(st: &mut u64) -> JobKey {
        let r = rng(st);
        // Few distinct values so identities collide, repeat and get evicted.
        let pick = |bit: u64, v: u64| (r >> bit & 1 == 1).then_some(v % 40);
        JobKey {
            sched_job_id: pick(0, r >> 8),
            sched_fence: pick(1, r >> 16),
            context: pick(2, r >> 24),
            seqno: pick(2, r >> 32),
        }
    }

    /// The indexes find exactly the job a newest-first scan with `key_match` finds, through
    /// pushes, key merges and evictions.
    #[test]
    fn indexed_lookup_equals_reverse_scan() {
        let mut st = 0x9e37_79b9_7f4a_7c15u64;
        let mut log = RingLog::default();
        for step in 0..20_000u64 {
            let key = random_key(&mut st);
            match rng(&mut st) % 3 {
                0 => {
                    let job = Job {
                        key,
                        submit_ns: Some(step),
                        done_ns: Some(step),
                        ..Job::default()
                    };
                    log.trim(15);
                    if let Some(serial) = log.push(job) {
                        log.finish(serial);
                    }
                }
                1 => {
                    if let Some(serial) = log.lookup(&key) {
                        log.merge(serial, &key);
                    }
                }
                _ => {}
            }
            let want = log
                .jobs
                .iter()
                .rev()
                .find(|(_, j)| key_match(&j.key, &key))
                .map(|(s, _)| *s);
            let got = log.lookup(&key);
            assert_eq!(
                got, want,
                "step {step}: index vs newest-first scan for {key:?}"
            );
            assert!(log.jobs.len() <= 16);
            assert!(
                log.by_job_id.len() <= 16 && log.by_fence.len() <= 16 && log.by_ctx_seq.len() <= 16
            );
        }
    }

    /// Two GPUs, same ring name, same per-scheduler job ids: each device's events land on its
    /// own ring, and a job first recorded without a device is still found by its later,
    /// labelled events (never another device's job with the same id).
    #[test]
    fn rings_are_per_device() {
        use crate::model::{Clock, Source};
        let ev = |gpu: Option<&str>, t: u64, body: EventBody| Event {
            t_ns: t,
            clock: Clock::Monotonic,
            source: Source::Ebpf,
            gpu: gpu.map(str::to_string),
            body,
        };
        let id = |n: u64| JobKey {
            sched_job_id: Some(n),
            ..JobKey::default()
        };
        let submit = |pid: u32, n: u64| EventBody::Submit {
            task: Task::new(pid, pid, format!("p{pid}")),
            ring: "gfx_0.0.0".into(),
            job: id(n),
            num_ibs: 1,
        };
        let run = |n: u64, worker: u32| EventBody::RunJob {
            ring: "gfx_0.0.0".into(),
            job: id(n),
            worker_tid: worker,
        };
        let (a, b) = (Some("0000:00:00.0"), Some("0000:01:00.0"));
        let mut rec = Recorder::new(8);
        let mut procs = Processes::new(16, 16);
        let mut stats = Stats::default();
        rec.observe(&ev(a, 1, submit(10, 1)), &mut procs, &mut stats);
        rec.observe(&ev(b, 2, submit(20, 1)), &mut procs, &mut stats);
        rec.observe(&ev(None, 3, submit(30, 2)), &mut procs, &mut stats);
        rec.observe(&ev(b, 4, run(1, 7)), &mut procs, &mut stats);
        rec.observe(&ev(b, 5, run(2, 7)), &mut procs, &mut stats);
        let a_gpu = a.map(str::to_string);
        let b_gpu = b.map(str::to_string);
        let on = |g: &Option<String>| -> Vec<(u32, Option<u64>)> {
            rec.jobs_on(g, "gfx_0.0.0")
                .map(|j| (j.pid, j.run_ns))
                .collect()
        };
        // A device's jobs, then those whose device is unknown (they may be on it); never the
        // other device's.
        assert_eq!(on(&a_gpu), vec![(10, None), (30, Some(5))]);
        assert_eq!(on(&b_gpu), vec![(20, Some(4)), (30, Some(5))]);
        assert_eq!(
            rec.find(None, &id(2)).map(|j| (j.pid, j.run_ns)),
            Some((30, Some(5)))
        );
        assert_eq!(rec.ring_len("gfx_0.0.0"), 3);
        assert_eq!(stats.unmatched_joins, 0);
        assert_eq!(stats.ring_jobs_seen.get("0000:01:00.0/gfx_0.0.0"), Some(&1));
    }

    /// A ring driven directly through `observe`: submissions, runs, hardware fences.
    struct Rig {
        rec: Recorder,
        procs: Processes,
        stats: Stats,
        hw: u64,
    }

    impl Rig {
        fn new(depth: usize) -> Rig {
            Rig {
                rec: Recorder::new(depth),
                procs: Processes::new(16, 16),
                stats: Stats::default(),
                hw: 0,
            }
        }

        fn feed(&mut self, t: u64, body: EventBody) {
            use crate::model::{Clock, Source};
            let ev = Event {
                t_ns: t,
                clock: Clock::Monotonic,
                source: Source::Ebpf,
                gpu: Some("0000:03:00.0".into()),
                body,
            };
            self.rec.observe(&ev, &mut self.procs, &mut self.stats);
        }

        fn submit(&mut self, t: u64, id: u64) {
            let job = JobKey {
                sched_job_id: Some(id),
                ..JobKey::default()
            };
            let task = Task::new(7, 7, "p");
            let ring = "gfx_0.0.0".into();
            let body = EventBody::Submit {
                task,
                ring,
                job,
                num_ibs: 1,
            };
            self.feed(t, body);
        }

        /// Runs job `id` at `t`; its hardware seqno.
        fn run(&mut self, t: u64, id: u64) -> u64 {
            let job = JobKey {
                sched_job_id: Some(id),
                ..JobKey::default()
            };
            let ring = String::from("gfx_0.0.0");
            let run = EventBody::RunJob {
                ring: ring.clone(),
                job,
                worker_tid: 9,
            };
            self.feed(t, run);
            self.hw += 1;
            let seqno = self.hw;
            let emitted = EventBody::HwFenceEmitted {
                ring,
                context: 1,
                seqno,
                emitter_tid: 9,
            };
            self.feed(t + 1, emitted);
            seqno
        }

        fn signal(&mut self, t: u64, seqno: u64) {
            let ring = "gfx_0.0.0".into();
            let body = EventBody::HwFenceSignaled {
                ring,
                context: 1,
                seqno,
            };
            self.feed(t, body);
        }

        fn states(&self) -> (usize, usize) {
            let jobs = || self.rec.jobs("gfx_0.0.0");
            let done = jobs().filter(|j| j.done_ns.is_some()).count();
            (jobs().count(), done)
        }
    }

    /// A wedged job and the jobs queued behind it stay, however many; finished jobs age out
    /// beyond the depth, and are counted.
    #[test]
    fn unfinished_jobs_never_age_out() {
        let mut r = Rig::new(8);
        for id in 0..20 {
            r.submit(id * 10, id);
            let hw = r.run(id * 10 + 2, id);
            r.signal(id * 10 + 5, hw);
        }
        r.submit(1000, 100);
        r.run(1002, 100);
        for id in 101..1101 {
            r.submit(1000 + id, id);
        }
        assert_eq!(r.states(), (8 + 1 + 1000, 8));
        assert_eq!(r.stats.ring_jobs_evicted["0000:03:00.0/gfx_0.0.0"], 12);
        assert!(r
            .rec
            .jobs("gfx_0.0.0")
            .any(|j| j.key.sched_job_id == Some(100)));
        assert_eq!(
            r.rec.trimmed_ns(&Some("0000:03:00.0".into()), "gfx_0.0.0"),
            Some(115)
        );
        assert!(r.stats.ring_jobs_refused.is_empty());
    }

    /// A completion finishes the jobs the ring ran before it (their completions were lost), so
    /// they age out; a reset's end finishes every job that ran, the hung one included, but not
    /// the queued ones (the scheduler runs them after the reset).
    #[test]
    fn completions_and_resets_finish_jobs() {
        let mut r = Rig::new(2);
        for id in 0..4 {
            r.submit(id * 10, id);
            r.run(id * 10 + 2, id);
        }
        r.submit(50, 4);
        r.run(52, 4);
        let job = JobKey {
            sched_job_id: Some(3),
            ..JobKey::default()
        };
        r.feed(55, EventBody::JobDone { job });
        // Job 3 completed: jobs 0..=2 finished unseen; job 4 still runs.
        let l = &r.rec.devs[&Some("0000:03:00.0".into())]["gfx_0.0.0"];
        assert_eq!(l.finished.len(), 4);
        assert_eq!(l.running.len(), 1);
        r.submit(60, 5);
        assert_eq!(
            r.states().0,
            4,
            "two finished kept, job 4 running, job 5 queued"
        );
        r.feed(
            70,
            EventBody::ResetBegin {
                job: None,
                pasid: None,
                ring: None,
                reset_source: None,
            },
        );
        r.feed(80, EventBody::ResetEnd { result: 0 });
        let l = &r.rec.devs[&Some("0000:03:00.0".into())]["gfx_0.0.0"];
        assert!(l.running.is_empty());
        assert_eq!(l.unfinished(), 1, "the queued job 5");
    }

    /// Past MAX_UNFINISHED unfinished jobs a ring refuses new ones and counts them.
    #[test]
    fn unfinished_cap_refuses_and_counts() {
        let mut r = Rig::new(4);
        let n = MAX_UNFINISHED as u64 + 10;
        for id in 0..n {
            r.submit(id, id);
        }
        assert_eq!(r.rec.ring_len("gfx_0.0.0"), MAX_UNFINISHED);
        assert_eq!(r.stats.ring_jobs_refused["0000:03:00.0/gfx_0.0.0"], 10);
    }
}
