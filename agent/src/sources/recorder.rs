//! The in-kernel flight recorder, from userspace (docs/probes.md, "The flight recorder"):
//! which mode the programs run in, where the map is pinned, and reading it back as the
//! correlator's job events when something needs them (an incident, a stall, an export).
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use agent_common::rec::{MODE_BOTH, MODE_EVENTS, MODE_RECORDER, REC_LAYOUT_VERSION};
use agent_common::{RecEntity, RecJob};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use aya::Ebpf;
use hangwatch_core::model::{Clock, Event, EventBody, JobKey, Source, Task};

use crate::decode::cstr;

/// Where pinned recorders live; one directory per layout version.
pub const PIN_ROOT: &str = "/sys/fs/bpf/hangwatch";

/// How the per-job programs run, decided at attach.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// `rec::MODE_*`.
    pub mode: u32,
    /// The pinned map's path, when pinning works here.
    pub pin: Option<PathBuf>,
    /// A pinned recorder of this layout existed: its history continues.
    pub continued: bool,
    /// What `check` and `run` say about it.
    pub note: String,
}

impl Plan {
    pub fn recording(&self) -> bool {
        self.mode != MODE_EVENTS
    }
}

/// The mode: the recorder when the three job probes can feed it (`usable`), with every
/// per-job event as well under `--trace-all`; events only otherwise.
pub fn plan(usable: Result<(), String>, want: bool, trace_all: bool) -> Plan {
    let mode = match (usable.is_ok() && want, trace_all) {
        (false, _) => MODE_EVENTS,
        (true, false) => MODE_RECORDER,
        (true, true) => MODE_BOTH,
    };
    let note = match (usable, want) {
        (_, false) => "off (agent.recorder = false): per-job events".to_string(),
        (Err(why), true) => format!("per-job events: {why}"),
        (Ok(()), true) => "in the kernel (per-job events only with --trace-all)".to_string(),
    };
    Plan {
        mode,
        note,
        ..Plan::default()
    }
}

/// Prepares the pin directory of this layout under `root` (created 0700, owned by us),
/// removes recorders of other layouts (saying so), and says whether one of this layout
/// continues. `None` (with the reason in the note) when pinning is not possible here.
pub fn prepare_pin(plan: &mut Plan, root: &Path) {
    let dir = root.join(format!("v{REC_LAYOUT_VERSION}"));
    if let Err(e) = crate::fsafe::SafeDir::open_private(&dir, true) {
        plan.note += &format!("; not pinned ({e:#}): a restart starts a new history");
        return;
    }
    let stale = clear_other_layouts(root);
    let path = dir.join("recorder");
    plan.continued = path.exists();
    if plan.continued {
        plan.note += "; continuing the pinned history";
    } else if stale > 0 {
        plan.note += "; the recorder layout changed: starting a clean history";
    }
    plan.pin = Some(path);
}

/// Removes the pinned recorders of other layout versions; how many there were.
fn clear_other_layouts(root: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(root) else {
        return 0;
    };
    let own = format!("v{REC_LAYOUT_VERSION}");
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('v') && name != own.as_str() {
            let _ = std::fs::remove_file(e.path().join("recorder"));
            let _ = std::fs::remove_dir(e.path());
            n += 1;
        }
    }
    n
}

/// Highest seqno fed to the correlator per phase, per entity.
#[derive(Clone, Copy, Debug, Default)]
struct Fed {
    submit: u64,
    run: u64,
    done: u64,
}

/// The recorder map, read back on demand.
pub struct KernelRecorder {
    map: BpfHashMap<MapData, u64, RecEntity>,
    full: Option<PerCpuArray<MapData, u64>>,
    fed: HashMap<u64, Fed>,
    /// Entities freed because they were idle (every job finished) and their process gone,
    /// and the submissions they had counted.
    freed: Counts,
}

/// The counts the stats line shows, freed entities included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub entities: u64,
    pub freed: u64,
    pub submitted: u64,
    pub unrecorded: u64,
    /// Entities not created because the map was full.
    pub refused: u64,
}

impl KernelRecorder {
    /// Takes the recorder's maps out of `ebpf` (after attach).
    pub fn take(ebpf: &mut Ebpf) -> Option<KernelRecorder> {
        let map = BpfHashMap::try_from(ebpf.take_map("RECORDER")?).ok()?;
        let full = ebpf
            .take_map("REC_FULL")
            .and_then(|m| PerCpuArray::try_from(m).ok());
        Some(KernelRecorder {
            map,
            full,
            fed: HashMap::new(),
            freed: Counts::default(),
        })
    }

