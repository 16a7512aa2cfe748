//! One text log line → its stamps (monotonic and/or wall clock), host name and message, for
//! every text form hangwatch reads (see docs/kmsg.md). Byte-level matching: every index is
//! found on an ASCII byte, so no slice can split a UTF-8 character, whatever the input.
use jiff::tz::TimeZone;

use super::walltime::{month_from_name, Civil};
use super::years::Years;

/// The shape of a line's prefix; counted per input so `analyze` can say what it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Form {
    /// `[  135.794048] msg` (dmesg; also `dmesg -d`, `[ 1.5 <  0.1>]`).
    Dmesg,
    /// `[Sun Nov 22 10:00:00 2026] msg` (dmesg -T, local time, any locale).
    DmesgCtime,
    /// `[Nov22 10:00] msg` then `[  +0.000006] msg` (dmesg --time-format reltime, dmesg -H),
    /// or `[<    0.000006>] msg` (--time-format delta): times relative to the previous line.
    DmesgRel,
    /// `2026-11-22T10:00:00,123456+01:00 [host kernel: ]msg` (dmesg --time-format iso,
    /// journalctl -o short-iso / short-iso-precise, rsyslog RFC 3339), also `[2026-11-22 10:00:00]`.
    Iso,
    /// `Nov 22 10:00:00[.123456] host kernel: msg` (journalctl -o short / short-precise,
    /// rsyslog kern.log), month in any locale, local time.
    Syslog,
    /// `Sun 2026-11-22 10:00:00 CET host kernel: msg` (journalctl -o short-full).
    ShortFull,
    /// `[  135.794048] host kernel: msg` (journalctl -o short-monotonic).
    ShortMonotonic,
    /// `1700000000.123456 host kernel: msg` (journalctl -o short-unix).
    ShortUnix,
    /// `6,1234,135794048,-;msg` (/dev/kmsg records).
    Kmsg,
    /// A message with no prefix (`journalctl -o cat`, a paste of bare lines).
    Bare,
    /// An amdgpu message found inside a line of another shape (console captures, `dmesg -x`,
    /// log shippers); its stamp is taken from the last `[...]` before it when that parses.
    Embedded,
    /// `journalctl -o json`.
    JournalJson,
    /// `journalctl -o export`.
    JournalExport,
    /// `journalctl -o verbose`: a timestamp and cursor line, then indented `KEY=VALUE` fields.
    JournalVerbose,
}

impl Form {
    pub fn describe(self) -> &'static str {
        match self {
            Form::Dmesg => "dmesg ([seconds] message)",
            Form::DmesgCtime => "dmesg -T ([weekday month day time year] message)",
            Form::DmesgRel => {
                "dmesg -H / --time-format reltime or delta ([Nov22 10:00], [  +0.000006] message)"
            }
            Form::Iso => {
                "ISO 8601 stamps (dmesg --time-format iso, journalctl -o short-iso, rsyslog)"
            }
            Form::Syslog => "syslog / journalctl -o short (month day time host kernel: message)",
            Form::ShortFull => "journalctl -o short-full",
            Form::ShortMonotonic => "journalctl -o short-monotonic",
            Form::ShortUnix => "journalctl -o short-unix",
            Form::Kmsg => "/dev/kmsg records",
            Form::Bare => "bare messages (journalctl -o cat)",
            Form::Embedded => "amdgpu messages inside other prefixes",
            Form::JournalJson => "journalctl -o json",
            Form::JournalExport => "journalctl -o export",
            Form::JournalVerbose => "journalctl -o verbose",
        }
    }
}

/// What one line says besides its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamped<'a> {
    pub form: Form,
    /// ns since boot (kernel printk clock).
    pub mono_ns: Option<u64>,
    /// ns since the Unix epoch.
    pub real_ns: Option<u64>,
    pub host: Option<&'a str>,
    pub msg: &'a str,
    /// The month name was not one of glibc's: the date is a guess (this month).
    pub unknown_month: bool,
    /// The wall stamp was printed without a year (syslog, journal short, dmesg reltime).
    pub year_inferred: bool,
}

impl<'a> Stamped<'a> {
    fn new(form: Form, msg: &'a str) -> Self {
        Stamped {
            form,
            mono_ns: None,
            real_ns: None,
            host: None,
            msg,
            unknown_month: false,
            year_inferred: false,
        }
    }
}

/// How to read local time: the zone, the instant year-less stamps are not after, and what
/// the stream taught so far.
pub struct LocalTime {
    pub zone: TimeZone,
    pub reference_ns: u64,
    pub state: StreamState,
}

/// What reading stamps remembers from one line to the next: the years of year-less stamps and
/// the clock of `dmesg --time-format reltime/delta`. The reader saves it before the lines it
/// holds and restores it to read them again (see `input.rs`).
#[derive(Clone, Debug, Default)]
pub struct StreamState {
    pub years: Years,
    rel: RelClock,
}

