//! `hangwatch run` as users run it (the real binary, real signals, real pipes), kernel-log only
//! with a file standing in for /dev/kmsg (`--kmsg-path`), so the daemon reproductions
//! run on any host: EPIPE on stdout, SIGHUP with and without a config, and `kill -9` between a
//! fault and its timeout followed by a restart that resumes from the kmsg cursor.
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hangwatch");

/// The V710 log (testdata/dmesg/v710-zed-fault-then-timeout.log): zed faults, then gfx times
/// out and the kernel names Xwayland. (offset µs from the first line, message).
const FAULT: &[(u64, &str)] = &[
    (0, "amdgpu 0002:00:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:40 vmid:7 pasid:32819)"),
    (12, "amdgpu 0002:00:00.0: amdgpu:  Process zed pid 7587 thread zed pid 7587"),
    (18, "amdgpu 0002:00:00.0: amdgpu:   in page starting at address 0x0000000000000000 from client 10"),
];
const TIMEOUT: &[(u64, &str)] = &[
    (0, "amdgpu 0002:00:00.0: amdgpu: ring gfx_0.0.0 timeout, signaled seq=571734509, emitted seq=571734511"),
    (6, "amdgpu 0002:00:00.0: amdgpu:  Process Xwayland pid 6518 thread Xwayland pid 6518"),
    (13, "amdgpu 0002:00:00.0: amdgpu: GPU reset begin!. Source:  1"),
    (230_214, "amdgpu 0002:00:00.0: amdgpu: GPU reset(1) succeeded!"),
];

fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// A file in /dev/kmsg's record format, appended to like the kernel's log.
struct FakeKmsg {
    path: PathBuf,
    seq: u64,
}

impl FakeKmsg {
    fn new(dir: &Path) -> FakeKmsg {
        let path = dir.join("kmsg");
        std::fs::write(&path, "").unwrap();
        // Unrelated records first, as on any host.
        let mut k = FakeKmsg { path, seq: 1000 };
        k.append(
            1_000_000,
            &[
                (0, "usb 1-1: new high-speed USB device"),
                (5, "EXT4-fs (vda): mounted"),
            ],
        );
        k
    }

    fn append(&mut self, at_us: u64, lines: &[(u64, &str)]) {
        self.append_live(at_us, lines, None);
    }

    /// Appends to the file (what /dev/kmsg keeps for a later reader) and, when given, to
    /// `live` too: a FIFO a running agent follows as it follows /dev/kmsg.
    fn append_live(&mut self, at_us: u64, lines: &[(u64, &str)], live: Option<&mut std::fs::File>) {
        let mut text = String::new();
        for (off, msg) in lines {
            self.seq += 1;
            text += &format!("3,{},{},-;{msg}\n", self.seq, at_us + off);
            // A dictionary line, as /dev/kmsg adds for device messages.
            text += " SUBSYSTEM=pci\n";
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
        if let Some(l) = live {
            l.write_all(text.as_bytes()).unwrap();
        }
    }
}

/// A FIFO standing in for /dev/kmsg while an agent runs, held open for writing (so the
/// agent's reader waits for records instead of seeing the end of its input).
fn live_kmsg(dir: &Path) -> (PathBuf, std::fs::File) {
    let p = dir.join("kmsg-live");
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    // Read+write: opening a FIFO so does not wait for a reader.
    let w = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    (p, w)
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hw-daemon-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `hangwatch run` kernel-log only, on the fake log, with a socket under `dir`.
fn agent(dir: &Path, kmsg: &FakeKmsg, extra: &[&str]) -> Command {
    agent_on(dir, &kmsg.path, extra)
}

/// `hangwatch run` kernel-log only, reading `kmsg` (a file or a FIFO).
fn agent_on(dir: &Path, kmsg: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["run", "--kmsg-only", "--kmsg-path"])
        .arg(kmsg)
        .arg("--socket")
        .arg(dir.join("control.sock"))
        .args(extra)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Stderr lines as they come.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Collects lines until one contains `what` (or 30 s pass); returns everything read.
fn wait_for(rx: &mpsc::Receiver<String>, what: &str, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            let hit = l.contains(what);
            seen.push(l);
            if hit {
                return true;
            }
        }
    }
    false
}

/// Starts an agent (stdout discarded) and waits until its control socket is up; the child,
/// its stderr lines and what it said so far.
fn running(cmd: &mut Command) -> (Child, mpsc::Receiver<String>, Vec<String>) {
    let mut a = cmd.stdout(Stdio::null()).spawn().unwrap();
    let rx = lines(&mut a);
    let mut seen = Vec::new();
    assert!(wait_for(&rx, "control socket", &mut seen), "{seen:#?}");
    (a, rx, seen)
}

fn finish(mut child: Child, rx: &mpsc::Receiver<String>, seen: &mut Vec<String>) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "agent did not exit: {seen:#?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(100));
    seen.extend(rx.try_iter());
    status.code()
}

