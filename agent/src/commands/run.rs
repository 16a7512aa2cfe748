//! `hangwatch run`: the agent (see `crate::daemon` for its lifecycle). This module only turns
//! flags and the optional config file into the effective settings.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::config::{self, Overrides, Settings};
use crate::daemon::{self, Options};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Read settings from this file (the service uses /etc/hangwatch/config.toml); flags
    /// override it, and SIGHUP re-reads it. Without it SIGHUP stops the agent cleanly.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print each incident as one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write one incident directory per incident under DIR.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Jobs kept per ring in the flight recorder [default: 256].
    #[arg(long, value_name = "N")]
    pub ring_depth: Option<usize>,
    /// Stop after SECS seconds (default: until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
    /// eBPF ring buffer size in KiB, rounded up to a power of two [default: 4096].
    #[arg(long, value_name = "KIB")]
    pub ring_kib: Option<u32>,
    /// Keep an incident whose GPU reset began open at most this long waiting for the reset's
    /// end, e.g. 120s or 5m [default: 120s].
    #[arg(long, value_name = "DURATION")]
    pub reset_cap: Option<String>,
    /// Warn and open a `stall` incident when a ring's oldest unfinished job has run this
    /// long, before (or without) the kernel's timeout, e.g. 5s; 0 = never [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub stall_after: Option<String>,
    /// Control socket for `hangwatch export` [default: /run/hangwatch/control.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Do not open the control socket.
    #[arg(long)]
    pub no_socket: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Keep the /dev/kmsg cursor in DIR, so a restart re-reads what it missed.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Do not load eBPF probes: attribute from the kernel log alone.
    #[arg(long)]
    pub kmsg_only: bool,
    /// Also attach the per-job detail probes (scheduler queue/run, hardware fences, VMID
    /// grab) for a full trace in `export`; costs about twice the in-kernel time per job.
    #[arg(long)]
    pub trace_all: bool,
    /// Only warnings, errors and incidents (no status lines).
    #[arg(long, short)]
    pub quiet: bool,
    /// Read kernel records from FILE instead of /dev/kmsg (testing).
    #[arg(long, value_name = "FILE", hide = true, default_value = "/dev/kmsg")]
    pub kmsg_path: PathBuf,
}

impl Args {
    pub fn overrides(&self) -> anyhow::Result<Overrides> {
        Ok(Overrides {
            output_dir: self.output.clone(),
            json: self.json,
            ring_depth: self.ring_depth,
            ring_kib: self.ring_kib,
            reset_cap: self
                .reset_cap
                .as_deref()
                .map(config::parse_reset_cap)
                .transpose()
                .context("--reset-cap")?,
            stall_after: self
                .stall_after
                .as_deref()
                .map(config::parse_stall_after)
                .transpose()
                .context("--stall-after")?,
            socket: self.socket.clone(),
            no_socket: self.no_socket,
            metrics: match &self.metrics {
                Some(m) => config::parse_listen(m).context("--metrics")?,
                None => None,
            },
            state_dir: self.state_dir.clone(),
            kmsg_only: self.kmsg_only,
            trace_all: self.trace_all,
        })
    }

    /// Defaults < config file < flags.
    pub fn settings(&self) -> anyhow::Result<(Settings, Overrides)> {
        let mut s = match &self.config {
            Some(p) => Settings::from_file(&config::load(p)?, p)?,
            None => Settings::default(),
        };
        let o = self.overrides()?;
        o.apply(&mut s);
        Ok((s, o))
    }
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    crate::sinks::messages::set_quiet(args.quiet);
    crate::sinks::messages::set_live(true);
    let (settings, overrides) = args.settings()?;
    daemon::run(Options {
        settings,
        overrides,
        duration: args.duration.map(Duration::from_secs),
        kmsg_path: args.kmsg_path,
    })
}
