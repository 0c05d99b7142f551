//! Image volumes (`volumes[].image`), as the kubelet and containerd's CRI
//! run them: before a pass starts its first container, every image volume
//! of the pod is pulled by its `pullPolicy` (kuberuntime's
//! `getImageVolumes`, with the pull events on the pod), used or not; a
//! container that mounts one whose pull failed waits with that pull's
//! reason (`toKubeContainerImageVolumes`); the others start. The image's
//! root filesystem is then mounted read-only under the pod's directory (the
//! CRI's `mutateImageMount`) and bound into the containers from there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_runtime::{ContainerRuntime, ImageInfo};
use k8s_openapi::api::core::v1::{ImageVolumeSource, Pod};
use tracing::warn;

use crate::image_pull::ImageFailure;
use crate::reasons;
use crate::sink::{EventType, PodSink};
use crate::worker::Worker;

/// Each image volume's pull, by volume name.
pub(crate) type Pulls = BTreeMap<String, Result<ImageInfo, ImageFailure>>;

/// The pod's image volumes, in spec order.
fn image_volumes(pod: &Pod) -> impl Iterator<Item = (&str, &ImageVolumeSource)> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    volumes.filter_map(|v| Some((v.name.as_str(), v.image.as_ref()?)))
}

/// The snapshot an image volume is mounted from: one per pod and volume.
pub(crate) fn snapshot_key(pod_uid: &str, volume: &str) -> String {
    format!("berth/image-volume/{pod_uid}/{volume}")
}

/// Unmounts the image volumes of a pod that is gone (deleted while the
/// agent was down), found by their mount points under its directory in
/// `root_dir`, and removes their snapshots; call it before the pod's
/// directory goes.
pub async fn remove_orphaned_image_volumes<R: ContainerRuntime>(
    rt: &R,
    root_dir: &Path,
    uid: &str,
) {
    let dir = crate::dirs::image_volumes_dir(&root_dir.join("pods").join(uid));
    let names = std::fs::read_dir(&dir).into_iter().flatten().flatten();
    for name in names.filter_map(|e| e.file_name().into_string().ok()) {
        let key = snapshot_key(uid, &name);
        if let Err(e) = rt.unmount_image_volume(&key, &dir.join(&name)).await {
            warn!(
                uid,
                volume = name,
                "unmount the image volume of an orphaned pod: {e}"
            );
        }
    }
}

impl<R: ContainerRuntime, S: PodSink> Worker<R, S> {
    /// Readies the image volumes container `i` mounts: pulled (all of the
    /// pod's, once a pass) and mounted. `false` when the container cannot
    /// start, with its waiting reason set.
    pub(crate) async fn ready_image_volumes(&mut self, i: usize) -> bool {
        let mounted: Vec<String> = {
            let Some(container) = self.spec_container(i) else {
                return false;
            };
            let mounts = container.volume_mounts.iter().flatten();
            mounts.map(|m| m.name.clone()).collect()
        };
        if image_volumes(&self.pod).next().is_none() {
            return true;
        }
        if self.image_volume_pulls.is_none() {
            let pulls = self.pull_image_volumes().await;
            self.image_volume_pulls = Some(pulls);
        }
        let pulls = self.image_volume_pulls.clone().unwrap_or_default();
        let mut used = Vec::new();
        let mut failures = Vec::new();
        for name in &mounted {
            match pulls.get(name) {
                None => {}
                Some(Ok(image)) => used.push((name.clone(), image.clone())),
                Some(Err(ImageFailure::Abandoned)) => return false,
                Some(Err(failure)) => failures.push(failure.clone()),
            }
        }
        // An event for each mount of a failed volume; the last one's reason
        // is the container's, as the kubelet's.
        if let Some(last) = failures.pop() {
            for failure in failures {
                if let ImageFailure::Failed { reason, .. } = failure {
                    let field_path = self.field_path(i);
                    let message = format!("Error: {reason}");
                    self.event(EventType::Warning, reasons::FAILED, field_path, message);
                }
            }
            self.image_failed(i, last);
            return false;
        }
        for (name, image) in used {
            if let Err(message) = self.mount_image_volume(&name, &image).await {
                let message =
                    format!("failed to mount image volume: ImageVolumeMountFailed: {message}");
                self.start_failed(i, "CreateContainerError", message, None);
                return false;
            }
        }
        true
    }

    /// Pulls every image volume of the pod; events go to the pod.
    async fn pull_image_volumes(&mut self) -> Pulls {
        let volumes: Vec<(String, String, String)> = image_volumes(&self.pod)
            .map(|(name, source)| {
                let reference = source.reference.clone().unwrap_or_default();
                let policy = source.pull_policy.clone().unwrap_or_default();
                (name.to_string(), reference, policy)
            })
            .collect();
        let mut pulls = Pulls::new();
        for (name, reference, policy) in volumes {
            let pulled = self.ensure_image_exists(None, &reference, &policy).await;
            let abandoned = matches!(pulled, Err(ImageFailure::Abandoned));
            pulls.insert(name, pulled);
            if abandoned {
                break;
            }
        }
        pulls
    }

    /// Mounts one image volume where the pod's containers bind it from,
    /// unless it is mounted already (another container, an earlier agent).
    async fn mount_image_volume(&self, name: &str, image: &ImageInfo) -> Result<(), String> {
        let target = self.dirs.image_volume(name);
        // Private to the node: the kubelet's 0700 for what only runc reads.
        let parent = target.parent().map(PathBuf::from).unwrap_or_default();
        for dir in [&parent, &target] {
            berth_runtime::files::create_dir(dir, 0o700)
                .map_err(|e| format!("create the mount point of volume {name:?}: {e}"))?;
        }
        let key = snapshot_key(&self.pod_ref.uid, name);
        self.rt
            .mount_image_volume(image, &key, &target)
            .await
            .map_err(|e| {
                warn!(pod = %self.pod_ref, volume = name, "mount image volume: {e}");
                format!("volume {name:?}: {}", e.message)
            })
    }

    /// Unmounts the pod's image volumes and removes their snapshots, at
    /// teardown; failures are logged (the pod's directory removal then
    /// unmounts what is left).
    pub(crate) async fn unmount_image_volumes(&self) {
        let names: Vec<String> = image_volumes(&self.pod)
            .map(|(name, _)| name.to_string())
            .collect();
        for name in names {
            let key = snapshot_key(&self.pod_ref.uid, &name);
            let target = self.dirs.image_volume(&name);
            if let Err(e) = self.rt.unmount_image_volume(&key, &target).await {
                warn!(pod = %self.pod_ref, volume = name, "unmount image volume: {e}");
            }
        }
    }
}
