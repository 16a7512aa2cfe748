//! One directory per incident (incident.json, report.md, trace.perfetto, kernel.log,
//! processes.json, and when captured host.json + devcoredump/). Written atomically — built in
//! the private `.staging/` directory, fsynced, renamed into place (or swapped with the previous
//! version of the same incident) — so a reader or a crash never sees a half-written incident.
//! Everything goes through descriptors of directories opened without following symlinks
//! ([`crate::fsafe`]): another user can neither redirect a write nor swap a staged incident.
//! Retention keeps a reset storm from filling the disk; one oversized incident is truncated
//! (and says so) instead of evicting all the others.
use std::path::PathBuf;

use anyhow::{Context, Result};
use rustix::fs::FileType;
use serde::{Deserialize, Serialize};

use crate::fsafe::{Rename, SafeDir};
use crate::sources::hostfacts::HostFacts;
use hangwatch_core::incident::Incident;

/// Limits so a reset storm cannot fill the disk.
#[derive(Clone, Debug)]
pub struct Retention {
    pub max_incidents: usize,
    pub max_bytes: u64,
    /// One incident never takes more than this (nor more than a quarter of `max_bytes`).
    pub max_incident_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_incidents: 100,
            max_bytes: 256 << 20,
            max_incident_bytes: 32 << 20,
        }
    }
}

impl Retention {
    fn incident_cap(&self) -> u64 {
        self.max_incident_bytes
            .min(self.max_bytes / 4)
            .max(64 << 10)
    }
}

/// What the live agent captured at incident time besides the incident itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Extras {
    /// `/proc/PID/maps` lines mentioning GPU userspace drivers, per involved pid, captured while alive.
    pub process_maps: Vec<(u32, Vec<String>)>,
    /// Host and GPU facts captured when the incident opened (`hostfacts::collect`); written as
    /// `host.json` and `devcoredump/*`, not into processes.json.
    #[serde(skip)]
    pub host: Option<HostFacts>,
}

pub struct IncidentDir {
    root: SafeDir,
    staging: SafeDir,
    retention: Retention,
    /// Test hook: fail after writing this many files, to prove no partial directory survives.
    #[cfg(test)]
    fail_after_files: Option<usize>,
    /// Bytes removed so far to make room for each incident a full disk refused, so that
    /// retries do not remove more than one attempt would.
    room_made: std::collections::HashMap<String, u64>,
    /// Test hook: every write fails as on a full filesystem, whatever is removed.
    #[cfg(test)]
    no_space: bool,
}

const STAGING: &str = ".staging";
/// Incidents whose room-making is remembered; beyond that, no room is made for new ones.
const MAX_ROOM_TRACKED: usize = 64;
/// Left by versions that staged next to the incidents.
const OLD_TMP_PREFIX: &str = ".tmp-";

/// Keep ids usable as one path component whatever the correlator put in them.
fn safe_name(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._:-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    let s = s.trim_start_matches('.').to_string();
    if s.is_empty() {
        "incident".into()
    } else {
        s
    }
}

/// The files of one incident directory, in write order (names may contain one `/`).
pub fn render_files(incident: &Incident, extras: &Extras) -> Result<Vec<(String, Vec<u8>)>> {
    let kernel_log = hangwatch_core::render::kernel_log(incident);
    let mut v = vec![
        (
            "incident.json".to_string(),
            serde_json::to_vec_pretty(incident)?,
        ),
        (
            "report.md".into(),
            hangwatch_core::render::markdown::render(incident).into_bytes(),
        ),
        (
            "trace.perfetto".into(),
            hangwatch_core::render::perfetto::encode(incident),
        ),
        ("kernel.log".into(), kernel_log.into_bytes()),
        ("processes.json".into(), serde_json::to_vec_pretty(extras)?),
    ];
    if let Some(h) = &extras.host {
        v.extend(h.files()?);
    }
    Ok(v)
}

fn total(files: &[(String, Vec<u8>)]) -> u64 {
    files.iter().map(|(_, b)| b.len() as u64).sum()
}

/// Cut `bytes` to `keep` bytes and say so on a last line.
fn cut(bytes: &mut Vec<u8>, keep: usize, cap: u64) {
    let was = bytes.len();
    bytes.truncate(keep);
    bytes.extend_from_slice(
        format!("\n[hangwatch: truncated from {was} to {keep} bytes to keep this incident under {cap} bytes]\n")
            .as_bytes(),
    );
}

