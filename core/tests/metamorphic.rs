//! Metamorphic tests over the corpus: every real log in testdata/corpus/, transformed in ways
//! that must not change the attribution (incidents, rings, GPU, kernel blame, culprit,
//! confidence), is analysed through the same pipeline as `hangwatch analyze` and compared with
//! the untransformed log's answer. A transform that does not apply to a log (no host name to
//! remove, no DRM prefix to retag, no stamp to convert) is skipped and counted as such; a pair
//! that cannot agree is listed in [`EXCLUDED`] with the reason, and must still disagree (so the
//! list cannot go stale). docs/corpus.md reports the counts.
mod common;

use std::io::Write;

use common::{analyze, REFERENCE_NS};
use hangwatch_core::kmsg::stamp::{self, Form, LocalTime};
use jiff::tz::TimeZone;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/corpus");

/// What a transform makes of a log: `None` when it does not apply (changes nothing).
type Transform = fn(&Log) -> Option<Vec<u8>>;

/// (log id, transform, why the answer cannot be the same).
const EXCLUDED: &[(&str, &str, &str)] = &[
    (
        "gamescope-545-rx6700xt-soft-recovered-then-timeout",
        "to_cat",
        "without stamps the soft recovery and the timeout 10 s later are one hang: only the gap told them apart",
    ),
    (
        "therock-986-gfx1151-dmesg-T-python3-midrecord",
        "wrapped_80",
        "the order is told before wrapped lines are joined: the fault header cut at 80 columns is not read, so the log's orphan continuations vote it newest first",
    ),
    (
        "llamacpp-1087-gmcv9-no-retry-fault-main",
        "wrapped_120",
        "without stamps a line is taken as wrapped only once the width recurs: the first line cut at 120 columns, the fault header, comes before",
    ),
];

/// One corpus log, split into lines and read once for its stamps.
struct Log {
    text: String,
    lines: Vec<Line>,
}

/// One line: as written, and what its stamp says (None: no stamp of a known form).
struct Line {
    raw: String,
    stamp: Option<Stamp>,
}

/// A stamped line: where the message starts, the host, and both clocks (the one the line did
/// not print is derived: printk = wall − first wall + 100 s; wall = 2026-11-14 + printk).
#[derive(Clone)]
struct Stamp {
    msg_at: usize,
    host: Option<String>,
    mono_ns: u64,
    real_ns: u64,
}

/// 2026-11-14T10:00:00Z, the wall clock of printk 0 for logs stamped with printk only.
const BASE_NS: u64 = 1_794_650_400_000_000_000;

impl Log {
    fn read(text: String) -> Log {
        let mut lt = LocalTime::new(TimeZone::UTC, REFERENCE_NS);
        let mut first_real = None;
        let lines = text
            .lines()
            .map(|raw| {
                let s = stamp::split(raw, &mut lt);
                let stamped = !matches!(s.form, Form::Bare | Form::Embedded | Form::Kmsg)
                    && (s.mono_ns.is_some() || s.real_ns.is_some());
                let stamp = stamped.then(|| {
                    let real0 = *first_real.get_or_insert(s.real_ns.unwrap_or(0));
                    let mono_ns = s.mono_ns.unwrap_or_else(|| {
                        s.real_ns.unwrap_or(0).saturating_sub(real0) + 100_000_000_000
                    });
                    Stamp {
                        msg_at: s.msg.as_ptr() as usize - raw.as_ptr() as usize,
                        host: s.host.map(str::to_string),
                        mono_ns,
                        real_ns: s.real_ns.unwrap_or(BASE_NS + mono_ns),
                    }
                });
                Line {
                    raw: raw.to_string(),
                    stamp,
                }
            })
            .collect();
        Log { text, lines }
    }

    fn stamped(&self) -> bool {
        self.lines.iter().any(|l| l.stamp.is_some())
    }

