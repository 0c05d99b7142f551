//! Startup, liveness and readiness probes on real containerd
//! (docs/kubelet-semantics.md §8): exec, httpGet and tcpSocket handlers, `ready` and
//! `started` in the status, the Ready condition, restarts and their events.

use std::time::Duration;

use berth_api::reasons;
use berth_integration::*;
use serde_json::{json, Value};
use tokio::time::Instant;

/// A probe running `command` (no shell) every second.
fn exec_probe(command: &[&str], failure_threshold: i32) -> Value {
    json!({
        "exec": { "command": command },
        "periodSeconds": 1,
        "failureThreshold": failure_threshold,
    })
}

/// `ready` of container `name`.
fn ready(pod: &Value, name: &str) -> bool {
    container_status(pod, name).is_some_and(|s| s["ready"] == true)
}

/// `started` of container `name`.
fn started(pod: &Value, name: &str) -> bool {
    container_status(pod, name).is_some_and(|s| s["started"] == true)
}

/// The status of the pod's `Ready` condition ("" when not reported).
fn ready_condition(pod: &Value) -> &str {
    condition(pod, "Ready")
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
}

/// Running, every container running, pod Ready = `want` throughout.
fn running_with_ready(pod: &Value, want: bool) -> bool {
    let status = if want { "True" } else { "False" };
    all_running(pod) && ready(pod, "main") == want && ready_condition(pod) == status
}