/// Whether any stderr line contains `what`.
fn said(seen: &[String], what: &str) -> bool {
    seen.iter().any(|l| l.contains(what))
}

/// The sequence number in the state directory's kmsg cursor.
fn cursor_seq(state: &Path) -> Option<String> {
    std::fs::read_to_string(state.join("kmsg-cursor"))
        .ok()?
        .split_whitespace()
        .nth(1)
        .map(str::to_string)
}

/// Runs an agent that ends by itself (`--duration`); its exit code and stderr lines.
fn run_to_end(cmd: &mut Command) -> (Option<i32>, Vec<String>) {
    let mut a = cmd.stdout(Stdio::null()).spawn().unwrap();
    let rx = lines(&mut a);
    let mut seen = Vec::new();
    let code = finish(a, &rx, &mut seen);
    (code, seen)
}

fn incidents(out: &Path) -> Vec<serde_json::Value> {
    let mut v: Vec<serde_json::Value> = std::fs::read_dir(out)
        .map(|rd| {
            rd.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|e| std::fs::read(e.path().join("incident.json")).ok())
                .map(|b| serde_json::from_slice(&b).unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|i| i["started_ns"].as_u64());
    v
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
}

#[test]
fn kill_9_while_an_incident_is_open_leaves_it_provisional_and_the_restart_completes_it() {
    let dir = tmpdir("kill9");
    let (state, out) = (dir.join("state"), dir.join("incidents"));
    let mut kmsg = FakeKmsg::new(&dir);
    let common = [
        "--state-dir",
        state.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];

    // First start: history is not replayed, but its end becomes the cursor.
    let (code, seen) = run_to_end(agent(&dir, &kmsg, &common).args(["--duration", "1"]));
    assert_eq!(code, Some(0), "{seen:#?}");
    assert!(said(&seen, "2 earlier record(s) left unread"), "{seen:#?}");
    assert_eq!(cursor_seq(&state).as_deref(), Some("1002"));

    // The fault, the timeout and the reset's start arrive while the agent runs; it is killed
    // while the incident waits for the reset's end.
    let (fifo, mut live) = live_kmsg(&dir);
    let (a, rx, mut seen) = running(&mut agent_on(&dir, &fifo, &common));
    let t = monotonic_us();
    kmsg.append_live(t, FAULT, Some(&mut live));
    kmsg.append_live(t + 2_650_000, &TIMEOUT[..3], Some(&mut live));
    assert!(
        wait_for(&rx, "provisional until it closes", &mut seen),
        "{seen:#?}"
    );
    // The timeout joins it at the next write, within a second.
    std::thread::sleep(Duration::from_millis(2500));
    signal(&a, libc::SIGKILL);
    finish(a, &rx, &mut seen);
    drop(live);
    let inc = incidents(&out);
    assert_eq!(inc.len(), 1, "written while open: {inc:#?}\n{seen:#?}");
    let p = &inc[0];
    assert_eq!(p["provisional"], true, "{p}");
    assert_eq!(p["culprit"]["comm"], "zed", "{p}");
    assert_eq!(p["reset"], "began", "{p}");
    let evidence = p["evidence"].to_string();
    assert!(
        evidence.contains("page fault") && evidence.contains("ring gfx_0.0.0 timeout"),
        "the fault and the timeout are on disk: {evidence}"
    );
    let id = p["id"].as_str().unwrap().to_string();
    // Captured when it opened: host facts and the culprit's maps beside incident.json.
    for f in ["host.json", "processes.json", "kernel.log", "report.md"] {
        assert!(out.join(&id).join(f).is_file(), "{f} missing in {id}");
    }
    assert_eq!(
        cursor_seq(&state).as_deref(),
        Some("1002"),
        "the cursor stayed before the open incident's fault"
    );
    let o = Command::new(BIN)
        .args(["list", "--dir"])
        .arg(&out)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("(open)"), "list marks it: {table}");

    // The reset ends while the agent is down; the restart re-reads from the cursor and
    // completes the same incident.
    kmsg.append(t + 2_650_000, &TIMEOUT[3..]);
    let (code, seen) = run_to_end(agent(&dir, &kmsg, &common).args(["--duration", "2"]));
    assert_eq!(code, Some(0), "{seen:#?}");
    assert!(said(&seen, "resuming after record 1002"), "{seen:#?}");
    assert!(
        said(&seen, "left provisional by a stopped agent"),
        "{seen:#?}"
    );
    assert!(said(&seen, "backlog of 7 record(s) read"), "{seen:#?}");
    let inc = incidents(&out);
    assert_eq!(inc.len(), 1, "completed, not duplicated: {inc:#?}");
    let f = &inc[0];
    assert_eq!(f["id"], id.as_str(), "the same incident");
    assert!(f.get("provisional").is_none(), "final: {f}");
    assert_eq!(f["kind"], "ring_timeout");
    assert_eq!(f["reset"], "succeeded", "{f}");
    assert_eq!(
        f["culprit"]["comm"], "zed",
        "the fault survived the kill: zed, not the victim"
    );
    assert_eq!(f["kernel_blamed"]["comm"], "Xwayland");
    assert_eq!(
        f["boot_id"].as_str().map(str::len),
        Some(36),
        "live incidents carry the boot id"
    );
    assert!(
        f["wall_time"].as_str().is_some_and(|w| w.ends_with('Z')),
        "{}",
        f["wall_time"]
    );

    // Another restart resumes after the reset: the incident is not reported twice.
    let (code, seen) = run_to_end(agent(&dir, &kmsg, &common).args(["--duration", "1"]));
    assert_eq!(code, Some(0), "{seen:#?}");
    assert!(said(&seen, "resuming after record 1009"), "{seen:#?}");
    assert_eq!(incidents(&out).len(), 1);
    list_and_show(&out);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_incident_left_open_that_the_log_no_longer_holds_is_finalised_as_written() {
    let dir = tmpdir("stale");
    let out = dir.join("incidents");
    let mut kmsg = FakeKmsg::new(&dir);
    let (fifo, mut live) = live_kmsg(&dir);
    let (a, rx, mut seen) = running(&mut agent_on(
        &dir,
        &fifo,
        &["--output", out.to_str().unwrap()],
    ));
    kmsg.append_live(monotonic_us(), FAULT, Some(&mut live));
    assert!(
        wait_for(&rx, "provisional until it closes", &mut seen),
        "{seen:#?}"
    );
    signal(&a, libc::SIGKILL);
    finish(a, &rx, &mut seen);
    drop(live);
    assert_eq!(incidents(&out)[0]["provisional"], true);
    // No cursor: the restart reads the log from its end, so nothing regenerates the fault.
    let (code, seen) = run_to_end(
        agent(&dir, &kmsg, &["--output", out.to_str().unwrap()]).args(["--duration", "1"]),
    );
    assert_eq!(code, Some(0), "{seen:#?}");
    assert!(said(&seen, "finalised as written"), "{seen:#?}");
    let inc = incidents(&out);
    assert_eq!(inc.len(), 1, "{inc:#?}");
    assert!(inc[0].get("provisional").is_none(), "{}", inc[0]);
    assert!(
        inc[0]["reasoning"]
            .as_str()
            .is_some_and(|r| r.contains("stopped while this incident was open")),
        "{}",
        inc[0]
    );
    let id = inc[0]["id"].as_str().unwrap();
    assert!(
        out.join(id).join("host.json").is_file(),
        "facts of the open kept"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `hangwatch list` / `show` on what the agent wrote.
fn list_and_show(out: &Path) {
    let o = Command::new(BIN)
        .args(["list", "--json", "--dir"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["culprit"]["comm"], "zed");
    assert_eq!(rows[0]["boot_id"].as_str().map(str::len), Some(36));
    assert!(
        rows[0]["hostname"].is_string() && rows[0]["wall_time"].is_string(),
        "{rows}"
    );
    let o = Command::new(BIN)
        .args(["list", "--since", "1h", "--dir"])
        .arg(out)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("ring timeout") && table.contains("zed[7587]"),
        "{table}"
    );
    let o = Command::new(BIN)
        .args(["list", "--since", "2099-01-01T00:00:00Z", "--dir"])
        .arg(out)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("no incidents"));
    let o = Command::new(BIN)
        .args(["show", "latest", "--dir"])
        .arg(out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for want in ["boot:", "host:", "zed", "Xwayland"] {
        assert!(text.contains(want), "show lacks {want}: {text}");
    }
    let files = text.lines().find(|l| l.starts_with("files:")).unwrap_or("");
    for want in ["incident.json", "host.json", "kernel.log"] {
        assert!(files.contains(want), "show's files lack {want}: {text}");
    }
    let o = Command::new(BIN)
        .args(["show", "no-such", "--dir"])
        .arg(out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("hangwatch list"));
}

#[test]
fn overwritten_records_are_counted_and_said() {
    let dir = tmpdir("gap");
    let state = dir.join("state");
    let mut kmsg = FakeKmsg::new(&dir);
    std::fs::create_dir_all(&state).unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    // The saved cursor is at 900; the log now starts at 1001: 100 records were overwritten.
    std::fs::write(state.join("kmsg-cursor"), format!("{} 900\n", boot.trim())).unwrap();
    kmsg.append(
        monotonic_us(),
        &[(
            0,
            "amdgpu 0002:00:00.0: amdgpu: GPU reset begin!. Source:  1",
        )],
    );
    let mut a = agent(
        &dir,
        &kmsg,
        &["--state-dir", state.to_str().unwrap(), "--duration", "1"],
    )
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let rx = lines(&mut a);
    let mut seen = Vec::new();
    assert_eq!(finish(a, &rx, &mut seen), Some(0), "{seen:#?}");
    assert!(
        said(&seen, "100 record(s) before #1001 were overwritten"),
        "{seen:#?}"
    );
    let stats = seen
        .iter()
        .find(|l| l.contains("stats:"))
        .expect("stats line");
    assert!(stats.contains("kmsg overwritten 100"), "{stats}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_planted_cursor_beyond_the_log_is_ignored_with_a_warning() {
    let dir = tmpdir("planted-cursor");
    let (state, out) = (dir.join("state"), dir.join("incidents"));
    std::fs::create_dir_all(&state).unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    // This boot's id and the largest sequence number: every record to come looks handled.
    std::fs::write(
        state.join("kmsg-cursor"),
        format!("{} {}\n", boot.trim(), u64::MAX),
    )
    .unwrap();
    let mut kmsg = FakeKmsg::new(&dir);
    let (fifo, mut live) = live_kmsg(&dir);
    live.write_all(&std::fs::read(&kmsg.path).unwrap()).unwrap();
    let common = [
        "--state-dir",
        state.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    let (a, rx, mut seen) = running(&mut agent_on(&dir, &fifo, &common));
    let t = monotonic_us();
    kmsg.append_live(t, FAULT, Some(&mut live));
    kmsg.append_live(t + 2_650_000, &TIMEOUT[..3], Some(&mut live));
    let opened = wait_for(&rx, "provisional until it closes", &mut seen);
    signal(&a, libc::SIGTERM);
    finish(a, &rx, &mut seen);
    assert!(opened, "the planted cursor blinded the agent: {seen:#?}");
    assert!(said(&seen, "ignoring it"), "{seen:#?}");
    assert_eq!(incidents(&out).len(), 1, "{seen:#?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn live_names_are_the_names_analyze_shows() {
    let dir = tmpdir("kmsg-escapes");
    let out = dir.join("incidents");
    let mut kmsg = FakeKmsg::new(&dir);
    let state = replay_all(&dir, &mut kmsg);
    // /dev/kmsg escapes every non-ASCII byte; `zëd漢` arrives as below.
    let text = std::fs::read_to_string(&kmsg.path)
        .unwrap()
        .replace("zed", "z\\xc3\\xabd\\xe6\\xbc\\xa2");
    std::fs::write(&kmsg.path, text).unwrap();
    let args = replay_args(&state, &out);
    let (code, seen) = run_to_end(&mut agent(&dir, &kmsg, &args));
    assert_eq!(code, Some(0), "{seen:#?}");
    let inc = incidents(&out);
    assert_eq!(inc.len(), 1, "{seen:#?}");
    assert_eq!(inc[0]["culprit"]["comm"], "zëd漢", "{}", inc[0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn records_userspace_wrote_to_dev_kmsg_are_dropped_and_counted() {
    let dir = tmpdir("user-facility");
    let out = dir.join("incidents");
    let mut kmsg = FakeKmsg::new(&dir);
    let state = replay_all(&dir, &mut kmsg);
    // The same fault and timeout, as `echo > /dev/kmsg` or a journald relay writes them:
    // priority 14 is LOG_USER (facility 1) at level 6. Only those remain in the log.
    let text = std::fs::read_to_string(&kmsg.path).unwrap();
    let forged: String = text
        .lines()
        .map(|l| match l.split_once(',') {
            Some(("3", rest)) => format!("14,{rest}\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&kmsg.path, forged).unwrap();
    let args = replay_args(&state, &out);
    let (code, seen) = run_to_end(&mut agent(&dir, &kmsg, &args));
    assert_eq!(code, Some(0), "{seen:#?}");
    assert!(
        incidents(&out).is_empty(),
        "forged records made an incident: {seen:#?}"
    );
    let n = FAULT.len() + TIMEOUT.len() + 2;
    assert!(
        said(&seen, &format!("kmsg written by userspace {n}")),
        "{seen:#?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_incident_closed_before_kill_9_is_not_reported_again() {
    let dir = tmpdir("kill9-closed");
    let out = dir.join("incidents");
    let mut kmsg = FakeKmsg::new(&dir);
    let state = replay_all(&dir, &mut kmsg);
    let args = replay_args(&state, &out);
    let run = |kmsg: &FakeKmsg| {
        let o = agent(&dir, kmsg, &args)
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (first, _) = run(&kmsg);
    assert!(first.contains("zed"), "reported once: {first}");
    // kill -9 after the incident was written but before the cursor moved past it: the
    // restart re-reads its records.
    std::fs::write(state.join("kmsg-cursor"), "another-boot 1\n").unwrap();
    let (second, err) = run(&kmsg);
    assert!(second.trim().is_empty(), "reported twice: {second}\n{err}");
    assert!(err.contains("already reported before the restart"), "{err}");
    assert_eq!(incidents(&out).len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `run`'s arguments for one second over a [`replay_all`] state dir, writing to `out`.
fn replay_args<'a>(state: &'a Path, out: &'a Path) -> [&'a str; 6] {
    [
        "--state-dir",
        state.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--duration",
        "1",
    ]
}

/// A state dir whose cursor makes the agent read the whole fake log (a complete incident).
fn replay_all(dir: &Path, kmsg: &mut FakeKmsg) -> PathBuf {
    kmsg.append(monotonic_us(), FAULT);
    kmsg.append(monotonic_us() + 100_000, TIMEOUT);
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("kmsg-cursor"), "another-boot 1\n").unwrap();
    state
}

#[test]
fn closed_stdout_does_not_stop_the_agent() {
    // `hangwatch run --output D | true`: it used to panic on EPIPE before writing D.
    let dir = tmpdir("epipe");
    let mut kmsg = FakeKmsg::new(&dir);
    let state = replay_all(&dir, &mut kmsg);
    let out = dir.join("incidents");
    let mut a = agent(
        &dir,
        &kmsg,
        &[
            "--state-dir",
            state.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--duration",
            "2",
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    drop(a.stdout.take()); // the reader (`true`) has exited
    let rx = lines(&mut a);
    let mut seen = Vec::new();
    assert_eq!(finish(a, &rx, &mut seen), Some(0), "{seen:#?}");
    assert!(!seen.iter().any(|l| l.contains("panicked")), "{seen:#?}");
    assert!(
        seen.iter().any(|l| l.contains("stdout closed")),
        "{seen:#?}"
    );
    assert!(said(&seen, "stats:"), "{seen:#?}");
    assert_eq!(incidents(&out).len(), 1, "{seen:#?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sighup_without_config_ends_cleanly() {
    let dir = tmpdir("hup");
    let kmsg = FakeKmsg::new(&dir);
    let (a, rx, mut seen) = running(&mut agent(&dir, &kmsg, &[]));
    assert!(dir.join("control.sock").exists());
    signal(&a, libc::SIGHUP);
    assert_eq!(finish(a, &rx, &mut seen), Some(0), "{seen:#?}");
    assert!(
        seen.iter().any(|l| l.contains("stopping: SIGHUP")),
        "{seen:#?}"
    );
    assert!(said(&seen, "stats:"), "{seen:#?}");
    assert!(!dir.join("control.sock").exists(), "socket file removed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sighup_with_config_reloads_and_sigterm_ends_cleanly() {
    let dir = tmpdir("reload");
    let kmsg = FakeKmsg::new(&dir);
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        "[output]\nmax_incidents = 10\n[agent]\nring_depth = 64\n",
    )
    .unwrap();
    let (a, rx, mut seen) = running(&mut agent(
        &dir,
        &kmsg,
        &["--config", cfg.to_str().unwrap()],
    ));
    // A live change and one that needs a restart.
    let out = dir.join("incidents");
    std::fs::write(
        &cfg,
        format!("[output]\ndir = {:?}\n[agent]\nring_depth = 128\n", out),
    )
    .unwrap();
    signal(&a, libc::SIGHUP);
    assert!(
        wait_for(&rx, "configuration reloaded", &mut seen),
        "{seen:#?}"
    );
    assert!(
        said(&seen, "agent.ring_depth changed but needs a restart"),
        "{seen:#?}"
    );
    assert!(out.is_dir(), "the new output directory is in use");
    // A broken file keeps the running settings.
    std::fs::write(&cfg, "[output\n").unwrap();
    signal(&a, libc::SIGHUP);
    assert!(
        wait_for(&rx, "keeping the running settings", &mut seen),
        "{seen:#?}"
    );
    signal(&a, libc::SIGTERM);
    assert_eq!(finish(a, &rx, &mut seen), Some(0), "{seen:#?}");
    assert!(
        seen.iter().any(|l| l.contains("stopping: SIGTERM")),
        "{seen:#?}"
    );
    assert!(said(&seen, "stats:"), "{seen:#?}");
    assert!(!dir.join("control.sock").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// GET /metrics from a running agent (std only: no HTTP client dependency).
fn scrape(addr: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

#[test]
fn running_agent_exposition_passes_promtool() {
    let promtool = Command::new("promtool").arg("--version").output();
    assert!(
        promtool.is_ok_and(|o| o.status.success()),
        "promtool not found: install Debian's prometheus package (cargo xtask setup does)"
    );
    let dir = tmpdir("metrics");
    let mut kmsg = FakeKmsg::new(&dir);
    // A minute earlier, a process with a hostile name faults: its own page-fault incident,
    // whose name must come out escaped, not break the exposition.
    kmsg.append(
        monotonic_us() - 60_000_000,
        &[
            (0, "amdgpu 0002:00:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:40 vmid:7 pasid:32820)"),
            (5, "amdgpu 0002:00:00.0: amdgpu:  Process a\"b\\c} pid 7600 thread x pid 7600"),
            (9, "amdgpu 0002:00:00.0: amdgpu:   in page starting at address 0x0000000000002000 from client 10"),
        ],
    );
    let state = replay_all(&dir, &mut kmsg);
    let mut a = agent(
        &dir,
        &kmsg,
        &[
            "--state-dir",
            state.to_str().unwrap(),
            "--metrics",
            "127.0.0.1:0",
            "--output",
            dir.join("out").to_str().unwrap(),
        ],
    )
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let rx = lines(&mut a);
    let mut seen = Vec::new();
    assert!(wait_for(&rx, "metrics: http://", &mut seen), "{seen:#?}");
    let addr = seen
        .iter()
        .find_map(|l| l.split("http://").nth(1))
        .and_then(|r| r.strip_suffix("/metrics"))
        .unwrap()
        .to_string();
    // Wait for the incident (closed by the timer once its settle time passes, ~5 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let b = scrape(&addr);
        if b.contains("culprit_comm=\"zed\"") || Instant::now() > deadline {
            break b;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    signal(&a, libc::SIGTERM);
    assert_eq!(finish(a, &rx, &mut seen), Some(0), "{seen:#?}");
    assert!(
        body.contains(r#"kind="ring_timeout",ring="gfx_0.0.0",culprit_comm="zed""#),
        "{body}"
    );
    assert!(
        body.contains(r#"kind="page_fault",ring="",culprit_comm="a\"b\\c}""#),
        "{body}"
    );
    assert!(
        body.contains(r#"hangwatch_page_faults_total{comm="zed"} 1"#),
        "{body}"
    );
    assert!(body.contains("hangwatch_kernel_misblames_total{"), "{body}");
    assert!(
        body.contains(r#"hangwatch_gpu_resets_total{gpu="0002:00:00.0",outcome="succeeded"} 1"#),
        "{body}"
    );
    assert!(
        body.contains("hangwatch_last_incident_timestamp_seconds "),
        "{body}"
    );
    // The compute sources (KFD proc table, SMI) count even where amdkfd is absent, and say so
    // once at the start; the closing stats line carries their counters and the queue table.
    assert!(
        body.contains(r#"hangwatch_kfd_source_total{what="proc_polls"} "#),
        "{body}"
    );
    assert!(body.contains("hangwatch_compute_queues 0"), "{body}");
    assert!(
        body.contains(r#"hangwatch_correlator_events_total{what="queue_eviction"} 0"#),
        "{body}"
    );
    assert!(
        seen.iter().any(|l| l.contains("KFD: ")),
        "a status line per compute source: {seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("KFD: proc table polls")
                && l.contains("compute queue table: 0 live")),
        "{seen:#?}"
    );
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let o = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{body}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn incident_reaches_a_real_journald_as_one_structured_entry() {
    // systemd-journald in a private mount namespace (tmpfs over /run/systemd/journal and
    // /run/log), the agent logging to it, journalctl reading the entry back.
    let dir = tmpdir("journal");
    let mut kmsg = FakeKmsg::new(&dir);
    let state = replay_all(&dir, &mut kmsg);
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[output]\njournal = \"on\"\nstdout = \"none\"\ndir = {:?}\n[agent]\nstate_dir = {:?}\nprobes = false\n[control]\nsocket = \"\"\n",
            dir.join("incidents"),
            state
        ),
    )
    .unwrap();
    let script = format!(
        r#"set -e
mkdir -p /run/systemd/journal /run/log
mount -t tmpfs tmpfs /run/systemd/journal
mount -t tmpfs tmpfs /run/log
/lib/systemd/systemd-journald & J=$!
i=0; while [ ! -S /run/systemd/journal/socket ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
{bin} run --config {cfg} --kmsg-path {kmsg} --duration 2 2>{dir}/agent.err
sleep 1
journalctl -D /run/log/journal --no-pager -o json MESSAGE_ID=5b1f0a7e3c2d4e8f9a6b7c1d2e3f4a5b > {dir}/entries.json
kill $J"#,
        bin = BIN,
        cfg = cfg.display(),
        kmsg = kmsg.path.display(),
        dir = dir.display()
    );
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux)");
    let err = std::fs::read_to_string(dir.join("agent.err")).unwrap_or_default();
    assert!(
        o.status.success(),
        "{}\n{err}",
        String::from_utf8_lossy(&o.stderr)
    );
    let entries: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("entries.json"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one entry per incident: {entries:#?}\n{err}"
    );
    let e = &entries[0];
    assert_eq!(
        e["_TRANSPORT"], "journal",
        "native protocol, not the stream: {e}"
    );
    assert_eq!(e["HANGWATCH_CULPRIT_COMM"], "zed");
    assert_eq!(e["HANGWATCH_CULPRIT_PID"], "7587");
    assert_eq!(e["HANGWATCH_KERNEL_BLAMED_COMM"], "Xwayland");
    assert_eq!(e["HANGWATCH_KIND"], "ring_timeout");
    assert_eq!(e["HANGWATCH_RING"], "gfx_0.0.0");
    assert_eq!(e["HANGWATCH_GPU"], "0002:00:00.0");
    // From the kernel log alone there is no progress evidence: rule T4 says "unknown".
    assert_eq!(e["HANGWATCH_CONFIDENCE"], "unknown");
    assert_eq!(e["PRIORITY"], "3");
    assert!(
        e["HANGWATCH_INCIDENT_DIR"]
            .as_str()
            .is_some_and(|d| d.starts_with(dir.join("incidents").to_str().unwrap())),
        "{e}"
    );
    assert!(
        e["MESSAGE"]
            .as_str()
            .is_some_and(|m| m.contains("culprit zed[7587]")),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `setpriv` to uid/gid 65534 with no capabilities at all.
fn unprivileged(args: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        BIN,
    ])
    .args(args);
    c
}

#[test]
fn unprivileged_run_names_the_missing_capabilities() {
    let dir = tmpdir("nocaps");
    let kmsg = FakeKmsg::new(&dir);
    // Kernel log readable (a file here): it runs from it, and says what the probes lack.
    let (code, seen) = run_to_end(
        unprivileged(&["run", "--no-socket", "--duration", "1", "--kmsg-path"])
            .arg(&kmsg.path)
            .stderr(Stdio::piped()),
    );
    assert_eq!(code, Some(0), "{seen:#?}");
    assert!(
        said(&seen, "probes disabled: missing CAP_BPF + CAP_PERFMON"),
        "{seen:#?}"
    );
    // Nothing readable: a clear error naming the capabilities, not a panic or a euid check.
    let o = unprivileged(&["run", "--no-socket", "--kmsg-path", "/nonexistent/kmsg"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("nothing to observe")
            && err.contains("missing CAP_BPF, CAP_PERFMON, CAP_SYSLOG"),
        "{err}"
    );
    // check lists each capability with what it is for.
    let o = unprivileged(&["check"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("CAP_SYS_PTRACE       NO"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn systemd_readiness_protocol() {
    // Type=notify: READY=1 once started, RELOADING=1/READY=1 around a reload, STOPPING=1.
    use std::os::unix::net::UnixDatagram;
    let dir = tmpdir("notify");
    let kmsg = FakeKmsg::new(&dir);
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, "").unwrap();
    let mut a = agent(&dir, &kmsg, &["--config", cfg.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines(&mut a);
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(ready.starts_with("READY=1\nSTATUS=watching:"), "{ready}");
    signal(&a, libc::SIGHUP);
    assert_eq!(next(), "RELOADING=1");
    assert_eq!(next(), "READY=1");
    signal(&a, libc::SIGTERM);
    assert_eq!(next(), "STOPPING=1");
    let mut seen = Vec::new();
    assert_eq!(finish(a, &rx, &mut seen), Some(0), "{seen:#?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A small tmpfs, unmounted on drop: a disk that fills up (root only).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root to mount a small filesystem");
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        let o = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Some(SmallDisk(at.to_path_buf()))
    }

    /// Appends to `file` until the filesystem is full.
    fn fill(file: &Path) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .unwrap();
        let block = vec![b'x'; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_keeps_the_cursor_before_the_incident_it_could_not_store() {
    let dir = tmpdir("disk-full-cursor");
    let Some(_disk) = SmallDisk::mount(&dir.join("fs"), "512k") else {
        return;
    };
    let out = dir.join("fs/incidents");
    let mut kmsg = FakeKmsg::new(&dir);
    let state = replay_all(&dir, &mut kmsg);
    let args = replay_args(&state, &out);
    // Something else filled the disk: no incident of ours can make room.
    let filler = dir.join("fs/filler");
    SmallDisk::fill(&filler);
    let (code, seen) = run_to_end(&mut agent(&dir, &kmsg, &args));
    assert_eq!(code, Some(0), "{seen:#?}");
    assert!(said(&seen, "cannot write incident"), "{seen:#?}");
    assert!(incidents(&out).is_empty(), "{seen:#?}");
    assert_eq!(
        cursor_seq(&state).as_deref(),
        Some("1"),
        "the cursor moved past an incident that was not stored: {seen:#?}"
    );
    // Space again: the restart re-reads the records and stores the incident.
    std::fs::remove_file(&filler).unwrap();
    let (code, seen) = run_to_end(&mut agent(&dir, &kmsg, &args));
    assert_eq!(code, Some(0), "{seen:#?}");
    let inc = incidents(&out);
    assert_eq!(inc.len(), 1, "{seen:#?}");
    assert_eq!(inc[0]["culprit"]["comm"], "zed", "{}", inc[0]);
    assert_eq!(cursor_seq(&state), Some(kmsg.seq.to_string()), "{seen:#?}");
    drop(_disk);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Finished incidents `old-0` (oldest) … of about `bytes` each in `out`, until `n` or the
/// filesystem is full; their directories.
fn plant_old_incidents(out: &Path, n: usize, bytes: usize) -> Vec<PathBuf> {
    let mut finished = hangwatch_core::testkit::disputed_incident();
    finished.provisional = false;
    let mut old = Vec::new();
    for i in 0..n {
        let d = out.join(format!("old-{i}"));
        std::fs::create_dir(&d).unwrap();
        let json = d.join("incident.json");
        finished.id = format!("old-{i}");
        let ok = std::fs::write(&json, serde_json::to_vec(&finished).unwrap()).is_ok()
            && std::fs::write(d.join("kernel.log"), vec![b'x'; bytes]).is_ok();
        if !ok {
            std::fs::remove_dir_all(&d).unwrap();
            break;
        }
        let age = Duration::from_secs(3600 * (1000 - i as u64));
        std::fs::File::options()
            .write(true)
            .open(&json)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - age)
            .unwrap();
        old.push(d);
    }
    old
}

#[test]
fn a_full_disk_makes_room_by_removing_the_oldest_incidents() {
    let dir = tmpdir("disk-full-age");
    let Some(_disk) = SmallDisk::mount(&dir.join("fs"), "1m") else {
        return;
    };
    let out = dir.join("fs/incidents");
    std::fs::create_dir_all(&out).unwrap();
    let mut kmsg = FakeKmsg::new(&dir);
    let state = replay_all(&dir, &mut kmsg);
    let args = replay_args(&state, &out);
    // Older incidents fill the disk, 200 KB each, the newest taking the last bytes.
    let old = plant_old_incidents(&out, usize::MAX, 200_000);
    assert!(old.len() >= 3, "{old:?}");
    SmallDisk::fill(&old.last().unwrap().join("kernel.log"));
    let (code, seen) = run_to_end(&mut agent(&dir, &kmsg, &args));
    assert_eq!(code, Some(0), "{seen:#?}");
    let inc = incidents(&out);
    let new: Vec<_> = inc
        .iter()
        .filter(|i| !i["id"].as_str().unwrap().starts_with("old-"))
        .collect();
    assert_eq!(new.len(), 1, "the newest incident was lost: {seen:#?}");
    assert_eq!(new[0]["culprit"]["comm"], "zed", "{}", new[0]);
    assert!(!old[0].exists(), "the oldest incident was kept: {seen:#?}");
    assert!(
        old.last().unwrap().exists(),
        "a newer one went first: {seen:#?}"
    );
    assert!(
        said(&seen, "disk full: removed the oldest incident old-0"),
        "{seen:#?}"
    );
    let removed = old.iter().filter(|d| !d.exists()).count();
    eprintln!(
        "{} old incidents, {removed} removed to store the new one",
        old.len()
    );
    assert_eq!(cursor_seq(&state), Some(kmsg.seq.to_string()), "{seen:#?}");
    drop(_disk);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_incident_a_full_disk_refused_is_written_when_space_returns() {
    let dir = tmpdir("disk-full-retry");
    let Some(_disk) = SmallDisk::mount(&dir.join("fs"), "512k") else {
        return;
    };
    let (state, out) = (dir.join("state"), dir.join("fs/incidents"));
    let mut kmsg = FakeKmsg::new(&dir);
    let common = [
        "--state-dir",
        state.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    let (fifo, mut live) = live_kmsg(&dir);
    let (a, rx, mut seen) = running(&mut agent_on(&dir, &fifo, &common));
    let filler = dir.join("fs/filler");
    SmallDisk::fill(&filler);
    let t = monotonic_us();
    kmsg.append_live(t, FAULT, Some(&mut live));
    kmsg.append_live(t + 2_650_000, TIMEOUT, Some(&mut live));
    let refused = wait_for(&rx, "cannot write incident", &mut seen);
    std::fs::remove_file(&filler).unwrap();
    let retried = wait_for(&rx, "(on retry)", &mut seen);
    signal(&a, libc::SIGTERM);
    finish(a, &rx, &mut seen);
    assert!(refused && retried, "{seen:#?}");
    let inc = incidents(&out);
    assert_eq!(inc.len(), 1, "{seen:#?}");
    assert_eq!(inc[0]["culprit"]["comm"], "zed", "{}", inc[0]);
    assert!(inc[0].get("provisional").is_none(), "final: {}", inc[0]);
    assert_eq!(cursor_seq(&state), Some(kmsg.seq.to_string()), "{seen:#?}");
    drop(_disk);
    std::fs::remove_dir_all(&dir).unwrap();
}
