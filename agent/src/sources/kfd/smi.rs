//! KFD SMI events: the `/dev/kfd` event stream amd-smi reads (`amd-smi event`), a source that
//! needs neither eBPF nor the kernel log.
//!
//! `AMDKFD_IOC_SMI_EVENTS {gpuid}` returns an anonymous fd per GPU node; writing a u64 mask
//! (bit `event - 1`, plus bit 63 = `KFD_SMI_EVENT_ALL_PROCESS` for other processes' events,
//! honoured for CAP_SYS_ADMIN) subscribes; each read returns text lines `"<event hex> <payload>\n"`.
//! Payload formats differ per kernel (docs/compute.md): the parser accepts all of them.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use super::Counters;

use hangwatch_core::model::{Clock, Event, EventBody, SmiEvent, SmiKind, Source};

pub const VMFAULT: u32 = 1;
pub const GPU_PRE_RESET: u32 = 3;
pub const GPU_POST_RESET: u32 = 4;
pub const QUEUE_EVICTION: u32 = 9;
pub const QUEUE_RESTORE: u32 = 10;
pub const PROCESS_START: u32 = 12;
pub const PROCESS_END: u32 = 13;
pub const ALL_PROCESS: u32 = 64;

/// The events hangwatch subscribes to (bits of unknown events are ignored by older kernels).
pub fn subscription_mask() -> u64 {
    [
        VMFAULT,
        GPU_PRE_RESET,
        GPU_POST_RESET,
        QUEUE_EVICTION,
        QUEUE_RESTORE,
        PROCESS_START,
        PROCESS_END,
        ALL_PROCESS,
    ]
    .iter()
    .fold(0u64, |m, e| m | 1u64 << (e - 1))
}

/// One SMI line (without or with its `\n`; a `%c` of 0 leaves a NUL byte, tolerated).
pub fn parse_line(gpu_id: u32, line: &str) -> Option<SmiEvent> {
    let line = line.trim_end_matches(['\n', '\r', '\0']);
    let (ev, payload) = line.split_once(' ').unwrap_or((line, ""));
    let event = u32::from_str_radix(ev.trim(), 16).ok()?;
    let payload = payload.trim_end_matches('\0').trim();
    let kind = match event {
        VMFAULT => {
            // "%x:%s": pid in HEX, then the thread name.
            let (pid, comm) = payload.split_once(':')?;
            SmiKind::VmFault {
                pid: u32::from_str_radix(pid, 16).ok()?,
                comm: comm.chars().take(16).collect(),
            }
        }
        GPU_PRE_RESET | GPU_POST_RESET => {
            // ≤ 6.x "%x"; newer "%x %s" (seq, reset cause).
            let (seq, cause) = payload.split_once(' ').unwrap_or((payload, ""));
            let seq = u32::from_str_radix(seq, 16).ok()?;
            let cause = Some(cause.trim())
                .filter(|c| !c.is_empty())
                .map(|c| c.chars().take(64).collect());
            if event == GPU_PRE_RESET {
                SmiKind::GpuPreReset { seq, cause }
            } else {
                SmiKind::GpuPostReset { seq, cause }
            }
        }
        QUEUE_EVICTION => {
            // "%lld -%d %x %d": boottime ns, pid, node gpu_id, trigger.
            let f: Vec<&str> = payload.split_whitespace().collect();
            SmiKind::QueueEviction {
                pid: f.get(1)?.strip_prefix('-')?.parse().ok()?,
                trigger: f.get(3).and_then(|t| t.parse().ok()).unwrap_or(u32::MAX),
            }
        }
        QUEUE_RESTORE => {
            // "%lld -%d %x" (6.1) or "%lld -%d %x %c" (6.12+).
            let f: Vec<&str> = payload.split_whitespace().collect();
            SmiKind::QueueRestore {
                pid: f.get(1)?.strip_prefix('-')?.parse().ok()?,
            }
        }
        PROCESS_START | PROCESS_END => {
            // "%x %s": pid in HEX, task name.
            let (pid, comm) = payload.split_once(' ')?;
            let pid = u32::from_str_radix(pid, 16).ok()?;
            let comm: String = comm.chars().take(16).collect();
            if event == PROCESS_START {
                SmiKind::ProcessStart { pid, comm }
            } else {
                SmiKind::ProcessEnd { pid, comm }
            }
        }
        0 | 64.. => return None,
        other => SmiKind::Other { event: other },
    };
    Some(SmiEvent { gpu_id, kind })
}

/// Splits a read into complete lines, keeping a partial tail (bounded) for the next read.
#[derive(Default)]
pub struct LineBuf {
    tail: Vec<u8>,
    /// Bytes dropped because a "line" exceeded the bound (the kernel never writes > 96).
    pub overlong: u64,
}

