//! The signal event source. SIGINT and SIGTERM stop the agent cleanly (stats line, socket
//! removed); SIGHUP reloads the config when there is one (the service) and otherwise stops
//! cleanly too — an interactive run gets SIGHUP when its terminal goes away, and the default
//! action used to kill it without either.
use tokio::signal::unix::{signal, Signal, SignalKind};

pub enum Sig {
    Stop(&'static str),
    Hangup,
}

pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers (first thing at start: a signal during attach is then queued,
    /// not fatal).
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub async fn next(&mut self) -> Sig {
        tokio::select! {
            _ = self.int.recv() => Sig::Stop("SIGINT"),
            _ = self.term.recv() => Sig::Stop("SIGTERM"),
            _ = self.hup.recv() => Sig::Hangup,
        }
    }
}
