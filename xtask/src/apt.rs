//! A private apt configuration under target/apt: its own sources list (every Debian suite that
//! ships kernels the VM suite uses), package lists, cache and dpkg status. The host's apt
//! configuration is only READ (which mirror it uses, which keyring signs it); nothing on the
//! host is edited, updated or installed by this module.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

use crate::util::{output, target_dir};

/// Suites that carry amd64 kernel builds: bullseye (5.10), bookworm (6.1, security updates in
/// -security, 6.12 in -backports), trixie (6.12, -security), trixie-backports (6.16 .. 7.x),
/// sid. `true` = served from the security archive.
const SUITES: &[(&str, bool)] = &[
    ("bullseye", false),
    ("bullseye-security", true),
    ("bookworm", false),
    ("bookworm-security", true),
    ("bookworm-backports", false),
    ("trixie", false),
    ("trixie-security", true),
    ("trixie-backports", false),
    ("sid", false),
];

/// Lists older than this are refreshed before a series alias is resolved.
const MAX_LIST_AGE: Duration = Duration::from_secs(6 * 3600);

pub struct Apt {
    dir: PathBuf,
}

/// Where the host's apt fetches Debian from, and with which keyring it verifies it.
#[derive(Debug, PartialEq)]
pub struct Mirrors {
    pub main: String,
    pub security: String,
    pub keyring: String,
}

impl Apt {
    /// Creates (or reuses) target/apt with a sources list built from the host's mirrors.
    pub fn open() -> Result<Apt> {
        let dir = target_dir().join("apt");
        for d in [
            "sources.list.d",
            "preferences.d",
            "lists/partial",
            "cache/archives/partial",
        ] {
            fs::create_dir_all(dir.join(d))?;
        }
        let status = dir.join("status");
        if !status.exists() {
            fs::write(&status, "")?;
        }
        let m = host_mirrors()?;
        let list = sources_list(&m);
        let path = dir.join("sources.list");
        if fs::read_to_string(&path).ok().as_deref() != Some(list.as_str()) {
            fs::write(&path, list)?;
            // Different sources: the old lists no longer describe them.
            let _ = fs::remove_file(dir.join("updated"));
        }
        Ok(Apt { dir })
    }

    /// `-o` options that point apt at the private tree (and skip the host's AppStream
    /// metadata, which the host's apt.conf.d would otherwise fetch for every suite). The
    /// binary caches are kept: Debian's container images turn them off (`docker-clean`), and
    /// then every apt-cache call parses the 81 MB of lists again (25 s against 0.3 s).
    fn opts(&self) -> Vec<String> {
        let d = |rel: &str| self.dir.join(rel).to_string_lossy().into_owned();
        let mut o = Vec::new();
        for (k, v) in [
            ("Dir::Etc::SourceList", d("sources.list")),
            ("Dir::Etc::SourceParts", d("sources.list.d")),
            ("Dir::Etc::Preferences", d("preferences")),
            ("Dir::Etc::PreferencesParts", d("preferences.d")),
            ("Dir::State::Lists", d("lists")),
            ("Dir::State::status", d("status")),
            ("Dir::Cache", d("cache")),
            ("Dir::Cache::pkgcache", "pkgcache.bin".into()),
            ("Dir::Cache::srcpkgcache", "srcpkgcache.bin".into()),
            ("APT::Sandbox::User", "root".into()),
            ("Acquire::Languages", "none".into()),
            (
                "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled",
                "false".into(),
            ),
            (
                "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled",
                "false".into(),
            ),
            (
                "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled",
                "false".into(),
            ),
        ] {
            o.push("-o".into());
            o.push(format!("{k}={v}"));
        }
        o
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.args(self.opts()).env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    fn stamp(&self) -> PathBuf {
        self.dir.join("updated")
    }

    /// True if the private lists were fetched within MAX_LIST_AGE.
    pub fn fresh(&self) -> bool {
        fs::metadata(self.stamp())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < MAX_LIST_AGE)
    }

