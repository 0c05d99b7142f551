//! The single writer of pod objects as the API shows them: the pods with their
//! newest status, the watch stream, and the kubelet-style event log.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use berth_pod::{PodEvent, PodSink};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use tokio::sync::broadcast;

use crate::service::WatchEvent;

/// Events are kept for at most this many per node and this long, so a
/// crash-looping pod cannot fill memory (the API server's TTL is one hour).
const MAX_EVENTS: usize = 2000;
const EVENT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Default)]
struct Inner {
    /// By UID.
    pods: BTreeMap<String, Pod>,
    events: VecDeque<Event>,
    resource_version: u64,
    event_serial: u64,
}

/// Pods by UID, with a broadcast of every change.
pub struct PodStore {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<WatchEvent>,
    /// Told when a worker has torn its pod down.
    finished: tokio::sync::mpsc::UnboundedSender<String>,
}

impl PodStore {
    pub fn new(finished: tokio::sync::mpsc::UnboundedSender<String>) -> Self {
        Self {
            inner: Mutex::default(),
            changes: broadcast::channel(1024).0,
            finished,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("pod store lock")
    }

    pub fn subscribe(&self) -> broadcast::Receiver<WatchEvent> {
        self.changes.subscribe()
    }

    /// Inserts or replaces a pod's object (metadata and spec; status kept from
    /// the stored one when the new one has none).
    pub fn put(&self, mut pod: Pod) -> Pod {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut inner = self.lock();
        inner.resource_version += 1;
        pod.metadata.resource_version = Some(inner.resource_version.to_string());
        let existed = match inner.pods.get(&uid) {
            Some(old) => {
                if pod.status.is_none() {
                    pod.status = old.status.clone();
                }
                true
            }
            None => false,
        };
        inner.pods.insert(uid, pod.clone());
        drop(inner);
        let _ = self.changes.send(if existed {
            WatchEvent::Modified(pod.clone())
        } else {
            WatchEvent::Added(pod.clone())
        });
        pod
    }

    pub fn get(&self, uid: &str) -> Option<Pod> {
        self.lock().pods.get(uid).cloned()
    }

    pub fn find(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.lock()
            .pods
            .values()
            .find(|p| {
                p.metadata.namespace.as_deref() == Some(namespace)
                    && p.metadata.name.as_deref() == Some(name)
            })
            .cloned()
    }

    pub fn list(&self, namespace: Option<&str>) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self
            .lock()
            .pods
            .values()
            .filter(|p| namespace.is_none_or(|ns| p.metadata.namespace.as_deref() == Some(ns)))
            .cloned()
            .collect();
        pods.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        pods
    }

    /// Updates one pod's object with `change`; no-op for unknown UIDs.
    pub fn modify(&self, uid: &str, change: impl FnOnce(&mut Pod)) -> Option<Pod> {
        let mut inner = self.lock();
        inner.resource_version += 1;
        let rv = inner.resource_version.to_string();
        let pod = inner.pods.get_mut(uid)?;
        change(pod);
        pod.metadata.resource_version = Some(rv);
        let pod = pod.clone();
        drop(inner);
        let _ = self.changes.send(WatchEvent::Modified(pod.clone()));
        Some(pod)
    }

    pub fn remove(&self, uid: &str) -> Option<Pod> {
        let pod = self.lock().pods.remove(uid)?;
        let _ = self.changes.send(WatchEvent::Deleted(pod.clone()));
        Some(pod)
    }

    /// Events of one namespace (all when `None`), oldest first.
    pub fn events(&self, namespace: Option<&str>) -> Vec<Event> {
        self.lock()
            .events
            .iter()
            .filter(|e| namespace.is_none_or(|ns| e.metadata.namespace.as_deref() == Some(ns)))
            .cloned()
            .collect()
    }
}

impl PodSink for PodStore {
    fn status(&self, uid: &str, status: PodStatus) {
        let mut inner = self.lock();
        let Some(pod) = inner.pods.get(uid) else {
            return;
        };
        if pod.status.as_ref() == Some(&status) {
            return;
        }
        inner.resource_version += 1;
        let rv = inner.resource_version.to_string();
        let pod = inner.pods.get_mut(uid).expect("checked");
        pod.status = Some(status);
        pod.metadata.resource_version = Some(rv);
        let pod = pod.clone();
        drop(inner);
        let _ = self.changes.send(WatchEvent::Modified(pod));
    }

    fn event(&self, event: PodEvent) {
        let now = Time(event.at);
        let mut inner = self.lock();
        // Fold repeats as the kubelet's recorder does: same object, reason
        // and message bump the count and the last timestamp.
        let same = inner.events.iter_mut().rev().find(|e| {
            e.involved_object.uid.as_deref() == Some(event.pod.uid.as_str())
                && e.involved_object.field_path == event.field_path
                && e.reason.as_deref() == Some(event.reason)
                && e.message.as_deref() == Some(event.message.as_str())
        });
        if let Some(e) = same {
            e.count = Some(e.count.unwrap_or(1) + 1);
            e.last_timestamp = Some(now);
            return;
        }
        inner.event_serial += 1;
        let serial = inner.event_serial;
        let cutoff = event.at - EVENT_TTL;
        while inner.events.len() >= MAX_EVENTS
            || inner
                .events
                .front()
                .and_then(|e| e.last_timestamp.as_ref())
                .is_some_and(|t| t.0 < cutoff)
        {
            inner.events.pop_front();
        }
        inner.events.push_back(Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", event.pod.name, serial)),
                namespace: Some(event.pod.namespace.clone()),
                creation_timestamp: Some(now.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(event.pod.name.clone()),
                namespace: Some(event.pod.namespace.clone()),
                uid: Some(event.pod.uid.clone()),
                field_path: event.field_path,
                ..Default::default()
            },
            reason: Some(event.reason.to_string()),
            message: Some(event.message),
            type_: Some(event.event_type.as_str().to_string()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now.clone()),
            event_time: None,
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: None,
            }),
            reporting_component: Some("kubelet".into()),
            ..Default::default()
        });
    }

    fn finished(&self, uid: &str) {
        let _ = self.finished.send(uid.to_string());
    }
}

/// Now, as an API timestamp.
pub(crate) fn now() -> Time {
    Time(Timestamp::now())
}
