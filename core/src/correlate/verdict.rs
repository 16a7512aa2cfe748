//! What the rules share: the context they read ([`Ctx`]) and the verdict one rule gives
//! ([`Blame`]), which `compute.rs` refines. Both rule modules import it; it imports neither.
use super::processes::Processes;
use super::queues::Queues;
use super::recorder::Recorder;
use super::Config;
use crate::incident::{Confidence, ProcessRef, Victim};

/// What attribution reads besides the incident itself.
pub struct Ctx<'a> {
    pub procs: &'a Processes,
    pub rec: &'a Recorder,
    pub queues: &'a Queues,
    pub cfg: &'a Config,
}

/// The verdict of one rule (`compute.rs` refines it).
pub struct Blame {
    pub culprit: Option<ProcessRef>,
    pub confidence: Confidence,
    pub victims: Vec<Victim>,
    pub reasoning: String,
}

impl Blame {
    pub(super) fn new(reasoning: String) -> Self {
        Blame {
            culprit: None,
            confidence: Confidence::Unknown,
            victims: Vec::new(),
            reasoning,
        }
    }

    pub(super) fn blame(mut self, who: ProcessRef, confidence: Confidence) -> Self {
        self.culprit = Some(who);
        self.confidence = confidence;
        self
    }

    /// Adds a victim: never the culprit, never pid 0, once per pid.
    pub fn victim(&mut self, pid: u32, comm: String, reason: String) {
        let culprit = self.culprit.as_ref().map(|c| c.pid);
        if pid != 0 && Some(pid) != culprit && !self.victims.iter().any(|v| v.pid == pid) {
            self.victims.push(Victim {
                pid,
                comm,
                reason,
                identity: None,
            });
        }
    }
}
