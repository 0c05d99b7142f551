//! Container logs in the CRI format, written by a small process the shim spawns.
//!
//! A task's stdio is `binary://<berth>?logger=<path>`: the shim runs
//! `berth logger <path>` with the container's stdout on fd 3, stderr on fd 4
//! and a "ready" pipe on fd 5. It lives in the shim's process tree, so logs keep
//! flowing across agent restarts.
//!
//! When the agent rotates the file (renames it and puts a new one in its
//! place), the logger finds the path no longer names its open file before
//! its next write, and reopens it: CRI's ReopenContainerLog, without a call.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;

/// The hidden subcommand of the `berth` binary that runs [`run_logger`]. The
/// shim passes the query key as the first argument, so the key is this name.
pub const LOGGER_SUBCOMMAND: &str = "logger";

/// Longest log entry before a line is split into partial fragments (containerd's default).
const MAX_ENTRY: usize = 16 * 1024;

/// How a dead container's log is awaited: a poll every 10 ms, done after 5
/// without growth, at most 1 s in all.
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

/// CRI's tag: the entry ends a line (`F`) or continues in the next one (`P`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Full,
    Partial,
}

impl Tag {
    fn as_str(self) -> &'static str {
        match self {
            Tag::Full => "F",
            Tag::Partial => "P",
        }
    }
}

/// Cuts a byte stream into CRI entries: one per line, lines longer than the
/// maximum in `P` fragments ending with an `F`.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            pending: Vec::new(),
        }
    }

    /// Feeds bytes; returns the entries they complete.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<(Tag, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(newline) = data.iter().position(|&b| b == b'\n') {
            self.pending.extend_from_slice(&data[..newline]);
            data = &data[newline + 1..];
            self.flush_partials(&mut out);
            let mut line = std::mem::take(&mut self.pending);
            // Like Go's bufio ReadLine, which containerd uses: "\r\n" ends a line too.
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            out.push((Tag::Full, line));
        }
        self.pending.extend_from_slice(data);
        self.flush_partials(&mut out);
        out
    }

    /// The end of the stream. A last line without a newline is written as a
    /// partial entry, exactly as containerd's CRI logger does (it never saw the
    /// line end); readers show it all the same.
    pub fn finish(&mut self) -> Option<(Tag, Vec<u8>)> {
        (!self.pending.is_empty()).then(|| (Tag::Partial, std::mem::take(&mut self.pending)))
    }

    fn flush_partials(&mut self, out: &mut Vec<(Tag, Vec<u8>)>) {
        while self.pending.len() > self.max {
            let rest = self.pending.split_off(self.max);
            out.push((Tag::Partial, std::mem::replace(&mut self.pending, rest)));
        }
    }
}

/// One CRI log line: `<RFC3339Nano UTC> <stream> <F|P> <msg>\n`.
pub fn cri_line(time: Timestamp, stream: &str, tag: Tag, msg: &[u8]) -> Vec<u8> {
    let mut line = format!("{time} {stream} {} ", tag.as_str()).into_bytes();
    line.extend_from_slice(msg);
    line.push(b'\n');
    line
}

/// The `berth logger <path>` entry point: copies fd 3 (stdout) and fd 4
/// (stderr) into `log_path` until both reach EOF.
pub fn run_logger(log_path: &Path) -> io::Result<()> {
    ignore_sigterm()?;

    if let Some(parent) = log_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = Arc::new(Mutex::new(LiveFile::open(log_path)?));
    let stdout = inherited(3);
    let stderr = inherited(4);
    // Ready: the shim starts the container once fd 5 is closed.
    let _ = nix::unistd::close(5);

    let copiers: Vec<_> = [(stdout, "stdout"), (stderr, "stderr")]
        .into_iter()
        .map(|(source, stream)| {
            let file = Arc::clone(&file);
            std::thread::spawn(move || copy_stream(source, stream, &file))
        })
        .collect();
    let mut result = Ok(());
    for copier in copiers {
        let outcome = copier
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("log copier panicked")));
        if result.is_ok() {
            result = outcome;
        }
    }
    result
}

/// The shim sends SIGTERM when the task goes; draining to EOF matters more.
/// Process-wide, because the caller may already run other threads.
#[allow(unsafe_code)]
fn ignore_sigterm() -> io::Result<()> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_IGN installs no handler code, so nothing runs in signal
    // context and no async-signal-safety rule can be broken.
    unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) }
        .map(drop)
        .map_err(io::Error::from)
}

/// A descriptor the shim passed in.
#[allow(unsafe_code)]
fn inherited(fd: RawFd) -> File {
    // SAFETY: fds 3 and 4 are the pipes the shim hands to the logger process;
    // nothing else in this process opens or owns them, so taking ownership once
    // is sound.
    unsafe { File::from_raw_fd(fd) }
}

/// The log file at a path that log rotation may move away.
struct LiveFile {
    path: PathBuf,
    file: File,
    /// The open file's (device, inode), compared with the path's before
    /// each write; `None` if it could not be read (then every write reopens).
    identity: Option<(u64, u64)>,
}

