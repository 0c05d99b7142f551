//! The local API on TCP (`--api-listen`): HTTPS only, every request
//! authenticated by a client certificate from the local API's CA, as the
//! API server's x509 authenticator does. The TLS handshake takes any
//! certificate (or none); the chain is checked per connection afterwards,
//! so a stranger gets the API server's 401 `Status`, not a TLS alert.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::body::{full, Body};
use super::connection::{accept_until, serve_http1, tls_handshake};
use super::kubelet::tls;
use super::pki::ApiPki;
use super::routes::{handle, Context};
use crate::service::PodService;

/// The TCP front door of the local API.
pub struct HttpsServer {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    verifier: Arc<dyn ClientCertVerifier>,
}

impl HttpsServer {
    /// Binds `addr` with the serving certificate of `pki`, trusting client
    /// certificates of its CA.
    /// Must be called inside a tokio runtime.
    pub fn bind(addr: SocketAddr, pki: &ApiPki) -> Result<Self, String> {
        let provider = tls::provider();
        let verifier = tls::client_verifier(&pki.ca_cert(), &provider)?;
        let serving = tls::Serving {
            cert: pki.serving_cert(),
            key: pki.serving_key(),
            names: Vec::new(),
        };
        let handshake = Arc::new(RequestClientCert(verifier.clone()));
        let tls = tls::with_verifier(&serving, provider, handshake)?;
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
            .map_err(|e| format!("bind the API on {addr}: {e}"))?;
        Ok(Self {
            listener,
            tls,
            verifier,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`.
    pub async fn serve<S: PodService>(self, service: Arc<S>, shutdown: CancellationToken) {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls);
        let cx = Arc::new(Context {
            service,
            shutdown: shutdown.clone(),
        });
        let verifier = self.verifier;
        let mut connections = accept_until(
            &shutdown,
            "API",
            || async { self.listener.accept().await.map(|(stream, _)| stream) },
            |stream| {
                let (acceptor, cx, verifier) = (acceptor.clone(), cx.clone(), verifier.clone());
                async move {
                    let Some(tls) = tls_handshake(&acceptor, stream, "API").await else {
                        return;
                    };
                    let authenticated = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .is_some_and(|chain| trusted(verifier.as_ref(), chain));
                    serve_connection(TokioIo::new(tls), cx, authenticated).await;
                }
            },
        )
        .await;
        connections.shutdown().await;
    }
}

/// Whether the client's chain leads to the CA.
fn trusted(verifier: &dyn ClientCertVerifier, chain: &[CertificateDer<'static>]) -> bool {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return false;
    };
    match verifier.verify_client_cert(leaf, intermediates, UnixTime::now()) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!("API client certificate refused: {e}");
            false
        }
    }
}

async fn serve_connection<S: PodService, I>(io: I, cx: Arc<Context<S>>, authenticated: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let shutdown = cx.shutdown.clone();
    let handler = move |request| {
        let cx = cx.clone();
        async move {
            if authenticated {
                handle(request, cx).await
            } else {
                unauthorized()
            }
        }
    };
    serve_http1(io, handler, false, &shutdown, "API").await;
}

/// The API server's answer to a caller it cannot authenticate.
fn unauthorized() -> Response<Body> {
    let status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    });
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(status.to_string()))
        .unwrap_or_default()
}

/// The handshake half of the client-certificate check (Go's
/// `tls.RequestClientCert`): a certificate is asked for, and the client
/// must prove it holds its key, but whom it chains to is checked later.
#[derive(Debug)]
struct RequestClientCert(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for RequestClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
