//! Everything berth owns in containerd, rebuilt from labels, tasks and the
//! CNI cache: what a restarted agent adopts.

use std::collections::{BTreeMap, HashMap};

use berth_runtime::{
    ContainerId, ContainerKind, ExitInfo, Observed, ObservedContainer, ObservedState, PauseProcess,
    PodRef, PodTimes, RuntimeError, SandboxId, SandboxInfo,
};
use containerd_client::services::v1::{Container, ListContainersRequest, ListTasksRequest};
use containerd_client::types::v1::{Process, Status};
use jiff::Timestamp;

use crate::netns::{self, PodNamespaces};
use crate::sandbox::{HOST_IPC_LABEL, HOST_NETWORK_LABEL, PINNED_ON_BOOT_LABEL};
use crate::spec::GROUP_ANNOTATION;
use crate::task::failed;
use crate::{cni, labels, Containerd};

pub(crate) async fn list(c: &Containerd) -> Result<Observed, RuntimeError> {
    let containers = records(c).await?;
    let tasks = tasks(c, &containers).await?;

    let mut observed = Observed::default();
    for container in containers {
        let task = tasks.get(&container.id);
        if container.labels.get(labels::SANDBOX).map(String::as_str) == Some("true") {
            observed.sandboxes.push(sandbox_of(c, &container, task));
        } else {
            observed.containers.push(container_of(&container, task));
        }
    }
    observed.sandboxes.sort_by(|a, b| a.id.cmp(&b.id));
    observed.containers.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(observed)
}

/// berth's container records (no shim is asked).
pub(crate) async fn records(c: &Containerd) -> Result<Vec<Container>, RuntimeError> {
    let filter = format!("labels.\"{}\"==true", labels::MANAGED);
    Ok(c.containers()
        .list(ListContainersRequest {
            filters: vec![filter],
        })
        .await
        .map_err(|s| failed("list containers", s))?
        .into_inner()
        .containers)
}

/// The tasks of `containers`, by container id. containerd asks every
/// task's shim in turn, giving each 2 s, and leaves out a task whose shim
/// did not answer: a wedged shim holds the listing 2 s per task it serves,
/// and its tasks seem gone. So the listing is bounded, and when it runs out
/// of time each task is asked on its own (bounded too); runc itself speaks
/// for the tasks of a shim that does not answer, and for any task the
/// listing left out that runc still runs.
pub(crate) async fn tasks(
    c: &Containerd,
    containers: &[Container],
) -> Result<HashMap<String, Process>, RuntimeError> {
    let mut client = c.tasks();
    let listed = client.list(ListTasksRequest {
        filter: String::new(),
    });
    let Ok(listed) = tokio::time::timeout(c.config.shim_timeout, listed).await else {
        tracing::warn!("listing tasks timed out (a shim is not answering): asking task by task");
        return Ok(tasks_one_by_one(c, containers).await);
    };
    let mut tasks: HashMap<String, Process> = listed
        .map_err(|s| failed("list tasks", s))?
        .into_inner()
        .tasks
        .into_iter()
        // containerd 1.6 fills only `id` (the container id) in this listing.
        .map(|p| {
            let id = if p.container_id.is_empty() {
                p.id.clone()
            } else {
                p.container_id.clone()
            };
            (id, p)
        })
        .collect();
    for container in containers {
        let id = container.id.as_str();
        if !tasks.contains_key(id) && crate::shim::runc_knows(c, id) {
            if let Some(task) = crate::shim::runc_state(c, id).await {
                tasks.insert(id.to_string(), task);
            }
        }
    }
    Ok(tasks)
}

/// Each container's task through containerd, except for the sandboxes whose
/// shim did not answer: those through runc.
async fn tasks_one_by_one(c: &Containerd, containers: &[Container]) -> HashMap<String, Process> {
    let mut tasks = HashMap::new();
    let mut wedged: Vec<String> = Vec::new();
    for container in containers {
        let id = container.id.as_str();
        let sandbox = label(container, labels::SANDBOX_ID);
        let sandbox = if sandbox.is_empty() {
            id.to_string()
        } else {
            sandbox
        };
        let answer = if wedged.contains(&sandbox) {
            None
        } else {
            match crate::task::bounded(c, crate::task::get(c, id)).await {
                Ok(task) => Some(task),
                Err(status) if status.code() == tonic::Code::DeadlineExceeded => {
                    tracing::warn!(sandbox, "the pod's shim does not answer: asking runc");
                    wedged.push(sandbox);
                    None
                }
                Err(status) => {
                    tracing::warn!(container = id, error = %status.message(), "get task");
                    Some(None)
                }
            }
        };
        let task = match answer {
            Some(task) => task,
            None => crate::shim::runc_state(c, id).await,
        };
        if let Some(task) = task {
            tasks.insert(id.to_string(), task);
        }
    }
    tasks
}

fn label(container: &Container, key: &str) -> String {
    container.labels.get(key).cloned().unwrap_or_default()
}

fn pod_of(container: &Container) -> PodRef {
    PodRef {
        uid: label(container, labels::POD_UID),
        namespace: label(container, labels::POD_NAMESPACE),
        name: label(container, labels::POD_NAME),
    }
}

