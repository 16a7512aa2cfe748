//! Ring stalls (rule S1): the recorder poll reports a ring whose oldest unfinished job ran
//! past `stall_after`. Three endings: the kernel times out on that ring (one incident, the
//! timeout's kind); the kernel never does (the stall alone, settling once the reports stop);
//! the job finishes (the stall closes at once).
use super::{Config, Correlator};
use crate::incident::{Confidence, Incident, IncidentKind};
use crate::model::*;

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;
const GPU: &str = "0000:03:00.0";
const COMP: &str = "comp_1.0.0";

fn ev(t: u64, body: EventBody) -> Event {
    super::testev::on(GPU, t, Source::Ebpf, body)
}

fn key(id: u64) -> JobKey {
    super::testev::job_id(id)
}

fn hipper() -> Task {
    Task::new(4100, 4100, "hipper")
}

/// hipper's job 7 submitted at 10 s and run on COMP; a healthy job of another process before
/// it completes. The job's hardware fence is seqno 2.
fn stalled_job() -> Vec<Event> {
    let mut v = Vec::new();
    let jobs = [
        (6, Task::new(4200, 4200, "blender"), 9 * S),
        (7, hipper(), 10 * S),
    ];
    for (i, (id, task, t)) in jobs.into_iter().enumerate() {
        let ring = String::from(COMP);
        v.push(ev(
            t,
            EventBody::Submit {
                task,
                ring: ring.clone(),
                job: key(id),
                num_ibs: 1,
            },
        ));
        let run = EventBody::RunJob {
            ring: ring.clone(),
            job: key(id),
            worker_tid: 950,
        };
        v.push(ev(t + 10, run));
        let seqno = i as u64 + 1;
        let emitted = EventBody::HwFenceEmitted {
            ring,
            context: 1,
            seqno,
            emitter_tid: 950,
        };
        v.push(ev(t + 20, emitted));
    }
    let done = EventBody::HwFenceSignaled {
        ring: COMP.into(),
        context: 1,
        seqno: 1,
    };
    v.push(ev(9 * S + MS, done));
    v
}

/// The poll reports job 7 stalled every second from `from_s` through `to_s`.
fn stall_reports(from_s: u64, to_s: u64) -> Vec<Event> {
    (from_s..=to_s)
        .map(|s| {
            let body = EventBody::RingStall {
                ring: COMP.into(),
                job: key(7),
                task: hipper(),
                running_since_ns: 10 * S + 10,
            };
            ev(s * S, body)
        })
        .collect()
}

fn timed_out(t: u64, ring: &str, id: u64) -> Event {
    let body = EventBody::JobTimedOut {
        ring: Some(ring.into()),
        job: key(id),
        pasid: None,
    };
    ev(t, body)
}

/// Pushes `events` in time order; (incidents closed by each push with its time, the rest at
/// `finish`).
fn feed(mut events: Vec<Event>) -> (Vec<(u64, Incident)>, Vec<Incident>) {
    events.sort_by_key(|e| e.t_ns);
    let mut c = Correlator::new(Config::default());
    let mut closed = Vec::new();
    for e in events {
        let t = e.t_ns;
        closed.extend(c.push(e).into_iter().map(|i| (t, i)));
    }
    (closed, c.finish())
}

fn says_stall(inc: &Incident) {
    let stalled = inc
        .evidence
        .iter()
        .filter(|e| e.what.contains("stalled"))
        .count();
    assert_eq!(stalled, 1, "one stall evidence entry: {:#?}", inc.evidence);
    assert!(inc.reasoning.contains("S1"), "{}", inc.reasoning);
}

/// The kernel later times out on the stalled ring: one incident, kind ring_timeout, the stall
/// as evidence.
#[test]
fn stall_merges_into_the_later_timeout() {
    let mut v = stalled_job();
    v.extend(stall_reports(13, 19));
    v.push(timed_out(20 * S, COMP, 7));
    let (closed, rest) = feed(v);
    let all: Vec<&Incident> = closed.iter().map(|(_, i)| i).chain(&rest).collect();
    assert_eq!(all.len(), 1, "{all:#?}");
    let inc = all[0];
    assert_eq!(inc.kind, IncidentKind::RingTimeout);
    assert_eq!(inc.ring.as_deref(), Some(COMP));
    assert_eq!(inc.culprit.as_ref().map(|c| c.pid), Some(4100));
    assert_eq!(inc.started_ns, 13 * S, "the stall opened it");
    says_stall(inc);
}

/// A timeout on another ring is another hang: it does not absorb the stall.
#[test]
fn stall_does_not_merge_with_another_rings_timeout() {
    let mut v = stalled_job();
    v.extend(stall_reports(13, 14));
    v.push(timed_out(15 * S, "gfx_0.0.0", 99));
    let (closed, rest) = feed(v);
    let mut kinds: Vec<IncidentKind> = closed.iter().map(|(_, i)| i.kind).collect();
    kinds.extend(rest.iter().map(|i| i.kind));
    kinds.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(kinds, vec![IncidentKind::RingTimeout, IncidentKind::Stall]);
}

