//! Kernel-log input: recognise amdgpu messages and fold continuation lines into records.
//! CONTRACT (used by `commands/run.rs`, `commands/analyze.rs` and the golden tests); the bodies
//! below are placeholders until the kmsg module lands.
use crate::model::{Clock, Event, Source};

/// Parse a whole saved log (plain dmesg, `dmesg -T`, ISO stamps, journalctl text/JSON/export;
/// format auto-detected) into events in log order.
pub fn parse_text(_text: &str, _source: Source) -> Vec<Event> {
    Vec::new()
}

/// Parse one `/dev/kmsg` record (`prio,seq,usec,flags;message`) into (t_ns since boot, message).
pub fn parse_dev_kmsg_record(_record: &str) -> Option<(u64, String)> {
    None
}

/// Streaming line assembler for live `/dev/kmsg` (and large logs): feed message lines in order,
/// get finished events; continuation lines are folded into the record they belong to.
pub struct KmsgAssembler {
    #[allow(dead_code)]
    source: Source,
}

impl KmsgAssembler {
    pub fn new(source: Source) -> Self {
        KmsgAssembler { source }
    }
    /// Feed one message line (without timestamp prefix) stamped `t_ns` on `clock`.
    pub fn push_line(&mut self, _t_ns: u64, _clock: Clock, _line: &str) -> Vec<Event> {
        Vec::new()
    }
    /// Emit any record still waiting for continuation lines.
    pub fn flush(&mut self) -> Vec<Event> {
        Vec::new()
    }
}
