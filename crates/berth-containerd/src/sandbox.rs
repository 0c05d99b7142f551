//! Pod sandboxes: agent-owned network, IPC and UTS namespaces (pinned), CNI, a
//! shared `/dev/shm`, and the sandbox record (the kubelet's "POD" container),
//! all under the pod cgroup.
//!
//! The pod's containers join the pinned namespaces by path, so the pins, not
//! a process, keep the namespaces alive. A pause process runs only where one
//! is needed: as PID 1 of a process namespace the pod's containers share.
//! Other sandboxes have a record and no task, which saves each pod a runc
//! create and start, and lets its shim go with its last container. Such a
//! sandbox is alive while its pins are in place on the boot that made them
//! (see [`crate::netns::pins_alive`]). Create writes the record concurrently
//! with CNI ADD, or leaves CNI ADD to `attach_network` when asked to (the
//! worker then makes the pod's first container meanwhile). Teardown is
//! idempotent and also cleans up after a create that failed halfway.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_runtime::{
    ExitInfo, PauseProcess, PidNamespace, PodNetwork, PodRef, RuntimeError, RuntimeErrorKind,
    SandboxConfig, SandboxId, SandboxInfo,
};
use containerd_client::services::v1::Container;
use containerd_client::types::Mount as RootfsMount;
use jiff::Timestamp;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::cni::{self, CniPaths};
use crate::container::{self, pod_labels, random_hex, sanitize};
use crate::netns::PodNamespaces;
use crate::spec::{self, SandboxSpec};
use crate::{labels, netns, task, Containerd};

/// The pod's hostname, for the containers' `HOSTNAME`.
pub(crate) const HOSTNAME_LABEL: &str = "io.berth.sandbox.hostname";
/// `true` when the pod uses the node's network.
pub(crate) const HOST_NETWORK_LABEL: &str = "io.berth.sandbox.host-network";
/// `true` when the pod uses the node's IPC namespace (it has no IPC pin).
pub(crate) const HOST_IPC_LABEL: &str = "io.berth.sandbox.host-ipc";
/// On a sandbox with no pause process: the boot id of the node when its
/// namespaces were pinned (pins do not survive a reboot; a stale file at the
/// pin's path might look like one).
pub(crate) const PINNED_ON_BOOT_LABEL: &str = "io.berth.sandbox.pinned-on-boot";
/// The kubelet's container name for the pause container.
const PAUSE_NAME: &str = "POD";

/// `<first 8 of the uid>-<random>`: short, unique, a valid containerd id and
/// a valid CNI container id.
pub(crate) fn new_sandbox_id(pod_uid: &str) -> String {
    let prefix = sanitize(pod_uid, 8);
    let prefix = if prefix.is_empty() {
        "pod".to_string()
    } else {
        prefix
    };
    format!("{prefix}-{}", random_hex())
}

pub(crate) fn sandbox_dir(root_dir: &Path, sandbox_id: &str) -> PathBuf {
    root_dir.join("sandboxes").join(sandbox_id)
}

/// The pod's `/dev/shm`, a tmpfs shared by its containers (as in CRI).
pub(crate) fn shm_dir(root_dir: &Path, sandbox_id: &str) -> PathBuf {
    sandbox_dir(root_dir, sandbox_id).join("shm")
}

pub(crate) fn cni_paths(c: &Containerd) -> CniPaths {
    CniPaths {
        bin_dirs: c.config.cni_bin_dirs.clone(),
        conf_dir: c.config.cni_conf_dir.clone(),
        root_dir: c.config.root_dir.clone(),
    }
}

/// The hostname of a sandbox, from its pause container's labels.
pub(crate) fn hostname_of(pause: &Container) -> Result<String, RuntimeError> {
    if pause.labels.get(HOST_NETWORK_LABEL).map(String::as_str) == Some("true") {
        return Ok(berth_runtime::node_hostname());
    }
    pause
        .labels
        .get(HOSTNAME_LABEL)
        .cloned()
        .ok_or_else(|| RuntimeError::other(format!("sandbox {} has no hostname label", pause.id)))
}

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> RuntimeError {
    move |e| RuntimeError::other(format!("{what}: {e}"))
}

