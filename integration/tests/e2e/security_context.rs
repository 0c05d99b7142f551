//! securityContext, measured from inside the containers: capabilities,
//! no_new_privs and seccomp in `/proc/1/status`, users and groups with `id`,
//! volume ownership with `stat`, sysctls in `/proc/sys`, namespaces with `ps`
//! and `/proc/self/ns`; and each field berth refuses, with the kubelet's
//! error.

use std::collections::HashMap;

use berth_api::reasons;
use berth_integration::*;
use serde_json::{json, Value};

/// Prints the lines of `/proc/1/status` the tests read.
const STATUS: &str = "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp|Groups):' /proc/1/status";

/// Capability bit numbers, as the kernel numbers them.
const CAPS: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// containerd's 14 default capabilities.
const DEFAULT_CAPS: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

fn bits(names: &[&str]) -> u64 {
    names.iter().fold(0, |acc, name| {
        let bit = CAPS
            .iter()
            .position(|c| c == name)
            .expect("known capability");
        acc | 1 << bit
    })
}

/// `key: value` lines of `/proc/<pid>/status` as a map.
fn status_fields(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn hex(field: &str) -> u64 {
    u64::from_str_radix(field, 16).unwrap_or_else(|e| panic!("{field:?}: {e}"))
}

/// The capabilities this host grants (the test runs as the agent does).
fn host_caps() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    hex(&status_fields(&status)["CapEff"])
}

/// A container in the test image running `script`, with this securityContext.
fn secured(name: &str, script: &str, security: Value) -> Value {
    let mut c = sh_container(name, script);
    c["securityContext"] = security;
    c
}

/// Applies `spec` (restartPolicy Never), waits for it to succeed and returns
/// each container's log.
async fn run_to_completion(agent: &AgentProcess, spec: &Value) -> HashMap<String, String> {
    let name = spec["metadata"]["name"].as_str().unwrap().to_string();
    agent.apply_yaml(&manifest(spec)).await;
    let done = wait_terminal(agent, &name).await;
    assert_eq!(phase(&done), "Succeeded", "{done:#}");
    let mut out = HashMap::new();
    for c in spec["spec"]["containers"].as_array().unwrap() {
        let container = c["name"].as_str().unwrap();
        out.insert(container.to_string(), logs(agent, &name, container).await);
    }
    out
}

/// Waits until container `container` of pod `name` waits for `reason`;
/// returns its message.
async fn waiting_message(
    agent: &AgentProcess,
    name: &str,
    container: &str,
    reason: &str,
) -> String {
    let pod = agent
        .wait_for("default", name, reason, START_TIMEOUT, |p| {
            waiting_reason(p, container) == Some(reason)
        })
        .await;
    container_status(&pod, container).unwrap()["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn capabilities_are_added_and_dropped_and_escalation_is_blocked() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut spec = pod(
        "caps",
        "Never",
        vec![
            sh_container("plain", STATUS),
            secured(
                "tuned",
                STATUS,
                json!({
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"add": ["NET_ADMIN", "CAP_SYS_TIME"], "drop": ["NET_RAW", "chown"]},
                }),
            ),
            secured("none", STATUS, json!({"capabilities": {"drop": ["ALL"]}})),
            secured(
                "all",
                STATUS,
                json!({"capabilities": {"add": ["ALL"], "drop": ["CHOWN"]}}),
            ),
        ],
    );
    spec["spec"]["terminationGracePeriodSeconds"] = json!(1);
    let out = run_to_completion(&agent, &spec).await;

    let plain = status_fields(&out["plain"]);
    assert_eq!(hex(&plain["CapEff"]), bits(&DEFAULT_CAPS), "{plain:?}");
    assert_eq!(hex(&plain["CapBnd"]), bits(&DEFAULT_CAPS));
    assert_eq!(plain["NoNewPrivs"], "0");

    let tuned = status_fields(&out["tuned"]);
    let want =
        (bits(&DEFAULT_CAPS) | bits(&["NET_ADMIN", "SYS_TIME"])) & !bits(&["NET_RAW", "CHOWN"]);
    assert_eq!(hex(&tuned["CapEff"]), want, "{tuned:?}");
    assert_eq!(hex(&tuned["CapBnd"]), want);
    assert_eq!(tuned["NoNewPrivs"], "1");

    let none = status_fields(&out["none"]);
    assert_eq!(hex(&none["CapEff"]), 0, "{none:?}");
    assert_eq!(hex(&none["CapBnd"]), 0);

    let all = status_fields(&out["all"]);
    assert_eq!(
        hex(&all["CapEff"]),
        host_caps() & !bits(&["CHOWN"]),
        "{all:?}"
    );
}

