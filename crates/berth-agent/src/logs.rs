//! Reading container logs in the CRI file format, as `kubectl logs` shows
//! them, a bounded chunk at a time: memory does not grow with the log.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Notify;

pub use berth_api::cri_log::{LogRenderer, RenderOptions};

/// How much of the file one [`LogReader::read_chunk`] reads.
pub const CHUNK: usize = 64 * 1024;

/// What one [`LogReader::read_chunk`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Read this many bytes of the file (its output may be empty).
    Read(usize),
    /// At the end of the file for now.
    End,
    /// `limitBytes` is used up: nothing more will be written.
    Full,
}

/// Reads a log file incrementally from where it stopped.
#[derive(Debug)]
pub struct LogReader {
    path: PathBuf,
    file: File,
    offset: u64,
    /// Where reading stops, if it stops before the end the file grows to.
    end: Option<u64>,
    renderer: LogRenderer,
    buf: Vec<u8>,
}

impl LogReader {
    /// Opens the log at its start, or where its last `tail_lines` lines begin.
    /// Unless it will `follow` the log, it reads no further than where the
    /// file ends now: a read that does not follow shows the log as it was
    /// when asked for, so its last `tail_lines` lines are that many even
    /// while more are written.
    pub fn open(
        path: &Path,
        options: RenderOptions,
        tail_lines: Option<u64>,
        follow: bool,
    ) -> std::io::Result<LogReader> {
        let mut file = File::open(path)?;
        let size = file.seek(SeekFrom::End(0))?;
        let offset = match tail_lines {
            Some(lines) => berth_api::cri_log::tail_start(&mut file, lines, u64::MAX)?,
            None => 0,
        };
        Ok(LogReader {
            path: path.to_owned(),
            file,
            offset,
            end: (!follow).then_some(size),
            renderer: LogRenderer::new(options),
            buf: vec![0; CHUNK],
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path now names another file than the one being read:
    /// the log was rotated, and what follows is in the new file.
    pub fn rotated(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let (Ok(named), Ok(open)) = (std::fs::metadata(&self.path), self.file.metadata()) else {
            return false;
        };
        (named.dev(), named.ino()) != (open.dev(), open.ino())
    }

    /// Goes on in the file the path names now, from its start. A fragment
    /// shown from the old file is continued by the new one's lines.
    pub fn reopen(&mut self) -> std::io::Result<()> {
        self.file = File::open(&self.path)?;
        self.offset = 0;
        self.renderer.forget_unterminated();
        Ok(())
    }

    /// Reads at most [`CHUNK`] bytes past where it stopped, and appends what
    /// they show to `out`.
    pub fn read_chunk(&mut self, out: &mut Vec<u8>) -> std::io::Result<Progress> {
        if self.renderer.is_full() {
            return Ok(Progress::Full);
        }
        if self.file.metadata()?.len() < self.offset {
            // Truncated in place: start over.
            self.offset = 0;
            self.renderer.forget_unterminated();
        }
        let want = match self.end {
            Some(end) => self.buf.len().min(end.saturating_sub(self.offset) as usize),
            None => self.buf.len(),
        };
        if want == 0 {
            return Ok(Progress::End);
        }
        self.file.seek(SeekFrom::Start(self.offset))?;
        let n = loop {
            match self.file.read(&mut self.buf[..want]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                result => break result?,
            }
        };
        if n == 0 {
            return Ok(Progress::End);
        }
        self.offset += n as u64;
        self.renderer.feed(&self.buf[..n], out);
        Ok(if self.renderer.is_full() {
            Progress::Full
        } else {
            Progress::Read(n)
        })
    }

    /// When no more will be written: a last file line without its newline
    /// is shown as it is.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.renderer.finish(out);
    }
}

/// Wakes a follower when a log file changes (inotify via `notify`).
/// Callers still poll on a timer: the writer exiting changes nothing in the file.
pub struct FileWatch {
    changed: Arc<Notify>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl FileWatch {
    /// Watches `path`; if inotify is unavailable the follower relies on its timer.
    pub fn new(path: &Path) -> FileWatch {
        use notify::Watcher;
        let changed = Arc::new(Notify::new());
        let wake = changed.clone();
        let watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
            wake.notify_one();
        })
        .and_then(|mut watcher| {
            watcher.watch(path, notify::RecursiveMode::NonRecursive)?;
            Ok(watcher)
        });
        let watcher = match watcher {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::debug!(path = %path.display(), %error, "log follow falls back to polling");
                None
            }
        };
        FileWatch {
            changed,
            _watcher: watcher,
        }
    }

