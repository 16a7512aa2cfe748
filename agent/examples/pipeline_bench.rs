//! Userspace cost per probe event on this machine (native, not emulated): ring-buffer bytes
//! shaped like the 6.1 probes' records for a busy desktop (three processes, gfx + compute,
//! eight events per submission) through the same `Decoder` + `Correlator` path `hangwatch run`
//! uses. The VM bench measures the whole system under TCG, where the agent's userspace competes
//! with the submitter for emulated CPUs; this isolates the part we control.
//! Then the correlator's worst cases for its bounded tables, each in a child process so each
//! peak RSS is its own: per-event cost with 100 k known PASIDs, 200 k distinct pids, and a
//! flood of 4 M refusals (-ECANCELED) after a reset.
//! Run: `cargo run --release -p agent --example pipeline_bench -- [--submissions N] [--case C]`.
mod common;

use std::time::{Duration, Instant};

use agent_common::{kind, FenceSlots, GrabSlots, JobSlots, RawEvent};
use hangwatch::decode::Decoder;
use hangwatch_core::correlate::{Config, Correlator};
use hangwatch_core::model::{Clock, Event, EventBody, JobKey, KmsgKind, KmsgRecord, Source, Task};

fn name<const N: usize>(s: &str) -> [u8; N] {
    let mut b = [0u8; N];
    let n = s.len().min(N - 1);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

fn bytes(r: &RawEvent) -> Vec<u8> {
    // SAFETY: RawEvent is #[repr(C)] plain data; we copy its bytes as the ring buffer holds them.
    unsafe {
        std::slice::from_raw_parts(
            r as *const RawEvent as *const u8,
            std::mem::size_of::<RawEvent>(),
        )
    }
    .to_vec()
}

/// The eight records one submission produces on 6.1, in kernel order.
fn submission(n: u64, t: u64) -> Vec<RawEvent> {
    let procs = [
        (6518u32, "Xwayland", 32770u32),
        (7587, "zed", 32771),
        (4242, "gnome-shell", 32772),
    ];
    let (pid, comm, pasid) = procs[(n % 3) as usize];
    let compute = n.is_multiple_of(7);
    let ring = if compute { "comp_1.0.0" } else { "gfx_0.0.0" };
    let worker = if compute { 901 } else { 900 };
    let hw_ctx = if compute { 6 } else { 5 };
    let ptr = 0xffff_8880_0000_0000u64 + n * 0x100;
    let base = |k: u32, dt: u64, tgid: u32, tid: u32, c: &str| {
        let mut r = RawEvent::zeroed();
        r.kind = k;
        r.ts_ns = t + dt;
        r.tgid = tgid;
        r.tid = tid;
        r.comm = name(c);
        r.ring = name(ring);
        r
    };
    let mut v = Vec::with_capacity(8);
    let job = |e: &mut RawEvent, ctx: Option<u64>, id: Option<u64>, fence: Option<u64>| {
        if let Some(c) = ctx {
            e.set(JobSlots::CONTEXT, c);
            e.set(JobSlots::SEQNO, n);
        }
        if let Some(id) = id {
            e.set(JobSlots::JOB_ID, id);
        }
        if let Some(f) = fence {
            e.set(JobSlots::FENCE, f);
        }
    };
    let mut e = base(kind::CS_IOCTL, 0, pid, pid, comm);
    job(&mut e, Some(1000 + (n % 3)), Some(n), None);
    e.set(JobSlots::NUM_IBS, 1);
    v.push(e);
    let mut e = base(kind::SCHED_QUEUE, 1_000, pid, pid, comm);
    job(&mut e, None, Some(n), Some(ptr));
    v.push(e);
    let mut e = base(kind::VM_GRAB_ID, 20_000, 0, worker, "kworker");
    e.set(GrabSlots::PASID, pasid as u64);
    e.set(GrabSlots::VMID, 7);
    v.push(e);
    let mut e = base(kind::SCHED_RUN_JOB, 21_000, 0, worker, "kworker");
    job(&mut e, Some(1000 + (n % 3)), Some(n), None);
    v.push(e);
    let mut e = base(kind::SCHED_RUN, 21_500, 0, worker, "kworker");
    job(&mut e, None, Some(n), Some(ptr));
    v.push(e);
    let mut e = base(kind::FENCE_INIT, 22_000, 0, worker, "kworker");
    e.set(FenceSlots::CONTEXT, hw_ctx);
    e.set(FenceSlots::SEQNO, n);
    v.push(e);
    let mut e = base(kind::FENCE_SIGNALED, 300_000, 0, 0, "swapper/0");
    e.set(FenceSlots::CONTEXT, hw_ctx);
    e.set(FenceSlots::SEQNO, n);
    v.push(e);
    let mut e = base(kind::SCHED_DONE, 301_000, 0, 0, "swapper/0");
    job(&mut e, None, None, Some(ptr));
    v.push(e);
    v
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(case) = args
        .iter()
        .position(|a| a == "--case")
        .and_then(|i| args.get(i + 1))
    {
        return worst_case(case);
    }
    pipeline(&args);
    // Each worst case in its own process, so its peak RSS is not the pipeline's.
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    for case in ["pasids", "pids", "refusals"] {
        match std::process::Command::new(&me)
            .args(["--case", case])
            .output()
        {
            Ok(o) => print!("{}", String::from_utf8_lossy(&o.stdout)),
            Err(e) => println!("{case}: cannot run: {e}"),
        }
    }
}

fn pipeline(args: &[String]) {
    let n: u64 = args
        .iter()
        .position(|a| a == "--submissions")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    // Pre-encode so the timing covers decode + correlate, not the generator. Events are
    // generated in chunks to keep the generator's own memory out of the RSS figure.
    let mut dec = Decoder::default();
    let mut corr = Correlator::new(Config::default());
    let mut incidents = 0usize;
    let mut events = 0u64;
    let mut busy = std::time::Duration::ZERO;
    let chunk = 10_000u64;
    let mut i = 0;
    while i < n {
        let recs: Vec<Vec<u8>> = (i..(i + chunk).min(n))
            .flat_map(|k| submission(k, 1_000_000_000 + k * 50_000))
            .map(|r| bytes(&r))
            .collect();
        let t = Instant::now();
        for b in &recs {
            if let Some(ev) = dec.decode_bytes(b) {
                incidents += corr.push(ev).len();
            }
        }
        busy += t.elapsed();
        events += recs.len() as u64;
        i += chunk;
    }
    let ns_ev = busy.as_nanos() as f64 / events as f64;
    println!(
        "{n} submissions, {events} events: {ns_ev:.0} ns/event, {:.0} ns/submission (8 events), {:.2} M events/s on one core, {incidents} incidents, peak RSS {} MiB",
        ns_ev * 8.0,
        1e3 / ns_ev,
        common::peak_rss_kib() / 1024
    );
}

fn ev(t_ns: u64, body: EventBody) -> Event {
    Event {
        t_ns,
        clock: Clock::Monotonic,
        source: Source::Ebpf,
        gpu: None,
        body,
    }
}

/// One submission as the correlator sees it (submit, run, fence emitted, fence signaled).
fn job_events(t: u64, pid: u32, n: u64, out: &mut Vec<Event>) {
    let ring = "gfx_0.0.0".to_string();
    let key = JobKey {
        sched_job_id: Some(n),
        ..JobKey::default()
    };
    out.push(ev(
        t,
        EventBody::Submit {
            task: Task::new(pid, pid, "client"),
            ring: ring.clone(),
            job: key,
            num_ibs: 1,
        },
    ));
    out.push(ev(
        t + 10_000,
        EventBody::RunJob {
            ring: ring.clone(),
            job: key,
            worker_tid: 900,
        },
    ));
    out.push(ev(
        t + 11_000,
        EventBody::HwFenceEmitted {
            ring: ring.clone(),
            context: 5,
            seqno: n,
            emitter_tid: 900,
        },
    ));
    out.push(ev(
        t + 300_000,
        EventBody::HwFenceSignaled {
            ring,
            context: 5,
            seqno: n,
        },
    ));
}

/// Feeds `events`; returns the time spent in `push`.
fn feed(corr: &mut Correlator, events: Vec<Event>) -> Duration {
    let t = Instant::now();
    for e in events {
        corr.push(e);
    }
    t.elapsed()
}

/// Feeds `n` generated submissions in chunks (the generator's memory stays out of the peak
/// RSS); returns the time spent in `push` and the number of events.
fn feed_jobs(corr: &mut Correlator, n: u64, pid_of: impl Fn(u64) -> u32) -> (Duration, u64) {
    let (mut busy, mut events) = (Duration::ZERO, 0);
    let mut k = 0;
    while k < n {
        let mut v = Vec::new();
        for j in k..(k + 10_000).min(n) {
            job_events(1_000_000_000 + j * 50_000, pid_of(j), j, &mut v);
        }
        events += v.len() as u64;
        busy += feed(corr, v);
        k += 10_000;
    }
    (busy, events)
}

fn worst_case(case: &str) {
    let mut corr = Correlator::new(Config::default());
    match case {
        // 100 k PASIDs known (1000 processes with 100 each), then ordinary traffic.
        "pasids" => {
            let mut setup = Vec::new();
            for p in 0..100_000u32 {
                setup.push(ev(
                    1_000 + u64::from(p),
                    EventBody::PasidAllocated {
                        pasid: 1 + p,
                        task: Task::new(1000 + p / 100, 1000 + p / 100, "client"),
                    },
                ));
            }
            feed(&mut corr, setup);
            let (busy, events) = feed_jobs(&mut corr, 200_000, |k| 1000 + (k % 1000) as u32);
            let events = events as f64;
            println!(
                "100k known PASIDs: {:.0} ns/event over {events} events, peak RSS {} MiB",
                busy.as_nanos() as f64 / events,
                common::peak_rss_kib() / 1024
            );
        }
        // 200 k distinct processes each submitting once.
        "pids" => {
            let (busy, events) = feed_jobs(&mut corr, 200_000, |k| 10 + k as u32);
            let events = events as f64;
            println!(
                "200k pids: {:.2} s total, {:.0} ns/event over {events} events, peak RSS {} MiB",
                busy.as_secs_f64(),
                busy.as_nanos() as f64 / events,
                common::peak_rss_kib() / 1024
            );
        }
        // A timeout and reset, then 4 M refused submissions 1 ms apart (over an hour).
        "refusals" => {
            let t0 = 1_000_000_000u64;
            let kmsg = |t: u64, kind: KmsgKind| Event {
                t_ns: t,
                clock: Clock::Monotonic,
                source: Source::Kmsg,
                gpu: Some("0000:03:00.0".into()),
                body: EventBody::Kmsg(KmsgRecord {
                    kind,
                    lines: vec![],
                }),
            };
            let mut closed_at = None;
            let mut n_closed = 0;
            let t = Instant::now();
            let pre = [
                kmsg(
                    t0,
                    KmsgKind::RingTimeout {
                        ring: "gfx_0.0.0".into(),
                        signaled: Some(1),
                        emitted: Some(2),
                        task: Some(Task::new(42, 42, "victim")),
                    },
                ),
                kmsg(t0 + 1_000, KmsgKind::ResetBegin { source: Some(1) }),
                kmsg(
                    t0 + 2_000_000,
                    KmsgKind::ResetResult {
                        ok: true,
                        counter: Some(1),
                        error: None,
                    },
                ),
            ];
            for e in pre {
                n_closed += corr.push(e).len();
            }
            let n = 4_000_000u64;
            for k in 0..n {
                let at = t0 + 3_000_000 + k * 1_000_000;
                let out = corr.push(ev(
                    at,
                    EventBody::SubmitRejected {
                        task: Task::new(42, 42, "victim"),
                        errno: -125,
                    },
                ));
                if !out.is_empty() && closed_at.is_none() {
                    closed_at = Some(at - t0);
                }
                n_closed += out.len();
            }
            n_closed += corr.finish().len();
            println!(
                "4M refusals after a reset: {:.2} s, {n_closed} incident(s), first closed {}, peak RSS {} MiB",
                t.elapsed().as_secs_f64(),
                closed_at.map_or("only at the end of input".to_string(), |ns| format!(
                    "{:.1} s after the timeout",
                    ns as f64 / 1e9
                )),
                common::peak_rss_kib() / 1024
            );
        }
        other => println!("unknown case {other}: pasids, pids or refusals"),
    }
}
