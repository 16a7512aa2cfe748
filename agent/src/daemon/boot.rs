//! The facts of the current boot the agent announces at start (`EventBody::Boot`), so live
//! incidents carry `wall_time`, `boot_id` and `hostname` like ones read from a journal.
use hangwatch_core::model::{BootInfo, Clock, Event, EventBody, Source};

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns` and (close to) of kmsg stamps.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC).max(0) as u64
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC: adding it to a monotonic stamp gives wall time. Read as
/// the tightest of three back-to-back pairs, so a preemption between the reads cannot skew it.
pub fn realtime_offset_ns() -> i64 {
    (0..3)
        .map(|_| {
            let m0 = clock_ns(libc::CLOCK_MONOTONIC);
            let r = clock_ns(libc::CLOCK_REALTIME);
            let m1 = clock_ns(libc::CLOCK_MONOTONIC);
            (m1 - m0, r - (m0 + m1) / 2)
        })
        .min()
        .map(|(_, off)| off as i64)
        .unwrap_or(0)
}

/// A short proc file's first line, trimmed; None when unreadable or empty.
fn first_line(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let l = s.lines().next()?.trim();
    (!l.is_empty() && l.len() <= 256).then(|| l.to_string())
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> Option<String> {
    first_line("/proc/sys/kernel/random/boot_id")
}

/// The start-up `Boot` event (boot `seq` 0: the live agent sees a single boot).
pub fn boot_event() -> Event {
    Event {
        t_ns: monotonic_ns(),
        clock: Clock::Monotonic,
        source: Source::Proc,
        gpu: None,
        body: EventBody::Boot(BootInfo {
            seq: 0,
            boot_id: boot_id(),
            hostname: first_line("/proc/sys/kernel/hostname"),
            kernel: first_line("/proc/sys/kernel/osrelease"),
            realtime_offset_ns: Some(realtime_offset_ns()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_event_has_id_host_and_a_sane_offset() {
        let EventBody::Boot(b) = boot_event().body else {
            panic!("not a boot event")
        };
        assert_eq!(b.boot_id.as_deref().map(str::len), Some(36), "{b:?}");
        assert!(b.hostname.is_some());
        assert!(
            b.kernel.as_deref().is_some_and(|k| k.contains('.')),
            "{b:?}"
        );
        // Wall time of "now" from the offset is within a second of SystemTime::now().
        let wall = monotonic_ns() as i128 + b.realtime_offset_ns.unwrap() as i128;
        let sys = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        assert!((wall - sys).abs() < 1_000_000_000, "{wall} vs {sys}");
    }
}
