//! The busy desktop: four clients draw on gfx at 60 Hz (and copy on sdma); one client's job
//! faults and wedges gfx; every client keeps queueing frames until the kernel's timeout, far
//! more than the flight recorder's depth; the kernel blames another client's job. The faulter
//! must stay the culprit (rule T3) and the kernel's blame disputed: queued jobs are not
//! progress (rule R1), and the recorder never forgets the unfinished.
use super::{Config, Correlator};
use crate::incident::{Confidence, Incident};
use crate::model::*;

const MS: u64 = 1_000_000;
const S: u64 = 1_000 * MS;
const GPU: &str = "0000:03:00.0";
const GFX: &str = "gfx_0.0.0";
const SDMA: &str = "sdma0";
/// One frame at 60 Hz.
const FRAME: u64 = 16_666_667;
const CLIENTS: [(u32, &str, u32); 4] = [
    (101, "kwin_wayland", 201),
    (102, "faulter", 202),
    (103, "Xwayland", 203),
    (104, "firefox", 204),
];
const FAULTER: usize = 1;
const BLAMED: usize = 2;

fn ev(t: u64, body: EventBody) -> Event {
    super::testev::on(GPU, t, Source::Ebpf, body)
}

fn key(id: u64) -> JobKey {
    super::testev::job_id(id)
}

/// Builds the stream: job ids and hardware seqnos count up per ring.
#[derive(Default)]
struct Desk {
    v: Vec<Event>,
    id: u64,
    hw: u64,
}

impl Desk {
    fn submit(&mut self, t: u64, client: usize, ring: &str) -> u64 {
        let (pid, comm, _) = CLIENTS[client];
        self.id += 1;
        self.v.push(ev(
            t,
            EventBody::Submit {
                task: Task::new(pid, pid, comm),
                ring: ring.into(),
                job: key(self.id),
                num_ibs: 1,
            },
        ));
        self.id
    }

    /// Submitted at `t`, run at once; its fence signals at `done` (never when `None`).
    fn ran(&mut self, t: u64, client: usize, ring: &str, done: Option<u64>) -> u64 {
        let id = self.submit(t, client, ring);
        let worker = if ring == GFX { 900 } else { 901 };
        self.hw += 1;
        let bodies = [
            EventBody::VmGrabId {
                ring: ring.into(),
                pasid: CLIENTS[client].2,
                vmid: 3,
                worker_tid: worker,
            },
            EventBody::RunJob {
                ring: ring.into(),
                job: key(id),
                worker_tid: worker,
            },
            EventBody::HwFenceEmitted {
                ring: ring.into(),
                context: 1,
                seqno: self.hw,
                emitter_tid: worker,
            },
        ];
        for (i, b) in bodies.into_iter().enumerate() {
            self.v.push(ev(t + 10 * (i as u64 + 1), b));
        }
        if let Some(d) = done {
            let seqno = self.hw;
            let signal = EventBody::HwFenceSignaled {
                ring: ring.into(),
                context: 1,
                seqno,
            };
            self.v.push(ev(d, signal));
        }
        id
    }
}

