//! Dispatch by path and method, and the pod CRUD handlers.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ListMeta};
use tokio_util::sync::CancellationToken;

use super::body::{
    check_media_type, json_response, parse_json, parse_pod, read_body, text_response, Body,
};
use super::status::Failure;
use crate::service::PodService;

/// What every request handler can reach.
pub(crate) struct Context<S> {
    pub(crate) service: Arc<S>,
    /// Ends streamed responses (watch, log follow) when the server stops.
    pub(crate) shutdown: CancellationToken,
}

pub(crate) type Reply = Result<Response<Body>, Failure>;

/// Serves one request; failures become `Status` responses.
pub(crate) async fn handle<S: PodService>(
    request: Request<Incoming>,
    cx: Arc<Context<S>>,
) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    tracing::debug!(%method, %path, "api request");
    match route(request, &cx).await {
        Ok(response) => response,
        Err(failure) => failure.into_response(),
    }
}

/// What a path names: the route table, written once. The method is matched
/// in [`route`]; a path that resolves but is not served with the method is a
/// 405, one that does not resolve a 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource<'a> {
    Healthz,
    Metrics,
    Pods(Option<&'a str>),
    Pod(&'a str, &'a str),
    PodLog(&'a str, &'a str),
    PodExec(&'a str, &'a str),
    Events(Option<&'a str>),
    Timeline(&'a str, &'a str),
    Images,
    ImageImport,
    ImagePull,
    Image(&'a str),
}

impl<'a> Resource<'a> {
    fn resolve(segments: &[&'a str]) -> Option<Self> {
        Some(match *segments {
            ["healthz"] => Self::Healthz,
            ["metrics"] => Self::Metrics,
            ["api", "v1", "pods"] => Self::Pods(None),
            ["api", "v1", "namespaces", ns, "pods"] => Self::Pods(Some(ns)),
            ["api", "v1", "namespaces", ns, "pods", name] => Self::Pod(ns, name),
            ["api", "v1", "namespaces", ns, "pods", name, "log"] => Self::PodLog(ns, name),
            ["api", "v1", "namespaces", ns, "pods", name, "exec"] => Self::PodExec(ns, name),
            ["api", "v1", "events"] => Self::Events(None),
            ["api", "v1", "namespaces", ns, "events"] => Self::Events(Some(ns)),
            ["apis", "berth.io", "v1", "namespaces", ns, "pods", name, "timeline"] => {
                Self::Timeline(ns, name)
            }
            ["apis", "berth.io", "v1", "images"] => Self::Images,
            ["apis", "berth.io", "v1", "images", "import"] => Self::ImageImport,
            ["apis", "berth.io", "v1", "images", "pull"] => Self::ImagePull,
            ["apis", "berth.io", "v1", "images", reference] => Self::Image(reference),
            _ => return None,
        })
    }
}

async fn route<S: PodService>(request: Request<Incoming>, cx: &Context<S>) -> Reply {
    let path = request.uri().path().to_owned();
    let query = Query::parse(request.uri().query().unwrap_or_default());
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method().clone();
    let resource = Resource::resolve(&segments).ok_or_else(Failure::unknown_path)?;
    match (resource, &method) {
        (Resource::Healthz, &Method::GET) => Ok(text_response("ok")),
        (Resource::Metrics, &Method::GET) => super::metrics::get(cx, request.headers()),
        (Resource::Pods(ns), &Method::GET) => list_pods(cx, ns, &query).await,
        (Resource::Pods(Some(ns)), &Method::POST) => create_pod(cx, ns, request).await,
        (Resource::Pod(ns, name), &Method::GET) => {
            let pod = cx
                .service
                .get(ns, name)
                .map_err(|e| Failure::from(e).for_pod(name))?;
            Ok(json_response(StatusCode::OK, &pod))
        }
        (Resource::Pod(ns, name), &Method::PUT) => replace_pod(cx, ns, name, request).await,
        (Resource::Pod(ns, name), &Method::DELETE) => {
            delete_pod(cx, ns, name, &query, request).await
        }
        (Resource::PodLog(ns, name), &Method::GET) => {
            super::logs::pod_log(cx, ns, name, &query).await
        }
        (Resource::PodExec(ns, name), &Method::POST) => {
            super::exec::exec(cx, ns, name, request).await
        }
        (Resource::Events(ns), &Method::GET) => super::events::list(cx, ns, &query),
        (Resource::Timeline(ns, name), &Method::GET) => super::timeline::get(cx, ns, name),
        (Resource::Images, &Method::GET) => super::images::list(cx).await,
        (Resource::ImageImport, &Method::POST) => super::images::import(cx, request).await,
        (Resource::ImagePull, &Method::POST) => super::images::pull(cx, request).await,
        (Resource::Image(reference), &Method::DELETE) => {
            super::images::remove(cx, &decode_segment(reference)).await
        }
        _ => Err(Failure::method_not_allowed()),
    }
}

async fn list_pods<S: PodService>(
    cx: &Context<S>,
    namespace: Option<&str>,
    query: &Query,
) -> Reply {
    if query.flag("watch")? {
        return Ok(super::watch::watch_pods(cx, namespace));
    }
    let items = cx.service.list(namespace);
    let list = k8s_openapi::List::<Pod> {
        metadata: ListMeta {
            resource_version: Some(list_resource_version(&items)),
            ..ListMeta::default()
        },
        items,
    };
    Ok(json_response(StatusCode::OK, &list))
}

/// The newest resourceVersion among the pods (opaque to clients).
fn list_resource_version(pods: &[Pod]) -> String {
    let newest = pods
        .iter()
        .filter_map(|pod| {
            pod.metadata
                .resource_version
                .as_deref()?
                .parse::<u64>()
                .ok()
        })
        .max();
    newest.unwrap_or(0).to_string()
}

async fn create_pod<S: PodService>(
    cx: &Context<S>,
    namespace: &str,
    request: Request<Incoming>,
) -> Reply {
    check_media_type(request.headers())?;
    let (parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body).await?;
    let mut pod = parse_pod(bytes).await?;
    match pod.metadata.namespace.as_deref() {
        None | Some("") => pod.metadata.namespace = Some(namespace.to_owned()),
        Some(ns) if ns == namespace => {}
        Some(_) => return Err(Failure::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    let created = cx
        .service
        .create(namespace, pod)
        .await
        .map_err(|e| Failure::from(e).for_pod(&name))?;
    Ok(json_response(StatusCode::CREATED, &created))
}

async fn replace_pod<S: PodService>(
    cx: &Context<S>,
    namespace: &str,
    name: &str,
    request: Request<Incoming>,
) -> Reply {
    check_media_type(request.headers())?;
    let (parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body).await?;
    let mut pod = parse_pod(bytes).await?;
    let body_name = pod.metadata.name.as_deref().unwrap_or_default();
    if body_name != name {
        return Err(Failure::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    match pod.metadata.namespace.as_deref() {
        None | Some("") => pod.metadata.namespace = Some(namespace.to_owned()),
        Some(ns) if ns == namespace => {}
        Some(ns) => {
            return Err(Failure::bad_request(format!(
                "the namespace of the object ({ns}) does not match the namespace on the URL ({namespace})"
            )))
        }
    }
    let replaced = cx
        .service
        .replace(namespace, name, pod)
        .await
        .map_err(|e| Failure::from(e).for_pod(name))?;
    Ok(json_response(StatusCode::OK, &replaced))
}

async fn delete_pod<S: PodService>(
    cx: &Context<S>,
    namespace: &str,
    name: &str,
    query: &Query,
    request: Request<Incoming>,
) -> Reply {
    let (parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body).await?;
    // As the API server: a body wins; without one, the query parameters count.
    let options: DeleteOptions = if bytes.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions {
            grace_period_seconds: query.int("gracePeriodSeconds")?,
            ..DeleteOptions::default()
        }
    } else {
        parse_json("DeleteOptions", &bytes)?
    };
    let uid_precondition = options
        .preconditions
        .as_ref()
        .and_then(|p| p.uid.as_deref());
    if let Some(expected) = uid_precondition {
        let pod = cx
            .service
            .get(namespace, name)
            .map_err(|e| Failure::from(e).for_pod(name))?;
        let actual = pod.metadata.uid.as_deref().unwrap_or_default();
        if actual != expected {
            return Err(Failure::conflict(format!(
                "Precondition failed: UID in precondition: {expected}, UID in object meta: {actual}"
            ))
            .for_pod(name));
        }
    }
    let pod = cx
        .service
        .delete(namespace, name, options.grace_period_seconds)
        .await
        .map_err(|e| Failure::from(e).for_pod(name))?;
    Ok(json_response(StatusCode::OK, &pod))
}

/// Decoded query parameters.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(query: &str) -> Query {
        let pairs = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key), percent_decode(value))
            })
            .collect();
        Query(pairs)
    }

    /// The last value given for `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for `key`, in order (a repeated parameter).
    pub(crate) fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean as Go's `strconv.ParseBool` reads it; absent is false.
    pub(crate) fn flag(&self, key: &str) -> Result<bool, Failure> {
        match self.get(key) {
            None => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(Failure::bad_request(format!(
                "invalid value {other:?} for {key}: not a boolean"
            ))),
        }
    }

    pub(crate) fn int(&self, key: &str) -> Result<Option<i64>, Failure> {
        self.get(key)
            .map(|value| {
                value.parse().map_err(|_| {
                    Failure::bad_request(format!(
                        "invalid value {value:?} for {key}: not an integer"
                    ))
                })
            })
            .transpose()
    }
}

