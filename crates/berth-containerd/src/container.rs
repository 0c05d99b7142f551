//! Containers of a pod: snapshot + container record (create), task create +
//! start (start), and removal in the only safe order: task, record, snapshot.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_runtime::{
    ContainerConfig, ContainerId, ImageInfo, RuntimeError, RuntimeErrorKind, SandboxInfo, Started,
};
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::{
    MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, UsageRequest,
};
use containerd_client::services::v1::{
    Container, CreateContainerRequest, DeleteContainerRequest, GetContainerRequest,
    UpdateContainerRequest,
};
use containerd_client::types::Mount as RootfsMount;
use jiff::Timestamp;
use oci_spec::runtime::Spec;

use crate::image::SNAPSHOTTER;
use crate::labels;
use crate::netns::PodNamespaces;
use crate::spec::{self, ContainerSpec};
use crate::task::{self, failed};
use crate::Containerd;

/// Where the container's CRI log goes (read back at start).
pub(crate) const LOG_PATH_LABEL: &str = "io.berth.container.log-path";

/// When the container's process started (RFC 3339, nanoseconds), set once it
/// has: its `startedAt` for a restarted agent, which containerd does not keep.
pub(crate) const STARTED_AT_LABEL: &str = "io.berth.container.started-at";

/// A short random suffix for unique ids.
pub(crate) fn random_hex() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// `[a-z0-9-]`, no leading/trailing or doubled dashes, at most `max` chars.
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::new();
    for ch in text.chars().flat_map(char::to_lowercase) {
        let ch = if ch.is_ascii_alphanumeric() { ch } else { '-' };
        if ch == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        if out.len() == max {
            break;
        }
        out.push(ch);
    }
    out.trim_end_matches('-').to_string()
}

/// `<sandbox>-<name>-<random>`: readable, unique per instance, a valid containerd id.
pub(crate) fn new_container_id(sandbox: &str, name: &str) -> String {
    format!("{sandbox}-{}-{}", sanitize(name, 24), random_hex())
}

/// The labels every object of a pod carries.
pub(crate) fn pod_labels(pod: &berth_runtime::PodRef, sandbox_id: &str) -> HashMap<String, String> {
    HashMap::from([
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::POD_UID.to_string(), pod.uid.clone()),
        (labels::POD_NAME.to_string(), pod.name.clone()),
        (labels::POD_NAMESPACE.to_string(), pod.namespace.clone()),
        (labels::SANDBOX_ID.to_string(), sandbox_id.to_string()),
    ])
}

pub(crate) async fn get(c: &Containerd, id: &str) -> Result<Option<Container>, RuntimeError> {
    match c
        .containers()
        .get(GetContainerRequest { id: id.to_string() })
        .await
    {
        Ok(response) => Ok(response.into_inner().container),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(failed(&format!("get container {id}"), status)),
    }
}

pub(crate) async fn exists(c: &Containerd, id: &str) -> Result<bool, RuntimeError> {
    Ok(get(c, id).await?.is_some())
}

/// A lease that keeps GC off a new snapshot until the container record
/// references it.
pub(crate) struct Lease(String);

impl Lease {
    pub(crate) async fn create(c: &Containerd, id: &str) -> Result<Lease, RuntimeError> {
        c.create_named_lease(format!("berth-{id}"))
            .await
            .map(Lease)
            .map_err(|e| RuntimeError::new(e.kind, format!("create lease for {id}: {}", e.message)))
    }

    /// Deletes the lease off the start path (it expires by itself anyway).
    pub(crate) fn release(self, c: &Containerd) {
        let c = c.clone();
        tokio::spawn(async move { c.delete_lease(&self.0).await });
    }
}

/// Prepares the snapshot and writes the container record under the lease;
/// returns the rootfs mounts. `build_spec` sees the mounts, e.g. to read
/// `/etc/passwd`.
pub(crate) async fn create_record(
    c: &Containerd,
    lease: Lease,
    id: &str,
    image: &ImageInfo,
    parent: &str,
    labels: HashMap<String, String>,
    build_spec: impl FnOnce(&[RootfsMount]) -> Result<Spec, RuntimeError>,
) -> Result<Vec<RootfsMount>, RuntimeError> {
    let result = create_leased(c, &lease.0, id, image, parent, labels, build_spec).await;
    lease.release(c);
    if result.is_err() {
        // The record may not exist; the snapshot may. Both go.
        remove_record(c, id).await.ok();
    }
    result
}

