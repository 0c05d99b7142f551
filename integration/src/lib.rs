//! Shared pieces of berth's end-to-end tests: start a private containerd and an
//! agent, build pod manifests, read pod JSON the way `kubectl` users do.
//!
//! # Layout
//!
//! - this file: helpers the end-to-end tests share (set-up, manifests, pod
//!   JSON, process and leak counters); `tcp_proxy`: a link a test can cut;
//! - `tests/e2e/`: one module per capability, one test binary;
//! - `bench/` and the `berth-bench` binary: benchmarks against the same
//!   private containerd; `bin/berth-mkimage`: builds test images.

use std::time::Duration;

use serde_json::{json, Value};

pub mod pty;
pub mod residue;
pub mod tcp_proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

pub use berth_testkit::{AgentOptions, AgentProcess, PrivateContainerd, TEST_IMAGE};

/// Long enough for a debug build on 2 busy cores; an agent that works is far
/// quicker (well under a second per pod).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A private containerd and an agent on it, or `None` when this machine cannot
/// run containers (and `BERTH_REQUIRE_CONTAINERD` is not set). Declare the
/// pair as `let (_containerd, agent) = ...` so the agent drops first.
pub async fn setup() -> Option<(PrivateContainerd, AgentProcess)> {
    let containerd = PrivateContainerd::start_or_skip().await?;
    let agent = AgentProcess::start(&containerd).await;
    Some((containerd, agent))
}

/// Like [`setup`], with CrashLoopBackOff shortened to `initial` doubling up to
/// `max` seconds, so crash-loop tests see several restarts in seconds.
pub async fn setup_with_back_off(
    initial: u64,
    max: u64,
) -> Option<(PrivateContainerd, AgentProcess)> {
    let (initial, max) = (initial.to_string(), max.to_string());
    setup_with(&[
        "--crash-loop-back-off-initial-seconds",
        &initial,
        "--crash-loop-back-off-max-seconds",
        &max,
    ])
    .await
}

/// A private containerd and an agent started with `extra_args`.
pub async fn setup_with(extra_args: &[&str]) -> Option<(PrivateContainerd, AgentProcess)> {
    let containerd = PrivateContainerd::start_or_skip().await?;
    let options = AgentOptions {
        extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        ..AgentOptions::default()
    };
    let agent = AgentProcess::start_with(&containerd, options).await;
    Some((containerd, agent))
}

/// A container running `script` under `sh -c` in the test image.
pub fn sh_container(name: &str, script: &str) -> Value {
    json!({
        "name": name,
        "image": TEST_IMAGE,
        "command": ["sh", "-c", script],
    })
}

/// A pod in `default` with these containers and restart policy.
pub fn pod(name: &str, restart_policy: &str, containers: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "restartPolicy": restart_policy,
            "containers": containers,
        }
    })
}

/// The manifest as `apply -f` reads it (JSON is YAML).
pub fn manifest(pod: &Value) -> String {
    serde_json::to_string_pretty(pod).expect("serialize manifest")
}

/// `status.phase`.
pub fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("")
}

/// `status.podIP`.
pub fn pod_ip(pod: &Value) -> Option<&str> {
    pod["status"]["podIP"].as_str().filter(|ip| !ip.is_empty())
}

/// `metadata.uid`.
pub fn uid(pod: &Value) -> &str {
    pod["metadata"]["uid"].as_str().unwrap_or("")
}

/// The status of container `name`, if reported.
pub fn container_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

/// Whether container `name` is running.
pub fn is_running(pod: &Value, name: &str) -> bool {
    container_status(pod, name).is_some_and(|s| s["state"]["running"].is_object())
}

/// Whether every container of the pod is running and the phase is Running.
pub fn all_running(pod: &Value) -> bool {
    let Some(statuses) = pod["status"]["containerStatuses"].as_array() else {
        return false;
    };
    let declared = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    phase(pod) == "Running"
        && statuses.len() == declared
        && statuses.iter().all(|s| s["state"]["running"].is_object())
}

