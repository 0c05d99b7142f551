//! Bad input to cluster mode: a kubeconfig berth cannot use stops the agent
//! at start, before it touches anything (as it stops the kubelet); an API
//! server that is not there yet, or a Node name another live node holds,
//! leaves the agent running its standalone side and retrying.

use std::process::Stdio;

use super::*;

/// `berth agent --kubeconfig FILE` on fresh directories: the run's output
/// once it exits, and the root directory it was given.
async fn agent_exit(
    containerd: &PrivateContainerd,
    kubeconfig: &Path,
) -> (Output, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("berth-bad-kubeconfig-")
        .tempdir()
        .unwrap();
    let root = dir.path().join("root");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&manifests).unwrap();
    // A static pod that must not be started.
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: static, namespace: default}}\n\
         spec:\n  containers:\n  - {{name: main, image: {TEST_IMAGE}, imagePullPolicy: Never, \
         command: [sleep, '3600']}}\n"
    );
    std::fs::write(manifests.join("static.yaml"), manifest).unwrap();
    let child = tokio::process::Command::new(berth_testkit::agent::berth_bin())
        .arg("agent")
        .arg("--containerd-socket")
        .arg(containerd.socket())
        .args(["--containerd-namespace", containerd.namespace()])
        .arg("--root-dir")
        .arg(&root)
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .arg("--manifest-dir")
        .arg(&manifests)
        .arg("--socket")
        .arg(dir.path().join("berth.sock"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn berth agent");
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the agent exits at start")
        .expect("the agent's output");
    (output, dir)
}

#[tokio::test]
async fn a_kubeconfig_berth_cannot_use_stops_the_agent_at_start_naming_the_file() {
    let Some(containerd) = PrivateContainerd::start_or_skip().await else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let head = "apiVersion: v1\nkind: Config\ncurrent-context: node\n\
        clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n\
        contexts: [{name: node, context: {cluster: c, user: node}}]\n";
    let cases = [
        ("missing", None, "failed to read"),
        (
            "unparseable",
            Some("clusters: [oops".to_string()),
            "failed to parse",
        ),
        (
            "anonymous",
            Some(format!("{head}users: [{{name: node, user: {{}}}}]\n")),
            "no credentials",
        ),
        (
            "no-certificate",
            Some(format!(
                "{head}users: [{{name: node, user: {{client-certificate: /nonexistent/node.crt, \
                 client-key: /nonexistent/node.key}}}}]\n"
            )),
            "client certificate",
        ),
    ];
    for (case, text, says) in cases {
        let kubeconfig = files.path().join(format!("{case}.kubeconfig"));
        if let Some(text) = text {
            std::fs::write(&kubeconfig, text).unwrap();
        }
        let (output, dir) = agent_exit(&containerd, &kubeconfig).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{case}: exits non-zero\n{stderr}");
        assert!(
            stderr.contains(&format!("kubeconfig {}: ", kubeconfig.display()))
                && stderr.contains(says),
            "{case}: the error names the file and what is wrong\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{case}: {stderr}");
        // Nothing was touched: no state directories, no pods.
        let root: Vec<_> = std::fs::read_dir(dir.path().join("root"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            root.is_empty(),
            "{case}: the root directory was left alone: {root:?}"
        );
    }
    let ctr = containerd.ctr(&["containers", "list", "-q"]);
    assert_eq!(
        String::from_utf8_lossy(&ctr.stdout).trim(),
        "",
        "no container was made"
    );
}

/// A copy of the node's kubeconfig that reaches the API server through
/// `proxy`.
fn kubeconfig_via(cp: &ControlPlane, node: &str, proxy: &TcpProxy) -> std::path::PathBuf {
    let upstream = cp.server();
    let kubeconfig = cp.dir().join(format!("{node}-via-proxy.kubeconfig"));
    let text = std::fs::read_to_string(cp.node_kubeconfig(node)).unwrap();
    let via = format!("https://127.0.0.1:{}", proxy.port());
    std::fs::write(&kubeconfig, text.replace(&upstream, &via)).unwrap();
    kubeconfig
}

#[tokio::test]
async fn with_the_api_server_unreachable_at_start_static_pods_run_and_the_node_registers_later() {
    let Some(cp) = ControlPlane::start_or_skip().await else {
        return;
    };
    let node = "berth-node-late";
    let upstream = cp.server();
    let address = upstream.strip_prefix("https://").expect("an https server");
    let proxy = TcpProxy::start(address.parse().expect("an address")).await;
    proxy.cut();
    let kubeconfig = kubeconfig_via(&cp, node, &proxy);
    let Some(c) = start_node(cp, node, &kubeconfig, Some("127.0.0.1")).await else {
        return;
    };
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: static, namespace: default}}\n\
         spec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - {{name: main, \
         image: {TEST_IMAGE}, imagePullPolicy: Never, command: [sleep, '3600']}}\n"
    );
    std::fs::write(c.agent.manifest_dir().join("static.yaml"), manifest).unwrap();
    wait_static_pod(&c.agent, "static-", "running", all_running).await;
    c.wait_for("the agent to log that registration failed", |c| {
        c.agent
            .agent_log()
            .contains("register the node")
            .then_some(())
    })
    .await;
    assert!(
        c.agent.healthy().await,
        "the agent runs without its API server"
    );
    assert!(
        !c.kubectl(&["get", "node", node]).status.success(),
        "the node is not registered while the link is down"
    );

    proxy.restore();
    let restored = tokio::time::Instant::now();
    c.wait_for("the node to register Ready", |c| {
        let node = c.json(&["get", "node", &c.node])?;
        (condition_status(&node, "Ready") == Some("True")).then_some(())
    })
    .await;
    // Back-off is at most 7 s.
    eprintln!("registered {:?} after the link came up", restored.elapsed());
    c.wait_pod_phase(&format!("static-{node}"), "Running").await;
}

