//! Who a process is, in the units people act on: its systemd unit and slice, user session,
//! container, Kubernetes pod, Slurm job, pid chain across pid namespaces and DRM client names.
//! Parsed from `/proc/PID/cgroup`, `/proc/PID/status` and a passwd text, which the agent reads
//! while the process lives. Every input is hostile: lines, components and values are bounded,
//! non-UTF-8 bytes are replaced, and ids are kept only when they have the shape runtimes give.
//! Sinks escape what is kept (docs/operations.md, "Process identity").
use serde::{Deserialize, Serialize};

use crate::incident::Incident;

/// At most this many bytes of a cgroup, status or passwd text are looked at.
pub const MAX_TEXT_BYTES: usize = 64 << 10;
/// At most this many cgroup lines (a v1 host has about fifteen controllers).
pub const MAX_CGROUP_LINES: usize = 64;
/// At most this many components of one cgroup path.
pub const MAX_COMPONENTS: usize = 64;
/// A kept name (unit, slice, user, step, client name) is cut to this many bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// At most this many pid-namespace levels (the kernel nests at most 32).
pub const MAX_NSPID: usize = 32;
/// At most this many distinct DRM client names per process.
pub const MAX_CLIENT_NAMES: usize = 4;

/// The identity of one process. Every field is optional: a field is set only when the input
/// said it, never guessed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProcessIdentity {
    /// The innermost systemd unit (`.service` or `.scope`) of the process's cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The innermost systemd slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    /// The real uid (`/proc/PID/status` `Uid:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The user name of `uid`, from the passwd database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The login session (`session-<id>.scope`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmJob>,
    /// The pid in each pid namespace, outermost (the host's) first (`NSpid:`); only set when
    /// the process is in a nested pid namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nspid: Vec<u32>,
    /// `drm-client-name` of the process's amdgpu file descriptors (set by the process itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drm_client_names: Vec<String>,
}

/// A container runtime, as told by its cgroup scope or directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Runtime {
    Docker,
    Podman,
    Containerd,
    Crio,
    /// A container id in a layout that does not name its runtime (kubelet's cgroupfs driver).
    Unknown,
}

impl Runtime {
    /// The runtime as the JSON spells it.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Containerd => "containerd",
            Runtime::Crio => "crio",
            Runtime::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Container {
    pub runtime: Runtime,
    /// The full container id (12 to 64 lowercase hex digits).
    pub id: String,
}

/// A Kubernetes pod's QoS class, from the kubelet's cgroup layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// A Kubernetes pod. Its namespace and name are not in the cgroup path: only the uid is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Pod {
    /// The pod uid (`kubectl get pod -o jsonpath='{.metadata.uid}'`), with dashes.
    pub uid: String,
    pub qos: QosClass,
}

/// A Slurm job step, from slurmstepd's cgroup layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SlurmJob {
    pub job_id: u64,
    /// `0`, `1`, ..., `batch`, `extern` or `interactive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The job's user: the uid the v1 layout names, else the process's uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl ProcessIdentity {
    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        *self == ProcessIdentity::default()
    }

    /// One line for people: `unit user.slice/session-3.scope, user alice (1000), container
    /// podman 3f2a…`. Not escaped: callers escape for their sink.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.container {
            parts.push(format!(
                "container {} {}",
                c.runtime.name(),
                short_id(&c.id)
            ));
        }
        if let Some(p) = &self.pod {
            parts.push(format!("pod {} ({})", p.uid, qos_name(p.qos)));
        }
        if let Some(j) = &self.slurm {
            let mut s = format!("slurm job {}", j.job_id);
            if let Some(st) = &j.step {
                s += &format!(" step {st}");
            }
            if let Some(u) = &j.user {
                s += &format!(" user {u}");
            }
            parts.push(s);
        }
        if let Some(u) = &self.unit {
            parts.push(format!("unit {u}"));
        }
        if let Some(s) = &self.session {
            parts.push(format!("session {s}"));
        }
        match (&self.user, self.uid) {
            (Some(n), Some(u)) => parts.push(format!("user {n} ({u})")),
            (None, Some(u)) => parts.push(format!("uid {u}")),
            _ => {}
        }
        if self.nspid.len() > 1 {
            let chain: Vec<String> = self.nspid.iter().map(u32::to_string).collect();
            parts.push(format!("nspid {}", chain.join(">")));
        }
        parts.join(", ")
    }

    /// The DRM client names joined, for showing next to comm (`""` when none).
    pub fn client_names(&self) -> String {
        self.drm_client_names.join(",")
    }
}

