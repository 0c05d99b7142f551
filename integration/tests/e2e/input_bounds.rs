//! Hostile input gets a clear error and costs the agent nothing: deeply
//! nested manifests are refused in milliseconds while the API goes on
//! answering (by request and in the manifest directory), quantities that do
//! not parse are refused naming the field (or the file), oversized
//! annotations and out-of-range log options are 422s, and importing a file
//! that is not an image archive does not echo the file.

use std::path::Path;
use std::time::Duration;

use berth_integration::*;
use berth_testkit::AgentProcess;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const QUANTITY_FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// One request on the agent's socket; the status and the body as JSON.
async fn request(agent: &AgentProcess, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut stream = tokio::net::UnixStream::connect(agent.socket())
        .await
        .expect("connect to the agent");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/yaml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    stream.write_all(body.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut response))
        .await
        .expect("an answer within a minute")
        .expect("read the answer");
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).expect("a status");
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    (status.parse().expect("a numeric status"), body)
}

/// `berth get pods` as a user would run it; how long it took.
async fn timed_get_pods(agent: &AgentProcess) -> Duration {
    let started = Instant::now();
    agent.cli_ok(&["get", "pods"]).await;
    started.elapsed()
}

/// Waits for the agent's log to hold a line with every one of `parts`.
async fn wait_log_line(agent: &AgentProcess, parts: &[&str], timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let log = agent.agent_log();
        if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?} within {timeout:?}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Pod whose labels nest `levels` deep (YAML, not JSON: libyaml's path).
fn deep_pod(levels: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: deep\n  labels: {}",
        "[".repeat(levels)
    )
}

#[tokio::test]
async fn deep_nesting_is_refused_at_once_and_the_api_keeps_answering() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let agent = std::sync::Arc::new(agent);
    let started = Instant::now();
    // Unbounded, each of these held one of the agent's two worker threads
    // for half a minute (debug build), and the API with them.
    let posts: Vec<_> = (0..4)
        .map(|_| {
            let agent = agent.clone();
            tokio::spawn(async move {
                request(
                    &agent,
                    "POST",
                    "/api/v1/namespaces/default/pods",
                    &deep_pod(100_000),
                )
                .await
            })
        })
        .collect();
    let get_took = timed_get_pods(&agent).await;
    for post in posts {
        let (status, failure) = post.await.expect("request task");
        assert_eq!(status, 400, "{failure}");
        assert_eq!(
            failure["message"],
            "cannot decode the Pod: document 1: line 5, column 109: exceeded max depth of 100"
        );
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "refused after {took:?}");
    assert!(
        get_took < Duration::from_secs(2),
        "get pods took {get_took:?}"
    );

    // The same document in the manifest directory: refused naming the file.
    let file = agent.manifest_dir().join("deep.yaml");
    std::fs::write(&file, deep_pod(100_000)).expect("write the manifest");
    let started = Instant::now();
    let get_took = timed_get_pods(&agent).await;
    let line = wait_log_line(
        &agent,
        &[
            "invalid manifest",
            "exceeded max depth of 100",
            &file.display().to_string(),
        ],
        Duration::from_secs(5),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "refused after {took:?}: {line}"
    );
    assert!(
        get_took < Duration::from_secs(2),
        "get pods took {get_took:?}"
    );
    assert!(list_pods(&agent).await.is_empty());
}

/// A pod whose container has `resources` as given.
fn pod_with_resources(name: &str, resources: Value) -> Value {
    let mut app = sh_container("app", "exec sleep 3600");
    app["resources"] = resources;
    pod(name, "Always", vec![app])
}

