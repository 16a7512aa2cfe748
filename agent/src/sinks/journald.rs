//! One structured journal entry per incident, through journald's native protocol (a datagram
//! of `FIELD=value` lines to /run/systemd/journal/socket), so `journalctl MESSAGE_ID=…` or
//! `journalctl HANGWATCH_CULPRIT_COMM=zed` finds incidents. Values from the kernel or /proc are
//! hostile: any value with a newline uses the protocol's length-prefixed binary form, so no
//! process name can forge a field. Outside systemd the incident goes to stderr as before.
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use crate::config::JournalMode;
use hangwatch_core::identity::{qos_name, ProcessIdentity};
use hangwatch_core::incident::{Incident, ProcessRef};

pub const SOCKET: &str = "/run/systemd/journal/socket";
/// `journalctl MESSAGE_ID=…` for every hangwatch incident (random, fixed forever).
pub const MESSAGE_ID: &str = "5b1f0a7e3c2d4e8f9a6b7c1d2e3f4a5b";
/// Values longer than this are cut (an exe path is at most PATH_MAX; this is the guard).
const MAX_VALUE: usize = 4096;

pub struct Journal {
    sock: UnixDatagram,
    path: PathBuf,
}

/// True when stderr is the journal stream systemd set up for this service (`JOURNAL_STREAM`
/// is `dev:inode` of that stream), the documented "am I logging to the journal" test.
pub fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}

impl Journal {
    /// The journal to use for `mode`: `Auto` only under systemd's journal stream.
    pub fn detect(mode: JournalMode) -> Option<Journal> {
        let want = match mode {
            JournalMode::Off => false,
            JournalMode::On => true,
            JournalMode::Auto => stderr_is_journal(),
        };
        if !want {
            return None;
        }
        match Journal::connect(Path::new(SOCKET)) {
            Ok(j) => Some(j),
            Err(e) => {
                crate::warn!("journal: cannot use {SOCKET}: {e}; incidents go to stderr only");
                None
            }
        }
    }

