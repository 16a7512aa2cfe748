//! The closing stats lines: what was read, what became incidents, and every drop by cause.
use crate::decode::kind_name;
use crate::info;

use super::kfd_source::KfdSource;
use super::kmsg_source::KmsgSource;
use super::ring::RingSource;
use super::state::State;

pub fn print(
    st: &State,
    ring: Option<&RingSource>,
    kmsg: Option<&KmsgSource>,
    kfd: &KfdSource,
    attached: usize,
) {
    let kernel_drops = ring.map_or(0, |r| r.total_drops());
    let mut per_kind: Vec<String> = st
        .decoder
        .counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{}={n}", kind_name(k as u32)))
        .collect();
    if per_kind.is_empty() {
        per_kind.push("none".into());
    }
    let (lines, events, lost, skipped, user) = kmsg.map_or((0, 0, 0, 0, 0), |k| {
        (k.records, k.events, k.lost, k.skipped, k.from_userspace)
    });
    info!(
        "stats: probe events {} [{}] from {attached} probes; kmsg lines {lines} (amdgpu records {events}, {skipped} already handled before a restart); incidents {}; dropped: kernel ring buffer {kernel_drops}, userspace {} (kmsg overwritten {lost}, kmsg written by userspace {user}, short records {})",
        st.decoder.counts.iter().sum::<u64>(),
        per_kind.join(" "),
        st.out.count,
        st.user_drops + st.decoder.short,
        st.decoder.short,
    );
    let lc = &st.labeler.counts;
    info!(
        "device labels: kernel {}, join {}, fdinfo {}, only device {} ({} guessed); unlabelled {}",
        lc.kernel, lc.join, lc.fdinfo, lc.only_device, lc.guessed, lc.unlabelled
    );
    let cs = st.corr.stats();
    let mut rings: Vec<String> = cs
        .ring_jobs_seen
        .iter()
        .map(|(r, n)| {
            let ev = cs.ring_jobs_evicted.get(r).copied().unwrap_or(0);
            let refused = cs.ring_jobs_refused.get(r).copied().unwrap_or(0);
            format!("{r} {n} jobs ({ev} finished rotated out, {refused} refused)")
        })
        .collect();
    rings.sort();
    if rings.is_empty() {
        rings.push("no jobs seen".into());
    }
    info!(
        "flight recorder: {}; unmatched scheduler/fence joins {}; evicted from the bounded tables: process identities {}, PASID mappings {}; not kept: join-only records no incident took {}, per-process summaries {}, per-process submission counts {}",
        rings.join(", "),
        cs.unmatched_joins,
        cs.process_evictions,
        cs.pasid_evictions,
        cs.unattached,
        cs.summary_overflow,
        cs.submissions_untracked,
    );
    if let Some(c) = st.recorder.as_ref().map(|r| r.counts()) {
        info!(
            "kernel flight recorder: {} submissions recorded, {} not recorded (their slot held an unfinished job); entities {} live, {} freed, {} refused (map full)",
            c.submitted, c.unrecorded, c.entities, c.freed, c.refused
        );
    }
    let (live, evicted) = st.corr.queue_table();
    info!(
        "{}; compute queue table: {live} live, {evicted} evicted",
        kfd.stats_line()
    );
}
