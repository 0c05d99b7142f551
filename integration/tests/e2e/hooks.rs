//! postStart and preStop hooks on real containerd (docs/kubelet-semantics.md §6):
//! hooks and containers append stamps to a hostPath file, whose order is what
//! the kubelet guarantees.

use std::time::Duration;

use berth_api::reasons;
use berth_integration::*;
use serde_json::{json, Value};
use tokio::time::Instant;

/// A container that appends `START`, stamps `END` on SIGTERM and exits 0.
/// The trap is set before `START`, so a delete after `START` hits the trap.
fn stamping_container(name: &str) -> Value {
    let script = format!(
        "trap '{}; exit 0' TERM; {}; while true; do sleep 0.1; done",
        stamp("END"),
        stamp("START")
    );
    sh_container(name, &script)
}

#[tokio::test]
async fn hooks_and_termination_stamp_in_the_kubelets_order() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut main = stamping_container("main");
    main["lifecycle"] = json!({
        "postStart": exec_handler(&stamp("POST-START")),
        "preStop": exec_handler(&stamp("PRE-STOP")),
    });
    let mut spec = pod("stamped", "Always", vec![main]);
    spec["spec"]["initContainers"] = json!([sh_container("init", &stamp("INIT"))]);
    let file = mount_stamps(&mut spec, &agent.work_dir().join("stamped"));
    agent.apply_yaml(&manifest(&spec)).await;

    wait_running(&agent, "stamped").await;
    // Running means postStart finished; START is the entrypoint's, which the
    // kubelet does not order against postStart.
    let before = wait_stamps(&file, &["INIT", "START", "POST-START"]).await;
    assert_eq!(before[0].name, "INIT", "{before:#?}");
    timed_delete(&agent, "stamped", &[]).await;

    let stamps = read_stamps(&file);
    let names: Vec<&str> = stamps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 5, "one stamp per step: {stamps:#?}");
    assert_eq!(names[0], "INIT", "{stamps:#?}");
    let start = stamp_index(&stamps, "START");
    let post_start = stamp_index(&stamps, "POST-START");
    let pre_stop = stamp_index(&stamps, "PRE-STOP");
    let end = stamp_index(&stamps, "END");
    assert!(
        start < pre_stop && post_start < pre_stop && pre_stop < end,
        "{stamps:#?}"
    );
    assert_eq!(end, 4, "END is the last stamp: {stamps:#?}");
    // Appends happen in time order, so the uptimes never go back.
    assert!(
        stamps.windows(2).all(|w| w[0].uptime <= w[1].uptime),
        "{stamps:#?}"
    );
}