/// Polls the pod's events until one satisfies `pred`; returns it.
async fn wait_event(
    agent: &AgentProcess,
    name: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let (_, events) = pod_events(agent, "default", name).await;
        if let Some(e) = events.iter().find(|e| pred(e)) {
            return e.clone();
        }
        assert!(Instant::now() < deadline, "no {what} event: {events:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An `Unhealthy` event on `main` whose message starts with `prefix`.
async fn wait_unhealthy(agent: &AgentProcess, name: &str, prefix: &str) -> Value {
    let event = wait_event(agent, name, &format!("Unhealthy {prefix:?}"), |e| {
        e["reason"] == reasons::UNHEALTHY
            && e["involvedObject"]["fieldPath"] == "spec.containers{main}"
            && e["message"].as_str().is_some_and(|m| m.starts_with(prefix))
    })
    .await;
    assert_eq!(event["type"], "Warning", "{event:#}");
    event
}

/// The READY column of `get pods`.
async fn ready_column(agent: &AgentProcess, name: &str) -> String {
    get_pods_row(agent, name)
        .await
        .and_then(|r| r.get(1).cloned())
        .unwrap_or_default()
}

/// `berth exec POD -- sh -c SCRIPT`, which must succeed.
async fn exec_sh(agent: &AgentProcess, pod: &str, script: &str) {
    agent.cli_ok(&["exec", pod, "--", "sh", "-c", script]).await;
}

#[tokio::test]
async fn an_exec_readiness_probe_gates_ready_both_ways() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut main = term_handling_container("main");
    main["readinessProbe"] = exec_probe(&["cat", "/tmp/ready"], 1);
    agent
        .apply_yaml(&manifest(&pod("gated", "Always", vec![main])))
        .await;

    wait_running(&agent, "gated").await;
    // The probe has run and failed: the pod still runs but is not ready.
    let event = wait_unhealthy(&agent, "gated", "Readiness probe failed:").await;
    assert!(
        event["message"].as_str().unwrap().contains("/tmp/ready"),
        "the exec output: {event:#}"
    );
    let unready = agent.get_pod_json("default", "gated").await;
    assert!(running_with_ready(&unready, false), "{unready:#}");
    assert!(started(&unready, "main"), "no startup probe: {unready:#}");
    let c = condition(&unready, "ContainersReady").expect("ContainersReady");
    assert_eq!(c["status"], "False", "{unready:#}");
    assert_eq!(c["reason"], "ContainersNotReady", "{unready:#}");
    assert_eq!(ready_column(&agent, "gated").await, "0/1");

    exec_sh(&agent, "gated", "touch /tmp/ready").await;
    let ready_pod = agent
        .wait_for("default", "gated", "ready", START_TIMEOUT, |p| {
            running_with_ready(p, true)
        })
        .await;
    assert_eq!(restart_count(&ready_pod, "main"), 0, "{ready_pod:#}");
    assert_eq!(
        condition(&ready_pod, "ContainersReady").unwrap()["status"],
        "True",
        "{ready_pod:#}"
    );
    assert_eq!(ready_column(&agent, "gated").await, "1/1");

    exec_sh(&agent, "gated", "rm /tmp/ready").await;
    let unready = agent
        .wait_for("default", "gated", "unready again", START_TIMEOUT, |p| {
            running_with_ready(p, false)
        })
        .await;
    // Readiness never restarts a container.
    assert_eq!(restart_count(&unready, "main"), 0, "{unready:#}");
    assert_eq!(ready_column(&agent, "gated").await, "0/1");
}

#[tokio::test]
async fn a_failing_exec_liveness_probe_restarts_the_container_with_events() {
    let Some((_containerd, agent)) = setup_with_back_off(1, 2).await else {
        return;
    };
    // Healthy for ~2 s, then the probe's file is gone for good. The trap keeps
    // the kill quick (the default grace is 30 s).
    let mut main = sh_container(
        "main",
        "trap 'exit 0' TERM; touch /tmp/healthy; sleep 2; rm /tmp/healthy; \
         while true; do sleep 0.1; done",
    );
    main["livenessProbe"] = exec_probe(&["cat", "/tmp/healthy"], 2);
    agent
        .apply_yaml(&manifest(&pod("sickly", "Always", vec![main])))
        .await;

    let first = wait_running(&agent, "sickly").await;
    let first_id = container_id(&first, "main").expect("containerID");
    let restarted = agent
        .wait_for("default", "sickly", "restarted", START_TIMEOUT, |p| {
            restart_count(p, "main") >= 1
        })
        .await;
    let last = &container_status(&restarted, "main").unwrap()["lastState"]["terminated"];
    assert!(last.is_object(), "{restarted:#}");
    assert_eq!(
        last["containerID"],
        format!("containerd://{first_id}"),
        "{restarted:#}"
    );
    assert_ne!(phase(&restarted), "Failed", "{restarted:#}");

    let unhealthy = wait_unhealthy(&agent, "sickly", "Liveness probe failed:").await;
    assert!(
        unhealthy["message"]
            .as_str()
            .unwrap()
            .contains("/tmp/healthy"),
        "the exec output: {unhealthy:#}"
    );
    let (_, events) = pod_events(&agent, "default", "sickly").await;
    let killing = find_event(&events, reasons::KILLING, "spec.containers{main}")
        .unwrap_or_else(|| panic!("no Killing event: {events:#?}"));
    assert_eq!(killing["type"], "Normal", "{killing:#}");
    assert_eq!(
        killing["message"], "Container main failed liveness probe, will be restarted",
        "{killing:#}"
    );
    let describe = agent.cli_ok(&["describe", "pod", "sickly"]).await;
    assert!(
        describe.contains(reasons::UNHEALTHY) && describe.contains("Liveness probe failed:"),
        "{describe}"
    );
    assert!(
        describe.contains("Container main failed liveness probe, will be restarted"),
        "{describe}"
    );
}

#[tokio::test]
async fn an_http_get_readiness_probe_follows_the_page() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // httpd as PID 1 would ignore SIGTERM: sh handles it.
    let mut main = sh_container(
        "main",
        "mkdir -p /www; httpd -f -p 8080 -h /www & \
         trap 'exit 0' TERM; while true; do sleep 0.1; done",
    );
    main["ports"] = json!([{ "name": "http", "containerPort": 8080 }]);
    main["readinessProbe"] = json!({
        "httpGet": { "path": "/healthz.html", "port": "http" },
        "periodSeconds": 1,
        "failureThreshold": 1,
    });
    agent
        .apply_yaml(&manifest(&pod("web-ready", "Always", vec![main])))
        .await;

    wait_running(&agent, "web-ready").await;
    // httpd answers 404 once it listens; before that the connect is refused.
    let event = wait_unhealthy(
        &agent,
        "web-ready",
        "Readiness probe failed: HTTP probe failed with statuscode: 404",
    )
    .await;
    assert_eq!(
        event["message"],
        "Readiness probe failed: HTTP probe failed with statuscode: 404"
    );
    let unready = agent.get_pod_json("default", "web-ready").await;
    assert!(running_with_ready(&unready, false), "{unready:#}");

    exec_sh(&agent, "web-ready", "echo ok > /www/healthz.html").await;
    let ready_pod = agent
        .wait_for("default", "web-ready", "ready", START_TIMEOUT, |p| {
            running_with_ready(p, true)
        })
        .await;
    assert_eq!(restart_count(&ready_pod, "main"), 0, "{ready_pod:#}");
    assert_eq!(ready_column(&agent, "web-ready").await, "1/1");
}