    /// Each line mapped; None when no line changed.
    fn map_lines(&self, f: impl Fn(&Line) -> String) -> Option<Vec<u8>> {
        let out: String = self.lines.iter().map(|l| f(l) + "\n").collect();
        (out != self.text && out.trim_end() != self.text.trim_end()).then(|| out.into_bytes())
    }

    /// Every stamped line rendered by `f` from its stamp and message; unstamped lines as they
    /// were. None when the log has no stamp to convert.
    fn convert(&self, f: impl Fn(&Stamp, &str) -> String) -> Option<Vec<u8>> {
        if !self.stamped() {
            return None;
        }
        self.map_lines(|l| match &l.stamp {
            Some(s) => f(s, &l.raw[s.msg_at..]),
            None => l.raw.clone(),
        })
    }

    /// Entries for the journal's own forms: every line, unstamped ones with the previous
    /// stamp; a boot id that changes where the printk clock goes back by more than 1 s.
    fn entries(&self) -> Option<Vec<(Stamp, String, u32)>> {
        if !self.stamped() {
            return None;
        }
        let mut last: Option<Stamp> = None;
        let mut boot = 0;
        let mut out = Vec::new();
        for l in &self.lines {
            let (s, msg) = match &l.stamp {
                Some(s) => (s.clone(), l.raw[s.msg_at..].to_string()),
                None => match &last {
                    Some(p) => (p.clone(), l.raw.clone()),
                    None => continue,
                },
            };
            if l.raw.starts_with("-- ") {
                boot += 1;
                continue;
            }
            if last
                .as_ref()
                .is_some_and(|p| p.mono_ns > s.mono_ns + 1_000_000_000)
            {
                boot += 1;
            }
            last = Some(s.clone());
            out.push((s, msg, boot));
        }
        Some(out)
    }
}

// --- stamps in each form ----------------------------------------------------------------

fn civil(ns: u64) -> jiff::civil::DateTime {
    let ts = jiff::Timestamp::from_nanosecond(i128::from(ns)).expect("stamp in range");
    TimeZone::UTC.to_datetime(ts)
}

fn host(s: &Stamp) -> String {
    s.host.clone().unwrap_or_else(|| "rig".to_string())
}

fn printk(ns: u64) -> String {
    format!(
        "[{:5}.{:06}]",
        ns / 1_000_000_000,
        ns % 1_000_000_000 / 1000
    )
}

fn to_dmesg(s: &Stamp, m: &str) -> String {
    format!("{} {m}", printk(s.mono_ns))
}
fn to_short(s: &Stamp, m: &str) -> String {
    format!(
        "{} {} kernel: {m}",
        civil(s.real_ns).strftime("%b %d %H:%M:%S"),
        host(s)
    )
}
fn to_short_precise(s: &Stamp, m: &str) -> String {
    format!(
        "{} {} kernel: {m}",
        civil(s.real_ns).strftime("%b %d %H:%M:%S%.6f"),
        host(s)
    )
}
fn to_short_iso(s: &Stamp, m: &str) -> String {
    format!(
        "{}+0000 {} kernel: {m}",
        civil(s.real_ns).strftime("%Y-%m-%dT%H:%M:%S"),
        host(s)
    )
}
fn to_short_monotonic(s: &Stamp, m: &str) -> String {
    format!("{} {} kernel: {m}", printk(s.mono_ns), host(s))
}
fn to_cat(_: &Stamp, m: &str) -> String {
    m.to_string()
}
fn to_rsyslog(s: &Stamp, m: &str) -> String {
    let wall = civil(s.real_ns).strftime("%b %e %H:%M:%S");
    format!("{wall} {} kernel: {} {m}", host(s), printk(s.mono_ns))
}
fn to_rsyslog_iso(s: &Stamp, m: &str) -> String {
    let wall = civil(s.real_ns).strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00");
    format!("{wall} {} kernel: {m}", host(s))
}

