//! Volumes of API data (configMap, secret, downwardAPI, projected with the
//! service account token): each pod that has some (or whose env names
//! configMaps or secrets) gets a task that writes them before its
//! containers start and keeps them current, every minute
//! and before its tokens reach 80 % of their lifetime (the kubelet's volume
//! manager and `token_manager`).
//!
//! - `content`: the files each kind lays out; `atomic_writer`: writing them
//!   so a container never sees half an update.

mod atomic_writer;
mod content;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, KeyToPath, Pod, Secret, ServiceAccount, Volume, VolumeProjection,
};
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::store::PodStore;
use atomic_writer::{Files, Payload};
use content::{config_map_data, downward_files, keyed_files, secret_data};

/// How often the content is read again (the kubelet re-syncs a pod's
/// volumes about every minute).
const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// How long a task waits for its pod to be admitted before it gives up.
const ADMISSION_WINDOW: Duration = Duration::from_secs(120);

/// After a failed read, the next try waits this long, doubling up to
/// `RETRY_MAX` (the kubelet's volume operations back off the same way,
/// from 500 ms to 2 min 2 s): an object that stays forbidden or missing
/// must not cost the API server a request every 2 s per pod.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(122);

/// The volume writers of the node's pods.
pub struct PodVolumes {
    client: kube::Client,
    root_dir: PathBuf,
    log_dir: PathBuf,
    store: Arc<PodStore>,
    /// Also kept current here: the objects the pods' env names.
    data: Arc<super::NodeData>,
    stop: CancellationToken,
    running: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl PodVolumes {
    pub fn new(
        client: kube::Client,
        root_dir: PathBuf,
        log_dir: PathBuf,
        store: Arc<PodStore>,
        data: Arc<super::NodeData>,
        stop: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            root_dir,
            log_dir,
            store,
            data,
            stop,
            running: Mutex::default(),
        })
    }

    /// Starts writing the pod's volumes of API data, unless already done.
    pub fn ensure(self: &Arc<Self>, pod: &Pod) {
        let has_api_data = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .any(is_api_data)
            || super::env_objects::has_references(pod);
        if !has_api_data || pod.metadata.deletion_timestamp.is_some() || !super::may_write_for(pod)
        {
            return;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut running = self.running.lock().expect("volume tasks lock");
        running.retain(|_, task| !task.is_finished());
        if running.contains_key(&uid) {
            return;
        }
        let this = Arc::clone(self);
        let pod = pod.clone();
        running.insert(
            uid,
            tokio::spawn(async move { this.keep_written(pod).await }),
        );
    }

    /// Writes the volumes, and again on every refresh, while the pod is
    /// the store's (or, before its admission, for a short while).
    async fn keep_written(&self, first: Pod) {
        let uid = first.metadata.uid.clone().unwrap_or_default();
        let started = Instant::now();
        let mut admitted = false;
        let mut tokens = Tokens::default();
        let mut retry = RETRY_FIRST;
        loop {
            let pod = match self.store.get(&uid) {
                Some(pod) => {
                    admitted = true;
                    pod
                }
                None if admitted || started.elapsed() > ADMISSION_WINDOW => return,
                None => first.clone(),
            };
            // A terminating pod starts no container again, so its volumes
            // are left as they are (the kubelet adds no volumes for a pod
            // whose containers should be terminating); a namespace being
            // deleted takes their objects away first.
            if pod.metadata.deletion_timestamp.is_some() {
                return;
            }
            let (mut wake, failed) = self.write_all(&pod, &mut tokens).await;
            if failed {
                // Soon again, as the object may appear; later each time.
                wake = wake.min(Instant::now() + retry);
                retry = (retry * 2).min(RETRY_MAX);
            } else {
                retry = RETRY_FIRST;
            }
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Reads the objects a new pod's env names, so that its containers'
    /// first start finds them.
    pub async fn prefetch(&self, pod: &Pod) {
        if super::env_objects::has_references(pod) {
            self.data.objects.refresh(&self.client, pod).await;
        }
    }

    /// Writes each volume (and reads the env's objects again); returns when
    /// to write them again, and whether a volume's objects could not be read.
    async fn write_all(&self, pod: &Pod, tokens: &mut Tokens) -> (Instant, bool) {
        self.prefetch(pod).await;
        let meta = &pod.metadata;
        let dirs = berth_pod::PodDirs::new(
            &self.root_dir,
            &self.log_dir,
            meta.namespace.as_deref().unwrap_or("default"),
            meta.name.as_deref().unwrap_or_default(),
            meta.uid.as_deref().unwrap_or_default(),
        );
        let wake = Instant::now() + REFRESH_EVERY;
        let mut failed = false;
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let Some(dir) = dirs.api_object_volume(volume) else {
                continue;
            };
            debug!(volume = %volume.name, "writing volume");
            let files = match self.files(pod, volume, tokens).await {
                Ok(files) => files,
                Err(e) => {
                    warn!(pod = meta.name.as_deref().unwrap_or(""), volume = %volume.name, "MountVolume.SetUp failed: {e}");
                    failed = true;
                    continue;
                }
            };
            match atomic_writer::write(&dir, &files) {
                Ok(true) => debug!(volume = %volume.name, "volume written"),
                Ok(false) => {}
                Err(e) => warn!(volume = %volume.name, "write volume {}: {e}", dir.display()),
            }
        }
        let wake = tokens.earliest_refresh().map_or(wake, |at| wake.min(at));
        (wake, failed)
    }

    /// One volume's files.
    async fn files(
        &self,
        pod: &Pod,
        volume: &Volume,
        tokens: &mut Tokens,
    ) -> Result<Files, String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        if let Some(source) = &volume.config_map {
            let object = Keyed {
                kind: ObjectKind::ConfigMap,
                name: &source.name,
                items: source.items.as_deref(),
                optional: source.optional.unwrap_or(false),
            };
            return self.keyed(namespace, object, source.default_mode).await;
        }
        if let Some(source) = &volume.secret {
            let object = Keyed {
                kind: ObjectKind::Secret,
                name: source.secret_name.as_deref().unwrap_or_default(),
                items: source.items.as_deref(),
                optional: source.optional.unwrap_or(false),
            };
            return self.keyed(namespace, object, source.default_mode).await;
        }
        if let Some(source) = &volume.downward_api {
            return downward_files(
                pod,
                source.items.as_deref().unwrap_or_default(),
                source.default_mode,
                &self.data.allocatable,
            );
        }
        if let Some(source) = &volume.projected {
            let mut files = Files::new();
            for (i, projection) in source.sources.iter().flatten().enumerate() {
                let more = self
                    .projection(
                        pod,
                        &volume.name,
                        i,
                        projection,
                        source.default_mode,
                        tokens,
                    )
                    .await?;
                files.extend(more);
            }
            return Ok(files);
        }
        Err("not a volume of API data".into())
    }

    async fn projection(
        &self,
        pod: &Pod,
        volume: &str,
        index: usize,
        projection: &VolumeProjection,
        default_mode: Option<i32>,
        tokens: &mut Tokens,
    ) -> Result<Files, String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        if let Some(cm) = &projection.config_map {
            let object = Keyed {
                kind: ObjectKind::ConfigMap,
                name: &cm.name,
                items: cm.items.as_deref(),
                optional: cm.optional.unwrap_or(false),
            };
            return self.keyed(namespace, object, default_mode).await;
        }
        if let Some(secret) = &projection.secret {
            let object = Keyed {
                kind: ObjectKind::Secret,
                name: &secret.name,
                items: secret.items.as_deref(),
                optional: secret.optional.unwrap_or(false),
            };
            return self.keyed(namespace, object, default_mode).await;
        }
        if let Some(downward) = &projection.downward_api {
            return downward_files(
                pod,
                downward.items.as_deref().unwrap_or_default(),
                default_mode,
                &self.data.allocatable,
            );
        }
        if let Some(token) = &projection.service_account_token {
            atomic_writer::check_path(&token.path)?;
            let key = format!("{volume}/{index}");
            let value = tokens
                .get(
                    &self.client,
                    pod,
                    &key,
                    token.audience.as_deref(),
                    token.expiration_seconds,
                )
                .await?;
            return Ok(Files::from([(
                token.path.clone(),
                Payload {
                    bytes: value.into_bytes(),
                    mode: content::mode(None, default_mode),
                },
            )]));
        }
        Err("a projected source berth does not support (clusterTrustBundle, podCertificate)".into())
    }

    /// The files of a configMap or secret volume or projection.
    async fn keyed(
        &self,
        namespace: &str,
        object: Keyed<'_>,
        default_mode: Option<i32>,
    ) -> Result<Files, String> {
        let data = match read_data(&self.client, object.kind, namespace, object.name).await {
            Ok(Some(data)) => data,
            Ok(None) if object.optional => content::Data::new(),
            Ok(None) => {
                return Err(format!(
                    "{} {:?} not found",
                    object.kind.noun(),
                    object.name
                ))
            }
            Err(e) => return Err(e.to_string()),
        };
        let kind = object.kind.noun();
        keyed_files(
            kind,
            object.name,
            &data,
            object.items,
            default_mode,
            object.optional,
        )
    }
}

