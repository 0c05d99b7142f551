//! `GET /api/v1/[namespaces/{ns}/]events`: the kubelet's events as a v1
//! EventList, with the field selectors kubectl describe uses.

use hyper::StatusCode;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;

use super::body::json_response;
use super::routes::{Context, Query, Reply};
use super::status::Failure;
use crate::service::PodService;

/// Whether an event matches `key=value` terms joined by commas (only
/// equality on the involved object's fields, as describe asks).
fn matches(event: &Event, selector: &str) -> Result<bool, Failure> {
    for term in selector.split(',').filter(|t| !t.is_empty()) {
        let (key, value) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .ok_or_else(|| Failure::bad_request(format!("invalid field selector {term:?}")))?;
        let object = &event.involved_object;
        let actual = match key {
            "involvedObject.uid" => object.uid.as_deref(),
            "involvedObject.name" => object.name.as_deref(),
            "involvedObject.namespace" => object.namespace.as_deref(),
            "involvedObject.kind" => object.kind.as_deref(),
            "involvedObject.fieldPath" => object.field_path.as_deref(),
            "reason" => event.reason.as_deref(),
            "type" => event.type_.as_deref(),
            other => {
                return Err(Failure::bad_request(format!(
                    "field label not supported: {other}"
                )))
            }
        };
        if actual.unwrap_or_default() != value {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(crate) fn list<S: PodService>(
    cx: &Context<S>,
    namespace: Option<&str>,
    query: &Query,
    headers: &http::HeaderMap,
) -> Reply {
    if query.flag("watch")? {
        // Events are kept, not streamed: say so rather than answer a list.
        return Err(Failure::bad_request(
            "watching events is not supported by this node; list them instead",
        ));
    }
    let selector = query.get("fieldSelector").unwrap_or_default();
    let mut items = Vec::new();
    for event in cx.service.events(namespace) {
        if matches(&event, selector)? {
            items.push(event);
        }
    }
    if super::table::wants_table(headers) {
        let include = super::table::IncludeObject::from_query(query)?;
        return Ok(json_response(
            StatusCode::OK,
            &super::table::events(&items, include),
        ));
    }
    let list = k8s_openapi::List::<Event> {
        metadata: ListMeta::default(),
        items,
    };
    Ok(json_response(StatusCode::OK, &list))
}