fn json(log: &Log) -> Option<Vec<u8>> {
    let mut out = String::new();
    for (s, msg, boot) in log.entries()? {
        let v = serde_json::json!({
            "__REALTIME_TIMESTAMP": (s.real_ns / 1000).to_string(),
            "__MONOTONIC_TIMESTAMP": (s.mono_ns / 1000).to_string(),
            "_SOURCE_MONOTONIC_TIMESTAMP": (s.mono_ns / 1000).to_string(),
            "_BOOT_ID": format!("{boot:032x}"),
            "_HOSTNAME": host(&s),
            "_TRANSPORT": "kernel",
            "MESSAGE": msg,
        });
        out.push_str(&v.to_string());
        out.push('\n');
    }
    Some(out.into_bytes())
}

fn export(log: &Log) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for (i, (s, msg, boot)) in log.entries()?.into_iter().enumerate() {
        let fields = format!(
            "__CURSOR=s=0;i={i:x}\n__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={boot:032x}\n_HOSTNAME={}\n_TRANSPORT=kernel\n",
            s.real_ns / 1000,
            s.mono_ns / 1000,
            host(&s),
        );
        out.extend_from_slice(fields.as_bytes());
        out.extend_from_slice(b"MESSAGE\n");
        out.extend_from_slice(&(msg.len() as u64).to_le_bytes());
        out.extend_from_slice(msg.as_bytes());
        out.extend_from_slice(b"\n\n");
    }
    Some(out)
}

fn verbose(log: &Log) -> Option<Vec<u8>> {
    let mut out = String::new();
    for (i, (s, msg, boot)) in log.entries()?.into_iter().enumerate() {
        let wall = civil(s.real_ns).strftime("%a %Y-%m-%d %H:%M:%S%.6f UTC");
        let (mono, real) = (s.mono_ns / 1000, s.real_ns / 1000);
        out.push_str(&format!(
            "{wall} [s=5d3c1a;i={i:x};b={boot:032x};m={mono:x};t={real:x};x=9f2e]\n    _BOOT_ID={boot:032x}\n    _TRANSPORT=kernel\n    PRIORITY=3\n    _HOSTNAME={}\n    _SOURCE_MONOTONIC_TIMESTAMP={mono}\n    MESSAGE={msg}\n",
            host(&s)
        ));
    }
    Some(out.into_bytes())
}

// --- host names ---------------------------------------------------------------------------

/// The line with its `host kernel: ` part rewritten by `f(host)` (None: no host printed).
fn rehost(l: &Line, f: impl Fn(Option<&str>) -> Option<String>) -> String {
    let Some(s) = &l.stamp else {
        return l.raw.clone();
    };
    let head = &l.raw[..s.msg_at];
    let Some(k) = head.find("kernel: ") else {
        return l.raw.clone();
    };
    let before = head[..k].trim_end();
    let (stamp_part, old) = match &s.host {
        Some(h) => (
            before.strip_suffix(h.as_str()).unwrap_or(before).trim_end(),
            Some(h.as_str()),
        ),
        None => (before, None),
    };
    let host = f(old).map(|h| format!("{h} ")).unwrap_or_default();
    format!("{stamp_part} {host}{}", &l.raw[k..])
}

fn host_removed(log: &Log) -> Option<Vec<u8>> {
    log.map_lines(|l| rehost(l, |_| None))
}
fn host_emptied(log: &Log) -> Option<Vec<u8>> {
    log.map_lines(|l| rehost(l, |h| h.map(|_| String::new())))
}
fn host_inserted(log: &Log) -> Option<Vec<u8>> {
    log.map_lines(|l| rehost(l, |h| Some(h.unwrap_or("rig").to_string())))
}

// --- order and paste damage -----------------------------------------------------------------

fn reversed(log: &Log) -> Option<Vec<u8>> {
    let out: String = log.text.lines().rev().map(|l| format!("{l}\n")).collect();
    Some(out.into_bytes())
}

