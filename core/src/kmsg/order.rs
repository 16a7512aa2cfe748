//! Newest-first logs (`journalctl -r`, `dmesg | tac`): told by their stamps going back, and
//! read in the order the kernel printed them. Continuation lines then follow their header
//! again, and the reset follows its timeout.
use std::io::{self, BufRead, BufReader, Cursor, Read};

use super::journal;
use super::lines::{self, Line};
use super::stamp::{self, LocalTime};
use crate::model::KmsgKind;

/// The start of the input whose stamps decide the order.
const SAMPLE_BYTES: u64 = 1 << 16;
/// The most a newest-first input may hold: it is reversed in memory.
pub const MAX_REVERSED_BYTES: u64 = 64 << 20;

/// The order an input was read in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    OldestFirst,
    /// Newest first; reversed before reading.
    NewestFirst,
    /// Newest first, but longer than [`MAX_REVERSED_BYTES`]: read in the order given.
    NewestFirstTooLong,
}

/// `r` oldest first: its first `SAMPLE_BYTES` (64 KiB) are read to tell the order, and a newest-first
/// input is read whole and its lines reversed.
pub fn oldest_first(mut r: Box<dyn BufRead>, lt: &LocalTime) -> (Box<dyn BufRead>, Order) {
    let mut head = Vec::new();
    // A read error (a truncated compressed stream) comes after the bytes read before it.
    let mut failed = r.by_ref().take(SAMPLE_BYTES).read_to_end(&mut head).err();
    if failed.is_none() && head.len() as u64 == SAMPLE_BYTES {
        failed = r.read_until(b'\n', &mut head).err();
    }
    if !newest_first(&head, lt) {
        let rest: Box<dyn Read> = match failed {
            Some(e) => Box::new(Failed(Some(e))),
            None => r,
        };
        return (
            Box::new(BufReader::new(Cursor::new(head).chain(rest))),
            Order::OldestFirst,
        );
    }
    let room = MAX_REVERSED_BYTES.saturating_sub(head.len() as u64);
    if failed.is_none() {
        failed = r.by_ref().take(room + 1).read_to_end(&mut head).err();
    }
    if failed.is_none() && head.len() as u64 > MAX_REVERSED_BYTES {
        return (
            Box::new(BufReader::new(Cursor::new(head).chain(r))),
            Order::NewestFirstTooLong,
        );
    }
    let lines = Cursor::new(reversed_lines(&head));
    (
        Box::new(BufReader::new(lines.chain(Failed(failed)))),
        Order::NewestFirst,
    )
}

/// A reader that fails once with the error a stream stopped on, then ends.
struct Failed(Option<io::Error>);

impl Read for Failed {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        match self.0.take() {
            Some(e) => Err(e),
            None => Ok(0),
        }
    }
}

/// The lines of `text` in reverse order, each ending in `\n`.
fn reversed_lines(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 1);
    for line in text.split(|&c| c == b'\n').rev() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.is_empty() {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out
}

/// Whether `head` reads newest first. The stamps decide when they step at least twice: at
/// least two steps back and more than four times as many as forward (printk stamps of
/// different CPUs are slightly out of order; a second boot goes back once). Otherwise (stamps
/// all equal, or none) the kernel's order of a hang's lines decides ([`phase`]): a Process line
/// before its timeout or a reset's result before its begin is a step back, the other way a
/// step forward, and more steps back than forward is newest first (a log that starts
/// mid-record has one step back, its orphan continuation, but its next header a step forward).
fn newest_first(head: &[u8], lt: &LocalTime) -> bool {
    let mut lt = LocalTime::new(lt.zone.clone(), lt.reference_ns);
    // Votes of the stamps and of the kernel's order: [back, forward].
    let (mut stamps, mut steps) = ([0u32; 2], [0u32; 2]);
    let mut last: [Option<u64>; 2] = [None, None];
    let mut last_phase = None;
    for line in head.split(|&c| c == b'\n') {
        let text = String::from_utf8_lossy(line);
        let (mono, real, msg) = if text.starts_with('{') {
            let e = journal::parse_json(&text);
            let (m, r) = e.as_ref().map_or((None, None), |e| e.stamps());
            let msg = e
                .and_then(|e| e.message)
                .map(|m| String::from_utf8_lossy(&m).into_owned());
            (m, r, msg.unwrap_or_default())
        } else {
            let s = stamp::split(&text, &mut lt);
            (s.mono_ns, s.real_ns, s.msg.trim_start().to_string())
        };
        if let Some(p) = phase(&msg) {
            if let Some(prev) = last_phase.replace(p) {
                // Steps of one sequence, or a timeout next to a reset's begin.
                let header_and_begin = matches!((prev.1.min(p.1), prev.1.max(p.1)), (1, 3));
                if prev.0 == p.0 || header_and_begin {
                    steps[0] += u32::from(p.1 < prev.1);
                    steps[1] += u32::from(p.1 > prev.1);
                }
            }
        }
        let (clock, t) = match (mono, real) {
            (Some(m), _) => (0, m),
            (None, Some(r)) => (1, r),
            (None, None) => continue,
        };
        if let Some(prev) = last[clock] {
            stamps[0] += u32::from(t < prev);
            stamps[1] += u32::from(t > prev);
        }
        last[clock] = Some(t);
    }
    if stamps[0] + stamps[1] >= 2 {
        return stamps[0] >= 2 && stamps[0] > 4 * stamps[1];
    }
    stamps[0] + steps[0] > stamps[1] + steps[1]
}

/// Where an amdgpu line stands in the kernel's order of one hang: (sequence, step). Sequences:
/// 0 a timeout or fault (1 its header, 2 a continuation), 1 a full reset, 2 a per-ring reset
/// (3 the begin, 4 the result). None: any other line.
fn phase(msg: &str) -> Option<(u8, u8)> {
    let c = lines::classify(msg)?;
    match c.line {
        Line::Cont(_) => Some((0, 2)),
        Line::Record(k) => match k {
            KmsgKind::RingTimeout { .. } | KmsgKind::PageFault { .. } => Some((0, 1)),
            KmsgKind::ResetBegin { .. } => Some((1, 3)),
            KmsgKind::ResetResult { .. } => Some((1, 4)),
            KmsgKind::RingReset { ok: None, .. } => Some((2, 3)),
            KmsgKind::RingReset { .. } => Some((2, 4)),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    fn order(text: &str) -> (String, Order) {
        let lt = LocalTime::new(TimeZone::UTC, 1_798_675_200_000_000_000);
        let (mut r, o) = oldest_first(Box::new(Cursor::new(text.as_bytes().to_vec())), &lt);
        let mut s = String::new();
        r.read_to_string(&mut s).expect("utf-8");
        (s, o)
    }

    #[test]
    fn newest_first_input_is_reversed() {
        let fwd = "[ 1.0] a\n[ 2.0] b\n[ 3.0] c\n";
        assert_eq!(order(fwd), (fwd.to_string(), Order::OldestFirst));
        let rev = "[ 3.0] c\n[ 2.0] b\n[ 1.0] a\n";
        assert_eq!(order(rev), (fwd.to_string(), Order::NewestFirst));
        let journal = "Nov 14 10:46:53 h kernel: c\r\nNov 14 10:46:52 h kernel: b\r\nNov 14 10:46:51 h kernel: a";
        assert_eq!(order(journal).1, Order::NewestFirst);
        // Two boots concatenated go back once: oldest first.
        let boots = "[ 5.0] a\n[ 6.0] b\n[ 1.0] c\n[ 2.0] d\n";
        assert_eq!(order(boots).1, Order::OldestFirst);
    }
}
