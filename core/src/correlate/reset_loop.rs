//! Reset loops (rule L2 of docs/attribution.md). `Config::loop_resets` incidents with a reset
//! on one device within `Config::loop_window_ns` make one more incident of kind `reset_loop`. It counts the resets, groups them by kernel release and
//! names the processes they share. It closes when the window passes without another reset,
//! or at the end of the input or the boot. So `loop_resets` resets within the window open a
//! loop, and each further reset within the window of the last one extends it.
//! Pure: fed closed incidents, timed by `advance`.
use std::collections::VecDeque;
use std::fmt::Write as _;

use super::clock::render_time;
use crate::incident::{
    Confidence, Evidence, Incident, IncidentKind, LoopProcess, Omitted, ProcessRef, ResetGroup,
    ResetLoop, SCHEMA,
};
use crate::model::{Clock, Source};

/// Devices tracked at once (far more GPUs than one host has).
const MAX_DEVICES: usize = 64;
/// Reset incident ids and evidence items kept per loop (all resets are counted).
const MAX_LISTED: usize = 64;
/// Process names and kernel releases tracked per loop.
const MAX_NAMES: usize = 64;
const MAX_KERNELS: usize = 8;
/// Pids kept per process name.
const MAX_PIDS: usize = 8;
/// Shared process names shown in the reasoning.
const SHOWN: usize = 3;

/// When a loop starts and how long it lasts.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub resets: usize,
    pub window_ns: u64,
}

/// One process named by one reset.
#[derive(Clone, Debug)]
struct Named {
    who: ProcessRef,
    culprit: bool,
    blamed: bool,
    victim: bool,
}

/// One incident with a reset, as far as a loop needs it.
#[derive(Clone, Debug)]
struct Reset {
    t_ns: u64,
    clock: Clock,
    id: String,
    kernel: Option<String>,
    evidence: Evidence,
    named: Vec<Named>,
    outcome: Option<crate::incident::ResetOutcome>,
}

impl Reset {
    fn of(inc: &Incident, kernel: Option<&str>) -> Reset {
        let mut named: Vec<Named> = Vec::new();
        let mut name = |who: &ProcessRef, f: &dyn Fn(&mut Named)| {
            let i = match named.iter().position(|n| n.who.pid == who.pid) {
                Some(i) => i,
                None => {
                    named.push(Named {
                        who: who.clone(),
                        culprit: false,
                        blamed: false,
                        victim: false,
                    });
                    named.len() - 1
                }
            };
            f(&mut named[i]);
        };
        if let Some(c) = &inc.culprit {
            name(c, &|n| n.culprit = true);
        }
        if let Some(k) = &inc.kernel_blamed {
            name(k, &|n| n.blamed = true);
        }
        for v in &inc.victims {
            let who = ProcessRef {
                pid: v.pid,
                comm: v.comm.clone(),
                exe: None,
                identity: None,
            };
            name(&who, &|n| n.victim = true);
        }
        let culprit = inc.culprit.as_ref().map_or_else(
            || "culprit unknown".into(),
            |c| format!("culprit {}[{}]", c.comm, c.pid),
        );
        let what = format!(
            "{} on {}: {}, reset {}",
            inc.kind.name(),
            inc.ring.as_deref().unwrap_or("the device"),
            culprit,
            crate::incident::ResetOutcome::describe(inc.reset)
        );
        Reset {
            t_ns: inc.started_ns,
            clock: inc.clock,
            id: inc.id.clone(),
            kernel: kernel.map(str::to_string),
            evidence: Evidence {
                at: inc.started_at.clone(),
                t_ns: inc.started_ns,
                source: inc.evidence.first().map_or(Source::Log, |e| e.source),
                what,
                lines: Vec::new(),
            },
            named,
            outcome: inc.reset,
        }
    }
}

/// A loop under way on one device.
#[derive(Debug)]
pub struct Loop {
    first_ns: u64,
    clock: Clock,
    last_ns: u64,
    resets: u32,
    ids: Vec<String>,
    evidence: Vec<Evidence>,
    omitted: u64,
    groups: Vec<ResetGroup>,
    procs: Vec<LoopProcess>,
    names_omitted: u64,
    /// The latest culprit, and whether every reset so far named one of that name.
    culprit: Option<ProcessRef>,
    same_culprit: bool,
    outcome: Option<crate::incident::ResetOutcome>,
}

