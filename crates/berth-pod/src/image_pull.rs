//! The image step of a container start (docs/kubelet-semantics.md §3.3, §10): the
//! pull policy decides whether to pull; failed pulls back off per image
//! (10 s doubling to 300 s) with `ErrImagePull`, then `ImagePullBackOff`.

use std::time::Duration;

use berth_api::status::go_duration;
use berth_runtime::{
    ContainerRuntime, ImageInfo, RegistryCredentials, RuntimeError, RuntimeErrorKind,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::keyring::Keyring;
use crate::reasons;
use crate::sink::{EventType, PodSink};
use crate::timeline::TimelineStep;
use crate::worker::{Worker, RETRY_AFTER};

/// Why an image is not there for its user.
#[derive(Debug, Clone)]
pub(crate) enum ImageFailure {
    /// The pod is being deleted: the pull was abandoned, nothing to report.
    Abandoned,
    /// The kubelet's image errors: the waiting reason and message of the
    /// containers that needed the image, the event to send for each, and
    /// when to look again (sooner than the default retry).
    Failed {
        reason: &'static str,
        message: String,
        event: Option<(&'static str, String)>,
        retry_at: Option<Instant>,
    },
}

impl<R: ContainerRuntime, S: PodSink> Worker<R, S> {
    /// The image of container `i`, present in the runtime, or `None` with the
    /// container's waiting reason set and its next try scheduled.
    pub(crate) async fn ensure_image(&mut self, i: usize) -> Option<ImageInfo> {
        let container = self.spec_container(i)?;
        let image = container.image.clone().unwrap_or_default();
        let policy = container
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| "IfNotPresent".into());
        let field_path = self.field_path(i);
        match self.ensure_image_exists(field_path, &image, &policy).await {
            Ok(info) => {
                let name = self.records[i].name.clone();
                self.step(Some(&name), TimelineStep::ImageReady, image);
                Some(info)
            }
            Err(failure) => {
                self.image_failed(i, failure);
                None
            }
        }
    }

    /// Records an image failure as container `i`'s waiting reason.
    pub(crate) fn image_failed(&mut self, i: usize, failure: ImageFailure) {
        let ImageFailure::Failed {
            reason,
            message,
            event,
            retry_at,
        } = failure
        else {
            return;
        };
        self.start_failed(i, reason, message, event);
        if let Some(at) = retry_at {
            self.records[i].retry_at = Some(at);
        }
    }

    /// The kubelet's `EnsureImageExists`: `image` present in the runtime by
    /// `policy`, pulled if need be, with the pull events on the object
    /// `field_path` names (a container, or the pod itself for an image
    /// volume).
    pub(crate) async fn ensure_image_exists(
        &mut self,
        field_path: Option<String>,
        image: &str,
        policy: &str,
    ) -> Result<ImageInfo, ImageFailure> {
        let present = match self.rt.image_status(image).await {
            Ok(present) => present,
            Err(e) => {
                return Err(ImageFailure::Failed {
                    reason: "ImageInspectError",
                    message: format!("Failed to inspect image \"{image}\": {e}"),
                    event: None,
                    retry_at: None,
                });
            }
        };
        match (present, policy) {
            (Some(info), "IfNotPresent" | "Never") => {
                self.event(
                    EventType::Normal,
                    reasons::PULLED,
                    field_path,
                    format!("Container image \"{image}\" already present on machine"),
                );
                Ok(info)
            }
            (None, "Never") => {
                let message =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                Err(ImageFailure::Failed {
                    reason: "ErrImageNeverPull",
                    message: message.clone(),
                    event: Some((reasons::ERR_IMAGE_NEVER_PULL, message)),
                    retry_at: None,
                })
            }
            _ => self.pull(field_path, image.to_string()).await,
        }
    }

    /// Pulls `image` unless its back-off holds it; a deletion arriving
    /// meanwhile abandons the pull.
    async fn pull(
        &mut self,
        field_path: Option<String>,
        image: String,
    ) -> Result<ImageInfo, ImageFailure> {
        let key = (image.clone(), String::new());
        if let Some((until, _)) = self.pull_backoff.held(&key) {
            let message = format!("Back-off pulling image \"{image}\"");
            self.event(
                EventType::Normal,
                reasons::BACK_OFF,
                field_path,
                message.clone(),
            );
            return Err(ImageFailure::Failed {
                reason: "ImagePullBackOff",
                message,
                event: Some((reasons::FAILED, "Error: ImagePullBackOff".into())),
                retry_at: Some(until.min(Instant::now() + self.pull_resync())),
            });
        }
        // A clone, so that the run loop still sees the change and stops the pod.
        let mut termination = self.term_rx.clone();
        let credentials = tokio::select! {
            credentials = self.pull_credentials(&image) => credentials,
            _ = termination.changed() => return Err(ImageFailure::Abandoned),
        };
        self.event(
            EventType::Normal,
            reasons::PULLING,
            field_path.clone(),
            format!("Pulling image \"{image}\""),
        );
        let pulled = match credentials {
            Ok(credentials) => tokio::select! {
                pulled = limited_pull(self.rt.as_ref(), self.cfg.image_pulls.as_deref(), &image, &credentials) => pulled,
                _ = termination.changed() => return Err(ImageFailure::Abandoned),
            },
            Err(e) => Err(RuntimeError::other(e)),
        };
        match pulled {
            Ok((info, times)) => {
                self.event(
                    EventType::Normal,
                    reasons::PULLED,
                    field_path,
                    format!(
                        "Successfully pulled image \"{image}\" in {} ({} including waiting). Image size: {} bytes.",
                        go_duration(times.pulling),
                        go_duration(times.total),
                        info.size
                    ),
                );
                Ok(info)
            }
            Err(e) => {
                self.pull_backoff.advance(key);
                let reason = if e.kind == RuntimeErrorKind::RegistryUnavailable {
                    "RegistryUnavailable"
                } else {
                    "ErrImagePull"
                };
                self.event(
                    EventType::Warning,
                    reasons::FAILED,
                    field_path,
                    format!("Failed to pull image \"{image}\": {e}"),
                );
                Err(ImageFailure::Failed {
                    reason,
                    message: e.to_string(),
                    event: Some((reasons::FAILED, format!("Error: {reason}"))),
                    // Look again soon, to show the back-off, and retry at its end.
                    retry_at: Some(Instant::now() + self.pull_resync()),
                })
            }
        }
    }

    /// The credentials of the pod's image pull secrets for `image`, in the
    /// order to try them (kubelet `getPullSecretsForPod` and the keyring's
    /// `Lookup`). Secrets are read at each pull, so one created after the
    /// pod serves its next try; those that cannot be read (all of them
    /// standalone, where there is no API server) get a Warning event and
    /// are left out. A secret whose config does not parse is an error.
    async fn pull_credentials(&self, image: &str) -> Result<Vec<RegistryCredentials>, String> {
        let names: Vec<String> = self
            .pod
            .spec
            .iter()
            .flat_map(|spec| spec.image_pull_secrets.iter().flatten())
            // The API allowed empty names; the kubelet skips them quietly.
            .map(|secret| secret.name.clone())
            .filter(|name| !name.is_empty())
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        let read = match &self.cfg.cluster_data {
            Some(data) => data.0.pull_secrets(namespace, &names).await,
            None => names
                .iter()
                .map(|name| Err((name.clone(), "no API server in standalone mode".into())))
                .collect(),
        };
        let mut secrets = Vec::new();
        let mut failed = Vec::new();
        for secret in read {
            match secret {
                Ok(secret) => secrets.push(secret),
                Err((name, why)) => {
                    tracing::info!(secret = %name, error = %why, "Unable to retrieve pull secret, the image pull may not succeed.");
                    failed.push(name);
                }
            }
        }
        if !failed.is_empty() {
            self.event(
                EventType::Warning,
                reasons::FAILED_TO_RETRIEVE_IMAGE_PULL_SECRET,
                None,
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    failed.join(", ")
                ),
            );
        }
        Ok(Keyring::from_secrets(&secrets)?.lookup(image))
    }

    /// How soon a pod with a failed pull is looked at again: the kubelet
    /// re-syncs a failed pod after about 10 s; shorter back-offs (tests)
    /// are looked at once per initial delay.
    fn pull_resync(&self) -> Duration {
        RETRY_AFTER.min(self.cfg.image_pull_backoff.initial)
    }
}

