//! Throughput and memory of the `hangwatch analyze` path: generate a realistic kernel log (mostly
//! unrelated lines, with amdgpu fault/timeout/reset bursts), stream it through the same
//! `LogReader` + `Correlator` path as `analyze`, print MB/s on one core and peak RSS.
//! Run: `cargo run --release -p agent --example analyze_bench -- [--size-mb N]`.
mod common;

use std::io::{BufReader, BufWriter, Write};
use std::time::Instant;

use hangwatch_core::correlate::{Config, Correlator};
use hangwatch_core::kmsg::{Format, LogReader};
use hangwatch_core::model::Source;

const UNRELATED: &[&str] = &[
    "usb 1-1: new high-speed USB device number 2 using xhci_hcd",
    "EXT4-fs (nvme0n1p2): mounted filesystem with ordered data mode. Quota mode: none.",
    "audit: type=1400 audit(1700000000.123:42): apparmor=\"STATUS\" operation=\"profile_load\" name=\"snap\"",
    "IPv6: ADDRCONF(NETDEV_CHANGE): enp3s0: link becomes ready",
    "[drm] Initialized amdgpu 3.54.0 20150101 for 0000:03:00.0 on minor 1",
    "systemd[1]: Started Daily apt download activities.",
    "nvme nvme0: 16/0/0 default/read/poll queues",
    "amdgpu 0000:03:00.0: amdgpu: SMU is resumed successfully!",
];

const BURST: &[&str] = &[
    "amdgpu 0000:03:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:40 vmid:7 pasid:32819)",
    "amdgpu 0000:03:00.0: amdgpu:  Process zed pid 7587 thread zed pid 7587",
    "amdgpu 0000:03:00.0: amdgpu:   in page starting at address 0x0000800100361000 from client 10",
    "amdgpu 0000:03:00.0: amdgpu: GCVM_L2_PROTECTION_FAULT_STATUS:0x00301031",
    "amdgpu 0000:03:00.0: amdgpu: \t Faulty UTCL2 client ID: CB/DB (0x0)",
    "amdgpu 0000:03:00.0: amdgpu: \t RW: 0x0",
    "amdgpu 0000:03:00.0: amdgpu: ring gfx_0.0.0 timeout, signaled seq=571734509, emitted seq=571734511",
    "amdgpu 0000:03:00.0: amdgpu:  Process Xwayland pid 6518 thread Xwayland pid 6518",
    "amdgpu 0000:03:00.0: amdgpu: GPU reset begin!. Source:  1",
    "amdgpu 0000:03:00.0: amdgpu: GPU reset(1) succeeded!",
    "[drm:amdgpu_cs_ioctl [amdgpu]] *ERROR* Failed to initialize parser -125!",
];

fn generate(path: &std::path::Path, size: u64) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let (mut written, mut t_us, mut i) = (0u64, 1_000_000u64, 0u64);
    while written < size {
        i += 1;
        t_us += 137;
        // A burst every 20k lines (a few seconds of log apart).
        let msg = if i % 20_000 < BURST.len() as u64 {
            BURST[(i % 20_000) as usize]
        } else {
            UNRELATED[(i % UNRELATED.len() as u64) as usize]
        };
        let line = format!("[{:5}.{:06}] {msg}\n", t_us / 1_000_000, t_us % 1_000_000);
        w.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    w.flush()
}

fn run(size_mb: u64) -> anyhow::Result<()> {
    let path = std::env::temp_dir().join(format!(
        "hangwatch-analyze-bench-{}-{size_mb}.log",
        std::process::id()
    ));
    generate(&path, size_mb << 20)?;
    let bytes = std::fs::metadata(&path)?.len();
    let start = Instant::now();
    let mut corr = Correlator::new(Config::default());
    let mut reader = LogReader::new(Format::Auto, Source::Log);
    let (mut events, mut incidents) = (0u64, 0u64);
    {
        let mut sink = |e| {
            events += 1;
            incidents += corr.push(e).len() as u64;
        };
        let file = std::fs::File::open(&path)?;
        reader.read(BufReader::with_capacity(1 << 16, file), &mut sink)?;
        reader.finish(&mut sink);
    }
    incidents += corr.finish().len() as u64;
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    println!(
        "{size_mb:>6} MB: {:.0} MB/s ({secs:.2} s), {} lines, {} amdgpu lines, {events} events, {incidents} incidents, peak RSS {} MB",
        bytes as f64 / (1 << 20) as f64 / secs,
        reader.stats.lines,
        reader.stats.amdgpu_lines,
        common::peak_rss_kib() / 1024
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let size_mb = args
        .iter()
        .position(|a| a == "--size-mb")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024u64);
    // Small file first: VmHWM is a high-water mark, so the big run shows whether RSS grew.
    run(100.min(size_mb))?;
    run(size_mb)?;
    Ok(())
}