/// `dmesg --time-format reltime` / `delta` (`dmesg -H`): each line says only how long after
/// the previous one it came (`[  +0.000006]`, `[<    0.000006>]`), reltime adds a local
/// `[Nov29 17:37]` at each new minute. `mono` adds the deltas up from the first such line;
/// `offset` (wall − mono) comes from the first minute line.
#[derive(Clone, Copy, Debug, Default)]
struct RelClock {
    mono: u64,
    offset: Option<i128>,
}

impl RelClock {
    fn delta(&mut self, d: u64) -> (Option<u64>, Option<u64>) {
        self.mono = self.mono.saturating_add(d);
        (Some(self.mono), self.wall())
    }

    /// A minute line at `minute_ns`: its record came somewhere in that minute and not before
    /// the previous one, so the earliest such instant is taken (the minute is all it says).
    fn minute(&mut self, minute_ns: u64) -> (Option<u64>, Option<u64>) {
        let m = i128::from(minute_ns);
        match self.offset {
            Some(off) => {
                let prev_wall = i128::from(self.mono) + off;
                if m > prev_wall {
                    let gap = u64::try_from(m - prev_wall).unwrap_or(0);
                    self.mono = self.mono.saturating_add(gap);
                } else if m + 60 * 1_000_000_000 <= prev_wall {
                    // Earlier than the previous line's minute: another boot's output follows.
                    self.offset = Some(m - i128::from(self.mono));
                }
            }
            None => self.offset = Some(m - i128::from(self.mono)),
        }
        (Some(self.mono), self.wall())
    }

    fn wall(&self) -> Option<u64> {
        u64::try_from(i128::from(self.mono) + self.offset?).ok()
    }
}

impl LocalTime {
    pub fn new(zone: TimeZone, reference_ns: u64) -> Self {
        LocalTime {
            zone,
            reference_ns,
            state: StreamState::default(),
        }
    }

    /// A copy to try a reading on without moving the stream.
    pub(crate) fn scratch(&self) -> LocalTime {
        LocalTime {
            zone: self.zone.clone(),
            reference_ns: self.reference_ns,
            state: self.state.clone(),
        }
    }

    /// `c` (printed without a year) in the year the stream puts it, in the local zone.
    fn yearless(&mut self, c: Civil, guessed_month: bool) -> Option<u64> {
        let year = if guessed_month {
            Years::guess(&c, self.reference_ns, &self.zone)
        } else {
            self.state.years.year_of(&c, self.reference_ns, &self.zone)
        };
        Civil { year, ..c }.in_zone(&self.zone)
    }

    fn this_month(&self) -> u8 {
        let ts = jiff::Timestamp::from_nanosecond(i128::from(self.reference_ns))
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        u8::try_from(self.zone.to_datetime(ts).month()).unwrap_or(1)
    }
}

/// Where further records start on one line (a paste that lost its newlines: `[ 1.0] amdgpu …
/// [ 1.1] amdgpu …`): the byte offsets, after the first record, of each stamp of the line's own
/// form. Empty for a line holding one record, or of a form without a stamp to split at.
pub fn joined_starts(line: &str, lt: &LocalTime) -> Vec<usize> {
    let mut scratch = lt.scratch();
    let first = split(line, &mut scratch);
    if matches!(first.form, Form::Embedded | Form::Kmsg) {
        return Vec::new();
    }
    let b = line.as_bytes();
    let mut from = first.msg.as_ptr() as usize - line.as_ptr() as usize;
    let mut out = Vec::new();
    while let Some(p) = (from + 1..b.len()).find(|&i| {
        matches!(b[i - 1], b' ' | b'\t')
            && line.is_char_boundary(i)
            && record_start(&line[i..], &first, lt)
    }) {
        out.push(p);
        from = p;
    }
    out
}

/// Whether `rest` starts a record joined after `first`: a stamp of `first`'s own form; in a
/// line without a stamp, an amdgpu message or a stamped line holding one.
fn record_start(rest: &str, first: &Stamped<'_>, lt: &LocalTime) -> bool {
    let b = rest.as_bytes();
    let stamp_shaped = if b[0] == b'[' {
        b.get(1)
            .is_some_and(|c| c.is_ascii_alphanumeric() || !c.is_ascii() || *c == b' ')
    } else {
        // A wall stamp opens the text: `Aug 14 …`, `Fri 2026-…`, `2026-…`, `1778263346.4 …`
        // (a word of the message before a stamp is not one).
        let mut words = rest.split_whitespace().map(|w| w.as_bytes()[0]);
        let opens = words.next().is_some_and(|c| c.is_ascii_digit())
            || words.next().is_some_and(|c| c.is_ascii_digit());
        (b[0].is_ascii_alphanumeric() || !b[0].is_ascii()) && opens && has_kernel_tag(b)
    };
    if first.form != Form::Bare {
        let own = b[0] == b'[' || first.host.is_none() || has_kernel_tag(b);
        // A month no locale knows is a word of the message before a stamp, not a stamp.
        let s = split(rest, &mut lt.scratch());
        return stamp_shaped && own && s.form == first.form && !s.unknown_month;
    }
    if rest.starts_with("amdgpu ") || rest.starts_with("[drm:") {
        return super::lines::strip_prefix(rest).is_some();
    }
    if !stamp_shaped {
        return false;
    }
    let s = split(rest, &mut lt.scratch());
    !matches!(s.form, Form::Bare | Form::Embedded | Form::Kmsg)
        && !s.unknown_month
        && super::lines::strip_prefix(s.msg).is_some()
}

