//! Streaming through the local API with berth's CLI: exec with stdin, exec
//! with a terminal (typed at, resized), a client that goes away mid-exec,
//! exec into a container the pod lacks, attach (output, stdin, a
//! container's terminal), and port-forward; exec over each remote command
//! WebSocket protocol the kubelet speaks.

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

/// What a WebSocket exec gave: each data message as (channel, bytes), in
/// order, with the protocol the agent chose.
struct Exchange {
    protocol: Option<String>,
    messages: Vec<(u8, Vec<u8>)>,
}

impl Exchange {
    fn on(&self, channel: u8) -> String {
        let bytes: Vec<u8> = self
            .messages
            .iter()
            .filter(|(c, _)| *c == channel)
            .flat_map(|(_, b)| b.clone())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Runs `command` in pod `pod` over a WebSocket exec on the local API,
/// offering `protocols` (none: no header), and reads to the end. Text
/// messages are base64: the channel as a digit, then the bytes.
async fn ws_exec(
    agent: &AgentProcess,
    pod: &str,
    protocols: &[&str],
    command: &[&str],
) -> Exchange {
    use base64::Engine;
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let mut query = String::from("stdout=1&stderr=1");
    for word in command {
        query.push_str("&command=");
        for b in word.bytes() {
            if b.is_ascii_alphanumeric() {
                query.push(char::from(b));
            } else {
                query.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let url = format!("ws://localhost/api/v1/namespaces/default/pods/{pod}/exec?{query}");
    let mut request = url.into_client_request().unwrap();
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            protocols.join(", ").parse().unwrap(),
        );
    }
    let stream = tokio::net::UnixStream::connect(agent.socket())
        .await
        .unwrap();
    let (mut socket, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("the agent accepts the WebSocket");
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut messages = Vec::new();
    let read_all = async {
        while let Some(message) = socket.next().await {
            match message.unwrap() {
                Message::Binary(data) => {
                    let (channel, bytes) = data.split_first().expect("a channel byte");
                    messages.push((*channel, bytes.to_vec()));
                }
                Message::Text(text) => {
                    let (digit, rest) = text.as_bytes().split_first().expect("a channel digit");
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(rest)
                        .expect("base64");
                    messages.push((digit - b'0', bytes));
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(WAIT, read_all)
        .await
        .expect("the exec ends");
    Exchange { protocol, messages }
}

/// Clients that speak the older protocols, as the upstream spec "should
/// support remote command execution over websockets" does (`channel.k8s.io`),
/// get them as the kubelet serves them: before v4 a success sends nothing on
/// channel 3 and a failure its message text; base64 protocols send text
/// messages; a client that offers no protocol gets `channel.k8s.io`.
#[tokio::test]
async fn exec_speaks_the_older_websocket_protocols() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    running_pod(&agent, "remote", "exec sleep 3600").await;
    let echo = ["echo", "remote execution test"];
    let fail = ["sh", "-c", "echo oops >&2; exit 3"];
    let failed = "command terminated with non-zero exit code: exit status 3";

    let legacy = ws_exec(&agent, "remote", &["channel.k8s.io"], &echo).await;
    assert_eq!(legacy.protocol.as_deref(), Some("channel.k8s.io"));
    assert_eq!(legacy.on(1), "remote execution test\n");
    assert!(
        legacy.messages.iter().all(|(c, b)| *c == 1 || b.is_empty()),
        "only stdout carries data: {:?}",
        legacy.messages
    );
    let legacy = ws_exec(&agent, "remote", &["channel.k8s.io"], &fail).await;
    assert_eq!(
        (legacy.on(2).as_str(), legacy.on(3).as_str()),
        ("oops\n", failed)
    );

    let unnamed = ws_exec(&agent, "remote", &[], &echo).await;
    assert_eq!(unnamed.protocol, None);
    assert_eq!(
        (unnamed.on(1).as_str(), unnamed.on(3).as_str()),
        ("remote execution test\n", "")
    );

    let base64 = ws_exec(&agent, "remote", &["base64.channel.k8s.io"], &fail).await;
    assert_eq!(base64.protocol.as_deref(), Some("base64.channel.k8s.io"));
    assert_eq!(
        (base64.on(2).as_str(), base64.on(3).as_str()),
        ("oops\n", failed)
    );

    let v4 = ws_exec(&agent, "remote", &["v4.base64.channel.k8s.io"], &fail).await;
    assert_eq!(v4.protocol.as_deref(), Some("v4.base64.channel.k8s.io"));
    let status: serde_json::Value = serde_json::from_str(&v4.on(3)).expect("a JSON Status");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "3", "{status}");
}