fn joined(log: &Log) -> Option<Vec<u8>> {
    let lines: Vec<&str> = log.text.lines().collect();
    let out: String = lines.chunks(2).map(|c| c.join(" ") + "\n").collect();
    Some(out.into_bytes())
}

fn wrap(log: &Log, width: usize) -> Option<Vec<u8>> {
    log.map_lines(|l| {
        let mut out = String::new();
        let mut n = 0;
        for c in l.raw.chars() {
            if n == width {
                out.push('\n');
                n = 0;
            }
            out.push(c);
            n += 1;
        }
        out
    })
}
fn wrap80(log: &Log) -> Option<Vec<u8>> {
    wrap(log, 80)
}
fn wrap120(log: &Log) -> Option<Vec<u8>> {
    wrap(log, 120)
}

/// After every line, an unrelated kernel line and a user-space line of the same form.
fn interleaved(log: &Log) -> Option<Vec<u8>> {
    let mut out = String::new();
    for l in &log.lines {
        out.push_str(&l.raw);
        out.push('\n');
        let head = l.stamp.as_ref().map_or("", |s| &l.raw[..s.msg_at]);
        out.push_str(&format!("{head}usb 1-4: USB disconnect, device number 7\n"));
        if head.contains("kernel: ") {
            let user = head.replacen("kernel: ", "gnome-shell[2101]: ", 1);
            out.push_str(&format!("{user}amdgpu: frame took 33 ms (gfx ring busy)\n"));
        }
    }
    Some(out.into_bytes())
}

const MONTHS_EN: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const MONTHS_DE: [&str; 12] = [
    "Jan", "Feb", "Mär", "Apr", "Mai", "Jun", "Jul", "Aug", "Sep", "Okt", "Nov", "Dez",
];

/// English month names in stamps (journal short, syslog, `dmesg -T`) as German ones.
fn localized(log: &Log) -> Option<Vec<u8>> {
    log.map_lines(|l| {
        let Some(s) = &l.stamp else {
            return l.raw.clone();
        };
        let head = &l.raw[..s.msg_at];
        let mut head = head.to_string();
        for (en, de) in MONTHS_EN.iter().zip(MONTHS_DE) {
            for pat in [format!("{en} "), format!("{en}  ")] {
                if let Some(i) = head.find(&pat) {
                    head.replace_range(i..i + en.len(), de);
                    break;
                }
            }
        }
        format!("{head}{}", &l.raw[s.msg_at..])
    })
}

fn crlf(log: &Log) -> Option<Vec<u8>> {
    Some(log.text.replace('\n', "\r\n").into_bytes())
}
fn tabs(log: &Log) -> Option<Vec<u8>> {
    log.map_lines(|l| format!("\t{}", l.raw))
}
fn indented(log: &Log) -> Option<Vec<u8>> {
    log.map_lines(|l| format!("    {}", l.raw))
}
fn quoted(log: &Log) -> Option<Vec<u8>> {
    log.map_lines(|l| format!("> {}", l.raw))
}
fn fenced(log: &Log) -> Option<Vec<u8>> {
    Some(format!("```\n{}```\n", log.text).into_bytes())
}
fn quoted_fenced(log: &Log) -> Option<Vec<u8>> {
    let body: String = log.text.lines().map(|l| format!("> {l}\n")).collect();
    Some(format!("> ```\n{body}> ```\n").into_bytes())
}

/// `[drm:func [amdgpu]] ` ↔ `[drm:func] `.
fn drm_untagged(log: &Log) -> Option<Vec<u8>> {
    log.map_lines(|l| l.raw.replace(" [amdgpu]] ", "] "))
}
fn drm_tagged(log: &Log) -> Option<Vec<u8>> {
    log.map_lines(|l| match l.raw.find("[drm:") {
        Some(i) if !l.raw.contains(" [amdgpu]] ") => {
            let end = l.raw[i..].find("] ").map(|e| i + e);
            match end {
                Some(e) => format!("{} [amdgpu]{}", &l.raw[..e], &l.raw[e..]),
                None => l.raw.clone(),
            }
        }
        _ => l.raw.clone(),
    })
}

