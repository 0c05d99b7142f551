//! The real kubectl attaching to containers with stdin and a terminal
//! (`stdin`, `stdinOnce`, `tty`): `attach -i` writes into a stdin that
//! stays open across sessions and agent restarts, `run -i --rm` on a
//! `stdinOnce` container ends its stdin with the session, and `attach -it`
//! drives a shell on the container's terminal (after an agent restart),
//! whose output is logged as stdout.

use std::process::Stdio;
use std::time::Duration;

use berth_integration::pty::{wait_for_size, Terminal};
use berth_integration::*;
use serde_json::json;

use super::{node, text, Node};

const WAIT: Duration = Duration::from_secs(30);

/// Echoes each line it reads, then says `eof` at the end of its stdin.
const ECHO: &str = "while read x; do echo got $x; done; echo eof";

/// A pod whose one container `main` runs `script` with these settings.
fn apply_with_stdio(node: &Node, name: &str, script: &str, stdio: serde_json::Value) {
    let mut container = sh_container("main", script);
    for (key, value) in stdio.as_object().unwrap() {
        container[key] = value.clone();
    }
    let mut pod = pod(name, "Never", vec![container]);
    pod["spec"]["terminationGracePeriodSeconds"] = json!(1);
    let file = node.write(&format!("{name}.json"), &pod);
    node.ok(&["apply", "-f", &file]);
    node.wait_ready(name);
}

/// `kubectl ARGS` with `input` on its stdin, then the end of it; its output.
pub(super) async fn with_input(node: &Node, args: &[&str], input: &str) -> std::process::Output {
    let mut child = tokio::process::Command::from(node.command(&node.kubeconfig(), args))
        .kill_on_drop(true)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, input.as_bytes())
        .await
        .unwrap();
    drop(stdin);
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not end"))
        .unwrap()
}

/// `kubectl ARGS` with `input` on its stdin, kept open until the output
/// shows `answer` (the session ends with the input, as containerd's CRI
/// ends it); what it printed by then, and its exit code.
pub(super) async fn answered(
    node: &Node,
    args: &[&str],
    input: &str,
    answer: &str,
) -> (String, Option<i32>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut child = tokio::process::Command::from(node.command(&node.kubeconfig(), args))
        .kill_on_drop(true)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut shown = Vec::new();
    let read = async {
        while !text(&shown).contains(answer) {
            let mut buf = [0u8; 1024];
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "kubectl {args:?} ended with {:?}", text(&shown));
            shown.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("no {answer:?} from kubectl {args:?}"));
    drop(stdin);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not end with its input"))
        .unwrap();
    stdout.read_to_end(&mut shown).await.unwrap();
    (text(&shown), status.code())
}

/// `.status.containerStatuses[0]` of `name`.
fn container_status(node: &Node, name: &str) -> serde_json::Value {
    let pod: serde_json::Value =
        serde_json::from_str(&node.ok(&["get", "pod", name, "-o", "json"])).unwrap();
    pod["status"]["containerStatuses"][0].clone()
}

#[tokio::test]
async fn kubectl_attach_i_writes_into_a_stdin_that_stays_open_across_sessions_and_agent_restarts() {
    let Some(mut node) = node().await else { return };
    apply_with_stdio(&node, "reader", ECHO, json!({"stdin": true}));

    // The session ends with kubectl's input; the container's stdin stays open.
    let out = answered(&node, &["attach", "-i", "reader"], "one\n", "got one\n").await;
    assert_eq!(out, ("got one\n".to_string(), Some(0)));
    assert!(container_status(&node, "reader")["state"]["running"].is_object());

    // The stdin and the logger outlive the agent; the new one adopts the
    // container as it is, and makes nothing again.
    node.agent.stop().await;
    node.agent.launch().await;
    node.wait_ready("reader");
    let out = answered(&node, &["attach", "-i", "reader"], "two\n", "got two\n").await;
    assert_eq!(out, ("got two\n".to_string(), Some(0)));
    let status = container_status(&node, "reader");
    assert_eq!(status["restartCount"], 0, "{status}");
    assert!(status["state"]["running"].is_object(), "{status}");
    // One logger wrote each line once.
    assert_eq!(node.ok(&["logs", "reader"]), "got one\ngot two\n");

    // A logger killed meanwhile is started again by the next agent.
    let logger = logger_of(&node, "reader");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(logger),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    node.agent.stop().await;
    node.agent.launch().await;
    node.wait_ready("reader");
    let out = answered(&node, &["attach", "-i", "reader"], "three\n", "got three\n").await;
    assert_eq!(out, ("got three\n".to_string(), Some(0)));
    assert_ne!(logger_of(&node, "reader"), logger);
    assert_eq!(
        node.ok(&["logs", "reader"]),
        "got one\ngot two\ngot three\n"
    );
}