/// The two kinds of object whose keys volumes and env name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ObjectKind {
    ConfigMap,
    Secret,
}

impl ObjectKind {
    /// As the kubelet's messages name it.
    fn noun(self) -> &'static str {
        match self {
            ObjectKind::ConfigMap => "configmap",
            ObjectKind::Secret => "secret",
        }
    }
}

/// A configMap or secret a volume or projection names.
struct Keyed<'a> {
    kind: ObjectKind,
    name: &'a str,
    items: Option<&'a [KeyToPath]>,
    optional: bool,
}

/// A configMap's data and binaryData, or a secret's data, decoded; `None`
/// when the object does not exist.
pub(crate) async fn read_data(
    client: &kube::Client,
    kind: ObjectKind,
    namespace: &str,
    name: &str,
) -> Result<Option<content::Data>, kube::Error> {
    Ok(match kind {
        ObjectKind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(|cm| config_map_data(cm.data.as_ref(), cm.binary_data.as_ref())),
        ObjectKind::Secret => Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(|secret| secret_data(secret.data.as_ref())),
    })
}

pub fn is_api_data(volume: &Volume) -> bool {
    volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.downward_api.is_some()
        || volume.projected.is_some()
}

/// A pod's service account tokens, by projection, with when to renew them.
#[derive(Default)]
struct Tokens {
    held: HashMap<String, (String, Instant)>,
}

