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
//! - [`commands`]: one module per CLI subcommand.
pub mod btf;
pub mod commands;
pub mod control;
pub mod correlate;
pub mod decode;
pub mod devices;
pub mod formats;
pub mod incident;
pub mod kfd;
pub mod kmsg;
pub mod model;
pub mod probes;
pub mod procscan;
pub mod report;
