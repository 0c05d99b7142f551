//! The CRI log file format (kubelet-semantics §14): each line is
//! `<RFC3339Nano timestamp> <stdout|stderr> <tag> <message>`, where the tag
//! is `F` (the line is complete) or `P` (a fragment of a longer line; later
//! tags may follow after `:`). Fragments are joined up to the next `F` of the
//! same stream.

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

/// A line as the container wrote it: its fragments joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The timestamp of the first fragment.
    pub timestamp: String,
    pub stream: LogStream,
    pub message: Vec<u8>,
    /// False for fragments still waiting for their `F` line.
    pub complete: bool,
}

impl LogEntry {
    /// The bytes `kubectl logs` prints: the message, a newline if complete,
    /// prefixed with the timestamp when asked for.
    pub fn render(&self, timestamps: bool, out: &mut Vec<u8>) {
        if timestamps {
            out.extend_from_slice(self.timestamp.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.message);
        if self.complete {
            out.push(b'\n');
        }
    }
}

/// Joins `P` fragments per stream (stdout and stderr may interleave).
#[derive(Debug, Default)]
pub struct LineAssembler {
    pending: [Option<LogEntry>; 2],
}

impl LineAssembler {
    /// Feeds one file line; returns the entry it completes, if any.
    /// Malformed lines are skipped, as the kubelet does.
    pub fn push(&mut self, raw: &[u8]) -> Option<LogEntry> {
        let line = parse_cri_line(raw).ok()?;
        let slot = &mut self.pending[line.stream as usize];
        let entry = slot.get_or_insert_with(|| LogEntry {
            timestamp: line.timestamp.to_owned(),
            stream: line.stream,
            message: Vec::new(),
            complete: false,
        });
        entry.message.extend_from_slice(line.message);
        if line.partial {
            return None;
        }
        let mut entry = slot.take()?;
        entry.complete = true;
        Some(entry)
    }

    /// The fragments not yet completed (the file ended mid-line).
    pub fn take_partial(&mut self) -> Vec<LogEntry> {
        self.pending.iter_mut().filter_map(Option::take).collect()
    }
}