impl LiveFile {
    fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        let identity = file.metadata().ok().map(|m| (m.dev(), m.ino()));
        Ok(Self {
            path: path.to_owned(),
            file,
            identity,
        })
    }

    /// Appends `bytes` to the file the path names now: after a rotation,
    /// the new one. If that cannot be opened, the output still goes to the
    /// old file rather than being lost.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.moved() {
            match Self::open(&self.path) {
                Ok(fresh) => *self = fresh,
                Err(e) => tracing::debug!(path = %self.path.display(), "reopen log: {e}"),
            }
        }
        self.file.write_all(bytes)
    }

    fn moved(&self) -> bool {
        let named = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        named.ok() != self.identity || self.identity.is_none()
    }
}

/// Returns once the log file of a dead container has stopped growing (its
/// size the same over [`SETTLE_POLLS`] polls), or after [`SETTLE_LIMIT`]: the
/// logger may still be copying the last output out of the pipe. It gets no
/// end-of-file before the task is deleted (the shim keeps the pipes' write
/// ends until then), so the file itself is watched. An exit is reported
/// after this, so that what reads the log at the exit (`logs`, the
/// termination message's fallback) sees the container's last words, as
/// containerd's CRI reports an exit once the task's output is copied.
pub(crate) async fn log_settled(path: &Path) {
    let deadline = tokio::time::Instant::now() + SETTLE_LIMIT;
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

fn copy_stream(mut source: File, stream: &str, file: &Mutex<LiveFile>) -> io::Result<()> {
    let mut splitter = LineSplitter::new(MAX_ENTRY);
    let mut buf = vec![0u8; 32 * 1024];
    let write = |entries: Vec<(Tag, Vec<u8>)>| -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now();
        let mut out = Vec::new();
        for (tag, msg) in entries {
            out.extend(cri_line(now, stream, tag, &msg));
        }
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        file.append(&out)
    };
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        write(splitter.push(&buf[..n]))?;
    }
    write(splitter.finish().into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(splitter: &mut LineSplitter, data: &[u8]) -> Vec<(Tag, String)> {
        splitter
            .push(data)
            .into_iter()
            .map(|(t, m)| (t, String::from_utf8(m).unwrap()))
            .collect()
    }

    #[test]
    fn lines_become_full_entries_across_reads() {
        let mut s = LineSplitter::new(16);
        assert_eq!(
            entries(&mut s, b"hello\nwor"),
            vec![(Tag::Full, "hello".into())]
        );
        assert_eq!(
            entries(&mut s, b"ld\r\n\nx"),
            vec![(Tag::Full, "world".into()), (Tag::Full, "".into())]
        );
        assert_eq!(s.finish(), Some((Tag::Partial, b"x".to_vec())));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn long_lines_split_into_partials_with_a_final_full() {
        let mut s = LineSplitter::new(4);
        assert_eq!(
            entries(&mut s, b"abcdefghij\n"),
            vec![
                (Tag::Partial, "abcd".into()),
                (Tag::Partial, "efgh".into()),
                (Tag::Full, "ij".into())
            ]
        );
        // Exactly the maximum is still one full entry.
        assert_eq!(entries(&mut s, b"abcd\n"), vec![(Tag::Full, "abcd".into())]);
        // Partials are emitted as soon as the maximum is passed, not at the newline.
        assert_eq!(
            entries(&mut s, b"abcde"),
            vec![(Tag::Partial, "abcd".into())]
        );
        assert_eq!(entries(&mut s, b"\n"), vec![(Tag::Full, "e".into())]);
    }

    #[test]
    fn a_rotated_file_is_reopened_before_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut live = LiveFile::open(&path).unwrap();
        live.append(b"before\n").unwrap();
        let rotated = dir.path().join("0.log.20260101-000000");
        std::fs::rename(&path, &rotated).unwrap();
        // Gone: the logger makes the new file itself.
        live.append(b"after\n").unwrap();
        // Replaced by the rotator: the logger appends to the new one.
        std::fs::rename(&path, dir.path().join("second")).unwrap();
        std::fs::write(&path, "").unwrap();
        live.append(b"third\n").unwrap();
        live.append(b"fourth\n").unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&rotated), "before\n");
        assert_eq!(read(&dir.path().join("second")), "after\n");
        assert_eq!(read(&path), "third\nfourth\n");
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
        log_settled(&path).await;
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
        log_settled(&dir.path().join("0.log")).await;
        assert!(began.elapsed() >= SETTLE_LIMIT);
        endless.abort();
    }

    #[test]
    fn cri_lines_have_time_stream_tag_and_message() {
        let time: Timestamp = "2024-05-01T10:11:12.5Z".parse().unwrap();
        assert_eq!(
            cri_line(time, "stdout", Tag::Full, b"hi there"),
            b"2024-05-01T10:11:12.5Z stdout F hi there\n"
        );
        let time: Timestamp = "2024-05-01T10:11:12.123456789Z".parse().unwrap();
        assert_eq!(
            cri_line(time, "stderr", Tag::Partial, b""),
            b"2024-05-01T10:11:12.123456789Z stderr P \n"
        );
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
