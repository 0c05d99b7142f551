//! Pull policies, pull events and the image pull back-off (docs/kubelet-semantics.md
//! §3.3, §10) against the fake runtime's "registry".

use berth_runtime::{ImageInfo, RuntimeError};

use super::*;

impl Recorder {
    /// `(reason, message)` of every event so far.
    fn event_list(&self) -> Vec<(String, String)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| (e.reason.to_string(), e.message.clone()))
            .collect()
    }
}

fn pulls(h: &Harness, image: &str) -> usize {
    h.rt.calls()
        .iter()
        .filter(|c| matches!(c, Call::Pull { image: i } if i == image))
        .count()
}

fn with_image(image: &str, policy: &str) -> Arc<Pod> {
    pod(&ONE.replace(
        "image: busybox}",
        &format!("image: \"{image}\", imagePullPolicy: {policy}}}"),
    ))
}

fn remote(size: u64) -> ImageInfo {
    ImageInfo {
        reference: String::new(),
        digest: "sha256:feed".into(),
        size,
        config: ImageConfig {
            cmd: vec!["sh".into()],
            ..Default::default()
        },
    }
}

fn waiting(s: &PodStatus) -> (String, String) {
    let w = s
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "app")
        .and_then(|c| c.state.clone())
        .and_then(|st| st.waiting)
        .unwrap_or_default();
    (w.reason.unwrap_or_default(), w.message.unwrap_or_default())
}

