//! Prometheus text exposition (format 0.0.4) of the running agent on `--metrics ADDR`.
//! The event loop updates a [`Metrics`] behind a mutex; a small HTTP thread renders it per
//! scrape. Process names are chosen by any local user, so label values are escaped per the
//! format and bounded: the first `max_comm_labels` distinct names get their own value, the rest
//! are folded into `_other` and counted (`hangwatch_comm_labels_overflow_total`).
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use hangwatch_core::identity::{short_id, ProcessIdentity};
use hangwatch_core::incident::{Incident, IncidentKind};

/// `hangwatch_device_needs_recovery` rows kept (GPUs × methods; the kernel has 3 methods).
const MAX_RECOVERY_ROWS: usize = 256;

/// `hangwatch_workload_incidents_total` rows kept; later workloads share one `_other` row.
pub const MAX_WORKLOAD_ROWS: usize = 256;
/// The label names of that family, the AMD Device Metrics Exporter's for the same things.
pub const WORKLOAD_LABELS: [&str; 6] = [
    "POD",
    "NAMESPACE",
    "CONTAINER",
    "JOB_ID",
    "JOB_USER",
    "HOSTNAME",
];

/// The label value for a process name past the cap.
pub const OTHER: &str = "_other";

/// Everything the exposition shows. Counters only grow; gauges are set on each tick.
#[derive(Debug, Default)]
pub struct Metrics {
    max_comms: usize,
    /// Names with their own label value, least recently seen first.
    comms: VecDeque<String>,
    comm_overflow: u64,
    /// (gpu, kind, ring, culprit comm, confidence) → incidents.
    incidents: BTreeMap<[String; 5], u64>,
    /// (gpu, kind) → incidents whose kernel message blamed another process than the evidence.
    misblames: BTreeMap<[String; 2], u64>,
    /// (gpu, outcome) → GPU resets seen in incidents.
    resets: BTreeMap<[String; 2], u64>,
    /// (gpu, method) → 1 while the GPU's latest incident said the device needs that recovery.
    needs_recovery: BTreeMap<[String; 2], u8>,
    /// gpu → reset loop incidents closed (the correlator's rule L2).
    reset_loops: BTreeMap<String, u64>,
    /// (gpu, kind, POD, NAMESPACE, CONTAINER, JOB_ID, JOB_USER, HOSTNAME) → incidents whose
    /// culprit ran in a container, pod or Slurm job (at most MAX_WORKLOAD_ROWS rows).
    workloads: BTreeMap<[String; 8], u64>,
    /// Incidents counted under the `_other` workload row.
    workload_overflow: u64,
    /// culprit comm → page faults reported by the kernel log.
    page_faults: BTreeMap<String, u64>,
    last_incident_unix: Option<f64>,
    start_unix: f64,
    // gauges / counters mirrored from the agent on every tick
    pub probe_events: BTreeMap<String, u64>,
    pub dropped: BTreeMap<&'static str, u64>,
    pub kmsg_records: u64,
    pub probes: BTreeMap<&'static str, u64>,
    pub recorder_jobs: BTreeMap<String, u64>,
    pub open_incidents: u64,
    /// The correlator's bounded-table and bookkeeping counters (`correlate::Stats`).
    pub correlator: BTreeMap<&'static str, u64>,
    /// The no-eBPF compute sources' counters (`kfd::Counters::values`).
    pub compute_sources: BTreeMap<&'static str, u64>,
    /// Live queues in the compute queue table.
    pub compute_queues: u64,
    /// gpu → resets counted by its reset loop under way (`Correlator::reset_loops_under_way`).
    pub reset_loop_resets: BTreeMap<String, u64>,
}

