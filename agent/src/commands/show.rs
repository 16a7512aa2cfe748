//! `hangwatch show ID|latest [--dir DIR] [--json]`: one stored incident — where and when it
//! happened (boot, host, wall time), the attribution, and the files saved with it.
use std::path::PathBuf;

use crate::sinks::store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Incident id (directory name or a unique prefix), or "latest".
    pub id: String,
    /// Incident directory [default: /var/lib/hangwatch/incidents].
    #[arg(long, value_name = "DIR", default_value = store::DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Print incident.json instead of the text report.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let s = store::find(&args.dir, &args.id)?;
    let i = &s.incident;
    if args.json {
        crate::sinks::messages::stdout(&(serde_json::to_string_pretty(i)? + "\n"));
        return Ok(0);
    }
    let safe = crate::commands::list::term_safe;
    let mut out = String::new();
    out += &format!("incident:  {}\n", safe(&s.name));
    out += &format!("directory: {}\n", safe(&s.path.display().to_string()));
    out += &format!(
        "time:      {}\n",
        i.wall_time.as_deref().map(safe).unwrap_or_else(|| format!(
            "{} (no wall time recorded; file time)",
            hangwatch_core::correlate::render_wall(s.when_ns)
        ))
    );
    out += &format!(
        "boot:      {}\n",
        i.boot_id
            .as_deref()
            .map(safe)
            .unwrap_or_else(|| "unknown".into())
    );
    out += &format!(
        "host:      {}\n",
        i.hostname
            .as_deref()
            .map(safe)
            .unwrap_or_else(|| "unknown".into())
    );
    if i.provisional {
        out += "state:     provisional (still open when written; the agent may have stopped)\n";
    }
    let mut files: Vec<String> = std::fs::read_dir(&s.path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    out += &format!("files:     {}\n\n", safe(&files.join(" ")));
    out += &hangwatch_core::render::text::render(i);
    crate::sinks::messages::stdout(&out);
    Ok(0)
}
