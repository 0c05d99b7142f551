//! Stopping child processes with a bound on the wait, without sleeping, and
//! reading the end of their logs.

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How a stopped process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited by itself within the grace period.
    Exited(ExitStatus),
    /// It ignored the signal for the whole grace period and was killed.
    Killed,
    /// Waiting for it failed (it was reaped elsewhere).
    Gone,
}

/// Sends `signal` to `child`, waits up to `grace` for it to end, then
/// SIGKILLs it; always reaps it. Blocking: call it from `Drop` or
/// `spawn_blocking`.
pub fn terminate(mut child: Child, signal: Signal, grace: Duration) -> Ended {
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    // `wait` blocks, so it runs on its own thread; the channel gives us a wait
    // on the exit event with a deadline.
    let reaper = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    // An error means it is already dead: the reaper reports that.
    let _ = kill(pid, signal);
    let ended = match rx.recv_timeout(grace) {
        Ok(Ok(status)) => Ended::Exited(status),
        Ok(Err(_)) => Ended::Gone,
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            match rx.recv() {
                Ok(Ok(_)) => Ended::Killed,
                _ => Ended::Gone,
            }
        }
    };
    let _ = reaper.join();
    ended
}

/// Whether a process with this pid exists (a zombie counts as existing).
/// Polls `serving` until it holds (a daemon's socket accepting connections:
/// the readiness a client can see); `false` if `child` exits first or
/// `deadline` passes.
pub async fn wait_serving<F: std::future::Future<Output = bool>>(
    child: &mut Child,
    deadline: Duration,
    mut serving: impl FnMut() -> F,
) -> bool {
    let deadline = tokio::time::Instant::now() + deadline;
    loop {
        if serving().await {
            return true;
        }
        let exited = child.try_wait().ok().flatten().is_some();
        if exited || tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// The last `lines` lines of a log file (empty when it cannot be read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    log_tail_without(path, lines, None)
}

/// Like [`log_tail`], leaving out lines that contain `noise`.
pub(crate) fn log_tail_without(path: &Path, lines: usize, noise: Option<&str>) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text
        .lines()
        .filter(|l| noise.is_none_or(|n| !l.contains(n)))
        .collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