/// An incident copy small enough to render under `cap`: evidence lines and jobs trimmed.
fn shrink_incident(incident: &Incident, budget: u64) -> (Incident, Vec<String>) {
    let mut inc = incident.clone();
    let mut notes = Vec::new();
    let mut keep = 256usize;
    loop {
        let size = serde_json::to_vec(&inc)
            .map(|v| v.len() as u64)
            .unwrap_or(0);
        if size <= budget || keep == 0 {
            break;
        }
        if inc.evidence.len() > keep {
            // Keep the first and the last: how it started and how it ended.
            let n = inc.evidence.len();
            let tail = inc.evidence.split_off(n - keep / 2);
            inc.evidence.truncate(keep - keep / 2);
            inc.evidence.extend(tail);
            notes.push(format!("evidence items: kept {keep} of {n}"));
        }
        for e in inc.evidence.iter_mut() {
            e.lines.truncate(keep / 16 + 1);
        }
        if inc.jobs.len() > keep {
            let n = inc.jobs.len();
            inc.jobs.drain(..n - keep);
            notes.push(format!("flight-recorder jobs: kept the last {keep} of {n}"));
        }
        keep /= 4;
    }
    (inc, notes)
}

/// Files for `incident` within the per-incident cap. Raw files (devcoredumps, kernel.log) are
/// cut first, then the incident's evidence and jobs; every cut is listed in TRUNCATED.txt and
/// at the end of report.md.
pub fn render_bounded(
    incident: &Incident,
    extras: &Extras,
    cap: u64,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = render_files(incident, extras)?;
    if total(&files) <= cap {
        return Ok(files);
    }
    // The mapped-file names are chosen by the processes: they give way first and never take
    // room from the kernel's own evidence.
    let (extras, mut notes) = shrink_extras(extras, cap / 16);
    let extras = &extras;
    if !notes.is_empty() {
        files = render_files(incident, extras)?;
        if total(&files) <= cap {
            return Ok(with_notes(files, cap, &notes));
        }
    }
    let (small, inc_notes) = shrink_incident(incident, cap / 4);
    if !inc_notes.is_empty() {
        notes.extend(inc_notes);
        let mut re = render_files(&small, extras)?;
        // Keep the full kernel.log and dumps for the raw-file pass below.
        for (n, b) in re.iter_mut() {
            if n == "kernel.log" || n.starts_with("devcoredump/") {
                if let Some((_, orig)) = files.iter().find(|(o, _)| o == n) {
                    b.clone_from(orig);
                }
            }
        }
        files = re;
    }
    let raw = |n: &str| n == "kernel.log" || n.starts_with("devcoredump/") || n == "trace.perfetto";
    let fixed: u64 = files
        .iter()
        .filter(|(n, _)| !raw(n))
        .map(|(_, b)| b.len() as u64)
        .sum();
    let mut budget = cap.saturating_sub(fixed + 4096);
    // Smallest raw files first keep their share; the largest absorb the cut.
    let mut order: Vec<usize> = (0..files.len()).filter(|&i| raw(&files[i].0)).collect();
    order.sort_by_key(|&i| files[i].1.len());
    let mut left = order.len() as u64;
    for i in order {
        let share = budget / left.max(1);
        left -= 1;
        let (name, bytes) = &mut files[i];
        if bytes.len() as u64 > share {
            if name == "trace.perfetto" {
                // A cut protobuf is garbage: drop it rather than ship a corrupt trace.
                notes.push(format!("trace.perfetto: dropped ({} bytes)", bytes.len()));
                bytes.clear();
            } else {
                notes.push(format!("{name}: cut from {} to {share} bytes", bytes.len()));
                cut(bytes, share as usize, cap);
            }
        }
        budget = budget.saturating_sub(bytes.len() as u64);
    }
    files.retain(|(n, b)| !(n == "trace.perfetto" && b.is_empty()));
    Ok(with_notes(files, cap, &notes))
}

/// `files` with the list of cuts at the end of report.md and in TRUNCATED.txt.
fn with_notes(
    mut files: Vec<(String, Vec<u8>)>,
    cap: u64,
    notes: &[String],
) -> Vec<(String, Vec<u8>)> {
    let note = format!(
        "This incident was larger than the {cap}-byte limit per incident and was truncated:\n- {}\n",
        notes.join("\n- ")
    );
    if let Some((_, md)) = files.iter_mut().find(|(n, _)| n == "report.md") {
        md.extend_from_slice(format!("\n## Truncated\n\n{note}").as_bytes());
    }
    files.push(("TRUNCATED.txt".into(), note.into_bytes()));
    files
}