#[tokio::test]
async fn a_failing_tcp_liveness_probe_kills_a_never_restarted_container() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // The container ignores SIGTERM: the probe's own grace period (1 s, not
    // the pod's 30 s) ends it with SIGKILL.
    let mut main = sh_container(
        "main",
        "trap '' TERM; echo up; while true; do sleep 0.1; done",
    );
    main["livenessProbe"] = json!({
        "tcpSocket": { "port": 9999 },
        "periodSeconds": 1,
        "failureThreshold": 1,
        "terminationGracePeriodSeconds": 1,
    });
    agent
        .apply_yaml(&manifest(&pod("no-listener", "Never", vec![main])))
        .await;

    wait_running(&agent, "no-listener").await;
    let done = wait_terminal(&agent, "no-listener").await;
    assert_eq!(phase(&done), "Failed", "{done:#}");
    assert_eq!(restart_count(&done, "main"), 0, "{done:#}");
    let term = terminated(&done, "main").unwrap_or_else(|| panic!("not terminated: {done:#}"));
    assert_eq!(
        term["exitCode"], 137,
        "SIGKILLed after the 1 s grace: {done:#}"
    );
    assert_eq!(term["reason"], "Error", "{done:#}");

    let (_, events) = pod_events(&agent, "default", "no-listener").await;
    let killing = find_event(&events, reasons::KILLING, "spec.containers{main}")
        .unwrap_or_else(|| panic!("no Killing event: {events:#?}"));
    // Under Never the kubelet does not add ", will be restarted".
    assert_eq!(
        killing["message"], "Container main failed liveness probe",
        "{killing:#}"
    );
    // It stays dead.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let pod = agent.get_pod_json("default", "no-listener").await;
        assert_eq!(phase(&pod), "Failed", "{pod:#}");
        assert_eq!(restart_count(&pod, "main"), 0, "{pod:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The kubelet's output is Go's dial error:
    // "dial tcp <podIP>:9999: connect: connection refused".
    let unhealthy = wait_unhealthy(&agent, "no-listener", "Liveness probe failed: dial tcp ").await;
    let message = unhealthy["message"].as_str().unwrap();
    assert!(
        message.ends_with(":9999: connect: connection refused"),
        "the kubelet's dial error text: {unhealthy:#}"
    );
}

#[tokio::test]
async fn a_startup_probe_holds_back_a_failing_liveness_probe() {
    let Some((_containerd, agent)) = setup_with_back_off(1, 2).await else {
        return;
    };
    let mut main = term_handling_container("main");
    main["startupProbe"] = exec_probe(&["cat", "/tmp/started"], 30);
    // Would kill the container after 3 attempts (~2 s, long enough to see
    // `started` true in between).
    main["livenessProbe"] = exec_probe(&["cat", "/tmp/never"], 3);
    agent
        .apply_yaml(&manifest(&pod("slow-start", "Always", vec![main])))
        .await;

    wait_running(&agent, "slow-start").await;
    // Startup has failed a few times (below its threshold of 30), and
    // meanwhile liveness must not have run.
    wait_unhealthy(&agent, "slow-start", "Startup probe failed:").await;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let pod = agent.get_pod_json("default", "slow-start").await;
        assert!(all_running(&pod), "{pod:#}");
        assert_eq!(restart_count(&pod, "main"), 0, "{pod:#}");
        assert!(!started(&pod, "main"), "{pod:#}");
        assert!(!ready(&pod, "main"), "not started, so not ready: {pod:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, events) = pod_events(&agent, "default", "slow-start").await;
    assert!(
        !events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Liveness probe"))),
        "liveness ran before startup succeeded: {events:#?}"
    );

    exec_sh(&agent, "slow-start", "touch /tmp/started").await;
    let first_id = container_id(&agent.get_pod_json("default", "slow-start").await, "main");
    agent
        .wait_for("default", "slow-start", "started", START_TIMEOUT, |p| {
            started(p, "main") && container_id(p, "main") == first_id
        })
        .await;
    // Now liveness runs, fails and restarts the container: it was only held.
    let restarted = agent
        .wait_for("default", "slow-start", "restarted", START_TIMEOUT, |p| {
            restart_count(p, "main") >= 1
        })
        .await;
    // The new instance starts over: not started until its startup probe passes.
    if is_running(&restarted, "main") {
        assert!(!started(&restarted, "main"), "{restarted:#}");
    }
    wait_unhealthy(&agent, "slow-start", "Liveness probe failed:").await;
}

/// A pod on the node's network, so that probes aimed at the pod IP reach
/// servers this test runs on the host.
fn host_network_pod(name: &str, main: Value) -> Value {
    let mut pod = pod(name, "Always", vec![main]);
    pod["spec"]["hostNetwork"] = json!(true);
    pod
}

#[tokio::test]
async fn a_grpc_readiness_probe_follows_the_health_service() {
    use tonic_health::ServingStatus;
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("berth.test", ServingStatus::NotServing)
        .await;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut main = term_handling_container("main");
    main["readinessProbe"] = json!({
        "grpc": { "port": port, "service": "berth.test" },
        "periodSeconds": 1,
        "failureThreshold": 1,
    });
    agent
        .apply_yaml(&manifest(&host_network_pod("grpc-ready", main)))
        .await;

    wait_running(&agent, "grpc-ready").await;
    wait_unhealthy(
        &agent,
        "grpc-ready",
        "Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")",
    )
    .await;
    let unready = agent.get_pod_json("default", "grpc-ready").await;
    assert!(running_with_ready(&unready, false), "{unready:#}");

    reporter
        .set_service_status("berth.test", ServingStatus::Serving)
        .await;
    agent
        .wait_for("default", "grpc-ready", "ready", START_TIMEOUT, |p| {
            running_with_ready(p, true)
        })
        .await;
    reporter
        .set_service_status("berth.test", ServingStatus::NotServing)
        .await;
    agent
        .wait_for("default", "grpc-ready", "not ready", START_TIMEOUT, |p| {
            running_with_ready(p, false)
        })
        .await;
}

