//! `hangwatch run` as a lifecycle: [`Agent::start`] (boot facts, probes, output, process
//! scan, kernel-log backlog, control socket, metrics, journal, READY=1), [`Agent::run_loop`]
//! (one handler per event source: ring buffer, kernel log, KFD, control socket, timers,
//! signals) and [`Agent::finish`] (detach, drain, close every incident, cursor, stats line).
pub mod boot;
mod capture;
mod control_source;
mod durable;
mod kfd_source;
pub mod kmsg_cursor;
pub mod kmsg_source;
mod output;
mod ring;
mod signals;
pub mod start;
mod state;
mod stats;
mod uevent_source;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use aya::Ebpf;

use crate::config::{self, Overrides, Settings};
use crate::sinks::sd_notify::Notifier;
use crate::sources::recorder::KernelRecorder;
use crate::{info, warn};

use control_source::ControlSource;
use kfd_source::KfdSource;
use kmsg_source::KmsgSource;
use ring::RingSource;
use signals::{Sig, Signals};
use state::State;
use uevent_source::UeventSource;

/// What `run` needs beyond the settings.
pub struct Options {
    pub settings: Settings,
    /// Flags, re-applied over the file on every reload.
    pub overrides: Overrides,
    /// Stop after this long (tests, `--duration`).
    pub duration: Option<Duration>,
    /// `/dev/kmsg`, or a file standing in for it (tests).
    pub kmsg_path: PathBuf,
}

pub struct Agent {
    opts: Options,
    st: State,
    /// Owns the probe links: dropping it detaches them.
    ebpf: Option<Ebpf>,
    ring: Option<RingSource>,
    kmsg: Option<KmsgSource>,
    kfd: KfdSource,
    uevent: UeventSource,
    control: Option<ControlSource>,
    _metrics: Option<crate::sinks::metrics::Server>,
    notifier: Option<Notifier>,
    signals: Signals,
    attached: usize,
    ticks: u64,
}

/// Runs the agent to the end; the exit code.
pub fn run(opts: Options) -> Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut agent = Agent::start(opts)?;
        let why = agent.run_loop().await?;
        agent.finish(why);
        Ok(0)
    })
}

impl Agent {
    pub fn start(opts: Options) -> Result<Agent> {
        let signals = Signals::install()?;
        let s = &opts.settings;
        let gpus = crate::sources::devices::discover(std::path::Path::new("/sys"));
        let (assessment, mut ebpf) = start::attach_probes(s, &gpus);
        let attached = start::attached_count(&assessment);
        info!("probes attached: {attached}/{}", assessment.probes.len());
        let (ring, seen_map) = start::take_maps(ebpf.as_mut())?;
        let metrics = start::metrics_registry(s, &assessment);
        let mut st = start::state(s, &gpus, seen_map, metrics.clone())?;
        if assessment.recorder.recording() {
            st.recorder = ebpf.as_mut().and_then(KernelRecorder::take);
        }
        start::initial_events(&mut st);
        let kmsg = start::kernel_log(s, &opts.kmsg_path, &mut st);
        // Compute queues without eBPF: the /sys/class/kfd proc table and /dev/kfd SMI events.
        let kfd = KfdSource::start(std::path::Path::new("/"));
        // DRM wedged uevents: evidence and the kernel's blame (rules W1, W2).
        let uevent = UeventSource::start();
        // The backlog regenerated what a stopped agent left open (written under its id now);
        // the rest of what it left is finalised as written.
        st.write_open();
        st.out.finalise_stale();
        if attached == 0 && kmsg.is_none() {
            let caps = crate::capabilities::CapSet::current();
            let mut missing: Vec<&str> = caps.missing_for_probes();
            if !caps.has(crate::capabilities::CAP_SYSLOG) {
                missing.push("CAP_SYSLOG");
            }
            let why = if missing.is_empty() {
                String::new()
            } else {
                format!(" (missing {})", missing.join(", "))
            };
            anyhow::bail!("nothing to observe: no probe attached and the kernel log is not readable{why}; run `hangwatch check`");
        }
        // Loading parsed the kernel's BTF and format files (several MiB of short-lived heap);
        // hand those pages back so the long-running agent's resident size is its steady state.
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe { libc::malloc_trim(0) };
        let control = start::control(s);
        let metrics_srv = start::metrics_server(s, metrics.as_ref());
        let notifier = Notifier::from_env();
        if let Some(n) = &notifier {
            n.send(&format!(
                "READY=1\nSTATUS=watching: {attached} probes attached, kernel log {}",
                if kmsg.is_some() { "on" } else { "off" }
            ));
        }
        st.out.prune_by_age();
        Ok(Agent {
            opts,
            st,
            ebpf,
            ring,
            kmsg,
            kfd,
            uevent,
            control,
            _metrics: metrics_srv,
            notifier,
            signals,
            attached,
            ticks: 0,
        })
    }

