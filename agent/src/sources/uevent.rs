//! Kernel uevents (the kobject-uevent netlink group): the DRM wedged event and the
//! devcoredump `add`. A datagram is `ACTION@DEVPATH\0KEY=VALUE\0...`. Everything in it is
//! hostile: sizes are bounded, bytes that are not UTF-8 are replaced, and values stay exact
//! in structured fields (each sink escapes them).
use hangwatch_core::model::{Clock, Event, EventBody, Source, Task};

/// The kernel's uevent buffer is 2048 bytes; anything longer is not a kernel uevent.
pub const MAX_DATAGRAM: usize = 8192;
/// Keys read per message (the kernel sends at most 64 environment variables).
const MAX_KEYS: usize = 64;
/// Methods kept from one `WEDGED=` value (the kernel defines three).
const MAX_METHODS: usize = 8;
/// `TASK=` is a comm: at most 15 bytes from the kernel; longer values are cut.
const MAX_COMM: usize = 64;

/// One recognised uevent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uevent {
    /// `ACTION=change SUBSYSTEM=drm WEDGED=<method>[,...]` (since 6.15), with `PID`/`TASK`
    /// since 6.17. `gpu` is the card's PCI address from the devpath.
    Wedged {
        gpu: Option<String>,
        methods: Vec<String>,
        task: Option<Task>,
    },
    /// `ACTION=add SUBSYSTEM=devcoredump`: a dump appeared at `devpath` (under /sys).
    Devcoredump { devpath: String },
}

/// Parses one datagram; `None` when it is not a uevent hangwatch reads (or is malformed).
/// Messages from udevd (`libudev\0` header) are not kernel uevents and are ignored.
pub fn parse(buf: &[u8]) -> Option<Uevent> {
    if buf.len() > MAX_DATAGRAM || buf.starts_with(b"libudev\0") {
        return None;
    }
    let mut fields = buf.split(|b| *b == 0);
    let header = fields.next()?;
    header.iter().position(|b| *b == b'@')?;
    let kv = fields.take(MAX_KEYS).filter_map(|f| {
        let eq = f.iter().position(|b| *b == b'=')?;
        Some((&f[..eq], &f[eq + 1..]))
    });
    let mut env = Env::default();
    for (k, v) in kv {
        env.set(k, v);
    }
    match (env.action?.as_str(), env.subsystem?.as_str()) {
        ("change", "drm") => Some(Uevent::Wedged {
            gpu: pci_address(env.devpath.as_deref()?),
            methods: methods(&env.wedged?),
            task: task(env.pid.as_deref(), env.task.as_deref()),
        }),
        ("add", "devcoredump") => Some(Uevent::Devcoredump {
            devpath: env.devpath?,
        }),
        _ => None,
    }
}

/// The keys hangwatch reads; the last occurrence of a key wins.
#[derive(Default)]
struct Env {
    action: Option<String>,
    subsystem: Option<String>,
    devpath: Option<String>,
    wedged: Option<String>,
    pid: Option<String>,
    task: Option<String>,
}

impl Env {
    fn set(&mut self, k: &[u8], v: &[u8]) {
        let slot = match k {
            b"ACTION" => &mut self.action,
            b"SUBSYSTEM" => &mut self.subsystem,
            b"DEVPATH" => &mut self.devpath,
            b"WEDGED" => &mut self.wedged,
            b"PID" => &mut self.pid,
            b"TASK" => &mut self.task,
            _ => return,
        };
        *slot = Some(String::from_utf8_lossy(v).into_owned());
    }
}

fn methods(v: &str) -> Vec<String> {
    v.split(',')
        .filter(|m| !m.is_empty())
        .take(MAX_METHODS)
        .map(str::to_string)
        .collect()
}

/// The blamed task: only with a numeric, non-zero `PID`; `TASK` kept exact (cut at MAX_COMM).
fn task(pid: Option<&str>, comm: Option<&str>) -> Option<Task> {
    let pid: u32 = pid?.parse().ok().filter(|p| *p != 0)?;
    let comm: String = comm.unwrap_or_default().chars().take(MAX_COMM).collect();
    Some(Task::new(pid, pid, &comm))
}

/// The PCI address of the last `DDDD:BB:DD.F` component of a devpath
/// (`/devices/pci0000:00/0000:00:01.1/0000:03:00.0/drm/card0` → `0000:03:00.0`).
pub fn pci_address(devpath: &str) -> Option<String> {
    devpath
        .rsplit('/')
        .find(|c| is_pci_address(c))
        .map(str::to_string)
}

fn is_pci_address(c: &str) -> bool {
    let b = c.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_hexdigit);
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && hex(0..4)
        && hex(5..7)
        && hex(8..10)
        && b[11].is_ascii_digit()
}