    /// `apt-get update` on the private lists. A suite that fails (a mirror without bullseye,
    /// say) is a warning: the others still resolve. Fails only if no list at all arrived.
    pub fn update(&self) -> Result<()> {
        eprintln!(
            "xtask apt: updating the private package lists ({})",
            self.dir.display()
        );
        let out = self
            .cmd("apt-get")
            .args(["update", "-q"])
            .stdin(Stdio::null())
            .output()
            .context("running apt-get update")?;
        let err = String::from_utf8_lossy(&out.stderr);
        let problems: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
            .collect();
        for p in &problems {
            eprintln!("xtask apt: {p}");
        }
        if err.contains("NO_PUBKEY") {
            eprintln!("xtask apt: a suite is signed by a key the host's keyring lacks: install a newer debian-archive-keyring .deb's keyrings under target/ or point HANGWATCH_DEBIAN_KEYRING at a keyring that has it");
        }
        if !self.has_lists() {
            bail!(
                "apt-get update fetched no package list ({}): {}",
                out.status,
                problems.join("; ")
            );
        }
        fs::write(self.stamp(), "")?;
        Ok(())
    }

    fn has_lists(&self) -> bool {
        fs::read_dir(self.dir.join("lists"))
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
            })
            .unwrap_or(false)
    }

    /// Makes sure lists exist and are fresh; a failed refresh with usable old lists is a
    /// warning (offline machine with a warm cache).
    pub fn ensure_lists(&self) -> Result<()> {
        if self.fresh() {
            return Ok(());
        }
        match self.update() {
            Ok(()) => Ok(()),
            Err(e) if self.has_lists() => {
                eprintln!("xtask apt: refresh failed, using the old lists: {e:#}");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Package names starting with `prefix` (`apt-cache pkgnames`: real packages, not
    /// virtual ones).
    pub fn names(&self, prefix: &str) -> Result<Vec<String>> {
        let out = output(self.cmd("apt-cache").args(["pkgnames", prefix]))?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// The candidate version's `Depends` package names (alternatives flattened).
    pub fn depends(&self, pkg: &str) -> Result<Vec<String>> {
        let out = output(
            self.cmd("apt-cache")
                .args(["show", "--no-all-versions"])
                .arg(pkg),
        )
        .with_context(|| format!("{pkg} is not in the Debian archive's package lists"))?;
        Ok(parse_depends(&out))
    }

    /// `apt-get download` into `dir` (the packages' signatures were checked at update time,
    /// their hashes are checked now).
    pub fn download(&self, dir: &Path, pkgs: &[String]) -> Result<()> {
        if pkgs.is_empty() {
            return Ok(());
        }
        eprintln!("xtask apt: download {}", pkgs.join(" "));
        let out = self
            .cmd("apt-get")
            .args(["download", "-q"])
            .args(pkgs)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .context("running apt-get download")?;
        if !out.status.success() {
            bail!(
                "apt-get download {} failed: {}",
                pkgs.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// Package names in the `Depends:` field of `apt-cache show` output.
fn parse_depends(show: &str) -> Vec<String> {
    let Some(line) = show.lines().find_map(|l| l.strip_prefix("Depends:")) else {
        return Vec::new();
    };
    line.split([',', '|'])
        .filter_map(|d| d.split_whitespace().next())
        .map(|d| d.split(':').next().unwrap_or(d).to_string())
        .collect()
}

fn sources_list(m: &Mirrors) -> String {
    let mut s =
        String::from("# Written by cargo xtask (xtask/src/apt.rs); private to target/apt.\n");
    for (suite, security) in SUITES {
        let uri = if *security { &m.security } else { &m.main };
        s.push_str(&format!(
            "deb [signed-by={}] {uri} {suite} main\n",
            m.keyring
        ));
    }
    s
}

/// The Debian mirror the host's apt uses (one-line or deb822 sources), so the private lists
/// come from the same place (a local mirror or proxy keeps working). Environment overrides:
/// HANGWATCH_DEBIAN_MIRROR, HANGWATCH_DEBIAN_SECURITY_MIRROR, HANGWATCH_DEBIAN_KEYRING.
pub fn host_mirrors() -> Result<Mirrors> {
    let mut texts = Vec::new();
    if let Ok(t) = fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext == "list" || ext == "sources" {
                if let Ok(t) = fs::read_to_string(&p) {
                    texts.push(t);
                }
            }
        }
    }
    let found = find_mirrors(&texts);
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let main = env("HANGWATCH_DEBIAN_MIRROR").or_else(|| found.as_ref().map(|m| m.main.clone()));
    let Some(main) = main else {
        bail!("the host's apt sources name no Debian mirror (a `deb URI SUITE main` line for bookworm, trixie, ...): set HANGWATCH_DEBIAN_MIRROR to one");
    };
    let security = env("HANGWATCH_DEBIAN_SECURITY_MIRROR")
        .or_else(|| {
            found
                .as_ref()
                .map(|m| m.security.clone())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| format!("{}-security", main.trim_end_matches('/')));
    let keyring = env("HANGWATCH_DEBIAN_KEYRING")
        .or_else(|| found.map(|m| m.keyring))
        .unwrap_or_else(|| DEFAULT_KEYRING.into());
    Ok(Mirrors {
        main,
        security,
        keyring,
    })
}

const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Debian release code names a source entry may carry (any of them marks a Debian mirror).
const CODENAMES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "sid",
    "stable",
    "testing",
    "unstable",
    "oldstable",
];

/// One source entry: URI, suites, signed-by.
struct Entry {
    uri: String,
    suites: Vec<String>,
    signed_by: Option<String>,
}

fn find_mirrors(texts: &[String]) -> Option<Mirrors> {
    let entries: Vec<Entry> = texts.iter().flat_map(|t| parse_sources(t)).collect();
    let is_debian = |s: &str| CODENAMES.contains(&s.split('-').next().unwrap_or(s));
    let main = entries.iter().find(|e| {
        e.suites
            .iter()
            .any(|s| is_debian(s) && !s.ends_with("-security"))
    })?;
    let security = entries.iter().find(|e| {
        e.suites
            .iter()
            .any(|s| is_debian(s) && s.ends_with("-security"))
    });
    Some(Mirrors {
        main: main.uri.clone(),
        security: security.map(|e| e.uri.clone()).unwrap_or_default(),
        keyring: main
            .signed_by
            .clone()
            .filter(|k| k.starts_with('/'))
            .unwrap_or_else(|| DEFAULT_KEYRING.into()),
    })
}

/// Parses one-line (`deb [opts] URI SUITE COMP...`) and deb822 (`Types:/URIs:/Suites:`)
/// sources; disabled and deb-src entries are skipped.
fn parse_sources(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for l in text.lines().map(str::trim) {
        let Some(rest) = l.strip_prefix("deb ") else {
            continue;
        };
        let mut rest = rest.trim();
        let mut signed_by = None;
        if let Some(r) = rest.strip_prefix('[') {
            let (opts, after) = r.split_once(']').unwrap_or((r, ""));
            signed_by = opts
                .split_whitespace()
                .find_map(|o| o.strip_prefix("signed-by="))
                .map(str::to_string);
            rest = after.trim();
        }
        let mut it = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (it.next(), it.next()) {
            out.push(Entry {
                uri: uri.to_string(),
                suites: vec![suite.to_string()],
                signed_by,
            });
        }
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
            })
        };
        let types = field("Types").unwrap_or_default();
        if !types.split_whitespace().any(|t| t == "deb")
            || field("Enabled").is_some_and(|e| e == "no")
        {
            continue;
        }
        let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else {
            continue;
        };
        for uri in uris.split_whitespace() {
            out.push(Entry {
                uri: uri.to_string(),
                suites: suites.split_whitespace().map(str::to_string).collect(),
                signed_by: field("Signed-By"),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_and_one_line_sources_give_the_mirrors() {
        let deb822 = "Types: deb\n# comment\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://m.example/debian-security\nSuites: bookworm-security\nComponents: main\n";
        let other = "deb https://packages.example.com/apt cloud-sdk-bookworm main\n".to_string();
        let m = find_mirrors(&[other, deb822.to_string()]).unwrap();
        assert_eq!(m.main, "http://m.example/debian");
        assert_eq!(m.security, "http://m.example/debian-security");
        assert_eq!(m.keyring, DEFAULT_KEYRING);
        let one = "# x\ndeb [arch=amd64 signed-by=/k.gpg] http://o.example/debian trixie main\n";
        let m = find_mirrors(&[one.to_string()]).unwrap();
        assert_eq!(
            (m.main.as_str(), m.keyring.as_str()),
            ("http://o.example/debian", "/k.gpg")
        );
        assert_eq!(m.security, "");
        assert!(find_mirrors(&["deb-src http://x/debian bookworm main".into()]).is_none());
    }

    #[test]
    fn depends_are_flattened_to_names() {
        let show = "Package: linux-image-7.3.4+deb13-amd64\nDepends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), linux-binary-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1)\nDescription: x\n";
        assert_eq!(
            parse_depends(show),
            [
                "dracut",
                "initramfs-tools",
                "linux-initramfs-tool",
                "linux-base-7.3.4+deb13-amd64",
                "linux-binary-7.3.4+deb13-amd64"
            ]
        );
    }
}
