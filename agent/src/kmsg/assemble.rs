//! Continuation folding: a page-fault or ring-timeout header absorbs the following Process /
//! address / status lines of the same device; it is emitted when the next amdgpu record line
//! arrives or at flush. Lines without a PCI address (`DRM_ERROR` form) belong to the most recent
//! device seen in the stream.
use super::lines::{classify, Cont, Line};
use crate::model::{Clock, Event, EventBody, KmsgKind, KmsgRecord, Source};

/// A header still collecting continuation lines.
struct Pending {
    event: Event,
}

/// Counters the analyzer reports.
#[derive(Clone, Debug, Default)]
pub struct AssembleStats {
    /// amdgpu lines recognised (records and continuations).
    pub recognised: u64,
    /// Continuation lines with no header to attach to (log starts mid-record, or interleaving).
    pub orphan_continuations: u64,
}

pub struct KmsgAssembler {
    source: Source,
    /// At most one pending record per device, in arrival order.
    pending: Vec<Pending>,
    last_pci: Option<String>,
    pub stats: AssembleStats,
}

impl KmsgAssembler {
    pub fn new(source: Source) -> Self {
        KmsgAssembler {
            source,
            pending: Vec::new(),
            last_pci: None,
            stats: AssembleStats::default(),
        }
    }

    /// Feed one message line (without timestamp prefix) stamped `t_ns` on `clock`.
    pub fn push_line(&mut self, t_ns: u64, clock: Clock, line: &str) -> Vec<Event> {
        // KFD / MES queue lines (crate::kfd::lines) ride along as their own events.
        let kfd =
            crate::kfd::lines::event(t_ns, clock, self.source, self.last_pci.as_deref(), line);
        let mut out = self.push_amdgpu_line(t_ns, clock, line);
        out.extend(kfd);
        out
    }

    fn push_amdgpu_line(&mut self, t_ns: u64, clock: Clock, line: &str) -> Vec<Event> {
        let Some(c) = classify(line) else {
            return Vec::new();
        };
        self.stats.recognised += 1;
        if let Some(pci) = c.pci {
            if self.last_pci.as_deref() != Some(pci) {
                self.last_pci = Some(pci.to_string());
            }
        }
        let gpu = self.last_pci.clone();
        let text = line.trim_end_matches(['\n', '\r']).to_string();
        match c.line {
            Line::Cont(cont) => {
                match self.pending.iter_mut().rev().find(|p| p.event.gpu == gpu) {
                    Some(p) => {
                        if !fold(&mut p.event, cont, text) {
                            self.stats.orphan_continuations += 1;
                        }
                    }
                    None => self.stats.orphan_continuations += 1,
                }
                Vec::new()
            }
            Line::Record(kind) => {
                let mut out = self.flush();
                let collects = matches!(
                    kind,
                    KmsgKind::PageFault { .. } | KmsgKind::RingTimeout { .. }
                );
                let event = Event {
                    t_ns,
                    clock,
                    source: self.source,
                    gpu,
                    body: EventBody::Kmsg(KmsgRecord {
                        kind,
                        lines: vec![text],
                    }),
                };
                if collects {
                    self.pending.push(Pending { event });
                } else {
                    out.push(event);
                }
                out
            }
        }
    }

    /// Emit any record still waiting for continuation lines.
    pub fn flush(&mut self) -> Vec<Event> {
        self.pending.drain(..).map(|p| p.event).collect()
    }

