//! `?watch=true`: newline-delimited JSON watch events, as the API server
//! streams them: pods, or one-row Tables of them for kubectl get -w.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use http::Response;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent as KubeWatchEvent;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::body::{send_chunk, streaming, Body, ChunkSender};
use super::routes::Context;
use super::selectors::PodSelector;
use super::status::Failure;
use super::table::IncludeObject;
use crate::service::{PodService, WatchEvent};

/// What a watch request asked for besides the namespace.
pub(crate) struct WatchRequest {
    pub(crate) selector: PodSelector,
    /// `resourceVersion`: changes after it only; unset or "0" starts with
    /// an ADDED event per current pod.
    pub(crate) since: u64,
    /// Send one-row Tables instead of pods.
    pub(crate) table: Option<IncludeObject>,
    /// `timeoutSeconds`: the stream ends then.
    pub(crate) timeout: Option<Duration>,
    /// `sendInitialEvents` (client-go's watch-list): every current pod,
    /// whatever `since`, then a BOOKMARK marking the end of them.
    pub(crate) initial_events: bool,
}

/// Streams the current pods (see [`WatchRequest::since`]), then every
/// change, for one namespace or all. Ends when the client leaves, the
/// timeout passes or the server stops.
pub(crate) fn watch_pods<S: PodService>(
    cx: &Context<S>,
    namespace: Option<&str>,
    request: WatchRequest,
) -> Response<Body> {
    // Subscribe before listing, so nothing between the two is lost.
    let mut changes = cx.service.watch();
    let listed: Vec<Pod> = cx
        .service
        .list(namespace)
        .into_iter()
        .filter(|pod| request.selector.matches(pod))
        .collect();
    // What the client holds: the pods it listed, then what it is sent.
    let mut in_view: HashSet<String> = listed.iter().map(key).collect();
    let current: Vec<Pod> = listed
        .into_iter()
        .filter(|pod| request.initial_events || resource_version(pod) > request.since)
        .collect();
    let newest = current
        .iter()
        .map(resource_version)
        .max()
        .unwrap_or(0)
        .max(request.since);
    let namespace = namespace.map(str::to_owned);
    let shutdown = cx.shutdown.clone();
    let (response, tx) = streaming("application/json");
    let timeout = request.timeout.unwrap_or(Duration::MAX);
    let deadline = tokio::time::Instant::now().checked_add(timeout);
    tokio::spawn(async move {
        let mut out = Encoder {
            table: request.table,
            first: true,
        };
        for pod in current {
            if !out.send(&tx, KubeWatchEvent::Added(pod)).await {
                return;
            }
        }
        if request.initial_events && !send_bookmark(&tx, newest).await {
            return;
        }
        loop {
            let expired = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            let change = tokio::select! {
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
                () = expired => return,
                change = changes.recv() => change,
            };
            let change = match change {
                Ok(change) => change,
                Err(RecvError::Closed) => return,
                Err(RecvError::Lagged(missed)) => {
                    // As the API server does when a watcher falls behind: an
                    // ERROR event with 410 Expired, so the client re-lists.
                    tracing::debug!(missed, "pod watcher fell behind");
                    let status = Failure::expired("the watch fell behind; list again").status();
                    out.send(&tx, KubeWatchEvent::<Pod>::ErrorStatus(status))
                        .await;
                    return;
                }
            };
            let seen = as_seen(
                change,
                namespace.as_deref(),
                &request.selector,
                &mut in_view,
            );
            let Some(event) = seen else {
                continue;
            };
            if !out.send(&tx, event).await {
                return;
            }
        }
    });
    response
}

fn resource_version(pod: &Pod) -> u64 {
    pod.metadata
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

fn key(pod: &Pod) -> String {
    let meta = &pod.metadata;
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The change as a client watching through `selector` sees it (the API
/// server's filtered watch): a pod that comes to match is ADDED, one that
/// stops matching is DELETED, others are not seen at all.
fn as_seen(
    change: WatchEvent,
    namespace: Option<&str>,
    selector: &PodSelector,
    in_view: &mut HashSet<String>,
) -> Option<KubeWatchEvent<Pod>> {
    let pod = change.pod();
    if namespace.is_some_and(|ns| pod.metadata.namespace.as_deref() != Some(ns)) {
        return None;
    }
    let key = key(pod);
    let matches = selector.matches(pod);
    match change {
        WatchEvent::Deleted(pod) => in_view
            .remove(&key)
            .then(|| KubeWatchEvent::Deleted(Arc::unwrap_or_clone(pod))),
        WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
            let seen: fn(Pod) -> KubeWatchEvent<Pod> = match (matches, in_view.contains(&key)) {
                (true, true) => KubeWatchEvent::Modified,
                (true, false) => {
                    in_view.insert(key);
                    KubeWatchEvent::Added
                }
                (false, true) => {
                    in_view.remove(&key);
                    KubeWatchEvent::Deleted
                }
                (false, false) => return None,
            };
            Some(seen(Arc::unwrap_or_clone(pod)))
        }
    }
}

/// Writes events as pods or as Tables (column definitions in the first only).
struct Encoder {
    table: Option<IncludeObject>,
    first: bool,
}

impl Encoder {
    async fn send(&mut self, tx: &ChunkSender, event: KubeWatchEvent<Pod>) -> bool {
        let Some(include) = self.table else {
            return send_event(tx, &event).await;
        };
        let as_table = |pod: &Pod, first| super::table::pod_event_table(pod, include, first);
        let table_event = match &event {
            KubeWatchEvent::Added(pod) => KubeWatchEvent::Added(as_table(pod, self.first)),
            KubeWatchEvent::Modified(pod) => KubeWatchEvent::Modified(as_table(pod, self.first)),
            KubeWatchEvent::Deleted(pod) => KubeWatchEvent::Deleted(as_table(pod, self.first)),
            KubeWatchEvent::ErrorStatus(status) => {
                KubeWatchEvent::<Value>::ErrorStatus(status.clone())
            }
            _ => return true,
        };
        self.first = false;
        send_event(tx, &table_event).await
    }
}

/// The BOOKMARK that ends the initial events of a watch-list (annotated
/// `k8s.io/initial-events-end`).
async fn send_bookmark(tx: &ChunkSender, resource_version: u64) -> bool {
    let event = serde_json::json!({
        "type": "BOOKMARK",
        "object": {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "resourceVersion": resource_version.to_string(),
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        },
    });
    let mut line = event.to_string().into_bytes();
    line.push(b'\n');
    send_chunk(tx, line).await
}

async fn send_event<T: serde::Serialize>(tx: &ChunkSender, event: &KubeWatchEvent<T>) -> bool {
    let Ok(mut line) = serde_json::to_vec(event) else {
        return false;
    };
    line.push(b'\n');
    send_chunk(tx, line).await
}
