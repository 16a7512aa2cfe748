//! One way to say "this incident blames X", for the golden JSON, the corpus TOML and the VM
//! scenario TOML alike: [`IncidentExpect`] states what it knows (every field optional, an
//! absent field is not checked) and [`check`] compares it with an incident.
//!
//! Nobody is written `null` (JSON) or `"none"` / `"unknown"` (TOML has no null). A ring
//! ending in `*` is a prefix: the rest depends on the run (a KFD queue's doorbell).
use serde::{Deserialize, Serialize};

use crate::incident::{Incident, ProcessRef};

/// What one incident must say. Each field that is present is checked; see [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentExpect {
    /// `ring_timeout`, `page_fault`, … as the JSON spells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(
        default,
        deserialize_with = "stated",
        skip_serializing_if = "Option::is_none"
    )]
    pub ring: Option<Text>,
    #[serde(
        default,
        deserialize_with = "stated",
        skip_serializing_if = "Option::is_none"
    )]
    pub gpu: Option<Text>,
    #[serde(
        default,
        deserialize_with = "stated",
        skip_serializing_if = "Option::is_none"
    )]
    pub culprit: Option<Who>,
    /// The culprit's executable path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub culprit_exe: Option<String>,
    /// `certain` / `likely` / `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<String>,
    #[serde(
        default,
        deserialize_with = "stated",
        skip_serializing_if = "Option::is_none"
    )]
    pub kernel_blamed: Option<Who>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_blame_disputed: Option<bool>,
    /// Victims by comm: each must be listed, and the culprit must not be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victims: Option<Vec<String>>,
    /// Victims by pid: exactly these, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim_pids: Option<Vec<u32>>,
    /// Processes (another GPU's) that must be neither culprit nor victim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<String>,
    #[serde(
        default,
        deserialize_with = "stated",
        skip_serializing_if = "Option::is_none"
    )]
    pub reset: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Compute candidates by comm: exactly these, in any order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<String>>,
    /// Compute candidates by pid: exactly these, in order (`[]`: a section naming nobody).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_candidates: Option<Vec<u32>>,
    /// At least this many of the culprit's jobs in the incident's job list (the flight
    /// recorder's memory, e.g. across an agent restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub culprit_jobs: Option<usize>,
    /// Why the expectation is right, from reading the log or the thread. Not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// A present field, even when it is null: `null` is a statement ("nobody"), not an absence.
fn stated<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// An expected string field: null, exact, or a prefix (written `prefix*`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Option<String>", into = "Option<String>")]
pub enum Text {
    Null,
    Is(String),
    Prefix(String),
}

impl From<Option<String>> for Text {
    fn from(s: Option<String>) -> Self {
        match s {
            None => Text::Null,
            Some(s) if s == "none" => Text::Null,
            Some(s) => match s.strip_suffix('*') {
                Some(p) => Text::Prefix(p.to_string()),
                None => Text::Is(s),
            },
        }
    }
}

impl From<Text> for Option<String> {
    fn from(t: Text) -> Self {
        match t {
            Text::Null => None,
            Text::Is(s) => Some(s),
            Text::Prefix(p) => Some(format!("{p}*")),
        }
    }
}

impl Text {
    fn matches(&self, got: Option<&str>) -> bool {
        match (self, got) {
            (Text::Null, None) => true,
            (Text::Is(w), Some(g)) => w == g,
            (Text::Prefix(p), Some(g)) => g.starts_with(p.as_str()),
            _ => false,
        }
    }

    fn render(&self) -> String {
        Option::<String>::from(self.clone()).unwrap_or_else(|| "null".into())
    }
}

/// An expected process: nobody, or a comm with the pid when the expectation knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WhoRepr", into = "WhoRepr")]
pub enum Who {
    Nobody,
    Process { comm: String, pid: Option<u32> },
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum WhoRepr {
    Process {
        comm: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
    },
    Word(Option<String>),
}

impl TryFrom<WhoRepr> for Who {
    type Error = String;
    fn try_from(r: WhoRepr) -> Result<Self, String> {
        match r {
            WhoRepr::Process { comm, pid } => Ok(Who::Process { comm, pid }),
            WhoRepr::Word(None) => Ok(Who::Nobody),
            WhoRepr::Word(Some(w)) if w == "none" || w == "unknown" => Ok(Who::Nobody),
            WhoRepr::Word(Some(w)) => Err(format!(
                "process {w:?}: write {{ comm = \"{w}\" }} (a pid is optional), or \"none\" for nobody"
            )),
        }
    }
}

impl From<Who> for WhoRepr {
    fn from(w: Who) -> Self {
        match w {
            Who::Nobody => WhoRepr::Word(None),
            Who::Process { comm, pid } => WhoRepr::Process { comm, pid },
        }
    }
}

impl Who {
    fn matches(&self, got: Option<&ProcessRef>) -> bool {
        match (self, got) {
            (Who::Nobody, None) => true,
            (Who::Process { comm, pid }, Some(g)) => {
                *comm == g.comm && pid.is_none_or(|p| p == g.pid)
            }
            _ => false,
        }
    }

