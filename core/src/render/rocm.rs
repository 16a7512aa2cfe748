//! The ROCm section of a bug report: which ROCm runtime and libraries each involved compute
//! process had mapped (with versions from the file names), and the ROCm-side next steps. Pure:
//! the incident and the `/proc/PID/maps` lines captured while the processes lived go in, markdown
//! comes out. The next steps are each checked against the tool's documentation (URLs inline).
//! Names, library paths and the queue-table note are data (a process names itself, a user
//! installs ROCm where they like, incident.json may be edited): they only appear in code spans
//! ([`crate::escape::md_code`]), and a version is digits and dots only.
use std::fmt::Write as _;

use crate::escape::md_code;
use crate::incident::Incident;

/// ROCm libraries a compute bug report names, by file-name prefix.
const LIBRARIES: &[(&str, &str)] = &[
    ("libamdhip64", "HIP runtime"),
    ("libhsa-runtime64", "ROCr (HSA runtime)"),
    ("libhsakmt", "ROCt (KFD thunk)"),
    ("libMIOpen", "MIOpen"),
    ("librocblas", "rocBLAS"),
    ("libhipblaslt", "hipBLASLt"),
    ("librccl", "RCCL"),
    ("libamd_comgr", "comgr"),
];

/// The path of a `/proc/PID/maps` line: everything after the five fixed fields (a path may
/// hold spaces), or the whole text when it is a bare path.
pub fn maps_path(line: &str) -> &str {
    let mut rest = line.trim_start();
    for _ in 0..5 {
        match rest.split_once(char::is_whitespace) {
            Some((_, r)) => rest = r.trim_start(),
            None => return line.trim(),
        }
    }
    rest.trim_end()
}

/// True when a maps line names a ROCm library (the capture keeps these lines).
pub fn is_rocm_library(line: &str) -> bool {
    let path = maps_path(line);
    let file = path.rsplit('/').next().unwrap_or(path);
    LIBRARIES.iter().any(|(p, _)| file.starts_with(p))
}

/// One mapped ROCm library: (what it is, version if the path says, where it came from).
#[derive(Debug, PartialEq, Eq)]
pub struct RocmLib {
    pub what: &'static str,
    pub version: Option<String>,
    pub path: String,
}

/// Identify a mapped path: the soname version (`libamdhip64.so.6.2.41133` → `6.2.41133`), or
/// the ROCm release of an `/opt/rocm-X.Y.Z/` install, or nothing (PyTorch wheels bundle
/// unversioned copies under `site-packages/torch/lib`).
pub fn identify(path: &str) -> Option<RocmLib> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let (_, what) = LIBRARIES.iter().find(|(p, _)| file.starts_with(p))?;
    let soname = file.split_once(".so.").map(|(_, v)| v).filter(|v| {
        v.split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    });
    let release = path
        .split('/')
        .find_map(|c| c.strip_prefix("rocm-"))
        .map(|v| {
            v.chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect::<String>()
        })
        .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|v| format!("ROCm {v}"));
    Some(RocmLib {
        what,
        version: soname.map(str::to_string).or(release),
        path: path.chars().take(200).collect(),
    })
}

/// The pids a compute section covers: compute candidates first, then culprit and victims.
fn involved(inc: &Incident) -> Vec<(u32, String, String)> {
    let mut v: Vec<(u32, String, String)> = Vec::new();
    let mut add = |pid: u32, comm: &str, role: String| {
        if pid != 0 && !v.iter().any(|(p, _, _)| *p == pid) {
            v.push((pid, comm.to_string(), role));
        }
    };
    for c in inc.compute.iter().flat_map(|c| &c.candidates) {
        add(
            c.pid,
            &c.comm,
            format!("compute candidate, {:?}", c.confidence).to_lowercase(),
        );
    }
    if let Some(c) = &inc.culprit {
        add(c.pid, &c.comm, "culprit".into());
    }
    for x in &inc.victims {
        add(x.pid, &x.comm, "victim".into());
    }
    v
}

