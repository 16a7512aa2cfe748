//! Gets a Debian kernel's image, modules and headers WITHOUT installing them (`apt-get download`
//! + `dpkg-deb -x` into target/vm-cache/<version>/root), fixes the absolute paths Debian's
//! headers packages assume, generates modules.dep and extracts an uncompressed vmlinux (its .BTF
//! is the base for the simulator's module BTF). Cached: a second call is a no-op.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::util::{output, run, target_dir};

pub struct Kernel {
    pub version: String,
    /// target/vm-cache/<version>
    pub dir: PathBuf,
    /// Extracted packages.
    pub root: PathBuf,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("vmlinuz-{}", self.version))
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

pub fn prepare(version: &str) -> Result<Kernel> {
    let dir = target_dir().join("vm-cache").join(version);
    let k = Kernel {
        version: version.to_string(),
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
    let image = format!("linux-image-{version}");
    let headers = format!("linux-headers-{version}");
    download(&debs, &[&image, &headers])?;
    // The flavour headers depend on a -common package and linux-kbuild-X.Y: take them from the
    // package's own Depends so a second kernel needs no code change.
    let hdeb = find_deb(&debs, &headers)?;
    let depends = output(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&hdeb)
            .arg("Depends"),
    )?;
    let extra: Vec<String> = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or("").to_string())
        .filter(|d| d.starts_with("linux-headers-") || d.starts_with("linux-kbuild-"))
        .collect();
    let extra_refs: Vec<&str> = extra.iter().map(String::as_str).collect();
    download(&debs, &extra_refs)?;
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
    fix_headers(&k)?;
    run(Command::new("depmod").arg("-b").arg(&k.root).arg(version))?;
    extract_vmlinux(&k.vmlinuz(), &k.vmlinux())?;
    fs::write(&stamp, "ok\n")?;
    Ok(k)
}

fn download(debs: &Path, pkgs: &[&str]) -> Result<()> {
    let todo: Vec<&str> = pkgs
        .iter()
        .copied()
        .filter(|p| find_deb(debs, p).is_err())
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    eprintln!("xtask vm: apt-get download {}", todo.join(" "));
    let get = || {
        run(Command::new("apt-get")
            .arg("download")
            .args(&todo)
            .current_dir(debs)
            .stderr(Stdio::null()))
    };
    if get().is_ok() {
        return Ok(());
    }
    // Stale package lists are the usual cause: refresh once and retry.
    run(Command::new("apt-get").args(["update", "-q"]))?;
    get().with_context(|| {
        format!(
            "downloading {} (is the version in `apt-cache policy`?)",
            todo.join(" ")
        )
    })
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
/// lib/modules/<v>/{build,source} are absolute symlinks: point them into the extracted tree.
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

/// Points `include .../usr/src/<pkg>/Makefile` lines at `<root>/usr/src/<pkg>/Makefile`.
fn rewrite_includes(text: &str, root: &str) -> String {
    text.lines()
        .map(
            |l| match (l.starts_with("include "), l.rfind("/usr/src/")) {
                // Also re-points a tree fixed earlier at another checkout path.
                (true, Some(i)) => format!("include {root}{}\n", &l[i..]),
                _ => format!("{l}\n"),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