#[tokio::test]
async fn quantities_that_do_not_parse_are_refused_naming_the_field() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let cases = [
        ("memory", "512MB"),
        ("memory", "1gb"),
        ("memory", "lots"),
        ("cpu", "fast"),
    ];
    for (i, (resource, value)) in cases.into_iter().enumerate() {
        let name = format!("q{i}");
        let spec = pod_with_resources(&name, json!({ "limits": { resource: value } }));
        let field = format!("spec.containers[0].resources.limits[{resource}]");
        let want = format!("{field}: Invalid value: \"{value}\": {QUANTITY_FORMAT}");

        let (status, failure) = request(
            &agent,
            "POST",
            "/api/v1/namespaces/default/pods",
            &manifest(&spec),
        )
        .await;
        assert_eq!(status, 422, "{failure}");
        assert_eq!(failure["reason"], "Invalid");
        assert_eq!(
            failure["message"],
            format!("Pod \"{name}\" is invalid: {want}")
        );

        let out = agent.apply_yaml_output(&manifest(&spec)).await;
        assert!(!out.status.success(), "apply accepted {value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&want), "{stderr}");
    }
    // Init containers and sidecars too.
    let mut spec = pod_with_resources("init", json!({}));
    let mut init = sh_container("setup", "true");
    init["resources"] = json!({ "requests": { "cpu": "fast" } });
    spec["spec"]["initContainers"] = json!([init]);
    let out = agent.apply_yaml_output(&manifest(&spec)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "spec.initContainers[0].resources.requests[cpu]: Invalid value: \"fast\": {QUANTITY_FORMAT}"
        )),
        "{stderr}"
    );
    assert!(list_pods(&agent).await.is_empty(), "a pod was created");

    // From the manifest directory: refused, the warning names the file.
    let file = agent.manifest_dir().join("limits.yaml");
    let spec = pod_with_resources("static", json!({ "limits": { "memory": "512MB" } }));
    std::fs::write(&file, manifest(&spec)).expect("write the manifest");
    wait_log_line(
        &agent,
        &[
            "invalid manifest",
            &file.display().to_string(),
            &format!("spec.containers[0].resources.limits[memory]: Invalid value: \"512MB\": {QUANTITY_FORMAT}"),
        ],
        Duration::from_secs(10),
    )
    .await;
    assert!(
        list_pods(&agent).await.is_empty(),
        "a static pod was created"
    );
}

#[tokio::test]
async fn annotations_over_256_kib_and_bad_log_options_are_422() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut spec = pod(
        "annotated",
        "Always",
        vec![sh_container("app", "exec sleep 3600")],
    );
    spec["metadata"]["annotations"] = json!({ "big": "x".repeat(256 * 1024) });
    let (status, failure) = request(
        &agent,
        "POST",
        "/api/v1/namespaces/default/pods",
        &spec.to_string(),
    )
    .await;
    assert_eq!(status, 422, "{failure}");
    assert_eq!(
        failure["message"],
        "Pod \"annotated\" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes"
    );
    let out = agent.apply_yaml_output(&manifest(&spec)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("metadata.annotations: Too long: may not be more than 262144 bytes"),
        "{stderr}"
    );

    // At the limit, the pod runs (posted as is: `apply` would add its
    // last-applied annotation, as kubectl's does); its logs take the options.
    spec["metadata"]["annotations"] = json!({ "big": "x".repeat(256 * 1024 - 3) });
    let (status, created) = request(
        &agent,
        "POST",
        "/api/v1/namespaces/default/pods",
        &spec.to_string(),
    )
    .await;
    assert_eq!(status, 201, "{}", created["message"]);
    wait_running(&agent, "annotated").await;
    let log = "/api/v1/namespaces/default/pods/annotated/log";
    for (query, message) in [
        (
            "sinceSeconds=-1",
            "sinceSeconds: Invalid value: -1: must be greater than 0",
        ),
        (
            "limitBytes=-1",
            "limitBytes: Invalid value: -1: must be greater than 0",
        ),
        (
            "tailLines=-1",
            "tailLines: Invalid value: -1: must be greater than or equal to 0",
        ),
    ] {
        let (status, failure) = request(&agent, "GET", &format!("{log}?{query}"), "").await;
        assert_eq!(status, 422, "{query}: {failure}");
        assert_eq!(
            failure["message"],
            format!("PodLogOptions \"annotated\" is invalid: {message}")
        );
    }
    let (status, _) = request(
        &agent,
        "GET",
        &format!("{log}?sinceSeconds=60&limitBytes=10"),
        "",
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn importing_a_file_that_is_not_an_archive_does_not_echo_it() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let secret = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI-berth-e2e";
    let file = agent.write_work_file("credentials", &format!("{secret}\n").repeat(40));
    let out = agent
        .cli(&["image", "import", &file.display().to_string()])
        .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("AWS"), "the file was echoed: {stderr}");
    assert!(
        stderr.contains("not a tar archive (it does not start with a tar header)"),
        "{stderr}"
    );
    assert!(
        !agent.agent_log().contains(secret),
        "the agent logged the file"
    );
    assert!(Path::new(&file).exists());
}