/// Extras whose processes.json fits in `budget`: fewer maps lines per process, then fewer
/// processes (the first ones, the culprit and victims, are kept longest).
fn shrink_extras(extras: &Extras, budget: u64) -> (Extras, Vec<String>) {
    let size = |x: &Extras| serde_json::to_vec_pretty(x).map_or(0, |v| v.len() as u64);
    let mut x = extras.clone();
    let mut notes = Vec::new();
    let mut keep = x
        .process_maps
        .iter()
        .map(|(_, l)| l.len())
        .max()
        .unwrap_or(0);
    let before = size(&x);
    while size(&x) > budget && keep > 0 {
        keep /= 2;
        for (_, l) in x.process_maps.iter_mut() {
            l.truncate(keep);
        }
    }
    while size(&x) > budget && !x.process_maps.is_empty() {
        x.process_maps.pop();
    }
    if x != *extras {
        notes.push(format!(
            "processes.json: driver mappings cut from {before} bytes to {} (at most {keep} lines per process, {} of {} processes)",
            size(&x),
            x.process_maps.len(),
            extras.process_maps.len()
        ));
    }
    (x, notes)
}

impl IncidentDir {
    /// Open the output root, creating it 0700 — or refuse it when a symlink is on its path or
    /// another user could write in it (the error names the fix). Removes staging a crash left.
    pub fn open(root: &std::path::Path, retention: Retention) -> Result<Self> {
        let root = SafeDir::open_private(root, true)
            .with_context(|| format!("incident output {}", root.display()))?;
        for (name, ft) in root.entries()? {
            if name.starts_with(OLD_TMP_PREFIX) && ft == FileType::Directory {
                root.remove_tree(&name)?;
            }
        }
        let staging = match root.subdir(STAGING) {
            Ok(s) => {
                for (name, _) in s.entries()? {
                    s.remove_tree(&name)?;
                }
                s
            }
            Err(_) => {
                root.remove_tree(STAGING)?;
                root.mkdir_private(STAGING)?
            }
        };
        Ok(IncidentDir {
            root,
            staging,
            retention,
            #[cfg(test)]
            fail_after_files: None,
            room_made: Default::default(),
            #[cfg(test)]
            no_space: false,
        })
    }

    /// True when incident `id` is on disk in its final (not provisional) version: it was
    /// closed and reported before a restart re-read its records.
    pub fn holds_final(&self, id: &str) -> bool {
        let Ok(d) = self.root.subdir(&safe_name(id)) else {
            return false;
        };
        d.read_file("incident.json", 64 << 20)
            .ok()
            .and_then(|b| serde_json::from_slice::<Incident>(&b).ok())
            .is_some_and(|i| i.id == id && !i.provisional)
    }

    pub fn root(&self) -> &std::path::Path {
        self.root.path()
    }

    /// The extras saved with incident `name` (processes.json, host.json, devcoredump/*), to
    /// carry them into a rewrite of it: an incident a stopped agent left provisional keeps the
    /// facts captured when it opened. What cannot be read is left out.
    pub fn load_extras(&self, name: &str) -> Result<Extras> {
        let d = self.root.subdir(name)?;
        let mut ex: Extras = d
            .read_file("processes.json", 64 << 20)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let host: Option<HostFacts> = d
            .read_file("host.json", 16 << 20)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(mut h) = host {
            let dumps = d.subdir("devcoredump").ok();
            h.devcoredumps.retain_mut(|dc| {
                let data = dumps
                    .as_ref()
                    .filter(|_| !dc.file.contains('/'))
                    .and_then(|s| {
                        s.read_file(&dc.file, crate::sources::hostfacts::MAX_DEVCOREDUMP)
                            .ok()
                    });
                match data {
                    Some(b) => {
                        dc.data = b;
                        true
                    }
                    None => false,
                }
            });
            ex.host = Some(h);
        }
        Ok(ex)
    }

