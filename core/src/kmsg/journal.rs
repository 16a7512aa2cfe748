//! systemd journal entries: `journalctl -o json` lines, `journalctl -o export` streams, and
//! `--journal`, which runs `journalctl -k -o export` so the journal is read without a pipe.
//! Only the fields hangwatch uses are kept, each bounded.
use std::io::{self, BufRead, Read};
use std::process::{Child, Command, Stdio};

/// Longest MESSAGE kept (printk messages are at most 1 KiB); the rest is skipped unread.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

/// The fields of one entry hangwatch reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub message: Option<Vec<u8>>,
    /// The kernel's own printk stamp (µs).
    pub src_mono_us: Option<u64>,
    /// When journald received it, on the boot's monotonic clock (µs).
    pub mono_us: Option<u64>,
    /// When journald received it, on the wall clock (µs since the epoch).
    pub real_us: Option<u64>,
    pub boot_id: Option<String>,
    pub hostname: Option<String>,
    /// The logging process (`_PID`, `_COMM`) and its `SYSLOG_IDENTIFIER`: who printed a
    /// user-space line such as Mesa's verdict. `_COMM` and the identifier are cut at 64 bytes.
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub ident: Option<String>,
}

impl Entry {
    /// printk stamp and wall-clock stamp of the event, ns. The wall clock of the event is its
    /// printk stamp plus the journal's own offset (`__REALTIME - __MONOTONIC`), exact for the boot.
    pub fn stamps(&self) -> (Option<u64>, Option<u64>) {
        let mono = self
            .src_mono_us
            .or(self.mono_us)
            .map(|us| us.saturating_mul(1000));
        let real = match (self.real_us, self.mono_us, self.src_mono_us) {
            (Some(r), Some(m), Some(s)) => r.checked_sub(m).and_then(|off| off.checked_add(s)),
            (Some(r), _, _) => Some(r),
            _ => None,
        };
        (mono, real.map(|us| us.saturating_mul(1000)))
    }

    fn field(&mut self, key: &[u8], val: Vec<u8>) {
        let num = || {
            std::str::from_utf8(&val)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        let text = || Some(String::from_utf8_lossy(&val).into_owned());
        match key {
            b"MESSAGE" => self.message = Some(val.clone()),
            b"_SOURCE_MONOTONIC_TIMESTAMP" => self.src_mono_us = num(),
            b"__MONOTONIC_TIMESTAMP" => self.mono_us = num(),
            b"__REALTIME_TIMESTAMP" => self.real_us = num(),
            b"_BOOT_ID" => self.boot_id = text(),
            b"_HOSTNAME" => self.hostname = text(),
            b"_PID" => self.pid = num().and_then(|n| u32::try_from(n).ok()),
            b"_COMM" => self.comm = text().map(|t| super::lines::bounded(&t, 64)),
            b"SYSLOG_IDENTIFIER" => self.ident = text().map(|t| super::lines::bounded(&t, 64)),
            _ => {}
        }
    }
}

/// Whether a field is worth keeping (the others are skipped without being stored).
fn wanted(key: &[u8]) -> bool {
    matches!(
        key,
        b"MESSAGE"
            | b"_SOURCE_MONOTONIC_TIMESTAMP"
            | b"__MONOTONIC_TIMESTAMP"
            | b"__REALTIME_TIMESTAMP"
            | b"_BOOT_ID"
            | b"_HOSTNAME"
            | b"_PID"
            | b"_COMM"
            | b"SYSLOG_IDENTIFIER"
    )
}

/// One `journalctl -o json` line. MESSAGE may be a string or a byte array (non-UTF-8 text).
pub fn parse_json(line: &str) -> Option<Entry> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let obj = v.as_object()?;
    let mut e = Entry::default();
    for (k, val) in obj {
        if !wanted(k.as_bytes()) {
            continue;
        }
        let bytes = match val {
            serde_json::Value::String(s) => s.as_bytes().to_vec(),
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(serde_json::Value::as_u64)
                .map(|x| x as u8)
                .take(MAX_FIELD_BYTES)
                .collect(),
            _ => continue,
        };
        e.field(k.as_bytes(), bytes);
    }
    e.message.is_some().then_some(e)
}

