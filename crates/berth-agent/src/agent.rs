//! Boots the agent: adopt what the runtime runs, load the sources, serve the
//! local API; on shutdown leave the pods running (or drain them when a node
//! shutdown grace period is configured).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_pod::{Adopted, BackoffPolicy, EventType, WorkerConfig};
use berth_runtime::{ContainerRuntime, ImageService, Observed};
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::AgentConfig;
use crate::manifests::{self, ManifestEvent};
use crate::store::PodStore;
use crate::supervisor::Supervisor;
use crate::AgentError;

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> AgentError {
    move |source| AgentError::Io { context, source }
}

/// Groups what the runtime holds by pod UID.
fn group_by_pod(observed: Observed) -> HashMap<String, Adopted> {
    let mut pods: HashMap<String, Adopted> = HashMap::new();
    for sandbox in observed.sandboxes {
        let uid = sandbox.pod.uid.clone();
        pods.entry(uid).or_default().sandbox = Some(sandbox);
    }
    for container in observed.containers {
        pods.entry(container.pod.uid.clone())
            .or_default()
            .containers
            .push(container);
    }
    pods
}

/// The manifest directory's pods right now, so that static pods are known
/// (and adopted) before the agent reports ready; the watcher's first events
/// repeat them harmlessly.
async fn initial_manifests(config: &AgentConfig) -> Vec<(std::path::PathBuf, Vec<Pod>)> {
    let Ok(entries) = std::fs::read_dir(&config.manifest_dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for path in entries.flatten().map(|e| e.path()) {
        if !manifests::is_manifest_file(&path) {
            continue;
        }
        if let Some(ManifestEvent::Pods { path, pods }) =
            manifests::read_manifest(&path, &config.node_name).await
        {
            files.push((path, pods));
        }
    }
    files
}

/// Runs the agent until `shutdown` is cancelled. `ready` is called once the
/// local API answers. The boot phases, in order: state directories, leftovers
/// of interrupted starts, adoption (orphans stopped in the background), the
/// supervisor with its pods, the sources and background passes; then serving
/// until shutdown, and the shutdown itself.
pub async fn run<R: ContainerRuntime + ImageService>(
    config: AgentConfig,
    runtime: R,
    shutdown: CancellationToken,
    ready: impl FnOnce(),
) -> Result<(), AgentError> {
    let cluster_client = match &config.kubeconfig {
        Some(kubeconfig) => Some(crate::cluster::Cluster::connect(kubeconfig).await?),
        None => None,
    };
    crate::state_dir::prepare(&config).map_err(io_error("prepare the state directories".into()))?;
    let runtime = Arc::new(runtime);
    reclaim_leftovers(runtime.as_ref()).await;
    let static_pods = initial_manifests(&config).await;
    let (adoptable, orphans_removed) = adopt(&config, &runtime, &static_pods).await?;

    let (finished_tx, mut finished_rx) = mpsc::unbounded_channel();
    let store = Arc::new(PodStore::new(finished_tx));
    let events_file = crate::saved_events::path(&config.root_dir);
    crate::saved_events::load(&store, &events_file);
    let events_saver = tokio::spawn(crate::saved_events::run(
        store.clone(),
        events_file.clone(),
        shutdown.clone(),
    ));
    let known_files: Vec<PathBuf> = static_pods.iter().map(|(p, _)| p.clone()).collect();
    // Cluster mode's Services, which the workers' containers get variables
    // from; watched once the cluster tasks start.
    let cluster_services = config.kubeconfig.as_ref().map(|_| {
        Arc::new(crate::cluster::NodeData {
            allocatable: node_allocatable(&config),
            client: cluster_client.clone(),
            ..Default::default()
        })
    });
    let supervisor = start_supervisor(
        &config,
        &runtime,
        store,
        adoptable,
        static_pods,
        &cluster_services,
    )?;
    let sources = CancellationToken::new();
    let (mut services, mut manifests) =
        Services::start(&config, &runtime, &supervisor, known_files, &sources)?;
    let (cluster, mut cluster_pods) = match cluster_client {
        Some(client) => {
            let (cluster, pods) = crate::cluster::Cluster::start(
                &config,
                client,
                runtime.clone(),
                supervisor.clone(),
                supervisor.store().clone(),
                cluster_services.clone().expect("made in cluster mode"),
                sources.clone(),
            )
            .await?;
            (Some(cluster), pods)
        }
        None => (None, mpsc::channel(1).1),
    };
    info!(socket = %config.socket.display(), "berth agent ready");
    ready();

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(uid) = finished_rx.recv() => supervisor.on_finished(&uid),
            Some(event) = cluster_pods.recv() => supervisor.on_cluster_event(event),
            Some(event) = manifests.recv() => match event {
                ManifestEvent::Pods { path, pods } => supervisor.apply_file(&path, pods),
                ManifestEvent::Removed { path } => supervisor.remove_file(&path),
                ManifestEvent::Invalid { path, error } => {
                    warn!(file = %path.display(), "invalid manifest, its pods are left as they were: {error}");
                }
            },
        }
    }

    sources.cancel();
    services.stop().await;
    if let Some(cluster) = cluster {
        cluster.stop().await;
    }
    drain(&config, &supervisor, &mut finished_rx).await;
    supervisor.detach_all().await;
    let _ = orphans_removed.await;
    // The drain's events too.
    let saved = events_saver.await.unwrap_or_default();
    crate::saved_events::save(supervisor.store(), &events_file, saved).await;
    info!("berth agent stopped; pods keep running");
    Ok(())
}

