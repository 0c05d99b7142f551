//! The supervisor: one pod worker per pod UID, fed by the sources (local API,
//! manifest directory), and the [`PodService`] the local API serves.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_pod::{
    Adopted, EventType, PodEvent, PodSink, PodWorkerHandle, TimelineEntry, WorkerConfig,
};
use berth_runtime::{
    ContainerId, ContainerRuntime, ExecOutput, ExecSession, ExecSignal, ExecStreamRequest,
    ImageInfo, ImageService, ObservedState, PodRef, PullProgress, RuntimeErrorKind,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tracing::{debug, info, warn};

use crate::admission::{Admission, Rejection};
use crate::manifests::is_static;
use crate::service::{ApiError, LogOptions, LogTarget, PodService, PulledImage, WatchEvent};
use crate::store::{self, PodStore};

mod cluster_pods;

/// Owns the pods: their objects in the store and their workers.
pub struct Supervisor<R> {
    runtime: Arc<R>,
    store: Arc<PodStore>,
    worker_config: Arc<WorkerConfig>,
    workers: Mutex<HashMap<String, PodWorkerHandle>>,
    /// What the runtime held at start-up, by pod UID, until a pod claims it.
    adoptable: Mutex<HashMap<String, Adopted>>,
    /// Pods submitted through the API are kept here (one JSON file per UID)
    /// so that an agent restart finds them again.
    api_pods_dir: PathBuf,
    /// Static pod UIDs by manifest file.
    files: Mutex<HashMap<PathBuf, Vec<String>>>,
    /// Static pods waiting for an older pod of the same full name to go: the
    /// kubelet never runs two of them at once.
    queued: Mutex<Vec<Pod>>,
    /// What may run on this node at all.
    admission: Admission,
    /// Pods their source removed (deleted on the API server, their manifest
    /// file gone) that still terminate. Their requests no longer count
    /// against new pods, as the kubelet's pod manager forgets a removed pod
    /// at once (`HandlePodRemoves`) while its worker still stops it: the
    /// scheduler has already given its share to the next pod.
    removed: Mutex<HashSet<String>>,
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("pods \"{name}\" not found"))
}

impl<R: ContainerRuntime + ImageService> Supervisor<R> {
    pub fn new(
        runtime: Arc<R>,
        store: Arc<PodStore>,
        worker_config: Arc<WorkerConfig>,
        api_pods_dir: PathBuf,
        adoptable: HashMap<String, Adopted>,
    ) -> Self {
        Self {
            runtime,
            store,
            worker_config,
            workers: Mutex::default(),
            adoptable: Mutex::new(adoptable),
            api_pods_dir,
            files: Mutex::default(),
            queued: Mutex::default(),
            admission: Admission::default(),
            removed: Mutex::default(),
        }
    }

    /// Admits pods with these admit handlers instead of the defaults.
    pub fn with_admission(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }

    /// Stores the pod and starts its worker (adopting what the runtime holds).
    fn admit(&self, mut pod: Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let adopted = self
            .adoptable
            .lock()
            .expect("adoptable lock")
            .remove(&uid)
            .unwrap_or_default();
        // A pod found running keeps its age and start time across the
        // restart, as the API server keeps them across a kubelet's.
        let kept = adopted.sandbox.as_ref().and_then(|s| s.pod_times);
        let meta = &mut pod.metadata;
        if meta.creation_timestamp.is_none() {
            meta.creation_timestamp = Some(kept.map_or_else(store::now, |k| Time(k.created)));
        }
        if let Some(kept) = kept {
            let status = pod.status.get_or_insert_with(Default::default);
            status.start_time.get_or_insert(Time(kept.started));
        }
        // A pod that ran before an agent restart keeps running: its
        // requests were admitted then.
        let others = match adopted.sandbox {
            Some(_) => None,
            None => Some(self.admitted_specs(&uid)),
        };
        let others: Option<Vec<&PodSpec>> = others.as_ref().map(|o| o.iter().collect());
        if let Err(rejection) = self.admission.check(&pod, others.as_deref()) {
            return self.reject(pod, rejection);
        }
        let deleting = pod.metadata.deletion_grace_period_seconds;
        let pod = self.store.put(pod);
        let handle = berth_pod::spawn(
            self.runtime.clone(),
            self.store.clone(),
            self.worker_config.clone(),
            pod,
            adopted,
        );
        // A pod deleted before an agent restart goes on terminating.
        if let Some(grace) = deleting {
            handle.terminate(Duration::from_secs(grace.max(0) as u64));
        }
        self.workers
            .lock()
            .expect("workers lock")
            .insert(uid, handle);
    }

