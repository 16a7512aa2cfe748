//! Kernel BTF reader: struct member offsets for the kprobes' [`JobLayout`].
//!
//! A small parser rather than the `btf-rs` crate: we need only struct/union members, typedef
//! chains and split-BTF string/type numbering (~200 lines), and owning it keeps bad input an
//! error (never a panic) and keeps the dependency set small. Module BTF
//! (`/sys/kernel/btf/<module>`) is split BTF: its type ids continue after vmlinux's and its
//! string offsets continue after vmlinux's string section, so parsing the module on top of the
//! base is a plain append.
use std::path::Path;

use agent_common::{dev_path, DevLayout, FenceLayout, JobLayout};

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Clone, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Clone, Debug)]
struct Type {
    kind: u32,
    name_off: u32,
    /// `size` for INT/STRUCT/UNION/ENUM, referenced type id for PTR/TYPEDEF/CONST/...
    size_or_type: u32,
    members: Vec<Member>,
}

/// Parsed BTF (vmlinux, optionally with one module's split BTF appended).
#[derive(Clone, Debug, Default)]
pub struct Btf {
    /// Index = type id - 1 (id 0 is `void`).
    types: Vec<Type>,
    strings: Vec<u8>,
}

fn rd_u32(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| format!("BTF truncated at byte {at}"))
}

impl Btf {
    /// Parses a standalone BTF blob (vmlinux).
    pub fn parse(blob: &[u8]) -> Result<Btf, String> {
        let mut b = Btf::default();
        b.append(blob)?;
        Ok(b)
    }

    /// Parses split BTF on top of `self` (the base): appends its types and strings.
    pub fn with_split(mut self, blob: &[u8]) -> Result<Btf, String> {
        self.append(blob)?;
        Ok(self)
    }

