//! `hangwatch analyze`: attribution from kernel logs alone. Streams each input line by line
//! through `kmsg::LogReader` into the correlator, so a 1 GB log uses flat memory.
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::correlate::{Config, Correlator};
use crate::incident::Incident;
use crate::kmsg::{Format, InputStats, LogReader};
use crate::model::{Event, Source};
use crate::report::incident_dir::{Extras, IncidentDir, Retention};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Log files (dmesg, journalctl text/JSON/export, /dev/kmsg dumps); none or `-` = stdin.
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
}

/// Incident sink shared by all inputs.
struct Output {
    json: bool,
    dir: Option<IncidentDir>,
    incidents: u64,
    dir_errors: u64,
}

impl Output {
    fn emit(&mut self, incidents: Vec<Incident>) -> anyhow::Result<()> {
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

pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut corr = Correlator::new(Config {
        fault_window_ns: args.window_secs.saturating_mul(1_000_000_000),
        ..Config::default()
    });
    let dir = match &args.output {
        Some(p) => Some(IncidentDir::open(p, Retention::default())?),
        None => None,
    };
    let mut out = Output {
        json: args.json,
        dir,
        incidents: 0,
        dir_errors: 0,
    };
    let files: Vec<PathBuf> = if args.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.files.clone()
    };
    let mut total = InputStats::default();
    let mut code = 0u8;
    for f in &files {
        let stats = match analyze_one(f, args.format, &mut corr, &mut out) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("hangwatch analyze: {}: {e}", f.display());
                code = 1;
                continue;
            }
        };
        if stats.amdgpu_lines == 0 {
            eprintln!("no amdgpu messages found in {}", name(f));
        }
        total.lines += stats.lines;
        total.bytes += stats.bytes;
        total.unparseable += stats.unparseable;
        total.amdgpu_lines += stats.amdgpu_lines;
        total.orphan_continuations += stats.orphan_continuations;
    }
    let rest = corr.finish();
    out.emit(rest)?;
    print_summary(&corr, &total, &out, args.json)?;
    Ok(code)
}

fn name(f: &Path) -> String {
    if f.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        f.display().to_string()
    }
}

/// Stream one input into the correlator. Only I/O errors fail; bad content is counted.
fn analyze_one(
    f: &Path,
    format: Format,
    corr: &mut Correlator,
    out: &mut Output,
) -> anyhow::Result<InputStats> {
    let reader: Box<dyn BufRead> = if f.as_os_str() == "-" {
        Box::new(BufReader::with_capacity(1 << 16, std::io::stdin()))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, std::fs::File::open(f)?))
    };
    let mut lr = LogReader::new(format, Source::Log);
    let mut err: Option<anyhow::Error> = None;
    let mut sink = |e: Event| {
        let inc = corr.push(e);
        if !inc.is_empty() && err.is_none() {
            if let Err(e) = out.emit(inc) {
                err = Some(e);
            }
        }
    };
    lr.read(reader, &mut sink)?;
    lr.finish(&mut sink);
    if let Some(e) = err {
        return Err(e);
    }
    Ok(lr.stats)
}

fn print_summary(
    corr: &Correlator,
    st: &InputStats,
    out: &Output,
    json: bool,
) -> anyhow::Result<()> {
    let summary = corr.summary();
    let mut o = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "summary": summary,
            "stats": {
                "lines": st.lines,
                "bytes": st.bytes,
                "amdgpu_lines": st.amdgpu_lines,
                "unparseable_lines": st.unparseable,
                "orphan_continuations": st.orphan_continuations,
                "incidents": out.incidents,
                "events": corr.stats().events,
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

    fn out() -> Output {
        Output {
            json: true,
            dir: None,
            incidents: 0,
            dir_errors: 0,
        }
    }

    #[test]
    fn streams_fixture_and_counts_lines() {
        let mut corr = Correlator::new(Config::default());
        let f = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/dmesg/rx7900xtx-mes-mode1-reset.log");
        let st = analyze_one(&f, Format::Auto, &mut corr, &mut out()).unwrap();
        assert_eq!((st.lines, st.amdgpu_lines, st.unparseable), (19, 19, 0));
        // 19 lines fold into 11 records (the fault absorbs 8 continuation lines).
        assert_eq!(corr.stats().events, 11);
    }

    #[test]
    fn unreadable_file_is_an_os_error() {
        let mut corr = Correlator::new(Config::default());
        let e = analyze_one(
            Path::new("/nonexistent/x.log"),
            Format::Auto,
            &mut corr,
            &mut out(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("No such file"), "{e}");
    }
}
