//! `kubectl debug` against a standalone agent: ephemeral containers added
//! through the `ephemeralcontainers` subresource run in the target's PID
//! namespace, are attached to (`-i`), exec'd into and logged, are never
//! restarted, survive an agent restart without a second start, and can be
//! neither changed nor removed.

use std::time::Duration;

use berth_integration::*;
use serde_json::{json, Value};

use super::{node, text, Node};

/// PATCH `path` with `body` of `content_type` on the API with the admin
/// certificate (as curl): the HTTP status and the answer.
fn patch(node: &Node, path: &str, content_type: &str, body: &str) -> (u16, Value) {
    let config: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(node.kubeconfig()).unwrap()).unwrap();
    let server = config["clusters"][0]["cluster"]["server"].as_str().unwrap();
    let pki = node.agent.root_dir().join("pki");
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--http1.1",
            "-X",
            "PATCH",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(pki.join("api-ca.crt"))
        .arg("--cert")
        .arg(pki.join("admin.crt"))
        .arg("--key")
        .arg(pki.join("admin.key"))
        .args([
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
            body,
        ])
        .arg(format!("{server}{path}"))
        .output()
        .expect("run curl");
    let answer = text(&out.stdout);
    let (body, code) = answer
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("{answer} {}", text(&out.stderr)));
    let value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (code.parse().unwrap(), value)
}

/// The pod's status of ephemeral container `name`, once `check` holds.
async fn ephemeral_status(
    node: &Node,
    pod: &str,
    name: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let pod = node.json(&["get", "pod", pod]);
        let status = pod["status"]["ephemeralContainerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == name)
            .cloned();
        if let Some(status) = status.filter(|s| check(s)) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ephemeral container {name}: {:#}",
            pod["status"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn running(status: &Value) -> bool {
    status["state"]["running"].is_object()
}

fn terminated(status: &Value) -> bool {
    status["state"]["terminated"].is_object()
}

#[tokio::test]
async fn kubectl_debug_runs_an_ephemeral_container_in_the_targets_pid_namespace() {
    let Some(mut node) = node().await else { return };
    let mut pod = pod(
        "web",
        "Always",
        vec![sh_container("main", "exec sleep 3600")],
    );
    pod["spec"]["terminationGracePeriodSeconds"] = json!(1);
    let file = node.write("web.json", &pod);
    node.ok(&["apply", "-f", &file]);
    node.wait_ready("web");

    // Not attached: kubectl patches the subresource and returns.
    node.ok(&[
        "debug",
        "web",
        "--image",
        TEST_IMAGE,
        "--target",
        "main",
        "-c",
        "dbg",
        "--",
        "sh",
        "-c",
        "ps -o pid,args; exec sleep 3601",
    ]);
    let status = ephemeral_status(&node, "web", "dbg", running).await;
    assert_eq!(status["ready"], false, "{status:#}");
    assert!(status.get("started").is_none(), "{status:#}");
    assert_eq!(status["restartCount"], 0);
    let logs = node.ok(&["logs", "web", "-c", "dbg"]);
    // The target's process is pid 1 of the namespace it joined.
    assert!(
        logs.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "sleep", "3600"]),
        "{logs}"
    );
    assert_eq!(
        node.ok(&["exec", "web", "-c", "dbg", "--", "echo", "marco"])
            .trim(),
        "marco"
    );
    let events = node.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.fieldPath=spec.ephemeralContainers{dbg}",
        "-o",
        "jsonpath={range .items[*]}{.reason}:{.message}{\"\\n\"}{end}",
    ]);
    assert!(events.contains("Created:Container created"), "{events}");
    assert!(events.contains("Started:Container started"), "{events}");
    // The pod stays Ready and Running.
    let web = node.json(&["get", "pod", "web"]);
    assert_eq!(phase(&web), "Running");

    // Attached with stdin: the session is the container's stdin.
    let (shown, code) = super::attach::answered(
        &node,
        &[
            "debug",
            "web",
            "-i",
            "--image",
            TEST_IMAGE,
            "-c",
            "dbg2",
            "--",
            "sh",
            "-c",
            "read x; echo got $x; sleep 1",
        ],
        "hello\n",
        "got hello",
    )
    .await;
    assert!(shown.contains("got hello"), "{shown}");
    assert_eq!(code, Some(0), "{shown}");
    let dbg2 = ephemeral_status(&node, "web", "dbg2", terminated).await;
    assert_eq!(dbg2["state"]["terminated"]["exitCode"], 0, "{dbg2:#}");
    assert_eq!(node.ok(&["logs", "web", "-c", "dbg2"]), "got hello\n");

    // Never restarted, whatever restartPolicy says; nor after an agent
    // restart, which adopts both.
    let dbg_id = status["containerID"].clone();
    node.agent.stop().await;
    node.agent.launch().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let dbg = ephemeral_status(&node, "web", "dbg", running).await;
    assert_eq!(dbg["containerID"], dbg_id);
    let dbg2_after = ephemeral_status(&node, "web", "dbg2", terminated).await;
    assert_eq!(dbg2_after["containerID"], dbg2["containerID"]);
    assert_eq!(dbg2_after["restartCount"], 0);

    // Only additions: the API server's errors for a change or a removal
    // (kubectl shows only the first line of them, so they are read from the
    // Status).
    let path = "/api/v1/namespaces/default/pods/web/ephemeralcontainers";
    let json_patch = "application/json-patch+json";
    let removal = r#"[{"op":"remove","path":"/spec/ephemeralContainers/0"}]"#;
    let (code, status) = patch(&node, path, json_patch, removal);
    assert_eq!(code, 422, "{status:#}");
    assert_eq!(
        status["message"],
        "Pod \"web\" is invalid: spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be removed\n"
    );
    let change = r#"[{"op":"replace","path":"/spec/ephemeralContainers/0/image","value":"other"}]"#;
    let (code, status) = patch(&node, path, json_patch, change);
    assert_eq!(code, 422, "{status:#}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains(r#"existing ephemeral containers "dbg" may not be changed"#),
        "{status:#}"
    );
    let with_ports = format!(
        r#"{{"spec":{{"ephemeralContainers":[{{"name":"bad","image":"{TEST_IMAGE}","ports":[{{"containerPort":80}}]}}]}}}}"#
    );
    let strategic = "application/strategic-merge-patch+json";
    let (code, status) = patch(&node, path, strategic, &with_ports);
    assert_eq!(code, 422, "{status:#}");
    assert!(
        status["message"].as_str().unwrap().contains(
            "spec.ephemeralContainers[2].ports: Forbidden: cannot be set for an Ephemeral Container"
        ),
        "{status:#}"
    );
    // A plain update may not touch them.
    let (code, status) = patch(
        &node,
        "/api/v1/namespaces/default/pods/web",
        json_patch,
        removal,
    );
    assert_eq!(code, 422, "{status:#}");
    let (code, subresource) = node.api_status(
        "/api/v1/namespaces/default/pods/web/ephemeralcontainers",
        &[],
    );
    assert_eq!(code, 200);
    assert_eq!(subresource["kind"], "Pod");
    assert_eq!(
        subresource["spec"]["ephemeralContainers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
