//! Kernel-log input: recognise amdgpu messages and fold continuation lines into records.
//! `lines` recognises one message, `assemble` folds continuations (and applies the
//! "most recent device" rule), `input` reads the log formats and timestamps. See docs/kmsg.md.
pub mod assemble;
pub mod input;
pub mod lines;

pub use assemble::KmsgAssembler;
pub use input::{parse_dev_kmsg_record, Format, InputStats, LogReader};

use crate::model::{Event, Source};

/// Parse a whole saved log (plain dmesg, `dmesg -T`, ISO stamps, journalctl text/JSON/export;
/// format auto-detected) into events in log order.
pub fn parse_text(text: &str, source: Source) -> Vec<Event> {
    let mut reader = LogReader::new(Format::Auto, source);
    let mut out = Vec::new();
    // Reading from a byte slice cannot fail.
    let _ = reader.read(text.as_bytes(), &mut |e| out.push(e));
    reader.finish(&mut |e| out.push(e));
    out
}