impl Loop {
    fn new(first_ns: u64, clock: Clock) -> Loop {
        Loop {
            first_ns,
            clock,
            last_ns: first_ns,
            resets: 0,
            ids: Vec::new(),
            evidence: Vec::new(),
            omitted: 0,
            groups: Vec::new(),
            procs: Vec::new(),
            names_omitted: 0,
            culprit: None,
            same_culprit: true,
            outcome: None,
        }
    }

    fn add(&mut self, r: Reset) {
        self.resets = self.resets.saturating_add(1);
        self.last_ns = self.last_ns.max(r.t_ns);
        self.outcome = r.outcome;
        if self.ids.len() < MAX_LISTED {
            self.ids.push(r.id);
            self.evidence.push(r.evidence);
        } else {
            self.omitted += 1;
        }
        self.group(r.kernel);
        let culprit = r.named.iter().find(|n| n.culprit).map(|n| n.who.clone());
        self.same_culprit &= match (&self.culprit, &culprit) {
            (_, None) => false,
            (None, Some(_)) => self.resets == 1,
            (Some(a), Some(b)) => a.comm == b.comm,
        };
        if culprit.is_some() {
            self.culprit = culprit;
        }
        for n in r.named {
            self.name(n);
        }
    }

    fn group(&mut self, kernel: Option<String>) {
        if let Some(g) = self.groups.iter_mut().find(|g| g.kernel == kernel) {
            g.resets += 1;
        } else if self.groups.len() < MAX_KERNELS {
            self.groups.push(ResetGroup { kernel, resets: 1 });
        }
    }

    fn name(&mut self, n: Named) {
        let i = match self.procs.iter().position(|p| p.comm == n.who.comm) {
            Some(i) => i,
            None if self.procs.len() < MAX_NAMES => {
                self.procs.push(LoopProcess {
                    comm: n.who.comm.clone(),
                    pids: Vec::new(),
                    resets: 0,
                    culprit: 0,
                    kernel_blamed: 0,
                    victim: 0,
                });
                self.procs.len() - 1
            }
            None => {
                self.names_omitted += 1;
                return;
            }
        };
        let p = &mut self.procs[i];
        if !p.pids.contains(&n.who.pid) && p.pids.len() < MAX_PIDS {
            p.pids.push(n.who.pid);
        }
        p.resets += 1;
        p.culprit += u32::from(n.culprit);
        p.kernel_blamed += u32::from(n.blamed);
        p.victim += u32::from(n.victim);
    }

    /// The processes named in two resets or more, most often named first.
    fn shared(&self) -> Vec<LoopProcess> {
        let mut v: Vec<LoopProcess> = self
            .procs
            .iter()
            .filter(|p| p.resets >= 2)
            .cloned()
            .collect();
        v.sort_by(|a, b| b.resets.cmp(&a.resets).then(b.culprit.cmp(&a.culprit)));
        v
    }
}

/// One device's recent resets and its loop.
#[derive(Debug)]
struct Device {
    gpu: Option<String>,
    /// Resets not in a loop yet, each within the window of the next (fewer than the rule's).
    recent: VecDeque<Reset>,
    open: Option<Loop>,
}

impl Device {
    fn last_ns(&self) -> u64 {
        let recent = self.recent.back().map_or(0, |r| r.t_ns);
        self.open.as_ref().map_or(recent, |l| l.last_ns.max(recent))
    }
}

/// Every device's loop state.
#[derive(Debug, Default)]
pub struct Loops {
    devices: Vec<Device>,
    /// Resets not tracked because MAX_DEVICES devices had loops under way.
    pub refused: u64,
}

impl Loops {
    /// Takes a closed incident; a loop it ended by coming too late, if any.
    pub fn observe(
        &mut self,
        inc: &Incident,
        kernel: Option<&str>,
        rule: Rule,
    ) -> Option<(Option<String>, Loop)> {
        if inc.reset.is_none() || inc.kind == IncidentKind::ResetLoop || rule.resets < 2 {
            return None;
        }
        let i = self.device(&inc.gpu)?;
        let d = &mut self.devices[i];
        let r = Reset::of(inc, kernel);
        let t = r.t_ns;
        let mut ended = None;
        if let Some(l) = &mut d.open {
            if t.saturating_sub(l.last_ns) <= rule.window_ns {
                l.add(r);
                return None;
            }
            ended = d.open.take().map(|l| (d.gpu.clone(), l));
        }
        d.recent
            .retain(|x| t.saturating_sub(x.t_ns) <= rule.window_ns);
        d.recent.push_back(r);
        if d.recent.len() >= rule.resets {
            let (first, clock) = d
                .recent
                .front()
                .map_or((t, inc.clock), |x| (x.t_ns, x.clock));
            let mut l = Loop::new(first, clock);
            for x in d.recent.drain(..) {
                l.add(x);
            }
            d.open = Some(l);
        }
        ended
    }

