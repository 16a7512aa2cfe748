//! The start of the lifecycle: boot facts, probes, output, process scan, kernel-log backlog,
//! control socket, metrics endpoint, journal — in the order that lets each see the previous
//! (the backlog may close incidents, so the output is open before it).
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::Ebpf;

use crate::capabilities::CapSet;
use crate::config::Settings;
use crate::decode::Decoder;
use crate::sinks::incident_dir::Retention;
use crate::sinks::journald::Journal;
use crate::sinks::metrics::{self, Metrics};
use crate::sources::devices;
use crate::sources::probes::{self, Assessment, AttachOptions, Host, Status};
use crate::sources::procscan::{self, SeenCache};
use crate::{info, warn};
use hangwatch_core::correlate::{Config as CorrConfig, Correlator};
use hangwatch_core::model::EventBody;

use super::boot;
use super::control_source::ControlSource;
use super::durable::Durable;
use super::kmsg_source::KmsgSource;
use super::output::Output;
use super::ring::RingSource;
use super::state::State;

pub fn retention(s: &Settings) -> Retention {
    Retention {
        max_incidents: s.max_incidents,
        max_bytes: s.max_bytes,
        ..Retention::default()
    }
}

/// The probes, attached when the capabilities allow; every status line printed. `gpus` are
/// the amdgpu devices ([`devices::discover`]): with several, the programs also read each
/// event's device name through BTF where the tracepoints do not print it.
pub fn attach_probes(s: &Settings, gpus: &[String]) -> (Assessment, Option<Ebpf>) {
    let host = Host::detect();
    let mut a = probes::assess(&host);
    let plan = devices::plan(&a, gpus);
    if !s.probes {
        info!("probes: off (kernel log only)");
        return (a, None);
    }
    let missing = CapSet::current().missing_for_probes();
    if !missing.is_empty() {
        warn!(
            "probes disabled: {}; attributing from the kernel log only",
            crate::capabilities::probe_caps_fix(&missing)
        );
    }
    let opts = AttachOptions {
        ring_bytes: s.ring_kib.saturating_mul(1024),
        device_names: plan.needs_kernel_names(),
        trace_all: s.trace_all,
        recorder: s.recorder,
        pin_root: Some(crate::sources::recorder::PIN_ROOT.into()),
        ..Default::default()
    };
    let paranoid = crate::capabilities::perf_paranoid_blocks(CapSet::current());
    if let Some(level) = paranoid {
        warn!(
            "probes will not attach: {}",
            crate::capabilities::perf_paranoid_fix(level)
        );
    }
    let ebpf = if a.probes.iter().any(|p| p.status == Status::Available) {
        match probes::attach(&mut a, &opts) {
            Ok(e) => Some(e),
            Err(e) => {
                warn!("{e:#}; continuing with the kernel log only");
                None
            }
        }
    } else {
        None
    };
    annotate_paranoid(&mut a, paranoid);
    if ebpf.is_some() {
        info!("flight recorder: {}", a.recorder.note);
    }
    for p in &a.probes {
        let what = match p.status {
            Status::Attached => "attached".to_string(),
            st => format!("{}: {}", st.as_str(), p.reason),
        };
        let note = if p.status == Status::Attached && !p.reason.is_empty() {
            format!(" ({})", p.reason)
        } else {
            String::new()
        };
        info!("probe {}: {what}{note}", p.name);
    }
    info!("{}", plan.summary());
    (a, ebpf)
}

/// Failed attaches name the sysctl that refused them (`check` and `run` alike).
pub fn annotate_paranoid(a: &mut Assessment, level: Option<i32>) {
    if let Some(level) = level {
        for p in a.probes.iter_mut().filter(|p| p.status == Status::Failed) {
            p.reason = format!("{} (kernel.perf_event_paranoid={level})", p.reason);
        }
    }
}

pub fn attached_count(a: &Assessment) -> usize {
    a.probes
        .iter()
        .filter(|p| p.status == Status::Attached)
        .count()
}

/// The eBPF side's set of watched tgids.
pub type SeenMap = BpfHashMap<MapData, u32, u8>;

