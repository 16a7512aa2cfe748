//! Opening a log input: a file or stdin, compressed or not (told by magic bytes, not by the
//! name: `kern.log.2.gz` renamed or piped still reads), or the systemd journal through
//! `journalctl`. Files that are not logs but are recognisable get a message naming the fix.
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::Path;
use std::process::Child;

use super::journal::{spawn_journalctl, JournalSource};

const BUF: usize = 1 << 16;

/// An input ready to read.
pub struct Opened {
    pub reader: Box<dyn BufRead>,
    /// `gzip`, `xz` or `zstd` when the input was compressed.
    pub compression: Option<&'static str>,
    /// The file's modification time (ns since the epoch): year-less stamps are not after it.
    pub mtime_ns: Option<u64>,
    /// `journalctl`, when reading the journal (waited for by [`Opened::finish`]).
    child: Option<Child>,
}

impl Opened {
    /// After reading: for `--journal`, journalctl's exit status and what it said.
    pub fn finish(mut self) -> io::Result<()> {
        drop(self.reader);
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.by_ref().take(4096).read_to_string(&mut err);
        }
        let status = child.wait()?;
        if status.success() {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "journalctl failed ({status}): {}",
            err.trim()
        )))
    }
}

/// Open `path` (`-` = stdin).
pub fn open_path(path: &Path) -> io::Result<Opened> {
    if path.as_os_str() == "-" {
        return wrap(Box::new(BufReader::with_capacity(BUF, io::stdin())), None);
    }
    let f = File::open(path)?;
    let mtime_ns = f
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_nanos()).ok());
    wrap(Box::new(BufReader::with_capacity(BUF, f)), mtime_ns)
}

/// Read the systemd journal's kernel messages (`journalctl -k -o export`).
pub fn open_journal(src: &JournalSource) -> io::Result<Opened> {
    let mut child = spawn_journalctl(src)?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("journalctl has no stdout"))?;
    Ok(Opened {
        reader: Box::new(BufReader::with_capacity(BUF, out)),
        compression: None,
        mtime_ns: None,
        child: Some(child),
    })
}

/// Look at the first bytes and put a decompressor in front when they are a compressed stream.
pub fn wrap(mut r: Box<dyn BufRead>, mtime_ns: Option<u64>) -> io::Result<Opened> {
    let mut magic = Vec::with_capacity(8);
    (&mut r).take(8).read_to_end(&mut magic)?;
    let (compression, reader): (Option<&'static str>, Box<dyn BufRead>) = {
        let r = Cursor::new(magic.clone()).chain(r);
        if magic.starts_with(&[0x1f, 0x8b]) {
            let d = flate2::bufread::MultiGzDecoder::new(r);
            (Some("gzip"), Box::new(BufReader::with_capacity(BUF, d)))
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            let d = liblzma::bufread::XzDecoder::new_multi_decoder(r);
            (Some("xz"), Box::new(BufReader::with_capacity(BUF, d)))
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            let d = zstd::stream::read::Decoder::with_buffer(r)?;
            (Some("zstd"), Box::new(BufReader::with_capacity(BUF, d)))
        } else if let Some(why) = not_a_log(&magic) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, why));
        } else {
            (None, Box::new(r))
        }
    };
    Ok(Opened {
        reader,
        compression,
        mtime_ns,
        child: None,
    })
}

/// Binary files people pass by mistake, with what to do instead.
fn not_a_log(magic: &[u8]) -> Option<String> {
    let known: [(&[u8], &str); 5] = [
        (b"LPKSHHRH", "a systemd journal file: read it with `hangwatch analyze --journal --journal-file PATH`"),
        (b"BZh", "bzip2-compressed: decompress it first (`bzcat FILE | hangwatch analyze -`)"),
        (&[0x04, 0x22, 0x4d, 0x18], "lz4-compressed: decompress it first (`lz4cat FILE | hangwatch analyze -`)"),
        (b"PK\x03\x04", "a zip archive: extract the log from it first"),
        (b"\x7fELF", "a program, not a log"),
    ];
    known
        .iter()
        .find(|(m, _)| magic.starts_with(m))
        .map(|(_, why)| format!("this is {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LOG: &[u8] = b"[  1.0] amdgpu 0000:03:00.0: amdgpu: MODE1 reset\n";

    fn read_all(data: Vec<u8>) -> (io::Result<Vec<u8>>, Option<&'static str>) {
        let mut o = wrap(Box::new(Cursor::new(data)), None).unwrap();
        let mut out = Vec::new();
        let r = o.reader.read_to_end(&mut out).map(|_| out);
        (r, o.compression)
    }

    pub fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn compressed_by_magic() {
        let xz = {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(LOG).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::stream::encode_all(LOG, 3).unwrap();
        for (data, kind) in [(gz(LOG), "gzip"), (xz, "xz"), (zst, "zstd")] {
            let (got, c) = read_all(data);
            assert_eq!((got.unwrap(), c), (LOG.to_vec(), Some(kind)));
        }
        // Two gzip members (`cat a.gz b.gz`) read as one stream.
        let mut two = gz(LOG);
        two.extend(gz(LOG));
        assert_eq!(read_all(two).0.unwrap(), [LOG, LOG].concat());
        let (plain, c) = read_all(LOG.to_vec());
        assert_eq!((plain.unwrap(), c), (LOG.to_vec(), None));
    }

    #[test]
    fn truncated_or_corrupt_compressed_input_is_an_error() {
        let z = gz(&LOG.repeat(1000));
        let (got, _) = read_all(z[..z.len() / 2].to_vec());
        assert!(got.is_err());
        let mut bad = gz(&LOG.repeat(1000));
        let n = bad.len();
        bad[n / 2] ^= 0xff;
        bad[n / 2 + 1] ^= 0xff;
        assert!(read_all(bad).0.is_err());
    }

    #[test]
    fn journal_files_and_archives_are_named() {
        let e = wrap(Box::new(Cursor::new(b"LPKSHHRH\0\0\0\0".to_vec())), None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("--journal-file"), "{e}");
        let e = wrap(Box::new(Cursor::new(b"BZh91AY&SY".to_vec())), None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("bzcat"), "{e}");
    }
}
