//! Graceful termination on real containerd (docs/kubelet-semantics.md §7): grace
//! periods ending in SIGKILL, preStop's share of the grace, stop signals from
//! the spec and the image, and the sidecar stop order.

use std::time::Duration;

use berth_integration::*;
use serde_json::{json, Value};

/// A container that ignores SIGTERM, logging `ready` once its trap is set.
fn term_ignoring_container(name: &str) -> Value {
    sh_container(
        name,
        "trap '' TERM; echo ready; while true; do sleep 0.1; done",
    )
}

/// Applies a one-container pod and waits until it runs and logged `ready`.
async fn run_ready(agent: &AgentProcess, spec: &Value) {
    let name = spec["metadata"]["name"].as_str().unwrap();
    let container = spec["spec"]["containers"][0]["name"].as_str().unwrap();
    agent.apply_yaml(&manifest(spec)).await;
    wait_running(agent, name).await;
    wait_log_contains(agent, name, container, "ready").await;
}

fn assert_between(took: Duration, min_secs: f64, max_secs: f64, what: &str) {
    assert!(
        took >= Duration::from_secs_f64(min_secs) && took < Duration::from_secs_f64(max_secs),
        "{what}: took {took:?}, expected [{min_secs} s, {max_secs} s)"
    );
}

#[tokio::test]
async fn a_term_ignoring_container_is_killed_at_the_grace_period() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let spec = pod("deaf", "Always", vec![term_ignoring_container("main")]);
    run_ready(&agent, &spec).await;
    let took = timed_delete(&agent, "deaf", &["--grace-period", "3"]).await;
    assert_between(took, 3.0, 5.0, "SIGKILL at the 3 s grace period");
}

#[tokio::test]
async fn a_term_handling_container_stops_at_once() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let spec = pod("prompt", "Always", vec![term_handling_container("main")]);
    run_ready(&agent, &spec).await;
    // The default grace is 30 s; the SIGTERM handler ends it in a moment.
    let took = timed_delete(&agent, "prompt", &[]).await;
    assert_between(took, 0.0, 1.5, "exit on SIGTERM");
}

#[tokio::test]
async fn a_pre_stop_sleep_runs_before_the_stop_signal() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let script = format!(
        "trap '{}; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
        stamp("TERM")
    );
    let mut main = sh_container("main", &script);
    main["lifecycle"] = json!({ "preStop": { "sleep": { "seconds": 2 } } });
    let mut spec = pod("pre-stop-sleep", "Always", vec![main]);
    let file = mount_stamps(&mut spec, &agent.work_dir().join("pre-stop-sleep"));
    run_ready(&agent, &spec).await;

    let deleted_at = host_uptime();
    let took = timed_delete(&agent, "pre-stop-sleep", &[]).await;
    assert_between(took, 2.0, 3.5, "preStop sleep 2 s, then SIGTERM");
    let stamps = read_stamps(&file);
    let term = &stamps[stamp_index(&stamps, "TERM")];
    assert!(
        term.uptime - deleted_at >= 1.9,
        "SIGTERM {:.2} s after the delete, before preStop ended",
        term.uptime - deleted_at
    );
}

#[tokio::test]
async fn pre_stop_time_comes_out_of_the_grace_period() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut main = term_ignoring_container("main");
    main["lifecycle"] = json!({ "preStop": { "sleep": { "seconds": 2 } } });
    let spec = pod("pre-stop-grace", "Always", vec![main]);
    run_ready(&agent, &spec).await;
    // 2 s of preStop + the 2 s left of a 4 s grace, not 2 + 4.
    let took = timed_delete(&agent, "pre-stop-grace", &["--grace-period", "4"]).await;
    assert_between(took, 4.0, 5.5, "preStop 2 s within a 4 s grace");
}

#[tokio::test]
async fn an_overrunning_pre_stop_leaves_two_seconds_for_the_stop_signal() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // Stamps TERM but keeps running, so SIGKILL ends it.
    let script = format!(
        "trap '{}' TERM; echo ready; while true; do sleep 0.1; done",
        stamp("TERM")
    );
    let mut main = sh_container("main", &script);
    main["lifecycle"] = json!({ "preStop": { "sleep": { "seconds": 10 } } });
    let mut spec = pod("pre-stop-overrun", "Always", vec![main]);
    let file = mount_stamps(&mut spec, &agent.work_dir().join("pre-stop-overrun"));
    run_ready(&agent, &spec).await;

    let deleted_at = host_uptime();
    let took = timed_delete(&agent, "pre-stop-overrun", &["--grace-period", "3"]).await;
    // preStop gets the 3 s grace, then the stop signal the 2 s minimum.
    assert_between(took, 5.0, 6.5, "3 s grace + 2 s minimum");
    let stamps = read_stamps(&file);
    let term = stamps[stamp_index(&stamps, "TERM")].uptime - deleted_at;
    assert!(
        (2.9..4.0).contains(&term),
        "SIGTERM {term:.2} s after the delete, expected when the 3 s grace ran out"
    );
}

