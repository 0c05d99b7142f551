//! Streaming through the local API with berth's CLI: exec with stdin, exec
//! with a terminal (typed at, resized), a client that goes away mid-exec,
//! exec into a container the pod lacks, attach (output, stdin, a
//! container's terminal), and port-forward.

use std::process::Stdio;
use std::time::Duration;

use berth_integration::pty::{drive_shell, wait_for_size, Terminal};
use berth_integration::*;
use berth_testkit::agent::berth_bin;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(20);

async fn running_pod(agent: &AgentProcess, name: &str, script: &str) {
    agent
        .apply_yaml(&manifest(&pod(
            name,
            "Always",
            vec![sh_container("main", script)],
        )))
        .await;
    wait_running(agent, name).await;
}

fn berth(agent: &AgentProcess, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(berth_bin());
    command
        .arg("--socket")
        .arg(agent.socket())
        .args(args)
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn exec_forwards_stdin_to_the_command_and_its_end_closes_it() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    running_pod(&agent, "cat", "exec sleep 3600").await;

    let mut child = berth(
        &agent,
        &["exec", "-i", "cat", "--", "sh", "-c", "cat; echo done >&2"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"line one\nline two\n").await.unwrap();
    // End of input: `cat` ends only if the close reached its stdin.
    drop(stdin);
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("exec -i did not end after stdin closed")
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "line one\nline two\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "done\n");
}

#[tokio::test]
async fn exec_it_gives_an_interactive_shell_on_a_terminal() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    running_pod(&agent, "shell", "exec sleep 3600").await;

    let mut command = std::process::Command::new(berth_bin());
    command
        .arg("--socket")
        .arg(agent.socket())
        .args(["exec", "-it", "shell", "--", "sh"]);
    let mut terminal = Terminal::spawn(&command, 80, 24);
    drive_shell(&mut terminal, WAIT).await;
}