    pub fn connect(path: &Path) -> std::io::Result<Journal> {
        let sock = UnixDatagram::unbound()?;
        sock.connect(path)?;
        Ok(Journal {
            sock,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one entry; reconnects once if journald was restarted (its socket replaced).
    pub fn send(&mut self, fields: &[(String, String)]) -> std::io::Result<()> {
        let data = encode(fields);
        match self.sock.send(&data) {
            Ok(_) => Ok(()),
            Err(_) => {
                *self = Journal::connect(&self.path)?;
                self.sock.send(&data).map(|_| ())
            }
        }
    }
}

/// Encodes fields in the native protocol: `NAME=value\n`, or for values containing a
/// newline `NAME\n<u64 LE length><value>\n`.
pub fn encode(fields: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        let mut v = value.as_bytes();
        if v.len() > MAX_VALUE {
            let mut cut = MAX_VALUE;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            v = &v[..cut];
        }
        out.extend_from_slice(name.as_bytes());
        if v.contains(&b'\n') {
            out.push(b'\n');
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// Decodes the native protocol (what journald does with a datagram); used by the tests.
pub fn decode(mut b: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let nl = b.iter().position(|&c| c == b'\n')?;
        let line = &b[..nl];
        if let Some(eq) = line.iter().position(|&c| c == b'=') {
            out.push((
                String::from_utf8(line[..eq].to_vec()).ok()?,
                line[eq + 1..].to_vec(),
            ));
            b = &b[nl + 1..];
        } else {
            let name = String::from_utf8(line.to_vec()).ok()?;
            let rest = &b[nl + 1..];
            let len = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
            let value = rest.get(8..8 + len)?.to_vec();
            if rest.get(8 + len) != Some(&b'\n') {
                return None;
            }
            out.push((name, value));
            b = &rest[9 + len..];
        }
    }
    Some(out)
}

/// Field names must be uppercase ASCII, digits and `_` and must not start with `_`.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with('_')
        && n.bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

/// The entry for one incident: a one-line MESSAGE plus HANGWATCH_* fields.
pub fn incident_fields(inc: &Incident, dir: Option<&Path>) -> Vec<(String, String)> {
    let kind = inc.kind.name();
    let culprit = inc
        .culprit
        .as_ref()
        .map(|c| format!("{}[{}]{}", c.comm, c.pid, client(c)))
        .unwrap_or_else(|| "unknown".into());
    let mut msg = format!(
        "{kind} on {}{}: culprit {culprit} ({})",
        inc.gpu.as_deref().unwrap_or("GPU"),
        inc.ring
            .as_deref()
            .map(|r| format!(" ring {r}"))
            .unwrap_or_default(),
        inc.confidence.name(),
    );
    if inc.kernel_blame_disputed {
        if let Some(k) = &inc.kernel_blamed {
            msg += &format!("; the kernel blamed {}[{}]{}", k.comm, k.pid, client(k));
        }
    }
    if let Some(m) = &inc.needs_recovery {
        msg += &format!("; device needs recovery: {m}");
    }
    if let Some(l) = &inc.reset_loop {
        msg += &format!("; {} resets", l.resets);
    }
    let priority = match inc.kind {
        hangwatch_core::incident::IncidentKind::PageFault => "4",
        _ => "3",
    };
    let mut f: Vec<(String, String)> = vec![
        // MESSAGE is what `journalctl` prints on a terminal: control bytes escaped. The
        // HANGWATCH_* fields stay exact, for `journalctl HANGWATCH_CULPRIT_COMM=...`.
        (
            "MESSAGE".into(),
            hangwatch_core::escape::terminal(&msg).into_owned(),
        ),
        ("MESSAGE_ID".into(), MESSAGE_ID.into()),
        ("PRIORITY".into(), priority.into()),
        ("SYSLOG_IDENTIFIER".into(), "hangwatch".into()),
        ("HANGWATCH_INCIDENT_ID".into(), inc.id.clone()),
        (
            "HANGWATCH_KIND".into(),
            kind.replace(' ', "_").to_lowercase(),
        ),
        ("HANGWATCH_CONFIDENCE".into(), inc.confidence.name().into()),
        (
            "HANGWATCH_KERNEL_BLAME_DISPUTED".into(),
            (inc.kernel_blame_disputed as u8).to_string(),
        ),
    ];
    let mut opt = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            f.push((name.to_string(), v));
        }
    };
    opt("HANGWATCH_GPU", inc.gpu.clone());
    opt("HANGWATCH_RING", inc.ring.clone());
    opt(
        "HANGWATCH_CULPRIT_PID",
        inc.culprit.as_ref().map(|c| c.pid.to_string()),
    );
    opt(
        "HANGWATCH_CULPRIT_COMM",
        inc.culprit.as_ref().map(|c| c.comm.clone()),
    );
    opt(
        "HANGWATCH_CULPRIT_EXE",
        inc.culprit.as_ref().and_then(|c| c.exe.clone()),
    );
    opt(
        "HANGWATCH_KERNEL_BLAMED_PID",
        inc.kernel_blamed.as_ref().map(|c| c.pid.to_string()),
    );
    opt(
        "HANGWATCH_KERNEL_BLAMED_COMM",
        inc.kernel_blamed.as_ref().map(|c| c.comm.clone()),
    );
    opt("HANGWATCH_RESET", inc.reset.map(|r| r.name().to_string()));
    opt("HANGWATCH_NEEDS_RECOVERY", inc.needs_recovery.clone());
    opt(
        "HANGWATCH_RESET_LOOP_RESETS",
        inc.reset_loop.as_ref().map(|l| l.resets.to_string()),
    );
    opt("HANGWATCH_WALL_TIME", inc.wall_time.clone());
    opt(
        "HANGWATCH_INCIDENT_DIR",
        dir.map(|d| d.display().to_string()),
    );
    opt(
        "HANGWATCH_VICTIMS",
        (!inc.victims.is_empty()).then(|| {
            inc.victims
                .iter()
                .map(|v| format!("{}[{}]", v.comm, v.pid))
                .collect::<Vec<_>>()
                .join(" ")
        }),
    );
    for (prefix, p) in [
        ("HANGWATCH_CULPRIT", &inc.culprit),
        ("HANGWATCH_KERNEL_BLAMED", &inc.kernel_blamed),
    ] {
        if let Some(id) = p.as_ref().and_then(|p| p.identity.as_ref()) {
            f.extend(identity_fields(prefix, id));
        }
    }
    debug_assert!(f.iter().all(|(n, _)| valid_name(n)));
    f
}

/// ` client=<names>` after a comm in MESSAGE, or nothing.
fn client(p: &ProcessRef) -> String {
    match p.identity.as_ref().map(ProcessIdentity::client_names) {
        Some(n) if !n.is_empty() => format!(" client={n}"),
        _ => String::new(),
    }
}

/// `<prefix>_UNIT`, `_USER`, `_CONTAINER_ID`, `_POD_UID`, `_SLURM_JOB_ID`, ... of one process,
/// each only when known. Values stay exact: the native protocol carries any byte.
pub fn identity_fields(prefix: &str, id: &ProcessIdentity) -> Vec<(String, String)> {
    let mut f = Vec::new();
    let mut opt = |name: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            f.push((format!("{prefix}_{name}"), v));
        }
    };
    opt("UNIT", id.unit.clone());
    opt("SLICE", id.slice.clone());
    opt("UID", id.uid.map(|u| u.to_string()));
    opt("USER", id.user.clone());
    opt("SESSION", id.session.clone());
    opt(
        "CONTAINER_RUNTIME",
        id.container.as_ref().map(|c| c.runtime.name().into()),
    );
    opt("CONTAINER_ID", id.container.as_ref().map(|c| c.id.clone()));
    opt("POD_UID", id.pod.as_ref().map(|p| p.uid.clone()));
    opt("POD_QOS", id.pod.as_ref().map(|p| qos_name(p.qos).into()));
    opt(
        "SLURM_JOB_ID",
        id.slurm.as_ref().map(|j| j.job_id.to_string()),
    );
    opt("SLURM_STEP", id.slurm.as_ref().and_then(|j| j.step.clone()));
    opt("SLURM_USER", id.slurm.as_ref().and_then(|j| j.user.clone()));
    let nspid: Vec<String> = id.nspid.iter().map(u32::to_string).collect();
    opt("NSPID", Some(nspid.join(" ")));
    opt("DRM_CLIENT_NAME", Some(id.client_names()));
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use hangwatch_core::testkit::disputed_incident;