/// The status of init container `name`, if reported.
pub fn init_container_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["status"]["initContainerStatuses"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

/// The pod condition of `type_` (`Ready`, `Initialized`, ...), if reported.
pub fn condition<'a>(pod: &'a Value, type_: &str) -> Option<&'a Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// `state.waiting.reason` of container `name`.
pub fn waiting_reason<'a>(pod: &'a Value, name: &str) -> Option<&'a str> {
    container_status(pod, name)?["state"]["waiting"]["reason"].as_str()
}

/// `state.terminated` of container `name`.
pub fn terminated<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    container_status(pod, name)
        .map(|s| &s["state"]["terminated"])
        .filter(|t| t.is_object())
}

/// `restartCount` of container `name` (0 when not reported).
pub fn restart_count(pod: &Value, name: &str) -> i64 {
    container_status(pod, name)
        .and_then(|s| s["restartCount"].as_i64())
        .unwrap_or(0)
}

/// The runtime id of container `name` (`containerID` without `containerd://`).
pub fn container_id(pod: &Value, name: &str) -> Option<String> {
    let id = container_status(pod, name)?["containerID"].as_str()?;
    Some(id.strip_prefix("containerd://").unwrap_or(id).to_owned())
}

/// Waits until every container runs; returns the pod.
pub async fn wait_running(agent: &AgentProcess, name: &str) -> Value {
    agent
        .wait_for("default", name, "Running", START_TIMEOUT, all_running)
        .await
}

/// Waits until the pod reaches `Succeeded` or `Failed`.
pub async fn wait_terminal(agent: &AgentProcess, name: &str) -> Value {
    agent
        .wait_for("default", name, "Succeeded or Failed", START_TIMEOUT, |p| {
            matches!(phase(p), "Succeeded" | "Failed")
        })
        .await
}

/// `berth logs POD -c C`, which must succeed.
pub async fn logs(agent: &AgentProcess, pod: &str, container: &str) -> String {
    agent.cli_ok(&["logs", pod, "-c", container]).await
}

/// The row of pod `name` in `berth get pods`, split into columns (NAME,
/// READY, STATUS, RESTARTS, AGE; RESTARTS may carry "(5s ago)").
pub async fn get_pods_row(agent: &AgentProcess, name: &str) -> Option<Vec<String>> {
    let out = agent.cli(&["get", "pods"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().next() == Some(name))?;
    Some(row.split_whitespace().map(str::to_owned).collect())
}

/// Polls the STATUS column of pod `name` until it reads `want`, appending
/// every value not equal to the last recorded one to `seen`.
pub async fn record_status_until(
    agent: &AgentProcess,
    name: &str,
    want: &str,
    seen: &mut Vec<String>,
) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = get_pods_row(agent, name)
            .await
            .and_then(|r| r.get(2).cloned())
        {
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            if status == want {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "pod {name}: STATUS never {want:?}; seen {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `want` occurs in `seen` in order (not necessarily adjacent).
pub fn is_subsequence(seen: &[String], want: &[&str]) -> bool {
    let mut rest = seen.iter();
    want.iter().all(|w| rest.any(|s| s == w))
}

/// The events of `/api/v1/namespaces/{ns}/events` about pod `name`: the list
/// itself (to check its kind) and the items whose involved object is the pod.
pub async fn pod_events(agent: &AgentProcess, namespace: &str, name: &str) -> (Value, Vec<Value>) {
    let path = format!("/api/v1/namespaces/{namespace}/events");
    let list = agent
        .api_get_json(&path)
        .await
        .unwrap_or_else(|| panic!("GET {path} did not answer 200 with JSON"));
    let items = list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|e| e["involvedObject"]["name"] == name)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    (list, items)
}

/// The first event with this reason and involved field path.
pub fn find_event<'a>(events: &'a [Value], reason: &str, field_path: &str) -> Option<&'a Value> {
    events
        .iter()
        .find(|e| e["reason"] == reason && e["involvedObject"]["fieldPath"] == field_path)
}

