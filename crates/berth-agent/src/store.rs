//! The single writer of pod objects as the API shows them: the pods with their
//! newest status, the watch stream, and the kubelet-style event log.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use berth_pod::{EventType, PodEvent, PodSink, ProbeAttempt, TimelineEntry};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use tokio::sync::broadcast;

use crate::metrics::{self, NodeMetrics};
use crate::service::WatchEvent;

/// Changes kept for watchers that fall behind; one further behind re-lists
/// (410 Expired on the API, as the API server's watch cache does). Each
/// keeps an old copy of its pod alive, so this bounds that memory too.
const WATCH_BACKLOG: usize = 256;
/// Events are kept for at most this many per node and this long, so a
/// crash-looping pod cannot fill memory (the API server's TTL is one hour).
const MAX_EVENTS: usize = 2000;
const EVENT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
/// Timeline entries kept per pod: the newest ones, so a crash-looping pod's
/// timeline stays bounded but still shows its latest attempts.
pub const MAX_TIMELINE: usize = 1000;

#[derive(Default)]
struct Inner {
    /// By UID. Each version is shared with the watch backlog, which keeps
    /// the last [`WATCH_BACKLOG`] changes: one copy of a pod, not two.
    pods: BTreeMap<String, Arc<Pod>>,
    events: VecDeque<Event>,
    /// Lifecycle timelines by pod UID, kept as long as the pod is.
    timelines: BTreeMap<String, VecDeque<TimelineEntry>>,
    resource_version: u64,
    event_serial: u64,
    /// Bumped by every event recorded or folded, so a saver knows when to write.
    events_version: u64,
}

/// Pods by UID, with a broadcast of every change.
pub struct PodStore {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<WatchEvent>,
    /// Told when a worker has torn its pod down.
    finished: tokio::sync::mpsc::UnboundedSender<String>,
    /// Derived from what the workers report here.
    metrics: NodeMetrics,
}

impl PodStore {
    pub fn new(finished: tokio::sync::mpsc::UnboundedSender<String>) -> Self {
        Self {
            inner: Mutex::default(),
            changes: broadcast::channel(WATCH_BACKLOG).0,
            finished,
            metrics: NodeMetrics::new(),
        }
    }

    pub fn metrics(&self) -> &NodeMetrics {
        &self.metrics
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("pod store lock")
    }

    pub fn subscribe(&self) -> broadcast::Receiver<WatchEvent> {
        self.changes.subscribe()
    }

    /// Inserts or replaces a pod's object (metadata and spec; status kept from
    /// the stored one when the new one has none). Returns the stored
    /// version, which the caller may keep without a copy.
    pub fn put(&self, mut pod: Pod) -> Arc<Pod> {
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
        let shared = Arc::new(pod);
        inner.pods.insert(uid.clone(), Arc::clone(&shared));
        drop(inner);
        if !existed {
            self.metrics.seen(&uid);
        }
        let _ = self.changes.send(if existed {
            WatchEvent::Modified(Arc::clone(&shared))
        } else {
            WatchEvent::Added(Arc::clone(&shared))
        });
        shared
    }

    pub fn get(&self, uid: &str) -> Option<Pod> {
        self.lock().pods.get(uid).map(|p| Pod::clone(p))
    }

    pub fn find(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.lock()
            .pods
            .values()
            .find(|p| {
                p.metadata.namespace.as_deref() == Some(namespace)
                    && p.metadata.name.as_deref() == Some(name)
            })
            .map(|p| Pod::clone(p))
    }

