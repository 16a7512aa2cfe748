//! Golden tests: each fixture log through the kmsg parser and the correlator, compared on
//! the key fields with expectations written by hand from reading the log (testdata/golden/).
//! The log-reading reproductions run here at the `analyze` level: through
//! `commands::analyze::Analyzer`, the same path as `hangwatch analyze FILE…` and `… | analyze -`.
use std::io::Cursor;
use std::path::{Path, PathBuf};

use hangwatch_core::analyze::{exit_code, Analyzer, InputResult, EXIT_NOT_UNDERSTOOD};
use hangwatch_core::correlate::{Config, Correlator};
use hangwatch_core::incident::{Incident, ResetOutcome};
use hangwatch_core::kmsg::journal::JournalSource;
use hangwatch_core::kmsg::source;
use hangwatch_core::kmsg::{Format, LogReader};
use hangwatch_core::model::Source;
use hangwatch_core::testkit::expect::{check_all, IncidentExpect, Who};
use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/dmesg/");
const LOGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/logs/");
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/golden/");
/// The samples' local time (journalctl ran with TZ=Europe/Warsaw).
const WARSAW: &str = "CET-1CEST,M3.5.0,M10.5.0/3";
/// Year-less stamps are read as not after 2026-11-29 (the samples are from May 2026).
const REFERENCE_NS: u64 = 1_796_083_200_000_000_000;

fn analyzer() -> Analyzer {
    analyzer_at(Some(REFERENCE_NS))
}

/// An analyzer reading year-less stamps against `reference` (None: each file's mtime).
fn analyzer_at(reference: Option<u64>) -> Analyzer {
    let an = Analyzer::new(
        Config::default(),
        Format::Auto,
        hangwatch_core::kmsg::walltime::zone_named(WARSAW).unwrap(),
    );
    match reference {
        Some(r) => an.with_reference(r),
        None => an,
    }
}

/// `hangwatch analyze FILE…`.
fn analyze_files(paths: &[PathBuf]) -> (Vec<Incident>, Vec<InputResult>) {
    analyze_files_at(paths, REFERENCE_NS)
}

/// `hangwatch analyze FILE…` with year-less stamps read against `reference_ns`.
fn analyze_files_at(paths: &[PathBuf], reference_ns: u64) -> (Vec<Incident>, Vec<InputResult>) {
    let mut an = analyzer_at(Some(reference_ns));
    let mut out = Vec::new();
    let mut results = Vec::new();
    for p in paths {
        let opened = source::open_path(p).unwrap();
        results.push(an.input(&p.display().to_string(), opened, &mut |i| out.extend(i)));
    }
    out.extend(an.finish());
    (out, results)
}

/// `cat A B | hangwatch analyze -`.
fn analyze_stdin(data: Vec<u8>) -> (Vec<Incident>, InputResult) {
    let mut an = analyzer();
    let mut out = Vec::new();
    let opened = source::wrap(Box::new(Cursor::new(data)), None).unwrap();
    let r = an.input("<stdin>", opened, &mut |i| out.extend(i));
    out.extend(an.finish());
    (out, r)
}

fn log(rel: &str) -> PathBuf {
    Path::new(LOGS).join(rel)
}

fn cat(paths: &[PathBuf]) -> Vec<u8> {
    paths
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect()
}

fn analyze(name: &str) -> Vec<Incident> {
    let text = std::fs::read_to_string(format!("{FIXTURES}{name}.log")).unwrap();
    let mut c = Correlator::new(Config::default());
    let mut out = Vec::new();
    for e in hangwatch_core::kmsg::parse_text(&text, Source::Log) {
        out.extend(c.push(e));
    }
    out.extend(c.finish());
    out
}

/// The fields by which two incidents are the same verdict (a log read back, another form).
fn key_fields(i: &Incident) -> Value {
    let v = serde_json::to_value(i).unwrap();
    hangwatch_core::schema_check::assert_schema(&v);
    let who = |p: &Value| {
        if p.is_null() {
            Value::Null
        } else {
            json!({"pid": p["pid"], "comm": p["comm"]})
        }
    };
    json!({
        "kind": v["kind"],
        "ring": v["ring"],
        "gpu": v["gpu"],
        "culprit": who(&v["culprit"]),
        "confidence": v["confidence"],
        "kernel_blamed": who(&v["kernel_blamed"]),
        "kernel_blame_disputed": v["kernel_blame_disputed"],
        "victims": i.victims.iter().map(|x| x.pid).collect::<Vec<_>>(),
        "reset": v["reset"],
        "started_at": v["started_at"],
    })
}