/// The busy desktop with a gfx timeout of `timeout_ns`; the incidents and the correlator.
fn busy_desktop(timeout_ns: u64) -> (Vec<Incident>, Correlator) {
    let mut d = Desk::default();
    for (pid, comm, pasid) in CLIENTS {
        let body = EventBody::ProcessInfo {
            pid,
            comm: comm.into(),
            exe: Some(format!("/usr/bin/{comm}")),
            pasids: vec![pasid],
            client_ids: vec![],
        };
        d.v.push(ev(1, body));
    }
    // One healthy second: every frame of every client runs and completes within 2 ms.
    let start = 10 * S;
    let mut t = start;
    while t < start + S {
        for c in 0..CLIENTS.len() {
            let at = t + c as u64 * 100_000;
            d.ran(at, c, GFX, Some(at + 2 * MS));
        }
        d.ran(t, 0, SDMA, Some(t + MS));
        t += FRAME;
    }
    // The faulter's frame runs and faults; the blamed client's frame runs right behind it.
    // Neither ever completes: gfx is wedged.
    let wedge = t;
    d.ran(wedge, FAULTER, GFX, None);
    d.v.push(ev(
        wedge + MS,
        EventBody::VmFault(fault(CLIENTS[FAULTER].2)),
    ));
    let hung = d.ran(wedge + 2 * MS, BLAMED, GFX, None);
    // Everyone keeps queueing frames on gfx (none runs) and sdma keeps completing copies.
    let timeout = wedge + timeout_ns;
    let mut t = wedge + FRAME;
    while t < timeout {
        for c in 0..CLIENTS.len() {
            d.submit(t + c as u64 * 100_000, c, GFX);
        }
        d.ran(t, 0, SDMA, Some(t + MS));
        t += FRAME;
    }
    let blamed = CLIENTS[BLAMED];
    d.v.push(ev(
        timeout,
        EventBody::JobTimedOut {
            ring: Some(GFX.into()),
            job: key(hung),
            pasid: Some(blamed.2),
        },
    ));
    d.v.push(ev(
        timeout + MS,
        EventBody::ResetBegin {
            job: Some(key(hung)),
            pasid: Some(blamed.2),
            ring: Some(GFX.into()),
            reset_source: Some(1),
        },
    ));
    d.v.push(ev(timeout + 300 * MS, EventBody::ResetEnd { result: 0 }));
    d.v.sort_by_key(|e| e.t_ns);
    let mut c = Correlator::new(Config::default());
    let mut out = Vec::new();
    for e in d.v {
        out.extend(c.push(e));
    }
    out.extend(c.finish());
    (out, c)
}

fn fault(pasid: u32) -> FaultInfo {
    FaultInfo {
        hub: "gfxhub".into(),
        pasid,
        vmid: 3,
        src_id: Some(146),
        ring_id: Some(0),
        address: Some(0x7f00_0000_0000),
        retry: None,
        write: None,
        client: None,
        status: None,
        status_fields: vec![],
    }
}

/// The faulter is the culprit for certain, the kernel's blame of the other client disputed.
#[track_caller]
fn assert_faulter_blamed(incs: &[Incident], c: &Correlator) {
    assert_eq!(incs.len(), 1, "{incs:#?}");
    let inc = &incs[0];
    let (f_pid, f_comm, _) = CLIENTS[FAULTER];
    let culprit = inc.culprit.as_ref().map(|p| (p.pid, p.comm.as_str()));
    assert_eq!(culprit, Some((f_pid, f_comm)), "{}", inc.reasoning);
    assert_eq!(inc.confidence, Confidence::Certain, "{}", inc.reasoning);
    assert!(inc.reasoning.contains("Rule T3"), "{}", inc.reasoning);
    assert_eq!(
        inc.kernel_blamed.as_ref().map(|k| k.pid),
        Some(CLIENTS[BLAMED].0)
    );
    assert!(inc.kernel_blame_disputed);
    assert!(inc.victims.iter().any(|v| v.pid == CLIENTS[BLAMED].0));
    // Far more jobs queued on gfx than the recorder's depth, and none refused.
    let kept = c.recorder.ring_len(GFX);
    assert!(kept > Config::default().ring_depth, "{kept} gfx jobs kept");
    assert!(c.stats().ring_jobs_refused.is_empty());
}

/// The simulator's 2 s gfx timeout: 480 frames queue behind the wedged job.
#[test]
fn busy_desktop_faulter_is_culprit_with_2s_timeout() {
    let (incs, c) = busy_desktop(2 * S);
    assert_faulter_blamed(&incs, &c);
}

/// The real 10 s gfx timeout: 2 400 frames queue behind the wedged job.
#[test]
fn busy_desktop_faulter_is_culprit_with_10s_timeout() {
    let (incs, c) = busy_desktop(10 * S);
    assert_faulter_blamed(&incs, &c);
    assert!(c.recorder.ring_len(GFX) >= 2_400);
}

/// The report's jobs table keeps where the ring stopped: the jobs that ran last (the faulter's
/// and the blamed client's) and a few of the thousands queued behind them, counted.
#[test]
fn busy_desktop_jobs_table_shows_where_the_ring_stopped() {
    let (incs, _) = busy_desktop(10 * S);
    let md = crate::render::markdown::jobs_table(&incs[0]);
    assert!(md.contains("| ` faulter `[102] |"), "{md}");
    assert!(md.contains("| ` Xwayland `[103] |"), "{md}");
    assert!(
        md.contains("more jobs queued behind them never ran"),
        "{md}"
    );
    assert!(md.contains("earlier jobs are in incident.json"), "{md}");
}