    /// The output root was removed while running (its descriptor shows no link): make it
    /// again, with the same checks as at start, instead of failing every later incident.
    fn ensure_root(&mut self) -> Result<()> {
        let st = rustix::fs::fstat(self.root.fd())?;
        if st.st_nlink > 0 {
            return Ok(());
        }
        let path = self.root.path().to_path_buf();
        crate::warn!("{} was removed; creating it again", path.display());
        let fresh = IncidentDir::open(&path, self.retention.clone())?;
        self.root = fresh.root;
        self.staging = fresh.staging;
        Ok(())
    }

    /// Write one incident under a new name (its id, `-2`, `-3` on collision); returns its
    /// directory. Applies retention afterwards.
    pub fn write(&mut self, incident: &Incident, extras: &Extras) -> Result<PathBuf> {
        self.ensure_root()?;
        let base = safe_name(&incident.id);
        let staged = self.stage(&base, incident, extras)?;
        let mut n = 1;
        let name = loop {
            let name = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            match self.move_in(&staged, &name, Rename::NoReplace) {
                Ok(()) => break name,
                Err(e) if n < 10_000 && is_exists(&e) => n += 1,
                Err(e) => {
                    let _ = self.staging.remove_tree(&staged);
                    return Err(e);
                }
            }
        };
        self.finish(&name)
    }

    /// Write `incident` under its id, atomically replacing an earlier version of the same
    /// incident (a provisional write while it was open). Readers see the old or the new
    /// version, never a mix; both writes are fsynced.
    pub fn replace(&mut self, incident: &Incident, extras: &Extras) -> Result<PathBuf> {
        self.ensure_root()?;
        let name = safe_name(&incident.id);
        let staged = self.stage(&name, incident, extras)?;
        let moved = match self.move_in(&staged, &name, Rename::NoReplace) {
            Err(e) if is_exists(&e) => self
                .move_in(&staged, &name, Rename::Exchange)
                // The previous version is now at the staged name.
                .and_then(|()| self.staging.remove_tree(&staged)),
            r => r,
        };
        if let Err(e) = moved {
            let _ = self.staging.remove_tree(&staged);
            return Err(e);
        }
        self.finish(&name)
    }

    fn finish(&mut self, name: &str) -> Result<PathBuf> {
        self.root.sync()?;
        self.staging.sync()?;
        self.apply_retention(name)?;
        Ok(self.root.path().join(name))
    }

    fn move_in(&self, staged: &str, name: &str, how: Rename) -> Result<()> {
        let flags = match how {
            Rename::NoReplace => rustix::fs::RenameFlags::NOREPLACE,
            Rename::Exchange => rustix::fs::RenameFlags::EXCHANGE,
        };
        let (sd, rd) = (self.staging.fd(), self.root.fd());
        let r = match rustix::fs::renameat_with(sd, staged, rd, name, flags) {
            // Filesystems without renameat2 flags (some network and FUSE ones): the root is
            // private to us, so check-then-rename cannot be raced by another user; a replace
            // then leaves a moment without the incident instead of an atomic swap.
            Err(rustix::io::Errno::INVAL) => match how {
                Rename::NoReplace => {
                    match rustix::fs::statat(rd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(_) => Err(rustix::io::Errno::EXIST),
                        Err(_) => rustix::fs::renameat(sd, staged, rd, name),
                    }
                }
                Rename::Exchange => {
                    // Afterwards the old version sits at the staged name, as after EXCHANGE.
                    let old = format!("{staged}.old");
                    rustix::fs::renameat(rd, name, sd, &old).and_then(|()| {
                        match rustix::fs::renameat(sd, staged, rd, name) {
                            Ok(()) => rustix::fs::renameat(sd, &old, sd, staged),
                            Err(e) => {
                                let _ = rustix::fs::renameat(sd, &old, rd, name);
                                Err(e)
                            }
                        }
                    })
                }
            },
            r => r,
        };
        r.map_err(|e| std::io::Error::from_raw_os_error(e.raw_os_error()))
            .with_context(|| format!("moving incident {name} into {}", self.root.path().display()))
    }