    /// The specs of the pods with a worker that have not finished and that
    /// their source still has, but `uid`'s: what the node's resources are
    /// already admitted to.
    fn admitted_specs(&self, uid: &str) -> Vec<PodSpec> {
        let workers: HashSet<String> = self
            .workers
            .lock()
            .expect("workers lock")
            .keys()
            .cloned()
            .collect();
        let removed = self.removed.lock().expect("removed lock");
        self.store.read(|pods| {
            pods.filter(|p| {
                let other = p.metadata.uid.as_deref().is_some_and(|u| u != uid);
                let pod_uid = p.metadata.uid.as_deref().unwrap_or_default();
                let running = workers.contains(pod_uid) && !removed.contains(pod_uid);
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                other && running && !matches!(phase, Some("Succeeded" | "Failed"))
            })
            .filter_map(|p| p.spec.clone())
            .collect()
        })
    }

    /// Keeps a pod the node may not run as Failed, with no worker (kubelet
    /// `rejectPod`); deleting it removes it at once.
    fn reject(&self, mut pod: Pod, rejection: Rejection) {
        let meta = &pod.metadata;
        let pod_ref = PodRef {
            uid: meta.uid.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone().unwrap_or_default(),
        };
        info!(pod = %pod_ref, reason = rejection.reason, "pod rejected: {}", rejection.message);
        let qos = pod.spec.as_ref().map(berth_api::status::qos_class);
        let status = pod.status.get_or_insert_with(Default::default);
        status.phase = Some("Failed".into());
        status.reason = Some(rejection.reason.into());
        status.message = Some(format!("Pod was rejected: {}", rejection.message));
        status.qos_class = qos.map(Into::into);
        let deleting = pod.metadata.deletion_timestamp.is_some();
        self.store.put(pod);
        self.store.event(PodEvent {
            pod: pod_ref.clone(),
            field_path: None,
            event_type: EventType::Warning,
            reason: rejection.reason,
            message: rejection.message,
            at: jiff::Timestamp::now(),
        });
        if deleting {
            self.store.finished(&pod_ref.uid);
        }
    }

