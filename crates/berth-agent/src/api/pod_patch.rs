//! `PATCH /api/v1/namespaces/{ns}/pods/{name}`: the patch (see `patch`)
//! applied to the stored pod, then stored as a PUT would be, so the same
//! update rules hold. Server-side apply creates a pod that does not exist.
//! The `ephemeralcontainers` subresource is patched the same way.

use http::{header, Request, StatusCode};
use hyper::body::Incoming;
use k8s_openapi::api::core::v1::Pod;

use super::body::{json_response, read_body};
use super::patch::{self, PatchType};
use super::routes::{check_resource_version, Context, Query, Reply, Update};
use super::status::Failure;
use crate::service::{ApiError, PodService};

pub(crate) async fn patch_pod<S: PodService>(
    cx: &Context<S>,
    update: Update,
    namespace: &str,
    name: &str,
    query: &Query,
    request: Request<Incoming>,
) -> Reply {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let kind = PatchType::from_content_type(&content_type)?;
    if kind == PatchType::Apply && query.get("fieldManager").unwrap_or_default().is_empty() {
        return Err(Failure::bad_request(
            "PATCH requests of type application/apply-patch+yaml must include fieldManager in the query",
        ));
    }
    let (parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body).await?;
    let patch = patch::decode(kind, &bytes)?;
    let current = match cx.service.get(namespace, name) {
        Ok(pod) => pod,
        Err(ApiError::NotFound(_)) if kind == PatchType::Apply && update == Update::Pod => {
            return create_applied(cx, namespace, name, patch).await;
        }
        Err(e) => return Err(Failure::from(e).for_pod(name)),
    };
    let mut document = serde_json::to_value(&current)
        .map_err(|e| Failure::internal(format!("encoding the pod: {e}")))?;
    patch::apply(kind, &mut document, &patch)?;
    let mut pod: Pod = serde_json::from_value(document)
        .map_err(|e| Failure::bad_request(format!("the patched pod does not decode: {e}")))?;
    // Only a resourceVersion the patch itself sets is a precondition: the
    // stored one may have moved on with the status since it was read.
    if pod.metadata.resource_version == current.metadata.resource_version {
        pod.metadata.resource_version = None;
    }
    check_resource_version(cx, namespace, name, &mut pod)?;
    let patched = update.store(cx, namespace, name, pod).await?;
    Ok(json_response(StatusCode::OK, &patched))
}

/// Server-side apply of a pod that does not exist yet: a create.
async fn create_applied<S: PodService>(
    cx: &Context<S>,
    namespace: &str,
    name: &str,
    applied: serde_json::Value,
) -> Reply {
    let mut pod: Pod = serde_json::from_value(applied)
        .map_err(|e| Failure::bad_request(format!("cannot decode the Pod: {e}")))?;
    if pod.metadata.name.as_deref().is_some_and(|n| n != name) {
        return Err(Failure::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            pod.metadata.name.as_deref().unwrap_or_default()
        )));
    }
    pod.metadata.name = Some(name.to_owned());
    match pod.metadata.namespace.as_deref() {
        None | Some("") => pod.metadata.namespace = Some(namespace.to_owned()),
        Some(ns) if ns == namespace => {}
        Some(ns) => {
            return Err(Failure::bad_request(format!(
                "the namespace of the object ({ns}) does not match the namespace on the URL ({namespace})"
            )))
        }
    }
    let created = cx
        .service
        .create(namespace, pod)
        .await
        .map_err(|e| Failure::from(e).for_pod(name))?;
    Ok(json_response(StatusCode::CREATED, &created))
}
