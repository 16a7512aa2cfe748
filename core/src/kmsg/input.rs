//! The log reader: one line (or journal entry) at a time from a `BufRead`, through the stamp
//! parser ([`super::stamp`]), the boot tracker ([`super::boots`]) and the assembler, into events.
//! Memory is flat whatever the input: lines are cut at [`MAX_LINE_BYTES`], records at
//! [`super::assemble::MAX_RECORD_LINES`], and each cut is counted.
use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};

use jiff::tz::TimeZone;
use memchr::memmem;

use super::assemble::{render_stamped, KmsgAssembler, LineHook};
use super::boots::Boots;
use super::hold::Hold;
use super::journal::{self, Entry, ExportEnd, ExportReader};
use super::lines;
use super::stamp::{self, Form, LocalTime, Stamped};
use super::walltime::{iso_utc_offset, now_ns, system_zone};
use crate::model::{Clock, Event, EventBody, Source};

/// Longest line read; the rest of a longer line is skipped (and counted).
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Lines sampled at the start of an input to tell its form (later lines are only parsed when
/// they mention amdgpu or start a boot).
const SAMPLE_LINES: u64 = 64;
/// First lines kept, escaped, to show when nothing was understood.
const SHOWN_LINES: usize = 5;

/// Which format to read; `Auto` decides per line (export is detected on the first line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Format {
    Auto,
    Dmesg,
    JournalJson,
    JournalExport,
    Kmsg,
}

/// What the reader saw besides events.
#[derive(Clone, Debug, Default)]
pub struct InputStats {
    pub lines: u64,
    pub bytes: u64,
    /// Lines that were not valid UTF-8 (decoded lossily) or JSON lines that did not parse.
    pub unparseable: u64,
    /// Lines recognised as amdgpu messages.
    pub amdgpu_lines: u64,
    pub orphan_continuations: u64,
    /// Continuation lines beyond a record's bound (counted, not kept).
    pub dropped_continuations: u64,
    /// Lines (or journal fields) longer than [`MAX_LINE_BYTES`], cut.
    pub long_lines: u64,
    /// Journal entries read (JSON or export).
    pub entries: u64,
    /// Boots seen.
    pub boots: u32,
    /// Stamped lines whose month name no locale knows (their date is approximate).
    pub unknown_month_lines: u64,
    /// Forms of the sampled and amdgpu lines.
    pub forms: BTreeMap<Form, u64>,
    /// The first lines, escaped, for the "not recognised" message.
    pub first_lines: Vec<String>,
    /// The input stopped inside a journal export field.
    pub truncated: bool,
    /// Records found joined onto another record's line (a paste that lost its newlines) and
    /// read as lines of their own.
    pub joined_records: u64,
    /// Lines that were the rest of a line a terminal wrapped, joined back onto it.
    pub wrapped_lines: u64,
    /// The input was newest first (`journalctl -r`) and was read reversed.
    pub newest_first: bool,
    /// Text lines that mention amdgpu, read as an amdgpu message or not.
    pub amdgpu_text_lines: u64,
    /// Up to three of those lines that no reader understood, escaped, for the error.
    pub unread_amdgpu: Vec<String>,
    /// Mesa verdict lines read from journal entries (`kmsg::mesa`), and those without a
    /// `_PID` to join them by (counted, not used).
    pub mesa_verdicts: u64,
    pub mesa_without_pid: u64,
}

impl InputStats {
    /// Whether anything in the input was recognised as a kernel log.
    pub fn understood(&self) -> bool {
        !self.amdgpu_unread() && self.recognised_anything()
    }

    /// The input mentions amdgpu, yet not one line of it was read as an amdgpu message: a
    /// form no reader knows, not a log without amdgpu messages.
    pub fn amdgpu_unread(&self) -> bool {
        self.amdgpu_text_lines > 0 && self.amdgpu_lines == 0
    }

    fn recognised_anything(&self) -> bool {
        self.amdgpu_lines > 0
            || self.entries > 0
            || self
                .forms
                .keys()
                .any(|f| !matches!(f, Form::Bare | Form::Embedded))
    }

    /// The most common form, for the summary.
    pub fn main_form(&self) -> Option<Form> {
        self.forms
            .iter()
            .filter(|(f, _)| **f != Form::Bare || self.forms.len() == 1)
            .max_by_key(|(_, n)| **n)
            .map(|(f, _)| *f)
    }

    pub fn add(&mut self, o: &InputStats) {
        self.lines += o.lines;
        self.bytes += o.bytes;
        self.unparseable += o.unparseable;
        self.amdgpu_lines += o.amdgpu_lines;
        self.orphan_continuations += o.orphan_continuations;
        self.dropped_continuations += o.dropped_continuations;
        self.long_lines += o.long_lines;
        self.entries += o.entries;
        self.boots += o.boots;
        self.unknown_month_lines += o.unknown_month_lines;
        self.amdgpu_text_lines += o.amdgpu_text_lines;
        self.mesa_verdicts += o.mesa_verdicts;
        self.mesa_without_pid += o.mesa_without_pid;
        for (f, n) in &o.forms {
            *self.forms.entry(*f).or_default() += n;
        }
    }
}

/// Parse a `/dev/kmsg` record `prio,seq,usec,flags[,…];message[\n KEY=value…]` → (t_ns since
/// boot, message). One `read()` of /dev/kmsg returns the record with its dictionary lines
/// (` SUBSYSTEM=pci`, ` DEVICE=+pci:0000:03:00.0`); they are not part of the message.
pub fn parse_dev_kmsg_record(record: &str) -> Option<(u64, String)> {
    let (head, msg) = record.split_once(';')?;
    let mut it = head.split(',');
    it.next()?.parse::<u32>().ok()?;
    it.next()?.parse::<u64>().ok()?;
    let usec: u64 = it.next()?.parse().ok()?;
    let msg = msg.split('\n').next().unwrap_or("");
    let msg = msg.trim_end_matches('\r');
    Some((usec.saturating_mul(1000), unescape_kmsg(msg)))
}

/// The syslog facility of a `/dev/kmsg` record (`prio` is `facility << 3 | level`). The
/// kernel's own records have facility 0; userspace writing to /dev/kmsg (journald's
/// `ForwardToKMsg=`, `echo > /dev/kmsg`) gets LOG_USER (1) unless it says otherwise.
pub fn dev_kmsg_facility(record: &str) -> Option<u32> {
    let prio: u32 = record.split([',', ';']).next()?.parse().ok()?;
    Some(prio >> 3)
}

