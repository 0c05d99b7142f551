//! Tasks: the running side of a container (create, start, wait, kill, delete),
//! and the typed clients everything else uses.
//!
//! containerd reports state conflicts as `Unknown` text; only NotFound and
//! AlreadyExists are typed, so the texts that mean "already gone" are matched here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_runtime::{ExitInfo, RuntimeError};
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::Container;
use containerd_client::services::v1::{
    CreateTaskRequest, DeleteTaskRequest, GetRequest, KillRequest, StartRequest, UpdateTaskRequest,
    WaitRequest,
};
use containerd_client::types::v1::Process;
use containerd_client::types::Mount as RootfsMount;
use jiff::Timestamp;
use tokio::sync::Notify;

use crate::client::{status_error, Svc};
use crate::Containerd;

/// The shim every berth container runs under.
pub(crate) const RUNTIME_NAME: &str = "io.containerd.runc.v2";

impl Containerd {
    pub(crate) fn tasks(&self) -> TasksClient<Svc> {
        TasksClient::new(self.svc())
    }

    pub(crate) fn containers(&self) -> ContainersClient<Svc> {
        ContainersClient::new(self.svc())
    }

    pub(crate) fn snapshots(&self) -> SnapshotsClient<Svc> {
        SnapshotsClient::new(self.svc())
    }
}

/// A failed call on a named object, keeping the status' kind.
pub(crate) fn failed(what: &str, status: tonic::Status) -> RuntimeError {
    let error = status_error(status);
    RuntimeError::new(error.kind, format!("{what}: {}", error.message))
}

/// "Nothing left to do" answers to kill and delete.
pub(crate) fn is_gone(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::NotFound
        || status.message().contains("process already finished")
        || status.message().contains("not found")
}

/// A call the task's shim must answer, given at most the configured
/// `shim_timeout`: a shim that stopped answering would hold it for ever.
/// Running out of time is `DeadlineExceeded` (a [`RuntimeErrorKind::Timeout`]).
///
/// [`RuntimeErrorKind::Timeout`]: berth_runtime::RuntimeErrorKind::Timeout
pub(crate) async fn bounded<T>(
    c: &Containerd,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    let limit = c.config.shim_timeout;
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {limit:?} (the task's shim is not answering)"
        )))
    })
}

/// Creates the task (shim, `runc create`); returns the pid.
pub(crate) async fn create(
    c: &Containerd,
    id: &str,
    rootfs: Vec<RootfsMount>,
    io: &crate::stdio::TaskIo,
) -> Result<u32, RuntimeError> {
    let response = c
        .tasks()
        .create(CreateTaskRequest {
            container_id: id.to_string(),
            rootfs,
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            terminal: io.terminal,
            ..Default::default()
        })
        .await
        .map_err(|s| failed("failed to create containerd task", s))?;
    Ok(response.into_inner().pid)
}

pub(crate) async fn start(c: &Containerd, id: &str) -> Result<u32, RuntimeError> {
    let response = c
        .tasks()
        .start(StartRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        })
        .await
        .map_err(|s| failed("failed to start containerd task", s))?;
    Ok(response.into_inner().pid)
}

/// Gives the running task new cgroup settings (runc update), as containerd's
/// CRI `UpdateContainerResources` does. Bounded: see [`bounded`].
pub(crate) async fn update(
    c: &Containerd,
    id: &str,
    resources: &berth_runtime::Resources,
) -> Result<(), RuntimeError> {
    let resources = crate::typeurl::resources_any(&crate::spec::cgroup_resources(resources))?;
    let mut tasks = c.tasks();
    let request = UpdateTaskRequest {
        container_id: id.to_string(),
        resources: Some(resources),
        annotations: HashMap::new(),
    };
    bounded(c, tasks.update(request))
        .await
        .map(drop)
        .map_err(|status| failed(&format!("update resources of task {id}"), status))
}

/// The memory the container's cgroup uses now.
pub(crate) async fn memory_usage(c: &Containerd, id: &str) -> Result<u64, RuntimeError> {
    let record = crate::container::get(c, id)
        .await?
        .ok_or_else(|| RuntimeError::not_found(format!("container {id} not found")))?;
    let uid = record
        .labels
        .get(crate::labels::POD_UID)
        .ok_or_else(|| RuntimeError::other(format!("container {id} has no pod label")))?;
    crate::cgroups::memory_usage(&crate::cgroups::container_cgroup(uid, id))
        .ok_or_else(|| RuntimeError::other(format!("no memory usage for container {id}")))
}

