//! Line recogniser: one kernel message (timestamp already removed) → what it says.
//! Hand-written `str` matching: no regex, no allocation for unrelated lines, never panics.
use crate::model::{FaultInfo, IllegalKind, KmsgKind, Task};

/// A recognised amdgpu line: either a record of its own or a continuation of the previous one.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    Record(KmsgKind),
    Cont(Cont),
}

/// Continuation lines folded into a preceding page fault / ring timeout.
#[derive(Clone, Debug, PartialEq)]
pub enum Cont {
    /// " for process …", " in process …", " Process …", "Process information: process …".
    Task(Task),
    /// "  in page starting at address 0x… from client N" / "from IH client 0x.. (name)".
    Address {
        address: Option<u64>,
        client: Option<String>,
    },
    /// `GCVM_L2_PROTECTION_FAULT_STATUS:0x…`.
    Status(Option<u32>),
    /// "Faulty UTCL2 client ID: …".
    Client(String),
    /// MORE_FAULTS / WALKER_ERROR / PERMISSION_FAULTS / MAPPING_ERROR / RW / … : value.
    StatusField(String, String),
    /// gmc_v6/v7/v8 `VM fault (0x0c, vmid 1[, pasid 32784]) at page 0, read from 'TC4'
    /// (0x54433400) (72)`: the decoded protection fault (`protections` is the raw bit set).
    VmFault {
        protections: Option<u32>,
        vmid: Option<u32>,
        pasid: Option<u32>,
        address: Option<u64>,
        write: Option<bool>,
        client: Option<String>,
    },
}

/// The device prefix of a line: PCI address when printed (`None` for `DRM_ERROR` lines).
#[derive(Clone, Debug, PartialEq)]
pub struct Classified<'a> {
    pub pci: Option<&'a str>,
    pub line: Line,
}

/// Split off the amdgpu prefix. Returns (pci, body) or None when the line is not from amdgpu.
/// Forms: `dev_*` (`amdgpu 0000:03:00.0: [amdgpu: ]…`, a PCI-shaped address only), `DRM_ERROR`
/// (`[drm:func [amdgpu]] …`), `pr_err` (`amdgpu: …`, no device: KFD and powerplay lines), and
/// the bare `[drm] ` coredump notice.
pub fn strip_prefix(msg: &str) -> Option<(Option<&str>, &str)> {
    if let Some(body) = msg.strip_prefix("amdgpu: ") {
        return Some((None, body));
    }
    if let Some(rest) = msg.strip_prefix("amdgpu ") {
        let (pci, body) = rest.split_once(": ")?;
        if !is_pci_address(pci) {
            return None;
        }
        let body = body.strip_prefix("amdgpu: ").unwrap_or(body);
        let body = body.strip_prefix("[drm] ").unwrap_or(body);
        // 6.12's drm_err(dev, …) prints the device and the function tag together.
        let body = drm_tag(body).unwrap_or(body);
        let body = body.strip_prefix("*ERROR* ").unwrap_or(body);
        return Some((Some(pci), body));
    }
    if let Some(body) = drm_tag(msg) {
        let body = body.strip_prefix("*ERROR* ").unwrap_or(body);
        return Some((None, body));
    }
    if let Some(body) = msg.strip_prefix("[drm] ") {
        // Coredump notices are printed with a bare "[drm] " prefix by some kernels.
        if body.contains("AMDGPU device coredump") || body.contains("/devcoredump/") {
            return Some((None, body));
        }
    }
    None
}

/// The body after an amdgpu `DRM_ERROR` tag: `[drm:func [amdgpu]] ` (amdgpu as a module), or
/// `[drm:func] ` (amdgpu built into the kernel image, and older kernels) when `func` is one of
/// amdgpu's ([`amdgpu_function`]). None for other modules.
fn drm_tag(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("[drm:")?;
    if let Some(end) = rest.find("]] ") {
        if rest[..end].ends_with(" [amdgpu") {
            return Some(&rest[end + 3..]);
        }
    }
    let end = rest.find("] ")?;
    amdgpu_function(&rest[..end]).then(|| &rest[end + 2..])
}

/// Prefixes of the function names amdgpu's `DRM_ERROR` lines print (the driver's own files:
/// amdgpu_*.c, the IP blocks gfx_v*, gmc_v*, sdma_v*, mes_v*, …, display and power code).
/// Another driver's function (`intel_…`, `drm_…`) never matches, so its lines stay unread.
const AMDGPU_FUNCTIONS: &[&str] = &[
    "amdgpu_",
    "gfx_v",
    "gmc_v",
    "sdma_v",
    "mes_v",
    "vcn_v",
    "jpeg_v",
    "uvd_v",
    "vce_v",
    "si_",
    "cik_",
    "vi_",
    "soc15_",
    "soc21_",
    "soc24_",
    "nv_",
    "psp_",
    "smu_",
    "kfd_",
    "dce_v",
    "dm_",
    "gfxhub_",
    "mmhub_",
    "vega",
    "navi",
    "sienna_",
    "ih_v",
    "cz_ih_",
    "tonga_ih_",
    "iceland_ih_",
    "dcn",
    "dc_",
];

fn amdgpu_function(func: &str) -> bool {
    !func.contains(' ') && AMDGPU_FUNCTIONS.iter().any(|p| func.starts_with(p))
}

