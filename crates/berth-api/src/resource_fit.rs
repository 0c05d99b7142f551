//! Whether a pod's resource requests fit the node: the kubelet's admission
//! runs the scheduler's `noderesources.Fits` (pods, cpu, memory,
//! ephemeral-storage, in that order) against the node's allocatable less
//! what the pods already admitted request. A pod bound to the node by hand
//! (or by a scheduler that misjudged) is rejected with `OutOf<resource>`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;
use crate::resource_field::NodeAllocatable;

/// What a pod requests, in the scheduler's units: millicores and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
}

const RESOURCES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

impl Requests {
    fn of(list: Option<&BTreeMap<String, Quantity>>) -> Self {
        let get = |name: &str| list.and_then(|l| l.get(name)).map(|q| q.0.as_str());
        Self {
            milli_cpu: get("cpu")
                .and_then(quantity::milli_value)
                .map_or(0, |m| i64::try_from(m).unwrap_or(i64::MAX)),
            memory: get("memory").and_then(quantity::value).unwrap_or(0),
            ephemeral_storage: get("ephemeral-storage")
                .and_then(quantity::value)
                .unwrap_or(0),
        }
    }

    /// The requests of one container's (or the pod's) resources.
    pub fn of_requirements(r: Option<&ResourceRequirements>) -> Self {
        Self::of(r.and_then(|r| r.requests.as_ref()))
    }

    fn get(&self, resource: &str) -> i64 {
        match resource {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            _ => self.ephemeral_storage,
        }
    }

    fn set(&mut self, resource: &str, value: i64) {
        match resource {
            "cpu" => self.milli_cpu = value,
            "memory" => self.memory = value,
            _ => self.ephemeral_storage = value,
        }
    }

    fn max(self, other: Self) -> Self {
        Self {
            milli_cpu: self.milli_cpu.max(other.milli_cpu),
            memory: self.memory.max(other.memory),
            ephemeral_storage: self.ephemeral_storage.max(other.ephemeral_storage),
        }
    }

    /// A pod's requests (`resourcehelper.PodRequests`): its containers and
    /// sidecars together, or an init container with the sidecars started
    /// before it, whichever is more; pod-level requests replace cpu and
    /// memory; the overhead is added.
    pub fn of_pod(spec: &PodSpec) -> Self {
        let own: Vec<Self> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .map(|c| Self::of_requirements(c.resources.as_ref()))
            .collect();
        Self::of_pod_with(spec, |i| own[i])
    }

    /// As [`Requests::of_pod`], with container `i`'s requests (init
    /// containers first) from `container`: what the node allocated to it,
    /// which an in-place resize may have changed.
    pub fn of_pod_with(spec: &PodSpec, container: impl Fn(usize) -> Self) -> Self {
        let inits = spec.init_containers.as_deref().unwrap_or_default();
        let mut total = (0..spec.containers.len())
            .map(|i| container(inits.len() + i))
            .fold(Self::default(), |sum, r| sum + r);
        let mut sidecars = Self::default();
        let mut init_peak = Self::default();
        for (i, init) in inits.iter().enumerate() {
            let own = container(i);
            let during = if init.restart_policy.as_deref() == Some("Always") {
                total = total + own;
                sidecars = sidecars + own;
                sidecars
            } else {
                own + sidecars
            };
            init_peak = init_peak.max(during);
        }
        let mut total = total.max(init_peak);
        let pod_level = spec.resources.as_ref().and_then(|r| r.requests.as_ref());
        if let Some(pod_level) = pod_level {
            let set = Self::of(Some(pod_level));
            for resource in ["cpu", "memory"] {
                if pod_level.contains_key(resource) {
                    total.set(resource, set.get(resource));
                }
            }
        }
        total + Self::of(spec.overhead.as_ref())
    }
}

impl std::ops::Add for Requests {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            milli_cpu: self.milli_cpu.saturating_add(other.milli_cpu),
            memory: self.memory.saturating_add(other.memory),
            ephemeral_storage: self
                .ephemeral_storage
                .saturating_add(other.ephemeral_storage),
        }
    }
}

/// The first resource the node lacks (`InsufficientResourceError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insufficient {
    pub resource: &'static str,
    pub requested: i64,
    pub used: i64,
    pub capacity: i64,
}

impl Insufficient {
    /// The kubelet's rejection reason (`OutOfcpu` and the like).
    pub fn reason(&self) -> &'static str {
        match self.resource {
            "pods" => "OutOfpods",
            "cpu" => "OutOfcpu",
            "memory" => "OutOfmemory",
            _ => "OutOfephemeral-storage",
        }
    }

    /// The kubelet's rejection message.
    pub fn message(&self) -> String {
        format!(
            "Node didn't have enough resource: {}, requested: {}, used: {}, capacity: {}",
            self.resource, self.requested, self.used, self.capacity
        )
    }
}