const MAX_LINE: usize = 256;

impl LineBuf {
    pub fn push(&mut self, data: &[u8], out: &mut Vec<String>) {
        for &b in data {
            if b == b'\n' {
                out.push(String::from_utf8_lossy(&self.tail).into_owned());
                self.tail.clear();
            } else if self.tail.len() < MAX_LINE {
                self.tail.push(b);
            } else {
                self.overlong += 1;
            }
        }
    }
}

/// `_IOWR('K', 0x1F, struct kfd_ioctl_smi_events_args { u32 gpuid; u32 anon_fd; })`.
const AMDKFD_IOC_SMI_EVENTS: u64 = (3 << 30) | (8 << 16) | ((b'K' as u64) << 8) | 0x1F;

#[repr(C)]
struct SmiArgs {
    gpuid: u32,
    anon_fd: u32,
}

/// Opens one SMI event fd for `gpu_id` on the open `/dev/kfd` and subscribes to `mask`.
fn open_events(kfd: &OwnedFd, gpu_id: u32, mask: u64) -> std::io::Result<OwnedFd> {
    let mut args = SmiArgs {
        gpuid: gpu_id,
        anon_fd: 0,
    };
    // SAFETY: `kfd` is an open fd and `args` matches struct kfd_ioctl_smi_events_args.
    let r = unsafe {
        libc::ioctl(
            kfd.as_raw_fd(),
            AMDKFD_IOC_SMI_EVENTS as _,
            &mut args as *mut SmiArgs,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(args.anon_fd as i32) };
    let bytes = mask.to_ne_bytes();
    // SAFETY: writing 8 bytes from a live buffer to an open fd.
    let w = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
    if w != bytes.len() as isize {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// The running SMI reader: the GPUs it subscribed to, or why it could not.
pub struct SmiStatus {
    pub subscribed: Vec<(u32, Option<String>)>,
    pub errors: Vec<String>,
    /// `/dev/kfd` is not ours to open (the shipped service's device policy, or not in the
    /// `render` group): expected, so not an error.
    pub denied: Option<String>,
}

impl SmiStatus {
    /// `/dev/kfd` did not open: not permitted (EACCES, EPERM: the device cgroup) is a
    /// deployment choice, anything else an error.
    fn open_failed(&mut self, e: &std::io::Error) {
        let what = format!("/dev/kfd: {e}");
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            self.denied = Some(what);
        } else {
            self.errors.push(what);
        }
    }
}

/// Opens `/dev/kfd` under `root`, subscribes every GPU node of the topology and starts a
/// thread that sends one `KfdSmi` event per line to `tx` until `tx`'s receiver is gone.
pub fn spawn(root: &Path, tx: SyncSender<Event>, counters: Arc<Counters>) -> SmiStatus {
    let mut st = SmiStatus {
        subscribed: Vec::new(),
        errors: Vec::new(),
        denied: None,
    };
    let nodes = super::sysfs::gpu_nodes(root);
    if nodes.is_empty() {
        st.errors
            .push("no GPU node in /sys/class/kfd/kfd/topology (amdkfd has no GPU)".into());
        return st;
    }
    let kfd = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(root.join("dev/kfd"))
    {
        Ok(f) => OwnedFd::from(f),
        Err(e) => {
            st.open_failed(&e);
            return st;
        }
    };
    let mut fds = Vec::new();
    for n in nodes {
        match open_events(&kfd, n.gpu_id, subscription_mask()) {
            Ok(fd) => {
                st.subscribed.push((n.gpu_id, n.pci.clone()));
                fds.push((fd, n.gpu_id, n.pci, LineBuf::default()));
            }
            Err(e) => st
                .errors
                .push(format!("SMI events for gpu_id {}: {e}", n.gpu_id)),
        }
    }
    if !fds.is_empty() {
        let spawned = std::thread::Builder::new()
            .name("hw-kfd-smi".into())
            .spawn(move || read_loop(kfd, fds, tx, counters));
        if let Err(e) = spawned {
            st.errors.push(format!("cannot start the SMI reader: {e}"));
        }
    }
    st
}

type SmiFd = (OwnedFd, u32, Option<String>, LineBuf);

fn read_loop(_kfd: OwnedFd, mut fds: Vec<SmiFd>, tx: SyncSender<Event>, c: Arc<Counters>) {
    let mut buf = [0u8; 1024];
    loop {
        let mut pfd: Vec<libc::pollfd> = fds
            .iter()
            .map(|(fd, ..)| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: pfd is a live array of pollfd of the given length.
        let n = unsafe { libc::poll(pfd.as_mut_ptr(), pfd.len() as _, 1000) };
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
        for (i, p) in pfd.iter().enumerate() {
            if p.revents & libc::POLLIN == 0 {
                continue;
            }
            let (fd, gpu_id, pci, lines) = &mut fds[i];
            // SAFETY: reading into a live buffer from an open fd.
            let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                continue;
            }
            let mut out = Vec::new();
            let before = lines.overlong;
            lines.push(&buf[..r as usize], &mut out);
            c.smi_overlong
                .fetch_add(lines.overlong - before, Ordering::Relaxed);
            c.smi_lines.fetch_add(out.len() as u64, Ordering::Relaxed);
            for l in out {
                let Some(ev) = parse_line(*gpu_id, &l) else {
                    c.smi_unparsed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let e = Event {
                    t_ns: super::monotonic_ns(),
                    clock: Clock::Monotonic,
                    source: Source::Kfd,
                    gpu: pci.clone(),
                    body: EventBody::KfdSmi(ev),
                };
                if tx.send(e).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_format() {
        let cases = [
            // 6.1 (strings of Debian's amdgpu.ko): reset "%x", restore without %c.
            (
                "3 2\n",
                SmiKind::GpuPreReset {
                    seq: 2,
                    cause: None,
                },
            ),
            (
                "4 2\n",
                SmiKind::GpuPostReset {
                    seq: 2,
                    cause: None,
                },
            ),
            (
                "1 10a2:python3\n",
                SmiKind::VmFault {
                    pid: 0x10a2,
                    comm: "python3".into(),
                },
            ),
            (
                "9 123456789 -4242 bc18 2\n",
                SmiKind::QueueEviction {
                    pid: 4242,
                    trigger: 2,
                },
            ),
            (
                "a 123456789 -4242 bc18\n",
                SmiKind::QueueRestore { pid: 4242 },
            ),
            // 6.12+: restore carries a %c that is NUL when not rescheduled; reset a cause.
            (
                "a 123456789 -4242 bc18 \0\n",
                SmiKind::QueueRestore { pid: 4242 },
            ),
            (
                "3 5 HWS hang\n",
                SmiKind::GpuPreReset {
                    seq: 5,
                    cause: Some("HWS hang".into()),
                },
            ),
            // 7.x process start/end: "%x %s".
            (
                "c 10a2 python3\n",
                SmiKind::ProcessStart {
                    pid: 0x10a2,
                    comm: "python3".into(),
                },
            ),
            ("2 ff:ab\n", SmiKind::Other { event: 2 }),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(7, line).unwrap().kind, want, "{line:?}");
        }
    }

    #[test]
    fn garbage_is_rejected_not_guessed() {
        for l in [
            "",
            "\n",
            "zz",
            "1 nocolon",
            "1 zz:x",
            "3 ",
            "9 1 4242 0",
            "40 x",
            "0 1",
        ] {
            assert_eq!(parse_line(1, l), None, "{l:?}");
        }
    }

    #[test]
    fn lines_split_across_reads_and_bounded() {
        let mut b = LineBuf::default();
        let mut out = Vec::new();
        b.push(b"3 1\n4 ", &mut out);
        b.push(b"1\n", &mut out);
        assert_eq!(out, vec!["3 1".to_string(), "4 1".to_string()]);
        out.clear();
        b.push(&[b'x'; 1000], &mut out);
        b.push(b"\n", &mut out);
        assert_eq!(out[0].len(), MAX_LINE);
        assert_eq!(b.overlong, 1000 - MAX_LINE as u64);
    }

    #[test]
    fn not_permitted_is_a_deployment_choice_and_other_failures_are_errors() {
        let mut st = SmiStatus {
            subscribed: Vec::new(),
            errors: Vec::new(),
            denied: None,
        };
        // EACCES (mode/group) and EPERM (the service's DevicePolicy=closed device cgroup).
        for errno in [libc::EACCES, libc::EPERM] {
            st.open_failed(&std::io::Error::from_raw_os_error(errno));
            assert!(st
                .denied
                .as_deref()
                .is_some_and(|d| d.starts_with("/dev/kfd: ")));
            assert!(st.errors.is_empty());
        }
        st.open_failed(&std::io::Error::from_raw_os_error(libc::ENXIO));
        assert_eq!(st.errors.len(), 1, "{:?}", st.errors);
    }

    #[test]
    fn mask_has_the_events_and_all_process() {
        let m = subscription_mask();
        assert_eq!(m & 1, 1);
        assert_ne!(m & (1 << 63), 0);
        assert_eq!(m & (1 << 1), 0, "thermal throttle is not subscribed");
    }
}
