//! The CRI log file format, and how the kubelet shows it (its
//! `pkg/kubelet/kuberuntime/logs` ReadLogs).
//!
//! Each file line is `<RFC3339Nano timestamp> <stdout|stderr> <tag> <message>`,
//! where the tag is `F` (the line is complete) or `P` (a fragment of a longer
//! line; later tags may follow after `:`). A reader writes each fragment as it
//! comes, without a newline, so fragments join up to the next `F`; nothing is
//! held back, whatever the length of a line.
//!
//! Everything here works on chunks of a file, so that a reader's memory does not
//! grow with the size of the log.

use std::io::{Read, Seek, SeekFrom};

use jiff::Timestamp;

/// The stream a line was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One line of a CRI log file, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CriLine<'a> {
    pub timestamp: &'a str,
    pub stream: LogStream,
    /// Tag `P`: the message continues in a later line.
    pub partial: bool,
    pub message: &'a [u8],
}

/// Why a file line is not in the CRI format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogParseError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("unknown stream {0:?}")]
    Stream(String),
    #[error("unknown tag {0:?}")]
    Tag(String),
}

/// Parses one file line (without its trailing newline).
pub fn parse_cri_line(line: &[u8]) -> Result<CriLine<'_>, LogParseError> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let timestamp = fields.next().filter(|f| !f.is_empty());
    let timestamp = timestamp.ok_or(LogParseError::Missing("timestamp"))?;
    let timestamp =
        std::str::from_utf8(timestamp).map_err(|_| LogParseError::Missing("timestamp"))?;
    let stream = match fields.next().ok_or(LogParseError::Missing("stream"))? {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        other => return Err(LogParseError::Stream(String::from_utf8_lossy(other).into())),
    };
    let tags = fields.next().ok_or(LogParseError::Missing("tag"))?;
    let partial = match tags.split(|&b| b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return Err(LogParseError::Tag(String::from_utf8_lossy(tags).into())),
    };
    // An empty message leaves no field after the tag.
    let message = fields.next().unwrap_or_default();
    Ok(CriLine {
        timestamp,
        stream,
        partial,
        message,
    })
}

/// What a reader asked for, from `PodLogOptions` (the kubelet's logOptions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Prefix each line with its time (RFC 3339, nine fractional digits).
    pub timestamps: bool,
    /// Skip lines written before this.
    pub since: Option<Timestamp>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
}

/// Writes file lines as the kubelet's logWriter does: a fragment without a
/// newline, the time only where a line starts, at most `limit_bytes` in all.
/// Malformed lines are skipped.
#[derive(Debug)]
pub struct LogWriter {
    options: RenderOptions,
    /// The last message ended its line, so the next one starts a line.
    at_line_start: bool,
    remaining: u64,
}

impl LogWriter {
    pub fn new(options: RenderOptions) -> LogWriter {
        let remaining = options.limit_bytes.unwrap_or(u64::MAX);
        LogWriter {
            options,
            at_line_start: true,
            remaining,
        }
    }

    /// Whether `limit_bytes` is used up: nothing more will be written.
    pub fn is_full(&self) -> bool {
        self.remaining == 0
    }

    /// Writes one file line (without its newline) to `out`. `terminated` is
    /// false for a last file line that has no newline yet: even an `F` line
    /// then gets none, as the kubelet writes the bytes it read.
    pub fn write_line(&mut self, raw: &[u8], terminated: bool, out: &mut Vec<u8>) {
        if self.is_full() {
            return;
        }
        let Ok(line) = parse_cri_line(raw) else {
            return;
        };
        let time = if self.options.timestamps || self.options.since.is_some() {
            match line.timestamp.parse::<Timestamp>() {
                Ok(time) => Some(time),
                Err(_) => return,
            }
        } else {
            None
        };
        let newline = terminated && !line.partial;
        let starts_line = self.at_line_start;
        self.at_line_start = newline || line.message.is_empty();
        if let (Some(since), Some(time)) = (self.options.since, time) {
            if time < since {
                return;
            }
        }
        if let (true, true, Some(time)) = (self.options.timestamps, starts_line, time) {
            self.put(format!("{time:.9} ").as_bytes(), out);
        }
        self.put(line.message, out);
        if newline {
            self.put(b"\n", out);
        }
    }

