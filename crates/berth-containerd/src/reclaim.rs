//! What an agent killed in the middle of a pod start leaves behind, found and
//! released at the next start: namespace pins, the pod's `/dev/shm` mount,
//! CNI attachments (the veth and the host-local address), leases, and shims
//! and loggers whose container record never came to be or is gone.
//!
//! A sandbox is live when containerd holds its pause container record;
//! everything else berth keeps per sandbox id belongs to no pod. This runs
//! before any worker starts, so no start is in flight that could own them.

use std::collections::HashSet;
use std::path::Path;

use berth_runtime::{PodRef, Reclaimed, RuntimeError};
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    Container, DeleteRequest, ListContainersRequest, ListRequest, ListTasksRequest,
};
use containerd_client::types::v1::Status;

use crate::netns::PodNamespaces;
use crate::sandbox::{cni_paths, shm_dir, unmount_shm};
use crate::task::failed;
use crate::{cni, container, labels, netns, sandbox, Containerd};

pub(crate) async fn reclaim(c: &Containerd) -> Result<Reclaimed, RuntimeError> {
    let records = c
        .containers()
        .list(ListContainersRequest {
            filters: vec![format!("labels.\"{}\"==true", labels::MANAGED)],
        })
        .await
        .map_err(|s| failed("list containers", s))?
        .into_inner()
        .containers;
    let live_sandboxes: HashSet<String> = records
        .iter()
        .filter(|r| r.labels.get(labels::SANDBOX).map(String::as_str) == Some("true"))
        .map(|r| r.id.clone())
        .collect();
    finish_pause_starts(c, &records, &live_sandboxes).await;
    let known: HashSet<String> = records.into_iter().map(|r| r.id).collect();

    let mut reclaimed = Reclaimed::default();
    let root = &c.config.root_dir;
    for id in sandbox_ids_on_disk(root) {
        if live_sandboxes.contains(&id) {
            continue;
        }
        tracing::debug!(sandbox = id, "releasing what a half-made sandbox left");
        release_sandbox(c, &id).await;
        reclaimed.sandboxes += 1;
    }
    reclaimed.leases = delete_leases(c).await;
    reclaimed.processes = kill_strays(c, &known, &live_sandboxes);
    Ok(reclaimed)
}

/// Starts the pause task of every live sandbox whose pause start an agent's
/// death cut off. The pause starts after the pod's first container, in the
/// background, so a pod can run with no pause task yet: its containers are
/// in the pinned namespaces and it is alive. Left so, the next agent would
/// take the sandbox for dead and make the pod again. A pause that ran and
/// died leaves a stopped task instead, and the pod is made again in a new
/// sandbox, as the kubelet does.
async fn finish_pause_starts(
    c: &Containerd,
    records: &[Container],
    live_sandboxes: &HashSet<String>,
) {
    let tasks = match c
        .tasks()
        .list(ListTasksRequest {
            filter: String::new(),
        })
        .await
    {
        Ok(list) => list.into_inner().tasks,
        Err(status) => {
            tracing::warn!(error = %status.message(), "list tasks");
            return;
        }
    };
    // containerd 1.6 fills only `id` (the container id) in this listing.
    let status_of = |id: &str| {
        tasks
            .iter()
            .find(|t| t.id == id || t.container_id == id)
            .map(|t| t.status)
    };
    let running = Some(Status::Running as i32);
    for id in live_sandboxes {
        // No task, or one created and never started.
        let status = status_of(id);
        if status.is_some() && status != Some(Status::Created as i32) {
            continue;
        }
        let alive = records.iter().any(|r| {
            r.id != *id
                && r.labels.get(labels::SANDBOX_ID) == Some(id)
                && status_of(&r.id) == running
        });
        if !alive {
            continue;
        }
        let started = async {
            let mounts = container::rootfs_mounts(c, id).await?;
            sandbox::run_pause(c, id, mounts).await
        };
        match started.await {
            Ok(pid) => tracing::info!(
                sandbox = id,
                pid,
                "started a pause an interrupted start left"
            ),
            Err(e) => {
                tracing::warn!(sandbox = id, error = %e, "start the pause an interrupted start left")
            }
        }
    }
}

