//! The real kubectl's streaming commands against a standalone agent's HTTPS
//! API: exec (plain, `-i`, `-it` on a terminal), attach, port-forward and
//! cp, an exec into a container the pod lacks, and a client that goes away
//! mid-exec.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use berth_integration::pty::{drive_shell, Terminal};
use berth_integration::*;
use tokio::time::Instant;

use super::{node, text, Node};

const WAIT: Duration = Duration::from_secs(30);

/// A pod running `script` in its one container `main`, Ready.
fn running(node: &Node, name: &str, script: &str) {
    let mut pod = pod(name, "Always", vec![sh_container("main", script)]);
    pod["spec"]["terminationGracePeriodSeconds"] = serde_json::json!(1);
    let file = node.write(&format!("{name}.json"), &pod);
    node.ok(&["apply", "-f", &file]);
    node.wait_ready(name);
}

fn async_command(node: &Node, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::from(node.command(&node.kubeconfig(), args));
    command.kill_on_drop(true);
    command
}

#[tokio::test]
async fn kubectl_exec_runs_commands_with_stdin_and_on_a_terminal() {
    let Some(node) = node().await else { return };
    running(&node, "shell", "exec sleep 3600");

    // Plain: both streams, and the command's exit code.
    let out = node.kubectl(&[
        "exec",
        "shell",
        "--",
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(text(&out.stdout), "to-stdout\n");
    assert_eq!(
        text(&out.stderr),
        "to-stderr\ncommand terminated with exit code 3\n"
    );
    assert_eq!(
        node.ok(&["exec", "shell", "-c", "main", "--", "cat", "/etc/hostname"])
            .trim(),
        "shell"
    );

    // `-i`: stdin reaches `cat`, and its end (kubectl's close) ends it.
    let mut child = async_command(
        &node,
        &[
            "exec",
            "-i",
            "shell",
            "--",
            "sh",
            "-c",
            "cat; echo done >&2",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, b"line one\nline two\n")
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("kubectl exec -i did not end after stdin closed")
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), "line one\nline two\n");
    assert_eq!(text(&out.stderr), "done\n");

    // `-it`: a shell on a terminal, typed at, resized, its exit code.
    let mut terminal = Terminal::spawn(
        &node.command(&node.kubeconfig(), &["exec", "-it", "shell", "--", "sh"]),
        80,
        24,
    );
    drive_shell(&mut terminal, WAIT).await;
}

#[tokio::test]
async fn kubectl_exec_into_a_missing_container_or_gone_mid_exec() {
    let Some(node) = node().await else { return };
    running(&node, "one", "exec sleep 3600");

    // A container the pod lacks: 404 NotFound, as the kubelet answers.
    let err = node.fails(&["exec", "one", "-c", "nope", "--", "true"]);
    // kubectl checks the name against the pod it fetched first...
    assert_eq!(
        err,
        "error: container nope is not valid for pod one out of: main\n"
    );
    // ...so the server's answer is asked for as kubectl asks: a WebSocket
    // upgrade for v5.channel.k8s.io.
    let status = node.api_status(
        "/api/v1/namespaces/default/pods/one/exec?container=nope&command=true&stdout=true",
        &[
            "Connection: Upgrade",
            "Upgrade: websocket",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol: v5.channel.k8s.io",
        ],
    );
    assert_eq!(status.0, 404, "{status:?}");
    assert_eq!(status.1["kind"], "Status", "{status:?}");
    assert_eq!(status.1["reason"], "NotFound", "{status:?}");
    assert_eq!(
        status.1["message"], r#"container not found ("nope")"#,
        "{status:?}"
    );

    // kubectl killed mid-exec: the command it started does not outlive it.
    let ps = || node.ok(&["exec", "one", "--", "ps", "-o", "args"]);
    let started = |ps: &str| ps.lines().any(|l| l.contains("sleep 7777"));
    let mut child = async_command(&node, &["exec", "-i", "one", "--", "sleep", "7777"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while !started(&ps()) {
        assert!(Instant::now() < deadline, "the exec never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let now = ps();
        if !started(&now) {
            break;
        }
        assert!(Instant::now() < deadline, "still running: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ticks on stdout and stderr until /tmp/stop exists, then says bye and exits.
const TALKER: &str = "i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); echo tick $i; \
                      echo err $i >&2; sleep 0.2; done; echo bye";

/// Waits until `kubectl logs POD` shows `what`.
async fn logged(node: &Node, pod: &str, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !node.ok(&["logs", pod]).contains(what) {
        assert!(Instant::now() < deadline, "no {what} in the log of {pod}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn kubectl_attach_follows_the_output_until_the_container_stops() {
    let Some(node) = node().await else { return };
    let talker = pod("talker", "Never", vec![sh_container("main", TALKER)]);
    let file = node.write("talker.json", &talker);
    node.ok(&["apply", "-f", &file]);
    node.wait_ready("talker");
    logged(&node, "talker", "tick 3").await;

    let attach = async_command(&node, &["attach", "talker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    logged(&node, "talker", "tick 8").await;
    node.ok(&["exec", "talker", "--", "touch", "/tmp/stop"]);
    let out = tokio::time::timeout(WAIT, attach.wait_with_output())
        .await
        .expect("kubectl attach did not end with the container")
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        stdout.ends_with("bye\n") && stdout.contains("tick "),
        "{out:?}"
    );
    assert!(
        stdout.lines().all(|l| l.starts_with("tick ") || l == "bye"),
        "{stdout}"
    );
    // From where it attached, not the log's start.
    assert!(!stdout.lines().any(|l| l == "tick 1"), "{stdout}");
    assert!(stderr.lines().any(|l| l.starts_with("err ")), "{stderr}");
}

#[tokio::test]
async fn kubectl_port_forward_carries_http_to_a_port_only_the_pod_listens_on() {
    let Some(node) = node().await else { return };
    // Bound to the pod's loopback: reachable only from inside its network namespace.
    let web = "mkdir -p /www && echo hello-through-kubectl > /www/index.html \
               && exec httpd -f -p 127.0.0.1:8080 -h /www";
    running(&node, "web", web);
    let mut forward = async_command(&node, &["port-forward", "pod/web", ":8080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
        forward.stdout.take().unwrap(),
    ));
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("kubectl port-forward did not start")
        .unwrap()
        .unwrap_or_default();
    // "Forwarding from 127.0.0.1:PORT -> 8080"
    let local: u16 = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.strip_suffix(" -> 8080"))
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}\nagent log:\n{}", node.agent.agent_log()));
    for _ in 0..2 {
        let response = http_get("127.0.0.1", local, "/index.html", WAIT).await;
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("hello-through-kubectl"), "{response}");
    }
}

/// `kubectl cp ARGS`, which must succeed within [`WAIT`].
async fn copy(node: &Node, args: &[&str]) {
    let args = [&["cp"], args].concat();
    let out = tokio::time::timeout(WAIT, async_command(node, &args).output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} still running after {WAIT:?}"))
        .unwrap();
    assert!(out.status.success(), "kubectl {args:?}: {out:?}");
}

#[tokio::test]
async fn kubectl_cp_copies_into_and_out_of_a_container() {
    let Some(node) = node().await else { return };
    running(
        &node,
        "box",
        "mkdir -p /data && echo from-the-pod > /data/out.txt && exec sleep 3600",
    );
    let dir = node.dir.path();

    // Into the pod: a file and a directory tree (kubectl pipes tar to `tar x`).
    let local = dir.join("in.txt");
    std::fs::write(&local, "from-the-host\n").unwrap();
    copy(&node, &[&local.display().to_string(), "box:/tmp/in.txt"]).await;
    assert_eq!(
        node.ok(&["exec", "box", "--", "cat", "/tmp/in.txt"]),
        "from-the-host\n"
    );
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/deep.txt"), "deep\n").unwrap();
    let tree_arg = tree.display().to_string();
    copy(&node, &[&tree_arg, "box:/tmp/tree", "-c", "main"]).await;
    assert_eq!(
        node.ok(&["exec", "box", "--", "cat", "/tmp/tree/sub/deep.txt"]),
        "deep\n"
    );

    // Out of the pod (kubectl reads `tar cf -` from an exec).
    let fetched = dir.join("out.txt");
    copy(
        &node,
        &["box:/data/out.txt", &fetched.display().to_string()],
    )
    .await;
    assert_eq!(std::fs::read_to_string(&fetched).unwrap(), "from-the-pod\n");
    // A bigger file survives the trip intact, both ways.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let big_path = dir.join("big.bin");
    std::fs::File::create(&big_path)
        .unwrap()
        .write_all(&big)
        .unwrap();
    copy(
        &node,
        &[&big_path.display().to_string(), "box:/tmp/big.bin"],
    )
    .await;
    let back = dir.join("big.back");
    copy(&node, &["box:/tmp/big.bin", &back.display().to_string()]).await;
    assert!(
        std::fs::read(&back).unwrap() == big,
        "big.bin changed on the way"
    );

    // A path the container lacks: the exec behind `kubectl cp` fails with
    // tar's status, which `kubectl exec` reports. (kubectl cp itself exits
    // 0 here: it stops at the end of the empty archive, and whether tar's
    // complaint reaches it first is a race in kubectl, so it is not
    // asserted.)
    let out = node.kubectl(&["exec", "box", "--", "tar", "cf", "-", "/no/such/file"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}
