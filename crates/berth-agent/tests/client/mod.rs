//! A client of the local API over its unix socket, for the agent's tests.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use serde_json::Value;

/// How long a whole answer may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Sends one request; the response's body is left to read (watches and
/// follows stream).
pub async fn send(
    socket: &Path,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> Result<hyper::Response<Incoming>> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    Ok(sender
        .send_request(request.body(Full::new(body.into()))?)
        .await?)
}

/// A whole answer to a JSON request: status, content type and body.
pub async fn call(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, String, Bytes)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let response = send(socket, method, path, Some("application/json"), body).await?;
    let status = response.status();
    let content_type = header(&response, "content-type");
    let bytes = tokio::time::timeout(WAIT, response.into_body().collect())
        .await??
        .to_bytes();
    Ok((status, content_type, bytes))
}

/// The answer's status and its body as JSON.
pub async fn json(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value)> {
    let (status, _, bytes) = call(socket, method, path, body).await?;
    let value = serde_json::from_slice(&bytes)
        .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&bytes)))?;
    Ok((status, value))
}

/// A response header's value ("" when absent).
pub fn header(response: &hyper::Response<Incoming>, name: &str) -> String {
    let value = response.headers().get(name);
    value
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
