//! hangwatch-core: the pure part of hangwatch, on stable Rust with no eBPF, async runtime or
//! system-call crates. It turns kernel logs and probe events into incidents.
//!
//! The data flow, one module per stage:
//! - [`model`]: the events every source produces;
//! - [`kmsg`]: kernel-log readers (dmesg, journal, `/dev/kmsg` text) that produce events;
//! - [`correlate`]: the pure state machine from events to incidents;
//! - [`identity`]: who a process is (unit, user, container, pod, Slurm job) from /proc text;
//! - [`incident`]: the output document (`hangwatch.incident/1`);
//! - [`render`]: the incident as terminal text, markdown and a Perfetto trace;
//! - [`analyze`]: log files through the readers into the correlator (`hangwatch analyze`);
//! - [`escape`]: one escaping function per output sink for hostile text.
pub mod analyze;
pub mod correlate;
pub mod escape;
pub mod identity;
pub mod incident;
pub mod kmsg;
pub mod model;
pub mod render;
pub mod schema_check;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