/// The markdown section, or `None` when the incident involves no compute queue and no involved
/// process mapped a ROCm library.
pub fn section(inc: &Incident, process_maps: &[(u32, Vec<String>)]) -> Option<String> {
    let mut lines = Vec::new();
    let mut any_rocm = false;
    for (pid, comm, role) in involved(inc) {
        let maps = process_maps.iter().find(|(p, _)| *p == pid).map(|(_, m)| m);
        let mut libs: Vec<String> = Vec::new();
        for l in maps.into_iter().flatten() {
            let path = maps_path(l);
            if let Some(lib) = identify(path) {
                let d = format!(
                    "{} {} ({})",
                    lib.what,
                    lib.version
                        .as_deref()
                        .unwrap_or("(version not in the file name)"),
                    md_code(&lib.path)
                );
                if !libs.contains(&d) {
                    libs.push(d);
                }
            }
        }
        any_rocm |= !libs.is_empty();
        let what = match (maps, libs.is_empty()) {
            (None, _) => {
                "no /proc/PID/maps captured (the process had exited, or log-only analysis)"
                    .to_string()
            }
            (Some(_), true) => "no ROCm library mapped".to_string(),
            (Some(_), false) => libs.join("; "),
        };
        lines.push(format!("- {}[{pid}] ({role}): {what}", md_code(&comm)));
    }
    if inc.compute.is_none() && !any_rocm {
        return None;
    }
    let mut md = String::from("## ROCm (compute) processes\n\n");
    for l in &lines {
        let _ = writeln!(md, "{l}");
    }
    if let Some(c) = &inc.compute {
        let _ = writeln!(md, "\nQueue table: {}", md_code(&c.note));
    }
    md.push_str(NEXT_STEPS);
    Some(md)
}

/// Checked against: HIP "Logging HIP activity" and "HIP environment variables", ROCm "System
/// debugging", the ROCgdb documentation, the amd-smi man page, and the kernel's amdgpu
/// "GPU Debugging" page (vmid 0 = kernel or firmware). The addresses are code spans, not links:
/// the bug report's markdown carries no link at all (its inertness checks forbid them).
const NEXT_STEPS: &str = "
### ROCm next steps