fn sandbox_of(c: &Containerd, container: &Container, task: Option<&Process>) -> SandboxInfo {
    let host_network = label(container, HOST_NETWORK_LABEL) == "true";
    let host_ipc = label(container, HOST_IPC_LABEL) == "true";
    let root = &c.config.root_dir;
    let namespaces = PodNamespaces::of(root, &container.id, host_network, host_ipc);
    let pause = match container.labels.get(PINNED_ON_BOOT_LABEL) {
        // No pause process: alive while its pins are.
        Some(boot) if netns::pins_alive(&namespaces, boot) => PauseProcess::Pinned,
        Some(_) => PauseProcess::Gone,
        None => task
            .filter(|t| t.status == Status::Running as i32)
            .map_or(PauseProcess::Gone, |t| PauseProcess::Running { pid: t.pid }),
    };
    SandboxInfo {
        id: SandboxId(container.id.clone()),
        pod: pod_of(container),
        host_network,
        netns: namespaces.net,
        pause,
        ips: if host_network {
            Vec::new()
        } else {
            cni::cached_ips(root, &container.id)
        },
        created_at: crate::typeurl::timestamp(container.created_at.as_ref())
            .unwrap_or_else(Timestamp::now),
        pod_times: pod_times(container),
        network_ready_at: None,
    }
}

fn pod_times(container: &Container) -> Option<PodTimes> {
    let time = |key| container.labels.get(key)?.parse::<Timestamp>().ok();
    Some(PodTimes {
        created: time(labels::POD_CREATED)?,
        started: time(labels::POD_STARTED)?,
    })
}

fn container_of(container: &Container, task: Option<&Process>) -> ObservedContainer {
    let annotations: BTreeMap<String, String> = container
        .spec
        .as_ref()
        .and_then(|any| crate::typeurl::spec_from_any(any).ok())
        .and_then(|spec| spec.annotations().clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != GROUP_ANNOTATION)
        .collect();
    ObservedContainer {
        id: ContainerId(container.id.clone()),
        sandbox: SandboxId(label(container, labels::SANDBOX_ID)),
        pod: pod_of(container),
        name: label(container, labels::CONTAINER_NAME),
        kind: ContainerKind::parse(&label(container, labels::CONTAINER_KIND))
            .unwrap_or(ContainerKind::Regular),
        attempt: label(container, labels::ATTEMPT).parse().unwrap_or(0),
        image: container.image.clone(),
        state: state_of(task, crate::container::started_at(container)),
        annotations,
    }
}

/// A task's state in berth's terms. Without a task the container was never
/// started (or failed to start). `started_at` is the start time kept on the
/// record; without it a running process's own start time is read (to the
/// clock tick, which /proc keeps).
fn state_of(task: Option<&Process>, started_at: Option<Timestamp>) -> ObservedState {
    let Some(task) = task else {
        return ObservedState::Created;
    };
    match Status::try_from(task.status).unwrap_or(Status::Unknown) {
        Status::Created => ObservedState::Created,
        Status::Running | Status::Paused | Status::Pausing => ObservedState::Running {
            started_at: started_at
                .or_else(|| process_start(task.pid))
                .unwrap_or_else(Timestamp::now),
        },
        Status::Stopped | Status::Unknown => ObservedState::Exited {
            started_at,
            exit: ExitInfo {
                exit_code: task.exit_status as i32,
                finished_at: crate::typeurl::timestamp(task.exited_at.as_ref())
                    .unwrap_or_else(Timestamp::now),
                oom_killed: false,
            },
        },
    }
}

/// When a process started: its start time in ticks after boot plus the boot time.
fn process_start(pid: u32) -> Option<Timestamp> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    start_time(&stat, &boot, ticks)
}

pub(crate) fn start_time(stat: &str, proc_stat: &str, ticks_per_second: i64) -> Option<Timestamp> {
    // Fields after the command (which may hold spaces) start at field 3; starttime is field 22.
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let start_ticks: i64 = after_comm.split_whitespace().nth(19)?.parse().ok()?;
    let btime: i64 = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let nanos = start_ticks.checked_mul(1_000_000_000)? / ticks_per_second.max(1);
    Timestamp::from_second(btime)
        .ok()?
        .checked_add(jiff::SignedDuration::from_nanos(nanos))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_start_is_boot_time_plus_ticks() {
        let stat =
            "42 (my (odd) cmd) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 250 1000 10 0";
        let proc_stat = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        assert_eq!(
            start_time(stat, proc_stat, 100),
            Some(
                Timestamp::from_second(1_700_000_002).unwrap()
                    + jiff::SignedDuration::from_millis(500)
            )
        );
        assert_eq!(start_time("garbage", proc_stat, 100), None);
    }

    #[test]
    fn task_states_map_to_observed_states() {
        assert_eq!(state_of(None, None), ObservedState::Created);
        let mut task = Process {
            container_id: "c".into(),
            status: Status::Created as i32,
            ..Default::default()
        };
        assert_eq!(state_of(Some(&task), None), ObservedState::Created);
        task.status = Status::Stopped as i32;
        task.exit_status = 137;
        task.exited_at = Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        });
        assert_eq!(
            state_of(Some(&task), None),
            ObservedState::Exited {
                started_at: None,
                exit: ExitInfo {
                    exit_code: 137,
                    finished_at: Timestamp::from_second(1_700_000_000).unwrap(),
                    oom_killed: false,
                },
            }
        );
        task.status = Status::Running as i32;
        task.pid = std::process::id();
        assert!(matches!(
            state_of(Some(&task), None),
            ObservedState::Running { .. }
        ));
    }

    #[test]
    fn the_start_time_kept_on_the_record_wins() {
        let kept: Timestamp = "2026-01-02T03:04:05.123456789Z".parse().unwrap();
        let mut task = Process {
            status: Status::Running as i32,
            pid: std::process::id(),
            ..Default::default()
        };
        assert_eq!(
            state_of(Some(&task), Some(kept)),
            ObservedState::Running { started_at: kept }
        );
        // An exited init container keeps its start time too.
        task.status = Status::Stopped as i32;
        assert!(matches!(
            state_of(Some(&task), Some(kept)),
            ObservedState::Exited { started_at: Some(t), .. } if t == kept
        ));
    }
}
