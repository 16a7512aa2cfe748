//! The running agent's local control socket: one JSON request line, one JSON response line.
//! `hangwatch export` uses it to fetch an arbitrary window of the flight recorder. The socket
//! is 0600 (root only): job history names every GPU process on the host.
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::incident::{Evidence, JobSnapshot};

pub const DEFAULT_SOCKET: &str = "/run/hangwatch/control.sock";
/// Requests are tiny; anything bigger is a confused or hostile client.
const MAX_REQUEST: u64 = 4096;

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
}

/// Stops the accept loop and removes the socket file on drop.
pub struct ServerHandle {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; if the socket file is already gone we cannot, so detach
        // the thread rather than block shutdown forever.
        if UnixStream::connect(&self.path).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_one(stream: UnixStream, handler: &dyn Fn(Request) -> Response) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line)?;
    let resp = match serde_json::from_str::<Request>(line.trim()) {
        Ok(req) => handler(req),
        Err(e) => Response {
            error: Some(format!("bad request: {e}")),
            ..Default::default()
        },
    };
    let mut w = &stream;
    serde_json::to_writer(&mut w, &resp)?;
    w.write_all(b"\n")?;
    Ok(())
}

/// Listen on `path` (0600, stale file replaced) and answer each connection with `handler`.
pub fn spawn_server(
    path: &Path,
    handler: impl Fn(Request) -> Response + Send + 'static,
) -> Result<ServerHandle> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "{} is in use: another hangwatch agent is running",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("hangwatch-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(s) = conn {
                    let _ = serve_one(s, &handler);
                }
            }
        })?;
    Ok(ServerHandle {
        path: path.to_path_buf(),
        stop,
        thread: Some(thread),
    })
}

/// Client side: send one request, read one response.
pub fn request(path: &Path, req: &Request) -> Result<Response> {
    let stream = UnixStream::connect(path).with_context(|| {
        format!(
            "connecting to {} (is `hangwatch run` running, and are you root?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = &stream;
    serde_json::to_writer(&mut w, req)?;
    w.write_all(b"\n")?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let resp: Response = serde_json::from_str(&line).context("parsing the agent's response")?;
    if let Some(e) = &resp.error {
        anyhow::bail!("agent refused the request: {e}");
    }
    Ok(resp)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::text::tests::disputed_incident;

    #[test]
    fn round_trip_with_fake_handler_and_stale_socket() {
        let dir = std::env::temp_dir().join(format!("hangwatch-control-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        std::fs::write(&path, b"stale").unwrap();
        let srv = spawn_server(&path, |req| match req {
            Request::Jobs { since_ns, until_ns } => Response {
                jobs: disputed_incident()
                    .jobs
                    .into_iter()
                    .filter(|j| j.submit_ns.is_some_and(|t| t >= since_ns && t < until_ns))
                    .collect(),
                ..Default::default()
            },
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
        drop(srv);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
