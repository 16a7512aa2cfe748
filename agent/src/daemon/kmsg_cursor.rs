//! Where to resume `/dev/kmsg` after a restart. Without it a restarted agent reads from the
//! log's end, so `kill -9` between a fault and its timeout loses the fault and blames the
//! victim. The cursor is the sequence number of the last record whose consequences are safely
//! out: it only advances while the correlator has no open incident, the assembler holds no
//! pending record and every closed incident is on disk (a full disk can fail a write), so a
//! restart re-reads every record an unwritten incident needs. It is
//! written durably (temp file, fsync, rename, fsync of the directory) at most every
//! `PERSIST_EVERY`, after an incident is written, and at exit: never per record.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::fsafe::SafeDir;

/// How often a moved cursor is written.
pub const PERSIST_EVERY: Duration = Duration::from_secs(5);
const FILE: &str = "kmsg-cursor";

/// A persisted position: the boot it belongs to and the last fully handled sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub boot_id: String,
    pub seq: u64,
}

impl Cursor {
    pub fn parse(text: &str) -> Option<Cursor> {
        let mut it = text.split_whitespace();
        let boot_id = it.next()?;
        let seq = it.next()?.parse().ok()?;
        let ok = !boot_id.is_empty() && boot_id.len() <= 64 && it.next().is_none();
        ok.then(|| Cursor {
            boot_id: boot_id.to_string(),
            seq,
        })
    }

    pub fn render(&self) -> String {
        format!("{} {}\n", self.boot_id, self.seq)
    }
}

/// Where reading starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// No usable cursor: from the log's end, as an interactive run does (the records already
    /// there are read only to learn the last sequence number, so the cursor can start there).
    End,
    /// Same boot: from the oldest record still in the log, skipping through `seq`.
    After(u64),
    /// The cursor is from another boot: everything this boot logged is unseen, read it all.
    Beginning,
}

/// Decide where to start from the saved cursor and this boot's id.
pub fn plan(saved: Option<&Cursor>, boot_id: Option<&str>) -> Start {
    match (saved, boot_id) {
        (Some(c), Some(b)) if c.boot_id == b => Start::After(c.seq),
        (Some(_), Some(_)) => Start::Beginning,
        _ => Start::End,
    }
}

/// What to do with one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Already handled before the restart.
    Skip,
    /// Handle it; `lost` records before it were overwritten unread (0 normally).
    Use { lost: u64 },
}

/// Tracks the sequence numbers read and the safe position to persist.
#[derive(Debug)]
pub struct Tracker {
    /// Records with seq <= this were handled by the previous run.
    skip_through: Option<u64>,
    /// Last record read (handled or skipped).
    last_read: Option<u64>,
    /// Last position known to be safe to resume after.
    safe: Option<u64>,
    /// What is on disk.
    persisted: Option<u64>,
    last_persist: Option<Instant>,
}

impl Tracker {
    pub fn new(start: Start) -> Tracker {
        let skip = match start {
            Start::After(s) => Some(s),
            _ => None,
        };
        Tracker {
            skip_through: skip,
            last_read: skip,
            safe: skip,
            persisted: skip,
            last_persist: None,
        }
    }

    /// A record with sequence number `seq` was read.
    pub fn on_record(&mut self, seq: u64) -> Verdict {
        if self.skip_through.is_some_and(|s| seq <= s) {
            return Verdict::Skip;
        }
        let lost = match self.last_read {
            Some(prev) if seq > prev + 1 => seq - prev - 1,
            _ => 0,
        };
        self.last_read = Some(seq);
        Verdict::Use { lost }
    }

    /// A record read only to learn the log's end (first start: history is not replayed).
    pub fn skip_to(&mut self, seq: u64) {
        self.last_read = Some(seq);
    }

    /// Nothing read so far is still needed (no open incident, no pending record): the
    /// position can move up to the last record read.
    pub fn mark_idle(&mut self) {
        if self.last_read > self.safe {
            self.safe = self.last_read;
        }
    }

    /// The seq to write now, if it moved and `force` or `PERSIST_EVERY` passed.
    pub fn due(&self, now: Instant, force: bool) -> Option<u64> {
        let seq = self.safe?;
        if Some(seq) == self.persisted {
            return None;
        }
        let waited = self
            .last_persist
            .is_none_or(|t| now.duration_since(t) >= PERSIST_EVERY);
        (force || waited).then_some(seq)
    }

    pub fn persisted(&mut self, seq: u64, now: Instant) {
        self.persisted = Some(seq);
        self.last_persist = Some(now);
    }
}

/// The cursor file in the state directory.
pub struct Store {
    dir: SafeDir,
}

