//! Kernel-log input: recognise amdgpu messages and fold continuation lines into records.
//! Layers, each using only those above it:
//! - `walltime` (+ `months`): civil time, zones and month names on jiff; `years`: the year of
//!   year-less stamps;
//! - `stamp`: one text line → stamps, host, message; `journal`: journal entries;
//! - `lines`: one message → what it says; `assemble`: continuations folded into records;
//! - `boots`: which boot a line belongs to, and the Boot events;
//! - `input`: the reader that drives them; `source`: files, compression, stdin, journalctl.
//!
//! See docs/kmsg.md.
pub mod assemble;
pub mod boots;
mod hold;
pub mod input;
pub mod journal;
pub mod kfd;
mod line;
pub mod lines;
pub mod mesa;
mod months;
pub mod order;
pub mod source;
pub mod stamp;
pub mod walltime;
pub mod years;

pub use assemble::KmsgAssembler;
pub use input::{
    dev_kmsg_facility, parse_dev_kmsg_record, unescape_kmsg, Format, InputStats, LogReader,
};
pub use stamp::Form;

use crate::model::{Event, Source};

/// Parse a whole saved log (any form `analyze` reads; format auto-detected, local time in the
/// system zone) into events in log order, `Boot` events included, boots numbered from 0.
pub fn parse_text(text: &str, source: Source) -> Vec<Event> {
    let mut reader = LogReader::new(Format::Auto, source);
    let mut out = Vec::new();
    // Reading from a byte slice cannot fail.
    let _ = reader.read(text.as_bytes(), &mut |e| out.push(e));
    reader.finish(&mut |e| out.push(e));
    out
}

#[cfg(test)]
mod fuzz;
