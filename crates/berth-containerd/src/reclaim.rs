//! What an agent killed in the middle of a pod start leaves behind, found and
//! released at the next start: namespace pins, the pod's `/dev/shm` mount,
//! CNI attachments (the veth and the host-local address), leases, and shims
//! and loggers that serve no task containerd holds. A logger of berth's own
//! that is gone is started again.
//!
//! A sandbox is live when containerd holds its pause container record;
//! everything else berth keeps per sandbox id belongs to no pod. This runs
//! before any worker starts, so no start is in flight that could own them.
//! The late sweep runs beside this agent's own starts: it only kills shims
//! and loggers it saw before asking containerd what it holds.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use berth_runtime::{PodRef, Reclaimed, RuntimeError};
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{Container, DeleteRequest, ListRequest};
use containerd_client::types::v1::{Process, Status};

use crate::image::{EXPIRE_LABEL, LEASE_TTL};
use crate::netns::PodNamespaces;
use crate::sandbox::{cni_paths, sandbox_dir, unmount_shm};
use crate::{cni, labels, list, netns, Containerd};

/// How long after start leases, shims and loggers are swept a second time.
const LATE_SWEEP: Duration = Duration::from_secs(5);

pub(crate) async fn reclaim(c: &Containerd) -> Result<Reclaimed, RuntimeError> {
    let started = jiff::Timestamp::now();
    let helpers = Helpers::running(c);
    let records = list::records(c).await?;
    let tasks = list::tasks(c, &records).await?;
    let live_sandboxes: HashSet<String> = records
        .iter()
        .filter(|r| r.labels.get(labels::SANDBOX).map(String::as_str) == Some("true"))
        .map(|r| r.id.clone())
        .collect();

    let mut reclaimed = Reclaimed::default();
    let half_made: Vec<String> = sandbox_ids_on_disk(&c.config.root_dir)
        .into_iter()
        .filter(|id| !live_sandboxes.contains(id))
        .collect();
    // At once: the API opens after reclaim.
    futures::future::join_all(half_made.iter().map(|id| async move {
        tracing::debug!(sandbox = id, "releasing what a half-made sandbox left");
        release_sandbox(c, id).await;
    }))
    .await;
    reclaimed.sandboxes = half_made.len();
    reclaimed.leases = delete_leases(c, started).await;
    reclaimed.processes = helpers.kill_unserved(&Served::of(&records, &tasks, None));
    for record in &records {
        if tasks.get(&record.id).map(|t| t.status) == Some(Status::Running as i32) {
            crate::stdio::restart_logger(c, &record.id, &record.labels);
        }
    }
    // The dead agent's last requests may still be running in containerd,
    // making a lease or a shim after this sweep: sweep once more, later.
    let later = c.clone();
    tokio::spawn(async move {
        tokio::time::sleep(LATE_SWEEP).await;
        let leases = delete_leases(&later, started).await;
        // Seen before the listing: this agent's starts are under way by
        // now, and a shim or logger spawned after the listing serves a
        // record the listing missed.
        let helpers = Helpers::running(&later);
        let processes = match late_records_and_tasks(&later).await {
            Ok((records, tasks)) => {
                helpers.kill_unserved(&Served::of(&records, &tasks, Some(started)))
            }
            Err(e) => {
                tracing::warn!(error = %e, "list containers and tasks");
                0
            }
        };
        if leases + processes > 0 {
            tracing::debug!(
                leases,
                processes,
                "released what the dead agent's last requests made"
            );
        }
    });
    Ok(reclaimed)
}

async fn late_records_and_tasks(
    c: &Containerd,
) -> Result<(Vec<Container>, HashMap<String, Process>), RuntimeError> {
    let records = list::records(c).await?;
    let tasks = list::tasks(c, &records).await?;
    Ok((records, tasks))
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
    let namespaces = PodNamespaces::of(root, id, false, false);
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
    if sandbox_dir(root, id).exists() {
        if let Err(e) = unmount_shm(root, id) {
            tracing::warn!(sandbox = id, error = %e, "remove the shm of a half-made sandbox");
        }
    }
}

