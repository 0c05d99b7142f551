//! A pod's shim that stopped answering. containerd runs every task of a pod
//! under one `containerd-shim-runc-v2` (see `spec::GROUP_ANNOTATION`); when
//! its calls time out, the pod's removal cannot go on through it. So the
//! shim is killed, and what it ran is deleted with runc itself, as the
//! shim's own cleanup (`shim delete`) would: containerd then finds the
//! shim gone, drops its tasks, and the removal calls answer again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_runtime::RuntimeError;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::Containerd;

/// runc's state root the runc shim uses (`process.RuncRoot`), one directory
/// per containerd namespace.
const RUNC_ROOT: &str = "/run/containerd/runc";

/// How long a killed shim may take to go away.
const SHIM_EXIT: Duration = Duration::from_secs(5);

/// How long one runc command may take.
const RUNC_CALL: Duration = Duration::from_secs(10);

/// The container id a `containerd-shim-runc-v2` process was started for
/// (`-id`), if it serves this containerd (`-address`) and namespace
/// (`-namespace`). A shim started for a pod's first task serves the others
/// too, so the id is that of whichever container of the pod started first.
pub(crate) fn shim_id(pid: i32, namespace: &str, socket: &str) -> Option<String> {
    let args = cmdline(pid)?;
    if !args.first()?.ends_with("containerd-shim-runc-v2") {
        return None;
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let ours = flag("-namespace")? == namespace && flag("-address")? == socket;
    ours.then(|| flag("-id").cloned()).flatten()
}

/// A process's arguments.
pub(crate) fn cmdline(pid: i32) -> Option<Vec<String>> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Every process id on the host.
pub(crate) fn pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
}

/// Whether container `id` belongs to the sandbox `sandbox_id`: the sandbox's
/// own (pause) container, or one whose id the sandbox's prefixes (see
/// `container::new_container_id`).
pub(crate) fn of_sandbox(id: &str, sandbox_id: &str) -> bool {
    id.strip_prefix(sandbox_id)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// The shims serving the sandbox's tasks.
fn pod_shims(c: &Containerd, sandbox_id: &str) -> Vec<i32> {
    let socket = c.config.socket.to_string_lossy();
    pids()
        .filter(|&pid| {
            shim_id(pid, &c.config.namespace, &socket).is_some_and(|id| of_sandbox(&id, sandbox_id))
        })
        .collect()
}

/// The fields of `/proc/<pid>/stat` after the parenthesised command name
/// (which may hold spaces): the process state first.
pub(crate) fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_string).collect())
}

/// Gone, or a zombie its parent has yet to reap.
fn exited(pid: i32) -> bool {
    stat_fields(pid).is_none_or(|fields| {
        fields
            .first()
            .is_some_and(|state| state == "Z" || state == "X")
    })
}

/// runc's state directory for this namespace.
fn runc_root(c: &Containerd) -> PathBuf {
    Path::new(RUNC_ROOT).join(&c.config.namespace)
}

/// How long the shim of a sandbox whose tasks are all gone may take to exit
/// on its own.
const LEFTOVER_GRACE: Duration = Duration::from_secs(1);

/// Ends what still serves a sandbox whose containers are all removed: a
/// shim exits with its last task, unless it holds a task containerd does
/// not know (a create that an agent's death cut off); such a shim is
/// killed, with the process of that task ([`force_stop`]).
pub(crate) async fn end_leftovers(c: &Containerd, sandbox_id: &str) -> Result<(), RuntimeError> {
    let deadline = tokio::time::Instant::now() + LEFTOVER_GRACE;
    loop {
        let shims = pod_shims(c, sandbox_id);
        if shims.iter().all(|&pid| exited(pid)) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                sandbox = sandbox_id,
                ?shims,
                "a shim serves a removed sandbox"
            );
            return force_stop(c, sandbox_id).await.map(drop);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills the sandbox's shims and deletes, with runc, every container of the
/// sandbox runc still knows (which kills its processes). Returns how many
/// shims were killed.
pub(crate) async fn force_stop(c: &Containerd, sandbox_id: &str) -> Result<usize, RuntimeError> {
    let shims = pod_shims(c, sandbox_id);
    for &pid in &shims {
        tracing::warn!(sandbox = sandbox_id, pid, "killing the pod's shim");
        // SIGKILL ends a stopped process too.
        if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGKILL) {
            tracing::debug!(pid, "kill shim: {e}");
        }
    }
    let deadline = tokio::time::Instant::now() + SHIM_EXIT;
    while !shims.iter().all(|&pid| exited(pid)) {
        if tokio::time::Instant::now() >= deadline {
            return Err(RuntimeError::other(format!(
                "the shim of sandbox {sandbox_id} did not exit after SIGKILL"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let root = runc_root(c);
    let ids: Vec<String> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| of_sandbox(id, sandbox_id))
        .collect();
    for id in ids {
        runc_delete(&root, &id).await?;
    }
    Ok(shims.len())
}

/// `runc --root ROOT delete --force ID`: kills the container's processes and
/// removes its runc state.
async fn runc_delete(root: &Path, id: &str) -> Result<(), RuntimeError> {
    let run = tokio::process::Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["delete", "--force", id])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RUNC_CALL, run)
        .await
        .map_err(|_| RuntimeError::other(format!("runc delete --force {id}: timed out")))?
        .map_err(|e| RuntimeError::other(format!("run runc delete --force {id}: {e}")))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && !stderr.contains("does not exist") {
        return Err(RuntimeError::other(format!(
            "runc delete --force {id}: {}",
            stderr.trim()
        )));
    }
    tracing::debug!(container = id, "deleted with runc");
    Ok(())
}

/// Whether runc keeps state for container `id` (it has or had a task).
pub(crate) fn runc_knows(c: &Containerd, id: &str) -> bool {
    runc_root(c).join(id).is_dir()
}

/// A task as runc (not its shim) sees it: `runc state`. runc keeps no exit
/// status, so a stopped task exited with 255, containerd CRI's code for an
/// exit nobody saw.
pub(crate) async fn runc_state(
    c: &Containerd,
    id: &str,
) -> Option<containerd_client::types::v1::Process> {
    use containerd_client::types::v1::{Process, Status};
    let run = tokio::process::Command::new("runc")
        .arg("--root")
        .arg(runc_root(c))
        .args(["state", id])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RUNC_CALL, run).await.ok()?.ok()?;
    if !output.status.success() {
        return None; // runc knows no such container: no task
    }
    let state: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let status = match state["status"].as_str()? {
        "created" => Status::Created,
        "running" => Status::Running,
        "paused" => Status::Paused,
        _ => Status::Stopped,
    };
    Some(Process {
        container_id: id.to_string(),
        pid: state["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0),
        status: status as i32,
        exit_status: if status == Status::Stopped { 255 } else { 0 },
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_of_a_sandbox_share_its_id_as_prefix() {
        let sandbox = "3f2504e0-1a2b3c4d";
        assert!(of_sandbox(sandbox, sandbox));
        assert!(of_sandbox("3f2504e0-1a2b3c4d-web-0011aabb", sandbox));
        assert!(!of_sandbox("3f2504e0-1a2b3c4e-web-0011aabb", sandbox));
        assert!(!of_sandbox("3f2504e0-1a2b3c4dd", sandbox));
        assert!(!of_sandbox("3f2504e0", sandbox));
    }

    #[test]
    fn a_process_that_is_gone_has_exited() {
        assert!(!exited(std::process::id() as i32));
        assert!(exited(i32::MAX));
    }
}
