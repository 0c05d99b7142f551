//! Pod sandboxes: network namespace + CNI, a shared `/dev/shm`, and the pause
//! container holding the pod's IPC and UTS namespaces, all under the pod cgroup.
//!
//! Create runs CNI ADD concurrently with the whole pause container start
//! (image, snapshot, record, task): the pause process does not need the network,
//! and start latency is what users see. Teardown is idempotent and also
//! cleans up after a create that failed halfway.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_runtime::{PodRef, RuntimeError, SandboxConfig, SandboxId, SandboxInfo};
use containerd_client::services::v1::Container;
use jiff::Timestamp;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::cni::{self, CniPaths};
use crate::container::{self, pod_labels, random_hex, sanitize};
use crate::spec::{self, SandboxSpec};
use crate::{labels, netns, task, Containerd};

/// The pod's hostname, for the containers' `HOSTNAME`.
pub(crate) const HOSTNAME_LABEL: &str = "io.berth.sandbox.hostname";
/// `true` when the pod uses the node's network.
pub(crate) const HOST_NETWORK_LABEL: &str = "io.berth.sandbox.host-network";
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

pub(crate) fn netns_path(root_dir: &Path, sandbox_id: &str) -> PathBuf {
    netns::dir(root_dir).join(sandbox_id)
}

fn sandbox_dir(root_dir: &Path, sandbox_id: &str) -> PathBuf {
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

fn node_hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The hostname of a sandbox, from its pause container's labels.
pub(crate) fn hostname_of(pause: &Container) -> Result<String, RuntimeError> {
    if pause.labels.get(HOST_NETWORK_LABEL).map(String::as_str) == Some("true") {
        return Ok(node_hostname());
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
    let netns = (!config.host_network).then(|| netns_path(root, &id));
    let created_at = Timestamp::now();
    let result = async {
        if let Some(path) = &netns {
            netns::create(path).map_err(io_error(format!(
                "create network namespace {}",
                path.display()
            )))?;
        }
        mount_shm(&shm_dir(root, &id))?;
        let network = async {
            match &netns {
                Some(path) => {
                    cni::setup_pod_network(
                        &cni_paths(c),
                        &id,
                        path,
                        &config.pod,
                        &config.port_mappings,
                    )
                    .await
                }
                None => Ok(Vec::new()),
            }
        };
        let (ips, pid) = tokio::join!(network, start_pause(c, &id, config, netns.as_deref()));
        Ok::<_, RuntimeError>((ips?, pid?))
    }
    .await;
    match result {
        Ok((ips, pid)) => {
            tracing::debug!(sandbox = id, pod = %config.pod, pid, ?ips, "created sandbox");
            Ok(SandboxInfo {
                id: SandboxId(id),
                pod: config.pod.clone(),
                host_network: config.host_network,
                netns,
                pid,
                ips,
                created_at,
            })
        }
        Err(e) => {
            if let Err(cleanup) = teardown(c, &id, &config.pod, config.host_network).await {
                tracing::warn!(sandbox = id, error = %cleanup, "clean up after a failed sandbox create");
            }
            Err(RuntimeError::new(
                e.kind,
                format!("create sandbox for pod {}: {}", config.pod, e.message),
            ))
        }
    }
}

/// The pause container: image, snapshot, record, task, start. Returns its pid.
async fn start_pause(
    c: &Containerd,
    id: &str,
    config: &SandboxConfig,
    netns: Option<&Path>,
) -> Result<u32, RuntimeError> {
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
    let hostname = if config.host_network {
        node_hostname()
    } else {
        config.hostname.clone()
    };
    let mut labels: HashMap<String, String> = pod_labels(&config.pod, id);
    labels.insert(labels::SANDBOX.into(), "true".into());
    labels.insert(labels::CONTAINER_NAME.into(), PAUSE_NAME.into());
    labels.insert(HOSTNAME_LABEL.into(), hostname.clone());
    labels.insert(HOST_NETWORK_LABEL.into(), config.host_network.to_string());
    let spec_input = SandboxSpec {
        sandbox_id: id,
        pod_uid: &config.pod.uid,
        image: &image,
        hostname: (!config.host_network).then_some(hostname.as_str()),
        netns,
    };
    let mounts = container::create_record(c, lease, id, &image, &parent, labels, |_| {
        spec::sandbox_spec(&spec_input)
    })
    .await?;
    task::create(c, id, mounts, String::new(), String::new()).await?;
    task::start(c, id).await
}

pub(crate) async fn remove(c: &Containerd, sandbox: &SandboxInfo) -> Result<(), RuntimeError> {
    teardown(c, &sandbox.id.0, &sandbox.pod, sandbox.host_network)
        .await
        .map_err(|e| {
            RuntimeError::new(
                e.kind,
                format!(
                    "remove sandbox {} of pod {}: {}",
                    sandbox.id, sandbox.pod, e.message
                ),
            )
        })
}

/// Pause container, CNI DEL, netns pin, shm, pod cgroup. Every step runs even
/// when an earlier one failed; the first failure is returned.
async fn teardown(
    c: &Containerd,
    id: &str,
    pod: &PodRef,
    host_network: bool,
) -> Result<(), RuntimeError> {
    let root = &c.config.root_dir;
    let mut first_error: Option<RuntimeError> = None;
    let mut note = |result: Result<(), RuntimeError>| {
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    };
    note(container::remove(c, id).await);
    let pin = netns_path(root, id);
    if !host_network {
        note(cni::teardown_pod_network(&cni_paths(c), id, Some(&pin), pod).await);
    }
    note(netns::remove(&pin).map_err(io_error(format!(
        "remove network namespace {}",
        pin.display()
    ))));
    note(unmount_shm(root, id));
    let uid = pod.uid.clone();
    note(
        tokio::task::spawn_blocking(move || crate::cgroups::remove_pod_cgroup(&uid))
            .await
            .map_err(|e| RuntimeError::other(e.to_string()))
            .and_then(|r| r.map_err(io_error(format!("remove the cgroup of pod {pod}")))),
    );
    if first_error.is_none() {
        tracing::debug!(sandbox = id, pod = %pod, "removed sandbox");
    }
    first_error.map_or(Ok(()), Err)
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

fn unmount_shm(root_dir: &Path, id: &str) -> Result<(), RuntimeError> {
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