/// `kernel: ` within the reach of a wall stamp and host name.
fn has_kernel_tag(b: &[u8]) -> bool {
    memchr::memmem::find(&b[..b.len().min(320)], b" kernel: ").is_some()
        || b.starts_with(b"kernel: ")
}

/// Split a text line (any form but JSON/export). Never fails: an unknown shape is `Bare`.
pub fn split<'a>(line: &'a str, lt: &mut LocalTime) -> Stamped<'a> {
    let line = line.trim_end_matches(['\n', '\r']);
    let line = dmesg_decoration(line).unwrap_or(line);
    let b = line.as_bytes();
    let parsed = match b.first() {
        Some(b'[') => bracketed(line, lt),
        Some(c) if c.is_ascii_digit() => iso_line(line, lt)
            .or_else(|| kmsg_record(line))
            .or_else(|| short_unix(line))
            .or_else(|| syslog(line, lt)),
        Some(_) => short_full(line, lt).or_else(|| syslog(line, lt)),
        None => None,
    };
    parsed.unwrap_or_else(|| Stamped::new(Form::Bare, line))
}

/// Where the amdgpu message starts inside a line of an unknown shape, with the stamp of the
/// last `[...]` before it. `None` when the line holds no amdgpu/drm message.
pub fn embedded<'a>(line: &'a str, lt: &mut LocalTime) -> Option<Stamped<'a>> {
    let line = line.trim_end_matches(['\n', '\r']);
    let start = ["amdgpu ", "[drm:", "[drm] "]
        .iter()
        .filter_map(|p| line.find(p))
        .min()?;
    let (prefix, msg) = line.split_at(start);
    let mut s = Stamped::new(Form::Embedded, msg);
    if let Some(open) = prefix.rfind('[') {
        if let Some(len) = prefix[open + 1..].find(']') {
            let inner = &prefix[open + 1..open + 1 + len];
            if let Some(t) = mono_secs(inner) {
                s.mono_ns = Some(t);
            } else if let Some((c, off, _)) = iso(inner) {
                s.real_ns = civil_ns(&c, off, lt);
            }
        }
    }
    Some(s)
}

/// What `dmesg -x` (`kern  :err   : `) or `dmesg -r` (`<3>`) puts before the stamp: the rest
/// of the line, read as any other dmesg line. None when the line does not start so.
fn dmesg_decoration(line: &str) -> Option<&str> {
    if let Some(r) = line.strip_prefix('<') {
        let (prio, rest) = r.split_once('>')?;
        let ok = (1..=4).contains(&prio.len()) && prio.bytes().all(|c| c.is_ascii_digit());
        return ok.then_some(rest);
    }
    const FACILITIES: &[&str] = &[
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp", "res0", "res1", "res2", "res3", "local0", "local1", "local2", "local3",
        "local4", "local5", "local6", "local7",
    ];
    const LEVELS: &[&str] = &[
        "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug",
    ];
    let (fac, rest) = line.split_once(':')?;
    let (lvl, rest) = rest.split_once(':')?;
    let known = FACILITIES.contains(&fac.trim_end()) && LEVELS.contains(&lvl.trim_end());
    (known && !fac.starts_with(' ') && !lvl.starts_with(' '))
        .then(|| rest.strip_prefix(' '))
        .flatten()
}

/// `[  +0.000006]`, `[<    0.000006>]` (a delta, `,` as decimal point in some locales) or
/// `[Nov22 10:00]` (reltime's minute line, month in the locale).
fn relative<'a>(inner: &str, rest: &'a str, lt: &mut LocalTime) -> Option<Stamped<'a>> {
    let t = inner.trim();
    let delta = t
        .strip_prefix('+')
        .or_else(|| t.strip_prefix('<').and_then(|d| d.strip_suffix('>')));
    let (mono, real, yearless) = match delta {
        Some(d) => {
            let d = mono_secs(&d.trim().replacen(',', ".", 1))?;
            let (m, r) = lt.state.rel.delta(d);
            (m, r, false)
        }
        None => {
            let c = reltime_minute(t, lt)?;
            let minute = lt.yearless(c, false)?;
            let (m, r) = lt.state.rel.minute(minute);
            (m, r, true)
        }
    };
    let mut s = Stamped::new(Form::DmesgRel, rest);
    s.mono_ns = mono;
    s.real_ns = real;
    s.year_inferred = yearless;
    Some(s)
}