    fn append(&mut self, blob: &[u8]) -> Result<(), String> {
        if blob.len() < 24 {
            return Err("BTF blob shorter than its header".into());
        }
        let magic = u16::from_le_bytes([blob[0], blob[1]]);
        if magic != MAGIC {
            return Err(format!("bad BTF magic {magic:#x} (big-endian or not BTF)"));
        }
        let hdr_len = rd_u32(blob, 4)? as usize;
        let type_off = rd_u32(blob, 8)? as usize;
        let type_len = rd_u32(blob, 12)? as usize;
        let str_off = rd_u32(blob, 16)? as usize;
        let str_len = rd_u32(blob, 20)? as usize;
        let tstart = hdr_len.checked_add(type_off).ok_or("BTF header overflow")?;
        let tend = tstart.checked_add(type_len).ok_or("BTF header overflow")?;
        let sstart = hdr_len.checked_add(str_off).ok_or("BTF header overflow")?;
        let send = sstart.checked_add(str_len).ok_or("BTF header overflow")?;
        let tsec = blob
            .get(tstart..tend)
            .ok_or("BTF type section out of bounds")?;
        let ssec = blob
            .get(sstart..send)
            .ok_or("BTF string section out of bounds")?;
        let mut at = 0;
        while at < tsec.len() {
            let name_off = rd_u32(tsec, at)?;
            let info = rd_u32(tsec, at + 4)?;
            let size_or_type = rd_u32(tsec, at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let off = rd_u32(tsec, m + 8)?;
                        // kind_flag: low 24 bits are the bit offset, high 8 the bitfield size.
                        let bit_offset = if kind_flag { off & 0x00ff_ffff } else { off };
                        members.push(Member {
                            name_off: rd_u32(tsec, m)?,
                            type_id: rd_u32(tsec, m + 4)?,
                            bit_offset,
                        });
                    }
                    vlen * 12
                }
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                k if k <= KIND_TYPE_TAG => 0,
                k => return Err(format!("unknown BTF kind {k}")),
            };
            at += extra;
            if at > tsec.len() {
                return Err("BTF type section truncated".into());
            }
            self.types.push(Type {
                kind,
                name_off,
                size_or_type,
                members,
            });
        }
        self.strings.extend_from_slice(ssec);
        Ok(())
    }

    fn name(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    fn ty(&self, id: u32) -> Option<&Type> {
        id.checked_sub(1).and_then(|i| self.types.get(i as usize))
    }

    /// Follows typedef/const/volatile/restrict/type_tag to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.ty(id) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.size_or_type
                }
                _ => break,
            }
        }
        id
    }

    /// The struct (with members, not a forward declaration) named `name`.
    fn find_struct(&self, name: &str) -> Option<u32> {
        self.types
            .iter()
            .enumerate()
            .rev() // module types (appended last) win over same-named base types
            .find(|(_, t)| {
                t.kind == KIND_STRUCT && !t.members.is_empty() && self.name(t.name_off) == name
            })
            .map(|(i, _)| i as u32 + 1)
    }

    /// (byte offset, member type id) of `member` in struct/union `id`, looking into anonymous
    /// struct/union members.
    fn find_member(&self, id: u32, member: &str, depth: u32) -> Option<(u32, u32)> {
        let t = self.ty(self.resolve(id))?;
        if !matches!(t.kind, KIND_STRUCT | KIND_UNION) || depth > 8 {
            return None;
        }
        for m in &t.members {
            let n = self.name(m.name_off);
            if n == member {
                return Some((m.bit_offset / 8, m.type_id));
            }
            if n.is_empty() {
                if let Some((o, ty)) = self.find_member(m.type_id, member, depth + 1) {
                    return Some((m.bit_offset / 8 + o, ty));
                }
            }
        }
        None
    }

    /// Byte offset of `member` in `struct name`.
    pub fn member_offset(&self, strct: &str, member: &str) -> Option<u32> {
        self.find_member(self.find_struct(strct)?, member, 0)
            .map(|(o, _)| o)
    }

    /// Whether `strct.member` is a pointer (true) or an array/other inline value (false).
    pub fn member_is_pointer(&self, strct: &str, member: &str) -> Option<bool> {
        let (_, ty) = self.find_member(self.find_struct(strct)?, member, 0)?;
        Some(self.ty(self.resolve(ty))?.kind == KIND_PTR)
    }

    pub fn type_count(&self) -> usize {
        self.types.len()
    }
}

/// Loads vmlinux BTF plus the split BTF of `module` from `/sys/kernel/btf`.
pub fn load_module(btf_dir: &Path, module: &str) -> Result<Btf, String> {
    let modb = std::fs::read(btf_dir.join(module))
        .map_err(|e| format!("no BTF for module {module}: {e}"))?;
    let base =
        std::fs::read(btf_dir.join("vmlinux")).map_err(|e| format!("no vmlinux BTF: {e}"))?;
    Btf::parse(&base)?
        .with_split(&modb)
        .map_err(|e| format!("module {module} BTF: {e}"))
}

/// Which module owns `symbol` according to a `/proc/kallsyms` text: `Some("")` for vmlinux.
pub fn symbol_module(kallsyms: &str, symbol: &str) -> Option<String> {
    kallsyms.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let (_addr, _ty, name) = (it.next()?, it.next()?, it.next()?);
        if name != symbol {
            return None;
        }
        Some(
            it.next()
                .map(|m| m.trim_matches(|c| c == '[' || c == ']').to_string())
                .unwrap_or_default(),
        )
    })
}

