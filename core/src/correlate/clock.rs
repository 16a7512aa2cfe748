//! Instants as incidents print them, on either clock.
use crate::model::Clock;

/// Monotonic: seconds since boot as the kernel prints them; Realtime: RFC 3339 UTC.
pub fn render_time(clock: Clock, t_ns: u64) -> String {
    match clock {
        Clock::Monotonic => format!(
            "{}.{:06}",
            t_ns / 1_000_000_000,
            (t_ns % 1_000_000_000) / 1000
        ),
        Clock::Realtime => crate::kmsg::walltime::rfc3339_utc(t_ns),
    }
}
