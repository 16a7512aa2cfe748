//! Every probe hangwatch knows: where it hooks, what it gives, which format fields it needs.
//! Slot meanings per kind are documented in `docs/events.md` and decoded in `decode.rs`.
use agent_common::{slot, FaultSlots, FenceSlots, GrabSlots, JobSlots, PasidSlots, UserqSlots};

use crate::sources::formats::{Binding, Want};

/// One tracepoint a probe may attach to; the first variant that exists on the kernel wins
/// (≥ 6.17 gpu_scheduler events before the legacy ones).
#[derive(Clone, Copy, Debug)]
pub struct TpVariant {
    pub sys: &'static str,
    pub event: &'static str,
    pub bindings: &'static [Binding],
}

#[derive(Clone, Copy, Debug)]
pub enum Hook {
    Tracepoint { variants: &'static [TpVariant] },
    Kprobe { symbol: &'static str },
    Kretprobe { symbol: &'static str },
}

#[derive(Clone, Copy, Debug)]
pub struct ProbeSpec {
    /// Stable name shown by `check` and used in logs.
    pub name: &'static str,
    /// eBPF program name in the object.
    pub program: &'static str,
    /// Load-time global holding this tracepoint's `TpLayout`, if any.
    pub layout_global: Option<&'static str>,
    pub hook: Hook,
    pub gives: &'static str,
    /// Kprobes that read structs through `JobLayout`.
    pub needs_btf: bool,
}

const S: Want = Want::Str;
const I: Want = Want::Int;

const JOB_FIELDS: &[Binding] = &[
    Binding::req(slot::RING, &["ring"], S),
    Binding::req(JobSlots::CONTEXT, &["context"], I),
    Binding::req(JobSlots::SEQNO, &["seqno"], I),
    Binding::opt(JobSlots::JOB_ID, &["sched_job_id"], I),
    Binding::opt(JobSlots::NUM_IBS, &["num_ibs"], I),
];

const SCHED_NEW: &[Binding] = &[
    Binding::req(slot::RING, &["name"], S),
    Binding::opt(slot::DEV, &["dev"], S),
    Binding::req(JobSlots::CONTEXT, &["fence_context"], I),
    Binding::req(JobSlots::SEQNO, &["fence_seqno"], I),
    Binding::opt(JobSlots::CLIENT_ID, &["client_id"], I),
];

const SCHED_LEGACY: &[Binding] = &[
    Binding::req(slot::RING, &["name"], S),
    Binding::req(JobSlots::JOB_ID, &["id"], I),
    Binding::opt(JobSlots::FENCE, &["fence"], I),
    Binding::opt(JobSlots::ENTITY, &["entity"], I),
];

const FENCE: &[Binding] = &[
    Binding::req(slot::DRIVER, &["driver"], S),
    Binding::req(slot::RING, &["timeline"], S),
    Binding::req(FenceSlots::CONTEXT, &["context"], I),
    Binding::req(FenceSlots::SEQNO, &["seqno"], I),
];

const PASID: &[Binding] = &[Binding::req(PasidSlots::PASID, &["pasid"], I)];

/// `amdgpu_iv` → [`FaultSlots`]; 4.x names as fallbacks.
const IV: &[Binding] = &[
    Binding::req(FaultSlots::PASID, &["pasid", "pas_id"], I),
    Binding::req(FaultSlots::VMID, &["vmid", "vm_id"], I),
    Binding::req(FaultSlots::CLIENT_ID, &["client_id"], I),
    Binding::req(FaultSlots::SRC_ID, &["src_id"], I),
    Binding::req(FaultSlots::SRC_DATA0, &["src_data"], I),
    Binding::req(FaultSlots::SRC_DATA1, &["src_data"], I).at(1),
    Binding::opt(FaultSlots::VMID_SRC, &["vmid_src", "vm_id_src"], I),
    Binding::opt(FaultSlots::RING_ID, &["ring_id"], I),
];

const fn tp(variants: &'static [TpVariant]) -> Hook {
    Hook::Tracepoint { variants }
}

const fn v(sys: &'static str, event: &'static str, bindings: &'static [Binding]) -> TpVariant {
    TpVariant {
        sys,
        event,
        bindings,
    }
}

// ---- compute: 7.x user queues (docs/compute.md) ----

/// `amdgpu_userq_create_end` / `_destroy_end` (class `amdgpu_userq_queue_result`).
const USERQ_QUEUE: &[Binding] = &[
    Binding::req(UserqSlots::DOORBELL, &["doorbell_index"], I),
    Binding::req(UserqSlots::QUEUE_TYPE, &["queue_type"], I),
    Binding::opt(UserqSlots::STATE, &["state"], I),
    Binding::opt(UserqSlots::XCP_ID, &["xcp_id"], I),
    Binding::opt(UserqSlots::RESULT, &["result"], I),
];

const USERQ_FENCE: &[Binding] = &[
    Binding::req(UserqSlots::CONTEXT, &["fence_context"], I),
    Binding::req(UserqSlots::SEQNO, &["fence_seqno"], I),
    Binding::req(UserqSlots::DOORBELL, &["doorbell_index"], I),
    Binding::opt(UserqSlots::CLIENT_ID, &["client_id"], I),
    Binding::opt(UserqSlots::QUEUE_TYPE, &["queue_type"], I),
    Binding::opt(slot::DEV, &["dev"], S),
];

const USERQ_STATE: &[Binding] = &[
    Binding::req(UserqSlots::DOORBELL, &["doorbell_index"], I),
    Binding::req(UserqSlots::STATE, &["to"], I),
    Binding::opt(UserqSlots::CLIENT_ID, &["client_id"], I),
    Binding::opt(UserqSlots::QUEUE_TYPE, &["queue_type"], I),
];

const fn kfd_probe(
    name: &'static str,
    program: &'static str,
    hook: Hook,
    gives: &'static str,
) -> ProbeSpec {
    ProbeSpec {
        name,
        program,
        layout_global: None,
        hook,
        gives,
        // Their BTF is KfdLayout (kfd::layout), judged by probes::kfd_btf_note.
        needs_btf: false,
    }
}

/// KFD queue probes (entry stashes the ioctl args, return reads the result) and the 7.x
/// user-queue tracepoints.
const COMPUTE: [ProbeSpec; 11] = [
    kfd_probe(
        "kprobe:kfd_ioctl_create_queue",
        "hw_kfd_create_queue",
        Hook::Kprobe {
            symbol: "kfd_ioctl_create_queue",
        },
        "KFD queue create (entry: args and the process's pasid)",
    ),
    kfd_probe(
        "kretprobe:kfd_ioctl_create_queue",
        "hw_kfd_create_queue_ret",
        Hook::Kretprobe {
            symbol: "kfd_ioctl_create_queue",
        },
        "KFD queue created: owner, gpu_id, type, queue id, doorbell offset (BTF)",
    ),
    kfd_probe(
        "kprobe:kfd_ioctl_destroy_queue",
        "hw_kfd_destroy_queue",
        Hook::Kprobe {
            symbol: "kfd_ioctl_destroy_queue",
        },
        "KFD queue destroy (entry)",
    ),
    kfd_probe(
        "kretprobe:kfd_ioctl_destroy_queue",
        "hw_kfd_destroy_queue_ret",
        Hook::Kretprobe {
            symbol: "kfd_ioctl_destroy_queue",
        },
        "KFD queue destroyed: queue id, result (BTF)",
    ),
    kfd_probe(
        "kprobe:create_queue_cpsch",
        "hw_kfd_queue_doorbell",
        Hook::Kprobe {
            symbol: "create_queue_cpsch",
        },
        "KFD queue mapped by the HWS/MES (entry: struct queue)",
    ),
    kfd_probe(
        "kretprobe:create_queue_cpsch",
        "hw_kfd_queue_doorbell_ret",
        Hook::Kretprobe {
            symbol: "create_queue_cpsch",
        },
        "the queue's doorbell as MES/HWS lines print it (BTF struct queue)",
    ),
    ProbeSpec {
        name: "amdgpu_userq_create",
        program: "hw_userq_create",
        layout_global: Some("USERQ_CREATE_LAYOUT"),
        hook: tp(&[v("amdgpu", "amdgpu_userq_create_end", USERQ_QUEUE)]),
        gives: "user queue created (7.x): doorbell, IP type, creator",
        needs_btf: false,
    },
    ProbeSpec {
        name: "amdgpu_userq_destroy",
        program: "hw_userq_destroy",
        layout_global: Some("USERQ_DESTROY_LAYOUT"),
        hook: tp(&[v("amdgpu", "amdgpu_userq_destroy_end", USERQ_QUEUE)]),
        gives: "user queue destroyed (7.x)",
        needs_btf: false,
    },
    ProbeSpec {
        name: "amdgpu_userq_emit_fence",
        program: "hw_userq_fence",
        layout_global: Some("USERQ_FENCE_LAYOUT"),
        hook: tp(&[v("amdgpu", "amdgpu_userq_emit_fence", USERQ_FENCE)]),
        gives: "a job on a user queue (7.x): fence key, doorbell, client id, submitter",
        needs_btf: false,
    },
    ProbeSpec {
        name: "amdgpu_userq_state_changed",
        program: "hw_userq_state",
        layout_global: Some("USERQ_STATE_LAYOUT"),
        hook: tp(&[v("amdgpu", "amdgpu_userq_state_changed", USERQ_STATE)]),
        gives: "user queue state (7.x; 3 = hung)",
        needs_btf: false,
    },
    ProbeSpec {
        name: "userq_fence_signaled",
        program: "hw_userq_fence_signaled",
        layout_global: Some("USERQ_DONE_LAYOUT"),
        hook: tp(&[v("dma_fence", "dma_fence_signaled", FENCE)]),
        gives: "a user-queue job done (filtered in kernel to driver amdgpu_userq_fence)",
        needs_btf: false,
    },
];

/// Names of the probes that exist only on some kernels (docs/compute.md per-kernel table):
/// `check` reports them missing elsewhere, which is not a failure.
pub const KERNEL_OPTIONAL: &[&str] = &[
    "amdgpu_userq_create",
    "amdgpu_userq_destroy",
    "amdgpu_userq_emit_fence",
    "amdgpu_userq_state_changed",
    "userq_fence_signaled",
];

/// Per-job probes that `run` leaves off while the flight recorder runs in the kernel, unless
/// `--trace-all` asks for them (`check` attaches them all). The recorder needs only the
/// submitter (`amdgpu_cs_ioctl`), the run (`amdgpu_sched_run_job`) and the finish
/// (`sched_job_done`) of each job; these add the scheduler's queue and run views, the hardware
/// fences and the VMID grab, at one program run each per job (three for each fence event).
/// Without the recorder they stay on: the correlator joins per-job events through them.
pub const DETAIL: &[&str] = &[
    "sched_job_queue",
    "sched_job_run",
    "dma_fence_init",
    "dma_fence_signaled",
    "amdgpu_vm_grab_id",
];

pub const CATALOGUE: &[ProbeSpec] = &[
    ProbeSpec {
        name: "amdgpu_cs_ioctl",
        program: "hw_cs_ioctl",
        layout_global: Some("CS_IOCTL_LAYOUT"),
        hook: tp(&[v("amdgpu", "amdgpu_cs_ioctl", JOB_FIELDS)]),
        gives: "submitter (tgid/tid/comm), ring, fence key, job id, num_ibs",
        needs_btf: false,
    },
    ProbeSpec {
        name: "amdgpu_sched_run_job",
        program: "hw_sched_run_job",
        layout_global: Some("SCHED_RUN_JOB_LAYOUT"),
        hook: tp(&[v("amdgpu", "amdgpu_sched_run_job", JOB_FIELDS)]),
        gives: "job handed to the ring",
        needs_btf: false,
    },
    ProbeSpec {
        name: "sched_job_queue",
        program: "hw_sched_queue",
        layout_global: Some("SCHED_QUEUE_LAYOUT"),
        hook: tp(&[
            v("gpu_scheduler", "drm_sched_job_queue", SCHED_NEW),
            v("gpu_scheduler", "drm_sched_job", SCHED_LEGACY),
        ]),
        gives: "job queued by the scheduler (submitter context; client_id on >= 6.17)",
        needs_btf: false,
    },
    ProbeSpec {
        name: "sched_job_run",
        program: "hw_sched_run",
        layout_global: Some("SCHED_RUN_LAYOUT"),
        hook: tp(&[
            v("gpu_scheduler", "drm_sched_job_run", SCHED_NEW),
            v("gpu_scheduler", "drm_run_job", SCHED_LEGACY),
        ]),
        gives: "job started on the hardware ring",
        needs_btf: false,
    },
    ProbeSpec {
        name: "sched_job_done",
        program: "hw_sched_done",
        layout_global: Some("SCHED_DONE_LAYOUT"),
        hook: tp(&[
            v(
                "gpu_scheduler",
                "drm_sched_job_done",
                &[
                    Binding::req(JobSlots::CONTEXT, &["fence_context"], I),
                    Binding::req(JobSlots::SEQNO, &["fence_seqno"], I),
                ],
            ),
            v(
                "gpu_scheduler",
                "drm_sched_process_job",
                &[Binding::req(JobSlots::FENCE, &["fence"], I)],
            ),
        ]),
        gives: "job finished (scheduler fence signaled)",
        needs_btf: false,
    },
    ProbeSpec {
        name: "dma_fence_init",
        program: "hw_fence_init",
        layout_global: Some("FENCE_INIT_LAYOUT"),
        hook: tp(&[v("dma_fence", "dma_fence_init", FENCE)]),
        gives: "amdgpu hardware fence emitted (filtered in kernel to driver amdgpu)",
        needs_btf: false,
    },
    ProbeSpec {
        name: "dma_fence_signaled",
        program: "hw_fence_signaled",
        layout_global: Some("FENCE_SIGNALED_LAYOUT"),
        hook: tp(&[v("dma_fence", "dma_fence_signaled", FENCE)]),
        gives: "amdgpu hardware fence signaled",
        needs_btf: false,
    },
    ProbeSpec {
        name: "amdgpu_vm_grab_id",
        program: "hw_vm_grab_id",
        layout_global: Some("VM_GRAB_ID_LAYOUT"),
        hook: tp(&[v(
            "amdgpu",
            "amdgpu_vm_grab_id",
            &[
                Binding::req(GrabSlots::PASID, &["pasid"], I),
                Binding::req(slot::RING, &["ring"], S),
                Binding::req(GrabSlots::VMID, &["vmid"], I),
                Binding::opt(GrabSlots::VM_HUB, &["vm_hub"], I),
            ],
        )]),
        gives: "pasid and vmid of the job being prepared on a ring",
        needs_btf: false,
    },
    ProbeSpec {
        name: "amdgpu_pasid_allocated",
        program: "hw_pasid_alloc",
        layout_global: Some("PASID_ALLOC_LAYOUT"),
        hook: tp(&[v("amdgpu", "amdgpu_pasid_allocated", PASID)]),
        gives: "pasid allocated in the opening process",
        needs_btf: false,
    },
    ProbeSpec {
        name: "amdgpu_pasid_freed",
        program: "hw_pasid_free",
        layout_global: Some("PASID_FREE_LAYOUT"),
        hook: tp(&[v("amdgpu", "amdgpu_pasid_freed", PASID)]),
        gives: "pasid freed",
        needs_btf: false,
    },
    ProbeSpec {
        name: "amdgpu_iv",
        program: "hw_iv",
        layout_global: Some("IV_LAYOUT"),
        hook: tp(&[v("amdgpu", "amdgpu_iv", IV)]),
        gives: "VM page faults (pasid, vmid, hub, address), filtered in kernel",
        needs_btf: false,
    },
    ProbeSpec {
        name: "sched_process_exit",
        program: "hw_process_exit",
        layout_global: None,
        hook: tp(&[v("sched", "sched_process_exit", &[])]),
        gives: "exit of processes seen submitting",
        needs_btf: false,
    },
    ProbeSpec {
        name: "kprobe:amdgpu_job_timedout",
        program: "hw_job_timedout",
        layout_global: None,
        hook: Hook::Kprobe {
            symbol: "amdgpu_job_timedout",
        },
        gives: "timed-out job: ring, fence key, id, pasid (BTF offsets)",
        needs_btf: true,
    },
    ProbeSpec {
        name: "kprobe:amdgpu_device_gpu_recover",
        program: "hw_gpu_recover",
        layout_global: None,
        hook: Hook::Kprobe {
            symbol: "amdgpu_device_gpu_recover",
        },
        gives: "GPU reset begins: guilty job, reset source",
        needs_btf: true,
    },
    ProbeSpec {
        name: "kretprobe:amdgpu_device_gpu_recover",
        program: "hw_gpu_recover_ret",
        layout_global: None,
        hook: Hook::Kretprobe {
            symbol: "amdgpu_device_gpu_recover",
        },
        gives: "GPU reset result",
        needs_btf: false,
    },
    ProbeSpec {
        name: "kretprobe:amdgpu_cs_ioctl",
        program: "hw_cs_ioctl_ret",
        layout_global: None,
        hook: Hook::Kretprobe {
            symbol: "amdgpu_cs_ioctl",
        },
        gives: "rejected submissions (e.g. -ECANCELED after a reset)",
        needs_btf: false,
    },
    COMPUTE[0],
    COMPUTE[1],
    COMPUTE[2],
    COMPUTE[3],
    COMPUTE[4],
    COMPUTE[5],
    COMPUTE[6],
    COMPUTE[7],
    COMPUTE[8],
    COMPUTE[9],
    COMPUTE[10],
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::formats::{build_layout, parse};

    #[test]
    fn names_and_programs_are_unique() {
        let mut n: Vec<_> = CATALOGUE.iter().map(|p| p.name).collect();
        let mut p: Vec<_> = CATALOGUE.iter().map(|p| p.program).collect();
        n.sort();
        n.dedup();
        p.sort();
        p.dedup();
        assert_eq!(n.len(), CATALOGUE.len());
        assert_eq!(p.len(), CATALOGUE.len());
    }

    /// Every Debian 6.1 tracepoint in the real dump binds with the catalogue's bindings.
    #[test]
    fn debian_61_formats_bind() {
        let dump = include_str!("../../testdata/debian-6.1.0-56-amd64.txt");
        let mut bound = 0;
        for chunk in dump.split("== ").skip(1) {
            let (id, body) = chunk.split_once('\n').unwrap();
            let (sys, event) = id.trim().split_once('/').unwrap();
            let fmt = parse(body).unwrap();
            for spec in CATALOGUE {
                if let Hook::Tracepoint { variants } = spec.hook {
                    for var in variants.iter().filter(|v| v.sys == sys && v.event == event) {
                        let l = build_layout(&fmt, var.bindings)
                            .unwrap_or_else(|e| panic!("{event}: {e}"));
                        assert_eq!(l.present, 1);
                        bound += 1;
                    }
                }
            }
        }
        // cs_ioctl, sched_run_job, iv, vm_grab_id, drm_run_job, drm_sched_job, process_job, fence_init
        assert_eq!(bound, 8);
    }
}

/// The "Adding a probe" checklist of docs/probes.md, held against the catalogue: every probe
/// stands in each place the checklist names that a file can show.
#[cfg(test)]
mod checklist {
    use super::{Hook, CATALOGUE};

    fn read(rel: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// The checklist itself names every place a probe touches.
    const PLACES: &[&str] = &[
        "agent-ebpf/src/main.rs",
        "layout_global",
        "agent-common/src/lib.rs",
        "agent/src/sources/probes/catalogue.rs",
        "agent/src/decode.rs",
        "core/src/model.rs",
        "core/src/correlate/",
        "docs/events.md",
        "tests/kmod/",
        "testdata/formats/",
        "tests/vm/matrix.toml",
    ];

    #[test]
    fn every_probe_stands_in_every_place_of_the_checklist() {
        let probes_md = read("docs/probes.md");
        let checklist = probes_md
            .split("## Adding a probe")
            .nth(1)
            .expect("docs/probes.md has an 'Adding a probe' section");
        for place in PLACES {
            assert!(
                checklist.contains(place),
                "the checklist does not name {place}"
            );
        }
        let ebpf = read("agent-ebpf/src/main.rs") + &read("agent-ebpf/src/kfd.rs");
        let sim = read("tests/kmod/amdgpu_sim_trace.h") + &read("tests/kmod/kfd_sim_userq_trace.h");
        let captures: String = ["5.10", "6.1", "6.12", "7.3"]
            .iter()
            .map(|s| read(&format!("testdata/formats/{s}.txt")))
            .collect();
        for p in CATALOGUE {
            assert!(
                ebpf.contains(&format!("pub fn {}(", p.program)),
                "{}: no eBPF program {} in agent-ebpf/src",
                p.name,
                p.program
            );
            if let Some(g) = p.layout_global {
                assert!(
                    ebpf.contains(&format!("static {g}:")),
                    "{}: no layout global {g} in agent-ebpf/src",
                    p.name
                );
            }
            let short = p.name.split(':').next_back().unwrap_or(p.name);
            assert!(
                probes_md.contains(short),
                "{}: no row in docs/probes.md",
                p.name
            );
            let Hook::Tracepoint { variants } = p.hook else {
                continue;
            };
            for v in variants.iter().filter(|v| v.sys != "sched") {
                assert!(
                    captures.contains(&format!("== {}/{}\n", v.sys, v.event)),
                    "{}: {}/{} is in no testdata/formats capture",
                    p.name,
                    v.sys,
                    v.event
                );
                if v.sys == "amdgpu" {
                    assert!(
                        sim.contains(&format!("({}\n", v.event))
                            || sim.contains(&format!(", {}", v.event))
                            || sim.contains(&format!("({},", v.event)),
                        "{}: the simulator has no amdgpu:{}",
                        p.name,
                        v.event
                    );
                }
            }
        }
    }
}
