//! Failure classes of real logs outside the corpus, one test per class: each is a line shape
//! or paste damage that once made `hangwatch analyze` read nothing, or the wrong thing.
mod common;
use common::analyze;

/// A gfx hang as a 6.x kernel built with amdgpu as a module prints it (dmesg).
const TAGGED: &str = "\
[ 100.000000] [drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring gfx_0.0.0 timeout, signaled seq=10, emitted seq=12
[ 100.000010] [drm:amdgpu_job_timedout [amdgpu]] *ERROR* Process information: process glxgears pid 4242 thread glxgears:cs0 pid 4243
[ 100.000100] amdgpu 0000:03:00.0: amdgpu: GPU reset begin!
[ 100.500000] amdgpu 0000:03:00.0: amdgpu: GPU reset(1) succeeded!
";

/// (ring, kernel_blamed) of each incident.
type Blamed = Vec<(Option<String>, Option<(String, u32)>)>;

fn blamed(log: &str) -> Blamed {
    analyze(log.as_bytes())
        .into_iter()
        .map(|a| (a.ring, a.kernel_blamed))
        .collect()
}

fn glxgears_on_gfx() -> Blamed {
    vec![(
        Some("gfx_0.0.0".to_string()),
        Some(("glxgears".to_string(), 4242)),
    )]
}

#[test]
fn drm_prefix_without_module_tag() {
    assert_eq!(blamed(TAGGED), glxgears_on_gfx());
    let untagged = TAGGED.replace(" [amdgpu]]", "]");
    assert_eq!(blamed(&untagged), glxgears_on_gfx());
    // Every DRM_ERROR line the recogniser knows, not only the timeout: an IP block's IRQ.
    let irq = "[ 99.0] [drm:gfx_v9_0_bad_op_irq] *ERROR* Illegal opcode in command stream\n";
    let with_irq = format!("{irq}{untagged}");
    let a = analyze(with_irq.as_bytes());
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].confidence, "certain", "{a:?}");
    // Another driver's DRM_ERROR line is not amdgpu's.
    let i915 = "[ 1.0] [drm:intel_dp_start_link_train] *ERROR* ring gfx timeout, signaled seq=1, emitted seq=2\n";
    assert!(analyze(i915.as_bytes()).is_empty());
}

#[test]
fn journal_short_with_empty_host_field() {
    let journal = TAGGED
        .lines()
        .map(|l| {
            let msg = l.split_once("] ").unwrap().1;
            format!("Nov 14 10:46:51  kernel: {msg}\n")
        })
        .collect::<String>();
    assert_eq!(blamed(&journal), glxgears_on_gfx());
}

#[test]
fn records_joined_on_one_line() {
    let joined = TAGGED.replace('\n', " ");
    assert_eq!(blamed(&joined), glxgears_on_gfx());
    let journal = TAGGED
        .lines()
        .map(|l| {
            format!(
                "Nov 14 10:46:51 host kernel: {} ",
                l.split_once("] ").unwrap().1
            )
        })
        .collect::<String>();
    assert_eq!(blamed(&journal), glxgears_on_gfx());
}

#[test]
fn newest_first_journal() {
    // The order is told by stamps going back (here the reset's lines are a second later each);
    // the Process line, printed after its timeout, must fold onto it again.
    let journal = TAGGED
        .lines()
        .zip([51, 51, 52, 53])
        .map(|(l, s)| {
            let msg = l.split_once("] ").unwrap().1;
            format!("Nov 14 10:46:{s} host kernel: {msg}\n")
        })
        .collect::<Vec<_>>();
    let reversed: String = journal.iter().rev().cloned().collect();
    assert_eq!(blamed(&reversed), glxgears_on_gfx());
    let dmesg_reversed: String = TAGGED.lines().rev().map(|l| format!("{l}\n")).collect();
    assert_eq!(blamed(&dmesg_reversed), glxgears_on_gfx());
}

