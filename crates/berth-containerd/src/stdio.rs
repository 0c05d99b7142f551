//! A container's stdin and terminal (core/v1 `stdin`, `stdinOnce`, `tty`),
//! as containerd's CRI plugin gives them, with the CRI log still written by
//! `berth logger` outside the agent, so that logs survive agent restarts.
//!
//! - `tty`: the shim makes a console and copies it to the `binary://`
//!   logger (the runc shim's `CopyConsole`), so the output is logged as
//!   stdout; stdin, when asked for, is a FIFO the shim copies into the console.
//! - `stdin` without `tty`: the shim's `binary://` IO gives the process no
//!   stdin (it reads `/dev/null`). Such a container's stdio are three FIFOs
//!   instead (containerd's `fifo` IO), and berth spawns the logger itself on
//!   the two output FIFOs, in a process group of its own: it is not the
//!   agent's to take down, and lives on across agent restarts as the
//!   shim's loggers do.
//!
//! The FIFOs live in `<root>/stdio/<container id>/`. The shim holds a write
//! end of stdin for as long as the task lives, so the container never reads
//! end-of-file when an attach session or the agent goes away; only CloseIO
//! (`stdinOnce`) ends it. A restarted agent starts a logger of its own
//! again if it is gone (`restart_logger`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_runtime::{ContainerStdio, ExecWriter, RuntimeError, RuntimeErrorKind};
use containerd_client::services::v1::{CloseIoRequest, ResizePtyRequest};

use crate::task::failed;
use crate::Containerd;

/// The container's `stdin`, `stdinOnce` and `tty`, as a comma list.
pub(crate) const STDIO_LABEL: &str = "io.berth.container.stdio";

/// The label value for `stdio`; `None` for a container with neither.
pub(crate) fn label(stdio: &ContainerStdio) -> Option<String> {
    let words: Vec<&str> = [
        (stdio.stdin, "stdin"),
        (stdio.stdin_once, "stdinOnce"),
        (stdio.tty, "tty"),
    ]
    .into_iter()
    .filter_map(|(set, word)| set.then_some(word))
    .collect();
    (!words.is_empty()).then(|| words.join(","))
}

/// What [`label`] wrote.
pub(crate) fn from_labels(labels: &HashMap<String, String>) -> ContainerStdio {
    let words: Vec<&str> = labels
        .get(STDIO_LABEL)
        .map(|v| v.split(',').collect())
        .unwrap_or_default();
    ContainerStdio {
        stdin: words.contains(&"stdin"),
        stdin_once: words.contains(&"stdinOnce"),
        tty: words.contains(&"tty"),
    }
}

/// The directory of a container's FIFOs.
pub(crate) fn dir(c: &Containerd, id: &str) -> PathBuf {
    c.config.root_dir.join("stdio").join(id)
}

/// The stdio of a task create, and the logger berth spawned for it.
pub(crate) struct TaskIo {
    pub(crate) stdin: String,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) terminal: bool,
    logger: Option<tokio::process::Child>,
}

/// How the streams of a container are wired, from its settings.
#[derive(Debug, PartialEq, Eq)]
enum Wiring {
    /// Output to the shim's logger (`binary://`), no stdin.
    Binary,
    /// A console to the shim's logger, stdin a FIFO when asked for.
    Console { stdin: bool },
    /// Three FIFOs, the output ones read by a logger berth spawns.
    Fifos,
}

fn wiring(stdio: &ContainerStdio) -> Wiring {
    match (stdio.tty, stdio.stdin) {
        (true, stdin) => Wiring::Console { stdin },
        (false, true) => Wiring::Fifos,
        (false, false) => Wiring::Binary,
    }
}

impl TaskIo {
    /// No stdio at all (the pause).
    pub(crate) fn null() -> TaskIo {
        TaskIo {
            stdin: String::new(),
            stdout: String::new(),
            stderr: String::new(),
            terminal: false,
            logger: None,
        }
    }

    /// Makes the FIFOs (and the logger) the task of container `id` needs.
    pub(crate) fn prepare(
        c: &Containerd,
        id: &str,
        stdio: &ContainerStdio,
        log_path: Option<&Path>,
    ) -> Result<TaskIo, RuntimeError> {
        let uri = log_path.map(|path| crate::logger::log_uri(&c.config.logger_binary, path));
        let mut io = TaskIo {
            stdin: String::new(),
            stdout: uri.clone().unwrap_or_default(),
            stderr: uri.unwrap_or_default(),
            terminal: false,
            logger: None,
        };
        let wiring = wiring(stdio);
        if wiring == Wiring::Binary {
            return Ok(io);
        }
        let dir = dir(c, id);
        let io_error = |e: std::io::Error| {
            RuntimeError::other(format!(
                "container {id}: stdio FIFOs in {}: {e}",
                dir.display()
            ))
        };
        berth_runtime::files::create_dir(&dir, 0o700).map_err(io_error)?;
        let fifo = |name: &str| -> Result<String, RuntimeError> {
            let path = dir.join(name);
            match nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(io_error(e.into())),
            }
            Ok(path.to_string_lossy().into_owned())
        };
        if stdio.stdin {
            io.stdin = fifo("stdin")?;
        }
        match wiring {
            Wiring::Console { .. } => {
                io.terminal = true;
                // The console is one stream: CRI passes no stderr.
                io.stderr = String::new();
            }
            Wiring::Fifos => {
                let (stdout, stderr) = (fifo("stdout")?, fifo("stderr")?);
                if let Some(log_path) = log_path {
                    io.logger = Some(spawn_logger(c, id, log_path, &stdout, &stderr)?);
                }
                (io.stdout, io.stderr) = (stdout, stderr);
            }
            Wiring::Binary => {}
        }
        Ok(io)
    }

    /// The task exists with this stdio: the logger is on its own now.
    pub(crate) fn created(mut self) {
        if let Some(mut logger) = self.logger.take() {
            // Reaped while this agent runs; once it is gone, by init.
            tokio::spawn(async move {
                let _ = logger.wait().await;
            });
        }
    }

    /// The task was not made with this stdio (it failed, or one made
    /// before serves): a logger spawned for it would copy nothing, or
    /// copy the other one's output twice.
    pub(crate) async fn abandoned(mut self) {
        if let Some(mut logger) = self.logger.take() {
            let _ = logger.kill().await;
        }
    }
}