/// Whether `pod` fits beside `admitted` (the node's other active pods) on a
/// node with `allocatable` and room for `max_pods` pods.
pub fn fits(
    pod: &PodSpec,
    admitted: &[&PodSpec],
    allocatable: &NodeAllocatable,
    max_pods: i64,
) -> Result<(), Insufficient> {
    let count = i64::try_from(admitted.len()).unwrap_or(i64::MAX);
    if count.saturating_add(1) > max_pods {
        return Err(Insufficient {
            resource: "pods",
            requested: 1,
            used: count,
            capacity: max_pods,
        });
    }
    let used = admitted.iter().fold(Requests::default(), |sum, other| {
        sum + Requests::of_pod(other)
    });
    first_insufficient(Requests::of_pod(pod), used, allocatable).map_or(Ok(()), Err)
}

/// The first resource (cpu, memory, ephemeral-storage) of which `wanted`
/// is more than the node's `allocatable` less what others `used`; one the
/// node does not know its allocatable of is never short.
pub fn first_insufficient(
    wanted: Requests,
    used: Requests,
    allocatable: &NodeAllocatable,
) -> Option<Insufficient> {
    let known = [
        ("cpu", &allocatable.cpu),
        ("memory", &allocatable.memory),
        ("ephemeral-storage", &allocatable.ephemeral_storage),
    ];
    let capacity = Requests::of(Some(&BTreeMap::from_iter(
        known
            .iter()
            .filter_map(|(name, q)| Some((name.to_string(), (*q).clone()?))),
    )));
    RESOURCES.into_iter().find_map(|resource| {
        let known = known
            .iter()
            .any(|(name, q)| *name == resource && q.is_some());
        let (requested, used, capacity) = (
            wanted.get(resource),
            used.get(resource),
            capacity.get(resource),
        );
        (known && requested > 0 && requested > capacity.saturating_sub(used)).then_some(
            Insufficient {
                resource,
                requested,
                used,
                capacity,
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> PodSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn node() -> NodeAllocatable {
        NodeAllocatable {
            cpu: Some(Quantity("2".into())),
            memory: Some(Quantity("1Gi".into())),
            ephemeral_storage: Some(Quantity("10Gi".into())),
        }
    }

    #[test]
    fn requests_add_containers_and_sidecars_and_take_the_larger_init_peak() {
        let pod = spec(
            "
            initContainers:
            - {name: side, restartPolicy: Always, resources: {requests: {cpu: 100m}}}
            - {name: init, resources: {requests: {cpu: '1', memory: 64Mi}}}
            containers:
            - {name: a, resources: {requests: {cpu: 200m, memory: 32Mi}}}
            - {name: b, resources: {requests: {cpu: 300m}}}
            overhead: {cpu: 10m}
            ",
        );
        // Containers and sidecar: 600m, 32Mi; the init peak: 1100m, 64Mi.
        assert_eq!(
            Requests::of_pod(&pod),
            Requests {
                milli_cpu: 1110,
                memory: 64 << 20,
                ephemeral_storage: 0
            }
        );
        let pod_level = spec(
            "
            resources: {requests: {cpu: 500m}}
            containers: [{name: a, resources: {requests: {cpu: 200m, memory: 32Mi}}}]
            ",
        );
        assert_eq!(Requests::of_pod(&pod_level).milli_cpu, 500);
        assert_eq!(Requests::of_pod(&pod_level).memory, 32 << 20);
    }

    #[test]
    fn a_pod_that_does_not_fit_is_refused_with_the_kubelets_reason_and_message() {
        let huge = spec("containers: [{name: a, resources: {requests: {cpu: '1000000000000'}}}]");
        let err = fits(&huge, &[], &node(), 110).unwrap_err();
        assert_eq!(err.reason(), "OutOfcpu");
        assert_eq!(
            err.message(),
            "Node didn't have enough resource: cpu, requested: 1000000000000000, used: 0, capacity: 2000"
        );
        let half = spec("containers: [{name: a, resources: {requests: {memory: 600Mi}}}]");
        assert_eq!(fits(&half, &[], &node(), 110), Ok(()));
        let err = fits(&half, &[&half], &node(), 110).unwrap_err();
        assert_eq!(err.reason(), "OutOfmemory");
        assert_eq!(err.used, 600 << 20);
        let none = spec("containers: [{name: a}]");
        assert_eq!(fits(&none, &[&half, &half], &node(), 110), Ok(()));
        let err = fits(&none, &[&none, &none], &node(), 2).unwrap_err();
        assert_eq!(
            (err.reason(), err.requested, err.used, err.capacity),
            ("OutOfpods", 1, 2, 2)
        );
    }
}
