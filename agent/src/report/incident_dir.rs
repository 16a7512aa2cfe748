//! One directory per incident (incident.json, report.md, trace.perfetto, kernel.log,
//! processes.json). Written atomically — built in `.tmp-<id>`, fsynced, renamed into place —
//! so a reader (or a crash) never sees a half-written incident; retention keeps a reset storm
//! from filling the disk.
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::incident::Incident;

/// Limits so a reset storm cannot fill the disk.
#[derive(Clone, Debug)]
pub struct Retention {
    pub max_incidents: usize,
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_incidents: 100,
            max_bytes: 256 << 20,
        }
    }
}

/// What the live agent captured at incident time besides the incident itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Extras {
    /// `/proc/PID/maps` lines mentioning GPU userspace drivers, per involved pid, captured while alive.
    pub process_maps: Vec<(u32, Vec<String>)>,
}

pub struct IncidentDir {
    root: PathBuf,
    retention: Retention,
    /// Test hook: fail after writing this many files, to prove no partial directory survives.
    #[cfg(test)]
    fail_after_files: Option<usize>,
}

const TMP_PREFIX: &str = ".tmp-";

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
        .collect();
    let s = s.trim_start_matches('.').to_string();
    if s.is_empty() {
        "incident".into()
    } else {
        s
    }
}

fn mkdir_0700(path: &Path) -> Result<()> {
    DirBuilder::new()
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // Set explicitly: the umask may have removed bits, and we never want more than 0700.
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 0700 {}", path.display()))
}

fn write_0600(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("fsync {}", path.display()))
}

fn fsync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync {}", path.display()))
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(path) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The files of one incident directory, in write order.
pub fn render_files(incident: &Incident, extras: &Extras) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let mut kernel_log = String::new();
    for e in &incident.evidence {
        for l in &e.lines {
            kernel_log.push_str(l);
            kernel_log.push('\n');
        }
    }
    Ok(vec![
        ("incident.json", serde_json::to_vec_pretty(incident)?),
        ("report.md", super::markdown::render(incident).into_bytes()),
        ("trace.perfetto", super::perfetto::encode(incident)),
        ("kernel.log", kernel_log.into_bytes()),
        ("processes.json", serde_json::to_vec_pretty(extras)?),
    ])
}

impl IncidentDir {
    /// Open (creating with mode 0700) the root; removes temp dirs a crash left behind.
    pub fn open(root: &Path, retention: Retention) -> Result<Self> {
        if !root.exists() {
            fs::create_dir_all(root)
                .with_context(|| format!("creating incident root {}", root.display()))?;
            fs::set_permissions(root, fs::Permissions::from_mode(0o700))?;
        }
        if !root.is_dir() {
            anyhow::bail!("incident output {} is not a directory", root.display());
        }
        for e in fs::read_dir(root)
            .with_context(|| format!("reading {}", root.display()))?
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        Ok(IncidentDir {
            root: root.to_path_buf(),
            retention,
            #[cfg(test)]
            fail_after_files: None,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Write one incident; returns its directory. Applies retention afterwards.
    pub fn write(&mut self, incident: &Incident, extras: &Extras) -> Result<PathBuf> {
        let base = safe_name(&incident.id);
        let mut name = base.clone();
        let mut n = 2;
        while self.root.join(&name).exists() {
            name = format!("{base}-{n}");
            n += 1;
        }
        let tmp = self.root.join(format!("{TMP_PREFIX}{name}"));
        let _ = fs::remove_dir_all(&tmp);
        let result = self.build(&tmp, incident, extras);
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let dest = self.root.join(&name);
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e).with_context(|| format!("renaming into {}", dest.display()));
        }
        fsync_dir(&self.root)?;
        self.apply_retention(&dest)?;
        Ok(dest)
    }

    fn build(&self, tmp: &Path, incident: &Incident, extras: &Extras) -> Result<()> {
        mkdir_0700(tmp)?;
        for (i, (file, bytes)) in render_files(incident, extras)?.into_iter().enumerate() {
            #[cfg(test)]
            if self.fail_after_files == Some(i) {
                anyhow::bail!("injected failure before {file}");
            }
            let _ = i;
            write_0600(&tmp.join(file), &bytes)?;
        }
        fsync_dir(tmp)
    }

    /// Complete incident directories, oldest first (by incident.json mtime, then name).
    fn incidents(&self) -> Result<Vec<(std::time::SystemTime, PathBuf)>> {
        let mut v = Vec::new();
        for e in fs::read_dir(&self.root)?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let p = e.path();
            if name.starts_with('.') || !p.is_dir() {
                continue;
            }
            let Ok(m) = fs::metadata(p.join("incident.json")) else {
                continue;
            };
            v.push((m.modified().unwrap_or(std::time::UNIX_EPOCH), p));
        }
        v.sort();
        Ok(v)
    }

    /// Delete the oldest incidents beyond the count and byte limits; never the one just written.
    fn apply_retention(&self, newest: &Path) -> Result<()> {
        let all = self.incidents()?;
        let mut sized: Vec<(PathBuf, u64)> = all
            .into_iter()
            .map(|(_, p)| (p.clone(), dir_bytes(&p)))
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
            let (p, b) = sized.remove(i);
            fs::remove_dir_all(&p)
                .with_context(|| format!("retention: removing {}", p.display()))?;
            total = total.saturating_sub(b);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::text::tests::disputed_incident;

    fn tmpdir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("hangwatch-incdir-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
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
        };
        let dir = d.write(&disputed_incident(), &extras).unwrap();
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(old) };
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
    fn failure_mid_write_leaves_no_partial_directory() {
        let root = tmpdir("atomic");
        let mut d = IncidentDir::open(&root, Retention::default()).unwrap();
        let ok = d.write(&disputed_incident(), &Extras::default()).unwrap();
        d.fail_after_files = Some(2);
        let mut inc = disputed_incident();
        inc.id = "second".into();
        assert!(d.write(&inc, &Extras::default()).is_err());
        let names: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        assert_eq!(
            names,
            vec![ok.file_name().unwrap().to_string_lossy().to_string()]
        );
        // A temp dir left by a crash is removed on open.
        fs::create_dir(root.join(".tmp-crashed")).unwrap();
        let _ = IncidentDir::open(&root, Retention::default()).unwrap();
        assert!(!root.join(".tmp-crashed").exists());
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

    #[test]
    fn retention_by_count_keeps_newest() {
        let root = tmpdir("count");
        let mut d = IncidentDir::open(
            &root,
            Retention {
                max_incidents: 3,
                max_bytes: u64::MAX,
            },
        )
        .unwrap();
        let written = write_n(&mut d, 5);
        let mut names: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        names.sort();
        assert_eq!(names, vec!["inc-02", "inc-03", "inc-04"]);
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
            },
        )
        .unwrap();
        write_n(&mut d, 4);
        let mut names: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into())
            .collect();
        names.sort();
        assert_eq!(names, vec!["inc-02", "inc-03"]);
        assert!(dir_bytes(&root) <= one * 2 + one / 2);
        fs::remove_dir_all(&root).unwrap();
    }
}