/// `DDDD:BB:DD.F` as `dev_name()` prints a PCI device (the domain has 4 to 8 hex digits: VMD
/// domains are `10000`): only such a prefix may teach the most-recent-device rule.
pub fn is_pci_address(s: &str) -> bool {
    let hex = |p: &str, min: usize, max: usize| {
        (min..=max).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_hexdigit())
    };
    let Some((rest, func)) = s.rsplit_once('.') else {
        return false;
    };
    let mut parts = rest.split(':');
    let (Some(dom), Some(bus), Some(dev), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    hex(dom, 4, 8) && hex(bus, 2, 2) && hex(dev, 2, 2) && matches!(func.as_bytes(), [b'0'..=b'7'])
}

/// Longest free text kept from a line (`OtherError`); the whole line is in the record.
const MAX_TEXT: usize = 512;

pub(crate) fn bounded(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Recognise one message line.
pub fn classify(msg: &str) -> Option<Classified<'_>> {
    let msg = msg.trim_end_matches(['\n', '\r']);
    let (pci, body) = strip_prefix(msg)?;
    let line = classify_stripped(msg, body)?;
    Some(Classified { pci, line })
}

/// What a message says, given its body after [`strip_prefix`]; `msg` is the whole message
/// (an unrecognised `*ERROR*` line is still an [`KmsgKind::OtherError`]).
pub fn classify_stripped(msg: &str, body: &str) -> Option<Line> {
    match classify_body(body) {
        Some(l) => Some(l),
        None if msg.contains("*ERROR* ") => Some(Line::Record(KmsgKind::OtherError {
            text: bounded(body.trim(), MAX_TEXT),
        })),
        None => None,
    }
}

fn classify_body(body: &str) -> Option<Line> {
    let t = body.trim();
    // --- continuation lines (leading spaces are significant to the kernel but wrapped logs lose them)
    if let Some(r) = t.strip_prefix("Process information: process ") {
        return Some(Line::Cont(Cont::Task(parse_task(r)?)));
    }
    for p in ["for process ", "in process ", "Process "] {
        if let Some(r) = t.strip_prefix(p) {
            if body.starts_with(' ') || p == "Process " {
                return Some(Line::Cont(Cont::Task(parse_task(r)?)));
            }
        }
    }
    if let Some(r) = t.strip_prefix("in page starting at address ") {
        return Some(Line::Cont(address_cont(r)));
    }
    if let Some(i) = t.find("_L2_PROTECTION_FAULT_STATUS:") {
        let r = &t[i + "_L2_PROTECTION_FAULT_STATUS:".len()..];
        return Some(Line::Cont(Cont::Status(
            parse_hex_prefix(r).and_then(|v| u32::try_from(v).ok()),
        )));
    }
    if let Some(r) = t.strip_prefix("Faulty UTCL2 client ID: ") {
        return Some(Line::Cont(Cont::Client(r.trim().to_string())));
    }
    for k in [
        "MORE_FAULTS",
        "WALKER_ERROR",
        "PERMISSION_FAULTS",
        "MAPPING_ERROR",
        "RW",
        "CID",
    ] {
        if let Some(r) = t.strip_prefix(k).and_then(|r| r.strip_prefix(':')) {
            return Some(Line::Cont(Cont::StatusField(
                k.to_string(),
                r.trim().to_string(),
            )));
        }
    }
    if let Some(c) = old_fault_cont(t) {
        return Some(Line::Cont(c));
    }
    // --- records
    if let Some(kind) = page_fault(t).or_else(|| gpu_fault_detected(t)) {
        return Some(Line::Record(kind));
    }
    Some(Line::Record(record(t)?))
}

