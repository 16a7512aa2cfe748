//! The KFD queue kprobes' offsets ([`KfdLayout`]) from the module BTF of the module that owns
//! `kfd_ioctl_create_queue` (amdgpu; no module name is assumed). The uapi args structs are
//! stable across kernels; `struct queue` and `kfd_process.pasid` are not (docs/compute.md has
//! the offsets per Debian kernel), so each part degrades on its own.
use std::path::Path;

use agent_common::KfdLayout;

use crate::sources::btf::{self, Btf};

/// Offsets from `b`; `Err` when even the uapi args structs are missing.
pub fn from_btf(b: &Btf) -> Result<KfdLayout, String> {
    let m = |s: &str, f: &str| b.member_offset(s, f).unwrap_or(u32::MAX);
    let mut l = KfdLayout {
        create_gpu_id: m("kfd_ioctl_create_queue_args", "gpu_id"),
        create_queue_type: m("kfd_ioctl_create_queue_args", "queue_type"),
        create_queue_id: m("kfd_ioctl_create_queue_args", "queue_id"),
        create_doorbell_offset: m("kfd_ioctl_create_queue_args", "doorbell_offset"),
        destroy_queue_id: m("kfd_ioctl_destroy_queue_args", "queue_id"),
        process_pasid: m("kfd_process", "pasid"),
        ..KfdLayout::NONE
    };
    let ioctl = [
        l.create_gpu_id,
        l.create_queue_type,
        l.create_queue_id,
        l.create_doorbell_offset,
        l.destroy_queue_id,
    ];
    if ioctl.contains(&u32::MAX) {
        return Err(
            "BTF has no `struct kfd_ioctl_create_queue_args` / `kfd_ioctl_destroy_queue_args`"
                .into(),
        );
    }
    l.valid_ioctl = 1;
    if let (Some(p), Some(q), Some(d)) = (
        b.member_offset("queue", "properties"),
        b.member_offset("queue_properties", "queue_id"),
        b.member_offset("queue_properties", "doorbell_off"),
    ) {
        l.q_queue_id = p + q;
        l.q_doorbell_off = p + d;
        l.q_type = b
            .member_offset("queue_properties", "type")
            .map_or(u32::MAX, |t| p + t);
        l.valid_queue = 1;
    }
    Ok(l)
}

/// The layout on this host and a note for `check` (which BTF, or why none).
pub fn for_host(kallsyms: &str, btf_dir: &Path) -> (KfdLayout, String) {
    let module = match btf::symbol_module(kallsyms, "kfd_ioctl_create_queue") {
        None => {
            return (
                KfdLayout::NONE,
                "kfd_ioctl_create_queue not in kallsyms".into(),
            )
        }
        Some(m) => m,
    };
    let loaded = if module.is_empty() {
        std::fs::read(btf_dir.join("vmlinux"))
            .map_err(|e| format!("no vmlinux BTF: {e}"))
            .and_then(|b| Btf::parse(&b))
    } else {
        btf::load_module(btf_dir, &module)
    };
    match loaded.and_then(|b| from_btf(&b)) {
        Ok(l) => {
            let mut note = format!(
                "KFD offsets from the BTF of {}",
                if module.is_empty() {
                    "vmlinux"
                } else {
                    &module
                }
            );
            if l.valid_queue == 0 {
                note.push_str("; no `struct queue` in it: no doorbells");
            }
            (l, note)
        }
        Err(e) => (KfdLayout::NONE, e),
    }
}
