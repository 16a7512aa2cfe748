//! Makes a newer Debian kernel's kbuild tools and compiler usable on an older build host, so
//! tests/kmod builds against any kernel the VM suite boots.
//!
//! Debian builds 6.12+ with gcc-14 and links its kbuild helpers (modpost.real-*, objtool.real-*,
//! resolve_btfids) against trixie's glibc (they need GLIBC_2.38, e.g. `__isoc23_strtoul`); a
//! bookworm host has gcc-12 and glibc 2.36. So: the compiler the kernel names in
//! CONFIG_CC_VERSION_TEXT if it is installed, else the host's `gcc` (tests/kmod/Kbuild drops the
//! one gcc-14-only flag); and each helper that needs a newer glibc than the host's runs through
//! the loader of the kernel suite's own libc6, fetched with the private apt (target/apt) into
//! `target/vm-cache/<version>/hostlibs`. Nothing on the host is installed or changed.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::apt::Apt;
use crate::kernel::Kernel;
use crate::util::{have, output, run};

/// `make` arguments choosing the C compiler for `k`'s modules: none when the kernel's own is
/// installed; else `CC=gcc`, and (older gcc lacks it) the -falign-functions fallback the
/// kernel's Makefile uses when CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT is unset.
pub fn compiler_args(k: &Kernel) -> Vec<String> {
    let conf = k.headers().join("include/config/auto.conf");
    let Some(wanted) = fs::read_to_string(&conf)
        .ok()
        .and_then(|t| cc_of_config(&t))
    else {
        return Vec::new();
    };
    if have(&wanted) {
        return Vec::new();
    }
    eprintln!(
        "xtask kmod: {wanted} (the compiler {} was built with) is not installed; using gcc",
        k.version
    );
    vec![
        "CC=gcc".into(),
        "CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT=".into(),
    ]
}

/// First word of `CONFIG_CC_VERSION_TEXT` ("gcc-10 (Debian 10.2.1-6) ..." -> "gcc-10").
fn cc_of_config(auto_conf: &str) -> Option<String> {
    let v = auto_conf
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_CC_VERSION_TEXT="))?;
    v.trim_matches('"')
        .split_whitespace()
        .next()
        .map(str::to_string)
}

/// Suffix of a wrapped helper's original ELF (the wrapper script keeps the helper's name).
const WRAPPED: &str = ".hostlibs-elf";

/// Wraps every ELF helper of `k`'s kbuild tree that needs a newer glibc than the host's, and
/// writes every existing wrapper again: a wrapper holds absolute paths, so one made in another
/// checkout's target/ (copied, or a CI cache restored elsewhere) points at a loader that is
/// not there ("objtool.real-x86: exec: /other/target/.../ld-linux-x86-64.so.2: not found").
pub fn make_runnable(k: &Kernel) -> Result<()> {
    let host = host_glibc_minor()?;
    let mut todo = Vec::new();
    for dir in kbuild_dirs(&k.root) {
        collect_needing(&dir, host, &mut todo)?;
    }
    if todo.is_empty() {
        return Ok(());
    }
    let libs = fetch_glibc(k)?;
    for bin in &todo {
        wrap(bin, &libs)?;
    }
    eprintln!(
        "xtask kmod: {} kbuild helper(s) of {} run through {}",
        todo.len(),
        k.version,
        libs.display()
    );
    Ok(())
}

fn kbuild_dirs(root: &Path) -> Vec<PathBuf> {
    let lib = root.join("usr/lib");
    fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("linux-kbuild-"))
        })
        .collect()
}

/// `glibc 2.36` -> 36.
fn host_glibc_minor() -> Result<u32> {
    let v = output(Command::new("getconf").arg("GNU_LIBC_VERSION"))?;
    glibc_minor(v.trim().trim_start_matches("glibc ")).context("parsing getconf GNU_LIBC_VERSION")
}

fn glibc_minor(v: &str) -> Option<u32> {
    v.strip_prefix("2.")?.split('.').next()?.parse().ok()
}

/// Newest `GLIBC_2.N` a binary's dynamic symbols need (None: not a dynamic ELF).
fn needed_glibc_minor(bin: &Path) -> Option<u32> {
    let out = Command::new("objdump").arg("-T").arg(bin).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("GLIBC_")
        .skip(1)
        .filter_map(|s| glibc_minor(s.split([')', ' ', '\t', '\n']).next()?))
        .max()
}

