//! exec (and attach) over WebSocket, `v5.channel.k8s.io`, v4 or the older
//! `channel.k8s.io` (each also in base64 but v5): channel 0 stdin, 1
//! stdout, 2 stderr, 3 the closing `Status` (before v4, only a failure's
//! message), 4 terminal resizes (`{"Width":w,"Height":h}`), and in v5 255,
//! the client's "this stream of mine is closed" (`[255, 0]` ends stdin). A
//! client that goes away ends the session, which kills the process.

use std::time::Duration;

use berth_runtime::{ExecReader, ExecSession, ExecSignal, ExecWriter};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::super::routes::Query;
use super::super::status::Failure;
use super::websocket::{normal_close, ClientMessage, RemoteCommand, Socket};

pub(crate) const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
pub(crate) const RESIZE: u8 = 4;

/// How long output may keep coming after the process exited (a child may
/// hold the pipe).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// What a streaming request asks for. The API server's names (`stdin`,
/// `stdout`, `stderr`) and the kubelet's (`input`, `output`, `error`) are
/// both read, so one parser serves both front doors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamOptions {
    pub(crate) command: Vec<String>,
    pub(crate) container: Option<String>,
    pub(crate) stdin: bool,
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
    pub(crate) tty: bool,
}

impl StreamOptions {
    pub(crate) fn parse(query: &Query) -> Result<Self, Failure> {
        let either = |a: &str, b: &str| Ok::<_, Failure>(query.flag(a)? || query.flag(b)?);
        let mut options = StreamOptions {
            command: query.all("command"),
            container: query
                .get("container")
                .filter(|c| !c.is_empty())
                .map(Into::into),
            stdin: either("stdin", "input")?,
            stdout: either("stdout", "output")?,
            stderr: either("stderr", "error")?,
            tty: query.flag("tty")?,
        };
        // The kubelet's remotecommand `NewOptions`: a terminal is one stream.
        if options.tty {
            options.stderr = false;
        }
        if !(options.stdin || options.stdout || options.stderr) {
            return Err(Failure::bad_request(
                "you must specify at least 1 of stdin, stdout, stderr",
            ));
        }
        Ok(options)
    }
}

