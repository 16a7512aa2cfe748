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

/// Distinct driver library lines of `maps` text (one per path).
pub fn driver_lines(maps: &str) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for l in maps.lines().filter(|l| is_driver_line(l)) {
        let path = hangwatch_core::render::rocm::maps_path(l).to_string();
        if seen.insert(path) {
            out.push(l.to_string());
        }
    }
    out
}

/// Lines of `/proc/PID/maps` naming GPU userspace driver libraries.
pub fn capture_process_maps(pid: u32) -> Result<Vec<String>> {
    let p = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {p}"))?;
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
fn version_of(path: &str) -> Option<String> {
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
        // Our own process maps no GPU driver; the capture still succeeds.
        assert!(capture_process_maps(std::process::id()).is_ok());
    }
}