    fn render(&self) -> String {
        match self {
            Who::Nobody => "null".into(),
            Who::Process { comm, pid: Some(p) } => format!("{comm} (pid {p})"),
            Who::Process { comm, pid: None } => comm.clone(),
        }
    }

    /// The comm of a named process.
    pub fn comm(&self) -> Option<&str> {
        match self {
            Who::Nobody => None,
            Who::Process { comm, .. } => Some(comm),
        }
    }
}

fn who(p: Option<&ProcessRef>) -> String {
    p.map_or("null".into(), |p| format!("{} (pid {})", p.comm, p.pid))
}

fn or_null(s: Option<&str>) -> String {
    s.unwrap_or("null").to_string()
}

/// The JSON spelling of a unit enum value (kind, confidence).
fn spelled<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl IncidentExpect {
    /// The names of the fields this expectation states (`absent` when non-empty; not `why`).
    pub fn stated(&self) -> Vec<&'static str> {
        let v = serde_json::to_value(self).unwrap_or_default();
        let names = [
            "kind",
            "ring",
            "gpu",
            "culprit",
            "culprit_exe",
            "confidence",
            "kernel_blamed",
            "kernel_blame_disputed",
            "victims",
            "victim_pids",
            "absent",
            "reset",
            "started_at",
            "candidates",
            "compute_candidates",
        ];
        names.into_iter().filter(|n| v.get(n).is_some()).collect()
    }

    /// Whether `i` is the incident this expectation is about: its kind, ring and culprit.
    pub fn identifies(&self, i: &Incident) -> bool {
        self.kind.as_ref().is_none_or(|k| *k == spelled(&i.kind))
            && self
                .ring
                .as_ref()
                .is_none_or(|r| r.matches(i.ring.as_deref()))
            && self
                .culprit
                .as_ref()
                .is_none_or(|c| c.matches(i.culprit.as_ref()))
    }

    /// A short description for messages: kind, ring, culprit.
    pub fn describe(&self) -> String {
        format!(
            "{} on {} blaming {}",
            self.kind.as_deref().unwrap_or("any incident"),
            self.ring.as_ref().map_or("any ring".into(), Text::render),
            self.culprit.as_ref().map_or("anyone".into(), Who::render)
        )
    }
}

/// Every stated field of `want` that `got` contradicts: "field: expected X, got Y".
pub fn mismatches(want: &IncidentExpect, got: &Incident) -> Vec<String> {
    let mut out = Vec::new();
    let mut differ = |field: &str, ok: bool, w: String, g: String| {
        if !ok {
            out.push(format!("{field}: expected {w}, got {g}"));
        }
    };
    if let Some(k) = &want.kind {
        let g = spelled(&got.kind);
        differ("kind", *k == g, k.clone(), g);
    }
    for (field, w, g) in [
        ("ring", &want.ring, got.ring.as_deref()),
        ("gpu", &want.gpu, got.gpu.as_deref()),
        ("reset", &want.reset, got.reset.map(|r| r.name())),
    ] {
        if let Some(w) = w {
            differ(field, w.matches(g), w.render(), or_null(g));
        }
    }
    for (field, w, g) in [
        ("culprit", &want.culprit, got.culprit.as_ref()),
        (
            "kernel_blamed",
            &want.kernel_blamed,
            got.kernel_blamed.as_ref(),
        ),
    ] {
        if let Some(w) = w {
            differ(field, w.matches(g), w.render(), who(g));
        }
    }
    if let Some(exe) = &want.culprit_exe {
        let g = got.culprit.as_ref().and_then(|c| c.exe.as_deref());
        differ("culprit_exe", g == Some(exe), exe.clone(), or_null(g));
    }
    if let Some(n) = want.culprit_jobs {
        let pid = got.culprit.as_ref().map(|c| c.pid);
        let g = got.jobs.iter().filter(|j| Some(j.pid) == pid).count();
        differ(
            "culprit_jobs",
            g >= n,
            format!("at least {n}"),
            g.to_string(),
        );
    }
    if let Some(c) = &want.confidence {
        let g = spelled(&got.confidence);
        differ("confidence", *c == g, c.clone(), g);
    }
    if let Some(d) = want.kernel_blame_disputed {
        let g = got.kernel_blame_disputed;
        differ(
            "kernel_blame_disputed",
            d == g,
            d.to_string(),
            g.to_string(),
        );
    }
    if let Some(s) = &want.started_at {
        differ(
            "started_at",
            *s == got.started_at,
            s.clone(),
            got.started_at.clone(),
        );
    }
    out.extend(victim_mismatches(want, got));
    out.extend(compute_mismatches(want, got));
    out
}

