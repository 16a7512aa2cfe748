//! The control-socket event source: the socket thread (crate::sinks::control) hands each request
//! to the event loop, which owns the correlator, and waits for the answer.
use std::path::Path;
use std::time::Duration;

use crate::sinks::control::{spawn_server_with, Request, Response, ServerHandle, ServerOptions};
use crate::{info, warn};

use super::state::State;

/// A request with the channel for its answer.
pub type Call = (Request, std::sync::mpsc::SyncSender<Response>);

pub struct ControlSource {
    rx: tokio::sync::mpsc::Receiver<Call>,
    /// Removes the socket file on drop.
    _server: ServerHandle,
    open: bool,
}

impl ControlSource {
    /// Listens on `path`; a failure disables export only (monitoring goes on without it).
    pub fn start(path: &Path, group: Option<&str>) -> Option<ControlSource> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Call>(8);
        let handler = move |req: Request| {
            let (reply, answer) = std::sync::mpsc::sync_channel(1);
            let failed = |e: &str| Response {
                error: Some(e.to_string()),
                ..Default::default()
            };
            if tx.blocking_send((req, reply)).is_err() {
                return failed("the agent is shutting down");
            }
            answer
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| failed("the agent did not answer in 10 s"))
        };
        // `control.group`: the socket becomes 0660 and that group's members pass the peer
        // credential check (SO_PEERCRED) too.
        let gid = group.and_then(|g| match crate::config::group_id(g) {
            Ok(gid) => Some(gid),
            Err(e) => {
                warn!("control socket: {e:#}; it stays owner-only (0600)");
                None
            }
        });
        let opts = ServerOptions {
            group: gid,
            ..ServerOptions::default()
        };
        let server = match spawn_server_with(path, opts, handler) {
            Ok(h) => h,
            Err(e) => {
                warn!(
                    "control socket disabled: {e:#} (`hangwatch export` will not reach this agent)"
                );
                return None;
            }
        };
        info!("control socket: {}", path.display());
        Some(ControlSource {
            rx,
            _server: server,
            open: true,
        })
    }

    pub async fn recv(&mut self) -> Option<Call> {
        if !self.open {
            return std::future::pending().await;
        }
        let c = self.rx.recv().await;
        self.open = c.is_some();
        c
    }

    pub fn answer(call: Call, st: &State) {
        let (req, reply) = call;
        let resp = match req {
            Request::Jobs { since_ns, until_ns } => Response {
                jobs: st.corr.jobs_between(since_ns, until_ns),
                evidence: st.corr.evidence_between(since_ns, until_ns),
                ..Default::default()
            },
        };
        let _ = reply.send(resp);
    }
}
