//! Reading container logs in the CRI file format, as `kubectl logs` shows them.
//!
//! Each file line is `<RFC3339Nano timestamp> <stdout|stderr> <tag> <message>`,
//! where the tag is `F` (the line is complete) or `P` (a fragment of a longer
//! line; later tags may follow after `:`). Fragments are joined up to the next
//! `F` of the same stream.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Notify;

pub use berth_api::cri_log::{
    parse_cri_line, CriLine, LineAssembler, LogEntry, LogParseError, LogStream,
};

/// Reads a log file incrementally from where it stopped.
#[derive(Debug)]
pub struct LogReader {
    path: PathBuf,
    file: File,
    offset: u64,
    /// Bytes of a file line not yet terminated by its newline.
    unterminated: Vec<u8>,
    assembler: LineAssembler,
}

impl LogReader {
    pub fn open(path: &Path) -> std::io::Result<LogReader> {
        Ok(LogReader {
            path: path.to_owned(),
            file: File::open(path)?,
            offset: 0,
            unterminated: Vec::new(),
            assembler: LineAssembler::default(),
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

    /// Goes on in the file the path names now, from its start. A line
    /// fragment from the old file stays, to be joined with the rest.
    pub fn reopen(&mut self) -> std::io::Result<()> {
        self.file = File::open(&self.path)?;
        self.offset = 0;
        Ok(())
    }

    /// The complete entries appended since the last call. With `keep_last`,
    /// only the last that many are returned (`tailLines`), without holding
    /// more than that in memory.
    pub fn read_new(&mut self, keep_last: Option<usize>) -> std::io::Result<Vec<LogEntry>> {
        let len = self.file.metadata()?.len();
        if len < self.offset {
            // Truncated in place: start over.
            self.offset = 0;
            self.unterminated.clear();
            self.assembler = LineAssembler::default();
        }
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut entries = VecDeque::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = self.file.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            self.offset += n as u64;
            let mut rest = &chunk[..n];
            while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
                let entry = if self.unterminated.is_empty() {
                    self.assembler.push(&rest[..newline])
                } else {
                    self.unterminated.extend_from_slice(&rest[..newline]);
                    let line = std::mem::take(&mut self.unterminated);
                    self.assembler.push(&line)
                };
                rest = &rest[newline + 1..];
                let Some(entry) = entry else { continue };
                if keep_last == Some(0) {
                    continue;
                }
                if keep_last.is_some_and(|keep| entries.len() == keep) {
                    entries.pop_front();
                }
                entries.push_back(entry);
            }
            self.unterminated.extend_from_slice(rest);
        }
        Ok(entries.into())
    }

    /// Whatever is left when no more will be written: joined fragments
    /// without their final `F`.
    pub fn finish(&mut self) -> Vec<LogEntry> {
        if !self.unterminated.is_empty() {
            let line = std::mem::take(&mut self.unterminated);
            if let Some(entry) = self.assembler.push(&line) {
                let mut rest = self.assembler.take_partial();
                rest.insert(0, entry);
                return rest;
            }
        }
        self.assembler.take_partial()
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

    fn render(entries: &[LogEntry]) -> String {
        let mut out = Vec::new();
        for entry in entries {
            entry.render(false, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parses_lines() {
        let text = format!("{TS} stdout F hello world");
        let line = parse_cri_line(text.as_bytes()).unwrap();
        assert_eq!(line.timestamp, TS);
        assert_eq!(line.stream, LogStream::Stdout);
        assert!(!line.partial);
        assert_eq!(line.message, b"hello world");

        let text = format!("{TS} stderr P:x  two spaces");
        let line = parse_cri_line(text.as_bytes()).unwrap();
        assert_eq!(line.stream, LogStream::Stderr);
        assert!(line.partial);
        assert_eq!(line.message, b" two spaces");

        let text = format!("{TS} stdout F");
        let empty = parse_cri_line(text.as_bytes()).unwrap();
        assert_eq!(empty.message, b"");

        assert!(matches!(
            parse_cri_line(format!("{TS} stdin F x").as_bytes()),
            Err(LogParseError::Stream(_))
        ));
        assert!(matches!(
            parse_cri_line(format!("{TS} stdout Q x").as_bytes()),
            Err(LogParseError::Tag(_))
        ));
        assert!(parse_cri_line(b"").is_err());
        assert!(parse_cri_line(TS.as_bytes()).is_err());
    }

    #[test]
    fn joins_fragments_per_stream() {
        let mut asm = LineAssembler::default();
        assert_eq!(asm.push(format!("{TS} stdout P abc").as_bytes()), None);
        let err = asm.push(format!("{TS} stderr F oops").as_bytes()).unwrap();
        assert_eq!(err.message, b"oops");
        assert_eq!(asm.push(b"garbage"), None);
        assert_eq!(asm.push(format!("{TS} stdout P def").as_bytes()), None);
        let out = asm.push(format!("{TS} stdout F ghi").as_bytes()).unwrap();
        assert_eq!(out.message, b"abcdefghi");
        assert!(out.complete);
        assert!(asm.take_partial().is_empty());

        let mut with_ts = Vec::new();
        out.render(true, &mut with_ts);
        assert_eq!(with_ts, format!("{TS} abcdefghi\n").as_bytes());
    }

    fn log_file(lines: &[&str]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for line in lines {
            writeln!(file, "{TS} {line}").unwrap();
        }
        file
    }

    #[test]
    fn tail_counts_joined_lines() {
        let file = log_file(&[
            "stdout F one",
            "stdout P tw",
            "stdout F o",
            "stdout F three",
        ]);
        let all = LogReader::open(file.path())
            .unwrap()
            .read_new(None)
            .unwrap();
        assert_eq!(render(&all), "one\ntwo\nthree\n");
        let last2 = LogReader::open(file.path())
            .unwrap()
            .read_new(Some(2))
            .unwrap();
        assert_eq!(render(&last2), "two\nthree\n");
        let none = LogReader::open(file.path())
            .unwrap()
            .read_new(Some(0))
            .unwrap();
        assert!(none.is_empty());
        let many = LogReader::open(file.path())
            .unwrap()
            .read_new(Some(10))
            .unwrap();
        assert_eq!(many.len(), 3);
    }

    #[test]
    fn reads_incrementally_across_split_writes() {
        let mut file = log_file(&["stdout F first"]);
        let mut reader = LogReader::open(file.path()).unwrap();
        assert_eq!(render(&reader.read_new(None).unwrap()), "first\n");
        assert!(reader.read_new(None).unwrap().is_empty());

        // A file line written in two pieces, and a fragment awaiting its F.
        write!(file, "{TS} stdout F sec").unwrap();
        assert!(reader.read_new(None).unwrap().is_empty());
        writeln!(file, "ond\n{TS} stdout P dangling").unwrap();
        assert_eq!(render(&reader.read_new(None).unwrap()), "second\n");
        assert_eq!(render(&reader.finish()), "dangling");
    }

    #[test]
    fn truncation_restarts_from_the_top() {
        let file = log_file(&["stdout F a", "stdout F b"]);
        let mut reader = LogReader::open(file.path()).unwrap();
        assert_eq!(reader.read_new(None).unwrap().len(), 2);
        std::fs::write(file.path(), format!("{TS} stdout F c\n")).unwrap();
        assert_eq!(render(&reader.read_new(None).unwrap()), "c\n");
    }

    #[test]
    fn a_rotated_file_is_read_to_its_end_then_the_new_one_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, format!("{TS} stdout F one\n")).unwrap();
        let mut reader = LogReader::open(&path).unwrap();
        assert_eq!(render(&reader.read_new(None).unwrap()), "one\n");
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
        assert_eq!(render(&reader.read_new(None).unwrap()), "two\n");
        reader.reopen().unwrap();
        assert!(!reader.rotated());
        assert_eq!(render(&reader.read_new(None).unwrap()), "three\n");
    }
}
