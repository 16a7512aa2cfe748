//! `hangwatch analyze`: attribution from kernel logs alone. Streams each input (file, stdin,
//! compressed file or the systemd journal) line by line through `kmsg::LogReader` into the
//! correlator, so a 1 GB log uses flat memory. Each input keeps its own boots.
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;

use crate::correlate::{Config, Correlator};
use crate::incident::Incident;
use crate::kmsg::journal::JournalSource;
use crate::kmsg::source::{self, Opened};
use crate::kmsg::{walltime, Form, Format, InputStats, LogReader};
use crate::model::{Event, Source};
use crate::report::incident_dir::{Extras, IncidentDir, Retention};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Log files (dmesg, journalctl text/JSON/export, rsyslog kern.log, /dev/kmsg dumps;
    /// gzip/xz/zstd compressed or not); none or `-` = stdin.
    pub files: Vec<PathBuf>,
    /// One incident JSON per line, then a `{"summary": …, "stats": …}` line.
    #[arg(long)]
    pub json: bool,
    /// Also write one directory per incident under DIR.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Input format (auto-detected per line by default).
    #[arg(long, value_enum, default_value = "auto")]
    pub format: Format,
    /// How far before a timeout/reset page faults count as evidence.
    #[arg(long, default_value_t = 30)]
    pub window_secs: u64,
    /// Read the kernel messages of the systemd journal (runs `journalctl -k -o export`).
    #[arg(long)]
    pub journal: bool,
    /// With --journal: which boot (`journalctl --boot`: 0 = this one, -1 = the one before, or a
    /// boot id). All boots by default.
    #[arg(
        long,
        value_name = "N",
        requires = "journal",
        allow_hyphen_values = true
    )]
    pub boot: Option<String>,
    /// With --journal: journal files to read (e.g. copied from another machine).
    #[arg(long, value_name = "PATH", requires = "journal")]
    pub journal_file: Vec<PathBuf>,
    /// With --journal: a journal directory to read.
    #[arg(long, value_name = "DIR", requires = "journal")]
    pub journal_dir: Option<PathBuf>,
    /// Time zone of local-time stamps (dmesg -T, syslog, journalctl -o short): an IANA name,
    /// UTC or a POSIX TZ string. Default: TZ, else /etc/localtime.
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
}

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
        .with_line_hook(crate::kfd::lines::HOOK);
        let compression = opened.compression;
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

/// Incident sink shared by all inputs.
struct Output {
    json: bool,
    dir: Option<IncidentDir>,
    incidents: u64,
    dir_errors: u64,
    error: Option<anyhow::Error>,
}

impl Output {
    fn emit(&mut self, incidents: Vec<Incident>) {
        if let Err(e) = self.try_emit(incidents) {
            self.error.get_or_insert(e);
        }
    }

    fn try_emit(&mut self, incidents: Vec<Incident>) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        for inc in incidents {
            self.incidents += 1;
            if self.json {
                writeln!(out, "{}", serde_json::to_string(&inc)?)?;
            } else {
                writeln!(out, "{}", crate::report::text::render(&inc))?;
            }
            if let Some(dir) = &mut self.dir {
                if let Err(e) = dir.write(&inc, &Extras::default()) {
                    self.dir_errors += 1;
                    if self.dir_errors == 1 {
                        eprintln!("hangwatch analyze: cannot write incident directory: {e:#}");
                    }
                }
            }
        }
        Ok(())
    }
}

/// Exit status when no input held anything recognisable as a kernel log.
pub const EXIT_NOT_UNDERSTOOD: u8 = 3;

pub fn run(args: Args) -> anyhow::Result<u8> {
    let zone = match &args.tz {
        Some(z) => walltime::zone_named(z).map_err(anyhow::Error::msg)?,
        None => walltime::system_zone(),
    };
    let mut an = Analyzer::new(
        Config {
            fault_window_ns: args.window_secs.saturating_mul(1_000_000_000),
            ..Config::default()
        },
        args.format,
        zone,
    );
    let dir = match &args.output {
        Some(p) => Some(IncidentDir::open(p, Retention::default())?),
        None => None,
    };
    let mut out = Output {
        json: args.json,
        dir,
        incidents: 0,
        dir_errors: 0,
        error: None,
    };
    let mut results = Vec::new();
    for (name, opened) in open_inputs(&args) {
        let opened = match opened {
            Ok(o) => o,
            Err(e) => {
                results.push(InputResult {
                    name,
                    stats: InputStats::default(),
                    compression: None,
                    error: Some(e.to_string()),
                });
                continue;
            }
        };
        results.push(an.input(&name, opened, &mut |inc| out.emit(inc)));
        if let Some(e) = out.error.take() {
            return Err(e);
        }
    }
    out.emit(an.finish());
    if let Some(e) = out.error.take() {
        return Err(e);
    }
    for r in &results {
        report_input(r);
    }
    print_summary(an.correlator(), &results, &out, args.json)?;
    Ok(exit_code(&results))
}

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

fn open_inputs(args: &Args) -> Vec<(String, std::io::Result<Opened>)> {
    let mut v = Vec::new();
    if args.journal {
        let src = JournalSource {
            boot: args.boot.clone(),
            files: args.journal_file.clone(),
            directory: args.journal_dir.clone(),
        };
        let name = match &args.boot {
            Some(b) => format!("the journal (boot {b})"),
            None => "the journal".to_string(),
        };
        v.push((name, source::open_journal(&src)));
    }
    let files: Vec<PathBuf> = if args.files.is_empty() && !args.journal {
        vec![PathBuf::from("-")]
    } else {
        args.files.clone()
    };
    for f in files {
        if f.as_os_str() == "-" && std::io::stdin().is_terminal() {
            eprintln!("hangwatch analyze: reading a kernel log from the terminal; paste it and press Ctrl-D (or pass a file, `dmesg | hangwatch analyze`, or --journal)");
        }
        v.push((name(&f), source::open_path(&f)));
    }
    v
}

