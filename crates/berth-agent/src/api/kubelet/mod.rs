//! The kubelet API on :10250 (cluster mode): TLS, every caller
//! authenticated and authorized (`auth`), and the routes the API server
//! proxies: `/containerLogs` (served by the local API's log handler, so
//! every log option behaves the same), `/pods`, `/runningpods/` (`running`),
//! `/healthz`, `/metrics`, and `/stats/summary` and `/metrics/resource`
//! (`stats`).
//! `/exec`, `/attach` and `/portForward` are the streaming server's
//! (`super::stream`), over WebSocket.

mod auth;
mod running;
mod stats;
pub(crate) mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::body::{full, json_response, Body};
use super::connection::{accept_until, serve_http1, tls_handshake};
use super::routes::{handle, Context, Query};
use super::status::Failure;
use super::stream::{self, StreamOptions};
use crate::metrics::Server;
use crate::service::PodService;
use auth::{Authorizer, Identity, Refusal};
use stats::StatsProvider;
pub use tls::Serving;

/// What the kubelet API serves with.
pub struct KubeletServer {
    pub listener: TcpListener,
    pub tls: Arc<rustls::ServerConfig>,
    pub authorizer: Arc<Authorizer>,
    pub stats: Arc<StatsProvider>,
}

impl KubeletServer {
    /// Binds the port and loads (or makes) the serving certificate.
    pub async fn bind(
        port: u16,
        serving: &Serving,
        client_ca: Option<&std::path::Path>,
        client: kube::Client,
        node: String,
        root_dir: std::path::PathBuf,
    ) -> Result<Self, String> {
        let tls = tls::server_config(serving, client_ca)?;
        let addr = SocketAddr::from(([0, 0, 0, 0], port));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("bind the kubelet API on {addr}: {e}"))?;
        Ok(Self {
            listener,
            tls,
            stats: Arc::new(StatsProvider::new(node.clone(), root_dir)),
            authorizer: Arc::new(Authorizer::new(client, node)),
        })
    }

    /// Serves until `shutdown`.
    pub async fn serve<S: PodService>(self, service: Arc<S>, shutdown: CancellationToken) {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls);
        let cx = Arc::new(Context {
            service,
            shutdown: shutdown.clone(),
        });
        let (authorizer, stats) = (self.authorizer, self.stats);
        let mut connections = accept_until(
            &shutdown,
            "kubelet API",
            || async { self.listener.accept().await.map(|(stream, _)| stream) },
            |stream| {
                let (acceptor, cx) = (acceptor.clone(), cx.clone());
                let (authorizer, stats) = (authorizer.clone(), stats.clone());
                async move {
                    let Some(tls) = tls_handshake(&acceptor, stream, "kubelet API").await else {
                        return;
                    };
                    let certificate = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|cert| auth::from_certificate(cert));
                    serve_connection(TokioIo::new(tls), cx, authorizer, stats, certificate).await;
                }
            },
        )
        .await;
        connections.shutdown().await;
    }
}

async fn serve_connection<S: PodService, I>(
    io: I,
    cx: Arc<Context<S>>,
    authorizer: Arc<Authorizer>,
    stats: Arc<StatsProvider>,
    certificate: Option<Identity>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let shutdown = cx.shutdown.clone();
    let handler = move |request: Request<Incoming>| {
        let (cx, authorizer, stats, certificate) = (
            cx.clone(),
            authorizer.clone(),
            stats.clone(),
            certificate.clone(),
        );
        async move {
            let (method, path) = (request.method().clone(), request.uri().path().to_owned());
            let response = match authenticate(&authorizer, certificate, &request).await {
                Ok(()) => route(request, cx, stats).await,
                Err(Refusal::Unauthorized) => text(StatusCode::UNAUTHORIZED, "Unauthorized".into()),
                Err(Refusal::Forbidden(message)) => text(StatusCode::FORBIDDEN, message),
                Err(Refusal::Error(message)) => text(StatusCode::INTERNAL_SERVER_ERROR, message),
            };
            tracing::debug!(%method, %path, status = %response.status(), "kubelet API");
            response
        }
    };
    serve_http1(io, handler, false, &shutdown, "kubelet API").await;
}

