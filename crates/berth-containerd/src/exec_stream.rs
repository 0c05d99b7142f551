//! Streamed exec: a process in a running container whose stdin, stdout and
//! stderr (or one pseudo-terminal) are FIFOs handed to the caller, as the
//! CRI plugin's `Exec` streams them. A task of its own follows the process:
//! it resizes the terminal, closes stdin, kills the process when the caller
//! lets go of the session early, and deletes it from the task at the end.

use std::time::Duration;

use berth_runtime::{ExecSession, ExecSignal, ExecStreamRequest, RuntimeError, RuntimeErrorKind};
use containerd_client::services::v1::{
    CloseIoRequest, ExecProcessRequest, KillRequest, ResizePtyRequest, StartRequest, WaitRequest,
};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

use crate::exec::{delete_process, new_exec_id, open_fifo, process_spec, Fifos};
use crate::task::failed;
use crate::Containerd;

/// How long a killed exec may take to be reported gone.
const KILL_GRACE: Duration = Duration::from_secs(5);

pub(crate) async fn exec_stream(
    c: &Containerd,
    id: &str,
    request: &ExecStreamRequest,
) -> Result<ExecSession, RuntimeError> {
    if request.command.is_empty() {
        return Err(RuntimeError::new(
            RuntimeErrorKind::InvalidSpec,
            format!("exec in {id}: empty command"),
        ));
    }
    let mut process = process_spec(c, id, &request.command).await?;
    process.set_terminal(Some(request.tty));

    let exec_id = new_exec_id();
    let fifos = Fifos::new(c, id, &exec_id);
    let io_error =
        |e: std::io::Error| RuntimeError::other(format!("exec {exec_id} in {id}: fifo: {e}"));
    std::fs::create_dir_all(&fifos.dir).map_err(io_error)?;
    let stdin_path = fifos.dir.join("stdin");
    let stdout_path = fifos.dir.join("stdout");
    let stderr_path = fifos.dir.join("stderr");
    let stdin = if request.stdin {
        nix::unistd::mkfifo(&stdin_path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| io_error(e.into()))?;
        // Read-write, so the open needs no reader yet; the shim sees EOF
        // once this, the only writer, is dropped.
        let sender = pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(&stdin_path)
            .map_err(io_error)?;
        Some(sender)
    } else {
        None
    };
    let (stdout, stdout_keep) = open_fifo(&stdout_path).map_err(io_error)?;
    let stderr = if request.tty {
        None
    } else {
        Some(open_fifo(&stderr_path).map_err(io_error)?)
    };
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();

    c.tasks()
        .exec(ExecProcessRequest {
            container_id: id.to_string(),
            stdin: stdin
                .as_ref()
                .map(|_| path(&stdin_path))
                .unwrap_or_default(),
            stdout: path(&stdout_path),
            stderr: stderr
                .as_ref()
                .map(|_| path(&stderr_path))
                .unwrap_or_default(),
            terminal: request.tty,
            spec: Some(crate::typeurl::process_any(&process)?),
            exec_id: exec_id.clone(),
        })
        .await
        .map_err(|s| failed(&format!("exec in container {id}"), s))?;

    // Wait is armed before Start, so an exit that comes at once is seen.
    let mut tasks = c.tasks();
    let wait_request = WaitRequest {
        container_id: id.to_string(),
        exec_id: exec_id.clone(),
    };
    let wait = tokio::spawn(async move { tasks.wait(wait_request).await });
    let started = c
        .tasks()
        .start(StartRequest {
            container_id: id.to_string(),
            exec_id: exec_id.clone(),
        })
        .await;
    if let Err(status) = started {
        wait.abort();
        delete_process(c, id, &exec_id).await;
        return Err(failed(
            &format!("start exec {exec_id} in container {id}"),
            status,
        ));
    }
    // The shim holds the write ends now: output ends when the process is gone.
    drop(stdout_keep);
    let (stderr, stderr_keep) = stderr.unzip();
    drop(stderr_keep);

    let (control, signals) = mpsc::unbounded_channel();
    let (exit_sender, exit) = oneshot::channel();
    let follow = Follow {
        c: c.clone(),
        id: id.to_string(),
        exec_id,
        _fifos: fifos,
    };
    tokio::spawn(follow.run(wait, signals, exit_sender));
    Ok(ExecSession {
        stdin: stdin.map(|s| Box::new(s) as _),
        stdout: Box::new(stdout),
        stderr: stderr.map(|s| Box::new(s) as _),
        control,
        exit,
    })
}

type Waited = Result<
    Result<tonic::Response<containerd_client::services::v1::WaitResponse>, tonic::Status>,
    tokio::task::JoinError,
>;

/// The task that follows one exec process to its end.
struct Follow {
    c: Containerd,
    id: String,
    exec_id: String,
    /// Removed once the process is deleted.
    _fifos: Fifos,
}

impl Follow {
    async fn run(
        self,
        mut wait: tokio::task::JoinHandle<
            Result<tonic::Response<containerd_client::services::v1::WaitResponse>, tonic::Status>,
        >,
        mut signals: mpsc::UnboundedReceiver<ExecSignal>,
        exit: oneshot::Sender<Result<i32, RuntimeError>>,
    ) {
        let outcome = loop {
            tokio::select! {
                waited = &mut wait => break self.exit_code(waited),
                signal = signals.recv() => match signal {
                    Some(signal) => self.signal(signal).await,
                    None => {
                        // The caller went away: nothing may keep running for it.
                        self.kill().await;
                        let waited = tokio::time::timeout(KILL_GRACE, &mut wait).await;
                        wait.abort();
                        break match waited {
                            Ok(waited) => self.exit_code(waited),
                            Err(_) => Err(RuntimeError::other(format!(
                                "exec {} in container {}: not gone {KILL_GRACE:?} after SIGKILL",
                                self.exec_id, self.id
                            ))),
                        };
                    }
                },
            }
        };
        delete_process(&self.c, &self.id, &self.exec_id).await;
        let _ = exit.send(outcome);
    }

    fn exit_code(&self, waited: Waited) -> Result<i32, RuntimeError> {
        match waited {
            Ok(Ok(response)) => Ok(response.into_inner().exit_status as i32),
            Ok(Err(status)) => Err(failed(
                &format!("wait for exec {} in container {}", self.exec_id, self.id),
                status,
            )),
            Err(e) => Err(RuntimeError::other(format!(
                "wait for exec {}: {e}",
                self.exec_id
            ))),
        }
    }

    async fn signal(&self, signal: ExecSignal) {
        let (container_id, exec_id) = (self.id.clone(), self.exec_id.clone());
        let result = match signal {
            ExecSignal::Resize { width, height } => self
                .c
                .tasks()
                .resize_pty(ResizePtyRequest {
                    container_id,
                    exec_id,
                    width: width.into(),
                    height: height.into(),
                })
                .await
                .map(drop),
            ExecSignal::CloseStdin => self
                .c
                .tasks()
                .close_io(CloseIoRequest {
                    container_id,
                    exec_id,
                    stdin: true,
                })
                .await
                .map(drop),
        };
        if let Err(status) = result {
            tracing::debug!(exec_id = self.exec_id, ?signal, error = %status.message(), "exec signal");
        }
    }

    async fn kill(&self) {
        let killed = self
            .c
            .tasks()
            .kill(KillRequest {
                container_id: self.id.clone(),
                exec_id: self.exec_id.clone(),
                signal: libc::SIGKILL as u32,
                all: false,
            })
            .await;
        if let Err(status) = killed {
            tracing::debug!(exec_id = self.exec_id, error = %status.message(), "kill abandoned exec");
        }
    }
}