fn record(t: &str) -> Option<KmsgKind> {
    if let Some(r) = t.strip_prefix("ring ") {
        if let Some((ring, rest)) = r.split_once(" timeout") {
            if rest.starts_with(", but soft recovered") {
                return Some(KmsgKind::SoftRecovered {
                    ring: ring.to_string(),
                });
            }
            return Some(KmsgKind::RingTimeout {
                ring: ring.to_string(),
                signaled: num_after(rest, "signaled seq="),
                emitted: num_after(rest, "emitted seq="),
                task: None,
            });
        }
    }
    if let Some(r) = t.strip_prefix("Starting ") {
        if let Some(ring) = r.strip_suffix(" ring reset") {
            return Some(KmsgKind::RingReset {
                ring: ring.to_string(),
                ok: None,
            });
        }
    }
    if let Some(r) = t.strip_prefix("Ring ") {
        if let Some((ring, rest)) = r.split_once(" reset ") {
            let ok = if rest.starts_with("succeeded") {
                Some(true)
            } else if rest.starts_with("fail") {
                Some(false)
            } else {
                None
            };
            return Some(KmsgKind::RingReset {
                ring: ring.to_string(),
                ok,
            });
        }
    }
    if let Some(r) = t.strip_prefix("GPU reset begin!") {
        let source = r
            .split_once("Source:")
            .and_then(|(_, n)| n.trim().parse().ok());
        return Some(KmsgKind::ResetBegin { source });
    }
    if let Some(r) = t.strip_prefix("GPU reset(") {
        let (n, rest) = r.split_once(')')?;
        let counter = n.trim().parse().ok();
        if rest.starts_with(" succeeded") {
            return Some(KmsgKind::ResetResult {
                ok: true,
                counter,
                error: None,
            });
        }
        if rest.starts_with(" failed") {
            let error = rest
                .split_once("with error ")
                .and_then(|(_, e)| parse_int(e));
            return Some(KmsgKind::ResetResult {
                ok: false,
                counter,
                error,
            });
        }
    }
    if let Some(r) = t.strip_prefix("GPU Recovery Failed: ") {
        return Some(KmsgKind::ResetResult {
            ok: false,
            counter: None,
            error: parse_int(r),
        });
    }
    if let Some(r) = t.strip_prefix("GPU reset end with ret = ") {
        let e = parse_int(r);
        return Some(KmsgKind::ResetResult {
            ok: e == Some(0),
            counter: None,
            error: e,
        });
    }
    for step in [
        "MODE1 reset",
        "MODE2 reset",
        "GPU mode1 reset",
        "GPU smu mode1 reset",
        "GPU psp mode1 reset",
        "soft reset failed, will fallback to full reset!",
        "GPU reset succeeded, trying to resume",
    ] {
        if t == step {
            return Some(KmsgKind::ResetStep {
                what: step.to_string(),
            });
        }
    }
    if t.starts_with("VRAM is lost due to GPU reset") {
        return Some(KmsgKind::VramLost);
    }
    if let Some(msg) = mes_failure(t) {
        return Some(KmsgKind::MesFailure { msg });
    }
    for follow in [
        "MES might be in unrecoverable state",
        "failed to remove hardware queue from MES",
        "failed to unmap legacy queue",
        "failed to reset legacy queue",
        "reset via MES failed",
    ] {
        if t.starts_with(follow) {
            return Some(KmsgKind::MesFailure { msg: None });
        }
    }
    if let Some(r) = t.strip_prefix("Illegal ") {
        let what = if r.starts_with("opcode in command stream") {
            IllegalKind::Opcode
        } else if r.starts_with("register access in command stream") {
            IllegalKind::RegisterAccess
        } else if r.starts_with("instruction in command stream") {
            IllegalKind::Instruction
        } else {
            return None;
        };
        return Some(KmsgKind::IllegalCommand { what });
    }
    if let Some(r) = t.strip_prefix("Failed to initialize parser ") {
        return Some(KmsgKind::ParserInitFailed {
            errno: parse_int(r).unwrap_or(0),
        });
    }
    if let Some(how) = t.strip_prefix("device wedged, ") {
        return match how.trim_end() {
            "but recovered through reset" | "but no recovery needed" => {
                Some(KmsgKind::DeviceWedged {
                    needs_recovery: false,
                })
            }
            "needs recovery" => Some(KmsgKind::DeviceWedged {
                needs_recovery: true,
            }),
            _ => None,
        };
    }
    if t.contains("device coredump file has been created") {
        return Some(KmsgKind::Devcoredump { path: None });
    }
    if let Some(r) = t.strip_prefix("Check your ") {
        if r.contains("devcoredump") {
            return Some(KmsgKind::Devcoredump {
                path: r.split_whitespace().next().map(str::to_string),
            });
        }
    }
    None
}

/// `MES(\(\d+(, ?\d+)?\))? failed to respon(d|se)( to)? msg=` → the msg text.
fn mes_failure(t: &str) -> Option<Option<String>> {
    let r = t.strip_prefix("MES")?;
    let r = if let Some(p) = r.strip_prefix('(') {
        let (inner, rest) = p.split_once(')')?;
        if !inner
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
        {
            return None;
        }
        rest
    } else {
        r
    };
    let r = r.strip_prefix(" failed to respon")?;
    // The old DRM_ERROR spelling is "failed to response msg=3" (no "to" before msg=).
    let r = r.strip_prefix('d').or_else(|| r.strip_prefix("se"))?;
    let r = r.strip_prefix(" to").unwrap_or(r);
    let r = r.strip_prefix(" msg=")?;
    let msg = r.trim();
    Some(if msg.is_empty() {
        None
    } else {
        Some(msg.to_string())
    })
}

/// `[hub] (retry |no-retry |VMC )?page fault (src_id:… ring:… vmid:… pasid:…[, for process …])`.
/// 4.13–4.15 spell the keys `vm_id:` and `pas_id:`; 4.18 ends the process part with `\n)`, so
/// the `)` is on a line of its own.
fn page_fault(t: &str) -> Option<KmsgKind> {
    let r = t.strip_prefix('[')?;
    let (hub, rest) = r.split_once(']')?;
    let rest = rest.trim_start();
    let (retry, rest) = if let Some(x) = rest.strip_prefix("retry ") {
        (Some(true), x)
    } else if let Some(x) = rest.strip_prefix("no-retry ") {
        (Some(false), x)
    } else {
        (None, rest.strip_prefix("VMC ").unwrap_or(rest))
    };
    // A truncated header ("page fa") still counts as a fault if we got this far.
    if !("page fault".starts_with(rest) || rest.starts_with("page fault")) || rest.len() < 4 {
        return None;
    }
    let params = rest.split_once('(').map(|(_, p)| p).unwrap_or("");
    let (params, task) = match params.split_once(", for process ") {
        Some((p, who)) => (p, parse_task(who)),
        None => (params, None),
    };
    let key = |a: &str, b: &str| {
        num_after(params, a)
            .or_else(|| num_after(params, b))
            .and_then(|v| u32::try_from(v).ok())
    };
    let fault = FaultInfo {
        pasid: key("pasid:", "pas_id:").unwrap_or(0),
        vmid: key("vmid:", "vm_id:").unwrap_or(0),
        src_id: key("src_id:", "src_id:"),
        ring_id: key("ring:", "ring:"),
        retry,
        ..blank_fault(hub)
    };
    Some(KmsgKind::PageFault { fault, task })
}

fn blank_fault(hub: &str) -> FaultInfo {
    FaultInfo {
        hub: hub.to_string(),
        pasid: 0,
        vmid: 0,
        src_id: None,
        ring_id: None,
        address: None,
        retry: None,
        write: None,
        client: None,
        status: None,
        status_fields: Vec::new(),
    }
}