/// Signals the task's processes; a task that is gone is not an error.
/// Bounded: see [`bounded`].
pub(crate) async fn kill(
    c: &Containerd,
    id: &str,
    signal: u32,
    all: bool,
) -> Result<(), RuntimeError> {
    let mut tasks = c.tasks();
    let request = KillRequest {
        container_id: id.to_string(),
        exec_id: String::new(),
        signal,
        all,
    };
    match bounded(c, tasks.kill(request)).await {
        Ok(_) => Ok(()),
        Err(status) if is_gone(&status) => Ok(()),
        Err(status) => Err(failed(&format!("signal {signal} to task {id}"), status)),
    }
}

/// Blocks until the task's init process exits (at once if it has).
pub(crate) async fn wait(
    c: &Containerd,
    id: &str,
) -> Result<(u32, Option<Timestamp>), tonic::Status> {
    let response = c
        .tasks()
        .wait(WaitRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        })
        .await?
        .into_inner();
    Ok((
        response.exit_status,
        crate::typeurl::timestamp(response.exited_at.as_ref()),
    ))
}

/// The task's init process, or `None` when there is no task.
pub(crate) async fn get(c: &Containerd, id: &str) -> Result<Option<Process>, tonic::Status> {
    let request = GetRequest {
        container_id: id.to_string(),
        exec_id: String::new(),
    };
    match c.tasks().get(request).await {
        Ok(response) => Ok(response.into_inner().process),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(status),
    }
}

/// [`get`] as a runtime error.
pub(crate) async fn find(c: &Containerd, id: &str) -> Result<Option<Process>, RuntimeError> {
    get(c, id)
        .await
        .map_err(|status| failed(&format!("get task {id}"), status))
}

/// Kills (if needed), reaps and deletes the task. Idempotent. Every call is
/// bounded (see [`bounded`]): a wedged shim gives a `Timeout` error, and
/// [`crate::shim::force_stop`] then lets the removal finish.
pub(crate) async fn destroy(c: &Containerd, id: &str) -> Result<(), RuntimeError> {
    let process = match bounded(c, get(c, id)).await {
        Ok(Some(process)) => process,
        Ok(None) => return Ok(()),
        Err(status) => return Err(failed(&format!("get task {id}"), status)),
    };
    let stopped = containerd_client::types::v1::Status::Stopped as i32;
    let created = containerd_client::types::v1::Status::Created as i32;
    if process.status != stopped {
        kill(c, id, libc::SIGKILL as u32, process.status != created).await?;
        match bounded(c, wait(c, id)).await {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::NotFound => return Ok(()),
            Err(status) => return Err(failed(&format!("wait for killed task {id}"), status)),
        }
    }
    let mut tasks = c.tasks();
    let request = DeleteTaskRequest {
        container_id: id.to_string(),
    };
    match bounded(c, tasks.delete(request)).await {
        Ok(_) => Ok(()),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
        Err(status) => Err(failed(&format!("delete task {id}"), status)),
    }
}

/// Exit status 128 + signal, as containerd reports it.
pub(crate) fn exit_info(
    exit_status: u32,
    exited_at: Option<Timestamp>,
    oom_killed: bool,
) -> ExitInfo {
    ExitInfo {
        exit_code: exit_status as i32,
        finished_at: exited_at.unwrap_or_else(Timestamp::now),
        oom_killed,
    }
}

/// What an armed waiter learns when `start` creates (or fails to create) the task.
#[derive(Default)]
pub(crate) struct StartSignal {
    notify: Notify,
    failed_at: Mutex<Option<Timestamp>>,
}

/// Waiters armed before the task exists wait here for `start` (or
/// removal), by container id.
pub(crate) type Starts = Mutex<HashMap<String, Arc<StartSignal>>>;

pub(crate) fn start_signal(c: &Containerd, id: &str) -> Arc<StartSignal> {
    let mut starts = crate::client::lock(&c.state.starts);
    Arc::clone(starts.entry(id.to_string()).or_default())
}

/// Wakes the waiters of `id`: the task now exists, failed to start, or the
/// container went away.
pub(crate) fn signal_started(c: &Containerd, id: &str, failed: bool) {
    let signal = start_signal(c, id);
    if failed {
        *signal.failed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Timestamp::now());
    }
    signal.notify.notify_waiters();
}

pub(crate) fn forget_start_signal(c: &Containerd, id: &str) {
    let signal = crate::client::lock(&c.state.starts).remove(id);
    if let Some(signal) = signal {
        signal.notify.notify_waiters();
    }
}

/// 128 + SIGKILL: how a process the OOM killer chose exits.
const SIGKILL_EXIT: u32 = 137;

