//! Per-ring flight recorder: the last `depth` jobs per ring, joined across the submit,
//! scheduler and hardware-fence events (see docs/attribution.md "Joins").
use std::collections::{BTreeMap, VecDeque};

use rustc_hash::FxHashMap as HashMap;

use super::processes::Processes;
use super::Stats;
use crate::incident::JobSnapshot;
use crate::model::{Event, EventBody, JobKey, Task};

#[derive(Clone, Debug, Default)]
pub struct Job {
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
    fn submitted(ring: &str, task: &Task, key: &JobKey, t: u64) -> Job {
        Job {
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

/// One ring's jobs, oldest first, with indexes so each event costs O(1) (or O(log n)) instead
/// of a scan of the whole recorder: at tens of thousands of jobs per second, a 256-deep linear
/// search per event was most of the agent's CPU.
#[derive(Default)]
struct RingLog {
    jobs: VecDeque<Job>,
    /// Serial number of `jobs[0]`; `jobs[i]` has serial `front + i`. Serials never repeat, so
    /// an index entry pointing at an evicted job is recognisably stale.
    front: u64,
    by_job_id: HashMap<u64, u64>,
    by_fence: HashMap<u64, u64>,
    by_ctx_seq: HashMap<(u64, u64), u64>,
    /// Hardware seqno → serial, for jobs whose hardware fence has not signaled yet.
    unsignaled: BTreeMap<u64, u64>,
    /// Scheduler worker tid → serial of the job it ran last (awaiting its hardware fence).
    last_run: HashMap<u32, u64>,
}

impl RingLog {
    fn get_mut(&mut self, serial: u64) -> Option<&mut Job> {
        let i = serial.checked_sub(self.front)?;
        self.jobs.get_mut(usize::try_from(i).ok()?)
    }

    fn get(&self, serial: u64) -> Option<&Job> {
        let i = serial.checked_sub(self.front)?;
        self.jobs.get(usize::try_from(i).ok()?)
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
    /// would find), even when an older job gains it by a merge; so when the oldest job is
    /// evicted and an entry still points at it, no other job holds that identity.
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
        self.last_run.retain(|_, s| *s != serial);
    }

    /// Appends `job` (evicting the oldest when `depth` are kept); returns its serial.
    fn push(&mut self, job: Job, depth: usize) -> u64 {
        if self.jobs.len() >= depth {
            if let Some(old) = self.jobs.pop_front() {
                let serial = self.front;
                self.front += 1;
                self.unindex(serial, &old);
            }
        }
        let serial = self.front + self.jobs.len() as u64;
        self.index(serial, &job.key);
        self.jobs.push_back(job);
        serial
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
}

pub struct Recorder {
    depth: usize,
    rings: HashMap<String, RingLog>,
    /// Scheduler worker tid → (pasid from the last VmGrabId).
    worker_pasid: HashMap<u32, u32>,
    /// When the first job was recorded: the recorder can speak for the rings only after this.
    first_ns: Option<u64>,
    /// Start of a GPU reset in progress (probe `ResetBegin` until `ResetEnd`): the reset
    /// force-signals every fence in flight, which is a cancellation, not a completion.
    reset_since: Option<u64>,
}

impl Recorder {
    pub fn new(depth: usize) -> Self {
        Recorder {
            depth: depth.max(1),
            rings: HashMap::default(),
            worker_pasid: HashMap::default(),
            first_ns: None,
            reset_since: None,
        }
    }

    /// When the first job was recorded (probe coverage starts here).
    pub fn first_ns(&self) -> Option<u64> {
        self.first_ns
    }

    /// Whether any job on `ring` was ever recorded (the probes see this ring).
    pub fn knows(&self, ring: &str) -> bool {
        self.rings.contains_key(ring)
    }

    /// When `ring`'s kept history starts, if older jobs were evicted (None: complete history).
    pub fn evicted_before(&self, ring: &str) -> Option<u64> {
        let log = self.rings.get(ring).filter(|l| l.front > 0)?;
        let j = log.jobs.front()?;
        j.run_ns.or(j.submit_ns)
    }

    pub fn ring_len(&self, ring: &str) -> usize {
        self.rings.get(ring).map_or(0, |r| r.jobs.len())
    }

    /// Appends a job to its ring; returns its serial.
    fn push_job(&mut self, job: Job, stats: &mut Stats) -> u64 {
        if self.first_ns.is_none() {
            self.first_ns = job.submit_ns.or(job.run_ns);
        }
        // Counters and logs are keyed by ring name: clone it only the first time a ring shows up.
        match stats.ring_jobs_seen.get_mut(job.ring.as_str()) {
            Some(n) => *n += 1,
            None => {
                stats.ring_jobs_seen.insert(job.ring.clone(), 1);
            }
        }
        if !self.rings.contains_key(job.ring.as_str()) {
            self.rings.insert(job.ring.clone(), RingLog::default());
        }
        let Some(log) = self.rings.get_mut(job.ring.as_str()) else {
            return 0;
        };
        let ring_evicts = log.jobs.len() >= self.depth;
        if ring_evicts {
            match stats.ring_jobs_evicted.get_mut(job.ring.as_str()) {
                Some(n) => *n += 1,
                None => {
                    stats.ring_jobs_evicted.insert(job.ring.clone(), 1);
                }
            }
        }
        log.push(job, self.depth)
    }

    /// (ring, serial) of the newest job matching `key`, on `ring` or on any ring.
    fn locate(&self, ring: Option<&str>, key: &JobKey) -> Option<(&str, u64)> {
        match ring {
            Some(r) => {
                let (name, log) = self.rings.get_key_value(r)?;
                log.lookup(key).map(|s| (name.as_str(), s))
            }
            None => self
                .rings
                .iter()
                .find_map(|(name, log)| log.lookup(key).map(|s| (name.as_str(), s))),
        }
    }

    /// The ring log holding the newest job matching `key`, with that job's serial.
    fn locate_mut(&mut self, ring: Option<&str>, key: &JobKey) -> Option<(&mut RingLog, u64)> {
        match ring {
            Some(r) => {
                let log = self.rings.get_mut(r)?;
                let serial = log.lookup(key)?;
                Some((log, serial))
            }
            None => self
                .rings
                .values_mut()
                .find_map(|log| log.lookup(key).map(|s| (log, s))),
        }
    }

    fn find_mut(&mut self, ring: Option<&str>, key: &JobKey) -> Option<&mut Job> {
        let (log, serial) = self.locate_mut(ring, key)?;
        log.get_mut(serial)
    }

    /// Merge `key` into the matching job; false when no job matches.
    fn merge_into(&mut self, ring: Option<&str>, key: &JobKey) -> bool {
        match self.locate_mut(ring, key) {
            Some((log, serial)) => {
                log.merge(serial, key);
                true
            }
            None => false,
        }
    }

    pub fn find(&self, ring: Option<&str>, key: &JobKey) -> Option<&Job> {
        let (name, serial) = self.locate(ring, key)?;
        self.rings.get(name)?.get(serial)
    }

    pub fn jobs(&self, ring: &str) -> impl Iterator<Item = &Job> {
        self.rings.get(ring).into_iter().flat_map(|r| r.jobs.iter())
    }

    pub fn observe(&mut self, ev: &Event, procs: &mut Processes, stats: &mut Stats) {
        let t = ev.t_ns;
        match &ev.body {
            EventBody::Submit {
                task, ring, job, ..
            } => {
                stats.submitted(task.pid);
                if self.merge_into(Some(ring), job) {
                    return;
                }
                self.push_job(Job::submitted(ring, task, job, t), stats);
            }
            EventBody::SchedQueued {
                task, ring, job, ..
            } => {
                // Same thread as the Submit just before: merge keys (sched_fence ↔ sched_job_id).
                if self.merge_into(Some(ring), job) {
                    return;
                }
                let by_thread = self.rings.get(ring.as_str()).and_then(|log| {
                    log.jobs
                        .iter()
                        .enumerate()
                        .rev()
                        .find(|(_, j)| j.tid == task.tid && j.run_ns.is_none())
                        .map(|(i, _)| log.front + i as u64)
                });
                match (by_thread, self.rings.get_mut(ring.as_str())) {
                    (Some(serial), Some(log)) => log.merge(serial, job),
                    _ => {
                        stats.submitted(task.pid);
                        self.push_job(Job::submitted(ring, task, job, t), stats);
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
                for log in self.rings.values_mut() {
                    log.last_run.remove(worker_tid);
                }
                let serial = match self.locate_mut(Some(ring), job) {
                    Some((log, serial)) => {
                        log.merge(serial, job);
                        if let Some(j) = log.get_mut(serial) {
                            j.run_ns = j.run_ns.or(Some(t));
                            j.worker_tid = Some(*worker_tid);
                            if pasid.is_some() {
                                j.pasid = pasid;
                            }
                        }
                        serial
                    }
                    None => {
                        // Submitted before we started (or evicted): keep it, owner from pasid.
                        stats.unmatched_joins += 1;
                        let pid = pasid.and_then(|p| procs.pid_of_pasid(p)).unwrap_or(0);
                        let comm = procs.get(pid).map(|p| p.comm.clone()).unwrap_or_default();
                        let j = Job {
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
                        self.push_job(j, stats)
                    }
                };
                if let Some(log) = self.rings.get_mut(ring.as_str()) {
                    log.last_run.insert(*worker_tid, serial);
                }
            }
            EventBody::HwFenceEmitted {
                ring,
                seqno,
                emitter_tid,
                ..
            } => {
                if let Some(log) = self.rings.get_mut(ring.as_str()) {
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
                let reset_since = self.reset_since;
                if let Some(log) = self.rings.get_mut(ring.as_str()) {
                    // Fences on a ring signal in order: everything up to `seqno` is done.
                    let later = log.unsignaled.split_off(&seqno.saturating_add(1));
                    let done = std::mem::replace(&mut log.unsignaled, later);
                    for serial in done.into_values() {
                        if let Some(j) = log.get_mut(serial) {
                            j.signaled(t, reset_since);
                        }
                    }
                }
            }
            EventBody::JobDone { job } => {
                let reset_since = self.reset_since;
                match self.find_mut(None, job) {
                    Some(j) => j.signaled(t, reset_since),
                    None => stats.unmatched_joins += 1,
                }
            }
            EventBody::ResetBegin { .. } => self.reset_since = Some(t),
            EventBody::JobTimedOut { ring, job, .. } => {
                if let Some(j) = self.find_mut(ring.as_deref(), job) {
                    j.hung = true;
                }
            }
            EventBody::ResetEnd { .. } => {
                self.reset_since = None;
                // Jobs that were run but never completed are cancelled by the reset.
                for log in self.rings.values_mut() {
                    for j in log
                        .jobs
                        .iter_mut()
                        .filter(|j| j.run_ns.is_some() && j.done_ns.is_none() && !j.hung)
                    {
                        j.cancelled = true;
                    }
                }
            }
            _ => {}
        }
    }

    /// Jobs on `ring` (or all rings) overlapping [from, to], with their state.
    pub fn snapshot(
        &self,
        ring: Option<&str>,
        from: u64,
        to: u64,
        _hung: Option<&JobKey>,
        procs: &Processes,
    ) -> Vec<JobSnapshot> {
        let mut out = Vec::new();
        for (name, log) in &self.rings {
            if ring.is_some_and(|r| r != name) {
                continue;
            }
            for j in &log.jobs {
                let start = j.submit_ns.or(j.run_ns).unwrap_or(0);
                let end = j.done_ns.unwrap_or(u64::MAX);
                if end < from || start > to {
                    continue;
                }
                let state = if j.hung {
                    "hung"
                } else if j.done_ns.is_some() {
                    "done"
                } else if j.cancelled {
                    "cancelled"
                } else {
                    "in_flight"
                };
                let comm = if j.comm.is_empty() {
                    procs.get(j.pid).map(|p| p.comm.clone()).unwrap_or_default()
                } else {
                    j.comm.clone()
                };
                out.push(JobSnapshot {
                    job_id: j.key.sched_job_id,
                    ring: name.clone(),
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
                    state: state.to_string(),
                });
            }
        }
        out.sort_by_key(|j| (j.submit_ns.or(j.run_ns), j.ring.clone()));
        out
    }
}

impl Recorder {
    pub fn all_jobs(&self) -> impl Iterator<Item = &Job> {
        self.rings.values().flat_map(|r| r.jobs.iter())
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
                        ..Job::default()
                    };
                    log.push(job, 16);
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
                .enumerate()
                .rev()
                .find(|(_, j)| key_match(&j.key, &key))
                .map(|(i, _)| log.front + i as u64);
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
}