/// Who the incident blames, in a line: kind, ring, culprit, kernel-blamed, disputed.
fn verdict(i: &Incident) -> String {
    let v = serde_json::to_value(i).unwrap();
    hangwatch_core::schema_check::assert_schema(&v);
    format!(
        "{} {} culprit={} kernel={} disputed={}",
        v["kind"].as_str().unwrap_or("?"),
        v["ring"].as_str().unwrap_or("-"),
        v["culprit"]["comm"].as_str().unwrap_or("-"),
        v["kernel_blamed"]["comm"].as_str().unwrap_or("-"),
        i.kernel_blame_disputed
    )
}

/// The fields every golden incident states: the whole verdict, times and reset included.
const GOLDEN_FIELDS: [&str; 10] = [
    "kind",
    "ring",
    "gpu",
    "culprit",
    "confidence",
    "kernel_blamed",
    "kernel_blame_disputed",
    "victim_pids",
    "reset",
    "started_at",
];

/// The expected incidents of testdata/golden/`name`.json, each stating [`GOLDEN_FIELDS`] and
/// every named process with its pid.
fn golden(name: &str) -> Vec<IncidentExpect> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Golden {
        #[serde(rename = "_why")]
        _why: String,
        incidents: Vec<IncidentExpect>,
    }
    let path = format!("{GOLDEN}{name}.json");
    let g: Golden = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    for want in &g.incidents {
        assert_eq!(want.stated(), GOLDEN_FIELDS, "{path}: {want:?}");
        for w in [&want.culprit, &want.kernel_blamed].into_iter().flatten() {
            assert!(
                !matches!(w, Who::Process { pid: None, .. }),
                "{path}: {w:?} without a pid"
            );
        }
    }
    g.incidents
}

/// `got` (schema-checked) says what `want` states, incident by incident.
fn assert_golden(want: &[IncidentExpect], got: &[Incident], what: &str) {
    for i in got {
        hangwatch_core::schema_check::assert_schema(&serde_json::to_value(i).unwrap());
    }
    if let Err(e) = check_all(want, got) {
        panic!("{what}:\n{e}");
    }
}

fn check(name: &str) {
    assert_golden(&golden(name), &analyze(name), name);
}

#[test]
fn v710_zed_fault_then_timeout() {
    check("v710-zed-fault-then-timeout");
}

#[test]
fn rx7900xtx_mes_mode1_reset() {
    check("rx7900xtx-mes-mode1-reset");
}

#[test]
fn v710_illegal_opcode() {
    check("v710-illegal-opcode");
}

#[test]
fn evidence_is_log_sourced_with_lines() {
    for name in [
        "v710-zed-fault-then-timeout",
        "rx7900xtx-mes-mode1-reset",
        "v710-illegal-opcode",
    ] {
        for i in analyze(name) {
            assert_eq!(i.schema, "hangwatch.incident/1");
            assert!(!i.evidence.is_empty());
            assert!(
                i.evidence
                    .iter()
                    .all(|e| e.source == Source::Log && !e.lines.is_empty()),
                "{name}"
            );
        }
    }
}

// ---- reproductions: boots and files ----

/// The two boots of testdata/logs: boot 1 = zed's faults, boot 2 = the Xwayland timeout that
/// the kernel blames correctly. Expected by reading the logs: one incident per boot, and boot
/// 1's faults never dispute boot 2's blame.
const TWO_BOOTS: [&str; 2] = [
    "page_fault - culprit=zed kernel=zed disputed=false",
    "ring_timeout gfx_0.0.0 culprit=Xwayland kernel=Xwayland disputed=false",
];
const BOOT2_ID: &str = "7a8b9c0d1e2f30415263748596a7b8c9";