/// `journalctl -o verbose`: per entry a timestamp and cursor line (boot, monotonic and wall
/// clock in hex µs), then indented `KEY=VALUE` fields; MESSAGE carries the text. Other
/// entries, multi-line values and blobs sit between them.
#[test]
fn journal_verbose() {
    let mut log = String::from("-- Journal begins at Sat 2026-11-14 09:00:00 UTC. --\n");
    log.push_str("Sat 2026-11-14 10:01:39.000000 UTC [s=5d3c;i=1;b=00112233445566778899aabbccddeeff;m=5f5e100;t=65f5a2c1e8f00;x=9f]\n    _TRANSPORT=stdout\n    MESSAGE=first line of a value\n      that goes on here=with an equals sign\n    COREDUMP=[4.0K blob data]\n");
    for (i, l) in TAGGED.lines().enumerate() {
        let (stamp, msg) = l.split_once("] ").unwrap();
        let us = (stamp.trim_start_matches('[').trim().parse::<f64>().unwrap() * 1e6) as u64;
        // journald received it 40 µs after the kernel stamped it, on both clocks.
        let real = 1_794_650_400_000_000 + us + 40;
        log.push_str(&format!(
            "Sat 2026-11-14 10:01:40.000000 UTC [s=5d3c;i={:x};b=00112233445566778899aabbccddeeff;m={:x};t={real:x};x=9f]\n    _BOOT_ID=00112233445566778899aabbccddeeff\n    _TRANSPORT=kernel\n    PRIORITY=3\n    SYSLOG_IDENTIFIER=kernel\n    _SOURCE_MONOTONIC_TIMESTAMP={us}\n    MESSAGE={msg}\n    _HOSTNAME=bernard\n",
            i + 2,
            us + 40,
        ));
    }
    assert_eq!(blamed(&log), glxgears_on_gfx());
    let (incidents, _) = common::analyze_full(log.as_bytes());
    assert_eq!(
        incidents[0].wall_time.as_deref(),
        Some("2026-11-14T10:01:40.000000Z"),
        "{incidents:#?}"
    );
    assert_eq!(incidents[0].hostname.as_deref(), Some("bernard"));
    let st = common::stats(log.as_bytes());
    assert!(
        st.forms
            .contains_key(&hangwatch_core::kmsg::stamp::Form::JournalVerbose),
        "{:?}",
        st.forms
    );
}

/// amdgpu text in a shape no reader knows: exit 3, the forms tried and the lines themselves,
/// never "no amdgpu messages found" with exit 0.
#[test]
fn amdgpu_text_without_a_recognised_record() {
    let log = "\
<<100.000000>> amdgpu-0000:03:00.0 ring gfx_0.0.0 timeout, signaled seq=10, emitted seq=12
<<100.000010>> amdgpu-0000:03:00.0 Process information: process glxgears pid 4242
<<100.000100>> amdgpu-0000:03:00.0 GPU reset begin!
<<100.500000>> amdgpu-0000:03:00.0 GPU reset(1) succeeded!
";
    let (incidents, code) = common::analyze_full(log.as_bytes());
    assert!(incidents.is_empty(), "{incidents:?}");
    assert_eq!(code, hangwatch_core::analyze::EXIT_NOT_UNDERSTOOD);
    let st = common::stats(log.as_bytes());
    assert!(st.amdgpu_unread(), "{st:?}");
    let msg = hangwatch_core::analyze::not_understood("paste.txt", &st);
    assert!(
        msg.contains("4 lines mention amdgpu, but none was read"),
        "{msg}"
    );
    assert!(msg.contains("Forms tried and accepted: dmesg"), "{msg}");
    let quoted: Vec<&str> = msg.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(quoted.len(), 3, "{msg}");
    assert!(quoted[0].contains("ring gfx_0.0.0 timeout"), "{msg}");
    // The same lines in a form it reads are understood: exit 0.
    assert_eq!(common::analyze_full(TAGGED.as_bytes()).1, 0);
}

/// DRM's wedged line after a per-ring reset: `but recovered through reset` until 7.2, `but
/// no recovery needed` from 7.3. Both are evidence of the same incident; only `needs recovery`
/// marks the device (the line names no method: "unknown").
#[test]
fn device_wedged_line_of_each_era() {
    let log = |how: &str| {
        format!(
            "[ 50.000000] amdgpu 0000:c6:00.0: ring gfx_0.0.0 timeout, signaled seq=7, emitted seq=10\n\
             [ 50.000010] amdgpu 0000:c6:00.0:  Process llmbin pid 3038869 thread llmbin pid 3038881\n\
             [ 50.000100] amdgpu 0000:c6:00.0: Starting gfx_0.0.0 ring reset\n\
             [ 50.100000] amdgpu 0000:c6:00.0: Ring gfx_0.0.0 reset succeeded\n\
             [ 50.100010] amdgpu 0000:c6:00.0: [drm] device wedged, {how}\n"
        )
    };
    for (how, needs) in [
        ("but no recovery needed", None),
        ("but recovered through reset", None),
        ("needs recovery", Some("unknown")),
    ] {
        let (incs, _) = common::analyze_full(log(how).as_bytes());
        assert_eq!(incs.len(), 1, "{how}: {incs:#?}");
        let i = &incs[0];
        assert_eq!(i.needs_recovery.as_deref(), needs, "{how}");
        let wedged: Vec<&str> = i
            .evidence
            .iter()
            .filter(|e| e.what.contains("wedged"))
            .flat_map(|e| e.lines.iter().map(String::as_str))
            .collect();
        assert_eq!(wedged.len(), 1, "{how}: {:#?}", i.evidence);
        assert!(
            wedged[0].ends_with(&format!("device wedged, {how}")),
            "{wedged:?}"
        );
    }
}

