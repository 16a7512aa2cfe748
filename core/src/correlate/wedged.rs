//! The DRM wedged uevent in an incident (rules W1–W2 of docs/attribution.md): its `PID`/`TASK`
//! are the kernel's blame when the log named no process (W1), and a method other than `none`
//! marks the device as needing recovery (W2).
use super::processes::Processes;
use crate::incident::ProcessRef;
use crate::model::Task;

/// Methods kept per incident (the kernel defines three; the rest is hostile padding).
const MAX_METHODS: usize = 8;

/// What the wedged uevents joined to one incident said.
#[derive(Clone, Debug, Default)]
pub struct Wedged {
    /// The last task named (`PID=`/`TASK=`), when any event named one.
    task: Option<Task>,
    /// Recovery methods other than `none`, in the order first seen.
    needs: Vec<String>,
    /// The kernel log said `device wedged, needs recovery` (it does not say which).
    log_needs: bool,
}

impl Wedged {
    /// Records one wedged event; the evidence sentence. TASK is user-chosen: kept exact here,
    /// escaped by each sink.
    pub fn on_event(&mut self, methods: &[String], task: Option<&Task>) -> String {
        for m in methods.iter().filter(|m| m.as_str() != "none") {
            if !self.needs.contains(m) && self.needs.len() < MAX_METHODS {
                self.needs.push(m.clone());
            }
        }
        if let Some(t) = task {
            self.task = Some(t.clone());
        }
        let how = methods.join(",");
        match task {
            Some(t) => format!(
                "DRM wedged uevent: WEDGED={}, task {} (pid {})",
                how, t.comm, t.pid
            ),
            None => format!("DRM wedged uevent: WEDGED={}", how),
        }
    }

    /// DRM's own log line for the uevent; the evidence sentence.
    pub fn on_log(&mut self, needs_recovery: bool) -> String {
        self.log_needs |= needs_recovery;
        if needs_recovery {
            "the kernel says the device is wedged and needs recovery".into()
        } else {
            "the kernel says the device was wedged and recovered".into()
        }
    }

    /// W1: the task the uevent named, as the kernel's blame.
    pub fn blamed(&self, procs: &Processes) -> Option<ProcessRef> {
        let t = self.task.as_ref().filter(|t| t.pid != 0)?;
        Some(procs.reference(t.pid, &t.comm))
    }

    /// W2: "rebind", "bus-reset" or several joined by commas; `None` when recovered.
    /// "unknown" (the kernel's own word for it) when only the log line said so.
    pub fn needs_recovery(&self) -> Option<String> {
        if self.needs.is_empty() {
            return self.log_needs.then(|| "unknown".to_string());
        }
        Some(self.needs.join(","))
    }
}

#[cfg(test)]
mod tests {
    use crate::correlate::{Config, Correlator};
    use crate::incident::Incident;
    use crate::model::*;

    const S: u64 = 1_000_000_000;
    const GPU: &str = "0000:03:00.0";

    fn ev(t: u64, source: Source, body: EventBody) -> Event {
        crate::correlate::testev::on(GPU, t, source, body)
    }
    /// A ring timeout whose log line names no process ("Process information" missing).
    fn timeout(t: u64) -> Event {
        let kind = KmsgKind::RingTimeout {
            ring: "gfx_0.0.0".into(),
            signaled: Some(1),
            emitted: Some(3),
            task: None,
        };
        let rec = KmsgRecord {
            kind,
            lines: vec!["ring gfx_0.0.0 timeout, signaled seq=1, emitted seq=3".into()],
        };
        ev(t, Source::Kmsg, EventBody::Kmsg(rec))
    }
    fn wedged(t: u64, methods: &[&str], task: Option<Task>) -> Event {
        let methods = methods.iter().map(|m| m.to_string()).collect();
        ev(t, Source::Uevent, EventBody::Wedged { methods, task })
    }
    fn run(events: Vec<Event>) -> Vec<Incident> {
        let mut c = Correlator::new(Config::default());
        let mut out: Vec<Incident> = events.into_iter().flat_map(|e| c.push(e)).collect();
        out.extend(c.finish());
        out
    }

    #[test]
    fn wedged_task_is_the_kernels_blame_when_the_log_names_none() {
        let zed = Task::new(4242, 4242, "zed\x1b]0;x");
        let out = run(vec![
            timeout(10 * S),
            wedged(12 * S, &["rebind"], Some(zed)),
        ]);
        assert_eq!(out.len(), 1);
        let k = out[0]
            .kernel_blamed
            .as_ref()
            .expect("blame from the uevent");
        assert_eq!((k.pid, k.comm.as_str()), (4242, "zed\x1b]0;x"));
        assert_eq!(out[0].needs_recovery.as_deref(), Some("rebind"));
        assert!(out[0]
            .evidence
            .iter()
            .any(|e| e.source == Source::Uevent && e.what.contains("WEDGED=rebind")));
    }

    #[test]
    fn recovered_device_needs_nothing_and_log_blame_wins() {
        let mut t = timeout(10 * S);
        if let EventBody::Kmsg(r) = &mut t.body {
            if let KmsgKind::RingTimeout { task, .. } = &mut r.kind {
                *task = Some(Task::new(7, 7, "glxgears"));
            }
        }
        let out = run(vec![
            t,
            wedged(11 * S, &["none"], Some(Task::new(9, 9, "other"))),
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].needs_recovery, None);
        assert_eq!(out[0].kernel_blamed.as_ref().map(|k| k.pid), Some(7));
    }

    #[test]
    fn wedged_before_the_timeout_is_adopted() {
        let out = run(vec![
            wedged(9 * S, &["rebind", "bus-reset"], None),
            timeout(10 * S),
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].needs_recovery.as_deref(), Some("rebind,bus-reset"));
        assert_eq!(out[0].kernel_blamed, None);
    }

    fn wedged_line(t: u64, how: &str) -> Event {
        let rec = KmsgRecord {
            kind: KmsgKind::DeviceWedged {
                needs_recovery: how == "needs recovery",
            },
            lines: vec![format!("device wedged, {how}")],
        };
        ev(t, Source::Kmsg, EventBody::Kmsg(rec))
    }

    #[test]
    fn the_logs_wedged_line_is_evidence_and_says_when_recovery_is_needed() {
        // 7.3: a per-ring reset that recovered.
        let out = run(vec![
            timeout(10 * S),
            wedged_line(11 * S, "but no recovery needed"),
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].needs_recovery, None);
        assert!(out[0]
            .evidence
            .iter()
            .any(|e| e.what.contains("wedged and recovered")));
        // A device that needs help, from the log alone: the method is not in the line.
        let out = run(vec![timeout(10 * S), wedged_line(11 * S, "needs recovery")]);
        assert_eq!(out[0].needs_recovery.as_deref(), Some("unknown"));
        // With the uevent too, its methods say which.
        let out = run(vec![
            timeout(10 * S),
            wedged_line(11 * S, "needs recovery"),
            wedged(11 * S, &["rebind"], None),
        ]);
        assert_eq!(out[0].needs_recovery.as_deref(), Some("rebind"));
    }

    #[test]
    fn wedged_alone_opens_nothing() {
        let mut c = Correlator::new(Config::default());
        assert!(c.push(wedged(S, &["rebind"], None)).is_empty());
        assert!(c.finish().is_empty());
        assert_eq!(c.stats().unattached, 1);
    }
}
