//! Stored incident directories, as `hangwatch list` / `show` and retention by age see them.
//! The directory is writable by the agent and readable by root, so everything is opened
//! relative to a directory fd with O_NOFOLLOW: a planted symlink is skipped, never followed.
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

use crate::incident::Incident;

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

fn openat(dir: &OwnedFd, name: &str, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid dirfd and NUL-terminated name; the returned fd is owned by the caller.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the incident root itself, refusing a symlink there too.
pub fn open_root(root: &Path) -> Result<OwnedFd> {
    let c = CString::new(root.as_os_str().as_encoded_bytes()).context("path contains NUL")?;
    // SAFETY: NUL-terminated path; the returned fd is owned by the caller.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) {
            bail!(
                "{} is a symlink or not a directory; refusing to follow it",
                root.display()
            );
        }
        return Err(e)
            .with_context(|| format!("cannot open incident directory {}", root.display()));
    }
    // SAFETY: fd was just returned by open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads `<name>/incident.json` under `root` without following symlinks; regular files only.
fn read_incident(root: &OwnedFd, name: &str) -> Result<(Incident, SystemTime)> {
    let dir = openat(root, name, libc::O_RDONLY | libc::O_DIRECTORY)
        .with_context(|| format!("{name}: not a directory (or a symlink)"))?;
    let fd = openat(&dir, "incident.json", libc::O_RDONLY)
        .with_context(|| format!("{name}/incident.json"))?;
    let f = File::from(fd);
    let meta = f.metadata()?;
    if !meta.is_file() {
        bail!("{name}/incident.json is not a regular file");
    }
    if meta.len() > MAX_JSON {
        bail!(
            "{name}/incident.json is {} bytes; not an incident",
            meta.len()
        );
    }
    let mut text = Vec::new();
    f.take(MAX_JSON).read_to_end(&mut text)?;
    let inc: Incident = serde_json::from_slice(&text)
        .with_context(|| format!("{name}/incident.json is not a hangwatch incident"))?;
    Ok((inc, meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
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
    let rootfd = open_root(root)?;
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/self/fd/{}", rootfd.as_raw_fd()))
        .with_context(|| format!("reading {}", root.display()))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for name in names {
        match read_incident(&rootfd, &name) {
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
    let rootfd = open_root(root)?;
    let mut n = 0;
    for e in std::fs::read_dir(format!("/proc/self/fd/{}", rootfd.as_raw_fd()))?.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let Ok((_, mtime)) = read_incident(&rootfd, &name) else {
            continue;
        };
        if system_ns(mtime) < cutoff {
            // remove_dir_all does not follow symlinks inside; the entry itself is a real
            // directory (read_incident opened it with O_NOFOLLOW).
            std::fs::remove_dir_all(root.join(&name))
                .with_context(|| format!("removing {}", root.join(&name).display()))?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::text::tests::disputed_incident;

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
        assert!(format!("{:#}", list(&link).unwrap_err()).contains("symlink"));
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn prune_removes_only_old_incidents() {
        let root = tmp("prune");
        let old = write_incident(&root, "old", None);
        write_incident(&root, "new", None);
        File::options()
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