pub(crate) async fn create(
    c: &Containerd,
    config: &SandboxConfig,
) -> Result<SandboxInfo, RuntimeError> {
    let id = new_sandbox_id(&config.pod.uid);
    let root = &c.config.root_dir;
    let security = &config.security;
    let host_ipc = security.namespaces.host_ipc;
    let namespaces = PodNamespaces::of(root, &id, config.host_network, host_ipc);
    let hostname = if config.host_network {
        berth_runtime::node_hostname()
    } else {
        config.hostname.clone()
    };
    let created_at = Timestamp::now();
    let result = async {
        // With hostIPC the containers bind the node's /dev/shm instead.
        let shm = (!host_ipc).then(|| shm_dir(root, &id));
        kernel_setup(&namespaces, &hostname, &security.sysctls, shm).await?;
        let network = async {
            match &namespaces.net {
                Some(_) if config.defer_network => Ok((Vec::new(), None)),
                Some(path) => {
                    let ips = cni::setup_pod_network(
                        &cni_paths(c),
                        &id,
                        path,
                        &config.pod,
                        &config.port_mappings,
                    )
                    .await?;
                    Ok((ips, Some(Timestamp::now())))
                }
                None => Ok((Vec::new(), None)),
            }
        };
        let pause = async {
            let mounts = create_record(c, &id, config, &namespaces, &hostname).await?;
            if !has_pause(config) {
                return Ok(PauseProcess::Pinned);
            }
            // The containers join the pause's PID namespace: it must run
            // (as PID 1) before any of them.
            let pid = run_pause(c, &id, mounts).await?;
            Ok::<_, RuntimeError>(PauseProcess::Running { pid })
        };
        let (ips, pause) = tokio::join!(network, pause);
        let pid = pause?;
        Ok::<_, RuntimeError>((ips?, pid))
    }
    .await;
    match result {
        Ok(((ips, network_ready_at), pause)) => {
            tracing::debug!(sandbox = id, pod = %config.pod, ?ips, "created sandbox");
            Ok(SandboxInfo {
                id: SandboxId(id),
                pod: config.pod.clone(),
                host_network: config.host_network,
                netns: namespaces.net,
                pause,
                ips,
                created_at,
                pod_times: Some(config.times),
                network_ready_at,
            })
        }
        Err(e) => {
            if let Err(cleanup) = teardown(c, &id, &config.pod, config.host_network, false).await {
                tracing::warn!(sandbox = id, error = %cleanup, "clean up after a failed sandbox create");
            }
            Err(create_failed(&config.pod, e))
        }
    }
}

fn create_failed(pod: &PodRef, e: RuntimeError) -> RuntimeError {
    RuntimeError::new(
        e.kind,
        format!("create sandbox for pod {pod}: {}", e.message),
    )
}

/// The network of a sandbox created with `defer_network`: CNI ADD into its
/// pinned namespace (which removes what it added when it fails).
pub(crate) async fn attach_network(
    c: &Containerd,
    sandbox: &SandboxInfo,
    config: &SandboxConfig,
) -> Result<PodNetwork, RuntimeError> {
    let Some(netns) = &sandbox.netns else {
        return Ok(PodNetwork {
            ips: Vec::new(),
            ready_at: Timestamp::now(),
        });
    };
    let id = &sandbox.id.0;
    let paths = cni_paths(c);
    let ips = cni::setup_pod_network(&paths, id, netns, &sandbox.pod, &config.port_mappings)
        .await
        // As a create with the network in it says it.
        .map_err(|e| create_failed(&sandbox.pod, e))?;
    tracing::debug!(sandbox = id, pod = %sandbox.pod, ?ips, "pod network ready");
    Ok(PodNetwork {
        ips,
        ready_at: Timestamp::now(),
    })
}