/// `Nov22 10:00` (`%b%d %H:%M`: the day follows the month name directly, `11月29`, `Dez26`).
fn reltime_minute(t: &str, lt: &LocalTime) -> Option<Civil> {
    let (date, hm) = t.split_once(' ')?;
    let b = hm.as_bytes();
    if b.len() != 5
        || b[2] != b':'
        || !hm
            .bytes()
            .enumerate()
            .all(|(i, c)| i == 2 || c.is_ascii_digit())
    {
        return None;
    }
    let digits = date.bytes().rev().take_while(u8::is_ascii_digit).count();
    let (mon, day) = date.split_at(date.len() - digits);
    let day: u8 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let month = month_from_name(mon).or_else(|| mon.is_empty().then(|| lt.this_month()))?;
    let (h, m): (u8, u8) = (hm[..2].parse().ok()?, hm[3..].parse().ok()?);
    (h < 24 && m < 60).then(|| civil(0, month, day, (h, m, 0), 0))
}

/// `[secs] …`, `[ctime] …`, `[ISO] …`, `[+delta] …`, `[Mon22 10:00] …`.
fn bracketed<'a>(line: &'a str, lt: &mut LocalTime) -> Option<Stamped<'a>> {
    let close = line.as_bytes().iter().take(72).position(|&c| c == b']')?;
    let inner = &line[1..close];
    let rest = &line[close + 1..];
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    if let Some(t) = mono_secs(inner) {
        let mut s = after_prefix(Form::Dmesg, rest);
        if s.host.is_some() || s.form == Form::ShortMonotonic {
            s.form = Form::ShortMonotonic;
        }
        s.mono_ns = Some(t);
        return Some(s);
    }
    if let Some((c, off, n)) = iso(inner) {
        if n == inner.len() {
            let mut s = after_prefix(Form::Iso, rest);
            s.real_ns = civil_ns(&c, off, lt).or(s.real_ns);
            return Some(s);
        }
    }
    if let Some(s) = relative(inner, rest, lt) {
        return Some(s);
    }
    let (c, unknown) = ctime(inner, lt)?;
    let mut s = Stamped::new(Form::DmesgCtime, rest);
    s.real_ns = c.in_zone(&lt.zone);
    s.unknown_month = unknown;
    Some(s)
}

/// After a wall-clock stamp: `host kernel: `, `kernel: ` (journalctl --no-hostname), then an
/// optional `[secs] ` (rsyslog keeps the printk stamp).
fn after_prefix(form: Form, rest: &str) -> Stamped<'_> {
    let (host, kernel, msg) = match host_kernel(rest) {
        Some((h, m)) => (h, true, m),
        None => (None, false, rest),
    };
    let mut s = Stamped::new(form, msg);
    s.host = host;
    if kernel && form == Form::Dmesg {
        s.form = Form::ShortMonotonic;
    }
    if form != Form::Dmesg {
        if let Some(inner_end) = msg.strip_prefix('[').and_then(|m| m.find(']')) {
            if let Some(t) = mono_secs(&msg[1..=inner_end]) {
                s.mono_ns = Some(t);
                let m = &msg[inner_end + 2..];
                s.msg = m.strip_prefix(' ').unwrap_or(m);
            }
        }
    }
    s
}

/// `host kernel: msg` → (Some(host), msg); `kernel: msg` → (None, msg).
fn host_kernel(rest: &str) -> Option<(Option<&str>, &str)> {
    // An empty host field (a paste with the host name cut out) leaves `stamp  kernel: `.
    if let Some(m) = rest
        .trim_start_matches([' ', '\t'])
        .strip_prefix("kernel: ")
    {
        return Some((None, m));
    }
    let sp = rest.as_bytes().iter().take(256).position(|&c| c == b' ')?;
    let m = rest[sp + 1..].strip_prefix("kernel: ")?;
    let host = &rest[..sp];
    (!host.is_empty()).then_some((Some(host), m))
}

/// `ISO[ host kernel:][ [secs]] msg`.
fn iso_line<'a>(line: &'a str, lt: &mut LocalTime) -> Option<Stamped<'a>> {
    let (c, off, n) = iso(line)?;
    let rest = line[n..].strip_prefix(' ')?;
    let mut s = after_prefix(Form::Iso, rest);
    s.real_ns = civil_ns(&c, off, lt);
    Some(s)
}

/// `prio,seq,usec,flags[,…];msg`.
fn kmsg_record(line: &str) -> Option<Stamped<'_>> {
    let semi = line.as_bytes().iter().take(64).position(|&c| c == b';')?;
    let mut it = line[..semi].split(',');
    it.next()?.parse::<u32>().ok()?;
    it.next()?.parse::<u64>().ok()?;
    let usec: u64 = it.next()?.parse().ok()?;
    let mut s = Stamped::new(Form::Kmsg, &line[semi + 1..]);
    s.mono_ns = Some(usec.saturating_mul(1000));
    Some(s)
}

