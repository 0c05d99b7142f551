//! The agent's local API without a CLI process: a request with a body, and
//! a watch read event by event. For the benchmark, whose measuring must not
//! take the CPU from what it measures (no process per apply, no list every
//! few milliseconds).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::agent::parse_response;

/// `METHOD path` with `body` (as `content_type`) over the agent's socket:
/// the status and the de-chunked body, `None` when the agent does not
/// answer within 10 s.
pub async fn api_request(
    socket: &Path,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    exchange(socket, &request, Duration::from_secs(10)).await
}

/// Sends one whole request on a new connection and reads the response to
/// its end (the request asks for `Connection: close`); `None` on any
/// failure or after `limit`.
pub(crate) async fn exchange(
    socket: &Path,
    request: &[u8],
    limit: Duration,
) -> Option<(u16, Vec<u8>)> {
    let attempt = async {
        let mut stream = UnixStream::connect(socket).await.ok()?;
        stream.write_all(request).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        parse_response(&response)
    };
    tokio::time::timeout(limit, attempt).await.ok().flatten()
}

/// A watch (`?watch=true`) on the local API, read one event at a time.
pub struct ApiWatch {
    stream: UnixStream,
    /// Bytes read and not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked bytes not yet split into events.
    lines: Vec<u8>,
    ended: bool,
}

impl ApiWatch {
    /// Opens the watch at `path` (its query must ask for `watch=true`) and
    /// reads the response's head; `None` unless the agent answers 200.
    pub async fn open(socket: &Path, path: &str) -> Option<ApiWatch> {
        let mut stream = UnixStream::connect(socket).await.ok()?;
        let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        stream.write_all(head.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        let end = loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let status_line = String::from_utf8_lossy(&raw[..end]).into_owned();
        if status_line.split_whitespace().nth(1) != Some("200") {
            return None;
        }
        raw.drain(..end + 4);
        Some(ApiWatch {
            stream,
            raw,
            lines: Vec::new(),
            ended: false,
        })
    }

    /// The next event (`{"type": ..., "object": ...}`), `None` once the
    /// stream ends.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(newline) = self.lines.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.lines.drain(..=newline).collect();
                match serde_json::from_slice(&line) {
                    Ok(event) => return Some(event),
                    Err(_) => continue,
                }
            }
            if self.ended || !self.take_chunk() && !self.read_more().await {
                return None;
            }
        }
    }

    /// Moves one whole chunk from `raw` to `lines`; false when `raw` holds
    /// none yet.
    fn take_chunk(&mut self) -> bool {
        let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let size = std::str::from_utf8(&self.raw[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
        let Some(size) = size else {
            self.ended = true;
            return true;
        };
        if size == 0 {
            self.ended = true;
            return true;
        }
        let start = line_end + 2;
        if self.raw.len() < start + size + 2 {
            return false;
        }
        self.lines.extend_from_slice(&self.raw[start..start + size]);
        self.raw.drain(..start + size + 2);
        true
    }

    async fn read_more(&mut self) -> bool {
        let mut buf = [0u8; 16384];
        match self.stream.read(&mut buf).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_come_out_whole_across_chunks_and_reads() {
        let (mut server, client) = UnixStream::pair().unwrap();
        let mut watch = ApiWatch {
            stream: client,
            raw: Vec::new(),
            lines: Vec::new(),
            ended: false,
        };
        let first = br#"{"type":"ADDED","object":{"metadata":{"name":"a"}}}"#;
        let second = br#"{"type":"DELETED","object":{"metadata":{"name":"a"}}}"#;
        // The first event split over two chunks, the second in one.
        let mut wire = Vec::new();
        wire.extend_from_slice(format!("{:x}\r\n", 10).as_bytes());
        wire.extend_from_slice(&first[..10]);
        wire.extend_from_slice(b"\r\n");
        let rest = [&first[10..], b"\n"].concat();
        wire.extend_from_slice(format!("{:x}\r\n", rest.len()).as_bytes());
        wire.extend_from_slice(&rest);
        wire.extend_from_slice(b"\r\n");
        let whole = [&second[..], b"\n"].concat();
        wire.extend_from_slice(format!("{:x}\r\n", whole.len()).as_bytes());
        wire.extend_from_slice(&whole);
        wire.extend_from_slice(b"\r\n0\r\n\r\n");
        // Written a few bytes at a time.
        let writer = tokio::spawn(async move {
            for piece in wire.chunks(7) {
                server.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let a = watch.next().await.expect("the first event");
        assert_eq!(a["type"], "ADDED");
        assert_eq!(a["object"]["metadata"]["name"], "a");
        let b = watch.next().await.expect("the second event");
        assert_eq!(b["type"], "DELETED");
        assert!(watch.next().await.is_none(), "the stream ended");
        writer.await.unwrap();
    }
}
