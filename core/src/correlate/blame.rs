//! Whether a page fault is evidence against a ring timeout: rules F1–F4 of
//! docs/attribution.md ("Faults and ring timeouts"). A fault implicates the hung ring only when
//! its job ran on that ring and the ring made no forward progress after it; the flight
//! recorder is the only source of progress evidence, so from kernel logs alone a fault is
//! timing, nothing more.
use super::clock::render_time;
use super::recorder::{Job, Recorder};
use super::roles::{FaultRec, Hub};
use crate::model::{Clock, JobKey};

/// How long after its fence signaled a job's fault may still be delivered (the fault
/// interrupt and the fence interrupt are handled separately).
const FAULT_LAG_NS: u64 = 100_000_000;

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// F3: the faulting job ran on the hung ring and the ring completed nothing after it.
    /// `stopped_at`: the ring's last run job before the hung one is the faulter's and never
    /// completed; `job_done`: the faulting job itself signaled (the CP retired it).
    Implicated { stopped_at: bool, job_done: bool },
    /// F4: no progress evidence (kernel log only, or the probes started after the fault).
    TimingOnly,
    /// F1/F2: the fault cannot have stalled the ring; why, as a clause.
    Unrelated(String),
}

/// What the flight recorder can say about one hung ring of one device (`gpu`; `None`: not
/// known, then every device's ring of that name).
pub struct HungRing<'a> {
    rec: &'a Recorder,
    gpu: &'a Option<String>,
    name: &'a str,
    timeout_t: u64,
    hung: Option<&'a JobKey>,
    window_ns: u64,
    clock: Clock,
    /// The recorder has seen jobs both run and complete (else the run or fence probes are
    /// missing, and "nothing ran" or "nothing completed" would mean nothing).
    completions: bool,
}

impl<'a> HungRing<'a> {
    pub fn new(
        rec: &'a Recorder,
        gpu: &'a Option<String>,
        name: &'a str,
        timeout_t: u64,
        hung: Option<&'a JobKey>,
        window_ns: u64,
        clock: Clock,
    ) -> Self {
        HungRing {
            rec,
            gpu,
            name,
            timeout_t,
            hung,
            window_ns,
            clock,
            completions: rec
                .all_jobs()
                .any(|j| j.run_ns.is_some() && j.done_ns.is_some()),
        }
    }

    /// Probe evidence about this ring at `t`: the recorder was running, sees this ring, and
    /// sees completions.
    fn covers(&self, t: u64) -> bool {
        self.completions
            && self.rec.knows(self.gpu, self.name)
            && self.rec.first_ns().is_some_and(|s| s <= t)
    }

    pub fn judge(&self, f: &FaultRec) -> Verdict {
        let ring = self.name;
        if !f.hub.serves(ring) {
            let hub = if f.hub == Hub::Mm { "mmhub" } else { "gfxhub" };
            return Verdict::Unrelated(format!("it came through {hub}, which {ring} does not use"));
        }
        if !self.covers(f.t_ns) {
            return Verdict::TimingOnly;
        }
        let at_fault = self
            .rec
            .jobs_on(self.gpu, ring)
            .filter(|j| owns(j, f) && self.in_flight(j, f.t_ns))
            .max_by_key(|j| (j.hw_seqno, j.run_ns));
        let Some(job) = at_fault else {
            // Unfinished jobs are never aged out, so the faulter's job finished and aged out:
            // only a kept job that finished after the fault says the ring went on (R1).
            if self
                .rec
                .trimmed_ns(self.gpu, ring)
                .is_some_and(|t| t >= f.t_ns)
            {
                return match self.finished_after(f.t_ns) {
                    Some(p) => Verdict::Unrelated(self.kept_completing(p)),
                    None => Verdict::TimingOnly,
                };
            }
            let elsewhere = self
                .rec
                .all_jobs_on(self.gpu)
                .find(|j| owns(j, f) && self.in_flight(j, f.t_ns));
            return Verdict::Unrelated(match elsewhere {
                Some(j) => format!("its job at the time ran on {}, not {ring}", j.ring),
                None => format!("no job of it was running on {ring} at the time"),
            });
        };
        if let Some(p) = self.progress_after(job) {
            return Verdict::Unrelated(self.kept_completing(p));
        }
        Verdict::Implicated {
            stopped_at: self.stopped_at(f),
            job_done: job.done_ns.is_some(),
        }
    }

