//! Bounded line reading, shared by the text readers and the journal export reader: a hostile
//! input with no newline cannot grow a buffer without bound.
use std::io::{self, BufRead};

/// Read one line into `buf` (cleared by the caller), keeping at most `max` bytes; the rest of
/// the line is consumed unread. Returns (bytes consumed, whether it was cut).
pub(super) fn read_line<R: BufRead + ?Sized>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<(usize, bool)> {
    let (mut n, mut cut) = (0usize, false);
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok((n, cut));
        }
        let (take, done) = match memchr::memchr(b'\n', avail) {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        if take > room {
            cut = true;
            buf.extend_from_slice(&avail[..room]);
        } else {
            buf.extend_from_slice(&avail[..take]);
        }
        r.consume(take);
        n += take;
        if done {
            return Ok((n, cut));
        }
    }
}
