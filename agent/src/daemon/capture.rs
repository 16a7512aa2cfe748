//! What an incident directory holds besides the incident, captured when the incident OPENS
//!, not when it closes or when `bugreport` runs days later: host facts
//! (kernel, command line, OS, amdgpu module and parameters, PCI ids, VBIOS and firmware
//! versions), the devcoredump (it expires five minutes after the reset), and the GPU driver
//! libraries mapped by every involved process (it may exit or be killed by the reset).
//! Later rewrites of the same incident reuse these facts; they only add the devcoredump the
//! kernel writes a little after the reset and the maps of processes involved since.
use crate::sinks::incident_dir::Extras;
use crate::sources::hostfacts::{self, Roots};
use crate::sources::procinfo::capture_process_maps;
use crate::sources::procscan::SeenCache;
use hangwatch_core::incident::Incident;

/// The culprit, the victims, the process the kernel blamed and the compute candidates (their
/// mapped ROCm libraries go into the bug report) — real pids, each once.
fn involved(inc: &Incident) -> Vec<u32> {
    let mut pids: Vec<u32> = Vec::new();
    let candidates = inc.compute.iter().flat_map(|c| &c.candidates);
    let all = inc
        .culprit
        .iter()
        .map(|c| c.pid)
        .chain(inc.victims.iter().map(|v| v.pid))
        .chain(inc.kernel_blamed.iter().map(|k| k.pid))
        .chain(candidates.map(|c| c.pid));
    for pid in all {
        if pid != 0 && !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    pids
}

/// `pid`'s driver mappings: from its first-sight capture (it may have exited since), else
/// read now while it is alive.
fn maps_of(pid: u32, seen: &SeenCache) -> Option<Vec<String>> {
    match seen.driver_maps(pid) {
        Some(m) => Some(m.to_vec()),
        None => capture_process_maps(pid).ok(),
    }
}

/// Adds the maps of involved processes not captured yet.
fn add_maps(ex: &mut Extras, inc: &Incident, seen: &SeenCache) {
    for pid in involved(inc) {
        if ex.process_maps.iter().any(|(p, _)| *p == pid) {
            continue;
        }
        if let Some(m) = maps_of(pid, seen) {
            ex.process_maps.push((pid, m));
        }
    }
}

/// Everything, read now: the incident just opened.
pub fn at_open(inc: &Incident, seen: &SeenCache, roots: &Roots) -> Extras {
    let mut ex = Extras {
        process_maps: Vec::new(),
        host: Some(hostfacts::collect(roots, inc.gpu.as_deref())),
    };
    add_maps(&mut ex, inc, seen);
    ex
}

/// A rewrite of an incident captured at its open: the same facts, plus what arrived since.
pub fn refresh(ex: &mut Extras, inc: &Incident, seen: &SeenCache, roots: &Roots) {
    add_maps(ex, inc, seen);
    match ex.host.as_mut() {
        Some(h) => h.refresh(roots, inc.gpu.as_deref()),
        None => ex.host = Some(hostfacts::collect(roots, inc.gpu.as_deref())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::hostfacts::tests::{fake_host, put};
    use hangwatch_core::testkit::disputed_incident;

    #[test]
    fn facts_are_taken_at_the_open_and_only_the_dump_is_added_later() {
        let root = fake_host("capture");
        let roots = Roots {
            root: root.clone(),
            home: None,
        };
        std::fs::remove_dir_all(root.join("sys/class/devcoredump")).unwrap();
        let mut inc = disputed_incident();
        inc.gpu = Some("0000:c3:00.0".into());
        let seen = SeenCache::new(16);
        let mut ex = at_open(&inc, &seen, &roots);
        let host = ex.host.clone().unwrap();
        assert_eq!(host.kernel_release.get(), Some("6.1.0-56-amd64"));
        assert!(host.devcoredumps.is_empty());
        // After the open: the kernel is upgraded on disk (not what hung) and the dump appears.
        put(&root, "proc/sys/kernel/osrelease", "6.12.0-1-amd64\n");
        put(
            &root,
            "sys/class/devcoredump/devcd3/data",
            "AMDGPU Device Coredump\n",
        );
        refresh(&mut ex, &inc, &seen, &roots);
        let h = ex.host.as_ref().unwrap();
        assert_eq!(
            h.kernel_release.get(),
            Some("6.1.0-56-amd64"),
            "facts of the open"
        );
        assert_eq!(h.devcoredumps.len(), 1, "the dump written after the reset");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn involved_processes_are_culprit_victims_and_the_kernels_choice_once_each() {
        let mut inc = disputed_incident();
        // zed (culprit), Xwayland (victim and the kernel's choice: once), and pid 0 is no one.
        inc.victims.push(hangwatch_core::incident::Victim {
            pid: 0,
            comm: "kworker".into(),
            reason: String::new(),
            identity: None,
        });
        assert_eq!(involved(&inc), vec![7021, 6518]);
        // Compute candidates (ROCm processes with queues on the GPU) after them, once each.
        inc.compute = Some(hangwatch_core::incident::ComputeAttribution {
            flagged: None,
            candidates: [(6518, "Xwayland"), (4242, "python3")]
                .map(|(pid, comm)| hangwatch_core::incident::Candidate {
                    pid,
                    comm: comm.into(),
                    queues: Vec::new(),
                    confidence: hangwatch_core::incident::Confidence::Unknown,
                    reason: String::new(),
                    identity: None,
                })
                .to_vec(),
            note: String::new(),
        });
        assert_eq!(involved(&inc), vec![7021, 6518, 4242]);
    }
}