/// The sandbox's record (the kubelet's "POD" container); with a pause
/// process ([`has_pause`]), its snapshot too. Returns the rootfs mounts (none
/// without a pause).
async fn create_record(
    c: &Containerd,
    id: &str,
    config: &SandboxConfig,
    namespaces: &PodNamespaces,
    hostname: &str,
) -> Result<Vec<RootfsMount>, RuntimeError> {
    let labels = sandbox_labels(id, config, hostname);
    let spec_input = |image| SandboxSpec {
        sandbox_id: id,
        pod_uid: &config.pod.uid,
        image,
        namespaces,
        security: &config.security,
    };
    if !has_pause(config) {
        // Nothing runs from it: no snapshot, and so no lease to guard one.
        let image = c.pause_image().await?;
        let spec = spec::sandbox_spec(&spec_input(&image))?;
        container::create_bare_record(c, id, &image, labels, &spec).await?;
        return Ok(Vec::new());
    }
    let lookup = async {
        let image = c.pause_image().await?;
        let parent = c.snapshot_parent(&image).await?;
        Ok::<_, RuntimeError>((image, parent))
    };
    let (looked_up, lease) = tokio::join!(lookup, container::Lease::create(c, id));
    let lease = lease?;
    let (image, parent) = match looked_up {
        Ok(found) => found,
        Err(e) => {
            lease.release(c);
            return Err(e);
        }
    };
    container::create_record(c, lease, id, &image, &parent, labels, |_| {
        spec::sandbox_spec(&spec_input(&image))
    })
    .await
}

/// A pause process only where the pod shares its process namespace: it is
/// that namespace's PID 1.
fn has_pause(config: &SandboxConfig) -> bool {
    config.security.namespaces.pid == PidNamespace::Pod
}

fn sandbox_labels(id: &str, config: &SandboxConfig, hostname: &str) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = pod_labels(&config.pod, id);
    let namespaces = &config.security.namespaces;
    labels.insert(labels::SANDBOX.into(), "true".into());
    labels.insert(labels::CONTAINER_NAME.into(), PAUSE_NAME.into());
    labels.insert(HOSTNAME_LABEL.into(), hostname.to_string());
    labels.insert(HOST_NETWORK_LABEL.into(), config.host_network.to_string());
    labels.insert(HOST_IPC_LABEL.into(), namespaces.host_ipc.to_string());
    labels.insert(labels::POD_CREATED.into(), config.times.created.to_string());
    labels.insert(labels::POD_STARTED.into(), config.times.started.to_string());
    if !has_pause(config) {
        labels.insert(PINNED_ON_BOOT_LABEL.into(), netns::boot_id().to_string());
    }
    labels
}

