//! Whether a resized pod still fits the node: its CPU and memory requests
//! against the node's allocatable less what the other pods were allocated,
//! as the kubelet's resize admission runs the scheduler's `Fits`
//! (`pkg/kubelet/lifecycle/predicate.go`, `InsufficientResourceError`).

use std::collections::HashMap;
use std::sync::Mutex;

use berth_api::quantity;
use berth_api::resource_field::NodeAllocatable;
use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

/// A pod's CPU (millicores) and memory (bytes) requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PodRequests {
    pub cpu: i64,
    pub memory: i64,
}

impl PodRequests {
    fn of(r: &ResourceRequirements) -> Self {
        let get = |name: &str| r.requests.as_ref().and_then(|m| m.get(name));
        Self {
            cpu: get("cpu")
                .and_then(|q| quantity::milli_value(&q.0))
                .and_then(|m| i64::try_from(m).ok())
                .unwrap_or(0),
            memory: get("memory")
                .and_then(|q| quantity::value(&q.0))
                .unwrap_or(0),
        }
    }

    fn add(self, o: Self) -> Self {
        Self {
            cpu: self.cpu + o.cpu,
            memory: self.memory + o.memory,
        }
    }

    fn max(self, o: Self) -> Self {
        Self {
            cpu: self.cpu.max(o.cpu),
            memory: self.memory.max(o.memory),
        }
    }

    /// The pod's requests as the scheduler counts them (`PodRequests`): the
    /// regular containers and sidecars together, or an init container with
    /// the sidecars started before it if that is more; plus the overhead.
    /// Pod-level requests stand for the containers'. `allocated(i)` is what
    /// the node allocated to container `i` (init containers first).
    pub(crate) fn of_pod(
        spec: &PodSpec,
        allocated: impl Fn(usize) -> ResourceRequirements,
    ) -> Self {
        let inits = spec.init_containers.as_deref().unwrap_or_default();
        let mut sidecars = Self::default();
        let mut init_peak = Self::default();
        for (i, c) in inits.iter().enumerate() {
            let r = Self::of(&allocated(i));
            if c.restart_policy.as_deref() == Some("Always") {
                sidecars = sidecars.add(r);
                init_peak = init_peak.max(sidecars);
            } else {
                init_peak = init_peak.max(sidecars.add(r));
            }
        }
        let regular = (0..spec.containers.len())
            .map(|i| Self::of(&allocated(inits.len() + i)))
            .fold(Self::default(), Self::add);
        let mut total = regular.add(sidecars).max(init_peak);
        if let Some(pod_level) = spec.resources.as_ref().map(Self::of) {
            if pod_level.cpu > 0 {
                total.cpu = pod_level.cpu;
            }
            if pod_level.memory > 0 {
                total.memory = pod_level.memory;
            }
        }
        let overhead = ResourceRequirements {
            requests: spec.overhead.clone(),
            ..Default::default()
        };
        total.add(Self::of(&overhead))
    }
}

/// What the node allocated to each pod its workers run, by UID.
#[derive(Debug, Default)]
pub struct NodeAllocations {
    pods: Mutex<HashMap<String, PodRequests>>,
}

impl NodeAllocations {
    pub(crate) fn set(&self, uid: &str, requests: PodRequests) {
        self.lock().insert(uid.to_string(), requests);
    }

    pub(crate) fn remove(&self, uid: &str) {
        self.lock().remove(uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodRequests>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The other pods' requests together.
    fn used_by_others(&self, uid: &str) -> PodRequests {
        self.lock()
            .iter()
            .filter(|(other, _)| other.as_str() != uid)
            .map(|(_, r)| *r)
            .fold(PodRequests::default(), PodRequests::add)
    }

    /// `None` when pod `uid` fits with `wanted`, else the scheduler's
    /// `Node didn't have enough resource` message for the first resource
    /// short (cpu, then memory). A node that does not know its allocatable
    /// fits everything.
    pub(crate) fn misfit(
        &self,
        uid: &str,
        wanted: PodRequests,
        allocatable: &NodeAllocatable,
    ) -> Option<String> {
        let used = self.used_by_others(uid);
        let capacity = |q: &Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
                        milli: bool| {
            let text = &q.as_ref()?.0;
            if milli {
                quantity::milli_value(text).and_then(|m| i64::try_from(m).ok())
            } else {
                quantity::value(text)
            }
        };
        let checks = [
            (
                "cpu",
                wanted.cpu,
                used.cpu,
                capacity(&allocatable.cpu, true),
            ),
            (
                "memory",
                wanted.memory,
                used.memory,
                capacity(&allocatable.memory, false),
            ),
        ];
        checks.into_iter().find_map(|(name, requested, used, capacity)| {
            let capacity = capacity?;
            (requested > 0 && requested > capacity - used).then(|| {
                format!(
                    "Node didn't have enough resource: {name}, requested: {requested}, used: {used}, capacity: {capacity}"
                )
            })
        })
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
            PodRequests {
                cpu: 1500,
                memory: 1 << 30,
            },
        );
        node.set(
            "me",
            PodRequests {
                cpu: 100,
                memory: 0,
            },
        );
        let room = allocatable("2", "4Gi");
        assert_eq!(
            node.misfit(
                "me",
                PodRequests {
                    cpu: 500,
                    memory: 0
                },
                &room
            ),
            None
        );
        assert_eq!(
            node.misfit(
                "me",
                PodRequests {
                    cpu: 600,
                    memory: 0
                },
                &room
            )
            .as_deref(),
            Some(
                "Node didn't have enough resource: cpu, requested: 600, used: 1500, capacity: 2000"
            )
        );
        assert_eq!(
            node.misfit("me", PodRequests { cpu: 0, memory: 4 << 30 }, &room).as_deref(),
            Some(
                "Node didn't have enough resource: memory, requested: 4294967296, used: 1073741824, capacity: 4294967296"
            )
        );
        assert_eq!(
            node.misfit(
                "me",
                PodRequests {
                    cpu: 1 << 40,
                    memory: 0
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
        let r = PodRequests::of_pod(&spec, |i| all[i].clone());
        assert_eq!(
            r,
            PodRequests {
                cpu: 2100,
                memory: 10 << 20
            }
        );
    }
}
