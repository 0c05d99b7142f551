//! Pod statuses to the API server: a strategic-merge patch of
//! `pods/<name>/status` carrying the pod's UID (a recreated pod of the same
//! name refuses a stale status), as the kubelet's status manager; and the
//! final delete once a pod is torn down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::service::WatchEvent;
use crate::store::PodStore;

use super::is_cluster_pod;

/// Statuses the server did not take are sent again this often (the
/// kubelet's status manager syncs every 10 s).
const RESYNC_EVERY: Duration = Duration::from_secs(10);

pub async fn run(
    client: kube::Client,
    store: Arc<PodStore>,
    mut resend: tokio::sync::mpsc::UnboundedReceiver<String>,
    stop: CancellationToken,
) {
    let mut changes = store.subscribe();
    // What the server last took, by UID.
    let mut sent: HashMap<String, PodStatus> = HashMap::new();
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let pods: Vec<Pod> = tokio::select! {
            _ = stop.cancelled() => return,
            _ = resync.tick() => store.list(None),
            Some(uid) = resend.recv() => {
                sent.remove(&uid);
                store.get(&uid).into_iter().collect()
            }
            change = changes.recv() => match change {
                Ok(WatchEvent::Added(pod) | WatchEvent::Modified(pod)) => {
                    vec![Arc::unwrap_or_clone(pod)]
                }
                Ok(WatchEvent::Deleted(pod)) => {
                    if is_cluster_pod(&pod) {
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        sent.remove(&uid);
                        let client = client.clone();
                        tokio::spawn(async move {
                            patch_status(&client, &pod).await.ok();
                            final_delete(&client, &pod).await;
                        });
                    }
                    continue;
                }
                // Missed changes: everything is looked at again.
                Err(RecvError::Lagged(_)) => store.list(None),
                Err(RecvError::Closed) => return,
            },
        };
        for pod in pods.iter().filter(|p| is_cluster_pod(p)) {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let Some(status) = status_to_send(pod) else {
                continue;
            };
            if sent.get(&uid) == Some(&status) {
                continue;
            }
            match patch_status(&client, pod).await {
                Ok(()) => {
                    sent.insert(uid, status);
                }
                Err(e) => debug!(
                    pod = pod.metadata.name.as_deref().unwrap_or(""),
                    "patch pod status: {e}"
                ),
            }
        }
        // Forget pods the store no longer has.
        sent.retain(|uid, _| store.get(uid).is_some());
    }
}

fn namespaced(client: &kube::Client, pod: &Pod) -> Api<Pod> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    Api::namespaced(client.clone(), namespace)
}

/// `{"metadata": {"uid": …}, "status": …}` as a strategic-merge patch:
/// conditions merge by type, so conditions others own (readiness gates)
/// stay; container statuses are replaced whole.
async fn patch_status(client: &kube::Client, pod: &Pod) -> Result<(), kube::Error> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let patch = status_patch(pod);
    match namespaced(client, pod)
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(_) => Ok(()),
        // Gone, or another pod of the same name now: nothing to tell.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A condition merges into the server's by type, so a reason or message
/// the kubelet's condition no longer has would stay: they are sent as
/// `null`, as the kubelet's two-way patch of old and new status removes
/// them.
fn clear_unset_condition_fields(status: &mut serde_json::Value) {
    let conditions = status.get_mut("conditions").and_then(|c| c.as_array_mut());
    for condition in conditions.into_iter().flatten() {
        let Some(fields) = condition.as_object_mut() else {
            continue;
        };
        let owned = fields
            .get("type")
            .and_then(|t| t.as_str())
            .is_some_and(|t| KUBELET_CONDITIONS.contains(&t));
        if owned {
            for key in ["reason", "message"] {
                fields.entry(key).or_insert(serde_json::Value::Null);
            }
        }
    }
}

/// The conditions the kubelet writes, which carry the generation it saw
/// (PodScheduled too: the kubelet's status has it, and stamps it).
const KUBELET_CONDITIONS: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
    "PodScheduled",
];

/// The pod's status stamped with the generation of the spec it reflects
/// (`status.observedGeneration`, and that of the kubelet's conditions), as
/// the kubelet's `CalculatePodStatusObservedGeneration` and
/// `CalculatePodConditionObservedGeneration` do: a client sees when the
/// node has caught up with an update.
fn status_to_send(pod: &Pod) -> Option<PodStatus> {
    let mut status = pod.status.clone()?;
    // The worker's word on which spec it acted on, else the newest known.
    let generation = status
        .observed_generation
        .or(pod.metadata.generation)
        .filter(|g| *g > 0);
    status.observed_generation = generation;
    for condition in status.conditions.iter_mut().flatten() {
        if KUBELET_CONDITIONS.contains(&condition.type_.as_str()) {
            condition.observed_generation = generation;
        }
    }
    Some(status)
}

