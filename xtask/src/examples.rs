//! `cargo xtask examples`: regenerate docs/examples/ from a real run of scenario 1 in the VM —
//! the incident directory `hangwatch run --output` wrote and the bug report `hangwatch
//! bugreport` built from it, both inside the VM. Nothing under docs/examples is hand-written.
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::util::root;
use crate::vm;

const SCENARIO: &str = "01-zed-fault-wedges-gfx.toml";
const NAME: &str = "zed-fault-wedges-gfx";

pub fn examples() -> Result<u8> {
    crate::setup::setup(crate::setup::Scope::Demo)?;
    let runs = vm::run_vm(&vm::Opts {
        scenarios: vec![root().join("tests/scenarios").join(SCENARIO)],
        phase: vm::Phase::B,
        ..Default::default()
    })?;
    let build = runs
        .first()
        .and_then(|r| r.build.clone())
        .context("the VM run failed: see the lines above")?;
    let src = vm::results_dir(&build).join("scenarios").join(NAME);
    let dst = root().join("docs/examples").join(NAME);
    if dst.exists() {
        fs::remove_dir_all(&dst)?;
    }
    copy_tree(&src, &dst).with_context(|| {
        format!(
            "{} has no artifacts: did the scenario write an incident?",
            src.display()
        )
    })?;
    // The archive only repeats the files next to it; keep the repository small.
    let _ = fs::remove_file(dst.join("bugreport.tar.gz"));
    eprintln!("xtask examples: wrote {}", dst.display());
    Ok(0)
}

fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst)?;
    for e in fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &to)?;
        } else {
            fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}