/// /dev/kmsg escapes every byte that is not printable ASCII as `\xNN` (and `\` itself as
/// `\x5c`); `dmesg` shows the bytes. Undone once, here, so a live name is the name `analyze`
/// shows (`zëd漢`, not `z\xc3\xabd...`). Control bytes stay escaped: a line stays one line.
pub fn unescape_kmsg(msg: &str) -> String {
    if !msg.contains("\\x") {
        return msg.to_string();
    }
    let b = msg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let byte = (b[i] == b'\\' && b.get(i + 1) == Some(&b'x'))
            .then(|| std::str::from_utf8(b.get(i + 2..i + 4)?).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(|&v| v >= 0x20 && v != 0x7f);
        match byte {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The narrowest terminal width a wrapped line is looked for at.
const MIN_WRAP_WIDTH: usize = 64;

/// Widths seen, to tell a terminal's wrapping: the widest amdgpu line so far and the last
/// piece.
#[derive(Default)]
struct Wrap {
    widest: usize,
    /// amdgpu lines (and pieces) as wide as `widest`: a terminal's width recurs.
    at_widest: u32,
    piece: usize,
}

impl Wrap {
    fn piece(&mut self, chars: usize) {
        self.piece = chars;
        if chars > self.widest {
            (self.widest, self.at_widest) = (chars, 0);
        }
        self.at_widest += u32::from(chars == self.widest && chars > 0);
    }
}

/// Characters of a line without its line end (UTF-8 continuation bytes not counted).
fn text_chars(line: &[u8]) -> usize {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    line[..end].iter().filter(|&&c| c & 0xC0 != 0x80).count()
}

/// Streams a log through the recogniser and assembler, calling `sink` per event in log order.
pub struct LogReader {
    format: Format,
    asm: KmsgAssembler,
    boots: Boots,
    time: LocalTime,
    amdgpu: memmem::Finder<'static>,
    /// `[drm:`: amdgpu's `DRM_ERROR` lines name no module when amdgpu is built in
    /// (`[drm:gfx_v9_0_bad_op_irq] …`).
    drm: memmem::Finder<'static>,
    /// The line hook's unprefixed texts ([`LineHook::unprefixed`]): lines holding one pass
    /// the "mentions amdgpu" pre-filters too.
    unprefixed: Vec<memmem::Finder<'static>>,
    linux_version: memmem::Finder<'static>,
    hold: Hold,
    /// Relative-time dmesg was seen: every line's stamp is read, not only amdgpu lines'.
    every_stamp: bool,
    /// The `journalctl -o verbose` entry whose fields are being read.
    verbose: Option<Entry>,
    pub stats: InputStats,
}

impl LogReader {
    /// A reader for one stream whose boots are numbered from 0, reading local time in the
    /// system zone.
    pub fn new(format: Format, source: Source) -> Self {
        Self::with_options(format, source, 0, system_zone(), now_ns())
    }

    /// `first_seq`: the boot number this stream starts at (unique across the files of one run);
    /// `zone` and `reference_ns`: how local-time stamps are read and the instant year-less
    /// stamps are not after (the file's modification time, else now).
    pub fn with_options(
        format: Format,
        source: Source,
        first_seq: u32,
        zone: TimeZone,
        reference_ns: u64,
    ) -> Self {
        LogReader {
            format,
            asm: KmsgAssembler::new(source),
            boots: Boots::new(first_seq, source),
            time: LocalTime::new(zone, reference_ns),
            amdgpu: memmem::Finder::new(b"amdgpu"),
            drm: memmem::Finder::new(b"[drm:"),
            unprefixed: Vec::new(),
            linux_version: memmem::Finder::new(b"Linux version "),
            hold: Hold::default(),
            every_stamp: false,
            verbose: None,
            stats: InputStats::default(),
        }
    }

    /// Hand every amdgpu line to `hook` as well (the KFD recogniser; see
    /// [`KmsgAssembler::with_line_hook`]).
    pub fn with_line_hook(mut self, hook: LineHook) -> Self {
        self.unprefixed = hook
            .unprefixed
            .iter()
            .map(|u| memmem::Finder::new(u.as_bytes()))
            .collect();
        self.asm =
            std::mem::replace(&mut self.asm, KmsgAssembler::new(Source::Log)).with_line_hook(hook);
        self
    }

    /// The boot number the next stream should start at.
    pub fn next_seq(&self) -> u32 {
        self.boots.next_seq()
    }

    /// Read all of `r`. I/O errors (including corrupt compressed input) are returned, after
    /// the events read so far went to `sink`; bad content never is an error.
    pub fn read<R: BufRead>(&mut self, mut r: R, sink: &mut dyn FnMut(Event)) -> io::Result<()> {
        let mut buf = Vec::with_capacity(4096);
        // The previous line, held until the next shows whether it was wrapped (see `wraps`).
        let mut held = Vec::with_capacity(4096);
        let mut wrap = Wrap::default();
        loop {
            buf.clear();
            let (n, cut) = super::line::read_line(&mut r, &mut buf, MAX_LINE_BYTES)?;
            if n == 0 {
                if !held.is_empty() {
                    self.raw_line(&held, sink);
                }
                self.end_verbose(sink);
                return Ok(());
            }
            if self.stats.lines == 0 && self.stats.entries == 0 {
                let export = match self.format {
                    Format::JournalExport => true,
                    Format::Auto => journal::looks_like_export(&buf),
                    _ => false,
                };
                if export {
                    return self.read_export(buf, r, sink);
                }
            }
            self.stats.lines += 1;
            self.stats.bytes += n as u64;
            if cut {
                self.stats.long_lines += 1;
            }
            if self.verbose_line(&buf, &mut held, sink) {
                continue;
            }
            if !held.is_empty() && self.wraps(&wrap, &held, &buf) {
                // A terminal wrapped the line: its rest goes back on it.
                while matches!(held.last(), Some(b'\n' | b'\r')) {
                    held.pop();
                }
                held.extend_from_slice(&buf);
                wrap.piece(text_chars(&buf));
                self.stats.wrapped_lines += 1;
                continue;
            }
            if !held.is_empty() {
                self.raw_line(&held, sink);
            }
            std::mem::swap(&mut held, &mut buf);
            // Only an amdgpu line is looked at as wrapped: the hot path counts no others.
            let chars = if self.mentions(&held) {
                text_chars(&held)
            } else {
                0
            };
            wrap.piece(chars);
        }
    }

    /// A line of `journalctl -o verbose`, read here: an entry's header (the held line is read
    /// first) or one of its indented fields. False for any other line, which ends the entry.
    fn verbose_line(
        &mut self,
        buf: &[u8],
        held: &mut Vec<u8>,
        sink: &mut dyn FnMut(Event),
    ) -> bool {
        let field =
            self.verbose.is_some() && buf.first().is_some_and(|c| *c == b' ' || *c == b'\t');
        if !field && memmem::find(buf, b" [s=").is_none() {
            self.end_verbose(sink);
            return false;
        }
        let text = String::from_utf8_lossy(buf);
        if let Some(e) = self.verbose.as_mut().filter(|_| field) {
            // Any other indented line is the rest of a multi-line value: skipped.
            journal::verbose_field(e, &text);
            return true;
        }
        let Some(e) = journal::verbose_header(&text) else {
            self.end_verbose(sink);
            return false;
        };
        if !held.is_empty() {
            self.raw_line(held, sink);
            held.clear();
        }
        self.end_verbose(sink);
        if self.stats.first_lines.len() < SHOWN_LINES {
            self.stats.first_lines.push(escape_line(buf));
        }
        *self.stats.forms.entry(Form::JournalVerbose).or_default() += 1;
        self.verbose = Some(e);
        true
    }

    /// Reads the verbose entry whose fields are complete, if any.
    fn end_verbose(&mut self, sink: &mut dyn FnMut(Event)) {
        if let Some(e) = self.verbose.take() {
            self.entry(e, sink);
        }
    }

    /// Whether `next` is the rest of `held`, wrapped by a terminal at its width: `held`'s last
    /// piece is as wide as the widest amdgpu line so far (at least [`MIN_WRAP_WIDTH`] characters) and
    /// holds an amdgpu message, and `next` starts no line of its own (no stamp, no amdgpu prefix,
    /// no journal separator).
    fn wraps(&self, wrap: &Wrap, held: &[u8], next: &[u8]) -> bool {
        if wrap.piece < MIN_WRAP_WIDTH || wrap.piece != wrap.widest || !self.mentions(held) {
            return false;
        }
        let next = String::from_utf8_lossy(next);
        let next = next.trim_end_matches(['\n', '\r']);
        let t = next.trim_start();
        // /dev/kmsg dictionary lines (` SUBSYSTEM=pci`) are no text of the line before.
        let dictionary = next.starts_with(' ')
            && t.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.bytes()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
            });
        if t.is_empty()
            || t.starts_with("-- ")
            || t.starts_with('{')
            || t.starts_with("Linux version ")
            || dictionary
        {
            return false;
        }
        // Without a stamp on the held line, any unrelated line could follow the widest one:
        // the width must have recurred.
        let held_text = String::from_utf8_lossy(held);
        let stamped = stamp::split(&held_text, &mut self.time.scratch()).form != Form::Bare;
        if !stamped && wrap.at_widest < 2 {
            return false;
        }
        let st = stamp::split(next, &mut self.time.scratch());
        st.form == Form::Bare
            && lines::strip_prefix(t).is_none()
            && stamp::embedded(next, &mut self.time.scratch()).is_none()
    }

    /// One line of any line-based form.
    fn raw_line(&mut self, buf: &[u8], sink: &mut dyn FnMut(Event)) {
        if self.stats.first_lines.len() < SHOWN_LINES {
            self.stats.first_lines.push(escape_line(buf));
        }
        let json = self.format == Format::JournalJson
            || (self.format == Format::Auto && buf.first() == Some(&b'{'));
        if json {
            return self.json_line(buf, sink);
        }
        let sample = self.stats.lines <= SAMPLE_LINES;
        let mentions = self.mentions(buf);
        // Hot path: most lines of a big log are unrelated. Only boot markers are looked for,
        // and the stamps of relative-time dmesg (each line's delta counts).
        if !mentions && !sample && !self.every_stamp {
            let marker = buf.starts_with(b"-- ") || self.linux_version.find(buf).is_some();
            if !marker {
                return;
            }
        }
        let text = match std::str::from_utf8(buf) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => {
                self.stats.unparseable += 1;
                String::from_utf8_lossy(buf)
            }
        };
        let text = text.trim_end_matches(['\n', '\r']);
        let starts = if mentions {
            stamp::joined_starts(text, &self.time)
        } else {
            Vec::new()
        };
        if starts.is_empty() {
            return self.text_line(text, mentions, sink);
        }
        // Records joined on one line are read as the lines they were.
        self.stats.joined_records += starts.len() as u64;
        let ends = starts.iter().copied().chain([text.len()]);
        for (a, z) in std::iter::once(0).chain(starts.iter().copied()).zip(ends) {
            let part = text[a..z].trim_end();
            self.text_line(part, self.mentions(part.as_bytes()), sink);
        }
    }

    /// The line mentions amdgpu, or holds one of the line hook's unprefixed texts.
    fn mentions(&self, buf: &[u8]) -> bool {
        self.amdgpu.find(buf).is_some()
            || self.drm.find(buf).is_some()
            || self.unprefixed.iter().any(|f| f.find(buf).is_some())
    }

    /// A message for the assembler: an amdgpu prefix, or a line the hook wants without one.
    fn for_assembler(&self, msg: &str) -> bool {
        lines::strip_prefix(msg).is_some() || self.asm.wants_unprefixed(msg)
    }

    /// A text line worth parsing (it mentions amdgpu, is sampled, or marks a boot). From the
    /// first year-less stamp on, lines are held until the stream's years are settled (hold.rs).
    fn text_line(&mut self, s: &str, mentions: bool, sink: &mut dyn FnMut(Event)) {
        if self.hold.is_holding() {
            if !s.starts_with("-- ") {
                // Read only to follow the years; the line is read for real on release.
                let form = stamp::split(s, &mut self.time).form;
                self.every_stamp |= form == Form::DmesgRel;
            }
            if self.hold.push(s, mentions) {
                self.release(sink);
            }
            return;
        }
        if let Some(rest) = s.strip_prefix("-- ") {
            return self.separator(rest, sink);
        }
        // /dev/kmsg dictionary continuation lines (" SUBSYSTEM=pci") carry no message.
        if s.starts_with(' ') && s.contains('=') && !s.contains(": ") {
            return;
        }
        let saved = self.hold.can_start().then(|| self.time.state.clone());
        let st = stamp::split(s, &mut self.time);
        self.every_stamp |= st.form == Form::DmesgRel;
        if let (true, Some(saved)) = (st.year_inferred, saved) {
            return self.hold.start(saved, s, mentions);
        }
        let before = self.stats.amdgpu_lines;
        self.stamped(s, st, mentions, sink);
        if mentions {
            self.note_amdgpu_text(s, before);
        }
    }

    /// Count a line that mentions amdgpu; keep a few that were not read, for the error.
    fn note_amdgpu_text(&mut self, s: &str, amdgpu_lines_before: u64) {
        self.stats.amdgpu_text_lines += 1;
        if self.stats.amdgpu_lines == amdgpu_lines_before && self.stats.unread_amdgpu.len() < 3 {
            self.stats.unread_amdgpu.push(escape_line(s.as_bytes()));
        }
    }

    /// Read the held lines again from the state before them, with the years now known.
    fn release(&mut self, sink: &mut dyn FnMut(Event)) {
        let Some((saved, lines)) = self.hold.take() else {
            return;
        };
        let years = self.time.state.years.settled();
        self.time.state = saved;
        self.time.state.years = years;
        for (line, mentions) in lines {
            self.text_line(&line, mentions, sink);
        }
    }

    /// A split line: its message to the assembler, its stamp to the boot tracker.
    fn stamped<'a>(
        &mut self,
        s: &'a str,
        mut st: Stamped<'a>,
        mentions: bool,
        sink: &mut dyn FnMut(Event),
    ) {
        let mut amdgpu = mentions && self.for_assembler(st.msg);
        // A prefix of no known form may still hold an amdgpu message (console captures, log
        // shippers). Known forms locate the message themselves.
        if mentions && !amdgpu && st.form == Form::Bare {
            if let Some(e) = stamp::embedded(s, &mut self.time) {
                if self.for_assembler(e.msg) {
                    st = e;
                    amdgpu = true;
                }
            }
        }
        self.count_form(st.form, st.unknown_month);
        if let Some(rest) = st.msg.strip_prefix("Linux version ") {
            self.boot_marker(None, sink);
            self.boots.kernel(rest);
        }
        if let Some(h) = st.host {
            self.boots.hostname(h);
        }
        // The line as the record keeps it: as read, or with the stamps it was read as when the
        // original would not read back the same (no prefix; relative times).
        let shown = match st.form {
            Form::Kmsg | Form::Bare | Form::Embedded => None,
            Form::DmesgRel => Some(std::borrow::Cow::Owned(render_entry(
                st.mono_ns, st.real_ns, None, st.msg,
            ))),
            _ => Some(std::borrow::Cow::Borrowed(s)),
        };
        if mentions {
            self.message(
                st.mono_ns,
                st.real_ns,
                st.msg,
                amdgpu,
                shown.as_deref(),
                sink,
            );
        } else {
            self.stamp_only(st.mono_ns, st.real_ns, sink);
        }
    }

    fn count_form(&mut self, form: Form, unknown_month: bool) {
        *self.stats.forms.entry(form).or_default() += 1;
        if unknown_month {
            self.stats.unknown_month_lines += 1;
        }
    }

    /// `-- Boot <id> --`, `-- Reboot --` (journalctl between boots); other `-- … --` notes
    /// (`-- No entries --`, `-- Logs begin at … --`) say nothing about boots.
    fn separator(&mut self, rest: &str, sink: &mut dyn FnMut(Event)) {
        if let Some(id) = rest
            .strip_prefix("Boot ")
            .and_then(|r| r.strip_suffix(" --"))
        {
            self.boot_marker(Some(id.trim()), sink);
        } else if rest.starts_with("Reboot --") {
            self.boot_marker(None, sink);
        }
    }

    fn boot_marker(&mut self, id: Option<&str>, sink: &mut dyn FnMut(Event)) {
        if self.boots.marker(id) {
            self.flush(sink);
        }
    }

    /// A line that carries a stamp but no amdgpu message: it can still move the boot clock.
    fn stamp_only(&mut self, mono: Option<u64>, real: Option<u64>, sink: &mut dyn FnMut(Event)) {
        let (_, new_boot) = self.boots.resolve(mono, real);
        if new_boot {
            self.flush(sink);
        }
    }

    /// One message with its stamps → the assembler. `amdgpu`: the message has an amdgpu
    /// prefix (so the assembler may make a record of it, and the boot is announced first).
    fn message(
        &mut self,
        mono: Option<u64>,
        real: Option<u64>,
        msg: &str,
        amdgpu: bool,
        shown: Option<&str>,
        sink: &mut dyn FnMut(Event),
    ) {
        let ((t, clock), new_boot) = self.boots.resolve(mono, real);
        if new_boot {
            self.flush(sink);
        }
        if !amdgpu {
            return;
        }
        self.boots.announce(sink);
        let before = self.asm.stats.recognised;
        for e in self.asm.push(t, clock, msg, shown) {
            sink(e);
        }
        self.stats.amdgpu_lines += self.asm.stats.recognised - before;
    }

    fn json_line(&mut self, buf: &[u8], sink: &mut dyn FnMut(Event)) {
        // Cheap pre-filter: only amdgpu entries or byte-array messages are worth a JSON parse.
        let maybe = self.mentions(buf) || byte_array_message(buf);
        if !maybe {
            self.stats.entries += 1;
            *self.stats.forms.entry(Form::JournalJson).or_default() += 1;
            return;
        }
        let s = String::from_utf8_lossy(buf);
        match journal::parse_json(&s) {
            Some(e) => {
                *self.stats.forms.entry(Form::JournalJson).or_default() += 1;
                self.entry(e, sink);
            }
            None => self.stats.unparseable += 1,
        }
    }

    /// One journal entry (JSON or export).
    fn entry(&mut self, e: Entry, sink: &mut dyn FnMut(Event)) {
        self.stats.entries += 1;
        let Some(msg) = &e.message else { return };
        if !self.mentions(msg) && memmem::find(msg, b"Linux version ").is_none() {
            return;
        }
        if let Some(id) = &e.boot_id {
            if self.boots.boot_id(id) {
                self.flush(sink);
            }
        }
        if let Some(h) = &e.hostname {
            self.boots.hostname(h);
        }
        let msg = String::from_utf8_lossy(msg);
        let msg = msg.trim_end_matches(['\n', '\r']);
        let (mono, real) = e.stamps();
        if let Some(verdict) = super::mesa::verdict(msg) {
            return self.mesa_verdict(&e, verdict, (mono, real), sink);
        }
        if let Some(rest) = msg.strip_prefix("Linux version ") {
            if e.boot_id.is_none() {
                self.boot_marker(None, sink);
            }
            self.boots.kernel(rest);
        }
        let shown = render_entry(mono, real, e.hostname.as_deref(), msg);
        let amdgpu = self.for_assembler(msg);
        self.message(mono, real, msg, amdgpu, Some(&shown), sink);
    }

    /// Mesa's verdict in a process's journal entry: an event of its own, joined to processes
    /// by `_PID` (an entry without one names no process and is only counted).
    fn mesa_verdict(
        &mut self,
        e: &Entry,
        verdict: crate::model::MesaVerdict,
        (mono, real): (Option<u64>, Option<u64>),
        sink: &mut dyn FnMut(Event),
    ) {
        let Some(pid) = e.pid.filter(|&p| p != 0) else {
            self.stats.mesa_without_pid += 1;
            return;
        };
        let ((t_ns, clock), new_boot) = self.boots.resolve(mono, real);
        if new_boot {
            self.flush(sink);
        }
        self.boots.announce(sink);
        let comm = e
            .comm
            .clone()
            .or_else(|| e.ident.clone())
            .unwrap_or_default();
        let logger = e.ident.clone().filter(|i| *i != comm);
        self.stats.mesa_verdicts += 1;
        sink(Event {
            t_ns,
            clock,
            source: self.boots.source(),
            gpu: None,
            body: EventBody::MesaVerdict {
                task: crate::model::Task::new(pid, pid, comm),
                verdict,
                logger,
            },
        });
    }

    /// `journalctl -o export`, entry by entry.
    fn read_export<R: BufRead>(
        &mut self,
        first: Vec<u8>,
        r: R,
        sink: &mut dyn FnMut(Event),
    ) -> io::Result<()> {
        self.stats.first_lines.push(escape_line(&first));
        let mut r = io::Cursor::new(first).chain(r);
        let mut x = ExportReader::new();
        loop {
            let step = x.next(&mut r);
            self.stats.bytes = x.bytes;
            self.stats.long_lines = x.long_fields;
            match step? {
                Ok(Some(e)) => {
                    *self.stats.forms.entry(Form::JournalExport).or_default() += 1;
                    self.stats.lines += 1;
                    self.entry(e, sink);
                }
                Ok(None) => return Ok(()),
                Err(ExportEnd::Truncated) => {
                    self.stats.truncated = true;
                    self.stats.unparseable += 1;
                    return Ok(());
                }
            }
        }
    }

    fn flush(&mut self, sink: &mut dyn FnMut(Event)) {
        for e in self.asm.flush() {
            sink(e);
        }
    }

    /// End of input: read the held lines, emit records still waiting for continuation lines.
    pub fn finish(&mut self, sink: &mut dyn FnMut(Event)) {
        self.release(sink);
        self.flush(sink);
        self.stats.orphan_continuations = self.asm.stats.orphan_continuations;
        self.stats.dropped_continuations = self.asm.stats.dropped_continuations;
        self.stats.boots = self.boots.count;
    }
}

