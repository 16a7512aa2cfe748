//! Per-ring flight recorder: the last `depth` jobs per ring, joined across the submit,
//! scheduler and hardware-fence events (see docs/attribution.md "Joins").
use std::collections::{HashMap, VecDeque};

use super::processes::Processes;
use super::Stats;
use crate::incident::JobSnapshot;
use crate::model::{Event, EventBody, JobKey};

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

fn key_match(a: &JobKey, b: &JobKey) -> bool {
    (a.sched_job_id.is_some() && a.sched_job_id == b.sched_job_id)
        || (a.sched_fence.is_some() && a.sched_fence == b.sched_fence)
        || (a.context.is_some()
            && a.seqno.is_some()
            && a.context == b.context
            && a.seqno == b.seqno)
}

fn merge_key(into: &mut JobKey, from: &JobKey) {
    into.context = into.context.or(from.context);
    into.seqno = into.seqno.or(from.seqno);
    into.sched_job_id = into.sched_job_id.or(from.sched_job_id);
    into.sched_fence = into.sched_fence.or(from.sched_fence);
}

pub struct Recorder {
    depth: usize,
    rings: HashMap<String, VecDeque<Job>>,
    /// Scheduler worker tid → (pasid from the last VmGrabId).
    worker_pasid: HashMap<u32, u32>,
    /// Scheduler worker tid → ring of the job it ran last (awaiting its hardware fence).
    worker_ran: HashMap<u32, String>,
}

impl Recorder {
    pub fn new(depth: usize) -> Self {
        Recorder {
            depth: depth.max(1),
            rings: HashMap::new(),
            worker_pasid: HashMap::new(),
            worker_ran: HashMap::new(),
        }
    }

    pub fn ring_len(&self, ring: &str) -> usize {
        self.rings.get(ring).map_or(0, |r| r.len())
    }

    fn push_job(&mut self, job: Job, stats: &mut Stats) {
        *stats.ring_jobs_seen.entry(job.ring.clone()).or_default() += 1;
        let q = self.rings.entry(job.ring.clone()).or_default();
        if q.len() >= self.depth {
            q.pop_front();
            *stats.ring_jobs_evicted.entry(job.ring.clone()).or_default() += 1;
        }
        q.push_back(job);
    }

    fn find_mut(&mut self, ring: Option<&str>, key: &JobKey) -> Option<&mut Job> {
        for (name, q) in self.rings.iter_mut() {
            if ring.is_some_and(|r| r != name) {
                continue;
            }
            if let Some(j) = q.iter_mut().rev().find(|j| key_match(&j.key, key)) {
                return Some(j);
            }
        }
        None
    }

    pub fn find(&self, ring: Option<&str>, key: &JobKey) -> Option<&Job> {
        self.rings
            .iter()
            .filter(|(name, _)| ring.is_none_or(|r| r == name.as_str()))
            .find_map(|(_, q)| q.iter().rev().find(|j| key_match(&j.key, key)))
    }

    pub fn jobs(&self, ring: &str) -> impl Iterator<Item = &Job> {
        self.rings.get(ring).into_iter().flat_map(|q| q.iter())
    }

    pub fn observe(&mut self, ev: &Event, procs: &mut Processes, stats: &mut Stats) {
        let t = ev.t_ns;
        match &ev.body {
            EventBody::Submit {
                task, ring, job, ..
            } => {
                *stats.submissions.entry(task.pid).or_default() += 1;
                if let Some(j) = self.find_mut(Some(ring), job) {
                    merge_key(&mut j.key, job);
                    return;
                }
                let j = Job {
                    ring: ring.clone(),
                    pid: task.pid,
                    tid: task.tid,
                    comm: task.comm.clone(),
                    key: *job,
                    submit_ns: Some(t),
                    ..Job::default()
                };
                self.push_job(j, stats);
            }
            EventBody::SchedQueued {
                task, ring, job, ..
            } => {
                // Same thread as the Submit just before: merge keys (sched_fence ↔ sched_job_id).
                let matched = self.find_mut(Some(ring), job).is_some();
                if matched {
                    if let Some(j) = self.find_mut(Some(ring), job) {
                        merge_key(&mut j.key, job);
                    }
                } else if let Some(j) = self.rings.get_mut(ring).and_then(|q| {
                    q.iter_mut()
                        .rev()
                        .find(|j| j.tid == task.tid && j.run_ns.is_none())
                }) {
                    merge_key(&mut j.key, job);
                } else {
                    *stats.submissions.entry(task.pid).or_default() += 1;
                    let j = Job {
                        ring: ring.clone(),
                        pid: task.pid,
                        tid: task.tid,
                        comm: task.comm.clone(),
                        key: *job,
                        submit_ns: Some(t),
                        ..Job::default()
                    };
                    self.push_job(j, stats);
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
                self.worker_ran.insert(*worker_tid, ring.clone());
                match self.find_mut(Some(ring), job) {
                    Some(j) => {
                        merge_key(&mut j.key, job);
                        j.run_ns = j.run_ns.or(Some(t));
                        j.worker_tid = Some(*worker_tid);
                        if pasid.is_some() {
                            j.pasid = pasid;
                        }
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
                        self.push_job(j, stats);
                    }
                }
            }
            EventBody::HwFenceEmitted {
                ring,
                seqno,
                emitter_tid,
                ..
            } => {
                if self.worker_ran.get(emitter_tid).is_some_and(|r| r == ring) {
                    self.worker_ran.remove(emitter_tid);
                    if let Some(j) = self.rings.get_mut(ring).and_then(|q| {
                        q.iter_mut()
                            .rev()
                            .find(|j| j.worker_tid == Some(*emitter_tid) && j.hw_seqno.is_none())
                    }) {
                        j.hw_seqno = Some(*seqno);
                        return;
                    }
                }
                stats.unmatched_joins += 1;
            }
            EventBody::HwFenceSignaled { ring, seqno, .. } => {
                if let Some(q) = self.rings.get_mut(ring) {
                    for j in q
                        .iter_mut()
                        .filter(|j| j.hw_seqno.is_some_and(|s| s <= *seqno) && j.done_ns.is_none())
                    {
                        j.done_ns = Some(t);
                    }
                }
            }
            EventBody::JobDone { job } => match self.find_mut(None, job) {
                Some(j) => {
                    if j.done_ns.is_none() {
                        j.done_ns = Some(t);
                    }
                }
                None => stats.unmatched_joins += 1,
            },
            EventBody::JobTimedOut { ring, job, .. } => {
                if let Some(j) = self.find_mut(ring.as_deref(), job) {
                    j.hung = true;
                }
            }
            EventBody::ResetEnd { .. } => {
                // Jobs that were run but never completed are cancelled by the reset.
                for q in self.rings.values_mut() {
                    for j in q
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
        for (name, q) in &self.rings {
            if ring.is_some_and(|r| r != name) {
                continue;
            }
            for j in q {
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
        self.rings.values().flat_map(|q| q.iter())
    }
}
