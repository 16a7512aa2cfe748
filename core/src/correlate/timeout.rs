//! The timeout role of an open incident: every ring timeout it holds, and which one the
//! incident is about. A wedged GPU often times out several rings within a second (gfx naming
//! the game, then sdma0 with pid 0: nixpkgs#176915); the incident's ring, hung job and kernel
//! blame all come from one timeout — the blamed one — and the others are listed beside it.
use super::processes::Processes;
use super::recorder::Recorder;
use super::roles::At;
use crate::model::{JobKey, Task};

/// Timeouts kept per incident; further ones are counted (every ring of a GPU timing out in a
/// storm is still a handful).
pub const MAX_TIMEOUTS: usize = 16;

/// The timed-out job as the probe saw it.
#[derive(Clone, Debug)]
pub struct HungJob {
    pub pid: u32,
    pub comm: String,
    pub key: JobKey,
}

/// One ring timeout, merged from the probe (`JobTimedOut`) and the kernel log
/// (`ring X timeout` + `Process` line) when both report it.
#[derive(Clone, Debug)]
pub struct RingTimeout {
    /// None when only a probe without a ring name reported it.
    pub ring: Option<String>,
    pub at: At,
    /// The kernel's "Process X pid N" after the timeout line (never pid 0).
    pub kernel_named: Option<Task>,
    pub signaled: Option<u64>,
    pub emitted: Option<u64>,
    pub hung_job: Option<HungJob>,
    /// `ring X timeout, but soft recovered`.
    pub soft: bool,
    probe: bool,
    log: bool,
}

impl RingTimeout {
    /// The hung job's owner: the probe's timed-out job, else the kernel's "Process" line.
    pub fn owner(&self) -> Option<(u32, String)> {
        self.hung_job
            .as_ref()
            .map(|h| (h.pid, h.comm.clone()))
            .or_else(|| self.kernel_named.as_ref().map(|t| (t.pid, t.comm.clone())))
    }

    /// The owner is known from the kernel's "Process" line alone: no probe saw the job.
    pub fn kernel_word_only(&self) -> bool {
        self.hung_job.is_none() && self.kernel_named.is_some()
    }
}

#[derive(Clone, Debug, Default)]
pub struct Timeouts {
    /// In order of arrival.
    pub list: Vec<RingTimeout>,
    /// Timeouts beyond MAX_TIMEOUTS, counted not kept.
    pub omitted: u64,
    /// Which source families reported a timeout (probe/kmsg de-duplication).
    probe_seen: bool,
    log_seen: bool,
}

/// Who owns the job a probe saw time out on device `gpu`'s `ring`: the flight recorder's job
/// on that device (job ids repeat per scheduler, so never another GPU's), else the process
/// of the job's PASID.
pub fn probe_owner(
    rec: &Recorder,
    procs: &Processes,
    gpu: &Option<String>,
    ring: Option<&str>,
    job: &JobKey,
    pasid: Option<u32>,
) -> Option<(u32, String)> {
    rec.find_on(gpu, ring, job)
        .filter(|j| j.pid != 0)
        .map(|j| (j.pid, j.comm.clone()))
        .or_else(|| {
            let pid = pasid.and_then(|p| procs.pid_of_pasid(p))?;
            Some((pid, procs.comm(pid)))
        })
}

impl Timeouts {
    pub fn seen(&self) -> bool {
        !self.list.is_empty()
    }

    /// When the first timeout happened (the incident's reset cap counts from it).
    pub fn first_t(&self) -> Option<u64> {
        self.list.iter().map(|r| r.at.t).min()
    }

    pub fn reported_by(&self, probe: bool) -> bool {
        if probe {
            self.probe_seen
        } else {
            self.log_seen
        }
    }

    /// The timeout the incident is about: the earliest one whose job has a known owner (the
    /// first named job is where the GPU stopped; rings timing out after it with pid 0 are
    /// kernel work stuck behind the wedge), else the earliest.
    pub fn blamed(&self) -> Option<&RingTimeout> {
        let earliest = |a: &&RingTimeout, b: &&RingTimeout| a.at.cmp(&b.at);
        self.list
            .iter()
            .filter(|r| r.owner().is_some())
            .min_by(earliest)
            .or_else(|| self.list.iter().min_by(earliest))
    }

