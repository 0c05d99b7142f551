//! `port-forward POD [LOCAL:]REMOTE...`: listens on 127.0.0.1 and carries
//! each connection to the pod's port over one WebSocket
//! (`pods/{name}/portforward?port=REMOTE`, `v4.channel.k8s.io`: data on
//! channel 0, errors on 1, each opened by the port as 2 bytes).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{pod_path, Client};
use crate::error::CliError;
use crate::target::{decode_pod, single_pod};
use crate::websocket::{connect, frame};
use crate::{namespace_or_default, VerbResult};

#[derive(Debug, clap::Args)]
pub struct PortForwardArgs {
    /// The pod (`NAME` or `pod/NAME`)
    pod: String,
    /// `[LOCAL_PORT:]REMOTE_PORT`, one or more; an empty LOCAL_PORT picks a free one
    #[arg(required = true, value_name = "PORT")]
    ports: Vec<String>,
    /// The namespace of the request
    #[arg(short, long)]
    namespace: Option<String>,
}

/// One `LOCAL:REMOTE` pair; local 0 means any free port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortPair {
    local: u16,
    remote: u16,
}

/// kubectl's `parsePorts`.
fn parse_port(spec: &str) -> Result<PortPair, CliError> {
    let invalid = |what: &str| CliError::usage(format!("invalid port format '{spec}': {what}"));
    let number = |text: &str| {
        text.parse::<u16>()
            .map_err(|_| invalid(&format!("Error parsing port '{text}'")))
    };
    let (local, remote) = match spec.split_once(':') {
        Some((local, remote)) => {
            let local = if local.is_empty() { 0 } else { number(local)? };
            (local, number(remote)?)
        }
        None => {
            let port = number(spec)?;
            (port, port)
        }
    };
    if remote == 0 {
        return Err(invalid("Remote port must be > 0"));
    }
    Ok(PortPair { local, remote })
}

pub async fn run(
    client: &Client,
    args: PortForwardArgs,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> VerbResult {
    let pairs = args
        .ports
        .iter()
        .map(|p| parse_port(p))
        .collect::<Result<Vec<_>, _>>()?;
    let name = single_pod(&args.pod)?;
    let namespace = namespace_or_default(args.namespace.as_deref());
    let pod = decode_pod(&client.get(&pod_path(&namespace, &name)).await?)?;
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase != "Running" {
        return Err(CliError::usage(format!(
            "unable to forward port because pod is not running. Current status={phase}"
        )));
    }
    let path = pod_path(&namespace, &name) + "/portforward";
    let mut listeners = tokio::task::JoinSet::new();
    for pair in pairs {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, pair.local)))
            .await
            .map_err(|e| {
                CliError::usage(format!("Unable to listen on port {}: {e}", pair.local))
            })?;
        let local = listener.local_addr()?;
        writeln!(out, "Forwarding from {local} -> {}", pair.remote)?;
        out.flush()?;
        let (client, path) = (client.clone(), path.clone());
        listeners.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                println!("Handling connection for {}", local.port());
                let (client, path) = (client.clone(), path.clone());
                tokio::spawn(async move {
                    if let Err(e) = forward(&client, &path, pair.remote, stream).await {
                        eprintln!(
                            "E an error occurred forwarding {} -> {}: {e}",
                            local.port(),
                            pair.remote
                        );
                    }
                });
            }
        });
    }
    let _ = err.flush();
    // Runs until interrupted, as kubectl does.
    while listeners.join_next().await.is_some() {}
    Ok(0)
}

/// Carries one local connection to the pod's `port` and back.
async fn forward(client: &Client, path: &str, port: u16, stream: TcpStream) -> Result<(), String> {
    let path = format!("{path}?port={port}");
    let (socket, _) = connect(client, &path, &["v4.channel.k8s.io"])
        .await
        .map_err(|e| e.to_string())?;
    let (mut sink, mut incoming) = socket.split();
    let (mut read, mut write) = stream.into_split();
    let upstream = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return std::future::pending::<()>().await,
                Ok(n) => {
                    if sink.send(frame(0, &buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let downstream = async move {
        // The first message of each channel is its port.
        let mut opened = [false, false];
        while let Some(Ok(message)) = incoming.next().await {
            let Message::Binary(data) = message else {
                continue;
            };
            let Some((&channel, bytes)) = data.split_first() else {
                continue;
            };
            let Some(seen) = opened.get_mut(usize::from(channel)) else {
                continue;
            };
            if !std::mem::replace(seen, true) {
                continue;
            }
            match channel {
                0 => {
                    if write.write_all(bytes).await.is_err() {
                        return Ok(());
                    }
                }
                _ => return Err(String::from_utf8_lossy(bytes).into_owned()),
            }
        }
        let _ = write.shutdown().await;
        Ok(())
    };
    tokio::select! {
        () = upstream => Ok(()),
        result = downstream => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_pairs_read_as_kubectl_reads_them() {
        assert_eq!(
            parse_port("8080:80").unwrap(),
            PortPair {
                local: 8080,
                remote: 80
            }
        );
        assert_eq!(
            parse_port("80").unwrap(),
            PortPair {
                local: 80,
                remote: 80
            }
        );
        assert_eq!(
            parse_port(":80").unwrap(),
            PortPair {
                local: 0,
                remote: 80
            }
        );
        assert!(parse_port("x:80").is_err());
        assert!(parse_port("80:0").is_err());
        assert!(parse_port("80:70000").is_err());
    }
}