fn victim_mismatches(want: &IncidentExpect, got: &Incident) -> Vec<String> {
    let mut out = Vec::new();
    let comms: Vec<&str> = got.victims.iter().map(|v| v.comm.as_str()).collect();
    if let Some(victims) = &want.victims {
        for v in victims.iter().filter(|v| !comms.contains(&v.as_str())) {
            out.push(format!("victims: expected {v} among them, got {comms:?}"));
        }
        if let Some(c) = want.culprit.as_ref().and_then(Who::comm) {
            if comms.contains(&c) {
                out.push(format!(
                    "victims: culprit {c} is also listed as a victim, got {comms:?}"
                ));
            }
        }
    }
    if let Some(pids) = &want.victim_pids {
        let g: Vec<u32> = got.victims.iter().map(|v| v.pid).collect();
        if *pids != g {
            out.push(format!("victim_pids: expected {pids:?}, got {g:?}"));
        }
    }
    let named: Vec<&str> = got
        .culprit
        .iter()
        .map(|c| c.comm.as_str())
        .chain(comms)
        .collect();
    for a in want.absent.iter().filter(|a| named.contains(&a.as_str())) {
        out.push(format!(
            "absent: expected no {a}, got it named in {named:?}"
        ));
    }
    out
}

fn compute_mismatches(want: &IncidentExpect, got: &Incident) -> Vec<String> {
    let mut out = Vec::new();
    let cands = got.compute.as_ref().map(|c| &c.candidates);
    if let Some(pids) = &want.compute_candidates {
        let g = cands.map_or("no compute section".into(), |c| {
            format!("{:?}", c.iter().map(|c| c.pid).collect::<Vec<_>>())
        });
        let w = format!("{pids:?}");
        if w != g {
            out.push(format!("compute_candidates: expected {w}, got {g}"));
        }
    }
    if let Some(comms) = &want.candidates {
        let Some(cands) = cands else {
            out.push(format!(
                "candidates: expected {comms:?}, got no compute section"
            ));
            return out;
        };
        let g: Vec<&str> = cands.iter().map(|c| c.comm.as_str()).collect();
        let all_listed = comms.iter().all(|c| g.contains(&c.as_str()));
        if !all_listed || g.len() != comms.len() {
            out.push(format!(
                "candidates: expected {comms:?} in any order, got {g:?}"
            ));
        }
    }
    out
}

/// `Ok` when `got` says everything `want` states; else every difference, one per line.
pub fn check(want: &IncidentExpect, got: &Incident) -> Result<(), String> {
    let m = mismatches(want, got);
    if m.is_empty() {
        Ok(())
    } else {
        Err(m.join("\n"))
    }
}

/// Every difference between the expected incidents, in start order, and `got`: the count
/// (listing what came), then each pair's fields, prefixed `incident n/N: `.
pub fn mismatches_all(want: &[IncidentExpect], got: &[Incident]) -> Vec<String> {
    let mut out = Vec::new();
    if got.len() != want.len() {
        let seen: Vec<String> = got
            .iter()
            .map(|i| {
                format!(
                    "{} {} at {}",
                    spelled(&i.kind),
                    or_null(i.ring.as_deref()),
                    i.started_at
                )
            })
            .collect();
        out.push(format!(
            "incident count: expected {}, got {} [{}]",
            want.len(),
            got.len(),
            seen.join("; ")
        ));
    }
    for (n, (w, g)) in want.iter().zip(got).enumerate() {
        for m in mismatches(w, g) {
            out.push(format!("incident {}/{}: {m}", n + 1, want.len()));
        }
    }
    out
}

