//! Cluster mode: berth as the only node of a real control plane (etcd,
//! kube-apiserver, controller-manager and scheduler v1.37.2, built from
//! source by scripts/build-control-plane.sh), driven with the real
//! `kubectl` as a user would.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use berth_api::reasons;
use berth_integration::tcp_proxy::TcpProxy;
use berth_integration::*;
use berth_testkit::{ControlPlane, NodeNetns};
use serde_json::Value;

mod bad_input;
mod ephemeral;
mod eviction;
mod pull_secrets;
mod resize;
mod stats;
mod websocket_logs;

/// Long enough for a scheduled pod to start on 2 busy cores.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);

struct Cluster {
    // Dropped in this order: the node, its containerd, then the control
    // plane.
    agent: AgentProcess,
    _containerd: PrivateContainerd,
    cp: ControlPlane,
    node: String,
}

/// A control plane and one berth node joined to it, or `None` when this
/// machine has no control plane binaries or cannot run containers (and the
/// test kit is not told to require them).
async fn cluster(node: &str) -> Option<Cluster> {
    let cp = ControlPlane::start_or_skip().await?;
    let kubeconfig = cp.node_kubeconfig(node);
    join(cp, node, &kubeconfig).await
}

/// [`cluster`] with the node's kubeconfig at `kubeconfig`.
async fn join(cp: ControlPlane, node: &str, kubeconfig: &Path) -> Option<Cluster> {
    join_at(cp, node, kubeconfig, Some("127.0.0.1")).await
}

/// A berth node started with `kubeconfig` and the node's address `node_ip`
/// (by default, the default route's interface address), not waited for.
async fn start_node(
    cp: ControlPlane,
    node: &str,
    kubeconfig: &Path,
    node_ip: Option<&str>,
) -> Option<Cluster> {
    let containerd = PrivateContainerd::start_or_skip().await?;
    let port = free_port();
    let node_ip = node_ip.map(|ip| ["--node-ip".to_string(), ip.into()]);
    let options = AgentOptions {
        extra_args: [
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--node-name".into(),
            node.into(),
        ]
        .into_iter()
        .chain(node_ip.into_iter().flatten())
        .chain([
            "--client-ca-file".into(),
            cp.ca_cert_path().display().to_string(),
            "--port".into(),
            port.to_string(),
            "--cluster-dns".into(),
            "10.96.0.10".into(),
            "--cluster-domain".into(),
            "cluster.local".into(),
        ])
        .collect(),
        ..AgentOptions::default()
    };
    let agent = AgentProcess::start_with(&containerd, options).await;
    Some(Cluster {
        agent,
        _containerd: containerd,
        cp,
        node: node.into(),
    })
}

/// [`start_node`], then waits for the node to be Ready.
async fn join_at(
    cp: ControlPlane,
    node: &str,
    kubeconfig: &Path,
    node_ip: Option<&str>,
) -> Option<Cluster> {
    let cluster = start_node(cp, node, kubeconfig, node_ip).await?;
    cluster
        .wait_for("the node to be Ready", |c| {
            let node = c.json(&["get", "node", &c.node])?;
            (condition_status(&node, "Ready") == Some("True")).then_some(())
        })
        .await;
    Some(cluster)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn condition_status<'a>(object: &'a Value, type_: &str) -> Option<&'a str> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?["status"]
        .as_str()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Cluster {
    fn kubectl(&self, args: &[&str]) -> Output {
        self.cp.kubectl(args)
    }

    /// `kubectl ARGS`, which must succeed.
    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    }

    /// `kubectl ARGS -o json`, if it succeeds.
    fn json(&self, args: &[&str]) -> Option<Value> {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let out = self.kubectl(&args);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// Polls `check` until it gives a value, or fails naming `what`.
    async fn wait_for<T>(&self, what: &str, check: impl Fn(&Self) -> Option<T>) -> T {
        self.wait_for_within(CLUSTER_TIMEOUT, what, check).await
    }

    /// Waits until the API server's authorizer lets `user` get
    /// `nodes/<subresource>`: a new RBAC binding reaches it through an
    /// informer, and a node that asked too early would cache the denial.
    async fn wait_allowed(&self, subresource: &str, user: &str) {
        let subresource = format!("--subresource={subresource}");
        let user = format!("--as={user}");
        self.wait_for("the binding to take effect", |c| {
            let can_i = ["auth", "can-i", "get", "nodes", &subresource, &user];
            c.kubectl(&can_i).status.success().then_some(())
        })
        .await;
    }

    async fn wait_for_within<T>(
        &self,
        timeout: Duration,
        what: &str,
        check: impl Fn(&Self) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(value) = check(self) {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; agent log:\n{}",
                self.agent.agent_log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn wait_pod_phase(&self, name: &str, phase: &str) -> Value {
        self.wait_for(&format!("pod {name} to be {phase}"), |c| {
            let pod = c.json(&["get", "pod", name])?;
            (pod["status"]["phase"] == phase).then_some(pod)
        })
        .await
    }
}

#[tokio::test]
async fn the_node_registers_ready_with_its_facts_and_renews_its_lease() {
    let Some(c) = cluster("berth-node-a").await else {
        return;
    };
    let node = c.json(&["get", "node", &c.node]).expect("the node");
    let info = &node["status"]["nodeInfo"];
    assert!(
        info["kubeletVersion"]
            .as_str()
            .unwrap()
            .starts_with("v1.37.2"),
        "{info}"
    );
    assert!(
        info["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("containerd://"),
        "{info}"
    );
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], c.node);
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux");
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert!(
        node["status"]["capacity"]["cpu"]
            .as_str()
            .unwrap()
            .parse::<usize>()
            .unwrap()
            >= cpus
    );
    let addresses = node["status"]["addresses"].as_array().unwrap();
    assert!(
        addresses
            .iter()
            .any(|a| a["type"] == "InternalIP" && a["address"] == "127.0.0.1"),
        "{addresses:?}"
    );
    let types: Vec<&str> = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    );
    // `kubectl get nodes` as a user reads it.
    let table = c.kubectl_ok(&["get", "nodes"]);
    let row = table
        .lines()
        .find(|l| l.starts_with(&c.node))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.split_whitespace().nth(1) == Some("Ready"), "{row}");

    // The Lease is owned by the Node and renewed (every 10 s).
    let lease_args = ["get", "lease", "-n", "kube-node-lease", c.node.as_str()];
    let first = c.json(&lease_args).expect("the node's lease");
    assert_eq!(first["spec"]["holderIdentity"], c.node);
    assert_eq!(first["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(
        first["metadata"]["ownerReferences"][0]["uid"],
        node["metadata"]["uid"]
    );
    let renewed = first["spec"]["renewTime"].clone();
    c.wait_for("the lease to be renewed", |c| {
        let lease = c.json(&lease_args)?;
        (lease["spec"]["renewTime"] != renewed).then_some(())
    })
    .await;
}

