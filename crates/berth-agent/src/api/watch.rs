//! `?watch=true`: newline-delimited JSON watch events, as the API server streams them.

use http::Response;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent as KubeWatchEvent;
use tokio::sync::broadcast::error::RecvError;

use super::body::{send_chunk, streaming, Body, ChunkSender};
use super::routes::Context;
use super::status::Failure;
use crate::service::{PodService, WatchEvent};

/// Streams an ADDED event per current pod, then every change, for one
/// namespace or all. Ends when the client leaves or the server stops.
pub(crate) fn watch_pods<S: PodService>(
    cx: &Context<S>,
    namespace: Option<&str>,
) -> Response<Body> {
    // Subscribe before listing, so nothing between the two is lost.
    let mut changes = cx.service.watch();
    let current = cx.service.list(namespace);
    let namespace = namespace.map(str::to_owned);
    let shutdown = cx.shutdown.clone();
    let (response, tx) = streaming("application/json");
    tokio::spawn(async move {
        for pod in current {
            if !send_event(&tx, &KubeWatchEvent::Added(pod)).await {
                return;
            }
        }
        loop {
            let change = tokio::select! {
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
                change = changes.recv() => change,
            };
            let event = match change {
                Ok(WatchEvent::Added(pod)) => KubeWatchEvent::Added(pod),
                Ok(WatchEvent::Modified(pod)) => KubeWatchEvent::Modified(pod),
                Ok(WatchEvent::Deleted(pod)) => KubeWatchEvent::Deleted(pod),
                Err(RecvError::Closed) => return,
                Err(RecvError::Lagged(missed)) => {
                    // As the API server does when a watcher falls behind: an
                    // ERROR event with 410 Expired, so the client re-lists.
                    tracing::debug!(missed, "pod watcher fell behind");
                    let status = Failure::expired("the watch fell behind; list again").status();
                    send_event(&tx, &KubeWatchEvent::<Pod>::ErrorStatus(status)).await;
                    return;
                }
            };
            if !in_namespace(&event, namespace.as_deref()) {
                continue;
            }
            if !send_event(&tx, &event).await {
                return;
            }
        }
    });
    response
}

fn in_namespace(event: &KubeWatchEvent<Pod>, namespace: Option<&str>) -> bool {
    let pod = match event {
        KubeWatchEvent::Added(pod)
        | KubeWatchEvent::Modified(pod)
        | KubeWatchEvent::Deleted(pod) => pod,
        _ => return true,
    };
    namespace.is_none_or(|ns| pod.metadata.namespace.as_deref() == Some(ns))
}

async fn send_event(tx: &ChunkSender, event: &KubeWatchEvent<Pod>) -> bool {
    let Ok(mut line) = serde_json::to_vec(event) else {
        return false;
    };
    line.push(b'\n');
    send_chunk(tx, line).await
}
