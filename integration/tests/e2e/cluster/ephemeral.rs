//! `kubectl debug` through the API server: the `pods/ephemeralcontainers`
//! subresource adds a container the node sees on its watch and runs in the
//! target's PID namespace; logs, exec and attach reach it through the API
//! server, and the pod stays Ready.

use super::*;

fn ephemeral_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["status"]["ephemeralContainerStatuses"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

#[tokio::test]
async fn kubectl_debug_adds_a_running_ephemeral_container_to_a_pod_of_the_node() {
    let Some(c) = cluster("berth-node-debug").await else {
        return;
    };
    c.kubectl_ok(&[
        "run",
        "web",
        &format!("--image={TEST_IMAGE}"),
        "--image-pull-policy=Never",
        "--",
        "sleep",
        "3600",
    ]);
    c.wait_pod_phase("web", "Running").await;

    c.kubectl_ok(&[
        "debug",
        "web",
        &format!("--image={TEST_IMAGE}"),
        "--image-pull-policy=Never",
        "--target=web",
        "-c",
        "dbg",
        "--",
        "sh",
        "-c",
        "ps -o pid,args; exec sleep 3601",
    ]);
    let pod = c
        .wait_for("the ephemeral container to run", |c| {
            let pod = c.json(&["get", "pod", "web"])?;
            let running = ephemeral_status(&pod, "dbg")?["state"]["running"].is_object();
            running.then_some(pod)
        })
        .await;
    let status = ephemeral_status(&pod, "dbg").unwrap();
    assert_eq!(status["ready"], false, "{status:#}");
    assert_eq!(status["restartCount"], 0, "{status:#}");
    assert_eq!(pod["metadata"]["generation"], 2);
    assert_eq!(condition_status(&pod, "Ready"), Some("True"));
    assert_eq!(pod["status"]["phase"], "Running");

    // The target's process is pid 1 of the PID namespace it joined.
    let logs = c
        .wait_for("the ephemeral container's output", |c| {
            let logs = stdout(&c.kubectl(&["logs", "web", "-c", "dbg"]));
            logs.contains("sleep 3600").then_some(logs)
        })
        .await;
    assert!(
        logs.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "sleep", "3600"]),
        "{logs}"
    );
    let marco = c.kubectl_ok(&["exec", "web", "-c", "dbg", "--", "echo", "marco"]);
    assert_eq!(marco.trim(), "marco");
    c.wait_for("the ephemeral container's Started event", |c| {
        let events = stdout(&c.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web",
            "-o",
            "jsonpath={range .items[*]}{.involvedObject.fieldPath}:{.reason}:{.message}{\"\\n\"}{end}",
        ]));
        events
            .contains("spec.ephemeralContainers{dbg}:Started:Container started")
            .then_some(())
    })
    .await;

    // Attached with stdin, through the API server.
    let mut debug = tokio::process::Command::from(c.cp.kubectl_command(&[
        "debug",
        "web",
        "-i",
        &format!("--image={TEST_IMAGE}"),
        "--image-pull-policy=Never",
        "-c",
        "dbg2",
        "--",
        "sh",
        "-c",
        "read x; echo got $x; sleep 1",
    ]));
    let mut child = debug
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"hello\n")
        .await
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut shown = Vec::new();
    let read = async {
        while !String::from_utf8_lossy(&shown).contains("got hello") {
            let mut buf = [0u8; 1024];
            let n = tokio::io::AsyncReadExt::read(&mut out, &mut buf)
                .await
                .unwrap();
            assert!(n > 0, "kubectl debug -i ended: {shown:?}");
            shown.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(CLUSTER_TIMEOUT, read)
        .await
        .expect("no answer from kubectl debug -i");
    drop(stdin);
    let _ = tokio::time::timeout(CLUSTER_TIMEOUT, child.wait()).await;
    let pod = c
        .wait_for("dbg2 to end", |c| {
            let pod = c.json(&["get", "pod", "web"])?;
            let done = ephemeral_status(&pod, "dbg2")?["state"]["terminated"].is_object();
            done.then_some(pod)
        })
        .await;
    let dbg2 = ephemeral_status(&pod, "dbg2").unwrap();
    assert_eq!(dbg2["state"]["terminated"]["exitCode"], 0, "{dbg2:#}");
    assert_eq!(dbg2["restartCount"], 0);
    assert_eq!(condition_status(&pod, "Ready"), Some("True"));
}
