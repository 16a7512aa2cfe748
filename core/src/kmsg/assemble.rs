//! Continuation folding: a page-fault or ring-timeout header absorbs the following Process /
//! address / status lines of the same device; it is emitted when the next amdgpu record line
//! arrives or at flush. Lines without a PCI address (`DRM_ERROR` form) belong to the most recent
//! device seen in the stream. Records are bounded: [`MAX_RECORD_LINES`] lines of at most
//! [`MAX_SHOWN_BYTES`] each; what is dropped is counted and said in the record's last line.
use super::lines::{classify_stripped, strip_prefix, Cont, Line};
use super::walltime::iso_utc_offset;
use crate::model::{Clock, Event, EventBody, KmsgKind, KmsgRecord, Source};

/// Lines kept per record: a real fault has at most ten (header, process, address, status and
/// its six fields); one header followed by millions of continuations must not grow memory.
pub const MAX_RECORD_LINES: usize = 32;
/// Bytes kept of one shown line (printk messages are at most 1 KiB, plus a log prefix).
pub const MAX_SHOWN_BYTES: usize = 4096;

/// A header still collecting continuation lines.
struct Pending {
    event: Event,
    /// Continuations that fit but were not kept (the record was full).
    dropped: u64,
}

/// Counters the analyzer reports.
#[derive(Clone, Debug, Default)]
pub struct AssembleStats {
    /// amdgpu lines recognised (records and continuations).
    pub recognised: u64,
    /// Continuation lines with no header to attach to (log starts mid-record, or interleaving).
    pub orphan_continuations: u64,
    /// Continuation lines past [`MAX_RECORD_LINES`] of their record (counted, not kept).
    pub dropped_continuations: u64,
}

/// A recogniser for lines `kmsg::lines` does not own (the KFD / MES queue lines of
/// `crate::kmsg::kfd`), plugged in from above so that kmsg depends on nothing above it.
#[derive(Clone, Copy)]
pub struct LineHook {
    /// Called with every amdgpu line (`dev_*`, `DRM_ERROR` and `pr_err` `amdgpu: ` forms,
    /// recognised or not) and every line holding one of `unprefixed`: (t_ns, clock, source,
    /// device of the most recent amdgpu line, the message).
    pub event: fn(u64, Clock, Source, Option<&str>, &str) -> Option<Event>,
    /// Text of messages the kernel prints with no amdgpu prefix at all that `event` still
    /// recognises (5.10's KFD printed its HWS-hang line without `pr_fmt`). The readers'
    /// "mentions amdgpu" pre-filters let lines holding one through as well.
    pub unprefixed: &'static [&'static str],
}

impl LineHook {
    /// Whether `msg`, which has no amdgpu prefix, is one of the hook's unprefixed lines.
    pub fn wants(&self, msg: &str) -> bool {
        self.unprefixed.iter().any(|u| msg.contains(u))
    }
}

pub struct KmsgAssembler {
    source: Source,
    /// At most one pending record per device, in arrival order.
    pending: Vec<Pending>,
    last_pci: Option<String>,
    hook: Option<LineHook>,
    pub stats: AssembleStats,
}

impl KmsgAssembler {
    pub fn new(source: Source) -> Self {
        KmsgAssembler {
            source,
            pending: Vec::new(),
            last_pci: None,
            hook: None,
            stats: AssembleStats::default(),
        }
    }