    fn entities(&self) -> impl Iterator<Item = RecEntity> + '_ {
        self.map.iter().filter_map(Result::ok).map(|(_, e)| e)
    }

    /// The job events recorded at or before `until_ns` that the correlator has not had, in
    /// time order.
    pub fn catch_up(&mut self, until_ns: u64) -> Vec<Event> {
        let entities: Vec<RecEntity> = self.entities().collect();
        let mut out = Vec::new();
        for e in &entities {
            let fed = self.fed.entry(e.context).or_default();
            out.extend(entity_events(e, fed, until_ns));
        }
        out.sort_by_key(|ev| ev.t_ns);
        out
    }

    /// When a ring may be stalled: the earliest run time among the entities' oldest
    /// unfinished jobs, if any ran before `before_ns`.
    pub fn oldest_running(&self, before_ns: u64) -> Option<u64> {
        self.entities()
            .filter_map(|e| oldest_unfinished(&e))
            .filter(|t| *t <= before_ns)
            .min()
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            freed: self.freed.freed,
            submitted: self.freed.submitted,
            unrecorded: self.freed.unrecorded,
            refused: self
                .full
                .as_ref()
                .and_then(|f| f.get(&0, 0).ok())
                .map_or(0, |v| v.iter().sum()),
            ..Counts::default()
        };
        for e in self.entities() {
            c.entities += 1;
            c.submitted += e.count;
            c.unrecorded += e.unrecorded;
        }
        c
    }

    /// Frees the entities whose process `alive` says is gone and that have no job running:
    /// the kernel kills a dead process's queued jobs without a finish event, and a job still
    /// running may yet be a stall. The map stays bounded without dropping a running job.
    pub fn free_idle(&mut self, alive: impl Fn(u32) -> bool) {
        let idle: Vec<RecEntity> = self
            .entities()
            .filter(|e| e.ran <= e.done && !alive(e.tgid))
            .collect();
        for e in idle {
            if self.map.remove(&e.context).is_ok() {
                self.fed.remove(&e.context);
                self.freed.freed += 1;
                self.freed.submitted += e.count;
                self.freed.unrecorded += e.unrecorded;
            }
        }
    }
}

/// The run time of `e`'s oldest job that ran and did not finish.
fn oldest_unfinished(e: &RecEntity) -> Option<u64> {
    if e.ran <= e.done {
        return None;
    }
    let j = e.jobs[RecEntity::slot(e.done + 1)];
    (j.seqno == e.done + 1 && j.run_ns != 0 && j.done_ns == 0).then_some(j.run_ns)
}

