//! The incident window as a Perfetto protobuf trace (ui.perfetto.dev opens it): one track per
//! ring with each job as a slice, one track per process with its submissions, instants for
//! faults/timeout/reset, and flow arrows submit → run. A hand-written encoder: the handful of
//! messages we emit do not justify generated code. Field numbers are perfetto's own (see
//! tests/proto/perfetto_subset.proto).
use std::collections::BTreeMap;

use crate::incident::{Evidence, Incident, JobSnapshot, JobState};

/// Minimal protobuf writer: varints and length-delimited fields.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }
    fn u64(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, 0);
        self.varint(v);
        self
    }
    fn fixed64(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }
    fn msg(&mut self, field: u32, m: &Msg) -> &mut Self {
        self.bytes(field, &m.0)
    }
}

// Field numbers from perfetto's protos.
const TRACE_PACKET: u32 = 1;
const PKT_TIMESTAMP: u32 = 8;
const PKT_SEQ_ID: u32 = 10;
const PKT_TRACK_EVENT: u32 = 11;
const PKT_TRACK_DESCRIPTOR: u32 = 60;
const TD_UUID: u32 = 1;
const TD_NAME: u32 = 2;
const TD_PROCESS: u32 = 3;
const PD_PID: u32 = 1;
const PD_NAME: u32 = 6;
const TE_TYPE: u32 = 9;
const TE_TRACK: u32 = 11;
const TE_NAME: u32 = 23;
const TE_FLOW: u32 = 47;
const TE_TERM_FLOW: u32 = 48;
const SLICE_BEGIN: u64 = 1;
const SLICE_END: u64 = 2;
const INSTANT: u64 = 3;

const SEQ_ID: u64 = 1;

struct Ev {
    ts: u64,
    order: u8,
    body: Msg,
}

fn event(track: u64, ty: u64, name: Option<&str>) -> Msg {
    let mut m = Msg::default();
    m.u64(TE_TYPE, ty).u64(TE_TRACK, track);
    if let Some(n) = name {
        m.str(TE_NAME, n);
    }
    m
}

/// Name of a job's slice, e.g. `Xwayland[6518] seq 42 (HUNG)`.
pub fn job_name(j: &JobSnapshot) -> String {
    let seq = j
        .seqno
        .or(j.hw_seqno)
        .map(|s| format!(" seq {s}"))
        .unwrap_or_default();
    let hung = if j.state == JobState::Hung {
        " (HUNG)"
    } else {
        ""
    };
    format!("{}[{}]{}{}", j.comm, j.pid, seq, hung)
}

/// Instant name for an evidence item that is a fault, a timeout or a reset; None otherwise.
fn instant_name(e: &Evidence) -> Option<String> {
    let w = e.what.to_ascii_lowercase();
    let label = if w.contains("fault") {
        "page fault"
    } else if w.contains("timeout") || w.contains("timed out") {
        "timeout"
    } else if w.contains("reset") {
        "reset"
    } else {
        return None;
    };
    Some(format!("{label}: {}", e.what))
}