#[tokio::test]
async fn an_unknown_capability_is_a_create_container_config_error() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let spec = pod(
        "typo",
        "Never",
        vec![secured(
            "app",
            "true",
            json!({"capabilities": {"add": ["NET_ADMN"]}}),
        )],
    );
    agent.apply_yaml(&manifest(&spec)).await;
    let message = waiting_message(&agent, "typo", "app", "CreateContainerConfigError").await;
    assert_eq!(message, r#"container app: unknown capability "NET_ADMN""#);
}

#[tokio::test]
async fn privileged_containers_get_the_hosts_capabilities_devices_and_no_masks() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // A device of the host's that runc does not create by itself.
    let runc_defaults = [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "console",
    ];
    let host_device = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .find(|e| {
            use std::os::unix::fs::FileTypeExt;
            let name = e.file_name().to_string_lossy().into_owned();
            e.file_type().is_ok_and(|t| t.is_char_device())
                && !runc_defaults.contains(&name.as_str())
        })
        .map(|e| e.path());
    let device_check = host_device
        .as_ref()
        .map(|d| format!("test -c {} && echo device-present; ", d.display()))
        .unwrap_or_default();
    let script = format!(
        "{STATUS}; {device_check}grep ' /sys ' /proc/mounts; head -c 20 /proc/timer_list | grep -q Timer && echo unmasked; true"
    );
    let spec = pod(
        "privileged",
        "Never",
        vec![secured(
            "app",
            &script,
            json!({"privileged": true, "seccompProfile": {"type": "RuntimeDefault"}}),
        )],
    );
    let out = run_to_completion(&agent, &spec).await;
    let log = &out["app"];
    let fields = status_fields(log);
    // Exactly the host's set: on hosts without CAP_SYS_RESOURCE, asking
    // for it would make runc fail.
    assert_eq!(hex(&fields["CapBnd"]), host_caps(), "{log}");
    assert_eq!(hex(&fields["CapEff"]), host_caps());
    assert_eq!(fields["Seccomp"], "0", "privileged runs unconfined: {log}");
    if host_device.is_some() {
        assert!(log.contains("device-present"), "{host_device:?}: {log}");
    }
    assert!(log.contains("sysfs /sys sysfs rw,"), "{log}");
    assert!(log.contains("unmasked"), "{log}");
}

#[tokio::test]
async fn seccomp_runtime_default_confines_and_the_container_overrides_the_pod() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // unshare(CLONE_NEWUSER) needs no capability, but the default profile
    // allows unshare only with CAP_SYS_ADMIN.
    let script = format!("{STATUS}; unshare -U true && echo unshared || echo refused");
    let mut spec = pod(
        "seccomp",
        "Never",
        vec![
            sh_container("inherits", &script),
            secured(
                "own",
                &script,
                json!({"seccompProfile": {"type": "Unconfined"}}),
            ),
        ],
    );
    spec["spec"]["securityContext"] = json!({"seccompProfile": {"type": "RuntimeDefault"}});
    let out = run_to_completion(&agent, &spec).await;
    let confined = status_fields(&out["inherits"]);
    assert_eq!(confined["Seccomp"], "2", "{}", out["inherits"]);
    assert!(out["inherits"].contains("refused"), "{}", out["inherits"]);
    let unconfined = status_fields(&out["own"]);
    assert_eq!(unconfined["Seccomp"], "0", "{}", out["own"]);
}

#[tokio::test]
async fn without_a_profile_containers_run_unconfined_as_on_the_kubelet() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let spec = pod("default", "Never", vec![sh_container("app", STATUS)]);
    let out = run_to_completion(&agent, &spec).await;
    assert_eq!(status_fields(&out["app"])["Seccomp"], "0", "{}", out["app"]);
}

#[tokio::test]
async fn seccomp_default_makes_runtime_default_the_default() {
    let Some((_containerd, agent)) = setup_with(&["--seccomp-default", "true"]).await else {
        return;
    };
    let spec = pod("default", "Never", vec![sh_container("app", STATUS)]);
    let out = run_to_completion(&agent, &spec).await;
    assert_eq!(status_fields(&out["app"])["Seccomp"], "2", "{}", out["app"]);
}

