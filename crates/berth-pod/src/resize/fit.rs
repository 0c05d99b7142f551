//! What the node allocated to each pod its workers run, for a resize's
//! admission: the resized pod's requests against the node's allocatable
//! less the other pods' allocations, as the kubelet's resize admission runs
//! the scheduler's `Fits` (`pkg/kubelet/lifecycle/predicate.go`). The
//! request arithmetic and the message are `berth_api::resource_fit`'s, the
//! same as the pod admission's.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_api::resource_field::NodeAllocatable;
use berth_api::resource_fit::{first_insufficient, Requests};
use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

/// The pod's requests with container `i`'s resources from `allocated(i)`
/// (init containers first).
pub(crate) fn pod_requests(
    spec: &PodSpec,
    allocated: impl Fn(usize) -> ResourceRequirements,
) -> Requests {
    Requests::of_pod_with(spec, |i| Requests::of_requirements(Some(&allocated(i))))
}

/// What the node allocated to each pod its workers run, by UID.
#[derive(Debug, Default)]
pub struct NodeAllocations {
    pods: Mutex<HashMap<String, Requests>>,
}

impl NodeAllocations {
    pub(crate) fn set(&self, uid: &str, requests: Requests) {
        self.lock().insert(uid.to_string(), requests);
    }

    /// Pod `uid` holds nothing of the node any more (its worker ended, or its
    /// source removed it and it only terminates).
    pub fn remove(&self, uid: &str) {
        self.lock().remove(uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Requests>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The other pods' requests together.
    fn used_by_others(&self, uid: &str) -> Requests {
        self.lock()
            .iter()
            .filter(|(other, _)| other.as_str() != uid)
            .map(|(_, r)| *r)
            .fold(Requests::default(), |sum, r| sum + r)
    }

    /// `None` when pod `uid` fits with `wanted`, else the scheduler's
    /// `Node didn't have enough resource` message for the first resource
    /// short. A resource the node does not know its allocatable of fits.
    pub(crate) fn misfit(
        &self,
        uid: &str,
        wanted: Requests,
        allocatable: &NodeAllocatable,
    ) -> Option<String> {
        first_insufficient(wanted, self.used_by_others(uid), allocatable)
            .map(|short| short.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn allocatable(cpu: &str, memory: &str) -> NodeAllocatable {
        NodeAllocatable {
            cpu: Some(Quantity(cpu.into())),
            memory: Some(Quantity(memory.into())),
            ephemeral_storage: None,
        }
    }

    #[test]
    fn a_pod_fits_beside_the_others_or_is_told_why_not() {
        let node = NodeAllocations::default();
        node.set(
            "other",
            Requests {
                milli_cpu: 1500,
                memory: 1 << 30,
                ephemeral_storage: 0,
            },
        );
        node.set(
            "me",
            Requests {
                milli_cpu: 100,
                memory: 0,
                ephemeral_storage: 0,
            },
        );
        let room = allocatable("2", "4Gi");
        assert_eq!(
            node.misfit(
                "me",
                Requests {
                    milli_cpu: 500,
                    memory: 0,
                    ephemeral_storage: 0
                },
                &room
            ),
            None
        );
        assert_eq!(
            node.misfit(
                "me",
                Requests {
                    milli_cpu: 600,
                    memory: 0,
                    ephemeral_storage: 0
                },
                &room
            )
            .as_deref(),
            Some(
                "Node didn't have enough resource: cpu, requested: 600, used: 1500, capacity: 2000"
            )
        );
        assert_eq!(
            node.misfit("me", Requests { milli_cpu: 0, memory: 4 << 30, ephemeral_storage: 0 }, &room).as_deref(),
            Some(
                "Node didn't have enough resource: memory, requested: 4294967296, used: 1073741824, capacity: 4294967296"
            )
        );
        assert_eq!(
            node.misfit(
                "me",
                Requests {
                    milli_cpu: 1 << 40,
                    memory: 0,
                    ephemeral_storage: 0
                },
                &Default::default()
            ),
            None
        );
    }

    #[test]
    fn pod_requests_count_sidecars_and_the_biggest_init_container() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "initContainers": [
                {"name": "side", "restartPolicy": "Always",
                 "resources": {"requests": {"cpu": "100m"}}},
                {"name": "init", "resources": {"requests": {"cpu": "2", "memory": "1Mi"}}},
            ],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "200m", "memory": "10Mi"}}},
            ],
        }))
        .unwrap();
        let all: Vec<_> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .map(|c| c.resources.clone().unwrap_or_default())
            .collect();
        let r = pod_requests(&spec, |i| all[i].clone());
        assert_eq!(
            r,
            Requests {
                milli_cpu: 2100,
                memory: 10 << 20,
                ephemeral_storage: 0
            }
        );
    }
}
