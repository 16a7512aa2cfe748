//! The fleet files in packaging/ (Prometheus rules, Grafana dashboard, node-problem-detector
//! configuration) checked against what the agent really exports and logs, with the real tools:
//! `promtool check rules` and `promtool test rules`, the agent's own metrics exposition, and
//! the journal MESSAGE lines `journald::incident_fields` builds. With a node-problem-detector
//! binary (`HANGWATCH_NPD=…`), the ignored test runs it against a real journald.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;

const BIN: &str = env!("CARGO_BIN_EXE_hangwatch");

/// Metrics the rules and the dashboard use before the agent exports them, with their labels.
/// When the agent exports one, `pending_metrics_are_not_exported_yet` fails: move it out of
/// here, and its real labels are checked from then on.
const PENDING: &[(&str, &[&str])] = &[];

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: &[&str] = &["instance", "job"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hw-fleet-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sh(cmd: &mut Command) -> (bool, String) {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

/// The example incident (docs/examples), with `edit` applied to its JSON first.
fn example_incident(edit: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&read(
        "docs/examples/zed-fault-wedges-gfx/incident/incident.json",
    ))
    .unwrap();
    edit(&mut v);
    v
}

/// Metric name → label names, from the agent's exposition with every family populated.
fn exported() -> BTreeMap<String, BTreeSet<String>> {
    let mut m = hangwatch::sinks::metrics::Metrics::new(50);
    // Three resets of one GPU, their reset loop under way and then closed; the device then
    // needs a rebind.
    for reset in ["succeeded", "failed", "succeeded"] {
        let v = example_incident(|v| {
            v["reset"] = reset.into();
            v["needs_recovery"] = "rebind".into();
        });
        m.record_incident(&serde_json::from_value(v).unwrap());
    }
    // A culprit in a Slurm job inside a pod's container: a workload row.
    let mut inc: hangwatch_core::incident::Incident =
        serde_json::from_value(example_incident(|_| {})).unwrap();
    if let Some(c) = inc.culprit.as_mut() {
        c.identity = Some(hangwatch_core::testkit::hostile_identity("alice"));
    }
    m.record_incident(&inc);
    m.reset_loop_resets.insert("0000:c3:00.0".into(), 3);
    let v = example_incident(|v| v["kind"] = "reset_loop".into());
    m.record_incident(&serde_json::from_value(v).unwrap());
    m.record_page_fault("zed");
    m.probe_events.insert("cs_ioctl".into(), 1);
    m.dropped.insert("kernel_ring_buffer", 1);
    m.probes.insert("attached", 3);
    m.recorder_jobs.insert("gfx_0.0.0".into(), 1);
    m.correlator.insert("unmatched_join", 1);
    m.compute_sources.insert("proc_polls", 1);
    let text = m.render();
    let label = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*""#).unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap();
            out.entry(name.to_string()).or_default();
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let labels = out
                .get_mut(name)
                .unwrap_or_else(|| panic!("no TYPE: {line}"));
            if let Some((_, rest)) = line.split_once('{') {
                labels.extend(label.captures_iter(rest).map(|c| c[1].to_string()));
            }
        }
    }
    for (name, labels) in PENDING {
        out.entry(name.to_string())
            .or_default()
            .extend(labels.iter().map(|l| l.to_string()));
    }
    out
}

