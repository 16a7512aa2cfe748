//! Log inputs through the readers into the correlator: the engine of `hangwatch analyze`.
//! Each input is streamed line by line through [`LogReader`], so a 1 GB log uses flat memory.
//! Each input keeps its own boots; one correlator serves all inputs of a run.
use jiff::tz::TimeZone;

use crate::correlate::{Config, Correlator};
use crate::incident::Incident;
use crate::kmsg::order::{self, Order};
use crate::kmsg::source::Opened;
use crate::kmsg::stamp::LocalTime;
use crate::kmsg::{walltime, Format, InputStats, LogReader};
use crate::model::{Event, Source};

/// What one input gave.
#[derive(Debug)]
pub struct InputResult {
    pub name: String,
    pub stats: InputStats,
    pub compression: Option<&'static str>,
    /// An I/O error (unreadable file, corrupt or truncated compressed data, journalctl failure);
    /// the events read before it still count.
    pub error: Option<String>,
}

/// The correlator shared by all inputs of one run, and the boot numbering across them.
pub struct Analyzer {
    corr: Correlator,
    format: Format,
    zone: TimeZone,
    next_seq: u32,
    /// The instant year-less stamps are not after; None: each file's modification time.
    reference_ns: Option<u64>,
}

impl Analyzer {
    pub fn new(config: Config, format: Format, zone: TimeZone) -> Self {
        Analyzer {
            corr: Correlator::new(config),
            format,
            zone,
            next_seq: 0,
            reference_ns: None,
        }
    }

    /// Read year-less stamps as not after `ns` (tests pin it; by default the file's mtime).
    pub fn with_reference(mut self, ns: u64) -> Self {
        self.reference_ns = Some(ns);
        self
    }

    pub fn correlator(&self) -> &Correlator {
        &self.corr
    }

    /// Read one opened input to its end; incidents closed on the way go to `emit`.
    pub fn input(
        &mut self,
        name: &str,
        mut opened: Opened,
        emit: &mut dyn FnMut(Vec<Incident>),
    ) -> InputResult {
        let reference = self
            .reference_ns
            .or(opened.mtime_ns)
            .unwrap_or_else(walltime::now_ns);
        let mut lr = LogReader::with_options(
            self.format,
            Source::Log,
            self.next_seq,
            self.zone.clone(),
            reference,
        )
        .with_line_hook(crate::kmsg::kfd::HOOK);
        let compression = opened.compression;
        let probe = LocalTime::new(self.zone.clone(), reference);
        let mut order_error = None;
        let reader = std::mem::replace(&mut opened.reader, Box::new(std::io::empty()));
        let (reader, o) = order::oldest_first(reader, &probe);
        opened.reader = reader;
        lr.stats.newest_first = o != Order::OldestFirst;
        if o == Order::NewestFirstTooLong {
            order_error = Some(format!(
                "newest first (journalctl -r) and longer than {} MiB: read in the order given, so records may be folded wrongly; reverse it first (tac)",
                order::MAX_REVERSED_BYTES >> 20
            ));
        }
        let corr = &mut self.corr;
        let mut sink = |e: Event| {
            let inc = corr.push(e);
            if !inc.is_empty() {
                emit(inc);
            }
        };
        let mut error = lr
            .read(&mut opened.reader, &mut sink)
            .err()
            .map(|e| read_error(&e, &lr.stats, compression));
        error = error.or(order_error);
        lr.finish(&mut sink);
        self.next_seq = lr.next_seq();
        if let Err(e) = opened.finish() {
            error.get_or_insert(e.to_string());
        }
        InputResult {
            name: name.to_string(),
            stats: lr.stats,
            compression,
            error,
        }
    }

    /// End of all input: incidents still open.
    pub fn finish(&mut self) -> Vec<Incident> {
        self.corr.finish()
    }
}

fn read_error(e: &std::io::Error, st: &InputStats, compression: Option<&str>) -> String {
    match compression {
        Some(c) => format!("{c} data is corrupt or truncated after {} lines ({e}); the incidents before it are reported", st.lines),
        None => format!("read failed after {} lines: {e}", st.lines),
    }
}

/// Exit status when no input held anything recognisable as a kernel log.
pub const EXIT_NOT_UNDERSTOOD: u8 = 3;

/// 0: read; 1: an input could not be read (fully); 3: nothing was recognised at all.
pub fn exit_code(results: &[InputResult]) -> u8 {
    if !results.iter().any(|r| r.stats.understood()) {
        EXIT_NOT_UNDERSTOOD
    } else if results.iter().any(|r| r.error.is_some()) {
        1
    } else {
        0
    }
}

/// The message for an input in which nothing was recognised.
pub fn not_understood(name: &str, st: &InputStats) -> String {
    let (what, lines) = if st.amdgpu_unread() {
        (
            format!("{} lines mention amdgpu, but none was read as an amdgpu kernel message. Lines not recognised", st.amdgpu_text_lines),
            &st.unread_amdgpu,
        )
    } else {
        (
            "not recognised as a kernel log. It starts with".to_string(),
            &st.first_lines,
        )
    };
    let mut s = format!("hangwatch analyze: {name}: {what}:\n");
    for (i, l) in lines.iter().enumerate() {
        s.push_str(&format!("  {}: {l}\n", i + 1));
    }
    s.push_str("Forms tried and accepted: dmesg ([  135.794048] msg), dmesg -T, dmesg --time-format iso, journalctl -k with -o short, short-precise, short-iso, short-iso-precise, short-full, short-monotonic, short-unix, cat, json or export, rsyslog kern.log (with or without [seconds]), /dev/kmsg records; any of them gzip, xz or zstd compressed; or --journal to read the systemd journal.");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmsg::source;
    use std::path::Path;

    fn result(understood: bool, error: Option<&str>) -> InputResult {
        let mut stats = InputStats::default();
        if understood {
            stats.amdgpu_lines = 1;
        }
        InputResult {
            name: "x".into(),
            stats,
            compression: None,
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&[result(true, None)]), 0);
        assert_eq!(
            exit_code(&[result(true, None), result(false, Some("gone"))]),
            1
        );
        assert_eq!(exit_code(&[result(false, None)]), EXIT_NOT_UNDERSTOOD);
        assert_eq!(exit_code(&[]), EXIT_NOT_UNDERSTOOD);
    }

    #[test]
    fn streams_fixture_and_counts_lines() {
        let mut an = Analyzer::new(Config::default(), Format::Auto, TimeZone::UTC);
        let f = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/dmesg/rx7900xtx-mes-mode1-reset.log");
        let mut n = 0;
        let r = an.input("f", source::open_path(&f).unwrap(), &mut |i| n += i.len());
        assert_eq!(
            (r.stats.lines, r.stats.amdgpu_lines, r.stats.unparseable),
            (19, 19, 0)
        );
        // 19 lines fold into 11 records (the fault absorbs 8 continuation lines), plus the Boot.
        assert_eq!(an.correlator().stats().events, 12);
        assert_eq!(n + an.finish().len(), 1);
    }

    #[test]
    fn unreadable_file_is_an_os_error() {
        let e = source::open_path(Path::new("/nonexistent/x.log"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("No such file"), "{e}");
    }
}