    /// Returns when the file changed or `at_most` passed.
    pub async fn changed(&self, at_most: std::time::Duration) {
        let _ = tokio::time::timeout(at_most, self.changed.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const TS: &str = "2024-01-02T03:04:05.123456789Z";

    /// Everything the reader shows now, chunk by chunk, and how it stopped.
    fn drain(reader: &mut LogReader) -> (String, Progress) {
        let mut out = Vec::new();
        loop {
            match reader.read_chunk(&mut out).unwrap() {
                Progress::Read(n) => assert!(n <= CHUNK),
                stop => return (String::from_utf8(out).unwrap(), stop),
            }
        }
    }

    fn log_file(lines: &[&str]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for line in lines {
            writeln!(file, "{TS} {line}").unwrap();
        }
        file
    }

    #[test]
    fn a_big_log_is_read_a_chunk_at_a_time() {
        let line = format!("stdout F {}", "x".repeat(1000));
        let lines = vec![line.as_str(); 1000];
        let file = log_file(&lines);
        let mut reader =
            LogReader::open(file.path(), RenderOptions::default(), None, true).unwrap();
        let mut chunks = 0;
        let mut shown = 0;
        loop {
            let mut out = Vec::new();
            match reader.read_chunk(&mut out).unwrap() {
                Progress::Read(_) => {
                    chunks += 1;
                    shown += out.len();
                    assert!(out.len() <= CHUNK, "{}", out.len());
                }
                Progress::End => break,
                Progress::Full => unreachable!(),
            }
        }
        assert!(chunks > 10, "{chunks}");
        assert_eq!(shown, 1001 * 1000);
    }

    #[test]
    fn tail_and_limit_bytes() {
        let file = log_file(&[
            "stdout F one",
            "stdout P tw",
            "stdout F o",
            "stdout F three",
        ]);
        let last2 = LogReader::open(file.path(), RenderOptions::default(), Some(2), true);
        assert_eq!(drain(&mut last2.unwrap()).0, "two\nthree\n");
        let none = LogReader::open(file.path(), RenderOptions::default(), Some(0), true);
        assert_eq!(drain(&mut none.unwrap()), (String::new(), Progress::End));
        let limited = RenderOptions {
            limit_bytes: Some(5),
            ..RenderOptions::default()
        };
        let mut reader = LogReader::open(file.path(), limited, None, true).unwrap();
        assert_eq!(drain(&mut reader), ("one\nt".into(), Progress::Full));
    }

    #[test]
    fn a_read_stopped_at_the_opened_end_ignores_lines_written_since() {
        let mut file = log_file(&["stdout F one", "stdout F two"]);
        let mut reader =
            LogReader::open(file.path(), RenderOptions::default(), Some(1), false).unwrap();
        writeln!(file, "{TS} stdout F three").unwrap();
        assert_eq!(drain(&mut reader), ("two\n".into(), Progress::End));
        // A follower's reader goes on past it.
        let mut follower =
            LogReader::open(file.path(), RenderOptions::default(), Some(1), true).unwrap();
        writeln!(file, "{TS} stdout F four").unwrap();
        assert_eq!(drain(&mut follower).0, "three\nfour\n");
    }

    #[test]
    fn reads_incrementally_across_split_writes() {
        let mut file = log_file(&["stdout F first"]);
        let mut reader =
            LogReader::open(file.path(), RenderOptions::default(), None, true).unwrap();
        assert_eq!(drain(&mut reader).0, "first\n");
        assert_eq!(drain(&mut reader).0, "");

        // A file line written in two pieces, and a fragment awaiting its F,
        // shown at once.
        write!(file, "{TS} stdout F sec").unwrap();
        assert_eq!(drain(&mut reader).0, "");
        writeln!(file, "ond\n{TS} stdout P dangling").unwrap();
        assert_eq!(drain(&mut reader).0, "second\ndangling");
        writeln!(file, "{TS} stdout F  end").unwrap();
        assert_eq!(drain(&mut reader).0, " end\n");
        write!(file, "{TS} stdout F unterminated").unwrap();
        assert_eq!(drain(&mut reader).0, "");
        let mut rest = Vec::new();
        reader.finish(&mut rest);
        assert_eq!(rest, b"unterminated");
    }

    #[test]
    fn truncation_restarts_from_the_top() {
        let file = log_file(&["stdout F a", "stdout F b"]);
        let mut reader =
            LogReader::open(file.path(), RenderOptions::default(), None, true).unwrap();
        assert_eq!(drain(&mut reader).0, "a\nb\n");
        std::fs::write(file.path(), format!("{TS} stdout F c\n")).unwrap();
        assert_eq!(drain(&mut reader).0, "c\n");
    }

    #[test]
    fn a_rotated_file_is_read_to_its_end_then_the_new_one_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, format!("{TS} stdout F one\n")).unwrap();
        let mut reader = LogReader::open(&path, RenderOptions::default(), None, true).unwrap();
        assert_eq!(drain(&mut reader).0, "one\n");
        assert!(!reader.rotated());

        // A line lands in the old file after the rename, and the new file
        // starts with the end of a split line.
        let mut old = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::fs::rename(&path, dir.path().join("0.log.20260101-000000")).unwrap();
        writeln!(old, "{TS} stdout F two\n{TS} stdout P thr").unwrap();
        std::fs::write(&path, format!("{TS} stdout F ee\n")).unwrap();

        assert!(reader.rotated());
        let (old_part, _) = drain(&mut reader);
        reader.reopen().unwrap();
        assert!(!reader.rotated());
        let (new_part, _) = drain(&mut reader);
        assert_eq!(old_part + &new_part, "two\nthree\n");
    }
}
