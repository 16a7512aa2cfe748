//! Which GPU userspace driver a process had mapped — captured at incident time while the
//! process is still alive, because a bug report written later cannot read a dead /proc/PID.
use anyhow::{Context, Result};

/// File-name markers of AMD userspace drivers.
const DRIVER_MARKERS: &[&str] = &[
    "libvulkan_radeon",
    "radeonsi_dri",
    "libgallium",
    "amdvlk",
    "amdgpu-pro",
    "libdrm_amdgpu",
    "libamdhip",
    "libhsa-runtime",
];

/// True when a maps line names a GPU userspace driver library.
pub fn is_driver_line(line: &str) -> bool {
    DRIVER_MARKERS.iter().any(|m| line.contains(m))
        || hangwatch_core::render::rocm::is_rocm_library(line)
}

/// At most this many bytes of one process's `/proc/PID/maps` are read. A real GPU process
/// maps a few thousand areas (well under 1 MiB of text); a process can map 65 530.
pub const MAX_MAPS_BYTES: u64 = 4 << 20;
/// At most this many driver lines are kept per process (a ROCm process maps about twenty).
pub const MAX_DRIVER_LINES: usize = 32;
/// A kept line is cut to this many bytes (a path is at most 4096 bytes; real ones are short).
pub const MAX_LINE_BYTES: usize = 512;

/// Distinct driver library lines of `maps` text (one per path), at most
/// [`MAX_DRIVER_LINES`] of at most [`MAX_LINE_BYTES`] each: the process chooses these names.
pub fn driver_lines(maps: &str) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for l in maps.lines().filter(|l| is_driver_line(l)) {
        if out.len() >= MAX_DRIVER_LINES {
            break;
        }
        let l = cut_at_char(l, MAX_LINE_BYTES);
        let path = hangwatch_core::render::rocm::maps_path(l).to_string();
        if seen.insert(path) {
            out.push(l.to_string());
        }
    }
    out
}

fn cut_at_char(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `path` (a `/proc/PID/maps`), at most [`MAX_MAPS_BYTES`] of it: a process with 60 000
/// mappings used to cost hundreds of MB of memory and seconds of blocked event loop.
pub fn read_maps_capped(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_MAPS_BYTES)
        .read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Lines of `/proc/PID/maps` naming GPU userspace driver libraries.
pub fn capture_process_maps(pid: u32) -> Result<Vec<String>> {
    let p = format!("/proc/{pid}/maps");
    let text = read_maps_capped(p.as_ref()).with_context(|| format!("reading {p}"))?;
    Ok(driver_lines(&text))
}

/// A userspace driver identified from a mapped path: (driver name, version if the path says).
pub fn identify(path: &str) -> Option<(&'static str, Option<String>)> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let name = if path.contains("amdgpu-pro") {
        "vulkan-amdgpu-pro"
    } else if file.starts_with("libvulkan_radeon") {
        "Mesa RADV"
    } else if file.starts_with("radeonsi_dri") || file.starts_with("libgallium") {
        "Mesa radeonsi"
    } else if file.starts_with("amdvlk") {
        "AMDVLK"
    } else {
        return None;
    };
    Some((name, version_of(path)))
}

/// Version from `libgallium-25.0.7-1ubuntu1.so`, `libfoo.so.1.2.3` or `/opt/amdgpu-pro/24.10/...`.
/// The file name is chosen by whoever installed or created the file (any user, for a library
/// in their own directory): only a digit followed by `[0-9A-Za-z.+~_-]` counts as a version.
fn version_of(path: &str) -> Option<String> {
    raw_version(path).filter(|v| is_version(v))
}

fn is_version(v: &str) -> bool {
    v.len() <= 64
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~_-".contains(c))
}

fn raw_version(path: &str) -> Option<String> {
    let file = path.rsplit('/').next().unwrap_or(path);
    if let Some(rest) = file.strip_prefix("libgallium-") {
        return rest.strip_suffix(".so").map(str::to_string);
    }
    if let Some(i) = file.find(".so.") {
        let v = &file[i + 4..];
        if v.contains('.') {
            return Some(v.to_string());
        }
    }
    path.split('/')
        .find(|c| c.chars().next().is_some_and(|ch| ch.is_ascii_digit()) && c.contains('.'))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_identifies_drivers() {
        let maps = "7f00-7f10 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libvulkan_radeon.so\n\
                    7f10-7f20 r--p 0 08:01 1 /usr/lib/x86_64-linux-gnu/libvulkan_radeon.so\n\
                    7f20-7f30 r-xp 0 08:01 2 /usr/lib/x86_64-linux-gnu/libgallium-25.0.7-1ubuntu1.so\n\
                    7f30-7f40 r-xp 0 08:01 3 /usr/lib/libc.so.6\n";
        let lines = driver_lines(maps);
        assert_eq!(lines.len(), 2);
        // A path with a space is one path: two libraries under "/opt/my mesa/" stay two.
        let spaced = "7f00-7f10 r-xp 0 08:01 1 /opt/my mesa/lib/libvulkan_radeon.so\n\
                      7f10-7f20 r-xp 0 08:01 2 /opt/my mesa/lib/libgallium-25.0.7.so\n";
        assert_eq!(driver_lines(spaced).len(), 2);
        assert_eq!(
            identify("/usr/lib/x86_64-linux-gnu/libvulkan_radeon.so"),
            Some(("Mesa RADV", None))
        );
        assert_eq!(
            identify("/usr/lib/x86_64-linux-gnu/libgallium-25.0.7-1ubuntu1.so"),
            Some(("Mesa radeonsi", Some("25.0.7-1ubuntu1".into())))
        );
        assert_eq!(
            identify("/opt/amdgpu-pro/24.10/lib64/amdvlk64.so"),
            Some(("vulkan-amdgpu-pro", Some("24.10".into())))
        );
        assert_eq!(identify("/usr/lib/libc.so.6"), None);
        // A file name is not a version unless it looks like one.
        assert_eq!(
            identify("/tmp/x/libgallium-<img src=x onerror=alert(1)>@all#1.so"),
            Some(("Mesa radeonsi", None))
        );
        assert_eq!(
            identify("/tmp/x/libvulkan_radeon.so.1.\x1b]0;t\x07"),
            Some(("Mesa RADV", None))
        );
        // Our own process maps no GPU driver; the capture still succeeds.
        assert!(capture_process_maps(std::process::id()).is_ok());
    }
}

#[cfg(test)]
mod bounds {
    use super::*;

    /// A process with 60 000 driver-looking mappings under long names keeps a bounded list.
    #[test]
    fn hostile_maps_keep_a_bounded_number_of_short_driver_lines() {
        let long = "d".repeat(4000);
        let maps: String = (0..60_000)
            .map(|i| format!("7f00-7f10 r-xp 0 08:01 1 /tmp/{i}/{long}/libvulkan_radeon.so\n"))
            .collect();
        let lines = driver_lines(&maps);
        assert_eq!(lines.len(), MAX_DRIVER_LINES);
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE_BYTES));
        let p = std::env::temp_dir().join(format!("hw-maps-{}", std::process::id()));
        std::fs::write(&p, &maps).unwrap();
        let read = read_maps_capped(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(read.len() as u64, MAX_MAPS_BYTES);
    }
}
