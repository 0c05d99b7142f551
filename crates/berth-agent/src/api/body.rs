//! Request bodies in (size-limited, JSON or YAML) and response bodies out.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{header, HeaderMap, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
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
        .body(BodyExt::boxed(FlushEach::new(body)))
        .unwrap_or_default();
    (response, tx)
}

/// A streamed body whose every data frame is written out before the next
/// frame, or the body's end, is taken: the kubelet's `flushwriter` flushes
/// each write the same way.
///
/// Why it matters: without it, hyper sends the last chunk and the end of a
/// chunked body in one write (one TLS record), the reader's one read returns
/// the bytes together with EOF, and the API server's WebSocket relay of a log
/// (`wsstream`'s copy loop) drops the bytes of such a read: the client got an
/// empty log.
struct FlushEach<B> {
    inner: B,
    /// A data frame went out: yield once, so hyper flushes it.
    flush_due: bool,
}

impl<B> FlushEach<B> {
    fn new(inner: B) -> Self {
        FlushEach {
            inner,
            flush_due: false,
        }
    }
}

impl<B: HttpBody + Unpin> HttpBody for FlushEach<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        if std::mem::take(&mut this.flush_due) {
            // hyper flushes its buffer whenever the body is pending.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        this.flush_due = matches!(&frame, Some(Ok(frame)) if frame.is_data());
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        !self.flush_due && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
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

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio_util::sync::CancellationToken;

    use super::*;

    /// A connection that hands over one request, then waits, and keeps
    /// what is written between flushes as one piece: one TLS record, or
    /// one segment, on a real connection.
    struct Recorder {
        request: &'static [u8],
        pending: Vec<u8>,
        flushed: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.request.is_empty() {
                return Poll::Pending;
            }
            let n = self.request.len().min(buf.remaining());
            buf.put_slice(&self.request[..n]);
            self.request = &self.request[n..];
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.pending.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            let piece = std::mem::take(&mut self.pending);
            if !piece.is_empty() {
                self.flushed.lock().unwrap().push(piece);
            }
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.poll_flush(cx)
        }
    }

    #[tokio::test]
    async fn a_streamed_bodys_last_chunk_is_flushed_before_its_end() {
        let flushed = Arc::new(Mutex::new(Vec::new()));
        let io = Recorder {
            request: b"GET /containerLogs/ns/pod/main HTTP/1.1\r\nhost: node\r\n\r\n",
            pending: Vec::new(),
            flushed: flushed.clone(),
        };
        let handler = |_| async {
            // The whole log and the body's end are ready at once, before
            // hyper takes the first frame: the case that lost the log.
            let (response, tx) = streaming("text/plain");
            assert!(send_chunk(&tx, "container is alive\n").await);
            drop(tx);
            response
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                super::super::connection::serve_http1(
                    TokioIo::new(io),
                    handler,
                    false,
                    &shutdown,
                    "test",
                )
                .await
            }
        });
        let end = b"0\r\n\r\n";
        let pieces = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                let pieces = flushed.lock().unwrap().clone();
                if pieces.iter().any(|p| p.ends_with(end)) {
                    return pieces;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the response is written");
        shutdown.cancel();
        server.abort();

        let text: Vec<String> = pieces
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        let with_data = text
            .iter()
            .position(|p| p.contains("container is alive\n"))
            .expect("the chunk was written");
        assert!(
            !text[with_data].ends_with("0\r\n\r\n"),
            "the chunk and the body's end went out together: {text:?}"
        );
        assert!(text.concat().ends_with("container is alive\n\r\n0\r\n\r\n"));
    }

    #[tokio::test]
    async fn each_data_frame_is_followed_by_one_pending_poll() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, io::Error>>(4);
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        tx.send(Ok(Frame::data(Bytes::from_static(b"b"))))
            .await
            .unwrap();
        drop(tx);
        let mut body = FlushEach::new(http_body_util::StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Pending => "pending".to_owned(),
                Poll::Ready(None) => "end".to_owned(),
                Poll::Ready(Some(frame)) => {
                    let data = frame.unwrap().into_data().unwrap();
                    String::from_utf8(data.to_vec()).unwrap()
                }
            });
            if seen.last().unwrap() != "end" {
                assert!(!body.is_end_stream(), "ended after {seen:?}");
            }
        }
        assert_eq!(seen, ["a", "pending", "b", "pending", "end", "end"]);
    }
}
