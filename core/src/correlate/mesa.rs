//! Mesa's verdicts in an incident (rule M1 of docs/attribution.md). radv and radeonsi say, in
//! the process's own journal stream, whether the kernel treated its context as guilty or
//! innocent. Evidence with its own weight, never proof: a process's own guilty verdict names a
//! suspect only when nothing else named a culprit, and its own innocent verdict makes it a
//! victim. A verdict logged under another identity (SYSLOG_IDENTIFIER not the process's comm,
//! e.g. Steam's `srt-logger` logging for a game) names no process at all.
use super::processes::Processes;
use super::verdict::Blame;
use crate::incident::Confidence;
use crate::model::{MesaVerdict, Task};

/// Verdicts kept per incident (one per process is the norm; the rest is counted).
const MAX_VERDICTS: usize = 32;

#[derive(Clone, Debug)]
struct Said {
    task: Task,
    verdict: MesaVerdict,
    /// Logged under another identity: not the process's own word.
    relayed: bool,
}

/// The verdicts joined to one incident.
#[derive(Clone, Debug, Default)]
pub struct Verdicts {
    list: Vec<Said>,
    pub omitted: u64,
}

impl Verdicts {
    /// Records one verdict; the evidence sentence. Names stay exact here; sinks escape them.
    pub fn on_event(&mut self, task: &Task, verdict: MesaVerdict, logger: Option<&str>) -> String {
        if self.list.len() < MAX_VERDICTS {
            self.list.push(Said {
                task: task.clone(),
                verdict,
                relayed: logger.is_some(),
            });
        } else {
            self.omitted += 1;
        }
        let by = match logger {
            Some(l) => format!(", logged as {l}: not necessarily its own context"),
            None => String::new(),
        };
        format!(
            "Mesa in {} (pid {}) says its context is {}{by}",
            task.comm,
            task.pid,
            verdict.words()
        )
    }