/// Drops berth's leases made before `started` (by an agent before this one):
/// none is in use, and what they kept (a prepared snapshot, a half-written
/// blob) is garbage.
async fn delete_leases(c: &Containerd, started: jiff::Timestamp) -> usize {
    let leases = match LeasesClient::new(c.svc())
        .list(ListRequest { filters: vec![] })
        .await
    {
        Ok(list) => list.into_inner().leases,
        Err(status) => {
            tracing::warn!(error = %status.message(), "list leases");
            return 0;
        }
    };
    let stale = leases
        .into_iter()
        .filter(|l| l.id.starts_with("berth-") && made_before(&l.labels, started));
    let deleted = futures::future::join_all(stale.map(|lease| async move {
        let request = DeleteRequest {
            id: lease.id.clone(),
            sync: false,
        };
        match LeasesClient::new(c.svc()).delete(request).await {
            Ok(_) => true,
            // Its own agent's last request deleted it meanwhile.
            Err(status) if status.code() == tonic::Code::NotFound => false,
            Err(status) => {
                tracing::warn!(lease = lease.id, error = %status.message(), "delete lease");
                false
            }
        }
    }))
    .await;
    deleted.into_iter().filter(|d| *d).count()
}

/// Whether berth made the lease with these labels before `started`: its
/// expiry is berth's clock at creation plus [`LEASE_TTL`] (containerd's own
/// creation time is when it got to the request). One without is old.
fn made_before(labels: &HashMap<String, String>, started: jiff::Timestamp) -> bool {
    labels
        .get(EXPIRE_LABEL)
        .and_then(|e| e.parse::<jiff::Timestamp>().ok())
        .is_none_or(|expire| expire - LEASE_TTL < started)
}

/// What containerd holds tasks for: a shim or logger serving anything else
/// serves nothing containerd will ever ask for or delete.
#[derive(Debug, Default)]
struct Served {
    /// Containers with a task.
    tasks: HashSet<String>,
    /// Sandboxes with a task of theirs (the pause's or a container's).
    sandboxes: HashSet<String>,
}

impl Served {
    /// What the tasks of `records` serve. With `own_since`, the records made
    /// since (by this agent) count as served too: one of its own starts may
    /// be between spawning a shim or logger and containerd holding the task.
    fn of(
        records: &[Container],
        tasks: &HashMap<String, Process>,
        own_since: Option<jiff::Timestamp>,
    ) -> Self {
        let own = |r: &Container| {
            own_since.is_some_and(|since| {
                crate::typeurl::timestamp(r.created_at.as_ref()).is_none_or(|at| at >= since)
            })
        };
        let live: Vec<&Container> = records
            .iter()
            .filter(|r| tasks.contains_key(&r.id) || own(r))
            .collect();
        Self {
            tasks: live.iter().map(|r| r.id.clone()).collect(),
            sandboxes: live
                .iter()
                .filter_map(|r| r.labels.get(labels::SANDBOX_ID).cloned())
                .collect(),
        }
    }

    /// Whether the shim or logger of container `owner` serves a task. A
    /// logger copies its one container's output. A pod's tasks share one
    /// shim, named after the pod's first task, which may be gone while the
    /// pod lives on; and a task create cut off by a kill can leave a shim
    /// that serves nothing at all.
    fn serves(&self, owner: &str, is_shim: bool) -> bool {
        if is_shim {
            self.sandboxes
                .iter()
                .any(|s| crate::shim::of_sandbox(owner, s))
        } else {
            self.tasks.contains(owner)
        }
    }
}

/// The shims and loggers of berth's containerd namespace running when
/// looked at, before containerd is asked what it holds. A record is always
/// made before its task's shim and logger, so one of these that serves a
/// record made since is in the later listing; one spawned after the look is
/// not here, whatever the listing missed.
struct Helpers(Vec<Helper>);