    /// Every timeout other than the blamed one, in order of arrival.
    pub fn others(&self) -> impl Iterator<Item = &RingTimeout> {
        let blamed = self.blamed().map(|b| b.at);
        self.list.iter().filter(move |r| Some(r.at) != blamed)
    }

    /// The record this report of a timeout on `ring` belongs to: the same ring's timeout not
    /// yet reported by this source family (the probe and the log describe one hang), or the
    /// same job timing out again (`again`: same job key, or same signaled/emitted seqs); else
    /// a new one. None past MAX_TIMEOUTS (counted).
    fn slot(
        &mut self,
        at: At,
        ring: Option<&str>,
        probe: bool,
        again: impl Fn(&RingTimeout) -> bool,
    ) -> Option<&mut RingTimeout> {
        if probe {
            self.probe_seen = true;
        } else {
            self.log_seen = true;
        }
        let same = |r: &RingTimeout| {
            let reported = if probe { r.probe } else { r.log };
            let ring_matches = ring.is_none() || r.ring.is_none() || r.ring.as_deref() == ring;
            ring_matches && (!reported || again(r))
        };
        let i = match self.list.iter().position(same) {
            Some(i) => i,
            None if self.list.len() >= MAX_TIMEOUTS => {
                self.omitted += 1;
                return None;
            }
            None => {
                self.list.push(RingTimeout {
                    ring: None,
                    at,
                    kernel_named: None,
                    signaled: None,
                    emitted: None,
                    hung_job: None,
                    soft: false,
                    probe: false,
                    log: false,
                });
                self.list.len() - 1
            }
        };
        let r = &mut self.list[i];
        r.at = r.at.min(at);
        if r.ring.is_none() {
            r.ring = ring.map(str::to_string);
        }
        if probe {
            r.probe = true;
        } else {
            r.log = true;
        }
        Some(r)
    }

    /// A probe's timed-out job on `ring`, owned by `owner` ([`probe_owner`]).
    pub fn on_probe(
        &mut self,
        at: At,
        ring: Option<&String>,
        job: &JobKey,
        owner: Option<(u32, String)>,
    ) -> String {
        let r = ring.map_or("?", String::as_str);
        let known = *job != JobKey::default();
        let again = |t: &RingTimeout| known && t.hung_job.as_ref().is_some_and(|h| h.key == *job);
        let slot = self.slot(at, ring.map(String::as_str), true, again);
        match owner {
            Some((pid, comm)) => {
                let what = format!("job of {comm} (pid {pid}) on {r} timed out");
                if let Some(s) = slot {
                    s.hung_job = Some(HungJob {
                        pid,
                        comm,
                        key: *job,
                    });
                }
                what
            }
            None => format!("a job on {r} timed out (owner not recorded)"),
        }
    }

    pub fn on_log(
        &mut self,
        at: At,
        ring: &str,
        seqs: (Option<u64>, Option<u64>),
        task: Option<&Task>,
    ) -> String {
        let named = task.filter(|t| t.pid != 0);
        let again = |t: &RingTimeout| {
            seqs.0.is_some() && seqs.1.is_some() && (t.signaled, t.emitted) == seqs
        };
        if let Some(s) = self.slot(at, Some(ring), false, again) {
            s.signaled = seqs.0.or(s.signaled);
            s.emitted = seqs.1.or(s.emitted);
            if named.is_some() {
                s.kernel_named = named.cloned();
            }
        }
        match named {
            Some(k) => format!(
                "ring {ring} timed out; the kernel names {} (pid {})",
                k.comm, k.pid
            ),
            None => format!("ring {ring} timed out"),
        }
    }

    pub fn on_soft(&mut self, at: At, ring: &str) -> String {
        if let Some(s) = self.slot(at, Some(ring), false, |_| false) {
            s.soft = true;
        }
        format!("ring {ring} timed out but soft recovered")
    }
}
