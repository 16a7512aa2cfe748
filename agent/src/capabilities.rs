//! What this process may do, from its effective capability set (capget), not its uid: the
//! service runs as an unprivileged user with only the capabilities below (see
//! docs/operations.md for the experiment behind each), and `run`/`check` name what is missing.

/// Capability numbers (linux/capability.h).
pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SYS_RESOURCE: u32 = 24;
pub const CAP_SYSLOG: u32 = 34;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// One capability the agent uses and why (printed by `check`, named when missing).
#[derive(Clone, Copy, Debug)]
pub struct Need {
    pub cap: u32,
    pub name: &'static str,
    pub why: &'static str,
}

/// Every capability the agent uses, in the order `check` prints them.
pub const NEEDS: &[Need] = &[
    Need {
        cap: CAP_BPF,
        name: "CAP_BPF",
        why: "load the eBPF programs and create their maps",
    },
    Need {
        cap: CAP_PERFMON,
        name: "CAP_PERFMON",
        why: "load programs that read kernel memory; attach them (perf_event_open); /proc/PID/maps",
    },
    Need {
        cap: CAP_DAC_READ_SEARCH,
        name: "CAP_DAC_READ_SEARCH",
        why: "read tracefs (event format files and ids; tracefs is root-only)",
    },
    Need {
        cap: CAP_SYSLOG,
        name: "CAP_SYSLOG",
        why: "read /dev/kmsg when kernel.dmesg_restrict=1 (the kernel-log cross-check)",
    },
    Need {
        cap: CAP_SYS_PTRACE,
        name: "CAP_SYS_PTRACE",
        why: "read /proc/PID/fdinfo and exe of other users' GPU processes",
    },
];

/// The effective capability set of this thread (64 bits: two capget words).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CapSet(pub u64);

impl CapSet {
    /// Reads the calling thread's effective set. An error (no capget: seccomp) reads as empty.
    pub fn current() -> CapSet {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        // _LINUX_CAPABILITY_VERSION_3: two 32-bit words.
        let mut hdr = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: capget writes at most two `Data` for version 3 into a valid array.
        let r =
            unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut Header, data.as_mut_ptr()) };
        if r != 0 {
            return CapSet(0);
        }
        CapSet(u64::from(data[0].effective) | (u64::from(data[1].effective) << 32))
    }

    pub fn has(self, cap: u32) -> bool {
        cap < 64 && self.0 & (1u64 << cap) != 0
    }

    /// eBPF programs can be loaded and attached: CAP_BPF + CAP_PERFMON (5.8+), or
    /// CAP_SYS_ADMIN, which kernels before 5.8 require and later ones still accept.
    pub fn can_load_probes(self) -> bool {
        self.has(CAP_SYS_ADMIN) || (self.has(CAP_BPF) && self.has(CAP_PERFMON))
    }

    /// Names of the capabilities the probes need that this set lacks ("" when none).
    pub fn missing_for_probes(self) -> Vec<&'static str> {
        if self.has(CAP_SYS_ADMIN) {
            return Vec::new();
        }
        [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
            .into_iter()
            .filter(|(c, _)| !self.has(*c))
            .map(|(_, n)| n)
            .collect()
    }

    /// The `NEEDS` this set lacks.
    pub fn missing(self) -> Vec<&'static Need> {
        NEEDS.iter().filter(|n| !self.has(n.cap)).collect()
    }
}

/// `kernel.perf_event_paranoid` above 2 is a Debian/Ubuntu patch that refuses
/// `perf_event_open` to anyone without CAP_SYS_ADMIN, CAP_PERFMON or not (measured on Debian's
/// 6.1: every probe fails to attach). Returns the level when it blocks this process.
pub fn perf_paranoid_blocks(caps: CapSet) -> Option<i32> {
    let level: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (level > 2 && !caps.has(CAP_SYS_ADMIN)).then_some(level)
}

/// What to do about [`perf_paranoid_blocks`].
pub fn perf_paranoid_fix(level: i32) -> String {
    format!(
        "kernel.perf_event_paranoid={level} (a Debian/Ubuntu patch) refuses perf_event_open without CAP_SYS_ADMIN: set it to 2 (`sysctl kernel.perf_event_paranoid=2`, or the sysctl.d file in docs/operations.md) or give the agent CAP_SYS_ADMIN"
    )
}

/// The sentence naming what the probes lack and how to grant it.
pub fn probe_caps_fix(missing: &[&str]) -> String {
    format!(
        "missing {} (run as root, or grant them: the packaged hangwatch.service does, see docs/operations.md)",
        missing.join(" + ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_need_bpf_and_perfmon_or_sys_admin() {
        let bpf_only = CapSet(1 << CAP_BPF);
        assert!(!bpf_only.can_load_probes());
        assert_eq!(bpf_only.missing_for_probes(), vec!["CAP_PERFMON"]);
        let both = CapSet((1 << CAP_BPF) | (1 << CAP_PERFMON));
        assert!(both.can_load_probes());
        assert!(both.missing_for_probes().is_empty());
        let admin = CapSet(1 << CAP_SYS_ADMIN);
        assert!(admin.can_load_probes());
        assert_eq!(CapSet(0).missing().len(), NEEDS.len());
        assert!(probe_caps_fix(&CapSet(0).missing_for_probes()).contains("CAP_BPF + CAP_PERFMON"));
    }

    #[test]
    fn paranoid_fix_names_both_ways_out() {
        let fix = perf_paranoid_fix(3);
        assert!(fix.contains("kernel.perf_event_paranoid=3"), "{fix}");
        assert!(
            fix.contains("sysctl kernel.perf_event_paranoid=2") && fix.contains("CAP_SYS_ADMIN")
        );
        // CAP_SYS_ADMIN is never blocked.
        assert_eq!(perf_paranoid_blocks(CapSet(1 << CAP_SYS_ADMIN)), None);
    }

    #[test]
    fn current_matches_proc_status() {
        // capget and /proc/self/status must agree (the test runs as root or not; both work).
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .unwrap()
            .trim();
        assert_eq!(CapSet::current().0, u64::from_str_radix(hex, 16).unwrap());
    }
}