#[tokio::test]
async fn kubectl_run_logs_and_delete_work_on_the_berth_node() {
    let Some(c) = cluster("berth-node-b").await else {
        return;
    };
    let script = "echo hello; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; \
                  test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo token-present; \
                  echo service=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; \
                  i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done";
    c.kubectl_ok(&[
        "run",
        "web",
        &format!("--image={TEST_IMAGE}"),
        "--image-pull-policy=Never",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let pod = c.wait_pod_phase("web", "Running").await;
    assert_eq!(pod["spec"]["nodeName"], c.node);
    // The status says which generation of the spec it reflects.
    c.wait_for("status.observedGeneration 1", |c| {
        let pod = c.json(&["get", "pod", "web"])?;
        (pod["status"]["observedGeneration"] == 1).then_some(())
    })
    .await;
    // An update of the spec through the API server bumps the generation;
    // the status catches up with it, on the kubelet's conditions too.
    c.kubectl_ok(&[
        "patch",
        "pod",
        "web",
        "-p",
        r#"{"spec":{"activeDeadlineSeconds":3600}}"#,
    ]);
    c.wait_for("status.observedGeneration 2", |c| {
        let pod = c.json(&["get", "pod", "web"])?;
        assert_eq!(pod["metadata"]["generation"], 2, "{pod}");
        let ready = pod["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?
            .clone();
        (pod["status"]["observedGeneration"] == 2 && ready["observedGeneration"] == 2).then_some(())
    })
    .await;
    let ip = pod["status"]["podIP"].as_str().expect("a pod IP");
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
    assert_eq!(pod["status"]["hostIP"], "127.0.0.1");
    // `get pods -o wide` shows the IP and the node.
    let wide = c.kubectl_ok(&["get", "pods", "-o", "wide"]);
    let row = wide.lines().find(|l| l.starts_with("web")).unwrap();
    assert!(row.contains(ip) && row.contains(&c.node), "{wide}");

    // The node's events reach the API server, from the kubelet on this node.
    let started = c
        .wait_for("the Started event", |c| {
            let list = c.json(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=web",
            ])?;
            list["items"]
                .as_array()?
                .iter()
                .find(|e| e["reason"] == reasons::STARTED)
                .cloned()
        })
        .await;
    assert_eq!(started["source"]["component"], "kubelet");
    assert_eq!(started["source"]["host"], c.node);
    assert_eq!(
        started["involvedObject"]["fieldPath"],
        "spec.containers{web}"
    );
    // Its service account volume was awaited quietly, as the kubelet's
    // volume manager waits: no FailedMount on the way.
    let events = c.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
    ]);
    assert!(!events.contains(reasons::FAILED_MOUNT), "{events}");

    // Logs come through the API server from berth's kubelet API; the
    // projected service account volume was written.
    let logs = c
        .wait_for("the pod's logs", |c| {
            let out = c.kubectl(&["logs", "web"]);
            let text = stdout(&out);
            (out.status.success() && text.contains("tick 3")).then_some(text)
        })
        .await;
    assert!(
        logs.starts_with("hello\ndefault\ntoken-present\nservice=10.96.0.1:443\n"),
        "{logs}"
    );
    let tail = c.kubectl_ok(&["logs", "web", "--tail=1"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.starts_with("tick "), "{tail}");

    // The kubelet API's running view (upstream's e2e reads it, through the
    // API server's node proxy, to count a node's pods), as a caller with
    // the kubelet API admin role sees it.
    c.kubectl_ok(&["create", "serviceaccount", "node-reader"]);
    c.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "node-reader",
        "--clusterrole=system:kubelet-api-admin",
        "--serviceaccount=default:node-reader",
    ]);
    c.wait_allowed("pods", "system:serviceaccount:default:node-reader")
        .await;
    let token = c.kubectl_ok(&["create", "token", "node-reader"]);
    let node = c.json(&["get", "node", &c.node]).unwrap();
    let port = &node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"];
    let raw = c
        .wait_for("the running pods", |_| {
            let out = std::process::Command::new("curl")
                .args(["-sfk", "-H"])
                .arg(format!("Authorization: Bearer {}", token.trim()))
                .arg(format!("https://127.0.0.1:{port}/runningpods/"))
                .output()
                .expect("run curl");
            out.status.success().then(|| stdout(&out))
        })
        .await;
    let running: Value = serde_json::from_str(&raw).expect("a PodList");
    let web = running["items"]
        .as_array()
        .and_then(|items| items.iter().find(|p| p["metadata"]["name"] == "web"))
        .unwrap_or_else(|| panic!("web is not among the running pods: {raw}"));
    assert_eq!(web["metadata"]["uid"], pod["metadata"]["uid"]);
    assert_eq!(web["spec"]["containers"][0]["name"], "web");

    // exec through the API server, proxied over WebSocket to the node:
    // output, and the command's exit code as kubectl's.
    let hostname = c.kubectl_ok(&["exec", "web", "--", "cat", "/etc/hostname"]);
    assert_eq!(hostname.trim(), "web");
    let failed = c.kubectl(&["exec", "web", "--", "sh", "-c", "echo oops >&2; exit 3"]);
    assert_eq!(failed.status.code(), Some(3), "{failed:?}");
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("oops"),
        "{failed:?}"
    );

    // A status someone else changed (as the node controller marks pods not
    // ready after an outage) is repaired by the node.
    c.kubectl_ok(&[
        "patch",
        "pod",
        "web",
        "--subresource=status",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#,
    ]);
    c.wait_for("the Ready condition to be repaired", |c| {
        let pod = c.json(&["get", "pod", "web"])?;
        (condition_status(&pod, "Ready") == Some("True")).then_some(())
    })
    .await;

    // A readiness gate: Ready waits for the condition someone else sets,
    // and the node keeps that condition; the kubelet's conditions carry
    // no reason left over from before.
    c.kubectl_ok(&[
        "run",
        "gated",
        &format!("--image={TEST_IMAGE}"),
        "--image-pull-policy=Never",
        r#"--overrides={"spec":{"readinessGates":[{"conditionType":"example.com/gate"}]}}"#,
        "--",
        "sleep",
        "3600",
    ]);
    let gated = c
        .wait_for("gated to wait for its gate", |c| {
            let pod = c.json(&["get", "pod", "gated"])?;
            (condition_status(&pod, "ContainersReady") == Some("True")).then_some(pod)
        })
        .await;
    assert_eq!(
        condition_status(&gated, "Ready"),
        Some("False"),
        "{gated:#}"
    );
    c.kubectl_ok(&[
        "patch",
        "pod",
        "gated",
        "--subresource=status",
        "-p",
        r#"{"status":{"conditions":[{"type":"example.com/gate","status":"True"}]}}"#,
    ]);
    let gated = c
        .wait_for("gated to be Ready", |c| {
            let pod = c.json(&["get", "pod", "gated"])?;
            (condition_status(&pod, "Ready") == Some("True")).then_some(pod)
        })
        .await;
    assert_eq!(condition_status(&gated, "example.com/gate"), Some("True"));
    let conditions = gated["status"]["conditions"].as_array().unwrap();
    for condition in conditions.iter().filter(|c| c["status"] == "True") {
        assert!(condition["reason"].is_null(), "{gated:#}");
    }
    c.kubectl_ok(&["delete", "pod", "gated", "--grace-period=0"]);

    // ClusterFirst: the cluster's DNS and search path.
    let resolv = c.kubectl_ok(&["exec", "web", "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.starts_with("nameserver 10.96.0.10\n"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");

    // The shell ignores SIGTERM: the grace period is waited out, then the
    // pod is killed and deleted from the API server.
    let started = tokio::time::Instant::now();
    c.kubectl_ok(&["delete", "pod", "web", "--grace-period=2"]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(20),
        "delete took {took:?}"
    );
    let gone = c.kubectl(&["get", "pod", "web"]);
    assert!(
        !gone.status.success(),
        "the pod is gone from the API server"
    );
    assert!(list_pods(&c.agent).await.is_empty(), "and from the node");
}

