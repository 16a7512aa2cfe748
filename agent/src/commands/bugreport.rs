//! `hangwatch bugreport INCIDENT_DIR`: a .tar.gz plus a ready-to-paste drm/amd issue body.
use std::path::PathBuf;

use crate::report::bugreport::{build, write_tar_gz, Roots};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// An incident directory written by `hangwatch run --output` or `analyze --output`.
    pub incident_dir: PathBuf,
    /// Archive path (default: hangwatch-bugreport-<incident dir name>.tar.gz in the current directory).
    #[arg(long, value_name = "FILE.tar.gz")]
    pub out: Option<PathBuf>,
    /// Remove user names, home paths and command-line arguments.
    #[arg(long)]
    pub redact: bool,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let b = build(&args.incident_dir, &Roots::default(), args.redact)?;
    let out = args.out.unwrap_or_else(|| {
        let name = args
            .incident_dir
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "incident".into());
        PathBuf::from(format!("hangwatch-bugreport-{name}.tar.gz"))
    });
    write_tar_gz(&b, &out)?;
    print!("{}", b.markdown);
    eprintln!(
        "hangwatch: wrote {} ({} missing item(s) listed under \"Missing\")",
        out.display(),
        b.missing.len()
    );
    Ok(0)
}
