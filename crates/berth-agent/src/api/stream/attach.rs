//! attach, output only: the container's stdout and stderr as they come,
//! on channels 1 and 2 of the remote command protocol, until the
//! container stops (then a `Success` status) or the client leaves.
//!
//! The shim hands a container's output to berth's logger process, which
//! writes the CRI log file, so that logs survive agent restarts; attach
//! follows that file from its end and splits it back into the two streams.
//! Containers run without stdin or a terminal (their `stdin` and `tty`
//! fields are not wired), so attach carries no input.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_tungstenite::tungstenite::Message;

use super::remote_command::{exit_status, StreamOptions};
use super::websocket::{normal_close, RemoteCommand, Socket};
use crate::logs::FileWatch;
use crate::service::{LogOptions, PodService};

/// How often a follower without new output asks whether the container runs.
const POLL: Duration = Duration::from_millis(250);

pub(crate) struct Attached<S> {
    pub(crate) protocol: RemoteCommand,
    pub(crate) service: Arc<S>,
    pub(crate) namespace: String,
    pub(crate) pod: String,
    pub(crate) log: LogOptions,
    pub(crate) path: PathBuf,
    pub(crate) options: StreamOptions,
}

impl<S: PodService> Attached<S> {
    pub(crate) async fn serve(self, socket: Socket) {
        let (mut sink, mut incoming) = socket.split();
        let Ok(mut file) = open_at_end(&self.path).await else {
            return;
        };
        let mut watch = FileWatch::new(&self.path);
        let mut lines = Lines::default();
        loop {
            tokio::select! {
                message = incoming.next() => match message {
                    // Input and resizes have nowhere to go.
                    Some(Ok(Message::Binary(_) | Message::Text(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    _ => return,
                },
                () = watch.changed(POLL) => {}
            }
            // Ask before reading: output written before the exit is then read below.
            let running = self.still_running();
            let mut chunk = Vec::new();
            if file.read_to_end(&mut chunk).await.is_err() {
                break;
            }
            for (channel, bytes) in lines.push(&chunk) {
                let wanted = match channel {
                    1 => self.options.stdout,
                    _ => self.options.stderr,
                };
                if wanted
                    && sink
                        .send(self.protocol.frame(channel, &bytes))
                        .await
                        .is_err()
                {
                    return;
                }
            }
            if rotated(&self.path, &file).await {
                // Read to its end above: go on in the new file.
                let Ok(next) = tokio::fs::File::open(&self.path).await else {
                    break;
                };
                file = next;
                watch = FileWatch::new(&self.path);
                continue;
            }
            if !running && chunk.is_empty() {
                break;
            }
        }
        if let Some(status) = self.protocol.status(&exit_status(0)) {
            let _ = sink.send(self.protocol.frame(3, &status)).await;
        }
        let _ = sink.send(normal_close()).await;
    }

    fn still_running(&self) -> bool {
        match self
            .service
            .log_target(&self.namespace, &self.pod, &self.log)
        {
            Ok(target) => target.running && target.path == self.path,
            Err(_) => false,
        }
    }
}

async fn open_at_end(path: &Path) -> std::io::Result<tokio::fs::File> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::End(0)).await?;
    Ok(file)
}

/// The path names another file than the open one (the log was rotated).
async fn rotated(path: &Path, file: &tokio::fs::File) -> bool {
    let (Ok(named), Ok(open)) = (tokio::fs::metadata(path).await, file.metadata().await) else {
        return false;
    };
    (named.dev(), named.ino()) != (open.dev(), open.ino())
}

/// CRI log lines (`TIMESTAMP STREAM P|F CONTENT`) back into the stream
/// they came from: (1 stdout or 2 stderr, bytes). A `P` entry is part of a
/// line, an `F` entry ends it.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    fn push(&mut self, bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        self.partial.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            let mut fields = line.splitn(4, |&b| b == b' ');
            let (Some(_time), Some(stream), Some(tag)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let mut content = fields.next().unwrap_or_default().to_vec();
            if tag == b"F" {
                content.push(b'\n');
            }
            let channel = if stream == b"stderr" { 2 } else { 1 };
            out.push((channel, content));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines_go_back_to_their_streams() {
        let mut lines = Lines::default();
        let first = lines.push(b"2026-01-01T00:00:00Z stdout P par\n2026-01-01T00:00:00Z stdout F t\n2026-01-01T00:00:00Z std");
        assert_eq!(first, [(1, b"par".to_vec()), (1, b"t\n".to_vec())]);
        let rest = lines.push(b"err F oops\n2026-01-01T00:00:00Z stdout F \n");
        assert_eq!(rest, [(2, b"oops\n".to_vec()), (1, b"\n".to_vec())]);
    }
}