/// The header of a `journalctl -o verbose` entry, as an entry without fields yet:
/// `Tue 2026-11-14 10:46:51.123456 CET [s=…;i=…;b=<boot>;m=<mono µs, hex>;t=<wall µs, hex>;x=…]`.
/// The cursor gives the boot and both clocks; the fields follow on indented lines.
pub fn verbose_header(line: &str) -> Option<Entry> {
    let line = line.trim_end();
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    let cursor = line.strip_suffix(']')?;
    let cursor = &cursor[cursor.rfind(" [s=")? + 2..];
    let mut e = Entry::default();
    let mut index = false;
    for part in cursor.split(';') {
        let hex = |v: &str| u64::from_str_radix(v, 16).ok();
        match part.split_once('=') {
            Some(("i", _)) => index = true,
            Some(("b", v)) => e.boot_id = Some(v.to_string()),
            Some(("m", v)) => e.mono_us = hex(v),
            Some(("t", v)) => e.real_us = hex(v),
            _ => {}
        }
    }
    // A cursor has them all; a message ending in brackets does not.
    let whole = index && e.boot_id.is_some() && e.mono_us.is_some() && e.real_us.is_some();
    whole.then_some(e)
}

/// One indented line of a `journalctl -o verbose` entry: `    KEY=VALUE` adds the field to
/// `e` when hangwatch reads it. False for a line of another shape (the rest of a multi-line
/// value, or no verbose line at all).
pub fn verbose_field(e: &mut Entry, line: &str) -> bool {
    let Some((key, val)) = line.trim().split_once('=') else {
        return false;
    };
    let is_key = !key.is_empty()
        && key
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
    if is_key && wanted(key.as_bytes()) {
        e.field(key.as_bytes(), val.as_bytes().to_vec());
    }
    is_key
}

/// Whether the stream is `journalctl -o export` (its entries start with `__CURSOR=`, or with
/// `__REALTIME_TIMESTAMP=` under `--output-fields`).
pub fn looks_like_export(first: &[u8]) -> bool {
    first.starts_with(b"__CURSOR=") || first.starts_with(b"__REALTIME_TIMESTAMP=")
}

/// Why an export stream stopped early.
#[derive(Debug, PartialEq, Eq)]
pub enum ExportEnd {
    /// A binary field's length or data was cut off: the stream is truncated or corrupt.
    Truncated,
}

/// Reads `journalctl -o export` entry by entry: `KEY=VALUE` lines, binary fields as
/// `KEY\n<u64 LE length><data>\n`, entries separated by an empty line. Fields are bounded
/// ([`MAX_FIELD_BYTES`]); over-long ones are skipped without being stored.
pub struct ExportReader {
    line: Vec<u8>,
    pub bytes: u64,
    /// Fields cut to [`MAX_FIELD_BYTES`].
    pub long_fields: u64,
}

impl ExportReader {
    pub fn new() -> Self {
        ExportReader {
            line: Vec::new(),
            bytes: 0,
            long_fields: 0,
        }
    }

    /// The next entry, `Ok(None)` at the end; `Err` on I/O errors only.
    pub fn next<R: BufRead>(&mut self, r: &mut R) -> io::Result<Result<Option<Entry>, ExportEnd>> {
        let mut e = Entry::default();
        let mut any = false;
        loop {
            self.line.clear();
            let (n, cut) = super::line::read_line(r, &mut self.line, MAX_FIELD_BYTES)?;
            if n == 0 {
                return Ok(Ok(any.then_some(e)));
            }
            self.bytes += n as u64;
            if cut {
                self.long_fields += 1;
            }
            let l = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            if l.is_empty() {
                if any {
                    return Ok(Ok(Some(e)));
                }
                continue;
            }
            any = true;
            if let Some(eq) = l.iter().position(|&c| c == b'=') {
                if wanted(&l[..eq]) {
                    let (k, v) = (l[..eq].to_vec(), l[eq + 1..].to_vec());
                    e.field(&k, v);
                }
                continue;
            }
            // Binary field: length, data, newline.
            let key = l.to_vec();
            let mut len = [0u8; 8];
            if r.read_exact(&mut len).is_err() {
                return Ok(Err(ExportEnd::Truncated));
            }
            let len = u64::from_le_bytes(len);
            let keep = if wanted(&key) {
                len.min(MAX_FIELD_BYTES as u64)
            } else {
                0
            };
            let mut data = vec![0u8; keep as usize];
            if r.read_exact(&mut data).is_err() {
                return Ok(Err(ExportEnd::Truncated));
            }
            let rest = len - keep;
            if rest > 0 {
                if keep > 0 {
                    self.long_fields += 1;
                }
                if io::copy(&mut r.by_ref().take(rest), &mut io::sink())? < rest {
                    return Ok(Err(ExportEnd::Truncated));
                }
            }
            let mut nl = [0u8; 1];
            let _ = r.read_exact(&mut nl);
            self.bytes += 9 + len;
            if keep > 0 {
                e.field(&key, data);
            }
        }
    }
}

impl Default for ExportReader {
    fn default() -> Self {
        Self::new()
    }
}