#[tokio::test]
async fn the_kubelet_api_refuses_anonymous_and_unauthorized_callers() {
    let Some(c) = cluster("berth-node-c").await else {
        return;
    };
    let node = c.json(&["get", "node", &c.node]).unwrap();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .expect("the kubelet port");
    let base = format!("https://127.0.0.1:{port}");
    let curl_at = |path: &str, extra: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(extra)
            .arg(format!("{base}{path}"))
            .output()
            .expect("run curl");
        stdout(&out)
    };
    let curl = |extra: &[&str]| curl_at("/pods", extra);
    assert_eq!(curl(&[]), "401", "anonymous");
    assert_eq!(
        curl(&["-H", "Authorization: Bearer not-a-token"]),
        "401",
        "a token the API server does not know"
    );
    // A real token of a service account without rights on nodes.
    let token = c.kubectl_ok(&["create", "token", "default", "-n", "default"]);
    let header = format!("Authorization: Bearer {}", token.trim());
    assert_eq!(curl(&["-H", &header]), "403", "unauthorized");
    assert_eq!(
        curl_at("/metrics", &["-H", &header]),
        "403",
        "metrics are authorized too"
    );
    // The refusal names every subresource that would have allowed the path,
    // as the kubelet's: its own (KubeletFineGrainedAuthz), then proxy.
    let body = std::process::Command::new("curl")
        .args(["-sk", "-H", &header])
        .arg(format!("{base}/pods"))
        .output()
        .expect("run curl");
    assert_eq!(
        stdout(&body),
        "Forbidden (user=system:serviceaccount:default:default, verb=get, resource=nodes, subresource(s)=[pods proxy])\n"
    );
    // nodes/healthz opens /healthz, and nothing else.
    c.kubectl_ok(&[
        "create",
        "clusterrole",
        "healthz-reader",
        "--verb=get",
        "--resource=nodes/healthz",
    ]);
    c.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "healthz-reader",
        "--clusterrole=healthz-reader",
        "--serviceaccount=default:default",
    ]);
    c.wait_allowed("healthz", "system:serviceaccount:default:default")
        .await;
    assert_eq!(
        curl_at("/healthz", &["-H", &header]),
        "200",
        "nodes/healthz"
    );
    assert_eq!(curl_at("/pods", &["-H", &header]), "403", "not nodes/pods");

    // The API server's kubelet client certificate reads the node's metrics,
    // in the classic format.
    let pki = c.cp.dir().join("pki");
    let out = std::process::Command::new("curl")
        .args(["-sSk", "--fail", "--cert"])
        .arg(pki.join("apiserver-kubelet-client.crt"))
        .arg("--key")
        .arg(pki.join("apiserver-kubelet-client.key"))
        .arg(format!("{base}/metrics"))
        .output()
        .expect("run curl");
    let metrics = stdout(&out);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        metrics.contains("# TYPE kubelet_running_pods gauge\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "kubelet_http_requests_total{method=\"GET\",path=\"metrics\",server_type=\"readwrite\",long_running=\"false\"}"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn after_kill_9_the_node_keeps_its_pods_and_stops_those_deleted_meanwhile() {
    let Some(mut c) = cluster("berth-node-d").await else {
        return;
    };
    for name in ["stays", "goes"] {
        c.kubectl_ok(&[
            "run",
            name,
            &format!("--image={TEST_IMAGE}"),
            "--image-pull-policy=Never",
            "--",
            "sleep",
            "3600",
        ]);
    }
    let before = c.wait_pod_phase("stays", "Running").await;
    c.wait_pod_phase("goes", "Running").await;
    let id = container_id(&before, "stays").expect("a container id");

    c.agent.kill().await;
    // Deleted while the node is down: the API server waits for the node.
    c.kubectl_ok(&["delete", "pod", "goes", "--wait=false"]);
    c.agent.launch().await;

    // The node is back, the pod that stays was adopted, not restarted, and
    // the deleted one is stopped and finally deleted.
    c.wait_for("the pod deleted meanwhile to be gone", |c| {
        (!c.kubectl(&["get", "pod", "goes"]).status.success()).then_some(())
    })
    .await;
    let after = c.wait_pod_phase("stays", "Running").await;
    assert_eq!(restart_count(&after, "stays"), 0);
    assert_eq!(container_id(&after, "stays"), Some(id));
    let node = c.json(&["get", "node", &c.node]).unwrap();
    assert_eq!(condition_status(&node, "Ready"), Some("True"));
    let names: Vec<String> = list_pods(&c.agent)
        .await
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names, ["stays"]);
}

#[tokio::test]
async fn a_static_pod_gets_a_mirror_pod_made_again_when_deleted_and_gone_with_it() {
    let Some(c) = cluster("berth-node-e").await else {
        return;
    };
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static\n  namespace: default\n\
         spec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: {TEST_IMAGE}\n    \
         imagePullPolicy: Never\n    command: [sleep, '3600']\n"
    );
    let file = c.agent.manifest_dir().join("static.yaml");
    std::fs::write(&file, manifest).unwrap();
    let name = format!("static-{}", c.node);

    // The mirror shows the static pod's status, and is owned by the Node.
    let mirror = c.wait_pod_phase(&name, "Running").await;
    let annotations = &mirror["metadata"]["annotations"];
    assert!(
        annotations["kubernetes.io/config.mirror"].is_string(),
        "{annotations}"
    );
    assert_eq!(mirror["metadata"]["ownerReferences"][0]["kind"], "Node");
    let first_uid = mirror["metadata"]["uid"].clone();
    let local = list_pods(&c.agent).await;
    assert_eq!(local.len(), 1, "the mirror is not run as a pod: {local:?}");

    // Deleting the mirror deletes the API object only: it comes back, the
    // static pod runs on.
    c.kubectl_ok(&["delete", "pod", &name, "--wait=false"]);
    c.wait_for("the mirror to be made again", |c| {
        let pod = c.json(&["get", "pod", &name])?;
        (pod["metadata"]["uid"] != first_uid && pod["status"]["phase"] == "Running").then_some(())
    })
    .await;

    // Its manifest removed, the static pod and its mirror go.
    std::fs::remove_file(&file).unwrap();
    c.wait_for("the mirror to go", |c| {
        (!c.kubectl(&["get", "pod", &name]).status.success()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_pod_with_a_volume_berth_cannot_run_is_rejected_naming_the_field() {
    let Some(c) = cluster("berth-node-f").await else {
        return;
    };
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nfs", "namespace": "default"},
        "spec": {
            "nodeName": c.node,
            "containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sleep", "3600"]}],
            "volumes": [{"name": "share", "nfs": {"server": "192.0.2.9", "path": "/x"}}],
        },
    });
    let file = c.agent.work_dir().join("nfs.json");
    std::fs::create_dir_all(c.agent.work_dir()).unwrap();
    std::fs::write(&file, pod.to_string()).unwrap();
    c.kubectl_ok(&["create", "-f", &file.display().to_string()]);
    let failed = c.wait_pod_phase("nfs", "Failed").await;
    assert_eq!(failed["status"]["reason"], "UnsupportedPodSpec");
    let message = failed["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Pod was rejected: ") && message.contains("spec.volumes[0].nfs"),
        "{message}"
    );
    // The agent runs on, and the rejected pod can be deleted.
    c.kubectl_ok(&["delete", "pod", "nfs"]);
    let node = c.json(&["get", "node", &c.node]).unwrap();
    assert_eq!(condition_status(&node, "Ready"), Some("True"));
}

