//! The client side of a remote command stream (exec, attach) over
//! `v5.channel.k8s.io` or v4, as kubectl runs it: local stdin to channel 0,
//! channels 1 and 2 to stdout and stderr, the closing `Status` from 3,
//! the terminal size on 4 (at start and on every SIGWINCH), and in v5 the
//! end of stdin as `[255, 0]`.

use std::io::{Read, Write};

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::error::CliError;
use crate::terminal::{window_size, RawMode};
use crate::websocket::{frame, Socket};

pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// What the session forwards.
pub struct Session {
    pub stdin: bool,
    /// The remote side has a terminal: the local one goes raw.
    pub tty: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Status {
    status: String,
    message: String,
    reason: String,
    details: Option<Details>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Cause {
    reason: String,
    message: String,
}

/// Runs the session to its end; returns the remote command's exit code.
pub async fn run(
    socket: Socket,
    protocol: &str,
    session: Session,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> Result<i32, CliError> {
    let v5 = protocol == PROTOCOLS[0];
    let (mut sink, mut incoming) = socket.split();
    let raw = if session.tty {
        RawMode::enter().ok()
    } else {
        None
    };
    let mut resizes = if session.tty {
        send_size(&mut sink).await;
        Some(tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::window_change(),
        )?)
    } else {
        None
    };
    let mut input = session.stdin.then(read_stdin);
    let mut status = None;
    loop {
        tokio::select! {
            chunk = async { input.as_mut()?.recv().await }, if input.is_some() => match chunk {
                Some(bytes) => {
                    if sink.send(frame(0, &bytes)).await.is_err() {
                        break;
                    }
                }
                None => {
                    input = None;
                    if v5 {
                        let _ = sink.send(frame(255, &[0])).await;
                    }
                }
            },
            _ = async { resizes.as_mut()?.recv().await }, if resizes.is_some() => {
                send_size(&mut sink).await;
            }
            message = incoming.next() => match message {
                Some(Ok(Message::Binary(data))) => match data.split_first() {
                    Some((1, bytes)) => {
                        out.write_all(bytes)?;
                        out.flush()?;
                    }
                    Some((2, bytes)) => {
                        err.write_all(bytes)?;
                        err.flush()?;
                    }
                    Some((3, json)) => status = serde_json::from_slice::<Status>(json).ok(),
                    _ => {}
                },
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    drop(raw);
    exit_code(status, err)
}

/// kubectl's reading of the closing `Status`: success, a command's exit
/// code (reported as `command terminated with exit code N`), or an error.
fn exit_code(status: Option<Status>, err: &mut (dyn Write + Send)) -> Result<i32, CliError> {
    let Some(status) = status.filter(|s| s.status != "Success") else {
        return Ok(0);
    };
    let code = (status.reason == "NonZeroExitCode")
        .then_some(status.details.as_ref())
        .flatten()
        .and_then(|d| d.causes.iter().find(|c| c.reason == "ExitCode"))
        .and_then(|c| c.message.parse::<i32>().ok());
    match code {
        Some(code) => {
            writeln!(err, "command terminated with exit code {code}")?;
            Ok(code)
        }
        None => Err(CliError::usage(status.message)),
    }
}

async fn send_size<S>(sink: &mut S)
where
    S: futures::Sink<Message> + Unpin,
{
    if let Some((width, height)) = window_size() {
        let json = format!(r#"{{"Width":{width},"Height":{height}}}"#);
        let _ = sink.send(frame(4, json.as_bytes())).await;
    }
}

/// stdin, read on a thread of its own (a blocking read must not hold the
/// runtime up when the session ends); the channel closes at end of input.
fn read_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel(8);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if sender.blocking_send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot read stdin: {e}");
    }
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_kubectl_reads_them() {
        let mut err = Vec::new();
        assert_eq!(exit_code(None, &mut err).unwrap(), 0);
        let success = serde_json::from_str(r#"{"status":"Success"}"#).unwrap();
        assert_eq!(exit_code(Some(success), &mut err).unwrap(), 0);
        assert!(err.is_empty());
        let failed = serde_json::from_str(
            r#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#,
        )
        .unwrap();
        assert_eq!(exit_code(Some(failed), &mut err).unwrap(), 3);
        assert_eq!(err, b"command terminated with exit code 3\n");
        let error = serde_json::from_str(r#"{"status":"Failure","message":"boom"}"#).unwrap();
        assert!(exit_code(Some(error), &mut err).is_err());
    }
}