/// `1700000000.123456 host kernel: msg`.
fn short_unix(line: &str) -> Option<Stamped<'_>> {
    let sp = line.as_bytes().iter().take(24).position(|&c| c == b' ')?;
    let secs = &line[..sp];
    if !secs.contains('.') {
        return None;
    }
    let t = mono_secs(secs)?;
    let (host, msg) = host_kernel(&line[sp + 1..])?;
    let mut s = Stamped::new(Form::ShortUnix, msg);
    s.real_ns = Some(t);
    s.host = host;
    Some(s)
}

/// `Sun 2026-11-22 10:00:00 CET host kernel: msg` (weekday in any locale).
fn short_full<'a>(line: &'a str, lt: &mut LocalTime) -> Option<Stamped<'a>> {
    let sp = line.as_bytes().iter().take(32).position(|&c| c == b' ')?;
    let rest = &line[sp + 1..];
    let (c, off, n) = iso(rest)?;
    if off.is_some() {
        return None;
    }
    let rest = rest[n..].strip_prefix(' ')?;
    let zsp = rest.as_bytes().iter().take(16).position(|&c| c == b' ')?;
    let abbr = &rest[..zsp];
    let mut s = after_prefix(Form::ShortFull, &rest[zsp + 1..]);
    s.form = Form::ShortFull;
    s.real_ns = match zone_abbreviation(abbr) {
        Some(off) => c.at_offset(off),
        None => c.in_zone(&lt.zone),
    };
    Some(s)
}

/// `Mon D HH:MM:SS[.frac] host kernel: msg`, month in any locale (` 5月 08 …`, `maj 08 …`).
fn syslog<'a>(line: &'a str, lt: &mut LocalTime) -> Option<Stamped<'a>> {
    let (mon_text, day, hms_at) = find_day_time(line, 40)?;
    let b = line.as_bytes();
    let (h, mi, sec) = hms(&b[hms_at..])?;
    let mut end = hms_at + 8;
    let mut nanos = 0;
    if b.get(end) == Some(&b'.') {
        let digits = b[end + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        nanos = frac_ns(&b[end + 1..end + 1 + digits]);
        end += 1 + digits;
    }
    let rest = line[end..].strip_prefix(' ')?;
    let (month, unknown) = month_or_this(mon_text, lt);
    let c = civil(0, month, day, (h, mi, sec), nanos);
    let mut s = after_prefix(Form::Syslog, rest);
    s.real_ns = lt.yearless(c, unknown);
    s.unknown_month = unknown;
    s.year_inferred = true;
    Some(s)
}

/// `Sun Nov 22 10:00:00 2026` (any locale; the weekday is ignored).
fn ctime(inner: &str, lt: &mut LocalTime) -> Option<(Civil, bool)> {
    let (mon_text, day, hms_at) = find_day_time(inner, inner.len())?;
    let b = inner.as_bytes();
    let (h, mi, sec) = hms(&b[hms_at..])?;
    let year: i16 = inner[hms_at + 8..].trim().parse().ok()?;
    let (month, unknown) = month_or_this(mon_text, lt);
    Some((civil(year, month, day, (h, mi, sec), 0), unknown))
}

/// Find `<text> D HH:MM:SS` within the first `limit` bytes: (text before the day, day, index of
/// the time). The text is non-empty and holds no digit-colon stamp of its own.
fn find_day_time(s: &str, limit: usize) -> Option<(&str, u8, usize)> {
    let b = s.as_bytes();
    let end = b.len().min(limit);
    let mut i = 0;
    while i + 8 <= end {
        if hms(&b[i..]).is_some() && i >= 3 && b[i - 1] == b' ' {
            let mut j = i - 1;
            while j > 0 && b[j - 1].is_ascii_digit() && i - j <= 2 {
                j -= 1;
            }
            let digits = i - 1 - j;
            if (1..=2).contains(&digits) && j >= 2 && b[j - 1] == b' ' {
                let day: u8 = s[j..i - 1].parse().ok()?;
                let text = s[..j - 1].trim();
                if (1..=31).contains(&day) && !text.is_empty() && !text.contains(['[', ':']) {
                    return Some((text, day, i));
                }
            }
            return None;
        }
        i += 1;
    }
    None
}

fn civil(year: i16, month: u8, day: u8, (hour, minute, second): (u8, u8, u8), nanos: u32) -> Civil {
    Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
    }
}

/// The month a name says, or this month (flagged) when no locale knows the name.
fn month_or_this(text: &str, lt: &LocalTime) -> (u8, bool) {
    match month_in(text) {
        Some(m) => (m, false),
        None => (lt.this_month(), true),
    }
}

/// The month of "Nov", "Sun Nov", "de nov.", " 5月": the whole text, else its later words.
fn month_in(text: &str) -> Option<u8> {
    let mut t = text.trim();
    loop {
        if let Some(m) = month_from_name(t) {
            return Some(m);
        }
        let (_, rest) = t.split_once(' ')?;
        t = rest.trim_start();
    }
}

