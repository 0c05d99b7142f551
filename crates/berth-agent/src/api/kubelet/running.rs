//! `/runningpods/`: the pods that have something running on the node, as
//! the kubelet's `GetRunningPods` reports them from its runtime cache
//! (`kubecontainer.Pod.ToAPIPod`): name, namespace and UID, and one
//! container (name and image) per running container; nothing else.

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The running view of `pods`: those with a running container, each with
/// only its running containers (init and ephemeral ones included).
pub fn running_pods(pods: Vec<Pod>) -> Vec<Pod> {
    pods.into_iter()
        .filter_map(|pod| {
            let status = pod.status.as_ref()?;
            let containers: Vec<Container> = [
                &status.init_container_statuses,
                &status.container_statuses,
                &status.ephemeral_container_statuses,
            ]
            .into_iter()
            .flatten()
            .flatten()
            .filter(|s| is_running(s))
            .map(|s| Container {
                name: s.name.clone(),
                image: Some(s.image.clone()),
                ..Default::default()
            })
            .collect();
            if containers.is_empty() {
                return None;
            }
            Some(Pod {
                metadata: ObjectMeta {
                    name: pod.metadata.name,
                    namespace: pod.metadata.namespace,
                    uid: pod.metadata.uid,
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    containers,
                    ..Default::default()
                }),
                status: None,
            })
        })
        .collect()
}

fn is_running(status: &ContainerStatus) -> bool {
    status
        .state
        .as_ref()
        .is_some_and(|state| state.running.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, statuses: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                          "labels": { "app": "x" } },
            "spec": { "containers": [{ "name": "a", "image": "img-a" }, { "name": "b", "image": "img-b" }] },
            "status": { "phase": "Running", "containerStatuses": statuses },
        }))
        .unwrap()
    }

    fn status(name: &str, state: serde_json::Value) -> serde_json::Value {
        serde_json::json!({ "name": name, "image": format!("img-{name}"), "imageID": "",
                            "ready": false, "restartCount": 0, "state": state })
    }

    #[test]
    fn only_running_containers_of_running_pods_are_listed() {
        let running = serde_json::json!({ "running": { "startedAt": "2026-01-01T00:00:00Z" } });
        let waiting = serde_json::json!({ "waiting": { "reason": "ContainerCreating" } });
        let pods = vec![
            pod(
                "up",
                serde_json::json!([status("a", running.clone()), status("b", waiting.clone())]),
            ),
            pod(
                "pending",
                serde_json::json!([status("a", waiting.clone()), status("b", waiting)]),
            ),
        ];
        let listed = running_pods(pods);
        assert_eq!(listed.len(), 1, "{listed:?}");
        let up = &listed[0];
        assert_eq!(up.metadata.name.as_deref(), Some("up"));
        assert_eq!(up.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(up.metadata.uid.as_deref(), Some("uid-up"));
        assert_eq!(up.metadata.labels, None, "only name, namespace and UID");
        let containers = &up.spec.as_ref().unwrap().containers;
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0].name, "a");
        assert_eq!(containers[0].image.as_deref(), Some("img-a"));
        assert!(up.status.is_none());
    }
}