/// Whether a JSON entry's MESSAGE is a byte array (`"MESSAGE": [97, …]`, non-UTF-8 text).
fn byte_array_message(buf: &[u8]) -> bool {
    memmem::find_iter(buf, b"\"MESSAGE\":").any(|i| {
        buf[i + 10..]
            .iter()
            .find(|c| !c.is_ascii_whitespace())
            .is_some_and(|&c| c == b'[')
    })
}

/// A journal entry as a log line that reads back to the same stamps, host and message:
/// `2026-11-22T10:00:00.000000+00:00 host kernel: [  135.794048] msg` (the rsyslog shape).
fn render_entry(mono: Option<u64>, real: Option<u64>, host: Option<&str>, msg: &str) -> String {
    let host = host
        .filter(|h| super::boots::plausible_host(h))
        .map(|h| format!("{h} "))
        .unwrap_or_default();
    match (mono, real) {
        (Some(m), Some(r)) => {
            format!(
                "{} {host}kernel: {}",
                iso_utc_offset(r),
                render_stamped(m, Clock::Monotonic, msg)
            )
        }
        (None, Some(r)) => format!("{} {host}kernel: {msg}", iso_utc_offset(r)),
        (Some(m), None) => render_stamped(m, Clock::Monotonic, msg),
        (None, None) => msg.to_string(),
    }
}