/// Fills the kprobes' [`JobLayout`] from BTF; `Err` names the first missing struct member.
pub fn job_layout(btf: &Btf) -> Result<JobLayout, String> {
    let need = |s: &str, m: &str| {
        btf.member_offset(s, m)
            .ok_or_else(|| format!("BTF has no `struct {s}.{m}`"))
    };
    Ok(JobLayout {
        job_base: need("amdgpu_job", "base")?,
        job_pasid: need("amdgpu_job", "pasid")?,
        sjob_sched: need("drm_sched_job", "sched")?,
        sjob_s_fence: need("drm_sched_job", "s_fence")?,
        sjob_id: btf.member_offset("drm_sched_job", "id").unwrap_or(u32::MAX),
        sched_name: need("drm_gpu_scheduler", "name")?,
        sched_name_is_ptr: btf
            .member_is_pointer("drm_gpu_scheduler", "name")
            .unwrap_or(true) as u32,
        sfence_finished: need("drm_sched_fence", "finished")?,
        fence_context: need("dma_fence", "context")?,
        fence_seqno: need("dma_fence", "seqno")?,
        reset_src: btf
            .member_offset("amdgpu_reset_context", "src")
            .unwrap_or(u32::MAX),
        valid: 1,
    })
}

/// `struct dma_fence` offsets, for the recorder's finish event on kernels whose
/// `drm_sched_process_job` gives only the fence's address.
pub fn fence_layout(btf: &Btf) -> Result<FenceLayout, String> {
    let need = |m: &str| {
        btf.member_offset("dma_fence", m)
            .ok_or_else(|| format!("BTF has no `struct dma_fence.{m}`"))
    };
    Ok(FenceLayout {
        context: need("context")?,
        seqno: need("seqno")?,
        valid: 1,
        _pad: 0,
    })
}