    /// The device's slot: an existing one, a new one, or the quietest without a loop.
    fn device(&mut self, gpu: &Option<String>) -> Option<usize> {
        if let Some(i) = self.devices.iter().position(|d| &d.gpu == gpu) {
            return Some(i);
        }
        let fresh = Device {
            gpu: gpu.clone(),
            recent: VecDeque::new(),
            open: None,
        };
        if self.devices.len() < MAX_DEVICES {
            self.devices.push(fresh);
            return Some(self.devices.len() - 1);
        }
        let quiet = self
            .devices
            .iter()
            .enumerate()
            .filter(|(_, d)| d.open.is_none())
            .min_by_key(|(_, d)| d.last_ns())
            .map(|(i, _)| i);
        match quiet {
            Some(i) => {
                self.devices[i] = fresh;
                Some(i)
            }
            None => {
                self.refused += 1;
                None
            }
        }
    }

    /// Loops whose window passed without another reset at `now_ns` (`None`: all of them,
    /// at the end of the input or the boot). Forgets the resets that made no loop then too.
    pub fn expire(&mut self, now_ns: Option<u64>, rule: Rule) -> Vec<(Option<String>, Loop)> {
        let over = |last: u64| now_ns.is_none_or(|n| n.saturating_sub(last) > rule.window_ns);
        let mut out = Vec::new();
        for d in &mut self.devices {
            if d.open.as_ref().is_some_and(|l| over(l.last_ns)) {
                if let Some(l) = d.open.take() {
                    out.push((d.gpu.clone(), l));
                }
            }
            if now_ns.is_none() {
                d.recent.clear();
            }
        }
        out
    }

    /// Per device: the resets counted by its loop under way (for a gauge).
    pub fn under_way(&self) -> Vec<(Option<String>, u32)> {
        self.devices
            .iter()
            .filter_map(|d| Some((d.gpu.clone(), d.open.as_ref()?.resets)))
            .collect()
    }
}

impl Loop {
    /// The loop's incident (boot facts and wall time are added by the correlator).
    pub fn incident(self, gpu: Option<String>, rule: Rule) -> Incident {
        let l = self;
        let clock = l.clock;
        let shared = l.shared();
        let (culprit, confidence) = match (&l.culprit, l.same_culprit) {
            (Some(c), true) => (Some(c.clone()), Confidence::Likely),
            _ => (None, Confidence::Unknown),
        };
        let reasoning = reasoning(&l, &shared, gpu.as_deref(), rule, culprit.is_some());
        Incident {
            schema: SCHEMA.to_string(),
            id: format!("{}-loop-{}", gpu.as_deref().unwrap_or("gpu"), l.first_ns),
            gpu,
            kind: IncidentKind::ResetLoop,
            ring: None,
            culprit,
            confidence,
            kernel_blamed: None,
            kernel_blame_disputed: false,
            victims: Vec::new(),
            evidence: l.evidence,
            started_at: render_time(clock, l.first_ns),
            started_ns: l.first_ns,
            ended_ns: l.last_ns,
            clock,
            reasoning,
            reset: l.outcome,
            jobs: Vec::new(),
            dropped_events: 0,
            wall_time: None,
            boot_id: None,
            hostname: None,
            provisional: false,
            omitted: Omitted {
                evidence: l.omitted,
                ..Omitted::default()
            },
            compute: None,
            needs_recovery: None,
            reset_cause: None,
            consequence_of: None,
            reset_loop: Some(ResetLoop {
                resets: l.resets,
                incidents: l.ids,
                groups: l.groups,
                processes: shared,
            }),
        }
    }
}

