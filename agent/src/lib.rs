//! hangwatch, the agent: attaches probes and reads the kernel's own sources, feeds
//! [`hangwatch_core`]'s correlator, and writes what it finds to the sinks.
//!
//! The data flow, one folder per stage:
//! - [`sources`]: probes (tracefs formats, BTF, the catalogue), KFD sysfs and SMI, `/proc`
//!   scans, GPU devices and host facts;
//! - [`decode`]: ring-buffer records into the core's model events;
//! - the correlator lives in `hangwatch_core::correlate` (pure, stable Rust);
//! - [`sinks`]: incident directories, bug reports, stored incidents, journald, metrics, the
//!   control socket and the one way to print.
//!
//! Around them: [`daemon`] is `hangwatch run`'s lifecycle, [`commands`] one module per CLI
//! command ([`cli`] is the clap tree), [`config`] the service settings, [`capabilities`]
//! and [`fsafe`] the privilege and file-safety helpers.
// Every print goes through `sinks::messages` (a closed pipe is a normal end there; `println!`
// panics on it). Tests may print.
#![cfg_attr(not(test), warn(clippy::print_stdout, clippy::print_stderr))]
pub mod capabilities;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod fsafe;
pub mod sinks;
pub mod sources;
