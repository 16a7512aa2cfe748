//! The running agent's local control socket: one JSON request line, one JSON response line.
//! `hangwatch export` uses it to fetch an arbitrary window of the flight recorder. Job history
//! names every GPU process on the host, so the socket is 0600 (0660 with a configured group)
//! and every peer's credentials are checked (SO_PEERCRED: root, our own uid, or the group).
//!
//! A client cannot hold the agent: each connection is served on its own thread, at most
//! [`ServerOptions::max_clients`] at once (others are told "busy" and retry), with a deadline
//! for reading the request and one for writing the answer, which is streamed rather than
//! built in memory. Shutdown never waits for a client.
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use hangwatch_core::incident::{Evidence, JobSnapshot};

pub const DEFAULT_SOCKET: &str = "/run/hangwatch/control.sock";
/// Requests are tiny; anything bigger is a confused or hostile client.
const MAX_REQUEST: u64 = 4096;
/// The client stops reading an answer past this (a flight recorder window is a few MiB).
const MAX_RESPONSE: u64 = 512 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Jobs { since_ns: u64, until_ns: u64 },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(default)]
    pub jobs: Vec<JobSnapshot>,
    /// Recent evidence (faults, timeouts, resets) in the window.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// Set when the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set when every client slot was taken: try again shortly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub busy: bool,
}

impl Response {
    fn failed(e: impl Into<String>) -> Self {
        Response {
            error: Some(e.into()),
            ..Default::default()
        }
    }
}

/// Limits of the control socket (why these values: docs/security.md).
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Members of this group may use the socket too (it is then chgrp'd and 0660).
    pub group: Option<u32>,
    /// Connections served at once; more are answered `busy`.
    pub max_clients: usize,
    /// Time a client has to send its request line.
    pub read_deadline: Duration,
    /// Time a client may go without taking any of the answer (one that never reads).
    pub write_stall: Duration,
    /// Time a client has to take the whole answer, however steadily it reads.
    pub write_deadline: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            group: None,
            max_clients: 16,
            read_deadline: Duration::from_secs(2),
            write_stall: Duration::from_secs(2),
            write_deadline: Duration::from_secs(60),
        }
    }
}

type Handler = dyn Fn(Request) -> Response + Send + Sync;

/// Stops the accept loop and removes the socket file on drop; never waits for a client.
pub struct ServerHandle {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// Connections being served now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; the accept thread never serves a client itself, so the
        // join is immediate. Without the socket file we cannot wake it: detach instead.
        if UnixStream::connect(&self.path).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Who may talk to the agent: root, the agent's own uid, or a member of `group`.
fn peer_allowed(stream: &UnixStream, group: Option<u32>) -> Result<(), String> {
    let cred = rustix::net::sockopt::socket_peercred(stream.as_fd())
        .map_err(|e| format!("cannot read peer credentials: {e}"))?;
    let uid = cred.uid.as_raw();
    if uid == 0 || uid == rustix::process::geteuid().as_raw() {
        return Ok(());
    }
    if let Some(g) = group {
        if cred.gid.as_raw() == g || peer_groups(stream).contains(&g) {
            return Ok(());
        }
    }
    Err(format!(
        "permission denied: uid {uid} is not root{}",
        group
            .map(|g| format!(" or in group {g}"))
            .unwrap_or_default()
    ))
}

/// Supplementary groups of the peer at connect time (SO_PEERGROUPS, Linux 4.13+).
fn peer_groups(stream: &UnixStream) -> Vec<u32> {
    use std::os::fd::AsRawFd;
    let mut groups = vec![0u32; 256];
    let mut len = (groups.len() * 4) as libc::socklen_t;
    // SAFETY: the buffer is valid for `len` bytes and getsockopt writes at most that many.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERGROUPS,
            groups.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Vec::new();
    }
    groups.truncate(len as usize / 4);
    groups
}

