//! Gets any Debian kernel build's image, modules and headers WITHOUT installing them: resolves
//! a series alias (`6.1`, `7`) to the newest build, downloads the packages through the private
//! apt configuration (apt.rs), extracts them with `dpkg-deb -x` into
//! `target/vm-cache/<build>/root` (never the host's /boot), folds merged-/usr trees, fixes the
//! absolute paths Debian's headers packages assume, generates modules.dep and extracts an
//! uncompressed vmlinux (its .BTF is the base for the simulator's module BTF). Cached: a second
//! call for the same build is a no-op.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::apt::Apt;
use crate::util::{run, target_dir};

pub struct Kernel {
    /// The exact build, e.g. `6.1.0-57-amd64`, `7.3.4+deb13-amd64`.
    pub version: String,
    /// `target/vm-cache/<version>`
    pub dir: PathBuf,
    /// Extracted packages (merged-/usr: `lib` is a symlink to `usr/lib` when the packages
    /// ship `usr/lib/modules`, as every Debian kernel from trixie on does).
    pub root: PathBuf,
}

impl Kernel {
    /// `boot/vmlinuz-V` (up to 6.x) or `usr/lib/modules/V/vmlinuz` (the 7.x `linux-binary-V`).
    pub fn vmlinuz(&self) -> PathBuf {
        let boot = self
            .root
            .join("boot")
            .join(format!("vmlinuz-{}", self.version));
        if boot.exists() {
            return boot;
        }
        self.modules().join("vmlinuz")
    }
    pub fn vmlinux(&self) -> PathBuf {
        self.dir.join("vmlinux")
    }
    pub fn headers(&self) -> PathBuf {
        self.root
            .join("usr/src")
            .join(format!("linux-headers-{}", self.version))
    }
    pub fn modules(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.version)
    }
}

/// `major.minor` of a build name (`6.1.0-57-amd64` -> `6.1`, `7.3.4+deb13-amd64` -> `7.3`).
pub fn series_of(version: &str) -> String {
    let nums: Vec<&str> = version
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .collect();
    nums.join(".")
}

/// The flavour the VM boots (generic amd64, not -cloud or -rt).
const FLAVOUR: &str = "-amd64";

/// `--kernel` takes an exact build (`6.1.0-57-amd64`) or a series alias (`5.10`, `6.1`,
/// `6.12`, `7`, `7.3`: the newest build of that series in the archive). Exact builds are
/// returned as they are; an alias needs the private package lists.
pub fn resolve(spec: &str) -> Result<String> {
    if !is_series(spec) {
        return Ok(spec.to_string());
    }
    let from_lists = Apt::open().and_then(|apt| {
        apt.ensure_lists()?;
        newest_in_lists(&apt, spec)
    });
    match from_lists {
        Ok(v) => {
            eprintln!("xtask vm: kernel series {spec} = {v}");
            Ok(v)
        }
        // Offline with a warm cache: the newest build of the series already prepared.
        Err(e) => match newest_prepared(spec) {
            Some(v) => {
                eprintln!("xtask vm: {e:#}; using {v}, already in target/vm-cache");
                Ok(v)
            }
            None => Err(e),
        },
    }
}

/// `7`, `6.1`, `6.12` (digits and at most one dot) are series; anything else is a build.
pub fn is_series(spec: &str) -> bool {
    let mut parts = spec.split('.');
    let ok =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let first = parts.next();
    let second = parts.next();
    ok(first) && (second.is_none() || ok(second)) && parts.next().is_none()
}

fn newest_in_lists(apt: &Apt, series: &str) -> Result<String> {
    let mut builds: Vec<String> = apt
        .names("linux-image-")?
        .iter()
        .filter_map(|n| build_of(n, series))
        .collect();
    builds.sort_by_key(|a| version_key(a));
    builds.pop().with_context(|| {
        format!("no linux-image-*{FLAVOUR} build of series {series} in bullseye, bookworm(-security, -backports), trixie(-security, -backports) or sid")
    })
}

/// `linux-image-<build>` of the series -> `<build>` (generic flavour only; the unversioned
/// metapackages like `linux-image-6.12-amd64` have no third number and are skipped).
fn build_of(pkg: &str, series: &str) -> Option<String> {
    let build = pkg.strip_prefix("linux-image-")?;
    let stem = build.strip_suffix(FLAVOUR)?;
    if stem.ends_with("-cloud") || stem.ends_with("-rt") || stem.contains("-dbg") {
        return None;
    }
    let nums: Vec<&str> = stem.split(|c: char| !c.is_ascii_digit()).collect();
    if nums.len() < 3 || nums[2].is_empty() {
        return None;
    }
    in_series(build, series).then(|| build.to_string())
}

