//! Which GPU each probe event belongs to (`Event::gpu`).
//!
//! Two GPUs both have a `gfx_0.0.0`, and drm_sched job ids count per scheduler, so without a
//! device a hang on one GPU would blame the other's processes. What the kernel offers depends
//! on the era:
//! - 7.x (≥ 6.17): the scheduler tracepoints print `dev` ([`Method::Kernel`]);
//! - 6.1–6.16: no tracepoint names a device, but module BTF leads from the legacy events'
//!   `entity` (and the kprobes' job or adev) to `dev_name()`, read in the eBPF programs
//!   (also [`Method::Kernel`]);
//! - everything else is joined to those in userspace ([`Method::Join`]): the scheduler-fence
//!   context (one per entity, global), the legacy fence pointer, the pasid (global: one per
//!   DRM file, on one device), the scheduler worker that ran the job;
//! - `/proc/PID/fdinfo` (`pasid` + `drm-pdev` per open file, [`Method::Fdinfo`]): exact for a
//!   pasid; for a submitter without one, only when all its amdgpu files are on one device;
//! - one amdgpu device on the host ([`Method::OnlyDevice`]).
//!
//! 5.10 has neither `dev` nor module BTF: its probe events get only joins and fdinfo, which
//! `hangwatch check` calls guesses. Kernel-log records carry their own prefix (kmsg/).
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::sources::probes::Assessment;
use crate::sources::procscan::parse_fdinfo;
use hangwatch_core::model::{Event, EventBody, JobKey, Source};

