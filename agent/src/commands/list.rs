//! `hangwatch list [--dir DIR] [--since WHEN] [--json]`: stored incidents, oldest first, with
//! the boot and host each happened on (like `coredumpctl list`).
use std::path::PathBuf;

use serde_json::json;

use crate::sinks::store::{self, Stored};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Incident directory [default: /var/lib/hangwatch/incidents].
    #[arg(long, value_name = "DIR", default_value = store::DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Only incidents since WHEN: a duration before now (90m, 2h, 7d) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// One JSON array instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// WHEN → ns since the epoch.
pub fn parse_since(s: &str) -> anyhow::Result<u64> {
    if let Some(t) = store::parse_wall(s) {
        return Ok(t);
    }
    let ago = crate::config::parse_duration_ns(s).map_err(|_| {
        anyhow::anyhow!(
            "--since {s:?}: use a duration (90m, 2h, 7d) or a time like 2026-11-22T10:00:00Z"
        )
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Ok(now.saturating_sub(ago))
}

/// Untrusted text (process names, host names) for a terminal (`escape::terminal`).
pub fn term_safe(s: &str) -> String {
    hangwatch_core::escape::terminal(s).into_owned()
}

fn culprit(s: &Stored) -> String {
    match &s.incident.culprit {
        Some(c) => term_safe(&format!("{}[{}]", c.comm, c.pid)),
        None => "unknown".into(),
    }
}

fn when(s: &Stored) -> String {
    let t = hangwatch_core::correlate::render_wall(s.when_ns);
    if s.when_from_mtime {
        format!("{t}~")
    } else {
        t
    }
}

fn row(s: &Stored) -> serde_json::Value {
    let i = &s.incident;
    json!({
        "id": s.name,
        "path": s.path,
        "wall_time": i.wall_time,
        "boot_id": i.boot_id,
        "hostname": i.hostname,
        "kind": i.kind,
        "gpu": i.gpu,
        "ring": i.ring,
        "culprit": i.culprit,
        "confidence": i.confidence,
        "kernel_blamed": i.kernel_blamed,
        "kernel_blame_disputed": i.kernel_blame_disputed,
        "provisional": i.provisional,
    })
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let (all, problems) = store::list(&args.dir)?;
    for p in &problems {
        crate::warn!("skipped {}", term_safe(p));
    }
    let shown: Vec<&Stored> = all
        .iter()
        .filter(|s| since.is_none_or(|t| s.when_ns >= t))
        .collect();
    if args.json {
        let v: Vec<serde_json::Value> = shown.iter().map(|s| row(s)).collect();
        crate::sinks::messages::stdout(&format!("{}\n", serde_json::Value::Array(v)));
        return Ok(0);
    }
    let mut out = format!(
        "{:<27} {:<15} {:<12} {:<10} {:<24} {:<8} {:<8} {:<12} {}\n",
        "TIME (UTC)", "KIND", "GPU", "RING", "CULPRIT", "CONF", "BOOT", "HOST", "ID"
    );
    for s in &shown {
        let i = &s.incident;
        out += &format!(
            "{:<27} {:<15} {:<12} {:<10} {:<24} {:<8} {:<8} {:<12} {}\n",
            when(s),
            i.kind.name(),
            i.gpu
                .as_deref()
                .map(term_safe)
                .unwrap_or_else(|| "-".into()),
            i.ring
                .as_deref()
                .map(term_safe)
                .unwrap_or_else(|| "-".into()),
            culprit(s),
            i.confidence.name(),
            i.boot_id
                .as_deref()
                .map(|b| term_safe(&b.chars().take(8).collect::<String>()))
                .unwrap_or_else(|| "-".into()),
            i.hostname
                .as_deref()
                .map(term_safe)
                .unwrap_or_else(|| "-".into()),
            term_safe(&s.name) + if i.provisional { " (open)" } else { "" },
        );
    }
    if shown.is_empty() {
        out += &format!("(no incidents in {})\n", args.dir.display());
    } else {
        if shown.iter().any(|s| s.when_from_mtime) {
            out += "~ no wall time in the incident: the time its file was written\n";
        }
        if shown.iter().any(|s| s.incident.provisional) {
            out += "(open) provisional: still open when last written (the agent is watching it, or stopped before it closed)\n";
        }
    }
    crate::sinks::messages::stdout(&out);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        assert_eq!(
            parse_since("2026-11-22T10:00:00Z").unwrap(),
            store::parse_wall("2026-11-22T10:00:00.000000Z").unwrap()
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let t = parse_since("2h").unwrap();
        let ago = now as i128 - t as i128;
        assert!((ago - 7_200_000_000_000).abs() < 60_000_000_000, "{ago}");
        assert!(parse_since("yesterday").is_err());
        assert_eq!(term_safe("a\x1b]0;x\x07b"), "a\\x1b]0;x\\x07b");
    }
}