#[tokio::test]
async fn localhost_profiles_come_from_the_seccomp_root_only() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let root = agent.root_dir().join("seccomp/profiles");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("no-mkdir.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let profile =
        |name: &str| json!({"seccompProfile": {"type": "Localhost", "localhostProfile": name}});
    let spec = pod(
        "localhost",
        "Never",
        vec![secured(
            "app",
            &format!("{STATUS}; mkdir /tmp/d 2>&1; true"),
            profile("profiles/no-mkdir.json"),
        )],
    );
    let out = run_to_completion(&agent, &spec).await;
    assert_eq!(status_fields(&out["app"])["Seccomp"], "2", "{}", out["app"]);
    assert!(
        out["app"].contains("Operation not permitted"),
        "{}",
        out["app"]
    );

    // A profile that is not there: containerd's error, as CreateContainerError.
    let missing = pod(
        "missing",
        "Never",
        vec![secured("app", "true", profile("profiles/nope.json"))],
    );
    agent.apply_yaml(&manifest(&missing)).await;
    let message = waiting_message(&agent, "missing", "app", "CreateContainerError").await;
    assert!(
        message.starts_with("cannot load seccomp profile") && message.contains("nope.json"),
        "{message}"
    );

    // A path out of the root: the API server's refusal.
    let escape = pod(
        "escape",
        "Never",
        vec![secured("app", "true", profile("../../../etc/passwd"))],
    );
    let out = agent.apply_yaml_output(&manifest(&escape)).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"spec.containers[0].securityContext.seccompProfile.localhostProfile: Invalid value: "../../../etc/passwd": must not contain '..'"#),
        "{stderr}"
    );
}

