//! hangwatch: attribute amdgpu GPU hangs, page faults and resets to the processes that caused them.
//!
//! Module map (one responsibility each):
//! - [`model`]: the correlator's input events; [`incident`]: its output document.
//! - [`kmsg`]: recognise amdgpu kernel-log lines and read log inputs (dmesg, journal, /dev/kmsg).
//! - [`correlate`]: the pure state machine turning events into incidents (flight recorder, attribution).
//! - [`formats`]: tracefs `format` parser; [`btf`]: module BTF struct offsets.
//! - [`probes`]: the probe catalogue, availability checks and attaching; [`decode`]: RawEvent → Event.
//! - [`procscan`]: `/proc/*/fdinfo` and exe scans; [`devices`]: which GPU each probe event is on.
//! - [`kfd`]: ROCm/KFD and user-queue sources without eBPF (sysfs queue table, SMI events, KFD log lines).
//! - [`report`]: text, markdown, incident directory, Perfetto, bug report.
//! - [`control`]: the running agent's local socket (`hangwatch export`).
//! - [`escape`]: one escaping function per output sink for hostile text.
//! - [`fsafe`]: file operations as root that a symlink or a swapped directory cannot redirect.
//! - [`hostfacts`]: kernel, firmware, module and devcoredump facts captured when an incident opens.
//! - [`daemon`]: `hangwatch run`'s lifecycle (start, one handler per event source, finish);
//!   [`config`], [`metrics`], [`journald`], [`sd_notify`], [`capabilities`] serve it.
//! - [`store`]: stored incident directories (`list`, `show`, retention by age).
//! - [`messages`]: the one way to print (prefix, `--quiet`, EPIPE-safe).
//! - [`cli`]: the clap command line (shared with the man page and completion generator).
//! - [`commands`]: one module per CLI subcommand.
pub mod btf;
pub mod capabilities;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod correlate;
pub mod daemon;
pub mod decode;
pub mod devices;
pub mod escape;
pub mod formats;
pub mod fsafe;
pub mod hostfacts;
pub mod incident;
pub mod journald;
pub mod kfd;
pub mod kmsg;
pub mod messages;
pub mod metrics;
pub mod model;
pub mod probes;
pub mod procscan;
pub mod report;
pub mod sd_notify;
pub mod store;
