//! The WebSocket handshake of the streaming endpoints and the channel
//! framing of `v4`/`v5.channel.k8s.io`: every binary message starts with
//! the number of the stream it carries.

use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::super::body::{full, Body};
use super::super::status::Failure;

pub(crate) type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// The remote command protocols, best first.
pub(crate) const REMOTE_COMMAND: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// The port-forward protocol of the kubelet's WebSocket port-forward.
pub(crate) const PORT_FORWARD: [&str; 1] = ["v4.channel.k8s.io"];

/// An accepted handshake: the 101 answer to send, and the connection it
/// hands over once sent.
pub(crate) struct Handshake {
    pub(crate) response: Response<Body>,
    pub(crate) upgrade: OnUpgrade,
    pub(crate) protocol: &'static str,
}

impl Handshake {
    /// Accepts a WebSocket upgrade speaking one of `protocols`. Plain SPDY
    /// is not served: a node that declares `ExtendWebSocketsToKubelet` gets
    /// WebSocket from the API server, and kubectl speaks it to berth's API.
    pub(crate) fn accept<B>(
        request: &mut Request<B>,
        protocols: &[&'static str],
    ) -> Result<Handshake, Failure> {
        let headers = request.headers();
        let upgrade = headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let Some(key) = headers.get("sec-websocket-key").filter(|_| upgrade) else {
            return Err(Failure::bad_request(
                "this endpoint needs a WebSocket upgrade (plain SPDY is not served)",
            ));
        };
        let offered: Vec<&str> = headers
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(str::trim))
            .collect();
        let Some(protocol) = protocols.iter().copied().find(|p| offered.contains(p)) else {
            return Err(Failure::bad_request(format!(
                "no supported WebSocket protocol: want one of {}",
                protocols.join(", ")
            )));
        };
        let accept = derive_accept_key(key.as_bytes());
        let mut response = Response::new(full(Vec::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        h.insert(header::UPGRADE, "websocket".parse().expect("static"));
        h.insert(header::CONNECTION, "Upgrade".parse().expect("static"));
        h.insert("sec-websocket-accept", accept.parse().expect("base64"));
        h.insert("sec-websocket-protocol", protocol.parse().expect("static"));
        let upgrade = hyper::upgrade::on(request);
        Ok(Handshake {
            response,
            upgrade,
            protocol,
        })
    }
}

/// Whether the request asks for a WebSocket.
pub(crate) fn is_upgrade(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The socket, once the 101 went out; `None` when the client left before.
pub(crate) async fn connect(upgrade: OnUpgrade) -> Option<Socket> {
    let upgraded = upgrade.await.ok()?;
    Some(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await)
}

pub(crate) fn frame(channel: u8, bytes: &[u8]) -> Message {
    let mut data = Vec::with_capacity(bytes.len() + 1);
    data.push(channel);
    data.extend_from_slice(bytes);
    Message::Binary(data.into())
}

/// A normal closure, which clients read as the end of every stream.
pub(crate) fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}