async fn create_leased(
    c: &Containerd,
    lease: &str,
    id: &str,
    image: &ImageInfo,
    parent: &str,
    labels: HashMap<String, String>,
    build_spec: impl FnOnce(&[RootfsMount]) -> Result<Spec, RuntimeError>,
) -> Result<Vec<RootfsMount>, RuntimeError> {
    let svc = c.svc_leased(lease);
    let mounts =
        containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient::new(
            svc.clone(),
        )
        .prepare(PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: id.to_string(),
            parent: parent.to_string(),
            labels: labels.clone(),
        })
        .await
        .map_err(|s| failed(&format!("prepare snapshot {id} on {}", image.reference), s))?
        .into_inner()
        .mounts;
    let spec = build_spec(&mounts)?;
    let container = Container {
        snapshotter: SNAPSHOTTER.to_string(),
        snapshot_key: id.to_string(),
        ..record(id, image, labels, &spec)?
    };
    containerd_client::services::v1::containers_client::ContainersClient::new(svc)
        .create(CreateContainerRequest {
            container: Some(container),
        })
        .await
        .map_err(|s| failed(&format!("create container {id}"), s))?;
    Ok(mounts)
}

/// Writes a container record with no snapshot, for one that never runs a
/// task (a sandbox with no pause process).
pub(crate) async fn create_bare_record(
    c: &Containerd,
    id: &str,
    image: &ImageInfo,
    labels: HashMap<String, String>,
    spec: &Spec,
) -> Result<(), RuntimeError> {
    c.containers()
        .create(CreateContainerRequest {
            container: Some(record(id, image, labels, spec)?),
        })
        .await
        .map_err(|s| failed(&format!("create container {id}"), s))?;
    Ok(())
}

fn record(
    id: &str,
    image: &ImageInfo,
    labels: HashMap<String, String>,
    spec: &Spec,
) -> Result<Container, RuntimeError> {
    Ok(Container {
        id: id.to_string(),
        labels,
        image: image.reference.clone(),
        runtime: Some(Runtime {
            name: task::RUNTIME_NAME.to_string(),
            options: None,
        }),
        spec: Some(crate::typeurl::spec_any(spec)?),
        ..Default::default()
    })
}

/// Deletes the record and the snapshot (in that order); absent ones are fine.
async fn remove_record(c: &Containerd, id: &str) -> Result<(), RuntimeError> {
    match c
        .containers()
        .delete(DeleteContainerRequest { id: id.to_string() })
        .await
    {
        Err(status) if status.code() != tonic::Code::NotFound => {
            return Err(failed(&format!("delete container {id}"), status))
        }
        _ => {}
    }
    match c
        .snapshots()
        .remove(RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: id.to_string(),
        })
        .await
    {
        Err(status) if status.code() != tonic::Code::NotFound => {
            Err(failed(&format!("remove snapshot {id}"), status))
        }
        _ => Ok(()),
    }
}

