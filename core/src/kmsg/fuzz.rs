//! Property tests of every reader on hostile input: arbitrary bytes, real samples of each form
//! cut and mutated at any byte (so UTF-8 breaks anywhere), compressed samples truncated or
//! corrupted, journal export streams with broken lengths, /dev/kmsg records. Nothing may panic,
//! every kept line must come from the input, and records stay within their bounds.
//! Budget: `HANGWATCH_FUZZ_CASES` cases per property (default 256: a few seconds in CI).
use std::io::Write;

use proptest::prelude::*;

use super::assemble::{KmsgAssembler, MAX_RECORD_LINES, MAX_SHOWN_BYTES};
use super::input::{parse_dev_kmsg_record, Format, LogReader, MAX_LINE_BYTES};
use super::source;
use crate::model::{Clock, Event, EventBody, Source};

const SAMPLES: &[&[u8]] = &[
    include_bytes!("../../../testdata/dmesg/v710-zed-fault-then-timeout.log"),
    include_bytes!("../../../testdata/dmesg/rx7900xtx-mes-mode1-reset.log"),
    include_bytes!("../../../testdata/dmesg/v710-illegal-opcode.log"),
    include_bytes!("../../../testdata/logs/journal/v710-two-boots.short"),
    include_bytes!("../../../testdata/logs/journal/v710-two-boots.short-precise"),
    include_bytes!("../../../testdata/logs/journal/v710-two-boots.short-iso"),
    include_bytes!("../../../testdata/logs/journal/v710-two-boots.short-iso-precise"),
    include_bytes!("../../../testdata/logs/journal/v710-two-boots.short-full"),
    include_bytes!("../../../testdata/logs/journal/v710-two-boots.short-monotonic"),
    include_bytes!("../../../testdata/logs/journal/v710-two-boots.short-unix"),
    include_bytes!("../../../testdata/logs/journal/v710-two-boots.short.pl_PL"),
    include_bytes!("../../../testdata/logs/journal/v710-two-boots.cat"),
    include_bytes!("../../../testdata/logs/journal/v710-two-boots.json"),
    include_bytes!("../../../testdata/logs/dmesg/rx7900xtx.dmesg-T"),
    include_bytes!("../../../testdata/logs/dmesg/rx7900xtx.dmesg-reltime"),
    include_bytes!("../../../testdata/logs/dmesg/rx7900xtx.dmesg-delta"),
    include_bytes!("../../../testdata/logs/dmesg/rx7900xtx.dmesg-x-T"),
    include_bytes!("../../../testdata/corpus/mbab-48-gmcv9-journal-dutch-vmc-fault.log"),
    include_bytes!("../../../testdata/logs/kmsg/rx7900xtx-ring-reset.kmsg"),
    include_bytes!("../../../testdata/logs/real/llama.cpp-21724-polish.journal"),
];
const EXPORT: &[u8] = include_bytes!("../../../testdata/logs/journal/v710-two-boots.export");
const COMPRESSED: &[&[u8]] = &[
    include_bytes!("../../../testdata/logs/rsyslog/kern.log.2.gz"),
    include_bytes!("../../../testdata/logs/rsyslog/kern.log.rfc3339.xz"),
    include_bytes!("../../../testdata/logs/rsyslog/kern.log.rfc3339.zst"),
];