/// Encode jobs and evidence (`end_ns` closes open-ended slices) as a Perfetto trace.
pub fn encode_window(
    jobs: &[JobSnapshot],
    evidence: &[Evidence],
    ring_hint: Option<&str>,
    end_ns: u64,
) -> Vec<u8> {
    let mut rings: BTreeMap<String, u64> = BTreeMap::new();
    let mut procs: BTreeMap<u32, (u64, String)> = BTreeMap::new();
    if let Some(r) = ring_hint {
        rings.insert(r.to_string(), 0);
    }
    for j in jobs {
        rings.entry(j.ring.clone()).or_insert(0);
        procs.entry(j.pid).or_insert((0, j.comm.clone()));
    }
    let mut next_uuid = 1000;
    let mut trace = Msg::default();
    let mut descriptor = |name: &str, proc_: Option<(u32, &str)>, trace: &mut Msg| {
        let mut td = Msg::default();
        td.u64(TD_UUID, next_uuid).str(TD_NAME, name);
        if let Some((pid, pname)) = proc_ {
            let mut pd = Msg::default();
            pd.u64(PD_PID, pid as u64).str(PD_NAME, pname);
            td.msg(TD_PROCESS, &pd);
        }
        let mut p = Msg::default();
        p.u64(PKT_SEQ_ID, SEQ_ID).msg(PKT_TRACK_DESCRIPTOR, &td);
        trace.msg(TRACE_PACKET, &p);
        next_uuid += 1;
        next_uuid - 1
    };
    for (name, uuid) in rings.iter_mut() {
        *uuid = descriptor(&format!("ring {name}"), None, &mut trace);
    }
    for (pid, (uuid, comm)) in procs.iter_mut() {
        *uuid = descriptor(
            &format!("{comm} [{pid}] submissions"),
            Some((*pid, comm)),
            &mut trace,
        );
    }
    let incident_track = descriptor("hangwatch incident", None, &mut trace);

    let mut evs: Vec<Ev> = Vec::new();
    for (i, j) in jobs.iter().enumerate() {
        let flow = i as u64 + 1;
        let ring_track = rings.get(&j.ring).copied().unwrap_or(incident_track);
        let proc_track = procs.get(&j.pid).map(|p| p.0).unwrap_or(incident_track);
        let name = job_name(j);
        if let Some(t) = j.submit_ns {
            let mut m = event(proc_track, INSTANT, Some(&format!("submit {name}")));
            if j.run_ns.is_some() {
                m.fixed64(TE_FLOW, flow);
            }
            evs.push(Ev {
                ts: t,
                order: 1,
                body: m,
            });
        }
        if let Some(run) = j.run_ns {
            let mut b = event(ring_track, SLICE_BEGIN, Some(&name));
            if j.submit_ns.is_some() {
                b.fixed64(TE_TERM_FLOW, flow);
            }
            evs.push(Ev {
                ts: run,
                order: 2,
                body: b,
            });
            let end = j.done_ns.unwrap_or(end_ns).max(run);
            evs.push(Ev {
                ts: end,
                order: 0,
                body: event(ring_track, SLICE_END, None),
            });
        }
    }
    for e in evidence {
        if let Some(name) = instant_name(e) {
            let track = ring_hint
                .and_then(|r| rings.get(r).copied())
                .unwrap_or(incident_track);
            evs.push(Ev {
                ts: e.t_ns,
                order: 1,
                body: event(track, INSTANT, Some(&name)),
            });
        }
    }
    // Ends before begins at equal timestamps so back-to-back jobs do not nest.
    evs.sort_by_key(|e| (e.ts, e.order));
    for e in evs {
        let mut p = Msg::default();
        p.u64(PKT_TIMESTAMP, e.ts)
            .u64(PKT_SEQ_ID, SEQ_ID)
            .msg(PKT_TRACK_EVENT, &e.body);
        trace.msg(TRACE_PACKET, &p);
    }
    trace.0
}

/// The trace of one incident.
pub fn encode(incident: &Incident) -> Vec<u8> {
    encode_window(
        &incident.jobs,
        &incident.evidence,
        incident.ring.as_deref(),
        incident.ended_ns,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testkit::{disputed_incident, protoc_decode};

    #[test]
    fn varint_encoding() {
        let mut m = Msg::default();
        m.varint(300);
        assert_eq!(m.0, vec![0xac, 0x02]);
    }

    #[test]
    fn protoc_decodes_tracks_slices_instants_and_flows() {
        let text = protoc_decode(&encode(&disputed_incident()));
        for name in [
            "ring gfx_0.0.0",
            "zed [7021] submissions",
            "Xwayland [6518] submissions",
            "hangwatch incident",
        ] {
            assert!(
                text.contains(&format!("name: \"{name}\"")),
                "track {name}:\n{text}"
            );
        }
        assert!(text.contains("process_name: \"zed\""), "{text}");
        assert_eq!(text.matches("TYPE_SLICE_BEGIN").count(), 2, "{text}");
        assert_eq!(text.matches("TYPE_SLICE_END").count(), 2, "{text}");
        assert!(text.contains("name: \"zed[7021] seq 40 (HUNG)\""), "{text}");
        assert!(text.contains("name: \"Xwayland[6518] seq 41\""), "{text}");
        // Three submissions + fault, timeout, reset instants.
        assert_eq!(text.matches("TYPE_INSTANT").count(), 6, "{text}");
        assert!(
            text.contains("name: \"page fault: VM page fault at 0x0"),
            "{text}"
        );
        assert!(
            text.contains("name: \"timeout: ring gfx_0.0.0 timeout"),
            "{text}"
        );
        assert!(
            text.contains("name: \"reset: GPU reset succeeded\""),
            "{text}"
        );
        // Flows: jobs 1 and 2 ran (ids 1, 2); the cancelled job never ran, so no flow.
        assert_eq!(text.matches(" flow_ids: 1\n").count(), 1, "{text}");
        assert_eq!(
            text.matches("terminating_flow_ids: 1\n").count(),
            1,
            "{text}"
        );
        assert_eq!(
            text.matches("terminating_flow_ids: 2\n").count(),
            1,
            "{text}"
        );
        assert!(!text.contains("flow_ids: 3\n"), "{text}");
        // The hung job ends at the incident end.
        assert!(
            text.contains(&format!("timestamp: {}", disputed_incident().ended_ns)),
            "{text}"
        );
    }
}