#[tokio::test]
async fn env_and_volumes_read_the_pods_configmaps_and_secrets() {
    let Some(c) = cluster("berth-node-g").await else {
        return;
    };
    c.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=fast",
    ]);
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=pw=s3cret",
    ]);
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reader", "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": TEST_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c",
                    "echo mode=$MODE pw=$PW; echo file=$(cat /cfg/mode); \
                     echo secret=$(cat /sec/pw); sleep 3600"],
                "env": [
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                    {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pw"}}},
                ],
                "volumeMounts": [
                    {"name": "cfg", "mountPath": "/cfg"},
                    {"name": "sec", "mountPath": "/sec"},
                ],
            }],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "settings"}},
                {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 256}},
            ],
        },
    });
    let file = c.agent.work_dir().join("reader.json");
    std::fs::create_dir_all(c.agent.work_dir()).unwrap();
    std::fs::write(&file, pod.to_string()).unwrap();
    c.kubectl_ok(&["create", "-f", &file.display().to_string()]);
    c.wait_pod_phase("reader", "Running").await;
    let logs = c
        .wait_for("the reader's output", |c| {
            let text = stdout(&c.kubectl(&["logs", "reader"]));
            text.contains("secret=").then_some(text)
        })
        .await;
    assert_eq!(logs, "mode=fast pw=s3cret\nfile=fast\nsecret=s3cret\n");
    // The secret file has its defaultMode (0400), and the mounts are
    // read-only whatever the spec says.
    let mode = c.kubectl_ok(&["exec", "reader", "--", "stat", "-L", "-c", "%a", "/sec/pw"]);
    assert_eq!(mode.trim(), "400");
    let write = c.kubectl(&["exec", "reader", "--", "touch", "/cfg/new"]);
    assert!(!write.status.success(), "the configMap volume is read-only");

    // An edit of the configMap reaches the running pod's volume within the
    // refresh period (a minute, as the kubelet's sync), not its env.
    c.kubectl_ok(&[
        "patch",
        "configmap",
        "settings",
        "-p",
        r#"{"data":{"mode":"slow"}}"#,
    ]);
    c.wait_for_within(
        Duration::from_secs(100),
        "the edited configMap in the volume",
        |c| {
            let out = c.kubectl(&["exec", "reader", "--", "cat", "/cfg/mode"]);
            (stdout(&out) == "slow").then_some(())
        },
    )
    .await;
    let env = c.kubectl_ok(&["exec", "reader", "--", "sh", "-c", "echo $MODE"]);
    assert_eq!(env.trim(), "fast");
}

#[tokio::test]
async fn env_from_reads_whole_configmaps_and_secrets_under_env() {
    let Some(c) = cluster("berth-node-h").await else {
        return;
    };
    let settings = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "default"},
        "data": {"mode": "fast", "log.level": "debug"},
        // Not read into env, as the kubelet reads only `data`.
        "binaryData": {"blob": "AAEC"},
    });
    let dir = c.agent.work_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("settings.json");
    std::fs::write(&file, settings.to_string()).unwrap();
    c.kubectl_ok(&["create", "-f", &file.display().to_string()]);
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=pw=s3cret",
        "--from-literal=mode=secret",
    ]);
    let pod = |name: &str, env_from: Value| {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "enableServiceLinks": false,
                "containers": [{
                    "name": "main",
                    "image": TEST_IMAGE,
                    "imagePullPolicy": "Never",
                    // The environment as given, which a shell's own `env`
                    // would filter to identifiers.
                    "command": ["sh", "-c",
                        "tr '\\0' '\\n' </proc/1/environ | grep -E '^(mode|pw|blob|log|CFG_|MODE)' | sort; \
                         echo done; sleep 3600"],
                    "envFrom": env_from,
                    "env": [{"name": "MODE", "value": "$(CFG_mode)+$(mode)"}],
                }],
            },
        })
    };
    let create = |pod: Value| {
        let name = pod["metadata"]["name"].as_str().unwrap().to_string();
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, pod.to_string()).unwrap();
        c.kubectl_ok(&["create", "-f", &file.display().to_string()]);
    };
    create(pod(
        "reader",
        serde_json::json!([
            {"configMapRef": {"name": "settings"}},
            {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
            {"secretRef": {"name": "creds"}},
            {"configMapRef": {"name": "absent", "optional": true}},
        ]),
    ));
    create(pod(
        "missing",
        serde_json::json!([{"configMapRef": {"name": "absent"}}]),
    ));

    c.wait_pod_phase("reader", "Running").await;
    let logs = c
        .wait_for("the reader's output", |c| {
            let text = stdout(&c.kubectl(&["logs", "reader"]));
            text.contains("done").then_some(text)
        })
        .await;
    // Later sources replace earlier keys, env overrides and refers to them,
    // and keys that are no C identifiers are kept (relaxed names).
    assert_eq!(
        logs,
        "CFG_log.level=debug\nCFG_mode=fast\nMODE=fast+secret\nlog.level=debug\n\
         mode=secret\npw=s3cret\ndone\n"
    );

    // A missing object that is not optional stops the container with the
    // kubelet's reason and message.
    let waiting = c
        .wait_for("the missing configMap to be reported", |c| {
            let pod = c.json(&["get", "pod", "missing"])?;
            let state = pod["status"]["containerStatuses"][0]["state"]["waiting"].clone();
            (state["reason"] == "CreateContainerConfigError").then_some(state)
        })
        .await;
    assert_eq!(waiting["message"], r#"configmaps "absent" not found"#);
}

#[tokio::test]
async fn resource_field_refs_read_limits_and_the_nodes_allocatable() {
    let Some(c) = cluster("berth-node-i").await else {
        return;
    };
    let resource = |resource: &str, divisor: &str, container: &str| serde_json::json!({"containerName": container, "resource": resource, "divisor": divisor});
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sized", "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": TEST_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c",
                        "echo env=$CPU,$MEM_REQ,$NODE_MEM; \
                         echo file=$(cat /info/cpu),$(cat /info/node-cpu); sleep 3600"],
                    "resources": {
                        "limits": {"cpu": "250m", "memory": "64Mi"},
                        "requests": {"cpu": "100m", "memory": "32Mi"},
                    },
                    "env": [
                        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                        {"name": "MEM_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory", "divisor": "1Mi"}}},
                        {"name": "NODE_MEM", "valueFrom": {"resourceFieldRef": resource("limits.memory", "1Ki", "side")}},
                    ],
                    "volumeMounts": [{"name": "info", "mountPath": "/info"}],
                },
                {
                    "name": "side",
                    "image": TEST_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", "echo ips=$POD_IPS,$HOST_IPS; sleep 3600"],
                    "env": [
                        {"name": "POD_IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
                        {"name": "HOST_IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIPs"}}},
                    ],
                },
            ],
            "volumes": [{"name": "info", "downwardAPI": {"items": [
                {"path": "cpu", "resourceFieldRef": resource("limits.cpu", "1m", "main")},
                {"path": "node-cpu", "resourceFieldRef": resource("limits.cpu", "1m", "side")},
            ]}}],
        },
    });
    let dir = c.agent.work_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sized.json");
    std::fs::write(&file, pod.to_string()).unwrap();
    c.kubectl_ok(&["create", "-f", &file.display().to_string()]);
    c.wait_pod_phase("sized", "Running").await;
    let logs = c
        .wait_for("the pod's output", |c| {
            let text = stdout(&c.kubectl(&["logs", "sized", "-c", "main"]));
            text.contains("file=").then_some(text)
        })
        .await;

    // A limit the container does not set reads as the Node's allocatable.
    let node = c.json(&["get", "node", &c.node]).unwrap();
    let allocatable = &node["status"]["allocatable"];
    let memory_ki = allocatable["memory"]
        .as_str()
        .unwrap()
        .strip_suffix("Ki")
        .unwrap();
    let cpus: u64 = allocatable["cpu"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        logs,
        format!("env=250,32,{memory_ki}\nfile=250,{}\n", cpus * 1000)
    );

    // The IP field paths read as the status reports the IPs.
    let pod = c.json(&["get", "pod", "sized"]).unwrap();
    let (pod_ip, host_ip) = (&pod["status"]["podIP"], &pod["status"]["hostIP"]);
    let side = stdout(&c.kubectl(&["logs", "sized", "-c", "side"]));
    assert_eq!(
        side,
        format!(
            "ips={},{}\n",
            pod_ip.as_str().unwrap(),
            host_ip.as_str().unwrap()
        )
    );
}