async fn authenticate(
    authorizer: &Authorizer,
    certificate: Option<Identity>,
    request: &Request<Incoming>,
) -> Result<(), Refusal> {
    let who = match certificate {
        Some(who) => who,
        None => authorizer.token_user(request.headers()).await?,
    };
    let what = auth::attributes(request.method(), request.uri().path());
    authorizer.authorize(&who, &what).await
}

fn text(code: StatusCode, message: String) -> Response<Body> {
    let mut response = Response::new(full(message));
    *response.status_mut() = code;
    response
}

async fn route<S: PodService>(
    request: Request<Incoming>,
    cx: Arc<Context<S>>,
    stats: Arc<StatsProvider>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    if let Some(metrics) = cx.service.metrics() {
        metrics.http_request(Server::Kubelet, request.method().as_str(), &path);
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["healthz"] => text(StatusCode::OK, "ok".into()),
        ["metrics"] => handle(request, cx).await,
        ["pods"] => {
            let list = k8s_openapi::List::<k8s_openapi::api::core::v1::Pod> {
                items: cx.service.list(None),
                metadata: Default::default(),
            };
            json_response(StatusCode::OK, &list)
        }
        ["runningpods"] => {
            let list = k8s_openapi::List::<k8s_openapi::api::core::v1::Pod> {
                items: running::running_pods(cx.service.list(None)),
                metadata: Default::default(),
            };
            json_response(StatusCode::OK, &list)
        }
        ["stats", "summary"] | ["metrics", "resource"] => {
            stats::serve(
                &segments,
                request.uri().query(),
                cx.service.list(None),
                stats,
            )
            .await
        }
        ["containerLogs", namespace, pod, container] => {
            // Names only: nothing that could add to the path or the query.
            let name_like = |s: &str| {
                !s.is_empty()
                    && s.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    })
            };
            if ![namespace, pod, container]
                .into_iter()
                .all(|s| name_like(s))
            {
                return text(StatusCode::BAD_REQUEST, format!("invalid path {path:?}"));
            }
            // The local API's log route, with the container in the query.
            let mut query = format!("container={container}");
            if let Some(rest) = request.uri().query().filter(|q| !q.is_empty()) {
                query.push('&');
                query.push_str(rest);
            }
            let uri = format!("/api/v1/namespaces/{namespace}/pods/{pod}/log?{query}");
            let Ok(uri) = uri.parse::<Uri>() else {
                return text(StatusCode::BAD_REQUEST, "invalid path".into());
            };
            let (mut parts, body) = request.into_parts();
            parts.uri = uri;
            handle(Request::from_parts(parts, body), cx).await
        }
        ["exec" | "attach", namespace, pod, container]
        | ["exec" | "attach", namespace, pod, _, container] => {
            let (namespace, pod) = (namespace.to_string(), pod.to_string());
            let query = Query::parse(request.uri().query().unwrap_or_default());
            let options = StreamOptions::parse(&query).map(|options| StreamOptions {
                container: Some(container.to_string()),
                ..options
            });
            let reply = match options {
                Ok(options) if segments[0] == "exec" => {
                    stream::exec(&cx.service, request, &namespace, &pod, options).await
                }
                Ok(options) => {
                    stream::attach(&cx.service, request, &namespace, &pod, options).await
                }
                Err(failure) => Err(failure),
            };
            reply.unwrap_or_else(Failure::into_response)
        }
        ["portForward", namespace, pod] | ["portForward", namespace, pod, _] => {
            let (namespace, pod) = (namespace.to_string(), pod.to_string());
            stream::port_forward(&cx.service, request, &namespace, &pod)
                .await
                .unwrap_or_else(Failure::into_response)
        }
        ["run", ..] => text(
            StatusCode::NOT_IMPLEMENTED,
            "berth does not serve run through the API server".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "404 page not found".into()),
    }
}