    #[test]
    fn a_reset_loop_says_how_many_resets() {
        let mut inc = disputed_incident();
        inc.kind = hangwatch_core::incident::IncidentKind::ResetLoop;
        inc.reset_loop = Some(hangwatch_core::testkit::hostile_loop("game"));
        let f = incident_fields(&inc, None);
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HANGWATCH_KIND"), Some("reset_loop"));
        assert_eq!(get("HANGWATCH_RESET_LOOP_RESETS"), Some("5"));
        let msg = get("MESSAGE").unwrap_or_default();
        assert!(msg.starts_with("reset loop on 0000:c3:00.0"), "{msg}");
        assert!(msg.ends_with("; 5 resets"), "{msg}");
        let plain = incident_fields(&disputed_incident(), None);
        assert!(!plain
            .iter()
            .any(|(n, _)| n == "HANGWATCH_RESET_LOOP_RESETS"));
    }

    #[test]
    fn entry_round_trips_through_a_datagram_socket_with_hostile_names() {
        let dir = std::env::temp_dir().join(format!("hw-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("socket");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut j = Journal::connect(&path).unwrap();
        let mut inc = disputed_incident();
        inc.needs_recovery = Some("rebind".into());
        // A name that tries to inject a field and a forged MESSAGE_ID line.
        inc.culprit.as_mut().unwrap().comm = "x\nMESSAGE_ID=0000\nPRIORITY=0".into();
        j.send(&incident_fields(
            &inc,
            Some(Path::new("/var/lib/hangwatch/incidents/i1")),
        ))
        .unwrap();
        let mut buf = vec![0u8; 65536];
        let n = server.recv(&mut buf).unwrap();
        let fields = decode(&buf[..n]).expect("valid native protocol");
        let get = |k: &str| {
            fields
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("MESSAGE_ID"), vec![MESSAGE_ID]);
        assert_eq!(get("PRIORITY"), vec!["3"]);
        assert_eq!(
            get("HANGWATCH_CULPRIT_COMM"),
            vec!["x\nMESSAGE_ID=0000\nPRIORITY=0"]
        );
        // The terminal copy escapes the name's control bytes; the field above stays exact.
        let msg = get("MESSAGE").concat();
        assert!(msg.contains("x\\x0aMESSAGE_ID"), "{msg:?}");
        assert!(!msg.contains(|c: char| c.is_control()), "{msg:?}");
        assert_eq!(get("HANGWATCH_CULPRIT_PID"), vec!["7021"]);
        assert_eq!(get("HANGWATCH_KERNEL_BLAMED_COMM"), vec!["Xwayland"]);
        assert_eq!(get("HANGWATCH_GPU"), vec!["0000:c3:00.0"]);
        assert_eq!(get("HANGWATCH_RING"), vec!["gfx_0.0.0"]);
        assert_eq!(get("HANGWATCH_KIND"), vec!["ring_timeout"]);
        assert_eq!(get("HANGWATCH_CONFIDENCE"), vec!["likely"]);
        assert_eq!(
            get("HANGWATCH_INCIDENT_DIR"),
            vec!["/var/lib/hangwatch/incidents/i1"]
        );
        assert!(get("MESSAGE")[0].contains("the kernel blamed Xwayland[6518]"));
        assert!(get("MESSAGE")[0].ends_with("; device needs recovery: rebind"));
        assert_eq!(get("HANGWATCH_NEEDS_RECOVERY"), vec!["rebind"]);
        assert!(get("HANGWATCH_CULPRIT_EXE")[0].ends_with("zed-editor"));
        // No identity captured: no identity field.
        assert!(fields.iter().all(|(n, _)| !n.contains("_UNIT")));
        // journald restarted: a new socket at the same path; the next entry still arrives.
        drop(server);
        std::fs::remove_file(&path).unwrap();
        let server = UnixDatagram::bind(&path).unwrap();
        j.send(&[("MESSAGE".into(), "again".into())]).unwrap();
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"MESSAGE=again\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A culprit in a Slurm step inside a podman container, with a hostile client name and
    /// unit: every identity field arrives exact, the MESSAGE copy is escaped.
    #[test]
    fn identity_fields_are_exact_and_message_escaped() {
        let mut inc = hangwatch_core::testkit::hostile("x\nMESSAGE_ID=0\x1b[2J");
        inc.kernel_blame_disputed = true;
        let fields = incident_fields(&inc, None);
        let dec = decode(&encode(&fields)).unwrap();
        let get = |k: &str| {
            dec.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let evil = "x\nMESSAGE_ID=0\x1b[2J";
        assert_eq!(get("HANGWATCH_CULPRIT_UNIT").as_deref(), Some(evil));
        assert_eq!(
            get("HANGWATCH_CULPRIT_DRM_CLIENT_NAME").as_deref(),
            Some(evil)
        );
        assert_eq!(
            get("HANGWATCH_CULPRIT_CONTAINER_RUNTIME").as_deref(),
            Some("podman")
        );
        assert_eq!(
            get("HANGWATCH_CULPRIT_POD_UID").as_deref(),
            Some("6a1f0c2e-9b7d-4c3a-8e5f-0d1c2b3a4f5e")
        );
        assert_eq!(
            get("HANGWATCH_CULPRIT_SLURM_JOB_ID").as_deref(),
            Some("4242")
        );
        assert_eq!(get("HANGWATCH_CULPRIT_NSPID").as_deref(), Some("4242 1"));
        assert_eq!(get("HANGWATCH_KERNEL_BLAMED_UID").as_deref(), Some("1000"));
        assert_eq!(dec.iter().filter(|(n, _)| n == "MESSAGE_ID").count(), 1);
        let msg = get("MESSAGE").unwrap();
        assert!(msg.contains("client=x\\x0aMESSAGE_ID=0\\x1b[2J"), "{msg}");
        assert!(!msg.contains(|c: char| c.is_control()), "{msg:?}");
    }

    #[test]
    fn long_values_are_cut_on_a_char_boundary() {
        let v = "é".repeat(5000);
        let enc = encode(&[("A".into(), v)]);
        let dec = decode(&enc).unwrap();
        assert!(dec[0].1.len() <= MAX_VALUE);
        assert!(String::from_utf8(dec[0].1.clone()).is_ok());
    }

    #[test]
    fn journal_stream_detection_needs_a_matching_stderr() {
        // Not under systemd here (or JOURNAL_STREAM names another stream): stderr only.
        if std::env::var_os("JOURNAL_STREAM").is_none() {
            assert!(!stderr_is_journal());
        }
        assert!(Journal::detect(JournalMode::Off).is_none());
    }
}
