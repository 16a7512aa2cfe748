//! Boots within one log stream: which boot each line belongs to, the clock its events are on,
//! and the `EventBody::Boot` facts (boot id, host name, wall-clock offset) the correlator needs
//! so that no incident spans boots. A new boot starts at an explicit marker (`-- Boot <id> --`,
//! a changed `_BOOT_ID`, a `Linux version` line) or when the printk clock goes back by more
//! than [`BACKWARDS_NS`]; a marker before anything happened in the current boot only adds facts.
use crate::model::{BootInfo, Clock, Event, EventBody, Source};

/// printk stamps of different CPUs can be a little out of order; a boot restarts the clock at 0.
pub const BACKWARDS_NS: u64 = 1_000_000_000;

/// Longest boot id / host name kept (both come from the log, so they are bounded).
const MAX_FACT: usize = 255;

struct Current {
    info: BootInfo,
    /// What the correlator was told last (None: nothing yet).
    sent: Option<BootInfo>,
    /// A recognised amdgpu line was pushed in this boot.
    has_events: bool,
    clock: Option<Clock>,
    last_mono: Option<u64>,
    /// Wall clock minus printk clock, ns: the smallest seen before the boot was announced
    /// (syslog stamps are receive times, never earlier than the event).
    offset: Option<i64>,
}

pub struct Boots {
    source: Source,
    next_seq: u32,
    cur: Option<Current>,
    last: (u64, Clock),
    /// Boots started in this stream.
    pub count: u32,
}

impl Boots {
    pub fn new(first_seq: u32, source: Source) -> Self {
        Boots {
            source,
            next_seq: first_seq,
            cur: None,
            last: (0, Clock::Monotonic),
            count: 0,
        }
    }

    /// Where this stream's events come from.
    pub fn source(&self) -> Source {
        self.source
    }

    /// The seq the next stream (file) should start at.
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    fn open(&mut self, boot_id: Option<&str>) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        self.count += 1;
        self.cur = Some(Current {
            info: BootInfo {
                seq,
                boot_id: boot_id.map(bounded),
                ..BootInfo::default()
            },
            sent: None,
            has_events: false,
            clock: None,
            last_mono: None,
            offset: None,
        });
    }

    fn cur(&mut self) -> &mut Current {
        if self.cur.is_none() {
            self.open(None);
        }
        self.cur.as_mut().expect("opened above")
    }

    /// An explicit boot start. Returns true when a new boot began (the caller flushes records
    /// of the old one first).
    pub fn marker(&mut self, boot_id: Option<&str>) -> bool {
        match &mut self.cur {
            Some(c) if !c.has_events => {
                // Nothing happened in the current boot: it becomes this one.
                if boot_id.is_some() {
                    c.info.boot_id = boot_id.map(bounded);
                }
                c.clock = None;
                c.last_mono = None;
                c.offset = None;
                false
            }
            Some(_) => {
                self.open(boot_id);
                true
            }
            None => {
                self.open(boot_id);
                false
            }
        }
    }

    /// The boot id of the next entry (journal `_BOOT_ID`): a different id is a new boot.
    pub fn boot_id(&mut self, id: &str) -> bool {
        match self.cur.as_ref().and_then(|c| c.info.boot_id.as_deref()) {
            Some(known) if known == id => false,
            Some(_) => self.marker(Some(id)),
            None => {
                self.cur().info.boot_id = Some(bounded(id));
                false
            }
        }
    }

    /// A host name from the log (journal `_HOSTNAME`, a syslog prefix). Ignored unless it can
    /// be one: no whitespace or control characters.
    pub fn hostname(&mut self, host: &str) {
        if !plausible_host(host) {
            return;
        }
        let c = self.cur();
        if c.info.hostname.is_none() {
            c.info.hostname = Some(bounded(host));
        }
    }

    /// The kernel release of the current boot: the first word after `Linux version `.
    /// Ignored unless it can be one (as a host name: no whitespace or control characters).
    pub fn kernel(&mut self, after_linux_version: &str) {
        let Some(release) = after_linux_version.split_whitespace().next() else {
            return;
        };
        if !plausible_host(release) {
            return;
        }
        let c = self.cur();
        if c.info.kernel.is_none() {
            c.info.kernel = Some(bounded(release));
        }
    }

    /// The stamp of a line → (t_ns, clock) of its events, and whether the printk clock went
    /// backwards into a new boot. A boot's clock is monotonic when its first stamped line
    /// carries the printk stamp, else wall clock; lines with only the other stamp are converted
    /// with the learnt offset, and lines with no usable stamp keep the previous line's.
    pub fn resolve(&mut self, mono: Option<u64>, real: Option<u64>) -> ((u64, Clock), bool) {
        let mut new_boot = false;
        if let Some(m) = mono {
            let back = self.cur.as_ref().is_some_and(|c| {
                c.has_events
                    && c.last_mono
                        .is_some_and(|l| m.saturating_add(BACKWARDS_NS) < l)
            });
            if back {
                self.open(None);
                new_boot = true;
            }
        }
        let c = self.cur();
        if let Some(m) = mono {
            c.last_mono = Some(m);
        }
        if let (Some(m), Some(r)) = (mono, real) {
            if let (Ok(m), Ok(r)) = (i64::try_from(m), i64::try_from(r)) {
                let cand = r - m;
                if c.sent
                    .as_ref()
                    .is_none_or(|s| s.realtime_offset_ns.is_none())
                {
                    c.offset = Some(c.offset.map_or(cand, |o| o.min(cand)));
                }
            }
        }
        if c.clock.is_none() {
            c.clock = match (mono, real) {
                (Some(_), _) => Some(Clock::Monotonic),
                (None, Some(_)) => Some(Clock::Realtime),
                (None, None) => None,
            };
        }
        let off = c.offset;
        let (t, clock) = match c.clock {
            Some(Clock::Monotonic) => (mono.or_else(|| shift(real?, -off?)), Clock::Monotonic),
            Some(Clock::Realtime) => (real.or_else(|| shift(mono?, off?)), Clock::Realtime),
            None => (None, Clock::Monotonic),
        };
        if let Some(t) = t {
            self.last = (t, clock);
        }
        (self.last, new_boot)
    }

    /// A recognised line is about to be pushed: announce the boot (or facts learnt since) first.
    pub fn announce(&mut self, sink: &mut dyn FnMut(Event)) {
        let (t_ns, clock) = self.last;
        let source = self.source;
        let c = self.cur();
        c.has_events = true;
        let mut info = c.info.clone();
        info.realtime_offset_ns = match c.clock {
            Some(Clock::Realtime) => Some(0),
            _ => c.offset,
        };
        let news = match &c.sent {
            None => true,
            Some(s) => {
                (s.boot_id.is_none() && info.boot_id.is_some())
                    || (s.hostname.is_none() && info.hostname.is_some())
                    || (s.kernel.is_none() && info.kernel.is_some())
                    || (s.realtime_offset_ns.is_none() && info.realtime_offset_ns.is_some())
            }
        };
        if news {
            c.sent = Some(info.clone());
            sink(Event {
                t_ns,
                clock,
                source,
                gpu: None,
                body: EventBody::Boot(info),
            });
        }
    }
}

