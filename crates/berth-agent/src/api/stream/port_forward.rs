//! port-forward over WebSocket, as the kubelet's
//! `pkg/kubelet/cri/streaming/portforward/websocket.go` serves it
//! (`v4.channel.k8s.io`): the ports come as `port` query parameters; port
//! number i has data channel 2i and error channel 2i+1, and the first
//! message on each carries the port as 2 bytes, little-endian. Each port
//! carries one connection to `localhost:PORT` inside the pod's network
//! namespace; the socket is closed when every connection ended.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::super::routes::Query;
use super::super::status::Failure;
use super::websocket::{frame, Socket};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `port` parameters, as the kubelet's `parsePortForwardOptions` reads them.
pub(crate) fn ports(query: &Query) -> Result<Vec<u16>, Failure> {
    let ports = query.all("port");
    if ports.is_empty() {
        return Err(Failure::bad_request("query parameter \"port\" is required"));
    }
    ports
        .iter()
        .map(|p| match p.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(Failure::bad_request(format!(
                "unable to parse \"{p}\" as a port: invalid port"
            ))),
        })
        .collect()
}

/// Forwards each of `ports` over `socket` into the network namespace `netns`.
pub(crate) async fn serve(socket: Socket, netns: PathBuf, pod: String, ports: Vec<u16>) {
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
    for (i, port) in ports.iter().enumerate() {
        let prefix = port.to_le_bytes();
        for channel in [data_channel(i), data_channel(i) + 1] {
            let _ = outgoing.send(frame(channel, &prefix)).await;
        }
    }
    let mut inputs = Vec::new();
    let mut connections = tokio::task::JoinSet::new();
    for (i, &port) in ports.iter().enumerate() {
        let (input, queue) = mpsc::unbounded_channel::<Vec<u8>>();
        inputs.push(input);
        let (netns, pod, out) = (netns.clone(), pod.clone(), outgoing.clone());
        connections.spawn(async move {
            if let Err(e) = forward(&netns, port, data_channel(i), queue, out.clone()).await {
                let message = format!("error forwarding port {port} to pod {pod}: {e}");
                tracing::debug!("{message}");
                let _ = out
                    .send(frame(data_channel(i) + 1, message.as_bytes()))
                    .await;
            }
        });
    }
    drop(outgoing);
    loop {
        tokio::select! {
            done = connections.join_next() => if done.is_none() { break },
            message = incoming.next() => match message {
                Some(Ok(Message::Binary(data))) => {
                    let Some((&channel, bytes)) = data.split_first() else { continue };
                    let index = usize::from(channel / 2);
                    if channel % 2 == 0 && !bytes.is_empty() {
                        if let Some(input) = inputs.get(index) {
                            let _ = input.send(bytes.to_vec());
                        }
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    connections.abort_all();
                    writer.abort();
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = writer.await;
}

fn data_channel(index: usize) -> u8 {
    // At most 127 ports fit the framing; more are refused by the front doors.
    (index * 2) as u8
}

/// The most ports one request may forward (two channels each, one byte).
pub(crate) const MAX_PORTS: usize = 127;

/// One connection: the client's bytes in, the pod's bytes out, until the
/// pod's side ends it.
async fn forward(
    netns: &std::path::Path,
    port: u16,
    channel: u8,
    mut input: mpsc::UnboundedReceiver<Vec<u8>>,
    out: mpsc::Sender<Message>,
) -> std::io::Result<()> {
    let stream = connect_in(netns.to_path_buf(), port).await?;
    let (mut read, mut write) = stream.into_split();
    let upstream = async move {
        while let Some(bytes) = input.recv().await {
            write.write_all(&bytes).await?;
        }
        write.shutdown().await
    };
    let downstream = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = read.read(&mut buf).await?;
            if n == 0 || out.send(frame(channel, &buf[..n])).await.is_err() {
                return Ok::<_, std::io::Error>(());
            }
        }
    };
    tokio::pin!(downstream);
    tokio::select! {
        result = &mut downstream => result,
        result = upstream => {
            // The client stopped sending; the answer may still come.
            result?;
            downstream.await
        }
    }
}

/// Connects to `localhost:port` in the network namespace `netns`: from a
/// thread of its own that enters it (a socket stays in the namespace it was
/// made in), so no other thread of the agent changes namespace.
pub(crate) async fn connect_in(netns: PathBuf, port: u16) -> std::io::Result<TcpStream> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("port-forward".into())
        .spawn(move || {
            let connected = (|| {
                let namespace = std::fs::File::open(&netns)?;
                nix::sched::setns(namespace.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
                let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
                let stream =
                    std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT).or_else(|e| {
                        std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| e)
                    })?;
                stream.set_nonblocking(true)?;
                Ok::<_, std::io::Error>(stream)
            })();
            let _ = sender.send(connected);
        })?;
    let stream = receiver
        .await
        .map_err(|_| std::io::Error::other("the connecting thread died"))??;
    TcpStream::from_std(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_required_and_checked() {
        assert_eq!(
            ports(&Query::parse("port=80&port=8080")).unwrap(),
            [80, 8080]
        );
        assert!(ports(&Query::parse("")).is_err());
        assert!(ports(&Query::parse("port=0")).is_err());
        assert!(ports(&Query::parse("port=65536")).is_err());
        assert!(ports(&Query::parse("port=http")).is_err());
        assert_eq!(data_channel(2), 4);
    }
}
