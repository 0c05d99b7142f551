//! WebSocket connections to the agent's streaming subresources (exec,
//! attach, port-forward), over the unix socket, as kubectl opens them.

use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::client::{ApiStatus, Client, ClientError};

pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Opens `path` as a WebSocket speaking one of `protocols`; returns the
/// socket and the protocol the agent chose. A refusal is the agent's `Status`.
pub async fn connect(
    client: &Client,
    path: &str,
    protocols: &[&str],
) -> Result<(Socket, String), ClientError> {
    tracing::debug!(path, "local API WebSocket");
    let stream = UnixStream::connect(client.socket())
        .await
        .map_err(|source| ClientError::Connect {
            socket: client.socket().to_path_buf(),
            source,
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            tracing::debug!(%err, "local API connection ended");
        }
    });
    let request = Request::builder()
        .method(http::Method::GET)
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", generate_key())
        .header("sec-websocket-protocol", protocols.join(", "))
        .body(Empty::<Bytes>::new())
        .expect("method, path and headers are valid");
    let response = sender.send_request(request).await?;
    let code = response.status();
    if code != StatusCode::SWITCHING_PROTOCOLS {
        let body = response.into_body().collect().await?.to_bytes();
        return Err(ClientError::Api(Box::new(ApiStatus::from_body(
            code, &body,
        ))));
    }
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let upgraded = hyper::upgrade::on(response).await?;
    let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    Ok((socket, protocol))
}

/// A binary message for stream `channel`.
pub fn frame(channel: u8, bytes: &[u8]) -> Message {
    let mut data = Vec::with_capacity(bytes.len() + 1);
    data.push(channel);
    data.extend_from_slice(bytes);
    Message::Binary(data.into())
}