/// The kernel never times out: the stall is the only incident, names the submitter, and
/// closes `settle_ns` after the last report.
#[test]
fn stall_without_timeout_is_its_own_incident() {
    let mut v = stalled_job();
    v.extend(stall_reports(13, 40));
    let settle = Config::default().settle_ns;
    // An unrelated event after the reports stop drives the clock past the settle time.
    let late = 40 * S + settle + MS;
    v.push(ev(late, EventBody::JobDone { job: key(12345) }));
    let (closed, rest) = feed(v);
    assert!(rest.is_empty(), "{rest:#?}");
    assert_eq!(closed.len(), 1, "{closed:#?}");
    let (t, inc) = &closed[0];
    assert_eq!(*t, late);
    assert_eq!(inc.kind, IncidentKind::Stall);
    assert_eq!(inc.ring.as_deref(), Some(COMP));
    let culprit = inc.culprit.as_ref().map(|c| (c.pid, c.comm.as_str()));
    assert_eq!(culprit, Some((4100, "hipper")));
    assert_eq!(inc.confidence, Confidence::Likely);
    assert!(inc.kernel_blamed.is_none());
    assert_eq!(inc.ended_ns, 40 * S);
    says_stall(inc);
    assert!(inc
        .jobs
        .iter()
        .any(|j| j.pid == 4100 && j.state == crate::incident::JobState::InFlight));
    let text = crate::render::text::render(inc);
    assert!(
        text.contains("ring stall on GPU 0000:03:00.0 ring comp_1.0.0"),
        "{text}"
    );
    assert!(text.contains("hipper"), "{text}");
    let md = crate::render::markdown::render(inc);
    assert!(md.contains("**Kind:** ring stall"), "{md}");
    assert!(md.contains("Rule S1"), "{md}");
    let json = serde_json::to_value(inc).unwrap_or_default();
    assert_eq!(json["kind"], "stall");
}

/// The stalled job finishes: the stall incident closes at that completion.
#[test]
fn stall_closes_when_its_job_finishes() {
    let mut v = stalled_job();
    v.extend(stall_reports(13, 15));
    let done = EventBody::HwFenceSignaled {
        ring: COMP.into(),
        context: 1,
        seqno: 2,
    };
    v.push(ev(15 * S + 500 * MS, done));
    let (closed, rest) = feed(v);
    assert!(rest.is_empty(), "{rest:#?}");
    assert_eq!(closed.len(), 1, "{closed:#?}");
    assert_eq!(closed[0].0, 15 * S + 500 * MS);
    assert_eq!(closed[0].1.kind, IncidentKind::Stall);
    says_stall(&closed[0].1);
}

/// Pushes the stall poll's reports at `t`; the ones announced for the first time.
fn poll(c: &mut Correlator, t: u64) -> Vec<Event> {
    let mut first = Vec::new();
    for (ev, new) in c.stall_reports(t) {
        if new {
            first.push(ev.clone());
        }
        assert!(c.push(ev).is_empty());
    }
    first
}

/// The poll itself: nothing before `stall_after`, then a report naming the submitter of the
/// oldest unfinished job, announced once. The job never finishes: the stall closes at `finish`.
#[test]
fn poll_reports_the_oldest_unfinished_job_once_past_stall_after() {
    let mut c = Correlator::new(Config::default());
    for e in stalled_job() {
        c.push(e);
    }
    let after = Config::default().stall_after_ns;
    let since = 10 * S + 10;
    assert!(poll(&mut c, since + after - MS).is_empty());
    let first = poll(&mut c, since + after);
    assert_eq!(first.len(), 1, "{first:#?}");
    match &first[0].body {
        EventBody::RingStall {
            ring,
            task,
            running_since_ns,
            ..
        } => {
            assert_eq!((ring.as_str(), task.pid), (COMP, 4100));
            assert_eq!(*running_since_ns, since);
        }
        other => panic!("not a stall report: {other:?}"),
    }
    assert!(poll(&mut c, since + after + S).is_empty(), "announced once");
    let rest = c.finish();
    assert_eq!(rest.len(), 1, "{rest:#?}");
    assert_eq!(rest[0].kind, IncidentKind::Stall);
    assert_eq!(rest[0].culprit.as_ref().map(|c| c.pid), Some(4100));
}

/// `stall_after_ns = 0` turns the poll off.
#[test]
fn poll_is_off_with_stall_after_zero() {
    let config = Config {
        stall_after_ns: 0,
        ..Config::default()
    };
    let mut c = Correlator::new(config);
    for e in stalled_job() {
        c.push(e);
    }
    assert!(c.stall_reports(100 * S).is_empty());
    assert!(c.finish().is_empty());
}
