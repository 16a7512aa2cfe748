//! Chooses the VM's accelerator once per machine: KVM if a probe boot finishes under it within
//! a few seconds, else TCG. Nested KVM either refuses at once ("failed to set MSR 0x10a") or
//! hangs, so the probe never waits long. The answer is kept in target/vm-cache/accel, keyed by
//! the host kernel, the CPU model and the qemu version.
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::initramfs::{self, Spec};
use crate::kernel::Kernel;
use crate::qemu;
use crate::util::{output, target_dir};

/// How long the probe boot may take under KVM. It has no modules and no plan, so a working
/// KVM boots it in a few seconds; TCG needs about 30 s on a loaded 2-core host.
const PROBE_DEADLINE: Duration = Duration::from_secs(15);

/// "kvm" or "tcg" for every boot on this machine. `HANGWATCH_VM_ACCEL=kvm|tcg` decides
/// without a probe; without a usable /dev/kvm the answer is "tcg" at once.
pub fn pick_accel(k: &Kernel) -> Result<&'static str> {
    match std::env::var("HANGWATCH_VM_ACCEL").as_deref() {
        Ok("tcg") => return Ok("tcg"),
        Ok("kvm") => return Ok("kvm"),
        _ => {}
    }
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Ok("tcg");
    }
    let key = machine_key();
    if let Some(accel) = fs::read_to_string(cache_file())
        .ok()
        .and_then(|t| cached(&t, &key))
    {
        return Ok(accel);
    }
    let accel = probe(k)?;
    fs::create_dir_all(target_dir().join("vm-cache"))?;
    fs::write(cache_file(), format!("{key}\n{accel}\n"))?;
    Ok(accel)
}

fn cache_file() -> PathBuf {
    target_dir().join("vm-cache").join("accel")
}

/// The answer in a cache file's text when it was made on this machine (`key` on the first
/// line, the accelerator on the second).
fn cached(text: &str, key: &str) -> Option<&'static str> {
    let mut lines = text.lines();
    if lines.next()? != key {
        return None;
    }
    match lines.next()? {
        "kvm" => Some("kvm"),
        "tcg" => Some("tcg"),
        _ => None,
    }
}

/// What the answer depends on: the host kernel, the CPU model and the qemu version, on one line.
fn machine_key() -> String {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| cpu_model(&t))
        .unwrap_or_default();
    let qemu = output(Command::new("qemu-system-x86_64").arg("--version")).unwrap_or_default();
    let qemu = qemu.lines().next().unwrap_or("");
    format!("{} | {} | {}", release.trim(), cpu, qemu.trim())
}

/// The first `model name` of /proc/cpuinfo.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// Boots `k` with the probe initramfs under KVM: "kvm" if it prints HWEND within the deadline.
fn probe(k: &Kernel) -> Result<&'static str> {
    let log = target_dir().join("vm-cache").join("kvm-probe.log");
    let b = qemu::boot(k, &probe_initramfs(k)?, "kvm", PROBE_DEADLINE, &log)?;
    let ok = !b.timed_out && b.lines.iter().any(|l| l.contains("HWEND"));
    let accel = if ok { "kvm" } else { "tcg" };
    let why = b
        .lines
        .iter()
        .find(|l| l.starts_with("qemu: ") || l.starts_with("xtask vm: "))
        .map(|l| format!(" ({l})"))
        .unwrap_or_default();
    eprintln!(
        "xtask vm: KVM probe boot {} in {:.1}s{}; using {accel} on this machine (kept in {})",
        if ok { "succeeded" } else { "failed" },
        b.wall.as_secs_f64(),
        if ok { String::new() } else { why },
        cache_file().display()
    );
    Ok(accel)
}

/// The initramfs of the KVM probe boot (no plan: boots, prints HWEND, powers off).
fn probe_initramfs(k: &Kernel) -> Result<PathBuf> {
    initramfs::build(
        k,
        &Spec {
            name: "probe",
            modules: &[],
            extra_modules: vec![],
            binaries: vec![],
            files: vec![],
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_answer_only_for_the_same_machine() {
        let key = "6.1.0-57-amd64 | AMD EPYC | QEMU emulator version 7.2.22";
        assert_eq!(cached(&format!("{key}\nkvm\n"), key), Some("kvm"));
        assert_eq!(cached(&format!("{key}\ntcg\n"), key), Some("tcg"));
        assert_eq!(cached("6.12.0 | AMD EPYC | QEMU 7.2\nkvm\n", key), None);
        assert_eq!(cached(&format!("{key}\n"), key), None);
        assert_eq!(cached(&format!("{key}\nwhpx\n"), key), None);
    }

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let t = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7763\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(cpu_model(t).as_deref(), Some("AMD EPYC 7763"));
        assert_eq!(cpu_model("processor\t: 0\n"), None);
    }
}
