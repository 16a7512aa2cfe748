//! The compute notes an open incident holds: KFD/MES lines, SMI events and hung user
//! queues, each with its evidence sentence. `compute.rs` resolves them into candidates.
use crate::model::{Event, EventBody, KfdLogKind, SmiKind};

/// Notes kept per incident; further ones are counted (their evidence is capped anyway).
pub const MAX_NOTES: usize = 256;

/// What one compute note says.
#[derive(Clone, Debug)]
pub enum NoteKind {
    Log(KfdLogKind),
    Smi(SmiKind),
    UserqHung { doorbell: u64, client_id: u64 },
}

#[derive(Clone, Debug)]
pub struct Note {
    pub t_ns: u64,
    pub what: NoteKind,
}

/// The compute notes an incident holds (joined while it was open, or adopted at its opening
/// from the few seconds before: `queues::NOTE_LOOKBACK_NS`).
#[derive(Clone, Debug, Default)]
pub struct ComputeNotes {
    pub list: Vec<Note>,
    pub omitted: u64,
    /// The reset cause of the first SMI reset event that carried one (`job hang on
    /// ring:gfx_0.0.0`, `MES hang`, ...), at most MAX_CAUSE characters.
    pub reset_cause: Option<String>,
}

/// The kernel's causes are at most 32 bytes plus a ring name; anything longer is cut.
const MAX_CAUSE: usize = 64;

impl ComputeNotes {
    /// Records a compute note; the evidence sentence.
    pub fn on_event(&mut self, ev: &Event) -> Option<String> {
        let what = match &ev.body {
            EventBody::KfdLog(r) => NoteKind::Log(r.kind.clone()),
            EventBody::KfdSmi(s) => NoteKind::Smi(s.kind.clone()),
            EventBody::UserqState {
                doorbell,
                client_id,
                ..
            } => NoteKind::UserqHung {
                doorbell: *doorbell,
                client_id: *client_id,
            },
            _ => return None,
        };
        let sentence = summary(&what);
        if let NoteKind::Smi(
            SmiKind::GpuPreReset { cause: Some(c), .. }
            | SmiKind::GpuPostReset { cause: Some(c), .. },
        ) = &what
        {
            if self.reset_cause.is_none() {
                self.reset_cause = Some(c.chars().take(MAX_CAUSE).collect());
            }
        }
        if self.list.len() < MAX_NOTES {
            self.list.push(Note {
                t_ns: ev.t_ns,
                what,
            });
        } else {
            self.omitted += 1;
        }
        Some(sentence)
    }

    /// A line saying the hardware scheduler or MES could not preempt or remove a queue.
    pub(super) fn hang_evidence(&self) -> bool {
        self.list.iter().any(|n| {
            matches!(
                n.what,
                NoteKind::Log(
                    KfdLogKind::HwsHang
                        | KfdLogKind::PreemptTimeout
                        | KfdLogKind::MesRemoveFailed { .. }
                )
            )
        })
    }
}

/// The evidence sentence of a note.
fn summary(what: &NoteKind) -> String {
    match what {
        NoteKind::Log(k) => format!("KFD/MES: {}", log_summary(k)),
        NoteKind::Smi(k) => format!("KFD SMI event: {}", smi_summary(k)),
        NoteKind::UserqHung {
            doorbell,
            client_id,
        } => format!("user queue (doorbell {doorbell}, client {client_id}) marked hung"),
    }
}

fn log_summary(k: &KfdLogKind) -> String {
    match k {
        KfdLogKind::HwsHang => {
            "the hardware scheduler did not preempt the queues (HWS hang)".into()
        }
        KfdLogKind::PreemptTimeout => "a user queue did not respond to preemption".into(),
        KfdLogKind::QueuePreemptFailed { doorbell } => {
            format!("queue with doorbell 0x{doorbell:x} failed to preempt")
        }
        KfdLogKind::MesRemoveFailed { doorbell } => {
            format!("MES failed to remove the queue with doorbell 0x{doorbell:x}")
        }
        KfdLogKind::QueuesReset { task } => {
            format!("queues of {} (pid {}) were reset", task.comm, task.pid)
        }
        KfdLogKind::DestroyFailed {
            pasid,
            queue_id,
            ret,
        } => format!("destroying queue {queue_id} of pasid 0x{pasid:x} failed ({ret})"),
        KfdLogKind::CreateFailed {
            pasid,
            pid,
            queue_type,
            ret,
        } => {
            let whose = match (pid, pasid) {
                (Some(p), _) => format!("pid {p}"),
                (None, Some(p)) => format!("pasid 0x{p:x}"),
                (None, None) => "a process".into(),
            };
            format!("creating a queue (type {queue_type}) for {whose} failed ({ret})")
        }
        KfdLogKind::EvictFailed { what, pasid, pid } => match (pid, pasid) {
            (Some(p), _) => format!("{what} pid {p}"),
            (None, Some(p)) => format!("{what} pasid 0x{p:x}"),
            (None, None) => what.clone(),
        },
        KfdLogKind::UnhandledException { pid, .. } => {
            format!("unhandled GPU exception in pid {pid}")
        }
        KfdLogKind::QueueReset { text } => text.clone(),
    }
}

fn smi_summary(k: &SmiKind) -> String {
    let cause = |c: &Option<String>| c.as_ref().map(|c| format!(" ({c})")).unwrap_or_default();
    match k {
        SmiKind::VmFault { pid, comm } => format!("VM fault in {comm} (pid {pid})"),
        SmiKind::GpuPreReset { seq, cause: c } => format!("GPU reset {seq} starting{}", cause(c)),
        SmiKind::GpuPostReset { seq, cause: c } => format!("GPU reset {seq} done{}", cause(c)),
        SmiKind::QueueEviction { pid, trigger } => {
            format!("queues of pid {pid} evicted (trigger {trigger})")
        }
        SmiKind::QueueRestore { pid } => format!("queues of pid {pid} restored"),
        SmiKind::ProcessStart { pid, comm } => format!("KFD process {comm} (pid {pid}) started"),
        SmiKind::ProcessEnd { pid, comm } => format!("KFD process {comm} (pid {pid}) ended"),
        SmiKind::Other { event } => format!("event {event}"),
    }
}