#[tokio::test]
async fn a_client_that_goes_away_mid_exec_leaves_no_process_behind() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    running_pod(&agent, "abandon", "exec sleep 3600").await;

    let mut child = berth(&agent, &["exec", "-i", "abandon", "--", "sleep", "7777"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let running = |ps: &str| ps.lines().any(|l| l.contains("sleep 7777"));
    let deadline = Instant::now() + WAIT;
    while !running(
        &agent
            .cli_ok(&["exec", "abandon", "--", "ps", "-o", "args"])
            .await,
    ) {
        assert!(Instant::now() < deadline, "the exec never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let ps = agent
            .cli_ok(&["exec", "abandon", "--", "ps", "-o", "args"])
            .await;
        if !running(&ps) {
            break;
        }
        assert!(Instant::now() < deadline, "still running: {ps}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn exec_into_a_missing_container_is_not_found() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    running_pod(&agent, "one", "exec sleep 3600").await;
    let out = agent
        .cli(&["exec", "one", "-c", "nope", "--", "true"])
        .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error from server (NotFound): container not found (\"nope\")\n"
    );
}

#[tokio::test]
async fn port_forward_carries_http_to_a_port_only_the_pod_listens_on() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // Bound to the pod's loopback: reachable only from inside its network namespace.
    let script = "mkdir -p /www && echo hello-through-forward > /www/index.html \
                  && exec httpd -f -p 127.0.0.1:8080 -h /www";
    running_pod(&agent, "web", script).await;

    let mut child = berth(&agent, &["port-forward", "web", ":8080"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("port-forward did not start")
        .unwrap()
        .unwrap();
    // "Forwarding from 127.0.0.1:PORT -> 8080"
    let local = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.strip_suffix(" -> 8080"))
        .and_then(|port| port.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    for _ in 0..2 {
        let response = http_get("127.0.0.1", local, "/index.html", WAIT).await;
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("hello-through-forward"), "{response}");
    }
    let handled = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        handled.as_deref(),
        Some(&*format!("Handling connection for {local}"))
    );

    // A port nothing listens on: the connection ends, the forward goes on.
    let _ = child.kill().await;
    let mut refused = berth(&agent, &["port-forward", "web", ":9999"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(refused.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let local: u16 = line
        .trim_start_matches("Forwarding from 127.0.0.1:")
        .trim_end_matches(" -> 9999")
        .parse()
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", local))
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("a refused connection ends")
        .unwrap();
    assert!(rest.is_empty());
    let mut stderr = tokio::io::BufReader::new(refused.stderr.take().unwrap()).lines();
    let error = tokio::time::timeout(WAIT, stderr.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        error.contains("error forwarding port 9999 to pod web") && error.contains("refused"),
        "{error}"
    );
}

/// Ticks on stdout and stderr until /tmp/stop exists, then says bye and exits.
const TALKER: &str = "i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); echo tick $i; \
                      echo err $i >&2; sleep 0.2; done; echo bye";

#[tokio::test]
async fn attach_follows_the_containers_output_until_it_stops() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "talker",
            "Never",
            vec![sh_container("main", TALKER)],
        )))
        .await;
    wait_running(&agent, "talker").await;
    wait_log_contains(&agent, "talker", "main", "tick 3").await;

    let child = berth(&agent, &["attach", "talker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Live output, then the container's end ends the attach.
    wait_log_contains(&agent, "talker", "main", "tick 8").await;
    agent
        .cli_ok(&["exec", "talker", "--", "touch", "/tmp/stop"])
        .await;
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("attach did not end with the container")
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.ends_with("bye\n"), "{stdout}");
    assert!(
        stdout.lines().all(|l| l.starts_with("tick ") || l == "bye"),
        "{stdout}"
    );
    // kubectl's two notices, then the container's stderr.
    let mut stderr = stderr.lines();
    assert!(
        stderr
            .next()
            .is_some_and(|l| l.starts_with("All commands and output from this session")),
        "{out:?}"
    );
    assert_eq!(
        stderr.next(),
        Some("If you don't see a command prompt, try pressing enter.")
    );
    let stderr: Vec<&str> = stderr.collect();
    assert!(!stderr.is_empty(), "{out:?}");
    assert!(stderr.iter().all(|l| l.starts_with("err ")), "{stderr:?}");
    // From where it attached, not the log's start.
    assert!(!stdout.lines().any(|l| l == "tick 1"), "{stdout}");

    let refused = agent.cli(&["attach", "-i", "talker"]).await;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        "error: cannot attach a container in a completed pod; current phase is Succeeded\n"
    );
}

#[tokio::test]
async fn attach_writes_into_stdin_and_drives_a_shell_on_the_containers_terminal() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut reader = sh_container("main", "while read x; do echo got $x; done");
    reader["stdin"] = serde_json::json!(true);
    let mut shell = sh_container("main", "exec sh");
    shell["stdin"] = serde_json::json!(true);
    shell["tty"] = serde_json::json!(true);
    for (name, container) in [("reader", reader), ("shell", shell)] {
        agent
            .apply_yaml(&manifest(&pod(name, "Always", vec![container])))
            .await;
        wait_running(&agent, name).await;
    }

    // -i: a line in, its answer out; the container's stdin stays open.
    let mut child = berth(&agent, &["attach", "-q", "-i", "reader"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello\n").await.unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(WAIT, stdout.read_line(&mut line))
        .await
        .expect("no answer through attach -i")
        .unwrap();
    assert_eq!(line, "got hello\n");
    drop(stdin);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("attach -i did not end with its input")
        .unwrap();
    assert_eq!(status.code(), Some(0));

    // -it on the container's terminal: typed at, resized, and its exit ends it.
    let mut command = std::process::Command::new(berth_bin());
    command
        .arg("--socket")
        .arg(agent.socket())
        .args(["attach", "-it", "shell"]);
    let mut terminal = Terminal::spawn(&command, 80, 24);
    let at = terminal
        .wait_for(0, "If you don't see a command prompt", WAIT)
        .await;
    terminal.type_text("\r");
    let at = terminal.wait_for(at, "# ", WAIT).await;
    // The container's terminal gets the local one's size, and follows it.
    let at = wait_for_size(&mut terminal, at, 24, 80, WAIT).await;
    terminal.resize(100, 30);
    let at = wait_for_size(&mut terminal, at, 30, 100, WAIT).await;
    terminal.type_text("exit\r");
    assert_eq!(
        terminal.exit_code(WAIT).await,
        Some(0),
        "{}",
        terminal.screen()
    );
    // Printed as the client ends: shown once the terminal is read to its end.
    terminal
        .wait_for(
            at,
            "Session ended, resume using 'berth attach shell -c main -n default -i -t' command",
            WAIT,
        )
        .await;
}