    /// Reloads the pods the API created before an agent restart.
    pub fn load_api_pods(&self) -> std::io::Result<()> {
        berth_runtime::files::create_dir(
            &self.api_pods_dir,
            berth_runtime::files::PRIVATE_DIR_MODE,
        )?;
        for entry in std::fs::read_dir(&self.api_pods_dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path).map(|b| serde_json::from_slice::<Pod>(&b)) {
                // The API made the UID; one that is not a plain name was not
                // written by berth and must not name directories.
                Ok(Ok(pod)) if berth_api::validation::validate_uid(&pod).is_err() => {
                    warn!(file = %path.display(), "skipping pod record with an invalid metadata.uid");
                }
                Ok(Ok(pod)) => self.admit(pod),
                Ok(Err(e)) => warn!(file = %path.display(), "skipping unreadable pod record: {e}"),
                Err(e) => warn!(file = %path.display(), "skipping pod record: {e}"),
            }
        }
        Ok(())
    }

    fn persist(&self, pod: &Pod) {
        if is_static(pod) {
            return; // static pods live in their manifest files
        }
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let path = self.api_pods_dir.join(format!("{uid}.json"));
        let mut record = pod.clone();
        record.status = None;
        // The record holds the pod's env values: root's alone (0600).
        let result = serde_json::to_vec(&record)
            .map_err(std::io::Error::other)
            .and_then(|bytes| berth_runtime::files::write_private(&path, &bytes));
        if let Err(e) = result {
            warn!(file = %path.display(), "persist pod: {e}");
        }
    }

    /// A worker tore its pod down: forget the pod, and start a static pod
    /// that waited for its name.
    pub fn on_finished(&self, uid: &str) {
        self.workers.lock().expect("workers lock").remove(uid);
        self.removed.lock().expect("removed lock").remove(uid);
        if let Some(pod) = self.store.remove(uid) {
            debug!(
                pod = pod.metadata.name.as_deref().unwrap_or(""),
                "pod removed"
            );
        }
        let _ = std::fs::remove_file(self.api_pods_dir.join(format!("{uid}.json")));
        let ready: Vec<Pod> = {
            let mut queued = self.queued.lock().expect("queued lock");
            let (ready, waiting) = std::mem::take(&mut *queued)
                .into_iter()
                .partition(|p| self.name_is_free(p));
            *queued = waiting;
            ready
        };
        for pod in ready {
            self.admit(pod);
        }
    }

    fn name_is_free(&self, pod: &Pod) -> bool {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        self.store.find(namespace, name).is_none()
    }

    /// A manifest file's pods are now `pods`: new UIDs start, vanished ones
    /// terminate with their own grace period.
    ///
    /// A file with an invalid pod is refused whole, as one that cannot be
    /// parsed: its previous pods are left as they were.
    pub fn apply_file(&self, path: &Path, pods: Vec<Pod>) {
        if let Err(e) = pods
            .iter()
            .try_for_each(crate::manifests::validate_static_pod)
        {
            warn!(file = %path.display(), "invalid manifest, its pods are left as they were: {e}");
            return;
        }
        let new: Vec<String> = pods
            .iter()
            .map(|p| p.metadata.uid.clone().unwrap_or_default())
            .collect();
        let old = self
            .files
            .lock()
            .expect("files lock")
            .insert(path.to_owned(), new.clone())
            .unwrap_or_default();
        for uid in old.iter().filter(|u| !new.contains(u)) {
            self.terminate_uid(uid, None);
        }
        let mut queued = self.queued.lock().expect("queued lock");
        // A queued pod whose file changed again is replaced by the new one.
        queued.retain(|q| !old.contains(q.metadata.uid.as_ref().unwrap_or(&String::new())));
        for pod in pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if self.store.get(&uid).is_some()
                || queued.iter().any(|q| q.metadata.uid == pod.metadata.uid)
            {
                continue;
            }
            if self.name_is_free(&pod) {
                info!(file = %path.display(), pod = pod.metadata.name.as_deref().unwrap_or(""), "static pod added");
                self.admit(pod);
            } else {
                queued.push(pod);
            }
        }
    }

    pub fn remove_file(&self, path: &Path) {
        let old = self.files.lock().expect("files lock").remove(path);
        let old = old.unwrap_or_default();
        self.queued
            .lock()
            .expect("queued lock")
            .retain(|q| !old.contains(q.metadata.uid.as_ref().unwrap_or(&String::new())));
        for uid in old {
            self.source_removed(&uid);
            self.terminate_uid(&uid, None);
        }
    }

    /// Pod `uid`'s source no longer has it: its requests are free for new
    /// pods (and resizes) while it terminates.
    fn source_removed(&self, uid: &str) {
        if self.workers.lock().expect("workers lock").contains_key(uid) {
            self.removed
                .lock()
                .expect("removed lock")
                .insert(uid.to_string());
        }
        self.worker_config.allocations.remove(uid);
    }

    /// Starts a graceful delete of one pod; `grace` defaults to the pod's
    /// `terminationGracePeriodSeconds`. A grace can only shrink.
    fn terminate_uid(&self, uid: &str, grace: Option<i64>) -> Option<Pod> {
        let pod = self.store.modify(uid, |pod| {
            let spec_grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30);
            let grace = grace.unwrap_or(spec_grace).max(0);
            let meta = &mut pod.metadata;
            let grace = meta
                .deletion_grace_period_seconds
                .map_or(grace, |g| g.min(grace));
            meta.deletion_grace_period_seconds = Some(grace);
            if meta.deletion_timestamp.is_none() {
                meta.deletion_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        store::now().0 + jiff::SignedDuration::from_secs(grace),
                    ));
            }
        })?;
        self.persist(&pod);
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        let has_worker = match self.workers.lock().expect("workers lock").get(uid) {
            Some(worker) => {
                worker.terminate(Duration::from_secs(grace as u64));
                true
            }
            None => false,
        };
        let rejected = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed");
        if !has_worker && rejected {
            // Rejected at admission: nothing runs, nothing to wait for.
            self.store.finished(uid);
        }
        Some(pod)
    }

    /// Stops every worker, leaving the pods running (an agent restart adopts
    /// them).
    pub async fn detach_all(&self) {
        let workers: Vec<_> = self.workers.lock().expect("workers lock").drain().collect();
        for (_, worker) in workers {
            worker.detach().await;
        }
    }

    /// Terminates every pod with at most `grace` (graceful node shutdown).
    pub fn terminate_all(&self, grace: Duration) {
        let uids: Vec<String> = self
            .store
            .read(|pods| pods.filter_map(|p| p.metadata.uid.clone()).collect());
        for uid in uids {
            self.terminate_uid(&uid, Some(grace.as_secs() as i64));
        }
    }

    pub fn store(&self) -> &Arc<PodStore> {
        &self.store
    }

    pub fn runtime(&self) -> &Arc<R> {
        &self.runtime
    }

    /// Evicts the pod `uid` with `message` (the eviction manager's
    /// `evictPod`); false when it has no worker or was evicted before.
    pub fn evict(&self, uid: &str, message: String) -> bool {
        let workers = self.workers.lock().expect("workers lock");
        workers.get(uid).is_some_and(|w| w.evict(message))
    }

    /// `namespace/name` of the known pods with a running or created container
    /// on the image `reference` (as the runtime names it), with the
    /// container's name.
    async fn image_users(&self, reference: &str) -> Result<Vec<(String, String)>, ApiError> {
        let observed = self
            .runtime
            .list()
            .await
            .map_err(|e| ApiError::Internal(e.message))?;
        let mut users: Vec<(String, String)> = observed
            .containers
            .into_iter()
            .filter(|c| c.image == reference)
            .filter(|c| {
                matches!(
                    c.state,
                    ObservedState::Created | ObservedState::Running { .. }
                )
            })
            .filter(|c| self.store.get(&c.pod.uid).is_some())
            .map(|c| (format!("{}/{}", c.pod.namespace, c.pod.name), c.name))
            .collect();
        users.sort();
        users.dedup();
        Ok(users)
    }

    fn pod(&self, namespace: &str, name: &str) -> Result<Pod, ApiError> {
        self.store
            .find(namespace, name)
            .ok_or_else(|| not_found(name))
    }
}

