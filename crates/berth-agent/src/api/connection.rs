//! What the API's three front doors (the unix socket, `--api-listen`'s
//! HTTPS and the kubelet API) share: the accept loop and the serving of one
//! HTTP/1.1 connection, with upgrades for the streaming routes.

use std::future::Future;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::body::Body;

/// How long to wait after a failed accept (usually EMFILE) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections until `shutdown`, each served by a task of its own;
/// finished tasks are reaped as it goes. Returns the tasks still open, for
/// the caller to drain or abort.
pub(super) async fn accept_until<T, A, AF, C, CF>(
    shutdown: &CancellationToken,
    what: &'static str,
    mut accept: A,
    mut connection: C,
) -> JoinSet<()>
where
    A: FnMut() -> AF,
    AF: Future<Output = std::io::Result<T>>,
    C: FnMut(T) -> CF,
    CF: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = accept() => accepted,
        };
        match accepted {
            Ok(stream) => {
                connections.spawn(connection(stream));
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a {what} connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    connections
}

/// Serves one HTTP/1.1 connection until it ends, or until `shutdown`, when
/// the request in flight may finish. `half_close` answers a client that
/// closed its sending side once its request was sent.
pub(super) async fn serve_http1<I, H, HF>(
    io: I,
    handler: H,
    half_close: bool,
    shutdown: &CancellationToken,
    what: &'static str,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> HF + Send + 'static,
    HF: Future<Output = Response<Body>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let response = handler(request);
        async move { Ok::<_, std::convert::Infallible>(response.await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .half_close(half_close)
        .serve_connection(io, service)
        // exec, attach and port-forward take the connection over (WebSocket).
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "{what} connection ended with an error");
    }
}

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS handshake, bounded as the API server bounds it: a client that
/// connects and stays silent does not hold a task for ever.
pub(super) async fn tls_handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    what: &'static str,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            tracing::debug!(%error, "{what} TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("{what} TLS handshake timed out");
            None
        }
    }
}