/// Fills [`DevLayout`] from BTF: every path whose members all exist gets its `valid` bit; the
/// note says which paths are usable, or which member is missing.
pub fn dev_layout(btf: &Btf) -> (DevLayout, String) {
    let name = btf
        .member_offset("device", "kobj")
        .zip(btf.member_offset("kobject", "name"))
        .map(|(k, n)| k + n);
    let Some(dev_name) = name else {
        return (
            DevLayout::default(),
            "BTF has no `struct device.kobj.name`".into(),
        );
    };
    let mut l = DevLayout {
        dev_name,
        ..Default::default()
    };
    let mut paths = Vec::new();
    if let Some(o) = btf.member_offset("drm_gpu_scheduler", "dev") {
        l.sched_dev = o;
        l.valid |= dev_path::SCHED;
        paths.push("sched->dev");
    }
    if let (Some(rq), Some(sched)) = (
        btf.member_offset("drm_sched_entity", "rq"),
        btf.member_offset("drm_sched_rq", "sched"),
    ) {
        l.entity_rq = rq;
        l.rq_sched = sched;
        l.valid |= dev_path::ENTITY;
        if l.valid & dev_path::SCHED != 0 {
            paths.push("entity->rq->sched->dev");
        }
    }
    if let Some(o) = btf.member_offset("amdgpu_device", "dev") {
        l.adev_dev = o;
        l.valid |= dev_path::ADEV;
        paths.push("adev->dev");
    }
    let note = if paths.is_empty() {
        "BTF has no scheduler/amdgpu_device `dev` member".to_string()
    } else {
        paths.join(", ")
    };
    (l, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal BTF blob builder for synthetic tests.
    struct Blob {
        types: Vec<u8>,
        strings: Vec<u8>,
    }
    impl Blob {
        fn new(string_base: usize) -> Self {
            // Split BTF string offsets continue after the base's; a base starts with "\0".
            Blob {
                types: vec![],
                strings: if string_base == 0 { vec![0] } else { vec![] },
            }
        }
        fn s(&mut self, base: usize, name: &str) -> u32 {
            let off = (base + self.strings.len()) as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            off
        }
        fn ty(&mut self, name: u32, kind: u32, vlen: u32, kflag: bool, sz: u32) {
            let info = (kind << 24) | vlen | if kflag { 1 << 31 } else { 0 };
            for v in [name, info, sz] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
        }
        fn raw(&mut self, v: &[u32]) {
            for x in v {
                self.types.extend_from_slice(&x.to_le_bytes());
            }
        }
        fn build(&self) -> Vec<u8> {
            let mut out = vec![];
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for v in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    #[test]
    fn synthetic_split_btf_with_typedef_anon_union_and_bitfield() {
        // base: [1] int "int" size 4; [2] ptr -> 1
        let mut base = Blob::new(0);
        let int = base.s(0, "int");
        base.ty(int, KIND_INT, 0, false, 4);
        base.raw(&[32]);
        base.ty(0, KIND_PTR, 0, false, 1);
        let base_bytes = base.build();
        let bstr = base.strings.len();
        // split: [3] struct job { int a:3 (bitfield, kflag); union { int pasid; } @ 64; char *name @128 }
        let mut m = Blob::new(bstr);
        let job = m.s(bstr, "job");
        let a = m.s(bstr, "a");
        let pasid = m.s(bstr, "pasid");
        let name = m.s(bstr, "name");
        let tdef = m.s(bstr, "name_t");
        m.ty(job, KIND_STRUCT, 3, true, 24);
        m.raw(&[a, 1, 3 << 24]);
        m.raw(&[0, 4, 64]); // anonymous union [4]
        m.raw(&[name, 5, 128]);
        m.ty(0, KIND_UNION, 1, false, 4); // [4]
        m.raw(&[pasid, 1, 0]);
        m.ty(tdef, KIND_TYPEDEF, 0, false, 2); // [5] typedef -> ptr
        let b = Btf::parse(&base_bytes)
            .unwrap()
            .with_split(&m.build())
            .unwrap();
        assert_eq!(b.type_count(), 5);
        assert_eq!(b.member_offset("job", "a"), Some(0));
        assert_eq!(b.member_offset("job", "pasid"), Some(8));
        assert_eq!(b.member_offset("job", "name"), Some(16));
        assert_eq!(b.member_is_pointer("job", "name"), Some(true));
        assert_eq!(b.member_offset("job", "nope"), None);
        assert!(job_layout(&b).unwrap_err().contains("amdgpu_job"));
    }

    #[test]
    fn bad_blobs_are_errors() {
        assert!(Btf::parse(&[]).is_err());
        assert!(Btf::parse(&[0u8; 40]).is_err());
        let mut b = Blob::new(0);
        b.ty(0, KIND_STRUCT, 100, false, 8); // claims 100 members, has none
        assert!(Btf::parse(&b.build()).is_err());
    }

    #[test]
    fn host_vmlinux_offsets_are_plausible() {
        let Ok(blob) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            eprintln!("no /sys/kernel/btf/vmlinux on this host; skipping");
            return;
        };
        let b = Btf::parse(&blob).unwrap();
        assert!(b.type_count() > 10_000);
        assert_eq!(b.member_offset("list_head", "next"), Some(0));
        assert_eq!(b.member_offset("list_head", "prev"), Some(8));
        let pid = b.member_offset("task_struct", "pid").unwrap();
        let tgid = b.member_offset("task_struct", "tgid").unwrap();
        let comm = b.member_offset("task_struct", "comm").unwrap();
        assert_eq!(tgid, pid + 4);
        assert!(
            pid > 100 && comm > pid && comm < 16384,
            "pid {pid} comm {comm}"
        );
        assert_eq!(b.member_is_pointer("task_struct", "comm"), Some(false));
        // dma_fence lives in vmlinux: context and seqno are u64 after the lock/ops pointers.
        let ctx = b.member_offset("dma_fence", "context").unwrap();
        assert_eq!(b.member_offset("dma_fence", "seqno"), Some(ctx + 8));
    }

    #[test]
    fn kallsyms_owner_module() {
        let k = "ffffffffc0a1b2c0 t amdgpu_job_timedout\t[amdgpu]\nffffffff81000000 T _stext\n\
ffffffffc0000000 t amdgpu_job_timedout_x\t[sim]\n";
        assert_eq!(
            symbol_module(k, "amdgpu_job_timedout").as_deref(),
            Some("amdgpu")
        );
        assert_eq!(symbol_module(k, "_stext").as_deref(), Some(""));
        assert_eq!(symbol_module(k, "missing"), None);
    }
}