fn statuses(status: Option<&PodStatus>) -> impl Iterator<Item = &ContainerStatus> {
    status.into_iter().flat_map(|s| {
        s.init_container_statuses
            .iter()
            .flatten()
            .chain(s.container_statuses.iter().flatten())
            .chain(s.ephemeral_container_statuses.iter().flatten())
    })
}

/// The container a request means: the named one, or the only/first one.
fn pick_container<'a>(
    pod: &'a Pod,
    container: Option<&str>,
) -> Result<&'a ContainerStatus, ApiError> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let wanted = match container {
        Some(c) => c.to_string(),
        None => {
            let names: Vec<&str> = spec
                .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
                .unwrap_or_default();
            match names.as_slice() {
                [one] => one.to_string(),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        names.join(" ")
                    )))
                }
            }
        }
    };
    statuses(pod.status.as_ref())
        .find(|s| s.name == wanted)
        .ok_or_else(|| {
            ApiError::BadRequest(format!("container {wanted} is not valid for pod {name}"))
        })
}

/// The runtime's id of the pod's `container` (or only container), running.
fn running_container(pod: &Pod, container: Option<&str>) -> Result<ContainerId, ApiError> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pick_container(pod, container)?;
    let running = status.state.as_ref().is_some_and(|s| s.running.is_some());
    status
        .container_id
        .as_deref()
        .and_then(|id| id.strip_prefix("containerd://"))
        .filter(|_| running)
        .map(|id| ContainerId(id.to_string()))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "container {} is not running in pod {name}",
                status.name
            ))
        })
}

