use super::*;

const CID: &str = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd";
const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n\
slurmu:x:1001:1001::/home/slurmu:/bin/sh\n";

fn cg(path: &str) -> ProcessIdentity {
    from_cgroup(&format!("0::{path}\n"))
}

#[test]
fn desktop_session_gives_unit_session_and_user() {
    let status = "Name:\tzed\nUid:\t1000\t1000\t1000\t1000\nNSpid:\t7021\n";
    let id = parse(
        b"0::/user.slice/user-1000.slice/session-3.scope\n",
        status.as_bytes(),
        PASSWD.as_bytes(),
    );
    assert_eq!(id.unit.as_deref(), Some("session-3.scope"));
    assert_eq!(id.slice.as_deref(), Some("user-1000.slice"));
    assert_eq!(id.session.as_deref(), Some("3"));
    assert_eq!((id.uid, id.user.as_deref()), (Some(1000), Some("alice")));
    assert!(id.nspid.is_empty(), "a single-level NSpid is not a chain");
    assert_eq!(
        id.summary(),
        "unit session-3.scope, session 3, user alice (1000)"
    );
}

#[test]
fn user_manager_app_scope_is_the_unit() {
    let id = cg("/user.slice/user-1000.slice/user@1000.service/app.slice/app-org.gnome.Terminal.slice/vte-spawn-1a2b.scope");
    assert_eq!(id.unit.as_deref(), Some("vte-spawn-1a2b.scope"));
    assert_eq!(id.slice.as_deref(), Some("app-org.gnome.Terminal.slice"));
    assert_eq!(id.uid, Some(1000));
    assert!(id.container.is_none() && id.pod.is_none() && id.slurm.is_none());
}

#[test]
fn system_service() {
    let id = cg("/system.slice/ollama.service");
    assert_eq!(id.unit.as_deref(), Some("ollama.service"));
    assert_eq!(id.slice.as_deref(), Some("system.slice"));
}

#[test]
fn container_scopes_name_their_runtime() {
    for (scope, rt) in [
        ("system.slice/docker-{}.scope", Runtime::Docker),
        ("machine.slice/libpod-{}.scope/container", Runtime::Podman),
        ("system.slice/cri-containerd-{}.scope", Runtime::Containerd),
        ("system.slice/crio-{}.scope", Runtime::Crio),
    ] {
        let id = cg(&format!("/{}", scope.replace("{}", CID)));
        let c = id.container.unwrap_or_else(|| panic!("{scope}"));
        assert_eq!((c.runtime, c.id.as_str()), (rt, CID), "{scope}");
    }
    // The monitors are not containers.
    assert!(cg(&format!("/machine.slice/libpod-conmon-{CID}.scope"))
        .container
        .is_none());
    assert!(cg(&format!("/system.slice/crio-conmon-{CID}.scope"))
        .container
        .is_none());
}

#[test]
fn cgroup_v1_docker_and_podman_directories() {
    let v1 = format!(
        "12:pids:/docker/{CID}\n11:memory:/docker/{CID}\n1:name=systemd:/docker/{CID}\n0::/\n"
    );
    let c = from_cgroup(&v1).container.unwrap();
    assert_eq!((c.runtime, c.id.as_str()), (Runtime::Docker, CID));
    let c = from_cgroup(&format!("3:cpu,cpuacct:/libpod_parent/libpod-{CID}\n"))
        .container
        .unwrap();
    assert_eq!((c.runtime, c.id.as_str()), (Runtime::Podman, CID));
}

#[test]
fn kubelet_systemd_layout_gives_pod_uid_qos_and_container() {
    let id = cg(&format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6a1f0c2e_9b7d_4c3a_8e5f_0d1c2b3a4f5e.slice/cri-containerd-{CID}.scope"
    ));
    let pod = id.pod.unwrap();
    assert_eq!(pod.uid, "6a1f0c2e-9b7d-4c3a-8e5f-0d1c2b3a4f5e");
    assert_eq!(pod.qos, QosClass::Burstable);
    assert_eq!(id.container.unwrap().runtime, Runtime::Containerd);
    let g = cg(&format!(
        "/kubepods.slice/kubepods-pod6a1f0c2e_9b7d_4c3a_8e5f_0d1c2b3a4f5e.slice/crio-{CID}.scope"
    ));
    assert_eq!(g.pod.unwrap().qos, QosClass::Guaranteed);
    let b = cg("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod6a1f0c2e_9b7d_4c3a_8e5f_0d1c2b3a4f5e.slice");
    assert_eq!(b.pod.unwrap().qos, QosClass::BestEffort);
}

