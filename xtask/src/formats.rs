//! `cargo xtask formats --accept SERIES|BUILD`: writes the real driver's tracefs formats from
//! that kernel's last phase-A run to testdata/formats/<major.minor>.txt, the capture
//! tests/tests/vm.rs compares every later build of the series with. Run it after reviewing a
//! FORMAT DRIFT failure (or for a new series), then commit the file.
use std::fs;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::kernel::series_of;
use crate::util::root;
use crate::vm::{results_dir, results_root};

pub fn formats(args: &[String]) -> Result<u8> {
    let [flag, spec] = args else {
        bail!("usage: cargo xtask formats --accept SERIES|BUILD");
    };
    if flag != "--accept" {
        bail!("usage: cargo xtask formats --accept SERIES|BUILD");
    }
    let build = build_for(spec)?;
    let p = results_dir(&build).join("phase-a.json");
    let a: Value = serde_json::from_str(
        &fs::read_to_string(&p).with_context(|| format!("{}: run phase A first", p.display()))?,
    )?;
    let Some(formats) = a["formats"].as_object().filter(|f| !f.is_empty()) else {
        bail!("{}: phase A read no formats", p.display());
    };
    let series = series_of(&build);
    let out = root()
        .join("testdata/formats")
        .join(format!("{series}.txt"));
    fs::create_dir_all(out.parent().context("no parent")?)?;
    fs::write(&out, render(&build, formats))?;
    println!(
        "wrote {} ({} events from {build})",
        out.display(),
        formats.len()
    );
    Ok(0)
}

/// A results directory name, or the build index.json recorded for a series.
fn build_for(spec: &str) -> Result<String> {
    if results_dir(spec).join("phase-a.json").exists() {
        return Ok(spec.to_string());
    }
    let p = results_root().join("index.json");
    let idx: Value =
        serde_json::from_str(&fs::read_to_string(&p).unwrap_or_default()).unwrap_or(Value::Null);
    idx[spec]["build"]
        .as_str()
        .map(str::to_string)
        .with_context(|| {
            format!("no results for {spec}: run `cargo xtask vm --kernel {spec} --phase a`")
        })
}

fn render(build: &str, formats: &serde_json::Map<String, Value>) -> String {
    let mut s = format!(
        "# build: {build}\n# The real amdgpu.ko's tracefs formats (amdgpu, gpu_scheduler, dma_fence; ID lines dropped) as phase A\n# of the VM suite read them (`cargo xtask formats --accept`, docs/vm-harness.md).\n"
    );
    for (name, text) in formats {
        s.push_str(&format!("== {name}\n"));
        for l in text.as_str().unwrap_or("").lines() {
            if !l.starts_with("ID:") {
                s.push_str(l);
                s.push('\n');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_drops_ids_and_names_the_build() {
        let mut m = serde_json::Map::new();
        m.insert(
            "amdgpu/x".into(),
            Value::from("name: x\nID: 12\nformat:\n\tfield:int a;\n"),
        );
        let s = render("6.1.0-57-amd64", &m);
        assert!(s.starts_with("# build: 6.1.0-57-amd64\n"));
        assert!(s.contains("== amdgpu/x\nname: x\nformat:\n\tfield:int a;\n"));
        assert!(!s.contains("ID:"));
    }
}
