use std::net::SocketAddr;

use serde_json::Value;

use super::*;

fn stdout_json(what: &str, out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// VmRSS of a process, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    kib / 1024
}

fn node_manifest(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("node-{name}.json"));
    let node = serde_json::json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
    });
    fs::write(&path, node.to_string()).unwrap();
    path
}

#[tokio::test]
async fn serves_kubectl_authenticates_nodes_and_leaves_nothing_behind() {
    let Some(cp) = ControlPlane::start_or_skip().await else {
        return;
    };
    let startup = cp.startup();
    eprintln!(
        "control plane: /readyz after {:?}, default ServiceAccount after {:?}",
        startup.readyz, startup.default_service_account
    );
    for (name, pid) in cp.processes() {
        eprintln!("control plane: {name} RSS {} MiB", rss_mib(pid));
    }

    let version = stdout_json("kubectl version", &cp.kubectl(&["version", "-o", "json"]));
    assert_eq!(version["serverVersion"]["gitVersion"], KUBERNETES_VERSION);
    // kubectl supports one minor version of skew; an older one first on
    // PATH (some images ship one) would test an unsupported pairing.
    let minor = |side: &str| -> i32 {
        let minor = version[side]["minor"].as_str().unwrap_or_default();
        let minor = minor.trim_end_matches('+').parse();
        minor.unwrap_or_else(|_| panic!("{side} in {version}"))
    };
    assert!(
        (minor("clientVersion") - minor("serverVersion")).abs() <= 1,
        "kubectl {} against apiserver {} (scripts/install-deps.sh --test installs v1.37)",
        version["clientVersion"]["gitVersion"],
        version["serverVersion"]["gitVersion"]
    );

    let namespaces = cp.kubectl(&["get", "namespaces", "-o", "name"]);
    let namespaces = String::from_utf8_lossy(&namespaces.stdout);
    for ns in ["namespace/default", "namespace/kube-system"] {
        assert!(namespaces.lines().any(|l| l == ns), "{ns} in {namespaces}");
    }

    // The node identity, as the apiserver sees it.
    let node = cp.node_kubeconfig("node-a");
    assert_eq!(node, cp.node_kubeconfig("node-a"), "minted once");
    let whoami = stdout_json(
        "kubectl auth whoami",
        &cp.kubectl_as(&node, &["auth", "whoami", "-o", "json"]),
    );
    let user = &whoami["status"]["userInfo"];
    assert_eq!(user["username"], "system:node:node-a");
    let groups = user["groups"].as_array().expect("groups");
    assert!(groups.iter().any(|g| g == "system:nodes"), "{groups:?}");

    // Node authorization and NodeRestriction: its own Node only.
    let own = node_manifest(cp.dir(), "node-a");
    let out = cp.kubectl_as(&node, &["create", "-f", own.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "create own node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = node_manifest(cp.dir(), "node-b");
    let out = cp.kubectl_as(&node, &["create", "-f", other.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "node-a created node-b");
    assert!(
        stderr.contains(r#"node "node-a" is not allowed to modify node "node-b""#),
        "{stderr}"
    );
    let out = cp.kubectl_as(&node, &["get", "nodes"]);
    assert!(!out.status.success(), "a node listed every node");

    // The serving certificate is valid for the in-cluster name pods use.
    let port = cp.server().rsplit(':').next().unwrap().parse().unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(&fs::read(cp.ca_cert_path()).unwrap()).unwrap(),
        ])
        .resolve(
            "kubernetes.default.svc",
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .no_proxy()
        .build()
        .unwrap();
    let url = format!("https://kubernetes.default.svc:{port}/readyz");
    let resp = client
        .get(&url)
        .send()
        .await
        .expect("TLS to kubernetes.default.svc");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());

    let pids = cp.processes();
    assert_eq!(pids.len(), COMPONENTS.len());
    let dir = cp.dir().to_path_buf();
    let stopping = Instant::now();
    drop(cp);
    eprintln!("control plane: stopped in {:?}", stopping.elapsed());
    for (name, pid) in pids {
        assert!(!process::alive(pid as i32), "{name} ({pid}) still running");
    }
    assert!(!dir.exists(), "{} removed", dir.display());
}

#[test]
fn the_pinned_version_is_the_one_go_mod_builds() {
    let go_mod = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../integration/k8s/go.mod");
    let go_mod = fs::read_to_string(go_mod).unwrap();
    let pinned = go_mod
        .lines()
        .find_map(|l| l.trim().strip_prefix("k8s.io/kubernetes "))
        .or_else(|| {
            go_mod
                .lines()
                .find_map(|l| l.strip_prefix("require k8s.io/kubernetes "))
        })
        .expect("k8s.io/kubernetes in go.mod");
    assert_eq!(pinned.trim(), KUBERNETES_VERSION);
}

#[test]
fn node_names_are_dns_subdomains() {
    for ok in ["node-a", "berth.example.com", "a", "0"] {
        validate_node_name(ok).unwrap();
    }
    for bad in [
        "",
        "Node",
        "-a",
        "a-",
        "a..b",
        "a/b",
        "../x",
        "a b",
        &"a".repeat(254),
    ] {
        let err = validate_node_name(bad).unwrap_err();
        assert!(format!("{err}").contains("invalid node name"), "{bad:?}");
    }
}

/// Pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(needle)
        })
        .collect()
}

#[tokio::test]
async fn a_component_that_dies_is_named_with_its_log_and_the_rest_is_stopped() {
    let Ok(real) = installed_bin_dir() else {
        eprintln!("skipping: control plane not built");
        return;
    };
    let bins = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(real.join("etcd"), bins.path().join("etcd")).unwrap();
    let apiserver = bins.path().join("kube-apiserver");
    fs::write(&apiserver, "#!/bin/sh\necho 'E1206 bad flag' >&2\nexit 3\n").unwrap();
    fs::set_permissions(
        &apiserver,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = ControlPlaneOptions {
        dir: Some(dir.path().join("cp")),
        ..Default::default()
    };

    let err = ControlPlane::start(bins.path(), options).await.unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("kube-apiserver exited (exit status: 3) while waiting for /readyz"),
        "{err}"
    );
    assert!(err.contains("E1206 bad flag"), "{err}");
    let left = processes_mentioning(&dir.path().display().to_string());
    assert!(left.is_empty(), "still running: {left:?}");
    assert!(
        dir.path().join("cp/logs/etcd.log").exists(),
        "a given dir is kept"
    );
}
