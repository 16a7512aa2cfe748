//! The one way the agent prints, for every command: status messages on stderr (prefixed,
//! silenced by `--quiet`), results and incidents on stdout. Modelled on ripgrep's `messages.rs`: a closed pipe is not an error —
//! `hangwatch run | head -1` must go on writing incident directories after `head` exits — so
//! nothing here panics or returns an I/O error; `println!` would panic on EPIPE.
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicBool = AtomicBool::new(false);

/// The prefix of every status line, so they stand out in a journal or a terminal.
pub const PREFIX: &str = "hangwatch: ";

/// `--quiet`: drop status messages (errors and warnings still print).
pub fn set_quiet(yes: bool) {
    QUIET.store(yes, Ordering::Relaxed);
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// `hangwatch run`: a reader leaving stdout is worth one line, since the agent keeps going. For
/// the one-shot commands (`analyze | head -1`) it is a normal end and says nothing.
pub fn set_live(yes: bool) {
    LIVE.store(yes, Ordering::Relaxed);
}

/// Whether stdout has been closed by its reader (EPIPE seen).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Write `text` to stdout as is. On EPIPE, stdout is marked closed (one status line says so)
/// and later output is dropped; the caller carries on.
pub fn stdout(text: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        drop(out);
        let gone = e.kind() == std::io::ErrorKind::BrokenPipe;
        if gone && !LIVE.load(Ordering::Relaxed) {
            return;
        }
        let why = if e.kind() == std::io::ErrorKind::BrokenPipe {
            "its reader went away".to_string()
        } else {
            e.to_string()
        };
        warn(&format!(
            "stdout closed ({why}); incidents are no longer printed but still written to the output directory and the journal"
        ));
    }
}

/// Write one prefixed line to stderr, ignoring any error (a closed stderr must not stop us).
fn stderr_line(text: &str) {
    stderr(&format!("{PREFIX}{text}"));
}

/// Write `text` and a newline to stderr as is, even with `--quiet`: for a message that carries
/// its own prefix (`hangwatch analyze: FILE is empty`). Errors are ignored, like every write here.
pub fn stderr(text: &str) {
    if STDERR_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut err = std::io::stderr().lock();
    let mut line = String::with_capacity(text.len() + 1);
    line.push_str(text);
    line.push('\n');
    if err.write_all(line.as_bytes()).is_err() {
        STDERR_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// A status message (probe attached, incident written, stats): hidden by `--quiet`.
pub fn info(text: &str) {
    if !quiet() {
        stderr_line(text);
    }
}

/// Something the user should act on or know even with `--quiet` (drops, failed writes).
pub fn warn(text: &str) {
    stderr_line(text);
}

/// `info!("...", args)`: a status message (see [`info`]).
#[macro_export]
macro_rules! info {
    ($($tt:tt)*) => { $crate::sinks::messages::info(&format!($($tt)*)) };
}

/// `warn!("...", args)`: printed even with `--quiet` (see [`warn`]).
#[macro_export]
macro_rules! warn {
    ($($tt:tt)*) => { $crate::sinks::messages::warn(&format!($($tt)*)) };
}