/// Rule L1's paragraph: how many resets, in what time, and who they share.
fn reasoning(
    l: &Loop,
    shared: &[LoopProcess],
    gpu: Option<&str>,
    rule: Rule,
    named: bool,
) -> String {
    let mut s = format!(
        "{} resets of GPU {} in {} s, each within {} s of the one before (rule L1).",
        l.resets,
        gpu.unwrap_or("?"),
        l.last_ns.saturating_sub(l.first_ns) / 1_000_000_000,
        rule.window_ns / 1_000_000_000
    );
    if named {
        s.push_str(" Every reset named a culprit of the same name.");
    }
    if shared.is_empty() {
        s.push_str(" No process was named in two of them.");
        return s;
    }
    s.push_str(" Shared:");
    for (i, p) in shared.iter().take(SHOWN).enumerate() {
        let sep = if i == 0 { " " } else { "; " };
        let _ = write!(
            s,
            "{sep}{} in {} (culprit {}, kernel-blamed {}, victim {})",
            p.comm, p.resets, p.culprit, p.kernel_blamed, p.victim
        );
    }
    if shared.len() > SHOWN {
        let _ = write!(s, "; {} more", shared.len() - SHOWN);
    }
    s.push('.');
    if l.names_omitted > 0 {
        let _ = write!(s, " {} names not tracked.", l.names_omitted);
    }
    s
}

#[cfg(test)]
mod tests {
    use crate::correlate::{Config, Correlator};
    use crate::incident::{Confidence, Incident, IncidentKind, LoopProcess};
    use crate::model::*;

    const S: u64 = 1_000_000_000;
    const GPU: &str = "0000:03:00.0";

    fn kmsg(gpu: &str, t: u64, kind: KmsgKind) -> Event {
        let rec = KmsgRecord {
            kind,
            lines: vec!["line".into()],
        };
        crate::correlate::testev::on(gpu, t, Source::Kmsg, EventBody::Kmsg(rec))
    }
    /// A ring timeout blaming `pid`/`comm`, a full reset and its success, on `gpu` at `t`.
    fn hang(gpu: &str, t: u64, pid: u32, comm: &str) -> Vec<Event> {
        let timeout = KmsgKind::RingTimeout {
            ring: "gfx_0.0.0".into(),
            signaled: Some(1),
            emitted: Some(2),
            task: Some(Task::new(pid, pid, comm)),
        };
        let ok = KmsgKind::ResetResult {
            ok: true,
            counter: None,
            error: None,
        };
        vec![
            kmsg(gpu, t, timeout),
            kmsg(gpu, t + S / 10, KmsgKind::ResetBegin { source: None }),
            kmsg(gpu, t + S / 2, ok),
        ]
    }
    fn boot(kernel: Option<&str>) -> Event {
        let info = BootInfo {
            kernel: kernel.map(str::to_string),
            ..BootInfo::default()
        };
        crate::correlate::testev::on(GPU, 0, Source::Log, EventBody::Boot(info))
    }
    fn run(cfg: Config, events: Vec<Event>) -> Vec<Incident> {
        let mut c = Correlator::new(cfg);
        let mut out: Vec<Incident> = events.into_iter().flat_map(|e| c.push(e)).collect();
        out.extend(c.finish());
        out
    }
    fn loops(out: &[Incident]) -> Vec<&Incident> {
        out.iter()
            .filter(|i| i.kind == IncidentKind::ResetLoop)
            .collect()
    }
    /// Five relaunches of a game each hang gfx, 20 s apart; gnome-shell is blamed by the
    /// kernel once (a victim of the third).
    fn five_relaunches() -> Vec<Event> {
        let mut v = vec![boot(Some("6.1.0-57-amd64"))];
        for i in 0..5u32 {
            v.extend(hang(
                GPU,
                u64::from(10 + 20 * i) * S,
                100 + i,
                "Cyberpunk2077",
            ));
        }
        v
    }

    #[test]
    fn five_resets_in_a_window_are_one_loop_that_counts_and_names_them() {
        let out = run(Config::default(), five_relaunches());
        assert_eq!(out.len(), 6, "{out:#?}");
        let l = loops(&out);
        assert_eq!(l.len(), 1);
        let l = l[0];
        assert_eq!(out.last().map(|i| i.kind), Some(IncidentKind::ResetLoop));
        let rl = l.reset_loop.as_ref().expect("loop summary");
        assert_eq!(rl.resets, 5);
        assert_eq!(rl.incidents.len(), 5);
        assert_eq!(rl.incidents[0], out[0].id);
        assert_eq!(rl.groups.len(), 1);
        assert_eq!(rl.groups[0].kernel.as_deref(), Some("6.1.0-57-amd64"));
        assert_eq!(rl.groups[0].resets, 5);
        let p: &LoopProcess = &rl.processes[0];
        assert_eq!(p.comm, "Cyberpunk2077");
        assert_eq!(p.pids, [100, 101, 102, 103, 104]);
        assert_eq!((p.resets, p.culprit, p.kernel_blamed), (5, 5, 5));
        // Every reset named a Cyberpunk2077: it is the loop's culprit (the latest one).
        assert_eq!(l.culprit.as_ref().map(|c| c.pid), Some(104));
        assert_eq!(l.confidence, Confidence::Likely);
        assert_eq!((l.started_ns, l.ended_ns), (10 * S, 90 * S));
        assert_eq!(l.id, format!("{GPU}-loop-{}", 10 * S));
        assert_eq!(l.evidence.len(), 5);
        assert!(
            l.reasoning.contains("5 resets of GPU 0000:03:00.0"),
            "{}",
            l.reasoning
        );
        assert!(l.reasoning.contains("(rule L1)"), "{}", l.reasoning);
    }

