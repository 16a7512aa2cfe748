//! The kernel uevent source: a netlink socket on the kobject-uevent group 1 (no privilege
//! needed), read by one thread; DRM wedged uevents go to the loop through a bounded channel
//! drained on the 100 ms tick (a full channel makes the thread wait: it loses nothing).
//! Without the socket the agent runs on, with one line in the run log.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use crate::sources::kfd::monotonic_ns;
use crate::sources::uevent::{self, MAX_DATAGRAM};
use crate::{info, warn};
use hangwatch_core::model::Event;

use super::state::State;

/// Wedged events waiting between two drains.
const CHANNEL: usize = 256;
/// The kernel-uevent multicast group.
const KERNEL_GROUP: u32 = 1;

/// What the reader saw; printed in the closing stats.
#[derive(Debug, Default)]
pub struct Counters {
    pub datagrams: AtomicU64,
    pub wedged: AtomicU64,
    /// Datagrams not sent by the kernel (another process on the group): ignored.
    pub forged: AtomicU64,
    /// ENOBUFS: the socket buffer overflowed and the kernel dropped uevents.
    pub overflows: AtomicU64,
}

pub struct UeventSource {
    rx: Option<Receiver<Event>>,
    pub counters: Arc<Counters>,
}

impl UeventSource {
    /// Opens the socket and starts the reader; on failure, one warning and no source.
    pub fn start() -> UeventSource {
        let counters = Arc::new(Counters::default());
        let rx = match open() {
            Ok(fd) => {
                let (tx, rx) = sync_channel(CHANNEL);
                let c = counters.clone();
                let spawned = std::thread::Builder::new()
                    .name("uevent".into())
                    .spawn(move || read_loop(fd, tx, &c));
                match spawned {
                    Ok(_) => {
                        info!("uevents: reading kernel uevents (DRM wedged events)");
                        Some(rx)
                    }
                    Err(e) => {
                        warn!("uevents: not read: cannot start the reader thread: {e}");
                        None
                    }
                }
            }
            Err(e) => {
                warn!("uevents: not read: cannot open the kernel uevent netlink socket: {e}; DRM wedged events (kernel 6.15+) will be missing from incidents");
                None
            }
        };
        UeventSource { rx, counters }
    }

    /// Feeds everything waiting to the state.
    pub fn drain(&mut self, st: &mut State) {
        let Some(rx) = &self.rx else { return };
        while let Ok(ev) = rx.try_recv() {
            st.source_event(ev);
        }
    }

    /// The closing stats line.
    pub fn stats_line(&self) -> String {
        let c = &self.counters;
        format!(
            "uevents: {} datagrams, {} wedged events, {} not from the kernel (ignored), {} socket overflows",
            c.datagrams.load(Relaxed),
            c.wedged.load(Relaxed),
            c.forged.load(Relaxed),
            c.overflows.load(Relaxed),
        )
    }
}

/// A NETLINK_KOBJECT_UEVENT socket bound to the kernel group.
fn open() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_KOBJECT_UEVENT,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = KERNEL_GROUP;
    // SAFETY: `addr` is a valid sockaddr_nl and the length passed is its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// Receives one datagram into `buf`: its length and whether the kernel (port id 0) sent it.
fn recv(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<(usize, bool)> {
    // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
    let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `buf` is valid for `buf.len()` bytes; `from`/`len` describe a valid sockaddr_nl.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC,
            std::ptr::addr_of_mut!(from).cast(),
            &mut len,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((n as usize, from.nl_pid == 0))
}

/// Reads until the loop is gone (the channel closes) or the socket fails for good.
fn read_loop(fd: OwnedFd, tx: SyncSender<Event>, c: &Counters) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, kernel) = match recv(&fd, &mut buf) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                c.overflows.fetch_add(1, Relaxed);
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn!("uevents: reading stopped: {e}");
                return;
            }
        };
        c.datagrams.fetch_add(1, Relaxed);
        if !kernel {
            c.forged.fetch_add(1, Relaxed);
            continue;
        }
        // MSG_TRUNC: `n` is the real length; a longer datagram is no kernel uevent.
        if n > buf.len() {
            continue;
        }
        let Some(ev) = uevent::parse(&buf[..n]).and_then(|u| uevent::to_event(u, monotonic_ns()))
        else {
            continue;
        };
        c.wedged.fetch_add(1, Relaxed);
        if tx.send(ev).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real socket opens and binds to the kernel group.
    #[test]
    fn kernel_uevent_socket_opens() {
        let fd = open().expect("NETLINK_KOBJECT_UEVENT group 1");
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `v`.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PROTOCOL,
                std::ptr::addr_of_mut!(v).cast(),
                &mut len,
            )
        };
        assert_eq!((rc, v), (0, libc::NETLINK_KOBJECT_UEVENT));
    }
}