struct Helper {
    pid: i32,
    /// When it started (`/proc/<pid>/stat`), so a reused pid is not killed.
    start_time: u64,
    /// The container it was started for.
    owner: String,
    is_shim: bool,
}

impl Helpers {
    fn running(c: &Containerd) -> Self {
        Self::of(&c.config.namespace, &c.config.socket.to_string_lossy())
    }

    fn of(namespace: &str, socket: &str) -> Self {
        Self(
            crate::shim::pids()
                .filter_map(|pid| {
                    let (owner, is_shim) = stray_owner(pid, namespace, socket)?;
                    let start_time = start_time(pid)?;
                    Some(Helper {
                        pid,
                        start_time,
                        owner,
                        is_shim,
                    })
                })
                .collect(),
        )
    }

    /// Kills those that serve no task: nothing will ever delete one, so it
    /// would run forever. Returns how many were killed.
    fn kill_unserved(&self, served: &Served) -> usize {
        let mut killed = 0;
        for helper in &self.0 {
            if served.serves(&helper.owner, helper.is_shim)
                || start_time(helper.pid) != Some(helper.start_time)
            {
                continue;
            }
            tracing::debug!(
                pid = helper.pid,
                container = helper.owner,
                is_shim = helper.is_shim,
                "killing a shim or logger that serves no task"
            );
            if nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(helper.pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
            {
                killed += 1;
            }
        }
        killed
    }
}

/// A process's start time in clock ticks after boot (field 22 of
/// `/proc/<pid>/stat`).
fn start_time(pid: i32) -> Option<u64> {
    crate::shim::stat_fields(pid)?.get(19)?.parse().ok()
}

/// The container a shim (`-namespace NS -id ID -address SOCKET`) or a logger
/// (`CONTAINER_NAMESPACE` and `CONTAINER_ID` in its environment) of this
/// containerd and namespace serves, and whether it is a shim.
fn stray_owner(pid: i32, namespace: &str, socket: &str) -> Option<(String, bool)> {
    let args = crate::shim::cmdline(pid)?;
    if args.first()?.ends_with("containerd-shim-runc-v2") {
        return crate::shim::shim_id(pid, namespace, socket).map(|id| (id, true));
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
    let id = (var("CONTAINER_NAMESPACE")? == namespace).then(|| var("CONTAINER_ID"))??;
    Some((id, false))
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
    fn only_leases_made_before_the_start_are_stale() {
        let started: jiff::Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        let made_at = |t: jiff::Timestamp| {
            HashMap::from([(EXPIRE_LABEL.to_string(), (t + LEASE_TTL).to_string())])
        };
        let second = jiff::SignedDuration::from_secs(1);
        assert!(made_before(&made_at(started - second), started));
        assert!(!made_before(&made_at(started), started));
        assert!(!made_before(&made_at(started + second), started));
        assert!(made_before(&HashMap::new(), started));
    }

    #[test]
    fn records_made_since_the_start_count_as_served_in_the_late_sweep() {
        let since: jiff::Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        let record = |id: &str, sandbox: &str, at: jiff::Timestamp| Container {
            id: id.into(),
            labels: HashMap::from([(labels::SANDBOX_ID.to_string(), sandbox.to_string())]),
            created_at: Some(prost_types::Timestamp {
                seconds: at.as_second(),
                nanos: 0,
            }),
            ..Default::default()
        };
        let second = jiff::SignedDuration::from_secs(1);
        let records = [
            // The dead agent's: its task create was cut off.
            record(
                "aaaaaaaa-00000001-main-00000001",
                "aaaaaaaa-00000001",
                since - second,
            ),
            // This agent's, its task being created.
            record("bbbbbbbb-00000002", "bbbbbbbb-00000002", since + second),
            record(
                "bbbbbbbb-00000002-main-00000002",
                "bbbbbbbb-00000002",
                since + second,
            ),
        ];
        let late = Served::of(&records, &HashMap::new(), Some(since));
        assert!(!late.serves("aaaaaaaa-00000001-main-00000001", true));
        assert!(!late.serves("aaaaaaaa-00000001-main-00000001", false));
        assert!(late.serves("bbbbbbbb-00000002-main-00000002", true));
        assert!(late.serves("bbbbbbbb-00000002-main-00000002", false));
        let at_start = Served::of(&records, &HashMap::new(), None);
        assert!(!at_start.serves("bbbbbbbb-00000002-main-00000002", true));
    }

    /// A process that looks like a shim of container `id` in `namespace`
    /// (`-namespace`, `-id`, `-address`); it waits on its stdin.
    async fn look_alike_shim(dir: &Path, namespace: &str, id: &str) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let shim = std::process::Command::new("/bin/sh")
            .arg0(dir.join("containerd-shim-runc-v2"))
            .args(["-c", "read line", "shim", "-namespace", namespace])
            .args(["-id", id, "-address", "/test/containerd.sock"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn a look-alike shim");
        // The kernel fills in the arguments a moment after the exec that
        // ends `spawn`: wait until a scan can see them.
        let pid = shim.id() as i32;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while stray_owner(pid, namespace, "/test/containerd.sock").is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the look-alike's arguments, within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        shim
    }

    #[tokio::test]
    async fn only_helpers_running_before_containerd_is_asked_are_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let namespace = format!("reclaim-test-{}", std::process::id());
        let mut before = look_alike_shim(dir.path(), &namespace, "aaaaaaaa-00000001").await;
        let helpers = Helpers::of(&namespace, "/test/containerd.sock");
        assert_eq!(helpers.0.len(), 1, "the shim running at the look");
        // A start of this agent's spawns a shim for a record the listing
        // (made after the look) did not show: it is not killed.
        let mut after = look_alike_shim(dir.path(), &namespace, "bbbbbbbb-00000002").await;

        assert_eq!(helpers.kill_unserved(&Served::default()), 1);
        let status = before.wait().expect("reap");
        assert!(!status.success(), "killed: {status:?}");
        assert!(after.try_wait().expect("wait").is_none(), "spared");
        after.kill().expect("kill");
        after.wait().expect("reap");
    }

    #[tokio::test]
    async fn a_pid_taken_by_another_process_is_not_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let namespace = format!("reclaim-reuse-{}", std::process::id());
        let mut shim = look_alike_shim(dir.path(), &namespace, "cccccccc-00000003").await;
        let mut helpers = Helpers::of(&namespace, "/test/containerd.sock");
        assert_eq!(helpers.0.len(), 1);
        // As if the pid now named a process started at another time.
        helpers.0[0].start_time += 1;
        assert_eq!(helpers.kill_unserved(&Served::default()), 0);
        assert!(shim.try_wait().expect("wait").is_none(), "spared");
        shim.kill().expect("kill");
        shim.wait().expect("reap");
    }

    #[test]
    fn a_shim_serves_its_sandbox_while_containerd_holds_a_task_of_it() {
        let served = Served {
            tasks: HashSet::from(["3f2504e0-1a2b3c4d-main-00000002".to_string()]),
            sandboxes: HashSet::from(["3f2504e0-1a2b3c4d".to_string()]),
        };
        assert!(
            served.serves("3f2504e0-1a2b3c4d", true),
            "started by the pause"
        );
        assert!(
            served.serves("3f2504e0-1a2b3c4d-main-00000001", true),
            "by a container since replaced"
        );
        assert!(
            !served.serves("3f2504e0-1a2b3c4e-main-00000001", true),
            "by one of a sandbox with no task: its task create was cut off"
        );
        assert!(served.serves("3f2504e0-1a2b3c4d-main-00000002", false));
        assert!(
            !served.serves("3f2504e0-1a2b3c4d-main-00000001", false),
            "a logger of a container with no task"
        );
    }
}
