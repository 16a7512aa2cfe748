//! Process identity table: pid → comm/exe, pasid → pid. Exited processes keep their
//! identity (a culprit often exits before its timeout fires); the table is bounded by LRU.
use rustc_hash::FxHashMap as HashMap;

use super::Stats;
use crate::incident::ProcessRef;
use crate::model::{Event, EventBody, KmsgKind, Task};

#[derive(Clone, Debug, Default)]
pub struct Proc {
    pub comm: String,
    pub exe: Option<String>,
    pub exited: bool,
    last_use: u64,
}

pub struct Processes {
    max: usize,
    tick: u64,
    by_pid: HashMap<u32, Proc>,
    pasid: HashMap<u32, u32>,
}

impl Processes {
    pub fn new(max: usize) -> Self {
        Processes {
            max: max.max(1),
            tick: 0,
            by_pid: HashMap::default(),
            pasid: HashMap::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_pid.len()
    }

    /// Learn identities from any event that names a task or a pasid mapping.
    pub fn observe(&mut self, ev: &Event, stats: &mut Stats) {
        match &ev.body {
            EventBody::Submit { task, .. } | EventBody::SchedQueued { task, .. } => {
                self.task(task, stats)
            }
            EventBody::SubmitRejected { task, .. } => self.task(task, stats),
            EventBody::PasidAllocated { pasid, task } => {
                self.task(task, stats);
                if task.pid != 0 {
                    self.pasid.insert(*pasid, task.pid);
                }
            }
            EventBody::ProcessExit { task } => {
                self.task(task, stats);
                if let Some(p) = self.by_pid.get_mut(&task.pid) {
                    p.exited = true;
                }
            }
            EventBody::ProcessInfo {
                pid,
                comm,
                exe,
                pasids,
                ..
            } => {
                self.touch(*pid, comm, stats);
                if let Some(p) = self.by_pid.get_mut(pid) {
                    if exe.is_some() {
                        p.exe = exe.clone();
                    }
                }
                for pa in pasids {
                    self.pasid.insert(*pa, *pid);
                }
            }
            EventBody::Kmsg(rec) => match &rec.kind {
                KmsgKind::PageFault {
                    fault,
                    task: Some(t),
                } if t.pid != 0 => {
                    self.task(t, stats);
                    if fault.pasid != 0 {
                        self.pasid.insert(fault.pasid, t.pid);
                    }
                }
                KmsgKind::RingTimeout { task: Some(t), .. } => self.task(t, stats),
                _ => {}
            },
            _ => {}
        }
        // Bound the pasid map too: drop mappings to pids no longer known.
        if self.pasid.len() > self.max * 4 {
            let by_pid = &self.by_pid;
            self.pasid.retain(|_, pid| by_pid.contains_key(pid));
        }
    }

    fn task(&mut self, t: &Task, stats: &mut Stats) {
        self.touch(t.pid, &t.comm, stats);
    }

    fn touch(&mut self, pid: u32, comm: &str, stats: &mut Stats) {
        if pid == 0 {
            return;
        }
        self.tick += 1;
        let tick = self.tick;
        if !self.by_pid.contains_key(&pid) && self.by_pid.len() >= self.max {
            if let Some(old) = self
                .by_pid
                .iter()
                .min_by_key(|(_, p)| p.last_use)
                .map(|(k, _)| *k)
            {
                self.by_pid.remove(&old);
                stats.process_evictions += 1;
            }
        }
        let p = self.by_pid.entry(pid).or_default();
        if !comm.is_empty() && p.comm != comm {
            p.comm.clear();
            p.comm.push_str(comm);
        }
        p.last_use = tick;
    }

    pub fn pid_of_pasid(&self, pasid: u32) -> Option<u32> {
        self.pasid.get(&pasid).copied()
    }

    pub fn get(&self, pid: u32) -> Option<&Proc> {
        self.by_pid.get(&pid)
    }

    /// A reference for reports; `fallback_comm` when the table no longer knows the pid.
    pub fn reference(&self, pid: u32, fallback_comm: &str) -> ProcessRef {
        match self.by_pid.get(&pid) {
            Some(p) => ProcessRef {
                pid,
                comm: if p.comm.is_empty() {
                    fallback_comm.to_string()
                } else {
                    p.comm.clone()
                },
                exe: p.exe.clone(),
            },
            None => ProcessRef {
                pid,
                comm: fallback_comm.to_string(),
                exe: None,
            },
        }
    }
}
