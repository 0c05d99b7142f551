//! Volumes whose content another part of the agent writes (cluster mode's
//! API data): the pod waits for it quietly, as the kubelet's volume manager
//! does, and says so only once the kubelet's timeout has passed.

use super::*;

const POD: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - {name: app, image: busybox}
  volumes:
  - name: settings
    configMap: {name: settings}
";

fn settings_dir(h: &Harness, pod: &Pod) -> std::path::PathBuf {
    let dirs = PodDirs::new(
        &h.config.root_dir,
        &h.config.log_dir,
        "default",
        "web",
        "uid-1",
    );
    let volume = &pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
    dirs.api_object_volume(volume).unwrap()
}

fn failed_mounts(h: &Harness) -> Vec<String> {
    let events = h.sink.events.lock().unwrap();
    let failed = events.iter().filter(|e| e.reason == reasons::FAILED_MOUNT);
    failed.map(|e| e.message.clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn content_written_soon_after_the_pod_starts_it_without_a_warning() {
    let h = Harness::new();
    let pod = pod(POD);
    let _w = h.spawn(pod.clone());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        h.rt.sandbox_count(),
        0,
        "started before its volume was there"
    );
    let dir = settings_dir(&h, &pod);
    std::fs::create_dir_all(dir.join("..2026_12_06")).unwrap();
    std::os::unix::fs::symlink("..2026_12_06", dir.join(crate::dirs::DATA_LINK)).unwrap();
    let written = Instant::now();
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    assert!(
        written.elapsed() < Duration::from_millis(500),
        "took {:?} after the content came",
        written.elapsed()
    );
    assert_eq!(failed_mounts(&h), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn content_that_never_comes_is_a_failed_mount_after_the_kubelets_timeout() {
    let h = Harness::new();
    let _w = h.spawn(pod(POD));
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(failed_mounts(&h), Vec::<String>::new());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        failed_mounts(&h),
        vec!["Unable to attach or mount volumes: unmounted volumes=[settings], unattached volumes=[], failed to process volumes=[]: timed out waiting for the condition".to_string()]
    );
    assert_eq!(h.rt.sandbox_count(), 0);
}
