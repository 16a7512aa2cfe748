//! Builds the amdgpu simulator (tests/kmod) against the extracted headers, in a copy under
//! target/ so the source tree stays clean, then gives it module BTF with pahole using the
//! kernel's own vmlinux BTF as base (Debian ships no resolve_btfids, so kbuild's BTF step is
//! skipped and we run pahole ourselves).
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use crate::kernel::Kernel;
use crate::util::{root, run, run_captured};

const SOURCES: &[&str] = &[
    "amdgpu_sim.c",
    "amdgpu_sim_trace.h",
    "amdgpu_sim_compat.h",
    "amdgpu_sim_uapi.h",
    "kfd_sim.c",
    "kfd_sim.h",
    "kfd_sim_uapi.h",
    "kfd_sim_userq.c",
    "kfd_sim_userq_trace.h",
    "Kbuild",
    "Makefile",
];

/// Marks a build whose module got its BTF from the sources now in the build directory.
const BUILT: &str = ".built";

pub fn build_sim(k: &Kernel) -> Result<PathBuf> {
    let build = k.dir.join("kmod");
    let ko = build.join("amdgpu.ko");
    fs::create_dir_all(&build)?;
    let mut changed = false;
    for f in SOURCES {
        let src = root().join("tests/kmod").join(f);
        let data = fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
        // Rewriting an unchanged file would make `make` rebuild the module (27 s on the
        // loaded 2-core host) and pahole run again on every demo.
        if fs::read(build.join(f)).ok().as_deref() != Some(data.as_slice()) {
            fs::write(build.join(f), data)?;
            changed = true;
        }
    }
    if !changed && ko.exists() && build.join(BUILT).exists() {
        return Ok(ko);
    }
    let _ = fs::remove_file(build.join(BUILT));
    crate::hosttools::make_runnable(k)?;
    run_captured(
        Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(k.headers())
            .arg(format!("M={}", build.display()))
            .args(crate::hosttools::compiler_args(k))
            // Module BTF is made below with --btf_base; kbuild's own step (6.12+ headers carry
            // a vmlinux) passes --btf_features the host's older pahole rejects.
            .arg("CONFIG_DEBUG_INFO_BTF_MODULES=")
            .arg("modules"),
    )
    .context("building tests/kmod (amdgpu.ko, the simulator)")?;
    run(Command::new("pahole")
        .arg("-J")
        .arg("--btf_base")
        .arg(k.vmlinux())
        .arg(&ko))
    .context("generating module BTF with pahole")?;
    fs::write(build.join(BUILT), "")?;
    Ok(ko)
}