/// A resize message, as kubectl's terminal size queue sends it.
#[derive(Debug, Deserialize)]
struct TerminalSize {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

/// The signal a resize message asks for; `None` when it is not one.
pub(crate) fn resize(json: &[u8]) -> Option<ExecSignal> {
    let size = serde_json::from_slice::<TerminalSize>(json).ok()?;
    Some(ExecSignal::Resize {
        width: size.width,
        height: size.height,
    })
}

/// Pumps the session's streams over `socket` until the process exits (then
/// its `Status` goes on channel 3) or the client leaves (then it is killed).
pub(crate) async fn serve(
    socket: Socket,
    protocol: RemoteCommand,
    mut session: ExecSession,
    options: StreamOptions,
) {
    let (mut sink, mut incoming) = socket.split();
    let (outgoing, mut queue) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(async move {
        while let Some(message) = queue.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let mut outputs = tokio::task::JoinSet::new();
    outputs.spawn(forward(
        session.stdout,
        Output {
            protocol,
            channel: STDOUT,
            wanted: options.stdout,
        },
        outgoing.clone(),
    ));
    if let Some(stderr) = session.stderr.take() {
        let output = Output {
            protocol,
            channel: STDERR,
            wanted: options.stderr,
        };
        outputs.spawn(forward(stderr, output, outgoing.clone()));
    }
    let mut stdin = Stdin::new(session.stdin.take(), session.control.clone());

    let exited = loop {
        tokio::select! {
            exit = &mut session.exit => break exit,
            message = incoming.next() => match message {
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    // Dropping the session and the stdin task's handle on it
                    // kills the process.
                    tracing::debug!("exec client went away");
                    stdin.abort();
                    outputs.abort_all();
                    writer.abort();
                    return;
                }
                Some(Ok(message)) => match protocol.read(&message) {
                    Some(ClientMessage::Data(STDIN, bytes)) => stdin.send(&bytes),
                    Some(ClientMessage::Data(RESIZE, json)) => {
                        if let Some(signal) = resize(&json) {
                            let _ = session.control.send(signal);
                        }
                    }
                    Some(ClientMessage::Close(STDIN)) => stdin.close(),
                    _ => {}
                },
            },
        }
    };
    let status = match exited {
        Ok(Ok(code)) => {
            let drained = tokio::time::timeout(DRAIN_GRACE, async {
                while outputs.join_next().await.is_some() {}
            });
            if drained.await.is_err() {
                tracing::debug!("exec output still open {DRAIN_GRACE:?} after exit");
                outputs.abort_all();
            }
            exit_status(code)
        }
        Ok(Err(e)) => failure(&e.message),
        Err(_) => failure("the exec process was lost"),
    };
    stdin.abort();
    if let Some(status) = protocol.status(&status) {
        let _ = outgoing.send(protocol.frame(ERROR, &status)).await;
    }
    let _ = outgoing.send(normal_close()).await;
    drop(outgoing);
    let _ = writer.await;
}

/// Where one of the process's outputs goes.
struct Output {
    protocol: RemoteCommand,
    channel: u8,
    /// Asked for by the client; else it is read away.
    wanted: bool,
}

/// Sends what `reader` gives on the output's channel (or reads it away unwanted).
async fn forward(mut reader: ExecReader, output: Output, out: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) if output.wanted => {
                let message = output.protocol.frame(output.channel, &buf[..n]);
                if out.send(message).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// stdin written by a task of its own, so a process that does not read it
/// never holds up resizes, the exit or the client leaving. Once it is
/// closed and what came before is written, `CloseStdin` goes to `control`.
pub(crate) struct Stdin {
    chunks: Option<mpsc::UnboundedSender<Vec<u8>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Stdin {
    pub(crate) fn new(
        writer: Option<ExecWriter>,
        control: mpsc::UnboundedSender<ExecSignal>,
    ) -> Self {
        let Some(mut writer) = writer else {
            return Stdin {
                chunks: None,
                task: None,
            };
        };
        let (chunks, mut queue) = mpsc::unbounded_channel::<Vec<u8>>();
        let task = tokio::spawn(async move {
            while let Some(chunk) = queue.recv().await {
                if writer.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            drop(writer);
            let _ = control.send(ExecSignal::CloseStdin);
        });
        Stdin {
            chunks: Some(chunks),
            task: Some(task),
        }
    }

    pub(crate) fn send(&self, bytes: &[u8]) {
        if let Some(chunks) = &self.chunks {
            let _ = chunks.send(bytes.to_vec());
        }
    }

    /// End of stdin, once what came before is written.
    pub(crate) fn close(&mut self) {
        self.chunks = None;
    }

    fn abort(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The closing `Status` of a command that ran: Success, or the kubelet's
/// `NonZeroExitCode` with the code as the cause kubectl exits with.
pub(crate) fn exit_status(code: i32) -> serde_json::Value {
    if code == 0 {
        return serde_json::json!({"metadata": {}, "status": "Success"});
    }
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

pub(crate) fn failure(message: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_front_doors_name_the_streams() {
        let local = Query::parse("command=sh&command=-c&container=c&stdin=true&stdout=1&tty=true");
        let options = StreamOptions::parse(&local).unwrap();
        assert_eq!(options.command, ["sh", "-c"]);
        assert_eq!(options.container.as_deref(), Some("c"));
        assert!(options.stdin && options.stdout && options.tty && !options.stderr);
        let kubelet = Query::parse("command=ls&input=1&output=1&error=1");
        let options = StreamOptions::parse(&kubelet).unwrap();
        assert!(options.stdin && options.stdout && options.stderr && !options.tty);
        // With a terminal, stderr is not asked for.
        let options = StreamOptions::parse(&Query::parse("stdout=1&stderr=1&tty=1")).unwrap();
        assert!(options.tty && !options.stderr);
        assert!(StreamOptions::parse(&Query::parse("command=ls")).is_err());
        assert!(StreamOptions::parse(&Query::parse("stdout=maybe")).is_err());
    }
}
