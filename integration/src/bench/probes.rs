//! N pods × 3 probes at period 1 s: what probing costs the agent and how
//! evenly the probes keep their period.
//!
//! Every pod is on the node's network and has two containers: `app` with an
//! httpGet liveness probe and a tcpSocket readiness probe, `check` with an
//! exec liveness probe that runs `wget` from inside the container. All three
//! reach servers in this process, which log each arrival per pod and probe:
//! the drift is how far each interval between two arrivals is from 1 s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_integration::{manifest, pod, sh_container};
use berth_testkit::{AgentProcess, PrivateContainerd};
use futures::future::join_all;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::measure::{cpu_time, machine_busy_time, ms, percentile, vm_rss};

const PERIOD: Duration = Duration::from_secs(1);
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Arrival times by series ("live/3", "exec/3", "tcp/3").
type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

pub async fn run(
    containerd: &PrivateContainerd,
    pods: usize,
    window: Duration,
) -> anyhow::Result<()> {
    let agent = AgentProcess::start(containerd).await;
    let arrivals: Arrivals = Arc::default();
    let http_port = serve_http(arrivals.clone()).await?;
    let mut tcp_ports = Vec::with_capacity(pods);
    for i in 0..pods {
        tcp_ports.push(serve_tcp(arrivals.clone(), format!("tcp/{i}")).await?);
    }

    println!("starting {pods} pods with 3 probes each (period 1 s)");
    let names: Vec<String> = (0..pods).map(|i| format!("probed-{i}")).collect();
    // Ten at a time, to keep a 2-core machine responsive.
    for first in (0..pods).step_by(10) {
        join_all((first..pods.min(first + 10)).map(|i| {
            let yaml = manifest(&probed_pod(&names[i], i, http_port, tcp_ports[i]));
            let agent = &agent;
            async move { agent.apply_yaml(&yaml).await }
        }))
        .await;
    }
    wait_all_ready(&agent, &names).await?;

    // Measure a window of steady probing.
    let agent_pid = agent.pid().expect("the agent runs");
    arrivals.lock().expect("arrivals").clear();
    let begin = Instant::now();
    let (agent_cpu, containerd_cpu, busy) = (
        cpu_time(agent_pid),
        cpu_time(containerd.pid()),
        machine_busy_time(),
    );
    tokio::time::sleep(window).await;
    let elapsed = begin.elapsed().as_secs_f64();
    let share = |d: Duration| 100.0 * d.as_secs_f64() / elapsed;
    let agent_share = share(cpu_time(agent_pid).saturating_sub(agent_cpu));
    let containerd_share = share(cpu_time(containerd.pid()).saturating_sub(containerd_cpu));
    let busy_share = share(machine_busy_time().saturating_sub(busy));
    let rss = vm_rss(agent_pid);
    let series = std::mem::take(&mut *arrivals.lock().expect("arrivals"));

    println!();
    println!("window {elapsed:.1} s, {pods} pods, {} probes", 3 * pods);
    println!("agent CPU        {agent_share:6.1} % of one core");
    println!("containerd CPU   {containerd_share:6.1} % of one core (exec probes go through it and the shims)");
    println!("machine busy     {busy_share:6.1} % of one core");
    println!("agent RSS        {rss}");
    println!();
    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>9}",
        "probe", "attempts", "drift p50", "p99", "max"
    );
    for (kind, label) in [("live", "httpGet"), ("tcp", "tcpSocket"), ("exec", "exec")] {
        let mut drifts = Vec::new();
        let mut attempts = 0;
        for (key, times) in &series {
            if key.split('/').next() != Some(kind) {
                continue;
            }
            attempts += times.len();
            drifts.extend(times.windows(2).map(|w| {
                let interval = w[1] - w[0];
                interval.abs_diff(PERIOD)
            }));
        }
        let expected = (pods as f64 * elapsed).round();
        println!(
            "{label:<10} {:>9} {:>7.1}ms {:>7.1}ms {:>7.1}ms   (expected ~{expected})",
            attempts,
            ms(percentile(&drifts, 50)),
            ms(percentile(&drifts, 99)),
            ms(percentile(&drifts, 100)),
        );
    }
    Ok(())
}

fn probed_pod(name: &str, i: usize, http_port: u16, tcp_port: u16) -> serde_json::Value {
    let idle = "trap 'exit 0' TERM; while true; do sleep 1; done";
    let mut app = sh_container("app", idle);
    app["livenessProbe"] = json!({
        "httpGet": { "path": format!("/live/{i}"), "port": http_port },
        "periodSeconds": 1,
    });
    app["readinessProbe"] = json!({
        "tcpSocket": { "port": tcp_port },
        "periodSeconds": 1,
    });
    let mut check = sh_container("check", idle);
    check["livenessProbe"] = json!({
        "exec": { "command": ["wget", "-q", "-O", "/dev/null",
                              format!("http://127.0.0.1:{http_port}/exec/{i}")] },
        "periodSeconds": 1,
        "timeoutSeconds": 1,
    });
    let mut pod = pod(name, "Always", vec![app, check]);
    pod["spec"]["hostNetwork"] = json!(true);
    pod
}

/// Records each GET's path (without the leading slash) and answers 200.
async fn serve_http(arrivals: Arrivals) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("0.0.0.0:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let at = Instant::now();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head);
                if let Some(path) = head.split_whitespace().nth(1) {
                    let key = path.trim_start_matches('/').to_owned();
                    arrivals
                        .lock()
                        .expect("arrivals")
                        .entry(key)
                        .or_default()
                        .push(at);
                }
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    Ok(port)
}

/// Records each connection as an arrival of `key`.
async fn serve_tcp(arrivals: Arrivals, key: String) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("0.0.0.0:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((_stream, _)) = listener.accept().await {
            let at = Instant::now();
            arrivals
                .lock()
                .expect("arrivals")
                .entry(key.clone())
                .or_default()
                .push(at);
        }
    });
    Ok(port)
}

async fn wait_all_ready(agent: &AgentProcess, names: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let list = agent
            .api_get_json("/api/v1/namespaces/default/pods")
            .await
            .unwrap_or_default();
        let ready = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                names.iter().any(|n| p["metadata"]["name"] == n.as_str())
                    && p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count();
        if ready == names.len() {
            println!(
                "all {ready} pods ready after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < READY_TIMEOUT,
            "only {ready} of {} pods ready after {READY_TIMEOUT:?}",
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
