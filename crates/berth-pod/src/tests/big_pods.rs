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