/// Every pod in `get pods -A -o json` (a `List`, or bare objects).
pub async fn list_pods(agent: &AgentProcess) -> Vec<Value> {
    let out = agent.cli_ok(&["get", "pods", "-A", "-o", "json"]).await;
    let value: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    match value["items"].as_array() {
        Some(items) => items.clone(),
        None if value["kind"] == "Pod" => vec![value],
        None => panic!("get pods -o json: neither a List nor a Pod: {out}"),
    }
}

/// The PID of a running containerd task, from `ctr tasks ls`.
pub fn task_pid(agent: &AgentProcess, id: &str) -> Option<i32> {
    let listed = || {
        let out = agent.ctr(&["tasks", "ls"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                (fields.next()? == id).then(|| fields.next()?.parse::<i32>().ok())?
            })
    };
    // `ctr` lists PID 0 when the task's shim did not answer its state query
    // in time (a loaded machine): ask again (each `ctr` run takes tens of
    // milliseconds, so this waits seconds at most).
    let mut tries = 100;
    loop {
        match listed() {
            Some(0) if tries > 0 => tries -= 1,
            pid => return pid,
        }
    }
}

/// The STATUS `ctr tasks ls` shows for a task (`RUNNING`, `STOPPED`, ...).
pub fn task_status(agent: &AgentProcess, id: &str) -> Option<String> {
    let out = agent.ctr(&["tasks", "ls"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.first() == Some(&id)).then(|| fields.last().map(|s| s.to_string()))?
        })
}

/// The ids `ctr <kind> ls -q` prints in the agent's namespace.
pub fn ctr_list(agent: &AgentProcess, kind: &str) -> Vec<String> {
    berth_testkit::containerd::ctr_ids(&agent.ctr(&[kind, "ls", "-q"]))
}

/// Every JSON value a `get pods -w -o json` stream printed, unwrapped from
/// `List`s and watch events.
pub fn watched_pods(stream: &[u8]) -> Vec<Value> {
    let mut pods = Vec::new();
    for value in serde_json::Deserializer::from_slice(stream).into_iter::<Value>() {
        let Ok(value) = value else { break };
        if let Some(items) = value["items"].as_array() {
            pods.extend(items.iter().cloned());
        } else if value["object"].is_object() {
            pods.push(value["object"].clone());
        } else {
            pods.push(value);
        }
    }
    pods
}