/// Every sandbox id berth keeps something for on disk: namespace pins, the
/// shm directory, cached CNI results.
fn sandbox_ids_on_disk(root: &Path) -> HashSet<String> {
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    };
    let mut ids: HashSet<String> = names(&netns::dir(root)).into_iter().collect();
    ids.extend(names(&root.join("sandboxes")));
    ids.extend(
        names(&cni::cache_dir(root))
            .iter()
            .filter_map(|file| sandbox_id_of_cache_file(file)),
    );
    ids
}

/// `<sandbox id>-<network>.json` → the sandbox id, which ends in `-` and 8
/// hex digits (see `sandbox::new_sandbox_id`).
pub(crate) fn sandbox_id_of_cache_file(file: &str) -> Option<String> {
    let stem = file.strip_suffix(".json")?;
    let bytes = stem.as_bytes();
    (1..bytes.len()).find_map(|dash| {
        let hex = bytes.get(dash + 1..dash + 9)?;
        let ends = bytes.get(dash + 9) == Some(&b'-');
        (bytes[dash] == b'-' && ends && hex.iter().all(|b| b.is_ascii_hexdigit()))
            .then(|| stem[..dash + 9].to_string())
    })
}

/// CNI DEL (which frees the address and the veth), the namespace pins and
/// the shm mount. Failures are logged: the next start tries again.
async fn release_sandbox(c: &Containerd, id: &str) {
    let root = &c.config.root_dir;
    let namespaces = PodNamespaces::of(root, id, false);
    let has_network = namespaces.net.as_ref().is_some_and(|n| n.exists())
        || std::fs::read_dir(cni::cache_dir(root))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                sandbox_id_of_cache_file(&e.file_name().to_string_lossy()).as_deref() == Some(id)
            });
    if has_network {
        // The pod is unknown by now; DEL needs only the container id and
        // the cached result.
        let pod = PodRef {
            uid: String::new(),
            namespace: String::new(),
            name: String::new(),
        };
        if let Err(e) =
            cni::teardown_pod_network(&cni_paths(c), id, namespaces.net.as_deref(), &pod).await
        {
            tracing::warn!(sandbox = id, error = %e, "release the network of a half-made sandbox");
        }
    }
    if let Err(e) = netns::remove(&namespaces.dir) {
        tracing::warn!(sandbox = id, error = %e, "remove the namespace pins of a half-made sandbox");
    }
    if shm_dir(root, id).exists() {
        if let Err(e) = unmount_shm(root, id) {
            tracing::warn!(sandbox = id, error = %e, "remove the shm of a half-made sandbox");
        }
    }
}

/// Drops berth's leases: none is in use before the first worker starts, and
/// what they kept (a prepared snapshot, a half-written blob) is garbage.
async fn delete_leases(c: &Containerd) -> usize {
    let mut client = LeasesClient::new(c.svc());
    let leases = match client.list(ListRequest { filters: vec![] }).await {
        Ok(list) => list.into_inner().leases,
        Err(status) => {
            tracing::warn!(error = %status.message(), "list leases");
            return 0;
        }
    };
    let mut deleted = 0;
    for lease in leases.into_iter().filter(|l| l.id.starts_with("berth-")) {
        let request = DeleteRequest {
            id: lease.id.clone(),
            sync: false,
        };
        match client.delete(request).await {
            Ok(_) => deleted += 1,
            Err(status) => {
                tracing::warn!(lease = lease.id, error = %status.message(), "delete lease")
            }
        }
    }
    deleted
}

