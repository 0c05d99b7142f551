//! berth's image endpoints (no Kubernetes equivalent; the CRI image service's
//! verbs):
//!
//! - `GET /apis/berth.io/v1/images` and `POST /apis/berth.io/v1/images/import`
//!   with `{"path": "..."}`; both answer `{"items": [{"reference", "digest", "size"}]}`.
//! - `POST /apis/berth.io/v1/images/pull` with `{"reference": "busybox:1.36"}`:
//!   a 400 `Status` for a missing or malformed reference, else 200 and a
//!   stream of newline-delimited JSON objects: `{"progress": {"layer",
//!   "done", "total"}}` per blob report, then one last object, either
//!   `{"image": {"reference", "digest", "size"}, "upToDate": bool}` or
//!   `{"error": Status}` carrying the registry's message.
//! - `DELETE /apis/berth.io/v1/images/{reference}` (the reference
//!   percent-encoded as one path segment): 200 `{"deleted": "<normalized
//!   reference>"}`, a 404 `Status` when absent, 409 `Conflict` while a
//!   container of a pod uses it.

use std::path::PathBuf;

use berth_runtime::{ImageInfo, PullProgress};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::body::{json_response, parse_json, read_body, send_chunk, streaming, Body, ChunkSender};
use super::routes::{Context, Reply};
use super::status::Failure;
use crate::service::{ApiError, PodService, PulledImage};

#[derive(Debug, Deserialize)]
struct ImportRequest {
    path: PathBuf,
}

#[derive(Debug, Serialize)]
struct ImageList {
    items: Vec<ImageItem>,
}

#[derive(Debug, Deserialize)]
struct PullRequest {
    #[serde(default)]
    reference: String,
}

/// One line of a pull's stream.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
enum PullLine {
    Progress(ProgressItem),
    Error(Box<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>),
    /// `{"image": ..., "upToDate": ...}`.
    #[serde(untagged)]
    Done {
        image: ImageItem,
        #[serde(rename = "upToDate")]
        up_to_date: bool,
    },
}

#[derive(Debug, Serialize)]
struct ProgressItem {
    layer: String,
    done: u64,
    total: u64,
}

#[derive(Debug, Serialize)]
struct Deleted {
    deleted: String,
}

#[derive(Debug, Serialize)]
struct ImageItem {
    reference: String,
    digest: String,
    size: u64,
}

fn image_item(image: ImageInfo) -> ImageItem {
    ImageItem {
        reference: image.reference,
        digest: image.digest,
        size: image.size,
    }
}

fn image_list(images: Vec<ImageInfo>) -> ImageList {
    ImageList {
        items: images.into_iter().map(image_item).collect(),
    }
}

pub(crate) async fn list<S: PodService>(cx: &Context<S>) -> Reply {
    let images = cx.service.list_images().await.map_err(Failure::from)?;
    Ok(json_response(StatusCode::OK, &image_list(images)))
}

pub(crate) async fn import<S: PodService>(cx: &Context<S>, request: Request<Incoming>) -> Reply {
    let (parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body).await?;
    let request: ImportRequest = parse_json("the import request", &bytes)?;
    if !request.path.is_absolute() {
        return Err(Failure::bad_request(format!(
            "path {} must be absolute (the agent resolves it, not the client)",
            request.path.display()
        )));
    }
    let images = cx
        .service
        .import_image(request.path)
        .await
        .map_err(Failure::from)?;
    Ok(json_response(StatusCode::OK, &image_list(images)))
}

pub(crate) async fn pull<S: PodService>(cx: &Context<S>, request: Request<Incoming>) -> Reply {
    let (parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body).await?;
    let request: PullRequest = parse_json("the pull request", &bytes)?;
    let reference = request.reference.trim().to_owned();
    super::reference::check(&reference).map_err(Failure::bad_request)?;
    Ok(stream_pull(cx, reference))
}

/// Runs the pull in its own task, streaming its progress. A client that
/// leaves does not cancel the pull (pods may be waiting for the same image);
/// the server stopping does.
fn stream_pull<S: PodService>(cx: &Context<S>, reference: String) -> Response<Body> {
    let service = cx.service.clone();
    let shutdown = cx.shutdown.clone();
    let (response, tx) = streaming("application/json");
    tokio::spawn(async move {
        let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
        let pull = service.pull_image(&reference, progress_tx);
        tokio::pin!(pull);
        let mut sink = LineSink { tx, open: true };
        let result = loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                Some(report) = progress_rx.recv() => sink.send(&progress_line(report)).await,
                result = &mut pull => break result,
            }
        };
        while let Ok(report) = progress_rx.try_recv() {
            sink.send(&progress_line(report)).await;
        }
        let last = match result {
            Ok(PulledImage { image, up_to_date }) => {
                tracing::debug!(%reference, digest = %image.digest, up_to_date, "image pulled");
                PullLine::Done {
                    image: image_item(image),
                    up_to_date,
                }
            }
            Err(error) => {
                tracing::debug!(%reference, %error, "image pull failed");
                PullLine::Error(Box::new(
                    Failure::from(error).for_image(&reference).status(),
                ))
            }
        };
        sink.send(&last).await;
    });
    response
}

fn progress_line(report: PullProgress) -> PullLine {
    PullLine::Progress(ProgressItem {
        layer: report.layer,
        done: report.done,
        total: report.total,
    })
}

/// The stream's writer; stops writing once the client is gone.
struct LineSink {
    tx: ChunkSender,
    open: bool,
}

impl LineSink {
    async fn send(&mut self, line: &PullLine) {
        if !self.open {
            return;
        }
        let Ok(mut bytes) = serde_json::to_vec(line) else {
            return;
        };
        bytes.push(b'\n');
        self.open = send_chunk(&self.tx, bytes).await;
    }
}

pub(crate) async fn remove<S: PodService>(cx: &Context<S>, reference: &str) -> Reply {
    super::reference::check(reference).map_err(Failure::bad_request)?;
    let deleted = cx
        .service
        .remove_image(reference)
        .await
        .map_err(|e: ApiError| Failure::from(e).for_image(reference))?;
    Ok(json_response(StatusCode::OK, &Deleted { deleted }))
}