fn gz(log: &Log) -> Option<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(log.text.as_bytes()).ok()?;
    e.finish().ok()
}
fn xz(log: &Log) -> Option<Vec<u8>> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(log.text.as_bytes()).ok()?;
    e.finish().ok()
}
fn zst(log: &Log) -> Option<Vec<u8>> {
    zstd::stream::encode_all(log.text.as_bytes(), 3).ok()
}

macro_rules! convert {
    ($f:ident) => {
        |log: &Log| log.convert($f)
    };
}

const TRANSFORMS: &[(&str, Transform)] = &[
    ("host_removed", host_removed),
    ("host_emptied", host_emptied),
    ("host_inserted", host_inserted),
    ("to_dmesg", convert!(to_dmesg)),
    ("to_short", convert!(to_short)),
    ("to_short_precise", convert!(to_short_precise)),
    ("to_short_iso", convert!(to_short_iso)),
    ("to_short_monotonic", convert!(to_short_monotonic)),
    ("to_cat", convert!(to_cat)),
    ("to_rsyslog", convert!(to_rsyslog)),
    ("to_rsyslog_iso", convert!(to_rsyslog_iso)),
    ("to_json", json),
    ("to_export", export),
    ("to_verbose", verbose),
    ("reversed", reversed),
    ("joined", joined),
    ("wrapped_80", wrap80),
    ("wrapped_120", wrap120),
    ("interleaved", interleaved),
    ("localized_months", localized),
    ("crlf", crlf),
    ("tabs", tabs),
    ("indented", indented),
    ("md_quoted", quoted),
    ("md_fenced", fenced),
    ("md_quoted_fenced", quoted_fenced),
    ("drm_untagged", drm_untagged),
    ("drm_tagged", drm_tagged),
    ("gz", gz),
    ("xz", xz),
    ("zst", zst),
];

fn corpus_ids() -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(CORPUS)
        .expect("corpus dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".log").map(str::to_string)
        })
        .collect();
    ids.sort();
    ids
}

#[test]
fn every_transform_keeps_every_attribution() {
    let only = std::env::var("METAMORPHIC_ONLY").ok();
    let (mut pairs, mut agree, mut skipped) = (0, 0, 0);
    let mut wrong = Vec::new();
    let mut excluded_agreeing = Vec::new();
    for id in corpus_ids() {
        let text = std::fs::read_to_string(format!("{CORPUS}/{id}.log")).expect("log reads");
        let log = Log::read(text);
        let base = analyze(log.text.as_bytes());
        for (name, t) in TRANSFORMS {
            if only.as_deref().is_some_and(|o| o != *name) {
                continue;
            }
            let Some(bytes) = t(&log) else {
                skipped += 1;
                continue;
            };
            pairs += 1;
            let got = analyze(&bytes);
            let excluded = EXCLUDED.iter().find(|(l, n, _)| *l == id && n == name);
            match (got == base, excluded) {
                (true, None) => agree += 1,
                (true, Some(_)) => excluded_agreeing.push(format!("{id} × {name}")),
                (false, Some(_)) => {}
                (false, None) => wrong.push(format!(
                    "{id} × {name}:\n  untransformed: {base:?}\n  transformed:   {got:?}"
                )),
            }
        }
    }
    eprintln!(
        "metamorphic: {pairs} pairs, {agree} agree, {} excluded, {skipped} not applicable",
        EXCLUDED.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {pairs} pairs disagree:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(
        excluded_agreeing.is_empty(),
        "excluded pairs that agree now (remove them from EXCLUDED): {excluded_agreeing:?}"
    );
}
