//! The node's events to the API server: core/v1 Events from source
//! `kubelet` on this host, for the pods from the API server and for the
//! Node (the kubelet's event recorder, `makeEventRecorder`). The store folds
//! repeats into one event with a count; a repeat is sent as a patch of its
//! count and last timestamp. Each object may send a burst of 25, then one
//! every 5 minutes (client-go's spam filter).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::store::PodStore;

use super::is_cluster_pod;

/// How often new events are looked for.
const POLL: Duration = Duration::from_secs(1);
const BURST: f64 = 25.0;
const REFILL_EVERY: Duration = Duration::from_secs(5 * 60);

pub async fn run(
    client: kube::Client,
    node: String,
    store: Arc<PodStore>,
    stop: CancellationToken,
) {
    // The count each event had when sent, by name.
    let mut sent: HashMap<String, i32> = HashMap::new();
    let mut buckets: HashMap<String, Bucket> = HashMap::new();
    let mut seen_version = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        if store.events_version() == seen_version {
            continue;
        }
        let (version, events) = store.events_snapshot();
        seen_version = version;
        for event in events {
            let name = event.metadata.name.clone().unwrap_or_default();
            let count = event.count.unwrap_or(1);
            if sent.get(&name).is_some_and(|c| *c >= count) || !ours(&store, &node, &event) {
                continue;
            }
            let object = event.involved_object.uid.clone().unwrap_or_default();
            if !buckets.entry(object).or_insert_with(Bucket::full).take() {
                continue;
            }
            match send(&client, &node, event, sent.contains_key(&name)).await {
                Ok(()) => {
                    sent.insert(name, count);
                }
                Err(e) => debug!("send event {name}: {e}"),
            }
        }
        // Names the store has dropped (past its TTL) are not sent again.
        if sent.len() > 4096 {
            let (_, events) = store.events_snapshot();
            let known: std::collections::HashSet<_> =
                events.into_iter().filter_map(|e| e.metadata.name).collect();
            sent.retain(|name, _| known.contains(name));
        }
    }
}

/// Events of the Node, and of pods that came from the API server.
fn ours(store: &PodStore, node: &str, event: &Event) -> bool {
    let object = &event.involved_object;
    match object.kind.as_deref() {
        Some("Node") => object.name.as_deref() == Some(node),
        Some("Pod") => object
            .uid
            .as_deref()
            .and_then(|uid| store.get(uid))
            .is_some_and(|pod| is_cluster_pod(&pod)),
        _ => false,
    }
}

async fn send(
    client: &kube::Client,
    node: &str,
    mut event: Event,
    repeat: bool,
) -> Result<(), kube::Error> {
    let namespace = event
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let name = event.metadata.name.clone().unwrap_or_default();
    if repeat {
        let patch = serde_json::json!({
            "count": event.count,
            "lastTimestamp": event.last_timestamp,
            "message": event.message,
        });
        match api
            .patch(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            other => return other.map(|_| ()),
        }
    }
    event.metadata.resource_version = None;
    event.metadata.uid = None;
    event.metadata.creation_timestamp = None;
    event.source = Some(EventSource {
        component: Some("kubelet".into()),
        host: Some(node.into()),
    });
    event.reporting_component = Some("kubelet".into());
    event.reporting_instance = Some(node.into());
    match api.create(&PostParams::default(), &event).await {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        other => other.map(|_| ()),
    }
}

/// A token bucket: `BURST` events, then one per `REFILL_EVERY`.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full() -> Self {
        Self {
            tokens: BURST,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() / REFILL_EVERY.as_secs_f64();
        self.tokens = (self.tokens + refill).min(BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
