//! emptyDir volumes of medium `Memory`: a tmpfs whose size is the kubelet's
//! (SizeMemoryBackedVolumes): the node's memory, lowered to the pod's
//! memory limit when every container declares one, and to the volume's
//! `sizeLimit` when that is smaller still.

use k8s_openapi::api::core::v1::{Container, EmptyDirVolumeSource, PodSpec};

use crate::pod::{init_containers, is_restartable_init_container};
use crate::quantity;

/// How an emptyDir is backed, from its `medium`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// The node's disk ("" or unset).
    Disk,
    /// A tmpfs.
    Memory,
}

impl Medium {
    /// `Err` names a medium berth cannot provide, in the kubelet's words.
    pub fn of(source: &EmptyDirVolumeSource) -> Result<Medium, String> {
        match source.medium.as_deref().unwrap_or("") {
            "" => Ok(Medium::Disk),
            "Memory" => Ok(Medium::Memory),
            other => Err(format!("unknown storage medium {other:?}")),
        }
    }
}

/// The tmpfs size, in bytes, of a `Memory` emptyDir of a pod with `spec` on
/// a node with `node_memory` bytes.
pub fn memory_size(spec: &PodSpec, source: &EmptyDirVolumeSource, node_memory: u64) -> u64 {
    let mut size = node_memory;
    if let Some(limit) = pod_memory_limit(spec).filter(|l| (1..=size).contains(l)) {
        size = limit;
    }
    let volume_limit = source
        .size_limit
        .as_ref()
        .and_then(|q| quantity::value(&q.0))
        .and_then(|v| u64::try_from(v).ok());
    if let Some(limit) = volume_limit.filter(|l| (1..=size).contains(l)) {
        size = limit;
    }
    size
}

/// The pod's memory limit as its cgroup would get it: only when every
/// container declares one; the regular containers and sidecars together, or
/// the largest init container if that is more.
fn pod_memory_limit(spec: &PodSpec) -> Option<u64> {
    let limit = |c: &Container| -> Option<u64> {
        let q = c.resources.as_ref()?.limits.as_ref()?.get("memory")?;
        u64::try_from(quantity::value(&q.0)?).ok()
    };
    let inits = init_containers(spec);
    let (sidecars, plain): (Vec<&Container>, Vec<&Container>) =
        inits.iter().partition(|c| is_restartable_init_container(c));
    let mut running = 0u64;
    for c in spec.containers.iter().chain(sidecars) {
        running = running.saturating_add(limit(c)?);
    }
    let mut largest_init = 0;
    for c in plain {
        largest_init = largest_init.max(limit(c)?);
    }
    Some(running.max(largest_init))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    const GI: u64 = 1 << 30;
    const MI: u64 = 1 << 20;

    fn spec(yaml: &str) -> PodSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn source(size_limit: Option<&str>) -> EmptyDirVolumeSource {
        EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: size_limit.map(|s| Quantity(s.into())),
            mode: None,
        }
    }

    #[test]
    fn the_node_the_pod_and_the_volume_each_can_lower_the_size() {
        let unlimited =
            spec("containers: [{name: a}, {name: b, resources: {limits: {memory: 64Mi}}}]");
        let limited = spec(
            "containers: [{name: a, resources: {limits: {memory: 64Mi}}}, {name: b, resources: {limits: {memory: 32Mi}}}]",
        );
        // Not every container has a limit: the node's memory.
        assert_eq!(memory_size(&unlimited, &source(None), 4 * GI), 4 * GI);
        assert_eq!(memory_size(&limited, &source(None), 4 * GI), 96 * MI);
        assert_eq!(memory_size(&limited, &source(Some("8Mi")), 4 * GI), 8 * MI);
        // A sizeLimit above what the pod may use does not raise it.
        assert_eq!(memory_size(&limited, &source(Some("1Gi")), 4 * GI), 96 * MI);
        assert_eq!(memory_size(&unlimited, &source(Some("1Gi")), 4 * GI), GI);
        assert_eq!(memory_size(&unlimited, &source(Some("0")), 4 * GI), 4 * GI);
    }

    #[test]
    fn init_containers_count_as_the_kubelet_sizes_the_pod() {
        let with_init = spec(
            "initContainers: [{name: i, resources: {limits: {memory: 200Mi}}}, {name: s, restartPolicy: Always, resources: {limits: {memory: 10Mi}}}]
containers: [{name: a, resources: {limits: {memory: 50Mi}}}]",
        );
        assert_eq!(memory_size(&with_init, &source(None), 4 * GI), 200 * MI);
    }

    #[test]
    fn mediums_are_disk_memory_or_an_error() {
        let of = |medium: Option<&str>| {
            Medium::of(&EmptyDirVolumeSource {
                medium: medium.map(str::to_owned),
                size_limit: None,
                mode: None,
            })
        };
        assert_eq!(of(None), Ok(Medium::Disk));
        assert_eq!(of(Some("")), Ok(Medium::Disk));
        assert_eq!(of(Some("Memory")), Ok(Medium::Memory));
        assert_eq!(
            of(Some("HugePages")),
            Err("unknown storage medium \"HugePages\"".into())
        );
    }
}