#[test]
fn cat_dmesg_of_two_boots_keeps_boot_1_fault_out_of_boot_2() {
    let (inc, r) = analyze_stdin(cat(&[
        log("dmesg/v710-boot1.dmesg"),
        log("dmesg/v710-boot2.dmesg"),
    ]));
    assert_eq!(inc.iter().map(verdict).collect::<Vec<_>>(), TWO_BOOTS);
    assert_eq!(r.stats.boots, 2);
    // Without the Linux version line (a trimmed paste), the clock going back still splits them.
    let trimmed: Vec<u8> = String::from_utf8(cat(&[
        log("dmesg/v710-boot2.dmesg"),
        log("dmesg/v710-boot1.dmesg"),
    ]))
    .unwrap()
    .lines()
    .filter(|l| !l.contains("Linux version"))
    .flat_map(|l| format!("{l}\n").into_bytes())
    .collect();
    let (inc, r) = analyze_stdin(trimmed);
    assert_eq!(r.stats.boots, 2);
    assert_eq!(
        inc.iter().map(verdict).collect::<Vec<_>>(),
        [TWO_BOOTS[1], TWO_BOOTS[0]]
    );
}

#[test]
fn files_in_any_order_keep_their_own_boots() {
    for order in [
        ["v710-boot1.dmesg", "v710-boot2.dmesg"],
        ["v710-boot2.dmesg", "v710-boot1.dmesg"],
    ] {
        let paths: Vec<PathBuf> = order.iter().map(|n| log(&format!("dmesg/{n}"))).collect();
        let (inc, _) = analyze_files(&paths);
        let mut got: Vec<String> = inc.iter().map(verdict).collect();
        got.sort();
        assert_eq!(got, TWO_BOOTS, "{order:?}");
    }
    // The same file twice: each copy is its own boot (a file never continues another's).
    let p = log("dmesg/v710-boot2.dmesg");
    let (inc, _) = analyze_files(&[p.clone(), p]);
    assert_eq!(inc.len(), 2);
}

#[test]
fn cat_illegal_opcode_then_zed_keeps_the_disputed_verdict() {
    let (inc, r) = analyze_stdin(cat(&[
        PathBuf::from(format!("{FIXTURES}v710-illegal-opcode.log")),
        PathBuf::from(format!("{FIXTURES}v710-zed-fault-then-timeout.log")),
    ]));
    assert_eq!(
        r.stats.boots, 2,
        "the clock goes from 1889979 s back to 135 s"
    );
    let want: Vec<IncidentExpect> = ["v710-illegal-opcode", "v710-zed-fault-then-timeout"]
        .iter()
        .flat_map(|n| golden(n))
        .collect();
    assert_golden(&want, &inc, "illegal opcode then zed");
}

// ---- reproductions: every form ----

/// Every `journalctl -o` form of the two-boot journal gives the same verdicts; the forms that
/// print a wall clock give the incident's wall time, and every form but `cat` the host name.
#[test]
fn every_journalctl_form_spanning_boots() {
    // journald received boot 2's timeout at 20:02:26.437250 CEST (18:02:26Z); the printk stamp
    // is 5 µs earlier, which the JSON/export forms carry.
    let cases: [(&str, Option<&str>); 11] = [
        ("short", Some("2026-05-08T18:02:26.000000Z")),
        ("short-precise", Some("2026-05-08T18:02:26.437250Z")),
        ("short-iso", Some("2026-05-08T18:02:26.000000Z")),
        ("short-iso-precise", Some("2026-05-08T18:02:26.437250Z")),
        ("short-full", Some("2026-05-08T18:02:26.000000Z")),
        ("short-monotonic", None),
        ("short-unix", Some("2026-05-08T18:02:26.437250Z")),
        ("short.pl_PL", Some("2026-05-08T18:02:26.000000Z")),
        ("cat", None),
        ("json", Some("2026-05-08T18:02:26.437245Z")),
        ("export", Some("2026-05-08T18:02:26.437245Z")),
    ];
    for (form, wall) in cases {
        let (inc, r) = analyze_files(&[log(&format!("journal/v710-two-boots.{form}"))]);
        let r = &r[0];
        assert_eq!(
            inc.iter().map(verdict).collect::<Vec<_>>(),
            TWO_BOOTS,
            "{form}"
        );
        assert_eq!(
            (r.stats.boots, r.stats.amdgpu_lines, r.error.as_deref()),
            (2, 14, None),
            "{form}"
        );
        let boot2 = &inc[1];
        assert_eq!(boot2.wall_time.as_deref(), wall, "{form}");
        if form != "cat" {
            assert_eq!(boot2.hostname.as_deref(), Some("v710-vm"), "{form}");
            assert_eq!(boot2.boot_id.as_deref(), Some(BOOT2_ID), "{form}");
        }
        if form == "short-monotonic" {
            assert_eq!(boot2.started_at, "146.437245");
        }
    }
}

