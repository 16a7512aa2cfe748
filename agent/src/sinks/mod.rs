//! Where incidents go: incident directories and bug reports on disk, the store that lists
//! them, the journal, Prometheus metrics, the control socket, systemd notifications and the
//! terminal (`messages`, the one way to print).
pub mod bugreport;
pub mod control;
pub mod incident_dir;
pub mod journald;
pub mod messages;
pub mod metrics;
pub mod redact;
pub mod sd_notify;
pub mod store;