impl Tokens {
    /// The token for one projection: the held one until 80 % of its
    /// lifetime, then a new TokenRequest bound to the pod.
    async fn get(
        &mut self,
        client: &kube::Client,
        pod: &Pod,
        key: &str,
        audience: Option<&str>,
        expiration_seconds: Option<i64>,
    ) -> Result<String, String> {
        if let Some((token, renew_at)) = self.held.get(key) {
            if Instant::now() < *renew_at {
                return Ok(token.clone());
            }
        }
        let meta = &pod.metadata;
        let namespace = meta.namespace.as_deref().unwrap_or("default");
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: audience
                    .filter(|a| !a.is_empty())
                    .map(|a| vec![a.to_string()]),
                expiration_seconds: Some(expiration_seconds.unwrap_or(3600)),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: meta.name.clone(),
                    uid: meta.uid.clone(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        let answer = api
            .create_token_request(&account, &PostParams::default(), &request)
            .await
            .map_err(|e| format!("request a token for service account {account:?}: {e}"))?;
        let status = answer.status.ok_or("the token request has no status")?;
        let (Some(token), Some(expiration)) = (status.token, status.expiration_timestamp) else {
            return Err("the token request's status has no token or expiration".into());
        };
        let lifetime = jiff::Timestamp::now()
            .duration_until(expiration.0)
            .as_secs_f64()
            .max(0.0);
        let renew_at = Instant::now() + Duration::from_secs_f64(lifetime * 0.8);
        self.held.insert(key.to_string(), (token.clone(), renew_at));
        Ok(token)
    }

    fn earliest_refresh(&self) -> Option<Instant> {
        self.held.values().map(|(_, at)| *at).min()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// An API server that forbids every read, as the node authorizer does
    /// once a namespace's objects are gone, counting the requests.
    fn forbidding_api_server(requests: Arc<AtomicUsize>) -> kube::Client {
        let service = tower::service_fn(move |_: http::Request<kube::client::Body>| {
            requests.fetch_add(1, Ordering::SeqCst);
            async move {
                let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"configmaps \"cm\" is forbidden","reason":"Forbidden","code":403}"#;
                let response = http::Response::builder()
                    .status(403)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(body.as_bytes().to_vec()))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        kube::Client::new(service, "default")
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_read_backs_off_and_a_terminating_pod_is_left_alone() {
        let requests = Arc::new(AtomicUsize::new(0));
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(PodStore::new(tokio::sync::mpsc::unbounded_channel().0));
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "i"}],
                     "volumes": [{"name": "v", "configMap": {"name": "cm"}}]}
        }))
        .unwrap();
        store.put(pod.clone());
        let volumes = PodVolumes::new(
            forbidding_api_server(requests.clone()),
            dir.path().join("root"),
            dir.path().join("logs"),
            store.clone(),
            Arc::new(crate::cluster::NodeData {
                services: Default::default(),
                objects: Default::default(),
                allocatable: Default::default(),
                client: None,
            }),
            CancellationToken::new(),
        );
        let task = tokio::spawn({
            let (volumes, pod) = (volumes.clone(), pod.clone());
            async move { volumes.keep_written(pod).await }
        });
        // Tries at 0, 2, 6 and 14 s (every 2 s, this would be 15 tries).
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(requests.load(Ordering::SeqCst), 4);
        // The pod is deleted: the next wake-up ends the task, with no read.
        pod.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        store.put(pod);
        tokio::time::sleep(RETRY_MAX).await;
        assert!(task.is_finished());
        assert_eq!(requests.load(Ordering::SeqCst), 4);
    }
}