#[test]
fn localized_month_names() {
    // A real Polish-locale report (llama.cpp #21724): `maj 08 19:27:35 RX-78-FPC kernel: …`.
    let (inc, r) = analyze_files(&[log("real/llama.cpp-21724-polish.journal")]);
    let r = &r[0];
    assert_eq!(r.stats.unknown_month_lines, 0);
    assert_eq!(
        inc.iter().map(verdict).collect::<Vec<_>>(),
        ["ring_timeout gfx_0.0.0 culprit=llama-server kernel=llama-server disputed=false"]
    );
    assert_eq!(
        inc[0].wall_time.as_deref(),
        Some("2026-05-08T17:27:35.000000Z")
    );
    assert_eq!(inc[0].hostname.as_deref(), Some("RX-78-FPC"));
}

/// The rx7900xtx golden log in each rotated/compressed rsyslog form and as `dmesg -T`.
#[test]
fn rotated_and_compressed_kern_log() {
    let golden = |started: &str| {
        let mut want = golden("rx7900xtx-mes-mode1-reset");
        want[0].started_at = Some(started.into());
        want
    };
    for (file, compression, started, wall) in [
        // Traditional format keeps [ts]: the printk clock, wall time from the syslog prefix
        // (whole seconds, so up to 1 s early).
        (
            "rsyslog/kern.log.2.gz",
            Some("gzip"),
            "45766.649480",
            "2026-05-09T05:42:46.000000Z",
        ),
        (
            "rsyslog/kern.log.rfc3339.xz",
            Some("xz"),
            "2026-05-09T05:42:46.653480Z",
            "2026-05-09T05:42:46.653480Z",
        ),
        (
            "rsyslog/kern.log.rfc3339.zst",
            Some("zstd"),
            "2026-05-09T05:42:46.653480Z",
            "2026-05-09T05:42:46.653480Z",
        ),
        (
            "dmesg/rx7900xtx.dmesg-T",
            None,
            "2026-05-09T05:42:46.000000Z",
            "2026-05-09T05:42:46.000000Z",
        ),
    ] {
        let (inc, r) = analyze_files(&[log(file)]);
        let r = &r[0];
        assert_eq!(
            (r.compression, r.error.as_deref(), r.stats.amdgpu_lines),
            (compression, None, 19),
            "{file}"
        );
        assert_golden(&golden(started), &inc, file);
        assert_eq!(inc[0].wall_time.as_deref(), Some(wall), "{file}");
    }
    // A truncated rotation: the error names it, what was read still counts.
    let gz = std::fs::read(log("rsyslog/kern.log.2.gz")).unwrap();
    let (_, r) = analyze_stdin(gz[..gz.len() * 2 / 3].to_vec());
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.contains("gzip data is corrupt or truncated")),
        "{:?}",
        r.error
    );
    assert!(r.stats.amdgpu_lines > 0);
    assert_eq!(exit_code(&[r]), 1);
}

