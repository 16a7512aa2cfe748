//! The kernel-log event source. At start it reads the backlog synchronously — everything
//! after the saved cursor (see [`super::kmsg_cursor`]) — so the correlator sees missed
//! records before the timer can close anything; then a thread follows the log (reads block)
//! and hands records to the event loop. Sequence gaps (the kernel's ring overwrote records
//! before they were read, EPIPE) are counted as drops and said.
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::{info, warn};
use hangwatch_core::kmsg::{dev_kmsg_facility, parse_dev_kmsg_record, KmsgAssembler};
use hangwatch_core::model::{Clock, Source};

use super::boot::monotonic_ns;
use super::kmsg_cursor::{
    check_against_log, plan, record_seq, Cursor, Start, Store, Tracker, Verdict,
};
use super::state::State;

/// A pending record (a fault waiting for its continuation lines) is emitted after this much
/// kmsg silence, so a live incident does not wait for the next unrelated amdgpu line.
const QUIET_NS: u64 = 500_000_000;
/// One /dev/kmsg record is at most ~8 KiB with its dictionary; a larger buffer is harmless.
const READ_BUF: usize = 16 * 1024;

/// What the reader thread sends.
#[derive(Debug)]
pub enum Msg {
    Record(String),
    /// The kernel overwrote records before this reader got them (EPIPE).
    Overrun,
    /// End of input (a file standing in for /dev/kmsg) or a read error.
    End(Option<String>),
}

pub struct KmsgSource {
    rx: tokio::sync::mpsc::Receiver<Msg>,
    asm: KmsgAssembler,
    tracker: Tracker,
    store: Option<(Store, String)>,
    last_record_ns: u64,
    pub open: bool,
    /// Records read (recognised or not), skipped as already handled, lost to overwrites.
    pub records: u64,
    pub skipped: u64,
    pub lost: u64,
    /// Records userspace wrote to /dev/kmsg (facility not the kernel's): dropped, never
    /// parsed, so a relayed or forged amdgpu line cannot become evidence.
    pub from_userspace: u64,
    /// amdgpu records that became events.
    pub events: u64,
    /// How reading started, for the start-up line.
    pub how: String,
    /// While reading the backlog on a first start: only learn the last sequence number.
    history: bool,
}

/// Complete lines of `carry` + `chunk` that start a record (a /dev/kmsg dictionary line starts
/// with a space and is not a record); an incomplete last line stays in `carry`.
pub fn split_records(carry: &mut Vec<u8>, chunk: &[u8]) -> Vec<String> {
    carry.extend_from_slice(chunk);
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(nl) = carry[start..].iter().position(|&b| b == b'\n') {
        let line = &carry[start..start + nl];
        if !line.is_empty() && line[0] != b' ' {
            out.push(String::from_utf8_lossy(line).into_owned());
        }
        start += nl + 1;
    }
    carry.drain(..start);
    // Unbounded garbage without a newline is not a record: drop it rather than grow.
    if carry.len() > READ_BUF * 4 {
        carry.clear();
    }
    out
}

enum Read1 {
    Records(Vec<String>),
    Overrun,
    Again,
    End(Option<String>),
}

fn read_once(f: &mut File, buf: &mut [u8], carry: &mut Vec<u8>) -> Read1 {
    match f.read(buf) {
        Ok(0) => Read1::End(None),
        Ok(n) => Read1::Records(split_records(carry, &buf[..n])),
        Err(e) if e.raw_os_error() == Some(libc::EPIPE) => Read1::Overrun,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Read1::Again,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Read1::Records(Vec::new()),
        Err(e) => Read1::End(Some(e.to_string())),
    }
}

fn set_blocking(f: &File) {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
}