/// `kubectl` spells the classes this way.
pub fn qos_name(q: QosClass) -> &'static str {
    match q {
        QosClass::Guaranteed => "Guaranteed",
        QosClass::Burstable => "Burstable",
        QosClass::BestEffort => "BestEffort",
    }
}

/// The first 12 digits of a container id, as `docker ps` and `podman ps` show it.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Bytes of a hostile text as bounded UTF-8 (invalid bytes replaced).
fn bounded(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(MAX_TEXT_BYTES)]).into_owned()
}

/// `s` cut to [`MAX_NAME_BYTES`] at a character boundary.
fn name(s: &str) -> String {
    let mut end = s.len().min(MAX_NAME_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The identity of a process from its `/proc/PID/cgroup`, `/proc/PID/status` and the passwd
/// database text (any may be empty). DRM client names are added by the caller.
pub fn parse(cgroup: &[u8], status: &[u8], passwd: &[u8]) -> ProcessIdentity {
    let mut id = from_cgroup(&bounded(cgroup));
    let status = bounded(status);
    id.uid = status_uid(&status);
    id.nspid = status_nspid(&status);
    let passwd = bounded(passwd);
    id.user = id.uid.and_then(|u| user_name(&passwd, u));
    if let Some(j) = id.slurm.as_mut() {
        j.uid = j.uid.or(id.uid);
        j.user = j.uid.and_then(|u| user_name(&passwd, u));
    }
    id
}

/// The cgroup paths of a `/proc/PID/cgroup` text, the v2 line (`0::/path`) first, then the
/// v1 `name=systemd` line, then the other v1 lines.
fn cgroup_paths(text: &str) -> Vec<&str> {
    let mut v2 = Vec::new();
    let mut systemd = Vec::new();
    let mut v1 = Vec::new();
    for line in text.lines().take(MAX_CGROUP_LINES) {
        let mut f = line.splitn(3, ':');
        let (Some(hier), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        match (hier, ctrl) {
            ("0", "") => v2.push(path),
            (_, "name=systemd") => systemd.push(path),
            _ => v1.push(path),
        }
    }
    v2.into_iter().chain(systemd).chain(v1).collect()
}

/// The identity a cgroup text gives: each field from the first path that gives it.
pub fn from_cgroup(text: &str) -> ProcessIdentity {
    let mut id = ProcessIdentity::default();
    for path in cgroup_paths(text) {
        let p = from_path(path);
        id.unit = id.unit.or(p.unit);
        id.slice = id.slice.or(p.slice);
        id.session = id.session.or(p.session);
        id.container = id.container.or(p.container);
        id.pod = id.pod.or(p.pod);
        id.slurm = id.slurm.or(p.slurm);
        id.uid = id.uid.or(p.uid);
    }
    id
}

/// What one cgroup path says. `uid` here is the session's (`user-1000.slice`).
fn from_path(path: &str) -> ProcessIdentity {
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .take(MAX_COMPONENTS)
        .collect();
    let mut id = ProcessIdentity::default();
    let mut slurm = SlurmWalk::default();
    let mut kube_qos: Option<QosClass> = None;
    for (i, c) in comps.iter().enumerate() {
        let next = comps.get(i + 1).copied();
        if let Some((s, rest)) = c.split_once(':') {
            // containerd or cri-o without systemd scopes: `<pod slice>:cri-containerd:<id>`.
            if let Some(st) = s.strip_suffix(".slice") {
                slice(&mut id, &mut kube_qos, st, s);
            }
            colon_container(&mut id, rest);
        } else if let Some(s) = c.strip_suffix(".slice") {
            slice(&mut id, &mut kube_qos, s, c);
        } else if c.ends_with(".scope") || c.ends_with(".service") {
            unit(&mut id, &mut slurm, c);
        } else if let Some(q) = kubepods_dir(c, &comps[..i], &mut kube_qos) {
            kube_qos = Some(q);
        } else if let Some(uid) = c.strip_prefix("pod").filter(|_| kube_qos.is_some()) {
            pod(&mut id, kube_qos, uid, next);
        } else if (*c == "docker" || *c == "libpod_parent") && next.is_some() {
            if let Some(cid) = next.and_then(|n| container_id(n.trim_start_matches("libpod-"))) {
                let rt = if *c == "docker" {
                    Runtime::Docker
                } else {
                    Runtime::Podman
                };
                id.container.get_or_insert(Container {
                    runtime: rt,
                    id: cid,
                });
            }
        } else {
            slurm.component(c);
        }
    }
    id.slurm = slurm.job();
    id
}

/// A `.slice` component: user sessions and the kubelet's systemd layout.
fn slice(id: &mut ProcessIdentity, qos: &mut Option<QosClass>, stem: &str, full: &str) {
    id.slice = Some(name(full));
    if let Some(uid) = stem.strip_prefix("user-").and_then(|u| u.parse().ok()) {
        id.uid = Some(uid);
    }
    let Some(rest) = stem.strip_prefix("kubepods") else {
        return;
    };
    // kubepods.slice, kubepods-burstable.slice, kubepods-burstable-pod<uid>.slice,
    // kubepods-pod<uid>.slice (guaranteed).
    let rest = rest.trim_start_matches('-');
    let (q, pod_part) = if let Some(r) = rest.strip_prefix("burstable") {
        (QosClass::Burstable, r)
    } else if let Some(r) = rest.strip_prefix("besteffort") {
        (QosClass::BestEffort, r)
    } else {
        (QosClass::Guaranteed, rest)
    };
    *qos = Some(q);
    if let Some(uid) = pod_part.trim_start_matches('-').strip_prefix("pod") {
        if let Some(uid) = pod_uid(&uid.replace('_', "-")) {
            id.pod = Some(Pod { uid, qos: q });
        }
    }
}

/// A `.scope` or `.service` component: container scopes, sessions, slurmstepd, units.
fn unit(id: &mut ProcessIdentity, slurm: &mut SlurmWalk, c: &str) {
    id.unit = Some(name(c));
    if c == "slurmstepd.scope" {
        slurm.inside = true;
        return;
    }
    if let Some(s) = c
        .strip_prefix("session-")
        .and_then(|s| s.strip_suffix(".scope"))
    {
        id.session = Some(name(s));
        return;
    }
    let Some(stem) = c.strip_suffix(".scope") else {
        return;
    };
    // `crio-conmon-<id>` and `libpod-conmon-<id>` are the monitors, not the containers:
    // `container_id` refuses them (not hex).
    let scoped = [
        ("docker-", Runtime::Docker),
        ("libpod-", Runtime::Podman),
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::Crio),
    ];
    for (prefix, rt) in scoped {
        if let Some(cid) = stem.strip_prefix(prefix).and_then(container_id) {
            id.container = Some(Container {
                runtime: rt,
                id: cid,
            });
        }
    }
}

/// `cri-containerd:<id>`, `crio:<id>` or `docker:<id>` (systemd cgroup driver names).
fn colon_container(id: &mut ProcessIdentity, rest: &str) {
    let Some((rt, cid)) = rest.split_once(':') else {
        return;
    };
    let runtime = match rt {
        "cri-containerd" => Runtime::Containerd,
        "crio" => Runtime::Crio,
        "docker" => Runtime::Docker,
        _ => return,
    };
    if let Some(cid) = container_id(cid) {
        id.container = Some(Container { runtime, id: cid });
    }
}

/// The kubelet's cgroupfs layout: `/kubepods/<qos>/pod<uid>/<id>` (no qos dir: guaranteed).
fn kubepods_dir(c: &str, before: &[&str], qos: &mut Option<QosClass>) -> Option<QosClass> {
    if c == "kubepods" {
        *qos = Some(QosClass::Guaranteed);
        return Some(QosClass::Guaranteed);
    }
    if before.last() != Some(&"kubepods") {
        return None;
    }
    match c {
        "burstable" => Some(QosClass::Burstable),
        "besteffort" => Some(QosClass::BestEffort),
        _ => None,
    }
}

/// `pod<uid>` in the cgroupfs layout, with the container id in the next component.
fn pod(id: &mut ProcessIdentity, qos: Option<QosClass>, uid: &str, next: Option<&str>) {
    let (Some(qos), Some(uid)) = (qos, pod_uid(uid)) else {
        return;
    };
    id.pod = Some(Pod { uid, qos });
    if id.container.is_none() {
        if let Some(cid) = next.and_then(container_id) {
            id.container = Some(Container {
                runtime: Runtime::Unknown,
                id: cid,
            });
        }
    }
}

/// A container id: 12 to 64 lowercase hex digits.
fn container_id(s: &str) -> Option<String> {
    let ok = (12..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| s.to_ascii_lowercase())
}

/// A pod uid: a UUID (36 characters of hex digits and dashes).
fn pod_uid(s: &str) -> Option<String> {
    let ok = s.len() == 36
        && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        && s.bytes().filter(|&b| b == b'-').count() == 4;
    ok.then(|| s.to_ascii_lowercase())
}

/// Slurm's layouts: v2 `slurmstepd.scope/job_<id>/step_<step>/...`, v1
/// `slurm[_<node>]/uid_<uid>/job_<id>/step_<step>`.
#[derive(Default)]
struct SlurmWalk {
    inside: bool,
    uid: Option<u32>,
    job: Option<u64>,
    step: Option<String>,
}

impl SlurmWalk {
    fn component(&mut self, c: &str) {
        if c == "slurm" || c.starts_with("slurm_") {
            self.inside = true;
        } else if !self.inside {
        } else if let Some(u) = c.strip_prefix("uid_") {
            self.uid = u.parse().ok();
        } else if let Some(j) = c.strip_prefix("job_") {
            self.job = j.parse().ok();
        } else if let Some(s) = c.strip_prefix("step_").filter(|_| self.job.is_some()) {
            let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            self.step = ok.then(|| name(s));
        }
    }

    fn job(self) -> Option<SlurmJob> {
        Some(SlurmJob {
            job_id: self.job?,
            step: self.step,
            uid: self.uid,
            user: None,
        })
    }
}

/// The real uid of a `/proc/PID/status` text.
fn status_uid(status: &str) -> Option<u32> {
    let v = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    v.split_whitespace().next()?.parse().ok()
}

/// The `NSpid:` chain, when it has more than the host's pid.
fn status_nspid(status: &str) -> Vec<u32> {
    let Some(v) = status.lines().find_map(|l| l.strip_prefix("NSpid:")) else {
        return Vec::new();
    };
    let chain: Option<Vec<u32>> = v
        .split_whitespace()
        .take(MAX_NSPID)
        .map(|p| p.parse().ok())
        .collect();
    chain.filter(|c| c.len() > 1).unwrap_or_default()
}

/// The name of `uid` in a passwd text (`name:x:uid:gid:...`).
pub fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let n = f.next()?;
        let u: u32 = f.nth(1)?.parse().ok()?;
        (u == uid && !n.is_empty()).then(|| name(n))
    })
}

