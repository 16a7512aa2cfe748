//! Process identity table: pid → comm/exe, pasid → pid. Exited processes keep their
//! identity (a culprit often exits before its timeout fires). Both maps are bounded LRUs with
//! O(1) eviction, counted in `Stats`; a new boot starts a new table (pids are reused).
use super::lru::Lru;
use super::Stats;
use crate::incident::ProcessRef;
use crate::model::{Event, EventBody, KmsgKind, Task};

#[derive(Clone, Debug, Default)]
pub struct Proc {
    pub comm: String,
    pub exe: Option<String>,
    pub exited: bool,
}

pub struct Processes {
    by_pid: Lru<u32, Proc>,
    pasid: Lru<u32, u32>,
}

impl Processes {
    pub fn new(max_processes: usize, max_pasids: usize) -> Self {
        Processes {
            by_pid: Lru::new(max_processes),
            pasid: Lru::new(max_pasids),
        }
    }

    pub fn len(&self) -> usize {
        self.by_pid.len()
    }

    pub fn pasids(&self) -> usize {
        self.pasid.len()
    }

    /// Learn identities from any event that names a task or a pasid mapping.
    pub fn observe(&mut self, ev: &Event, stats: &mut Stats) {
        match &ev.body {
            EventBody::Submit { task, .. }
            | EventBody::SchedQueued { task, .. }
            | EventBody::SubmitRejected { task, .. } => self.task(task, stats),
            EventBody::PasidAllocated { pasid, task } => {
                self.task(task, stats);
                if task.pid != 0 {
                    self.map_pasid(*pasid, task.pid, stats);
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
                if let Some(p) = self.touch(*pid, comm, stats) {
                    if exe.is_some() {
                        p.exe.clone_from(exe);
                    }
                }
                for pa in pasids {
                    self.map_pasid(*pa, *pid, stats);
                }
            }
            EventBody::Kmsg(rec) => match &rec.kind {
                KmsgKind::PageFault {
                    fault,
                    task: Some(t),
                } if t.pid != 0 => {
                    self.task(t, stats);
                    if fault.pasid != 0 {
                        self.map_pasid(fault.pasid, t.pid, stats);
                    }
                }
                KmsgKind::RingTimeout { task: Some(t), .. } => self.task(t, stats),
                _ => {}
            },
            _ => {}
        }
    }

    fn map_pasid(&mut self, pasid: u32, pid: u32, stats: &mut Stats) {
        let (slot, evicted) = self.pasid.touch(pasid, || pid);
        *slot = pid;
        if evicted.is_some() {
            stats.pasid_evictions += 1;
        }
    }

    fn task(&mut self, t: &Task, stats: &mut Stats) {
        self.touch(t.pid, &t.comm, stats);
    }

    fn touch(&mut self, pid: u32, comm: &str, stats: &mut Stats) -> Option<&mut Proc> {
        if pid == 0 {
            return None;
        }
        let (p, evicted) = self.by_pid.touch(pid, Proc::default);
        if evicted.is_some() {
            stats.process_evictions += 1;
        }
        if !comm.is_empty() && p.comm != comm {
            p.comm.clear();
            p.comm.push_str(comm);
        }
        Some(p)
    }

    pub fn pid_of_pasid(&self, pasid: u32) -> Option<u32> {
        self.pasid.get(&pasid).copied()
    }

    pub fn get(&self, pid: u32) -> Option<&Proc> {
        self.by_pid.get(&pid)
    }

    /// The comm the table knows for `pid`, or empty.
    pub fn comm(&self, pid: u32) -> String {
        self.get(pid).map(|p| p.comm.clone()).unwrap_or_default()
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
                identity: None,
            },
            None => ProcessRef {
                pid,
                comm: fallback_comm.to_string(),
                exe: None,
                identity: None,
            },
        }
    }
}