/// The node lifecycle controller's `node-monitor-grace-period` (50 s by
/// default; the test kit keeps the default), plus its 5 s monitor period
/// and the up to 10 s since the last Lease renewal.
const NODE_UNKNOWN_WITHIN: Duration = Duration::from_secs(50 + 5 + 10);

/// The node's Ready condition: status and reason.
fn ready_condition(c: &Cluster) -> Option<(String, String)> {
    let node = c.json(&["get", "node", &c.node])?;
    let ready = node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .clone();
    Some((
        ready["status"].as_str()?.to_string(),
        ready["reason"].as_str().unwrap_or_default().to_string(),
    ))
}

fn pod_ready(pod: &Value) -> Option<&str> {
    condition_status(pod, "Ready")
}

#[tokio::test]
async fn after_kill_9_the_node_goes_unknown_and_the_restarted_agent_makes_it_ready() {
    let Some(mut c) = cluster("berth-node-j").await else {
        return;
    };
    c.kubectl_ok(&[
        "run",
        "steady",
        &format!("--image={TEST_IMAGE}"),
        "--image-pull-policy=Never",
        "--",
        "sleep",
        "3600",
    ]);
    let before = c.wait_pod_phase("steady", "Running").await;
    let id = container_id(&before, "steady").expect("a container id");
    let pid = task_pid(&c.agent, &id).expect("a task");

    c.agent.kill().await;
    let killed = tokio::time::Instant::now();
    // No heartbeat for the grace period: the node controller marks the
    // node Unknown and the pods on it not ready.
    c.wait_for_within(NODE_UNKNOWN_WITHIN, "the node to go Unknown", |c| {
        let (status, reason) = ready_condition(c)?;
        (status == "Unknown").then_some(reason)
    })
    .await;
    let unknown_after = killed.elapsed();
    eprintln!("the node went Unknown {unknown_after:?} after kill -9");
    c.wait_for("the pod to be marked not ready", |c| {
        let pod = c.json(&["get", "pod", "steady"])?;
        (pod_ready(&pod) == Some("False")).then_some(())
    })
    .await;
    // The pod's container ran on all along.
    assert_eq!(task_pid(&c.agent, &id), Some(pid));
    assert_eq!(task_status(&c.agent, &id).as_deref(), Some("RUNNING"));

    c.agent.launch().await;
    let relaunched = tokio::time::Instant::now();
    c.wait_for("the node to be Ready again", |c| {
        let (status, _) = ready_condition(c)?;
        (status == "True").then_some(())
    })
    .await;
    eprintln!("Ready again {:?} after the restart", relaunched.elapsed());
    // The restarted agent adopts the container and reports it ready again.
    let after = c
        .wait_for("the pod to be ready again", |c| {
            let pod = c.json(&["get", "pod", "steady"])?;
            (pod_ready(&pod) == Some("True")).then_some(pod)
        })
        .await;
    assert_eq!(after["status"]["phase"], "Running");
    assert_eq!(restart_count(&after, "steady"), 0);
    assert_eq!(container_id(&after, "steady"), Some(id.clone()));
    assert_eq!(task_pid(&c.agent, &id), Some(pid));
    // The node controller lifts its unreachable taint.
    c.wait_for("the unreachable taint to go", |c| {
        let node = c.json(&["get", "node", &c.node])?;
        let taints = node["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (!taints
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable"))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn cut_from_the_api_server_the_node_keeps_its_pods_and_resyncs_on_reconnect() {
    let Some(cp) = ControlPlane::start_or_skip().await else {
        return;
    };
    // The node reaches its API server only through a link the test cuts.
    let node = "berth-node-k";
    let upstream = cp.server();
    let address = upstream.strip_prefix("https://").expect("an https server");
    let proxy = TcpProxy::start(address.parse().expect("an address")).await;
    let kubeconfig = cp.dir().join("node-via-proxy.kubeconfig");
    let text = std::fs::read_to_string(cp.node_kubeconfig(node)).unwrap();
    let via = format!("https://127.0.0.1:{}", proxy.port());
    std::fs::write(&kubeconfig, text.replace(&upstream, &via)).unwrap();
    let Some(c) = join(cp, node, &kubeconfig).await else {
        return;
    };
    for name in ["stays", "goes"] {
        c.kubectl_ok(&[
            "run",
            name,
            &format!("--image={TEST_IMAGE}"),
            "--image-pull-policy=Never",
            "--",
            "sleep",
            "3600",
        ]);
    }
    let before = c.wait_pod_phase("stays", "Running").await;
    c.wait_pod_phase("goes", "Running").await;
    let id = container_id(&before, "stays").expect("a container id");
    let pid = task_pid(&c.agent, &id).expect("a task");

    proxy.cut();
    c.wait_for_within(NODE_UNKNOWN_WITHIN, "the node to go Unknown", |c| {
        let (status, _) = ready_condition(c)?;
        (status == "Unknown").then_some(())
    })
    .await;
    c.wait_for("the pod to be marked not ready", |c| {
        let pod = c.json(&["get", "pod", "stays"])?;
        (pod_ready(&pod) == Some("False")).then_some(())
    })
    .await;
    // Deleted while the node cannot hear of it.
    c.kubectl_ok(&["delete", "pod", "goes", "--wait=false"]);
    // The agent ran on, and so did the pods.
    assert!(c.agent.healthy().await, "the agent is up while cut off");
    assert_eq!(task_pid(&c.agent, &id), Some(pid));

    proxy.restore();
    let restored = tokio::time::Instant::now();
    c.wait_for("the node to be Ready again", |c| {
        let (status, _) = ready_condition(c)?;
        (status == "True").then_some(())
    })
    .await;
    eprintln!(
        "Ready again {:?} after the link came back",
        restored.elapsed()
    );
    let after = c
        .wait_for("the pod to be ready again", |c| {
            let pod = c.json(&["get", "pod", "stays"])?;
            (pod_ready(&pod) == Some("True")).then_some(pod)
        })
        .await;
    assert_eq!(restart_count(&after, "stays"), 0);
    assert_eq!(task_pid(&c.agent, &id), Some(pid));
    // The relist finds the deletion: the pod is stopped and finally deleted.
    c.wait_for("the pod deleted meanwhile to be gone", |c| {
        (!c.kubectl(&["get", "pod", "goes"]).status.success()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn kubectl_exec_attach_and_port_forward_stream_through_the_api_server() {
    let Some(c) = cluster("berth-node-s").await else {
        return;
    };
    c.kubectl_ok(&[
        "run",
        "shell",
        &format!("--image={TEST_IMAGE}"),
        "--image-pull-policy=Never",
        "--",
        "sleep",
        "3600",
    ]);
    c.wait_pod_phase("shell", "Running").await;

    // stdin through `cat`; its end (kubectl's v5 close) ends the command.
    let out = kubectl_with_input(
        &c.cp,
        &[
            "exec",
            "-i",
            "shell",
            "--",
            "sh",
            "-c",
            "cat; echo done >&2",
        ],
        b"through the API server\n",
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "through the API server\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "done\n");

    // An interactive shell on a terminal: typed at, resized, exit code.
    let mut terminal = berth_integration::pty::Terminal::spawn(
        &c.cp.kubectl_command(&["exec", "-it", "shell", "--", "sh"]),
        80,
        24,
    );
    berth_integration::pty::drive_shell(&mut terminal, CLUSTER_TIMEOUT).await;

    // attach: the output from now on, until the container stops.
    let talker =
        "i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); echo tick $i; sleep 0.2; done; echo bye";
    c.kubectl_ok(&[
        "run",
        "talker",
        "--restart=Never",
        &format!("--image={TEST_IMAGE}"),
        "--image-pull-policy=Never",
        "--",
        "sh",
        "-c",
        talker,
    ]);
    c.wait_pod_phase("talker", "Running").await;
    c.wait_for("a few ticks", |c| {
        stdout(&c.kubectl(&["logs", "talker"]))
            .contains("tick 3")
            .then_some(())
    })
    .await;
    let attach = tokio::process::Command::from(c.cp.kubectl_command(&["attach", "talker"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    c.wait_for("more ticks", |c| {
        stdout(&c.kubectl(&["logs", "talker"]))
            .contains("tick 8")
            .then_some(())
    })
    .await;
    c.kubectl_ok(&["exec", "talker", "--", "touch", "/tmp/stop"]);
    let out = tokio::time::timeout(CLUSTER_TIMEOUT, attach.wait_with_output())
        .await
        .expect("kubectl attach did not end with the container")
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(text.ends_with("bye\n") && text.contains("tick "), "{out:?}");
    assert!(!text.lines().any(|l| l == "tick 1"), "{text}");

    // run -i --rm: attach -i to a stdinOnce container, whose stdin ends
    // with kubectl's input.
    let image = format!("--image={TEST_IMAGE}");
    let out = kubectl_with_input(
        &c.cp,
        &[
            "run",
            "once",
            "-i",
            "--rm",
            "--restart=Never",
            &image,
            "--image-pull-policy=Never",
            "--",
            "sh",
            "-c",
            "while read x; do echo got $x; done; echo eof",
        ],
        b"hello\n",
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).starts_with("got hello\neof\n"), "{out:?}");

    // port-forward: SPDY tunneled in the WebSocket, to a port the pod
    // binds only on its own loopback.
    let web = "mkdir -p /www && echo hello-through-kubectl > /www/index.html \
               && exec httpd -f -p 127.0.0.1:8080 -h /www";
    c.kubectl_ok(&[
        "run",
        "web",
        &format!("--image={TEST_IMAGE}"),
        "--image-pull-policy=Never",
        "--",
        "sh",
        "-c",
        web,
    ]);
    c.wait_pod_phase("web", "Running").await;
    let mut forward =
        tokio::process::Command::from(c.cp.kubectl_command(&["port-forward", "pod/web", ":8080"]))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
        forward.stdout.take().unwrap(),
    ));
    let line = tokio::time::timeout(CLUSTER_TIMEOUT, lines.next_line())
        .await
        .expect("kubectl port-forward did not start")
        .unwrap()
        .unwrap_or_default();
    let local: u16 = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.strip_suffix(" -> 8080"))
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    for _ in 0..2 {
        let response = http_get("127.0.0.1", local, "/index.html", CLUSTER_TIMEOUT).await;
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("hello-through-kubectl"), "{response}");
    }
}

/// A berth node in a network namespace of its own (its own interfaces,
/// routes and pod bridge, as on a machine of its own), with its own node
/// certificate and containerd. The API server's loopback port is forwarded
/// to the node's own loopback, so its kubeconfig is the usual one; the API
/// server reaches the node's kubelet API at the node's InternalIP.
struct NetnsNode {
    // Dropped in this order: the agent, its containerd, its link to the
    // API server, then its namespace.
    agent: AgentProcess,
    _containerd: PrivateContainerd,
    _api_link: TcpProxy,
    netns: NodeNetns,
    name: String,
}

async fn node_in_netns(cp: &ControlPlane, name: &str) -> Option<NetnsNode> {
    let containerd = PrivateContainerd::start_or_skip().await?;
    let netns = NodeNetns::create();
    let creds = cp.node_credentials(name).expect("node credentials");
    let api_port: u16 = cp
        .server()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the API server's port");
    let listener = netns
        .bind_loopback(api_port)
        .expect("the API server's port in the node's namespace");
    let api_link = TcpProxy::serve(listener, ([127, 0, 0, 1], api_port).into());
    let path = |p: &Path| p.display().to_string();
    let options = AgentOptions {
        // No --node-ip: the node finds its address on its default route,
        // and the kubelet port is the usual one, the node's own.
        extra_args: vec![
            "--kubeconfig".into(),
            path(&creds.kubeconfig),
            "--node-name".into(),
            name.into(),
            "--tls-cert-file".into(),
            path(&creds.serving_cert),
            "--tls-private-key-file".into(),
            path(&creds.serving_key),
            "--client-ca-file".into(),
            path(&cp.ca_cert_path()),
            "--port".into(),
            "10250".into(),
        ],
        netns: Some(netns.path()),
        ..AgentOptions::default()
    };
    let agent = AgentProcess::start_with(&containerd, options).await;
    Some(NetnsNode {
        agent,
        _containerd: containerd,
        _api_link: api_link,
        netns,
        name: name.into(),
    })
}

/// Polls `check` until it gives a value, or fails naming `what` with the
/// nodes' logs.
async fn wait_nodes<T>(nodes: &[&NetnsNode], what: &str, check: impl Fn() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + CLUSTER_TIMEOUT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            let logs: Vec<String> = nodes
                .iter()
                .map(|n| format!("--- {}:\n{}", n.name, n.agent.agent_log()))
                .collect();
            panic!(
                "timed out waiting for {what}; agent logs:\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn kubectl_json(cp: &ControlPlane, args: &[&str]) -> Option<Value> {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let out = cp.kubectl(&args);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

// Multi-threaded: the nodes' links to the API server are served by this
// runtime while the test waits on kubectl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_in_their_own_network_namespaces_register_and_run_the_pods_sent_to_each() {
    let Some(cp) = ControlPlane::start_or_skip().await else {
        return;
    };
    let Some(a) = node_in_netns(&cp, "berth-netns-a").await else {
        return;
    };
    let Some(b) = node_in_netns(&cp, "berth-netns-b").await else {
        return;
    };
    let nodes = [&a, &b];
    for node in nodes {
        let facts = wait_nodes(&nodes, &format!("{} to be Ready", node.name), || {
            let object = kubectl_json(&cp, &["get", "node", &node.name])?;
            (condition_status(&object, "Ready") == Some("True")).then_some(object)
        })
        .await;
        // Its InternalIP is its own eth0's, found on its default route.
        let addresses = facts["status"]["addresses"].as_array().unwrap();
        assert!(
            addresses
                .iter()
                .any(|x| x["type"] == "InternalIP" && x["address"] == node.netns.node_ip()),
            "{}: {addresses:?}",
            node.name
        );
        assert_eq!(
            facts["metadata"]["labels"]["kubernetes.io/hostname"],
            node.name
        );
    }
    let table = cp.kubectl(&["get", "nodes"]);
    let table = stdout(&table);
    for node in nodes {
        let row = table.lines().find(|l| l.starts_with(&node.name));
        assert!(
            row.is_some_and(|r| r.split_whitespace().nth(1) == Some("Ready")),
            "{table}"
        );
    }

    // One pod by nodeName, one by nodeSelector (through the scheduler).
    let pod = |name: &str, placement: Value| {
        let mut spec = serde_json::json!({
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": TEST_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", "echo on $(hostname); sleep 3600"],
            }],
        });
        spec.as_object_mut()
            .unwrap()
            .extend(placement.as_object().unwrap().clone());
        let pod = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        });
        let file = cp.dir().join(format!("{name}.json"));
        std::fs::write(&file, pod.to_string()).unwrap();
        let out = cp.kubectl(&["create", "-f", &file.display().to_string()]);
        assert!(out.status.success(), "{out:?}");
    };
    pod("on-a", serde_json::json!({"nodeName": a.name}));
    pod(
        "on-b",
        serde_json::json!({"nodeSelector": {"kubernetes.io/hostname": b.name}}),
    );
    let mut ips = Vec::new();
    for (pod, node) in [("on-a", &a), ("on-b", &b)] {
        let object = wait_nodes(&nodes, &format!("{pod} to be Running"), || {
            let object = kubectl_json(&cp, &["get", "pod", pod])?;
            (object["status"]["phase"] == "Running").then_some(object)
        })
        .await;
        assert_eq!(object["spec"]["nodeName"], node.name);
        assert_eq!(object["status"]["hostIP"], node.netns.node_ip());
        let ip: std::net::Ipv4Addr = object["status"]["podIP"]
            .as_str()
            .and_then(|ip| ip.parse().ok())
            .unwrap_or_else(|| panic!("{pod} has a pod IP: {}", object["status"]));
        // From the node's own pod network.
        let subnet = node.agent.network().subnet();
        let prefix = subnet.trim_end_matches("0/24");
        assert!(ip.to_string().starts_with(prefix), "{ip} in {subnet}");
        ips.push(ip);
        // Each node runs its pod only.
        let on_node = list_pods(&node.agent).await;
        assert_eq!(on_node.len(), 1, "{}: {on_node:?}", node.name);
        // The API server reaches each node's kubelet API for its logs.
        let logs = wait_nodes(&nodes, &format!("{pod}'s logs"), || {
            let out = cp.kubectl(&["logs", pod]);
            out.status.success().then(|| stdout(&out))
        })
        .await;
        assert_eq!(logs, format!("on {pod}\n"));
    }
    assert_ne!(ips[0], ips[1]);
}

#[tokio::test]
async fn a_pods_lifecycle_logs_and_events_are_seen_through_the_api_server() {
    let Some(c) = cluster("berth-node-lc").await else {
        return;
    };
    // The first run fails (after its postStart hook), so the second has a
    // previous one; the second writes until TERM, which the preStop hook
    // precedes with a line of its own on the container's stdout.
    let script = "echo start $(cat /work/init); n=$(cat /work/runs 2>/dev/null || echo 0); \
                  echo $((n+1)) > /work/runs; echo run $n; \
                  if [ $n = 0 ]; then sleep 2; exit 1; fi; \
                  trap 'echo term; exit 0' TERM; \
                  i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done";
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "lc", "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 10,
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [{
                "name": "init",
                "image": TEST_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", "echo init-ok > /work/init"],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            }],
            "containers": [{
                "name": "main",
                "image": TEST_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                "readinessProbe": {
                    "exec": {"command": ["cat", "/work/poststart"]},
                    "periodSeconds": 1,
                },
                "livenessProbe": {
                    "exec": {"command": ["true"]},
                    "periodSeconds": 1,
                },
                "lifecycle": {
                    "postStart": {"exec": {"command":
                        ["sh", "-c", "echo poststart > /work/poststart"]}},
                    "preStop": {"exec": {"command":
                        ["sh", "-c", "echo prestop > /proc/1/fd/1"]}},
                },
            }],
        },
    });
    let file = c.agent.work_dir().join("lc.json");
    std::fs::create_dir_all(c.agent.work_dir()).unwrap();
    std::fs::write(&file, pod.to_string()).unwrap();
    c.kubectl_ok(&["create", "-f", &file.display().to_string()]);

    // Init container done, main restarted once and ready by its probe.
    let pod = c
        .wait_for("main to be ready after one restart", |c| {
            let pod = c.json(&["get", "pod", "lc"])?;
            let main = &pod["status"]["containerStatuses"][0];
            (main["restartCount"] == 1 && main["ready"] == true).then_some(pod)
        })
        .await;
    let status = &pod["status"];
    let init = &status["initContainerStatuses"][0]["state"]["terminated"];
    assert_eq!(init["reason"], "Completed", "{status}");
    assert_eq!(init["exitCode"], 0, "{status}");
    let main = &status["containerStatuses"][0];
    assert_eq!(main["lastState"]["terminated"]["exitCode"], 1, "{status}");
    assert!(main["state"]["running"].is_object(), "{status}");
    for condition in ["Initialized", "ContainersReady", "Ready"] {
        assert_eq!(condition_status(&pod, condition), Some("True"), "{status}");
    }

    // --previous is the failed run; the current run follows it.
    let previous = c.kubectl_ok(&["logs", "lc", "--previous"]);
    assert_eq!(previous, "start init-ok\nrun 0\n");
    let current = c.kubectl_ok(&["logs", "lc"]);
    assert!(current.starts_with("start init-ok\nrun 1\n"), "{current}");

    // describe shows the node's events.
    let described = c.kubectl_ok(&["describe", "pod", "lc"]);
    let events = described
        .split("Events:")
        .nth(1)
        .unwrap_or_else(|| panic!("{described}"));
    let has = |reason: &str, object: &str| {
        events.lines().any(|l| {
            l.split_whitespace().nth(1) == Some(reason)
                && l.contains("kubelet")
                && l.contains(object)
        })
    };
    for object in ["spec.initContainers{init}", "spec.containers{main}"] {
        for reason in ["Created", "Started"] {
            assert!(has(reason, object), "{reason} {object} in {events}");
        }
    }

    // logs -f streams new lines as they are written, and ends when the
    // container does: after the preStop hook's line and the TERM handler's.
    let mut follow =
        c.cp.kubectl_command(&["logs", "-f", "lc"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn kubectl logs -f");
    let (lines, received) = std::sync::mpsc::channel();
    let stream = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let newest_tick = |seen: &[String]| {
        seen.iter()
            .filter_map(|l| l.strip_prefix("tick ")?.parse::<u32>().ok())
            .max()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let first = loop {
        let line = received
            .recv_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .expect("logs -f streams the container's lines");
        seen.push(line);
        if let Some(tick) = newest_tick(&seen) {
            break tick;
        }
    };
    // Lines written after the stream began arrive on it.
    while newest_tick(&seen) < Some(first + 5) {
        let line = received
            .recv_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .unwrap_or_else(|e| panic!("logs -f stopped streaming ({e}): {seen:?}"));
        seen.push(line);
    }

    let started = tokio::time::Instant::now();
    c.kubectl_ok(&["delete", "pod", "lc"]);
    let took = started.elapsed();
    // The container exits on TERM: the 10 s grace is not waited out.
    assert!(took < Duration::from_secs(8), "delete took {took:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while follow.try_wait().expect("wait for kubectl").is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "logs -f did not end with the container: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reader.join().unwrap();
    seen.extend(received.try_iter());
    let prestop = seen.iter().position(|l| l == "prestop");
    let term = seen.iter().position(|l| l == "term");
    assert!(
        matches!((prestop, term), (Some(p), Some(t)) if p < t),
        "the preStop hook's line, then the TERM handler's: {seen:?}"
    );
}

// Multi-threaded: the pod's link to the API server is served by this
// runtime while the test waits on kubectl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pods_service_account_token_authenticates_it_to_the_api_server() {
    let Some(c) = cluster("berth-node-sa").await else {
        return;
    };
    // No kube-proxy here, so the `kubernetes` Service's address leads
    // nowhere: pods reach the API server through the host, at their
    // gateway, where a port is bridged to its loopback port.
    let api_port: u16 =
        c.cp.server()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the API server's port");
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind the pods' link");
    let link_port = listener.local_addr().unwrap().port();
    let link = tls_bridge(listener, api_port, &c.cp.ca_cert_path());
    let subnet = c.agent.network().subnet();
    let gateway = format!("{}1", subnet.trim_end_matches("0/24"));
    let url =
        format!("http://{gateway}:{link_port}/apis/authentication.k8s.io/v1/selfsubjectreviews");
    let review = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
    let script = format!(
        "t=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token); \
         ask() {{ wget -q -O- --header \"Authorization: Bearer $1\" \
           --header 'Content-Type: application/json' --post-data '{review}' {url}; }}; \
         ask \"$t\" && echo; ask \"x$t\" 2>/dev/null || echo forged-refused"
    );
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sa", "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "main",
                "image": TEST_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
            }],
        },
    });
    let file = c.agent.work_dir().join("sa.json");
    std::fs::create_dir_all(c.agent.work_dir()).unwrap();
    std::fs::write(&file, pod.to_string()).unwrap();
    c.kubectl_ok(&["create", "-f", &file.display().to_string()]);
    c.wait_pod_phase("sa", "Succeeded").await;
    let logs = c.kubectl_ok(&["logs", "sa"]);
    let answer: Value = serde_json::Deserializer::from_str(&logs)
        .into_iter()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("a SelfSubjectReview: {logs}"));
    let user = &answer["status"]["userInfo"];
    assert_eq!(
        user["username"], "system:serviceaccount:default:default",
        "{logs}"
    );
    // The token is bound to this pod on this node.
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-name"][0],
        "sa"
    );
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/node-name"][0],
        c.node.as_str()
    );
    // A forged token is refused (401). wget's complaint goes to /dev/null:
    // on stderr, it could reach the log after the echo on stdout.
    assert_eq!(logs.lines().last(), Some("forged-refused"), "{logs}");
    link.abort();
}

/// Forwards plain TCP from `listener` to the API server's loopback port
/// over TLS, verified against the cluster CA: the pods' way to the API
/// server here. Plain HTTP in the pod because busybox `wget`'s built-in
/// TLS, used where no `openssl` binary is (as in the test image), agrees
/// on no cipher with the API server (handshake failure, alert 40).
fn tls_bridge(
    listener: std::net::TcpListener,
    api_port: u16,
    ca: &Path,
) -> tokio::task::JoinHandle<()> {
    use tokio_rustls::rustls::{self, pki_types::pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("add the CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let connector = connector.clone();
            tokio::spawn(async move {
                let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", api_port)).await else {
                    return;
                };
                let name =
                    rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
                let Ok(mut outbound) = connector.connect(name, tcp).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    })
}

/// Runs kubectl with `input` as its whole stdin (closed after it) and
/// waits for it to end.
async fn kubectl_with_input(
    cp: &ControlPlane,
    args: &[&str],
    input: &[u8],
) -> std::process::Output {
    let mut child = tokio::process::Command::from(cp.kubectl_command(args))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, input)
        .await
        .unwrap();
    drop(stdin);
    tokio::time::timeout(CLUSTER_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not end after its input"))
        .unwrap()
}
