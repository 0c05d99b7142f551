//! The streaming server: exec over WebSocket, one
//! implementation behind two front doors, the local API's pod subresource
//! `pods/{name}/exec` and the kubelet API's `/exec` path the API server
//! proxies to.

mod remote_command;
mod websocket;

use std::sync::Arc;

use berth_runtime::ExecStreamRequest;
use http::{Request, Response};
use hyper::body::Incoming;

use super::body::Body;
use super::status::Failure;
use crate::service::PodService;
pub(crate) use remote_command::StreamOptions;
pub(crate) use websocket::is_upgrade;
use websocket::{connect, Handshake};

/// Starts the command, then hands the connection to the session's pump.
/// A pod or container that does not exist is answered before the upgrade.
pub(crate) async fn exec<S: PodService>(
    service: &Arc<S>,
    mut request: Request<Incoming>,
    namespace: &str,
    pod: &str,
    options: StreamOptions,
) -> Result<Response<Body>, Failure> {
    if options.command.is_empty() {
        return Err(Failure::bad_request("you must specify at least 1 command"));
    }
    let handshake = Handshake::accept(&mut request, &websocket::REMOTE_COMMAND)?;
    let session = service
        .exec_stream(
            namespace,
            pod,
            options.container.as_deref(),
            ExecStreamRequest {
                command: options.command.clone(),
                stdin: options.stdin,
                tty: options.tty,
            },
        )
        .await
        .map_err(|e| Failure::from(e).for_pod(pod))?;
    tracing::debug!(namespace, pod, protocol = handshake.protocol, "exec stream");
    tokio::spawn(async move {
        // Dropped unconnected, the session kills its process.
        if let Some(socket) = connect(handshake.upgrade).await {
            remote_command::serve(socket, session, options).await;
        }
    });
    Ok(handshake.response)
}
