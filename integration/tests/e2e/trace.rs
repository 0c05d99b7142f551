//! `berth trace pod`: the lifecycle timeline, read from a running pod on real
//! containerd, in the order the worker took the steps.

use std::time::Duration;

use berth_integration::*;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

/// The steps of `berth trace pod NAME -o json`, as (step, container, time).
async fn trace(agent: &AgentProcess, name: &str) -> Vec<(String, Option<String>, Timestamp)> {
    let out = agent.cli_ok(&["trace", "pod", name, "-o", "json"]).await;
    let answer: Value = serde_json::from_str(&out).expect("trace -o json is JSON");
    answer["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {answer:#}"))
        .iter()
        .map(|item| {
            let time = item["time"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("bad time: {item:#}"));
            (
                item["step"].as_str().unwrap_or_default().to_string(),
                item["container"].as_str().map(str::to_string),
                time,
            )
        })
        .collect()
}

#[tokio::test]
async fn trace_shows_a_running_pods_start_in_order() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let before = Timestamp::now();
    agent
        .apply_yaml(&manifest(&pod(
            "traced",
            "Never",
            vec![sh_container("main", "sleep 300")],
        )))
        .await;
    wait_running(&agent, "traced").await;

    let want = [
        "SandboxCreating",
        "SandboxCreated",
        "ImageReady",
        "ContainerCreated",
        "ContainerStarted",
    ];
    // The start is recorded before the status says Running; poll anyway so a
    // reordering there cannot make this test flaky.
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let steps = loop {
        let steps = trace(&agent, "traced").await;
        let names: Vec<String> = steps.iter().map(|s| s.0.clone()).collect();
        let done = is_subsequence(&names, &want) && names.iter().any(|n| n == "NetworkReady");
        if done || tokio::time::Instant::now() >= deadline {
            break steps;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<String> = steps.iter().map(|s| s.0.clone()).collect();
    assert!(is_subsequence(&names, &want), "{steps:?}");
    // The network is set up while the container is created: ready before
    // it starts.
    let at = |step: &str| names.iter().position(|n| n == step);
    let network = at("NetworkReady").expect("the network step");
    assert!(network < at("ContainerStarted").unwrap(), "{steps:?}");
    assert_eq!(steps[0].0, "SandboxCreating", "{steps:?}");
    for (step, container, _) in &steps {
        let pod_level =
            ["SandboxCreating", "SandboxCreated", "NetworkReady"].contains(&step.as_str());
        let want = (!pod_level).then_some("main");
        assert_eq!(container.as_deref(), want, "{step}: {steps:?}");
    }
    // Times never go back and fall within this test's run (1 s of slack for
    // clock rounding to the millisecond).
    for pair in steps.windows(2) {
        assert!(pair[0].2 <= pair[1].2, "times go back: {steps:?}");
    }
    let slack = k8s_openapi::jiff::SignedDuration::from_secs(1);
    assert!(steps[0].2 >= before - slack, "{steps:?}");
    assert!(
        steps[steps.len() - 1].2 <= Timestamp::now() + slack,
        "{steps:?}"
    );

    // The table: a header, then one row per step with the container or "-".
    let table = agent.cli_ok(&["trace", "pod", "traced"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("+MS") && lines[0].contains("STEP"),
        "{table}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[1..4], ["+0", "-", "SandboxCreating"], "{table}");
    assert!(lines.len() > steps.len(), "{table}");

    let missing = agent.cli(&["trace", "pod", "nope"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "Error from server (NotFound): pods \"nope\" not found\n"
    );

    // The timeline goes with the pod.
    agent
        .cli_ok(&["delete", "pod", "traced", "--grace-period", "0", "--force"])
        .await;
    agent.wait_gone("default", "traced", START_TIMEOUT).await;
    let gone = agent.cli(&["trace", "pod", "traced"]).await;
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
}
