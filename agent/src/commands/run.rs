//! `hangwatch run`: attach every available probe, read the ring buffer and `/dev/kmsg`, feed
//! the correlator and print incidents as they close. Clean shutdown on SIGINT/SIGTERM or
//! after `--duration`: detach, flush, print the remaining incidents and a stats line.
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, SignalKind};

use crate::control::{Request, Response, DEFAULT_SOCKET};
use crate::correlate::{Config, Correlator};
use crate::decode::{kind_name, Decoder};
use crate::devices;
use crate::incident::Incident;
use crate::kmsg::{parse_dev_kmsg_record, KmsgAssembler};
use crate::model::{Clock, Event, EventBody, Source};
use crate::probes::{self, AttachOptions, Host, Status};
use crate::procscan::{self, SeenCache};
use crate::report::incident_dir::{Extras, IncidentDir, Retention};
use crate::report::procinfo::capture_process_maps;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print each incident as one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write one incident directory per incident under DIR.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Jobs kept per ring in the flight recorder.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub ring_depth: usize,
    /// Stop after SECS seconds (default: until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
    /// eBPF ring buffer size in KiB (rounded up to a power of two).
    #[arg(long, value_name = "KIB", default_value_t = 4096)]
    pub ring_kib: u32,
    /// Control socket for `hangwatch export` (job history of the flight recorder).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Do not open the control socket.
    #[arg(long)]
    pub no_socket: bool,
}

/// A pending kernel-log record (a page fault or ring timeout waiting for its continuation
/// lines) is emitted after this much kmsg silence, so a live incident does not wait for the
/// next unrelated amdgpu line.
const KMSG_QUIET_NS: u64 = 500_000_000;

