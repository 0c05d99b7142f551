//! HTTP/1.1 over the agent's unix socket, one connection per request.
//!
//! Responses that are not 2xx become [`ClientError::Api`] carrying the
//! Kubernetes `Status` the agent sent, so callers can print them as kubectl does.

use std::path::{Path, PathBuf};

use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::Value;
use tokio::net::UnixStream;

/// A Kubernetes `Status` (the failure body of every API error).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ApiStatus {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<StatusDetails>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct StatusDetails {
    pub name: String,
    pub kind: String,
    pub causes: Vec<StatusCause>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct StatusCause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

impl ApiStatus {
    pub fn is_not_found(&self) -> bool {
        self.code == 404 || self.reason == "NotFound"
    }

    /// A status for an error body that is not a `Status`.
    pub(crate) fn from_body(code: StatusCode, body: &[u8]) -> Self {
        if let Ok(status) = serde_json::from_slice::<ApiStatus>(body) {
            if !status.message.is_empty() || !status.reason.is_empty() {
                return ApiStatus {
                    code: code.as_u16(),
                    ..status
                };
            }
        }
        ApiStatus {
            code: code.as_u16(),
            reason: String::new(),
            message: String::from_utf8_lossy(body).trim().to_string(),
            details: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the berth agent at {}: {source}", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("request to the berth agent failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("{}", .0.message)]
    Api(Box<ApiStatus>),
    #[error("invalid response from the berth agent: {0}")]
    Decode(#[from] serde_json::Error),
}

/// The agent's local API.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends a request; a non-2xx answer is returned as [`ClientError::Api`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        tracing::debug!(%method, path, "local API request");
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    socket: self.socket.clone(),
                    source,
                })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "local API connection ended");
            }
        });
        let builder = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "localhost");
        let request = match body {
            Some(body) => builder
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(body)?))),
            None => builder.body(Full::new(Bytes::new())),
        }
        .expect("method, path and headers are valid");
        let response = sender.send_request(request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let code = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Err(ClientError::Api(Box::new(ApiStatus::from_body(
            code, &body,
        ))))
    }

    /// Sends a request and decodes the JSON answer.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let response = self.send(method, path, body).await?;
        let bytes = response.into_body().collect().await?.to_bytes();
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.json(Method::GET, path, None).await
    }
}

/// Reads a streamed body chunk by chunk (logs, watches).
pub struct BodyStream {
    body: Incoming,
    pending: Vec<u8>,
}

impl BodyStream {
    pub fn new(response: hyper::Response<Incoming>) -> Self {
        Self {
            body: response.into_body(),
            pending: Vec::new(),
        }
    }

    /// The next chunk of data, or `None` at the end of the stream.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        while let Some(frame) = self.body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if !data.is_empty() {
                    return Ok(Some(data));
                }
            }
        }
        Ok(None)
    }

    /// The next complete line (without its newline); a last unterminated
    /// line is returned at the end of the stream.
    pub async fn line(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                return Ok(Some(line));
            }
            match self.chunk().await? {
                Some(data) => self.pending.extend_from_slice(&data),
                None if self.pending.is_empty() => return Ok(None),
                None => return Ok(Some(std::mem::take(&mut self.pending))),
            }
        }
    }
}

/// Percent-encodes a query parameter value.
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The collection path of pods: one namespace, or all of them.
pub fn pods_path(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("/api/v1/namespaces/{}/pods", encode_query(ns)),
        None => "/api/v1/pods".to_string(),
    }
}

pub fn pod_path(namespace: &str, name: &str) -> String {
    format!(
        "/api/v1/namespaces/{}/pods/{}",
        encode_query(namespace),
        encode_query(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_are_decoded_and_other_bodies_kept_as_message() {
        let status = ApiStatus::from_body(
            StatusCode::NOT_FOUND,
            br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"x\" not found","reason":"NotFound","details":{"name":"x","kind":"pods"},"code":404}"#,
        );
        assert!(status.is_not_found());
        assert_eq!(status.reason, "NotFound");
        assert_eq!(status.details.unwrap().kind, "pods");

        let plain = ApiStatus::from_body(StatusCode::BAD_GATEWAY, b"upstream gone\n");
        assert_eq!(plain.code, 502);
        assert_eq!(plain.message, "upstream gone");
        assert!(plain.reason.is_empty());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode_query("involvedObject.uid=a-b"),
            "involvedObject.uid%3Da-b"
        );
    }
}
