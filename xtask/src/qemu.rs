//! Boots the VM and collects its serial console. accel.rs decides between KVM and TCG.
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::kernel::Kernel;

pub struct Boot {
    pub lines: Vec<String>,
    pub timed_out: bool,
    pub wall: Duration,
    pub accel: &'static str,
}

/// One HWRESULT line: `HWRESULT <name> <key> <json>`.
pub struct ResultLine {
    pub name: String,
    pub key: String,
    pub value: serde_json::Value,
}

pub fn results(lines: &[String]) -> Vec<ResultLine> {
    lines.iter().filter_map(|l| parse_result(l)).collect()
}

fn parse_result(line: &str) -> Option<ResultLine> {
    let rest = &line[line.find("HWRESULT ")? + "HWRESULT ".len()..];
    let mut it = rest.splitn(3, ' ');
    let name = it.next()?.to_string();
    let key = it.next()?.to_string();
    let value = serde_json::from_str(it.next()?.trim()).ok()?;
    Some(ResultLine { name, key, value })
}

pub fn boot(
    k: &Kernel,
    initrd: &Path,
    accel: &'static str,
    timeout: Duration,
    log: &Path,
) -> Result<Boot> {
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-nographic",
            "-no-reboot",
            "-m",
            "2G",
            "-smp",
            "2",
            "-accel",
            accel,
        ])
        .args(if accel == "kvm" {
            &["-cpu", "host"][..]
        } else {
            &["-cpu", "max"][..]
        })
        .arg("-kernel")
        .arg(k.vmlinuz())
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            &format!(
                "console=ttyS0 panic=-1 oops=panic loglevel=3 quiet {}",
                std::env::var("HANGWATCH_VM_APPEND").unwrap_or_default()
            ),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64 (run `cargo xtask setup`)")?;
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).split(b'\n') {
                let Ok(l) = l else { break };
                let s = String::from_utf8_lossy(&l)
                    .trim_end_matches('\r')
                    .to_string();
                if tx.send(s).is_err() {
                    break;
                }
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(format!("qemu: {l}"));
            }
        });
    }
    let mut logf = fs::File::create(log)?;
    let mut lines = Vec::new();
    let mut timed_out = false;
    let silence = silence_limit();
    let mut last_line = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) => {
                let _ = writeln!(logf, "{l}");
                lines.push(l);
                last_line = Instant::now();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        // A guest that stopped printing is hung (a bench boot once sat silent for 14 minutes
        // holding the machine): give up long before the overall budget.
        let quiet = last_line.elapsed() > silence;
        if start.elapsed() > timeout || quiet {
            let why = if quiet {
                format!("no console output for {} s", silence.as_secs())
            } else {
                format!("the boot's budget of {} s ran out", timeout.as_secs())
            };
            let msg = format!("xtask vm: {why}: qemu killed");
            eprintln!("{msg}");
            let _ = writeln!(logf, "{msg}");
            lines.push(msg);
            timed_out = true;
            let _ = child.kill();
            break;
        }
    }
    let _ = child.wait();
    Ok(Boot {
        lines,
        timed_out,
        wall: start.elapsed(),
        accel,
    })
}

/// How long a guest may stay silent before it counts as hung: scenarios print a result at
/// least once a minute or two even under a loaded TCG host. `HANGWATCH_VM_SILENCE_S` overrides.
fn silence_limit() -> Duration {
    let secs = std::env::var("HANGWATCH_VM_SILENCE_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(480);
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_parse_even_with_console_noise() {
        let lines = vec![
            "[    3.1] random kernel line".to_string(),
            "xHWRESULT zed-fault result {\"incidents\":[]}".to_string(),
            "HWRESULT phase-a check not-json".to_string(),
        ];
        let r = results(&lines);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name, "zed-fault");
        assert_eq!(r[0].key, "result");
        assert!(r[0].value["incidents"].is_array());
    }
}