/// A writer that gives up when the peer takes nothing for `stall`, or at the deadline.
struct DeadlineWriter<'a> {
    stream: &'a UnixStream,
    stall: Duration,
    deadline: Instant,
}

impl Write for DeadlineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client did not take the answer in time",
            ));
        }
        self.stream.set_write_timeout(Some(left.min(self.stall)))?;
        (&mut &*self.stream).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn write_response(stream: &UnixStream, resp: &Response, opts: &ServerOptions) -> Result<()> {
    let mut w = BufWriter::with_capacity(
        64 << 10,
        DeadlineWriter {
            stream,
            stall: opts.write_stall,
            deadline: Instant::now() + opts.write_deadline,
        },
    );
    serde_json::to_writer(&mut w, resp)?;
    w.write_all(b"\n")?;
    w.flush()?;
    Ok(())
}

fn read_request(stream: &UnixStream, deadline: Duration) -> Result<String> {
    let end = Instant::now() + deadline;
    let mut line = Vec::new();
    let mut r = BufReader::new(stream.take(MAX_REQUEST));
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no request within {deadline:?}");
        }
        stream.set_read_timeout(Some(left))?;
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 || line.ends_with(b"\n") {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn serve_one(stream: UnixStream, handler: &Handler, opts: &ServerOptions) -> Result<()> {
    // The request is read (bounded) even from a refused peer: closing a Unix socket with
    // unread data resets it, and the peer would never see why it was refused.
    let line = read_request(&stream, opts.read_deadline);
    if let Err(e) = peer_allowed(&stream, opts.group) {
        return write_response(&stream, &Response::failed(e), opts);
    }
    let line = line?;
    let resp = match serde_json::from_str::<Request>(line.trim()) {
        Ok(req) => handler(req),
        Err(e) => Response::failed(format!("bad request: {e}")),
    };
    write_response(&stream, &resp, opts)
}

/// Make room for the socket at `path`: its directory exists without a symlink or another
/// user's write access on the way, and `path` is free or a stale socket (removed). A live
/// socket, a regular file, a symlink or anything else there is refused, never deleted.
fn prepare_path(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsafe::SafeDir::open_shared(dir, true)
            .with_context(|| format!("control socket directory {}", dir.display()))?;
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket ({}): hangwatch will not delete it; remove it yourself or choose another --socket",
            path.display(),
            if meta.file_type().is_symlink() {
                "a symbolic link"
            } else if meta.is_dir() {
                "a directory"
            } else {
                "a regular file or device"
            }
        );
    }
    match UnixStream::connect(path) {
        Ok(_) => bail!(
            "{} is in use: another hangwatch agent is running",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display())),
        Err(e) => Err(e).with_context(|| {
            format!(
                "{} is a socket hangwatch cannot probe; remove it yourself",
                path.display()
            )
        }),
    }
}

/// Listen on `path` with the default limits (see [`spawn_server_with`]).
pub fn spawn_server(
    path: &Path,
    handler: impl Fn(Request) -> Response + Send + Sync + 'static,
) -> Result<ServerHandle> {
    spawn_server_with(path, ServerOptions::default(), handler)
}

