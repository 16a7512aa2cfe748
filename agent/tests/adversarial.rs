//! Adversarial suite: each reproduction of the "Tried" list that this layer owns,
//! run against the real `hangwatch` binary as root, with the attacker's moves made by an
//! unprivileged uid (`setpriv --reuid 65534`). Plus proptest fuzzing of the markdown
//! renderers with arbitrary names, checked with a real CommonMark parser.
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hangwatch::sinks::bugreport::{self, Options, Roots};
use hangwatch::sinks::incident_dir::{Extras, IncidentDir, Retention};
use pulldown_cmark::{Event, Options as MdOptions, Parser, Tag};

const BIN: &str = env!("CARGO_BIN_EXE_hangwatch");
const NOBODY: u32 = 65534;
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/dmesg/v710-zed-fault-then-timeout.log"
);
/// An OSC title change, a screen clear, a fence, an image and HTML, in a process name the
/// kernel log carries (no spaces: the log's own syntax ends a name there).
const HOSTILE_COMM: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J```#HI![](//host/a)<img/src=x>";

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A playground like /tmp: world-writable with the sticky bit, so the attacker can plant.
fn playground(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("hw-adv-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o1777)).unwrap();
    p
}

fn hangwatch(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// Run `script` with sh as the unprivileged attacker.
fn as_nobody(script: &str) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("setpriv (util-linux) is needed for the attacker side")
}

/// The fixture with the hostile name, plus KFD lines naming it (a compute section: the flag,
/// its reason and the candidate carry the name into every report).
fn hostile_log(dir: &Path) -> PathBuf {
    let mut log = std::fs::read_to_string(FIXTURE)
        .unwrap()
        .replace("zed", HOSTILE_COMM);
    log.push_str(&format!(
        "[  146.700000] amdgpu 0002:00:00.0: amdgpu: Queues reset on process {HOSTILE_COMM} tid 7587 thread {HOSTILE_COMM} pid 7587\n\
         [  146.700100] amdgpu: Failed to suspend process pid 7587\n"
    ));
    let p = dir.join("hostile.log");
    std::fs::write(&p, log).unwrap();
    p
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Links, images and HTML other than ours; lines that would start a GitLab quick action.
fn assert_inert_markdown(md: &str) {
    for e in Parser::new_ext(md, MdOptions::ENABLE_TABLES) {
        match &e {
            Event::Start(Tag::Link { .. } | Tag::Image { .. }) => panic!("{e:?} in\n{md}"),
            Event::Start(Tag::Heading { .. }) => {}
            Event::Html(h) | Event::InlineHtml(h) => assert!(
                h.contains("<details><summary>Firmware") || h.trim() == "</details>",
                "HTML {h:?} in\n{md}"
            ),
            _ => {}
        }
    }
    for l in md.lines() {
        assert!(!l.starts_with('/'), "quick action line {l:?}");
        assert!(
            l != "# HI" && !l.starts_with("#HI"),
            "heading from data: {l:?}"
        );
    }
}

#[test]
fn analyze_prints_osc_and_csi_names_escaped() {
    let dir = playground("osc");
    let log = hostile_log(&dir);
    let o = hangwatch(&["analyze", log.to_str().unwrap()], &dir);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("\\x1b]0;pwned\\x07\\x1b[2J"), "{out}");
    assert!(
        out.contains("flagged: \\x1b]0;pwned"),
        "the compute flag names it, escaped: {out}"
    );
    for (i, b) in o.stdout.iter().enumerate() {
        assert!(
            *b == b'\n' || *b >= 0x20 && *b != 0x7f,
            "raw control byte {b:#x} at {i} on the terminal:\n{out}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bugreport_markdown_of_a_hostile_incident_has_no_structure_from_data() {
    let dir = playground("md");
    let log = hostile_log(&dir);
    let out = dir.join("out");
    let o = hangwatch(
        &[
            "analyze",
            "--output",
            out.to_str().unwrap(),
            log.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    let inc = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .expect("an incident directory");
    let report = std::fs::read_to_string(inc.join("report.md")).unwrap();
    assert_inert_markdown(&report);
    assert!(report.contains("## Compute queues"), "{report}");
    let o = hangwatch(
        &["bugreport", inc.to_str().unwrap(), "--out", "b.tar.gz"],
        &dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    let md = String::from_utf8(o.stdout.clone()).unwrap();
    assert_inert_markdown(&md);
    assert!(!md.contains('\u{1b}'), "{md}");
    assert!(md.contains("## ROCm (compute) processes"), "{md}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn output_root_planted_or_loosened_by_another_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let dir = playground("outroot");
    let log = hostile_log(&dir);
    // The attacker creates the directory root will write incidents into.
    let planted = dir.join("planted");
    let a = as_nobody(&format!("mkdir -m 0777 {}", planted.display()));
    assert!(a.status.success(), "{}", text(&a));
    let o = hangwatch(
        &[
            "analyze",
            "--output",
            planted.to_str().unwrap(),
            log.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("owned by uid 65534"),
        "{}",
        text(&o)
    );
    // ...or a symlink to somewhere root cares about.
    let link = dir.join("link");
    let a = as_nobody(&format!("ln -s /etc {}", link.display()));
    assert!(a.status.success(), "{}", text(&a));
    let o = hangwatch(
        &[
            "analyze",
            "--output",
            link.to_str().unwrap(),
            log.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("symbolic link"),
        "{}",
        text(&o)
    );
    // A root-owned but world-writable directory.
    let loose = dir.join("loose");
    std::fs::create_dir(&loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = hangwatch(
        &[
            "analyze",
            "--output",
            loose.to_str().unwrap(),
            log.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("choose a directory only"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn staged_incidents_cannot_be_swapped_by_another_user() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let dir = playground("swap");
    let root = dir.join("incidents");
    let mut d = IncidentDir::open(&root, Retention::default()).unwrap();
    // The attacker races the writer: forge an incident, replace staging, rename entries.
    let forged = dir.join("forged");
    std::fs::create_dir(&forged).unwrap();
    std::fs::write(forged.join("incident.json"), "{\"forged\":true}").unwrap();
    std::fs::set_permissions(&forged, std::fs::Permissions::from_mode(0o777)).unwrap();
    let script = format!(
        "i=0; ok=0; while [ $i -lt 300 ]; do \
           for s in {r}/.staging/*; do mv {f} \"$s\" 2>/dev/null && ok=$((ok+1)); done; \
           for s in {r}/*; do mv {f} \"$s\" 2>/dev/null && ok=$((ok+1)); \
             ln -sfn {f} \"$s\" 2>/dev/null && ok=$((ok+1)); done; \
           i=$((i+1)); done; echo $ok",
        r = root.display(),
        f = forged.display()
    );
    let attacker = std::thread::spawn(move || as_nobody(&script));
    let mut written = Vec::new();
    for i in 0..40 {
        let mut inc: hangwatch_core::incident::Incident = serde_json::from_str(include_str!(
            "../../docs/examples/zed-fault-wedges-gfx/incident/incident.json"
        ))
        .unwrap();
        inc.id = format!("genuine-{i}");
        written.push(d.write(&inc, &Extras::default()).unwrap());
    }
    let a = attacker.join().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&a.stdout).trim(),
        "0",
        "attacker succeeded: {}",
        text(&a)
    );
    for p in written {
        let s = std::fs::read_to_string(p.join("incident.json")).unwrap();
        assert!(
            s.contains("genuine-") && !s.contains("forged"),
            "{}",
            p.display()
        );
        assert!(!std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An attacker-made "incident directory" whose kernel.log points at a root-only file.
fn planted_incident(dir: &Path, secret: &Path) -> PathBuf {
    let inc = dir.join("evil-incident");
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/examples/zed-fault-wedges-gfx/incident/incident.json"
    );
    let a = as_nobody(&format!(
        "mkdir {i} && cp {ex} {i}/incident.json && ln -s {s} {i}/kernel.log && ln -s {s} {i}/host.json && ln -s {s} {i}/report.md",
        i = inc.display(),
        ex = example,
        s = secret.display()
    ));
    assert!(a.status.success(), "{}", text(&a));
    inc
}

#[test]
fn bugreport_refuses_planted_symlinks_to_root_only_files() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let dir = playground("planted");
    let secret = dir.join("shadow");
    std::fs::write(&secret, "root:$6$TOPSECRET:19000:0:99999:7:::\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let inc = planted_incident(&dir, &secret);
    let o = hangwatch(
        &["bugreport", inc.to_str().unwrap(), "--out", "r.tar.gz"],
        &dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("TOPSECRET"),
        "{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("symbolic link; refused"),
        "{}",
        text(&o)
    );
    let tar = Command::new("tar")
        .args(["xzOf", "r.tar.gz"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(tar.status.success());
    assert!(!String::from_utf8_lossy(&tar.stdout).contains("TOPSECRET"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An incident directory made by the attacker from the shipped example, with its own
/// `host.json` devcoredump list and `processes.json` maps; `extra` runs in it as uid 65534.
fn attacker_incident(dir: &Path, dumps: serde_json::Value, maps: &str, extra: &str) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/examples/zed-fault-wedges-gfx/incident");
    let src = dir.join("src");
    std::fs::create_dir(&src).unwrap();
    let mut host: serde_json::Value =
        serde_json::from_slice(&std::fs::read(example.join("host.json")).unwrap()).unwrap();
    host["devcoredumps"] = dumps;
    std::fs::write(src.join("host.json"), host.to_string()).unwrap();
    let procs = serde_json::json!({ "process_maps": [[118, [maps]], [116, []]] });
    std::fs::write(src.join("processes.json"), procs.to_string()).unwrap();
    std::fs::copy(example.join("incident.json"), src.join("incident.json")).unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
    let inc = dir.join("evil-incident");
    let a = as_nobody(&format!(
        "mkdir {i} {i}/devcoredump && cp {s}/*.json {i}/ && cd {i}/devcoredump && {extra}",
        i = inc.display(),
        s = src.display(),
    ));
    assert!(a.status.success(), "{}", text(&a));
    inc
}

fn dump(file: &str) -> serde_json::Value {
    serde_json::json!({ "source": "/sys/class/devcoredump/devcd1/data", "file": file, "bytes": 40, "truncated": false })
}

/// Archive members and their contents, concatenated.
fn tar_text(dir: &Path, tar: &str) -> String {
    let o = Command::new("tar")
        .args(["xzvOf", tar])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn bugreport_devcoredump_names_cannot_reach_files_outside_the_incident() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let dir = playground("devcd-names");
    let secret = dir.join("secretdir");
    std::fs::create_dir(&secret).unwrap();
    std::fs::write(secret.join("shadow"), "root:$6$TOPSECRET:19000\n").unwrap();
    std::fs::set_permissions(
        secret.join("shadow"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    let abs = secret.join("shadow");
    // An absolute name, a name through a planted directory symlink, `..`, and one plain
    // name repeated 500 times (each used to be read into memory again).
    let mut dumps = vec![
        dump(abs.to_str().unwrap()),
        dump("lnk/shadow"),
        dump("../../secretdir/shadow"),
    ];
    dumps.extend((0..500).map(|_| dump("big")));
    let inc = attacker_incident(
        &dir,
        serde_json::Value::Array(dumps),
        "",
        &format!(
            "ln -s {} lnk && head -c 100000 /dev/zero | tr '\\0' a > big",
            secret.display()
        ),
    );
    let o = hangwatch(
        &[
            "bugreport",
            inc.to_str().unwrap(),
            "--with-devcoredump",
            "--out",
            "r.tar.gz",
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(!md.contains("TOPSECRET"), "{md}");
    assert!(!tar_text(&dir, "r.tar.gz").contains("TOPSECRET"));
    let included = md.matches("**included**").count();
    assert_eq!(included, 1, "only the plain name `big`, once:\n{md}");
    assert!(md.matches("**not included**").count() >= 3, "{md}");
    let listing = Command::new("tar")
        .args(["tzf", "r.tar.gz"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert_eq!(listing.matches("devcoredump/").count(), 1, "{listing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bugreport_devcoredump_names_are_data_in_the_markdown() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let dir = playground("devcd-md");
    // The last name is a file the attacker made in the incident's devcoredump/ directory, so
    // it is read and its name reaches the "included as" line.
    let held = "a`<img src=x onerror=alert(1)>`b";
    let names = [
        "x\n/close\n# HI\n<img src=x onerror=alert(1)>",
        "![](//host/a)<b>x</b>",
        held,
    ];
    let dumps = serde_json::Value::Array(names.iter().map(|n| dump(n)).collect());
    let inc = attacker_incident(&dir, dumps, "", &format!("echo dump > '{held}'"));
    for extra in [&[][..], &["--with-devcoredump"][..]] {
        let mut args = vec!["bugreport", inc.to_str().unwrap(), "--out", "r.tar.gz"];
        args.extend(extra);
        let o = hangwatch(&args, &dir);
        assert!(o.status.success(), "{}", text(&o));
        assert_inert_markdown(&String::from_utf8_lossy(&o.stdout));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mapped_library_names_are_data_in_the_bug_report_and_on_the_terminal() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let dir = playground("maps-version");
    // What an unprivileged user's own process maps: a library it named itself. /proc/PID/maps
    // escapes only a newline, so everything else arrives as written.
    let lib = "7f00-7f10 r-xp 0 08:01 1 /tmp/x/libgallium-<img src=x onerror=alert(1)>@all#1~label_\u{1b}]0;pwned\u{7}\u{1b}[2J*em*[l](h).so";
    let inc = attacker_incident(&dir, serde_json::json!([]), lib, "true");
    let o = hangwatch(
        &["bugreport", inc.to_str().unwrap(), "--out", "r.tar.gz"],
        &dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    let md = String::from_utf8_lossy(&o.stdout);
    assert_inert_markdown(&md);
    assert!(!md.contains('\u{1b}') && !md.contains('\u{7}'), "{md}");
    let line = md
        .lines()
        .find(|l| l.contains("Mesa radeonsi"))
        .unwrap_or_else(|| panic!("no driver line:\n{md}"));
    // Outside code spans only our own words remain.
    let outside: String = line.split('`').step_by(2).collect();
    for bad in ["@all", "#1", "~label", "<img", "*em*", "]("] {
        assert!(!outside.contains(bad), "{bad} outside a code span: {line}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn list_and_show_print_directory_names_escaped() {
    // An extracted archive can hold any name; `list` and `show` print them on a terminal.
    let dir = playground("names");
    let store = dir.join("incidents");
    std::fs::create_dir(&store).unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/examples/zed-fault-wedges-gfx/incident/incident.json");
    let good = store.join("x\u{1b}]0;pwned\u{7}\u{1b}[2J");
    std::fs::create_dir(&good).unwrap();
    std::fs::copy(example, good.join("incident.json")).unwrap();
    std::fs::create_dir(store.join("bad\u{1b}[31m\r")).unwrap();
    let d = store.to_str().unwrap();
    for args in [&["list", "--dir", d][..], &["show", "--dir", d, "x"][..]] {
        let o = hangwatch(args, &dir);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("\\x1b"), "{}", text(&o));
        for b in o.stdout.iter().chain(&o.stderr) {
            assert!(
                *b == b'\n' || *b >= 0x20 && *b != 0x7f,
                "raw {b:#x}: {}",
                text(&o)
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn archive_and_export_never_write_through_a_planted_symlink() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let dir = playground("outlink");
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/examples/zed-fault-wedges-gfx/incident"
    );
    // The default archive name in the current directory, planted as a link by the attacker.
    let a = as_nobody(&format!(
        "ln -s {} {}/hangwatch-bugreport-incident.tar.gz && ln -s {} {}/trace.perfetto",
        victim.display(),
        dir.display(),
        victim.display(),
        dir.display()
    ));
    assert!(a.status.success(), "{}", text(&a));
    let o = hangwatch(&["bugreport", example], &dir);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let m = std::fs::symlink_metadata(dir.join("hangwatch-bugreport-incident.tar.gz")).unwrap();
    assert!(
        m.is_file() && m.permissions().mode() & 0o777 == 0o600,
        "{m:?}"
    );
    // export --out: a fake agent answers on a socket in the playground.
    let sock = dir.join("agent").join("c.sock");
    let _srv = hangwatch::sinks::control::spawn_server(&sock, |_| {
        hangwatch::sinks::control::Response::default()
    })
    .unwrap();
    let o = hangwatch(
        &[
            "export",
            "--since",
            "5s",
            "--socket",
            sock.to_str().unwrap(),
            "--out",
            "trace.perfetto",
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let m = std::fs::symlink_metadata(dir.join("trace.perfetto")).unwrap();
    assert!(
        m.is_file() && m.permissions().mode() & 0o777 == 0o600,
        "{m:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn control_socket_refuses_other_users_even_when_they_can_connect() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let dir = playground("peercred");
    let sock = dir.join("agent").join("c.sock");
    let _srv = hangwatch::sinks::control::spawn_server(&sock, |_| {
        hangwatch::sinks::control::Response::default()
    })
    .unwrap();
    // Loosen the file mode to prove the SO_PEERCRED check stands on its own.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    // The client: send the request (a refused peer may be answered and closed before that
    // write lands) and print the one answer line.
    let client = dir.join("client.py");
    std::fs::write(
        &client,
        "import socket, sys\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.connect(sys.argv[1])\n\
         try:\n    s.sendall(b'{\"op\":\"jobs\",\"since_ns\":0,\"until_ns\":1}\\n')\n\
         except OSError:\n    pass\n\
         print(s.makefile().readline())\n",
    )
    .unwrap();
    std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o644)).unwrap();
    let script = format!("/usr/bin/python3 {} {}", client.display(), sock.display());
    let a = as_nobody(&script);
    let answer = String::from_utf8_lossy(&a.stdout);
    assert!(
        answer.contains("permission denied: uid 65534"),
        "{}",
        text(&a)
    );
    assert!(!answer.contains("\"jobs\":[{"), "{}", text(&a));
    // With the group configured, a member is served.
    let sock2 = dir.join("agent2").join("c.sock");
    let opts = hangwatch::sinks::control::ServerOptions {
        group: Some(4242),
        ..Default::default()
    };
    let _srv2 = hangwatch::sinks::control::spawn_server_with(&sock2, opts, |_| {
        hangwatch::sinks::control::Response::default()
    })
    .unwrap();
    let m = std::fs::metadata(&sock2).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o660);
    let script = format!("/usr/bin/python3 {} {}", client.display(), sock2.display());
    let member = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--groups=4242",
            "sh",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&member.stdout);
    assert!(answer.contains("\"jobs\":[]"), "{}", text(&member));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn socket_path_holding_a_file_or_a_live_agent_is_never_deleted() {
    let dir = playground("sockpath");
    let file = dir.join("not-a-socket");
    std::fs::write(&file, "keep").unwrap();
    assert!(hangwatch::sinks::control::spawn_server(&file, |_| Default::default()).is_err());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    // A socket directory others can write in is refused; the agent's own is used.
    assert!(
        hangwatch::sinks::control::spawn_server(&dir.join("x.sock"), |_| Default::default())
            .is_err()
    );
    let live = dir.join("run").join("live.sock");
    let _a = hangwatch::sinks::control::spawn_server(&live, |_| Default::default()).unwrap();
    let e = hangwatch::sinks::control::spawn_server(&live, |_| Default::default())
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("in use"), "{e:#}");
    // The first agent still answers.
    let r = hangwatch::sinks::control::request(
        &live,
        &hangwatch::sinks::control::Request::Jobs {
            since_ns: 0,
            until_ns: 1,
        },
    );
    assert!(r.is_ok(), "{r:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The live agent with idle control-socket clients: `export` still works, and SIGTERM ends
/// `run` at once with its stats line and without the socket file (idle clients used to be
/// served one at a time, 5 s each, inside the accept loop shutdown joined).
#[test]
fn idle_clients_neither_fail_export_nor_hold_sigterm() {
    if !is_root() {
        eprintln!("skipped: `hangwatch run` needs root");
        return;
    }
    let dir = playground("live");
    let sock = dir.join("run").join("c.sock");
    let mut agent = Command::new(BIN)
        .args(["run", "--socket", sock.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !sock.exists() && t.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if !sock.exists() {
        let _ = agent.kill();
        let o = agent.wait_with_output().unwrap();
        panic!("agent never opened its socket:\n{}", text(&o));
    }
    let idle: Vec<std::os::unix::net::UnixStream> = (0..7)
        .map(|_| std::os::unix::net::UnixStream::connect(&sock).unwrap())
        .collect();
    let o = hangwatch(
        &[
            "export",
            "--since",
            "2s",
            "--socket",
            sock.to_str().unwrap(),
            "--out",
            "t.perfetto",
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    let t = std::time::Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&agent),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let out = agent.wait_with_output().unwrap();
    let took = t.elapsed();
    drop(idle);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", text(&out));
    assert!(err.contains("hangwatch: stats:"), "{err}");
    assert!(
        took < std::time::Duration::from_secs(3),
        "SIGTERM took {took:?}"
    );
    assert!(!sock.exists(), "socket file left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn incident_gpu_field_cannot_walk_out_of_sysfs() {
    let dir = playground("pci");
    let root = dir.join("incidents");
    let mut d = IncidentDir::open(&root, Retention::default()).unwrap();
    let mut inc: hangwatch_core::incident::Incident = serde_json::from_str(include_str!(
        "../../docs/examples/zed-fault-wedges-gfx/incident/incident.json"
    ))
    .unwrap();
    inc.gpu = Some("../../../../../../etc".into());
    let p = d.write(&inc, &Extras::default()).unwrap();
    let fake = dir.join("root");
    std::fs::create_dir_all(fake.join("etc")).unwrap();
    std::fs::write(fake.join("etc/vendor"), "LEAKED").unwrap();
    let b = bugreport::build(
        &p,
        &Roots {
            root: fake,
            home: None,
        },
        &Options {
            host_facts_now: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!b.markdown.contains("LEAKED"), "{}", b.markdown);
    assert!(b.markdown.contains("not a PCI address"), "{}", b.markdown);
    std::fs::remove_dir_all(&dir).unwrap();
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Document structure: every start/end tag plus HTML and code-span markers.
    fn structure(md: &str) -> Vec<String> {
        Parser::new_ext(md, MdOptions::ENABLE_TABLES)
            .filter_map(|e| match e {
                Event::Start(t) => Some(format!("{t:?}")),
                Event::End(t) => Some(format!("{t:?}")),
                Event::Html(h) | Event::InlineHtml(h) => Some(format!("html {h}")),
                Event::Code(_) => Some("code".into()),
                _ => None,
            })
            .collect()
    }

    fn incident_named(name: &str, line: &str) -> hangwatch_core::incident::Incident {
        let mut inc: hangwatch_core::incident::Incident = serde_json::from_str(include_str!(
            "../../docs/examples/zed-fault-wedges-gfx/incident/incident.json"
        ))
        .unwrap();
        if let Some(c) = inc.culprit.as_mut() {
            c.comm = name.into();
            c.exe = Some(format!("/opt/{name}"));
        }
        if let Some(k) = inc.kernel_blamed.as_mut() {
            k.comm = name.into();
        }
        for v in inc.victims.iter_mut() {
            v.comm = name.into();
            v.reason = format!("{name} waited");
        }
        inc.reasoning = format!("{name} did it");
        for e in inc.evidence.iter_mut() {
            e.what = format!("{name} {line}");
            for l in e.lines.iter_mut() {
                *l = line.into();
            }
        }
        for j in inc.jobs.iter_mut() {
            j.comm = name.into();
        }
        let cand = hangwatch_core::incident::Candidate {
            pid: 4242,
            comm: name.into(),
            queues: vec![hangwatch_core::incident::QueueRef {
                origin: hangwatch_core::model::QueueOrigin::Kfd,
                kind: hangwatch_core::model::QueueKind::Compute,
                queue_id: Some(0),
                doorbell: Some(0x1000),
                gpu: Some(line.into()),
                gpu_id: None,
            }],
            confidence: hangwatch_core::incident::Confidence::Likely,
            reason: format!("{name} {line}"),
            identity: Some(hangwatch_core::testkit::hostile_identity(name)),
        };
        inc.compute = Some(hangwatch_core::incident::ComputeAttribution {
            flagged: Some(cand.clone()),
            candidates: vec![cand],
            note: line.into(),
        });
        inc
    }

    /// The candidate's ROCm runtime under a directory named `name` (/proc/PID/maps escapes a
    /// newline as \012).
    fn rocm_maps(name: &str) -> Extras {
        Extras {
            process_maps: vec![(
                4242,
                vec![format!(
                    "7f00-7f10 r-xp 0 08:01 1 /opt/rocm-6.2.4/{}/libamdhip64.so.6.2.60204",
                    name.replace('\n', "\\012")
                )],
            )],
            host: None,
        }
    }

    /// Markdown's active characters, control bytes and line breaks, weighted in.
    fn hostile_string() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "`",
            "```",
            "\n",
            "\r",
            "|",
            "/close",
            "#",
            "![](//h/a)",
            "[x](y)",
            "<",
            ">",
            "<!--",
            "&amp;",
            "*",
            "_",
            "~",
            "\\",
            "\u{1b}[2J",
            "\u{1b}]0;t\u{7}",
            "\u{202e}",
            "@all",
            " ",
            "    ",
            "- ",
            "1. ",
            "---",
            "===",
            "a",
            "Z",
            "é",
        ]);
        prop::collection::vec(
            prop_oneof![pieces.prop_map(String::from), any::<String>()],
            0..12,
        )
        .prop_map(|v| v.concat())
    }

    proptest! {
        // CI-sized: each case renders two documents and parses them.
        #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

        #[test]
        fn report_md_structure_never_depends_on_names(name in hostile_string(), line in hostile_string()) {
            let base = structure(&hangwatch_core::render::markdown::render(&incident_named("zed", "x")));
            let md = hangwatch_core::render::markdown::render(&incident_named(&name, &line));
            let got = structure(&md);
            if got != base {
                let i = got.iter().zip(&base).position(|(a, b)| a != b).unwrap_or(0);
                prop_assert!(false, "at {}: {:?} vs {:?}\n{}", i, &got[i.saturating_sub(3)..(i + 3).min(got.len())], &base[i.saturating_sub(3)..(i + 3).min(base.len())], md);
            }
            prop_assert!(md.lines().all(|l| !l.starts_with('/')));
            let esc = '\u{1b}';
            prop_assert!(!md.contains(esc));
        }

        #[test]
        fn terminal_text_has_no_control_bytes(name in hostile_string(), line in hostile_string()) {
            let t = hangwatch_core::render::text::render(&incident_named(&name, &line));
            prop_assert!(t.chars().all(|c| c == '\n' || !c.is_control()), "{:?}", t);
        }
    }

    #[test]
    fn bugreport_structure_never_depends_on_names() {
        let dir = playground("fuzz-br");
        let root = dir.join("incidents");
        let d = std::cell::RefCell::new(
            IncidentDir::open(
                &root,
                Retention {
                    max_incidents: 10_000,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let roots = Roots {
            root: PathBuf::from("/nonexistent"),
            home: None,
        };
        let render = |name: &str, line: &str| {
            let p = d
                .borrow_mut()
                .write(&incident_named(name, line), &rocm_maps(name))
                .unwrap();
            let md = bugreport::build(&p, &roots, &Options::default())
                .unwrap()
                .markdown;
            std::fs::remove_dir_all(&p).unwrap();
            md
        };
        let base = structure(&render("zed", "x"));
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 64,
            ..Default::default()
        });
        runner
            .run(&(hostile_string(), hostile_string()), |(name, line)| {
                let md = render(&name, &line);
                prop_assert_eq!(structure(&md), base.clone(), "{}", md);
                prop_assert!(md.lines().all(|l| !l.starts_with('/')));
                Ok(())
            })
            .unwrap();
        let _ = std::io::stderr().flush();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
