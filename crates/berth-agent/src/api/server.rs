//! The unix socket server: bind (owner-only), accept, one HTTP/1.1 connection
//! task each, graceful stop.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use super::connection::{accept_until, serve_http1};
use super::routes::{handle, Context};
use crate::metrics::Server;
use crate::service::PodService;

/// How long open connections get to finish once the server stops.
const DRAIN: Duration = Duration::from_secs(5);

/// Binds the API socket with mode 0600, creating its directory (0700) and
/// replacing a stale socket file. Fails if another process still serves it.
/// Must be called inside a tokio runtime.
pub fn bind(socket: &Path) -> std::io::Result<UnixListener> {
    use std::io::{Error, ErrorKind};
    if let Some(parent) = socket.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    match std::fs::symlink_metadata(socket) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return Err(Error::new(
                    ErrorKind::AddrInUse,
                    format!("{} is in use by another process", socket.display()),
                ));
            }
            tracing::debug!(socket = %socket.display(), "removing stale socket");
            std::fs::remove_file(socket)?;
        }
        Ok(_) => {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", socket.display()),
            ))
        }
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Binds `socket` and serves until `shutdown`.
pub async fn serve<S: PodService>(
    socket: &Path,
    service: Arc<S>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = bind(socket)?;
    serve_listener(listener, service, shutdown).await
}

/// Serves the API on a bound listener until `shutdown`; then lets open
/// requests finish (streams end at once) and removes the socket file.
pub async fn serve_listener<S: PodService>(
    listener: UnixListener,
    service: Arc<S>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let socket = listener.local_addr()?.as_pathname().map(Path::to_owned);
    tracing::debug!(socket = ?socket, "local API listening");
    let cx = Arc::new(Context {
        service,
        shutdown: shutdown.clone(),
    });
    let mut connections = accept_until(
        &shutdown,
        "local API",
        || async { listener.accept().await.map(|(stream, _)| stream) },
        |stream| serve_connection(stream, cx.clone(), false),
    )
    .await;
    drop(listener);
    if let Some(socket) = socket {
        let _ = std::fs::remove_file(socket);
    }
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            open = connections.len(),
            "closing API connections that did not finish"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Serves one HTTP/1.1 connection until it ends or the server stops.
/// `half_close` answers a client that closed its sending side once its
/// request was sent (the in-process fuzz target's client does).
pub(super) async fn serve_connection<S, I>(io: I, cx: Arc<Context<S>>, half_close: bool)
where
    S: PodService,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = cx.shutdown.clone();
    let handler = move |request: Request<Incoming>| {
        let cx = cx.clone();
        async move {
            if let Some(metrics) = cx.service.metrics() {
                metrics.http_request(
                    Server::Local,
                    request.method().as_str(),
                    request.uri().path(),
                );
            }
            handle(request, cx).await
        }
    };
    serve_http1(
        TokioIo::new(io),
        handler,
        half_close,
        &shutdown,
        "local API",
    )
    .await;
}