    fn put(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let n = usize::try_from(self.remaining).map_or(bytes.len(), |r| r.min(bytes.len()));
        out.extend_from_slice(&bytes[..n]);
        self.remaining -= n as u64;
    }
}

/// The longest file line kept while waiting for its newline. A CRI logger
/// writes at most 16 KiB of message per line; a longer line is not CRI
/// output, and is dropped rather than held.
pub const MAX_FILE_LINE: usize = 256 * 1024;

/// Cuts a log file's bytes, fed in chunks, into lines for a [`LogWriter`].
#[derive(Debug)]
pub struct LogRenderer {
    writer: LogWriter,
    /// The start of a file line whose newline has not been read yet.
    unterminated: Vec<u8>,
    /// Within a line longer than [`MAX_FILE_LINE`]: skip to its end.
    skipping: bool,
}

impl LogRenderer {
    pub fn new(options: RenderOptions) -> LogRenderer {
        LogRenderer {
            writer: LogWriter::new(options),
            unterminated: Vec::new(),
            skipping: false,
        }
    }

    /// Whether `limit_bytes` is used up.
    pub fn is_full(&self) -> bool {
        self.writer.is_full()
    }

    /// Writes the lines `data` completes to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while let Some(newline) = data.iter().position(|&b| b == b'\n') {
            let (line, rest) = (&data[..newline], &data[newline + 1..]);
            data = rest;
            if std::mem::take(&mut self.skipping) {
                continue;
            }
            if self.unterminated.is_empty() {
                self.writer.write_line(line, true, out);
            } else {
                self.unterminated.extend_from_slice(line);
                let line = std::mem::take(&mut self.unterminated);
                self.writer.write_line(&line, true, out);
            }
            if self.is_full() {
                return;
            }
        }
        if self.skipping {
            return;
        }
        if self.unterminated.len() + data.len() > MAX_FILE_LINE {
            self.unterminated = Vec::new();
            self.skipping = true;
        } else {
            self.unterminated.extend_from_slice(data);
        }
    }

    /// The end of the file, when no more will be written to it: a last line
    /// without a newline is shown as it is.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let line = std::mem::take(&mut self.unterminated);
        if !line.is_empty() && !std::mem::take(&mut self.skipping) {
            self.writer.write_line(&line, false, out);
        }
    }

    /// Forgets a line begun in a file that was truncated or replaced.
    pub fn forget_unterminated(&mut self) {
        self.unterminated = Vec::new();
        self.skipping = false;
    }
}

/// How much of a file [`tail_start`] reads at a time.
const TAIL_BLOCK: usize = 64 * 1024;
/// Enough of a line's start to read its tag.
const LINE_HEAD: usize = 128;

