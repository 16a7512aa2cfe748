//! `bugreport --redact`: remove what identifies people and machines from a report before it is
//! pasted into a public issue. The list (and what is deliberately kept) is in docs/security.md;
//! every rule here has a test with planted values.
use std::collections::BTreeSet;

use regex::Regex;

use crate::sources::hostfacts::{HostFacts, Roots};

/// Top-level directories under which the next component is a user name: not only /home —
/// clusters keep users under /scratch, /work, /nfs, macOS-style /Users, ...
const HOME_ROOTS: &[&str] = &[
    "home",
    "Users",
    "users",
    "scratch",
    "work",
    "nfs",
    "u",
    "export/home",
    "var/home",
    "data/home",
    "mnt/home",
    "gpfs",
    "lustre",
];

/// Replaces user names, home paths, host names, addresses, serials and UUIDs.
pub struct Redactor {
    /// Literal words replaced wherever they appear as a whole word: (word, replacement).
    /// Host names match in any case (`GPUBOX7` is `gpubox7`); user names exactly.
    words: Vec<(String, &'static str)>,
    short_domain: Regex,
    home: Regex,
    /// Home directories from /etc/passwd and $HOME outside the home-like roots
    /// (`/opt/carol`): replaced exactly, so `/opt/rocm-6.2.0` stays.
    exact_home: Option<Regex>,
    user_at_host: Regex,
    domain: Regex,
    uuid: Regex,
    mac: Regex,
    ipv6: Regex,
    ipv4: Regex,
}

fn re(s: &str) -> Regex {
    Regex::new(s).expect("static redaction pattern")
}

impl Redactor {
    /// Users from `roots`' /etc/passwd (uid 1000–65533) and $HOME; host names and serials
    /// from the captured host facts and the incident.
    pub fn new(roots: &Roots, host: Option<&HostFacts>, hostnames: &[&str]) -> Self {
        let mut users: BTreeSet<String> = BTreeSet::new();
        let mut homes: Vec<String> = Vec::new();
        let passwd = std::fs::read_to_string(roots.path("/etc/passwd")).unwrap_or_default();
        for l in passwd.lines() {
            let f: Vec<&str> = l.split(':').collect();
            let Some(uid) = f.get(2).and_then(|u| u.parse::<u32>().ok()) else {
                continue;
            };
            if (1000..65534).contains(&uid) {
                users.insert(f[0].to_string());
                homes.extend(f.get(5).map(|h| h.to_string()));
            }
        }
        homes.extend(roots.home.clone());
        let mut exact: Vec<String> = Vec::new();
        for h in homes {
            let h = h.trim_matches('/');
            let Some((parent, u)) = h.rsplit_once('/') else {
                continue;
            };
            if u.len() < 2 || u == "root" || u == "nonexistent" {
                continue;
            }
            users.insert(u.to_string());
            // Under a home-like root the general rule catches it; elsewhere only this
            // directory is a user's, not its siblings (`/opt/carol`, not `/opt/rocm`).
            if !HOME_ROOTS.contains(&parent) {
                exact.push(regex::escape(h));
            }
        }
        exact.sort_by_key(|h| std::cmp::Reverse(h.len()));
        exact.dedup();
        let mut words: Vec<(String, &'static str)> =
            users.into_iter().map(|u| (u, "<user>")).collect();
        let mut hosts: Vec<String> = hostnames.iter().map(|s| s.to_string()).collect();
        if let Some(h) = host {
            hosts.extend(h.hostname.value.clone());
            if let Some(g) = &h.gpu {
                for (k, v) in &g.ids {
                    if k.contains("serial") {
                        words.extend(v.value.clone().map(|s| (s, "<serial>")));
                    }
                }
            }
        }
        for h in hosts {
            let h = h.trim().to_string();
            // The kernel's "no name set" and the loopback name identify nobody.
            if h == "(none)" || h == "localhost" || h == "localhost.localdomain" {
                continue;
            }
            if let Some((short, _)) = h.split_once('.') {
                words.push((short.to_string(), "<host>"));
            }
            words.push((h, "<host>"));
        }
        words.retain(|(w, _)| w.len() >= 2);
        // Longest first, so `alice2` is not cut to `<user>2`.
        words.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        words.dedup();
        let mut all_roots: Vec<&str> = HOME_ROOTS.to_vec();
        all_roots.sort_by_key(|r| std::cmp::Reverse(r.len()));
        let alts: Vec<String> = all_roots.iter().map(|r| regex::escape(r)).collect();
        Redactor {
            words,
            home: re(&format!(
                r"(^|[^A-Za-z0-9_.-])/({})/([^/\s'`()\x22]+)",
                alts.join("|")
            )),
            exact_home: (!exact.is_empty()).then(|| {
                re(&format!(
                    r"(^|[^A-Za-z0-9_.-])/({})([/\s'`()\x22]|$)",
                    exact.join("|")
                ))
            }),
            user_at_host: re(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\b"),
            // Three or more labels, each starting with a letter: buildhost.corp.example, not
            // libgallium-25.0.7 or amdgpu.gpu_recovery.
            domain: re(r"\b[A-Za-z][A-Za-z0-9-]*(\.[A-Za-z][A-Za-z0-9-]*){2,}\b"),
            uuid: re(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"),
            // Two labels only with a suffix sites use for hosts (`nfs01.lab`): `amdgpu.mes` stays.
            short_domain: re(
                r"(?i)\b[a-z][a-z0-9-]*\.(lab|lan|local|localdomain|corp|internal|intra|intranet|home|domain|example|com|net|org|edu|gov|io)\b",
            ),
            // `52:54:00:12:34:56`, `52-54-00-12-34-56` and `5254.0012.3456`.
            mac: re(
                r"(?i)\b([0-9a-f]{2}(:[0-9a-f]{2}){5}|[0-9a-f]{2}(-[0-9a-f]{2}){5}|[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4})\b",
            ),
            ipv6: re(
                r"(?i)(^|[^0-9a-z:])(([0-9a-f]{1,4}:){7}[0-9a-f]{1,4}|([0-9a-f]{1,4}:){1,7}:([0-9a-f]{1,4}(:[0-9a-f]{1,4}){0,6})?|::([0-9a-f]{1,4}(:[0-9a-f]{1,4}){0,6}))($|[^0-9a-z:])",
            ),
            ipv4: re(r"\b((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)\b"),
        }
    }

    /// Every user name found under a home-like root in `text` (`/scratch/jdoe/...`), so the same
    /// name is also removed where it appears alone (argv, thread names, paths elsewhere).
    pub fn learn(&mut self, text: &str) {
        let mut found: BTreeSet<String> = BTreeSet::new();
        for c in self.home.captures_iter(text) {
            let name = &c[3];
            if name.len() >= 2 && name != "<user>" && !name.starts_with('<') {
                found.insert(name.to_string());
            }
        }
        for n in found {
            if !self.words.iter().any(|(w, _)| *w == n) {
                self.words.push((n, "<user>"));
            }
        }
        self.words
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    }

    pub fn apply(&self, s: &str) -> String {
        let s = match &self.exact_home {
            Some(r) => r.replace_all(s, |c: &regex::Captures| {
                let parent = c[2].rsplit_once('/').map_or("", |(p, _)| p);
                format!("{}/{parent}/<user>{}", &c[1], &c[3])
            }),
            None => std::borrow::Cow::Borrowed(s),
        };
        let s = self.home.replace_all(&s, "${1}/${2}/<user>");
        let s = self.user_at_host.replace_all(&s, "<user>@<host>");
        let s = self.uuid.replace_all(&s, "<uuid>");
        let s = self.mac.replace_all(&s, "<mac>");
        let s = self.ipv6.replace_all(&s, "${1}<ip>${9}");
        let s = self.ipv4.replace_all(&s, "<ip>");
        let s = self.domain.replace_all(&s, "<host>");
        let s = self.short_domain.replace_all(&s, "<host>");
        let mut out = s.into_owned();
        for (w, with) in &self.words {
            out = replace_word(&out, w, with, *with == "<host>");
        }
        out
    }
}

/// `word` replaced by `with` where it is a whole word; `any_case`: ASCII case ignored.
fn replace_word(s: &str, word: &str, with: &str, any_case: bool) -> String {
    let fold = |t: &str| {
        if any_case {
            t.to_ascii_lowercase()
        } else {
            t.to_string()
        }
    };
    // ASCII case folding keeps byte offsets, so positions in the folded copy hold in `s`.
    let (folded, word_f) = (fold(s), fold(word));
    let mut out = String::new();
    let mut rest = s;
    let mut rest_f = folded.as_str();
    while let Some(i) = rest_f.find(&word_f) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + word.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric() && c != '_');
        out.push_str(&rest[..i]);
        out.push_str(if boundary(before) && boundary(after) {
            with
        } else {
            &rest[i..i + word.len()]
        });
        rest = &rest[i + word.len()..];
        rest_f = &rest_f[i + word.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::hostfacts::tests::fake_host;

    #[test]
    fn every_rule_on_planted_values() {
        let root = fake_host("redact");
        let roots = Roots {
            root: root.clone(),
            home: Some("/home/bob".into()),
        };
        let facts = crate::sources::hostfacts::collect(&roots, Some("0000:c3:00.0"));
        let mut r = Redactor::new(&roots, Some(&facts), &["gpubox7.lab.example"]);
        let planted = "\
exe /scratch/jdoe/bin/game and /home/alice/.local/zed and /Users/carol/x and /work/dave/y
jdoe started it; alice and bob too; alicea and bobby are not users
Linux version 6.1.0-56-amd64 (builder@buildhost.corp.example) (gcc-12)
nfsroot=10.1.2.3:/srv/nfs ip=10.1.2.50::10.1.2.1:255.255.255.0:gpubox7:eth0:off
root=UUID=2f6a1c8e-1111-4222-8333-944455556666 boot 0b4f3c9e-6f1e-4d55-9a44-7f3ad1c2e001
mac 52:54:00:12:34:56 ipv6 fe80::5054:ff:fe12:3456 and 2001:db8:0:0:0:0:0:1
serial SN-7F3A9C21 host gpubox7.lab.example
keep: 0000:c3:00.0 gfx_0.0.0 45766.649480 libgallium-25.0.7-1ubuntu1.so amdgpu.gpu_recovery=1 seq=1041 0x0000000000000000 17:48:02";
        r.learn(planted);
        let out = r.apply(planted);
        for gone in [
            "jdoe",
            "alice ",
            "/alice",
            "carol",
            "dave",
            "bob ",
            "builder",
            "buildhost",
            "10.1.2.3",
            "10.1.2.50",
            "255.255.255.0",
            "gpubox7",
            "2f6a1c8e",
            "0b4f3c9e",
            "52:54:00",
            "fe80::",
            "2001:db8",
            "SN-7F3A9C21",
            "lab.example",
        ] {
            assert!(!out.contains(gone), "{gone:?} survived:\n{out}");
        }
        for kept in [
            "alicea",
            "bobby",
            "0000:c3:00.0",
            "gfx_0.0.0",
            "45766.649480",
            "libgallium-25.0.7-1ubuntu1.so",
            "amdgpu.gpu_recovery=1",
            "seq=1041",
            "0x0000000000000000",
            "17:48:02",
            "/scratch/<user>/bin/game",
            "<user>@<host>",
        ] {
            assert!(out.contains(kept), "{kept:?} lost:\n{out}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn case_two_labels_and_other_mac_spellings_are_redacted() {
        let root = fake_host("redact2");
        let roots = Roots {
            root: root.clone(),
            home: None,
        };
        let r = Redactor::new(&roots, None, &["gpubox7"]);
        let planted = "GPUBOX7 Gpubox7 mounted nfs01.lab:/srv and build01.corp; \
                       mac 52-54-00-12-34-56 and 5254.0012.3456";
        let out = r.apply(planted);
        for gone in [
            "GPUBOX7",
            "Gpubox7",
            "nfs01",
            "build01",
            "52-54-00",
            "5254.0012",
        ] {
            assert!(!out.contains(gone), "{gone:?} survived:\n{out}");
        }
        let keep = "amdgpu.mes=1 amdgpu.gpu_recovery=1 drm.debug=0x1e gfx_0.0.0 1002:7461 gpubox7x";
        assert_eq!(r.apply(keep), keep);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn homes_outside_the_home_roots_are_redacted_and_their_siblings_kept() {
        let root = fake_host("redact3");
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0::/root:/bin/bash\n\
             carol:x:1001:1001::/opt/carol:/bin/bash\n\
             dan:x:1002:1002::/srv/people/d.jones/:/bin/bash\n",
        )
        .unwrap();
        let roots = Roots {
            root: root.clone(),
            home: Some("/data2/erin".into()),
        };
        let mut r = Redactor::new(&roots, None, &[]);
        let planted = "exe /opt/carol/bin/game lib /opt/rocm-6.2.0/lib/libamdhip64.so \
                       /srv/people/d.jones/x.so /data2/erin /var/lib/dkms/amdgpu /opt/carolx/y";
        r.learn(planted);
        let out = r.apply(planted);
        for gone in ["carol/", "d.jones", "erin"] {
            assert!(!out.contains(gone), "{gone:?} survived:\n{out}");
        }
        for kept in [
            "/opt/<user>/bin/game",
            "/opt/rocm-6.2.0/lib/libamdhip64.so",
            "/srv/people/<user>/x.so",
            "/data2/<user>",
            "/var/lib/dkms/amdgpu",
            "/opt/carolx/y",
        ] {
            assert!(out.contains(kept), "{kept:?} lost:\n{out}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
