//! Cluster mode: the node's side of the contract with a kube-apiserver.
//! Started when the agent has a kubeconfig; standalone mode never touches
//! it.
//!
//! - `connect`: the client from the node's kubeconfig.
//! - `node_object`: the Node object and its status, from the host's facts
//!   (pure); `node_status`: registration and the status every 10 s.
//! - `lease`: the heartbeat Lease in `kube-node-lease`.
//! - `mirror_pods`: static pods shown in the API server, with their status.
//! - `events`: the node's and its API pods' events, sent to the API server.
//! - `pod_source`: the pods bound to this node, watched, fed to the
//!   supervisor as the manifest directory's are.
//! - `services`: the Services, watched, for the containers' service
//!   variables (`KUBERNETES_SERVICE_HOST`…); `env_objects`: the configMaps
//!   and secrets their env names. `NodeData` hands both to the workers.
//! - `status_sync`: pod statuses patched to the API server, and the final
//!   delete once a pod is torn down.
//! - `volumes/`: configMap, secret, downwardAPI and projected volumes
//!   (the service account token among them), written and kept current.

mod connect;
mod env_objects;
mod events;
mod lease;
mod mirror_pods;
pub(crate) mod node_object;
mod node_status;
mod pod_source;
mod pull_secrets;
pub mod services;
mod status_sync;
mod volumes;

use std::sync::Arc;

use berth_runtime::ContainerRuntime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::kubelet::{KubeletServer, Serving};
use crate::config::AgentConfig;
use crate::service::PodService;
use crate::store::PodStore;
use crate::AgentError;

pub use pod_source::ClusterPodEvent;

/// The value of `kubernetes.io/config.source` on pods from the API server,
/// as the kubelet marks them.
pub const API_SOURCE: &str = "api";

/// The background tasks of cluster mode, ended by the token they were
/// started with.
pub struct Cluster {
    tasks: Vec<JoinHandle<()>>,
}

impl Cluster {
    /// The client from the node's kubeconfig, made before the agent
    /// touches anything: a kubeconfig that cannot be read, parsed or used
    /// ends the agent at start, as it ends the kubelet.
    pub async fn connect(kubeconfig: &std::path::Path) -> Result<kube::Client, AgentError> {
        connect::client(kubeconfig)
            .await
            .map_err(AgentError::Config)
    }

    /// Starts registration, status, Lease, the pod watch and the status
    /// sync with `client` (from [`Cluster::connect`]). An API server that
    /// does not answer is no error: every task retries until it does.
    pub async fn start<R: ContainerRuntime, S: PodService>(
        config: &AgentConfig,
        client: kube::Client,
        runtime: Arc<R>,
        service: Arc<S>,
        store: Arc<PodStore>,
        data: Arc<NodeData>,
        stop: CancellationToken,
    ) -> Result<(Self, mpsc::Receiver<ClusterPodEvent>), AgentError> {
        let facts = node_object::NodeFacts::read(config);
        let kubelet_api = kubelet_server(config, &facts, client.clone())
            .await
            .map_err(AgentError::Config)?;
        // The Node's UID once registered: the Lease's owner, and the sign
        // that pods may be watched.
        let (registered_tx, registered_rx) = watch::channel(None::<String>);
        let (pods_tx, pods_rx) = mpsc::channel(256);
        // Statuses the API server's copy drifted from, to be sent again.
        let (resend_tx, resend_rx) = mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(node_status::run(
                client.clone(),
                facts,
                runtime,
                registered_tx,
                stop.clone(),
            )),
            tokio::spawn(lease::run(
                client.clone(),
                config.node_name.clone(),
                registered_rx.clone(),
                stop.clone(),
            )),
            tokio::spawn(pod_source::run(
                client.clone(),
                config.node_name.clone(),
                store.clone(),
                pod_source::Outputs {
                    events: pods_tx,
                    resend: resend_tx,
                    volumes: volumes::PodVolumes::new(
                        client.clone(),
                        config.root_dir.clone(),
                        config.log_dir.clone(),
                        store.clone(),
                        data.clone(),
                        stop.clone(),
                    ),
                },
                registered_rx.clone(),
                stop.clone(),
            )),
            tokio::spawn(mirror_pods::run(
                client.clone(),
                config.node_name.clone(),
                store.clone(),
                registered_rx.clone(),
                stop.clone(),
            )),
            tokio::spawn(events::run(
                client.clone(),
                config.node_name.clone(),
                store.clone(),
                stop.clone(),
            )),
            tokio::spawn(services::run(client.clone(), data.clone(), stop.clone())),
            tokio::spawn(status_sync::run(client, store, resend_rx, stop.clone())),
            tokio::spawn(kubelet_api.serve(service, stop)),
        ];
        Ok((Self { tasks }, pods_rx))
    }

    /// Waits for the tasks to end (their token is cancelled first).
    pub async fn stop(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The kubelet API, with the configured serving certificate or one made
/// for the node's names and address.
async fn kubelet_server(
    config: &AgentConfig,
    facts: &node_object::NodeFacts,
    client: kube::Client,
) -> Result<KubeletServer, String> {
    let pki = config.root_dir.join("pki");
    let serving = Serving {
        cert: config
            .tls_cert_file
            .clone()
            .unwrap_or_else(|| pki.join("kubelet.crt")),
        key: config
            .tls_private_key_file
            .clone()
            .unwrap_or_else(|| pki.join("kubelet.key")),
        names: vec![
            facts.name.clone(),
            facts.hostname.clone(),
            facts.internal_ip.clone(),
            "localhost".into(),
            "127.0.0.1".into(),
        ],
    };
    KubeletServer::bind(
        config.port,
        &serving,
        config.client_ca_file.as_deref(),
        client,
        config.node_name.clone(),
        config.root_dir.clone(),
    )
    .await
}

/// What the workers' containers get from the cluster: service variables
/// and the objects their env names.
#[derive(Default)]
pub struct NodeData {
    pub services: services::Services,
    pub objects: env_objects::EnvObjectCache,
    /// What downwardAPI volumes' `resourceFieldRef` reads for limits
    /// nothing sets.
    pub allocatable: berth_api::resource_field::NodeAllocatable,
    /// Where image pull secrets are read, at each pull.
    pub client: Option<kube::Client>,
}

impl berth_api::env::EnvObjects for NodeData {
    fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        self.objects.config_map(namespace, name)
    }

    fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        self.objects.secret(namespace, name)
    }
}