    /// Dispatches events to their handlers until a stop; returns why it stopped.
    pub async fn run_loop(&mut self) -> Result<&'static str> {
        let deadline = self.opts.duration.map(|d| tokio::time::Instant::now() + d);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut drain_tick = tokio::time::interval(Duration::from_millis(100));
        drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut written = self.st.out.count;
        loop {
            let Agent {
                st,
                ring,
                kmsg,
                kfd,
                uevent,
                control,
                signals,
                ..
            } = self;
            let until_deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let ring_ready = async {
                match ring.as_mut() {
                    Some(r) => r.readable().await,
                    None => std::future::pending().await,
                }
            };
            let kmsg_msg = async {
                match kmsg.as_mut() {
                    Some(k) => k.recv().await,
                    None => std::future::pending().await,
                }
            };
            let call = async {
                match control.as_mut() {
                    Some(c) => c.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                sig = signals.next() => match sig {
                    Sig::Stop(name) => return Ok(name),
                    Sig::Hangup if self.opts.settings.config_path.is_some() => self.reload(),
                    Sig::Hangup => return Ok("SIGHUP (no config file to reload)"),
                },
                _ = until_deadline => return Ok("--duration elapsed"),
                g = ring_ready => RingSource::on_ready(g?, st),
                _ = drain_tick.tick() => {
                    if let Some(r) = ring.as_mut() {
                        r.drain_all(st);
                    }
                    kfd.drain(st);
                    uevent.drain(st);
                }
                m = kmsg_msg => {
                    if let Some(k) = kmsg.as_mut() {
                        k.on_msg(m, st);
                    }
                }
                c = call => {
                    if let Some(c) = c {
                        ControlSource::answer(c, st);
                    }
                }
                _ = tick.tick() => self.on_tick(),
            }
            // An incident was written: move the kmsg cursor past its records now, so a crash
            // right after does not report it twice.
            if self.st.out.count != written {
                written = self.st.out.count;
                if let Some(k) = self.kmsg.as_mut() {
                    k.persist(&self.st, true);
                }
            }
        }
    }

    /// The 1 s timer: kernel-log quiet flush and cursor, incidents whose time is up, kernel
    /// drops, metrics gauges, watchdog, retention by age (every 10 minutes).
    fn on_tick(&mut self) {
        let now = boot::monotonic_ns();
        if let Some(k) = self.kmsg.as_mut() {
            k.on_tick(now, &mut self.st);
        }
        let out = self.st.corr.advance(now);
        self.st.emit(out);
        self.st.poll_stalls(now);
        self.st.out.retry_unstored();
        self.st.write_open();
        if let Some(r) = self.ring.as_mut() {
            r.check_drops(&mut self.st);
        }
        let (records, lost, user) = self
            .kmsg
            .as_ref()
            .map_or((0, 0, 0), |k| (k.records, k.lost, k.from_userspace));
        let kernel = self.ring.as_ref().map_or(0, |r| r.kernel_drops);
        self.st.refresh_metrics(kernel, records, [lost, user]);
        self.st.refresh_compute_metrics(&self.kfd.counters);
        if let Some(n) = self.notifier.as_mut() {
            n.watchdog(std::time::Instant::now());
        }
        self.ticks += 1;
        if self.ticks.is_multiple_of(60) {
            if let Some(r) = self.st.recorder.as_mut() {
                r.free_idle(|pid| std::path::Path::new("/proc").join(pid.to_string()).exists());
            }
        }
        if self.ticks.is_multiple_of(600) {
            self.st.out.prune_by_age();
        }
    }