/// Helpers under `dir` to wrap: already wrapped ones (by their original's name) and ELF files
/// needing a glibc newer than `host`.
fn collect_needing(dir: &Path, host: u32, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir)?.flatten() {
        let p = e.path();
        let ft = e.file_type()?;
        let name = p.to_string_lossy();
        if ft.is_dir() {
            collect_needing(&p, host, out)?;
        } else if let Some(wrapper) = name.strip_suffix(WRAPPED) {
            out.push(PathBuf::from(wrapper));
        } else if ft.is_file() && is_elf(&p) && needed_glibc_minor(&p).is_some_and(|n| n > host) {
            out.push(p);
        }
    }
    Ok(())
}

fn is_elf(p: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"\x7fELF"
}

/// libc6, libelf1t64 and zlib1g of the kernel's own suite, extracted under hostlibs/.
fn fetch_glibc(k: &Kernel) -> Result<PathBuf> {
    let dir = k.dir.join("hostlibs");
    let stamp = dir.join(".ok");
    if stamp.exists() {
        return Ok(dir);
    }
    let debs = dir.join("debs");
    fs::create_dir_all(&debs)?;
    let suite = suite_of(&k.version);
    let pkgs: Vec<String> = ["libc6", "libelf1t64", "zlib1g", "libzstd1"]
        .iter()
        .map(|p| format!("{p}/{suite}"))
        .collect();
    Apt::open()?.download(&debs, &pkgs)?;
    for e in fs::read_dir(&debs)?.flatten() {
        run(Command::new("dpkg-deb").arg("-x").arg(e.path()).arg(&dir))?;
    }
    fs::write(&stamp, "ok\n")?;
    Ok(dir)
}

/// The suite whose glibc a kernel's kbuild tools were built against (`+deb13` = trixie).
fn suite_of(version: &str) -> &'static str {
    if version.contains("+deb14") {
        "sid"
    } else {
        "trixie"
    }
}

/// Replaces `bin` with a script running the original through `libs`' loader.
fn wrap(bin: &Path, libs: &Path) -> Result<()> {
    let mut real = bin.as_os_str().to_owned();
    real.push(WRAPPED);
    let real = PathBuf::from(real);
    if !real.exists() {
        fs::rename(bin, &real)?;
    }
    let ld = libs.join("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
    let ld = if ld.exists() {
        ld
    } else {
        libs.join("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    };
    let path = ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"]
        .iter()
        .map(|d| libs.join(d).to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let script = format!(
        "#!/bin/sh\n# Written by cargo xtask (hosttools.rs): needs a newer glibc than the host's.\nexec '{}' --library-path '{}' '{}' \"$@\"\n",
        ld.display(),
        path,
        real.display()
    );
    fs::write(bin, script)?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(bin, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiler_from_config_text() {
        let t = "CONFIG_X=y\nCONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0\"\n";
        assert_eq!(cc_of_config(t).as_deref(), Some("x86_64-linux-gnu-gcc-14"));
        assert_eq!(cc_of_config("CONFIG_X=y\n"), None);
    }

    /// A wrapper made elsewhere is found again (by its original's name), so it is rewritten
    /// with this checkout's paths.
    #[test]
    fn existing_wrappers_are_collected() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("hosttools-test-{}", std::process::id()));
        fs::create_dir_all(dir.join("tools/objtool"))?;
        let tool = dir.join("tools/objtool/objtool.real-x86");
        fs::write(&tool, "#!/bin/sh\nexec '/elsewhere/ld-linux-x86-64.so.2'\n")?;
        fs::write(
            dir.join(format!("tools/objtool/objtool.real-x86{WRAPPED}")),
            "",
        )?;
        fs::write(dir.join("tools/script.sh"), "#!/bin/sh\n")?;
        let mut found = Vec::new();
        let r = collect_needing(&dir, 36, &mut found);
        fs::remove_dir_all(&dir)?;
        r?;
        assert_eq!(found, vec![tool]);
        Ok(())
    }

    #[test]
    fn glibc_versions() {
        assert_eq!(glibc_minor("2.36"), Some(36));
        assert_eq!(glibc_minor("2.38"), Some(38));
        assert_eq!(glibc_minor("2.3.4"), Some(3));
        assert_eq!(glibc_minor("3.0"), None);
    }
}
