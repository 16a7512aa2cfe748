//! The `hangwatch` command line. It lives in the library so the packaging step can generate
//! man pages and shell completions from the same definition (agent/examples/gen_docs.rs).
use clap::{Parser, Subcommand};

use crate::commands;

#[derive(Parser, Debug)]
#[command(
    name = "hangwatch",
    version,
    about = "Which process hung the AMD GPU? eBPF + kernel-log attribution for amdgpu"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Report which probes can run on this host, and why the others cannot; validate the config.
    Check(commands::check::Args),
    /// Attach the probes and the kernel-log reader; print incidents as they happen.
    Run(commands::run::Args),
    /// Attribute incidents from a saved kernel log (dmesg, journalctl text/JSON/export) or stdin.
    Analyze(commands::analyze::Args),
    /// Write a Perfetto trace of a running agent's recent history.
    Export(commands::export::Args),
    /// Build a drm/amd bug report (tar.gz + markdown) from an incident directory.
    Bugreport(commands::bugreport::Args),
    /// List stored incidents, oldest first (like coredumpctl list).
    List(commands::list::Args),
    /// Show one stored incident (an id, a unique id prefix, or "latest").
    Show(commands::show::Args),
}

/// Runs the parsed command; its exit code.
pub fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check(a) => commands::check::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Analyze(a) => commands::analyze::run(a),
        Command::Export(a) => commands::export::run(a),
        Command::Bugreport(a) => commands::bugreport::run(a),
        Command::List(a) => commands::list::run(a),
        Command::Show(a) => commands::show::run(a),
    }
}
