//! Request bodies in (size-limited, JSON or YAML) and response bodies out.

use std::convert::Infallible;

use http::{header, HeaderMap, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::{Bytes, Frame, Incoming};
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use super::status::Failure;

/// The largest request body accepted: the API server's `MaxRequestBodyBytes`.
pub const MAX_BODY_BYTES: usize = berth_api::manifest::MAX_MANIFEST_BYTES;

/// Every response body: whole or streamed.
pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

/// A streamed body is fed through this channel.
pub(crate) type ChunkSender = tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A 200 response with a streamed body, and the sender that feeds it. The
/// body ends when the sender is dropped; a closed sender means the client left.
pub(crate) fn streaming(content_type: &'static str) -> (Response<Body>, ChunkSender) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let response = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(BodyExt::boxed(body))
        .unwrap_or_default();
    (response, tx)
}

/// Sends one chunk; false once the client is gone.
pub(crate) async fn send_chunk(tx: &ChunkSender, bytes: impl Into<Bytes>) -> bool {
    tx.send(Ok(Frame::data(bytes.into()))).await.is_ok()
}

pub(crate) fn json_response(code: StatusCode, value: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(json) => Response::builder()
            .status(code)
            .header(header::CONTENT_TYPE, "application/json")
            .body(full(json))
            .unwrap_or_default(),
        Err(error) => Failure::internal(format!("encoding the response: {error}")).into_response(),
    }
}

pub(crate) fn text_response(text: &'static str) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(text))
        .unwrap_or_default()
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`].
pub(crate) async fn read_body(headers: &HeaderMap, body: Incoming) -> Result<Bytes, Failure> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(Failure::too_large(MAX_BODY_BYTES));
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(Failure::too_large(MAX_BODY_BYTES))
        }
        Err(error) => Err(Failure::bad_request(format!(
            "reading the request body: {error}"
        ))),
    }
}

/// Refuses bodies that are neither JSON nor YAML (by `Content-Type`).
pub(crate) fn check_media_type(headers: &HeaderMap) -> Result<(), Failure> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let value = value.to_str().unwrap_or_default();
    let media_type = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media_type.as_str() {
        "" | "*/*" | "application/json" | "application/yaml" | "application/x-yaml"
        | "text/yaml" => Ok(()),
        _ => Err(Failure::unsupported_media_type(value)),
    }
}

/// Decodes the one Pod a POST or PUT carries (strictly: unknown fields are
/// errors, as with kubectl's default `fieldValidation=Strict`), on a
/// blocking thread: a large manifest costs milliseconds of CPU, which must
/// not hold up the requests served beside it.
pub(crate) async fn parse_pod(bytes: Bytes) -> Result<Pod, Failure> {
    tokio::task::spawn_blocking(move || decode_pod(&bytes))
        .await
        .map_err(|e| Failure::internal(format!("decoding the Pod: {e}")))?
}

fn decode_pod(bytes: &[u8]) -> Result<Pod, Failure> {
    let undecodable =
        |error: String| Failure::bad_request(format!("cannot decode the Pod: {error}"));
    let text =
        std::str::from_utf8(bytes).map_err(|_| undecodable("the body is not UTF-8".into()))?;
    // One parser for both: JSON bodies are read as JSON, others as YAML.
    let pods = berth_api::manifest::parse_pods(text).map_err(|e| undecodable(e.to_string()))?;
    let count = pods.len();
    let mut pods = pods.into_iter();
    match (pods.next(), count) {
        (Some(pod), 1) => Ok(pod),
        _ => Err(undecodable(format!(
            "expected exactly one Pod, found {count}"
        ))),
    }
}

/// Decodes a small JSON request (exec, image import, delete options).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, Failure> {
    serde_json::from_slice(bytes)
        .map_err(|e| Failure::bad_request(format!("cannot decode {what}: {e}")))
}
