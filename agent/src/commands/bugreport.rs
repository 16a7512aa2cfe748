//! `hangwatch bugreport INCIDENT_DIR`: a .tar.gz plus a ready-to-paste drm/amd issue body.
use std::path::PathBuf;

use crate::sinks::bugreport::{build, write_tar_gz, Options, Roots};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// An incident directory written by `hangwatch run --output` or `analyze --output`.
    pub incident_dir: PathBuf,
    /// Archive path (default: hangwatch-bugreport-NAME.tar.gz in the current directory, NAME
    /// being the incident directory's name). Written as a new 0600 file; an existing file or symlink there is replaced.
    #[arg(long, value_name = "FILE.tar.gz")]
    pub out: Option<PathBuf>,
    /// Remove user names, home paths, host names, addresses, serials and UUIDs (docs/security.md).
    #[arg(long)]
    pub redact: bool,
    /// Attach the devcoredumps saved with the incident (ring and IB contents; large).
    #[arg(long)]
    pub with_devcoredump: bool,
    /// When the incident has no saved host facts, describe the machine this runs on (only
    /// right if it is the machine that hung).
    #[arg(long)]
    pub host_facts_now: bool,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let opts = Options {
        redact: args.redact,
        with_devcoredump: args.with_devcoredump,
        host_facts_now: args.host_facts_now,
    };
    let b = build(&args.incident_dir, &Roots::default(), &opts)?;
    let out = args.out.unwrap_or_else(|| {
        let name = args
            .incident_dir
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "incident".into());
        PathBuf::from(format!("hangwatch-bugreport-{name}.tar.gz"))
    });
    write_tar_gz(&b, &out)?;
    crate::sinks::messages::stdout(&b.markdown);
    crate::sinks::messages::warn(&format!(
        "wrote {} ({} missing item(s) listed under \"Missing\")",
        out.display(),
        b.missing.len()
    ));
    Ok(0)
}