/// How long a pull took, and how long with its wait for a pull slot.
struct PullTimes {
    pulling: Duration,
    total: Duration,
}

/// Pulls `image` once a slot of `limit` (if any) is free: with each of
/// `credentials` in turn until one pull succeeds, or without any when there
/// are none (kubelet `kuberuntime` `PullImage`). Every attempt failing
/// fails with all their errors.
async fn limited_pull<R: ContainerRuntime>(
    rt: &R,
    limit: Option<&Semaphore>,
    image: &str,
    credentials: &[RegistryCredentials],
) -> Result<(ImageInfo, PullTimes), RuntimeError> {
    let queued = Instant::now();
    // The semaphore is never closed, so acquiring only waits.
    let _slot = match limit {
        Some(limit) => limit.acquire().await.ok(),
        None => None,
    };
    let began = Instant::now();
    let info = if credentials.is_empty() {
        rt.pull_image(image, None).await?
    } else {
        pull_with_each(rt, image, credentials).await?
    };
    let times = PullTimes {
        pulling: millis(began.elapsed()),
        total: millis(queued.elapsed()),
    };
    Ok((info, times))
}

async fn pull_with_each<R: ContainerRuntime>(
    rt: &R,
    image: &str,
    credentials: &[RegistryCredentials],
) -> Result<ImageInfo, RuntimeError> {
    let mut errors: Vec<RuntimeError> = Vec::new();
    for credentials in credentials {
        match rt
            .pull_image_with_credentials(image, None, Some(credentials))
            .await
        {
            Ok(info) => return Ok(info),
            Err(e) => errors.push(e),
        }
    }
    // As apimachinery's `NewAggregate` prints several errors.
    let last = errors.pop().expect("at least one credential was tried");
    if errors.is_empty() {
        return Err(last);
    }
    let all: Vec<String> = errors
        .iter()
        .chain(std::iter::once(&last))
        .map(ToString::to_string)
        .collect();
    Err(RuntimeError::new(
        last.kind,
        format!("[{}]", all.join(", ")),
    ))
}

/// The kubelet reports pull times to the millisecond.
fn millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