/// Releases what starts interrupted by an agent crash left behind.
async fn reclaim_leftovers<R: ContainerRuntime>(runtime: &R) {
    match runtime.reclaim().await {
        Ok(r) if r != Default::default() => info!(
            sandboxes = r.sandboxes,
            leases = r.leases,
            processes = r.processes,
            "released what an interrupted start left"
        ),
        Ok(_) => {}
        Err(e) => warn!("reclaim leftovers of interrupted starts: {e}"),
    }
}

/// What the runtime runs, by pod UID, for the pods a source still claims
/// (stored API pods, manifest files). The rest are orphans, deleted while
/// the agent was down: they are stopped, and their directories removed, in
/// the background, since that takes their grace period.
async fn adopt<R: ContainerRuntime>(
    config: &AgentConfig,
    runtime: &Arc<R>,
    static_pods: &[(PathBuf, Vec<Pod>)],
) -> Result<(HashMap<String, Adopted>, tokio::task::JoinHandle<()>), AgentError> {
    let mut adoptable = group_by_pod(runtime.list().await?);
    info!(pods = adoptable.len(), "found pods in the runtime");
    let mut claimed: Vec<String> = static_pods
        .iter()
        .flat_map(|(_, pods)| pods.iter().filter_map(|p| p.metadata.uid.clone()))
        .collect();
    claimed.extend(
        std::fs::read_dir(config.root_dir.join("api-pods"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.path().file_stem()?.to_str().map(str::to_string)),
    );
    let orphans: Vec<Adopted> = adoptable
        .extract_if(|uid, _| !claimed.contains(uid))
        .map(|(_, a)| a)
        .collect();
    // Only pods on disk now: one made after the API opens is not an orphan.
    let on_disk: Vec<String> = std::fs::read_dir(config.root_dir.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|uid| !claimed.contains(uid))
        .collect();
    let runtime = runtime.clone();
    let (root_dir, log_dir) = (config.root_dir.clone(), config.log_dir.clone());
    let removed = tokio::spawn(async move {
        for orphan in orphans {
            crate::orphans::remove_orphan(runtime.as_ref(), orphan).await;
        }
        for uid in &on_disk {
            berth_pod::remove_orphaned_image_volumes(runtime.as_ref(), &root_dir, uid).await;
        }
        berth_pod::remove_orphaned_pod_dirs(&root_dir, &log_dir, |uid| {
            !on_disk.iter().any(|o| o == uid)
        });
    });
    Ok((adoptable, removed))
}

/// The allocatable the Node reports (standalone: would report), which the
/// downward API reads for limits nothing sets.
fn node_allocatable(config: &AgentConfig) -> berth_api::resource_field::NodeAllocatable {
    use crate::cluster::node_object::{downward_allocatable, NodeFacts};
    downward_allocatable(&NodeFacts::read(config))
}

/// The supervisor, with the stored API pods and the static pods loaded.
fn start_supervisor<R: ContainerRuntime + ImageService>(
    config: &AgentConfig,
    runtime: &Arc<R>,
    store: Arc<PodStore>,
    adoptable: HashMap<String, Adopted>,
    static_pods: Vec<(PathBuf, Vec<Pod>)>,
    cluster_data: &Option<Arc<crate::cluster::NodeData>>,
) -> Result<Arc<Supervisor<R>>, AgentError> {
    let worker_config = Arc::new(WorkerConfig {
        root_dir: config.root_dir.clone(),
        log_dir: config.log_dir.clone(),
        node_name: config.node_name.clone(),
        // The node's InternalIP, as the kubelet reports `hostIP`.
        host_ip: config
            .node_ip
            .map_or_else(crate::node::host_ip, |ip| ip.to_string()),
        backoff: BackoffPolicy {
            initial: Duration::from_secs(config.crash_loop_back_off.initial_seconds),
            max: Duration::from_secs(config.crash_loop_back_off.max_seconds),
        },
        image_pull_backoff: BackoffPolicy {
            initial: Duration::from_secs(config.image_pull_back_off.initial_seconds),
            max: Duration::from_secs(config.image_pull_back_off.max_seconds),
        },
        image_pulls: config
            .image_pull_slots()
            .map(|slots| Arc::new(tokio::sync::Semaphore::new(slots))),
        seccomp_default: config.seccomp_default,
        cluster_data: cluster_data
            .clone()
            .map(|d| berth_pod::ClusterDataSource(d as Arc<dyn berth_pod::ClusterData>)),
        cluster_dns: berth_pod::ClusterDns {
            servers: config.cluster_dns.iter().map(ToString::to_string).collect(),
            domain: config.cluster_domain.clone(),
        },
        node_allocatable: node_allocatable(config),
        allocations: Default::default(),
    });
    let admission = crate::admission::Admission::new(&config.allowed_unsafe_sysctls)
        .map_err(AgentError::Config)?
        .with_resources(crate::admission::NodeResources {
            allocatable: node_allocatable(config),
            max_pods: crate::cluster::node_object::MAX_PODS.into(),
        });
    let supervisor = Arc::new(
        Supervisor::new(
            runtime.clone(),
            store,
            worker_config,
            config.root_dir.join("api-pods"),
            adoptable,
        )
        .with_admission(admission),
    );
    supervisor
        .load_api_pods()
        .map_err(io_error("load stored pods".into()))?;
    for (path, pods) in static_pods {
        supervisor.apply_file(&path, pods);
    }
    Ok(supervisor)
}

/// The manifest watcher, the local API and the periodic passes (image GC,
/// log rotation, local storage eviction), all ended by one token.
struct Services {
    watcher: tokio::task::JoinHandle<()>,
    api: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The local API on TCP, for kubectl (`apiListen`).
    https: Option<tokio::task::JoinHandle<()>>,
    image_gc: tokio::task::JoinHandle<()>,
    log_rotation: Option<tokio::task::JoinHandle<()>>,
    eviction: tokio::task::JoinHandle<()>,
}

impl Services {
    fn start<R: ContainerRuntime + ImageService>(
        config: &AgentConfig,
        runtime: &Arc<R>,
        supervisor: &Arc<Supervisor<R>>,
        known_files: Vec<PathBuf>,
        sources: &CancellationToken,
    ) -> Result<(Self, mpsc::Receiver<ManifestEvent>), AgentError> {
        let (manifest_tx, manifest_rx) = mpsc::channel(64);
        let watcher = manifests::watch_manifests(
            config.manifest_dir.clone(),
            config.node_name.clone(),
            known_files,
            manifest_tx,
            sources.clone(),
        );
        // HTTPS first: clients take the socket as the sign that the agent
        // serves, and the admin kubeconfig must exist by then.
        let https = match config.api_listen {
            Some(addr) => Some(start_https(config, addr, supervisor, sources)?),
            None => None,
        };
        let listener = crate::api::bind(&config.socket)
            .map_err(io_error(format!("bind {}", config.socket.display())))?;
        let api = tokio::spawn(crate::api::serve_listener(
            listener,
            supervisor.clone(),
            sources.clone(),
        ));
        let store = supervisor.store().clone();
        let node = config.node_name.clone();
        let node_events = {
            let store = store.clone();
            move |reason, message| store.node_event(&node, EventType::Warning, reason, message)
        };
        let image_gc = tokio::spawn(crate::image_gc::run(
            runtime.clone(),
            crate::image_gc::ImageGcPolicy {
                image_fs_dir: config.image_fs_dir.clone(),
                high_percent: config.image_gc_high_threshold_percent,
                low_percent: config.image_gc_low_threshold_percent,
                minimum_age: Duration::from_secs(config.image_minimum_gc_age_seconds),
                period: Duration::from_secs(config.image_gc_period_seconds),
                pinned: config.pod_infra_image.clone(),
            },
            node_events,
            move || store.images(),
            sources.clone(),
        ));
        let log_rotation = config.log_rotation().map(|policy| {
            tokio::spawn(crate::log_rotation::run(
                supervisor.store().clone(),
                policy,
                config.root_dir.clone(),
                config.log_dir.clone(),
                sources.clone(),
            ))
        });
        let eviction = tokio::spawn(crate::eviction::run(
            supervisor.clone(),
            crate::eviction::EvictionPolicy {
                root_dir: config.root_dir.clone(),
                log_dir: config.log_dir.clone(),
                period: crate::eviction::MONITORING_PERIOD,
            },
            sources.clone(),
        ));
        let services = Self {
            watcher,
            api,
            https,
            image_gc,
            log_rotation,
            eviction,
        };
        Ok((services, manifest_rx))
    }

    /// Waits for each to end (their token is cancelled first).
    async fn stop(&mut self) {
        let _ = (&mut self.watcher).await;
        let _ = (&mut self.image_gc).await;
        let _ = (&mut self.eviction).await;
        if let Some(log_rotation) = &mut self.log_rotation {
            let _ = log_rotation.await;
        }
        if let Ok(Err(e)) = (&mut self.api).await {
            warn!("local API: {e}");
        }
        if let Some(https) = &mut self.https {
            let _ = https.await;
        }
    }
}

/// The local API on `addr` over HTTPS: its certificates (made at first
/// start) and the admin kubeconfig kubectl uses.
fn start_https<R: ContainerRuntime + ImageService>(
    config: &AgentConfig,
    addr: std::net::SocketAddr,
    supervisor: &Arc<Supervisor<R>>,
    sources: &CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, AgentError> {
    let node_ip = config
        .node_ip
        .map_or_else(crate::node::host_ip, |ip| ip.to_string());
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        config.node_name.clone(),
    ];
    names.extend([node_ip, addr.ip().to_string()]);
    if addr.is_ipv6() {
        // The kubeconfig names ::1 for an unspecified IPv6 address.
        names.push("::1".to_string());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.is_empty() && n != "0.0.0.0" && n != "::" && seen.insert(n.clone()));
    let pki = crate::api::ApiPki::new(&config.root_dir);
    pki.ensure(&names).map_err(AgentError::Config)?;
    let server = crate::api::HttpsServer::bind(addr, &pki).map_err(AgentError::Config)?;
    let bound = server
        .local_addr()
        .map_err(io_error(format!("bind {addr}")))?;
    let kubeconfig = pki
        .kubeconfig(bound, &config.node_name)
        .map_err(AgentError::Config)?;
    let path = &config.admin_kubeconfig;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(format!("create {}", dir.display())))?;
    }
    berth_runtime::files::write_private(path, kubeconfig.as_bytes())
        .map_err(io_error(format!("write {}", path.display())))?;
    info!(%bound, kubeconfig = %path.display(), "local API listening over HTTPS");
    Ok(tokio::spawn(
        server.serve(supervisor.clone(), sources.clone()),
    ))
}

/// Node shutdown with a grace period: every pod is terminated and the
/// agent waits for them, a little past the grace period. Without one the
/// pods keep running.
async fn drain<R: ContainerRuntime + ImageService>(
    config: &AgentConfig,
    supervisor: &Supervisor<R>,
    finished_rx: &mut mpsc::UnboundedReceiver<String>,
) {
    if config.shutdown_grace_period_seconds == 0 {
        return;
    }
    let grace = Duration::from_secs(config.shutdown_grace_period_seconds);
    info!(?grace, "node shutdown: terminating pods");
    supervisor.terminate_all(grace);
    let drained = tokio::time::timeout(grace + Duration::from_secs(5), async {
        while !supervisor.store().list(None).is_empty() {
            match finished_rx.recv().await {
                Some(uid) => supervisor.on_finished(&uid),
                None => break,
            }
        }
    })
    .await;
    if drained.is_err() {
        warn!("pods still terminating when the shutdown grace period ended");
    }
}