fn in_series(build: &str, series: &str) -> bool {
    let s = series_of(build);
    s == series || s.split('.').next() == Some(series)
}

/// Natural order: every run of digits compares as a number (`6.12.90+deb13.1` > `6.12.90+deb13`
/// > `6.12.90+deb12`, `6.1.0-57` > `6.1.0-9`).
fn version_key(build: &str) -> Vec<u64> {
    build
        .strip_suffix(FLAVOUR)
        .unwrap_or(build)
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(u64::MAX))
        .collect()
}

fn newest_prepared(series: &str) -> Option<String> {
    let mut v: Vec<String> = fs::read_dir(target_dir().join("vm-cache"))
        .ok()?
        .flatten()
        .filter(|e| e.path().join(".prepared").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|b| in_series(b, series))
        .collect();
    v.sort_by_key(|a| version_key(a));
    v.pop()
}

pub fn prepare(version: &str) -> Result<Kernel> {
    let version = resolve(version)?;
    let dir = target_dir().join("vm-cache").join(&version);
    let k = Kernel {
        version: version.clone(),
        root: dir.join("root"),
        dir,
    };
    let stamp = k.dir.join(".prepared");
    if stamp.exists() {
        fix_headers(&k)?; // cheap, and keeps working if the checkout moved
        return Ok(k);
    }
    let debs = k.dir.join("debs");
    fs::create_dir_all(&debs)?;
    fetch(&version, &debs)?;
    if k.root.exists() {
        fs::remove_dir_all(&k.root)?;
    }
    fs::create_dir_all(&k.root)?;
    for e in fs::read_dir(&debs)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "deb") {
            run(Command::new("dpkg-deb").arg("-x").arg(&p).arg(&k.root))?;
        }
    }
    merge_usr(&k.root)?;
    if !k.vmlinuz().exists() {
        bail!(
            "{version}: no kernel image in the packages (looked for boot/vmlinuz-{version} and usr/lib/modules/{version}/vmlinuz)"
        );
    }
    fix_headers(&k)?;
    run(Command::new("depmod").arg("-b").arg(&k.root).arg(&version))?;
    extract_vmlinux(&k.vmlinuz(), &k.vmlinux())?;
    fs::write(&stamp, "ok\n")?;
    Ok(k)
}

/// Downloads the image, headers and the packages they are split into. The image's own
/// `Depends` names the split parts (7.x: `linux-image-V` is a metapackage over
/// `linux-binary-V` + `linux-modules-V`); the headers' name `linux-headers-*-common` and
/// `linux-kbuild-*`. Taking them from `Depends` means a new split needs no code change.
fn fetch(version: &str, debs: &Path) -> Result<()> {
    let image = format!("linux-image-{version}");
    let headers = format!("linux-headers-{version}");
    let apt = Apt::open()?;
    let have = |p: &str| find_deb(debs, p).is_ok();
    let try_fetch = || -> Result<()> {
        let mut want = vec![image.clone(), headers.clone()];
        for dep in apt
            .depends(&image)?
            .into_iter()
            .chain(apt.depends(&headers)?)
        {
            let parts = [
                "linux-binary-",
                "linux-modules-",
                "linux-headers-",
                "linux-kbuild-",
                "linux-base-",
            ];
            if parts
                .iter()
                .any(|p| dep.starts_with(p) && dep.len() > p.len())
                && !want.contains(&dep)
            {
                want.push(dep);
            }
        }
        let todo: Vec<String> = want.into_iter().filter(|p| !have(p)).collect();
        apt.download(debs, &todo)
    };
    if let Err(first) = try_fetch() {
        // Stale lists are the usual cause (the archive dropped a superseded build): refresh once.
        apt.update()?;
        try_fetch().with_context(|| {
            format!("fetching kernel {version} (first try: {first:#}); the archive keeps only current builds: a series alias (`--kernel {}`) always resolves", series_of(version))
        })?;
    }
    Ok(())
}

