//! systemd's readiness protocol without libsystemd: one datagram (`READY=1`, `STATUS=…`,
//! `RELOADING=1`, `STOPPING=1`, `WATCHDOG=1`) to `$NOTIFY_SOCKET`, a path or, with a leading
//! `@`, an abstract socket. `Type=notify` makes `systemctl start` wait until probes are
//! attached, so "started" means "watching".
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
    /// Half of `$WATCHDOG_USEC`, when the unit sets `WatchdogSec=`.
    watchdog_every: Option<Duration>,
    last_watchdog: Option<Instant>,
}

fn parse_addr(s: &str) -> std::io::Result<SocketAddr> {
    if let Some(name) = s.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else {
        SocketAddr::from_pathname(s)
    }
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; None when not started by systemd with `Type=notify`.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var("NOTIFY_SOCKET").ok()?;
        let n = Notifier::connect(&path);
        if let Err(e) = &n {
            crate::warn!("NOTIFY_SOCKET={path:?} unusable ({e}); systemd will not see READY=1");
        }
        let mut n = n.ok()?;
        let pid_ok = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        n.watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|u| *u > 0 && pid_ok)
            .map(|u| Duration::from_micros(u / 2));
        Some(n)
    }

    pub fn connect(path: &str) -> std::io::Result<Notifier> {
        Ok(Notifier {
            sock: UnixDatagram::unbound()?,
            addr: parse_addr(path)?,
            watchdog_every: None,
            last_watchdog: None,
        })
    }

    /// Sends one state string (several `KEY=value` lines are allowed).
    pub fn send(&self, state: &str) {
        if let Err(e) = self.sock.send_to_addr(state.as_bytes(), &self.addr) {
            crate::warn!("sd_notify {state:?}: {e}");
        }
    }

    /// `WATCHDOG=1` when the unit has a watchdog and half its interval passed.
    pub fn watchdog(&mut self, now: Instant) {
        let Some(every) = self.watchdog_every else {
            return;
        };
        if self
            .last_watchdog
            .is_none_or(|t| now.duration_since(t) >= every)
        {
            self.send("WATCHDOG=1");
            self.last_watchdog = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_path_and_abstract_sockets() {
        let dir = std::env::temp_dir().join(format!("hw-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("notify");
        let srv = UnixDatagram::bind(&p).unwrap();
        Notifier::connect(p.to_str().unwrap())
            .unwrap()
            .send("READY=1\nSTATUS=watching");
        let mut buf = [0u8; 256];
        let n = srv.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=watching");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("hw-notify-test-{}", std::process::id());
        let srv =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        Notifier::connect(&format!("@{name}"))
            .unwrap()
            .send("STOPPING=1");
        let n = srv.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