#[tokio::test]
async fn lifecycle_stop_signal_replaces_sigterm() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let script = format!(
        "trap '{}; exit 0' INT; trap '' TERM; echo ready; while true; do sleep 0.1; done",
        stamp("INT")
    );
    let mut main = sh_container("main", &script);
    main["lifecycle"] = json!({ "stopSignal": "SIGINT" });
    let mut spec = pod("stop-int", "Always", vec![main]);
    // The API requires spec.os.name with a stop signal.
    spec["spec"]["os"] = json!({ "name": "linux" });
    let file = mount_stamps(&mut spec, &agent.work_dir().join("stop-int"));
    run_ready(&agent, &spec).await;

    let took = timed_delete(&agent, "stop-int", &["--grace-period", "10"]).await;
    assert_between(took, 0.0, 2.0, "exit on SIGINT");
    wait_stamps(&file, &["INT"]).await;
}

#[tokio::test]
async fn the_images_stop_signal_replaces_sigterm() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let reference = "berth.test/busybox:usr1";
    let archive = agent.work_dir().join("busybox-usr1.oci.tar");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&archive).unwrap());
    berth_testkit::busybox_image(reference)
        .stop_signal("SIGUSR1".into())
        .write_oci_archive(&mut out)
        .expect("write the image archive");
    std::io::Write::flush(&mut out).unwrap();
    drop(out);
    agent
        .cli_ok(&["image", "import", &archive.to_string_lossy()])
        .await;

    let script = format!(
        "trap '{}; exit 0' USR1; trap '' TERM; echo ready; while true; do sleep 0.1; done",
        stamp("USR1")
    );
    let mut main = sh_container("main", &script);
    main["image"] = json!(reference);
    let mut spec = pod("stop-usr1", "Always", vec![main]);
    let file = mount_stamps(&mut spec, &agent.work_dir().join("stop-usr1"));
    run_ready(&agent, &spec).await;

    let took = timed_delete(&agent, "stop-usr1", &["--grace-period", "10"]).await;
    assert_between(took, 0.0, 2.0, "exit on the image's SIGUSR1");
    wait_stamps(&file, &["USR1"]).await;
}

/// Stamps `READY name` once its trap is set; on SIGTERM waits `linger`
/// seconds, stamps `STOP name` and exits.
fn stopping_container(name: &str, linger: &str) -> Value {
    let script = format!(
        "trap 'sleep {linger}; {}; exit 0' TERM; {}; while true; do sleep 0.1; done",
        stamp(&format!("STOP {name}")),
        stamp(&format!("READY {name}"))
    );
    sh_container(name, &script)
}

#[tokio::test]
async fn sidecars_stop_after_the_main_containers_in_reverse_order() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    // Slow stops: a sidecar signalled too early would stamp first.
    let mut sidecars = vec![
        stopping_container("sidecar-1", "0"),
        stopping_container("sidecar-2", "0.5"),
    ];
    for sidecar in &mut sidecars {
        sidecar["restartPolicy"] = json!("Always");
    }
    let mut spec = pod("sidecars", "Always", vec![stopping_container("main", "1")]);
    spec["spec"]["initContainers"] = Value::Array(sidecars);
    let file = mount_stamps(&mut spec, &agent.work_dir().join("sidecars"));
    agent.apply_yaml(&manifest(&spec)).await;
    wait_running(&agent, "sidecars").await;
    wait_stamps(&file, &["READY sidecar-1", "READY sidecar-2", "READY main"]).await;

    timed_delete(&agent, "sidecars", &[]).await;
    let stamps = read_stamps(&file);
    let main = stamp_index(&stamps, "STOP main");
    let sidecar_2 = stamp_index(&stamps, "STOP sidecar-2");
    let sidecar_1 = stamp_index(&stamps, "STOP sidecar-1");
    assert!(
        main < sidecar_2 && sidecar_2 < sidecar_1,
        "stop order: {stamps:#?}"
    );
}

#[tokio::test]
async fn a_second_delete_with_a_shorter_grace_cuts_the_wait_short() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let spec = pod("shrink", "Always", vec![term_ignoring_container("main")]);
    run_ready(&agent, &spec).await;
    let started = tokio::time::Instant::now();
    agent
        .cli_ok(&[
            "delete",
            "pod",
            "shrink",
            "--grace-period",
            "30",
            "--wait=false",
        ])
        .await;
    let mut seen = Vec::new();
    record_status_until(&agent, "shrink", "Terminating", &mut seen).await;
    timed_delete(&agent, "shrink", &["--grace-period", "2"]).await;
    let took = started.elapsed();
    assert_between(took, 2.0, 4.5, "the grace shrank from 30 s to 2 s");
}

#[tokio::test]
async fn force_delete_with_zero_grace_kills_at_once() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let spec = pod("forced", "Always", vec![term_ignoring_container("main")]);
    run_ready(&agent, &spec).await;
    let id = container_id(&agent.get_pod_json("default", "forced").await, "main").unwrap();
    let started = tokio::time::Instant::now();
    let took = timed_delete(&agent, "forced", &["--force", "--grace-period", "0"]).await;
    assert_between(took, 0.0, 1.5, "force delete");
    // The TERM-ignoring task is gone well before any grace could end.
    let deadline = started + Duration::from_secs(3);
    while task_pid(&agent, &id).is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {id} still runs {:?} after a forced delete",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
