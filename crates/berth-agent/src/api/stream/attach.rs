//! attach: the container's stdout and stderr as they come, on channels 1
//! and 2 of the remote command protocol, until the container stops (then a
//! `Success` status) or the client leaves; channel 0 into the container's
//! stdin (`stdin: true`), and channel 4 resizes its terminal (`tty: true`).
//!
//! The shim hands a container's output to berth's logger process, which
//! writes the CRI log file, so that logs survive agent restarts; attach
//! follows that file from its end and splits it back into the two streams.
//!
//! As containerd's CRI `ContainerIO.Attach`: with `stdinOnce`, the
//! container's stdin is closed once the session's input ends (the client
//! closes its stdin, or leaves).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_tungstenite::tungstenite::Message;

use super::remote_command::{self, exit_status, Stdin, StreamOptions, RESIZE, STDIN};
use super::websocket::{normal_close, ClientMessage, RemoteCommand, Socket};
use crate::logs::FileWatch;
use crate::service::{AttachIo, LogOptions, PodService};

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
    pub(crate) io: AttachIo,
}

impl<S: PodService> Attached<S> {
    pub(crate) async fn serve(mut self, socket: Socket) {
        let (mut sink, mut incoming) = socket.split();
        let control = self.io.control.clone();
        let ends_with_input = self.io.stdin.is_some() && session_ends_with_input(&self.io);
        // Closed (not aborted) at every end: what was sent is written, then
        // a `stdinOnce` stdin is closed.
        let mut stdin = Stdin::new(self.io.stdin.take(), control.clone());
        let Ok(mut file) = open_at_end(&self.path).await else {
            stdin.close();
            return;
        };
        let mut watch = FileWatch::new(&self.path);
        let mut lines = Lines {
            tty: self.io.tty,
            ..Lines::default()
        };
        loop {
            tokio::select! {
                message = incoming.next() => match message {
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        stdin.close();
                        return;
                    }
                    Some(Ok(message)) => {
                        match self.protocol.read(&message) {
                            Some(ClientMessage::Data(STDIN, bytes)) => stdin.send(&bytes),
                            Some(ClientMessage::Data(RESIZE, json)) => {
                                if let Some(signal) = remote_command::resize(&json) {
                                    let _ = control.send(signal);
                                }
                            }
                            Some(ClientMessage::Close(STDIN)) => {
                                stdin.close();
                                if ends_with_input {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        continue;
                    }
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
                    stdin.close();
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
        stdin.close();
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

/// Whether the session ends with the client's input, as containerd's CRI
/// `ContainerIO.Attach` ends it: only a `stdinOnce` container without a
/// terminal reads the end of its stdin then, and its output is followed on
/// until it stops.
fn session_ends_with_input(io: &AttachIo) -> bool {
    io.tty || !io.stdin_once
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
/// line, an `F` entry ends it: with `\n`, or on a terminal (whose line
/// discipline wrote `\r\n`, which the log keeps as a line end) with `\r\n`.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    tty: bool,
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
                if self.tty {
                    content.push(b'\r');
                }
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

    #[test]
    fn only_a_stdin_once_container_without_a_terminal_outlives_the_input() {
        let io = |tty, stdin_once| AttachIo {
            tty,
            stdin_once,
            stdin: None,
            control: tokio::sync::mpsc::unbounded_channel().0,
        };
        assert!(!session_ends_with_input(&io(false, true)));
        assert!(session_ends_with_input(&io(false, false)));
        assert!(session_ends_with_input(&io(true, true)));
        assert!(session_ends_with_input(&io(true, false)));
    }

    #[test]
    fn a_terminal_s_lines_end_as_the_terminal_wrote_them() {
        let mut lines = Lines {
            tty: true,
            ..Lines::default()
        };
        let out = lines
            .push(b"2026-01-01T00:00:00Z stdout P / # \n2026-01-01T00:00:00Z stdout F got hi\n");
        assert_eq!(out, [(1, b"/ # ".to_vec()), (1, b"got hi\r\n".to_vec())]);
    }
}