impl KmsgSource {
    /// Opens `path` (/dev/kmsg) at its oldest record, reads the backlog — into `st` after
    /// the cursor in `state_dir`, or only to learn the log's end on a first start — and
    /// starts the follower thread.
    pub fn start(
        path: &Path,
        state_dir: Option<&Path>,
        boot_id: Option<&str>,
        st: &mut State,
    ) -> Result<KmsgSource> {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let store = match state_dir {
            Some(d) => match Store::open(d) {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!("kmsg cursor disabled: {e:#}");
                    None
                }
            },
            None => None,
        };
        let saved = store.as_ref().and_then(|s| s.load());
        // The backlog is read before it is handled, to check the cursor against its end.
        let mut buf = vec![0u8; READ_BUF];
        let mut carry = Vec::new();
        let mut backlog: Vec<Msg> = Vec::new();
        let ended = loop {
            match read_once(&mut f, &mut buf, &mut carry) {
                Read1::Records(rs) => backlog.extend(rs.into_iter().map(Msg::Record)),
                Read1::Overrun => backlog.push(Msg::Overrun),
                Read1::Again => break None,
                Read1::End(e) => break Some(e),
            }
        };
        let newest = backlog.iter().rev().find_map(|m| match m {
            Msg::Record(r) => record_seq(r),
            _ => None,
        });
        let start = if store.is_some() {
            plan(saved.as_ref(), boot_id)
        } else {
            Start::End
        };
        let (start, warning) = check_against_log(start, newest);
        if let Some(w) = warning {
            warn!("{w}");
        }
        let how = match start {
            Start::End => format!("{} (from now on)", path.display()),
            Start::After(seq) => format!("{} (resuming after record {seq})", path.display()),
            Start::Beginning => format!(
                "{} (cursor from another boot: reading this boot's log)",
                path.display()
            ),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let mut src = KmsgSource {
            rx,
            // The KFD / MES queue lines (hangwatch_core::kmsg::kfd) ride along as their own events.
            asm: KmsgAssembler::new(Source::Kmsg).with_line_hook(hangwatch_core::kmsg::kfd::HOOK),
            tracker: Tracker::new(start),
            store: match (store, boot_id) {
                (Some(s), Some(b)) => Some((s, b.to_string())),
                _ => None,
            },
            last_record_ns: 0,
            open: true,
            records: 0,
            skipped: 0,
            lost: 0,
            from_userspace: 0,
            events: 0,
            how,
            history: start == Start::End,
        };
        for m in backlog {
            src.on_msg(Some(m), st);
        }
        if src.history {
            info!("kernel log: {} earlier record(s) left unread (first start: history is not replayed)", src.skipped);
        } else if src.skipped + src.records > 0 {
            info!(
                "kernel log: backlog of {} record(s) read ({} already handled before the restart)",
                src.records, src.skipped
            );
        }
        if src.history {
            src.skipped = 0;
        }
        src.history = false;
        match ended {
            Some(why) => {
                src.open = false;
                if let Some(e) = why {
                    warn!("kernel log: reading {} failed: {e}", path.display());
                }
            }
            None => {
                set_blocking(&f);
                std::thread::Builder::new()
                    .name("hangwatch-kmsg".into())
                    .spawn(move || follow(f, tx, carry))?;
            }
        }
        Ok(src)
    }

    /// The next message from the follower (pending forever once closed, for `select!`).
    pub async fn recv(&mut self) -> Option<Msg> {
        if !self.open {
            return std::future::pending().await;
        }
        self.rx.recv().await
    }

    pub fn on_msg(&mut self, msg: Option<Msg>, st: &mut State) {
        match msg {
            Some(Msg::Record(r)) => self.on_record(&r, st),
            Some(Msg::Overrun) => self.on_overrun(),
            Some(Msg::End(e)) => {
                if let Some(e) = e {
                    warn!("kernel log: read failed: {e}; continuing without it");
                }
                self.open = false;
            }
            None => self.open = false,
        }
    }

    fn on_overrun(&mut self) {
        // The exact count comes from the next record's sequence number.
        info!("kernel log: /dev/kmsg overrun (records overwritten before they were read)");
    }