/// A line as it may be shown on a terminal: control bytes and invalid UTF-8 as `\xNN`, cut
/// at 160 characters.
pub fn escape_line(buf: &[u8]) -> String {
    let text = String::from_utf8_lossy(buf);
    let mut out = String::new();
    for (i, c) in text.trim_end_matches(['\n', '\r']).chars().enumerate() {
        if i >= 160 {
            out.push('…');
            break;
        }
        match c {
            '\u{fffd}' => out.push_str("\\x??"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BootInfo, EventBody, KmsgKind};

    const S: u64 = 1_000_000_000;

    fn read_with(data: &[u8], f: Format, zone: TimeZone) -> (Vec<Event>, InputStats) {
        // Reference instant: 2026-12-01T00:00:00Z.
        let mut r = LogReader::with_options(f, Source::Log, 0, zone, 1_796_083_200 * S);
        let mut out = Vec::new();
        r.read(data, &mut |e| out.push(e)).unwrap();
        r.finish(&mut |e| out.push(e));
        (out, r.stats)
    }
    fn read(data: &[u8], f: Format) -> (Vec<Event>, InputStats) {
        read_with(data, f, TimeZone::UTC)
    }
    fn records(ev: &[Event]) -> Vec<&Event> {
        ev.iter()
            .filter(|e| matches!(e.body, EventBody::Kmsg(_)))
            .collect()
    }
    fn boots(ev: &[Event]) -> Vec<BootInfo> {
        ev.iter()
            .filter_map(|e| match &e.body {
                EventBody::Boot(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }
    fn testdata(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/src/kmsg/testdata/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }
    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../testdata/dmesg/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }
    fn kinds(ev: &[Event]) -> Vec<String> {
        records(ev)
            .iter()
            .map(|e| match &e.body {
                EventBody::Kmsg(r) => format!("{:?}", std::mem::discriminant(&r.kind)),
                _ => String::new(),
            })
            .collect()
    }

    #[test]
    fn kmsg_record_parsing_strips_dictionary_lines() {
        assert_eq!(
            parse_dev_kmsg_record("6,1234,135794048,-;msg\n"),
            Some((135_794_048_000, "msg".to_string()))
        );
        // One read() of /dev/kmsg: the record and its dictionary.
        assert_eq!(
            parse_dev_kmsg_record("3,77,45768561065,-;amdgpu 0000:2f:00.0: amdgpu: MODE1 reset\n SUBSYSTEM=pci\n DEVICE=+pci:0000:2f:00.0\n"),
            Some((45_768_561_065_000, "amdgpu 0000:2f:00.0: amdgpu: MODE1 reset".to_string()))
        );
        assert_eq!(parse_dev_kmsg_record("garbage"), None);
    }

    #[test]
    fn dev_kmsg_escapes_are_undone_once_and_user_records_are_told_apart() {
        let r = "3,9,1000,-;amdgpu: Process z\\xc3\\xabd\\xe6\\xbc\\xa2 pid 1 a\\x5cx41 \\x1b[2J \\x0a \\xzz \\x4";
        let (_, m) = parse_dev_kmsg_record(r).unwrap();
        assert_eq!(
            m,
            "amdgpu: Process zëd漢 pid 1 a\\x41 \\x1b[2J \\x0a \\xzz \\x4"
        );
        assert_eq!(dev_kmsg_facility("3,9,1000,-;amdgpu: x"), Some(0));
        assert_eq!(dev_kmsg_facility("14,9,1000,-;amdgpu: x"), Some(1));
        assert_eq!(dev_kmsg_facility("garbage"), None);
    }

    #[test]
    fn unstamped_lines_take_previous_stamp() {
        let (ev, _) = read(b"[  5.5] amdgpu 0000:03:00.0: amdgpu: MODE1 reset\namdgpu 0000:03:00.0: amdgpu: MODE2 reset\n", Format::Auto);
        assert_eq!(
            records(&ev).iter().map(|e| e.t_ns).collect::<Vec<_>>(),
            [5_500_000_000, 5_500_000_000]
        );
    }

    #[test]
    fn journal_json_matches_dmesg() {
        let (want, _) = read(&fixture("v710-zed-fault-then-timeout.log"), Format::Auto);
        let (got, st) = read(&testdata("v710-zed.journal.json"), Format::Auto);
        assert_eq!(kinds(&got), kinds(&want));
        let rec = records(&got);
        assert_eq!(rec.len(), 7);
        assert_eq!(
            (rec[0].t_ns, rec[0].clock),
            (135_794_048_000, Clock::Monotonic)
        );
        assert_eq!(st.unparseable, 0);
        let EventBody::Kmsg(r) = &rec[3].body else {
            panic!()
        };
        assert!(
            matches!(&r.kind, KmsgKind::RingTimeout { task: Some(t), .. } if t.comm == "Xwayland")
        );
        // The journal's offset and host name reach the Boot event; the record keeps both stamps.
        let b = boots(&got);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].hostname.as_deref(), Some("v710"));
        assert_eq!(
            b[0].realtime_offset_ns,
            Some((1_795_000_135_794_048 - 135_794_053) * 1000 + 5000 - 5000)
        );
        assert!(r.lines[0].ends_with("v710 kernel: [  146.437245] amdgpu 0002:00:00.0: amdgpu: ring gfx_0.0.0 timeout, signaled seq=571734509, emitted seq=571734511"), "{:?}", r.lines);
    }

    #[test]
    fn journal_export_with_binary_field() {
        let (got, _) = read(&testdata("v710-zed.journal.export"), Format::Auto);
        let rec = records(&got);
        assert_eq!(rec.len(), 7, "{got:#?}");
        assert_eq!(rec[6].t_ns, 146_667_901_000);
        let EventBody::Kmsg(r) = &rec[6].body else {
            panic!()
        };
        assert_eq!(r.kind, KmsgKind::ParserInitFailed { errno: -125 });
    }

    #[test]
    fn kmsg_records_skip_dictionary_lines() {
        let data = b"3,100,135794048,-;amdgpu 0002:00:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:40 vmid:7 pasid:1)\n SUBSYSTEM=pci\n DEVICE=+pci:0002:00:00.0\n3,101,135794060,-;amdgpu 0002:00:00.0: amdgpu:  Process zed pid 7 thread zed pid 7\n";
        let (ev, _) = read(data, Format::Kmsg);
        let rec = records(&ev);
        assert_eq!(rec.len(), 1);
        let EventBody::Kmsg(r) = &rec[0].body else {
            panic!()
        };
        assert!(matches!(&r.kind, KmsgKind::PageFault { task: Some(t), .. } if t.pid == 7));
        assert_eq!(r.lines[0], "[  135.794048] amdgpu 0002:00:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:40 vmid:7 pasid:1)");
    }

    #[test]
    fn binary_junk_counts_unparseable() {
        let (ev, st) = read(
            b"\xff\xfe amdgpu \x00\x01\n[1.0] amdgpu 0000:03:00.0: amdgpu: MODE1 reset\n",
            Format::Auto,
        );
        assert_eq!((records(&ev).len(), st.unparseable), (1, 1));
    }

    #[test]
    fn boots_from_separators_linux_version_and_clock() {
        let log = b"-- Boot 0f1e2d3c4b5a69788796a5b4c3d2e1f0 --\n\
[    0.000000] host kernel: Linux version 6.8.0-40-generic\n\
[  146.437245] host kernel: amdgpu 0002:00:00.0: amdgpu: GPU reset begin!. Source:  1\n\
-- Boot 11112222333344445555666677778888 --\n\
[    0.000000] host kernel: Linux version 6.8.0-40-generic\n\
[   12.000000] host kernel: amdgpu 0002:00:00.0: amdgpu: GPU reset begin!. Source:  1\n\
[    0.000000] Linux version 6.8.0-40-generic\n\
[   13.000000] amdgpu 0002:00:00.0: amdgpu: GPU reset begin!. Source:  1\n\
[    5.000000] amdgpu 0002:00:00.0: amdgpu: GPU reset begin!. Source:  1\n";
        let (ev, st) = read(log, Format::Auto);
        let b = boots(&ev);
        assert_eq!(b.iter().map(|b| b.seq).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(
            b[0].boot_id.as_deref(),
            Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
        );
        assert_eq!(
            b[1].boot_id.as_deref(),
            Some("11112222333344445555666677778888")
        );
        assert_eq!(
            (b[0].hostname.as_deref(), b[2].hostname.as_deref()),
            (Some("host"), None)
        );
        // The release from each boot's `Linux version` line; the clock's boot has none.
        let kernels: Vec<Option<&str>> = b.iter().map(|b| b.kernel.as_deref()).collect();
        let k = Some("6.8.0-40-generic");
        assert_eq!(kernels, [k, k, k, None]);
        assert_eq!(st.boots, 4);
        assert_eq!(*st.forms.get(&Form::ShortMonotonic).unwrap(), 4);
    }

    #[test]
    fn syslog_with_printk_stamp_gives_wall_offset() {
        // rsyslog kern.log in Warsaw (UTC+2 in May): 19:27:35 local = 17:27:35Z.
        let zone = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let (ev, _) = read_with(
            b"maj 08 19:27:35 RX-78-FPC kernel: [  100.500000] amdgpu 0000:c2:00.0: MODE1 reset\n",
            Format::Auto,
            zone,
        );
        let b = boots(&ev);
        let wall_2026_05_08 = 1_778_261_255 * S;
        assert_eq!(b[0].hostname.as_deref(), Some("RX-78-FPC"));
        assert_eq!(
            b[0].realtime_offset_ns,
            Some((wall_2026_05_08 - 100_500_000_000) as i64)
        );
        assert_eq!(
            (records(&ev)[0].t_ns, records(&ev)[0].clock),
            (100_500_000_000, Clock::Monotonic)
        );
    }

    #[test]
    fn overlong_lines_are_cut_and_counted() {
        let mut data = b"[1.0] amdgpu 0000:03:00.0: amdgpu: MODE1 reset ".to_vec();
        data.extend(vec![b'x'; 3 * MAX_LINE_BYTES]);
        data.extend(b"\n[2.0] amdgpu 0000:03:00.0: amdgpu: MODE2 reset\n");
        let (ev, st) = read(&data, Format::Auto);
        assert_eq!((records(&ev).len(), st.long_lines, st.lines), (1, 1, 2));
    }

    #[test]
    fn not_understood_keeps_the_first_lines() {
        let (_, st) = read(b"hello\x1b]0;title\x07\nworld\n", Format::Auto);
        assert!(!st.understood());
        assert_eq!(st.first_lines, ["hello\\x1b]0;title\\x07", "world"]);
        let (_, st) = read(b"[    1.000000] usb 1-1: new device\n", Format::Auto);
        assert!(st.understood());
    }
}

/// `run` reads /dev/kmsg one record per read(), dictionary lines included, and feeds
/// `parse_dev_kmsg_record` + `KmsgAssembler::push_line`: that path must recognise MODE1 and
/// per-ring reset records (they were once lost with their ` SUBSYSTEM=pci` lines).
#[cfg(test)]
mod live_kmsg {
    use super::*;
    use crate::model::{EventBody, KmsgKind};

    #[test]
    fn records_with_dictionary_lines_as_run_reads_them() {
        let dump = include_str!("../../../testdata/logs/kmsg/rx7900xtx-ring-reset.kmsg");
        // Split the dump into what each read() returns: a record and its " KEY=value" lines.
        let mut records: Vec<String> = Vec::new();
        for l in dump.split_inclusive('\n') {
            match records.last_mut() {
                Some(r) if l.starts_with(' ') => r.push_str(l),
                _ => records.push(l.to_string()),
            }
        }
        assert!(
            records
                .iter()
                .filter(|r| r.contains("SUBSYSTEM=pci"))
                .count()
                >= 20
        );
        let mut asm = KmsgAssembler::new(Source::Kmsg);
        let mut events = Vec::new();
        for r in &records {
            let (t, msg) = parse_dev_kmsg_record(r).expect("a record");
            assert!(!msg.contains("SUBSYSTEM") && !msg.contains('\n'), "{msg:?}");
            events.extend(asm.push_line(t, Clock::Monotonic, &msg));
        }
        events.extend(asm.flush());
        let kinds: Vec<&KmsgKind> = events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Kmsg(r) => Some(&r.kind),
                _ => None,
            })
            .collect();
        assert!(kinds.contains(&&KmsgKind::ResetStep {
            what: "MODE1 reset".into()
        }));
        assert!(kinds.contains(&&KmsgKind::RingReset {
            ring: "comp_1.2.1".into(),
            ok: Some(true)
        }));
        assert!(kinds.contains(&&KmsgKind::RingReset {
            ring: "comp_1.2.1".into(),
            ok: None
        }));
        assert_eq!(kinds.len(), 14, "{kinds:#?}");
        // The record keeps its stamp, so an incident's kernel.log reads back the same.
        let EventBody::Kmsg(mode1) = &events[5].body else {
            panic!()
        };
        assert_eq!(
            mode1.lines,
            ["[45768.561065] amdgpu 0000:2f:00.0: amdgpu: MODE1 reset"]
        );
    }
}

/// Year roll-back over held lines, relative dmesg times, and the line hook, through the reader.
#[cfg(test)]
mod held_and_relative {
    use super::*;
    use crate::model::EventBody;

    const S: u64 = 1_000_000_000;

    fn records(ev: &[Event]) -> Vec<&Event> {
        ev.iter()
            .filter(|e| matches!(e.body, EventBody::Kmsg(_)))
            .collect()
    }
    fn read_at(data: &[u8], reference_ns: u64) -> (Vec<Event>, InputStats) {
        let mut r =
            LogReader::with_options(Format::Auto, Source::Log, 0, TimeZone::UTC, reference_ns);
        let mut out = Vec::new();
        r.read(data, &mut |e| out.push(e)).unwrap();
        r.finish(&mut |e| out.push(e));
        (out, r.stats)
    }

    fn wall_of(e: &Event) -> String {
        crate::kmsg::walltime::rfc3339_utc(e.t_ns)
    }

    /// A journal read on Nov 29 (the reference) whose lines run from Nov 28 to Dec 1: Dec 1
    /// can only be last year's, so Nov 28 is too, although it was read before Dec 1 was seen.
    #[test]
    fn a_later_line_rolls_the_earlier_lines_back_a_year() {
        let log = b"Nov 28 10:00:00 host kernel: amdgpu 0000:03:00.0: amdgpu: MODE1 reset\n\
Nov 28 10:00:01 host systemd[1]: unrelated\n\
Dec 01 09:00:00 host kernel: amdgpu 0000:03:00.0: amdgpu: MODE2 reset\n";
        let mut r = LogReader::with_options(
            Format::Auto,
            Source::Log,
            0,
            TimeZone::UTC,
            1_795_910_400 * S,
        );
        let mut ev = Vec::new();
        r.read(&log[..], &mut |e| ev.push(e)).unwrap();
        assert!(ev.is_empty(), "held until the years are settled: {ev:?}");
        r.finish(&mut |e| ev.push(e));
        let walls: Vec<_> = records(&ev).iter().map(|e| wall_of(e)).collect();
        assert_eq!(
            walls,
            ["2025-11-28T10:00:00.000000Z", "2025-12-01T09:00:00.000000Z"]
        );
        // The same lines read on Dec 2 are this year's.
        let mut r = LogReader::with_options(
            Format::Auto,
            Source::Log,
            0,
            TimeZone::UTC,
            (1_795_910_400 + 3 * 86_400) * S,
        );
        let mut ev = Vec::new();
        r.read(&log[..], &mut |e| ev.push(e)).unwrap();
        r.finish(&mut |e| ev.push(e));
        assert_eq!(wall_of(records(&ev)[0]), "2026-11-28T10:00:00.000000Z");
    }

    /// Over New Year, read in late December a year later: per-line inference would put Dec 30
    /// after Jan 2; the stream keeps them in order, in the right years.
    #[test]
    fn new_year_read_a_year_later_stays_in_order() {
        let log = b"Dec 30 23:00:00 h kernel: amdgpu 0000:03:00.0: amdgpu: MODE1 reset\n\
Jan 02 01:00:00 h kernel: amdgpu 0000:03:00.0: amdgpu: MODE2 reset\n";
        // Reference 2026-12-31T00:00:00Z.
        let mut r = LogReader::with_options(
            Format::Auto,
            Source::Log,
            0,
            TimeZone::UTC,
            1_798_675_200 * S,
        );
        let mut ev = Vec::new();
        r.read(&log[..], &mut |e| ev.push(e)).unwrap();
        r.finish(&mut |e| ev.push(e));
        let walls: Vec<_> = records(&ev).iter().map(|e| wall_of(e)).collect();
        assert_eq!(
            walls,
            ["2025-12-30T23:00:00.000000Z", "2026-01-02T01:00:00.000000Z"]
        );
    }

    /// A reltime dmesg: every line's delta counts, also those of lines that do not mention
    /// amdgpu and lie past the sampled start; the record keeps both clocks so it reads back.
    #[test]
    fn reltime_deltas_of_unrelated_lines_count() {
        let mut log = String::from("[Nov29 17:37] usb 1-1: start\n");
        for _ in 0..100 {
            log.push_str("[  +1.000000] usb 1-1: noise\n");
        }
        log.push_str("[  +0.500000] amdgpu 0000:03:00.0: amdgpu: MODE1 reset\n");
        let (ev, st) = read_at(log.as_bytes(), 1_796_083_200 * S);
        let rec = records(&ev);
        assert_eq!(rec.len(), 1);
        assert_eq!(
            (rec[0].t_ns, rec[0].clock),
            (100_500_000_000, Clock::Monotonic)
        );
        assert_eq!(
            ev.iter().find_map(|e| match &e.body {
                EventBody::Boot(b) => Some(b.realtime_offset_ns),
                _ => None,
            }),
            Some(Some(1_795_973_820 * 1_000_000_000))
        );
        assert_eq!(st.main_form(), Some(Form::DmesgRel));
        let EventBody::Kmsg(r) = &rec[0].body else {
            panic!()
        };
        assert_eq!(
            r.lines[0],
            "2026-11-29T17:38:40.500000+00:00 kernel: [  100.500000] amdgpu 0000:03:00.0: amdgpu: MODE1 reset"
        );
    }

    /// KFD lines (`pr_err`, no device) reach the line hook through the reader, with the
    /// device of the last addressed line.
    #[test]
    fn kfd_lines_reach_the_line_hook() {
        let log = b"[284169.428000] amdgpu 0000:03:00.0: amdgpu: MODE1 reset\n\
[284169.428845] amdgpu: Pasid 0x800d DQM create queue type 0 failed. ret -110\n";
        let mut r = LogReader::new(Format::Auto, Source::Log)
            .with_line_hook(crate::kmsg::assemble::tests::KFD_LIKE);
        let mut ev = Vec::new();
        r.read(&log[..], &mut |e| ev.push(e)).unwrap();
        r.finish(&mut |e| ev.push(e));
        let rec = records(&ev);
        assert_eq!(rec.len(), 2);
        assert_eq!(
            (rec[1].t_ns, rec[1].gpu.as_deref()),
            (284_169_428_845_000, Some("0000:03:00.0"))
        );
        assert_eq!(r.stats.amdgpu_lines, 2);
    }

    /// 5.10 printed the HWS-hang line with no prefix at all: the hook's unprefixed text lets it
    /// through the sampled first 64 lines and the "mentions amdgpu" hot path after them, and it
    /// takes the device of the last addressed line.
    #[test]
    fn unprefixed_hook_lines_pass_the_prefilters_in_and_after_the_sample() {
        let hws =
            "The cp might be in an unrecoverable state due to an unsuccessful queues preemption";
        for filler in [0, 10, 200] {
            let mut log = String::from("[  100.000000] amdgpu 0000:03:00.0: amdgpu: MODE1 reset\n");
            for i in 0..filler {
                log.push_str(&format!("[  100.{i:06}] usb 1-1: new device {i}\n"));
            }
            log.push_str(&format!("[  101.000000] {hws}\n"));
            let mut r = LogReader::new(Format::Auto, Source::Log)
                .with_line_hook(crate::kmsg::assemble::tests::KFD_LIKE);
            let mut ev = Vec::new();
            r.read(log.as_bytes(), &mut |e| ev.push(e)).unwrap();
            r.finish(&mut |e| ev.push(e));
            let rec = records(&ev);
            assert_eq!(rec.len(), 2, "after {filler} unrelated lines: {rec:?}");
            assert_eq!(
                (rec[1].t_ns, rec[1].gpu.as_deref()),
                (101_000_000_000, Some("0000:03:00.0"))
            );
            // Without the hook the line is nobody's.
            let mut plain = LogReader::new(Format::Auto, Source::Log);
            let mut ev = Vec::new();
            plain.read(log.as_bytes(), &mut |e| ev.push(e)).unwrap();
            plain.finish(&mut |e| ev.push(e));
            assert_eq!(records(&ev).len(), 1);
        }
    }

    /// Past the hold's bound the held lines are read with the years known then; later lines
    /// are read as they come (a roll-back after that only reaches them).
    #[test]
    fn the_hold_is_bounded() {
        let mut r = LogReader::with_options(
            Format::Auto,
            Source::Log,
            0,
            TimeZone::UTC,
            1_796_083_200 * S,
        );
        r.hold = Hold::with_limit(200);
        let mut ev = Vec::new();
        let line = "Nov 28 10:00:00 host kernel: amdgpu 0000:03:00.0: amdgpu: MODE1 reset\n";
        let log = line.repeat(4);
        r.read(log.as_bytes(), &mut |e| ev.push(e)).unwrap();
        // Released at the 2nd line (2 × (72 + 32) bytes); the 3rd and 4th are read as they come.
        assert_eq!(records(&ev).len(), 4);
        r.read(line.as_bytes(), &mut |e| ev.push(e)).unwrap();
        r.finish(&mut |e| ev.push(e));
        assert_eq!(records(&ev).len(), 5);
    }
}
