//! `/exec` over WebSocket, as the API server proxies it to a node that
//! declares `ExtendWebSocketsToKubelet`: the `v5.channel.k8s.io` (or v4)
//! protocol, each binary message prefixed by its channel (1 stdout,
//! 2 stderr, 3 the closing `Status`). The command runs to its end and its
//! output is sent then: stdin and terminals are refused until berth streams
//! them.

use std::sync::Arc;

use futures::SinkExt;
use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::super::body::{full, Body};
use super::super::routes::{Context, Query};
use crate::service::PodService;

const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;

fn refuse(code: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(full(message.to_string()));
    *response.status_mut() = code;
    response
}

pub async fn exec<S: PodService>(
    request: Request<Incoming>,
    cx: Arc<Context<S>>,
    namespace: String,
    pod: String,
    container: String,
) -> Response<Body> {
    let headers = request.headers();
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get("sec-websocket-key").filter(|_| upgrade) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "exec needs a WebSocket upgrade (SPDY is not served)",
        );
    };
    let offered: Vec<String> = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    let Some(protocol) = PROTOCOLS
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "no supported channel protocol (v5.channel.k8s.io, v4.channel.k8s.io)",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let query = Query::parse(request.uri().query().unwrap_or_default());
    let command = query.all("command");
    let interactive = query.flag("input").unwrap_or(false)
        || query.flag("stdin").unwrap_or(false)
        || query.flag("tty").unwrap_or(false);

    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(request).await else {
            return;
        };
        let mut socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let status = if interactive {
            failure("berth does not forward stdin or a terminal yet: run the command without -i/-t")
        } else {
            match cx
                .service
                .exec(&namespace, &pod, Some(&container), command)
                .await
            {
                Ok(output) => {
                    for (channel, bytes) in [(STDOUT, output.stdout), (STDERR, output.stderr)] {
                        if !bytes.is_empty() {
                            let _ = socket.send(frame(channel, &bytes)).await;
                        }
                    }
                    exit_status(output.exit_code)
                }
                Err(e) => failure(&e.to_string()),
            }
        };
        let _ = socket
            .send(frame(ERROR, status.to_string().as_bytes()))
            .await;
        // A normal closure, which clients read as the end of every stream.
        let close = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = socket.close(Some(close)).await;
    });

    let mut response = Response::new(full(Vec::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, "websocket".parse().expect("static"));
    h.insert(header::CONNECTION, "Upgrade".parse().expect("static"));
    h.insert("sec-websocket-accept", accept.parse().expect("base64"));
    h.insert("sec-websocket-protocol", protocol.parse().expect("static"));
    response
}

fn frame(channel: u8, bytes: &[u8]) -> Message {
    let mut data = Vec::with_capacity(bytes.len() + 1);
    data.push(channel);
    data.extend_from_slice(bytes);
    Message::Binary(data.into())
}

/// The closing `Status` of a command that ran: Success, or the kubelet's
/// `NonZeroExitCode` with the code as the cause kubectl exits with.
fn exit_status(code: i32) -> serde_json::Value {
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

fn failure(message: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
    })
}
