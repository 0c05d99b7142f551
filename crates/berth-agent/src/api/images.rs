//! berth's image endpoints (no Kubernetes equivalent: the kubelet pulls, berth
//! imports local archives): `GET /apis/berth.io/v1/images` and
//! `POST /apis/berth.io/v1/images/import` with `{"path": "..."}`; both answer
//! `{"items": [{"reference", "digest", "size"}]}`.

use std::path::PathBuf;

use berth_runtime::ImageInfo;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::body::{json_response, parse_json, read_body};
use super::routes::{Context, Reply};
use super::status::Failure;
use crate::service::PodService;

#[derive(Debug, Deserialize)]
struct ImportRequest {
    path: PathBuf,
}

#[derive(Debug, Serialize)]
struct ImageList {
    items: Vec<ImageItem>,
}

#[derive(Debug, Serialize)]
struct ImageItem {
    reference: String,
    digest: String,
    size: u64,
}

fn image_list(images: Vec<ImageInfo>) -> ImageList {
    let items = images
        .into_iter()
        .map(|image| ImageItem {
            reference: image.reference,
            digest: image.digest,
            size: image.size,
        })
        .collect();
    ImageList { items }
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