    #[test]
    fn fewer_resets_or_wider_gaps_make_no_loop() {
        let two: Vec<Event> = five_relaunches().into_iter().take(7).collect();
        assert!(loops(&run(Config::default(), two)).is_empty());
        let slow = Config {
            loop_window_ns: 15 * S,
            ..Config::default()
        };
        assert!(loops(&run(slow, five_relaunches())).is_empty());
        let off = Config {
            loop_resets: 1,
            ..Config::default()
        };
        assert!(loops(&run(off, five_relaunches())).is_empty());
    }

    #[test]
    fn the_loop_closes_when_its_window_passes_and_a_later_one_is_new() {
        // Three of the relaunches (20 s apart) fit in 45 s.
        let cfg = Config {
            loop_window_ns: 45 * S,
            ..Config::default()
        };
        let mut v = five_relaunches();
        // A quiet 100 s, then three more: a second loop.
        for i in 0..3u32 {
            v.extend(hang(GPU, u64::from(200 + 10 * i) * S, 200 + i, "glxgears"));
        }
        let mut c = Correlator::new(cfg);
        let mut live = Vec::new();
        for e in v {
            live.extend(c.push(e));
        }
        // The first loop closed once its window passed, before the end of the input; the
        // second is under way once its third reset's incident has settled.
        live.extend(c.advance(260 * S));
        assert_eq!(loops(&live).len(), 1, "{live:#?}");
        assert_eq!(c.reset_loops_under_way(), [(Some(GPU.to_string()), 3)]);
        live.extend(c.finish());
        let l = loops(&live);
        assert_eq!(l.len(), 2);
        let resets: Vec<u32> = l
            .iter()
            .filter_map(|i| Some(i.reset_loop.as_ref()?.resets))
            .collect();
        assert_eq!(resets, [5, 3]);
        assert!(c.reset_loops_under_way().is_empty());
    }

    #[test]
    fn devices_loop_on_their_own_and_mixed_culprits_name_none() {
        let other = "0000:c3:00.0";
        let mut v = vec![boot(None)];
        let names = ["a", "b", "shared", "c"];
        for (i, comm) in names.iter().enumerate() {
            let t = (10 + 20 * i as u64) * S;
            v.extend(hang(GPU, t, 10 + i as u32, comm));
            // The other device resets only twice.
            if i < 2 {
                v.extend(hang(other, t + 5 * S, 50, "shared"));
            }
        }
        let out = run(Config::default(), v);
        let l = loops(&out);
        assert_eq!(l.len(), 1, "{out:#?}");
        assert_eq!(l[0].gpu.as_deref(), Some(GPU));
        assert_eq!(l[0].culprit, None);
        assert_eq!(l[0].confidence, Confidence::Unknown);
        let rl = l[0].reset_loop.as_ref().expect("summary");
        assert_eq!(rl.resets, 4);
        assert_eq!(rl.groups[0].kernel, None);
        // Each name was named by one reset of this device only: none is shared.
        assert!(rl.processes.is_empty(), "{:?}", rl.processes);
        assert!(
            l[0].reasoning.contains("No process was named in two"),
            "{}",
            l[0].reasoning
        );
    }

    #[test]
    fn a_new_boot_closes_the_loop() {
        let mut v = five_relaunches();
        let mut next = boot(Some("6.12.0"));
        if let EventBody::Boot(b) = &mut next.body {
            b.seq = 1;
        }
        next.t_ns = 100 * S;
        v.push(next);
        v.extend(hang(GPU, 110 * S, 7, "x"));
        let mut c = Correlator::new(Config::default());
        let mut got = Vec::new();
        for e in v {
            got.extend(c.push(e));
        }
        assert_eq!(loops(&got).len(), 1, "the boot closed the loop");
        got.extend(c.finish());
        assert_eq!(loops(&got).len(), 1, "one reset in the new boot is no loop");
    }
}