/// `%XX` escapes and `+` as space, as in form encoding; bad escapes stay as they are.
fn percent_decode(text: &str) -> String {
    decode(text, true)
}

/// A path segment: `%XX` escapes only (a `+` is itself).
fn decode_segment(text: &str) -> String {
    decode(text, false)
}

fn decode(text: &str, plus_is_space: bool) -> String {
    fn hex(byte: u8) -> Option<u8> {
        (byte as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes[i] {
            b'%' if i + 2 < bytes.len() => hex(bytes[i + 1]).zip(hex(bytes[i + 2])),
            _ => None,
        };
        match (bytes[i], escaped) {
            (_, Some((high, low))) => {
                out.push(high << 4 | low);
                i += 3;
                continue;
            }
            (b'+', None) if plus_is_space => out.push(b' '),
            (byte, None) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let query = Query::parse("container=a%2Db&follow=true&tailLines=5&x=%zz+y&follow=0");
        assert_eq!(query.get("container"), Some("a-b"));
        assert_eq!(query.get("x"), Some("%zz y"));
        assert!(!query.flag("follow").unwrap());
        assert_eq!(query.int("tailLines").unwrap(), Some(5));
        assert!(query.int("container").is_err());
        assert!(Query::parse("watch=yes").flag("watch").is_err());
        assert!(Query::parse("watch=1").flag("watch").unwrap());
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(
            decode_segment("docker.io%2Flibrary%2Fbusybox%3A1.36+x"),
            "docker.io/library/busybox:1.36+x"
        );
    }
}