/// Where the last `lines` lines of a CRI log begin (`tailLines`), found by
/// reading backwards from the end, a block at a time, as the kubelet's
/// `FindTailLineStartIndex` does. A line is counted as the container wrote
/// it: `P` fragments up to their `F` are one line, and fragments without
/// their `F` yet at the end are the last line. At most `scan_limit` bytes
/// from the end are read; if the lines started earlier, the first whole
/// file line within the limit is the start.
pub fn tail_start<R: Read + Seek>(
    file: &mut R,
    lines: u64,
    scan_limit: u64,
) -> std::io::Result<u64> {
    let size = file.seek(SeekFrom::End(0))?;
    if lines == 0 {
        return Ok(size);
    }
    let floor = size.saturating_sub(scan_limit);
    let mut counted = 0u64;
    let mut count = |head: &[u8]| {
        let head = head.split(|&b| b == b'\n').next().unwrap_or_default();
        match parse_cri_line(head).map(|line| line.partial) {
            // An `F` ends a line; trailing fragments are a line too.
            Ok(false) => counted += 1,
            Ok(true) if counted == 0 => counted += 1,
            _ => {}
        }
        counted > lines
    };
    // `buf` holds a block and, after it, the first bytes of what follows.
    let mut buf = Vec::with_capacity(TAIL_BLOCK + LINE_HEAD);
    let mut end = size;
    // The start of the line after the one being looked at; `None` until the
    // newline of the last whole line is found (bytes after it are a line
    // still being written, not counted).
    let mut after: Option<u64> = None;
    while end > floor {
        let start = end.saturating_sub(TAIL_BLOCK as u64).max(floor);
        let len = (end - start) as usize;
        let head: Vec<u8> = buf.iter().take(LINE_HEAD).copied().collect();
        buf.clear();
        buf.resize(len, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        buf.extend_from_slice(&head);
        for i in (0..len).rev().filter(|&i| buf[i] == b'\n') {
            let line_start = start + i as u64 + 1;
            if let Some(after) = after {
                if count(&buf[i + 1..]) {
                    return Ok(after);
                }
            }
            after = Some(line_start);
        }
        end = start;
    }
    match after {
        // The first line of the file, which no newline precedes.
        Some(after) if floor == 0 && count(&buf) => Ok(after),
        Some(_) if floor == 0 => Ok(0),
        Some(after) => Ok(after),
        None if floor == 0 => Ok(0),
        None => Ok(size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2024-01-02T03:04:05.123456789Z";

    fn render(options: RenderOptions, text: &str, chunk: usize) -> String {
        let mut renderer = LogRenderer::new(options);
        let mut out = Vec::new();
        for piece in text.as_bytes().chunks(chunk) {
            renderer.feed(piece, &mut out);
        }
        renderer.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn log(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{TS} {l}\n")).collect()
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
        assert_eq!(parse_cri_line(text.as_bytes()).unwrap().message, b"");

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
    fn fragments_join_up_to_their_full_line_in_any_chunking() {
        let text = log(&[
            "stdout P abc",
            "stdout P def",
            "stdout F ghi",
            "garbage",
            "stderr F oops",
            "stdout P DONE",
        ]);
        for chunk in [1, 7, 64, 4096] {
            assert_eq!(
                render(RenderOptions::default(), &text, chunk),
                "abcdefghi\noops\nDONE"
            );
        }
    }

    #[test]
    fn timestamps_prefix_where_a_line_starts_in_nine_digits() {
        let text = "2024-01-02T03:04:05.5Z stdout P ab\n\
                    2024-01-02T03:04:06Z stdout F c\n\
                    2024-01-02T03:04:07.000000001Z stderr F d\n";
        let options = RenderOptions {
            timestamps: true,
            ..RenderOptions::default()
        };
        assert_eq!(
            render(options, text, 10),
            "2024-01-02T03:04:05.500000000Z abc\n2024-01-02T03:04:07.000000001Z d\n"
        );
    }

    #[test]
    fn since_skips_older_lines_and_limit_bytes_cuts_the_output() {
        let text = "2024-01-02T03:04:05Z stdout F old\n\
                    2024-01-02T03:04:06Z stdout F new\n\
                    2024-01-02T03:04:07Z stdout F newer\n";
        let since = RenderOptions {
            since: Some("2024-01-02T03:04:06Z".parse().unwrap()),
            ..RenderOptions::default()
        };
        assert_eq!(render(since, text, 5), "new\nnewer\n");
        let limited = RenderOptions {
            limit_bytes: Some(6),
            ..RenderOptions::default()
        };
        let mut renderer = LogRenderer::new(limited);
        let mut out = Vec::new();
        renderer.feed(text.as_bytes(), &mut out);
        assert_eq!(out, b"old\nne");
        assert!(renderer.is_full());
        renderer.feed(text.as_bytes(), &mut out);
        renderer.finish(&mut out);
        assert_eq!(out, b"old\nne");
    }

    #[test]
    fn a_line_without_its_newline_waits_and_an_overlong_one_is_dropped() {
        let mut renderer = LogRenderer::new(RenderOptions::default());
        let mut out = Vec::new();
        renderer.feed(format!("{TS} stdout F sec").as_bytes(), &mut out);
        assert!(out.is_empty());
        renderer.feed(b"ond\n", &mut out);
        assert_eq!(out, b"second\n");

        out.clear();
        renderer.feed(format!("{TS} stdout F ").as_bytes(), &mut out);
        for _ in 0..MAX_FILE_LINE / 1024 + 1 {
            renderer.feed(&[b'x'; 1024], &mut out);
        }
        renderer.feed(format!("x\n{TS} stdout F after\n").as_bytes(), &mut out);
        assert_eq!(out, b"after\n");
        assert!(renderer.unterminated.capacity() <= MAX_FILE_LINE);
    }

    fn tail(text: &str, lines: u64) -> String {
        let mut file = std::io::Cursor::new(text.as_bytes().to_vec());
        let start = tail_start(&mut file, lines, u64::MAX).unwrap();
        render(RenderOptions::default(), &text[start as usize..], 4096)
    }

    #[test]
    fn tail_counts_lines_as_the_container_wrote_them() {
        let text = log(&[
            "stdout F one",
            "stdout P tw",
            "stdout F o",
            "stdout F three",
        ]);
        assert_eq!(tail(&text, 1), "three\n");
        assert_eq!(tail(&text, 2), "two\nthree\n");
        assert_eq!(tail(&text, 3), "one\ntwo\nthree\n");
        assert_eq!(tail(&text, 10), "one\ntwo\nthree\n");
        assert_eq!(tail(&text, 0), "");
        assert_eq!(tail("", 3), "");

        // Fragments without their F are the last line; a line still being
        // written (no newline) is not counted.
        let open = log(&["stdout F one", "stdout P DO", "stdout P NE"]);
        assert_eq!(tail(&open, 1), "DONE");
        assert_eq!(tail(&open, 2), "one\nDONE");
        let writing = format!(
            "{}{TS} stdout F half",
            log(&["stdout F one", "stdout F two"])
        );
        assert_eq!(tail(&writing, 1), "two\nhalf");
    }

    #[test]
    fn tail_reads_backwards_across_blocks() {
        let long = "y".repeat(40_000);
        let mut lines: Vec<String> = (0..50).map(|i| format!("stdout F line {i}")).collect();
        lines.push(format!("stdout P {long}"));
        lines.push(format!("stdout P {long}"));
        lines.push("stdout F end".into());
        lines.push("stdout F last".into());
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let text = log(&refs);
        assert_eq!(tail(&text, 1), "last\n");
        assert_eq!(tail(&text, 2), format!("{long}{long}end\nlast\n"));
        assert_eq!(tail(&text, 3), format!("line 49\n{long}{long}end\nlast\n"));
        let all: String = (0..50).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail(&text, 100), format!("{all}{long}{long}end\nlast\n"));
    }

    #[test]
    fn tail_stops_at_the_scan_limit_on_a_whole_line() {
        let text = log(&["stdout F aaaa", "stdout F bbbb", "stdout F cccc"]);
        let line_len = text.len() as u64 / 3;
        let mut file = std::io::Cursor::new(text.as_bytes().to_vec());
        // The limit falls inside the second line: the third starts.
        let start = tail_start(&mut file, 3, line_len + 5).unwrap();
        assert_eq!(start, 2 * line_len);
        // The newline before the second line is just within the limit.
        let start = tail_start(&mut file, 3, 2 * line_len + 1).unwrap();
        assert_eq!(start, line_len);
        // No whole line within the limit: nothing.
        assert_eq!(tail_start(&mut file, 3, 3).unwrap(), 3 * line_len);
    }
}
