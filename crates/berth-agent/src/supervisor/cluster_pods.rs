//! The API server as a pod source (cluster mode): its pods are admitted,
//! updated and terminated here as the manifest directory's are.

use std::collections::HashSet;
use std::sync::Arc;

use berth_runtime::{ContainerRuntime, ImageService};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use tracing::info;

use super::Supervisor;
use crate::admission::Rejection;
use crate::cluster::{is_cluster_pod, ClusterPodEvent, API_SOURCE};
use crate::manifests::CONFIG_SOURCE_ANNOTATION;

impl<R: ContainerRuntime + ImageService> Supervisor<R> {
    pub fn on_cluster_event(&self, event: ClusterPodEvent) {
        match event {
            ClusterPodEvent::All(pods) => self.sync_cluster_pods(pods),
            ClusterPodEvent::Changed(pod) => self.cluster_pod_changed(pod),
            ClusterPodEvent::Deleted(pod) => {
                let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                if self.store.get(uid).is_some() {
                    self.source_removed(uid);
                    self.terminate_uid(uid, pod.metadata.deletion_grace_period_seconds);
                }
            }
        }
    }

    /// Every pod the API server binds to this node: the pods from it that
    /// berth runs and that are not listed were deleted meanwhile.
    fn sync_cluster_pods(&self, pods: Vec<Pod>) {
        let listed: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        for pod in pods {
            self.cluster_pod_changed(pod);
        }
        for stored in self.store.list(None) {
            let uid = stored.metadata.uid.clone().unwrap_or_default();
            if is_cluster_pod(&stored) && !listed.contains(&uid) {
                info!(
                    pod = stored.metadata.name.as_deref().unwrap_or(""),
                    "pod gone from the API server"
                );
                self.source_removed(&uid);
                self.terminate_uid(&uid, None);
            }
        }
    }

    /// A pod from the API server, new or changed.
    fn cluster_pod_changed(&self, mut pod: Pod) {
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(CONFIG_SOURCE_ANNOTATION.into(), API_SOURCE.into());
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(stored) = self.store.get(&uid) {
            if pod.metadata.deletion_timestamp.is_some() {
                self.terminate_uid(&uid, pod.metadata.deletion_grace_period_seconds);
            } else if stored.spec != pod.spec
                || stored.metadata.generation != pod.metadata.generation
                || stored.metadata.labels != pod.metadata.labels
                || stored.metadata.annotations != pod.metadata.annotations
                || foreign_conditions(&stored) != foreign_conditions(&pod)
            {
                self.update_spec(&uid, &pod);
            }
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed"))
            || pod.metadata.deletion_timestamp.is_some()
        {
            // Finished before berth saw it (an agent restart): never run
            // again. One being deleted is deleted by the pod source.
            return;
        }
        // The API server's status is its own; the worker makes berth's. The
        // start time stays, as the kubelet keeps it.
        let start_time = pod.status.as_ref().and_then(|s| s.start_time.clone());
        let conditions = foreign_conditions(&pod);
        pod.status = Some(PodStatus {
            phase: Some("Pending".into()),
            start_time,
            conditions: (!conditions.is_empty()).then_some(conditions),
            ..Default::default()
        });
        let valid = berth_api::validation::validate_uid(&pod)
            .and_then(|()| berth_api::validation::validate_cluster_pod(&pod));
        if let Err(e) = valid {
            // What berth cannot run is refused as the kubelet's admission
            // refuses: Failed, with the reason in the status and an event.
            return self.reject(
                pod,
                Rejection {
                    reason: "UnsupportedPodSpec",
                    message: e.to_string(),
                },
            );
        }
        self.persist(&pod);
        self.admit(pod);
    }

    /// A running pod's new spec (with the generation the API server gave
    /// it, which the status reports as observed), labels and annotations,
    /// to its worker (which restarts containers whose image changed);
    /// `None` for an unknown UID.
    pub(super) fn update_spec(&self, uid: &str, pod: &Pod) -> Option<Pod> {
        let updated = self.store.modify(uid, |stored| {
            stored.spec = pod.spec.clone();
            stored.metadata.generation = pod.metadata.generation;
            stored.metadata.labels = pod.metadata.labels.clone();
            stored.metadata.annotations = pod.metadata.annotations.clone();
            // Others' conditions, for the worker to keep and to read the
            // readiness gates from.
            let status = stored.status.get_or_insert_with(Default::default);
            let own = status.conditions.take().into_iter().flatten();
            let own = own.filter(|c| berth_api::status::is_kubelet_condition(&c.type_));
            let conditions: Vec<PodCondition> =
                foreign_conditions(pod).into_iter().chain(own).collect();
            status.conditions = (!conditions.is_empty()).then_some(conditions);
        })?;
        self.persist(&updated);
        if let Some(worker) = self.workers.lock().expect("workers lock").get(uid) {
            worker.update(Arc::new(updated.clone()));
        }
        Some(updated)
    }
}

/// The pod's conditions that others own (readiness gates,
/// DisruptionTarget): all but the kubelet's.
fn foreign_conditions(pod: &Pod) -> Vec<PodCondition> {
    let conditions = pod
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten());
    conditions
        .filter(|c| !berth_api::status::is_kubelet_condition(&c.type_))
        .cloned()
        .collect()
}