fn name(f: &Path) -> String {
    if f.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        f.display().to_string()
    }
}

/// What went wrong with one input, on stderr: errors, inputs not recognised (with what they
/// looked like and what is accepted), inputs without amdgpu messages, and cut data.
fn report_input(r: &InputResult) {
    let st = &r.stats;
    if let Some(e) = &r.error {
        eprintln!("hangwatch analyze: {}: {e}", r.name);
    }
    if st.lines == 0 && st.entries == 0 {
        if r.error.is_none() {
            eprintln!("hangwatch analyze: {} is empty", r.name);
        }
        return;
    }
    if !st.understood() {
        eprintln!("{}", not_understood(&r.name, st));
        return;
    }
    if st.amdgpu_lines == 0 {
        let form = st.main_form().map(Form::describe).unwrap_or("text");
        eprintln!(
            "no amdgpu messages found in {} (read as {form}, {} lines)",
            r.name, st.lines
        );
    }
    if st.unknown_month_lines > 0 {
        eprintln!("hangwatch analyze: {}: {} lines have a month name no locale uses; their dates are approximate", r.name, st.unknown_month_lines);
    }
    if st.long_lines > 0 || st.dropped_continuations > 0 {
        eprintln!("hangwatch analyze: {}: {} over-long lines cut to 64 KiB, {} continuation lines dropped past the per-record bound", r.name, st.long_lines, st.dropped_continuations);
    }
    if st.truncated {
        eprintln!(
            "hangwatch analyze: {}: the journal export stream ends inside a field (truncated)",
            r.name
        );
    }
}

/// The message for an input in which nothing was recognised.
pub fn not_understood(name: &str, st: &InputStats) -> String {
    let mut s =
        format!("hangwatch analyze: {name}: not recognised as a kernel log. It starts with:\n");
    for (i, l) in st.first_lines.iter().enumerate() {
        s.push_str(&format!("  {}: {l}\n", i + 1));
    }
    s.push_str("Accepted: dmesg ([  135.794048] msg), dmesg -T, dmesg --time-format iso, journalctl -k with -o short, short-precise, short-iso, short-iso-precise, short-full, short-monotonic, short-unix, cat, json or export, rsyslog kern.log (with or without [seconds]), /dev/kmsg records; any of them gzip, xz or zstd compressed; or --journal to read the systemd journal.");
    s
}

fn print_summary(
    corr: &Correlator,
    results: &[InputResult],
    out: &Output,
    json: bool,
) -> anyhow::Result<()> {
    let mut st = InputStats::default();
    for r in results {
        st.add(&r.stats);
    }
    let summary = corr.summary();
    let mut o = std::io::stdout().lock();
    if json {
        let files: Vec<_> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "form": r.stats.main_form().map(Form::describe),
                    "compression": r.compression,
                    "boots": r.stats.boots,
                    "lines": r.stats.lines,
                    "amdgpu_lines": r.stats.amdgpu_lines,
                    "error": r.error,
                })
            })
            .collect();
        let v = serde_json::json!({
            "summary": summary,
            "stats": {
                "lines": st.lines,
                "bytes": st.bytes,
                "amdgpu_lines": st.amdgpu_lines,
                "unparseable_lines": st.unparseable,
                "orphan_continuations": st.orphan_continuations,
                "dropped_continuations": st.dropped_continuations,
                "long_lines": st.long_lines,
                "boots": st.boots,
                "incidents": out.incidents,
                "events": corr.stats().events,
                "files": files,
            }
        });
        writeln!(o, "{v}")?;
        return Ok(());
    }
    writeln!(o, "Per-process summary")?;
    writeln!(
        o,
        "{:>8}  {:<16} {:>7} {:>6} {:>6} {:>14} {:>18}",
        "PID", "COMM", "CULPRIT", "VICTIM", "FAULTS", "KERNEL_BLAMED", "KERNEL_DISAGREES"
    )?;
    for s in &summary {
        writeln!(
            o,
            "{:>8}  {:<16} {:>7} {:>6} {:>6} {:>14} {:>18}",
            s.pid,
            crate::escape::terminal(&s.comm),
            s.culprit,
            s.victim,
            s.faults,
            s.kernel_blamed,
            s.kernel_blamed_but_evidence_disagrees
        )?;
    }
    if summary.is_empty() {
        writeln!(o, "  (no processes)")?;
    }
    for r in results.iter().filter(|r| r.stats.understood()) {
        let form = r.stats.main_form().map(Form::describe).unwrap_or("text");
        let comp = r.compression.map(|c| format!("{c}, ")).unwrap_or_default();
        writeln!(
            o,
            "{}: {comp}{form}, {} boot(s), {} amdgpu lines",
            r.name, r.stats.boots, r.stats.amdgpu_lines
        )?;
    }
    writeln!(
        o,
        "{} lines, {} amdgpu lines, {} unparseable, {} orphan continuation lines, {} incidents",
        st.lines, st.amdgpu_lines, st.unparseable, st.orphan_continuations, out.incidents
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