/// Whether `host` can be a host name: non-empty, no whitespace or control characters.
pub fn plausible_host(host: &str) -> bool {
    !host.is_empty() && !host.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn shift(t: u64, by: i64) -> Option<u64> {
    u64::try_from(i64::try_from(t).ok()?.checked_add(by)?).ok()
}

/// A boot id or host name from the log, cut at [`MAX_FACT`] bytes on a char boundary.
fn bounded(s: &str) -> String {
    super::lines::bounded(s, MAX_FACT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boots_of(events: &[Event]) -> Vec<BootInfo> {
        events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Boot(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn clock_going_back_starts_a_boot() {
        let mut b = Boots::new(3, Source::Log);
        let mut out = Vec::new();
        let s = 1_000_000_000;
        assert_eq!(
            b.resolve(Some(100 * s), None),
            ((100 * s, Clock::Monotonic), false)
        );
        b.announce(&mut |e| out.push(e));
        // A little out of order: same boot.
        assert!(!b.resolve(Some(100 * s - 1000), None).1);
        assert!(b.resolve(Some(5 * s), None).1);
        b.announce(&mut |e| out.push(e));
        let seqs: Vec<u32> = boots_of(&out).iter().map(|i| i.seq).collect();
        assert_eq!(seqs, [3, 4]);
        assert_eq!(b.next_seq(), 5);
    }

    #[test]
    fn a_marker_before_any_event_only_adds_facts() {
        let mut b = Boots::new(0, Source::Log);
        let mut out = Vec::new();
        assert!(!b.marker(Some("aaaa")));
        assert!(!b.marker(None)); // "Linux version" right after the separator
        b.hostname("host");
        b.resolve(Some(1), Some(1_700_000_000_000_000_001));
        b.announce(&mut |e| out.push(e));
        assert!(b.boot_id("bbbb"));
        b.resolve(Some(1), None);
        b.announce(&mut |e| out.push(e));
        let got = boots_of(&out);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            BootInfo {
                seq: 0,
                boot_id: Some("aaaa".into()),
                hostname: Some("host".into()),
                kernel: None,
                realtime_offset_ns: Some(1_700_000_000_000_000_000)
            }
        );
        assert_eq!((got[1].seq, got[1].boot_id.as_deref()), (1, Some("bbbb")));
    }

    #[test]
    fn wall_clock_boots_convert_printk_stamps() {
        let mut b = Boots::new(0, Source::Log);
        let r = 1_700_000_000_000_000_000u64;
        assert_eq!(b.resolve(None, Some(r)).0, (r, Clock::Realtime));
        assert_eq!(
            b.resolve(Some(10), Some(r + 20)).0,
            (r + 20, Clock::Realtime)
        );
        // Only the printk stamp: converted with the learnt offset.
        assert_eq!(b.resolve(Some(30), None).0, (r + 40, Clock::Realtime));
        let mut out = Vec::new();
        b.announce(&mut |e| out.push(e));
        assert_eq!(boots_of(&out)[0].realtime_offset_ns, Some(0));
    }
}
