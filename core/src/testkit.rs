//! Sample incidents and checks shared by the tests of this crate and of the agent (feature
//! `testkit`): the V710 disputed incident, hostile variants of it, a CommonMark structure
//! check, an independent Perfetto decoder (protoc), and the one incident expectation and
//! checker of the golden, corpus and scenario tests ([`expect`]).
#![allow(
    clippy::unwrap_used,
    reason = "test support: a failure is a test failure"
)]
pub mod expect;

use std::io::Write;
use std::process::{Command, Stdio};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use crate::incident::{
    Confidence, Evidence, Incident, IncidentKind, JobSnapshot, JobState, ProcessRef, ResetOutcome,
    Victim, SCHEMA,
};
use crate::model::{Clock, Source};

/// The V710 case: Xwayland's job timed out, but zed faulted at 0x0 first.
pub fn disputed_incident() -> Incident {
    let ev = |t: u64, at: &str, source, what: &str, lines: &[&str]| Evidence {
        at: at.into(),
        t_ns: t,
        source,
        what: what.into(),
        lines: lines.iter().map(|s| s.to_string()).collect(),
    };
    let job = |comm: &str, pid, seq, submit, run, done: Option<u64>, state: JobState| JobSnapshot {
        job_id: Some(seq),
        ring: "gfx_0.0.0".into(),
        pid,
        tid: pid,
        comm: comm.into(),
        context: Some(1),
        seqno: Some(seq),
        hw_seqno: Some(seq + 1000),
        pasid: Some(0x8001),
        submit_ns: Some(submit),
        run_ns: run,
        done_ns: done,
        state,
    };
    Incident {
        schema: SCHEMA.into(),
        id: "0000:c3:00.0-ring_timeout-45756000000000".into(),
        gpu: Some("0000:c3:00.0".into()),
        kind: IncidentKind::RingTimeout,
        ring: Some("gfx_0.0.0".into()),
        culprit: Some(ProcessRef { pid: 7021, comm: "zed".into(), exe: Some("/home/alice/.local/zed.app/libexec/zed-editor".into()), identity: None }),
        confidence: Confidence::Likely,
        kernel_blamed: Some(ProcessRef { pid: 6518, comm: "Xwayland".into(), exe: None, identity: None }),
        kernel_blame_disputed: true,
        victims: vec![Victim { pid: 6518, comm: "Xwayland".into(), reason: "job on gfx_0.0.0 timed out behind the culprit's".into(), identity: None }],
        evidence: vec![
            ev(45_756_100_000_000, "45756.100000", Source::Log, "VM page fault at 0x0 from zed[7021] pasid 32769", &[
                "amdgpu 0000:c3:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:24 vmid:3 pasid:32769, for process zed pid 7021 thread zed:cs0 pid 7025)",
                "amdgpu 0000:c3:00.0: amdgpu:   in page starting at address 0x0000000000000000 from client 10",
            ]),
            ev(45_766_649_480_000, "45766.649480", Source::Log, "ring gfx_0.0.0 timeout, kernel names Xwayland[6518]", &[
                "[drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring gfx_0.0.0 timeout, signaled seq=1041, emitted seq=1043",
                "[drm:amdgpu_job_timedout [amdgpu]] *ERROR* Process information: process Xwayland pid 6518 thread Xwayland:cs0 pid 6520",
            ]),
            ev(45_766_700_000_000, "45766.700000", Source::Log, "GPU reset succeeded", &["amdgpu 0000:c3:00.0: amdgpu: GPU reset(2) succeeded!"]),
        ],
        started_at: "45756.100000".into(),
        started_ns: 45_756_100_000_000,
        ended_ns: 45_766_700_000_000,
        clock: Clock::Monotonic,
        reasoning: "zed faulted at address 0x0 on the same ring 10 s before the timeout; Xwayland's job was queued behind it.".into(),
        reset: Some(ResetOutcome::Succeeded),
        jobs: vec![
            job("zed", 7021, 40, 45_756_000_000_000, Some(45_756_001_000_000), None, JobState::Hung),
            job("Xwayland", 6518, 41, 45_756_050_000_000, Some(45_756_060_000_000), Some(45_756_070_000_000), JobState::Done),
            job("Xwayland", 6518, 42, 45_756_200_000_000, None, None, JobState::Cancelled),
        ],
        dropped_events: 3,
        wall_time: None,
        boot_id: None,
        hostname: None,
        provisional: false,
        omitted: Default::default(),
        compute: None,
        needs_recovery: None,
        consequence_of: None,
        reset_cause: None,
        reset_loop: None,
    }
}