#[tokio::test(start_paused = true)]
async fn an_absent_image_is_pulled_with_pulling_and_pulled_events() {
    let h = Harness::new();
    h.rt.add_pullable("registry.test/app:1", remote(4096));
    h.rt.pull_delay(Duration::from_millis(1500));
    let _w = h.spawn(with_image("registry.test/app:1", "IfNotPresent"));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert_eq!(pulls(&h, "registry.test/app:1"), 1);
    let events = h.sink.event_list();
    assert!(events.contains(&(
        reasons::PULLING.into(),
        "Pulling image \"registry.test/app:1\"".into()
    )));
    assert!(
        events.contains(&(
            reasons::PULLED.into(),
            "Successfully pulled image \"registry.test/app:1\" in 1.5s (1.5s including waiting). Image size: 4096 bytes."
                .into()
        )),
        "{events:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn if_not_present_uses_the_image_there_and_always_pulls_again() {
    let h = Harness::new();
    h.rt.add_pullable("registry.test/app:1", remote(1));
    h.rt.add_image("registry.test/app:1", remote(1).config);
    let w = h.spawn(with_image("registry.test/app:1", "IfNotPresent"));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert_eq!(pulls(&h, "registry.test/app:1"), 0);
    w.terminate(Duration::ZERO);
    h.sink.wait_finished().await;

    let h = Harness::new();
    h.rt.add_pullable("registry.test/app:1", remote(1));
    h.rt.add_image("registry.test/app:1", remote(1).config);
    h.rt.script(
        "app",
        Script {
            run_for: Some(Duration::from_secs(1)),
            ..Script::default()
        },
    );
    let _w = h.spawn(with_image("registry.test/app:1", "Always"));
    // Every start (the first and each restart) resolves the tag again.
    h.sink
        .wait_for("restarted", |s| {
            s.container_statuses
                .iter()
                .flatten()
                .any(|c| c.restart_count >= 1)
        })
        .await;
    assert!(pulls(&h, "registry.test/app:1") >= 2);
}

#[tokio::test(start_paused = true)]
async fn a_failing_pull_backs_off_10s_doubling_with_the_kubelets_reasons() {
    let h = Harness::new();
    h.rt.fail_pull(
        "registry.test/app:nope",
        Some(RuntimeError::other("manifest unknown: manifest unknown")),
    );
    let begin = Instant::now();
    let _w = h.spawn(with_image("registry.test/app:nope", "IfNotPresent"));
    let s = h
        .sink
        .wait_for("ErrImagePull", |s| waiting(s).0 == "ErrImagePull")
        .await;
    assert_eq!(waiting(&s).1, "manifest unknown: manifest unknown");
    assert_eq!(phase(&s), "Pending");

    // Pulls at 0, 10, 30 and 70 s: the delay counts from each failure.
    let mut at = Vec::new();
    for k in 1..=4 {
        h.rt.wait_for_calls(|calls| {
            calls
                .iter()
                .filter(|c| matches!(c, Call::Pull { .. }))
                .count()
                >= k
        })
        .await;
        at.push((Instant::now() - begin).as_secs());
    }
    assert_eq!(at, vec![0, 10, 30, 70]);
    // Between pulls the container waits in ImagePullBackOff.
    let s = h
        .sink
        .wait_for("ImagePullBackOff", |s| waiting(s).0 == "ImagePullBackOff")
        .await;
    assert_eq!(
        waiting(&s).1,
        "Back-off pulling image \"registry.test/app:nope\""
    );
    let events = h.sink.event_list();
    for wanted in [
        (
            reasons::FAILED,
            "Failed to pull image \"registry.test/app:nope\": manifest unknown: manifest unknown",
        ),
        (reasons::FAILED, "Error: ErrImagePull"),
        (
            reasons::BACK_OFF,
            "Back-off pulling image \"registry.test/app:nope\"",
        ),
        (reasons::FAILED, "Error: ImagePullBackOff"),
    ] {
        assert!(
            events.contains(&(wanted.0.into(), wanted.1.into())),
            "{wanted:?} in {events:#?}"
        );
    }

    // The registry gets the tag: the next try pulls it and the pod runs.
    h.rt.fail_pull("registry.test/app:nope", None);
    h.rt.add_pullable("registry.test/app:nope", remote(1));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
}

#[tokio::test(start_paused = true)]
async fn a_deletion_does_not_wait_for_a_slow_pull() {
    let h = Harness::new();
    h.rt.add_pullable("registry.test/big:1", remote(1));
    h.rt.pull_delay(Duration::from_secs(600));
    let w = h.spawn(with_image("registry.test/big:1", "IfNotPresent"));
    h.rt.wait_for_calls(|calls| calls.iter().any(|c| matches!(c, Call::Pull { .. })))
        .await;
    let asked = Instant::now();
    w.terminate(Duration::from_secs(30));
    h.sink.wait_finished().await;
    assert!(Instant::now() - asked < Duration::from_secs(1));
    assert_eq!(h.rt.sandbox_count(), 0);
}

/// The `Pulled` messages of two pods started together, each pulling its own
/// image for 5 s, with `slots` pulls allowed at once.
async fn two_pulls(slots: Option<usize>) -> [String; 2] {
    let mut h = Harness::new();
    h.config = Arc::new(WorkerConfig {
        image_pulls: slots.map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
        ..(*h.config).clone()
    });
    h.rt.pull_delay(Duration::from_secs(5));
    let sinks = ["a", "b"].map(|name| {
        let image = format!("registry.test/{name}:1");
        h.rt.add_pullable(&image, remote(1));
        let mut pod = (*with_image(&image, "IfNotPresent")).clone();
        pod.metadata.name = Some(format!("web-{name}"));
        pod.metadata.uid = Some(format!("uid-{name}"));
        let sink = Arc::new(Recorder::default());
        let worker = spawn(
            Arc::new(h.rt.clone()),
            sink.clone(),
            h.config.clone(),
            Arc::new(pod),
            Adopted::default(),
        );
        (sink, worker)
    });
    let mut messages = Vec::new();
    for (sink, _worker) in &sinks {
        sink.wait_for("Running", |s| phase(s) == "Running").await;
        let pulled = sink
            .event_list()
            .into_iter()
            .find(|(r, _)| r == reasons::PULLED);
        messages.push(pulled.expect("a Pulled event").1);
    }
    messages.try_into().unwrap()
}

/// The "(… including waiting)" part of a `Pulled` message.
fn including_waiting(message: &str) -> &str {
    let (_, rest) = message.split_once(" (").expect("a wait");
    rest.split_once(" including waiting)").expect("a wait").0
}

#[tokio::test(start_paused = true)]
async fn serialized_pulls_take_turns_and_count_the_wait() {
    let messages = two_pulls(Some(1)).await;
    for m in &messages {
        assert!(m.contains(" in 5s ("), "{m}");
    }
    // Either pod may get the slot first; the other waits out its pull.
    let mut waits = messages.each_ref().map(|m| including_waiting(m));
    waits.sort();
    assert_eq!(waits, ["10s", "5s"], "{messages:#?}");
}

#[tokio::test(start_paused = true)]
async fn unlimited_pulls_run_side_by_side() {
    let messages = two_pulls(None).await;
    for m in &messages {
        assert!(
            m.contains(" in 5s (") && including_waiting(m) == "5s",
            "{m}"
        );
    }
}