    /// Every image the pods' containers name (init, sidecar and ephemeral
    /// ones too) and their image volumes (which the kubelet's image GC
    /// counts as in use too), once each.
    pub fn images(&self) -> Vec<String> {
        let inner = self.lock();
        let specs = inner.pods.values().filter_map(|p| p.spec.as_ref());
        let mut images: Vec<String> = specs
            .flat_map(|s| {
                let ephemeral = berth_api::pod::ephemeral_containers(s).iter();
                let containers = s.init_containers.iter().flatten().chain(&s.containers);
                let volumes = s.volumes.iter().flatten();
                let volume_images = volumes.filter_map(|v| v.image.as_ref()?.reference.clone());
                containers
                    .filter_map(|c| c.image.clone())
                    .chain(ephemeral.filter_map(|e| e.image.clone()))
                    .chain(volume_images)
            })
            .collect();
        images.sort();
        images.dedup();
        images
    }

    /// What `f` takes from the stored pods, read in place under the store's
    /// lock (so `f` must be quick): for work that needs a little of every
    /// pod, where [`Self::list`] would copy and sort them all.
    pub fn read<T>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &Pod>) -> T) -> T {
        f(&mut self.lock().pods.values().map(|p| &**p))
    }

    pub fn list(&self, namespace: Option<&str>) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self
            .lock()
            .pods
            .values()
            .filter(|p| namespace.is_none_or(|ns| p.metadata.namespace.as_deref() == Some(ns)))
            .map(|p| Pod::clone(p))
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
        let shared = inner.pods.get_mut(uid)?;
        // A copy only while the backlog still holds the previous version.
        let pod = Arc::make_mut(shared);
        change(pod);
        pod.metadata.resource_version = Some(rv);
        let shared = Arc::clone(shared);
        drop(inner);
        let pod = Pod::clone(&shared);
        let _ = self.changes.send(WatchEvent::Modified(shared));
        Some(pod)
    }

    /// Removes a pod's object and its timeline.
    pub fn remove(&self, uid: &str) -> Option<Pod> {
        let pod = {
            let mut inner = self.lock();
            inner.timelines.remove(uid);
            inner.pods.remove(uid)?
        };
        self.metrics.forget(uid);
        let _ = self.changes.send(WatchEvent::Deleted(Arc::clone(&pod)));
        Some(Arc::unwrap_or_clone(pod))
    }

    /// Deletes a pod's API object and puts it back at once (a static pod's
    /// mirror): watchers see it go and come, the pod's timeline stays.
    pub fn recreate(&self, uid: &str) -> Option<Arc<Pod>> {
        let pod = self.lock().pods.remove(uid)?;
        let _ = self.changes.send(WatchEvent::Deleted(Arc::clone(&pod)));
        Some(self.put(Arc::unwrap_or_clone(pod)))
    }

    /// A pod's lifecycle timeline, oldest first; empty for unknown UIDs.
    pub fn timeline(&self, uid: &str) -> Vec<TimelineEntry> {
        self.lock()
            .timelines
            .get(uid)
            .map(|entries| entries.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// An event about the node itself, as the kubelet records them: on a
    /// `Node` reference whose UID is the node's name, in namespace default.
    pub fn node_event(
        &self,
        node: &str,
        event_type: EventType,
        reason: &'static str,
        message: String,
    ) {
        let involved = ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            uid: Some(node.to_string()),
            ..Default::default()
        };
        self.record(involved, event_type, reason, message, Timestamp::now());
    }

    /// Adds an event about `involved`, folding repeats as the kubelet's
    /// recorder does: same object, reason and message bump the count and
    /// the last timestamp.
    fn record(
        &self,
        involved: ObjectReference,
        event_type: EventType,
        reason: &'static str,
        message: String,
        at: Timestamp,
    ) {
        let now = Time(at);
        let mut inner = self.lock();
        inner.events_version += 1;
        let same = inner.events.iter_mut().rev().find(|e| {
            e.involved_object.uid == involved.uid
                && e.involved_object.field_path == involved.field_path
                && e.reason.as_deref() == Some(reason)
                && e.message.as_deref() == Some(message.as_str())
        });
        if let Some(e) = same {
            e.count = Some(e.count.unwrap_or(1) + 1);
            e.last_timestamp = Some(now);
            return;
        }
        inner.event_serial += 1;
        let serial = inner.event_serial;
        let cutoff = at - EVENT_TTL;
        while inner.events.len() >= MAX_EVENTS
            || inner
                .events
                .front()
                .and_then(|e| e.last_timestamp.as_ref())
                .is_some_and(|t| t.0 < cutoff)
        {
            inner.events.pop_front();
        }
        let name = involved.name.clone().unwrap_or_default();
        // Events of cluster-scoped objects (the node) live in default.
        let namespace = involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        inner.events.push_back(Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{serial:x}")),
                namespace: Some(namespace),
                creation_timestamp: Some(now.clone()),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(event_type.as_str().to_string()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            event_time: None,
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: None,
            }),
            reporting_component: Some("kubelet".into()),
            ..Default::default()
        });
    }

    /// Every event, oldest first, with the version they were read at.
    pub fn events_snapshot(&self) -> (u64, Vec<Event>) {
        let inner = self.lock();
        (inner.events_version, inner.events.iter().cloned().collect())
    }

    pub fn events_version(&self) -> u64 {
        self.lock().events_version
    }

    /// Puts back events saved before a restart, older than any recorded
    /// since: those past the TTL are dropped, and new names continue after
    /// the saved ones.
    pub fn restore_events(&self, saved: Vec<Event>) {
        let cutoff = Timestamp::now() - EVENT_TTL;
        let mut saved: Vec<Event> = saved
            .into_iter()
            .filter(|e| e.last_timestamp.as_ref().is_some_and(|t| t.0 >= cutoff))
            .collect();
        let mut inner = self.lock();
        let room = MAX_EVENTS.saturating_sub(inner.events.len());
        if saved.len() > room {
            saved.drain(..saved.len() - room);
        }
        let last_serial = saved
            .iter()
            .filter_map(|e| e.metadata.name.as_deref()?.rsplit_once('.'))
            .filter_map(|(_, serial)| u64::from_str_radix(serial, 16).ok())
            .max()
            .unwrap_or(0);
        inner.event_serial = inner.event_serial.max(last_serial);
        for event in saved.into_iter().rev() {
            inner.events.push_front(event);
        }
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
        let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
        self.metrics
            .status(uid, pod.status.as_ref(), &status, created);
        inner.resource_version += 1;
        let rv = inner.resource_version.to_string();
        let shared = inner.pods.get_mut(uid).expect("checked");
        let pod = Arc::make_mut(shared);
        pod.status = Some(status);
        pod.metadata.resource_version = Some(rv);
        let shared = Arc::clone(shared);
        drop(inner);
        let _ = self.changes.send(WatchEvent::Modified(shared));
    }

    fn event(&self, event: PodEvent) {
        self.metrics.event(&event);
        let involved = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(event.pod.name.clone()),
            namespace: Some(event.pod.namespace.clone()),
            uid: Some(event.pod.uid.clone()),
            field_path: event.field_path,
            ..Default::default()
        };
        self.record(
            involved,
            event.event_type,
            event.reason,
            event.message,
            event.at,
        );
    }

    fn finished(&self, uid: &str) {
        let _ = self.finished.send(uid.to_string());
    }

    fn timeline(&self, uid: &str, entry: TimelineEntry) {
        let mut inner = self.lock();
        // A step reported after the pod was removed would never be dropped.
        if !inner.pods.contains_key(uid) {
            return;
        }
        let kind = entry
            .container
            .as_deref()
            .zip(inner.pods.get(uid))
            .map(|(name, pod)| metrics::container_type(pod, name));
        self.metrics.timeline(uid, &entry, kind);
        let entries = inner.timelines.entry(uid.to_string()).or_default();
        if entries.len() >= MAX_TIMELINE {
            entries.pop_front();
        }
        // In time order: a step reported after the fact (the pod network's,
        // set up while its first container was made) goes where it happened.
        let at = entries
            .iter()
            .rposition(|e| e.at <= entry.at)
            .map_or(0, |i| i + 1);
        entries.insert(at, entry);
    }

    fn probe(&self, attempt: &ProbeAttempt) {
        self.metrics.probe(attempt);
    }
}