    /// Build the incident in `.staging/<name>`; returns the staged name. When the filesystem
    /// is full, the oldest incidents make room (see [`IncidentDir::make_room`]): for one
    /// incident, over all its attempts, at most twice its size plus 1 MiB.
    fn stage(&mut self, name: &str, incident: &Incident, extras: &Extras) -> Result<String> {
        let staged = format!("{name}.{}", std::process::id());
        let files = render_bounded(incident, extras, self.retention.incident_cap())?;
        let budget = total(&files).saturating_mul(2).saturating_add(1 << 20);
        loop {
            self.staging.remove_tree(&staged)?;
            let e = match self.build(&staged, &files) {
                Ok(()) => {
                    self.room_made.remove(name);
                    return Ok(staged);
                }
                Err(e) => e,
            };
            let _ = self.staging.remove_tree(&staged);
            let freed = self.room_made.get(name).copied();
            let untracked = freed.is_none() && self.room_made.len() >= MAX_ROOM_TRACKED;
            if !is_no_space(&e) || untracked || freed.unwrap_or(0) >= budget {
                return Err(e);
            }
            match self.make_room(name)? {
                Some(b) => *self.room_made.entry(name.to_string()).or_default() += b.max(1),
                None => return Err(e.context("no older finished incident left to remove")),
            }
        }
    }

    /// The filesystem is full: removes the oldest finished incident other than `keep`, so
    /// the newest evidence is stored rather than lost. Returns the bytes freed, or None when
    /// nothing can go. Open (provisional) incidents are never removed. A write frees at most
    /// about twice its own size: a disk filled by something else does not cost every incident.
    fn make_room(&self, keep: &str) -> Result<Option<u64>> {
        for (_, n) in self.incidents()? {
            if n == keep || self.is_provisional(&n) {
                continue;
            }
            let b = self.root.tree_bytes(&n);
            self.root
                .remove_tree(&n)
                .with_context(|| format!("making room: removing {n}"))?;
            crate::warn!("disk full: removed the oldest incident {n} ({b} bytes) to store {keep}");
            return Ok(Some(b));
        }
        Ok(None)
    }

    fn is_provisional(&self, name: &str) -> bool {
        self.root
            .subdir(name)
            .ok()
            .and_then(|d| d.read_file("incident.json", 64 << 20).ok())
            .and_then(|b| serde_json::from_slice::<Incident>(&b).ok())
            .is_none_or(|i| i.provisional)
    }

    fn build(&self, staged: &str, files: &[(String, Vec<u8>)]) -> Result<()> {
        #[cfg(test)]
        if self.no_space {
            let e = std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error());
            return Err(anyhow::Error::new(e).context("injected full disk"));
        }
        let dir = self.staging.mkdir_private(staged)?;
        let mut subdirs: Vec<(String, SafeDir)> = Vec::new();
        for (i, (file, bytes)) in files.iter().enumerate() {
            #[cfg(test)]
            if self.fail_after_files == Some(i) {
                anyhow::bail!("injected failure before {file}");
            }
            let _ = i;
            match file.split_once('/') {
                Some((sub, leaf)) => {
                    if !subdirs.iter().any(|(n, _)| n == sub) {
                        subdirs.push((sub.to_string(), dir.mkdir_private(sub)?));
                    }
                    let (_, d) = subdirs.iter().find(|(n, _)| n == sub).expect("just added");
                    d.create_file(leaf, bytes)?;
                }
                None => dir.create_file(file, bytes)?,
            }
        }
        for (_, d) in &subdirs {
            d.sync()?;
        }
        dir.sync()
    }

    /// Complete incident directories, oldest first (by incident.json mtime, then name).
    fn incidents(&self) -> Result<Vec<((i64, i64), String)>> {
        let mut v = Vec::new();
        for (name, ft) in self.root.entries()? {
            if name.starts_with('.') || ft != FileType::Directory {
                continue;
            }
            if let Some(t) = self.root.mtime(&format!("{name}/incident.json")) {
                v.push((t, name));
            }
        }
        v.sort();
        Ok(v)
    }

    /// Delete the oldest incidents beyond the count and byte limits; never the one just written.
    fn apply_retention(&self, newest: &str) -> Result<()> {
        let mut sized: Vec<(String, u64)> = self
            .incidents()?
            .into_iter()
            .map(|(_, n)| {
                let b = self.root.tree_bytes(&n);
                (n, b)
            })
            .collect();
        let mut total: u64 = sized.iter().map(|(_, b)| b).sum();
        let mut i = 0;
        while i < sized.len()
            && (sized.len() > self.retention.max_incidents.max(1)
                || total > self.retention.max_bytes)
        {
            if sized[i].0 == newest {
                i += 1;
                continue;
            }
            let (n, b) = sized.remove(i);
            self.root
                .remove_tree(&n)
                .with_context(|| format!("retention: removing {n}"))?;
            total = total.saturating_sub(b);
        }
        Ok(())
    }
}