impl<R: ContainerRuntime + ImageService> PodService for Supervisor<R> {
    async fn create(&self, namespace: &str, mut pod: Pod) -> Result<Pod, ApiError> {
        pod.metadata.namespace = Some(namespace.to_string());
        berth_api::defaults::apply_defaults(&mut pod);
        berth_api::validation::validate_pod(&pod).map_err(|e| ApiError::Invalid(e.to_string()))?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        if self.store.find(namespace, &name).is_some() {
            return Err(ApiError::AlreadyExists(format!(
                "pods \"{name}\" already exists"
            )));
        }
        pod.metadata.uid = Some(uuid::Uuid::new_v4().to_string());
        pod.metadata.creation_timestamp = Some(store::now());
        pod.metadata.deletion_timestamp = None;
        pod.metadata.deletion_grace_period_seconds = None;
        pod.status = Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(self.worker_config.node_name.clone());
        }
        self.persist(&pod);
        self.admit(pod.clone());
        Ok(self
            .store
            .get(pod.metadata.uid.as_deref().unwrap_or_default())
            .unwrap_or(pod))
    }

    async fn replace(&self, namespace: &str, name: &str, mut pod: Pod) -> Result<Pod, ApiError> {
        let old = self.pod(namespace, name)?;
        pod.metadata.namespace = Some(namespace.to_string());
        berth_api::defaults::apply_defaults(&mut pod);
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = old.spec.as_ref().and_then(|s| s.node_name.clone());
        }
        berth_api::validation::validate_update(&old, &pod)
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        // The generation is the server's, never the client's.
        pod.metadata.generation = old.metadata.generation;
        let uid = old.metadata.uid.clone().unwrap_or_default();
        self.update_spec(&uid, &pod).ok_or_else(|| not_found(name))
    }

    async fn replace_ephemeral_containers(
        &self,
        namespace: &str,
        name: &str,
        pod: Pod,
    ) -> Result<Pod, ApiError> {
        let old = self.pod(namespace, name)?;
        // Only the ephemeral containers change (the API server's
        // `dropNonEphemeralContainerUpdates`); the identity is checked.
        let mut new = old.clone();
        new.metadata.name = pod.metadata.name;
        new.metadata.namespace = Some(namespace.to_string());
        new.metadata.uid = pod.metadata.uid.or(old.metadata.uid.clone());
        if let Some(spec) = new.spec.as_mut() {
            spec.ephemeral_containers = pod.spec.and_then(|s| s.ephemeral_containers);
        }
        berth_api::defaults::apply_defaults(&mut new);
        berth_api::validation::validate_ephemeral_update(&old, &new, is_static(&old))
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        let uid = old.metadata.uid.clone().unwrap_or_default();
        self.update_spec(&uid, &new).ok_or_else(|| not_found(name))
    }

    fn get(&self, namespace: &str, name: &str) -> Result<Pod, ApiError> {
        self.pod(namespace, name)
    }

    fn list(&self, namespace: Option<&str>) -> Vec<Pod> {
        self.store.list(namespace)
    }

    async fn delete(
        &self,
        namespace: &str,
        name: &str,
        grace_period_seconds: Option<i64>,
    ) -> Result<Pod, ApiError> {
        if grace_period_seconds.is_some_and(|g| g < 0) {
            return Err(ApiError::Invalid(
                "gracePeriodSeconds: Invalid value: must be greater than or equal to 0".into(),
            ));
        }
        let pod = self.pod(namespace, name)?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if is_static(&pod) {
            // As with the kubelet's mirror pods: the API object goes and comes
            // back at once; the pod itself runs on until its manifest changes.
            self.store.recreate(&uid);
            return Ok(pod);
        }
        self.terminate_uid(&uid, grace_period_seconds)
            .ok_or_else(|| not_found(name))
    }

    fn watch(&self) -> tokio::sync::broadcast::Receiver<WatchEvent> {
        self.store.subscribe()
    }

    fn log_target(
        &self,
        namespace: &str,
        name: &str,
        options: &LogOptions,
    ) -> Result<LogTarget, ApiError> {
        let pod = self.pod(namespace, name)?;
        let status = pick_container(&pod, options.container.as_deref())?;
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let dir = self
            .worker_config
            .log_dir
            .join(format!("{namespace}_{name}_{uid}"))
            .join(&status.name);
        let state = status.state.clone().unwrap_or_default();
        if options.previous {
            let has_previous = status
                .last_state
                .as_ref()
                .is_some_and(|s| s.terminated.is_some());
            if !has_previous {
                return Err(ApiError::BadRequest(format!(
                    "previous terminated container \"{}\" in pod \"{name}\" not found",
                    status.name
                )));
            }
            let attempt = if state.terminated.is_some() || state.running.is_some() {
                status.restart_count - 1
            } else {
                status.restart_count
            };
            return Ok(LogTarget {
                path: dir.join(format!("{}.log", attempt.max(0))),
                running: false,
            });
        }
        if status.container_id.is_none() {
            let reason = state
                .waiting
                .and_then(|w| w.reason)
                .unwrap_or_else(|| "ContainerCreating".into());
            return Err(ApiError::BadRequest(format!(
                "container \"{}\" in pod \"{name}\" is waiting to start: {reason}",
                status.name
            )));
        }
        Ok(LogTarget {
            path: dir.join(format!("{}.log", status.restart_count)),
            running: state.running.is_some(),
        })
    }

    async fn exec(
        &self,
        namespace: &str,
        name: &str,
        container: Option<&str>,
        command: Vec<String>,
    ) -> Result<ExecOutput, ApiError> {
        let pod = self.pod(namespace, name)?;
        let status = pick_container(&pod, container)?;
        let running = status.state.as_ref().is_some_and(|s| s.running.is_some());
        let id = status
            .container_id
            .as_deref()
            .and_then(|id| id.strip_prefix("containerd://"))
            .filter(|_| running)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "container {} is not running in pod {name}",
                    status.name
                ))
            })?;
        if command.is_empty() {
            return Err(ApiError::BadRequest(
                "you must specify at least one command for the container".into(),
            ));
        }
        self.runtime
            .exec(&ContainerId(id.to_string()), &command, None)
            .await
            .map_err(|e| ApiError::Internal(e.message))
    }

    async fn exec_stream(
        &self,
        namespace: &str,
        name: &str,
        container: Option<&str>,
        request: ExecStreamRequest,
    ) -> Result<ExecSession, ApiError> {
        let pod = self.pod(namespace, name)?;
        if let Some(wanted) = container {
            // The kubelet's `GetExec`: a container the pod lacks is not found.
            if !statuses(pod.status.as_ref()).any(|s| s.name == wanted) {
                return Err(ApiError::NotFound(format!(
                    "container not found ({wanted:?})"
                )));
            }
        }
        let id = running_container(&pod, container)?;
        if request.command.is_empty() {
            return Err(ApiError::BadRequest(
                "you must specify at least one command for the container".into(),
            ));
        }
        self.runtime
            .exec_stream(&id, &request)
            .await
            .map_err(|e| ApiError::Internal(e.message))
    }

    async fn attach_io(
        &self,
        namespace: &str,
        name: &str,
        container: Option<&str>,
        stdin: bool,
    ) -> Result<crate::service::AttachIo, ApiError> {
        let pod = self.pod(namespace, name)?;
        let id = running_container(&pod, container)?;
        let wanted = pick_container(&pod, container)?.name.clone();
        let ephemeral = pod
            .spec
            .iter()
            .flat_map(berth_api::pod::ephemeral_containers)
            .map(berth_api::pod::ephemeral_as_container);
        let spec = pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
            .cloned()
            .chain(ephemeral)
            .find(|c| c.name == wanted)
            .ok_or_else(|| ApiError::NotFound(format!("container not found ({wanted:?})")))?;
        let (tty, has_stdin) = (spec.tty == Some(true), spec.stdin == Some(true));
        let stdin_once = has_stdin && spec.stdin_once == Some(true);
        let stdin = if stdin && has_stdin {
            let writer = self
                .runtime
                .attach_stdin(&id)
                .await
                .map_err(|e| ApiError::Internal(e.message))?;
            Some(writer)
        } else {
            None
        };
        let (control, mut signals) = tokio::sync::mpsc::unbounded_channel();
        let runtime = self.runtime.clone();
        tokio::spawn(async move {
            while let Some(signal) = signals.recv().await {
                let done = match signal {
                    ExecSignal::Resize { width, height } if tty => {
                        runtime.resize_terminal(&id, width, height).await
                    }
                    ExecSignal::CloseStdin if stdin_once => runtime.close_stdin(&id).await,
                    _ => Ok(()),
                };
                match done {
                    Ok(()) => tracing::debug!(container = %id, "attach: {signal:?}"),
                    Err(e) => tracing::debug!(container = %id, error = %e, "attach: {signal:?}"),
                }
            }
        });
        Ok(crate::service::AttachIo {
            tty,
            stdin_once,
            stdin,
            control,
        })
    }

    async fn pod_network(&self, namespace: &str, name: &str) -> Result<PathBuf, ApiError> {
        let pod = self.pod(namespace, name)?;
        // Every container of the pod is in the sandbox's network namespace.
        let id = statuses(pod.status.as_ref())
            .filter(|s| s.state.as_ref().is_some_and(|s| s.running.is_some()))
            .find_map(|s| s.container_id.as_deref()?.strip_prefix("containerd://"))
            .ok_or_else(|| ApiError::BadRequest(format!("pod {name} has no running container")))?;
        self.runtime
            .network_namespace(&ContainerId(id.to_string()))
            .await
            .map_err(|e| ApiError::Internal(e.message))
    }

    async fn import_image(&self, path: PathBuf) -> Result<Vec<ImageInfo>, ApiError> {
        self.runtime
            .import_image(&path)
            .await
            .map_err(|e| match e.kind {
                berth_runtime::RuntimeErrorKind::InvalidSpec
                | berth_runtime::RuntimeErrorKind::NotFound => ApiError::BadRequest(e.message),
                _ => ApiError::Internal(e.message),
            })
    }

    fn events(&self, namespace: Option<&str>) -> Vec<k8s_openapi::api::core::v1::Event> {
        self.store.events(namespace)
    }

    fn metrics(&self) -> Option<&crate::metrics::NodeMetrics> {
        Some(self.store.metrics())
    }

    fn timeline(&self, namespace: &str, name: &str) -> Result<Vec<TimelineEntry>, ApiError> {
        let pod = self.pod(namespace, name)?;
        Ok(self
            .store
            .timeline(pod.metadata.uid.as_deref().unwrap_or_default()))
    }

    async fn pull_image(
        &self,
        reference: &str,
        progress: tokio::sync::mpsc::UnboundedSender<PullProgress>,
    ) -> Result<PulledImage, ApiError> {
        // What was there before tells "up to date" from a new image.
        let before = self.runtime.image_status(reference).await.ok().flatten();
        let image = self
            .runtime
            .pull_image(reference, Some(progress))
            .await
            .map_err(|e| match e.kind {
                RuntimeErrorKind::InvalidSpec => ApiError::BadRequest(e.message),
                _ => ApiError::Internal(e.message),
            })?;
        let up_to_date = before.is_some_and(|b| b.digest == image.digest);
        info!(image = %image.reference, digest = %image.digest, up_to_date, "image pulled");
        Ok(PulledImage { image, up_to_date })
    }

    async fn remove_image(&self, reference: &str) -> Result<String, ApiError> {
        let not_found = || ApiError::NotFound(format!("image \"{reference}\" not found"));
        let internal = |e: berth_runtime::RuntimeError| ApiError::Internal(e.message);
        // The runtime's name for it (normalized); an image it cannot show
        // (not unpacked, say) may still have a record to remove.
        let present = self
            .runtime
            .image_status(reference)
            .await
            .map_err(internal)?;
        let name = present.map_or_else(|| reference.to_string(), |image| image.reference);
        let users = self.image_users(&name).await?;
        if let Some((pod, container)) = users.first() {
            return Err(ApiError::Conflict(format!(
                "unable to remove image \"{reference}\": container \"{container}\" of pod \"{pod}\" is using it"
            )));
        }
        match self.runtime.remove_image(reference).await {
            Ok(()) => {
                info!(image = %name, "image removed");
                Ok(name)
            }
            Err(e) if e.is_not_found() => Err(not_found()),
            Err(e) => Err(internal(e)),
        }
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>, ApiError> {
        self.runtime
            .list_images()
            .await
            .map_err(|e| ApiError::Internal(e.message))
    }
}