    /// SIGHUP with a config file: re-read it; apply what can change live (output directory,
    /// retention, stdout format, journal) and name what needs a restart.
    fn reload(&mut self) {
        let Some(path) = self.opts.settings.config_path.clone() else {
            return;
        };
        if let Some(n) = &self.notifier {
            n.send("RELOADING=1");
        }
        let new = config::load(&path).and_then(|f| Settings::from_file(&f, &path));
        match new {
            Err(e) => warn!("reload: {e:#}; keeping the running settings"),
            Ok(mut new) => {
                self.opts.overrides.apply(&mut new);
                self.apply(new, &path);
            }
        }
        if let Some(n) = &self.notifier {
            n.send("READY=1");
        }
    }

    fn apply(&mut self, new: Settings, path: &std::path::Path) {
        let old = &self.opts.settings;
        let restart = old.restart_needed(&new);
        if !restart.is_empty() {
            warn!(
                "reload: {} changed but needs a restart (systemctl restart hangwatch); the running values stay",
                restart.join(", ")
            );
        }
        match output::Output::open_dir(new.output_dir.as_deref(), start::retention(&new)) {
            Ok(dir) => self.st.out.set_dir(dir),
            Err(e) => {
                warn!("reload: output directory: {e:#}; keeping the old one");
                return;
            }
        }
        self.st.out.stdout = new.stdout;
        self.st.out.max_age = new.max_age;
        if new.journal != old.journal {
            self.st.out.journal = crate::sinks::journald::Journal::detect(new.journal);
        }
        // Keep what needs a restart as it runs, so the next reload compares against that.
        let mut applied = self.opts.settings.clone();
        applied.output_dir = new.output_dir;
        applied.stdout = new.stdout;
        applied.max_incidents = new.max_incidents;
        applied.max_bytes = new.max_bytes;
        applied.max_age = new.max_age;
        applied.journal = new.journal;
        self.opts.settings = applied;
        self.st.out.prune_by_age();
        info!("configuration reloaded from {}", path.display());
    }

    /// Detach, drain what is still buffered, close every incident, persist the cursor,
    /// print the stats lines.
    pub fn finish(mut self, why: &str) {
        info!("stopping: {why}");
        if let Some(n) = &self.notifier {
            n.send("STOPPING=1");
        }
        // Detach first (the ring buffer map stays open through `ring`), then read what is
        // still in it: per-job events are submitted without a wakeup, so up to 64 KiB may be
        // waiting, and losing them at shutdown would be silent data loss.
        drop(self.ebpf.take());
        if let Some(r) = self.ring.as_mut() {
            r.drain_all(&mut self.st);
            r.check_drops(&mut self.st);
        }
        if let Some(k) = self.kmsg.as_mut() {
            k.flush(&mut self.st);
        }
        self.kfd.drain(&mut self.st);
        self.uevent.drain(&mut self.st);
        self.st.catch_up(u64::MAX);
        let out = self.st.corr.finish();
        self.st.emit(out);
        if let Some(k) = self.kmsg.as_mut() {
            k.persist(&self.st, true);
        }
        stats::print(
            &self.st,
            self.ring.as_ref(),
            self.kmsg.as_ref(),
            &self.kfd,
            self.attached,
        );
        crate::info!("{}", self.uevent.stats_line());
        // Dropping the control source removes the socket file.
        drop(self.control.take());
    }
}