/// Rule T4 from a kernel log: a suspect and a questioned blame, not a verdict.
pub fn suspect_incident() -> Incident {
    let mut inc = disputed_incident();
    inc.confidence = Confidence::Unknown;
    inc
}

/// The document's structure: every start/end tag, plus inline HTML and code spans as
/// markers (their content is data; only their number matters).
pub fn structure(md: &str) -> Vec<String> {
    Parser::new_ext(md, Options::ENABLE_TABLES)
        .filter_map(|e| match e {
            Event::Start(t) => Some(format!("{t:?}")),
            Event::End(t) => Some(format!("{t:?}")),
            Event::Html(h) | Event::InlineHtml(h) => Some(format!("html {h}")),
            Event::Code(_) => Some("code".into()),
            _ => None,
        })
        .collect()
}

/// Assert that nothing dangerous exists in `md`: no link, image or HTML beyond `allowed_html`,
/// and no line starting with `/` (a GitLab quick action) or `@`.
pub fn assert_inert(md: &str, allowed_html: &[&str]) {
    for e in Parser::new_ext(md, Options::ENABLE_TABLES) {
        match &e {
            Event::Start(Tag::Link { .. } | Tag::Image { .. }) => panic!("{e:?} in\n{md}"),
            Event::Html(h) | Event::InlineHtml(h) => {
                assert!(
                    allowed_html.iter().any(|a| h.trim() == *a),
                    "unexpected HTML {h:?} in\n{md}"
                )
            }
            _ => {}
        }
    }
    for l in md.lines() {
        assert!(!l.starts_with('/'), "line starts a quick action: {l:?}");
    }
    let _ = TagEnd::Paragraph;
}

/// The sample incident with every string replaced by `name`-based hostile text (the enum
/// fields, `reset`, job `state` and queue `origin`/`kind`, cannot hold one).
pub fn hostile(name: &str) -> Incident {
    let mut inc = disputed_incident();
    inc.id = format!("id-{name}");
    inc.ring = Some(format!("gfx_0.0.0{name}"));
    inc.reasoning = format!("{name} faulted");
    if let Some(c) = inc.culprit.as_mut() {
        c.comm = name.into();
        c.exe = Some(format!("/home/u/{name}"));
        c.identity = Some(hostile_identity(name));
    }
    if let Some(k) = inc.kernel_blamed.as_mut() {
        k.comm = format!("{name}2");
        k.identity = Some(hostile_identity(name));
    }
    for v in inc.victims.iter_mut() {
        v.comm = name.into();
        v.reason = format!("because {name}");
        v.identity = Some(hostile_identity(name));
    }
    for e in inc.evidence.iter_mut() {
        e.what = format!("fault from {name}");
        for l in e.lines.iter_mut() {
            *l = format!("{name}\n{l}{name}");
        }
    }
    for j in inc.jobs.iter_mut() {
        j.comm = name.into();
        j.ring.clone_from(inc.ring.as_ref().unwrap());
    }
    inc.compute = Some(hostile_compute(name));
    inc
}