/// `journalctl -o json` of a desktop hang: the kernel's lines, then Mesa's verdicts in the
/// processes' own streams (`_PID`, `_COMM`, `SYSLOG_IDENTIFIER`), radv's and radeonsi's
/// spellings, and one relayed by Steam's srt-logger. The kernel named no process here.
#[test]
fn mesa_verdicts_in_journal_json_are_joined_by_pid() {
    let entry = |mono_us: u64, fields: &str, msg: &str| {
        format!(
            "{{\"__REALTIME_TIMESTAMP\":\"{}\",\"__MONOTONIC_TIMESTAMP\":\"{mono_us}\",\"_BOOT_ID\":\"0f1e2d3c4b5a69788796a5b4c3d2e1f0\",{fields}\"MESSAGE\":\"{msg}\"}}\n",
            1_798_600_000_000_000u64 + mono_us
        )
    };
    let kernel = "\"_TRANSPORT\":\"kernel\",\"SYSLOG_IDENTIFIER\":\"kernel\",";
    let lost = "The CS has been cancelled because the context is lost. This context is";
    let log = [
        entry(
            100_000_000,
            kernel,
            "amdgpu 0000:03:00.0: amdgpu: ring gfx_0.0.0 timeout, signaled seq=10, emitted seq=12",
        ),
        entry(
            100_000_100,
            kernel,
            "amdgpu 0000:03:00.0: amdgpu: GPU reset begin!",
        ),
        entry(
            100_500_000,
            kernel,
            "amdgpu 0000:03:00.0: amdgpu: GPU reset(1) succeeded!",
        ),
        entry(
            100_600_000,
            "\"_PID\":\"4242\",\"_COMM\":\"game\",\"SYSLOG_IDENTIFIER\":\"game\",",
            &format!("radv/amdgpu: {lost} guilty of a hard recovery."),
        ),
        entry(
            100_600_100,
            "\"_PID\":\"1500\",\"_COMM\":\"kwin_wayland\",\"SYSLOG_IDENTIFIER\":\"kwin_wayland\",",
            "amdgpu: The CS has cancelled because the context is lost. This context is innocent.",
        ),
        entry(
            100_600_200,
            "\"_PID\":\"900\",\"_COMM\":\"srt-logger\",\"SYSLOG_IDENTIFIER\":\"steamwebhelper\",",
            &format!("radv/amdgpu: {lost} innocent."),
        ),
    ]
    .concat();
    let (incs, _) = common::analyze_full(log.as_bytes());
    assert_eq!(incs.len(), 1, "{incs:#?}");
    let i = &incs[0];
    assert_eq!(
        i.culprit.as_ref().map(|c| (c.pid, c.comm.as_str())),
        Some((4242, "game"))
    );
    assert_eq!(i.confidence, hangwatch_core::incident::Confidence::Unknown);
    let victims: Vec<u32> = i.victims.iter().map(|v| v.pid).collect();
    assert_eq!(
        victims,
        [1500],
        "srt-logger relayed, so it names no process"
    );
    let mesa: Vec<&str> = i
        .evidence
        .iter()
        .filter(|e| e.what.starts_with("Mesa in "))
        .map(|e| e.what.as_str())
        .collect();
    assert_eq!(mesa.len(), 3, "{mesa:#?}");
    assert!(
        mesa[2].contains("srt-logger (pid 900)") && mesa[2].contains("logged as steamwebhelper")
    );
    // A verdict with no _PID names nothing and is counted.
    let no_pid = entry(1, "", &format!("radv/amdgpu: {lost} innocent."));
    let st = common::stats(no_pid.as_bytes());
    assert_eq!((st.mesa_verdicts, st.mesa_without_pid), (0, 1));
}