/// One entity's unfed job events up to `until_ns`; advances `fed`.
fn entity_events(e: &RecEntity, fed: &mut Fed, until_ns: u64) -> Vec<Event> {
    let mut jobs: Vec<RecJob> = e.jobs.iter().copied().filter(|j| j.seqno != 0).collect();
    jobs.sort_by_key(|j| j.seqno);
    let task = Task::new(e.tgid, e.tid, cstr(&e.comm));
    let ring = cstr(&e.ring);
    let mut out = Vec::new();
    for j in jobs {
        let job = JobKey {
            context: Some(e.context),
            seqno: Some(j.seqno),
            ..JobKey::default()
        };
        let phases = [
            (j.submit_ns, &mut fed.submit, Phase::Submit),
            (j.run_ns, &mut fed.run, Phase::Run),
            (j.done_ns, &mut fed.done, Phase::Done),
        ];
        for (t, mark, phase) in phases {
            if t != 0 && t <= until_ns && j.seqno > *mark {
                *mark = j.seqno;
                out.push(job_event(t, phase, &task, &ring, job));
            }
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Phase {
    Submit,
    Run,
    Done,
}

fn job_event(t_ns: u64, phase: Phase, task: &Task, ring: &str, job: JobKey) -> Event {
    let body = match phase {
        Phase::Submit => EventBody::Submit {
            task: task.clone(),
            ring: ring.to_string(),
            job,
            num_ibs: 0,
        },
        Phase::Run => EventBody::RunJob {
            ring: ring.to_string(),
            job,
            worker_tid: 0,
        },
        Phase::Done => EventBody::JobDone { job },
    };
    Event {
        t_ns,
        clock: Clock::Monotonic,
        source: Source::Ebpf,
        gpu: None,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::rec::REC_JOBS;

    fn entity(ctx: u64, jobs: &[(u64, u64, u64, u64)]) -> RecEntity {
        let mut e = RecEntity {
            context: ctx,
            tgid: 42,
            tid: 43,
            comm: [0; 16],
            ring: [0; 32],
            submitted: 0,
            ran: 0,
            done: 0,
            count: 0,
            unrecorded: 0,
            first_ns: 0,
            jobs: [RecJob::default(); REC_JOBS],
        };
        e.comm[..3].copy_from_slice(b"zed");
        e.ring[..9].copy_from_slice(b"gfx_0.0.0");
        for &(seqno, s, r, d) in jobs {
            e.jobs[RecEntity::slot(seqno)] = RecJob {
                seqno,
                submit_ns: s,
                run_ns: r,
                done_ns: d,
            };
            e.submitted = e.submitted.max(seqno);
            e.count += 1;
            if r != 0 {
                e.ran = e.ran.max(seqno);
            }
            if d != 0 {
                e.done = e.done.max(seqno);
            }
        }
        e
    }

    fn kinds(v: &[Event]) -> Vec<(u64, &'static str)> {
        v.iter()
            .map(|e| {
                let k = match e.body {
                    EventBody::Submit { .. } => "submit",
                    EventBody::RunJob { .. } => "run",
                    EventBody::JobDone { .. } => "done",
                    _ => "other",
                };
                (e.t_ns, k)
            })
            .collect()
    }

    #[test]
    fn events_come_once_and_only_up_to_the_trigger() {
        let e = entity(7, &[(1, 10, 20, 30), (2, 40, 50, 0)]);
        let mut fed = Fed::default();
        let first = entity_events(&e, &mut fed, 45);
        assert_eq!(
            kinds(&first),
            [(10, "submit"), (20, "run"), (30, "done"), (40, "submit")]
        );
        let again = entity_events(&e, &mut fed, 45);
        assert!(again.is_empty(), "fed twice: {:?}", kinds(&again));
        let later = entity_events(&e, &mut fed, 100);
        assert_eq!(kinds(&later), [(50, "run")]);
        match &first[0].body {
            EventBody::Submit {
                task, ring, job, ..
            } => {
                assert_eq!(
                    (task.pid, task.comm.as_str(), ring.as_str()),
                    (42, "zed", "gfx_0.0.0")
                );
                assert_eq!((job.context, job.seqno), (Some(7), Some(1)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oldest_unfinished_is_the_job_after_the_last_finished() {
        let e = entity(7, &[(1, 10, 20, 30), (2, 40, 50, 0), (3, 60, 70, 0)]);
        assert_eq!(oldest_unfinished(&e), Some(50));
        let idle = entity(8, &[(1, 10, 20, 30)]);
        assert_eq!(oldest_unfinished(&idle), None);
    }

    #[test]
    fn the_mode_follows_what_the_kernel_offers() {
        assert_eq!(plan(Ok(()), true, false).mode, MODE_RECORDER);
        assert_eq!(plan(Ok(()), true, true).mode, MODE_BOTH);
        assert_eq!(plan(Ok(()), false, false).mode, MODE_EVENTS);
        let no = plan(Err("no dma_fence BTF".into()), true, false);
        assert_eq!(no.mode, MODE_EVENTS);
        assert!(no.note.contains("no dma_fence BTF"), "{}", no.note);
    }

    #[test]
    fn a_changed_layout_starts_clean_and_says_so() {
        let root = std::env::temp_dir().join(format!("hw-rec-pin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let old = root.join("v0");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("recorder"), b"").unwrap();
        let mut p = plan(Ok(()), true, false);
        prepare_pin(&mut p, &root);
        assert!(!old.exists(), "the old layout's recorder stays");
        assert!(p.note.contains("layout changed"), "{}", p.note);
        assert!(!p.continued);
        std::fs::write(p.pin.clone().unwrap(), b"").unwrap();
        let mut again = plan(Ok(()), true, false);
        prepare_pin(&mut again, &root);
        assert!(again.continued, "{}", again.note);
        let _ = std::fs::remove_dir_all(&root);
    }
}