#[test]
fn kubelet_cgroupfs_layout_and_colon_names() {
    let id = cg(&format!(
        "/kubepods/burstable/pod6a1f0c2e-9b7d-4c3a-8e5f-0d1c2b3a4f5e/{CID}"
    ));
    let pod = id.pod.unwrap();
    assert_eq!(
        (pod.uid.as_str(), pod.qos),
        ("6a1f0c2e-9b7d-4c3a-8e5f-0d1c2b3a4f5e", QosClass::Burstable)
    );
    let c = id.container.unwrap();
    assert_eq!((c.runtime, c.id.as_str()), (Runtime::Unknown, CID));
    let g = cg("/kubepods/pod6a1f0c2e-9b7d-4c3a-8e5f-0d1c2b3a4f5e/abc");
    assert_eq!(g.pod.unwrap().qos, QosClass::Guaranteed);
    assert!(g.container.is_none(), "abc is no container id");
    let colon = cg(&format!(
        "/system.slice/containerd.service/kubepods-besteffort-pod6a1f0c2e_9b7d_4c3a_8e5f_0d1c2b3a4f5e.slice:cri-containerd:{CID}"
    ));
    assert_eq!(colon.pod.unwrap().qos, QosClass::BestEffort);
    assert_eq!(colon.container.unwrap().runtime, Runtime::Containerd);
}

#[test]
fn slurm_v2_and_v1_layouts() {
    let status = b"Uid:\t1001\t1001\t1001\t1001\n";
    let id = parse(
        b"0::/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0\n",
        status,
        PASSWD.as_bytes(),
    );
    let j = id.slurm.unwrap();
    assert_eq!((j.job_id, j.step.as_deref()), (4242, Some("0")));
    assert_eq!((j.uid, j.user.as_deref()), (Some(1001), Some("slurmu")));
    let v1 = b"4:freezer:/slurm/uid_1001/job_77/step_batch\n1:name=systemd:/system.slice/slurmd.service\n";
    let id = parse(v1, b"Uid:\t0\t0\t0\t0\n", PASSWD.as_bytes());
    let j = id.slurm.unwrap();
    assert_eq!((j.job_id, j.step.as_deref()), (77, Some("batch")));
    assert_eq!(
        (j.uid, j.user.as_deref()),
        (Some(1001), Some("slurmu")),
        "the layout's uid wins over the process's"
    );
    assert_eq!(
        id.unit.as_deref(),
        Some("slurmd.service"),
        "name=systemd first"
    );
    // `job_` outside a Slurm hierarchy is somebody's directory name.
    assert!(cg("/user.slice/job_12/step_0").slurm.is_none());
}

#[test]
fn nspid_chain_maps_container_pids_to_host() {
    let id = parse(b"", b"Uid:\t0\t0\t0\t0\nNSpid:\t31337\t12\t1\n", b"");
    assert_eq!(id.nspid, vec![31337, 12, 1]);
    assert!(id.summary().contains("nspid 31337>12>1"));
    let bad = parse(b"", b"NSpid:\t31337\tx\n", b"");
    assert!(
        bad.nspid.is_empty(),
        "a malformed chain is dropped, not half-kept"
    );
}

#[test]
fn drm_client_names_are_bounded_and_distinct() {
    let f = "pos:\t0\ndrm-driver:\tamdgpu\ndrm-client-name:\tguest-vkcube\n";
    assert_eq!(drm_client_name(f).as_deref(), Some("guest-vkcube"));
    assert_eq!(drm_client_name("drm-client-name:\t\n"), None);
    let mut id = ProcessIdentity::default();
    for i in 0..10 {
        add_client_name(&mut id, format!("n{}", i % 6));
        add_client_name(&mut id, "n0".into());
    }
    assert_eq!(id.drm_client_names.len(), MAX_CLIENT_NAMES);
    assert_eq!(id.client_names(), "n0,n1,n2,n3");
    let long = format!("drm-client-name:\t{}\n", "é".repeat(1000));
    assert!(drm_client_name(&long).unwrap().len() <= MAX_NAME_BYTES);
}

