//! What `hangwatch analyze` answers for a log given as bytes: the same pipeline
//! ([`Analyzer`] over [`source::wrap`], so compression is detected as for a file), reduced to
//! the fields an attribution is judged by.
#![allow(
    dead_code,
    reason = "each test binary uses a part of the shared helpers"
)]
use std::io::Cursor;

use hangwatch_core::analyze::Analyzer;
use hangwatch_core::correlate::Config;
use hangwatch_core::incident::Incident;
use hangwatch_core::kmsg::{source, Format};
use jiff::tz::TimeZone;

/// 2026-12-31T00:00:00Z: year-less stamps are read as not after it, the same for every run.
pub const REFERENCE_NS: u64 = 1_798_675_200_000_000_000;

/// One incident as the corpus judges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub kind: String,
    pub ring: Option<String>,
    pub gpu: Option<String>,
    pub culprit: Option<(String, u32)>,
    pub kernel_blamed: Option<(String, u32)>,
    pub confidence: String,
}

fn quoted<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl Answer {
    fn of(i: &Incident) -> Self {
        let who = |p: &Option<hangwatch_core::incident::ProcessRef>| {
            p.as_ref().map(|p| (p.comm.clone(), p.pid))
        };
        Answer {
            kind: quoted(&i.kind),
            ring: i.ring.clone(),
            gpu: i.gpu.clone(),
            culprit: who(&i.culprit),
            kernel_blamed: who(&i.kernel_blamed),
            confidence: quoted(&i.confidence),
        }
    }
}

/// Every incident of `log`, in start order, and the run's exit code.
pub fn analyze_full(log: &[u8]) -> (Vec<Incident>, u8) {
    let mut an =
        Analyzer::new(Config::default(), Format::Auto, TimeZone::UTC).with_reference(REFERENCE_NS);
    let mut out = Vec::new();
    let opened =
        source::wrap(Box::new(Cursor::new(log.to_vec())), None).expect("in-memory input opens");
    let r = an.input("log", opened, &mut |i| out.extend(i));
    out.extend(an.finish());
    out.sort_by_key(|i| i.started_ns);
    (out, hangwatch_core::analyze::exit_code(&[r]))
}

pub fn analyze(log: &[u8]) -> Vec<Answer> {
    analyze_full(log).0.iter().map(Answer::of).collect()
}

/// The reader's statistics for `log`, as `analyze` reports them.
pub fn stats(log: &[u8]) -> hangwatch_core::kmsg::InputStats {
    let mut an =
        Analyzer::new(Config::default(), Format::Auto, TimeZone::UTC).with_reference(REFERENCE_NS);
    let opened =
        source::wrap(Box::new(Cursor::new(log.to_vec())), None).expect("in-memory input opens");
    an.input("log", opened, &mut |_| {}).stats
}
