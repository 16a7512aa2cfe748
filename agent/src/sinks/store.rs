//! Stored incident directories, as `hangwatch list` / `show` and retention by age see them.
//! The directory is writable by the agent and readable by root, so everything is opened
//! through [`SafeDir`] (directory descriptors, O_NOFOLLOW, regular single-link files only): a
//! planted symlink is skipped, never followed.
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

use crate::fsafe::SafeDir;
use hangwatch_core::incident::Incident;

/// Where the packaged service writes incidents (`list`/`show` default).
pub const DEFAULT_DIR: &str = "/var/lib/hangwatch/incidents";
/// incident.json larger than this is not one the agent wrote.
const MAX_JSON: u64 = 64 << 20;

/// One stored incident.
#[derive(Debug)]
pub struct Stored {
    /// The directory name (what `show` accepts).
    pub name: String,
    pub path: PathBuf,
    pub incident: Incident,
    /// Wall-clock time in ns since the epoch: `wall_time`, else incident.json's mtime.
    pub when_ns: u64,
    /// True when `when_ns` came from the file's mtime (the incident had no wall time).
    pub when_from_mtime: bool,
}

/// Reads `<name>/incident.json` under `root` without following symlinks; regular files only.
fn read_incident(root: &SafeDir, name: &str) -> Result<(Incident, SystemTime)> {
    let dir = root
        .subdir(name)
        .with_context(|| format!("{name}: not a directory (or a symlink)"))?;
    let text = dir
        .read_file("incident.json", MAX_JSON)
        .with_context(|| format!("{name}/incident.json"))?;
    let inc: Incident = serde_json::from_slice(&text)
        .with_context(|| format!("{name}/incident.json is not a hangwatch incident"))?;
    let mtime = dir
        .mtime("incident.json")
        .and_then(|(s, ns)| {
            let d = Duration::new(u64::try_from(s).ok()?, u32::try_from(ns).ok()?);
            SystemTime::UNIX_EPOCH.checked_add(d)
        })
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok((inc, mtime))
}

/// The incident entries of `root` (hidden ones are staging and leftovers).
fn entry_names(root: &SafeDir) -> Result<Vec<String>> {
    Ok(root
        .entries()?
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| !n.starts_with('.'))
        .collect())
}

/// `2026-11-22T10:00:00.123456Z` (RFC 3339, any offset) → ns since the epoch.
pub fn parse_wall(s: &str) -> Option<u64> {
    let t: jiff::Timestamp = s.trim().parse().ok()?;
    u64::try_from(t.as_nanosecond()).ok()
}

fn system_ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Every incident under `root`, oldest first, and a line per entry that could not be read.
pub fn list(root: &Path) -> Result<(Vec<Stored>, Vec<String>)> {
    let dir = SafeDir::open_nofollow(root)?;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for name in entry_names(&dir)? {
        match read_incident(&dir, &name) {
            Ok((incident, mtime)) => {
                let wall = incident.wall_time.as_deref().and_then(parse_wall);
                out.push(Stored {
                    path: root.join(&name),
                    name,
                    when_ns: wall.unwrap_or_else(|| system_ns(mtime)),
                    when_from_mtime: wall.is_none(),
                    incident,
                });
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    out.sort_by(|a, b| (a.when_ns, &a.name).cmp(&(b.when_ns, &b.name)));
    Ok((out, problems))
}

/// The incident `which` names: "latest", an exact directory name, or a unique prefix.
pub fn find(root: &Path, which: &str) -> Result<Stored> {
    let (mut all, _) = list(root)?;
    if which == "latest" {
        return all
            .pop()
            .with_context(|| format!("no incidents in {}", root.display()));
    }
    if let Some(i) = all
        .iter()
        .position(|s| s.name == which || s.incident.id == which)
    {
        return Ok(all.swap_remove(i));
    }
    let mut hits: Vec<Stored> = all
        .into_iter()
        .filter(|s| s.name.starts_with(which))
        .collect();
    match hits.len() {
        1 => Ok(hits.remove(0)),
        0 => bail!(
            "no incident {which:?} in {} (see `hangwatch list`)",
            root.display()
        ),
        n => bail!("{which:?} matches {n} incidents: give more of the id"),
    }
}

/// Deletes incident directories whose incident.json is older than `age`; returns how many.
pub fn prune_older_than(root: &Path, age: Duration) -> Result<usize> {
    let cutoff = system_ns(SystemTime::now()).saturating_sub(age.as_nanos() as u64);
    let dir = SafeDir::open_nofollow(root)?;
    let mut n = 0;
    for name in entry_names(&dir)? {
        let Ok((_, mtime)) = read_incident(&dir, &name) else {
            continue;
        };
        if system_ns(mtime) < cutoff {
            dir.remove_tree(&name)?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hangwatch_core::testkit::disputed_incident;

    pub(crate) fn write_incident(root: &Path, name: &str, wall: Option<&str>) -> PathBuf {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let mut inc = disputed_incident();
        inc.id = name.to_string();
        inc.wall_time = wall.map(str::to_string);
        inc.boot_id = Some("3c1e7a56-0f4b-4a2e-9d7e-1b2c3d4e5f60".into());
        inc.hostname = Some("v710-host".into());
        std::fs::write(d.join("incident.json"), serde_json::to_vec(&inc).unwrap()).unwrap();
        d
    }

    pub(crate) fn tmp(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("hw-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn sorted_by_wall_time_and_symlinks_are_not_followed() {
        let root = tmp("list");
        write_incident(&root, "b-later", Some("2026-11-22T10:00:05.000000Z"));
        write_incident(&root, "a-earlier", Some("2026-11-22T09:59:00.000000Z"));
        // A symlinked incident directory and a symlinked incident.json are skipped.
        let outside = tmp("outside");
        write_incident(&outside, "planted", Some("2030-01-01T00:00:00.000000Z"));
        std::os::unix::fs::symlink(outside.join("planted"), root.join("c-link")).unwrap();
        std::fs::create_dir(root.join("d-filelink")).unwrap();
        std::os::unix::fs::symlink(
            outside.join("planted/incident.json"),
            root.join("d-filelink/incident.json"),
        )
        .unwrap();
        let (all, problems) = list(&root).unwrap();
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["a-earlier", "b-later"]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(find(&root, "latest").unwrap().name, "b-later");
        assert_eq!(find(&root, "a-").unwrap().name, "a-earlier");
        assert!(find(&root, "c-link").is_err());
        assert!(find(&root, "zzz").is_err());
        // The root itself as a symlink is refused.
        let link = outside.join("root-link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        assert!(format!("{:#}", list(&link).unwrap_err()).contains("symbolic link"));
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn prune_removes_only_old_incidents() {
        let root = tmp("prune");
        let old = write_incident(&root, "old", None);
        write_incident(&root, "new", None);
        std::fs::File::options()
            .write(true)
            .open(old.join("incident.json"))
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(40 * 86400))
            .unwrap();
        assert_eq!(
            prune_older_than(&root, Duration::from_secs(30 * 86400)).unwrap(),
            1
        );
        assert!(!old.exists());
        assert!(root.join("new").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
