//! Event builders shared by the correlator's tests.
use crate::model::{Clock, Event, EventBody, JobKey, Source};

/// An event from `source` on `gpu` at `t_ns` (monotonic).
pub fn on(gpu: &str, t_ns: u64, source: Source, body: EventBody) -> Event {
    Event {
        t_ns,
        clock: Clock::Monotonic,
        source,
        gpu: Some(gpu.into()),
        body,
    }
}

/// A job known by its scheduler job id alone.
pub fn job_id(id: u64) -> JobKey {
    JobKey {
        sched_job_id: Some(id),
        ..JobKey::default()
    }
}
