//! The streaming server: exec, attach and port-forward over WebSocket, one
//! implementation behind two front doors, the local API's pod subresources
//! (`pods/{name}/exec`, `attach`, `portforward`) and the kubelet API's
//! `/exec`, `/attach` and `/portForward` paths the API server proxies to.

mod attach;
mod port_forward;
mod remote_command;
mod spdy;
mod websocket;

use std::sync::Arc;

use berth_runtime::ExecStreamRequest;
use http::{Request, Response};
use hyper::body::Incoming;

use super::body::Body;
use super::routes::Query;
use super::status::Failure;
use crate::service::{LogOptions, PodService};
pub(crate) use remote_command::StreamOptions;
pub(crate) use websocket::is_upgrade;
use websocket::{connect, Handshake, RemoteCommand};

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
            let protocol = RemoteCommand::negotiated(handshake.protocol);
            remote_command::serve(socket, protocol, session, options).await;
        }
    });
    Ok(handshake.response)
}

/// Forwards ports into the pod's network namespace: the kubelet's
/// WebSocket protocol (ports in the query), or kubectl's SPDY tunneled in
/// a WebSocket (ports in each stream's headers).
pub(crate) async fn port_forward<S: PodService>(
    service: &Arc<S>,
    mut request: Request<Incoming>,
    namespace: &str,
    pod: &str,
) -> Result<Response<Body>, Failure> {
    let query = Query::parse(request.uri().query().unwrap_or_default());
    let handshake = Handshake::accept(
        &mut request,
        &[spdy::TUNNEL_PROTOCOL, websocket::PORT_FORWARD[0]],
    )?;
    let ports = if handshake.protocol == spdy::TUNNEL_PROTOCOL {
        Vec::new()
    } else {
        let ports = port_forward::ports(&query)?;
        if ports.len() > port_forward::MAX_PORTS {
            return Err(Failure::bad_request(format!(
                "at most {} ports may be forwarded at once",
                port_forward::MAX_PORTS
            )));
        }
        ports
    };
    let netns = service
        .pod_network(namespace, pod)
        .await
        .map_err(|e| Failure::from(e).for_pod(pod))?;
    let (pod, protocol) = (pod.to_string(), handshake.protocol);
    tokio::spawn(async move {
        let Some(socket) = connect(handshake.upgrade).await else {
            return;
        };
        if protocol == spdy::TUNNEL_PROTOCOL {
            spdy::serve(socket, netns, pod).await;
        } else {
            port_forward::serve(socket, netns, pod, ports).await;
        }
    });
    Ok(handshake.response)
}

/// Follows the container's output, and writes into its stdin and resizes
/// its terminal (see `attach`).
pub(crate) async fn attach<S: PodService>(
    service: &Arc<S>,
    mut request: Request<Incoming>,
    namespace: &str,
    pod: &str,
    options: StreamOptions,
) -> Result<Response<Body>, Failure> {
    let log = LogOptions {
        container: options.container.clone(),
        previous: false,
        follow: true,
        tail_lines: Some(0),
    };
    let target = service
        .log_target(namespace, pod, &log)
        .map_err(|e| Failure::from(e).for_pod(pod))?;
    if !target.running {
        return Err(Failure::bad_request(format!(
            "cannot attach to a container of pod {pod} that is not running"
        )));
    }
    let io = service
        .attach_io(namespace, pod, options.container.as_deref(), options.stdin)
        .await
        .map_err(|e| Failure::from(e).for_pod(pod))?;
    // The kubelet attaches with the container's `tty`, not the request's,
    // and the CRI streaming server's `validateAttachRequest` refuses stderr
    // with a terminal (an error the kubelet answers with 500).
    if io.tty && options.stderr {
        return Err(Failure::internal("tty and stderr cannot both be true"));
    }
    // Checked after the request's target, so that a client falling back
    // from WebSocket to SPDY is told what is wrong with it.
    let handshake = Handshake::accept(&mut request, &websocket::REMOTE_COMMAND)?;
    let attached = attach::Attached {
        protocol: RemoteCommand::negotiated(handshake.protocol),
        service: service.clone(),
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        log,
        path: target.path,
        options,
        io,
    };
    tokio::spawn(async move {
        if let Some(socket) = connect(handshake.upgrade).await {
            attached.serve(socket).await;
        }
    });
    Ok(handshake.response)
}