#[tokio::test]
async fn a_slow_post_start_holds_the_pod_pending_and_delays_the_next_container() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut first = sh_container(
        "first",
        &format!(
            "trap 'exit 0' TERM; {}; while true; do sleep 0.1; done",
            stamp("FIRST-START")
        ),
    );
    first["lifecycle"] = json!({
        "postStart": exec_handler(&format!(
            "{}; sleep 2; {}",
            stamp("HOOK-BEGIN"),
            stamp("HOOK-END")
        )),
    });
    let second = sh_container(
        "second",
        &format!(
            "trap 'exit 0' TERM; {}; while true; do sleep 0.1; done",
            stamp("SECOND-START")
        ),
    );
    let mut spec = pod("slow-hook", "Always", vec![first, second]);
    let file = mount_stamps(&mut spec, &agent.work_dir().join("slow-hook"));
    agent.apply_yaml(&manifest(&spec)).await;

    // Until the hook's last stamp is written, neither the pod nor the hooked
    // container may look running (docs/kubelet-semantics.md §2.5). The pod is read before the file, so a
    // Running pod whose hook had finished always finds HOOK-END.
    let deadline = Instant::now() + START_TIMEOUT;
    let mut seen_hook_running = false;
    loop {
        let pod = agent.try_get_pod_json("default", "slow-hook").await;
        let stamps = read_stamps(&file);
        let hook_done = stamps.iter().any(|s| s.name == "HOOK-END");
        if let Some(pod) = &pod {
            if !hook_done {
                assert_ne!(phase(pod), "Running", "hook still running: {pod:#}");
                assert!(!is_running(pod, "first"), "hook still running: {pod:#}");
                if stamps.iter().any(|s| s.name == "HOOK-BEGIN") {
                    seen_hook_running = true;
                    assert_eq!(phase(pod), "Pending", "{pod:#}");
                }
            } else if all_running(pod) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "pod never Running: {pod:#?}\n{stamps:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen_hook_running, "never saw the pod while its hook ran");

    let stamps = wait_stamps(&file, &["FIRST-START", "HOOK-END", "SECOND-START"]).await;
    let hook_begin = &stamps[stamp_index(&stamps, "HOOK-BEGIN")];
    let hook_end = &stamps[stamp_index(&stamps, "HOOK-END")];
    let second = &stamps[stamp_index(&stamps, "SECOND-START")];
    assert!(
        hook_end.uptime - hook_begin.uptime >= 1.9,
        "the hook slept 2 s: {stamps:#?}"
    );
    assert!(
        second.uptime >= hook_end.uptime,
        "second started before first's postStart ended: {stamps:#?}"
    );
}

#[tokio::test]
async fn a_failing_post_start_kills_and_restarts_the_container() {
    let Some((_containerd, agent)) = setup_with_back_off(1, 2).await else {
        return;
    };
    let mut main = term_handling_container("main");
    main["lifecycle"] = json!({
        "postStart": exec_handler("echo hook-said-no; exit 1"),
    });
    agent
        .apply_yaml(&manifest(&pod("bad-hook", "Always", vec![main])))
        .await;

    let restarted = agent
        .wait_for("default", "bad-hook", "restarted", START_TIMEOUT, |p| {
            restart_count(p, "main") >= 2
        })
        .await;
    // Killed after the hook failed, never Running meanwhile (docs/kubelet-semantics.md §2.5).
    assert!(
        container_status(&restarted, "main").unwrap()["lastState"]["terminated"].is_object(),
        "{restarted:#}"
    );
    assert_ne!(phase(&restarted), "Failed", "{restarted:#}");

    let (_, events) = pod_events(&agent, "default", "bad-hook").await;
    let failed = find_event(
        &events,
        reasons::FAILED_POST_START_HOOK,
        "spec.containers{main}",
    )
    .unwrap_or_else(|| panic!("no FailedPostStartHook event: {events:#?}"));
    assert_eq!(failed["type"], "Warning", "{failed:#}");
    let killing = find_event(&events, reasons::KILLING, "spec.containers{main}")
        .unwrap_or_else(|| panic!("no Killing event: {events:#?}"));
    assert_eq!(killing["type"], "Normal", "{killing:#}");
    assert!(
        killing["message"]
            .as_str()
            .is_some_and(|m| m.contains(reasons::FAILED_POST_START_HOOK)),
        "{killing:#}"
    );
}

/// A CGI script for busybox httpd that stamps each request's query, `X-Hook`
/// header and User-Agent, then answers 500: hooks ignore the status code.
const HOOK_CGI: &str = r#"#!/bin/sh
echo "$QUERY_STRING hook=$HTTP_X_HOOK agent=$HTTP_USER_AGENT" >> /stamps/f
printf 'Status: 500 Hook\r\nContent-Type: text/plain\r\n\r\nrecorded\n'
"#;

#[tokio::test]
async fn http_get_hooks_reach_a_server_in_the_pod_and_ignore_the_status_code() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // The web container serves the CGI from the stamp directory; its own
    // postStart waits until the port answers, which holds back the client's
    // start (docs/kubelet-semantics.md §2.4). Its preStop sleep keeps it serving while the client's
    // preStop request runs.
    let dir = agent.work_dir().join("http-hooks");
    let cgi = dir.join("www/cgi-bin/hook");
    std::fs::create_dir_all(cgi.parent().unwrap()).unwrap();
    std::fs::write(&cgi, HOOK_CGI).unwrap();
    std::fs::write(dir.join("www/index.html"), "up\n").unwrap();
    std::fs::set_permissions(&cgi, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // httpd as PID 1 would ignore SIGTERM: sh handles it and takes httpd along.
    let web_script = format!(
        "httpd -f -p 8080 -h {STAMPS_MOUNT}/www & \
         trap 'exit 0' TERM; while true; do sleep 0.1; done"
    );
    let mut web = sh_container("web", &web_script);
    web["lifecycle"] = json!({
        "postStart": exec_handler(
            "until wget -q -O /dev/null http://127.0.0.1:8080/; \
             do sleep 0.1; done"
        ),
        "preStop": { "sleep": { "seconds": 1 } },
    });
    let mut client = term_handling_container("client");
    client["ports"] = json!([{ "name": "http", "containerPort": 8080 }]);
    client["lifecycle"] = json!({
        "postStart": { "httpGet": {
            "path": "/cgi-bin/hook?event=POST-START",
            "port": 8080,
            "httpHeaders": [{ "name": "X-Hook", "value": "yes" }],
        }},
        "preStop": { "httpGet": {
            "path": "/cgi-bin/hook?event=PRE-STOP",
            "port": "http",
        }},
    });
    let mut spec = pod("http-hooks", "Always", vec![web, client]);
    let file = mount_stamps(&mut spec, &dir);
    agent.apply_yaml(&manifest(&spec)).await;

    let running = wait_running(&agent, "http-hooks").await;
    let lines = || -> Vec<String> {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let post_start = lines()
        .into_iter()
        .find(|l| l.starts_with("event=POST-START"))
        .unwrap_or_else(|| panic!("postStart request not served: {:?}", lines()));
    assert!(post_start.contains("hook=yes"), "{post_start}");
    assert!(
        post_start.contains("agent=kube-lifecycle/"),
        "the kubelet's User-Agent: {post_start}"
    );
    // A 500 answer is a successful hook: no restart, no failure event.
    assert_eq!(restart_count(&running, "client"), 0, "{running:#}");
    let (_, events) = pod_events(&agent, "default", "http-hooks").await;
    assert!(
        find_event(
            &events,
            reasons::FAILED_POST_START_HOOK,
            "spec.containers{client}"
        )
        .is_none(),
        "{events:#?}"
    );

    timed_delete(&agent, "http-hooks", &[]).await;
    let served = lines();
    assert!(
        served.iter().any(|l| l.starts_with("event=PRE-STOP")),
        "preStop request (named port) not served: {served:?}"
    );
}

#[tokio::test]
async fn a_failing_pre_stop_records_an_event_and_termination_goes_on() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut main = sh_container(
        "main",
        "trap '' TERM; echo ready; while true; do sleep 0.1; done",
    );
    main["lifecycle"] = json!({ "preStop": exec_handler("echo no-way; exit 1") });
    agent
        .apply_yaml(&manifest(&pod("bad-pre-stop", "Always", vec![main])))
        .await;
    wait_running(&agent, "bad-pre-stop").await;
    wait_log_contains(&agent, "bad-pre-stop", "main", "ready").await;

    let started = Instant::now();
    agent
        .cli_ok(&[
            "delete",
            "pod",
            "bad-pre-stop",
            "--grace-period",
            "3",
            "--wait=false",
        ])
        .await;
    // Look while the pod terminates: the event must come before it is gone.
    let deadline = Instant::now() + START_TIMEOUT;
    let event = loop {
        let (_, events) = pod_events(&agent, "default", "bad-pre-stop").await;
        if let Some(e) = find_event(
            &events,
            reasons::FAILED_PRE_STOP_HOOK,
            "spec.containers{main}",
        ) {
            break e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no FailedPreStopHook: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(event["type"], "Warning", "{event:#}");
    agent
        .wait_gone("default", "bad-pre-stop", START_TIMEOUT)
        .await;
    // The stop signal and SIGKILL followed on the usual 3 s schedule.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(5),
        "gone after {took:?}; grace was 3 s"
    );
}

#[tokio::test]
async fn pre_stop_never_runs_for_a_container_that_exits_by_itself() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut main = sh_container("main", &format!("{}; exit 0", stamp("RAN")));
    main["lifecycle"] = json!({ "preStop": exec_handler(&stamp("PRE-STOP")) });
    let mut spec = pod("exits", "Never", vec![main]);
    let file = mount_stamps(&mut spec, &agent.work_dir().join("exits"));
    agent.apply_yaml(&manifest(&spec)).await;
    let done = wait_terminal(&agent, "exits").await;
    assert_eq!(phase(&done), "Succeeded", "{done:#}");
    timed_delete(&agent, "exits", &[]).await;
    let stamps = read_stamps(&file);
    assert_eq!(
        stamps.len(),
        1,
        "only the container's own stamp: {stamps:#?}"
    );
    assert_eq!(stamps[0].name, "RAN", "{stamps:#?}");
}
