//! Pods with many containers: status while they start, and deletion when
//! the runtime stops answering for the pod.

use super::*;

/// A pod with `n` containers `c0`..`c{n-1}`.
fn many(n: usize) -> Arc<Pod> {
    let containers: String = (0..n)
        .map(|i| format!("  - {{name: c{i}, image: busybox}}\n"))
        .collect();
    pod(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: big}}\nspec:\n  containers:\n{containers}"
    ))
}

fn running(s: &PodStatus) -> usize {
    s.container_statuses
        .iter()
        .flatten()
        .filter(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
        .count()
}

#[tokio::test(start_paused = true)]
async fn status_counts_containers_up_while_they_start() {
    let h = Harness::new();
    // 40 starts of 20 ms: 800 ms for the pass.
    h.rt.start_delay(Duration::from_millis(20));
    let _w = h.spawn(many(40));
    h.sink.wait_for("all running", |s| running(s) == 40).await;
    let counts: Vec<usize> = h
        .sink
        .statuses
        .lock()
        .unwrap()
        .iter()
        .map(running)
        .collect();
    let partial: Vec<usize> = counts
        .iter()
        .copied()
        .filter(|n| (1..40).contains(n))
        .collect();
    // One status about every 100 ms of starts (5 starts), not one per start.
    assert!(
        (5..=9).contains(&partial.len()),
        "statuses while starting: {counts:?}"
    );
    assert!(partial.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn quick_starts_publish_once_per_pass() {
    let h = Harness::new();
    let _w = h.spawn(many(5));
    h.sink.wait_for("all running", |s| running(s) == 5).await;
    let counts: Vec<usize> = h
        .sink
        .statuses
        .lock()
        .unwrap()
        .iter()
        .map(running)
        .collect();
    assert!(counts.iter().all(|n| *n == 0 || *n == 5), "{counts:?}");
}

fn failed_kill_events(h: &Harness) -> Vec<String> {
    h.sink
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.reason == reasons::FAILED_KILL_POD)
        .inspect(|e| assert_eq!(e.event_type, EventType::Warning))
        .map(|e| e.message.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_pod_whose_runtime_stops_answering_is_forced_down_and_removed() {
    let h = Harness::new();
    let w = h.spawn(many(3));
    h.sink.wait_for("all running", |s| running(s) == 3).await;
    // Every signal and removal now hangs for 10 s and times out.
    h.rt.wedge(Duration::from_secs(10));
    let asked = Instant::now();
    w.terminate(Duration::from_secs(30));
    h.sink.wait_finished().await;
    // One bounded call, not the grace period nor a call per container.
    assert_eq!(asked.elapsed(), Duration::from_secs(10));
    let failures = failed_kill_events(&h);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with(r#"error killing pod: failed to "KillContainer" for "c"#)
            && failures[0].ends_with(r#"with KillContainerError: "no answer within 10s""#),
        "{failures:?}"
    );
    let calls = h.rt.calls();
    let forced = calls
        .iter()
        .position(|c| matches!(c, Call::ForceStopSandbox { .. }))
        .expect("the pod was forced down");
    let removed = calls[forced..]
        .iter()
        .filter(|c| matches!(c, Call::RemoveContainer { .. }))
        .count();
    assert_eq!(removed, 3, "{calls:?}");
    assert!(
        matches!(calls.last(), Some(Call::RemoveSandbox { .. })),
        "{calls:?}"
    );
    assert!(h.rt.containers().is_empty());
    assert_eq!(h.rt.sandbox_count(), 0);
    // The containers that were running are gone, as the kubelet says.
    let last = h.sink.latest();
    for i in 0..3 {
        let t = terminated(&last, &format!("c{i}"));
        assert_eq!(t.exit_code, 137);
        assert_eq!(t.reason.as_deref(), Some("ContainerStatusUnknown"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_removal_the_runtime_does_not_answer_forces_the_pod_down() {
    let h = Harness::new();
    h.rt.script("app", Script::exits(0, Duration::from_secs(1)));
    let mut done = (*pod(ONE)).clone();
    done.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    let w = h.spawn(Arc::new(done));
    h.sink
        .wait_for("Succeeded", |s| phase(s) == "Succeeded")
        .await;
    h.rt.wedge(Duration::from_secs(10));
    let asked = Instant::now();
    w.terminate(Duration::from_secs(30));
    h.sink.wait_finished().await;
    assert_eq!(asked.elapsed(), Duration::from_secs(10));
    let failures = failed_kill_events(&h);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with("error killing pod: remove containers: no answer within 10s"),
        "{failures:?}"
    );
    assert!(h.rt.containers().is_empty());
    assert_eq!(h.rt.sandbox_count(), 0);
}