/// `drm-client-name` of an fdinfo text, bounded; `None` when unset or empty.
pub fn drm_client_name(fdinfo: &str) -> Option<String> {
    let v = fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("drm-client-name:"))?
        .trim();
    (!v.is_empty()).then(|| name(v))
}

/// Adds `n` to the distinct client names, at most [`MAX_CLIENT_NAMES`].
pub fn add_client_name(id: &mut ProcessIdentity, n: String) {
    if id.drm_client_names.len() < MAX_CLIENT_NAMES && !id.drm_client_names.contains(&n) {
        id.drm_client_names.push(n);
    }
}

/// Fills the identity of every involved process (culprit, kernel-blamed, victims, compute
/// candidates) that has none yet from `lookup(pid, comm)` (the agent's first-sight capture).
pub fn attach(inc: &mut Incident, mut lookup: impl FnMut(u32, &str) -> Option<ProcessIdentity>) {
    let mut fill = |pid: u32, comm: &str, slot: &mut Option<ProcessIdentity>| {
        if slot.is_none() && pid != 0 {
            *slot = lookup(pid, comm).filter(|i| !i.is_empty());
        }
    };
    for p in inc.culprit.iter_mut().chain(inc.kernel_blamed.iter_mut()) {
        fill(p.pid, &p.comm, &mut p.identity);
    }
    for v in &mut inc.victims {
        fill(v.pid, &v.comm, &mut v.identity);
    }
    if let Some(c) = inc.compute.as_mut() {
        for k in c.flagged.iter_mut().chain(c.candidates.iter_mut()) {
            fill(k.pid, &k.comm, &mut k.identity);
        }
    }
}

/// Removes every identity (the redacted bug report).
pub fn strip(inc: &mut Incident) {
    for p in inc.culprit.iter_mut().chain(inc.kernel_blamed.iter_mut()) {
        p.identity = None;
    }
    for v in &mut inc.victims {
        v.identity = None;
    }
    if let Some(c) = inc.compute.as_mut() {
        for k in c.flagged.iter_mut().chain(c.candidates.iter_mut()) {
            k.identity = None;
        }
    }
}

#[cfg(test)]
mod tests;