/// Creates a container of the pod (record and snapshot; the task comes at start).
pub(crate) async fn create(
    c: &Containerd,
    sandbox: &SandboxInfo,
    config: &ContainerConfig,
) -> Result<ContainerId, RuntimeError> {
    let sandbox_id = sandbox.id.0.as_str();
    let id = new_container_id(sandbox_id, &config.name);
    let mounts = config.mounts.clone();
    tokio::task::spawn_blocking(move || crate::host_mounts::prepare(&mounts))
        .await
        .map_err(|e| RuntimeError::other(format!("prepare mounts: {e}")))??;
    let (pause, parent, lease) = tokio::join!(
        get(c, sandbox_id),
        c.snapshot_parent(&config.image),
        Lease::create(c, &id)
    );
    let lease = lease?;
    let looked_up = pause.and_then(|pause| {
        let pause = pause.ok_or_else(|| {
            RuntimeError::not_found(format!(
                "sandbox {sandbox_id} of pod {} not found",
                config.pod
            ))
        })?;
        Ok((crate::sandbox::hostname_of(&pause)?, parent?))
    });
    let (hostname, parent) = match looked_up {
        Ok(found) => found,
        Err(e) => {
            lease.release(c);
            return Err(e);
        }
    };
    let mut labels = pod_labels(&config.pod, sandbox_id);
    labels.insert(labels::CONTAINER_NAME.into(), config.name.clone());
    labels.insert(labels::CONTAINER_KIND.into(), config.kind.as_str().into());
    labels.insert(labels::ATTEMPT.into(), config.attempt.to_string());
    labels.insert(
        LOG_PATH_LABEL.into(),
        config.log_path.to_string_lossy().into_owned(),
    );
    if let Some(stdio) = crate::stdio::label(&config.stdio) {
        labels.insert(crate::stdio::STDIO_LABEL.into(), stdio);
    }
    let host_ipc = config.security.namespaces.host_ipc;
    // With hostIPC the node's /dev/shm, as CRI binds it.
    let shm = if host_ipc {
        PathBuf::from("/dev/shm")
    } else {
        crate::sandbox::shm_dir(&c.config.root_dir, sandbox_id)
    };
    let namespaces = PodNamespaces::of(
        &c.config.root_dir,
        sandbox_id,
        sandbox.host_network,
        host_ipc,
    );
    let target_pid = match &config.security.pid_target {
        None => None,
        Some(target) => match target_pid(c, sandbox_id, target).await {
            Ok(pid) => Some(pid),
            Err(e) => {
                lease.release(c);
                return Err(e);
            }
        },
    };
    let host_capabilities = crate::capabilities::host();
    let host_devices = if config.privileged {
        crate::devices::host_devices(Path::new("/dev"))
    } else {
        Vec::new()
    };
    let build = |mounts: &[RootfsMount]| {
        let layers = rootfs_layers(mounts);
        let passwd = read_rootfs_file(&layers, "etc/passwd");
        let group = read_rootfs_file(&layers, "etc/group");
        let user = spec::resolve_user(config.user.as_deref(), passwd.as_deref(), group.as_deref())
            .map_err(|e| {
                RuntimeError::new(e.kind, format!("container {}: {}", config.name, e.message))
            })?;
        spec::container_spec(
            config,
            &ContainerSpec {
                container_id: &id,
                sandbox_id,
                namespaces: &namespaces,
                sandbox_pid: sandbox.pause.pid(),
                target_pid,
                hostname: &hostname,
                user,
                shm: shm.exists().then_some(shm.as_path()),
                host_capabilities: &host_capabilities,
                host_devices: &host_devices,
            },
        )
    };
    create_record(c, lease, &id, &config.image, &parent, labels, build).await?;
    tracing::debug!(container = id, name = config.name, pod = %config.pod, "created container");
    Ok(ContainerId(id))
}

/// The process of `target`, a running container of the same sandbox, whose
/// PID namespace a new container joins (containerd CRI's
/// `validateTargetContainer`, with its errors).
async fn target_pid(
    c: &Containerd,
    sandbox_id: &str,
    target: &ContainerId,
) -> Result<u32, RuntimeError> {
    let target = target.0.as_str();
    let invalid = |reason: String| {
        RuntimeError::new(
            RuntimeErrorKind::Other,
            format!("invalid target container: {reason}"),
        )
    };
    let record = get(c, target)
        .await?
        .ok_or_else(|| invalid(format!("container {target:?} does not exist")))?;
    let owner = record
        .labels
        .get(labels::SANDBOX_ID)
        .map(String::as_str)
        .unwrap_or_default();
    if owner != sandbox_id {
        return Err(invalid(format!(
            "container {target:?} (sandbox {owner}) does not belong to sandbox {sandbox_id}"
        )));
    }
    let running = containerd_client::types::v1::Status::Running as i32;
    match task::find(c, target).await? {
        Some(process) if process.status == running && process.pid != 0 => Ok(process.pid),
        _ => Err(invalid(format!(
            "container {target:?} is not running - in state CONTAINER_EXITED"
        ))),
    }
}

/// Creates the task (stdio to the CRI logger) and starts it.
/// Containers whose task [`prepare_start`] made: their start only starts it.
pub(crate) type Prepared = std::sync::Mutex<std::collections::HashSet<String>>;

pub(crate) async fn start(c: &Containerd, id: &ContainerId) -> Result<Started, RuntimeError> {
    let id = id.0.as_str();
    if crate::client::lock(&c.state.prepared).remove(id) {
        return run_task(c, id, true).await;
    }
    let (record, mounts) = record_and_mounts(c, id).await?;
    let created_here = create_task(c, id, &record, mounts).await.inspect_err(|_| {
        // Like containerd's CRI: the container stays without a task and
        // armed waiters see exit code 128 (StartError).
        task::signal_started(c, id, true);
    })?;
    run_task(c, id, created_here).await
}

