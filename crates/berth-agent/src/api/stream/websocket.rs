//! The WebSocket handshake of the streaming endpoints and the channel
//! framing of the remote command protocols: every binary message starts
//! with the number of the stream it carries (`channel.k8s.io` and its `v4`
//! and `v5`), or every text message with that number as a digit, then the
//! bytes in base64 (`base64.channel.k8s.io` and its `v4`), as the kubelet's
//! streaming server (apimachinery's wsstream) speaks them.

use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::super::body::{full, Body};
use super::super::status::Failure;

pub(crate) type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// The remote command protocols, best first. `""` stands for a client
/// that asks for none, which gets `channel.k8s.io`, as from the kubelet.
pub(crate) const REMOTE_COMMAND: [&str; 6] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
    "",
];
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
        let none_offered = offered.is_empty();
        let Some(protocol) = protocols
            .iter()
            .copied()
            .find(|p| offered.contains(p) || (p.is_empty() && none_offered))
        else {
            return Err(Failure::bad_request(format!(
                "no supported WebSocket protocol: want one of {}",
                protocols
                    .iter()
                    .filter(|p| !p.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let accept = derive_accept_key(key.as_bytes());
        let mut response = Response::new(full(Vec::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        h.insert(header::UPGRADE, "websocket".parse().expect("static"));
        h.insert(header::CONNECTION, "Upgrade".parse().expect("static"));
        h.insert("sec-websocket-accept", accept.parse().expect("base64"));
        if !protocol.is_empty() {
            h.insert("sec-websocket-protocol", protocol.parse().expect("static"));
        }
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

/// How a negotiated remote command protocol frames its channels and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RemoteCommand {
    /// Text messages: the channel as a digit, then the bytes in base64.
    base64: bool,
    /// v4 and later: the closing `Status` is JSON on channel 3. Before v4
    /// only a failure is told, as its message text.
    status_json: bool,
    /// v5: the client's `[255, channel]` closes its stream.
    stream_close: bool,
}

impl RemoteCommand {
    pub(crate) fn negotiated(protocol: &str) -> RemoteCommand {
        RemoteCommand {
            base64: protocol.contains("base64."),
            status_json: protocol.starts_with("v4.") || protocol.starts_with("v5."),
            stream_close: protocol.starts_with("v5."),
        }
    }

    /// `bytes` on `channel`.
    pub(crate) fn frame(self, channel: u8, bytes: &[u8]) -> Message {
        if !self.base64 {
            return frame(channel, bytes);
        }
        let mut text = String::from(char::from(b'0' + channel));
        text.push_str(&BASE64.encode(bytes));
        Message::Text(text.into())
    }

    /// What a client's message carries: a channel and its bytes, or
    /// [`ClientMessage::Close`] of a channel. `None` for anything else and for
    /// what is not well formed (skipped, as the kubelet skips it).
    pub(crate) fn read(self, message: &Message) -> Option<ClientMessage> {
        let data: &[u8] = match message {
            Message::Binary(data) => data,
            Message::Text(text) if self.base64 => text.as_bytes(),
            _ => return None,
        };
        match data {
            [CLOSE_SIGNAL, channel] if self.stream_close => Some(ClientMessage::Close(*channel)),
            [channel, rest @ ..] if self.base64 => {
                let bytes = BASE64.decode(rest).ok()?;
                Some(ClientMessage::Data(channel.checked_sub(b'0')?, bytes))
            }
            [channel, rest @ ..] => Some(ClientMessage::Data(*channel, rest.to_vec())),
            [] => None,
        }
    }

    /// What goes on channel 3 when the command ended with `status`, if
    /// anything: the `Status` as JSON (v4, v5); before v4, a failure's
    /// message and nothing for success.
    pub(crate) fn status(self, status: &serde_json::Value) -> Option<Vec<u8>> {
        if self.status_json {
            return Some(status.to_string().into_bytes());
        }
        if status["status"] == "Success" {
            return None;
        }
        Some(
            status["message"]
                .as_str()
                .unwrap_or_default()
                .as_bytes()
                .to_vec(),
        )
    }
}

/// A client's message on a remote command connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientMessage {
    Data(u8, Vec<u8>),
    Close(u8),
}

/// v5's "this stream of mine is closed" marker.
const CLOSE_SIGNAL: u8 = 255;

/// A normal closure, which clients read as the end of every stream.
pub(crate) fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_protocol_frames_its_channels() {
        let binary = RemoteCommand::negotiated("channel.k8s.io");
        assert_eq!(
            binary.frame(1, b"hi"),
            Message::Binary(vec![1, b'h', b'i'].into())
        );
        let base64 = RemoteCommand::negotiated("base64.channel.k8s.io");
        assert_eq!(base64.frame(1, b"hi"), Message::Text("1aGk=".into()));
        assert_eq!(
            base64.read(&Message::Text("0Zm9vCgo=".into())),
            Some(ClientMessage::Data(0, b"foo\n\n".to_vec()))
        );
        assert_eq!(base64.read(&Message::Text("0not base64!".into())), None);
        assert_eq!(binary.read(&Message::Text("0Zm9v".into())), None);
        assert_eq!(
            binary.read(&Message::Binary(vec![4, b'{'].into())),
            Some(ClientMessage::Data(4, b"{".to_vec()))
        );
    }

    #[test]
    fn only_v5_closes_a_stream_and_only_v4_on_sends_a_json_status() {
        let close = Message::Binary(vec![255, 0].into());
        let v5 = RemoteCommand::negotiated("v5.channel.k8s.io");
        assert_eq!(v5.read(&close), Some(ClientMessage::Close(0)));
        let v4 = RemoteCommand::negotiated("v4.channel.k8s.io");
        assert_eq!(v4.read(&close), Some(ClientMessage::Data(255, vec![0])));

        let success = serde_json::json!({"status": "Success"});
        let failure = serde_json::json!({"status": "Failure", "message": "it failed"});
        assert_eq!(v4.status(&success), Some(success.to_string().into_bytes()));
        let v1 = RemoteCommand::negotiated("");
        assert_eq!(v1.status(&success), None);
        assert_eq!(v1.status(&failure), Some(b"it failed".to_vec()));
        let v4_base64 = RemoteCommand::negotiated("v4.base64.channel.k8s.io");
        assert!(v4_base64.base64 && v4_base64.status_json && !v4_base64.stream_close);
    }
}