/// The pid of the one `berth logger` of pod `pod`'s container.
fn logger_of(node: &Node, pod: &str) -> i32 {
    let dir = node.agent.log_dir().display().to_string();
    let wanted = format!("{dir}/default_{pod}_");
    let pids: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            (args.get(1).map(String::as_str) == Some("logger")
                && args.get(2).is_some_and(|p| p.starts_with(&wanted)))
            .then_some(pid)
        })
        .collect();
    assert_eq!(pids.len(), 1, "loggers of {pod}: {pids:?}");
    pids[0]
}

#[tokio::test]
async fn kubectl_run_i_rm_ends_a_stdin_once_containers_stdin_with_the_session() {
    let Some(node) = node().await else { return };
    let out = with_input(
        &node,
        &[
            "run",
            "once",
            "-i",
            "--rm",
            "--restart=Never",
            &format!("--image={TEST_IMAGE}"),
            "--image-pull-policy=Never",
            "--",
            "sh",
            "-c",
            ECHO,
        ],
        "hello\n",
    )
    .await;
    // The end of kubectl's input is the end of the container's stdin: it
    // says so and exits, the session ends, and --rm deletes the pod.
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("got hello\neof\n"), "{out:?}");
    assert!(stdout.contains(r#"pod "once" deleted"#), "{out:?}");

    // attach -i to a stdinOnce container: its stdin ends with the first
    // session, which follows its output until it stops.
    apply_with_stdio(
        &node,
        "first",
        ECHO,
        json!({"stdin": true, "stdinOnce": true}),
    );
    let out = with_input(&node, &["attach", "-i", "first"], "only\n").await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(text(&out.stdout), "got only\neof\n", "{out:?}");
    let status = container_status(&node, "first");
    assert_eq!(status["state"]["terminated"]["exitCode"], 0, "{status}");
}

#[tokio::test]
async fn kubectl_attach_it_drives_a_shell_on_the_containers_terminal() {
    let Some(mut node) = node().await else { return };
    apply_with_stdio(
        &node,
        "term",
        "exec sh",
        json!({"stdin": true, "stdinOnce": true, "tty": true}),
    );
    // Without -it kubectl asks for stderr too, which a terminal does not
    // have: the CRI streaming server's refusal, as on a cluster.
    let refused = node.fails(&["attach", "term"]);
    assert!(
        refused.contains("tty and stderr cannot both be true"),
        "{refused}"
    );
    // Adopted by a restarted agent as it runs: terminal, stdin and logger.
    node.agent.stop().await;
    node.agent.launch().await;
    node.wait_ready("term");

    let mut terminal = Terminal::spawn(
        &node.command(&node.kubeconfig(), &["attach", "-it", "term"]),
        80,
        24,
    );
    // The shell prompted before the attach: Enter shows a prompt again.
    let at = terminal
        .wait_for(0, "If you don't see a command prompt", WAIT)
        .await;
    terminal.type_text("\r");
    let at = terminal.wait_for(at, "# ", WAIT).await;
    // The container's terminal has the local one's size, and follows it.
    let at = wait_for_size(&mut terminal, at, 24, 80, WAIT).await;
    terminal.resize(132, 40);
    let at = wait_for_size(&mut terminal, at, 40, 132, WAIT).await;
    terminal.type_text("echo answer-$((6*7)); [ -t 0 ] && echo on-a-tty\r");
    let at = terminal.wait_for(at, "answer-42", WAIT).await;
    terminal.wait_for(at, "on-a-tty", WAIT).await;
    // The shell exits: the container stops, and the session with it.
    terminal.type_text("exit 3\r");
    terminal.exit_code(WAIT).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let status = loop {
        let status = container_status(&node, "term");
        if status["state"]["terminated"].is_object() {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["state"]["terminated"]["exitCode"], 3, "{status}");
    assert_eq!(status["restartCount"], 0, "{status}");

    // A terminal's output is logged as stdout, the typed input echoed in it.
    let log = cri_log(&node, "term");
    assert!(
        log.contains(" stdout ") && log.contains("answer-42"),
        "{log}"
    );
    assert!(!log.contains(" stderr "), "{log}");

    // A terminal without stdin: stdout and stderr are the terminal.
    apply_with_stdio(
        &node,
        "tty-only",
        "[ -t 1 ] && [ -t 2 ] && echo both-on-a-tty; echo to-stderr >&2; exec sleep 3600",
        json!({"tty": true}),
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while !node.ok(&["logs", "tty-only"]).contains("to-stderr") {
        assert!(tokio::time::Instant::now() < deadline, "no output logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = cri_log(&node, "tty-only");
    assert!(log.contains(" stdout F both-on-a-tty"), "{log}");
    assert!(log.contains(" stdout F to-stderr"), "{log}");
}

/// The CRI log file of pod `pod`'s container.
fn cri_log(node: &Node, pod: &str) -> String {
    let pods = node.agent.log_dir();
    let prefix = format!("default_{pod}_");
    let dir = std::fs::read_dir(&pods)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .unwrap_or_else(|| panic!("no log directory of {pod} in {}", pods.display()));
    std::fs::read_to_string(dir.path().join("main/0.log")).unwrap()
}