/// Whether the kernel OOM-killed a process of the container, from its
/// cgroup's own count. The shim publishes OOM events apart from exit events,
/// so an OOM event can trail the exit; the cgroup stays until the task is
/// deleted, which happens only after this answer.
fn kernel_oom_killed(record: &Container, id: &str) -> bool {
    let Some(uid) = record.labels.get(crate::labels::POD_UID) else {
        return false;
    };
    let kills = crate::cgroups::oom_kills(&crate::cgroups::container_cgroup(uid, id));
    tracing::debug!(container = id, ?kills, "OOM kills counted by the cgroup");
    kills.is_some_and(|n| n > 0)
}

/// The exit of a container: waits for its task to exist, then for its exit.
/// A start that failed to create the task ends the wait with exit code 128,
/// as containerd's CRI plugin records a StartError.
///
/// Only containerd's own answer ends the wait. A call cut off because
/// containerd went away (a restart) is asked again once it answers: the shim
/// kept the task, and Wait through the new connection returns its exit even
/// when it came while containerd was down. A task that was seen and is gone
/// after the restart (its shim died with it) exited with a status nobody
/// recorded: 255, containerd CRI's `unknownExitCode`.
pub(crate) async fn wait_for_exit(
    c: &Containerd,
    id: &str,
    watcher: Option<Arc<crate::events::OomWatcher>>,
) -> Result<ExitInfo, RuntimeError> {
    let mut reconnect = Reconnect::default();
    loop {
        let signal = start_signal(c, id);
        let notified = signal.notify.notified();
        tokio::pin!(notified);
        // Registered before asking, so a start in between is not missed.
        notified.as_mut().enable();
        if let Some(at) = *signal.failed_at.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(exit_info(128, Some(at), false));
        }
        if reconnect.lost_connection {
            // Whether the task outlived the outage decides what NotFound means.
            match find(c, id).await {
                Ok(found) => reconnect.task_seen |= found.is_some(),
                Err(e) if e.kind == berth_runtime::RuntimeErrorKind::Unavailable => {
                    reconnect.pause(id, &e.message).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        match wait(c, id).await {
            Ok((status, exited_at)) => return Ok(exited(c, id, status, exited_at, watcher).await),
            Err(status) if crate::client::is_unavailable(&status) => {
                // A Wait cut off on a healthy connection was blocked on a
                // live task (an absent one answers NotFound at once).
                reconnect.task_seen |= !reconnect.lost_connection;
                reconnect.pause(id, status.message()).await;
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                if !crate::container::exists(c, id).await? {
                    forget_start_signal(c, id);
                    return Err(RuntimeError::not_found(format!("container {id} not found")));
                }
                if reconnect.task_seen && reconnect.lost_connection {
                    tracing::warn!(container = id, "task gone after containerd restarted");
                    return Ok(exit_info(UNKNOWN_EXIT, None, false));
                }
                notified.await;
            }
            Err(status) => {
                return Err(RuntimeError::new(
                    status_error(status.clone()).kind,
                    format!("wait for container {id}: {}", status.message()),
                ))
            }
        }
    }
}

/// containerd CRI's exit code for a container whose exit was never seen.
pub(crate) const UNKNOWN_EXIT: u32 = 255;

/// A waiter's memory of containerd going away.
#[derive(Default)]
struct Reconnect {
    /// The task existed at some point of this wait.
    task_seen: bool,
    /// A call was cut off, so containerd may have restarted.
    lost_connection: bool,
    pause: std::time::Duration,
}

impl Reconnect {
    const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);
    const MAX_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

    /// Waits a little before asking containerd again (50 ms, doubling to
    /// 500 ms), so the wait re-arms soon after containerd answers.
    async fn pause(&mut self, id: &str, why: &str) {
        if !self.lost_connection {
            tracing::debug!(
                container = id,
                "containerd unavailable, waiting to re-arm: {why}"
            );
        }
        self.lost_connection = true;
        self.pause = (self.pause * 2).clamp(Self::FIRST_PAUSE, Self::MAX_PAUSE);
        tokio::time::sleep(self.pause).await;
    }
}

/// The exit Wait returned, with the OOM verdict and the log settled.
async fn exited(
    c: &Containerd,
    id: &str,
    status: u32,
    exited_at: Option<Timestamp>,
    watcher: Option<Arc<crate::events::OomWatcher>>,
) -> ExitInfo {
    let record = crate::container::get(c, id).await.ok().flatten();
    let oom_event = async {
        match &watcher {
            Some(watcher) => watcher.oom_killed(id).await,
            None => false,
        }
    };
    let log = record
        .as_ref()
        .and_then(|r| r.labels.get(crate::container::LOG_PATH_LABEL))
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from);
    let log_settled = async {
        if let Some(log) = &log {
            crate::logger::log_settled(log).await;
        }
    };
    let (oom, ()) = tokio::join!(oom_event, log_settled);
    let oom = oom || (status == SIGKILL_EXIT && record.is_some_and(|r| kernel_oom_killed(&r, id)));
    exit_info(status, exited_at, oom)
}