/// Checks one PromQL expression: every metric exists, every label it matches, groups by,
/// joins on or shows in `legend` belongs to one of its metrics (or is a target label).
fn check_query(where_: &str, expr: &str, legend: &str, known: &BTreeMap<String, BTreeSet<String>>) {
    let names = Regex::new(r"\bhangwatch_[a-z_]+\b").unwrap();
    let selector = Regex::new(r"\b(hangwatch_[a-z_]+)\{([^}]*)\}").unwrap();
    let matcher = Regex::new(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)").unwrap();
    let grouping =
        Regex::new(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)").unwrap();
    let legend_label = Regex::new(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}").unwrap();
    let mut all = BTreeSet::new();
    for n in names.find_iter(expr) {
        let labels = known
            .get(n.as_str())
            .unwrap_or_else(|| panic!("{where_}: {} is not exported: {expr}", n.as_str()));
        all.extend(labels.iter().cloned());
    }
    assert!(
        names.is_match(expr),
        "{where_}: no hangwatch metric: {expr}"
    );
    all.extend(TARGET_LABELS.iter().map(|l| l.to_string()));
    for s in selector.captures_iter(expr) {
        for m in matcher.captures_iter(&s[2]) {
            let ok = known[&s[1]].contains(&m[1]) || TARGET_LABELS.contains(&&m[1]);
            assert!(ok, "{where_}: {} has no label {}: {expr}", &s[1], &m[1]);
        }
    }
    let grouped = grouping
        .captures_iter(expr)
        .flat_map(|g| {
            g[1].split(',')
                .map(|l| l.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty());
    let shown = legend_label.captures_iter(legend).map(|c| c[1].to_string());
    for l in grouped.chain(shown) {
        assert!(
            all.contains(&l),
            "{where_}: label {l} is on none of its metrics: {expr}"
        );
    }
}

#[test]
fn pending_metrics_are_not_exported_yet() {
    let text = hangwatch::sinks::metrics::Metrics::new(1).render();
    for (name, _) in PENDING {
        assert!(
            !text.contains(&format!("# TYPE {name} ")),
            "{name} is exported now: remove it from PENDING"
        );
    }
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = repo().join("packaging/prometheus");
    let (ok, out) = sh(Command::new("promtool")
        .args(["check", "rules", "hangwatch-rules.yml"])
        .current_dir(&dir));
    assert!(ok && out.contains("SUCCESS: 4 rules found"), "{out}");
    let (ok, out) = sh(Command::new("promtool")
        .args(["test", "rules", "hangwatch-rules.test.yml"])
        .current_dir(&dir));
    assert!(ok && out.contains("SUCCESS"), "promtool test rules: {out}");
}

/// The rules file, one `- alert:` block at a time (each holds one expression).
fn alert_blocks() -> Vec<(String, String)> {
    let text = read("packaging/prometheus/hangwatch-rules.yml");
    text.split("- alert: ")
        .skip(1)
        .map(|b| {
            let name = b.lines().next().unwrap().trim().to_string();
            (name, b.to_string())
        })
        .collect()
}

#[test]
fn alert_rules_use_only_exported_metrics_and_labels() {
    let known = exported();
    let blocks = alert_blocks();
    let names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "HangwatchGPUHang",
            "HangwatchGPUResetLoop",
            "HangwatchGPUNeedsRecovery",
            "HangwatchGPUResetFailed"
        ]
    );
    for (name, block) in &blocks {
        let expr = block
            .split("expr: |")
            .nth(1)
            .and_then(|r| r.split("labels:").next())
            .unwrap_or_else(|| panic!("{name}: no expr"));
        check_query(name, expr, "", &known);
    }
    // The unit tests feed series with the exported label sets (plus instance and job).
    let tests = read("packaging/prometheus/hangwatch-rules.test.yml");
    let series = Regex::new(r"series: '(hangwatch_[a-z_]+)\{([^}]*)\}'").unwrap();
    let label = Regex::new(r#"([a-z_]+)=""#).unwrap();
    let mut fed = 0;
    for s in series.captures_iter(&tests) {
        let mut got: BTreeSet<String> = label.captures_iter(&s[2]).map(|c| c[1].into()).collect();
        for t in TARGET_LABELS {
            assert!(got.remove(*t), "test series without {t}: {}", &s[0]);
        }
        assert_eq!(got, known[&s[1]], "test series {} has other labels", &s[0]);
        fed += 1;
    }
    assert!(fed >= 10, "{fed} series");
}

/// (panel title, expr, legend) of every query in the dashboard, and its template queries.
fn dashboard_queries() -> Vec<(String, String, String)> {
    let d: serde_json::Value =
        serde_json::from_str(&read("packaging/grafana/hangwatch-dashboard.json"))
            .expect("the dashboard is valid JSON");
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap().to_string(),
                t["expr"].as_str().unwrap().to_string(),
                t["legendFormat"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["definition"].as_str() {
            out.push((
                format!("variable {}", v["name"]),
                q.to_string(),
                String::new(),
            ));
        }
    }
    out
}

#[test]
fn dashboard_queries_exported_metrics_and_parses_as_promql() {
    let known = exported();
    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "{}", queries.len());
    let mut used = BTreeSet::new();
    let names = Regex::new(r"\bhangwatch_[a-z_]+\b").unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (title, expr, legend)) in queries.iter().enumerate() {
        check_query(title, expr, legend, &known);
        used.extend(names.find_iter(expr).map(|m| m.as_str().to_string()));
        if expr.starts_with("label_values(") {
            continue;
        }
        // Grafana's variables, as Grafana substitutes them, then PromQL's own parser.
        let e = expr
            .replace("$__rate_interval", "5m")
            .replace("$__range", "1h")
            .replace("$instance", ".*");
        rules += &format!(
            "      - record: dashboard:q{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        );
    }
    // Every exported family has a panel.
    let missing: Vec<&String> = known.keys().filter(|k| !used.contains(*k)).collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
    let dir = tmpdir("dash");
    std::fs::write(dir.join("q.yml"), &rules).unwrap();
    let (ok, out) = sh(Command::new("promtool")
        .args(["check", "rules"])
        .arg(dir.join("q.yml")));
    assert!(ok, "dashboard PromQL: {out}\n{rules}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// NPD's journald monitor: (reason, pattern as NPD compiles it: `pattern\z`).
fn npd_log_rules() -> (serde_json::Value, Vec<(String, Regex)>) {
    let c: serde_json::Value =
        serde_json::from_str(&read("packaging/npd/hangwatch-monitor.json")).expect("valid JSON");
    let rules = c["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let p = r["pattern"].as_str().unwrap();
            let re = Regex::new(&format!("{p}\\z")).unwrap_or_else(|e| panic!("{p}: {e}"));
            (r["reason"].as_str().unwrap().to_string(), re)
        })
        .collect();
    (c, rules)
}

/// The journal fields the agent sends for an incident (example incident, edited).
fn entry(edit: impl FnOnce(&mut serde_json::Value)) -> BTreeMap<String, String> {
    let v = example_incident(edit);
    let inc = serde_json::from_value(v).unwrap();
    hangwatch::sinks::journald::incident_fields(&inc, None)
        .into_iter()
        .collect()
}

fn reasons(rules: &[(String, Regex)], message: &str) -> Vec<String> {
    rules
        .iter()
        .filter(|(_, re)| re.is_match(message))
        .map(|(r, _)| r.clone())
        .collect()
}

#[test]
fn npd_log_monitor_tells_a_bad_workload_from_an_unattributed_hang() {
    let (c, rules) = npd_log_rules();
    let e = entry(|_| {});
    // NPD's journald watcher filters on SYSLOG_IDENTIFIER and matches MESSAGE only; one
    // message per buffer, so `^` is the start of the message.
    assert_eq!(c["plugin"], "journald");
    assert_eq!(
        c["pluginConfig"]["source"].as_str(),
        Some(&*e["SYSLOG_IDENTIFIER"])
    );
    assert_eq!(c["bufferSize"], 1);
    assert!(rules.iter().all(|(_, re)| re.as_str().starts_with('^')));
    let cases: Vec<(&str, BTreeMap<String, String>)> = vec![
        ("AMDGPUWorkloadHang", e),
        (
            "AMDGPUWorkloadHang",
            entry(|v| {
                v["kind"] = "gpu_reset".into();
                v["ring"] = serde_json::Value::Null;
                v["culprit"]["comm"] = "x] (likely)\nGPU 0 needs".into();
            }),
        ),
        (
            "AMDGPUWorkloadHang",
            entry(|v| v["kind"] = "illegal_command".into()),
        ),
        (
            "AMDGPUUnattributedHang",
            entry(|v| v["culprit"] = serde_json::Value::Null),
        ),
        (
            "AMDGPUPageFault",
            entry(|v| v["kind"] = "page_fault".into()),
        ),
    ];
    for (want, e) in &cases {
        let msg = &e["MESSAGE"];
        assert_eq!(reasons(&rules, msg), [*want], "{msg:?}");
        assert_eq!(e["MESSAGE_ID"], hangwatch::sinks::journald::MESSAGE_ID);
    }
}

#[test]
fn npd_log_monitor_ignores_the_agents_run_log() {
    // Under systemd the agent's stderr reaches the journal with the same SYSLOG_IDENTIFIER.
    let (_, rules) = npd_log_rules();
    let dir = tmpdir("runlog");
    let kmsg = dir.join("kmsg");
    std::fs::write(&kmsg, "").unwrap();
    let (_, out) = sh(Command::new(BIN)
        .args([
            "run",
            "--kmsg-only",
            "--no-socket",
            "--duration",
            "1",
            "--kmsg-path",
        ])
        .arg(&kmsg));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 5, "{out}");
    for l in lines {
        assert!(reasons(&rules, l).is_empty(), "{l:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npd_plugin_monitor_runs_the_shipped_check_by_message_id() {
    let c: serde_json::Value =
        serde_json::from_str(&read("packaging/npd/hangwatch-plugin-monitor.json"))
            .expect("valid JSON");
    assert_eq!(c["plugin"], "custom");
    assert_eq!(c["conditions"][0]["type"], "AMDGPUHang");
    for r in c["rules"].as_array().unwrap() {
        assert_eq!(r["condition"], "AMDGPUHang");
        let path = r["path"].as_str().unwrap();
        let name = path
            .strip_prefix("/usr/share/hangwatch/npd/")
            .unwrap_or_else(|| panic!("{path} is not where the package installs it"));
        assert!(repo().join("packaging/npd").join(name).exists(), "{path}");
    }
    // Every MESSAGE_ID the fleet files name is the agent's.
    let id = Regex::new(r"\b[0-9a-f]{32}\b").unwrap();
    let mut seen = 0;
    for f in [
        "packaging/npd/hangwatch-npd-check",
        "packaging/npd/hangwatch-monitor.json",
        "packaging/npd/hangwatch-plugin-monitor.json",
        "docs/operations.md",
    ] {
        for m in id.find_iter(&read(f)) {
            assert_eq!(m.as_str(), hangwatch::sinks::journald::MESSAGE_ID, "{f}");
            seen += 1;
        }
    }
    assert!(seen >= 2, "{seen}");
    let (ok, out) = sh(Command::new("sh")
        .arg("-n")
        .arg(repo().join("packaging/npd/hangwatch-npd-check")));
    assert!(ok, "{out}");
}

/// Lines in /dev/kmsg's record format: zed faults, gfx times out, the reset fails.
fn failed_reset_kmsg(path: &Path) {
    let up: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let now = (up * 1e6) as u64;
    let lines = [
        (100, "amdgpu 0002:00:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:40 vmid:7 pasid:32819)"),
        (112, "amdgpu 0002:00:00.0: amdgpu:  Process zed pid 7587 thread zed pid 7587"),
        (118, "amdgpu 0002:00:00.0: amdgpu:   in page starting at address 0x0000000000000000 from client 10"),
        (100_000, "amdgpu 0002:00:00.0: amdgpu: ring gfx_0.0.0 timeout, signaled seq=571734509, emitted seq=571734511"),
        (100_006, "amdgpu 0002:00:00.0: amdgpu:  Process Xwayland pid 6518 thread Xwayland pid 6518"),
        (100_013, "amdgpu 0002:00:00.0: amdgpu: GPU reset begin!. Source:  1"),
        (330_000, "amdgpu 0002:00:00.0: amdgpu: GPU reset(1) failed"),
    ];
    let text: String = lines
        .iter()
        .enumerate()
        .map(|(i, (off, msg))| format!("3,{},{},-;{msg}\n SUBSYSTEM=pci\n", 1001 + i, now + off))
        .collect();
    std::fs::write(path, text).unwrap();
}

/// `problem_counter` and `problem_gauge` samples from NPD's exposition.
fn npd_problems(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("problem_"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[test]
#[ignore = "needs a node-problem-detector binary: HANGWATCH_NPD=PATH cargo test -p agent --test fleet -- --ignored"]
fn real_npd_raises_the_condition_from_the_agents_entry_and_not_from_a_forged_one() {
    let npd = std::env::var("HANGWATCH_NPD").expect("HANGWATCH_NPD=path of node-problem-detector");
    let dir = tmpdir("npd");
    let d = dir.display();
    failed_reset_kmsg(&dir.join("kmsg"));
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::write(dir.join("state/kmsg-cursor"), "another-boot 1\n").unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!("[output]\njournal = \"on\"\nstdout = \"none\"\ndir = \"{d}/incidents\"\n[agent]\nstate_dir = \"{d}/state\"\nprobes = false\n[control]\nsocket = \"\"\n"),
    )
    .unwrap();
    // The shipped configs, with the volatile journal, this checkout's script, the agent's
    // user (root here) and a 1 s interval.
    let mon = read("packaging/npd/hangwatch-monitor.json")
        .replace("/var/log/journal", "/run/log/journal");
    let plug = read("packaging/npd/hangwatch-plugin-monitor.json")
        .replace(
            "/usr/share/hangwatch/npd/",
            &format!("{}/", repo().join("packaging/npd").display()),
        )
        .replace("\"hangwatch\"]", "\"root\"]")
        .replace("\"30s\"", "\"1s\"");
    std::fs::write(dir.join("mon.json"), mon).unwrap();
    std::fs::write(dir.join("plug.json"), plug).unwrap();
    // A forged entry from uid 65534: the incident's MESSAGE_ID, a failed reset, the agent's
    // identifier (logger --journald may set any field but the trusted _UID).
    std::fs::write(
        dir.join("forged"),
        format!("MESSAGE=ring timeout on 0000:00:00.0 ring gfx_0.0.0: culprit forged[1] (certain)\nMESSAGE_ID={}\nHANGWATCH_RESET=failed\nHANGWATCH_GPU=6666:00:00.0\nSYSLOG_IDENTIFIER=hangwatch\n", hangwatch::sinks::journald::MESSAGE_ID),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("forged"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = 20_000 + std::process::id() % 10_000;
    let script = format!(
        r#"set -e
mkdir -p /run/systemd/journal /run/log
mount -t tmpfs tmpfs /run/systemd/journal
mount -t tmpfs tmpfs /run/log
/lib/systemd/systemd-journald & J=$!
i=0; while [ ! -S /run/systemd/journal/socket ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
setpriv --reuid 65534 --regid 65534 --clear-groups logger --journald={d}/forged
sleep 0.5
{npd} --logtostderr --enable-k8s-exporter=false --port=0 --prometheus-address=127.0.0.1 --prometheus-port={port} --config.system-log-monitor={d}/mon.json --config.custom-plugin-monitor={d}/plug.json 2>{d}/npd.err & N=$!
sleep 4
curl -sS http://127.0.0.1:{port}/metrics > {d}/before
{bin} run --kmsg-only --config {d}/config.toml --kmsg-path {d}/kmsg --duration 2 2>&1 | systemd-cat -t hangwatch
sleep 4
curl -sS http://127.0.0.1:{port}/metrics > {d}/after
kill $N $J"#,
        bin = BIN,
    );
    let (ok, out) = sh(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]));
    let log = std::fs::read_to_string(dir.join("npd.err")).unwrap_or_default();
    assert!(ok, "{out}\n{log}");
    let before = npd_problems(&std::fs::read_to_string(dir.join("before")).unwrap());
    let after = npd_problems(&std::fs::read_to_string(dir.join("after")).unwrap());
    let gauge = r#"problem_gauge{reason="AMDGPUResetFailed",type="AMDGPUHang"}"#;
    let workload = r#"problem_counter{reason="AMDGPUWorkloadHang"}"#;
    // The forged entry: the condition stays false (wrong _UID). The log monitor, which sees
    // only SYSLOG_IDENTIFIER and MESSAGE, counts it: why the condition is the plugin's.
    assert_eq!(before.get(gauge), Some(&0.0), "{before:?}\n{log}");
    assert_eq!(before.get(workload), Some(&1.0), "{before:?}\n{log}");
    // The agent's entry: the condition is true, one more workload event, and the run log
    // (the same identifier) matched nothing.
    assert_eq!(after.get(gauge), Some(&1.0), "{after:?}\n{log}");
    assert_eq!(after.get(workload), Some(&2.0), "{after:?}\n{log}");
    for r in ["AMDGPUUnattributedHang", "AMDGPUPageFault"] {
        let k = format!("problem_counter{{reason=\"{r}\"}}");
        assert_eq!(after.get(&k), Some(&0.0), "{after:?}");
    }
    assert!(
        log.contains("a GPU reset failed on GPU 0002:00:00.0;") && !log.contains("6666"),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npd_check_without_a_readable_journal_says_unknown_not_healthy() {
    // Empty journal directories (a container without the host's journal mounted): exit 2.
    let script = format!(
        "mount -t tmpfs tmpfs /run && mkdir -p /var/log/journal && mount -t tmpfs tmpfs /var/log/journal && exec sh {} reset-failed 0",
        repo().join("packaging/npd/hangwatch-npd-check").display()
    );
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("no journal entries of this boot"), "{out}");
}