/// Polls `berth logs POD -c C` until it contains `needle` (a container's
/// "ready" line: e.g. its SIGTERM trap is installed); returns the log.
pub async fn wait_log_contains(
    agent: &AgentProcess,
    pod: &str,
    container: &str,
    needle: &str,
) -> String {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let out = agent.cli(&["logs", pod, "-c", container]).await;
        let log = String::from_utf8_lossy(&out.stdout).into_owned();
        if log.contains(needle) {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pod}/{container} never logged {needle:?}; log: {log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `berth ARGS` until its output satisfies `done`; returns the output.
pub async fn wait_cli_output(
    agent: &AgentProcess,
    args: &[&str],
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let out = agent.cli_ok(args).await;
        if done(&out) {
            return out;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`berth {}` never showed {what}: {out}",
            args.join(" ")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls the pod list until `pred` holds for the pod whose name starts with
/// `prefix` (a static pod's name ends with the node's). At every look there
/// is at most one: a name is unique in the API, and the kubelet starts a
/// replaced static pod only once the old one has terminated.
pub async fn wait_static_pod(
    agent: &AgentProcess,
    prefix: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let found: Vec<Value> = list_pods(agent)
            .await
            .into_iter()
            .filter(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .collect();
        assert!(found.len() <= 1, "two pods share a name: {found:#?}");
        if let Some(pod) = found.first().filter(|p| pred(p)) {
            return pod.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "static pod {prefix}* not {what}: {found:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A container that exits 0 on SIGTERM, logging `ready` once its trap is set.
pub fn term_handling_container(name: &str) -> Value {
    sh_container(
        name,
        "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done",
    )
}

/// `GET path` from `ip:port`, retried until the server answers or the deadline.
pub async fn http_get(ip: &str, port: u16, path: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect((ip, port)).await?;
            let request = format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n");
            stream.write_all(request.as_bytes()).await?;
            let mut body = String::new();
            stream.read_to_string(&mut body).await?;
            std::io::Result::Ok(body)
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(body)) => return body,
            _ if Instant::now() >= deadline => panic!("{ip}:{port} did not answer in {timeout:?}"),
            // The server may still be binding its port: retry.
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Where [`mount_stamps`] mounts the stamp directory in every container.
pub const STAMPS_MOUNT: &str = "/stamps";

/// Mounts the hostPath directory `dir` (type DirectoryOrCreate, so berth makes
/// it) at [`STAMPS_MOUNT`] in every container and init container of `pod`;
/// returns the host path of the stamp file, `/stamps/f` in the containers.
pub fn mount_stamps(pod: &mut Value, dir: &std::path::Path) -> std::path::PathBuf {
    let spec = &mut pod["spec"];
    for list in ["initContainers", "containers"] {
        if let Some(containers) = spec[list].as_array_mut() {
            for c in containers {
                c["volumeMounts"] = json!([{ "name": "stamps", "mountPath": STAMPS_MOUNT }]);
            }
        }
    }
    spec["volumes"] = json!([{
        "name": "stamps",
        "hostPath": { "path": dir, "type": "DirectoryOrCreate" }
    }]);
    dir.join("f")
}

/// A shell command appending `NAME <uptime> <idle>` to the stamp file. The
/// kernel's uptime is shared by every container and the host, so stamps of
/// different containers (and [`host_uptime`]) compare.
pub fn stamp(name: &str) -> String {
    format!("echo {name} $(cat /proc/uptime) >> {STAMPS_MOUNT}/f")
}

/// A lifecycle handler running `script` under `sh -c` in the container.
pub fn exec_handler(script: &str) -> Value {
    json!({ "exec": { "command": ["sh", "-c", script] } })
}

/// One line of the stamp file.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    pub name: String,
    /// Seconds since boot when it was written.
    pub uptime: f64,
}

/// The stamps in the file, in the order they were appended (lines that are
/// not stamps are skipped).
pub fn read_stamps(path: &std::path::Path) -> Vec<Stamp> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let [name @ .., uptime, _idle] = words.as_slice() else {
                return None;
            };
            Some(Stamp {
                name: name.join(" "),
                uptime: uptime.parse().ok()?,
            })
        })
        .filter(|s| !s.name.is_empty())
        .collect()
}

/// The index of the first stamp called `name`; panics with all stamps if none.
pub fn stamp_index(stamps: &[Stamp], name: &str) -> usize {
    stamps
        .iter()
        .position(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name} stamp in {stamps:#?}"))
}

/// Polls the stamp file until every one of `names` is in it; returns it.
pub async fn wait_stamps(path: &std::path::Path, names: &[&str]) -> Vec<Stamp> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let stamps = read_stamps(path);
        if names.iter().all(|n| stamps.iter().any(|s| s.name == *n)) {
            return stamps;
        }
        assert!(
            Instant::now() < deadline,
            "stamps {names:?} not all written to {}: {stamps:#?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The host's seconds since boot, comparable with [`Stamp::uptime`].
pub fn host_uptime() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").expect("read /proc/uptime");
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("parse /proc/uptime")
}

/// `berth delete pod NAME extra... --wait`, which must succeed and leave no
/// pod behind; returns how long it took.
pub async fn timed_delete(agent: &AgentProcess, name: &str, extra: &[&str]) -> Duration {
    let mut args = vec!["delete", "pod", name];
    args.extend_from_slice(extra);
    args.push("--wait");
    let started = Instant::now();
    agent.cli_ok(&args).await;
    let took = started.elapsed();
    assert!(
        agent.try_get_pod_json("default", name).await.is_none(),
        "pod {name} still listed after delete --wait"
    );
    took
}

/// The IP files host-local keeps for this agent's network.
pub fn allocated_ips(agent: &AgentProcess) -> Vec<String> {
    let dir = agent.network().ipam_network_dir(&agent.ipam_dir());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.parse::<std::net::IpAddr>().is_ok())
        .collect()
}

/// The command lines (NUL-separated) and environments of every process.
fn processes() -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|p| p.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|p| {
            let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
            let environ = std::fs::read(p.path().join("environ")).unwrap_or_default();
            Some((cmdline, environ))
        })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `containerd-shim-runc-v2` processes serving containerd `namespace`.
pub fn shims(namespace: &str) -> usize {
    shim_ids(namespace).len()
}

/// The `-id` of every shim serving containerd `namespace`: the container
/// that started it (a pod's shim is its sandbox's). The shim binary's
/// `start` and `delete` runs, which containerd makes for a moment at each
/// task's create and clean-up, serve nothing and are left out.
pub fn shim_ids(namespace: &str) -> Vec<String> {
    let flag = format!("-namespace\0{namespace}\0");
    processes()
        .filter(|(cmd, _)| {
            contains(cmd, b"containerd-shim-runc-v2") && contains(cmd, flag.as_bytes())
        })
        .filter_map(|(cmd, _)| {
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
            if matches!(args.last(), Some(&(b"start" | b"delete"))) {
                return None;
            }
            let id = args
                .iter()
                .position(|a| *a == b"-id")
                .and_then(|i| args.get(i + 1));
            Some(String::from_utf8_lossy(id.copied().unwrap_or(b"?")).into_owned())
        })
        .collect()
}

/// `berth logger` processes writing logs of containers in `namespace`.
pub fn loggers(namespace: &str) -> usize {
    logger_ids(namespace).len()
}

/// The container (`CONTAINER_ID`) of every logger of containerd `namespace`.
pub fn logger_ids(namespace: &str) -> Vec<String> {
    let env = format!("CONTAINER_NAMESPACE={namespace}\0");
    processes()
        .filter(|(cmd, environ)| contains(cmd, b"\0logger\0") && contains(environ, env.as_bytes()))
        .map(|(_, environ)| {
            let id = environ
                .split(|b| *b == 0)
                .find_map(|kv| kv.strip_prefix(b"CONTAINER_ID="));
            String::from_utf8_lossy(id.unwrap_or(b"?")).into_owned()
        })
        .collect()
}

/// Sandboxes with namespace pins (`<root>/ns/<sandbox id>`).
pub fn sandboxes_pinned(agent: &AgentProcess) -> usize {
    std::fs::read_dir(agent.root_dir().join("ns"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Veths attached to the agent's bridge.
pub fn veths(agent: &AgentProcess) -> usize {
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", &agent.network().bridge()])
        .output()
        .expect("run ip");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Snapshots of the agent's namespace that are not committed image layers:
/// containers' writable layers and views, `KEY` of each.
pub fn active_snapshots(agent: &AgentProcess) -> Vec<String> {
    let out = agent.ctr(&["snapshots", "ls"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter(|line| !line.trim_end().ends_with("Committed"))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// The leases of the agent's namespace.
pub fn leases(agent: &AgentProcess) -> Vec<String> {
    ctr_list(agent, "leases")
}

/// Running containerd tasks by what they run, `NAMESPACE/POD/CONTAINER`
/// (`sandbox` for a pause container), from the labels berth puts on its
/// containers: a count above one is a container running twice.
pub fn running_tasks_by_owner(agent: &AgentProcess) -> std::collections::BTreeMap<String, usize> {
    let tasks = agent.ctr(&["tasks", "ls"]);
    let running: Vec<String> = String::from_utf8_lossy(&tasks.stdout)
        .lines()
        .skip(1)
        .filter(|line| line.trim_end().ends_with("RUNNING"))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect();
    let mut owners = std::collections::BTreeMap::new();
    for id in running {
        let info = agent.ctr(&["containers", "info", &id]);
        let labels =
            serde_json::from_slice::<Value>(&info.stdout).unwrap_or_default()["Labels"].take();
        let label = |key: &str| labels[key].as_str().unwrap_or("?").to_owned();
        let container = if labels["io.berth.sandbox"] == "true" {
            "sandbox".to_owned()
        } else {
            label("io.kubernetes.container.name")
        };
        let owner = format!(
            "{}/{}/{container}",
            label("io.kubernetes.pod.namespace"),
            label("io.kubernetes.pod.name")
        );
        *owners.entry(owner).or_insert(0) += 1;
    }
    owners
}