/// Now, as an API timestamp.
pub(crate) fn now() -> Time {
    Time(Timestamp::now())
}

#[cfg(test)]
mod tests {
    use berth_pod::TimelineStep;

    use super::*;

    fn store_with(uid: &str) -> PodStore {
        let store = PodStore::new(tokio::sync::mpsc::unbounded_channel().0);
        let mut pod = Pod::default();
        pod.metadata.uid = Some(uid.into());
        pod.metadata.name = Some("web".into());
        pod.metadata.namespace = Some("default".into());
        store.put(pod);
        store
    }

    fn entry(n: usize) -> TimelineEntry {
        TimelineEntry {
            at: Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_millis(n as i64),
            container: Some("app".into()),
            step: TimelineStep::ContainerStarted,
            detail: n.to_string(),
        }
    }

    #[test]
    fn images_include_those_of_image_volumes() {
        let store = PodStore::new(tokio::sync::mpsc::unbounded_channel().0);
        let mut pod = berth_api::manifest::parse_pods(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web, uid: u1}\nspec:\n  containers: [{name: a, image: app:1}]\n  volumes: [{name: v, image: {reference: kitten:1.8}}, {name: e, emptyDir: {}}]\n",
        )
        .unwrap()
        .remove(0);
        pod.metadata.namespace = Some("default".into());
        store.put(pod);
        assert_eq!(store.images(), ["app:1", "kitten:1.8"]);
    }

    #[test]
    fn read_sees_every_stored_pod_in_place() {
        let store = store_with("u1");
        let mut second = Pod::default();
        second.metadata.uid = Some("u2".into());
        store.put(second);
        let mut uids: Vec<String> =
            store.read(|pods| pods.filter_map(|p| p.metadata.uid.clone()).collect());
        uids.sort();
        assert_eq!(uids, ["u1", "u2"]);
    }

    #[test]
    fn watchers_share_each_change_and_one_that_falls_behind_is_told() {
        let store = store_with("u1");
        let (mut first, mut second) = (store.subscribe(), store.subscribe());
        store.modify("u1", |pod| pod.metadata.generation = Some(2));
        let (a, b) = (first.try_recv().unwrap(), second.try_recv().unwrap());
        let (WatchEvent::Modified(a), WatchEvent::Modified(b)) = (a, b) else {
            panic!("want MODIFIED");
        };
        assert!(Arc::ptr_eq(&a, &b), "one copy of the pod for every watcher");
        assert_eq!(a.metadata.generation, Some(2));
        // Past the backlog, the oldest changes (and their pods) are gone and
        // the watcher learns it missed some, to re-list.
        for n in 0..WATCH_BACKLOG + 1 {
            store.modify("u1", |pod| pod.metadata.generation = Some(n as i64));
        }
        assert!(matches!(
            first.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(1))
        ));
        assert_eq!(first.len(), WATCH_BACKLOG);
    }

    #[test]
    fn the_store_and_the_watch_backlog_share_each_version_of_a_pod() {
        let store = store_with("u1");
        let mut watcher = store.subscribe();
        let stored = || Arc::clone(&store.lock().pods["u1"]);
        PodSink::status(&store, "u1", PodStatus::default());
        let Ok(WatchEvent::Modified(before)) = watcher.try_recv() else {
            panic!("want MODIFIED");
        };
        assert!(
            Arc::ptr_eq(&before, &stored()),
            "a status change is one copy"
        );
        store.modify("u1", |pod| pod.metadata.generation = Some(2));
        let Ok(WatchEvent::Modified(after)) = watcher.try_recv() else {
            panic!("want MODIFIED");
        };
        assert!(Arc::ptr_eq(&after, &stored()), "a change is one copy");
        assert_eq!(after.metadata.generation, Some(2));
        // The version a watcher was sent never changes under it.
        assert_eq!(before.metadata.generation, None);
    }

    #[test]
    fn timeline_keeps_the_newest_entries_and_goes_with_the_pod() {
        let store = store_with("u1");
        for n in 0..MAX_TIMELINE + 5 {
            PodSink::timeline(&store, "u1", entry(n));
        }
        let kept = store.timeline("u1");
        assert_eq!(kept.len(), MAX_TIMELINE);
        assert_eq!(kept[0].detail, "5");
        assert_eq!(kept[MAX_TIMELINE - 1], entry(MAX_TIMELINE + 4));

        // A static pod's mirror is recreated: the timeline stays.
        store.recreate("u1").expect("pod exists");
        assert_eq!(store.timeline("u1").len(), MAX_TIMELINE);

        store.remove("u1").expect("pod exists");
        assert!(store.timeline("u1").is_empty());
        // Late steps of a removed pod are not kept.
        PodSink::timeline(&store, "u1", entry(1));
        assert!(store.timeline("u1").is_empty());
    }

    #[test]
    fn a_step_reported_after_the_fact_goes_where_it_happened() {
        let store = store_with("u1");
        for n in [1, 2, 4] {
            PodSink::timeline(&store, "u1", entry(n));
        }
        PodSink::timeline(&store, "u1", entry(3));
        PodSink::timeline(&store, "u1", entry(0));
        let details: Vec<String> = store.timeline("u1").into_iter().map(|e| e.detail).collect();
        assert_eq!(details, ["0", "1", "2", "3", "4"]);
    }

    #[test]
    fn node_events_name_the_node_live_in_default_and_fold_repeats() {
        let store = store_with("u1");
        for _ in 0..2 {
            store.node_event(
                "node-1",
                EventType::Warning,
                "FreeDiskSpaceFailed",
                "not enough".into(),
            );
        }
        let events = store.events(Some("default"));
        assert_eq!(events.len(), 1, "{events:#?}");
        let event = &events[0];
        let object = &event.involved_object;
        assert_eq!(object.kind.as_deref(), Some("Node"));
        assert_eq!(object.name.as_deref(), Some("node-1"));
        assert_eq!(object.uid.as_deref(), Some("node-1"));
        assert_eq!(object.namespace, None);
        assert_eq!(event.count, Some(2));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert!(event
            .metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("node-1."));
    }

    fn pod_event(store: &PodStore, reason: &'static str, message: &str, at: Timestamp) {
        PodSink::event(
            store,
            PodEvent {
                pod: berth_runtime::PodRef {
                    uid: "u1".into(),
                    namespace: "default".into(),
                    name: "web".into(),
                },
                field_path: None,
                event_type: EventType::Normal,
                reason,
                message: message.into(),
                at,
            },
        );
    }

    #[test]
    fn restored_events_come_first_drop_the_expired_and_keep_names_unique() {
        let before = store_with("u1");
        let now = Timestamp::now();
        pod_event(
            &before,
            "Old",
            "long ago",
            now - jiff::SignedDuration::from_hours(2),
        );
        pod_event(&before, "Pulled", "kept", now);
        pod_event(&before, "Started", "kept too", now);
        let (version, saved) = before.events_snapshot();
        assert_eq!(version, 3);

        let after = store_with("u1");
        pod_event(&after, "Killing", "after the restart", now);
        after.restore_events(saved.clone());
        let events = after.events(None);
        let reasons: Vec<_> = events
            .iter()
            .map(|e| e.reason.as_deref().unwrap())
            .collect();
        assert_eq!(reasons, ["Pulled", "Started", "Killing"]);
        // A new event's name follows the restored ones.
        pod_event(&after, "Created", "new", now);
        let names: Vec<_> = after
            .events(None)
            .iter()
            .map(|e| e.metadata.name.clone().unwrap())
            .collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(names.last().unwrap(), &format!("web.{:x}", 4));
    }
}
