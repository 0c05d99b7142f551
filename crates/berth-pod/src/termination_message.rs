//! Termination messages: the file at `terminationMessagePath`, or with
//! `FallbackToLogsOnError` the tail of the log of a failed container, within
//! the kubelet's size limits.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use berth_api::cri_log::{tail_start, LogRenderer, RenderOptions};

/// The kubelet reads at most this much of the message file.
const FILE_LIMIT: u64 = 4096;
/// From the logs: at most the last 80 lines, and of those the last 2 KiB
/// (the kubelet's readLastStringFromContainerLogs).
const LOG_LINES: u64 = 80;
const LOG_BYTES: usize = 2048;
/// How far back in the log file the tail is looked for.
const LOG_READ_LIMIT: u64 = 256 * 1024;
/// All messages of a pod together; each container gets an equal share.
pub(crate) const POD_LIMIT: usize = 12 * 1024;

/// The last `limit` bytes of a file, from the start of a line when cut.
fn tail(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(limit))).ok()?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// The message file's content; `None` when it is empty.
pub(crate) fn from_file(path: &Path) -> Option<String> {
    let bytes = tail(path, FILE_LIMIT)?;
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

/// The last lines the container wrote, from its CRI log file, as `logs`
/// shows them: a last line without its newline stays without one.
pub(crate) fn from_log(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let start = tail_start(&mut file, LOG_LINES, LOG_READ_LIMIT).ok()?;
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut renderer = LogRenderer::new(RenderOptions::default());
    let mut text = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let n = file.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        renderer.feed(&chunk[..n], &mut text);
        keep_last(&mut text, LOG_BYTES);
    }
    renderer.finish(&mut text);
    keep_last(&mut text, LOG_BYTES);
    (!text.is_empty()).then(|| String::from_utf8_lossy(&text).into_owned())
}

fn keep_last(text: &mut Vec<u8>, limit: usize) {
    let excess = text.len().saturating_sub(limit);
    text.drain(..excess);
}

/// Cuts a message to `limit` bytes, keeping its beginning.
pub(crate) fn truncate(message: &mut String, limit: usize) {
    if message.len() > limit {
        let mut end = limit;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_read_from_its_last_four_kilobytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("msg");
        std::fs::write(&path, "").unwrap();
        assert_eq!(from_file(&path), None);
        std::fs::write(&path, format!("{}END", "x".repeat(5000))).unwrap();
        let message = from_file(&path).unwrap();
        assert_eq!(message.len(), 4096);
        assert!(message.ends_with("END"));
    }

    #[test]
    fn the_log_tail_is_eighty_joined_lines_at_most_two_kilobytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = String::new();
        for i in 0..100 {
            log.push_str(&format!("2026-01-01T00:00:00Z stdout F line {i}\n"));
        }
        log.push_str("2026-01-01T00:00:00Z stderr P bro\n2026-01-01T00:00:00Z stderr F ken\n");
        std::fs::write(&path, log).unwrap();
        let message = from_log(&path).unwrap();
        assert!(message.starts_with("line 21\n"), "{message}");
        assert!(message.ends_with("line 99\nbroken\n"));

        // The last output had no newline: its fragment is the message's end.
        std::fs::write(&path, "2026-01-01T00:00:00Z stdout P DONE\n").unwrap();
        assert_eq!(from_log(&path).unwrap(), "DONE");
        std::fs::write(&path, "").unwrap();
        assert_eq!(from_log(&path), None);

        let long: String = (0..80)
            .map(|i| format!("2026-01-01T00:00:00Z stdout F {i:0>40}\n"))
            .collect();
        std::fs::write(&path, long).unwrap();
        assert_eq!(from_log(&path).unwrap().len(), 2048);
    }

    #[test]
    fn truncation_keeps_the_beginning_on_a_char_boundary() {
        let mut m = "héllo".to_string();
        truncate(&mut m, 2);
        assert_eq!(m, "h");
    }
}
