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
        Err(failure) => {
            tracing::debug!(%method, %path, code = %failure.code(), "api request refused: {}", failure.message());
            failure.into_response()
        }
    }
}

/// What a path names: the route table, written once. The method is matched
/// in [`route`]; a path that resolves but is not served with the method is a
/// 405, one that does not resolve a 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource<'a> {
    Healthz,
    Version,
    CoreGroup,
    CoreV1,
    Groups,
    OpenApiV3,
    OpenApiV3Core,
    Namespaces,
    Namespace(&'a str),
    Metrics,
    Pods(Option<&'a str>),
    Pod(&'a str, &'a str),
    PodLog(&'a str, &'a str),
    PodExec(&'a str, &'a str),
    PodPortForward(&'a str, &'a str),
    PodAttach(&'a str, &'a str),
    PodEphemeralContainers(&'a str, &'a str),
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
            ["version"] => Self::Version,
            ["api"] => Self::CoreGroup,
            ["api", "v1"] => Self::CoreV1,
            ["apis"] => Self::Groups,
            ["openapi", "v3"] => Self::OpenApiV3,
            ["openapi", "v3", "api", "v1"] => Self::OpenApiV3Core,
            ["api", "v1", "namespaces"] => Self::Namespaces,
            ["api", "v1", "namespaces", name] => Self::Namespace(name),
            ["metrics"] => Self::Metrics,
            ["api", "v1", "pods"] => Self::Pods(None),
            ["api", "v1", "namespaces", ns, "pods"] => Self::Pods(Some(ns)),
            ["api", "v1", "namespaces", ns, "pods", name] => Self::Pod(ns, name),
            ["api", "v1", "namespaces", ns, "pods", name, "log"] => Self::PodLog(ns, name),
            ["api", "v1", "namespaces", ns, "pods", name, "exec"] => Self::PodExec(ns, name),
            ["api", "v1", "namespaces", ns, "pods", name, "attach"] => Self::PodAttach(ns, name),
            ["api", "v1", "namespaces", ns, "pods", name, "ephemeralcontainers"] => {
                Self::PodEphemeralContainers(ns, name)
            }
            ["api", "v1", "namespaces", ns, "pods", name, "portforward"] => {
                Self::PodPortForward(ns, name)
            }
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
    // A dry run must change nothing; berth cannot promise that, so it says no.
    let mutating = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if mutating && query.get("dryRun").is_some_and(|d| !d.is_empty()) {
        return Err(Failure::bad_request("dryRun is not supported by this node"));
    }
    match (resource, &method) {
        (Resource::Healthz, &Method::GET) => Ok(text_response("ok")),
        (Resource::Metrics, &Method::GET) => super::metrics::get(cx, request.headers()),
        (Resource::Version, &Method::GET) => Ok(super::discovery::version()),
        (Resource::CoreGroup, &Method::GET) => Ok(super::discovery::core(request.headers())),
        (Resource::CoreV1, &Method::GET) => Ok(super::discovery::core_v1()),
        (Resource::Groups, &Method::GET) => Ok(super::discovery::groups(request.headers())),
        (Resource::OpenApiV3, &Method::GET) => Ok(super::discovery::openapi_v3_index()),
        (Resource::OpenApiV3Core, &Method::GET) => Ok(super::discovery::openapi_v3_core()),
        (Resource::Namespaces, &Method::GET) => {
            super::namespaces::list(cx, request.headers(), &query)
        }
        (Resource::Namespace(name), &Method::GET) => {
            super::namespaces::get(cx, name, request.headers(), &query)
        }
        (Resource::Pods(ns), &Method::GET) => list_pods(cx, ns, &query, request.headers()).await,
        (Resource::Pods(Some(ns)), &Method::POST) => create_pod(cx, ns, request).await,
        (Resource::Pod(ns, name), &Method::GET) => {
            let pod = cx
                .service
                .get(ns, name)
                .map_err(|e| Failure::from(e).for_pod(name))?;
            if super::table::wants_table(request.headers()) {
                let include = super::table::IncludeObject::from_query(&query)?;
                let rv = pod.metadata.resource_version.clone().unwrap_or_default();
                let table = super::table::pods(std::slice::from_ref(&pod), &rv, include);
                return Ok(json_response(StatusCode::OK, &table));
            }
            Ok(json_response(StatusCode::OK, &pod))
        }
        (Resource::Pod(ns, name), &Method::PUT) => {
            replace_pod(cx, Update::Pod, ns, name, request).await
        }
        (Resource::Pod(ns, name), &Method::PATCH) => {
            super::pod_patch::patch_pod(cx, Update::Pod, ns, name, &query, request).await
        }
        (Resource::PodEphemeralContainers(ns, name), &Method::GET) => {
            let pod = cx
                .service
                .get(ns, name)
                .map_err(|e| Failure::from(e).for_pod(name))?;
            Ok(json_response(StatusCode::OK, &pod))
        }
        (Resource::PodEphemeralContainers(ns, name), &Method::PUT) => {
            replace_pod(cx, Update::EphemeralContainers, ns, name, request).await
        }
        (Resource::PodEphemeralContainers(ns, name), &Method::PATCH) => {
            let update = Update::EphemeralContainers;
            super::pod_patch::patch_pod(cx, update, ns, name, &query, request).await
        }
        (Resource::Pod(ns, name), &Method::DELETE) => {
            delete_pod(cx, ns, name, &query, request).await
        }
        (Resource::PodLog(ns, name), &Method::GET) => {
            super::logs::pod_log(cx, ns, name, &query).await
        }
        // kubectl's WebSocket exec (a GET upgrade; POST as the API server
        // also takes it); a POST without an upgrade is berth's JSON exec.
        (Resource::PodExec(ns, name), &Method::GET | &Method::POST)
            if super::stream::is_upgrade(&request) =>
        {
            let options = super::stream::StreamOptions::parse(&query)?;
            super::stream::exec(&cx.service, request, ns, name, options).await
        }
        (Resource::PodExec(ns, name), &Method::POST) => {
            super::exec::exec(cx, ns, name, request).await
        }
        (Resource::PodAttach(ns, name), &Method::GET | &Method::POST) => {
            let options = super::stream::StreamOptions::parse(&query)?;
            super::stream::attach(&cx.service, request, ns, name, options).await
        }
        (Resource::PodPortForward(ns, name), &Method::GET | &Method::POST) => {
            super::stream::port_forward(&cx.service, request, ns, name).await
        }
        (Resource::Events(ns), &Method::GET) => {
            super::events::list(cx, ns, &query, request.headers())
        }
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
    headers: &http::HeaderMap,
) -> Reply {
    let selector = super::selectors::PodSelector::from_query(query)?;
    let table = super::table::wants_table(headers)
        .then(|| super::table::IncludeObject::from_query(query))
        .transpose()?;
    if query.flag("watch")? {
        let since = match query.get("resourceVersion").unwrap_or_default() {
            "" => 0,
            rv => rv
                .parse()
                .map_err(|_| Failure::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        };
        let timeout = query
            .int("timeoutSeconds")?
            .map(|s| std::time::Duration::from_secs(s.max(0).unsigned_abs()));
        let request = super::watch::WatchRequest {
            selector,
            since,
            table,
            timeout,
            initial_events: query.flag("sendInitialEvents")?,
        };
        return Ok(super::watch::watch_pods(cx, namespace, request));
    }
    let all = cx.service.list(namespace);
    // The list's version is the store's, whatever the selectors keep.
    let resource_version = list_resource_version(&all);
    let items: Vec<Pod> = all.into_iter().filter(|p| selector.matches(p)).collect();
    if let Some(include) = table {
        let table = super::table::pods(&items, &resource_version, include);
        return Ok(json_response(StatusCode::OK, &table));
    }
    let list = k8s_openapi::List::<Pod> {
        metadata: ListMeta {
            resource_version: Some(resource_version),
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

/// What a PUT or PATCH of a pod replaces: the pod, or (its
/// `ephemeralcontainers` subresource) only its ephemeral containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Update {
    Pod,
    EphemeralContainers,
}

impl Update {
    /// Stores `pod` as the update says.
    pub(crate) async fn store<S: PodService>(
        self,
        cx: &Context<S>,
        namespace: &str,
        name: &str,
        pod: Pod,
    ) -> Result<Pod, Failure> {
        let stored = match self {
            Self::Pod => cx.service.replace(namespace, name, pod).await,
            Self::EphemeralContainers => {
                let service = &cx.service;
                service
                    .replace_ephemeral_containers(namespace, name, pod)
                    .await
            }
        };
        stored.map_err(|e| Failure::from(e).for_pod(name))
    }
}

async fn replace_pod<S: PodService>(
    cx: &Context<S>,
    update: Update,
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
    check_resource_version(cx, namespace, name, &mut pod)?;
    let replaced = update.store(cx, namespace, name, pod).await?;
    Ok(json_response(StatusCode::OK, &replaced))
}

/// As the API server's update: a resourceVersion in the body must be the
/// current one (optimistic concurrency), and what the client left out of
/// the identity (uid) is the stored pod's.
pub(crate) fn check_resource_version<S: PodService>(
    cx: &Context<S>,
    namespace: &str,
    name: &str,
    pod: &mut Pod,
) -> Result<(), Failure> {
    let current = cx
        .service
        .get(namespace, name)
        .map_err(|e| Failure::from(e).for_pod(name))?;
    let wanted = pod.metadata.resource_version.as_deref().unwrap_or_default();
    if !wanted.is_empty() && Some(wanted) != current.metadata.resource_version.as_deref() {
        return Err(Failure::conflict(format!(
            "Operation cannot be fulfilled on pods \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ))
        .for_pod(name));
    }
    if pod.metadata.uid.as_deref().unwrap_or_default().is_empty() {
        pod.metadata.uid = current.metadata.uid;
    }
    Ok(())
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