pub type Shared = Arc<Mutex<Metrics>>;

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// POD, NAMESPACE, CONTAINER, JOB_ID, JOB_USER of a culprit in a pod, container or Slurm job
/// (`None` otherwise). The cgroup gives a pod's uid, not its name or namespace: POD is the
/// uid and NAMESPACE stays empty. CONTAINER is the 12-digit short id.
fn workload_labels(id: &ProcessIdentity) -> Option<[String; 5]> {
    if id.pod.is_none() && id.container.is_none() && id.slurm.is_none() {
        return None;
    }
    let job = id.slurm.as_ref();
    Some([
        id.pod.as_ref().map(|p| p.uid.clone()).unwrap_or_default(),
        String::new(),
        id.container
            .as_ref()
            .map(|c| short_id(&c.id).to_string())
            .unwrap_or_default(),
        job.map(|j| j.job_id.to_string()).unwrap_or_default(),
        job.and_then(|j| j.user.clone()).unwrap_or_default(),
    ])
}

/// `ring_timeout`, `page_fault`, `gpu_reset`, `illegal_command`: the names incident.json uses.
fn kind_label(k: IncidentKind) -> String {
    k.name().replace(' ', "_").to_lowercase()
}

/// Escapes a label value per the text format (backslash, double quote and newline), after
/// control bytes are shown as `\xNN` (`escape::terminal`): scrapes end up on terminals too.
pub fn escape_label(v: &str) -> String {
    let v = hangwatch_core::escape::terminal(v);
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

impl Metrics {
    pub fn new(max_comm_labels: usize) -> Metrics {
        Metrics {
            max_comms: max_comm_labels,
            start_unix: unix_now(),
            ..Default::default()
        }
    }

    /// The label value for `comm`: itself. The `max_comms` most recently seen names keep a
    /// value; the least recent one past the cap is folded into `_other` (its counts move
    /// there, counted in the overflow), so early fillers cannot hide a later culprit.
    fn comm_label(&mut self, comm: &str) -> String {
        if let Some(i) = self.comms.iter().position(|c| c == comm) {
            let c = self.comms.remove(i).unwrap_or_default();
            self.comms.push_back(c);
            return comm.to_string();
        }
        if self.max_comms == 0 {
            self.comm_overflow += 1;
            return OTHER.to_string();
        }
        if self.comms.len() >= self.max_comms {
            if let Some(old) = self.comms.pop_front() {
                self.fold_into_other(&old);
            }
        }
        self.comms.push_back(comm.to_string());
        comm.to_string()
    }

    /// Moves every series labelled `comm` to `_other`.
    fn fold_into_other(&mut self, comm: &str) {
        self.comm_overflow += 1;
        let keys: Vec<[String; 5]> = self
            .incidents
            .keys()
            .filter(|k| k[3] == comm)
            .cloned()
            .collect();
        for k in keys {
            let n = self.incidents.remove(&k).unwrap_or(0);
            let mut to = k;
            to[3] = OTHER.to_string();
            *self.incidents.entry(to).or_default() += n;
        }
        if let Some(n) = self.page_faults.remove(comm) {
            *self.page_faults.entry(OTHER.to_string()).or_default() += n;
        }
    }

    /// Counts one closed incident.
    pub fn record_incident(&mut self, inc: &Incident) {
        let gpu = inc.gpu.clone().unwrap_or_default();
        if inc.kind == IncidentKind::ResetLoop {
            // Its resets were counted with their own incidents.
            *self.reset_loops.entry(gpu).or_default() += 1;
            self.last_incident_unix = Some(unix_now());
            return;
        }
        let kind = kind_label(inc.kind);
        let comm = match &inc.culprit {
            Some(c) => self.comm_label(&c.comm),
            None => String::new(),
        };
        let key = [
            gpu.clone(),
            kind.clone(),
            inc.ring.clone().unwrap_or_default(),
            comm,
            inc.confidence.name().to_string(),
        ];
        *self.incidents.entry(key).or_default() += 1;
        if inc.kernel_blame_disputed {
            *self.misblames.entry([gpu.clone(), kind]).or_default() += 1;
        }
        if let Some(r) = &inc.reset {
            *self
                .resets
                .entry([gpu.clone(), r.name().to_string()])
                .or_default() += 1;
        }
        self.note_recovery(&gpu, inc.needs_recovery.as_deref());
        self.note_workload(inc, &gpu);
        self.last_incident_unix = Some(unix_now());
    }

    /// Counts the incident under its culprit's workload, when it ran in one. The label set is
    /// bounded: past MAX_WORKLOAD_ROWS, new workloads share one row with `_other` values.
    fn note_workload(&mut self, inc: &Incident, gpu: &str) {
        let Some(id) = inc.culprit.as_ref().and_then(|c| c.identity.as_ref()) else {
            return;
        };
        let Some(w) = workload_labels(id) else {
            return;
        };
        let host = inc.hostname.clone().unwrap_or_default();
        let kind = kind_label(inc.kind);
        let mut key = [
            gpu.to_string(),
            kind,
            w[0].clone(),
            w[1].clone(),
            w[2].clone(),
            w[3].clone(),
            w[4].clone(),
            host,
        ];
        if !self.workloads.contains_key(&key) && self.workloads.len() >= MAX_WORKLOAD_ROWS {
            for v in &mut key[2..7] {
                *v = OTHER.to_string();
            }
            self.workload_overflow += 1;
        }
        *self.workloads.entry(key).or_default() += 1;
    }

    /// The GPU's latest incident decides: its methods are 1, the GPU's other methods 0.
    fn note_recovery(&mut self, gpu: &str, needs: Option<&str>) {
        for (k, v) in self.needs_recovery.iter_mut() {
            if k[0] == gpu {
                *v = 0;
            }
        }
        for m in needs.into_iter().flat_map(|n| n.split(',')) {
            let key = [gpu.to_string(), m.to_string()];
            if self.needs_recovery.len() < MAX_RECOVERY_ROWS
                || self.needs_recovery.contains_key(&key)
            {
                self.needs_recovery.insert(key, 1);
            }
        }
    }

    /// Counts one page fault the kernel log attributed to `comm` ("" when it named none).
    pub fn record_page_fault(&mut self, comm: &str) {
        let label = if comm.is_empty() {
            String::new()
        } else {
            self.comm_label(comm)
        };
        *self.page_faults.entry(label).or_default() += 1;
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let labels = |pairs: &[(&str, &str)]| -> String {
            if pairs.is_empty() {
                return String::new();
            }
            let inner: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        };
        family(
            "hangwatch_incidents_total",
            "counter",
            "Incidents closed, by GPU, kind, ring, culprit process name and confidence.",
            self.incidents
                .iter()
                .map(|(k, n)| {
                    let l = labels(&[
                        ("gpu", &k[0]),
                        ("kind", &k[1]),
                        ("ring", &k[2]),
                        ("culprit_comm", &k[3]),
                        ("confidence", &k[4]),
                    ]);
                    (l, n.to_string())
                })
                .collect(),
        );
        family(
            "hangwatch_kernel_misblames_total",
            "counter",
            "Incidents where the kernel's message blamed another process than the evidence did.",
            self.misblames
                .iter()
                .map(|(k, n)| (labels(&[("gpu", &k[0]), ("kind", &k[1])]), n.to_string()))
                .collect(),
        );
        family(
            "hangwatch_gpu_resets_total",
            "counter",
            "GPU resets seen in incidents, by outcome (succeeded, failed).",
            self.resets
                .iter()
                .map(|(k, n)| (labels(&[("gpu", &k[0]), ("outcome", &k[1])]), n.to_string()))
                .collect(),
        );
        family(
            "hangwatch_reset_loops_total",
            "counter",
            "Reset loop incidents closed: repeated resets of one GPU (agent.reset_loop_resets within agent.reset_loop_window), counted once per loop when it ends.",
            self.reset_loops
                .iter()
                .map(|(g, n)| (labels(&[("gpu", g)]), n.to_string()))
                .collect(),
        );
        family(
            "hangwatch_reset_loop_resets",
            "gauge",
            "Resets counted by the GPU's reset loop under way (absent: no loop).",
            self.reset_loop_resets
                .iter()
                .map(|(g, n)| (labels(&[("gpu", g)]), n.to_string()))
                .collect(),
        );
        family(
            "hangwatch_device_needs_recovery",
            "gauge",
            "1 while the GPU's latest incident carried a DRM wedged uevent asking for this recovery method.",
            self.needs_recovery
                .iter()
                .map(|(k, v)| (labels(&[("gpu", &k[0]), ("method", &k[1])]), v.to_string()))
                .collect(),
        );
        family(
            "hangwatch_page_faults_total",
            "counter",
            "GPU VM page faults in the kernel log, by the process it named (empty: none named).",
            self.page_faults
                .iter()
                .map(|(c, n)| (labels(&[("comm", c)]), n.to_string()))
                .collect(),
        );
        family(
            "hangwatch_workload_incidents_total",
            "counter",
            "Incidents whose culprit ran in a pod, container or Slurm job, with the AMD Device Metrics Exporter's label names.",
            self.workloads
                .iter()
                .map(|(k, n)| {
                    let mut pairs = vec![("gpu", k[0].as_str()), ("kind", k[1].as_str())];
                    pairs.extend(WORKLOAD_LABELS.iter().zip(&k[2..]).map(|(l, v)| (*l, v.as_str())));
                    (labels(&pairs), n.to_string())
                })
                .collect(),
        );
        family(
            "hangwatch_workload_labels_overflow_total",
            "counter",
            "Incidents counted under the _other workload row (past the row cap).",
            vec![(String::new(), self.workload_overflow.to_string())],
        );
        family(
            "hangwatch_comm_labels_overflow_total",
            "counter",
            "Process names folded into comm=\"_other\" (the least recently seen, past the label cap).",
            vec![(String::new(), self.comm_overflow.to_string())],
        );
        family(
            "hangwatch_probe_events_total",
            "counter",
            "eBPF probe events decoded, by event kind.",
            self.probe_events
                .iter()
                .map(|(k, n)| (labels(&[("kind", k)]), n.to_string()))
                .collect(),
        );
        family(
            "hangwatch_dropped_events_total",
            "counter",
            "Events lost, by where: kernel ring buffer full, kernel log overwritten, short records.",
            self.dropped
                .iter()
                .map(|(k, n)| (labels(&[("reason", k)]), n.to_string()))
                .collect(),
        );
        family(
            "hangwatch_correlator_events_total",
            "counter",
            "Correlator bookkeeping, by what: scheduler/fence events matching no recorded job (unmatched_join), identities, PASID mappings and compute queues evicted from the bounded tables (process_eviction, pasid_eviction, queue_eviction), join-only records no incident took (unattached), per-process summaries and submission counts not kept (summary_overflow, submission_untracked).",
            self.correlator
                .iter()
                .map(|(k, n)| (labels(&[("what", k)]), n.to_string()))
                .collect(),
        );
        family(
            "hangwatch_kfd_source_total",
            "counter",
            "The no-eBPF compute sources: /sys/class/kfd proc-table polls (proc_polls) and the queue events they found (queue_events), /dev/kfd SMI lines read (smi_lines), SMI lines that did not parse (smi_unparsed), SMI bytes dropped from overlong lines (smi_overlong_bytes).",
            self.compute_sources
                .iter()
                .map(|(k, n)| (labels(&[("what", k)]), n.to_string()))
                .collect(),
        );
        family(
            "hangwatch_compute_queues",
            "gauge",
            "KFD and user queues in the compute queue table now (bounded; evictions in hangwatch_correlator_events_total{what=\"queue_eviction\"}).",
            vec![(String::new(), self.compute_queues.to_string())],
        );
        family(
            "hangwatch_kmsg_records_total",
            "counter",
            "Kernel log records read from /dev/kmsg.",
            vec![(String::new(), self.kmsg_records.to_string())],
        );
        family(
            "hangwatch_probes",
            "gauge",
            "Probes of the catalogue by status (attached, missing, failed, ...).",
            self.probes
                .iter()
                .map(|(k, n)| (labels(&[("status", k)]), n.to_string()))
                .collect(),
        );
        family(
            "hangwatch_probes_attached",
            "gauge",
            "Probes attached now.",
            vec![(
                String::new(),
                self.probes
                    .get("attached")
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
            )],
        );
        family(
            "hangwatch_flight_recorder_jobs",
            "gauge",
            "Jobs held in the flight recorder, per ring.",
            self.recorder_jobs
                .iter()
                .map(|(r, n)| (labels(&[("ring", r)]), n.to_string()))
                .collect(),
        );
        family(
            "hangwatch_open_incidents",
            "gauge",
            "Incidents still open (waiting for evidence or their settle time).",
            vec![(String::new(), self.open_incidents.to_string())],
        );
        family(
            "hangwatch_last_incident_timestamp_seconds",
            "gauge",
            "Unix time the last incident closed (0: none since start).",
            vec![(
                String::new(),
                format!("{:.3}", self.last_incident_unix.unwrap_or(0.0)),
            )],
        );
        family(
            "hangwatch_start_time_seconds",
            "gauge",
            "Unix time the agent started.",
            vec![(String::new(), format!("{:.3}", self.start_unix))],
        );
        family(
            "hangwatch_build_info",
            "gauge",
            "Always 1; the agent's version as a label.",
            vec![(
                labels(&[("version", env!("CARGO_PKG_VERSION"))]),
                "1".into(),
            )],
        );
        out
    }
}

/// The HTTP endpoint; stops (and frees the port) on drop.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept. If the address cannot be reached (loopback down: seen in
        // the VM, where it hung the agent's exit), detach the thread instead of joining it.
        if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Scrapes served at once; more wait in the listen backlog (a stuck client cannot starve
/// Prometheus, and clients cannot make the agent spawn threads without bound).
const MAX_CLIENTS: usize = 4;
/// The whole request head must arrive (and the answer leave) within this: a client sending
/// one byte a second holds its slot 2 s, not as long as it likes.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// With every slot taken, the accepting thread serves a client itself if its request arrives
/// within this: a scraper sends its request at once, so slow clients cannot make it fail.
const BUSY_TIMEOUT: Duration = Duration::from_millis(200);
const MAX_REQUEST: usize = 8192;

/// Listens on `addr` and serves `GET /metrics`.
pub fn serve(addr: SocketAddr, metrics: Shared) -> Result<Server> {
    let listener = TcpListener::bind(addr).with_context(|| {
        format!(
            "cannot listen for metrics on {addr} (port in use? set metrics.listen or --metrics)"
        )
    })?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let busy = Arc::new(AtomicUsize::new(0));
    let thread = std::thread::Builder::new()
        .name("hangwatch-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                if busy.load(Ordering::SeqCst) >= MAX_CLIENTS {
                    let _ = serve_one(stream, &metrics, BUSY_TIMEOUT);
                    continue;
                }
                busy.fetch_add(1, Ordering::SeqCst);
                let (m, b) = (metrics.clone(), busy.clone());
                let spawned = std::thread::Builder::new()
                    .name("hangwatch-scrape".into())
                    .spawn(move || {
                        let _ = serve_one(stream, &m, IO_TIMEOUT);
                        b.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    busy.fetch_sub(1, Ordering::SeqCst);
                }
            }
        })?;
    Ok(Server {
        addr,
        stop,
        thread: Some(thread),
    })
}

