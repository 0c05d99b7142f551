//! `GET /metrics`: the node's metrics in the format the scraper accepts.

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, Response};

use super::body::full;
use super::routes::{Context, Reply};
use super::status::Failure;
use crate::metrics::Format;
use crate::service::PodService;

pub(crate) fn get<S: PodService>(cx: &Context<S>, headers: &HeaderMap) -> Reply {
    let metrics = cx.service.metrics().ok_or_else(Failure::unknown_path)?;
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, text) = metrics.render(&cx.service.list(None), Format::negotiate(accept));
    let mut response = Response::new(full(text));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    Ok(response)
}