#[tokio::test]
async fn a_node_name_another_live_node_holds_is_not_taken_over_until_its_lease_expires() {
    let Some(cp) = ControlPlane::start_or_skip().await else {
        return;
    };
    let node = "berth-node-clash";
    // Another node's Node and a Lease it renewed just now, 30 s long.
    const LEASE_SECONDS: u64 = 30;
    let renewed = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string();
    // The lease runs from its renewTime, before the apply below.
    let renewed_at = tokio::time::Instant::now();
    let objects = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {node}, labels: {{owner: other}}}}\n---\n\
         apiVersion: coordination.k8s.io/v1\nkind: Lease\n\
         metadata: {{name: {node}, namespace: kube-node-lease}}\n\
         spec: {{holderIdentity: other-host, leaseDurationSeconds: {LEASE_SECONDS}, \
         renewTime: '{renewed}'}}\n"
    );
    let file = cp.dir().join("other-node.yaml");
    std::fs::write(&file, objects).unwrap();
    let out = cp.kubectl(&["apply", "-f", &file.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uid = |c: &Cluster| {
        c.json(&["get", "node", node])
            .map(|n| n["metadata"]["uid"].clone())
    };
    let kubeconfig = cp.node_kubeconfig(node);
    let Some(c) = start_node(cp, node, &kubeconfig, Some("127.0.0.1")).await else {
        return;
    };
    let other_uid = uid(&c).expect("the other node");

    let line = c
        .wait_for("the agent to refuse the node", |c| {
            c.agent
                .agent_log()
                .lines()
                .find(|l| l.contains("belongs to another node"))
                .map(str::to_owned)
        })
        .await;
    assert!(line.contains(node) && line.contains("other-host"), "{line}");
    assert!(c.agent.healthy().await, "the agent keeps running");
    assert!(
        renewed_at.elapsed() < Duration::from_secs(LEASE_SECONDS),
        "refused while the lease was live"
    );
    let other = c.json(&["get", "node", node]).expect("the other node");
    assert_eq!(other["metadata"]["uid"], other_uid, "never deleted");
    assert!(
        other["metadata"]["labels"]["kubernetes.io/os"].is_null()
            && other["status"]["nodeInfo"]["kubeletVersion"]
                .as_str()
                .unwrap_or("")
                .is_empty(),
        "the other node is left as it was: {other}"
    );
    let lease = c
        .json(&["get", "lease", "-n", "kube-node-lease", node])
        .expect("the lease");
    assert_eq!(lease["spec"]["holderIdentity"], "other-host", "{lease}");

    // Once the other node stops renewing, its Lease expires and berth
    // takes the Node over (reconciled, not made again).
    let node_now = c
        .wait_for("the node to be taken over and Ready", |c| {
            let n = c.json(&["get", "node", node])?;
            (condition_status(&n, "Ready") == Some("True")).then_some(n)
        })
        .await;
    // Not before the lease expired (the expiry is read on the wall clock,
    // this on the monotonic one: 1 s of slack).
    let taken_over = renewed_at.elapsed();
    assert!(
        taken_over >= Duration::from_secs(LEASE_SECONDS - 1),
        "taken over {taken_over:?} after the renewal, the lease lasts {LEASE_SECONDS} s"
    );
    assert_eq!(node_now["metadata"]["uid"], other_uid);
    c.wait_for("the lease to be berth's", |c| {
        let lease = c.json(&["get", "lease", "-n", "kube-node-lease", node])?;
        (lease["spec"]["holderIdentity"] == node).then_some(())
    })
    .await;
}
