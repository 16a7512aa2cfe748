//! Kernel-log input: recognise amdgpu messages and fold continuation lines into records.
//! `lines` recognises one message, `assemble` folds continuations (and applies the
//! "most recent device" rule), `input` reads the log formats and timestamps. See docs/kmsg.md.
pub mod assemble;
pub mod input;
pub mod lines;

pub use assemble::KmsgAssembler;
pub use input::{parse_dev_kmsg_record, Format, InputStats, LogReader};

use crate::model::{Event, Source};

/// Parse a whole saved log (plain dmesg, `dmesg -T`, ISO stamps, journalctl text/JSON/export;
/// format auto-detected) into events in log order.
pub fn parse_text(text: &str, source: Source) -> Vec<Event> {
    let mut reader = LogReader::new(Format::Auto, source);
    let mut out = Vec::new();
    // Reading from a byte slice cannot fail.
    let _ = reader.read(text.as_bytes(), &mut |e| out.push(e));
    reader.finish(&mut |e| out.push(e));
    out
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::model::EventBody;
    use proptest::prelude::*;

    const REAL: &[&str] = &[
        include_str!("../../../testdata/dmesg/v710-zed-fault-then-timeout.log"),
        include_str!("../../../testdata/dmesg/rx7900xtx-mes-mode1-reset.log"),
        include_str!("../../../testdata/dmesg/v710-illegal-opcode.log"),
        include_str!("testdata/v710-zed.journal.json"),
    ];

    /// Every emitted line must come from the input (no invented text), and nothing panics.
    fn check(text: &str) {
        for e in parse_text(text, Source::Log) {
            let r = match &e.body {
                EventBody::Kmsg(r) => r,
                EventBody::KfdLog(k) => {
                    assert!(text.contains(k.line.as_str()) || k.line.contains('\u{fffd}'));
                    continue;
                }
                _ => panic!("non-kmsg event"),
            };
            for l in &r.lines {
                assert!(
                    text.contains(l.as_str()) || l.contains('\u{fffd}'),
                    "line not in input: {l:?}"
                );
            }
        }
        let mut a = KmsgAssembler::new(Source::Kmsg);
        for l in text.split('\n') {
            a.push_line(0, crate::model::Clock::Monotonic, l);
        }
        a.flush();
    }

    fn real_lines() -> Vec<String> {
        REAL.iter()
            .flat_map(|t| t.lines())
            .map(str::to_string)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]
        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            check(&text);
        }

        #[test]
        fn mutated_real_lines(
            picks in proptest::collection::vec((0usize..64, 0usize..300, 0usize..300, any::<char>()), 1..12)
        ) {
            let lines = real_lines();
            let mut text = String::new();
            for (i, cut, pos, ch) in picks {
                let mut l = lines[i % lines.len()].clone();
                // truncate at a char boundary, then insert a random char somewhere
                let cut = l.char_indices().map(|(j, _)| j).nth(cut % (l.chars().count() + 1)).unwrap_or(l.len());
                l.truncate(cut);
                let pos = l.char_indices().map(|(j, _)| j).nth(pos % (l.chars().count() + 1)).unwrap_or(l.len());
                l.insert(pos, ch);
                text.push_str(&l);
                text.push('\n');
            }
            check(&text);
        }
    }
}