/// Debian from trixie on ships `usr/lib/modules` (merged /usr) while older packages and some
/// headers packages still ship `lib/...`: fold `lib` into `usr/lib` and make `lib` a symlink,
/// as on a merged-/usr system, so depmod -b and every path below see one tree.
fn merge_usr(root: &Path) -> Result<()> {
    let usr_lib = root.join("usr/lib");
    let lib = root.join("lib");
    if !usr_lib.join("modules").exists() {
        return Ok(());
    }
    if lib.is_symlink() {
        return Ok(());
    }
    if lib.is_dir() {
        move_into(&lib, &usr_lib)?;
        fs::remove_dir_all(&lib)?;
    }
    std::os::unix::fs::symlink("usr/lib", &lib)?;
    Ok(())
}

/// Moves every entry of `src` into `dst`, merging directories that exist in both.
fn move_into(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst)?;
    for e in fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() && to.is_dir() && !to.is_symlink() {
            move_into(&e.path(), &to)?;
        } else if !to.exists() && !to.is_symlink() {
            fs::rename(e.path(), &to)?;
        }
    }
    Ok(())
}

fn find_deb(debs: &Path, pkg: &str) -> Result<PathBuf> {
    let prefix = format!("{pkg}_");
    for e in fs::read_dir(debs)? {
        let p = e?.path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        {
            return Ok(p);
        }
    }
    bail!("{pkg}: no .deb in {}", debs.display())
}

/// Debian's flavour Makefile `include`s /usr/src/linux-headers-*-common/Makefile and
/// `lib/modules/<v>/{build,source}` are absolute symlinks: point them into the extracted tree.
fn fix_headers(k: &Kernel) -> Result<()> {
    let mk = k.headers().join("Makefile");
    let text = fs::read_to_string(&mk).with_context(|| format!("reading {}", mk.display()))?;
    let root = k.root.to_string_lossy();
    let fixed = rewrite_includes(&text, &root);
    fs::write(&mk, fixed)?;
    for link in ["build", "source"] {
        let p = k.modules().join(link);
        if let Ok(t) = fs::read_link(&p) {
            if let Ok(rel) = t.strip_prefix("/") {
                fs::remove_file(&p)?;
                std::os::unix::fs::symlink(k.root.join(rel), &p)?;
            }
        }
    }
    Ok(())
}

/// Like the kernel's scripts/extract-vmlinux: find the compressed payload's magic and
/// decompress from there, keeping the first result that is an ELF.
fn extract_vmlinux(vmlinuz: &Path, out: &Path) -> Result<()> {
    let data = fs::read(vmlinuz).with_context(|| format!("reading {}", vmlinuz.display()))?;
    let methods: &[(&[u8], &[&str])] = &[
        (b"\xfd7zXZ\x00", &["xz", "-dc"]),
        (b"\x28\xb5\x2f\xfd", &["zstd", "-dc"]),
        (b"\x1f\x8b\x08", &["gzip", "-dc"]),
    ];
    for (magic, cmd) in methods {
        let Some(pos) = data.windows(magic.len()).position(|w| w == *magic) else {
            continue;
        };
        let tmp = out.with_extension("part");
        let f = fs::File::create(&tmp)?;
        let mut child = Command::new(cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::piped())
            .stdout(f)
            .stderr(Stdio::null())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            // Trailing garbage after the stream makes the decompressor complain; ignore that.
            let _ = stdin.write_all(&data[pos..]);
        }
        let _ = child.wait();
        let head = fs::read(&tmp)
            .map(|d| d.get(..4).map(<[u8]>::to_vec))
            .ok()
            .flatten();
        if head.as_deref() == Some(b"\x7fELF") {
            fs::rename(&tmp, out)?;
            return Ok(());
        }
        let _ = fs::remove_file(&tmp);
    }
    bail!(
        "could not extract vmlinux from {} (no xz/zstd/gzip payload found)",
        vmlinuz.display()
    )
}

