//! `hangwatch` command line. Each subcommand lives in `commands/<name>.rs`.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hangwatch::commands;

#[derive(Parser)]
#[command(
    name = "hangwatch",
    version,
    about = "Which process hung the AMD GPU? eBPF + kernel-log attribution for amdgpu"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report which probes can run on this host, and why the others cannot.
    Check(commands::check::Args),
    /// Attach the probes and the kernel-log reader; print incidents as they happen.
    Run(commands::run::Args),
    /// Attribute incidents from a saved kernel log (dmesg, journalctl text/JSON/export) or stdin.
    Analyze(commands::analyze::Args),
    /// Write a Perfetto trace of a running agent's recent history.
    Export(commands::export::Args),
    /// Build a drm/amd bug report (tar.gz + markdown) from an incident directory.
    Bugreport(commands::bugreport::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(a) => commands::check::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Analyze(a) => commands::analyze::run(a),
        Command::Export(a) => commands::export::run(a),
        Command::Bugreport(a) => commands::bugreport::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // One line naming the cause (and, where the error carries it, the fix).
            eprintln!("hangwatch: {e:#}");
            ExitCode::from(2)
        }
    }
}