/// The maps the loop reads: ring buffer, drop counters, watched tgids.
pub fn take_maps(ebpf: Option<&mut Ebpf>) -> Result<(Option<RingSource>, Option<SeenMap>)> {
    let Some(e) = ebpf else {
        return Ok((None, None));
    };
    let ring = e.take_map("EVENTS").and_then(|m| RingBuf::try_from(m).ok());
    let drops = e
        .take_map("DROPS")
        .and_then(|m| PerCpuArray::<MapData, u64>::try_from(m).ok());
    let seen = e
        .take_map("SEEN_TGIDS")
        .and_then(|m| BpfHashMap::<MapData, u32, u8>::try_from(m).ok());
    let ring = ring.map(|r| RingSource::new(r, drops)).transpose()?;
    Ok((ring, seen))
}

/// The metrics registry, with the probe statuses (they do not change while running).
pub fn metrics_registry(s: &Settings, a: &Assessment) -> Option<metrics::Shared> {
    s.metrics?;
    let mut m = Metrics::new(s.max_comm_labels);
    for p in &a.probes {
        *m.probes.entry(p.status.as_str()).or_default() += 1;
    }
    Some(Arc::new(Mutex::new(m)))
}

/// The event-loop state with the output opened.
pub fn state(
    s: &Settings,
    gpus: &[String],
    seen_map: Option<SeenMap>,
    metrics: Option<metrics::Shared>,
) -> Result<State> {
    let dir = Output::open_dir(s.output_dir.as_deref(), retention(s))?;
    let mut st = State {
        corr: Correlator::new(CorrConfig {
            ring_depth: s.ring_depth.max(1),
            max_open: s.max_open_incidents,
            reset_cap_ns: u64::try_from(s.reset_cap.as_nanos()).unwrap_or(u64::MAX),
            stall_after_ns: s
                .stall_after
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            loop_resets: s.reset_loop_resets,
            loop_window_ns: u64::try_from(s.reset_loop_window.as_nanos()).unwrap_or(u64::MAX),
            ..CorrConfig::default()
        }),
        decoder: Decoder::default(),
        seen: SeenCache::new(4096),
        seen_map,
        out: Output {
            stdout: s.stdout,
            dir: None,
            max_age: s.max_age,
            journal: Journal::detect(s.journal),
            metrics,
            count: 0,
            durable: Durable::default(),
            reported_before: Default::default(),
            unstored: Default::default(),
        },
        labeler: devices::Labeler::new(gpus, Path::new("/proc")),
        user_drops: 0,
        recorder: None,
    };
    st.out.set_dir(dir);
    Ok(st)
}

/// Boot facts and the processes that already have the GPU open.
pub fn initial_events(st: &mut State) {
    st.push(boot::boot_event());
    for ev in procscan::scan(Path::new("/proc"), boot::monotonic_ns()) {
        if let EventBody::ProcessInfo { pid, .. } = &ev.body {
            // Already described by the scan: mark seen (and keep its driver mappings) so the
            // first submission does not describe it again.
            let _ = st.seen.first_sight(Path::new("/proc"), *pid, 0);
            st.watch_pid(*pid);
        }
        // The scan's fdinfo (pasid, drm-pdev) teaches the labeler which device a pasid is on.
        let mut ev = ev;
        st.labeler.label(&mut ev);
        st.push(ev);
    }
}

/// The kernel-log reader, or None (said why) when it cannot run.
pub fn kernel_log(s: &Settings, kmsg_path: &Path, st: &mut State) -> Option<KmsgSource> {
    if !s.kernel_log {
        info!("kernel log: off");
        return None;
    }
    match KmsgSource::start(
        kmsg_path,
        s.state_dir.as_deref(),
        boot::boot_id().as_deref(),
        st,
    ) {
        Ok(k) => {
            info!("kernel log: {}", k.how);
            Some(k)
        }
        Err(e) => {
            let hint = if CapSet::current().has(crate::capabilities::CAP_SYSLOG) {
                ""
            } else {
                " (needs CAP_SYSLOG when kernel.dmesg_restrict=1)"
            };
            warn!("kernel log: {e:#}{hint}");
            None
        }
    }
}

pub fn control(s: &Settings) -> Option<ControlSource> {
    let path: &PathBuf = s.socket.as_ref()?;
    ControlSource::start(path, s.socket_group.as_deref())
}

pub fn metrics_server(s: &Settings, m: Option<&metrics::Shared>) -> Option<metrics::Server> {
    let (addr, m) = (s.metrics?, m?);
    match metrics::serve(addr, m.clone()) {
        Ok(srv) => {
            info!("metrics: http://{}/metrics", srv.addr());
            Some(srv)
        }
        Err(e) => {
            warn!("metrics disabled: {e:#}");
            None
        }
    }
}
