//! The kubelet API's TLS: its serving certificate (given, or made once at
//! first start and kept), and client certificates checked against the
//! client CA when one is configured.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Where the serving certificate and key are, and whom it names when berth
/// makes it.
pub struct Serving {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// DNS names and IPs for a certificate berth makes.
    pub names: Vec<String>,
}

/// The TLS configuration of the kubelet API.
pub fn server_config(
    serving: &Serving,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, String> {
    if !serving.cert.exists() || !serving.key.exists() {
        make_self_signed(serving)?;
    }
    let provider = provider();
    let verifier = match client_ca {
        // Callers without a certificate may still bring a bearer token.
        Some(path) => client_verifier(path, &provider)?,
        None => WebPkiClientVerifier::no_client_auth(),
    };
    with_verifier(serving, provider, verifier)
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Checks client certificates against the CA in `path`; callers without one
/// are let through the handshake (the HTTP layer decides about them).
pub(crate) fn client_verifier(
    path: &Path,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("clientCAFile {}: {e}", path.display()))?;
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| format!("clientCAFile {}: {e}", path.display()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("clientCAFile {}: {e}", path.display()))
}

/// An HTTP/1.1 server configuration with the serving certificate in
/// `serving` and client certificates checked by `verifier`.
pub(crate) fn with_verifier(
    serving: &Serving,
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> Result<Arc<ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&serving.cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("tlsCertFile {}: {e}", serving.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&serving.key)
        .map_err(|e| format!("tlsPrivateKeyFile {}: {e}", serving.key.display()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("serving certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A self-signed serving certificate, as the kubelet makes one when none
/// is given; the key is root's alone.
fn make_self_signed(serving: &Serving) -> Result<(), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let params = rcgen::CertificateParams::new(serving.names.clone()).map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    if let Some(dir) = serving.cert.parent() {
        berth_runtime::files::create_dir(dir, berth_runtime::files::PRIVATE_DIR_MODE)
            .map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    berth_runtime::files::write_private(&serving.key, key.serialize_pem().as_bytes())
        .map_err(|e| format!("write {}: {e}", serving.key.display()))?;
    berth_runtime::files::write_private(&serving.cert, cert.pem().as_bytes())
        .map_err(|e| format!("write {}: {e}", serving.cert.display()))?;
    Ok(())
}
