//! KFD / MES / user-queue kernel-log lines → [`KfdLogRecord`]s.
//!
//! These are the lines that say *which queue or process* a compute hang belongs to; the
//! amdgpu recogniser (`kmsg::lines`) does not know them. Every spelling below was read from
//! the `.rodata` of Debian's real amdgpu.ko (5.10, 6.1, 6.12, 7.3; see docs/compute.md):
//! `pr_err` prints them as `amdgpu: <msg>`, `dev_err` as `amdgpu 0000:03:00.0: [amdgpu: ]<msg>`,
//! and 5.10 prints the HWS line with no prefix at all. Hand-written `str` matching: no regex,
//! no allocation for unrelated lines, never panics (kernel-log text is hostile input).
use crate::kmsg::assemble::LineHook;
use crate::kmsg::lines::{parse_hex_prefix, parse_task};
use crate::kmsg::{Format, LogReader};
use crate::model::{Clock, Event, EventBody, KfdLogKind, KfdLogRecord, Source};

/// The message body after the amdgpu/KFD prefix, with the PCI address when printed: KFD's
/// `pr_err` adds `amdgpu: ` (no device), `dev_err`/`DRM_ERROR` lines are amdgpu's own forms.
fn strip_prefix(msg: &str) -> Option<(Option<&str>, &str)> {
    // 5.10's kfd_device_queue_manager.c printed this one line without pr_fmt.
    if msg.starts_with(HWS_HANG) {
        return Some((None, msg));
    }
    crate::kmsg::lines::strip_prefix(msg)
}

const HWS_HANG: &str =
    "The cp might be in an unrecoverable state due to an unsuccessful queues preemption";

/// The recogniser as the kernel-log readers take it (`LogReader::with_line_hook`,
/// `KmsgAssembler::with_line_hook`): every amdgpu line, and 5.10's unprefixed HWS-hang line.
pub const HOOK: LineHook = LineHook {
    event,
    unprefixed: &["unsuccessful queues preemption"],
};

/// `kmsg::parse_text` with the KFD lines: every event of a whole log held in memory.
pub fn parse_text(text: &str, source: Source) -> Vec<Event> {
    let mut reader = LogReader::new(Format::Auto, source).with_line_hook(HOOK);
    let mut out = Vec::new();
    let _ = reader.read(text.as_bytes(), &mut |e| out.push(e));
    reader.finish(&mut |e| out.push(e));
    out
}

/// Recognise one kernel-log message (timestamp already removed): the PCI address when the line
/// printed one, and what it says.
pub fn classify(msg: &str) -> Option<(Option<&str>, KfdLogKind)> {
    let msg = msg.trim_end_matches(['\n', '\r']);
    let (pci, body) = strip_prefix(msg)?;
    Some((pci, kind(body.trim())?))
}

/// The event for `line`, if it is a KFD line; `last_pci` is the device of the most recent
/// amdgpu line (pr_err lines name none).
pub fn event(
    t_ns: u64,
    clock: Clock,
    source: Source,
    last_pci: Option<&str>,
    line: &str,
) -> Option<Event> {
    let (pci, kind) = classify(line)?;
    Some(Event {
        t_ns,
        clock,
        source,
        gpu: pci.or(last_pci).map(str::to_string),
        body: EventBody::KfdLog(KfdLogRecord {
            kind,
            line: line.trim_end_matches(['\n', '\r']).to_string(),
        }),
    })
}