/// The resize conditions, which the kubelet removes once a resize is no
/// longer pending or in progress.
const RESIZE_CONDITIONS: [&str; 2] = ["PodResizePending", "PodResizeInProgress"];

/// The patch body: a resize condition the status no longer has is deleted
/// (`$patch: delete`), as the kubelet's two-way merge patch deletes it;
/// merging alone would keep it on the server.
fn status_patch(pod: &Pod) -> serde_json::Value {
    let status = status_to_send(pod);
    let mut value = serde_json::to_value(&status).unwrap_or_default();
    clear_unset_condition_fields(&mut value);
    if let Some(status) = status {
        let has = |t: &str| status.conditions.iter().flatten().any(|c| c.type_ == t);
        let deletes = RESIZE_CONDITIONS
            .into_iter()
            .filter(|t| !has(t))
            .map(|t| serde_json::json!({ "type": t, "$patch": "delete" }));
        if let Some(object) = value.as_object_mut() {
            let conditions = object
                .entry("conditions")
                .or_insert_with(|| serde_json::json!([]));
            if let Some(list) = conditions.as_array_mut() {
                list.extend(deletes);
            }
        }
    }
    serde_json::json!({
        "metadata": { "uid": pod.metadata.uid },
        "status": value,
    })
}

/// Deletes the API object of a torn-down pod: grace 0, and only the pod of
/// this UID (the kubelet's status manager once `canBeDeleted`).
pub async fn final_delete(client: &kube::Client, pod: &Pod) {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match namespaced(client, pod).delete(name, &params).await {
        Ok(_) => debug!(pod = name, "deleted from the API server"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => warn!(pod = name, "final delete: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubelet_conditions_unset_reason_and_message_are_cleared() {
        let mut status = serde_json::json!({ "conditions": [
            { "type": "Ready", "status": "True" },
            { "type": "ContainersReady", "status": "False", "reason": "ContainersNotReady" },
            { "type": "example.com/gate", "status": "True" },
        ] });
        clear_unset_condition_fields(&mut status);
        assert_eq!(
            status["conditions"],
            serde_json::json!([
                { "type": "Ready", "status": "True", "reason": null, "message": null },
                { "type": "ContainersReady", "status": "False", "reason": "ContainersNotReady", "message": null },
                { "type": "example.com/gate", "status": "True" },
            ])
        );
    }

    #[test]
    fn resize_conditions_gone_from_the_status_are_deleted_on_the_server() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "uid": "u" },
            "status": { "conditions": [
                { "type": "Ready", "status": "True" },
                { "type": "PodResizePending", "status": "True", "reason": "Deferred" },
            ] },
        }))
        .unwrap();
        let patch = status_patch(&pod);
        assert_eq!(
            patch["status"]["conditions"],
            serde_json::json!([
                { "type": "Ready", "status": "True", "reason": null, "message": null },
                { "type": "PodResizePending", "status": "True", "reason": "Deferred" },
                { "type": "PodResizeInProgress", "$patch": "delete" },
            ])
        );
        assert_eq!(patch["metadata"]["uid"], "u");
    }

    #[test]
    fn the_status_carries_the_generation_it_reflects() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "generation": 3 },
            "status": { "phase": "Running", "conditions": [
                { "type": "Ready", "status": "True" },
                { "type": "PodScheduled", "status": "True" },
            ] },
        }))
        .unwrap();
        let status = status_to_send(&pod).unwrap();
        assert_eq!(status.observed_generation, Some(3));
        let conditions = status.conditions.unwrap();
        assert_eq!(
            conditions[0].observed_generation,
            Some(3),
            "Ready is the kubelet's"
        );
        assert_eq!(
            conditions[1].observed_generation,
            Some(3),
            "PodScheduled is in the kubelet's status too"
        );

        let mut bumped = pod.clone();
        bumped.metadata.generation = Some(4);
        assert_ne!(
            status_to_send(&bumped),
            status_to_send(&pod),
            "a new generation is sent"
        );

        // A worker that has not acted on generation 4 yet says 3.
        bumped.status.as_mut().unwrap().observed_generation = Some(3);
        let status = status_to_send(&bumped).unwrap();
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.conditions.unwrap()[0].observed_generation, Some(3));
    }
}