/// Devices bound to a driver named `amdgpu` on any bus (`<sys>/bus/*/drivers/amdgpu/<dev>`):
/// PCI on real hosts; the test simulator's are platform devices with PCI-style names.
pub fn discover(sys: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sys.join("bus"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|bus| {
            std::fs::read_dir(bus.path().join("drivers/amdgpu"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|e| {
            // Device entries are symlinks into /sys/devices; bind, module, uevent are not.
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains("/devices/"))
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// How a label was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The event itself named the device (tracepoint `dev`, or a BTF read in the kernel).
    Kernel,
    /// Joined to an event that did (fence context, fence pointer, pasid, scheduler worker).
    Join,
    /// `/proc/PID/fdinfo` of the process.
    Fdinfo,
    /// The host has exactly one amdgpu device.
    OnlyDevice,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Kernel => "kernel",
            Method::Join => "join",
            Method::Fdinfo => "fdinfo",
            Method::OnlyDevice => "only_device",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Label {
    gpu: String,
    /// False when the label rests on an inference that can be wrong (a process with files on
    /// one device that may open another; a scheduler worker shared between devices).
    exact: bool,
}

/// Small FIFO-bounded map: label joins must not grow with uptime.
struct Bounded<K, V> {
    cap: usize,
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Bounded {
            cap,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }
    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }
    fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            if self.order.len() >= self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
            self.order.push_back(k);
        }
    }
}

impl<K: Hash + Eq + Clone> Bounded<K, Label> {
    /// Inserts `l` unless the key already has an exact label and `l` is an inference.
    fn upgrade(&mut self, k: K, l: &Label) {
        if l.exact || !self.get(&k).is_some_and(|old| old.exact) {
            self.insert(k, l.clone());
        }
    }
}

/// The first exact label of the two, else whichever exists (`b` only computed when `a` is
/// not exact).
fn best(a: Option<Label>, b: impl FnOnce() -> Option<Label>) -> Option<Label> {
    if a.as_ref().is_some_and(|l| l.exact) {
        return a;
    }
    match b() {
        Some(l) if l.exact => Some(l),
        other => a.or(other),
    }
}

/// Labels per method, and events left without one (for the run's stats line).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LabelCounts {
    pub kernel: u64,
    pub join: u64,
    pub fdinfo: u64,
    pub only_device: u64,
    /// Labels resting on an inference (`exact == false`), included in the counts above.
    pub guessed: u64,
    pub unlabelled: u64,
}

/// Assigns `Event::gpu` to probe events (see the module docs).
pub struct Labeler {
    only: Option<String>,
    proc_root: PathBuf,
    /// Scheduler-fence contexts (per entity) and hardware-fence contexts (per ring).
    by_context: Bounded<u64, Label>,
    /// Legacy scheduler fence pointers.
    by_fence: Bounded<u64, Label>,
    by_pasid: Bounded<u32, Label>,
    /// The device of the job a scheduler worker ran last.
    by_worker: Bounded<u32, Label>,
    /// Per process: `(pasid, drm-pdev)` of its amdgpu files when last read.
    fdinfo: Bounded<u32, Vec<(Option<u32>, String)>>,
    pub counts: LabelCounts,
}

impl Labeler {
    /// `devices` as [`discover`] found them; `proc_root` is `/proc` (a fake tree in tests).
    pub fn new(devices: &[String], proc_root: &Path) -> Labeler {
        Labeler {
            only: match devices {
                [one] => Some(one.clone()),
                _ => None,
            },
            proc_root: proc_root.to_path_buf(),
            by_context: Bounded::new(16384),
            by_fence: Bounded::new(16384),
            by_pasid: Bounded::new(4096),
            by_worker: Bounded::new(1024),
            fdinfo: Bounded::new(1024),
            counts: LabelCounts::default(),
        }
    }

    /// Labels `ev` (probe and /proc events; kernel-log records carry their own prefix) and
    /// learns the keys it carries for later events.
    pub fn label(&mut self, ev: &mut Event) {
        if !matches!(ev.source, Source::Ebpf | Source::Proc) {
            return;
        }
        if let Some(only) = &self.only {
            if ev.gpu.is_none() {
                ev.gpu = Some(only.clone());
                self.counts.only_device += 1;
            }
            return;
        }
        let found = match &ev.gpu {
            Some(g) => {
                if ev.source == Source::Ebpf {
                    self.counts.kernel += 1;
                }
                Some(Label {
                    gpu: g.clone(),
                    exact: true,
                })
            }
            None => self.find(ev),
        };
        match found {
            Some(l) => {
                self.learn(&ev.body, &l);
                ev.gpu = Some(l.gpu);
            }
            None => {
                if ev.source == Source::Ebpf && carries_device_work(&ev.body) {
                    self.counts.unlabelled += 1;
                }
            }
        }
    }

    /// A label for an event that has none, by join, then fdinfo.
    fn find(&mut self, ev: &Event) -> Option<Label> {
        let (joined, method) = match self.join(&ev.body) {
            Some(l) => (Some(l), Method::Join),
            None => (self.by_fdinfo(&ev.body), Method::Fdinfo),
        };
        let l = joined?;
        match method {
            Method::Fdinfo => self.counts.fdinfo += 1,
            _ => self.counts.join += 1,
        }
        if !l.exact {
            self.counts.guessed += 1;
        }
        Some(l)
    }

    fn job(&self, job: &JobKey) -> Option<Label> {
        job.context
            .and_then(|c| self.by_context.get(&c))
            .or_else(|| job.sched_fence.and_then(|f| self.by_fence.get(&f)))
            .cloned()
    }

    fn pasid(&self, pasid: Option<u32>) -> Option<Label> {
        pasid
            .filter(|&p| p != 0)
            .and_then(|p| self.by_pasid.get(&p))
            .cloned()
    }

    /// The device of the job scheduler worker `tid` ran last. Exact for what the worker does
    /// right after the run event in the same work item (`run_job`'s amdgpu trace, its hardware
    /// fence); a guess for what comes before the next run (`prepare_job`'s vm_grab_id): a
    /// kthread per ring (≤ 6.7) never changes device, but a workqueue worker (≥ 6.8) may.
    fn worker(&self, tid: u32, after_run: bool) -> Option<Label> {
        self.by_worker.get(&tid).map(|l| Label {
            gpu: l.gpu.clone(),
            exact: l.exact && after_run,
        })
    }

    fn join(&self, body: &EventBody) -> Option<Label> {
        match body {
            EventBody::Submit { job, .. }
            | EventBody::SchedQueued { job, .. }
            | EventBody::JobDone { job } => self.job(job),
            EventBody::RunJob {
                job, worker_tid, ..
            } => best(self.job(job), || self.worker(*worker_tid, true)),
            EventBody::HwFenceEmitted {
                context,
                emitter_tid,
                ..
            } => best(self.by_context.get(context).cloned(), || {
                self.worker(*emitter_tid, true)
            }),
            EventBody::HwFenceSignaled { context, .. } => self.by_context.get(context).cloned(),
            EventBody::VmGrabId {
                pasid, worker_tid, ..
            } => self
                .pasid(Some(*pasid))
                .or_else(|| self.worker(*worker_tid, false)),
            EventBody::PasidAllocated { pasid, .. } | EventBody::PasidFreed { pasid } => {
                self.pasid(Some(*pasid))
            }
            EventBody::VmFault(f) => self.pasid(Some(f.pasid)),
            EventBody::JobTimedOut { job, pasid, .. } => {
                self.job(job).or_else(|| self.pasid(*pasid))
            }
            EventBody::ResetBegin { job, pasid, .. } => job
                .as_ref()
                .and_then(|j| self.job(j))
                .or_else(|| self.pasid(*pasid)),
            _ => None,
        }
    }

    /// From the process's open amdgpu files: the file with this pasid (exact), else the one
    /// device all its files are on (inferred).
    fn by_fdinfo(&mut self, body: &EventBody) -> Option<Label> {
        let (pid, pasid, fresh) = match body {
            EventBody::PasidAllocated { pasid, task } => (task.pid, Some(*pasid), true),
            EventBody::Submit { task, .. }
            | EventBody::SchedQueued { task, .. }
            | EventBody::SubmitRejected { task, .. } => (task.pid, None, false),
            EventBody::ProcessInfo { pid, .. } => (*pid, None, true),
            _ => return None,
        };
        if pid == 0 {
            return None;
        }
        // `amdgpu_pasid_allocated` fires inside open(), before the fd is installed: an empty
        // read is retried at the process's next event.
        if fresh || self.fdinfo.get(&pid).is_none_or(Vec::is_empty) {
            let files = read_fdinfo(&self.proc_root, pid);
            for (p, gpu) in &files {
                if let Some(p) = p {
                    self.by_pasid.insert(
                        *p,
                        Label {
                            gpu: gpu.clone(),
                            exact: true,
                        },
                    );
                }
            }
            self.fdinfo.insert(pid, files);
        }
        let files = self.fdinfo.get(&pid)?;
        if let Some(p) = pasid {
            if let Some((_, gpu)) = files.iter().find(|(fp, _)| *fp == Some(p)) {
                return Some(Label {
                    gpu: gpu.clone(),
                    exact: true,
                });
            }
        }
        let first = &files.first()?.1;
        files.iter().all(|(_, g)| g == first).then(|| Label {
            gpu: first.clone(),
            exact: false,
        })
    }

    /// Remembers the keys of a labelled event for the events that lack a device.
    /// An inference never replaces an exact label; an exact one replaces an inference (so a
    /// context first labelled from fdinfo becomes exact once a kernel-labelled run joins it).
    fn learn(&mut self, body: &EventBody, l: &Label) {
        let job = |s: &mut Self, j: &JobKey| {
            if let Some(c) = j.context {
                s.by_context.upgrade(c, l);
            }
            if let Some(f) = j.sched_fence {
                s.by_fence.upgrade(f, l);
            }
        };
        match body {
            EventBody::Submit { job: j, .. }
            | EventBody::SchedQueued { job: j, .. }
            | EventBody::JobDone { job: j } => job(self, j),
            EventBody::RunJob {
                job: j, worker_tid, ..
            } => {
                job(self, j);
                self.by_worker.insert(*worker_tid, l.clone());
            }
            EventBody::HwFenceEmitted { context, .. } => {
                self.by_context.upgrade(*context, l);
            }
            EventBody::JobTimedOut { job: j, pasid, .. } => {
                job(self, j);
                if let Some(p) = pasid {
                    self.by_pasid.upgrade(*p, l);
                }
            }
            EventBody::ResetBegin { job: j, pasid, .. } => {
                if let Some(j) = j {
                    job(self, j);
                }
                if let Some(p) = pasid {
                    self.by_pasid.upgrade(*p, l);
                }
            }
            EventBody::PasidAllocated { pasid, .. } | EventBody::VmGrabId { pasid, .. }
                if l.exact =>
            {
                self.by_pasid.upgrade(*pasid, l);
            }
            _ => {}
        }
    }
}

/// Probe events that are about one GPU's work (exits and rejections name no device).
fn carries_device_work(body: &EventBody) -> bool {
    !matches!(
        body,
        EventBody::ProcessExit { .. }
            | EventBody::SubmitRejected { .. }
            | EventBody::ResetEnd { .. }
    )
}

/// `(pasid, drm-pdev)` of every amdgpu file `pid` has open (`pdev:` on ≤ 6.4 fdinfo).
fn read_fdinfo(proc_root: &Path, pid: u32) -> Vec<(Option<u32>, String)> {
    let dir = proc_root.join(pid.to_string()).join("fdinfo");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if let Some(info) = parse_fdinfo(&text) {
            let pdev = info.pdev.or_else(|| legacy_pdev(&text));
            if let Some(pdev) = pdev {
                if out.len() < 64 {
                    out.push((info.pasid, pdev));
                }
            }
        }
    }
    out
}