/// Which journal `--journal` reads.
#[derive(Clone, Debug, Default)]
pub struct JournalSource {
    /// `journalctl --boot` value: 0 = this boot, -1 = the one before, or a boot id; None = all.
    pub boot: Option<String>,
    /// Journal files (`journalctl --file`), e.g. copied from another machine.
    pub files: Vec<std::path::PathBuf>,
    /// A journal directory (`journalctl --directory`).
    pub directory: Option<std::path::PathBuf>,
}

/// Start `journalctl -o export` on the kernel messages of `src`; its stdout is the stream.
pub fn spawn_journalctl(src: &JournalSource) -> io::Result<Child> {
    let mut cmd = Command::new("journalctl");
    cmd.args(["-o", "export", "--no-pager"]);
    match &src.boot {
        Some(b) => {
            cmd.arg("-k").arg(format!("--boot={b}"));
        }
        // `-k` alone means this boot only; the kernel transport match spans all of them.
        None => {
            cmd.arg("_TRANSPORT=kernel");
        }
    }
    for f in &src.files {
        cmd.arg("--file").arg(f);
    }
    if let Some(d) = &src.directory {
        cmd.arg("--directory").arg(d);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run journalctl ({e}); on a host without systemd, pass a saved log file instead"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_header_and_fields() {
        let h = "Sat 2026-11-14 10:01:40.000040 UTC [s=5d3c;i=2a;b=0011aabb;m=5f5e128;t=65f5a2c1e8f28;x=9f]";
        let mut e = verbose_header(h).unwrap();
        assert_eq!(e.boot_id.as_deref(), Some("0011aabb"));
        assert_eq!(
            (e.mono_us, e.real_us),
            (Some(0x5f5e128), Some(0x65f5a2c1e8f28))
        );
        assert!(verbose_field(&mut e, "    MESSAGE=amdgpu: a=b"));
        assert!(verbose_field(
            &mut e,
            "    _SOURCE_MONOTONIC_TIMESTAMP=100000000"
        ));
        assert!(verbose_field(&mut e, "    SYSLOG_FACILITY=0"));
        assert!(!verbose_field(
            &mut e,
            "      the rest of a multi-line value"
        ));
        assert_eq!(e.message.as_deref(), Some(&b"amdgpu: a=b"[..]));
        assert_eq!(e.src_mono_us, Some(100_000_000));
        // Lookalikes: no cursor, an indented line, a bracket that is not one.
        for l in [
            "Nov 14 10:01:40 host kernel: [s=1;i=2]",
            "Sat 2026-11-14 10:01:40 UTC [s=1;i=2;b=3;m=zz;t=5]",
            "    Sat 2026-11-14 10:01:40 UTC [s=1;i=2]",
            "a [s=1] b",
            "x [s=1;b=2]",
        ] {
            assert!(verbose_header(l).is_none(), "{l}");
        }
    }

    #[test]
    fn json_entry_with_byte_array_message() {
        let e = parse_json(r#"{"MESSAGE":[97,109,100,255],"_BOOT_ID":"b1","_HOSTNAME":"h","__REALTIME_TIMESTAMP":"1700000000000100","__MONOTONIC_TIMESTAMP":"100","_SOURCE_MONOTONIC_TIMESTAMP":"90"}"#).unwrap();
        assert_eq!(e.message.as_deref(), Some(&b"amd\xff"[..]));
        assert_eq!(
            (e.boot_id.as_deref(), e.hostname.as_deref()),
            (Some("b1"), Some("h"))
        );
        assert_eq!(e.stamps(), (Some(90_000), Some(1_700_000_000_000_090_000)));
        assert!(parse_json(r#"{"PRIORITY":"3"}"#).is_none());
        assert!(parse_json("{").is_none());
    }

    #[test]
    fn export_stream_binary_and_oversized_fields() {
        let mut data = b"__CURSOR=c\n_BOOT_ID=b1\nMESSAGE\n".to_vec();
        data.extend(5u64.to_le_bytes());
        data.extend(b"hello\n");
        data.extend(b"BIG\n");
        data.extend(1_000_000u64.to_le_bytes());
        data.extend(vec![b'x'; 1_000_000]);
        data.extend(b"\n\n__CURSOR=d\nMESSAGE\n");
        data.extend(100u64.to_le_bytes());
        data.extend(b"short");
        let mut r = &data[..];
        let mut x = ExportReader::new();
        let e = x.next(&mut r).unwrap().unwrap().unwrap();
        assert_eq!(
            (e.message.as_deref(), e.boot_id.as_deref()),
            (Some(&b"hello"[..]), Some("b1"))
        );
        assert_eq!(x.next(&mut r).unwrap(), Err(ExportEnd::Truncated));
    }
}