#[tokio::test]
async fn users_groups_and_fs_group_ownership_are_applied() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let script = "id; stat -c 'dir %g %a' /data; touch /data/new; stat -c 'file %g' /data/new; \
                  mkdir /data/sub; stat -c 'sub %g %a' /data/sub";
    let mut app = sh_container("app", script);
    app["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    let mut image_user = sh_container("image-user", "id");
    image_user["securityContext"] = json!({"runAsUser": 65534});
    let mut spec = pod("ids", "Never", vec![app, image_user]);
    spec["spec"]["securityContext"] = json!({
        "runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000],
    });
    spec["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    // So that the pod has a pause process, whose identity is checked below.
    spec["spec"]["shareProcessNamespace"] = json!(true);
    let out = run_to_completion(&agent, &spec).await;
    let log = &out["app"];
    assert!(
        log.contains("uid=1000 gid=3000 groups=2000,3000,4000"),
        "{log}"
    );
    assert!(log.contains("dir 2000 2777"), "{log}");
    assert!(
        log.contains("file 2000"),
        "new files take the fsGroup: {log}"
    );
    assert!(log.contains("sub 2000"), "{log}");
    // The container's runAsUser wins; the pod's group and groups stay. The
    // image's /etc/group lists nobody in no group.
    assert!(
        out["image-user"].contains("uid=65534(nobody) gid=3000 groups=2000,3000,4000"),
        "{}",
        out["image-user"]
    );
    // The pause process (the pod's only task left) runs as the pod's user,
    // under the default seccomp profile.
    let pause = pause_status(&agent).await;
    assert_eq!(
        pause["Uid"].split_whitespace().next(),
        Some("1000"),
        "{pause:?}"
    );
    assert_eq!(pause["Gid"].split_whitespace().next(), Some("3000"));
    assert_eq!(pause["Groups"], "2000 3000 4000");
    assert_eq!(pause["Seccomp"], "2");
}

/// `/proc/<pid>/status` of the one running task, the pause of a pod whose
/// containers have exited (polled until they are gone).
async fn pause_status(agent: &AgentProcess) -> HashMap<String, String> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let out = agent.ctr(&["tasks", "ls"]);
        let running: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter(|l| l.ends_with("RUNNING"))
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .collect();
        if let [pid] = running.as_slice() {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            return status_fields(&status);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no single running pause task: {running:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn run_as_non_root_refuses_root_and_unverifiable_image_users() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let named = "localhost/berth-test/nobody:1";
    let archive = agent.work_dir().join("nobody.oci.tar");
    let mut file = std::fs::File::create(&archive).unwrap();
    berth_testkit::busybox_image(named)
        .user("nobody".into())
        .write_oci_archive(&mut file)
        .unwrap();
    agent.ctr_import(&archive);

    let non_root = json!({"runAsNonRoot": true});
    let mut root_image = pod("root-image", "Never", vec![sh_container("app", "true")]);
    root_image["spec"]["securityContext"] = non_root.clone();
    let mut named_user = pod("named-user", "Never", vec![sh_container("app", "true")]);
    named_user["spec"]["containers"][0]["image"] = json!(named);
    named_user["spec"]["securityContext"] = non_root.clone();
    let mut numeric = pod("numeric", "Never", vec![sh_container("app", "id -u")]);
    numeric["spec"]["securityContext"] = json!({"runAsNonRoot": true, "runAsUser": 65534});
    for spec in [&root_image, &named_user] {
        agent.apply_yaml(&manifest(spec)).await;
    }

    let created = agent.get_pod_json("default", "root-image").await;
    let message = waiting_message(&agent, "root-image", "app", "CreateContainerConfigError").await;
    assert_eq!(
        message,
        format!(
            r#"container has runAsNonRoot and image will run as root (pod: "root-image_default({})", container: app)"#,
            uid(&created)
        )
    );
    let created = agent.get_pod_json("default", "named-user").await;
    let message = waiting_message(&agent, "named-user", "app", "CreateContainerConfigError").await;
    assert_eq!(
        message,
        format!(
            r#"container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root (pod: "named-user_default({})", container: app)"#,
            uid(&created)
        )
    );
    let out = run_to_completion(&agent, &numeric).await;
    assert_eq!(out["app"].trim(), "65534");
}

#[tokio::test]
async fn safe_sysctls_are_set_in_the_pods_namespaces_and_others_are_forbidden() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let read = "cat /proc/sys/net/ipv4/ip_local_port_range /proc/sys/kernel/shm_rmid_forced";
    let mut tuned = pod("tuned", "Never", vec![sh_container("app", read)]);
    tuned["spec"]["securityContext"] = json!({"sysctls": [
        {"name": "net.ipv4.ip_local_port_range", "value": "40000 40100"},
        {"name": "kernel/shm_rmid_forced", "value": "1"},
    ]});
    let out = run_to_completion(&agent, &tuned).await;
    let values: Vec<&str> = out["app"].split_whitespace().collect();
    assert_eq!(values, ["40000", "40100", "1"], "{}", out["app"]);
    // The host's own are untouched.
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    assert_ne!(
        host.split_whitespace().collect::<Vec<_>>(),
        ["40000", "40100"]
    );

    let mut unsafe_pod = pod("unsafe", "Never", vec![sh_container("app", "true")]);
    unsafe_pod["spec"]["securityContext"] =
        json!({"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]});
    agent.apply_yaml(&manifest(&unsafe_pod)).await;
    let rejected = wait_terminal(&agent, "unsafe").await;
    assert_eq!(phase(&rejected), "Failed");
    assert_eq!(
        rejected["status"]["reason"], "SysctlForbidden",
        "{rejected:#}"
    );
    assert_eq!(
        rejected["status"]["message"],
        r#"Pod was rejected: forbidden sysctl: "net.core.somaxconn" not allowlisted"#
    );
    let (_, events) = pod_events(&agent, "default", "unsafe").await;
    let event = events
        .iter()
        .find(|e| e["reason"] == "SysctlForbidden")
        .expect("SysctlForbidden event");
    assert_eq!(event["type"], "Warning");
    assert!(
        rejected["status"]["containerStatuses"].is_null(),
        "never ran"
    );
    // Deleting it takes no grace: nothing runs.
    agent.cli_ok(&["delete", "pod", "unsafe"]).await;
    agent.wait_gone("default", "unsafe", START_TIMEOUT).await;
}

#[tokio::test]
async fn allowed_unsafe_sysctls_are_admitted_and_set() {
    let Some((_containerd, agent)) =
        setup_with(&["--allowed-unsafe-sysctls", "net.core.somaxconn,kernel.msg*"]).await
    else {
        return;
    };
    let mut spec = pod(
        "unsafe",
        "Never",
        vec![sh_container(
            "app",
            "cat /proc/sys/net/core/somaxconn /proc/sys/kernel/msgmax",
        )],
    );
    spec["spec"]["securityContext"] = json!({"sysctls": [
        {"name": "net.core.somaxconn", "value": "1234"},
        {"name": "kernel.msgmax", "value": "9000"},
    ]});
    let out = run_to_completion(&agent, &spec).await;
    let values: Vec<&str> = out["app"].split_whitespace().collect();
    assert_eq!(values, ["1234", "9000"]);
}

#[tokio::test]
async fn shared_process_namespace_host_pid_and_host_ipc() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut shared = pod(
        "shared",
        "Never",
        vec![
            sh_container("sleeper", "exec sleep 1234"),
            sh_container(
                "looker",
                "for i in $(seq 100); do ps -o pid,args | grep -q 'sleep 1234' && break; sleep 0.1; done; ps -o pid,args",
            ),
        ],
    );
    shared["spec"]["shareProcessNamespace"] = json!(true);
    shared["spec"]["terminationGracePeriodSeconds"] = json!(1);
    agent.apply_yaml(&manifest(&shared)).await;
    let log = wait_log_contains(&agent, "shared", "looker", "sleep 1234").await;
    let pid1 = log
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or_default();
    assert!(pid1.contains("/pause"), "the pause is PID 1:\n{log}");

    let host_pid1 = std::fs::read_to_string("/proc/1/comm").unwrap();
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    let mut host = pod(
        "host",
        "Never",
        vec![sh_container(
            "app",
            // `$$$$`: the kubelet's expansion turns `$$` into `$`.
            "cat /proc/1/comm; echo self=$$$$; readlink /proc/self/ns/ipc",
        )],
    );
    host["spec"]["hostPID"] = json!(true);
    host["spec"]["hostIPC"] = json!(true);
    let out = run_to_completion(&agent, &host).await;
    let lines: Vec<&str> = out["app"].lines().collect();
    assert_eq!(lines[0], host_pid1.trim(), "{}", out["app"]);
    assert_ne!(lines[1], "self=1");
    assert_eq!(lines[2], host_ipc.to_string_lossy(), "{}", out["app"]);

    let private = pod(
        "private",
        "Never",
        vec![sh_container(
            "app",
            "echo self=$$$$; readlink /proc/self/ns/ipc",
        )],
    );
    let out = run_to_completion(&agent, &private).await;
    let lines: Vec<&str> = out["app"].lines().collect();
    assert_eq!(lines[0], "self=1");
    assert_ne!(lines[1], host_ipc.to_string_lossy());
}

#[tokio::test]
async fn unmasked_proc_user_namespaces_and_apparmor_are_refused_as_the_kubelet_does() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let unmasked = pod(
        "unmasked",
        "Never",
        vec![secured("app", "true", json!({"procMount": "Unmasked"}))],
    );
    let out = agent.apply_yaml_output(&manifest(&unmasked)).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"spec.containers[0].securityContext.procMount: Invalid value: "Unmasked": `hostUsers` must be false to use `Unmasked`"#),
        "{stderr}"
    );

    let mut userns = unmasked.clone();
    userns["metadata"]["name"] = json!("userns");
    userns["spec"]["hostUsers"] = json!(false);
    agent.apply_yaml(&manifest(&userns)).await;
    let message = wait_cli_output(
        &agent,
        &["describe", "pod", "userns"],
        reasons::FAILED_CREATE_POD_SANDBOX,
        |out| out.contains(reasons::FAILED_CREATE_POD_SANDBOX),
    )
    .await;
    assert!(
        message.contains(r#"Failed to create pod sandbox: RuntimeClass handler "" does not support user namespaces"#),
        "{message}"
    );
    assert!(ctr_list(&agent, "containers").is_empty(), "no sandbox made");

    let apparmor_on = std::path::Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|v| v.starts_with('Y'));
    if apparmor_on {
        eprintln!("AppArmor is enabled here: its rejection is not checked");
        return;
    }
    let confined = pod(
        "confined",
        "Never",
        vec![secured(
            "app",
            "true",
            json!({"appArmorProfile": {"type": "RuntimeDefault"}}),
        )],
    );
    agent.apply_yaml(&manifest(&confined)).await;
    let rejected = wait_terminal(&agent, "confined").await;
    assert_eq!(rejected["status"]["reason"], "AppArmor", "{rejected:#}");
    assert_eq!(
        rejected["status"]["message"],
        "Pod was rejected: Cannot enforce AppArmor: AppArmor is not enabled on the host"
    );
}