/// The ≤ 6.4 amdgpu-printed `pdev:` key (DRM core's `drm-pdev:` came later).
fn legacy_pdev(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("pdev:"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// What `hangwatch check` says about device labels on this host and kernel.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub devices: Vec<String>,
    /// Methods that will label probe events, best first.
    pub methods: Vec<PlanItem>,
    /// True when, with several devices, probe events can only be labelled by inference.
    pub guesses: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct PlanItem {
    pub method: Method,
    pub exact: bool,
    pub how: String,
}

/// The labelling methods this kernel supports, for `check`.
pub fn plan(a: &Assessment, devices: &[String]) -> Plan {
    let mut m = Vec::new();
    let item = |method, exact, how: &str| PlanItem {
        method,
        exact,
        how: how.to_string(),
    };
    if devices.len() == 1 {
        m.push(item(
            Method::OnlyDevice,
            true,
            "one amdgpu device: every event is on it",
        ));
    }
    let dev_field = a.probes.iter().any(|p| {
        matches!(p.name, "sched_job_queue" | "sched_job_run")
            && p.layout
                .as_ref()
                .is_some_and(|l| l.fields[agent_common::slot::DEV].is_present())
    });
    if dev_field {
        m.push(item(
            Method::Kernel,
            true,
            "gpu_scheduler tracepoints print dev= (drm_sched_job_queue/run)",
        ));
    }
    let d = a.dev_layout.valid;
    if d & agent_common::dev_path::SCHED != 0 {
        let mut how = format!("module BTF in the eBPF programs: {}", a.dev_note);
        if dev_field {
            how += " (kprobes)";
        }
        m.push(PlanItem {
            method: Method::Kernel,
            exact: true,
            how,
        });
    }
    m.push(item(
        Method::Join,
        true,
        "fence context / fence pointer / pasid of a labelled event",
    ));
    m.push(item(
        Method::Join,
        true,
        "scheduler worker that just ran a labelled job: its amdgpu run trace and hardware fence",
    ));
    m.push(item(
        Method::Join,
        false,
        "scheduler worker's previous job, for the next job's vm_grab_id (a workqueue worker can serve two devices)",
    ));
    m.push(item(
        Method::Fdinfo,
        true,
        "/proc/PID/fdinfo pasid + drm-pdev of the file that allocated the pasid",
    ));
    m.push(item(
        Method::Fdinfo,
        false,
        "/proc/PID/fdinfo: the one device all the submitter's amdgpu files are on",
    ));
    let kernel = m.iter().any(|i| i.method == Method::Kernel);
    Plan {
        devices: devices.to_vec(),
        guesses: devices.len() > 1 && !kernel,
        methods: m,
    }
}

impl Plan {
    /// One line for `check` / the run log.
    pub fn summary(&self) -> String {
        let devs = match self.devices.len() {
            0 => "no amdgpu device bound".to_string(),
            _ => self.devices.join(", "),
        };
        let best = self
            .methods
            .first()
            .map(|i| format!("{} ({})", i.method.as_str(), i.how))
            .unwrap_or_default();
        let mut s = format!("devices: {devs}; labels by {best}");
        if self.guesses {
            s += "; GUESSES: no tracepoint dev= and no module BTF, so probe events are \
                  labelled only by fdinfo and joins (kernel-log lines keep their own prefix)";
        }
        s
    }

    /// Whether the eBPF programs should read device names (several devices, BTF paths known).
    pub fn needs_kernel_names(&self) -> bool {
        self.devices.len() != 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangwatch_core::model::{Clock, Task};

    fn ev(gpu: Option<&str>, body: EventBody) -> Event {
        Event {
            t_ns: 1,
            clock: Clock::Monotonic,
            source: Source::Ebpf,
            gpu: gpu.map(str::to_string),
            body,
        }
    }

    fn key(context: u64, seqno: u64) -> JobKey {
        JobKey {
            context: Some(context),
            seqno: Some(seqno),
            ..Default::default()
        }
    }

    fn task(pid: u32) -> Task {
        Task::new(pid, pid, "zed")
    }

    #[test]
    fn discovers_devices_of_any_bus_bound_to_amdgpu() {
        let sys = std::env::temp_dir().join(format!("hw-devs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&sys);
        let devs = sys.join("devices/pci0000:00");
        std::fs::create_dir_all(&devs).unwrap();
        for (bus, name) in [("pci", "0000:03:00.0"), ("platform", "0000:01:00.0")] {
            let d = sys.join("bus").join(bus).join("drivers/amdgpu");
            std::fs::create_dir_all(&d).unwrap();
            std::os::unix::fs::symlink(devs.join(name), d.join(name)).unwrap();
            std::fs::write(d.join("bind"), "").unwrap();
            std::os::unix::fs::symlink(sys.join("module/amdgpu"), d.join("module")).unwrap();
        }
        assert_eq!(discover(&sys), vec!["0000:01:00.0", "0000:03:00.0"]);
        assert!(discover(&sys.join("nowhere")).is_empty());
        let _ = std::fs::remove_dir_all(&sys);
    }

    #[test]
    fn one_device_labels_everything() {
        let mut l = Labeler::new(&["0000:03:00.0".into()], Path::new("/nonexistent"));
        let mut e = ev(None, EventBody::PasidFreed { pasid: 7 });
        l.label(&mut e);
        assert_eq!(e.gpu.as_deref(), Some("0000:03:00.0"));
        assert_eq!(l.counts.only_device, 1);
    }

    /// Two GPUs, 7.x: the scheduler events name the device; the amdgpu events (no dev) are
    /// joined by fence context, the hardware fence by the worker, faults by pasid.
    #[test]
    fn joins_follow_the_kernel_named_events() {
        let devs = vec!["0000:00:00.0".to_string(), "0000:01:00.0".to_string()];
        let mut l = Labeler::new(&devs, Path::new("/nonexistent"));
        let mut q = ev(
            Some("0000:01:00.0"),
            EventBody::SchedQueued {
                task: task(10),
                ring: "gfx_0.0.0".into(),
                job: key(900, 1),
                client_id: Some(3),
            },
        );
        l.label(&mut q);
        let mut s = ev(
            None,
            EventBody::Submit {
                task: task(10),
                ring: "gfx_0.0.0".into(),
                job: key(900, 2),
                num_ibs: 1,
            },
        );
        l.label(&mut s);
        assert_eq!(s.gpu.as_deref(), Some("0000:01:00.0"));
        let mut r = ev(
            Some("0000:01:00.0"),
            EventBody::RunJob {
                ring: "gfx_0.0.0".into(),
                job: key(900, 2),
                worker_tid: 77,
            },
        );
        l.label(&mut r);
        let mut f = ev(
            None,
            EventBody::HwFenceEmitted {
                ring: "gfx_0.0.0".into(),
                context: 5,
                seqno: 9,
                emitter_tid: 77,
            },
        );
        l.label(&mut f);
        assert_eq!(f.gpu.as_deref(), Some("0000:01:00.0"));
        let mut sig = ev(
            None,
            EventBody::HwFenceSignaled {
                ring: "gfx_0.0.0".into(),
                context: 5,
                seqno: 9,
            },
        );
        l.label(&mut sig);
        assert_eq!(sig.gpu.as_deref(), Some("0000:01:00.0"));
        // The other GPU's job on the same ring name stays apart.
        let mut other = ev(
            None,
            EventBody::Submit {
                task: task(11),
                ring: "gfx_0.0.0".into(),
                job: key(901, 1),
                num_ibs: 1,
            },
        );
        l.label(&mut other);
        assert_eq!(other.gpu, None);
        assert_eq!(
            (l.counts.kernel, l.counts.join, l.counts.unlabelled),
            (2, 3, 1)
        );
        // The fence follows the labelled run in the same work item: exact.
        assert_eq!(l.counts.guessed, 0);
        let mut g = ev(
            None,
            EventBody::VmGrabId {
                ring: "gfx_0.0.0".into(),
                pasid: 99,
                vmid: 1,
                worker_tid: 77,
            },
        );
        l.label(&mut g);
        assert_eq!(g.gpu.as_deref(), Some("0000:01:00.0"));
        assert_eq!(
            l.counts.guessed, 1,
            "the next job's vm_grab_id is an inference"
        );
    }

    #[test]
    fn fdinfo_pasid_is_exact_and_single_device_submitter_is_a_guess() {
        let root = std::env::temp_dir().join(format!("hw-devs-proc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let fdi = root.join("42/fdinfo");
        std::fs::create_dir_all(&fdi).unwrap();
        std::fs::write(
            fdi.join("3"),
            "pos:\t0\nflags:\t02\npdev:\t0000:01:00.0\npasid:\t32770\ndrm-driver:\tamdgpu\n",
        )
        .unwrap();
        std::fs::write(fdi.join("0"), "pos:\t0\nflags:\t02\n").unwrap();
        let devs = vec!["0000:00:00.0".to_string(), "0000:01:00.0".to_string()];
        let mut l = Labeler::new(&devs, &root);
        let mut a = ev(
            None,
            EventBody::PasidAllocated {
                pasid: 32770,
                task: task(42),
            },
        );
        l.label(&mut a);
        assert_eq!(a.gpu.as_deref(), Some("0000:01:00.0"));
        assert_eq!(l.counts.guessed, 0);
        let mut fault = ev(
            None,
            EventBody::VmFault(hangwatch_core::model::FaultInfo {
                hub: "gfxhub".into(),
                pasid: 32770,
                vmid: 1,
                src_id: None,
                ring_id: None,
                address: None,
                retry: None,
                write: None,
                client: None,
                status: None,
                status_fields: Vec::new(),
            }),
        );
        l.label(&mut fault);
        assert_eq!(fault.gpu.as_deref(), Some("0000:01:00.0"));
        let mut s = ev(
            None,
            EventBody::Submit {
                task: task(42),
                ring: "gfx_0.0.0".into(),
                job: key(5, 1),
                num_ibs: 1,
            },
        );
        l.label(&mut s);
        assert_eq!(s.gpu.as_deref(), Some("0000:01:00.0"));
        assert_eq!(l.counts.guessed, 1);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// 6.1: a submitter's first job is labelled from fdinfo (an inference) and so is its
    /// context; once the kernel-labelled drm_run_job and the amdgpu run trace of that context
    /// follow in the same worker, the context is exact and later submissions join exactly.
    #[test]
    fn kernel_labelled_run_upgrades_a_guessed_context() {
        let root = std::env::temp_dir().join(format!("hw-devs-up-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("7/fdinfo")).unwrap();
        std::fs::write(
            root.join("7/fdinfo/4"),
            "drm-driver:\tamdgpu\ndrm-pdev:\t0000:01:00.0\npasid:\t5\n",
        )
        .unwrap();
        let devs = vec!["0000:00:00.0".to_string(), "0000:01:00.0".to_string()];
        let mut l = Labeler::new(&devs, &root);
        let submit = |seq| {
            ev(
                None,
                EventBody::Submit {
                    task: task(7),
                    ring: "gfx_0.0.0".into(),
                    job: key(40, seq),
                    num_ibs: 1,
                },
            )
        };
        let mut s1 = submit(1);
        l.label(&mut s1);
        assert_eq!(
            (s1.gpu.as_deref(), l.counts.guessed),
            (Some("0000:01:00.0"), 1)
        );
        let mut legacy_run = ev(
            Some("0000:01:00.0"),
            EventBody::RunJob {
                ring: "gfx_0.0.0".into(),
                job: JobKey {
                    sched_job_id: Some(1),
                    ..JobKey::default()
                },
                worker_tid: 300,
            },
        );
        l.label(&mut legacy_run);
        let mut amdgpu_run = ev(
            None,
            EventBody::RunJob {
                ring: "gfx_0.0.0".into(),
                job: key(40, 1),
                worker_tid: 300,
            },
        );
        l.label(&mut amdgpu_run);
        assert_eq!(l.counts.guessed, 1, "the worker beats the guessed context");
        let mut s2 = submit(2);
        l.label(&mut s2);
        assert_eq!(
            (s2.gpu.as_deref(), l.counts.guessed),
            (Some("0000:01:00.0"), 1)
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    /// `amdgpu_pasid_allocated` fires before open() installs the fd: fdinfo has nothing yet.
    /// The process's first submission reads it again and learns the pasid, so the scheduler's
    /// vm_grab_id for it is exact, not a worker guess.
    #[test]
    fn pasid_learnt_when_the_fd_appears() {
        let root = std::env::temp_dir().join(format!("hw-devs-late-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("8/fdinfo")).unwrap();
        let devs = vec!["0000:00:00.0".to_string(), "0000:01:00.0".to_string()];
        let mut l = Labeler::new(&devs, &root);
        let mut alloc = ev(
            None,
            EventBody::PasidAllocated {
                pasid: 6,
                task: task(8),
            },
        );
        l.label(&mut alloc);
        assert_eq!(alloc.gpu, None);
        std::fs::write(
            root.join("8/fdinfo/3"),
            "drm-driver:\tamdgpu\ndrm-pdev:\t0000:00:00.0\npasid:\t6\n",
        )
        .unwrap();
        let mut s = ev(
            None,
            EventBody::Submit {
                task: task(8),
                ring: "gfx_0.0.0".into(),
                job: key(50, 1),
                num_ibs: 1,
            },
        );
        l.label(&mut s);
        let mut g = ev(
            None,
            EventBody::VmGrabId {
                ring: "gfx_0.0.0".into(),
                pasid: 6,
                vmid: 1,
                worker_tid: 1,
            },
        );
        l.label(&mut g);
        assert_eq!(g.gpu.as_deref(), Some("0000:00:00.0"));
        assert_eq!(
            l.counts.guessed, 1,
            "only the submission's one-device inference"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn bounded_map_evicts_oldest() {
        let mut b = Bounded::new(2);
        b.insert(1, "a");
        b.insert(2, "b");
        b.insert(1, "a2");
        b.insert(3, "c");
        assert_eq!(
            (b.get(&1), b.get(&2), b.get(&3)),
            (None, Some(&"b"), Some(&"c"))
        );
    }
}