    /// Hand every amdgpu line to `hook` too; its events are records of their own.
    pub fn with_line_hook(mut self, hook: LineHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Feed one message line (without timestamp prefix) stamped `t_ns` on `clock`. The record
    /// keeps it with its stamp rendered (`[  135.794048] msg`, or an RFC 3339 prefix for wall
    /// clock stamps), so an incident's kernel.log reads back to the same events.
    pub fn push_line(&mut self, t_ns: u64, clock: Clock, line: &str) -> Vec<Event> {
        self.push(t_ns, clock, line, None)
    }

    /// As [`push_line`](Self::push_line), keeping `shown` (the original log line, prefix and
    /// all) as the record's text instead of a rendered stamp.
    pub fn push(&mut self, t_ns: u64, clock: Clock, line: &str, shown: Option<&str>) -> Vec<Event> {
        let msg = line.trim_end_matches(['\n', '\r']);
        let Some((pci, body)) = strip_prefix(msg) else {
            return self.unprefixed(t_ns, clock, msg);
        };
        // Any addressed line, recognised or not, says which device the next DRM_ERROR and
        // pr_err lines belong to (docs/kmsg.md, most-recent-device rule).
        if let Some(pci) = pci {
            if self.last_pci.as_deref() != Some(pci) {
                self.last_pci = Some(pci.to_string());
            }
        }
        let hooked = self
            .hook
            .and_then(|h| (h.event)(t_ns, clock, self.source, self.last_pci.as_deref(), msg));
        let Some(line) = classify_stripped(msg, body) else {
            let Some(e) = hooked else {
                return Vec::new();
            };
            self.stats.recognised += 1;
            let mut out = self.flush();
            out.push(e);
            return out;
        };
        self.stats.recognised += 1;
        let text = || shown_text(t_ns, clock, msg, shown);
        let mut out = match line {
            Line::Cont(cont) => {
                self.continuation(cont, text);
                Vec::new()
            }
            Line::Record(kind) => self.record(t_ns, clock, kind, text()),
        };
        out.extend(hooked);
        out
    }

    /// Whether the hook wants `msg` although it has no amdgpu prefix ([`LineHook::unprefixed`]).
    pub fn wants_unprefixed(&self, msg: &str) -> bool {
        self.hook.is_some_and(|h| h.wants(msg))
    }

    /// A line of no amdgpu form: only the hook's unprefixed lines make events; like its other
    /// events, one ends the pending record.
    fn unprefixed(&mut self, t_ns: u64, clock: Clock, msg: &str) -> Vec<Event> {
        let Some(h) = self.hook.filter(|h| h.wants(msg)) else {
            return Vec::new();
        };
        let Some(e) = (h.event)(t_ns, clock, self.source, self.last_pci.as_deref(), msg) else {
            return Vec::new();
        };
        self.stats.recognised += 1;
        let mut out = self.flush();
        out.push(e);
        out
    }

    fn continuation(&mut self, cont: Cont, text: impl FnOnce() -> String) {
        let gpu = &self.last_pci;
        match self.pending.iter_mut().rev().find(|p| &p.event.gpu == gpu) {
            Some(p) if record_lines(&p.event) >= MAX_RECORD_LINES => {
                p.dropped += 1;
                self.stats.dropped_continuations += 1;
            }
            Some(p) => {
                if !fold(&mut p.event, cont, text()) {
                    self.stats.orphan_continuations += 1;
                }
            }
            None => self.stats.orphan_continuations += 1,
        }
    }

    /// A record line: the pending one is done; faults and timeouts wait for their continuations.
    fn record(&mut self, t_ns: u64, clock: Clock, kind: KmsgKind, text: String) -> Vec<Event> {
        let mut out = self.flush();
        let collects = matches!(
            kind,
            KmsgKind::PageFault { .. } | KmsgKind::RingTimeout { .. }
        );
        let event = Event {
            t_ns,
            clock,
            source: self.source,
            gpu: self.last_pci.clone(),
            body: EventBody::Kmsg(KmsgRecord {
                kind,
                lines: vec![text],
            }),
        };
        if collects {
            self.pending.push(Pending { event, dropped: 0 });
        } else {
            out.push(event);
        }
        out
    }

    /// Emit any record still waiting for continuation lines.
    pub fn flush(&mut self) -> Vec<Event> {
        self.pending
            .drain(..)
            .map(|mut p| {
                if p.dropped > 0 {
                    if let EventBody::Kmsg(r) = &mut p.event.body {
                        r.lines.push(format!(
                            "[hangwatch: {} more continuation lines of this record dropped (limit {MAX_RECORD_LINES} lines)]",
                            p.dropped
                        ));
                    }
                }
                p.event
            })
            .collect()
    }

    /// Whether a record is waiting for continuation lines (live mode flushes it after a quiet period).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

fn record_lines(e: &Event) -> usize {
    match &e.body {
        EventBody::Kmsg(r) => r.lines.len(),
        _ => 0,
    }
}

/// The text a record keeps for one line: the original line when given, else the message with
/// its stamp rendered; bounded to [`MAX_SHOWN_BYTES`] at a character boundary.
fn shown_text(t_ns: u64, clock: Clock, msg: &str, shown: Option<&str>) -> String {
    let mut s = match shown {
        Some(l) => l.trim_end_matches(['\n', '\r']).to_string(),
        None => render_stamped(t_ns, clock, msg.trim_end_matches(['\n', '\r'])),
    };
    if s.len() > MAX_SHOWN_BYTES {
        let mut end = MAX_SHOWN_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" [hangwatch: line truncated]");
    }
    s
}

/// `[  135.794048] msg` (printk clock) or `2026-11-22T10:00:00.000000+00:00 msg` (wall clock):
/// forms the log reader reads back to the same stamp.
pub fn render_stamped(t_ns: u64, clock: Clock, msg: &str) -> String {
    match clock {
        Clock::Monotonic => format!(
            "[{:5}.{:06}] {msg}",
            t_ns / 1_000_000_000,
            (t_ns % 1_000_000_000) / 1000
        ),
        Clock::Realtime => format!("{} {msg}", iso_utc_offset(t_ns)),
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
        (
            KmsgKind::PageFault { fault, .. },
            Cont::VmFault {
                protections,
                vmid,
                pasid,
                address,
                write,
                client,
            },
        ) => {
            fault.vmid = vmid.unwrap_or(fault.vmid);
            fault.pasid = pasid.unwrap_or(fault.pasid);
            fault.address = fault.address.or(address);
            fault.write = write.or(fault.write);
            fault.client = client.or(fault.client.take());
            if let Some(p) = protections {
                fault
                    .status_fields
                    .push(("PROTECTIONS".into(), format!("0x{p:02x}")));
            }
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
pub(crate) mod tests {
    use super::*;
    use crate::kmsg::stamp::{split, LocalTime};
    use crate::model::{IllegalKind, Task};

    fn run(log: &str) -> Vec<Event> {
        let mut a = KmsgAssembler::new(Source::Log);
        let mut lt = LocalTime::new(jiff::tz::TimeZone::UTC, 0);
        let mut out = Vec::new();
        for l in log.lines() {
            let s = split(l, &mut lt);
            let (t, c) = match (s.mono_ns, s.real_ns) {
                (Some(t), _) => (t, Clock::Monotonic),
                (None, Some(t)) => (t, Clock::Realtime),
                _ => (0, Clock::Monotonic),
            };
            out.extend(a.push_line(t, c, s.msg));
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

    /// nixpkgs-176915: the DRM_ERROR timeouts name no device; the only addressed lines
    /// (`GPU recovery disabled.`) are not recognised, and still teach the device.
    #[test]
    fn unrecognised_addressed_lines_teach_the_device() {
        let log = "\
[1.0] [drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring gfx timeout, signaled seq=241742, emitted seq=241745
[1.0] amdgpu 0000:06:00.0: amdgpu: GPU recovery disabled.
[1.1] [drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring sdma0 timeout, signaled seq=43529, emitted seq=43531
[1.2] amdgpu kernel modesetting enabled.
[1.2] amdgpu 0000:07:00.0 x: not an address either
[1.3] [drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring sdma1 timeout, signaled seq=1, emitted seq=2
";
        let ev = run(log);
        let gpus: Vec<_> = ev.iter().map(|e| e.gpu.as_deref()).collect();
        assert_eq!(gpus, [None, Some("0000:06:00.0"), Some("0000:06:00.0")]);
    }

    /// 4.17 gmc_v9 (mbab-48) and 5.0 gmc_v8 (Appstream#91): headers and continuations of the
    /// old eras fold into one fault each.
    #[test]
    fn old_era_faults_fold() {
        let log = "\
[1.0] amdgpu 0000:09:00.0: [gfxhub] VMC page fault (src_id:0 ring:24 vmid:1 pasid:32769)
[1.0] amdgpu 0000:09:00.0:   at page 0x0000000102a02000 from 27
[1.0] amdgpu 0000:09:00.0: VM_L2_PROTECTION_FAULT_STATUS:0x00101031
[2.0] amdgpu 0005:01:00.0: GPU fault detected: 146 0x0000480c for process Media1251 pid 19092 thread appstream:cs0 pid 19111
[2.0] amdgpu 0005:01:00.0:   VM_CONTEXT1_PROTECTION_FAULT_ADDR   0x00000010
[2.0] amdgpu 0005:01:00.0:   VM_CONTEXT1_PROTECTION_FAULT_STATUS 0x0204800C
[2.0] amdgpu 0005:01:00.0: VM fault (0x0c, vmid 1, pasid 32784) at page 16, write from 'TC4' (0x54433400) (72)
";
        let ev = run(log);
        let k = kinds(&ev);
        assert_eq!(k.len(), 2, "{k:#?}");
        let KmsgKind::PageFault { fault, task: None } = &k[0] else {
            panic!("{:?}", k[0])
        };
        assert_eq!(
            (
                fault.pasid,
                fault.address,
                fault.status,
                fault.client.as_deref()
            ),
            (32769, Some(0x1_02a0_2000), Some(0x0010_1031), Some("27"))
        );
        let KmsgKind::PageFault {
            fault,
            task: Some(t),
        } = &k[1]
        else {
            panic!("{:?}", k[1])
        };
        assert_eq!((t.pid, t.comm.as_str()), (19092, "Media1251"));
        assert_eq!(
            (
                fault.vmid,
                fault.pasid,
                fault.address,
                fault.status,
                fault.write,
                fault.client.as_deref()
            ),
            (
                1,
                32784,
                Some(0x10 * 4096),
                Some(0x0204_800C),
                Some(true),
                Some("TC4 (72)")
            )
        );
        assert_eq!(ev[1].gpu.as_deref(), Some("0005:01:00.0"));
    }

    /// A stand-in for `kfd::lines::event`: an event for lines naming a pid, a PASID or a doorbell.
    pub(crate) fn kfd_like_hook(
        t: u64,
        clock: Clock,
        source: Source,
        gpu: Option<&str>,
        msg: &str,
    ) -> Option<Event> {
        let named = msg.contains(" pid ")
            || msg.contains("Pasid ")
            || msg.contains("doorbell=")
            || msg.contains("queues preemption");
        (named && !msg.contains("page fault")).then(|| Event {
            t_ns: t,
            clock,
            source,
            gpu: gpu.map(str::to_string),
            body: EventBody::Kmsg(KmsgRecord {
                kind: KmsgKind::OtherError { text: msg.into() },
                lines: vec![],
            }),
        })
    }

    /// The stand-in as a hook, wanting 5.10's unprefixed HWS-hang line like the real one.
    pub(crate) const KFD_LIKE: LineHook = LineHook {
        event: kfd_like_hook,
        unprefixed: &["unsuccessful queues preemption"],
    };

    /// The KFD recogniser (`kfd::lines::HOOK`) plugs in here: it sees every amdgpu line with
    /// the most recent device, including `pr_err` lines with no device, lines `lines.rs`
    /// recognises itself and the unprefixed lines it asks for; its events end the pending
    /// record.
    #[test]
    fn line_hook_sees_kfd_lines_with_the_device() {
        let mut a = KmsgAssembler::new(Source::Log).with_line_hook(KFD_LIKE);
        let mut out = Vec::new();
        for (t, l) in [
            (1, "amdgpu 0000:03:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:24 vmid:3 pasid:32770)"),
            (2, "amdgpu: Pasid 0x800d DQM create queue type 0 failed. ret -110"),
            (3, "amdgpu 0000:03:00.0: amdgpu: failed to remove hardware queue from MES, doorbell=0x1204"),
            (4, "amdgpu: Failed to suspend process pid 3484"),
            (5, "usb 1-1: pid 7"),
            (6, "The cp might be in an unrecoverable state due to an unsuccessful queues preemption"),
        ] {
            out.extend(a.push_line(t, Clock::Monotonic, l));
        }
        out.extend(a.flush());
        let seen: Vec<_> = out
            .iter()
            .map(|e| match &e.body {
                EventBody::Kmsg(r) => match &r.kind {
                    KmsgKind::OtherError { text } => (e.t_ns, text.clone(), e.gpu.clone()),
                    k => (
                        e.t_ns,
                        format!("{k:?}").chars().take(10).collect(),
                        e.gpu.clone(),
                    ),
                },
                _ => panic!(),
            })
            .collect();
        let dev = Some("0000:03:00.0".to_string());
        assert_eq!(
            seen,
            [
                (1, "PageFault ".to_string(), dev.clone()),
                (2, "amdgpu: Pasid 0x800d DQM create queue type 0 failed. ret -110".into(), dev.clone()),
                (3, "MesFailure".into(), dev.clone()),
                (3, "amdgpu 0000:03:00.0: amdgpu: failed to remove hardware queue from MES, doorbell=0x1204".into(), dev.clone()),
                (4, "amdgpu: Failed to suspend process pid 3484".into(), dev.clone()),
                (6, "The cp might be in an unrecoverable state due to an unsuccessful queues preemption".into(), dev),
            ]
        );
    }
}