/// gmc_v6/v7/v8 (GCN 1–3, no hubs): `GPU fault detected: 146 0x0000480c[ for process X pid N
/// thread Y pid M]` (the process part 4.19–6.9; 6.10+ prints it on a ` for process` line).
/// Its vmid, pasid and address come with the continuation lines.
fn gpu_fault_detected(t: &str) -> Option<KmsgKind> {
    let r = t.strip_prefix("GPU fault detected: ")?;
    let (head, task) = match r.split_once(" for process ") {
        Some((h, who)) => (h, parse_task(who)),
        None => (r, None),
    };
    let src_id = head.split_whitespace().next().and_then(|n| n.parse().ok());
    Some(KmsgKind::PageFault {
        fault: FaultInfo {
            src_id,
            ..blank_fault("vm")
        },
        task,
    })
}

/// Address lines of every era: `in page starting at address 0x… from client N` (5.x+, `from
/// IH client 0x.. (name)`, `from N` before 5.3) → (address, client).
fn address_cont(r: &str) -> Cont {
    let address = parse_hex_prefix(r);
    let client = r.split_once(" from ").map(|(_, c)| {
        let c = c.trim();
        c.strip_prefix("IH client ")
            .or_else(|| c.strip_prefix("client "))
            .unwrap_or(c)
            .to_string()
    });
    Cont::Address { address, client }
}

/// Continuation lines of the pre-5.0 faults: gmc_v9 4.13–4.17 `  at page 0x… from 27`, 4.18
/// `  at address 0x… from 27`; gmc_v6–v8 `  VM_CONTEXT1_PROTECTION_FAULT_ADDR   0x…` (a page
/// number), `  VM_CONTEXT1_PROTECTION_FAULT_STATUS 0x…` and the decoded `VM fault (…)` line.
fn old_fault_cont(t: &str) -> Option<Cont> {
    if let Some(r) = t
        .strip_prefix("at page ")
        .or_else(|| t.strip_prefix("at address "))
    {
        return r.trim_start().starts_with("0x").then(|| address_cont(r));
    }
    if let Some(r) = t.strip_prefix("VM_CONTEXT1_PROTECTION_FAULT_ADDR ") {
        let address = parse_hex_prefix(r).and_then(|page| page.checked_mul(4096));
        return Some(Cont::Address {
            address,
            client: None,
        });
    }
    if let Some(r) = t.strip_prefix("VM_CONTEXT1_PROTECTION_FAULT_STATUS ") {
        return Some(Cont::Status(
            parse_hex_prefix(r).and_then(|v| u32::try_from(v).ok()),
        ));
    }
    vm_fault_decode(t)
}

/// `VM fault (0x%02x, vmid %d[, pasid %d]) at page %u, read|write from 'TC4' (0x…) (%d)`, or
/// (late gmc_v6) `… from %d`.
fn vm_fault_decode(t: &str) -> Option<Cont> {
    let r = t.strip_prefix("VM fault (")?;
    let (inside, rest) = r.split_once(')')?;
    let u32_of = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok());
    let protections = u32_of(parse_hex_prefix(inside));
    let vmid = u32_of(num_after(inside, "vmid "));
    let pasid = u32_of(num_after(inside, "pasid "));
    let address = num_after(rest, "at page ").and_then(|p| p.checked_mul(4096));
    let write = if rest.contains(", write from ") {
        Some(true)
    } else if rest.contains(", read from ") {
        Some(false)
    } else {
        None
    };
    let client = rest.split_once(" from ").map(|(_, c)| {
        let c = c.trim();
        match c.strip_prefix('\'').and_then(|q| q.split_once('\'')) {
            // 'TC4' (0x54433400) (72) → "TC4 (72)": the block name and the client id.
            Some((name, tail)) => match tail.trim().rsplit_once('(') {
                Some((_, id)) => format!("{name} ({}", id.trim()),
                None => name.to_string(),
            },
            None => c.to_string(),
        }
    });
    Some(Cont::VmFault {
        protections,
        vmid,
        pasid,
        address,
        write,
        client,
    })
}

/// "X pid N thread Y pid M" with optional trailing ")"; names may be empty or contain spaces.
/// A truncated line yields what could be read (at least the process pid), else None.
pub fn parse_task(s: &str) -> Option<Task> {
    let s = s.trim_end().trim_end_matches(')');
    if let Some((left, tid)) = s.rsplit_once(" pid ") {
        if let Some((a, thread)) = left.rsplit_once(" thread ") {
            if let Some((comm, pid)) = split_pid(a) {
                let pid: u32 = pid.trim().parse().ok()?;
                let tid: u32 = tid.trim().parse().unwrap_or(pid);
                let thread = thread.to_string();
                return Some(Task {
                    pid,
                    tid,
                    thread_comm: if thread == comm { None } else { Some(thread) },
                    comm: comm.to_string(),
                });
            }
        }
    }
    // Truncated: "X pid N[ thread …]".
    let (comm, rest) = split_pid(s)?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let pid: u32 = digits.parse().ok()?;
    Some(Task {
        pid,
        tid: 0,
        comm: comm.to_string(),
        thread_comm: None,
    })
}

/// Split "comm pid N…" at the first " pid " (or a leading "pid " when comm is empty).
fn split_pid(a: &str) -> Option<(&str, &str)> {
    if let Some(r) = a.strip_prefix(" pid ").or_else(|| a.strip_prefix("pid ")) {
        return Some(("", r));
    }
    a.split_once(" pid ")
}

fn num_after(s: &str, key: &str) -> Option<u64> {
    let i = s.find(key)?;
    let r = &s[i + key.len()..];
    let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
    r[..end].parse().ok()
}

fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    s[..end].parse().ok()
}

