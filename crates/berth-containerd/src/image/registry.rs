//! Registries through oci-client: one client per endpoint (scheme and TLS
//! checks differ per host), mirrors tried before the registry, and registry
//! failures turned into runtime errors that carry the registry's own words.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use berth_runtime::{RegistryCredentials, RuntimeError, RuntimeErrorKind};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::TryStreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::pull::credentials_key;
use super::registry_config::{Endpoint, RegistryConfig};
use super::resolve::MANIFEST_TYPES;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Between two reads of a response: a stalled registry fails the pull.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The registry settings and a client per endpoint host (clients keep the
/// connections and the tokens).
#[derive(Default)]
pub(crate) struct Registries {
    config: RegistryConfig,
    clients: Mutex<HashMap<String, Client>>,
}

/// The endpoint that served an image's manifest; its blobs come from there.
pub(crate) struct Source {
    client: Client,
    reference: Reference,
    auth: RegistryAuth,
    pub host: String,
}

impl Registries {
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            config,
            clients: Mutex::default(),
        }
    }

    /// The client for `endpoint` used with `credentials`: a client keeps
    /// the first auth it is given for a registry and the tokens got with
    /// it, so each set of pull credentials has a client of its own.
    fn client(
        &self,
        endpoint: &Endpoint,
        credentials: Option<&RegistryCredentials>,
    ) -> Result<Client, RuntimeError> {
        let key = credentials_key(&endpoint.host, credentials);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let config = ClientConfig {
            protocol: if endpoint.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: endpoint.insecure_skip_verify,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| registry_error(&endpoint.host, e))?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Fetches the manifest (or index) `reference` names from the first
    /// endpoint that serves it: `(source, bytes, digest)`. A mirror's failure
    /// is logged and the next endpoint tried; the registry's own failure is
    /// the error.
    ///
    /// `credentials` (from a pod's pull secret) are the registry's auth in
    /// place of its configured one; mirrors keep theirs.
    pub async fn resolve(
        &self,
        reference: &Reference,
        credentials: Option<&RegistryCredentials>,
    ) -> Result<(Source, Bytes, String), RuntimeError> {
        let endpoints = self.config.endpoints(reference.registry());
        let last = endpoints.len() - 1;
        for (i, endpoint) in endpoints.into_iter().enumerate() {
            let mut reference = reference.clone();
            if i < last {
                reference.set_mirror_registry(endpoint.host.clone());
            }
            let given = credentials.filter(|_| i == last);
            let basic = given.map(|c| (&c.username, &c.password)).or(endpoint
                .credentials
                .as_ref()
                .map(|c| (&c.username, &c.password)));
            let auth = match basic {
                Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
                None => RegistryAuth::Anonymous,
            };
            let client = self.client(&endpoint, given)?;
            let fetched = client
                .pull_manifest_raw(&reference, &auth, &MANIFEST_TYPES)
                .await
                .map_err(|e| registry_error(&endpoint.host, e));
            match fetched {
                Ok((bytes, digest)) => {
                    tracing::debug!(host = endpoint.host, %digest, "manifest resolved");
                    let source = Source {
                        client,
                        reference,
                        auth,
                        host: endpoint.host,
                    };
                    return Ok((source, bytes, digest));
                }
                Err(e) if i < last => {
                    tracing::debug!(mirror = endpoint.host, error = %e, "mirror failed, trying the next")
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the registry itself is always the last endpoint")
    }
}

impl Source {
    /// A manifest or index by digest (checked against it).
    pub async fn manifest(&self, digest: &str) -> Result<Bytes, RuntimeError> {
        let reference = self.reference.clone_with_digest(digest.to_string());
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&reference, &self.auth, &MANIFEST_TYPES)
            .await
            .map_err(|e| registry_error(&self.host, e))?;
        Ok(bytes)
    }

    /// A blob's bytes as they arrive; the stream fails at its end unless they
    /// match the digest.
    pub async fn blob(
        &self,
        digest: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, RuntimeError>>, RuntimeError> {
        let stream = self
            .client
            .pull_blob_stream(&self.reference, digest)
            .await
            .map_err(|e| registry_error(&self.host, e))?;
        let host = self.host.clone();
        Ok(Box::pin(stream.stream.map_err(move |e| {
            RuntimeError::other(format!("reading from {host}: {}", chain(&e)))
        })))
    }
}

/// An error with its causes, `a: b: c` (reqwest hides the OS error in them).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `MANIFEST_UNKNOWN` and "manifest unknown" become "manifest unknown";
/// a code with a message of its own becomes `code: message`, as docker
/// prints registry errors.
fn registry_words(code: &str, message: &str) -> String {
    let code = code.to_ascii_lowercase().replace('_', " ");
    if message.is_empty() || message.eq_ignore_ascii_case(&code) {
        code
    } else {
        format!("{code}: {message}")
    }
}

/// What a failed registry call means to the pod worker, in the registry's words.
pub(super) fn registry_error(host: &str, error: OciDistributionError) -> RuntimeError {
    match error {
        OciDistributionError::RegistryError { envelope, .. } => {
            let words: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| {
                    let code = serde_json::to_value(&e.code)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    registry_words(&code, &e.message)
                })
                .collect();
            RuntimeError::other(words.join("; "))
        }
        // oci-client drops a 401's body; the distribution registry says this.
        OciDistributionError::UnauthorizedError { .. } => RuntimeError::other(format!(
            "unauthorized: authentication required by {host} (401 Unauthorized)"
        )),
        OciDistributionError::AuthenticationFailure(reason) => {
            RuntimeError::other(format!("unauthorized: {host}: {reason}"))
        }
        OciDistributionError::ServerError { code, message, .. } => {
            let message = message.trim();
            RuntimeError::other(format!("{host} answered HTTP {code}: {message}"))
        }
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            RuntimeError::new(
                RuntimeErrorKind::RegistryUnavailable,
                format!("registry {host} unavailable: {}", chain(&e)),
            )
        }
        other => RuntimeError::other(format!("{host}: {}", chain(&other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_read_as_docker_prints_them() {
        assert_eq!(
            registry_words("MANIFEST_UNKNOWN", "manifest unknown"),
            "manifest unknown"
        );
        assert_eq!(
            registry_words("UNAUTHORIZED", "authentication required"),
            "unauthorized: authentication required"
        );
        assert_eq!(registry_words("DENIED", ""), "denied");
    }

    #[test]
    fn an_error_envelope_keeps_the_registry_text() {
        let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#;
        let envelope = serde_json::from_str(body).unwrap();
        let error = OciDistributionError::RegistryError {
            envelope,
            url: "http://r/v2/x/manifests/nope".into(),
        };
        let error = registry_error("r", error);
        assert_eq!(error.kind, RuntimeErrorKind::Other);
        assert_eq!(error.message, "manifest unknown");
    }
}
