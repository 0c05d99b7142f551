//! Exec: a process in a running container, with its output collected through
//! FIFOs. The process is the container's own (user, env, capabilities) with
//! only the args replaced, and it is always deleted from the task afterwards.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_runtime::{ExecOutput, RuntimeError, RuntimeErrorKind};
use containerd_client::services::v1::{
    DeleteProcessRequest, ExecProcessRequest, KillRequest, StartRequest, WaitRequest,
};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::task::failed;
use crate::Containerd;

/// Output beyond this is read and dropped, so the process never blocks on a full pipe.
const MAX_OUTPUT: usize = 16 << 20;
/// How long output may keep coming after the process exited (a child may hold the pipe).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The exec's FIFOs, removed on drop.
pub(crate) struct Fifos {
    pub(crate) dir: PathBuf,
}

impl Fifos {
    pub(crate) fn new(c: &Containerd, id: &str, exec_id: &str) -> Self {
        let dir = c
            .config
            .root_dir
            .join("exec")
            .join(format!("{id}-{exec_id}"));
        Fifos { dir }
    }
}

pub(crate) fn new_exec_id() -> String {
    format!("exec-{}", crate::container::random_hex())
}

/// The container's own process (user, env, capabilities) running `command`.
pub(crate) async fn process_spec(
    c: &Containerd,
    id: &str,
    command: &[String],
) -> Result<oci_spec::runtime::Process, RuntimeError> {
    let record = crate::container::get(c, id)
        .await?
        .ok_or_else(|| RuntimeError::not_found(format!("container {id} not found")))?;
    let spec = record
        .spec
        .as_ref()
        .ok_or_else(|| RuntimeError::other(format!("container {id} has no spec")))
        .and_then(crate::typeurl::spec_from_any)?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| RuntimeError::other(format!("container {id} has no process")))?;
    process.set_args(Some(command.to_vec()));
    Ok(process)
}

impl Drop for Fifos {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) async fn exec(
    c: &Containerd,
    id: &str,
    command: &[String],
    timeout: Option<Duration>,
) -> Result<ExecOutput, RuntimeError> {
    if command.is_empty() {
        return Err(RuntimeError::new(
            RuntimeErrorKind::InvalidSpec,
            format!("exec in {id}: empty command"),
        ));
    }
    let mut process = process_spec(c, id, command).await?;
    process.set_terminal(Some(false));

    let exec_id = new_exec_id();
    let fifos = Fifos::new(c, id, &exec_id);
    let io_error =
        |e: std::io::Error| RuntimeError::other(format!("exec {exec_id} in {id}: fifo: {e}"));
    std::fs::create_dir_all(&fifos.dir).map_err(io_error)?;
    let stdout_path = fifos.dir.join("stdout");
    let stderr_path = fifos.dir.join("stderr");
    let (stdout, stdout_keep) = open_fifo(&stdout_path).map_err(io_error)?;
    let (stderr, stderr_keep) = open_fifo(&stderr_path).map_err(io_error)?;
    let stdout_reader = tokio::spawn(read_bounded(stdout));
    let stderr_reader = tokio::spawn(read_bounded(stderr));

    c.tasks()
        .exec(ExecProcessRequest {
            container_id: id.to_string(),
            stdout: stdout_path.to_string_lossy().into_owned(),
            stderr: stderr_path.to_string_lossy().into_owned(),
            spec: Some(crate::typeurl::process_any(&process)?),
            exec_id: exec_id.clone(),
            ..Default::default()
        })
        .await
        .map_err(|s| failed(&format!("exec in container {id}"), s))?;

    let outcome = run(c, id, &exec_id, timeout).await;
    // Our write ends kept early readers from seeing EOF; now the shim's are the last.
    drop((stdout_keep, stderr_keep));
    let drained = tokio::time::timeout(DRAIN_GRACE, async {
        (stdout_reader.await, stderr_reader.await)
    });
    let output = match outcome {
        Ok(code) => match drained.await {
            Ok((Ok(stdout), Ok(stderr))) => Ok(ExecOutput {
                exit_code: code,
                stdout,
                stderr,
            }),
            _ => Err(RuntimeError::other(format!(
                "exec {exec_id} in {id}: output not closed {DRAIN_GRACE:?} after exit"
            ))),
        },
        Err(e) => Err(e),
    };
    delete_process(c, id, &exec_id).await;
    output
}

/// Wait (armed before Start), Start, and the timeout; returns the exit code.
async fn run(
    c: &Containerd,
    id: &str,
    exec_id: &str,
    timeout: Option<Duration>,
) -> Result<i32, RuntimeError> {
    let mut tasks = c.tasks();
    let wait_request = WaitRequest {
        container_id: id.to_string(),
        exec_id: exec_id.to_string(),
    };
    let mut wait = tokio::spawn(async move { tasks.wait(wait_request).await });
    if let Err(status) = c
        .tasks()
        .start(StartRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
        })
        .await
    {
        wait.abort();
        return Err(failed(
            &format!("start exec {exec_id} in container {id}"),
            status,
        ));
    }
    let waited = match timeout {
        Some(limit) => match tokio::time::timeout(limit, &mut wait).await {
            Ok(waited) => waited,
            Err(_) => {
                let kill = c
                    .tasks()
                    .kill(KillRequest {
                        container_id: id.to_string(),
                        exec_id: exec_id.to_string(),
                        signal: libc::SIGKILL as u32,
                        all: false,
                    })
                    .await;
                if let Err(e) = kill {
                    tracing::debug!(exec_id, error = %e.message(), "kill timed-out exec");
                }
                let _ = tokio::time::timeout(DRAIN_GRACE, &mut wait).await;
                wait.abort();
                return Err(RuntimeError::new(
                    RuntimeErrorKind::Timeout,
                    format!("exec {exec_id} in container {id} timed out after {limit:?}"),
                ));
            }
        },
        None => wait.await,
    };
    match waited {
        Ok(Ok(response)) => Ok(response.into_inner().exit_status as i32),
        Ok(Err(status)) => Err(failed(
            &format!("wait for exec {exec_id} in container {id}"),
            status,
        )),
        Err(e) => Err(RuntimeError::other(format!("wait for exec {exec_id}: {e}"))),
    }
}

/// An exec stays registered until deleted, whatever happened to it.
pub(crate) async fn delete_process(c: &Containerd, id: &str, exec_id: &str) {
    let deleted = c
        .tasks()
        .delete_process(DeleteProcessRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
        })
        .await;
    match deleted {
        Err(status) if status.code() != tonic::Code::NotFound => {
            tracing::warn!(container = id, exec_id, error = %status.message(), "delete exec process");
        }
        _ => {}
    }
}

/// Makes a FIFO and opens our read end (non-blocking) and a keep-alive write end.
pub(crate) fn open_fifo(path: &Path) -> std::io::Result<(pipe::Receiver, pipe::Sender)> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    let receiver = pipe::OpenOptions::new().open_receiver(path)?;
    let sender = pipe::OpenOptions::new().open_sender(path)?;
    Ok((receiver, sender))
}

async fn read_bounded(mut receiver: pipe::Receiver) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match receiver.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    out
}