    /// Ran before `t` (within the fault window) and had not completed well before it.
    fn in_flight(&self, j: &Job, t: u64) -> bool {
        j.run_ns
            .is_some_and(|r| r <= t && r.saturating_add(self.window_ns) >= t)
            && j.done_ns
                .is_none_or(|d| d.saturating_add(FAULT_LAG_NS) >= t)
    }

    /// The progress clause (rule R1): `p` finished after the fault, before the timeout.
    fn kept_completing(&self, p: &Job) -> String {
        let t = p.done_ns.unwrap_or_default();
        format!(
            "{} kept completing work after it (R1: {} (pid {})'s job signaled at {})",
            self.name,
            p.comm,
            p.pid,
            render_time(self.clock, t)
        )
    }

    /// R1 without the faulting job: a job the ring ran after `t` that completed before the
    /// timeout.
    fn finished_after(&self, t: u64) -> Option<&'a Job> {
        self.rec.jobs_on(self.gpu, self.name).find(|j| {
            j.run_ns.is_some_and(|r| r > t) && j.done_ns.is_some_and(|d| d < self.timeout_t)
        })
    }

    /// R1: a job the ring ran after `faulting` (by hardware seqno, else run order) whose fence
    /// signaled (a completion, never a reset's cancellation) before the timeout: the ring moved
    /// past the fault. Queued jobs never ran, so they are never progress.
    fn progress_after(&self, faulting: &Job) -> Option<&'a Job> {
        self.rec.jobs_on(self.gpu, self.name).find(|j| {
            let later = match (j.hw_seqno, faulting.hw_seqno) {
                (Some(a), Some(b)) => a > b,
                _ => j.run_ns.is_some() && j.run_ns > faulting.run_ns,
            };
            later && j.done_ns.is_some_and(|d| d < self.timeout_t)
        })
    }

    /// The job run on the ring immediately before the hung job belongs to the faulter and
    /// never completed: the ring stopped at the faulter's job.
    fn stopped_at(&self, f: &FaultRec) -> bool {
        let Some(hung) = self
            .hung
            .and_then(|k| self.rec.find_on(self.gpu, Some(self.name), k))
        else {
            return false;
        };
        let Some(hung_run) = hung.run_ns else {
            return false;
        };
        self.rec
            .jobs_on(self.gpu, self.name)
            .filter(|j| j.run_ns.is_some_and(|r| r < hung_run))
            .max_by_key(|j| j.run_ns)
            .is_some_and(|prev| owns(prev, f) && prev.done_ns.is_none())
    }
}

/// Gpu-reset rule G1's exclusion: with probe coverage, a job the faulter ran on the reset
/// device `gpu` after the fault completed before `until` (its GPU work went on, so the fault
/// wedged nothing it used).
pub fn later_work_completed<'a>(
    rec: &'a Recorder,
    gpu: &'a Option<String>,
    f: &FaultRec,
    until: u64,
) -> Option<&'a Job> {
    rec.first_ns().filter(|s| *s <= f.t_ns)?;
    rec.all_jobs_on(gpu).find(|j| {
        owns(j, f) && j.run_ns.is_some_and(|r| r > f.t_ns) && j.done_ns.is_some_and(|d| d <= until)
    })
}

/// The job belongs to the faulting process (by pid, or by the fault's PASID).
fn owns(j: &Job, f: &FaultRec) -> bool {
    (f.pid != 0 && j.pid == f.pid) || (f.pasid.is_some() && j.pasid == f.pasid)
}