impl berth_pod::ClusterData for NodeData {
    fn service_env(
        &self,
        pod: &k8s_openapi::api::core::v1::Pod,
        namespace: &str,
        service_links: bool,
    ) -> Result<Vec<(String, String)>, String> {
        self.services
            .env(namespace, service_links, !is_cluster_pod(pod))
    }

    fn pull_secrets<'a>(
        &'a self,
        namespace: &'a str,
        names: &'a [String],
    ) -> berth_pod::PullSecretsRead<'a> {
        Box::pin(pull_secrets::read(self.client.as_ref(), namespace, names))
    }
}

/// Whether berth may write files for a pod from the API server: its UID
/// and volume names name directories, so they must be plain names before
/// anything is written (the supervisor rejects such a pod).
pub(crate) fn may_write_for(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    berth_api::validation::validate_uid(pod).is_ok()
        && berth_api::validation::validate_cluster_pod(pod).is_ok()
}

/// Whether a pod came from the API server.
pub fn is_cluster_pod(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    crate::manifests::config_source(pod) == Some(API_SOURCE)
}

/// The Node's UID once it is registered, or `None` when stopped first.
pub(crate) async fn registered_node(
    registered: &mut watch::Receiver<Option<String>>,
    stop: &CancellationToken,
) -> Option<String> {
    tokio::select! {
        _ = stop.cancelled() => None,
        uid = registered.wait_for(Option::is_some) => uid.ok().and_then(|uid| uid.clone()),
    }
}

/// The next event of a watch, or `None` once stopped or ended. Errors are
/// logged: the watcher backs off and relists on its own.
pub(crate) async fn next_event<T>(
    stream: &mut futures::stream::BoxStream<
        '_,
        Result<kube::runtime::watcher::Event<T>, kube::runtime::watcher::Error>,
    >,
    what: &str,
    stop: &CancellationToken,
) -> Option<kube::runtime::watcher::Event<T>> {
    use futures::StreamExt;
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return None,
            next = stream.next() => next,
        };
        match next? {
            Ok(event) => return Some(event),
            Err(e) => tracing::warn!("watch {what}: {e}"),
        }
    }
}

/// Retries after failures: 100 ms doubling to 7 s, as the kubelet's node
/// registration.
#[derive(Debug)]
pub(crate) struct Retry {
    next: std::time::Duration,
}

impl Retry {
    pub(crate) fn new() -> Self {
        Self {
            next: std::time::Duration::from_millis(100),
        }
    }

    /// Waits the current delay (or until `stop`); false once stopped.
    pub(crate) async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.next;
        self.next = (self.next * 2).min(std::time::Duration::from_secs(7));
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, volume: &str) -> k8s_openapi::api::core::v1::Pod {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: default, uid: {uid:?}}}\n\
             spec:\n  containers:\n  - {{name: app, image: busybox}}\n  volumes:\n  \
             - {{name: {volume:?}, configMap: {{name: settings}}}}\n"
        );
        let mut pod = berth_api::manifest::parse_pods(&yaml).unwrap().remove(0);
        berth_api::defaults::apply_defaults(&mut pod);
        pod
    }

    #[test]
    fn nothing_is_written_for_a_pod_whose_names_would_leave_its_directory() {
        assert!(may_write_for(&pod(
            "0b7c8d3e-1111-2222-3333-444455556666",
            "cfg"
        )));
        assert!(!may_write_for(&pod("../../etc", "cfg")));
        assert!(!may_write_for(&pod(
            "0b7c8d3e-1111-2222-3333-444455556666",
            "../../etc"
        )));
    }
}