    /// Rule M1 on the incident's blame.
    pub fn apply(&self, b: &mut Blame, procs: &Processes) {
        let own = || self.list.iter().filter(|s| !s.relayed);
        let guilty: Vec<&Said> = own().filter(|s| s.verdict.guilty()).collect();
        if b.culprit.is_none() {
            if let [only] = guilty.as_slice() {
                let who = procs.reference(only.task.pid, &only.task.comm);
                b.reasoning += &format!(
                    " Rule M1: nothing else named a culprit; Mesa in {} says its context is {}. A suspect, not a verdict: Mesa's word alone is no proof.",
                    who.comm,
                    only.verdict.words()
                );
                b.victims.retain(|v| v.pid != who.pid);
                b.culprit = Some(who);
                b.confidence = Confidence::Unknown;
            }
        }
        let culprit = b.culprit.as_ref().map(|c| c.pid);
        for s in own() {
            let is_culprit = Some(s.task.pid) == culprit;
            match (s.verdict.guilty(), is_culprit) {
                (false, false) => {
                    let comm = procs.reference(s.task.pid, &s.task.comm).comm;
                    let reason = "Mesa says its context was innocent (cancelled by the reset)";
                    b.victim(s.task.pid, comm, reason.into());
                }
                (false, true) => {
                    b.reasoning += &format!(
                        " Rule M1: Mesa in the culprit {} says its context is innocent.",
                        s.task.comm
                    );
                }
                (true, true) if guilty.len() > 1 || b.confidence != Confidence::Unknown => {
                    b.reasoning += &format!(" Rule M1: Mesa in {} agrees: guilty.", s.task.comm);
                }
                (true, false) if culprit.is_some() => {
                    b.reasoning += &format!(
                        " Rule M1: Mesa in {} (pid {}) says its context is {}, not the culprit's.",
                        s.task.comm,
                        s.task.pid,
                        s.verdict.words()
                    );
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::correlate::{Config, Correlator};
    use crate::incident::{Confidence, Incident};
    use crate::model::*;

    const S: u64 = 1_000_000_000;
    const GPU: &str = "0000:03:00.0";

    fn ev(t: u64, source: Source, body: EventBody) -> Event {
        crate::correlate::testev::on(GPU, t, source, body)
    }
    /// A ring timeout naming `task` (or none), a reset and its success.
    fn hang(t: u64, task: Option<Task>) -> Vec<Event> {
        let k = |kind| {
            let rec = KmsgRecord {
                kind,
                lines: vec!["line".into()],
            };
            ev(t, Source::Log, EventBody::Kmsg(rec))
        };
        vec![
            k(KmsgKind::RingTimeout {
                ring: "gfx_0.0.0".into(),
                signaled: Some(1),
                emitted: Some(2),
                task,
            }),
            k(KmsgKind::ResetBegin { source: None }),
            k(KmsgKind::ResetResult {
                ok: true,
                counter: None,
                error: None,
            }),
        ]
    }
    fn said(t: u64, pid: u32, comm: &str, verdict: MesaVerdict, logger: Option<&str>) -> Event {
        let mut e = ev(
            t,
            Source::Log,
            EventBody::MesaVerdict {
                task: Task::new(pid, pid, comm),
                verdict,
                logger: logger.map(str::to_string),
            },
        );
        e.gpu = None;
        e
    }
    fn run(events: Vec<Event>) -> Vec<Incident> {
        let mut c = Correlator::new(Config::default());
        let mut out: Vec<Incident> = events.into_iter().flat_map(|e| c.push(e)).collect();
        out.extend(c.finish());
        out
    }

    #[test]
    fn an_own_guilty_verdict_names_a_suspect_only_when_nothing_else_did() {
        let mut v = hang(10 * S, None);
        v.push(said(11 * S, 77, "game", MesaVerdict::GuiltyHard, None));
        v.push(said(
            11 * S,
            88,
            "kwin_wayland",
            MesaVerdict::Innocent,
            None,
        ));
        let out = run(v);
        assert_eq!(out.len(), 1, "{out:#?}");
        let i = &out[0];
        assert_eq!(i.culprit.as_ref().map(|c| c.pid), Some(77));
        assert_eq!(i.confidence, Confidence::Unknown, "never proof on its own");
        assert!(i.reasoning.contains("Rule M1"), "{}", i.reasoning);
        assert_eq!(i.victims.iter().map(|v| v.pid).collect::<Vec<_>>(), [88]);
        assert!(i.evidence.iter().any(
            |e| e.what == "Mesa in game (pid 77) says its context is guilty of a hard recovery"
        ));
    }

    #[test]
    fn the_kernels_named_culprit_stands_and_a_disagreeing_verdict_is_noted() {
        let mut v = hang(10 * S, Some(Task::new(5, 5, "Xwayland")));
        v.push(said(11 * S, 77, "zed", MesaVerdict::GuiltySoft, None));
        let out = run(v);
        let i = &out[0];
        assert_eq!(i.culprit.as_ref().map(|c| c.pid), Some(5));
        assert!(i.reasoning.contains("Rule M1: Mesa in zed (pid 77) says its context is guilty of a soft recovery, not the culprit's."), "{}", i.reasoning);
    }

    #[test]
    fn a_relayed_verdict_names_no_process() {
        let mut v = hang(10 * S, None);
        v.push(said(
            11 * S,
            300,
            "srt-logger",
            MesaVerdict::GuiltyHard,
            Some("game"),
        ));
        v.push(said(
            11 * S,
            301,
            "srt-logger",
            MesaVerdict::Innocent,
            Some("steamwebhelper"),
        ));
        let out = run(v);
        let i = &out[0];
        assert_eq!(i.culprit, None);
        assert!(i.victims.is_empty(), "{:?}", i.victims);
        assert!(i.evidence.iter().any(|e| e
            .what
            .contains("logged as game: not necessarily its own context")));
    }

    #[test]
    fn a_verdict_alone_opens_nothing() {
        let out = run(vec![said(S, 77, "game", MesaVerdict::GuiltyHard, None)]);
        assert!(out.is_empty());
    }
}
