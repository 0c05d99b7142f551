//! The pods bound to this node: a list and watch of
//! `spec.nodeName=<node>` across namespaces (the kubelet's
//! `NewSourceApiserver`). Every list is the whole set, so a pod missing
//! from a relist was deleted while the watch was down.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::store::PodStore;

/// What the supervisor is told.
#[derive(Debug)]
pub enum ClusterPodEvent {
    /// Every pod bound to the node: those berth runs and are not in it
    /// were deleted.
    All(Vec<Pod>),
    /// A pod added or changed (a `deletionTimestamp` asks for its graceful
    /// termination).
    Changed(Pod),
    /// A pod gone from the API server (a forced delete).
    Deleted(Pod),
}

/// Where the watched pods go.
pub struct Outputs {
    /// To the supervisor.
    pub events: mpsc::Sender<ClusterPodEvent>,
    /// UIDs whose status the API server's copy drifted from, to the status
    /// sync.
    pub resend: mpsc::UnboundedSender<String>,
    /// Their API data, written and kept current.
    pub volumes: Arc<super::volumes::PodVolumes>,
}

pub async fn run(
    client: kube::Client,
    node: String,
    store: Arc<PodStore>,
    outputs: Outputs,
    mut registered: watch::Receiver<Option<String>>,
    stop: CancellationToken,
) {
    let Outputs {
        events,
        resend,
        volumes,
    } = outputs;
    // Pods are watched once the Node exists, as the kubelet waits for its
    // own Node first.
    if super::registered_node(&mut registered, &stop)
        .await
        .is_none()
    {
        return;
    }
    let pods: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher::watcher(pods, config).default_backoff().boxed();
    let mut listing: Vec<Pod> = Vec::new();
    loop {
        let Some(event) = super::next_event(&mut stream, "pods", &stop).await else {
            return;
        };
        let message = match event {
            Event::Init => {
                listing.clear();
                continue;
            }
            // Mirror pods show this node's static pods: never run.
            Event::InitApply(pod) if super::mirror_pods::is_mirror(&pod) => continue,
            Event::Apply(pod) | Event::Delete(pod) if super::mirror_pods::is_mirror(&pod) => {
                continue
            }
            Event::InitApply(pod) => {
                if store
                    .get(pod.metadata.uid.as_deref().unwrap_or_default())
                    .is_none()
                {
                    volumes.prefetch(&pod).await;
                }
                volumes.ensure(&pod);
                listing.push(pod);
                continue;
            }
            Event::InitDone => {
                let all = std::mem::take(&mut listing);
                debug!(%node, pods = all.len(), "listed the node's pods");
                for pod in &all {
                    delete_if_unknown(&client, &store, pod);
                }
                ClusterPodEvent::All(all)
            }
            Event::Apply(pod) => {
                if delete_if_unknown(&client, &store, &pod) {
                    continue;
                }
                match store.get(pod.metadata.uid.as_deref().unwrap_or_default()) {
                    None => volumes.prefetch(&pod).await,
                    // Someone else changed the status berth reports (the
                    // node controller marks pods not ready after an
                    // outage): it is sent again.
                    Some(local) if drifted(&pod, &local) => {
                        let _ = resend.send(pod.metadata.uid.clone().unwrap_or_default());
                    }
                    Some(_) => {}
                }
                volumes.ensure(&pod);
                ClusterPodEvent::Changed(pod)
            }
            Event::Delete(pod) => ClusterPodEvent::Deleted(pod),
        };
        if events.send(message).await.is_err() {
            return;
        }
    }
}

/// Whether the API server's phase or conditions differ from what berth
/// reports (only those: other fields the server may fill in itself).
fn drifted(api: &Pod, local: &Pod) -> bool {
    let summary = |pod: &Pod| {
        let status = pod.status.as_ref();
        let mut conditions: Vec<(String, String)> = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect();
        conditions.sort();
        (status.and_then(|s| s.phase.clone()), conditions)
    };
    let (api_phase, api_conditions) = summary(api);
    let (local_phase, local_conditions) = summary(local);
    // Conditions only berth sets; others' (readiness gates) may be there too.
    let differs = local_conditions
        .iter()
        .any(|c| api_conditions.iter().any(|a| a.0 == c.0 && a.1 != c.1));
    local.status.is_some() && (api_phase != local_phase || differs)
}

/// A pod being deleted that berth does not run has nothing to tear down:
/// it is deleted from the API server at once (the kubelet's final delete).
fn delete_if_unknown(client: &kube::Client, store: &PodStore, pod: &Pod) -> bool {
    if pod.metadata.deletion_timestamp.is_none() {
        return false;
    }
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    if store.get(uid).is_some() {
        return false;
    }
    let (client, pod) = (client.clone(), pod.clone());
    tokio::spawn(async move { super::status_sync::final_delete(&client, &pod).await });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    fn pod(phase: &str, conditions: &[(&str, &str)]) -> Pod {
        let conditions = conditions
            .iter()
            .map(|(t, s)| PodCondition {
                type_: t.to_string(),
                status: s.to_string(),
                ..Default::default()
            })
            .collect();
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(conditions),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn drift_is_a_different_phase_or_condition_berth_reports() {
        let local = pod("Running", &[("Ready", "True"), ("Initialized", "True")]);
        assert!(!drifted(&local.clone(), &local));
        assert!(drifted(
            &pod("Running", &[("Ready", "False"), ("Initialized", "True")]),
            &local
        ));
        assert!(drifted(
            &pod("Pending", &[("Ready", "True"), ("Initialized", "True")]),
            &local
        ));
        // A condition only others set (a readiness gate) is not drift.
        let gated = pod(
            "Running",
            &[
                ("Ready", "True"),
                ("Initialized", "True"),
                ("example.com/gate", "False"),
            ],
        );
        assert!(!drifted(&gated, &local));
    }
}
