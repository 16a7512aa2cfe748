//! `hangwatch analyze`: attribution from kernel logs alone. Streams each input (file, stdin,
//! compressed file or the systemd journal) line by line through `kmsg::LogReader` into the
//! correlator, so a 1 GB log uses flat memory. Each input keeps its own boots.
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::sinks::incident_dir::{Extras, IncidentDir, Retention};
use crate::sinks::messages;
use hangwatch_core::analyze::{exit_code, not_understood, Analyzer, InputResult};
use hangwatch_core::correlate::{Config, Correlator};
use hangwatch_core::incident::Incident;
use hangwatch_core::kmsg::journal::JournalSource;
use hangwatch_core::kmsg::source::{self, Opened};
use hangwatch_core::kmsg::{walltime, Form, Format, InputStats};

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

    /// Prints each incident (a closed stdout drops the printing only) and writes its directory.
    fn try_emit(&mut self, incidents: Vec<Incident>) -> anyhow::Result<()> {
        for inc in incidents {
            self.incidents += 1;
            if !messages::stdout_closed() {
                let text = if self.json {
                    serde_json::to_string(&inc)?
                } else {
                    hangwatch_core::render::text::render(&inc)
                };
                messages::stdout(&(text + "\n"));
            }
            if let Some(dir) = &mut self.dir {
                if let Err(e) = dir.write(&inc, &Extras::default()) {
                    self.dir_errors += 1;
                    if self.dir_errors == 1 {
                        messages::stderr(&format!(
                            "hangwatch analyze: cannot write incident directory: {e:#}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

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
            messages::stderr("hangwatch analyze: reading a kernel log from the terminal; paste it and press Ctrl-D (or pass a file, `dmesg | hangwatch analyze`, or --journal)");
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
        messages::stderr(&format!("hangwatch analyze: {}: {e}", r.name));
    }
    if st.lines == 0 && st.entries == 0 {
        if r.error.is_none() {
            messages::stderr(&format!("hangwatch analyze: {} is empty", r.name));
        }
        return;
    }
    if !st.understood() {
        messages::stderr(&not_understood(&r.name, st));
        return;
    }
    if st.amdgpu_lines == 0 {
        let form = st.main_form().map(Form::describe).unwrap_or("text");
        messages::stderr(&format!(
            "no amdgpu messages found in {} (read as {form}, {} lines)",
            r.name, st.lines
        ));
    }
    if st.unknown_month_lines > 0 {
        messages::stderr(&format!("hangwatch analyze: {}: {} lines have a month name no locale uses; their dates are approximate", r.name, st.unknown_month_lines));
    }
    if st.long_lines > 0 || st.dropped_continuations > 0 {
        messages::stderr(&format!("hangwatch analyze: {}: {} over-long lines cut to 64 KiB, {} continuation lines dropped past the per-record bound", r.name, st.long_lines, st.dropped_continuations));
    }
    if st.truncated {
        messages::stderr(&format!(
            "hangwatch analyze: {}: the journal export stream ends inside a field (truncated)",
            r.name
        ));
    }
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
    let mut o = String::new();
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
        messages::stdout(&o);
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
            hangwatch_core::escape::terminal(&s.comm),
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
    messages::stdout(&o);
    Ok(())
}
