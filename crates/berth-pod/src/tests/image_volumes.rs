//! Image volumes against the fake runtime: pulled by their policy before the
//! containers start (events on the pod), a failed one holds only the
//! containers that mount it, mounts are read-only, and the pod's end
//! unmounts them.

use std::os::unix::fs::MetadataExt;

use berth_runtime::{ImageInfo, RuntimeError};

use super::*;

const POD: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    image: busybox
    volumeMounts:
    - {name: data, mountPath: /volume}
  - {name: other, image: busybox}
  volumes:
  - name: data
    image: {reference: \"registry.test/kitten:1.8\", pullPolicy: Always}
";

fn kitten() -> ImageInfo {
    ImageInfo {
        reference: String::new(),
        digest: "sha256:cafe".into(),
        size: 7,
        config: ImageConfig::default(),
    }
}

fn waiting_of(s: &PodStatus, name: &str) -> Option<(String, String)> {
    let status = s
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == name)?;
    let w = status.state.as_ref()?.waiting.as_ref()?;
    Some((w.reason.clone()?, w.message.clone().unwrap_or_default()))
}

fn running(s: &PodStatus, name: &str) -> bool {
    let status = s
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == name);
    status.is_some_and(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
}

/// `(field_path, reason, message)` of every event so far.
fn events(h: &Harness) -> Vec<(Option<String>, String, String)> {
    let events = h.sink.events.lock().unwrap();
    let all = events.iter();
    all.map(|e| {
        (
            e.field_path.clone(),
            e.reason.to_string(),
            e.message.clone(),
        )
    })
    .collect()
}

#[tokio::test(start_paused = true)]
async fn an_image_volume_is_pulled_before_the_containers_and_mounted_read_only() {
    let h = Harness::new();
    h.rt.add_pullable("registry.test/kitten:1.8", kitten());
    let w = h.spawn(pod(POD));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    let calls = h.rt.calls();
    let pull = calls
        .iter()
        .position(|c| matches!(c, Call::Pull { image } if image == "registry.test/kitten:1.8"));
    let create = calls
        .iter()
        .position(|c| matches!(c, Call::CreateContainer { .. }));
    assert!(pull.unwrap() < create.unwrap(), "{calls:#?}");
    assert_eq!(
        h.rt.image_volumes(),
        vec![(
            "berth/image-volume/uid-1/data".to_string(),
            "registry.test/kitten:1.8".to_string()
        )]
    );
    // The pull's events are the pod's, as the kubelet's for image volumes.
    let events = events(&h);
    assert!(events.contains(&(
        None,
        reasons::PULLING.into(),
        "Pulling image \"registry.test/kitten:1.8\"".into()
    )));
    let dirs = PodDirs::new(
        &h.config.root_dir,
        &h.config.log_dir,
        "default",
        "web",
        "uid-1",
    );
    let mount = h.rt.mounts("app").unwrap().remove(0);
    assert_eq!(
        (
            mount.host_path,
            mount.container_path.as_str(),
            mount.read_only
        ),
        (dirs.image_volume("data"), "/volume", true)
    );
    let mode = std::fs::metadata(dirs.image_volume("data")).unwrap().mode();
    assert_eq!(mode & 0o777, 0o700);

    w.terminate(Duration::ZERO);
    h.sink.wait_finished().await;
    assert!(h.rt.image_volumes().is_empty());
    assert!(h.rt.calls().contains(&Call::UnmountImageVolume {
        key: "berth/image-volume/uid-1/data".into()
    }));
}

#[tokio::test(start_paused = true)]
async fn a_failed_image_volume_holds_only_the_containers_that_mount_it() {
    let h = Harness::new();
    h.rt.fail_pull(
        "registry.test/kitten:1.8",
        Some(RuntimeError::other("manifest unknown: manifest unknown")),
    );
    let _w = h.spawn(pod(POD));
    let s = h
        .sink
        .wait_for("app ErrImagePull, other running", |s| {
            waiting_of(s, "app").is_some_and(|w| w.0 == "ErrImagePull") && running(s, "other")
        })
        .await;
    assert_eq!(
        waiting_of(&s, "app").unwrap().1,
        "manifest unknown: manifest unknown"
    );
    let events = events(&h);
    let app = Some("spec.containers{app}".to_string());
    for wanted in [
        (
            None,
            reasons::FAILED,
            "Failed to pull image \"registry.test/kitten:1.8\": manifest unknown: manifest unknown",
        ),
        (app.clone(), reasons::FAILED, "Error: ErrImagePull"),
    ] {
        let wanted = (wanted.0, wanted.1.to_string(), wanted.2.to_string());
        assert!(events.contains(&wanted), "{wanted:?} in {events:#?}");
    }
    // The next passes back off, as for a container image.
    let s = h
        .sink
        .wait_for("ImagePullBackOff", |s| {
            waiting_of(s, "app").is_some_and(|w| w.0 == "ImagePullBackOff")
        })
        .await;
    assert_eq!(
        waiting_of(&s, "app").unwrap().1,
        "Back-off pulling image \"registry.test/kitten:1.8\""
    );
    assert!(h.rt.image_volumes().is_empty());

    // The registry gets the image: the pod runs whole.
    h.rt.fail_pull("registry.test/kitten:1.8", None);
    h.rt.add_pullable("registry.test/kitten:1.8", kitten());
    h.sink.wait_for("app running", |s| running(s, "app")).await;
}

#[tokio::test(start_paused = true)]
async fn a_missing_image_sub_path_is_a_create_container_error() {
    let h = Harness::new();
    h.rt.add_pullable("registry.test/kitten:1.8", kitten());
    let pod = pod(&POD.replace(
        "{name: data, mountPath: /volume}",
        "{name: data, mountPath: /volume, subPath: not-existing}",
    ));
    let _w = h.spawn(pod);
    let s = h
        .sink
        .wait_for("CreateContainerError", |s| {
            waiting_of(s, "app").is_some_and(|w| w.0 == "CreateContainerError")
        })
        .await;
    let message = waiting_of(&s, "app").unwrap().1;
    assert_eq!(
        message,
        "failed to mount image volume: ImageVolumeMountFailed: failed to ensure image subpath \"not-existing\" in volume \"data\": No such file or directory"
    );
}