#[test]
fn hostile_input_is_bounded_and_never_panics() {
    // Very long: a million-component path and a huge file.
    let long = format!("0::/{}\n", "a.slice/".repeat(200_000));
    let id = from_cgroup(&long);
    assert_eq!(id.slice.as_deref(), Some("a.slice"));
    let huge = vec![b'x'; 10 << 20];
    assert!(parse(&huge, &huge, &huge).is_empty());
    // Control bytes and non-UTF-8 in unit and user names are kept bounded; sinks escape them.
    let mut cgroup = b"0::/system.slice/\x1b]0;pwned\x07".to_vec();
    cgroup.extend_from_slice(&[0xff, 0xfe]);
    cgroup.extend_from_slice(format!("{}.service\n", "z".repeat(5000)).as_bytes());
    let id = parse(&cgroup, b"Uid:\t7\n", b"\x1b[2J\xff:x:7:7::/:/bin/sh\n");
    let unit = id.unit.clone().unwrap();
    assert!(unit.len() <= MAX_NAME_BYTES, "{}", unit.len());
    assert!(unit.contains('\u{fffd}') && unit.starts_with('\x1b'));
    assert_eq!(id.user.as_deref(), Some("\x1b[2J\u{fffd}"));
    let shown = crate::escape::terminal(&id.summary()).into_owned();
    assert!(!shown.contains('\x1b'), "{shown}");
    // Forged ids are refused, not kept.
    assert!(cg("/system.slice/docker-../../etc.scope")
        .container
        .is_none());
    assert!(cg("/kubepods.slice/kubepods-pod$(reboot).slice")
        .pod
        .is_none());
    assert!(cg("/slurm/uid_x/job_99999999999999999999999/step_0")
        .slurm
        .is_none());
    // Many lines: only the first MAX_CGROUP_LINES are read.
    let many: String = (0..10_000).map(|i| format!("{i}:c{i}:/x\n")).collect();
    let many = format!("{many}0::/system.slice/late.service\n");
    assert!(from_cgroup(&many).unit.is_none());
}

fn podman_alice() -> ProcessIdentity {
    let mut id = parse(
        format!("0::/libpod_parent/libpod-{CID}\n").as_bytes(),
        b"Uid:\t1000\t1000\t1000\t1000\nNSpid:\t7021\t1\n",
        PASSWD.as_bytes(),
    );
    add_client_name(&mut id, "guest-vkcube".into());
    id
}

#[test]
fn attach_fills_every_involved_process_once() {
    let mut inc = crate::testkit::disputed_incident();
    inc.compute = Some(crate::testkit::hostile_compute("python3"));
    let mut asked = Vec::new();
    attach(&mut inc, |pid, _| {
        asked.push(pid);
        (pid == 7021).then(podman_alice)
    });
    assert_eq!(
        asked,
        vec![7021, 6518, 6518],
        "the candidates already had one"
    );
    assert_eq!(inc.culprit.as_ref().unwrap().identity, Some(podman_alice()));
    assert!(inc.kernel_blamed.as_ref().unwrap().identity.is_none());
    assert!(inc.victims[0].identity.is_none());
    // An empty identity is no identity.
    let mut inc = crate::testkit::disputed_incident();
    attach(&mut inc, |_, _| Some(ProcessIdentity::default()));
    assert!(inc.culprit.unwrap().identity.is_none());
}

#[test]
fn text_and_markdown_show_client_name_next_to_comm_and_who() {
    let mut inc = crate::testkit::disputed_incident();
    attach(&mut inc, |pid, _| (pid != 0).then(podman_alice));
    let text = crate::render::text::render(&inc);
    assert!(
        text.contains("culprit:  zed[7021] client=guest-vkcube (/home/alice"),
        "{text}"
    );
    assert!(
        text.contains(
            "          who: container podman 3f2a9c1b7d4e, user alice (1000), nspid 7021>1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  - Xwayland[6518] client=guest-vkcube: job"),
        "{text}"
    );
    let md = crate::render::markdown::render(&inc);
    assert!(md.contains("` zed `[7021] client ` guest-vkcube `"), "{md}");
    assert!(md.contains("Who: ` container podman 3f2a9c1b7d4e,"), "{md}");
    strip(&mut inc);
    assert!(!crate::render::text::render(&inc).contains("guest-vkcube"));
}

#[test]
fn identity_json_is_additive() {
    let mut inc = crate::testkit::disputed_incident();
    let before = serde_json::to_value(&inc).unwrap();
    assert!(
        !before.to_string().contains("identity"),
        "absent when unknown"
    );
    attach(&mut inc, |pid, _| (pid == 7021).then(podman_alice));
    let v = serde_json::to_value(&inc).unwrap();
    let id = &v["culprit"]["identity"];
    assert_eq!(id["container"]["runtime"], "podman");
    assert_eq!(id["nspid"], serde_json::json!([7021, 1]));
    let back: crate::incident::Incident = serde_json::from_value(v).unwrap();
    assert_eq!(back, inc);
}