fn respond(mut s: &TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    s.flush()
}

/// Reads the request head (bounded in size, and in time as a whole: `limit`) and answers it.
fn serve_one(stream: TcpStream, metrics: &Shared, limit: Duration) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + limit;
    stream.set_write_timeout(Some(limit))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let n = (&stream).read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            return respond(
                &stream,
                "431 Request Header Fields Too Large",
                "too large\n",
            );
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return respond(&stream, "405 Method Not Allowed", "GET only\n");
    }
    match path.split('?').next().unwrap_or("") {
        "/metrics" => {
            let body = match metrics.lock() {
                Ok(m) => m.render(),
                Err(p) => p.into_inner().render(),
            };
            respond(&stream, "200 OK", &body)
        }
        "/" => respond(&stream, "200 OK", "hangwatch agent: metrics at /metrics\n"),
        _ => respond(&stream, "404 Not Found", "not found; try /metrics\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangwatch_core::testkit::disputed_incident;

    fn get(addr: SocketAddr, req: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    fn reset_at(m: &mut Metrics, gpu: &str, kind: IncidentKind) {
        let mut inc = disputed_incident();
        inc.gpu = Some(gpu.into());
        inc.kind = kind;
        inc.reset = Some(hangwatch_core::incident::ResetOutcome::Succeeded);
        m.record_incident(&inc);
    }

    #[test]
    fn reset_loop_incidents_are_counted_once_and_their_resets_are_not_recounted() {
        let mut m = Metrics::new(4);
        for _ in 0..3 {
            reset_at(&mut m, "0000:03:00.0", IncidentKind::RingTimeout);
        }
        // Three resets alone are no loop here: the correlator decides (rule L2).
        assert!(!m.render().contains("hangwatch_reset_loops_total{"));
        reset_at(&mut m, "0000:03:00.0", IncidentKind::ResetLoop);
        let text = m.render();
        assert!(
            text.contains("hangwatch_reset_loops_total{gpu=\"0000:03:00.0\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "hangwatch_gpu_resets_total{gpu=\"0000:03:00.0\",outcome=\"succeeded\"} 3\n"
            ),
            "{text}"
        );
        assert!(!text.contains("kind=\"reset_loop\""), "{text}");
        // The loop under way is a gauge, per GPU, set from the correlator on each tick.
        assert!(!text.contains("hangwatch_reset_loop_resets{"), "{text}");
        m.reset_loop_resets.insert("0000:c3:00.0".into(), 4);
        assert!(m
            .render()
            .contains("hangwatch_reset_loop_resets{gpu=\"0000:c3:00.0\"} 4\n"));
    }

    #[test]
    fn needs_recovery_follows_the_gpus_latest_incident() {
        let mut m = Metrics::new(4);
        let mut inc = disputed_incident();
        inc.needs_recovery = Some("rebind,bus-reset".into());
        m.record_incident(&inc);
        let text = m.render();
        assert!(
            text.contains("# TYPE hangwatch_device_needs_recovery gauge"),
            "{text}"
        );
        for method in ["rebind", "bus-reset"] {
            let row = format!(
                "hangwatch_device_needs_recovery{{gpu=\"0000:c3:00.0\",method=\"{method}\"}} 1\n"
            );
            assert!(text.contains(&row), "{text}");
        }
        inc.needs_recovery = None;
        m.record_incident(&inc);
        let text = m.render();
        assert!(text.contains("method=\"rebind\"} 0\n"), "{text}");
        assert!(text.contains("method=\"bus-reset\"} 0\n"), "{text}");
    }

    /// A culprit in a Slurm job inside a pod's container: one row with the exporter's label
    /// names; hostile user names are escaped; rows past the cap share `_other`.
    #[test]
    fn workload_labels_follow_the_exporter_and_are_bounded() {
        let mut m = Metrics::new(4);
        let mut inc = hangwatch_core::testkit::hostile("al\"ice\n");
        inc.hostname = Some("gpubox7".into());
        m.record_incident(&inc);
        let text = m.render();
        let row = "hangwatch_workload_incidents_total{gpu=\"0000:c3:00.0\",kind=\"ring_timeout\",\
POD=\"6a1f0c2e-9b7d-4c3a-8e5f-0d1c2b3a4f5e\",NAMESPACE=\"\",CONTAINER=\"241e2ce08bbb\",\
JOB_ID=\"4242\",JOB_USER=\"al\\\"ice\\\\x0a\",HOSTNAME=\"gpubox7\"} 1\n";
        assert!(text.contains(row), "{text}");
        // A desktop culprit (no pod, container or job) has no workload row.
        let mut m = Metrics::new(4);
        m.record_incident(&disputed_incident());
        assert!(!m.render().contains("hangwatch_workload_incidents_total{"));
        // Past the cap: one _other row, counted.
        let mut m = Metrics::new(4);
        for job in 0..MAX_WORKLOAD_ROWS as u64 + 10 {
            let mut inc = hangwatch_core::testkit::hostile("u");
            let id = inc.culprit.as_mut().unwrap().identity.as_mut().unwrap();
            id.slurm.as_mut().unwrap().job_id = job;
            m.record_incident(&inc);
        }
        let text = m.render();
        let rows = text
            .lines()
            .filter(|l| l.starts_with("hangwatch_workload_incidents_total{"))
            .count();
        assert_eq!(rows, MAX_WORKLOAD_ROWS + 1, "{text}");
        assert!(
            text.contains("JOB_ID=\"_other\"") && text.contains("} 10\n"),
            "{text}"
        );
        assert!(
            text.contains("hangwatch_workload_labels_overflow_total 10\n"),
            "{text}"
        );
    }

    #[test]
    fn hostile_comms_are_escaped_and_capped() {
        let mut m = Metrics::new(2);
        let mut inc = disputed_incident();
        for comm in ["a\"b\\c\nd", "zed", "third", "fourth"] {
            inc.culprit.as_mut().unwrap().comm = comm.into();
            m.record_incident(&inc);
        }
        // The two most recent names keep a value; the older ones' counts moved to _other.
        let text = m.render();
        assert!(text.contains(r#"culprit_comm="fourth""#), "{text}");
        assert!(text.contains(r#"culprit_comm="third""#), "{text}");
        assert!(!text.contains(r#"culprit_comm="zed""#), "{text}");
        assert!(text.contains(r#"culprit_comm="_other""#), "{text}");
        m.record_page_fault("zed");
        m.record_page_fault("fifth");
        let text = m.render();
        assert!(
            text.contains(r#"hangwatch_page_faults_total{comm="fifth"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"hangwatch_page_faults_total{comm="zed"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("hangwatch_comm_labels_overflow_total 4"),
            "{text}"
        );
        let incidents: u64 = text
            .lines()
            .filter(|l| l.starts_with("hangwatch_incidents_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(incidents, 4, "no count lost in the folding: {text}");
        assert!(
            text.contains("hangwatch_kernel_misblames_total{gpu=\"0000:c3:00.0\""),
            "{text}"
        );
        let mut m = Metrics::new(2);
        m.record_page_fault("a\"b\\c\nd");
        let text = m.render();
        assert!(text.contains(r#"comm="a\"b\\c\\x0ad""#), "{text}");
        m.record_page_fault("\u{1b}]0;t\u{7}\r\u{7f}x");
        let text = m.render();
        assert!(
            !text.contains(['\u{1b}', '\u{7}', '\r', '\u{7f}']),
            "raw control bytes in the exposition: {text:?}"
        );
        // Every sample line is `name{labels} value` or `name value`: no raw newline leaked.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(l.starts_with("hangwatch_"), "{l:?}");
        }
    }

    #[test]
    fn http_endpoint_serves_metrics_and_refuses_the_rest() {
        let shared: Shared = Arc::new(Mutex::new(Metrics::new(10)));
        shared.lock().unwrap().kmsg_records = 42;
        let srv = serve("127.0.0.1:0".parse().unwrap(), shared).unwrap();
        let r = get(srv.addr(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
        assert!(r.contains("hangwatch_kmsg_records_total 42"), "{r}");
        assert!(get(srv.addr(), "GET /nope HTTP/1.0\r\n\r\n").contains("404"));
        assert!(get(srv.addr(), "POST /metrics HTTP/1.0\r\n\r\n").contains("405"));
        // A client that never sends anything is dropped after the timeout, not forever.
        let idle = TcpStream::connect(srv.addr()).unwrap();
        let r = get(srv.addr(), "GET /metrics HTTP/1.0\r\n\r\n");
        assert!(r.contains("200 OK"));
        drop(idle);
        drop(srv);
    }

    #[test]
    fn slow_clients_cannot_make_scrapes_fail() {
        let shared: Shared = Arc::new(Mutex::new(Metrics::new(10)));
        let srv = serve("127.0.0.1:0".parse().unwrap(), shared).unwrap();
        let addr = srv.addr();
        // Eight clients each sending one byte every 1.5 s, as long as the test runs.
        let stop = Arc::new(AtomicBool::new(false));
        let slow: Vec<_> = (0..2 * MAX_CLIENTS)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let Ok(mut s) = TcpStream::connect(addr) else {
                            return;
                        };
                        for b in b"GET /metrics HTTP/1.1\r\n" {
                            if stop.load(Ordering::SeqCst) || s.write_all(&[*b]).is_err() {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(1500));
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..5 {
            let r = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
            std::thread::sleep(Duration::from_millis(700));
        }
        stop.store(true, Ordering::SeqCst);
        for t in slow {
            t.join().unwrap();
        }
    }
}
