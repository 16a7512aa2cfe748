//! Lines held back while the year of year-less stamps may still change: a stamp later in the
//! stream can show that everything before it was a year too late (`years.rs`), and events
//! already sent cannot be re-dated. So from the first year-less stamp on, the reader keeps the
//! lines that matter (those it would parse) and reads them again, from the stamp state saved
//! before the first of them, once the stream's years are settled: at the end of the input, or
//! when [`MAX_HELD_BYTES`] is reached (later roll-backs then only reach later lines).
use super::stamp::StreamState;

/// Bytes of held lines before they are read with the years known so far (a journal of amdgpu
/// lines this large is a fault storm; memory stays bounded).
pub const MAX_HELD_BYTES: usize = 16 << 20;

pub struct Hold {
    /// The stamp state before the first held line, and the held lines (text, mentions amdgpu).
    held: Option<(StreamState, Vec<(String, bool)>)>,
    bytes: usize,
    limit: usize,
    /// Released once: from then on lines are read as they come.
    released: bool,
}

impl Default for Hold {
    fn default() -> Self {
        Hold::with_limit(MAX_HELD_BYTES)
    }
}

impl Hold {
    /// A hold released at `limit` bytes (tests use a small one).
    pub fn with_limit(limit: usize) -> Self {
        Hold {
            held: None,
            bytes: 0,
            limit,
            released: false,
        }
    }

    /// Whether a year-less stamp would start holding now.
    pub fn can_start(&self) -> bool {
        self.held.is_none() && !self.released
    }

    pub fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// Start holding with `line`, the first with a year-less stamp; `saved`: the state before it.
    pub fn start(&mut self, saved: StreamState, line: &str, mentions: bool) {
        self.held = Some((saved, Vec::new()));
        self.push(line, mentions);
    }

    /// Hold one more line; true when the bound is reached and the lines should be released.
    pub fn push(&mut self, line: &str, mentions: bool) -> bool {
        if let Some((_, lines)) = &mut self.held {
            // The text and what holding it costs besides (the String and the Vec slot).
            self.bytes += line.len() + std::mem::size_of::<(String, bool)>();
            lines.push((line.to_string(), mentions));
        }
        self.bytes >= self.limit
    }

    /// The saved state and the held lines, once; holding is over for this stream.
    pub fn take(&mut self) -> Option<(StreamState, Vec<(String, bool)>)> {
        let h = self.held.take()?;
        self.released = true;
        self.bytes = 0;
        Some(h)
    }
}