/// Listen on `path` (0600, or 0660 and chgrp'd with a group; a stale socket is replaced) and
/// answer each connection with `handler` on its own thread.
pub fn spawn_server_with(
    path: &Path,
    opts: ServerOptions,
    handler: impl Fn(Request) -> Response + Send + Sync + 'static,
) -> Result<ServerHandle> {
    prepare_path(path)?;
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding control socket {}", path.display()))?;
    // Peers are checked on every connection, so the moment before chmod is not a hole.
    let mode = if opts.group.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if let Some(g) = opts.group {
        std::os::unix::fs::chown(path, None, Some(g))
            .with_context(|| format!("chgrp {g} {}", path.display()))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let active = Arc::new(AtomicUsize::new(0));
    let handler: Arc<Handler> = Arc::new(handler);
    let (stop2, active2) = (stop.clone(), active.clone());
    let thread = std::thread::Builder::new()
        .name("hangwatch-control".into())
        .spawn(move || accept_loop(listener, &stop2, &active2, handler, opts))?;
    Ok(ServerHandle {
        path: path.to_path_buf(),
        stop,
        active,
        thread: Some(thread),
    })
}

fn accept_loop(
    listener: UnixListener,
    stop: &AtomicBool,
    active: &Arc<AtomicUsize>,
    handler: Arc<Handler>,
    opts: ServerOptions,
) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(s) = conn else { continue };
        if active.fetch_add(1, Ordering::SeqCst) >= opts.max_clients {
            active.fetch_sub(1, Ordering::SeqCst);
            let busy = Response {
                busy: true,
                ..Response::failed(format!(
                    "busy: {} clients are being served; try again",
                    opts.max_clients
                ))
            };
            let quick = ServerOptions {
                write_stall: Duration::from_millis(100),
                write_deadline: Duration::from_millis(100),
                ..opts.clone()
            };
            // Take what the client already sent, so closing does not reset the connection
            // before it reads the answer (it retries on a reset all the same).
            let _ = s.set_nonblocking(true);
            let _ = (&s).read(&mut [0u8; 4096]);
            let _ = s.set_nonblocking(false);
            let _ = write_response(&s, &busy, &quick);
            continue;
        }
        let (h, o, a) = (handler.clone(), opts.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("hangwatch-client".into())
            .spawn(move || {
                let _ = serve_one(s, &*h, &o);
                a.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Client side: send one request, read one (streamed) response; retries while the agent is
/// busy, for up to `timeout` overall.
pub fn request(path: &Path, req: &Request) -> Result<Response> {
    request_with(path, req, Duration::from_secs(30))
}

pub fn request_with(path: &Path, req: &Request, timeout: Duration) -> Result<Response> {
    let end = Instant::now() + timeout;
    loop {
        let resp = match request_once(path, req, end) {
            // A busy agent may close before our request lands: that is "busy", not a failure.
            Err(e) if is_reset(&e) && Instant::now() + Duration::from_millis(200) < end => {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            r => r?,
        };
        if resp.busy && Instant::now() + Duration::from_millis(200) < end {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        if let Some(e) = &resp.error {
            bail!("agent refused the request: {e}");
        }
        return Ok(resp);
    }
}

fn is_reset(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| matches!(io.kind(), ConnectionReset | BrokenPipe | UnexpectedEof))
            || c.downcast_ref::<serde_json::Error>().is_some_and(|j| {
                j.is_eof()
                    || j.io_error_kind()
                        .is_some_and(|k| matches!(k, ConnectionReset | BrokenPipe | UnexpectedEof))
            })
    })
}

fn request_once(path: &Path, req: &Request, end: Instant) -> Result<Response> {
    let stream = UnixStream::connect(path).with_context(|| {
        format!(
            "connecting to {} (is `hangwatch run` running, and are you root or in its socket group?)",
            path.display()
        )
    })?;
    let left = end
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))?;
    // A busy agent answers and closes before reading: a failed write still has an answer.
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    let wrote = (&stream).write_all(&line);
    let r = BufReader::with_capacity(64 << 10, (&stream).take(MAX_RESPONSE));
    let mut de = serde_json::Deserializer::from_reader(r);
    match Response::deserialize(&mut de) {
        Ok(r) => Ok(r),
        Err(e) => match wrote {
            Err(w) => Err(w).context("sending the request to the agent"),
            Ok(()) => Err(e).context("reading the agent's response"),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hangwatch_core::testkit::disputed_incident;

    fn tmp(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hangwatch-control-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn jobs_between(since_ns: u64, until_ns: u64) -> Response {
        Response {
            jobs: disputed_incident()
                .jobs
                .into_iter()
                .filter(|j| j.submit_ns.is_some_and(|t| t >= since_ns && t < until_ns))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_with_fake_handler_and_stale_socket() {
        let dir = tmp("rt");
        let path = dir.join("control.sock");
        // A stale socket (its listener is gone) is replaced.
        drop(UnixListener::bind(&path).unwrap());
        let srv = spawn_server(&path, |req| match req {
            Request::Jobs { since_ns, until_ns } => jobs_between(since_ns, until_ns),
        })
        .unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let r = request(
            &path,
            &Request::Jobs {
                since_ns: 45_756_040_000_000,
                until_ns: u64::MAX,
            },
        )
        .unwrap();
        assert_eq!(r.jobs.len(), 2);
        assert!(r.jobs.iter().all(|j| j.comm == "Xwayland"));
        // A garbage request gets an error, not a hang or a crash.
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{\"op\":\"nope\"}\n").unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        assert!(line.contains("bad request"), "{line}");
        // A second agent on the same socket is refused.
        let e = spawn_server(&path, |_| Response::default()).err().unwrap();
        assert!(format!("{e:#}").contains("in use"), "{e:#}");
        drop(srv);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn never_deletes_what_is_not_a_stale_socket() {
        let dir = tmp("norm");
        let file = dir.join("file.sock");
        std::fs::write(&file, b"precious").unwrap();
        let e = spawn_server(&file, |_| Response::default()).err().unwrap();
        assert!(format!("{e:#}").contains("is not a socket"), "{e:#}");
        assert_eq!(std::fs::read(&file).unwrap(), b"precious");
        let link = dir.join("link.sock");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let e = spawn_server(&link, |_| Response::default()).err().unwrap();
        assert!(format!("{e:#}").contains("a symbolic link"), "{e:#}");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A handler answer of `n` jobs (~200 bytes each in JSON).
    fn big(n: usize) -> Response {
        let j = disputed_incident().jobs[0].clone();
        Response {
            jobs: vec![j; n],
            ..Default::default()
        }
    }

    #[test]
    fn a_client_that_never_reads_cannot_hold_the_agent() {
        let dir = tmp("noread");
        let path = dir.join("c.sock");
        let opts = ServerOptions {
            write_stall: Duration::from_millis(300),
            ..Default::default()
        };
        let srv = spawn_server_with(&path, opts, |_| big(20_000)).unwrap();
        let mut stuck = UnixStream::connect(&path).unwrap();
        stuck
            .write_all(b"{\"op\":\"jobs\",\"since_ns\":0,\"until_ns\":1}\n")
            .unwrap();
        // Another client is served meanwhile.
        let r = request(
            &path,
            &Request::Jobs {
                since_ns: 0,
                until_ns: 1,
            },
        )
        .unwrap();
        assert_eq!(r.jobs.len(), 20_000);
        // The stuck one is dropped at the write deadline, and shutdown does not wait for it.
        let t = Instant::now();
        while srv.active() > 0 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            srv.active(),
            0,
            "stuck client still held after {:?}",
            t.elapsed()
        );
        let t = Instant::now();
        drop(srv);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        drop(stuck);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn idle_clients_do_not_starve_export() {
        let dir = tmp("idle");
        let path = dir.join("c.sock");
        let srv = spawn_server(&path, |_| big(3)).unwrap();
        // Seven idle clients failed export before; forty now only cost them their slot.
        let idle: Vec<UnixStream> = (0..40)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let t = Instant::now();
        let r = request(
            &path,
            &Request::Jobs {
                since_ns: 0,
                until_ns: 1,
            },
        )
        .unwrap();
        assert_eq!(r.jobs.len(), 3);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        drop(idle);
        drop(srv);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_hostile_request_is_bounded() {
        let dir = tmp("huge");
        let path = dir.join("c.sock");
        let _srv = spawn_server(&path, |_| Response::default()).unwrap();
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
        // 1 MiB without a newline: cut at MAX_REQUEST and answered, not buffered forever.
        let _ = s.write_all(&vec![b'x'; 1 << 20]);
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        assert!(line.contains("bad request"), "{line}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