/// The task of a created container, made ahead of its start (while the
/// pod's network is set up). A failure is left for [`start`] to meet again
/// and report, so waiters are not told of it.
pub(crate) async fn prepare_start(c: &Containerd, id: &ContainerId) -> Result<(), RuntimeError> {
    let id = id.0.as_str();
    let (record, mounts) = record_and_mounts(c, id).await?;
    create_task(c, id, &record, mounts).await?;
    crate::client::lock(&c.state.prepared).insert(id.to_string());
    task::signal_started(c, id, false);
    Ok(())
}

async fn record_and_mounts(
    c: &Containerd,
    id: &str,
) -> Result<(Container, Vec<RootfsMount>), RuntimeError> {
    // The snapshot key is the container id (ours by construction).
    let (record, mounts) = tokio::join!(get(c, id), rootfs_mounts(c, id));
    let record =
        record?.ok_or_else(|| RuntimeError::not_found(format!("container {id} not found")))?;
    Ok((record, mounts?))
}

/// Task create of a container's record, with stdio to the CRI logger and
/// stdin and terminal as the container asks; true when this call made it
/// (false: one made before serves, as for a start retried).
async fn create_task(
    c: &Containerd,
    id: &str,
    record: &Container,
    mounts: Vec<RootfsMount>,
) -> Result<bool, RuntimeError> {
    let log_path = record
        .labels
        .get(LOG_PATH_LABEL)
        .filter(|p| !p.is_empty())
        .map(Path::new);
    let stdio = crate::stdio::from_labels(&record.labels);
    let io = crate::stdio::TaskIo::prepare(c, id, &stdio, log_path)?;
    match task::create(c, id, mounts, &io).await {
        Ok(_) => {
            io.created();
            Ok(true)
        }
        Err(e) if e.kind == RuntimeErrorKind::AlreadyExists => {
            io.abandoned().await;
            Ok(false)
        }
        Err(e) => {
            io.abandoned().await;
            Err(e)
        }
    }
}

/// Starts a container's task; one `created_here` is deleted again when its
/// start fails.
async fn run_task(c: &Containerd, id: &str, created_here: bool) -> Result<Started, RuntimeError> {
    task::signal_started(c, id, false);
    match task::start(c, id).await {
        Ok(pid) => {
            let started_at = Timestamp::now();
            tracing::debug!(container = id, pid, "started container");
            // Running is reported once the command runs, not runc's init.
            tokio::join!(
                record_start(c, id, started_at),
                crate::init_exec::wait_for_exec(pid)
            );
            Ok(Started { pid, started_at })
        }
        Err(e) => {
            if created_here {
                if let Err(cleanup) = task::destroy(c, id).await {
                    tracing::warn!(container = id, error = %cleanup, "delete task after a failed start");
                }
                task::signal_started(c, id, true);
            }
            Err(e)
        }
    }
}

/// Keeps the start time on the container's record (one label; a failure
/// only costs the precision of a restarted agent's `startedAt`).
async fn record_start(c: &Containerd, id: &str, started_at: Timestamp) {
    let container = Container {
        id: id.to_string(),
        labels: HashMap::from([(STARTED_AT_LABEL.to_string(), started_at.to_string())]),
        ..Default::default()
    };
    let request = UpdateContainerRequest {
        container: Some(container),
        update_mask: Some(prost_types::FieldMask {
            paths: vec![format!("labels.{STARTED_AT_LABEL}")],
        }),
    };
    if let Err(status) = c.containers().update(request).await {
        tracing::warn!(container = id, error = %status.message(), "record the start time");
    }
}

/// The start time [`record_start`] kept, if any.
pub(crate) fn started_at(record: &Container) -> Option<Timestamp> {
    record.labels.get(STARTED_AT_LABEL)?.parse().ok()
}

pub(crate) async fn rootfs_mounts(
    c: &Containerd,
    id: &str,
) -> Result<Vec<RootfsMount>, RuntimeError> {
    Ok(c.snapshots()
        .mounts(MountsRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: id.to_string(),
        })
        .await
        .map_err(|s| failed(&format!("rootfs mounts of {id}"), s))?
        .into_inner()
        .mounts)
}