/// A wedged uevent as a correlator event stamped `t_ns` (CLOCK_MONOTONIC, like the kernel
/// log); `None` for other uevents (the devcoredump trigger is not an event yet).
pub fn to_event(u: Uevent, t_ns: u64) -> Option<Event> {
    match u {
        Uevent::Wedged { gpu, methods, task } => Some(Event {
            t_ns,
            clock: Clock::Monotonic,
            source: Source::Uevent,
            gpu,
            body: EventBody::Wedged { methods, task },
        }),
        Uevent::Devcoredump { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = "/devices/pci0000:00/0000:00:01.1/0000:03:00.0/drm/card0";

    fn msg(header: &str, env: &[&[u8]]) -> Vec<u8> {
        let mut v = header.as_bytes().to_vec();
        for e in env {
            v.push(0);
            v.extend_from_slice(e);
        }
        v.push(0);
        v
    }
    fn wedged_617(pid: &[u8], task: &[u8]) -> Vec<u8> {
        let dp = format!("DEVPATH={CARD}");
        msg(
            &format!("change@{CARD}"),
            &[
                b"ACTION=change",
                dp.as_bytes(),
                b"SUBSYSTEM=drm",
                b"WEDGED=rebind,bus-reset",
                &[b"PID=", pid].concat(),
                &[b"TASK=", task].concat(),
                b"SEQNUM=4711",
            ],
        )
    }

    #[test]
    fn wedged_with_task() {
        let u = parse(&wedged_617(b"4242", b"zed")).unwrap();
        assert_eq!(
            u,
            Uevent::Wedged {
                gpu: Some("0000:03:00.0".into()),
                methods: vec!["rebind".into(), "bus-reset".into()],
                task: Some(Task::new(4242, 4242, "zed")),
            }
        );
    }

    #[test]
    fn wedged_615_has_no_task() {
        let dp = format!("DEVPATH={CARD}");
        let m = msg(
            &format!("change@{CARD}"),
            &[
                b"ACTION=change",
                dp.as_bytes(),
                b"SUBSYSTEM=drm",
                b"WEDGED=none",
            ],
        );
        let Some(Uevent::Wedged { methods, task, .. }) = parse(&m) else {
            panic!("not wedged");
        };
        assert_eq!((methods, task), (vec!["none".to_string()], None));
    }

    #[test]
    fn pid_not_a_number_drops_the_task_not_the_event() {
        for pid in [&b"12x"[..], b"-1", b"", b"0", b"99999999999"] {
            let Some(Uevent::Wedged { task, methods, .. }) = parse(&wedged_617(pid, b"zed")) else {
                panic!("not wedged for {pid:?}");
            };
            assert_eq!(task, None, "{pid:?}");
            assert_eq!(methods.len(), 2);
        }
    }

    #[test]
    fn task_with_control_bytes_and_non_utf8_is_kept_exact_but_valid() {
        let u = parse(&wedged_617(b"7", b"a\x1b[31m\nb\xff")).unwrap();
        let Uevent::Wedged { task: Some(t), .. } = u else {
            panic!("no task");
        };
        assert_eq!(t.comm, "a\x1b[31m\nb\u{fffd}");
        let long = vec![b'x'; 500];
        let Some(Uevent::Wedged { task: Some(t), .. }) = parse(&wedged_617(b"7", &long)) else {
            panic!("no task");
        };
        assert_eq!(t.comm.len(), MAX_COMM);
    }

    #[test]
    fn missing_keys_and_other_events_are_ignored() {
        let dp = format!("DEVPATH={CARD}");
        // A hotplug change on the card: no WEDGED.
        let hotplug = msg(
            &format!("change@{CARD}"),
            &[
                b"ACTION=change",
                dp.as_bytes(),
                b"SUBSYSTEM=drm",
                b"HOTPLUG=1",
            ],
        );
        assert_eq!(parse(&hotplug), None);
        let no_subsystem = msg("change@/x", &[b"ACTION=change", b"WEDGED=rebind"]);
        assert_eq!(parse(&no_subsystem), None);
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"no header at all"), None);
        assert_eq!(parse(&[0xff; 64]), None);
        assert_eq!(parse(&vec![b'A'; MAX_DATAGRAM + 1]), None);
        assert_eq!(parse(b"libudev\0\xfe\xed\xca\xfe"), None);
        // No PCI address in the devpath: still the event, on an unknown GPU.
        let virt = msg(
            "change@/devices/virtual/drm/card9",
            &[
                b"ACTION=change",
                b"DEVPATH=/devices/virtual/drm/card9",
                b"SUBSYSTEM=drm",
                b"WEDGED=rebind",
            ],
        );
        assert!(matches!(
            parse(&virt),
            Some(Uevent::Wedged { gpu: None, .. })
        ));
    }

    #[test]
    fn devcoredump_add() {
        let m = msg(
            "add@/devices/virtual/devcoredump/devcd1",
            &[
                b"ACTION=add",
                b"DEVPATH=/devices/virtual/devcoredump/devcd1",
                b"SUBSYSTEM=devcoredump",
            ],
        );
        assert_eq!(
            parse(&m),
            Some(Uevent::Devcoredump {
                devpath: "/devices/virtual/devcoredump/devcd1".into()
            })
        );
    }

    #[test]
    fn pci_addresses() {
        assert_eq!(pci_address(CARD).as_deref(), Some("0000:03:00.0"));
        assert_eq!(
            pci_address("/devices/pci0000:00/0000:00:08.1"),
            Some("0000:00:08.1".into())
        );
        assert_eq!(pci_address("/devices/pci0000:00/drm/card0"), None);
        assert_eq!(pci_address("/devices/0000:03:00.g/drm"), None);
        assert_eq!(pci_address("/devices/é000:03:00.0"), None);
    }

    #[test]
    fn wedged_becomes_an_event() {
        let ev = to_event(parse(&wedged_617(b"5", b"x")).unwrap(), 9).unwrap();
        assert_eq!(ev.source, Source::Uevent);
        assert_eq!(ev.gpu.as_deref(), Some("0000:03:00.0"));
        assert!(matches!(ev.body, EventBody::Wedged { .. }));
    }
}