/// Creates and starts the pause task. A call cut off by a containerd
/// restart is carried on from the state the new connection shows, so the
/// pause task is never left created but not started.
async fn run_pause(
    c: &Containerd,
    id: &str,
    mounts: Vec<RootfsMount>,
) -> Result<u32, RuntimeError> {
    use containerd_client::types::v1::Status;
    /// Tries that found the task in a state to undo first, before giving up.
    const MAX_REDOS: usize = 10;
    let mut pause = std::time::Duration::from_millis(50);
    let mut redos = 0;
    loop {
        // `Some(pid)`: running; `None`: look again (the task was in a state
        // that had to be undone, or appeared meanwhile).
        let attempt = async {
            match task::find(c, id).await? {
                Some(p) if p.status == Status::Running as i32 => Ok(Some(p.pid)),
                Some(p) if p.status == Status::Created as i32 => task::start(c, id).await.map(Some),
                // Stopped behind our back (a restart took its process): made again.
                Some(_) => task::destroy(c, id).await.map(|()| None),
                None => {
                    match task::create(c, id, mounts.clone(), &crate::stdio::TaskIo::null()).await {
                        Err(e) if e.kind == RuntimeErrorKind::AlreadyExists => Ok(None),
                        Err(e) => Err(e),
                        Ok(_) => task::start(c, id).await.map(Some),
                    }
                }
            }
        };
        match attempt.await {
            Ok(Some(pid)) => return Ok(pid),
            Ok(None) if redos < MAX_REDOS => redos += 1,
            Ok(None) => {
                return Err(RuntimeError::other(format!(
                    "pause task {id} keeps changing"
                )))
            }
            Err(e) if e.kind == RuntimeErrorKind::Unavailable => {
                tracing::debug!(sandbox = id, error = %e, "containerd unavailable, pause start retried");
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(1));
    }
}

/// The exit of a sandbox's pause task. Only containerd's answer ends the
/// wait: a call cut off by a containerd restart is asked again, as the
/// shim keeps the task. A task that is not there (its shim died, or it was
/// deleted) is a pause gone, with the code of an exit nobody saw.
pub(crate) async fn wait_for_pause_exit(
    c: &Containerd,
    id: &str,
) -> Result<ExitInfo, RuntimeError> {
    let mut pause = std::time::Duration::from_millis(50);
    loop {
        match task::wait(c, id).await {
            Ok((status, exited_at)) => return Ok(task::exit_info(status, exited_at, false)),
            Err(status) if status.code() == tonic::Code::NotFound => {
                return Ok(task::exit_info(task::UNKNOWN_EXIT, None, false))
            }
            Err(status) if crate::client::is_unavailable(&status) => {
                tracing::debug!(sandbox = id, error = %status.message(), "containerd unavailable, waiting to re-arm the pause's wait");
            }
            Err(status) => {
                return Err(RuntimeError::other(format!(
                    "wait for the pause of sandbox {id}: {}",
                    status.message()
                )))
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(500));
    }
}

/// Sandboxes stopped by this agent: their removal skips the stop.
pub(crate) type Stopped = Mutex<HashSet<String>>;

pub(crate) async fn stop(c: &Containerd, sandbox: &SandboxInfo) -> Result<(), RuntimeError> {
    stop_by_id(c, &sandbox.id.0, &sandbox.pod, sandbox.host_network)
        .await
        .map_err(|e| in_sandbox("stop", sandbox, e))
}

pub(crate) async fn remove(c: &Containerd, sandbox: &SandboxInfo) -> Result<(), RuntimeError> {
    // A sandbox an agent before this one made may have a shim that the dead
    // agent's last requests left holding a half-made task.
    let made_before = c
        .state
        .connected_at
        .get()
        .is_some_and(|connected| sandbox.created_at < *connected);
    teardown(
        c,
        &sandbox.id.0,
        &sandbox.pod,
        sandbox.host_network,
        made_before,
    )
    .await
    .map_err(|e| in_sandbox("remove", sandbox, e))
}

fn in_sandbox(what: &str, sandbox: &SandboxInfo, e: RuntimeError) -> RuntimeError {
    RuntimeError::new(
        e.kind,
        format!(
            "{what} sandbox {} of pod {}: {}",
            sandbox.id, sandbox.pod, e.message
        ),
    )
}

/// CNI DEL and the pause task's end, at once (CRI's StopPodSandbox tears the
/// network down while the pause still runs): neither needs the other, and
/// the pins keep the namespaces until both are done.
async fn stop_by_id(
    c: &Containerd,
    id: &str,
    pod: &PodRef,
    host_network: bool,
) -> Result<(), RuntimeError> {
    // Only the network pin matters here.
    let namespaces = PodNamespaces::of(&c.config.root_dir, id, host_network, false);
    let network = async {
        match &namespaces.net {
            Some(net) => cni::teardown_pod_network(&cni_paths(c), id, Some(net), pod).await,
            None => Ok(()),
        }
    };
    let (pause, network) = tokio::join!(task::destroy(c, id), network);
    pause.and(network)?;
    crate::client::lock(&c.state.stopped_sandboxes).insert(id.to_string());
    Ok(())
}

/// The stop (unless this agent did it), the record, with `leftovers` any
/// shim of the sandbox still there, namespace pins, shm, pod cgroup. Every
/// step runs even when an earlier one failed; the first failure is
/// returned.
async fn teardown(
    c: &Containerd,
    id: &str,
    pod: &PodRef,
    host_network: bool,
    leftovers: bool,
) -> Result<(), RuntimeError> {
    let root = &c.config.root_dir;
    let mut first_error: Option<RuntimeError> = None;
    let mut note = |result: Result<(), RuntimeError>| {
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    };
    // Missing pins are skipped.
    let namespaces = PodNamespaces::of(root, id, host_network, false);
    let stopped = crate::client::lock(&c.state.stopped_sandboxes).contains(id);
    if !stopped {
        note(stop_by_id(c, id, pod, host_network).await);
    }
    note(container::remove(c, id).await);
    if leftovers {
        // Before the pod cgroup goes: a half-made task's process is in it.
        note(crate::shim::end_leftovers(c, id).await);
    }
    let (pins, root_dir, sandbox) = (namespaces.dir.clone(), root.clone(), id.to_string());
    let (unpinned, unmounted) = blocking(move || {
        let unpinned = netns::remove(&pins).map_err(io_error(format!(
            "remove the pod's namespaces in {}",
            pins.display()
        )));
        (unpinned, unmount_shm(&root_dir, &sandbox))
    })
    .await
    .unwrap_or_else(|e| (Err(e.clone()), Err(e)));
    note(unpinned);
    note(unmounted);
    let uid = pod.uid.clone();
    note(
        tokio::task::spawn_blocking(move || crate::cgroups::remove_pod_cgroup(&uid))
            .await
            .map_err(|e| RuntimeError::other(e.to_string()))
            .and_then(|r| r.map_err(io_error(format!("remove the cgroup of pod {pod}")))),
    );
    if first_error.is_none() {
        crate::client::lock(&c.state.stopped_sandboxes).remove(id);
        tracing::debug!(sandbox = id, pod = %pod, "removed sandbox");
    }
    first_error.map_or(Ok(()), Err)
}

/// The pod's namespaces (pinned) and its `/dev/shm` (when `shm` names it).
/// On the blocking pool: `unshare` and `mount` wait on kernel locks that
/// other pods' namespace setup and teardown (and runc's mounts) hold, and
/// on the runtime's few worker threads that wait would stall every other
/// pod and the API.
async fn kernel_setup(
    namespaces: &PodNamespaces,
    hostname: &str,
    sysctls: &[(String, String)],
    shm: Option<PathBuf>,
) -> Result<(), RuntimeError> {
    let (namespaces, hostname, sysctls) =
        (namespaces.clone(), hostname.to_string(), sysctls.to_vec());
    blocking(move || {
        netns::create(&namespaces, &hostname, &sysctls).map_err(io_error(format!(
            "create the pod's namespaces in {}",
            namespaces.dir.display()
        )))?;
        shm.map_or(Ok(()), |dir| mount_shm(&dir))
    })
    .await?
}

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RuntimeError::other(format!("sandbox setup or teardown thread: {e}")))
}

fn mount_shm(dir: &Path) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(dir).map_err(io_error(format!("create {}", dir.display())))?;
    mount(
        Some("shm"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(|e| {
        RuntimeError::other(format!(
            "mount the pod's /dev/shm at {}: {e}",
            dir.display()
        ))
    })
}

pub(crate) fn unmount_shm(root_dir: &Path, id: &str) -> Result<(), RuntimeError> {
    let shm = shm_dir(root_dir, id);
    match umount2(&shm, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => {
            return Err(RuntimeError::other(format!(
                "unmount the pod's /dev/shm at {}: {e}",
                shm.display()
            )))
        }
    }
    let dir = sandbox_dir(root_dir, id);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RuntimeError::other(format!(
            "remove {}: {e}",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_ids_are_short_unique_and_tied_to_the_pod() {
        let a = new_sandbox_id("3F2504E0-4F89-11D3-9A0C-0305E82C3301");
        let b = new_sandbox_id("3F2504E0-4F89-11D3-9A0C-0305E82C3301");
        assert_ne!(a, b);
        assert!(a.starts_with("3f2504e0-"), "{a}");
        assert_eq!(a.len(), 17);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        assert!(new_sandbox_id("__").starts_with("pod-"));
    }
}