/// The disk use of the container's active snapshot (its key is the
/// container id): the snapshotter counts the upper directory's blocks, each
/// hard-linked file once, without following symlinks.
pub(crate) async fn writable_layer_usage(c: &Containerd, id: &str) -> Result<u64, RuntimeError> {
    let usage = c
        .snapshots()
        .usage(UsageRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: id.to_string(),
        })
        .await
        .map_err(|s| failed(&format!("writable layer usage of {id}"), s))?
        .into_inner();
    Ok(u64::try_from(usage.size).unwrap_or(0))
}

/// Task, record, snapshot: in this order, since containerd protects none of
/// them from the others. Absent parts are fine.
pub(crate) async fn remove(c: &Containerd, id: &str) -> Result<(), RuntimeError> {
    crate::client::lock(&c.state.prepared).remove(id);
    task::destroy(c, id).await?;
    remove_record(c, id).await?;
    let _ = std::fs::remove_dir_all(crate::stdio::dir(c, id));
    task::forget_start_signal(c, id);
    tracing::debug!(container = id, "removed container");
    Ok(())
}

/// The directories of a rootfs as its snapshot mounts name them, top first.
fn rootfs_layers(mounts: &[RootfsMount]) -> Vec<PathBuf> {
    let mut layers = Vec::new();
    for mount in mounts {
        match mount.r#type.as_str() {
            "overlay" => {
                let option = |name: &str| {
                    mount
                        .options
                        .iter()
                        .find_map(|o| o.strip_prefix(name).map(str::to_string))
                };
                if let Some(upper) = option("upperdir=") {
                    layers.push(PathBuf::from(upper));
                }
                if let Some(lower) = option("lowerdir=") {
                    layers.extend(lower.split(':').map(PathBuf::from));
                }
            }
            _ => layers.push(PathBuf::from(&mount.source)),
        }
    }
    layers
}

/// A file of the image as the container would see it, without mounting: the
/// topmost layer that has the path wins; a whiteout (anything not a regular
/// file) hides it.
fn read_rootfs_file(layers: &[PathBuf], path: &str) -> Option<String> {
    for layer in layers {
        let file = layer.join(path);
        match std::fs::symlink_metadata(&file) {
            Ok(meta) if meta.is_file() => return std::fs::read_to_string(file).ok(),
            Ok(_) => return None,
            Err(_) => continue,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sanitized_short_and_unique() {
        assert_eq!(sanitize("My_App..2", 24), "my-app-2");
        assert_eq!(sanitize("-a--b-", 24), "a-b");
        assert_eq!(sanitize(&"x".repeat(40), 24).len(), 24);
        let a = new_container_id("abcd1234-0011aabb", "web");
        let b = new_container_id("abcd1234-0011aabb", "web");
        assert_ne!(a, b);
        assert!(a.starts_with("abcd1234-0011aabb-web-"));
        assert!(a.len() <= 64);
    }

    #[test]
    fn rootfs_files_are_read_from_the_topmost_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let (upper, l1, l2) = (
            tmp.path().join("u"),
            tmp.path().join("l1"),
            tmp.path().join("l2"),
        );
        for dir in [&upper, &l1, &l2] {
            std::fs::create_dir_all(dir.join("etc")).unwrap();
        }
        std::fs::write(l1.join("etc/passwd"), "top").unwrap();
        std::fs::write(l2.join("etc/passwd"), "bottom").unwrap();
        std::fs::write(l2.join("etc/group"), "g").unwrap();
        let mounts = vec![RootfsMount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                "index=off".into(),
                format!("upperdir={}", upper.display()),
                format!("lowerdir={}:{}", l1.display(), l2.display()),
            ],
        }];
        let layers = rootfs_layers(&mounts);
        assert_eq!(layers, vec![upper.clone(), l1.clone(), l2.clone()]);
        assert_eq!(
            read_rootfs_file(&layers, "etc/passwd").as_deref(),
            Some("top")
        );
        assert_eq!(read_rootfs_file(&layers, "etc/group").as_deref(), Some("g"));
        assert_eq!(read_rootfs_file(&layers, "etc/shadow"), None);
        // A whiteout in an upper layer hides the file below.
        std::fs::create_dir(l1.join("etc/group")).unwrap();
        assert_eq!(read_rootfs_file(&layers, "etc/group"), None);
    }
}
