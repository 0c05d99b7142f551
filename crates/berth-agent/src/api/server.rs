//! The unix socket server: bind (owner-only), accept, one HTTP/1.1 connection
//! task each, graceful stop.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

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
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Usually EMFILE: back off briefly instead of spinning.
                    tracing::warn!(%error, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        connections.spawn(serve_connection(stream, cx.clone(), false));
    }
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
    let handler = hyper::service::service_fn(move |request| {
        let cx = cx.clone();
        async move {
            if let Some(metrics) = cx.service.metrics() {
                metrics.http_request(
                    Server::Local,
                    request.method().as_str(),
                    request.uri().path(),
                );
            }
            Ok::<_, std::convert::Infallible>(handle(request, cx).await)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .half_close(half_close)
        .serve_connection(TokioIo::new(io), handler)
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
        tracing::debug!(%error, "API connection ended with an error");
    }
}