fn cases() -> u32 {
    std::env::var("HANGWATCH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Read `data` as `analyze` does (magic sniffing included); check the invariants.
fn read_checked(data: &[u8], format: Format) {
    let mut events = Vec::new();
    if let Ok(mut o) = source::wrap(Box::new(std::io::Cursor::new(data.to_vec())), None) {
        let mut r = LogReader::new(format, Source::Log);
        let _ = r.read(&mut o.reader, &mut |e| events.push(e));
        r.finish(&mut |e| events.push(e));
        assert!(r.stats.lines <= data.len() as u64 + 1);
    }
    check_events(&events, data);
}

fn check_events(events: &[Event], input: &[u8]) {
    // Lines a terminal wrapped are kept joined back: the input without its line breaks.
    let text = String::from_utf8_lossy(input).replace(['\r', '\n'], "");
    for e in events {
        let r = match &e.body {
            EventBody::Kmsg(r) => r,
            EventBody::Boot(b) => {
                assert!(b.hostname.as_ref().is_none_or(|h| h.len() <= 255));
                continue;
            }
            other => panic!("unexpected event {other:?}"),
        };
        assert!(
            r.lines.len() <= MAX_RECORD_LINES + 1,
            "{} lines",
            r.lines.len()
        );
        for l in &r.lines {
            assert!(l.len() <= MAX_SHOWN_BYTES + 64, "line of {} bytes", l.len());
            if l.starts_with("[hangwatch:")
                || l.contains('\u{fffd}')
                || l.contains("[hangwatch: line truncated]")
            {
                continue;
            }
            // A kept line is the input line, or its message under a rendered stamp prefix.
            let msg = l.split_once("] ").map_or(l.as_str(), |(_, m)| m);
            let msg = msg.rsplit_once("kernel: ").map_or(msg, |(_, m)| m);
            let after_iso = l.split_once(' ').map_or(l.as_str(), |(_, m)| m);
            assert!(
                [l.as_str(), msg, after_iso]
                    .iter()
                    .any(|c| text.contains(c))
                    || !input.is_ascii(),
                "line not in input: {l:?}"
            );
        }
    }
}

/// Cut and splice a sample at byte positions, insert bytes (any, including halves of UTF-8
/// characters) and duplicate lines.
fn mutate(sample: &[u8], edits: &[(usize, usize, Vec<u8>)]) -> Vec<u8> {
    let mut v = sample.to_vec();
    for (pos, cut, ins) in edits {
        if v.is_empty() {
            v.extend_from_slice(ins);
            continue;
        }
        let p = pos % (v.len() + 1);
        let c = (*cut % 16).min(v.len() - p.min(v.len()));
        v.splice(p..p + c, ins.iter().copied());
    }
    v
}

fn edits() -> impl Strategy<Value = Vec<(usize, usize, Vec<u8>)>> {
    let ins = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..6),
        Just("é".as_bytes().to_vec()),
        Just("月".as_bytes()[..2].to_vec()),
        Just(b"\n".to_vec()),
        Just(b"] ".to_vec()),
        Just(b"-- Boot 0123 --\n".to_vec()),
        Just(b"Linux version ".to_vec()),
        Just(b" amdgpu 0000:03:00.0: amdgpu: ".to_vec()),
    ];
    proptest::collection::vec((any::<usize>(), any::<usize>(), ins), 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        read_checked(&bytes, Format::Auto);
    }

    #[test]
    fn every_form_cut_and_mutated(which in 0..SAMPLES.len(), e in edits(), fmt in 0..5usize) {
        let data = mutate(SAMPLES[which], &e);
        let f = [Format::Auto, Format::Dmesg, Format::Kmsg, Format::JournalJson, Format::JournalExport][fmt];
        read_checked(&data, f);
    }

    #[test]
    fn every_form_truncated_anywhere(which in 0..SAMPLES.len(), at in any::<usize>()) {
        let s = SAMPLES[which];
        read_checked(&s[..at % (s.len() + 1)], Format::Auto);
    }

    #[test]
    fn journal_export_broken(e in edits(), at in any::<usize>()) {
        let data = mutate(EXPORT, &e);
        read_checked(&data[..at % (data.len() + 1)], Format::Auto);
        read_checked(&data, Format::JournalExport);
    }

    #[test]
    fn compressed_truncated_or_corrupted(which in 0..COMPRESSED.len(), at in any::<usize>(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4)) {
        let mut data = COMPRESSED[which].to_vec();
        for (p, x) in flips {
            let n = data.len();
            data[p % n] ^= x;
        }
        let cut = at % (data.len() + 1);
        read_checked(&data[..cut], Format::Auto);
    }

    #[test]
    fn dev_kmsg_records(head in "[0-9]{0,3},[0-9]{0,5},[0-9]{0,12},[-c]{0,2}", msg in any::<String>(), dict in proptest::collection::vec("[ -~]{0,30}", 0..3)) {
        let mut rec = format!("{head};{msg}\n");
        for d in dict {
            rec.push(' ');
            rec.push_str(&d);
            rec.push('\n');
        }
        if let Some((t, m)) = parse_dev_kmsg_record(&rec) {
            prop_assert!(!m.contains('\n'));
            let mut a = KmsgAssembler::new(Source::Kmsg);
            let mut ev = a.push_line(t, Clock::Monotonic, &m);
            ev.extend(a.flush());
            check_events(&ev, rec.as_bytes());
        }
    }
}

/// One fault header followed by a flood of continuation lines (2 M lines once took 645 MB):
/// the record keeps [`MAX_RECORD_LINES`], counts the rest and says so; lines are cut at
/// [`MAX_LINE_BYTES`].
#[test]
fn continuation_flood_is_bounded_and_counted() {
    let mut data = Vec::new();
    writeln!(data, "[  1.000000] amdgpu 0000:03:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:40 vmid:7 pasid:1)").unwrap();
    let n = 200_000;
    for i in 0..n {
        writeln!(
            data,
            "[  1.000001] amdgpu 0000:03:00.0: amdgpu: \t MORE_FAULTS: 0x{i:x}"
        )
        .unwrap();
    }
    data.extend(b"[  2.0] amdgpu 0000:03:00.0: amdgpu: ");
    data.extend(vec![b'y'; 4 * MAX_LINE_BYTES]);
    data.push(b'\n');
    let mut r = LogReader::new(Format::Auto, Source::Log);
    let mut events = Vec::new();
    r.read(&data[..], &mut |e| events.push(e)).unwrap();
    r.finish(&mut |e| events.push(e));
    let rec: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Kmsg(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rec[0].lines.len(), MAX_RECORD_LINES + 1);
    let dropped = (n - (MAX_RECORD_LINES - 1)) as u64;
    assert_eq!(r.stats.dropped_continuations, dropped);
    assert!(rec[0]
        .lines
        .last()
        .unwrap()
        .contains(&format!("{dropped} more continuation lines")));
    assert_eq!(r.stats.long_lines, 1);
    check_events(&events, &data);
}