- Re-run the compute process with `AMD_LOG_LEVEL=4` (HIP runtime log on stderr; `AMD_LOG_MASK` \
narrows it to e.g. kernel launches) and attach the log: \
documented at `https://rocm.docs.amd.com/projects/HIP/en/latest/how-to/logging.html`
- Find the kernel that hangs or faults with `AMD_SERIALIZE_KERNEL=3 AMD_SERIALIZE_COPY=3` \
(each launch and copy waits for the previous one): \
documented at `https://rocm.docs.amd.com/projects/HIP/en/latest/reference/env_variables.html`
- Take the copy engines out with `HSA_ENABLE_SDMA=0`, and log the KFD thunk with \
`HSAKMT_DEBUG_LEVEL=7`: documented at `https://rocm.docs.amd.com/en/docs-6.4.1/how-to/system-debugging.html`
- Run it under `rocgdb --args <command>`: ROCgdb stops on the faulting wavefront and shows its \
source line: documented at `https://rocm.docs.amd.com/projects/ROCgdb/en/latest/index.html`
- While it runs, `amd-smi process` lists the processes using the GPU and `amd-smi event` prints \
the KFD SMI events (VM faults, GPU resets) hangwatch reads too: \
documented at `https://manpages.debian.org/unstable/amd-smi/amd-smi.1.en.html`
- A fault with vmid 0 / pasid 0 (\"pid 0\") was most likely raised by the kernel driver or the \
firmware (MES), not by a user queue: \
documented at `https://docs.kernel.org/gpu/amdgpu/debugging.html`
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{Candidate, ComputeAttribution, Confidence, ProcessRef};

    fn incident() -> Incident {
        let mut inc = crate::testkit::disputed_incident();
        inc.culprit = Some(ProcessRef {
            pid: 4242,
            comm: "python3".into(),
            exe: None,
            identity: None,
        });
        inc.victims.clear();
        inc.compute = Some(ComputeAttribution {
            flagged: None,
            candidates: vec![
                Candidate {
                    pid: 4242,
                    comm: "python3".into(),
                    queues: vec![],
                    confidence: Confidence::Likely,
                    reason: "x".into(),
                    identity: None,
                },
                Candidate {
                    pid: 5151,
                    comm: "ollama`".into(),
                    queues: vec![],
                    confidence: Confidence::Unknown,
                    reason: "y".into(),
                    identity: None,
                },
            ],
            note: "queue table from /sys/class/kfd/kfd/proc".into(),
        });
        inc
    }

    #[test]
    fn versions_from_sonames_install_dirs_and_wheels() {
        let hip = identify("/opt/rocm-6.2.4/lib/libamdhip64.so.6.2.60204").unwrap();
        assert_eq!(
            (hip.what, hip.version.as_deref()),
            ("HIP runtime", Some("6.2.60204"))
        );
        let blas = identify("/opt/rocm-6.2.4/lib/librocblas.so").unwrap();
        assert_eq!(blas.version.as_deref(), Some("ROCm 6.2.4"));
        let odd = identify("/opt/rocm-6.2<img src=x>/lib/librocblas.so").unwrap();
        assert_eq!(
            odd.version.as_deref(),
            Some("ROCm 6.2"),
            "a version is digits and dots"
        );
        let wheel =
            identify("/home/u/.venv/lib/python3.12/site-packages/torch/lib/libMIOpen.so").unwrap();
        assert_eq!((wheel.what, wheel.version), ("MIOpen", None));
        assert_eq!(
            identify("/usr/lib/x86_64-linux-gnu/libhsa-runtime64.so.1.14.60204")
                .unwrap()
                .version
                .as_deref(),
            Some("1.14.60204")
        );
        assert!(identify("/usr/lib/libc.so.6").is_none());
        assert!(is_rocm_library(
            "7f00-7f10 r-xp 0 08:01 1 /opt/rocm/lib/librocblas.so.4"
        ));
        assert!(!is_rocm_library(
            "7f00-7f10 r-xp 0 08:01 1 /usr/lib/libvulkan_radeon.so"
        ));
        assert_eq!(
            maps_path("7f00-7f10 r-xp 00000000 08:01 12   /home/u/my env/libamdhip64.so"),
            "/home/u/my env/libamdhip64.so",
            "a path with a space is one path"
        );
    }

    #[test]
    fn section_lists_each_process_and_the_documented_next_steps() {
        let maps = vec![(
            4242,
            vec![
                "7f00-7f10 r-xp 0 08:01 1 /opt/rocm-6.2.4/lib/libamdhip64.so.6.2.60204".to_string(),
                "7f10-7f20 r-xp 0 08:01 2 /opt/rocm-6.2.4/lib/libhsa-runtime64.so.1.14.60204"
                    .to_string(),
                "7f20-7f30 r-xp 0 08:01 3 /opt/rocm-6.2.4/lib/libamdhip64.so.6.2.60204".to_string(),
            ],
        )];
        let md = section(&incident(), &maps).unwrap();
        assert!(
            md.contains("` python3 `[4242] (compute candidate, likely): HIP runtime 6.2.60204"),
            "{md}"
        );
        assert_eq!(
            md.matches("HIP runtime 6.2.60204").count(),
            1,
            "one line per library"
        );
        assert!(md.contains("ROCr (HSA runtime) 1.14.60204"));
        assert!(
            md.contains("`` ollama` ``[5151]"),
            "a backtick in a name cannot close its code span: {md}"
        );
        assert!(md.contains("no /proc/PID/maps captured"));
        for step in [
            "AMD_LOG_LEVEL=4",
            "HSA_ENABLE_SDMA=0",
            "rocgdb",
            "amd-smi event",
            "AMD_SERIALIZE_KERNEL",
        ] {
            assert!(md.contains(step), "{step} missing");
        }
        assert!(md.contains("Queue table: ` queue table from"));
    }

    #[test]
    fn no_section_for_graphics_only_incidents() {
        let mut inc = incident();
        inc.compute = None;
        assert!(section(&inc, &[]).is_none());
        let maps = vec![(
            4242,
            vec!["7f00-7f10 r-xp 0 08:01 1 /usr/lib/libvulkan_radeon.so".to_string()],
        )];
        assert!(section(&inc, &maps).is_none());
    }
}