fn kind(t: &str) -> Option<KfdLogKind> {
    if t.starts_with(HWS_HANG) {
        return Some(KfdLogKind::HwsHang);
    }
    if t.starts_with("HIQ MQD's queue_doorbell_id0 is not 0") {
        return Some(KfdLogKind::PreemptTimeout);
    }
    // 6.12+: "Queue preemption failed for queue with doorbell_id: %x", optionally "XCC %d: ".
    let q = match t.strip_prefix("XCC ") {
        Some(r) => r.split_once(": ").map_or(t, |(_, rest)| rest),
        None => t,
    };
    if let Some(r) = q.strip_prefix("Queue preemption failed for queue with doorbell_id: ") {
        return Some(KfdLogKind::QueuePreemptFailed {
            doorbell: parse_hex_prefix(r)?,
        });
    }
    if let Some(r) = t.strip_prefix("failed to remove hardware queue from MES, doorbell=") {
        return Some(KfdLogKind::MesRemoveFailed {
            doorbell: parse_hex_prefix(r)?,
        });
    }
    if let Some(r) = t.strip_prefix("Queues reset on process ") {
        // "%s tid %d thread %s pid %d": the first number is the tgid (parse_task's "pid").
        return Some(KfdLogKind::QueuesReset {
            task: parse_task(&r.replacen(" tid ", " pid ", 1))?,
        });
    }
    if let Some(k) = create_failed(t) {
        return Some(k);
    }
    if let Some(r) = t.strip_prefix("Pasid ") {
        // "Pasid 0x%x destroy queue %d failed, ret %d"
        let (pasid, rest) = r.split_once(" destroy queue ")?;
        let (qid, rest) = rest.split_once(" failed, ret ")?;
        return Some(KfdLogKind::DestroyFailed {
            pasid: u32::try_from(parse_hex_prefix(pasid)?).ok()?,
            queue_id: qid.trim().parse().ok()?,
            ret: rest.trim().parse().ok()?,
        });
    }
    if let Some(k) = evict_failed(t) {
        return Some(k);
    }
    if let Some(r) = t.strip_prefix("Process ") {
        if let Some(head) = r.strip_suffix(" got unhandled exception") {
            return unhandled(head);
        }
    }
    for p in [
        "Attempting queue reset on XCC ",
        "queue reset on XCC ",
        "reset compute queue (",
        "Failed to detect and reset hung queues",
        "Failed to detect hung queues",
    ] {
        if t.starts_with(p) {
            return Some(KfdLogKind::QueueReset { text: bounded(t) });
        }
    }
    if t.contains(" queue hung, but ring reset disabled") {
        return Some(KfdLogKind::QueueReset { text: bounded(t) });
    }
    None
}

/// `Pasid 0x%x DQM create queue type %d failed. ret %d` (≤ 6.x) or `process pid %d DQM create
/// queue type %d failed. ret %d` (7.x, also as a warning for SDMA -ENOMEM).
fn create_failed(t: &str) -> Option<KfdLogKind> {
    let (who, rest) = t.split_once(" DQM create queue type ")?;
    let (qtype, ret) = rest.split_once(" failed. ret ")?;
    let (mut pasid, mut pid) = (None, None);
    if let Some(p) = who.strip_prefix("Pasid ") {
        pasid = Some(u32::try_from(parse_hex_prefix(p)?).ok()?);
    } else {
        pid = Some(who.strip_prefix("process pid ")?.trim().parse().ok()?);
    }
    Some(KfdLogKind::CreateFailed {
        pasid,
        pid,
        queue_type: qtype.trim().parse().ok()?,
        ret: ret.trim().parse().ok()?,
    })
}

/// Eviction / suspend / restore failures, with the pasid (≤ 6.x) or pid (7.x) they name.
fn evict_failed(t: &str) -> Option<KfdLogKind> {
    const FORMS: &[&str] = &[
        "Failed to evict queues of ",
        "Failed to restore queues of ",
        "Failed to suspend process ",
        "Failed to evict process queues",
        "Failed to restore process queues",
        "Failed to suspend process queues",
        "Failed to evict queue ",
        "Failed to quiesce KFD",
    ];
    let form = FORMS.iter().find(|f| t.starts_with(**f))?;
    let rest = &t[form.len()..];
    let (mut pasid, mut pid) = (None, None);
    if let Some(r) = rest.strip_prefix("pasid ") {
        pasid = parse_hex_prefix(r).and_then(|v| u32::try_from(v).ok());
    } else if let Some(r) = rest
        .strip_prefix("process pid ")
        .or_else(|| rest.strip_prefix("pid "))
    {
        pid = r.trim().parse().ok();
    } else if form.ends_with("process ") {
        // 6.x "Failed to suspend process 0x%x" prints the pasid.
        pasid = parse_hex_prefix(rest).and_then(|v| u32::try_from(v).ok());
    }
    Some(KfdLogKind::EvictFailed {
        pasid,
        pid,
        what: form.trim().to_string(),
    })
}

/// "%d (pasid 0x%x)" (≤ 6.x) or "pid %d" (7.x).
fn unhandled(head: &str) -> Option<KfdLogKind> {
    if let Some(p) = head.strip_prefix("pid ") {
        return Some(KfdLogKind::UnhandledException {
            pid: p.trim().parse().ok()?,
            pasid: None,
        });
    }
    let (pid, rest) = head.split_once(" (pasid ")?;
    Some(KfdLogKind::UnhandledException {
        pid: pid.trim().parse().ok()?,
        pasid: rest
            .strip_suffix(')')
            .and_then(parse_hex_prefix)
            .and_then(|v| u32::try_from(v).ok()),
    })
}