/// `HH:MM:SS` at the start of `b`.
fn hms(b: &[u8]) -> Option<(u8, u8, u8)> {
    let d = |i: usize| b.get(i).filter(|c| c.is_ascii_digit()).map(|c| c - b'0');
    if b.get(2) != Some(&b':') || b.get(5) != Some(&b':') {
        return None;
    }
    let h = d(0)? * 10 + d(1)?;
    let m = d(3)? * 10 + d(4)?;
    let s = d(6)? * 10 + d(7)?;
    (h < 24 && m < 60 && s <= 60).then_some((h, m, s))
}

/// Up to 9 fraction digits → ns.
fn frac_ns(digits: &[u8]) -> u32 {
    let mut ns = 0u32;
    for i in 0..9 {
        ns = ns * 10 + digits.get(i).map_or(0, |c| u32::from(c - b'0'));
    }
    ns
}

/// "135.794048" (any amount of leading space) → ns.
pub fn mono_secs(s: &str) -> Option<u64> {
    let s = s.trim();
    // dmesg -d prints "[  135.794048 <    0.000012>]".
    let s = match s.split_once(" <") {
        Some((t, d)) if d.ends_with('>') => t.trim_end(),
        _ => s,
    };
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    if sec.is_empty()
        || sec.len() > 12
        || !sec.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let sec: u64 = sec.parse().ok()?;
    sec.checked_mul(1_000_000_000)?
        .checked_add(u64::from(frac_ns(frac.as_bytes())))
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.,frac][Z|±HH[:]MM]` at the start of `s` → (civil, UTC offset in
/// seconds when printed, bytes consumed).
fn iso(s: &str) -> Option<(Civil, Option<i32>, usize)> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0u32, |a, c| a * 10 + u32::from(c - b'0')))
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !matches!(b.get(10), Some(b'T' | b' '))
    {
        return None;
    }
    let year = i16::try_from(num(0..4)?).ok()?;
    let month = u8::try_from(num(5..7)?).ok()?;
    let day = u8::try_from(num(8..10)?).ok()?;
    let (h, mi, sec) = hms(b.get(11..)?)?;
    let mut n = 19;
    let mut nanos = 0;
    if matches!(b.get(n), Some(b'.' | b',')) {
        let digits = b[n + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        nanos = frac_ns(&b[n + 1..n + 1 + digits]);
        n += 1 + digits;
    }
    let mut off = None;
    match b.get(n) {
        Some(b'Z') => {
            off = Some(0);
            n += 1;
        }
        Some(&sign @ (b'+' | b'-')) => {
            let hh = num(n + 1..n + 3)?;
            let (mm, used) = if b.get(n + 3) == Some(&b':') {
                (num(n + 4..n + 6)?, 6)
            } else {
                (
                    num(n + 3..n + 5).unwrap_or(0),
                    if num(n + 3..n + 5).is_some() { 5 } else { 3 },
                )
            };
            let secs = i32::try_from(hh * 3600 + mm * 60).ok()?;
            off = Some(if sign == b'-' { -secs } else { secs });
            n += used;
        }
        _ => {}
    }
    Some((civil(year, month, day, (h, mi, sec), nanos), off, n))
}

fn civil_ns(c: &Civil, off: Option<i32>, lt: &LocalTime) -> Option<u64> {
    match off {
        Some(o) => c.at_offset(o),
        None => c.in_zone(&lt.zone),
    }
}

/// UTC offset of a zone abbreviation `journalctl -o short-full` prints; `None` → read the
/// stamp in the local zone. Numeric abbreviations (`+03`, zones without a name) are offsets.
fn zone_abbreviation(abbr: &str) -> Option<i32> {
    const H: i32 = 3600;
    let known = [
        ("UTC", 0),
        ("GMT", 0),
        ("Z", 0),
        ("WET", 0),
        ("WEST", H),
        ("BST", H),
        ("CET", H),
        ("CEST", 2 * H),
        ("EET", 2 * H),
        ("EEST", 3 * H),
        ("MSK", 3 * H),
        ("EST", -5 * H),
        ("EDT", -4 * H),
        ("CST", -6 * H),
        ("CDT", -5 * H),
        ("MST", -7 * H),
        ("MDT", -6 * H),
        ("PST", -8 * H),
        ("PDT", -7 * H),
        ("HKT", 8 * H),
        ("JST", 9 * H),
        ("KST", 9 * H),
        ("AEST", 10 * H),
        ("AEDT", 11 * H),
        ("NZST", 12 * H),
        ("NZDT", 13 * H),
    ];
    if let Some((_, o)) = known.iter().find(|(n, _)| *n == abbr) {
        return Some(*o);
    }
    let (sign, digits) = match abbr.as_bytes().first() {
        Some(b'+') => (1, &abbr[1..]),
        Some(b'-') => (-1, &abbr[1..]),
        _ => return None,
    };
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: i32 = digits.parse().ok()?;
    let (h, m) = if digits.len() > 2 {
        (v / 100, v % 100)
    } else {
        (v, 0)
    };
    Some(sign * (h * H + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lt() -> LocalTime {
        // Reference: 2026-12-01T00:00:00Z; zone: Warsaw rules.
        LocalTime::new(
            TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap(),
            1_796_083_200_000_000_000,
        )
    }
    const S: u64 = 1_000_000_000;
    /// 2026-11-22T10:00:00Z
    const NOV22_10Z: u64 = 1_795_341_600 * S;

    fn check(line: &str, form: Form, mono: Option<u64>, real: Option<u64>, host: Option<&str>) {
        let s = split(line, &mut lt());
        assert_eq!(
            (s.form, s.mono_ns, s.real_ns, s.host, s.msg),
            (
                form,
                mono,
                real,
                host,
                "amdgpu 0000:03:00.0: amdgpu: MODE1 reset"
            ),
            "{line}"
        );
    }

    #[test]
    fn every_text_form() {
        let m = "amdgpu 0000:03:00.0: amdgpu: MODE1 reset";
        let mono = Some(135_794_048_000);
        // Local time in the test zone is UTC+1 in November.
        let local = Some(NOV22_10Z - 3600 * S);
        check(
            &format!("[  135.794048] {m}"),
            Form::Dmesg,
            mono,
            None,
            None,
        );
        check(
            &format!("[  135.794048 <    0.000012>] {m}"),
            Form::Dmesg,
            mono,
            None,
            None,
        );
        check(
            &format!("[Sun Nov 22 10:00:00 2026] {m}"),
            Form::DmesgCtime,
            None,
            local,
            None,
        );
        check(
            &format!("[nie lis 22 10:00:00 2026] {m}"),
            Form::DmesgCtime,
            None,
            local,
            None,
        );
        check(
            &format!("2026-11-22T10:00:00,000000+00:00 {m}"),
            Form::Iso,
            None,
            Some(NOV22_10Z),
            None,
        );
        check(
            &format!("2026-11-22T11:00:00+0100 myhost kernel: {m}"),
            Form::Iso,
            None,
            Some(NOV22_10Z),
            Some("myhost"),
        );
        check(
            &format!("2026-11-22T11:00:00.000001+01:00 myhost kernel: {m}"),
            Form::Iso,
            None,
            Some(NOV22_10Z + 1000),
            Some("myhost"),
        );
        check(
            &format!("2026-11-22T10:00:00.5Z kernel: [  135.794048] {m}"),
            Form::Iso,
            mono,
            Some(NOV22_10Z + S / 2),
            None,
        );
        check(
            &format!("Nov 22 10:00:00 myhost kernel: {m}"),
            Form::Syslog,
            None,
            local,
            Some("myhost"),
        );
        check(
            &format!("Nov 22 10:00:00.123456 myhost kernel: {m}"),
            Form::Syslog,
            None,
            local.map(|t| t + 123_456_000),
            Some("myhost"),
        );
        check(
            &format!("lis 22 10:00:00 myhost kernel: [  135.794048] {m}"),
            Form::Syslog,
            mono,
            local,
            Some("myhost"),
        );
        check(
            &format!("11月 22 10:00:00 myhost kernel: {m}"),
            Form::Syslog,
            None,
            local,
            Some("myhost"),
        );
        check(
            &format!("Nov 22 10:00:00 kernel: {m}"),
            Form::Syslog,
            None,
            local,
            None,
        );
        check(
            &format!("Sun 2026-11-22 11:00:00 CET myhost kernel: {m}"),
            Form::ShortFull,
            None,
            Some(NOV22_10Z),
            Some("myhost"),
        );
        check(
            &format!("Sun 2026-11-22 10:00:00 UTC myhost kernel: {m}"),
            Form::ShortFull,
            None,
            Some(NOV22_10Z),
            Some("myhost"),
        );
        check(
            &format!("[  135.794048] myhost kernel: {m}"),
            Form::ShortMonotonic,
            mono,
            None,
            Some("myhost"),
        );
        check(
            &format!("1795341600.000000 myhost kernel: {m}"),
            Form::ShortUnix,
            None,
            Some(NOV22_10Z),
            Some("myhost"),
        );
        check(
            &format!("6,1234,135794048,-;{m}"),
            Form::Kmsg,
            mono,
            None,
            None,
        );
        check(
            &format!("6,1234,135794048,-,caller=T1;{m}"),
            Form::Kmsg,
            mono,
            None,
            None,
        );
        check(m, Form::Bare, None, None, None);
        check(
            &format!("[2026-11-22 11:00:00] {m}"),
            Form::Iso,
            None,
            Some(NOV22_10Z),
            None,
        );
    }

    #[test]
    fn embedded_messages_and_their_stamps() {
        let mut l = lt();
        let s = embedded("k3s-node5.lab: kern:    info: [2026-11-22T10:00:00.000000000Z]: amdgpu 0000:03:00.0: amdgpu: MODE1 reset", &mut l).unwrap();
        assert_eq!(
            (s.real_ns, s.msg),
            (Some(NOV22_10Z), "amdgpu 0000:03:00.0: amdgpu: MODE1 reset")
        );
        let s = embedded(
            "kern  :err   : [  135.794048] [drm:amdgpu_job_timedout [amdgpu]] *ERROR* x",
            &mut l,
        )
        .unwrap();
        assert_eq!(
            (s.mono_ns, s.msg),
            (
                Some(135_794_048_000),
                "[drm:amdgpu_job_timedout [amdgpu]] *ERROR* x"
            )
        );
        assert!(embedded("usb 1-1: new device", &mut l).is_none());
    }

    /// Real `dmesg --time-format reltime` output (util-linux 2.38.1, TZ=UTC) of records whose
    /// `dmesg -T` times were 17:37:34, 17:37:54, 17:38:35, 17:38:39, 17:40:44, 17:40:44.1: the
    /// minute lines give the minute, deltas the rest; never after the true time, never more
    /// than a minute before it, and in order.
    #[test]
    fn reltime_minutes_and_deltas() {
        let mut l = LocalTime::new(TimeZone::UTC, NOV22_10Z + 30 * 86_400 * S);
        let m = |h: u64, mi: u64, s: f64| {
            NOV22_10Z + 7 * 86_400 * S - 10 * 3600 * S
                + (h * 3600 + mi * 60) * S
                + (s * 1e9).round() as u64
        };
        let want = [
            ("[Nov29 17:37] amdgpu a", m(17, 37, 0.0), 0),
            (
                "[ +19.500001] amdgpu b",
                m(17, 37, 19.500001),
                19_500_001_000,
            ),
            ("[Nov29 17:38] amdgpu c", m(17, 38, 0.0), 60 * S),
            ("[  +4,250000] amdgpu d", m(17, 38, 4.25), 64_250_000_000),
            ("[Nov29 17:40] amdgpu e", m(17, 40, 0.0), 180 * S),
            ("[  +0.100000] amdgpu f", m(17, 40, 0.1), 180_100_000_000),
        ];
        for (line, real, mono) in want {
            let s = split(line, &mut l);
            assert_eq!(
                (s.form, s.real_ns, s.mono_ns, &s.msg[..7]),
                (Form::DmesgRel, Some(real), Some(mono), "amdgpu "),
                "{line}"
            );
        }
        // `--time-format delta`: no wall clock at all, deltas from the first line.
        let mut l = lt();
        for (line, mono) in [
            ("[<    0.000000>] amdgpu a", 0),
            ("[<    1.500000>] amdgpu b", 1_500_000_000),
        ] {
            let s = split(line, &mut l);
            assert_eq!(
                (s.form, s.mono_ns, s.real_ns),
                (Form::DmesgRel, Some(mono), None)
            );
        }
    }

    #[test]
    fn dmesg_decorations_x_and_raw() {
        let m = "amdgpu 0000:03:00.0: amdgpu: MODE1 reset";
        let mono = Some(135_794_048_000);
        check(
            &format!("kern  :err   : [  135.794048] {m}"),
            Form::Dmesg,
            mono,
            None,
            None,
        );
        check(
            &format!("kern  :warn  : [  135.794048] {m}"),
            Form::Dmesg,
            mono,
            None,
            None,
        );
        check(
            &format!("<3>[  135.794048] {m}"),
            Form::Dmesg,
            mono,
            None,
            None,
        );
        check(
            &format!("kern  :err   : [Sun Nov 22 11:00:00 2026] {m}"),
            Form::DmesgCtime,
            None,
            Some(NOV22_10Z),
            None,
        );
        check(
            &format!("kern  :err   : 2026-11-22T10:00:00,000000+00:00 {m}"),
            Form::Iso,
            None,
            Some(NOV22_10Z),
            None,
        );
        check(&format!("kern  :err   : {m}"), Form::Bare, None, None, None);
        // Not decorations: an unknown facility, a syslog line.
        let s = split("kernel:err: [1.0] amdgpu x", &mut lt());
        assert_eq!(s.form, Form::Bare);
    }

    #[test]
    fn unknown_month_still_yields_the_message() {
        let s = split("Foo 22 10:00:00 myhost kernel: amdgpu x", &mut lt());
        assert_eq!(
            (s.form, s.unknown_month, s.msg),
            (Form::Syslog, true, "amdgpu x")
        );
    }

    #[test]
    fn non_ascii_anywhere_never_panics() {
        // Once a panic: a multi-byte character at byte 15 of a syslog-shaped line.
        for line in [
            "Nov 22 10:00:0é host kernel: amdgpu",
            "Nov 22 10:00:00é host kernel: amdgpu",
            "Nov 22 10:00é00 host",
            "2026-11-22T10:00:0é",
            "2026-11-22T10:00:00+0é",
            "[é] amdgpu",
            "[  1.5é] amdgpu",
            "1,2,3é;amdgpu",
            "ééééééééééééééééééé",
            "Sun 2026-11-22 10:00:00 é host kernel: m",
        ] {
            let _ = split(line, &mut lt());
            let _ = embedded(line, &mut lt());
        }
    }
}