/// `hangwatch analyze --journal --journal-file F [--boot N]` reads the journal through
/// journalctl (present wherever systemd is).
#[test]
fn journal_read_directly() {
    if std::process::Command::new("journalctl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("journalctl is not installed: --journal cannot be tested here");
        return;
    }
    let xz = std::fs::read(log("journal/v710-two-boots.journal.xz")).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut source::wrap(Box::new(Cursor::new(xz)), None)
            .unwrap()
            .reader,
        &mut raw,
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("hangwatch-golden-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("v710.journal");
    std::fs::write(&file, raw).unwrap();
    for (boot, want) in [
        (None, &TWO_BOOTS[..]),
        (Some("-1"), &TWO_BOOTS[..1]),
        (Some("0"), &TWO_BOOTS[1..]),
    ] {
        let src = JournalSource {
            boot: boot.map(str::to_string),
            files: vec![file.clone()],
            directory: None,
        };
        let mut an = analyzer();
        let mut inc = Vec::new();
        let r = an.input("journal", source::open_journal(&src).unwrap(), &mut |i| {
            inc.extend(i)
        });
        inc.extend(an.finish());
        assert_eq!(r.error, None, "{boot:?}");
        assert_eq!(
            inc.iter().map(verdict).collect::<Vec<_>>(),
            want,
            "{boot:?}"
        );
        assert!(inc
            .iter()
            .all(|i| i.hostname.as_deref() == Some("v710-vm") && i.boot_id.is_some()));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nothing_understood_exits_non_zero_and_says_what_it_saw() {
    let (_, r) = analyze_stdin(b"Hello\nthis is not a log\x1b]0;x\x07\n".to_vec());
    assert_eq!(exit_code(std::slice::from_ref(&r)), EXIT_NOT_UNDERSTOOD);
    let msg = hangwatch_core::analyze::not_understood("<stdin>", &r.stats);
    assert!(
        msg.contains("1: Hello") && msg.contains("\\x1b]0;x\\x07"),
        "{msg}"
    );
    assert!(
        msg.contains("short-monotonic") && msg.contains("gzip"),
        "{msg}"
    );
    // A kernel log without amdgpu lines is understood (exit 0, "no amdgpu messages").
    let (_, r) = analyze_stdin(b"[    1.000000] usb 1-1: new high-speed USB device\n".to_vec());
    assert_eq!(exit_code(&[r]), 0);
    let (_, r) = analyze_stdin(Vec::new());
    assert_eq!(exit_code(&[r]), EXIT_NOT_UNDERSTOOD);
}

// ---- kernel.log round trip ----

/// What `hangwatch run --output` / `analyze --output` writes as the incident's kernel.log,
/// analysed again, gives the same incident (verdict, times, wall time, host).
#[test]
fn incident_kernel_log_reads_back_to_the_same_incident() {
    let inputs = [
        PathBuf::from(format!("{FIXTURES}v710-zed-fault-then-timeout.log")),
        PathBuf::from(format!("{FIXTURES}rx7900xtx-mes-mode1-reset.log")),
        PathBuf::from(format!("{FIXTURES}v710-illegal-opcode.log")),
        log("journal/v710-two-boots.json"),
        log("journal/v710-two-boots.short-precise"),
        log("rsyslog/kern.log.2.gz"),
        log("kmsg/rx7900xtx-ring-reset.kmsg"),
        log("real/llama.cpp-21724-polish.journal"),
    ];
    for p in inputs {
        let (incidents, _) = analyze_files(std::slice::from_ref(&p));
        assert!(!incidents.is_empty(), "{}", p.display());
        for inc in incidents {
            let kernel_log = hangwatch_core::render::kernel_log(&inc).into_bytes();
            let (again, r) = analyze_stdin(kernel_log.clone());
            let text = String::from_utf8_lossy(&kernel_log);
            assert_eq!(again.len(), 1, "{}: {text}", p.display());
            let a = &again[0];
            assert_eq!(key_fields(a), key_fields(&inc), "{}: {text}", p.display());
            assert_eq!(
                (&a.wall_time, &a.hostname),
                (&inc.wall_time, &inc.hostname),
                "{}: {text}",
                p.display()
            );
            assert!(r.stats.understood());
        }
    }
}

/// The reader that `analyze` uses is also what the bench measures: make sure a LogReader
/// built directly agrees with the Analyzer on a fixture.
#[test]
fn log_reader_and_analyzer_agree() {
    let data = std::fs::read(format!("{FIXTURES}v710-zed-fault-then-timeout.log")).unwrap();
    let mut lr = LogReader::new(Format::Auto, Source::Log);
    let mut n = 0;
    lr.read(&data[..], &mut |_| n += 1).unwrap();
    lr.finish(&mut |_| n += 1);
    assert_eq!((n, lr.stats.amdgpu_lines, lr.stats.boots), (8, 14, 1));
}

/// The rx7900xtx log as util-linux 2.38.1 `dmesg` prints it without printk stamps or with a
/// decoration (testdata/logs/make-dmesg-samples.sh): the verdict of the plain log every time.
/// reltime (`dmesg -H`) gives the wall clock to the minute (never after the `-x -T` time of
/// the same run, less than a minute before it) and times relative to its first line; delta
/// gives relative times only; notime gives order only; `-x` keeps the printk stamps.
#[test]
fn dmesg_relative_notime_and_decorated_forms() {
    let golden = golden("rx7900xtx-mes-mode1-reset");
    // 2026-12-01T00:00:00Z: the samples were made on 2026-11-29 (Nov30 07:20 Warsaw).
    let reference = 1_796_083_200_000_000_000;
    let mut walls = Vec::new();
    for (file, started, wall) in [
        ("reltime", "0.000000", Some("2026-11-30T06:20:00.000000Z")),
        (
            "x-T",
            "2026-11-30T06:20:10.000000Z",
            Some("2026-11-30T06:20:10.000000Z"),
        ),
        ("delta", "0.000000", None),
        ("notime", "0.000000", None),
        ("x", "45766.649480", None),
    ] {
        let path = log(&format!("dmesg/rx7900xtx.dmesg-{file}"));
        let (inc, r) = analyze_files_at(std::slice::from_ref(&path), reference);
        assert_eq!(
            (r[0].stats.amdgpu_lines, r[0].error.as_deref()),
            (19, None),
            "{file}"
        );
        let mut want = golden.clone();
        want[0].started_at = Some(started.into());
        assert_golden(&want, &inc, file);
        assert_eq!(inc[0].wall_time.as_deref(), wall, "{file}");
        walls.push(inc[0].wall_time.clone());
        // The incident's kernel.log reads back to the same incident and wall time.
        let kernel_log = hangwatch_core::render::kernel_log(&inc[0]).into_bytes();
        let (again, _) = analyze_stdin(kernel_log);
        assert_eq!(key_fields(&again[0]), key_fields(&inc[0]), "{file}");
        assert_eq!(again[0].wall_time, inc[0].wall_time, "{file}");
    }
    // Same date: compare the time of day.
    let ts = |w: &Option<String>| {
        let w = w.as_deref().unwrap();
        assert_eq!(&w[..10], "2026-11-30");
        w[11..19]
            .split(':')
            .fold(0u32, |a, p| a * 60 + p.parse::<u32>().unwrap())
    };
    let (rel, exact) = (ts(&walls[0]), ts(&walls[1]));
    assert!(rel <= exact && exact - rel < 60, "{rel} {exact}");
}

/// Year-less stamps take the latest year that does not put them after the file's mtime, kept
/// in order along the stream: a log over New Year copied on Jan 10 or in June is 2026's; the
/// same log with a later `Jan 05` line, copied on Jan 2, cannot be this winter's, and the
/// roll-back reaches the incident read before that line (line by line it would be Dec 31 2026,
/// Jan 1 2027, then Jan 5 2026).
#[test]
fn yearless_stamps_follow_the_file_mtime_and_the_stream() {
    let dir = std::env::temp_dir().join(format!("hangwatch-years-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = "\
Dec 31 23:59:58 host kernel: [drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring gfx timeout, signaled seq=1, emitted seq=3
Dec 31 23:59:58 host kernel: [drm:amdgpu_job_timedout [amdgpu]] *ERROR* Process information: process game pid 42 thread game pid 42
Jan 01 00:00:01 host kernel: amdgpu 0000:03:00.0: amdgpu: GPU reset begin!
Jan 01 00:00:03 host kernel: amdgpu 0000:03:00.0: amdgpu: GPU reset(1) succeeded!
";
    let later =
        "Jan 05 10:00:00 host kernel: amdgpu 0000:03:00.0: amdgpu: GPU recovery disabled.\n";
    // (mtime, a later line, the incident's wall time: 23:59:58 CET is 22:59:58Z)
    for (mtime, tail, wall) in [
        ((2027, 1, 10), "", "2026-12-31T22:59:58.000000Z"),
        ((2027, 6, 1), "", "2026-12-31T22:59:58.000000Z"),
        ((2027, 1, 10), later, "2026-12-31T22:59:58.000000Z"),
        ((2027, 1, 2), later, "2025-12-31T22:59:58.000000Z"),
    ] {
        let path = dir.join("kern.log");
        std::fs::write(&path, format!("{text}{tail}")).unwrap();
        let noon = hangwatch_core::kmsg::walltime::Civil {
            year: mtime.0,
            month: mtime.1,
            day: mtime.2,
            hour: 12,
            minute: 0,
            second: 0,
            nanos: 0,
        };
        let ns = noon.at_offset(0).unwrap();
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
        let mtime = format!("{mtime:?}");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
        let mut an = analyzer_at(None);
        let mut inc = Vec::new();
        an.input("kern.log", source::open_path(&path).unwrap(), &mut |i| {
            inc.extend(i)
        });
        inc.extend(an.finish());
        assert_eq!(
            inc.iter().map(verdict).collect::<Vec<_>>(),
            ["ring_timeout gfx culprit=game kernel=game disputed=false"],
            "mtime {mtime}"
        );
        assert_eq!(inc[0].wall_time.as_deref(), Some(wall), "mtime {mtime}");
        assert_eq!(inc[0].reset, Some(ResetOutcome::Succeeded), "mtime {mtime}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
