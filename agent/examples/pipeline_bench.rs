//! Userspace cost per probe event on this machine (native, not emulated): ring-buffer bytes
//! shaped like the 6.1 probes' records for a busy desktop (three processes, gfx + compute,
//! eight events per submission) through the same `Decoder` + `Correlator` path `hangwatch run`
//! uses. The VM bench measures the whole system under TCG, where the agent's userspace competes
//! with the submitter for emulated CPUs; this isolates the part we control.
//! Run: `cargo run --release -p agent --example pipeline_bench -- [--submissions N]`.
mod common;

use std::time::Instant;

use agent_common::{kind, FenceSlots, GrabSlots, JobSlots, RawEvent};
use hangwatch::correlate::{Config, Correlator};
use hangwatch::decode::Decoder;

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
