//! OOM detection from containerd's task events, one subscription per
//! [`Containerd`] instance, ended when the instance is dropped.
//!
//! Subscribe answers only with its first event (the headers come with it), so
//! the subscription is made live by publishing pings on a private topic until
//! one comes back. OOM and exit events arrive in order on the one stream: a
//! waiter that got its exit from Tasks.Wait waits for the exit *event* too,
//! and then knows whether an OOM came before it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use containerd_client::events::{TaskExit, TaskOom};
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::{PublishRequest, SubscribeRequest};
use prost::Message;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::Containerd;

const PING_TOPIC: &str = "/berth/ping";
/// How long a waiter waits for the exit event after Wait returned.
const EXIT_EVENT_GRACE: Duration = Duration::from_secs(5);
/// How long the first waiter waits for the subscription to become live.
const LIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Events nobody asked about are forgotten after this.
const RETENTION: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Seen {
    ooms: HashMap<String, Instant>,
    exits: HashMap<String, Instant>,
}

/// What the event stream has told about OOMs and exits.
#[derive(Default)]
pub(crate) struct OomWatcher {
    seen: Mutex<Seen>,
    changed: Notify,
    live: AtomicBool,
}

impl OomWatcher {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the container's exit (already returned by Wait) followed an OOM.
    pub(crate) async fn oom_killed(&self, id: &str) -> bool {
        let deadline = Instant::now() + EXIT_EVENT_GRACE;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let seen = self.seen();
                // Not removed: several waiters may ask about one exit (the
                // worker's and the kill path's); RETENTION forgets them.
                if seen.exits.contains_key(id) || !self.live.load(Ordering::Acquire) {
                    return seen.ooms.contains_key(id);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::debug!(container = id, "no exit event in time; OOM unknown");
                return self.seen().ooms.contains_key(id);
            }
        }
    }

    fn record(&self, oom: Option<String>, exit: Option<String>) {
        let now = Instant::now();
        let mut seen = self.seen();
        if let Some(id) = oom {
            seen.ooms.insert(id, now);
        }
        if let Some(id) = exit {
            seen.exits.insert(id, now);
        }
        seen.ooms
            .retain(|_, at| now.duration_since(*at) < RETENTION);
        seen.exits
            .retain(|_, at| now.duration_since(*at) < RETENTION);
        drop(seen);
        self.changed.notify_waiters();
    }

    fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Release);
        self.changed.notify_waiters();
    }
}

/// The instance's watcher, started (and made live) on first use. `None` if
/// it cannot be made live: OOMs then go unreported rather than block exits.
pub(crate) async fn oom_watcher(c: &Containerd) -> Option<Arc<OomWatcher>> {
    let watcher = {
        let mut slot = c.state.oom_watcher.lock().await;
        match &*slot {
            Some(w) => Arc::clone(w),
            None => {
                let w = Arc::new(OomWatcher::default());
                *slot = Some(Arc::clone(&w));
                let events = Events {
                    svc: c.svc(),
                    namespace: c.config.namespace.clone(),
                };
                let stop = c.state.dropped.clone();
                let watching = Arc::clone(&w);
                tokio::spawn(async move {
                    tokio::select! {
                        () = watch(events, watching) => {}
                        () = stop.cancelled() => {}
                    }
                });
                w
            }
        }
    };
    let deadline = Instant::now() + LIVE_TIMEOUT;
    loop {
        let notified = watcher.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if watcher.live.load(Ordering::Acquire) {
            break;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            tracing::warn!("task event subscription not live; OOM kills will not be reported");
            return None;
        }
    }
    Some(watcher)
}

/// What the watcher needs of the connection: not the instance itself, whose
/// drop stops the watcher.
struct Events {
    svc: crate::client::Svc,
    namespace: String,
}

/// Subscribes, pings until live, then records events; resubscribes on errors.
async fn watch(c: Events, watcher: Arc<OomWatcher>) {
    let ns = c.namespace.clone();
    let filters = vec![
        format!("namespace=={ns},topic==\"/tasks/oom\""),
        format!("namespace=={ns},topic==\"/tasks/exit\""),
        format!("namespace=={ns},topic==\"{PING_TOPIC}\""),
    ];
    loop {
        let mut client = EventsClient::new(c.svc.clone());
        let request = SubscribeRequest {
            filters: filters.clone(),
        };
        let mut subscribe = tokio::spawn(async move { client.subscribe(request).await });
        let mut ping = tokio::time::interval(Duration::from_millis(10));
        let subscribed = loop {
            tokio::select! {
                result = &mut subscribe => break result,
                _ = ping.tick() => {
                    let event = prost_types::Any {
                        type_url: "types.googleapis.com/google.protobuf.Empty".into(),
                        value: Vec::new(),
                    };
                    let publish = EventsClient::new(c.svc.clone())
                        .publish(PublishRequest { topic: PING_TOPIC.into(), event: Some(event) })
                        .await;
                    if let Err(e) = publish {
                        tracing::debug!(error = %e.message(), "publish event ping");
                    }
                }
            }
        };
        match subscribed {
            Ok(Ok(response)) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(envelope)) => handle(&watcher, envelope),
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(error = %e.message(), "task event stream ended");
                            break;
                        }
                    }
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e.message(), "subscribe to task events"),
            Err(e) => tracing::debug!(error = %e, "subscribe task failed"),
        }
        watcher.set_live(false);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn handle(watcher: &OomWatcher, envelope: containerd_client::types::Envelope) {
    let Some(event) = envelope.event else { return };
    // The type URL arrives bare ("containerd.events.TaskOOM"): decode by topic.
    match envelope.topic.as_str() {
        "/tasks/oom" => {
            if let Ok(oom) = TaskOom::decode(event.value.as_slice()) {
                tracing::debug!(container = oom.container_id, "OOM event");
                watcher.record(Some(oom.container_id), None);
            }
        }
        "/tasks/exit" => {
            if let Ok(exit) = TaskExit::decode(event.value.as_slice()) {
                // Exec exits carry the exec id; only init exits end a container.
                if exit.id == exit.container_id {
                    watcher.record(None, Some(exit.container_id));
                }
            }
        }
        PING_TOPIC if !watcher.live.load(Ordering::Acquire) => watcher.set_live(true),
        _ => {}
    }
}
