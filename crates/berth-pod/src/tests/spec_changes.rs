//! What a running pod does when its spec changes or its time runs out: an
//! image change restarts just that container; `activeDeadlineSeconds` fails
//! the pod and stops its containers.

use super::*;

fn messages(h: &Harness, reason: &str) -> Vec<String> {
    h.sink
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.reason == reason)
        .map(|e| e.message.clone())
        .collect()
}

const TWO: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  restartPolicy: Never
  containers:
  - {name: app, image: busybox}
  - {name: side, image: busybox}
";

#[tokio::test(start_paused = true)]
async fn an_image_change_restarts_just_that_container_whatever_the_policy() {
    let h = Harness::new();
    h.rt.add_image(
        "busybox:2",
        ImageConfig {
            cmd: vec!["sh".into()],
            ..Default::default()
        },
    );
    let w = h.spawn(pod(TWO));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;

    w.update(pod(&TWO.replace(
        "{name: app, image: busybox}",
        "{name: app, image: 'busybox:2'}",
    )));
    let s = h
        .sink
        .wait_for("app restarted", |s| {
            container(s, "app").restart_count == 1 && container(s, "app").ready
        })
        .await;
    assert_eq!(container(&s, "app").image, "busybox:2");
    assert_eq!(
        container(&s, "side").restart_count,
        0,
        "the other container runs on"
    );
    assert_eq!(
        messages(&h, reasons::KILLING),
        vec!["Container app definition changed, will be restarted"]
    );
    assert_eq!((h.starts("app"), h.starts("side")), (2, 1));
    assert_eq!(phase(&s), "Running");
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_spec_update_restarts_nothing() {
    let h = Harness::new();
    let w = h.spawn(pod(TWO));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    w.update(pod(TWO));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!((h.starts("app"), h.starts("side")), (1, 1));
    assert!(messages(&h, reasons::KILLING).is_empty());
}

const DEADLINE: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  activeDeadlineSeconds: 30
  terminationGracePeriodSeconds: 5
  containers:
  - {name: app, image: busybox}
";

#[tokio::test(start_paused = true)]
async fn active_deadline_fails_the_pod_and_stops_its_containers_on_time() {
    let h = Harness::new();
    h.rt.script("app", ignores_stop());
    let begin = Instant::now();
    let _w = h.spawn(pod(DEADLINE));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    let s = h.sink.wait_for("Failed", |s| phase(s) == "Failed").await;
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        s.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    // The stop signal at 30 s, SIGKILL once the 5 s grace is over.
    h.rt.wait_for_calls(|calls| signals(calls).contains(&Signal::KILL))
        .await;
    assert_eq!(Instant::now() - begin, Duration::from_secs(35));
    assert_eq!(signals(&h.rt.calls()), vec![Signal::TERM, Signal::KILL]);
    assert_eq!(messages(&h, reasons::DEADLINE_EXCEEDED).len(), 1);
    let s = h
        .sink
        .wait_for("app terminated", |s| {
            container(s, "app")
                .state
                .as_ref()
                .unwrap()
                .terminated
                .is_some()
        })
        .await;
    assert_eq!(phase(&s), "Failed");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.starts("app"), 1, "a failed pod starts nothing");
}

#[tokio::test(start_paused = true)]
async fn a_lowered_deadline_applies_at_once() {
    let h = Harness::new();
    let begin = Instant::now();
    let w = h.spawn(pod(
        &DEADLINE.replace("activeDeadlineSeconds: 30", "activeDeadlineSeconds: 600")
    ));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    w.update(pod(DEADLINE));
    h.sink.wait_for("Failed", |s| phase(s) == "Failed").await;
    assert_eq!(Instant::now() - begin, Duration::from_secs(30));
}

const EVICTABLE: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 30
  containers:
  - {name: app, image: busybox}
";

#[tokio::test(start_paused = true)]
async fn an_evicted_pod_fails_stops_at_once_and_never_restarts() {
    let h = Harness::new();
    h.rt.script("app", ignores_stop());
    let w = h.spawn(pod(EVICTABLE));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    let message = "Pod ephemeral local storage usage exceeds the total limit of containers 5Mi. ";
    let begin = Instant::now();
    w.evict(message.into());
    let s = h.sink.wait_for("Failed", |s| phase(s) == "Failed").await;
    assert_eq!(s.reason.as_deref(), Some("Evicted"));
    assert_eq!(s.message.as_deref(), Some(message));
    // The eviction's 1 s grace period, held to the kill path's 2 s floor,
    // not the pod's 30 s; and Failed only once the container is gone.
    h.rt.wait_for_calls(|calls| signals(calls).contains(&Signal::KILL))
        .await;
    assert_eq!(Instant::now() - begin, Duration::from_secs(2));
    terminated(&s, "app");
    // Never Failed (nor its reason) while the container still ran, as the
    // kubelet's status manager holds a terminal phase back.
    for status in h.sink.statuses.lock().unwrap().iter() {
        if container(status, "app")
            .state
            .as_ref()
            .is_some_and(|s| s.running.is_some())
        {
            assert_eq!(phase(status), "Running", "{status:#?}");
            assert_eq!(status.reason, None, "{status:#?}");
        }
    }
    let events = h.sink.events.lock().unwrap().clone();
    let evicted: Vec<_> = events.iter().filter(|e| e.reason == "Evicted").collect();
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].event_type, EventType::Warning);
    assert_eq!(evicted[0].message, message);
    // A second eviction changes nothing; nor does the restart policy.
    w.evict("another".into());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.starts("app"), 1, "an evicted pod starts nothing");
    let s = h.sink.latest();
    assert_eq!(phase(&s), "Failed");
    assert_eq!(s.message.as_deref(), Some(message));
    assert_eq!(messages(&h, reasons::EVICTED).len(), 1);
}