/// An HTTPS server with a self-signed certificate that answers every
/// request with `answer`; it counts the requests it read.
async fn https_server(
    answer: &'static str,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{pki_types::PrivateKeyDer, ServerConfig};

    let cert = rcgen::generate_simple_self_signed(vec!["pod.invalid".into()]).unwrap();
    let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, served)
}

#[tokio::test]
async fn an_https_probe_skips_verification_and_a_redirect_elsewhere_only_warns() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // The answer sends the prober to another host (loopback is not the node's
    // IP): the kubelet stops there and counts a warning as success.
    let (port, served) = https_server(
        "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/elsewhere\r\ncontent-length: 5\r\n\r\nmoved",
    )
    .await;
    let mut main = term_handling_container("main");
    main["readinessProbe"] = json!({
        "httpGet": { "scheme": "HTTPS", "path": "/healthz", "port": port },
        "periodSeconds": 1,
    });
    agent
        .apply_yaml(&manifest(&host_network_pod("https-ready", main)))
        .await;

    agent
        .wait_for("default", "https-ready", "ready", START_TIMEOUT, |p| {
            running_with_ready(p, true)
        })
        .await;
    let warning = wait_event(&agent, "https-ready", reasons::PROBE_WARNING, |e| {
        e["reason"] == reasons::PROBE_WARNING
    })
    .await;
    assert_eq!(warning["type"], "Warning", "{warning:#}");
    assert_eq!(
        warning["message"],
        "Readiness probe warning: Probe terminated redirects, Response body: moved"
    );
    assert!(served.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn an_exec_probe_that_overruns_its_timeout_fails_and_readiness_waits_its_delay() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut slow = term_handling_container("main");
    slow["readinessProbe"] = json!({
        "exec": { "command": ["sleep", "5"] },
        "timeoutSeconds": 1,
        "periodSeconds": 1,
    });
    let mut delayed = term_handling_container("delayed");
    delayed["readinessProbe"] = json!({
        "exec": { "command": ["true"] },
        "initialDelaySeconds": 3,
        "periodSeconds": 1,
    });
    agent
        .apply_yaml(&manifest(&pod(
            "probe-timing",
            "Always",
            vec![slow, delayed],
        )))
        .await;

    let running = wait_running(&agent, "probe-timing").await;
    let event = wait_unhealthy(
        &agent,
        "probe-timing",
        "Readiness probe failed: command \"sleep 5\" timed out",
    )
    .await;
    assert_eq!(event["type"], "Warning");
    let now = agent.get_pod_json("default", "probe-timing").await;
    assert!(!ready(&now, "main"), "{now:#}");

    // `delayed` turns ready, but never before its initial delay.
    let started_at = |pod: &Value| {
        container_status(pod, "delayed").and_then(|s| {
            s["state"]["running"]["startedAt"]
                .as_str()
                .map(|t| t.parse::<k8s_openapi::jiff::Timestamp>().unwrap())
        })
    };
    let started = started_at(&running).expect("delayed runs");
    let mut seen_unready_at = None;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let pod = agent.get_pod_json("default", "probe-timing").await;
        let now = k8s_openapi::jiff::Timestamp::now();
        if ready(&pod, "delayed") {
            // startedAt is truncated to the second, so it is never late.
            let after = now.duration_since(started).as_secs_f64();
            assert!(after >= 3.0, "ready {after:.2} s after the start");
            break;
        }
        seen_unready_at = Some(now);
        assert!(
            Instant::now() < deadline,
            "delayed never turned ready: {pod:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_unready_at.is_some(), "the container was ready at once");
}