/// Points the absolute /usr/src paths of Debian's flavour Makefile into `<root>`:
/// `include /usr/src/<pkg>/Makefile` (every era) and `KBUILD_OUTPUT=/usr/src/<pkg>` (7.x, which
/// kbuild `realpath`s for out-of-tree modules).
fn rewrite_includes(text: &str, root: &str) -> String {
    text.lines()
        .map(|l| {
            let assign = l.find('=').filter(|_| !l.starts_with("include "));
            let prefix_end = match (l.starts_with("include "), assign) {
                (true, _) => Some("include ".len()),
                (false, Some(eq)) => Some(eq + 1),
                _ => None,
            };
            match (prefix_end, l.rfind("/usr/src/")) {
                // Also re-points a tree fixed earlier at another checkout path.
                (Some(p), Some(i)) if i >= p => {
                    let head = l[..p].trim_end();
                    let sep = if head.ends_with('=') { "" } else { " " };
                    format!("{head}{sep}{root}{}\n", &l[i..])
                }
                _ => format!("{l}\n"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_aliases_pick_generic_builds_of_that_series() {
        assert!(is_series("7") && is_series("6.12") && is_series("5.10"));
        assert!(!is_series("6.1.0-57-amd64") && !is_series("7.") && !is_series("6.1.2"));
        assert_eq!(series_of("6.1.0-57-amd64"), "6.1");
        assert_eq!(series_of("7.3.4+deb13-amd64"), "7.3");
        let b = |p: &str, s: &str| build_of(p, s);
        assert_eq!(
            b("linux-image-6.1.0-57-amd64", "6.1").as_deref(),
            Some("6.1.0-57-amd64")
        );
        assert_eq!(b("linux-image-6.12.118+deb13-amd64", "6.1"), None);
        assert_eq!(b("linux-image-6.12-amd64", "6.12"), None, "metapackage");
        assert_eq!(b("linux-image-7.3.4+deb13-cloud-amd64", "7"), None);
        assert_eq!(b("linux-image-7.3.4+deb13-rt-amd64", "7.3"), None);
        assert_eq!(b("linux-image-7.3.4+deb13-amd64-dbg", "7"), None);
        assert_eq!(
            b("linux-image-7.3.4+deb13-amd64", "7").as_deref(),
            Some("7.3.4+deb13-amd64")
        );
    }

    #[test]
    fn newest_build_is_chosen_by_natural_version_order() {
        let mut v = vec![
            "6.12.90+deb13.1-amd64",
            "6.12.118+deb13-amd64",
            "6.12.117+deb12-amd64",
            "6.12.90+deb13-amd64",
        ];
        v.sort_by_key(|a| version_key(a));
        assert_eq!(
            v,
            [
                "6.12.90+deb13-amd64",
                "6.12.90+deb13.1-amd64",
                "6.12.117+deb12-amd64",
                "6.12.118+deb13-amd64"
            ]
        );
        assert!(version_key("6.1.0-57-amd64") > version_key("6.1.0-9-amd64"));
        assert!(version_key("7.3.4+deb13-amd64") > version_key("7.2.13+deb14-amd64"));
    }

    #[test]
    fn merged_usr_tree_gets_a_lib_symlink_and_keeps_both_halves() {
        let t = std::env::temp_dir().join(format!("xtask-merge-usr-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        fs::create_dir_all(t.join("usr/lib/modules/V/kernel")).unwrap();
        fs::create_dir_all(t.join("lib/modules/V")).unwrap();
        fs::write(t.join("lib/modules/V/extra.txt"), "x").unwrap();
        merge_usr(&t).unwrap();
        assert!(t.join("lib").is_symlink());
        assert!(t.join("lib/modules/V/kernel").is_dir());
        assert!(t.join("usr/lib/modules/V/extra.txt").exists());
        merge_usr(&t).unwrap(); // idempotent
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn debian_header_include_is_pointed_into_the_extracted_tree() {
        let mk = "include /usr/src/linux-headers-6.1.0-56-common/Makefile\nfoo := 1\n";
        let once = rewrite_includes(mk, "/x/root");
        assert_eq!(
            once,
            "include /x/root/usr/src/linux-headers-6.1.0-56-common/Makefile\nfoo := 1\n"
        );
        // Idempotent, and follows a moved checkout.
        assert_eq!(rewrite_includes(&once, "/x/root"), once);
        assert!(rewrite_includes(&once, "/y/root")
            .starts_with("include /y/root/usr/src/linux-headers-6.1.0-56-common/"));
        // 7.x: KBUILD_OUTPUT must exist (kbuild realpaths it for M= builds).
        let mk7 = "KBUILD_OUTPUT=/usr/src/linux-headers-7.3.4+deb13-amd64\ninclude /usr/src/linux-headers-7.3.4+deb13-common/Makefile\n";
        let fixed = rewrite_includes(mk7, "/x/root");
        assert_eq!(fixed, "KBUILD_OUTPUT=/x/root/usr/src/linux-headers-7.3.4+deb13-amd64\ninclude /x/root/usr/src/linux-headers-7.3.4+deb13-common/Makefile\n");
        assert_eq!(rewrite_includes(&fixed, "/x/root"), fixed);
    }
}
