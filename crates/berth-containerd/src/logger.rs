//! The agent's side of container logs: the stdio URI that makes the shim
//! spawn the logger (the `berth-logger` crate) for a container, and the wait
//! for a dead container's output to be all in its file before its exit is
//! reported.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

pub use berth_logger::{run_logger, LOGGER_SUBCOMMAND};

/// How often the agent checks whether a dead container's logger is done.
const DRAIN_POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// Without its logger to ask, a dead container's log is awaited by its
/// size: a poll every 10 ms, done after 5 without growth. At most 1 s in all.
const SETTLE_POLL: std::time::Duration = std::time::Duration::from_millis(10);
const SETTLE_POLLS: u32 = 5;
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The stdio URI that makes the shim spawn the logger for `log_path`.
pub(crate) fn log_uri(logger_binary: &Path, log_path: &Path) -> String {
    format!(
        "binary://{}?{LOGGER_SUBCOMMAND}={}",
        percent_encode(logger_binary.as_os_str().as_encoded_bytes(), true),
        percent_encode(log_path.as_os_str().as_encoded_bytes(), false)
    )
}

/// URL encoding as Go's `url.Parse` undoes it; `/` stays literal in the path.
fn percent_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Returns once a dead container's output is all in its log file, or after
/// [`SETTLE_LIMIT`]: the logger may still be copying the last output out of
/// the pipe. An exit is reported after this, so that what reads the log at
/// the exit (`logs`, the termination message's fallback) sees the container's
/// last words, as containerd's CRI reports an exit once the task's output is
/// copied. The logger gets no end-of-file before the task is deleted (the
/// shim keeps the pipes' write ends until then), so it is asked instead: its
/// pipes are empty and it holds no lock on the file. Without a logger to ask,
/// the file is watched until it stops growing.
pub(crate) async fn log_settled(path: &Path) {
    let deadline = tokio::time::Instant::now() + SETTLE_LIMIT;
    let logger = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || LoggerPipes::find(Path::new("/proc"), &path))
    };
    if let Ok(Some(logger)) = logger.await {
        while tokio::time::Instant::now() < deadline {
            if logger.drained(path) {
                tracing::debug!(path = %path.display(), "the logger copied all output");
                return;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        tracing::debug!(path = %path.display(), "the logger did not finish copying in time");
        return;
    }
    tracing::debug!(path = %path.display(), "no logger to ask: waiting for the log to stop growing");
    settled_by_size(path, deadline).await;
}

/// Whether a `berth logger` writes `log_path` (the shim's or berth's own).
pub(crate) fn running(log_path: &Path) -> bool {
    LoggerPipes::find(Path::new("/proc"), log_path).is_some()
}

/// Returns once the file's size stayed the same over [`SETTLE_POLLS`]
/// polls, or at `deadline`.
async fn settled_by_size(path: &Path, deadline: tokio::time::Instant) {
    let mut last = None;
    let mut unchanged = 0;
    while tokio::time::Instant::now() < deadline {
        let size = std::fs::metadata(path).map(|m| m.len()).ok();
        if size == last {
            unchanged += 1;
            if unchanged >= SETTLE_POLLS {
                return;
            }
        } else {
            (last, unchanged) = (size, 0);
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// The pipes a running `berth logger` copies a container's output from,
/// opened through `/proc`.
struct LoggerPipes {
    pipes: Vec<File>,
}

impl LoggerPipes {
    /// Looks for the logger of `log_path` among the processes under `proc`.
    fn find(proc: &Path, log_path: &Path) -> Option<LoggerPipes> {
        use std::os::unix::ffi::OsStrExt;
        let wanted = [
            LOGGER_SUBCOMMAND.as_bytes(),
            log_path.as_os_str().as_bytes(),
        ];
        for entry in std::fs::read_dir(proc).ok()?.flatten() {
            if !entry.file_name().as_bytes().iter().all(u8::is_ascii_digit) {
                continue;
            }
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).skip(1).take(2).collect();
            if args != wanted {
                continue;
            }
            // Those of fds 3 and 4 still open and still the pipes.
            let pipes = ["3", "4"]
                .iter()
                .filter_map(|fd| {
                    let pipe = OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NONBLOCK)
                        .open(entry.path().join("fd").join(fd))
                        .ok()?;
                    pipe.metadata().ok()?.file_type().is_fifo().then_some(pipe)
                })
                .collect();
            return Some(LoggerPipes { pipes });
        }
        None
    }

    /// Whether all the output is in the file: the logger is not copying
    /// (the file's lock is free) and its pipes hold nothing more.
    fn drained(&self, log_path: &Path) -> bool {
        let Ok(file) = File::open(log_path) else {
            return true;
        };
        if let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
            return false;
        }
        !self
            .pipes
            .iter()
            .any(|pipe| unread(pipe).is_ok_and(|n| n > 0))
    }
}

/// How many bytes a pipe holds.
#[allow(unsafe_code)]
fn unread(pipe: &File) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points to
    // `n`, alive and exclusively borrowed for the call; the fd is open
    // (borrowed from `pipe`).
    let rc = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn the_agent_waits_for_the_lock_and_for_empty_pipes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "").unwrap();
        let (read, write) = nix::unistd::pipe().unwrap();
        let (mut read, mut write) = (File::from(read), File::from(write));
        let logger = LoggerPipes {
            pipes: vec![read.try_clone().unwrap()],
        };
        assert!(logger.drained(&path));
        write.write_all(b"last words").unwrap();
        assert!(!logger.drained(&path), "output still in the pipe");
        // The logger read it and holds the lock while it writes.
        let copying = File::open(&path).unwrap();
        copying.lock().unwrap();
        read.read_exact(&mut [0; 10]).unwrap();
        assert!(!logger.drained(&path), "the logger is still copying");
        copying.unlock().unwrap();
        assert!(logger.drained(&path));
    }

    #[test]
    fn the_logger_is_found_by_its_command_line() {
        let proc = tempfile::tempdir().unwrap();
        let (read, _write) = nix::unistd::pipe().unwrap();
        let pipe = File::from(read);
        let own_fd = format!("/proc/self/fd/{}", pipe.as_raw_fd());
        let process = |pid: &str, cmdline: &[u8]| {
            let dir = proc.path().join(pid);
            std::fs::create_dir_all(dir.join("fd")).unwrap();
            std::fs::write(dir.join("cmdline"), cmdline).unwrap();
            std::os::unix::fs::symlink(&own_fd, dir.join("fd/3")).unwrap();
            // fd 4 is no pipe: left out.
            std::os::unix::fs::symlink("/dev/null", dir.join("fd/4")).unwrap();
        };
        process("7", b"/usr/bin/berth\0logger\0/var/log/pods/a/c/1.log\0");
        process("8", b"/usr/bin/berth\0logger\0/var/log/pods/a/c/0.log\0");
        process("self", b"/usr/bin/berth\0logger\0/var/log/pods/a/c/0.log\0");
        let found = LoggerPipes::find(proc.path(), Path::new("/var/log/pods/a/c/0.log"));
        assert_eq!(found.map(|f| f.pipes.len()), Some(1));
        assert!(LoggerPipes::find(proc.path(), Path::new("/var/log/pods/a/c/2.log")).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_log_is_read_once_it_stops_growing() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "").unwrap();
        // A logger still copying: three more writes, 15 ms apart.
        let writer = {
            let path = path.clone();
            tokio::spawn(async move {
                for _ in 0..3 {
                    tokio::time::sleep(std::time::Duration::from_millis(15)).await;
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&path)
                        .unwrap();
                    f.write_all(b"more\n").unwrap();
                }
            })
        };
        let began = tokio::time::Instant::now();
        settled_by_size(&path, began + SETTLE_LIMIT).await;
        let took = began.elapsed();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "more\n".repeat(3));
        assert!(
            took >= std::time::Duration::from_millis(45 + 40),
            "{took:?}"
        );
        assert!(took < SETTLE_LIMIT, "{took:?}");
        writer.await.unwrap();

        // A file that never stops growing is read at the limit.
        let endless = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                f.write_all(b"x").unwrap();
            }
        });
        let began = tokio::time::Instant::now();
        settled_by_size(&dir.path().join("0.log"), began + SETTLE_LIMIT).await;
        assert!(began.elapsed() >= SETTLE_LIMIT);
        endless.abort();
    }

    #[test]
    fn the_log_uri_has_one_percent_encoded_key() {
        let uri = log_uri(
            Path::new("/usr/bin/berth"),
            Path::new("/var/log/pods/ns_p q_u/c/0.log"),
        );
        assert_eq!(
            uri,
            "binary:///usr/bin/berth?logger=%2Fvar%2Flog%2Fpods%2Fns_p%20q_u%2Fc%2F0.log"
        );
    }
}