/// Shims and loggers of berth's containerd namespace that serve nothing
/// containerd holds: nothing will ever delete their task, so they would run
/// forever.
fn kill_strays(c: &Containerd, known: &HashSet<String>, live_sandboxes: &HashSet<String>) -> usize {
    let namespace = c.config.namespace.as_str();
    let socket = c.config.socket.to_string_lossy();
    let mut killed = 0;
    for pid in std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        let Some(process) = stray_candidate(pid, namespace, &socket) else {
            continue;
        };
        let live = match &process {
            Process::Logger { container } => known.contains(container),
            Process::Shim { started_by } => {
                known.contains(started_by) || serves_live_sandbox(started_by, live_sandboxes)
            }
        };
        if live {
            continue;
        }
        tracing::debug!(
            pid,
            ?process,
            "killing a process that serves no container record"
        );
        if nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .is_ok()
        {
            killed += 1;
        }
    }
    killed
}

/// Whether a shim started by container `started_by` serves a live sandbox.
/// A pod's containers share their sandbox's shim (`GROUP_ANNOTATION`), and
/// the shim's command line names only the container whose task started it,
/// which may have been replaced since (a restarted container) while the
/// shim serves the others. Container ids begin with their sandbox's id.
fn serves_live_sandbox(started_by: &str, live_sandboxes: &HashSet<String>) -> bool {
    live_sandboxes.iter().any(|sandbox| {
        started_by == sandbox
            || started_by
                .strip_prefix(sandbox.as_str())
                .is_some_and(|rest| rest.starts_with('-'))
    })
}

/// A process of this containerd and namespace that reclaim judges.
#[derive(Debug, PartialEq)]
enum Process {
    /// A shim (`-namespace NS -id ID -address SOCKET`), with its `-id`.
    Shim { started_by: String },
    /// A logger (`CONTAINER_NAMESPACE` and `CONTAINER_ID` in its
    /// environment), which serves that one container.
    Logger { container: String },
}

fn stray_candidate(pid: i32, namespace: &str, socket: &str) -> Option<Process> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if args.first()?.ends_with("containerd-shim-runc-v2") {
        let ours = flag("-namespace")? == namespace && flag("-address")? == socket;
        return ours
            .then(|| flag("-id"))
            .flatten()
            .map(|started_by| Process::Shim { started_by });
    }
    if args.get(1).map(String::as_str) != Some(crate::logger::LOGGER_SUBCOMMAND) {
        return None;
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let var = |name: &str| {
        environ.split(|b| *b == 0).find_map(|kv| {
            let kv = std::str::from_utf8(kv).ok()?;
            kv.strip_prefix(name)?.strip_prefix('=').map(str::to_string)
        })
    };
    (var("CONTAINER_NAMESPACE")? == namespace)
        .then(|| var("CONTAINER_ID"))?
        .map(|container| Process::Logger { container })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_files_name_their_sandbox() {
        let id = |f| sandbox_id_of_cache_file(f);
        assert_eq!(
            id("3f2504e0-1a2b3c4d-berth-t1.json").as_deref(),
            Some("3f2504e0-1a2b3c4d")
        );
        assert_eq!(
            id("abc-defa-0123abcd-lo.json").as_deref(),
            Some("abc-defa-0123abcd")
        );
        assert_eq!(id("pod-deadbeef-net.json").as_deref(), Some("pod-deadbeef"));
        assert_eq!(id("garbage.json"), None);
        assert_eq!(id("3f2504e0-1a2b3c4d-net.txt"), None);
    }

    #[test]
    fn a_shim_serves_its_sandbox_whoever_started_it() {
        let live = HashSet::from(["3f2504e0-1a2b3c4d".to_string()]);
        let serves = |id| serves_live_sandbox(id, &live);
        assert!(serves("3f2504e0-1a2b3c4d"), "started by the pause");
        assert!(
            serves("3f2504e0-1a2b3c4d-main-0badf00d"),
            "by a container since replaced"
        );
        assert!(
            !serves("3f2504e0-1a2b3c4e-main-0badf00d"),
            "another sandbox's"
        );
        assert!(!serves("3f2504e0-1a2b3c4dd-main-0badf00d"));
        assert!(!serves("3f2504e0"));
    }
}