    pub fn on_record(&mut self, rec: &str, st: &mut State) {
        if self.history {
            if let Some(seq) = record_seq(rec) {
                self.tracker.skip_to(seq);
            }
            self.skipped += 1;
            return;
        }
        if let Some(seq) = record_seq(rec) {
            match self.tracker.on_record(seq) {
                Verdict::Skip => {
                    self.skipped += 1;
                    return;
                }
                Verdict::Use { lost } if lost > 0 => {
                    self.lost += lost;
                    st.note_dropped(lost);
                    warn!("kernel log: {lost} record(s) before #{seq} were overwritten before they could be read (the kernel's log buffer wrapped); incidents in them are lost");
                }
                Verdict::Use { .. } => {}
            }
        }
        self.records += 1;
        if dev_kmsg_facility(rec).is_some_and(|f| f != 0) {
            self.from_userspace += 1;
            return;
        }
        self.last_record_ns = monotonic_ns();
        if let Some((t, msg)) = parse_dev_kmsg_record(rec) {
            for ev in self.asm.push_line(t, Clock::Monotonic, &msg) {
                self.events += 1;
                st.push(ev);
            }
        }
    }

    /// Timer: emit a pending record after a quiet spell; move and persist the cursor.
    pub fn on_tick(&mut self, now_ns: u64, st: &mut State) {
        if self.asm.has_pending() && now_ns.saturating_sub(self.last_record_ns) >= QUIET_NS {
            self.flush(st);
        }
        self.persist(st, false);
    }

    pub fn flush(&mut self, st: &mut State) {
        for ev in self.asm.flush() {
            self.events += 1;
            st.push(ev);
        }
    }

    /// Marks the cursor idle when nothing read is still needed (no open incident, no pending
    /// record, no closed incident left unwritten by a full disk) and writes it when due
    /// (`force`: after incidents were written and at exit).
    pub fn persist(&mut self, st: &State, force: bool) {
        let needed =
            st.corr.open_count() > 0 || self.asm.has_pending() || st.out.unstored.holds_cursor();
        if !needed {
            self.tracker.mark_idle();
        }
        let Some((store, boot_id)) = &self.store else {
            return;
        };
        let now = Instant::now();
        if let Some(seq) = self.tracker.due(now, force) {
            let c = Cursor {
                boot_id: boot_id.clone(),
                seq,
            };
            match store.save(&c) {
                Ok(()) => self.tracker.persisted(seq, now),
                Err(e) => warn!("kmsg cursor: {e:#}"),
            }
        }
    }
}

/// The follower thread: blocking reads until the channel closes or the input ends.
fn follow(mut f: File, tx: tokio::sync::mpsc::Sender<Msg>, mut carry: Vec<u8>) {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let msgs = match read_once(&mut f, &mut buf, &mut carry) {
            Read1::Records(rs) => rs.into_iter().map(Msg::Record).collect(),
            Read1::Overrun => vec![Msg::Overrun],
            // A blocking fd does not say EAGAIN; if it does, do not spin.
            Read1::Again => {
                std::thread::sleep(std::time::Duration::from_millis(100));
                vec![]
            }
            Read1::End(e) => {
                let _ = tx.blocking_send(Msg::End(e));
                return;
            }
        };
        for m in msgs {
            if tx.blocking_send(m).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_across_reads_and_dictionary_lines_skipped() {
        let mut carry = Vec::new();
        assert!(split_records(&mut carry, b"6,1,10,-;amdgpu: a").is_empty());
        let r = split_records(
            &mut carry,
            b"\n SUBSYSTEM=pci\n DEVICE=+pci:0000:03:00.0\n6,2,20,-;b\n6,3",
        );
        assert_eq!(r, vec!["6,1,10,-;amdgpu: a", "6,2,20,-;b"]);
        assert_eq!(carry, b"6,3");
        let r = split_records(&mut carry, b",30,-;c\n");
        assert_eq!(r, vec!["6,3,30,-;c"]);
        assert!(carry.is_empty());
    }
}
