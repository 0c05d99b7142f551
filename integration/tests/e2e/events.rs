//! The kubelet's pod events: served as a v1 EventList, folded with counts,
//! shown by `describe pod` and `get events` (docs/kubelet-semantics.md §12).

use berth_api::reasons;
use berth_integration::*;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

fn time(event: &Value, field: &str) -> Timestamp {
    event[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{field} is not a timestamp: {event:#}"))
}

fn count(event: &Value) -> i64 {
    event["count"].as_i64().unwrap_or(0)
}

/// A crash-looping pod, after its second restart.
async fn crash_looper(agent: &AgentProcess, name: &str) -> Value {
    agent
        .apply_yaml(&manifest(&pod(
            name,
            "Always",
            vec![sh_container("main", "exit 1")],
        )))
        .await;
    agent
        .wait_for("default", name, "restarted twice", START_TIMEOUT, |p| {
            restart_count(p, "main") >= 2 && waiting_reason(p, "main") == Some("CrashLoopBackOff")
        })
        .await
}

#[tokio::test]
async fn the_events_api_lists_folded_container_events() {
    let Some((_containerd, agent)) = setup_with_back_off(1, 2).await else {
        return;
    };
    let looping = crash_looper(&agent, "looper").await;
    let pod_uid = uid(&looping).to_owned();
    // The third BackOff is due while restart 2 waits out its 2 s delay.
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let (list, events) = loop {
        let (list, events) = pod_events(&agent, "default", "looper").await;
        let folded = find_event(&events, reasons::BACK_OFF, "spec.containers{main}")
            .is_some_and(|e| count(e) > 1);
        if folded || tokio::time::Instant::now() >= deadline {
            break (list, events);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(list["kind"], "EventList", "{list:#}");
    assert_eq!(list["apiVersion"], "v1", "{list:#}");
    assert!(!events.is_empty(), "no events about the pod: {list:#}");

    for event in &events {
        let object = &event["involvedObject"];
        assert_eq!(object["kind"], "Pod", "{event:#}");
        assert_eq!(object["name"], "looper", "{event:#}");
        assert_eq!(object["namespace"], "default", "{event:#}");
        assert_eq!(object["uid"], pod_uid.as_str(), "{event:#}");
        assert_eq!(event["metadata"]["namespace"], "default", "{event:#}");
        assert!(event["metadata"]["name"].is_string(), "{event:#}");
        assert_eq!(event["source"]["component"], "kubelet", "{event:#}");
        assert!(count(event) >= 1, "{event:#}");
        assert!(
            time(event, "firstTimestamp") <= time(event, "lastTimestamp"),
            "{event:#}"
        );
    }
    // Every run was created and started: one folded event each, counted.
    for reason in [reasons::CREATED, reasons::STARTED] {
        let event = find_event(&events, reason, "spec.containers{main}")
            .unwrap_or_else(|| panic!("no {reason} event: {events:#?}"));
        assert_eq!(event["type"], "Normal", "{event:#}");
        assert!(
            count(event) >= 3,
            "3 runs, {reason} counted {}: {event:#}",
            count(event)
        );
        let same: Vec<_> = events
            .iter()
            .filter(|e| e["reason"] == reason && e["message"] == event["message"])
            .collect();
        assert_eq!(
            same.len(),
            1,
            "{reason} not folded into one event: {same:#?}"
        );
    }
    let back_off = find_event(&events, reasons::BACK_OFF, "spec.containers{main}")
        .unwrap_or_else(|| panic!("no BackOff event: {events:#?}"));
    assert_eq!(back_off["type"], "Warning", "{back_off:#}");
    assert_eq!(
        back_off["message"],
        format!("Back-off restarting failed container main in pod looper_default({pod_uid})"),
        "{back_off:#}"
    );
    assert!(count(back_off) > 1, "BackOff not folded: {back_off:#}");
    assert!(
        time(back_off, "lastTimestamp") > time(back_off, "firstTimestamp"),
        "a folded event spans time: {back_off:#}"
    );

    // The field selectors `describe` sends are honoured.
    let selected = agent
        .api_get_json(&format!(
            "/api/v1/namespaces/default/events?fieldSelector=involvedObject.uid={pod_uid},reason=BackOff"
        ))
        .await
        .expect("selected events");
    let items = selected["items"].as_array().expect("items");
    assert!(!items.is_empty(), "{selected:#}");
    assert!(
        items.iter().all(|e| e["reason"] == reasons::BACK_OFF),
        "{selected:#}"
    );
}

#[tokio::test]
async fn describe_pod_shows_the_events_with_counts() {
    let Some((_containerd, agent)) = setup_with_back_off(1, 2).await else {
        return;
    };
    crash_looper(&agent, "described").await;
    let describe = agent.cli_ok(&["describe", "pod", "described"]).await;
    let section = describe
        .split_once("\nEvents:")
        .map(|(_, events)| events)
        .unwrap_or_else(|| panic!("no Events section:\n{describe}"));
    let header: Vec<&str> = section
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["Type", "Reason", "Age", "From", "Message"],
        "{describe}"
    );
    let row = |reason: &str| {
        section
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(reason))
            .unwrap_or_else(|| panic!("no {reason} row:\n{describe}"))
            .to_owned()
    };
    for reason in [reasons::CREATED, reasons::STARTED] {
        let line = row(reason);
        assert!(line.trim_start().starts_with("Normal"), "{line}");
        assert!(line.contains("kubelet"), "{line}");
        // Three runs folded: "<age> (x3 over <age>)".
        assert!(
            line.contains("(x"),
            "{reason} not shown with a count: {line}"
        );
    }
    let back_off = row(reasons::BACK_OFF);
    assert!(back_off.trim_start().starts_with("Warning"), "{back_off}");
    assert!(
        back_off.contains("Back-off restarting failed container main in pod described_default("),
        "{back_off}"
    );
}

#[tokio::test]
async fn killing_is_reported_for_init_and_main_containers_paths() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut spec = pod("stopped", "Always", vec![term_handling_container("main")]);
    spec["spec"]["initContainers"] = serde_json::json!([sh_container("prepare", "true")]);
    agent.apply_yaml(&manifest(&spec)).await;
    let running = wait_running(&agent, "stopped").await;
    let pod_uid = uid(&running).to_owned();
    wait_log_contains(&agent, "stopped", "main", "ready").await;
    agent.cli_ok(&["delete", "pod", "stopped", "--wait"]).await;

    // Events outlive the pod, as on the API server.
    let (_, events) = pod_events(&agent, "default", "stopped").await;
    let killing = find_event(&events, reasons::KILLING, "spec.containers{main}")
        .unwrap_or_else(|| panic!("no Killing event: {events:#?}"));
    assert_eq!(killing["type"], "Normal", "{killing:#}");
    assert_eq!(killing["message"], "Stopping container main", "{killing:#}");
    assert_eq!(
        killing["involvedObject"]["uid"],
        pod_uid.as_str(),
        "{killing:#}"
    );
    // Init container events name the init container's field path.
    for reason in [reasons::PULLED, reasons::CREATED, reasons::STARTED] {
        assert!(
            find_event(&events, reason, "spec.initContainers{prepare}").is_some(),
            "no {reason} event for the init container: {events:#?}"
        );
        assert!(
            find_event(&events, reason, "spec.containers{main}").is_some(),
            "no {reason} event for main: {events:#?}"
        );
    }
    let pulled = find_event(&events, reasons::PULLED, "spec.containers{main}").unwrap();
    let present = format!("Container image \"{TEST_IMAGE}\" already present on machine");
    assert!(
        pulled["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(&present)),
        "{pulled:#}"
    );
}

#[tokio::test]
async fn get_events_prints_the_pod_events() {
    let Some((_containerd, agent)) = setup_with_back_off(1, 2).await else {
        return;
    };
    let looping = crash_looper(&agent, "listed").await;
    let json = agent.cli_ok(&["get", "events", "-o", "json"]).await;
    let list: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let items = list["items"].as_array().expect("items");
    assert!(
        items.iter().any(
            |e| e["involvedObject"]["uid"] == uid(&looping) && e["reason"] == reasons::BACK_OFF
        ),
        "{json}"
    );
    let table = agent.cli_ok(&["get", "events"]).await;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains(reasons::BACK_OFF) && l.contains("pod/listed")),
        "{table}"
    );
}