/// Spawns the logger of a running container with stdin and no terminal
/// again, when it is gone (killed): the shim holds the output FIFOs open,
/// so the output waits in them, and the container would block once they
/// are full. At agent start, before any pod starts.
pub(crate) fn restart_logger(c: &Containerd, id: &str, labels: &HashMap<String, String>) {
    let Some(log_path) = labels
        .get(crate::container::LOG_PATH_LABEL)
        .filter(|p| !p.is_empty())
        .map(Path::new)
    else {
        return;
    };
    if wiring(&from_labels(labels)) != Wiring::Fifos || crate::logger::running(log_path) {
        return;
    }
    let dir = dir(c, id);
    let fifo = |name: &str| dir.join(name).to_string_lossy().into_owned();
    match spawn_logger(c, id, log_path, &fifo("stdout"), &fifo("stderr")) {
        Ok(logger) => {
            tracing::info!(
                container = id,
                "the container's logger was gone: started again"
            );
            TaskIo {
                logger: Some(logger),
                ..TaskIo::null()
            }
            .created();
        }
        Err(e) => tracing::warn!(container = id, error = %e, "restart the logger"),
    }
}

/// `berth logger LOG STDOUT STDERR`: the logger the shim would spawn, on
/// FIFOs, with the environment the shim gives it (reclaim finds its
/// container by it).
fn spawn_logger(
    c: &Containerd,
    id: &str,
    log_path: &Path,
    stdout: &str,
    stderr: &str,
) -> Result<tokio::process::Child, RuntimeError> {
    tokio::process::Command::new(&c.config.logger_binary)
        .arg(crate::logger::LOGGER_SUBCOMMAND)
        .arg(log_path)
        .arg(stdout)
        .arg(stderr)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", &c.config.namespace)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        // Not the agent's: a logger outlives it.
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| RuntimeError::other(format!("container {id}: spawn the logger: {e}")))
}

/// Opens the stdin container `id` kept open, for an attach session.
pub(crate) async fn open_stdin(c: &Containerd, id: &str) -> Result<ExecWriter, RuntimeError> {
    let record = crate::container::get(c, id)
        .await?
        .ok_or_else(|| RuntimeError::not_found(format!("container {id} not found")))?;
    if !from_labels(&record.labels).stdin {
        return Err(RuntimeError::new(
            RuntimeErrorKind::InvalidSpec,
            format!("container {id} has no stdin"),
        ));
    }
    let path = dir(c, id).join("stdin");
    // Write-only without blocking: only the running task's shim reads it.
    let sender = tokio::net::unix::pipe::OpenOptions::new()
        .open_sender(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENXIO) | Some(libc::ENOENT) => {
                RuntimeError::not_found(format!("container {id} is not running"))
            }
            _ => RuntimeError::other(format!("container {id}: open stdin: {e}")),
        })?;
    Ok(Box::new(sender))
}

/// CloseIO: the container's process reads the end of its stdin.
pub(crate) async fn close_stdin(c: &Containerd, id: &str) -> Result<(), RuntimeError> {
    c.tasks()
        .close_io(CloseIoRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
            stdin: true,
        })
        .await
        .map(drop)
        .map_err(|s| failed(&format!("close stdin of container {id}"), s))
}

pub(crate) async fn resize(
    c: &Containerd,
    id: &str,
    width: u16,
    height: u16,
) -> Result<(), RuntimeError> {
    c.tasks()
        .resize_pty(ResizePtyRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
            width: u32::from(width),
            height: u32::from(height),
        })
        .await
        .map(drop)
        .map_err(|s| failed(&format!("resize the terminal of container {id}"), s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdio(stdin: bool, stdin_once: bool, tty: bool) -> ContainerStdio {
        ContainerStdio {
            stdin,
            stdin_once,
            tty,
        }
    }

    #[test]
    fn the_label_keeps_every_setting() {
        for settings in [
            stdio(true, true, true),
            stdio(true, false, false),
            stdio(false, false, true),
            stdio(true, true, false),
        ] {
            let labels = HashMap::from([(STDIO_LABEL.to_string(), label(&settings).unwrap())]);
            assert_eq!(from_labels(&labels), settings);
        }
        assert_eq!(label(&ContainerStdio::default()), None);
        assert_eq!(from_labels(&HashMap::new()), ContainerStdio::default());
    }

    #[test]
    fn only_stdin_without_a_terminal_needs_fifos_for_the_output() {
        assert_eq!(wiring(&stdio(false, false, false)), Wiring::Binary);
        assert_eq!(
            wiring(&stdio(false, false, true)),
            Wiring::Console { stdin: false }
        );
        assert_eq!(
            wiring(&stdio(true, true, true)),
            Wiring::Console { stdin: true }
        );
        assert_eq!(wiring(&stdio(true, false, false)), Wiring::Fifos);
    }
}