/// A failure more room can cure: the filesystem (ENOSPC) or the quota (EDQUOT) is full.
fn is_no_space(e: &anyhow::Error) -> bool {
    let full = [rustix::io::Errno::NOSPC, rustix::io::Errno::DQUOT].map(|e| e.raw_os_error());
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|n| full.contains(&n))
    })
}

fn is_exists(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AlreadyExists)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangwatch_core::testkit::disputed_incident;
    use std::fs::{self, File};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn tmpdir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("hangwatch-incdir-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn names(root: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .filter(|n: &String| !n.starts_with('.'))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_all_files_with_strict_modes_despite_umask() {
        let root = tmpdir("modes");
        // SAFETY: umask only swaps the process's file-creation mask.
        let old = unsafe { libc::umask(0) };
        let mut d = IncidentDir::open(&root, Retention::default()).unwrap();
        let extras = Extras {
            process_maps: vec![(
                7021,
                vec!["7f00-7f10 r-xp 0 00:00 1 /usr/lib/libvulkan_radeon.so".into()],
            )],
            host: None,
        };
        let dir = d.write(&disputed_incident(), &extras).unwrap();
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(old) };
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&dir), 0o700);
        for f in [
            "incident.json",
            "report.md",
            "trace.perfetto",
            "kernel.log",
            "processes.json",
        ] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        let back: Incident =
            serde_json::from_slice(&fs::read(dir.join("incident.json")).unwrap()).unwrap();
        assert_eq!(back, disputed_incident());
        let log = fs::read_to_string(dir.join("kernel.log")).unwrap();
        assert_eq!(log.lines().count(), 5);
        assert!(log.lines().next().unwrap().contains("page fault"));
        let px: Extras =
            serde_json::from_slice(&fs::read(dir.join("processes.json")).unwrap()).unwrap();
        assert_eq!(px, extras);
        // Same id again gets a suffix, not an overwrite.
        let dir2 = d.write(&disputed_incident(), &Extras::default()).unwrap();
        assert_eq!(
            dir2.file_name().unwrap().to_string_lossy(),
            format!("{}-2", safe_name(&disputed_incident().id))
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn replace_swaps_versions_of_one_incident_atomically() {
        let root = tmpdir("replace");
        let mut d = IncidentDir::open(&root, Retention::default()).unwrap();
        let mut inc = disputed_incident();
        inc.provisional = true;
        inc.reasoning = "first".into();
        let p1 = d.replace(&inc, &Extras::default()).unwrap();
        inc.provisional = false;
        inc.reasoning = "final".into();
        let host = crate::sources::hostfacts::HostFacts {
            schema: crate::sources::hostfacts::HOST_SCHEMA.into(),
            devcoredumps: vec![crate::sources::hostfacts::Devcoredump {
                source: "/sys/class/devcoredump/devcd1/data".into(),
                file: "devcd1.txt".into(),
                bytes: 4,
                truncated: false,
                data: b"dump".to_vec(),
            }],
            ..Default::default()
        };
        let extras = Extras {
            host: Some(host),
            ..Default::default()
        };
        let p2 = d.replace(&inc, &extras).unwrap();
        assert_eq!(p1, p2);
        assert_eq!(names(&root), vec![safe_name(&inc.id)]);
        let back: Incident =
            serde_json::from_slice(&fs::read(p2.join("incident.json")).unwrap()).unwrap();
        assert_eq!(back.reasoning, "final");
        assert!(!back.provisional);
        assert_eq!(
            fs::read(p2.join("devcoredump/devcd1.txt")).unwrap(),
            b"dump"
        );
        assert!(fs::read_to_string(p2.join("host.json"))
            .unwrap()
            .contains("devcd1.txt"));
        // Nothing left in staging.
        assert_eq!(fs::read_dir(root.join(STAGING)).unwrap().count(), 0);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn failure_mid_write_leaves_no_partial_directory() {
        let root = tmpdir("atomic");
        let mut d = IncidentDir::open(&root, Retention::default()).unwrap();
        let ok = d.write(&disputed_incident(), &Extras::default()).unwrap();
        d.fail_after_files = Some(2);
        let mut inc = disputed_incident();
        inc.id = "second".into();
        assert!(d.write(&inc, &Extras::default()).is_err());
        assert!(d.replace(&inc, &Extras::default()).is_err());
        assert_eq!(
            names(&root),
            vec![ok.file_name().unwrap().to_string_lossy().to_string()]
        );
        assert_eq!(fs::read_dir(root.join(STAGING)).unwrap().count(), 0);
        // Temp dirs left by a crash are removed on open.
        fs::create_dir(root.join(".tmp-crashed")).unwrap();
        fs::create_dir(root.join(STAGING).join("x.1")).unwrap();
        let _ = IncidentDir::open(&root, Retention::default()).unwrap();
        assert!(!root.join(".tmp-crashed").exists());
        assert!(!root.join(STAGING).join("x.1").exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_output_directory_removed_while_running_is_made_again() {
        let root = tmpdir("removed");
        let mut d = IncidentDir::open(&root, Retention::default()).unwrap();
        write_n(&mut d, 1);
        fs::remove_dir_all(&root).unwrap();
        let mut inc = disputed_incident();
        inc.id = "after".into();
        let p = d
            .write(&inc, &Extras::default())
            .expect("written after the removal");
        assert!(p.join("incident.json").is_file());
        assert_eq!(mode(&root), 0o700);
        inc.id = "after2".into();
        d.replace(&inc, &Extras::default()).unwrap();
        assert_eq!(names(&root), vec!["after", "after2"]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_full_disk_removing_cannot_cure_costs_a_bounded_number_of_incidents() {
        let root = tmpdir("nospace");
        let mut d = IncidentDir::open(&root, Retention::default()).unwrap();
        let old = write_n(&mut d, 40);
        let own = dir_bytes(&old[1]);
        for p in &old {
            fs::write(p.join("pad"), vec![0u8; 100_000]).unwrap();
        }
        // The oldest is still open: never removed to make room.
        let mut open = disputed_incident();
        open.id = "inc-00".into();
        open.provisional = true;
        d.replace(&open, &Extras::default()).unwrap();
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(999_999);
        File::options()
            .write(true)
            .open(old[0].join("incident.json"))
            .unwrap()
            .set_modified(t)
            .unwrap();
        d.no_space = true;
        let mut inc = disputed_incident();
        inc.id = "new".into();
        let e = d.write(&inc, &Extras::default()).unwrap_err();
        assert!(is_no_space(&e), "{e:#}");
        let removed: Vec<bool> = old.iter().map(|p| !p.exists()).collect();
        let n = removed.iter().filter(|r| **r).count();
        // Twice the incident's size plus 1 MiB, in incidents of 100 KB + `own`.
        let want = (2 * own + (1 << 20)).div_ceil(100_000 + own) as usize;
        assert!(
            (want.saturating_sub(1)..=want + 1).contains(&n),
            "{n} removed, about {want} expected"
        );
        assert!(!removed[0], "the open incident was removed");
        assert!(
            removed[1..=n].iter().all(|r| *r),
            "oldest first: {removed:?}"
        );
        // A retry of the same incident removes nothing more.
        assert!(d.replace(&inc, &Extras::default()).is_err());
        let now = old.iter().filter(|p| !p.exists()).count();
        assert_eq!(now, n, "a retry removed more");
        fs::remove_dir_all(&root).unwrap();
    }

    fn write_n(d: &mut IncidentDir, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let mut inc = disputed_incident();
                inc.id = format!("inc-{i:02}");
                let p = d.write(&inc, &Extras::default()).unwrap();
                // Distinct mtimes so "oldest" is well defined.
                let t = std::time::SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_secs(1_000_000 + i as u64);
                File::options()
                    .write(true)
                    .open(p.join("incident.json"))
                    .unwrap()
                    .set_modified(t)
                    .unwrap();
                p
            })
            .collect()
    }

    fn dir_bytes(p: &Path) -> u64 {
        fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| {
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    dir_bytes(&e.path())
                } else {
                    m.len()
                }
            })
            .sum()
    }

    #[test]
    fn retention_by_count_keeps_newest() {
        let root = tmpdir("count");
        let mut d = IncidentDir::open(
            &root,
            Retention {
                max_incidents: 3,
                ..Retention::default()
            },
        )
        .unwrap();
        let written = write_n(&mut d, 5);
        assert_eq!(names(&root), vec!["inc-02", "inc-03", "inc-04"]);
        assert!(!written[0].exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn retention_by_bytes() {
        let root = tmpdir("bytes");
        let mut probe = IncidentDir::open(&root, Retention::default()).unwrap();
        let one = dir_bytes(&write_n(&mut probe, 1)[0]);
        fs::remove_dir_all(&root).unwrap();
        let mut d = IncidentDir::open(
            &root,
            Retention {
                max_incidents: 100,
                max_bytes: one * 2 + one / 2,
                max_incident_bytes: u64::MAX,
            },
        )
        .unwrap();
        write_n(&mut d, 4);
        assert_eq!(names(&root), vec!["inc-02", "inc-03"]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn hostile_maps_never_push_out_the_kernel_evidence() {
        // Processes named in an incident choose their mapped file names: many of them, with
        // long names, used to take the room of kernel.log (cut to 0) and the trace.
        let inc = disputed_incident();
        let line = format!(
            "7f00-7f10 r-xp 0 08:01 1 /tmp/{}/libvulkan_radeon.so",
            "a".repeat(480)
        );
        let extras = Extras {
            process_maps: (0..200).map(|p| (p, vec![line.clone(); 64])).collect(),
            host: None,
        };
        let cap = 1 << 20;
        let full = render_files(&inc, &Extras::default()).unwrap();
        let files = render_bounded(&inc, &extras, cap).unwrap();
        assert!(total(&files) <= cap, "{}", total(&files));
        for n in ["kernel.log", "trace.perfetto", "incident.json"] {
            let want = &full.iter().find(|(f, _)| f == n).unwrap().1;
            let got = &files.iter().find(|(f, _)| f == n).expect(n).1;
            assert_eq!(got, want, "{n} was cut for the attacker's names");
        }
        let note = &files.iter().find(|(f, _)| f == "TRUNCATED.txt").unwrap().1;
        assert!(String::from_utf8_lossy(note).contains("processes.json: driver mappings cut"));
    }

    #[test]
    fn an_oversized_incident_is_truncated_instead_of_evicting_the_others() {
        let root = tmpdir("oversized");
        let retention = Retention {
            max_incidents: 100,
            max_bytes: 4 << 20,
            max_incident_bytes: 1 << 20,
        };
        let mut d = IncidentDir::open(&root, retention).unwrap();
        write_n(&mut d, 3);
        // One fault header followed by a flood of continuation lines, and a huge dump.
        let mut big = disputed_incident();
        big.id = "big".into();
        big.evidence[0].lines = (0..200_000)
            .map(|i| format!("continuation line {i}"))
            .collect();
        big.evidence.extend((0..5000).map(|i| {
            let mut e = disputed_incident().evidence[1].clone();
            e.what = format!("refusal {i}");
            e
        }));
        let host = crate::sources::hostfacts::HostFacts {
            devcoredumps: vec![crate::sources::hostfacts::Devcoredump {
                file: "devcd1.txt".into(),
                data: vec![b'x'; 3 << 20],
                ..Default::default()
            }],
            ..Default::default()
        };
        let p = d
            .write(
                &big,
                &Extras {
                    host: Some(host),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(names(&root), vec!["big", "inc-00", "inc-01", "inc-02"]);
        assert!(dir_bytes(&p) <= 1 << 20, "{}", dir_bytes(&p));
        let note = fs::read_to_string(p.join("TRUNCATED.txt")).unwrap();
        assert!(note.contains("evidence items: kept"), "{note}");
        assert!(note.contains("devcoredump/devcd1.txt: cut"), "{note}");
        let md = fs::read_to_string(p.join("report.md")).unwrap();
        assert!(md.contains("## Truncated"), "{md}");
        let back: Incident =
            serde_json::from_slice(&fs::read(p.join("incident.json")).unwrap()).unwrap();
        assert_eq!(back.evidence.last().unwrap().what, "refusal 4999");
        let dump = fs::read_to_string(p.join("devcoredump/devcd1.txt")).unwrap();
        assert!(dump.ends_with("bytes]\n"), "{}", &dump[dump.len() - 100..]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn symlinked_or_shared_roots_are_refused() {
        let base = tmpdir("refuse");
        fs::create_dir_all(base.join("real")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        let e = IncidentDir::open(&base.join("link"), Retention::default())
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        fs::set_permissions(base.join("real"), fs::Permissions::from_mode(0o777)).unwrap();
        let e = IncidentDir::open(&base.join("real"), Retention::default())
            .err()
            .unwrap();
        assert!(
            format!("{e:#}").contains("choose a directory only"),
            "{e:#}"
        );
        fs::remove_dir_all(&base).unwrap();
    }
}
