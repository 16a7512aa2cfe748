//! Builds a small uncompressed initramfs: busybox, the init script, hangwatch + hwdriver with
//! their shared libraries (from ldd), only the kernel modules a phase needs (closure over the
//! extracted tree's modules.dep, regenerated with depmod -b), the plan and the scenarios.
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::kernel::Kernel;
use crate::util::{output, root, run};

pub struct Spec<'a> {
    pub name: &'a str,
    /// Module names (e.g. "amdgpu", "gpu-sched") whose dependency closure goes in.
    pub modules: &'a [&'a str],
    /// Out-of-tree modules, installed under extra/.
    pub extra_modules: Vec<PathBuf>,
    /// Executables copied to /bin (with their shared libraries).
    pub binaries: Vec<PathBuf>,
    /// Files copied to `/hw/<name>`.
    pub files: Vec<(String, Vec<u8>)>,
}

pub fn build(k: &Kernel, spec: &Spec) -> Result<PathBuf> {
    let stage = k.dir.join(format!("initramfs-{}", spec.name));
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    for d in [
        "bin", "sbin", "usr/bin", "lib", "lib64", "proc", "sys", "dev", "tmp", "run", "hw", "etc",
    ] {
        fs::create_dir_all(stage.join(d))?;
    }
    copy(Path::new("/bin/busybox"), &stage.join("bin/busybox"))?;
    let init = root().join("tests/vm/init.sh");
    copy(&init, &stage.join("init"))?;
    chmod_x(&stage.join("init"))?;
    let mut libs = BTreeSet::new();
    for b in &spec.binaries {
        let name = b.file_name().context("binary without a name")?;
        copy(b, &stage.join("bin").join(name))?;
        libs.extend(shared_libs(b)?);
    }
    for lib in libs {
        let rel = lib.strip_prefix("/").unwrap_or(&lib);
        let dst = stage.join(rel);
        if let Some(p) = dst.parent() {
            fs::create_dir_all(p)?;
        }
        copy(&lib, &dst)?;
    }
    let mods = stage.join("lib/modules").join(&k.version);
    fs::create_dir_all(&mods)?;
    for f in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        let src = k.modules().join(f);
        if src.exists() {
            copy(&src, &mods.join(f))?;
        }
    }
    for m in closure(k, spec.modules)? {
        let (plain, _) = split_compression(&m);
        let dst = mods.join(plain);
        if let Some(p) = dst.parent() {
            fs::create_dir_all(p)?;
        }
        install_module(&k.modules().join(&m), &dst)?;
    }
    for m in &spec.extra_modules {
        fs::create_dir_all(mods.join("extra"))?;
        copy(
            m,
            &mods
                .join("extra")
                .join(m.file_name().context("module without a name")?),
        )?;
    }
    run(Command::new("depmod").arg("-b").arg(&stage).arg(&k.version))?;
    for (name, data) in &spec.files {
        let dst = stage.join("hw").join(name);
        if let Some(p) = dst.parent() {
            fs::create_dir_all(p)?;
        }
        fs::write(dst, data)?;
    }
    let out = k.dir.join(format!("initramfs-{}.cpio", spec.name));
    let f = fs::File::create(&out)?;
    let status = Command::new("sh")
        .arg("-c")
        .arg("find . | LC_ALL=C sort | cpio --quiet -o -H newc")
        .current_dir(&stage)
        .stdout(f)
        .status()?;
    if !status.success() {
        bail!("cpio failed building {}", out.display());
    }
    Ok(out)
}

fn copy(src: &Path, dst: &Path) -> Result<()> {
    fs::copy(src, dst)
        .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    Ok(())
}

/// `.ko.xz` / `.ko.zst` / `.ko.gz` -> (`.ko` path, decompressor). Debian compresses modules
/// from 6.12 on (xz) and 7.x (zstd); busybox's modprobe loads only plain `.ko` files.
fn split_compression(rel: &str) -> (&str, Option<&'static str>) {
    for (ext, tool) in [(".xz", "xz"), (".zst", "zstd"), (".gz", "gzip")] {
        if let Some(plain) = rel.strip_suffix(ext) {
            return (plain, Some(tool));
        }
    }
    (rel, None)
}

/// Copies a module into the initramfs, decompressing it (the staging tree's depmod then
/// indexes the plain name).
fn install_module(src: &Path, dst: &Path) -> Result<()> {
    let (_, tool) = split_compression(&src.to_string_lossy());
    let Some(tool) = tool else {
        return copy(src, dst);
    };
    let out = fs::File::create(dst)?;
    let status = Command::new(tool)
        .arg("-dc")
        .arg(src)
        .stdout(out)
        .status()
        .with_context(|| format!("running {tool} -dc {}", src.display()))?;
    if !status.success() {
        bail!("{tool} -dc {} failed with {status}", src.display());
    }
    Ok(())
}

fn chmod_x(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Shared libraries and the dynamic loader of `bin`, as absolute paths (empty for static).
fn shared_libs(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = match output(Command::new("ldd").arg(bin)) {
        Ok(o) => o,
        Err(_) => return Ok(Vec::new()), // "not a dynamic executable"
    };
    Ok(parse_ldd(&out))
}

fn parse_ldd(out: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for line in out.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path {
            if p.starts_with('/') {
                v.push(PathBuf::from(p));
            }
        }
    }
    v
}

/// Paths (relative to `lib/modules/<v>`) of `names` and everything they depend on.
fn closure(k: &Kernel, names: &[&str]) -> Result<BTreeSet<String>> {
    let dep = fs::read_to_string(k.modules().join("modules.dep")).context("reading modules.dep")?;
    let mut table = std::collections::BTreeMap::new();
    for line in dep.lines() {
        if let Some((m, deps)) = line.split_once(':') {
            table.insert(
                m.to_string(),
                deps.split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            );
        }
    }
    let mut out = BTreeSet::new();
    for name in names {
        let file = format!("/{name}.ko");
        let alt = format!("/{}.ko", name.replace('-', "_"));
        let Some(m) = table
            .keys()
            .find(|m| {
                let (plain, _) = split_compression(m);
                plain.ends_with(&file) || plain.ends_with(&alt)
            })
            .cloned()
        else {
            bail!("module {name} not found in {}", k.modules().display());
        };
        let mut todo = vec![m];
        while let Some(m) = todo.pop() {
            if out.insert(m.clone()) {
                todo.extend(table.get(&m).cloned().unwrap_or_default());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_module_names_map_to_plain_ko() {
        assert_eq!(
            split_compression("kernel/drivers/gpu/drm/amd/amdgpu/amdgpu.ko.xz"),
            ("kernel/drivers/gpu/drm/amd/amdgpu/amdgpu.ko", Some("xz"))
        );
        assert_eq!(
            split_compression("a/drm.ko.zst"),
            ("a/drm.ko", Some("zstd"))
        );
        assert_eq!(
            split_compression("extra/amdgpu.ko"),
            ("extra/amdgpu.ko", None)
        );
    }

    #[test]
    fn ldd_output_gives_libraries_and_loader() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        assert_eq!(
            parse_ldd(out),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }
}