impl Store {
    /// Opens the state directory, creating it 0700 when missing, with the checks `--output`
    /// gets: no symlink on its path, owned by this user or root, not writable by others. A
    /// cursor another user planted in a shared directory could otherwise blind the agent.
    pub fn open(dir: &Path) -> Result<Store> {
        let dir = SafeDir::open_private(dir, true)
            .with_context(|| format!("state directory {}", dir.display()))?;
        Ok(Store { dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join(FILE)
    }

    /// The saved cursor; a missing or unreadable file is "none" (said by the caller).
    pub fn load(&self) -> Option<Cursor> {
        let b = self.dir.read_file(FILE, 256).ok()?;
        Cursor::parse(std::str::from_utf8(&b).ok()?)
    }

    /// Durable replace: write a temp file, fsync it, rename over the cursor, fsync the dir.
    pub fn save(&self, c: &Cursor) -> Result<()> {
        let tmp = format!(".{FILE}.tmp");
        self.dir.remove_tree(&tmp)?;
        self.dir.create_file(&tmp, c.render().as_bytes())?;
        self.dir.replace_file(&tmp, FILE)?;
        self.dir.sync()
    }
}

/// `start` checked against the newest record this boot has logged: a cursor beyond it was not
/// written by hangwatch for this boot (planted, or a copied state directory). Resuming after it
/// would skip every record to come, so it is ignored (Some(warning)).
pub fn check_against_log(start: Start, newest: Option<u64>) -> (Start, Option<String>) {
    match (start, newest) {
        (Start::After(seq), Some(n)) if seq > n => (
            Start::End,
            Some(format!(
                "kmsg cursor says record {seq} was handled, but this boot's newest record is {n}; \
                 ignoring it and reading from now on (was the state directory copied or written by someone else?)"
            )),
        ),
        // A log of this boot is never empty: a same-boot cursor there cannot be ours.
        (Start::After(seq), None) => (
            Start::End,
            Some(format!(
                "kmsg cursor says record {seq} was handled, but this boot's log holds no record; ignoring it"
            )),
        ),
        (s, _) => (s, None),
    }
}

/// The sequence number of a `/dev/kmsg` record (`prio,seq,usec,flags;message`).
pub fn record_seq(record: &str) -> Option<u64> {
    let head = record.split_once(';')?.0;
    head.split(',').nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_resumes_only_in_the_same_boot() {
        let c = Cursor {
            boot_id: "b1".into(),
            seq: 41,
        };
        assert_eq!(plan(Some(&c), Some("b1")), Start::After(41));
        assert_eq!(plan(Some(&c), Some("b2")), Start::Beginning);
        assert_eq!(plan(None, Some("b1")), Start::End);
        assert_eq!(plan(Some(&c), None), Start::End);
    }

    #[test]
    fn skips_what_was_handled_and_counts_overwritten_records() {
        let mut t = Tracker::new(Start::After(10));
        assert_eq!(t.on_record(9), Verdict::Skip);
        assert_eq!(t.on_record(10), Verdict::Skip);
        assert_eq!(t.on_record(11), Verdict::Use { lost: 0 });
        assert_eq!(t.on_record(15), Verdict::Use { lost: 3 });
        // The ring overwrote everything after the cursor while the agent was down.
        let mut t = Tracker::new(Start::After(10));
        assert_eq!(t.on_record(500), Verdict::Use { lost: 489 });
        // From the end or the beginning there is nothing to compare the first record with.
        let mut t = Tracker::new(Start::End);
        assert_eq!(t.on_record(500), Verdict::Use { lost: 0 });
        // First start: the history is skipped, but its end becomes the cursor.
        let mut t = Tracker::new(Start::End);
        t.skip_to(99);
        t.mark_idle();
        assert_eq!(t.due(Instant::now(), false), Some(99));
        assert_eq!(t.on_record(100), Verdict::Use { lost: 0 });
    }

    #[test]
    fn cursor_moves_only_when_idle_and_is_written_rarely() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Start::After(10));
        assert_eq!(t.due(t0, true), None, "nothing new");
        t.on_record(11);
        t.on_record(12);
        assert_eq!(t.due(t0, true), None, "an incident is open: not idle yet");
        t.mark_idle();
        assert_eq!(t.due(t0, false), Some(12), "never written: due now");
        t.persisted(12, t0);
        t.on_record(13);
        t.mark_idle();
        assert_eq!(t.due(t0 + Duration::from_secs(1), false), None);
        assert_eq!(t.due(t0 + Duration::from_secs(1), true), Some(13));
        assert_eq!(t.due(t0 + PERSIST_EVERY, false), Some(13));
    }

    #[test]
    fn store_round_trip_and_garbage() {
        let dir = std::env::temp_dir().join(format!("hw-cursor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = Store::open(&dir.join("state")).unwrap();
        assert_eq!(s.load(), None);
        let c = Cursor {
            boot_id: "3c1e7a56-0f4b-4a2e-9d7e-1b2c3d4e5f60".into(),
            seq: 123456,
        };
        s.save(&c).unwrap();
        assert_eq!(s.load(), Some(c.clone()));
        s.save(&Cursor { seq: 7, ..c }).unwrap();
        assert_eq!(s.load().unwrap().seq, 7);
        std::fs::write(s.path(), "garbage\n").unwrap();
        assert_eq!(s.load(), None);
        assert_eq!(Cursor::parse("b 1 extra"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cursor_beyond_the_newest_record_is_ignored() {
        let (s, warn) = check_against_log(Start::After(u64::MAX), Some(4000));
        assert_eq!(s, Start::End);
        assert!(warn.unwrap().contains("newest record is 4000"));
        assert_eq!(
            check_against_log(Start::After(40), Some(4000)),
            (Start::After(40), None)
        );
        assert_eq!(
            check_against_log(Start::After(4000), Some(4000)).0,
            Start::After(4000)
        );
        assert_eq!(
            check_against_log(Start::Beginning, Some(1)).0,
            Start::Beginning
        );
    }

    #[test]
    fn a_state_directory_others_can_write_is_refused() {
        let dir = std::env::temp_dir().join(format!("hw-state-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = Store::open(&dir)
            .err()
            .expect("world-writable state directory");
        assert!(format!("{e:#}").contains("state directory"), "{e:#}");
        if rustix::process::geteuid().is_root() {
            // Owned by another user (the attacker made it first).
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
            assert!(Store::open(&dir).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn seq_of_records() {
        assert_eq!(record_seq("6,1234,5678,-;amdgpu: hello"), Some(1234));
        assert_eq!(record_seq("6,1234,5678,-,caller=T1;x"), Some(1234));
        assert_eq!(record_seq("garbage"), None);
    }
}