/// A control-socket request handed from the socket thread to the event loop, which owns the
/// correlator, with the channel for the answer.
type ControlCall = (Request, std::sync::mpsc::SyncSender<Response>);

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns` and (close to) of kmsg stamps.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Reads `/dev/kmsg` from its current end on a thread (reads block) and forwards records.
/// Returns false when it cannot be opened.
fn spawn_kmsg(tx: tokio::sync::mpsc::Sender<Result<String, u64>>) -> bool {
    let Ok(mut f) = std::fs::File::open("/dev/kmsg") else {
        return false;
    };
    if f.seek(SeekFrom::End(0)).is_err() {
        return false;
    }
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 8192];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if tx.blocking_send(Ok(rec)).is_err() {
                        break;
                    }
                }
                // EPIPE: records were overwritten before we read them.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                    if tx.blocking_send(Err(1)).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    true
}

/// Output sink for incidents.
struct Sink {
    json: bool,
    dir: Option<IncidentDir>,
    count: usize,
}

/// GPU driver libraries of the incident's culprit and victims: from the first-sight capture
/// (the process may have exited since), else read now if the process is still alive.
fn extras_for(inc: &Incident, seen: &SeenCache) -> Extras {
    let mut pids: Vec<u32> = inc.culprit.iter().map(|c| c.pid).collect();
    for v in &inc.victims {
        if !pids.contains(&v.pid) {
            pids.push(v.pid);
        }
    }
    for c in inc.compute.iter().flat_map(|c| &c.candidates) {
        if !pids.contains(&c.pid) {
            pids.push(c.pid);
        }
    }
    let process_maps = pids
        .into_iter()
        .filter(|p| *p != 0)
        .filter_map(|pid| match seen.driver_maps(pid) {
            Some(m) => Some((pid, m.to_vec())),
            None => capture_process_maps(pid).ok().map(|m| (pid, m)),
        })
        .collect();
    Extras { process_maps }
}

impl Sink {
    fn emit(&mut self, incidents: Vec<Incident>, seen: &SeenCache) {
        for inc in incidents {
            self.count += 1;
            if self.json {
                match serde_json::to_string(&inc) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("hangwatch: cannot serialise incident {}: {e}", inc.id),
                }
            } else {
                print!("{}", crate::report::text::render(&inc));
            }
            if let Some(d) = self.dir.as_mut() {
                match d.write(&inc, &extras_for(&inc, seen)) {
                    Ok(p) => eprintln!("hangwatch: incident written to {}", p.display()),
                    Err(e) => eprintln!("hangwatch: cannot write incident {}: {e:#}", inc.id),
                }
            }
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("hangwatch run needs root (CAP_BPF + CAP_PERFMON): run it with sudo");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

/// Everything the event loop mutates.
struct State {
    corr: Correlator,
    decoder: Decoder,
    seen: SeenCache,
    seen_map: Option<BpfHashMap<MapData, u32, u8>>,
    sink: Sink,
    /// Which GPU each probe event is on (devices.rs).
    labeler: devices::Labeler,
    kmsg_events: u64,
    /// Raw /dev/kmsg records read (recognised or not).
    kmsg_lines: u64,
    user_drops: u64,
}

impl State {
    fn push(&mut self, ev: Event) {
        let out = self.corr.push(ev);
        self.sink.emit(out, &self.seen);
    }

    fn emit(&mut self, out: Vec<Incident>) {
        self.sink.emit(out, &self.seen);
    }

    /// A compute-source event (crate::kfd): a queue's owner is seen like a submitter (its
    /// exe and ROCm libraries are captured while it lives).
    fn compute_event(&mut self, ev: Event) {
        if let EventBody::QueueCreated(q) = &ev.body {
            if let Some(info) = self
                .seen
                .first_sight(Path::new("/proc"), q.task.pid, ev.t_ns)
            {
                self.push(info);
            }
        }
        self.push(ev);
    }

    /// A probe event: first time a submitter is seen, record its exe/comm (it may be gone by
    /// the time an incident is written) and let the exit probe watch it.
    fn probe_event(&mut self, mut ev: Event) {
        self.labeler.label(&mut ev);
        let pid = match &ev.body {
            EventBody::Submit { task, .. }
            | EventBody::SchedQueued { task, .. }
            | EventBody::SubmitRejected { task, .. } => task.pid,
            EventBody::QueueCreated(q) => q.task.pid,
            EventBody::UserqFence(f) => f.task.pid,
            _ => 0,
        };
        if pid != 0 {
            if let Some(info) = self.seen.first_sight(Path::new("/proc"), pid, ev.t_ns) {
                if let Some(m) = self.seen_map.as_mut() {
                    let _ = m.insert(pid, 1, 0);
                }
                self.push(info);
            }
        }
        self.push(ev);
    }
}

async fn run_async(args: Args) -> anyhow::Result<u8> {
    let host = Host::detect();
    let mut a = probes::assess(&host);
    let gpus = devices::discover(Path::new("/sys"));
    let plan = devices::plan(&a, &gpus);
    let opts = AttachOptions {
        ring_bytes: args.ring_kib.saturating_mul(1024),
        device_names: plan.needs_kernel_names(),
        ..Default::default()
    };
    let any = a.probes.iter().any(|p| p.status == Status::Available);
    let mut ebpf = if any {
        match probes::attach(&mut a, &opts) {
            Ok(e) => Some(e),
            Err(e) => {
                eprintln!("hangwatch: {e:#}; continuing with the kernel log only");
                None
            }
        }
    } else {
        None
    };
    for p in &a.probes {
        let what = match p.status {
            Status::Attached => "attached".to_string(),
            s => format!("{}: {}", s.as_str(), p.reason),
        };
        let note = if p.status == Status::Attached && !p.reason.is_empty() {
            format!(" ({})", p.reason)
        } else {
            String::new()
        };
        eprintln!("hangwatch: probe {}: {what}{note}", p.name);
    }
    let attached = a
        .probes
        .iter()
        .filter(|p| p.status == Status::Attached)
        .count();
    eprintln!("hangwatch: probes attached: {attached}/{}", a.probes.len());
    eprintln!("hangwatch: {}", plan.summary());

    let (ring, drops, seen_map) = match ebpf.as_mut() {
        Some(e) => (
            e.take_map("EVENTS").and_then(|m| RingBuf::try_from(m).ok()),
            e.take_map("DROPS")
                .and_then(|m| PerCpuArray::<MapData, u64>::try_from(m).ok()),
            e.take_map("SEEN_TGIDS")
                .and_then(|m| BpfHashMap::<MapData, u32, u8>::try_from(m).ok()),
        ),
        None => (None, None, None),
    };
    let mut ring = match ring {
        // SAFETY: the RingBuf owns its map fd and keeps it open until the AsyncFd is dropped.
        Some(r) => Some(
            unsafe { AsyncFd::register_with_interest(r, tokio::io::Interest::READABLE) }.map_err(
                |e| anyhow::anyhow!("cannot poll the ring buffer: {}", e.into_parts().1),
            )?,
        ),
        None => None,
    };

    let (ktx, mut krx) = tokio::sync::mpsc::channel(4096);
    let kmsg_on = spawn_kmsg(ktx);
    eprintln!(
        "hangwatch: kernel log: {}",
        if kmsg_on {
            "/dev/kmsg (from now on)"
        } else {
            "/dev/kmsg not readable"
        }
    );
    if attached == 0 && !kmsg_on {
        anyhow::bail!("nothing to observe: no probe attached and /dev/kmsg is not readable (run `hangwatch check`)");
    }

    // Compute queues without eBPF: /sys/class/kfd proc table and /dev/kfd SMI events.
    let (comp_tx, comp_rx) = std::sync::mpsc::sync_channel::<Event>(4096);
    let (kfd_status, kfd_counters) = crate::kfd::spawn(Path::new("/"), comp_tx);
    for line in kfd_status {
        eprintln!("hangwatch: {line}");
    }

    let dir = match &args.output {
        Some(p) => Some(IncidentDir::open(p, Retention::default())?),
        None => None,
    };
    let mut st = State {
        corr: Correlator::new(Config {
            ring_depth: args.ring_depth.max(1),
            ..Config::default()
        }),
        decoder: Decoder::default(),
        seen: SeenCache::new(4096),
        seen_map,
        sink: Sink {
            json: args.json,
            dir,
            count: 0,
        },
        labeler: devices::Labeler::new(&gpus, Path::new("/proc")),
        kmsg_events: 0,
        kmsg_lines: 0,
        user_drops: 0,
    };
    let mut asm = KmsgAssembler::new(Source::Kmsg);
    for ev in procscan::scan(Path::new("/proc"), monotonic_ns()) {
        if let EventBody::ProcessInfo { pid, .. } = &ev.body {
            // Already described by the scan: mark seen (and keep its driver mappings) so the
            // first submission does not describe it again.
            let _ = st.seen.first_sight(Path::new("/proc"), *pid, 0);
            if let Some(m) = st.seen_map.as_mut() {
                let _ = m.insert(*pid, 1, 0);
            }
        }
        let mut ev = ev;
        st.labeler.label(&mut ev);
        st.push(ev);
    }

    // Loading parsed the kernel's BTF and format files (several MiB of short-lived heap); hand
    // those pages back so the long-running agent's resident size is its steady state.
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };

    let (ctx, mut crx) = tokio::sync::mpsc::channel::<ControlCall>(8);
    let _control = if args.no_socket {
        None
    } else {
        let handler = move |req: Request| {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let failed = |e: &str| Response {
                error: Some(e.to_string()),
                ..Default::default()
            };
            if ctx.blocking_send((req, tx)).is_err() {
                return failed("the agent is shutting down");
            }
            rx.recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| failed("the agent did not answer in 10 s"))
        };
        match crate::control::spawn_server(&args.socket, handler) {
            Ok(h) => {
                eprintln!("hangwatch: control socket: {}", args.socket.display());
                Some(h)
            }
            Err(e) => {
                // Export is a convenience; monitoring goes on without it.
                eprintln!("hangwatch: control socket disabled: {e:#} (`hangwatch export` will not reach this agent)");
                None
            }
        }
    };

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = args
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut drain_tick = tokio::time::interval(Duration::from_millis(100));
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut kernel_drops_seen = 0u64;
    let mut kmsg_open = kmsg_on;
    let mut last_kmsg_ns = 0u64;
    let mut control_open = _control.is_some();

    loop {
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let ring_ready = async {
            match ring.as_mut() {
                Some(r) => r.readable_mut().await.map(Some),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = until_deadline => break,
            g = ring_ready => {
                let mut g = match g { Ok(Some(g)) => g, Ok(None) => continue, Err(e) => return Err(e.into()) };
                if drain_ring(g.get_inner_mut(), &mut st) == 0 {
                    g.clear_ready();
                }
            }
            _ = drain_tick.tick() => {
                // Per-job events are submitted without a wakeup until 64 KiB wait (see
                // agent-ebpf submit_flags): collect the ones below that mark.
                if let Some(r) = ring.as_mut() {
                    while drain_ring(r.get_mut(), &mut st) > 0 {}
                }
                for ev in comp_rx.try_iter() {
                    st.compute_event(ev);
                }
            }
            rec = krx.recv(), if kmsg_open => {
                match rec {
                    Some(Ok(r)) => {
                        st.kmsg_lines += 1;
                        last_kmsg_ns = monotonic_ns();
                        if let Some((t, msg)) = parse_dev_kmsg_record(&r) {
                            for ev in asm.push_line(t, Clock::Monotonic, &msg) {
                                st.kmsg_events += 1;
                                st.push(ev);
                            }
                        }
                    }
                    Some(Err(n)) => { st.user_drops += n; st.corr.note_dropped(n); }
                    None => kmsg_open = false,
                }
            }
            call = crx.recv(), if control_open => {
                let Some((req, reply)) = call else {
                    control_open = false;
                    continue;
                };
                let resp = match req {
                    Request::Jobs { since_ns, until_ns } => Response {
                        jobs: st.corr.jobs_between(since_ns, until_ns),
                        evidence: st.corr.evidence_between(since_ns, until_ns),
                        error: None,
                    },
                };
                let _ = reply.send(resp);
            }
            _ = tick.tick() => {
                let now = monotonic_ns();
                if asm.has_pending() && now.saturating_sub(last_kmsg_ns) >= KMSG_QUIET_NS {
                    for ev in asm.flush() {
                        st.kmsg_events += 1;
                        st.push(ev);
                    }
                }
                let out = st.corr.advance(now);
                st.emit(out);
                if let Some(d) = drops.as_ref() {
                    let total = sum_drops(d);
                    if total > kernel_drops_seen {
                        st.corr.note_dropped(total - kernel_drops_seen);
                        eprintln!("hangwatch: {} events dropped (ring buffer full; try --ring-kib)", total - kernel_drops_seen);
                        kernel_drops_seen = total;
                    }
                }
            }
        }
    }

    // Detach the programs first (the ring buffer map stays open through `ring`), then read
    // what is still in it: per-job events are submitted without a wakeup, so up to 64 KiB may
    // be waiting, and losing them at shutdown would be silent data loss.
    drop(ebpf);
    if let Some(r) = ring.as_mut() {
        while drain_ring(r.get_mut(), &mut st) > 0 {}
    }
    drop(ring);
    for ev in asm.flush() {
        st.kmsg_events += 1;
        st.push(ev);
    }
    let out = st.corr.finish();
    st.emit(out);
    let kernel_drops = drops.as_ref().map(sum_drops).unwrap_or(kernel_drops_seen);
    let mut per_kind: Vec<String> = st
        .decoder
        .counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{}={n}", kind_name(k as u32)))
        .collect();
    if per_kind.is_empty() {
        per_kind.push("none".into());
    }
    eprintln!(
        "hangwatch: stats: probe events {} [{}]; kmsg lines {} (amdgpu records {}); incidents {}; dropped: kernel ring buffer {}, userspace {} (kmsg overruns {}, short records {})",
        st.decoder.counts.iter().sum::<u64>(),
        per_kind.join(" "),
        st.kmsg_lines,
        st.kmsg_events,
        st.sink.count,
        kernel_drops,
        st.user_drops + st.decoder.short,
        st.user_drops,
        st.decoder.short,
    );
    let lc = &st.labeler.counts;
    eprintln!(
        "hangwatch: device labels: kernel {}, join {}, fdinfo {}, only device {} ({} guessed); unlabelled {}",
        lc.kernel, lc.join, lc.fdinfo, lc.only_device, lc.guessed, lc.unlabelled
    );
    let cs = st.corr.stats();
    let mut rings: Vec<String> = cs
        .ring_jobs_seen
        .iter()
        .map(|(r, n)| {
            let ev = cs.ring_jobs_evicted.get(r).copied().unwrap_or(0);
            format!("{r} {n} jobs ({ev} rotated out)")
        })
        .collect();
    rings.sort();
    if rings.is_empty() {
        rings.push("no jobs seen".into());
    }
    eprintln!(
        "hangwatch: flight recorder: {}; unmatched scheduler/fence joins {}; process identities evicted {}",
        rings.join(", "),
        cs.unmatched_joins,
        cs.process_evictions,
    );
    eprintln!("hangwatch: {}", kfd_counters.line());
    Ok(0)
}

/// Decodes up to 4096 ring-buffer records into the correlator; returns how many were read
/// (bounded so kmsg, signals and the control socket get their turn during a flood).
fn drain_ring(rb: &mut RingBuf<MapData>, st: &mut State) -> usize {
    let mut read = 0;
    while read < 4096 {
        // Decode, then release the slot (the item's drop) before correlating.
        let Some(ev) = rb.next().map(|item| st.decoder.decode_bytes(&item)) else {
            break;
        };
        read += 1;
        if let Some(ev) = ev {
            st.probe_event(ev);
        }
    }
    read
}

fn sum_drops(d: &PerCpuArray<MapData, u64>) -> u64 {
    d.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0)
}