/// [`mismatches_all`] as a result: `Ok` when there are none, else one per line.
pub fn check_all(want: &[IncidentExpect], got: &[Incident]) -> Result<(), String> {
    let m = mismatches_all(want, got);
    if m.is_empty() {
        Ok(())
    } else {
        Err(m.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::disputed_incident;

    fn parse(toml_text: &str) -> IncidentExpect {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn every_stated_field_that_differs_is_reported() {
        let want = parse(
            r#"
            kind = "page_fault"
            ring = "sdma*"
            gpu = "none"
            culprit = { comm = "zed", pid = 1 }
            culprit_exe = "/usr/bin/zed"
            confidence = "certain"
            kernel_blamed = "none"
            kernel_blame_disputed = false
            victims = ["gnome-shell"]
            victim_pids = [6518, 1]
            absent = ["Xwayland"]
            reset = "failed"
            started_at = "1.0"
            candidates = ["python"]
            compute_candidates = [4]
            "#,
        );
        let m = mismatches(&want, &disputed_incident());
        let fields: Vec<&str> = m.iter().map(|s| s.split(':').next().unwrap()).collect();
        assert_eq!(
            fields,
            [
                "kind",
                "ring",
                "gpu",
                "reset",
                "culprit",
                "kernel_blamed",
                "culprit_exe",
                "confidence",
                "kernel_blame_disputed",
                "started_at",
                "victims",
                "victim_pids",
                "absent",
                "compute_candidates",
                "candidates"
            ],
            "{m:#?}"
        );
        assert!(m.contains(&"culprit: expected zed (pid 1), got zed (pid 7021)".into()));
        assert!(m.contains(&"gpu: expected null, got 0000:c3:00.0".into()));
        assert_eq!(want.stated().len(), 15);
    }

    #[test]
    fn a_culprit_listed_as_a_victim_is_reported() {
        let mut inc = disputed_incident();
        inc.victims[0].comm = "zed".into();
        let want = parse(
            r#"
            culprit = { comm = "zed" }
            victims = ["zed"]
            "#,
        );
        assert_eq!(
            check(&want, &inc),
            Err(r#"victims: culprit zed is also listed as a victim, got ["zed"]"#.into())
        );
    }

    #[test]
    fn what_the_incident_says_passes() {
        let want: IncidentExpect = serde_json::from_str(
            r#"{"kind": "ring_timeout", "ring": "gfx_*", "gpu": "0000:c3:00.0",
                "culprit": {"comm": "zed"}, "culprit_exe": "/home/alice/.local/zed.app/libexec/zed-editor",
                "confidence": "likely", "kernel_blamed": {"pid": 6518, "comm": "Xwayland"},
                "kernel_blame_disputed": true, "victims": ["Xwayland"], "victim_pids": [6518],
                "absent": ["gnome-shell"], "reset": "succeeded", "started_at": "45756.100000"}"#,
        )
        .unwrap();
        assert_eq!(check(&want, &disputed_incident()), Ok(()));
        assert!(want.identifies(&disputed_incident()));
        assert_eq!(
            check(&IncidentExpect::default(), &disputed_incident()),
            Ok(())
        );
    }

    #[test]
    fn null_is_a_statement_and_absence_is_not() {
        let null: IncidentExpect = serde_json::from_str(r#"{"culprit": null}"#).unwrap();
        assert_eq!(null.culprit, Some(Who::Nobody));
        assert_eq!(
            check(&null, &disputed_incident()),
            Err("culprit: expected null, got zed (pid 7021)".into())
        );
        let absent: IncidentExpect = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.culprit, None);
        assert!(absent.stated().is_empty());
    }

    #[test]
    fn a_bare_comm_and_an_unknown_field_are_refused_with_the_fix() {
        let e = toml::from_str::<IncidentExpect>(r#"culprit = "zed""#).unwrap_err();
        assert!(e.to_string().contains(r#"write { comm = "zed" }"#), "{e}");
        assert!(toml::from_str::<IncidentExpect>(r#"culprt = "none""#).is_err());
    }

    #[test]
    fn the_count_and_each_incident_are_named() {
        let want = [
            parse(r#"kind = "page_fault""#),
            parse(r#"kind = "ring_timeout""#),
        ];
        let m = mismatches_all(&want, &[disputed_incident()]);
        assert_eq!(
            m,
            [
                "incident count: expected 2, got 1 [ring_timeout gfx_0.0.0 at 45756.100000]",
                "incident 1/2: kind: expected page_fault, got ring_timeout"
            ]
        );
    }
}
