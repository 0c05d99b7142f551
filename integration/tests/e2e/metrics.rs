//! `GET /metrics` on the local API: the kubelet's metric names and labels,
//! moved by a pod start, a failing probe and an image pull; the classic
//! text format by default (as Debian's `promtool check metrics` reads it)
//! and OpenMetrics only when asked for.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use berth_integration::*;
use berth_testkit::registry::LocalRegistry;
use berth_testkit::write_busybox_archive;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// `GET /metrics` with `accept`: the response's head (lower case) and body.
async fn scrape(socket: &Path, accept: Option<&str>) -> (String, String) {
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    let request =
        format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\n{accept}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("scrape in time")
        .expect("read");
    let response = String::from_utf8(response).expect("utf-8");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    (head.to_ascii_lowercase(), body.to_string())
}

/// The value of the sample `name` carrying every label in `labels`; 0 when
/// there is none (a counter not yet moved has no series).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// `promtool check metrics` on `text`: its exit status and what it said.
async fn promtool_check(text: &str) -> (bool, String) {
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/install-deps.sh --test)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(text.as_bytes())
        .await
        .expect("feed promtool");
    drop(stdin);
    let out = child.wait_with_output().await.expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[tokio::test]
async fn a_start_a_failing_probe_and_a_pull_move_the_kubelets_metrics() {
    let Some(registry) = LocalRegistry::start_or_skip(None).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = write_busybox_archive(dir.path(), "registry.test/busybox:1");
    registry.push(&archive, "busybox:1").await;
    let config = dir.path().join("registries.yaml");
    let registries = json!({ "registries": { registry.host(): { "plainHttp": true } } });
    std::fs::write(&config, registries.to_string()).expect("write registry config");
    let Some((_containerd, agent)) =
        setup_with(&["--registry-config", &config.display().to_string()]).await
    else {
        return;
    };
    let socket = agent.socket();
    let (_, before) = scrape(&socket, None).await;

    let image = registry.reference("busybox:1");
    let mut main = sh_container("main", "sleep 3600");
    main["image"] = json!(image);
    // Never ready: every attempt fails.
    main["readinessProbe"] = json!({
        "exec": { "command": ["cat", "/tmp/never"] },
        "periodSeconds": 1,
        "failureThreshold": 1,
    });
    let mut spec = pod("measured", "Always", vec![main]);
    let mut init = sh_container("prepare", "exit 0");
    init["image"] = json!(image);
    spec["spec"]["initContainers"] = json!([init]);
    agent.apply_yaml(&manifest(&spec)).await;
    let running = wait_running(&agent, "measured").await;
    let pod_uid = uid(&running).to_string();

    let failed_probe = [
        ("probe_type", "Readiness"),
        ("result", "failed"),
        ("container", "main"),
        ("pod", "measured"),
        ("namespace", "default"),
        ("pod_uid", pod_uid.as_str()),
    ];
    let moved = |text: &str, name: &str, labels: &[(&str, &str)]| {
        sample(text, name, labels) > sample(&before, name, labels)
    };
    let counters: [(&str, &[(&str, &str)]); 11] = [
        (
            "kubelet_terminated_containers_total",
            &[
                ("container_type", "init_container"),
                ("exit_code", "0"),
                ("reason", "Completed"),
            ],
        ),
        (
            "kubelet_started_containers_total",
            &[("container_type", "container")],
        ),
        ("prober_probe_total", &failed_probe),
        ("kubelet_image_pull_duration_seconds_count", &[]),
        ("kubelet_pod_start_duration_seconds_count", &[]),
        ("kubelet_pod_start_sli_duration_seconds_count", &[]),
        (
            "kubelet_pod_worker_duration_seconds_count",
            &[("operation", "create")],
        ),
        ("berth_sandbox_create_duration_seconds_count", &[]),
        ("berth_pod_network_setup_duration_seconds_count", &[]),
        ("berth_container_create_duration_seconds_count", &[]),
        ("berth_container_start_duration_seconds_count", &[]),
    ];
    // The probe fails within a period or two of the start.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (head, text) = loop {
        let (head, text) = scrape(&socket, None).await;
        let all = counters
            .iter()
            .all(|(name, labels)| moved(&text, name, labels));
        if all || Instant::now() >= deadline {
            break (head, text);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (name, labels) in counters {
        assert!(moved(&text, name, labels), "{name} {labels:?}:\n{text}");
    }
    assert_eq!(sample(&text, "kubelet_running_pods", &[]), 1.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "kubelet_running_containers",
            &[("container_state", "running")]
        ),
        1.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            "kubelet_http_requests_total",
            &[("method", "GET"), ("path", "metrics")]
        ) >= 1.0,
        "{text}"
    );
    // busybox is well under 10 MB.
    assert!(
        text.contains(
            "kubelet_image_pull_duration_seconds_count{image_size_in_bytes=\"0-10MB\"} 1"
        ),
        "{text}"
    );

    // The classic format, which promtool takes without a complaint.
    assert!(
        head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(
        text.contains("# TYPE kubelet_started_containers_total counter\n"),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    let (ok, said) = promtool_check(&text).await;
    assert!(ok && said.trim().is_empty(), "promtool: {said}\n{text}");

    // OpenMetrics only for a scraper that asks for it.
    let (head, openmetrics) = scrape(
        &socket,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await;
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(
        openmetrics.contains("# TYPE kubelet_started_containers counter\n"),
        "{openmetrics}"
    );

    // The pod's probe series go with it.
    agent
        .cli_ok(&["delete", "pod", "measured", "--grace-period", "0"])
        .await;
    agent
        .wait_gone("default", "measured", Duration::from_secs(30))
        .await;
    let (_, after) = scrape(&socket, None).await;
    assert_eq!(sample(&after, "prober_probe_total", &failed_probe), 0.0);
    assert_eq!(sample(&after, "kubelet_running_pods", &[]), 0.0, "{after}");
}
