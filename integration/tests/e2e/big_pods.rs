//! Pods with many containers: status while they start, a clean delete, and
//! berth's limit on containers per pod.

use std::time::Duration;

use berth_api::reasons;
use berth_integration::*;
use serde_json::Value;
use tokio::time::Instant;

/// A pod with `n` containers `c0`..`c{n-1}` that sleep.
fn big_pod(name: &str, n: usize) -> Value {
    let containers = (0..n)
        .map(|i| sh_container(&format!("c{i}"), "exec sleep 3600"))
        .collect();
    let mut pod = pod(name, "Always", containers);
    pod["spec"]["terminationGracePeriodSeconds"] = 1.into();
    pod
}

fn running_count(pod: &Value) -> usize {
    pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["state"]["running"].is_object())
        .count()
}

#[tokio::test]
async fn a_big_pod_shows_its_containers_running_as_they_start() {
    const N: usize = 200;
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let applied = Instant::now();
    agent.apply_yaml(&manifest(&big_pod("big", N))).await;
    // What `berth get pod -o json` shows while the containers start.
    let mut seen: Vec<usize> = Vec::new();
    let deadline = applied + Duration::from_secs(120);
    loop {
        let count = agent
            .try_get_pod_json("default", "big")
            .await
            .map_or(0, |p| running_count(&p));
        if seen.last() != Some(&count) {
            seen.push(count);
        }
        if count == N {
            break;
        }
        assert!(Instant::now() < deadline, "not all running: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = applied.elapsed();
    let partial = seen.iter().filter(|n| (1..N).contains(n)).count();
    assert!(partial >= 3, "running counts seen while starting: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(
        get_pods_row(&agent, "big").await.unwrap()[1],
        format!("{N}/{N}")
    );

    let took = timed_delete(&agent, "big", &[]).await;
    eprintln!(
        "{N} containers: all running after {started:?}, deleted in {took:?}; counts seen: {seen:?}"
    );
    assert_eq!(ctr_list(&agent, "containers"), Vec::<String>::new());
    assert_eq!(ctr_list(&agent, "tasks"), Vec::<String>::new());
    assert_eq!(shims(agent.namespace()), 0);
}

#[tokio::test]
async fn a_pod_over_the_container_limit_is_refused_naming_the_field() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut pod = big_pod("huge", 200);
    pod["spec"]["initContainers"] = (0..51)
        .map(|i| sh_container(&format!("init{i}"), "true"))
        .collect();
    let out = agent.apply_yaml_output(&manifest(&pod)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a pod of 251 containers was accepted"
    );
    assert!(
        stderr.contains(r#""huge" is invalid: spec.containers: Forbidden: a pod may have at most 250 containers, initContainers included"#)
            && stderr.contains("this one has 251"),
        "{stderr}"
    );
    assert_eq!(list_pods(&agent).await, Vec::<Value>::new());
    assert_eq!(ctr_list(&agent, "containers"), Vec::<String>::new());
}

/// The parent of a process (a container's shim).
fn parent_pid(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    after_comm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_pod_whose_shim_stops_answering_is_deleted_with_a_warning() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    agent.apply_yaml(&manifest(&big_pod("wedged", 3))).await;
    let running = wait_running(&agent, "wedged").await;
    let id = container_id(&running, "c0").unwrap();
    let pid = task_pid(&agent, &id).expect("c0 runs");
    let shim = parent_pid(pid);
    // The shim stops answering, as containerd 1.6's did under a big pod.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();

    // One bounded call (10 s), then the shim is forced down.
    let took = timed_delete(&agent, "wedged", &[]).await;
    eprintln!("deleted through a wedged shim in {took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    let (_, events) = pod_events(&agent, "default", "wedged").await;
    let warning = events
        .iter()
        .find(|e| e["reason"] == reasons::FAILED_KILL_POD)
        .unwrap_or_else(|| panic!("no FailedKillPod: {events:#?}"));
    assert_eq!(warning["type"], "Warning");
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .starts_with("error killing pod: failed to \"KillContainer\""),
        "{warning:#}"
    );
    assert_eq!(ctr_list(&agent, "containers"), Vec::<String>::new());
    assert_eq!(ctr_list(&agent, "tasks"), Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while shims(agent.namespace()) + loggers(agent.namespace()) > 0 {
        assert!(Instant::now() < deadline, "shims or loggers left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap()
                .is_empty(),
        "the container's process is left"
    );
}