/// A hexadecimal number with or without `0x`, up to the first non-hex character.
pub(crate) fn parse_hex_prefix(s: &str) -> Option<u64> {
    let s = s.trim_start();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let end = s.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(s.len());
    u64::from_str_radix(&s[..end], 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(msg: &str) -> (Option<String>, KmsgKind) {
        let c = classify(msg).unwrap();
        match c.line {
            Line::Record(k) => (c.pci.map(str::to_string), k),
            other => panic!("not a record: {other:?}"),
        }
    }
    fn cont(msg: &str) -> Cont {
        match classify(msg).unwrap().line {
            Line::Cont(c) => c,
            other => panic!("not a continuation: {other:?}"),
        }
    }
    fn task(pid: u32, tid: u32, comm: &str, thread: Option<&str>) -> Task {
        Task {
            pid,
            tid,
            comm: comm.into(),
            thread_comm: thread.map(Into::into),
        }
    }

    #[test]
    fn fault_61_inline_with_empty_names_is_pid0() {
        let (pci, k) = rec("amdgpu 0000:2f:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:169 vmid:0 pasid:0, for process  pid 0 thread  pid 0)");
        assert_eq!(pci.as_deref(), Some("0000:2f:00.0"));
        let KmsgKind::PageFault { fault, task: t } = k else {
            panic!()
        };
        assert_eq!(
            (fault.hub.as_str(), fault.ring_id, fault.vmid, fault.pasid),
            ("gfxhub", Some(169), 0, 0)
        );
        assert_eq!(t, Some(task(0, 0, "", None)));
    }

    #[test]
    fn fault_gmc_v9_retry_inline() {
        let (_, k) = rec("amdgpu 0000:03:00.0: amdgpu: [mmhub0] no-retry page fault (src_id:0 ring:24 vmid:3 pasid:32770, for process physics pid 37602 thread physics:cs0 pid 37610)");
        let KmsgKind::PageFault { fault, task: t } = k else {
            panic!()
        };
        assert_eq!(
            (fault.hub.as_str(), fault.retry, fault.pasid, fault.vmid),
            ("mmhub0", Some(false), 32770, 3)
        );
        assert_eq!(t, Some(task(37602, 37610, "physics", Some("physics:cs0"))));
        let (_, k) =
            rec("amdgpu 0000:03:00.0: [gfxhub0] retry page fault (src_id:0 ring:0 vmid:1 pasid:9)");
        let KmsgKind::PageFault { fault, task: None } = k else {
            panic!()
        };
        assert_eq!(fault.retry, Some(true));
    }

    #[test]
    fn split_process_lines_all_eras() {
        let want = task(7587, 7590, "zed", Some("zed:gdrv0"));
        // gmc_v9 6.10–6.16 (stray ")"), gmc_v10, gmc_v11/12, 6.17+
        for l in [
            "amdgpu 0002:00:00.0: amdgpu:  for process zed pid 7587 thread zed:gdrv0 pid 7590)",
            "amdgpu 0002:00:00.0: amdgpu:  in process zed pid 7587 thread zed:gdrv0 pid 7590",
            "amdgpu 0002:00:00.0: amdgpu:  in process zed pid 7587 thread zed:gdrv0 pid 7590)",
            "amdgpu 0002:00:00.0: amdgpu:  Process zed pid 7587 thread zed:gdrv0 pid 7590",
        ] {
            assert_eq!(cont(l), Cont::Task(want.clone()), "{l}");
        }
    }

    #[test]
    fn address_and_status_lines() {
        assert_eq!(
            cont("amdgpu 0002:00:00.0: amdgpu:   in page starting at address 0x0000800100361000 from client 10"),
            Cont::Address { address: Some(0x0000_8001_0036_1000), client: Some("10".into()) }
        );
        assert_eq!(
            cont("amdgpu 0000:03:00.0: amdgpu:   in page starting at address 0x00007f0000001000 from IH client 0x1b (UTCL2)"),
            Cont::Address { address: Some(0x7f00_0000_1000), client: Some("0x1b (UTCL2)".into()) }
        );
        assert_eq!(
            cont("amdgpu 0000:2f:00.0: amdgpu: GCVM_L2_PROTECTION_FAULT_STATUS:0x00301031"),
            Cont::Status(Some(0x0030_1031))
        );
        assert_eq!(
            cont("amdgpu 0000:2f:00.0: amdgpu: \t Faulty UTCL2 client ID: CB/DB (0x0)"),
            Cont::Client("CB/DB (0x0)".into())
        );
        for k in [
            "MORE_FAULTS",
            "WALKER_ERROR",
            "PERMISSION_FAULTS",
            "MAPPING_ERROR",
            "RW",
        ] {
            assert_eq!(
                cont(&format!("amdgpu 0000:2f:00.0: amdgpu: \t {k}: 0x1")),
                Cont::StatusField(k.into(), "0x1".into())
            );
        }
    }

    #[test]
    fn ring_timeouts_and_process_information() {
        let (pci, k) = rec("amdgpu 0002:00:00.0: amdgpu: ring gfx_0.0.0 timeout, signaled seq=571734509, emitted seq=571734511");
        assert_eq!(pci.as_deref(), Some("0002:00:00.0"));
        assert_eq!(
            k,
            KmsgKind::RingTimeout {
                ring: "gfx_0.0.0".into(),
                signaled: Some(571734509),
                emitted: Some(571734511),
                task: None
            }
        );
        let (pci, k) = rec("[drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring gfx_0.0.0 timeout, signaled seq=516877, emitted seq=516879");
        assert_eq!(pci, None);
        assert!(matches!(
            k,
            KmsgKind::RingTimeout {
                signaled: Some(516877),
                emitted: Some(516879),
                ..
            }
        ));
        assert_eq!(
            cont("[drm:amdgpu_job_timedout [amdgpu]] *ERROR* Process information: process physics pid 37602 thread physics pid 37602"),
            Cont::Task(task(37602, 37602, "physics", None))
        );
        assert_eq!(
            cont("amdgpu 0000:03:00.0: amdgpu:  Process cemu pid 1127553 thread LatteThread pid 1127779"),
            Cont::Task(task(1127553, 1127779, "cemu", Some("LatteThread")))
        );
        assert_eq!(
            rec("amdgpu 0000:03:00.0: ring sdma0 timeout, but soft recovered").1,
            KmsgKind::SoftRecovered {
                ring: "sdma0".into()
            }
        );
    }

    #[test]
    fn ring_reset_lines() {
        assert_eq!(
            rec("amdgpu 0000:03:00.0: amdgpu: Starting gfx_0.0.0 ring reset").1,
            KmsgKind::RingReset {
                ring: "gfx_0.0.0".into(),
                ok: None
            }
        );
        assert_eq!(
            rec("amdgpu 0000:03:00.0: amdgpu: Ring gfx_0.0.0 reset succeeded").1,
            KmsgKind::RingReset {
                ring: "gfx_0.0.0".into(),
                ok: Some(true)
            }
        );
        assert_eq!(
            rec("amdgpu 0000:03:00.0: amdgpu: Ring comp_1.0.0 reset failed").1,
            KmsgKind::RingReset {
                ring: "comp_1.0.0".into(),
                ok: Some(false)
            }
        );
        assert_eq!(
            rec("amdgpu 0000:03:00.0: amdgpu: Ring comp_1.0.0 reset failure").1,
            KmsgKind::RingReset {
                ring: "comp_1.0.0".into(),
                ok: Some(false)
            }
        );
    }

    #[test]
    fn gpu_reset_lines() {
        assert_eq!(
            rec("amdgpu 0000:03:00.0: amdgpu: GPU reset begin!").1,
            KmsgKind::ResetBegin { source: None }
        );
        assert_eq!(
            rec("amdgpu 0002:00:00.0: amdgpu: GPU reset begin!. Source:  1").1,
            KmsgKind::ResetBegin { source: Some(1) }
        );
        assert_eq!(
            rec("amdgpu 0002:00:00.0: amdgpu: GPU reset begin!. Source: 3").1,
            KmsgKind::ResetBegin { source: Some(3) }
        );
        assert_eq!(
            rec("amdgpu 0002:00:00.0: amdgpu: GPU reset(5) succeeded!").1,
            KmsgKind::ResetResult {
                ok: true,
                counter: Some(5),
                error: None
            }
        );
        assert_eq!(
            rec("amdgpu 0002:00:00.0: amdgpu: GPU reset(2) failed").1,
            KmsgKind::ResetResult {
                ok: false,
                counter: Some(2),
                error: None
            }
        );
        assert_eq!(
            rec("amdgpu 0002:00:00.0: amdgpu: GPU reset(2) failed with error -110 ").1,
            KmsgKind::ResetResult {
                ok: false,
                counter: Some(2),
                error: Some(-110)
            }
        );
        assert_eq!(
            rec("amdgpu 0002:00:00.0: amdgpu: GPU Recovery Failed: -22").1,
            KmsgKind::ResetResult {
                ok: false,
                counter: None,
                error: Some(-22)
            }
        );
        assert_eq!(
            rec("amdgpu 0002:00:00.0: amdgpu: GPU reset end with ret = -62").1,
            KmsgKind::ResetResult {
                ok: false,
                counter: None,
                error: Some(-62)
            }
        );
        for s in [
            "MODE1 reset",
            "MODE2 reset",
            "GPU mode1 reset",
            "GPU smu mode1 reset",
            "soft reset failed, will fallback to full reset!",
            "GPU reset succeeded, trying to resume",
        ] {
            assert_eq!(
                rec(&format!("amdgpu 0000:2f:00.0: amdgpu: {s}")).1,
                KmsgKind::ResetStep { what: s.into() }
            );
        }
        assert_eq!(
            rec("amdgpu 0000:2f:00.0: amdgpu: VRAM is lost due to GPU reset!").1,
            KmsgKind::VramLost
        );
    }

    #[test]
    fn device_wedged_lines_of_each_era() {
        let wedged = |needs_recovery| KmsgKind::DeviceWedged { needs_recovery };
        for (line, needs) in [
            ("but recovered through reset", false),
            ("but no recovery needed", false),
            ("needs recovery", true),
        ] {
            let l = format!("amdgpu 0000:c6:00.0: [drm] device wedged, {line}");
            assert_eq!(rec(&l), (Some("0000:c6:00.0".into()), wedged(needs)), "{l}");
        }
        assert_eq!(
            classify("amdgpu 0000:c6:00.0: [drm] device wedged, maybe"),
            None
        );
    }

    #[test]
    fn mes_spellings() {
        assert_eq!(rec("[drm:mes_v11_0_submit_pkt_and_poll_completion.constprop.0 [amdgpu]] *ERROR* MES failed to response msg=3").1, KmsgKind::MesFailure { msg: Some("3".into()) });
        assert_eq!(
            rec("amdgpu 0000:03:00.0: amdgpu: MES failed to respond to msg=REMOVE_QUEUE").1,
            KmsgKind::MesFailure {
                msg: Some("REMOVE_QUEUE".into())
            }
        );
        assert_eq!(
            rec("amdgpu 0000:03:00.0: amdgpu: MES(0) failed to respond to msg=RESET").1,
            KmsgKind::MesFailure {
                msg: Some("RESET".into())
            }
        );
        assert_eq!(rec("amdgpu 0000:03:00.0: amdgpu: MES(1, 0) failed to respond to msg=MISC (WAIT_REG_MEM)").1, KmsgKind::MesFailure { msg: Some("MISC (WAIT_REG_MEM)".into()) });
        for f in [
            "MES might be in unrecoverable state, issue a GPU reset",
            "failed to remove hardware queue from MES, doorbell=0x1002",
            "failed to reset legacy queue",
        ] {
            assert_eq!(
                rec(&format!("amdgpu 0000:03:00.0: amdgpu: {f}")).1,
                KmsgKind::MesFailure { msg: None }
            );
        }
        assert_eq!(
            rec(
                "[drm:amdgpu_mes_unmap_legacy_queue [amdgpu]] *ERROR* failed to unmap legacy queue"
            )
            .1,
            KmsgKind::MesFailure { msg: None }
        );
    }

    #[test]
    fn illegal_parser_coredump() {
        assert_eq!(
            rec("[drm:gfx_v11_0_bad_op_irq [amdgpu]] *ERROR* Illegal opcode in command stream ").1,
            KmsgKind::IllegalCommand {
                what: IllegalKind::Opcode
            }
        );
        assert_eq!(
            rec("[drm:gfx_v9_0_bad_op_irq [amdgpu]] *ERROR* Illegal opcode in command stream").1,
            KmsgKind::IllegalCommand {
                what: IllegalKind::Opcode
            }
        );
        assert_eq!(rec("[drm:gfx_v11_0_priv_reg_irq [amdgpu]] *ERROR* Illegal register access in command stream").1, KmsgKind::IllegalCommand { what: IllegalKind::RegisterAccess });
        assert_eq!(rec("[drm:gfx_v8_0_priv_inst_irq [amdgpu]] *ERROR* Illegal instruction in command stream").1, KmsgKind::IllegalCommand { what: IllegalKind::Instruction });
        let (pci, k) = rec("amdgpu 0002:00:00.0: [drm] *ERROR* Failed to initialize parser -125!");
        assert_eq!(
            (pci.as_deref(), k),
            (
                Some("0002:00:00.0"),
                KmsgKind::ParserInitFailed { errno: -125 }
            )
        );
        let (pci, k) =
            rec("[drm:amdgpu_cs_ioctl [amdgpu]] *ERROR* Failed to initialize parser -125!");
        assert_eq!((pci, k), (None, KmsgKind::ParserInitFailed { errno: -125 }));
        // 6.12 prints the device prefix and the function tag together.
        let (pci, k) = rec(
            "amdgpu 0000:03:00.0: [drm:amdgpu_cs_ioctl [amdgpu]] *ERROR* Failed to initialize parser -125!",
        );
        assert_eq!(
            (pci.as_deref(), k),
            (
                Some("0000:03:00.0"),
                KmsgKind::ParserInitFailed { errno: -125 }
            )
        );
        assert_eq!(
            rec("amdgpu 0000:03:00.0: [drm] AMDGPU device coredump file has been created").1,
            KmsgKind::Devcoredump { path: None }
        );
        assert_eq!(
            rec("amdgpu 0000:03:00.0: [drm] Check your /sys/class/drm/card1/device/devcoredump/data").1,
            KmsgKind::Devcoredump { path: Some("/sys/class/drm/card1/device/devcoredump/data".into()) }
        );
    }

    /// Every pre-5.0 fault spelling, each from a real log or the source that printed it:
    /// gmc_v9 4.13 (`vm_id:`/`pas_id:`, Mesa's si_debug.c parser quotes it), 4.15 (`pas_id:`,
    /// a Vega 56 boot log), 4.16–4.17 (mbab-48 in testdata/corpus), 4.18 (`for process …` cut by
    /// `\n)`, an xmr-stak report), 4.19–4.20 (`VMC page fault` with `in page starting at address
    /// … from 27`, a WoW/vkd3d report).
    #[test]
    fn gmc_v9_faults_of_the_4x_era() {
        let f = |l: &str| match rec(l).1 {
            KmsgKind::PageFault { fault, task } => (fault, task),
            other => panic!("{other:?}"),
        };
        let (fault, who) = f(
            "amdgpu 0000:09:00.0: [gfxhub] VMC page fault (src_id:0 ring:24 vmid:1 pasid:32769)",
        );
        assert_eq!(
            (
                fault.hub.as_str(),
                fault.ring_id,
                fault.vmid,
                fault.pasid,
                fault.retry,
                who
            ),
            ("gfxhub", Some(24), 1, 32769, None, None)
        );
        let (fault, _) =
            f("amdgpu 0000:03:00.0: [gfxhub] VMC page fault (src_id:0 ring:158 vm_id:2 pas_id:7)");
        assert_eq!((fault.vmid, fault.pasid, fault.ring_id), (2, 7, Some(158)));
        let (fault, _) =
            f("amdgpu 0000:03:00.0: [mmhub] VMC page fault (src_id:0 ring:157 vmid:0 pas_id:0)");
        assert_eq!((fault.hub.as_str(), fault.vmid), ("mmhub", 0));
        let (fault, t) = f("amdgpu 0000:03:00.0: [gfxhub] VMC page fault (src_id:0 ring:158 vmid:6 pasid:32768, for process xmr-stak pid 1571 thread xmr-stak pid 1573");
        assert_eq!(fault.pasid, 32768);
        assert_eq!(t, Some(task(1571, 1573, "xmr-stak", None)));
        let (_, t) = f("amdgpu 0000:09:00.0: [gfxhub] VMC page fault (src_id:0 ring:158 vmid:1 pasid:32769, for process WoW.exe pid 2349 thread WoW.exe:cs0 pid 2370)");
        assert_eq!(t, Some(task(2349, 2370, "WoW.exe", Some("WoW.exe:cs0"))));
        for (l, addr, client) in [
            (
                "amdgpu 0000:09:00.0:   at page 0x0000000102a02000 from 27",
                0x1_02a0_2000,
                "27",
            ),
            (
                "amdgpu 0000:03:00.0:   at address 0x00000003049e7000 from 27",
                0x3_049e_7000,
                "27",
            ),
            (
                "amdgpu 0000:38:00.0:   in page starting at address 0x000080010b7d0000 from 27",
                0x8001_0b7d_0000,
                "27",
            ),
        ] {
            assert_eq!(
                cont(l),
                Cont::Address {
                    address: Some(addr),
                    client: Some(client.into())
                },
                "{l}"
            );
        }
        assert_eq!(
            cont("amdgpu 0000:09:00.0: VM_L2_PROTECTION_FAULT_STATUS:0x00101031"),
            Cont::Status(Some(0x0010_1031))
        );
    }

    /// gmc_v6/v7/v8 (GCN 1–3): `GPU fault detected` with the VM_CONTEXT1 registers and the
    /// decoded `VM fault` line. Lines from Requiem4Eternity/Appstream#91 (5.0, with process
    /// and pasid) and Lucretia/vulkan-overlay#31 (4.x, neither).
    #[test]
    fn gmc_v8_gpu_fault_detected() {
        let (pci, k) = rec("amdgpu 0005:01:00.0: GPU fault detected: 146 0x0000480c for process Media1251 pid 19092 thread appstream:cs0 pid 19111");
        assert_eq!(pci.as_deref(), Some("0005:01:00.0"));
        let KmsgKind::PageFault { fault, task: t } = k else {
            panic!()
        };
        assert_eq!((fault.hub.as_str(), fault.src_id), ("vm", Some(146)));
        assert_eq!(
            t,
            Some(task(19092, 19111, "Media1251", Some("appstream:cs0")))
        );
        let (_, k) = rec("amdgpu 0000:01:00.0: GPU fault detected: 147 0x0e384801");
        assert!(matches!(k, KmsgKind::PageFault { task: None, .. }));
        assert_eq!(
            cont("amdgpu 0000:01:00.0:   VM_CONTEXT1_PROTECTION_FAULT_ADDR   0x0462075D"),
            Cont::Address {
                address: Some(0x0462_075D * 4096),
                client: None
            }
        );
        assert_eq!(
            cont("amdgpu 0000:01:00.0:   VM_CONTEXT1_PROTECTION_FAULT_STATUS 0x020C4001"),
            Cont::Status(Some(0x020C_4001))
        );
        assert_eq!(
            cont("amdgpu 0005:01:00.0: VM fault (0x0c, vmid 1, pasid 32784) at page 0, read from 'TC4' (0x54433400) (72)"),
            Cont::VmFault {
                protections: Some(0x0c),
                vmid: Some(1),
                pasid: Some(32784),
                address: Some(0),
                write: Some(false),
                client: Some("TC4 (72)".into())
            }
        );
        assert_eq!(
            cont("amdgpu 0000:01:00.0: VM fault (0x01, vmid 1) at page 73533277, write from 'TC3' (0x54433300) (196)"),
            Cont::VmFault {
                protections: Some(1),
                vmid: Some(1),
                pasid: None,
                address: Some(73_533_277 * 4096),
                write: Some(true),
                client: Some("TC3 (196)".into())
            }
        );
        // Late gmc_v6: no client name.
        let Cont::VmFault { client, .. } =
            cont("amdgpu 0000:01:00.0: VM fault (0x04, vmid 3) at page 12, read from 18")
        else {
            panic!()
        };
        assert_eq!(client.as_deref(), Some("18"));
    }

    #[test]
    fn prefixes_pr_err_and_pci_shape() {
        // pr_err lines (KFD, powerplay) have no device; they are amdgpu lines all the same.
        assert_eq!(
            strip_prefix("amdgpu: Failed to suspend process pid 3484"),
            Some((None, "Failed to suspend process pid 3484"))
        );
        assert_eq!(
            strip_prefix("amdgpu 10000:e1:00.0: amdgpu: GPU recovery disabled."),
            Some((Some("10000:e1:00.0"), "GPU recovery disabled."))
        );
        for bad in [
            "amdgpu kernel modesetting enabled.",
            "amdgpu foo: bar",
            "amdgpu 0000:03:00: x",
            "amdgpu 0000:03:00.8: x",
            "amdgpu 00:03:00.0: x",
        ] {
            assert_eq!(strip_prefix(bad), None, "{bad}");
        }
    }

    #[test]
    fn unrelated_and_truncated() {
        assert!(classify("usb 1-1: new high-speed USB device number 2 using xhci_hcd").is_none());
        assert!(classify("[drm:intel_foo [i915]] *ERROR* nope").is_none());
        let (_, k) = rec("amdgpu 0002:00:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:40 vm");
        let KmsgKind::PageFault { fault, task: None } = k else {
            panic!()
        };
        assert_eq!((fault.ring_id, fault.pasid), (Some(40), 0));
        let (_, k) = rec("amdgpu 0000:2f:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:169 vmid:0 pasid:5, for process Xwayl pid 65");
        let KmsgKind::PageFault { task, .. } = k else {
            panic!()
        };
        assert_eq!(task, Some(task_(65, "Xwayl")));
    }
    fn task_(pid: u32, comm: &str) -> Task {
        Task {
            pid,
            tid: 0,
            comm: comm.into(),
            thread_comm: None,
        }
    }
}