    /// Whether a record is waiting for continuation lines (live mode flushes it after a quiet period).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// Fold one continuation into a pending record; false when it does not fit (e.g. an address line
/// after a ring timeout, or a second Process line).
fn fold(event: &mut Event, cont: Cont, text: String) -> bool {
    let EventBody::Kmsg(rec) = &mut event.body else {
        return false;
    };
    let ok = match (&mut rec.kind, cont) {
        (KmsgKind::PageFault { task, .. }, Cont::Task(t)) if task.is_none() => {
            *task = Some(t);
            true
        }
        (KmsgKind::RingTimeout { task, .. }, Cont::Task(t)) if task.is_none() => {
            *task = Some(t);
            true
        }
        (KmsgKind::PageFault { fault, .. }, Cont::Address { address, client }) => {
            fault.address = address.or(fault.address);
            if client.is_some() {
                fault.client = client;
            }
            true
        }
        (KmsgKind::PageFault { fault, .. }, Cont::Status(s)) => {
            fault.status = s;
            true
        }
        (KmsgKind::PageFault { fault, .. }, Cont::Client(c)) => {
            fault.client = Some(c);
            true
        }
        (KmsgKind::PageFault { fault, .. }, Cont::StatusField(k, v)) => {
            if k == "RW" {
                fault.write = parse_num(&v).map(|n| n != 0);
            }
            fault.status_fields.push((k, v));
            true
        }
        _ => false,
    };
    if ok {
        rec.lines.push(text);
    }
    ok
}

fn parse_num(v: &str) -> Option<u64> {
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmsg::input::split_stamp;
    use crate::model::{IllegalKind, Task};

    fn run(log: &str) -> Vec<Event> {
        let mut a = KmsgAssembler::new(Source::Log);
        let mut out = Vec::new();
        for l in log.lines() {
            let (stamp, msg) = split_stamp(l);
            let (t, c) = stamp.unwrap_or((0, Clock::Monotonic));
            out.extend(a.push_line(t, c, msg));
        }
        out.extend(a.flush());
        out
    }
    fn kinds(ev: &[Event]) -> Vec<KmsgKind> {
        ev.iter()
            .map(|e| match &e.body {
                EventBody::Kmsg(r) => r.kind.clone(),
                _ => panic!(),
            })
            .collect()
    }
    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../testdata/dmesg/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn v710_zed_fault_then_timeout() {
        let ev = run(&fixture("v710-zed-fault-then-timeout.log"));
        let k = kinds(&ev);
        assert_eq!(k.len(), 7, "{k:#?}");
        let zed = Task {
            pid: 7587,
            tid: 7587,
            comm: "zed".into(),
            thread_comm: None,
        };
        for (i, addr) in [(0, 0x0000_8001_0036_1000u64), (1, 0), (2, 0x1000)] {
            let KmsgKind::PageFault { fault, task } = &k[i] else {
                panic!("{:?}", k[i])
            };
            assert_eq!(
                (fault.pasid, fault.vmid, fault.ring_id, fault.address),
                (32819, 7, Some(40), Some(addr))
            );
            assert_eq!(fault.client.as_deref(), Some("10"));
            assert_eq!(task.as_ref(), Some(&zed));
            let EventBody::Kmsg(r) = &ev[i].body else {
                panic!()
            };
            assert_eq!(r.lines.len(), 3);
        }
        assert_eq!(ev[0].t_ns, 135_794_048_000);
        assert_eq!(
            k[3],
            KmsgKind::RingTimeout {
                ring: "gfx_0.0.0".into(),
                signaled: Some(571734509),
                emitted: Some(571734511),
                task: Some(Task {
                    pid: 6518,
                    tid: 6518,
                    comm: "Xwayland".into(),
                    thread_comm: None
                })
            }
        );
        assert_eq!(k[4], KmsgKind::ResetBegin { source: Some(1) });
        assert_eq!(
            k[5],
            KmsgKind::ResetResult {
                ok: true,
                counter: Some(1),
                error: None
            }
        );
        assert_eq!(k[6], KmsgKind::ParserInitFailed { errno: -125 });
        assert!(ev.iter().all(|e| e.gpu.as_deref() == Some("0002:00:00.0")));
    }

    #[test]
    fn rx7900xtx_mes_mode1() {
        let ev = run(&fixture("rx7900xtx-mes-mode1-reset.log"));
        let k = kinds(&ev);
        let KmsgKind::PageFault { fault, task } = &k[0] else {
            panic!()
        };
        assert_eq!(task.as_ref().map(|t| t.pid), Some(0));
        assert_eq!(
            (
                fault.pasid,
                fault.ring_id,
                fault.address,
                fault.status,
                fault.write
            ),
            (0, Some(169), Some(0), Some(0), Some(false))
        );
        assert_eq!(fault.client.as_deref(), Some("CB/DB (0x0)"));
        let names: Vec<&str> = fault
            .status_fields
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "MORE_FAULTS",
                "WALKER_ERROR",
                "PERMISSION_FAULTS",
                "MAPPING_ERROR",
                "RW"
            ]
        );
        let EventBody::Kmsg(r) = &ev[0].body else {
            panic!()
        };
        assert_eq!(r.lines.len(), 9);
        let step = |s: &str| KmsgKind::ResetStep { what: s.into() };
        assert_eq!(
            k[1..].to_vec(),
            vec![
                step("soft reset failed, will fallback to full reset!"),
                KmsgKind::MesFailure {
                    msg: Some("3".into())
                },
                KmsgKind::MesFailure { msg: None },
                KmsgKind::OtherError {
                    text: "failed to halt cp gfx".into()
                },
                step("MODE1 reset"),
                step("GPU mode1 reset"),
                step("GPU smu mode1 reset"),
                step("GPU reset succeeded, trying to resume"),
                KmsgKind::ResetResult {
                    ok: true,
                    counter: Some(2),
                    error: None
                },
                KmsgKind::ParserInitFailed { errno: -125 },
            ]
        );
        // DRM_ERROR lines are attributed to the most recent device.
        assert!(ev.iter().all(|e| e.gpu.as_deref() == Some("0000:2f:00.0")));
    }

    #[test]
    fn v710_illegal_opcode() {
        let ev = run(&fixture("v710-illegal-opcode.log"));
        let k = kinds(&ev);
        assert_eq!(k.len(), 5, "{k:#?}");
        assert_eq!(
            k[0],
            KmsgKind::IllegalCommand {
                what: IllegalKind::Opcode
            }
        );
        assert_eq!(
            k[1],
            KmsgKind::IllegalCommand {
                what: IllegalKind::RegisterAccess
            }
        );
        // No device seen yet: the first DRM_ERROR lines have no GPU.
        assert_eq!(ev[0].gpu, None);
        let KmsgKind::RingTimeout { task, signaled, .. } = &k[2] else {
            panic!()
        };
        assert_eq!(
            (task.as_ref().map(|t| t.pid), *signaled),
            (Some(2948129), Some(571789211))
        );
        assert_eq!(k[3], KmsgKind::ResetBegin { source: Some(1) });
        assert_eq!(
            k[4],
            KmsgKind::ResetResult {
                ok: true,
                counter: Some(5),
                error: None
            }
        );
        assert_eq!(ev[4].t_ns, 1_889_979_913_677_000);
    }

    #[test]
    fn two_gpus_interleaved_stay_separate() {
        let log = "\
[1.0] amdgpu 0000:03:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:40 vmid:7 pasid:1)
[1.0] usb 1-1: unrelated
[1.0] amdgpu 0000:04:00.0: amdgpu:  Process other pid 9 thread other pid 9
[1.0] amdgpu 0000:03:00.0: amdgpu:  Process a pid 5 thread a pid 5
[1.1] amdgpu 0000:04:00.0: amdgpu: ring gfx timeout, signaled seq=1, emitted seq=2
[1.2] [drm:amdgpu_job_timedout [amdgpu]] *ERROR* Process information: process b pid 6 thread b pid 6
";
        let ev = run(log);
        let k = kinds(&ev);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].gpu.as_deref(), Some("0000:03:00.0"));
        assert!(matches!(&k[0], KmsgKind::PageFault { task: Some(t), .. } if t.pid == 5));
        assert_eq!(ev[1].gpu.as_deref(), Some("0000:04:00.0"));
        assert!(matches!(&k[1], KmsgKind::RingTimeout { task: Some(t), .. } if t.pid == 6));
    }
}
