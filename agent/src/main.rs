//! `hangwatch` command line (defined in `hangwatch::cli`; each subcommand in `commands/`).
use std::process::ExitCode;

use clap::Parser;
use hangwatch::cli::{dispatch, Cli};

fn main() -> ExitCode {
    match dispatch(Cli::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // One line naming the cause (and, where the error carries it, the fix).
            hangwatch::sinks::messages::warn(&format!("{e:#}"));
            ExitCode::from(2)
        }
    }
}