/// A reset loop summary whose every string is `name`-based: 5 resets, two kernels, `name`
/// culprit in all five and `gnome-shell` a victim in three.
pub fn hostile_loop(name: &str) -> crate::incident::ResetLoop {
    use crate::incident::{LoopProcess, ResetGroup};
    crate::incident::ResetLoop {
        resets: 5,
        incidents: (0..5).map(|i| format!("{name}-{i}")).collect(),
        groups: vec![
            ResetGroup {
                kernel: Some(format!("6.1.0-{name}")),
                resets: 4,
            },
            ResetGroup {
                kernel: None,
                resets: 1,
            },
        ],
        processes: vec![
            LoopProcess {
                comm: name.into(),
                pids: vec![100, 101, 102, 103, 104],
                resets: 5,
                culprit: 5,
                kernel_blamed: 5,
                victim: 0,
            },
            LoopProcess {
                comm: "gnome-shell".into(),
                pids: vec![7],
                resets: 3,
                culprit: 0,
                kernel_blamed: 0,
                victim: 3,
            },
        ],
    }
}

/// A compute attribution whose every string is `name`-based (candidate 4242).
pub fn hostile_compute(name: &str) -> crate::incident::ComputeAttribution {
    let cand = crate::incident::Candidate {
        pid: 4242,
        comm: name.into(),
        queues: vec![crate::incident::QueueRef {
            origin: crate::model::QueueOrigin::Kfd,
            kind: crate::model::QueueKind::Compute,
            queue_id: Some(0),
            doorbell: Some(0x1000),
            gpu: Some(name.into()),
            gpu_id: Some(48152),
        }],
        confidence: Confidence::Likely,
        reason: format!("its queue {name} did not preempt"),
        identity: Some(hostile_identity(name)),
    };
    crate::incident::ComputeAttribution {
        flagged: Some(cand.clone()),
        candidates: vec![cand],
        note: format!("queue table from {name}"),
    }
}

/// An identity whose every free-text field is `name` (what a hostile cgroup, passwd entry or
/// DRM client name can carry: the ids are checked for shape when parsed).
pub fn hostile_identity(name: &str) -> crate::identity::ProcessIdentity {
    use crate::identity::*;
    ProcessIdentity {
        unit: Some(name.into()),
        slice: Some(name.into()),
        uid: Some(1000),
        user: Some(name.into()),
        session: Some(name.into()),
        container: Some(Container {
            runtime: Runtime::Podman,
            id: "241e2ce08bbb31cda60f9f1886a31c5e5b095a53ef12e86d0e086e18fe06a6ef".into(),
        }),
        pod: Some(Pod {
            uid: "6a1f0c2e-9b7d-4c3a-8e5f-0d1c2b3a4f5e".into(),
            qos: QosClass::Burstable,
        }),
        slurm: Some(SlurmJob {
            job_id: 4242,
            step: Some(name.into()),
            uid: Some(1000),
            user: Some(name.into()),
        }),
        nspid: vec![4242, 1],
        drm_client_names: vec![name.into()],
    }
}

pub const HOSTILE: &[&str] = &[
    "x\n/close",
    "/close",
    "```\n# HI",
    "![](//host/a)",
    "[a](http://evil)",
    "<img src=x onerror=alert(1)>",
    "<details>",
    "# heading",
    "- item",
    "1. item",
    "a|b|c",
    "`",
    "``",
    " ` ",
    "\u{1b}]0;pwned\u{7}",
    "\u{1b}[2J",
    "@all",
    "\\",
    "a\\|b",
    "---",
    "===",
    "> quote",
    "    indented",
    "\r\n/close",
    "<!-- x",
    "*emph* _u_",
    "http://autolink.example",
];

/// Decode with protoc — an independent decoder — against the perfetto subset proto.
pub fn protoc_decode(bytes: &[u8]) -> String {
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/proto");
    let child = Command::new("protoc")
        .arg(format!("-I{}", proto_dir.display()))
        .arg("--decode=perfetto.protos.Trace")
        .arg("perfetto_subset.proto")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!("protoc not found ({e}): install protobuf-compiler (apt-get install -y protobuf-compiler or `cargo xtask setup`)"),
    };
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "protoc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