/// Kernel lines are short; a hostile or corrupted one is cut at 160 characters.
fn bounded(t: &str) -> String {
    t.chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Task;

    fn k(line: &str) -> KfdLogKind {
        classify(line)
            .unwrap_or_else(|| panic!("not recognised: {line:?}"))
            .1
    }

    /// 5.10 printed the HWS-hang line with no prefix at all: through the real hook, the log
    /// reader's prefix sniffing (the first 64 lines) and its "mentions amdgpu" hot path after
    /// them both keep it, and it takes the device of the last addressed line.
    #[test]
    fn unprefixed_5_10_hws_line_survives_the_readers_prefilters() {
        for filler in [0usize, 10, 63, 64, 500] {
            let mut log =
                String::from("[  100.000000] amdgpu 0000:03:00.0: amdgpu: GPU reset begin!\n");
            for i in 0..filler {
                log.push_str(&format!(
                    "[  100.{i:06}] usb 1-1: new high-speed device {i}\n"
                ));
            }
            log.push_str(&format!("[  101.000000] {HWS_HANG}\n"));
            let hws: Vec<Event> = parse_text(&log, Source::Log)
                .into_iter()
                .filter(
                    |e| matches!(&e.body, EventBody::KfdLog(r) if r.kind == KfdLogKind::HwsHang),
                )
                .collect();
            assert_eq!(hws.len(), 1, "after {filler} unrelated lines");
            assert_eq!(
                (hws[0].t_ns, hws[0].gpu.as_deref()),
                (101_000_000_000, Some("0000:03:00.0")),
                "after {filler} unrelated lines"
            );
        }
    }

    #[test]
    fn hws_and_preemption_lines_of_every_era() {
        for l in [
            "amdgpu: The cp might be in an unrecoverable state due to an unsuccessful queues preemption",
            "The cp might be in an unrecoverable state due to an unsuccessful queues preemption",
            "amdgpu 0000:03:00.0: amdgpu: The cp might be in an unrecoverable state due to an unsuccessful queues preemption",
            "amdgpu 0000:03:00.0: The cp might be in an unrecoverable state due to an unsuccessful queues preemption",
        ] {
            assert_eq!(k(l), KfdLogKind::HwsHang, "{l}");
        }
        assert_eq!(
            k("amdgpu: HIQ MQD's queue_doorbell_id0 is not 0, Queue preemption time out"),
            KfdLogKind::PreemptTimeout
        );
        assert_eq!(
            k("amdgpu 0000:03:00.0: amdgpu: Queue preemption failed for queue with doorbell_id: 1002"),
            KfdLogKind::QueuePreemptFailed { doorbell: 0x1002 }
        );
        assert_eq!(
            k("amdgpu 0000:c1:00.0: XCC 3: Queue preemption failed for queue with doorbell_id: 8a"),
            KfdLogKind::QueuePreemptFailed { doorbell: 0x8a }
        );
        let (pci, kind) = classify(
            "amdgpu 0000:2f:00.0: amdgpu: failed to remove hardware queue from MES, doorbell=0x1204",
        )
        .unwrap();
        assert_eq!(pci, Some("0000:2f:00.0"));
        assert_eq!(kind, KfdLogKind::MesRemoveFailed { doorbell: 0x1204 });
    }

    #[test]
    fn lines_that_name_a_process() {
        assert_eq!(
            k("amdgpu 0000:03:00.0: amdgpu: Queues reset on process python3 tid 4242 thread pt_main_thread pid 4250"),
            KfdLogKind::QueuesReset {
                task: Task {
                    pid: 4242,
                    tid: 4250,
                    comm: "python3".into(),
                    thread_comm: Some("pt_main_thread".into())
                }
            }
        );
        assert_eq!(
            k("amdgpu: Pasid 0x8003 destroy queue 1 failed, ret -62"),
            KfdLogKind::DestroyFailed {
                pasid: 0x8003,
                queue_id: 1,
                ret: -62
            }
        );
        assert_eq!(
            k("amdgpu: Failed to evict queues of pasid 0x8003"),
            KfdLogKind::EvictFailed {
                pasid: Some(0x8003),
                pid: None,
                what: "Failed to evict queues of".into()
            }
        );
        assert_eq!(
            k("amdgpu: Failed to evict queues of process pid 4242"),
            KfdLogKind::EvictFailed {
                pasid: None,
                pid: Some(4242),
                what: "Failed to evict queues of".into()
            }
        );
        assert_eq!(
            k("amdgpu: Failed to suspend process 0x8001"),
            KfdLogKind::EvictFailed {
                pasid: Some(0x8001),
                pid: None,
                what: "Failed to suspend process".into()
            }
        );
        // Real log (ollama/ollama#738): the quiesce that follows a preemption time-out.
        assert!(matches!(
            k("amdgpu: Failed to quiesce KFD"),
            KfdLogKind::EvictFailed { pid: None, .. }
        ));
        assert!(matches!(
            k("amdgpu: Failed to evict process queues"),
            KfdLogKind::EvictFailed {
                pasid: None,
                pid: None,
                ..
            }
        ));
        assert_eq!(
            k("amdgpu: Process 4242 (pasid 0x8003) got unhandled exception"),
            KfdLogKind::UnhandledException {
                pid: 4242,
                pasid: Some(0x8003)
            }
        );
        assert_eq!(
            k("amdgpu 0000:03:00.0: Process pid 77 got unhandled exception"),
            KfdLogKind::UnhandledException {
                pid: 77,
                pasid: None
            }
        );
    }

    /// rocm-2820 (testdata/corpus): MES hung, then a queue creation timed out; 7.x names the pid.
    #[test]
    fn queue_creation_failures_of_both_eras() {
        assert_eq!(
            k("amdgpu: Pasid 0x800d DQM create queue type 0 failed. ret -110"),
            KfdLogKind::CreateFailed {
                pasid: Some(0x800d),
                pid: None,
                queue_type: 0,
                ret: -110
            }
        );
        assert_eq!(
            k("amdgpu: process pid 4242 DQM create queue type 1 failed. ret -12"),
            KfdLogKind::CreateFailed {
                pasid: None,
                pid: Some(4242),
                queue_type: 1,
                ret: -12
            }
        );
        assert!(classify("amdgpu: Pasid 0xzz DQM create queue type 0 failed. ret -110").is_none());
    }

    #[test]
    fn queue_resets_and_user_queue_hangs() {
        for l in [
            "amdgpu 0000:03:00.0: amdgpu: Attempting queue reset on XCC 0 pipe id 1 queue id 2",
            "amdgpu 0000:03:00.0: reset compute queue (1:0:2)",
            "amdgpu 0000:03:00.0: GFX queue hung, but ring reset disabled",
            "amdgpu 0000:03:00.0: Failed to detect and reset hung queues",
        ] {
            assert!(matches!(k(l), KfdLogKind::QueueReset { .. }), "{l}");
        }
    }

    #[test]
    fn unrelated_truncated_and_hostile_lines() {
        for l in [
            "",
            "amdgpu",
            "amdgpu: ",
            "amdgpu: Pasid 0x",
            "amdgpu: Pasid zz destroy queue x failed, ret y",
            "amdgpu: Queue preemption failed for queue with doorbell_id: ",
            "amdgpu: Queues reset on process ",
            "amdgpu 0000:03:00.0: amdgpu: ring gfx_0.0.0 timeout, signaled seq=1, emitted seq=2",
            "usb 1-1: new high-speed USB device",
            "evil: The cp might be in an unrecoverable state",
            "amdgpu: Process ü got unhandled exception",
        ] {
            let _ = classify(l);
        }
        assert!(classify("usb 1-1: Failed to evict process queues").is_none());
        assert!(
            classify("amdgpu 0000:03:00.0: amdgpu: GPU reset begin!").is_none(),
            "amdgpu lines stay with kmsg::lines"
        );
        // Multi-byte characters right where a number is expected never panic.
        let _ = classify("amdgpu: Pasid 0x€ destroy queue 1 failed, ret -62");
        let _ = classify("amdgpu: XCC €: Queue preemption failed for queue with doorbell_id: 1");
    }

    #[test]
    fn event_uses_the_last_device_for_pr_err_lines() {
        let e = event(
            5,
            Clock::Monotonic,
            Source::Kmsg,
            Some("0000:2f:00.0"),
            "amdgpu: Failed to evict process queues\n",
        )
        .unwrap();
        assert_eq!(e.gpu.as_deref(), Some("0000:2f:00.0"));
        match e.body {
            EventBody::KfdLog(r) => assert_eq!(r.line, "amdgpu: Failed to evict process queues"),
            b => panic!("{b:?}"),
        }
    }
}
