//! A running pod's spec changes and deadline, on a real containerd: an image
//! change applied with `berth apply` restarts just that container, as the
//! kubelet does; `activeDeadlineSeconds` fails the pod on time.

use std::time::Duration;

use berth_api::reasons;
use berth_integration::*;
use berth_testkit::busybox_image;
use serde_json::json;
use tokio::time::Instant;

const V2: &str = "berth.test/busybox:2";

#[tokio::test]
async fn an_applied_image_change_restarts_just_that_container() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let archive = agent.work_dir().join("busybox-2.oci.tar");
    busybox_image(V2)
        .write_oci_archive(std::fs::File::create(&archive).unwrap())
        .unwrap();
    agent.ctr_import(&archive);
    let mut spec = pod(
        "swap",
        "Never",
        vec![
            term_handling_container("app"),
            sh_container("other", "exec sleep 3600"),
        ],
    );
    agent.apply_yaml(&manifest(&spec)).await;
    let before = wait_running(&agent, "swap").await;
    let other = container_id(&before, "other");

    spec["spec"]["containers"][0]["image"] = json!(V2);
    agent.apply_yaml(&manifest(&spec)).await;
    let after = agent
        .wait_for(
            "default",
            "swap",
            "app on the new image",
            START_TIMEOUT,
            |p| {
                restart_count(p, "app") == 1
                    && all_running(p)
                    && container_status(p, "app").is_some_and(|c| c["image"] == V2)
            },
        )
        .await;
    assert_eq!(container_id(&after, "other"), other, "other kept running");
    assert_eq!(restart_count(&after, "other"), 0);
    let (_, events) = pod_events(&agent, "default", "swap").await;
    let killing =
        find_event(&events, reasons::KILLING, "spec.containers{app}").expect("Killing event");
    assert_eq!(
        killing["message"],
        "Container app definition changed, will be restarted"
    );
}

#[tokio::test]
async fn active_deadline_fails_the_pod_on_time_through_the_grace_path() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut spec = pod("bounded", "Always", vec![term_handling_container("main")]);
    // Long enough for the container to be handling TERM by then, even
    // when a loaded machine takes seconds to start it.
    spec["spec"]["activeDeadlineSeconds"] = json!(8);
    let applied = Instant::now();
    agent.apply_yaml(&manifest(&spec)).await;
    wait_log_contains(&agent, "bounded", "main", "ready").await;
    let failed = agent
        .wait_for("default", "bounded", "Failed", START_TIMEOUT, |p| {
            phase(p) == "Failed" && terminated(p, "main").is_some()
        })
        .await;
    let took = applied.elapsed();
    assert!(
        took >= Duration::from_millis(7500) && took < Duration::from_secs(20),
        "failed after {took:?}"
    );
    assert_eq!(
        failed["status"]["reason"],
        reasons::DEADLINE_EXCEEDED,
        "{failed:#}"
    );
    assert_eq!(
        failed["status"]["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    // Stopped by its stop signal (it exits 0 on TERM), not killed.
    assert_eq!(
        terminated(&failed, "main").unwrap()["exitCode"],
        0,
        "{failed:#}"
    );
    let (_, events) = pod_events(&agent, "default", "bounded").await;
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == reasons::DEADLINE_EXCEEDED),
        "{events:#?}"
    );
    assert_eq!(restart_count(&failed, "main"), 0);
}
