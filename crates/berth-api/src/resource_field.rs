//! `resourceFieldRef`: a container's resource requests and limits as the
//! downward API reports them (kubelet `containerResourceRuntimeValue` and
//! `defaultPodLimitsForDownwardAPI`, apimachinery-side
//! `pkg/api/v1/resource` `ExtractContainerResourceValue`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;

/// The node's allocatable resources: what a limit reads as when neither the
/// container nor the pod sets it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeAllocatable {
    pub cpu: Option<Quantity>,
    pub memory: Option<Quantity>,
    pub ephemeral_storage: Option<Quantity>,
}

/// The three resources whose unset (or zero) limit defaults
/// (`MergeContainerResourceLimits`); hugepages are never overcommitted.
const DEFAULTED: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// The pod-level limits that stand in for the node's (`PodLevelResources`,
/// on by default since 1.34: cpu and memory only).
const POD_LEVEL: [&str; 2] = ["cpu", "memory"];

impl NodeAllocatable {
    fn get(&self, resource: &str) -> Option<&Quantity> {
        match resource {
            "cpu" => self.cpu.as_ref(),
            "memory" => self.memory.as_ref(),
            "ephemeral-storage" => self.ephemeral_storage.as_ref(),
            _ => None,
        }
    }
}

/// An env var's `resourceFieldRef` for `container` of `pod`: limits no
/// container sets read as the pod's limits, else the node's allocatable.
/// With `containerName`, the named container is read instead; as in the
/// kubelet only the pod's regular containers get the defaults then.
pub fn env_value(
    selector: &ResourceFieldSelector,
    pod: &Pod,
    container: &Container,
    allocatable: &NodeAllocatable,
) -> Result<String, String> {
    let defaults = env_defaults(pod, allocatable);
    let named = selector.container_name.as_deref().filter(|n| !n.is_empty());
    let Some(name) = named else {
        return container_value(selector, &limits_with(container, &defaults), container);
    };
    let spec = pod.spec.as_ref();
    let mut regular = spec.into_iter().flat_map(|s| &s.containers);
    if let Some(found) = regular.find(|c| c.name == name) {
        return container_value(selector, &limits_with(found, &defaults), found);
    }
    let mut init = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten());
    match init.find(|c| c.name == name) {
        Some(found) => container_value(selector, &limits_of(found), found),
        None => Err(format!("container {name} not found")),
    }
}

/// A downwardAPI volume item's `resourceFieldRef`
/// (`ExtractResourceValueByContainerNameAndNodeAllocatable`): the named
/// container, regular or init, with the node's allocatable for its unset
/// limits.
pub fn volume_value(
    selector: &ResourceFieldSelector,
    pod: &Pod,
    allocatable: &NodeAllocatable,
) -> Result<String, String> {
    let name = selector.container_name.as_deref().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let mut containers = spec.into_iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    });
    let found = containers
        .find(|c| c.name == name)
        .ok_or_else(|| format!("container {name} not found"))?;
    let defaults = DEFAULTED
        .iter()
        .filter_map(|r| Some((r.to_string(), allocatable.get(r)?.clone())))
        .collect();
    container_value(selector, &limits_with(found, &defaults), found)
}

/// The node's allocatable, with the pod's own limits in its place where
/// the pod sets them.
fn env_defaults(pod: &Pod, allocatable: &NodeAllocatable) -> BTreeMap<String, Quantity> {
    let pod_limits = pod
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.limits.as_ref());
    DEFAULTED
        .iter()
        .filter_map(|resource| {
            let node = allocatable.get(resource)?;
            let pod_limit = pod_limits
                .filter(|_| POD_LEVEL.contains(resource))
                .and_then(|l| l.get(*resource))
                .filter(|q| !is_zero(q));
            Some((resource.to_string(), pod_limit.unwrap_or(node).clone()))
        })
        .collect()
}

fn limits_of(container: &Container) -> BTreeMap<String, Quantity> {
    container
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default()
}

/// The container's limits, with `defaults` for the unset or zero ones.
fn limits_with(
    container: &Container,
    defaults: &BTreeMap<String, Quantity>,
) -> BTreeMap<String, Quantity> {
    let mut limits = limits_of(container);
    for (resource, default) in defaults {
        if limits.get(resource).is_none_or(is_zero) {
            limits.insert(resource.clone(), default.clone());
        }
    }
    limits
}

fn is_zero(q: &Quantity) -> bool {
    quantity::parse(&q.0).is_ok_and(|q| q.milli_value() == 0)
}

/// `ExtractContainerResourceValue` over the given limits and the
/// container's requests.
fn container_value(
    selector: &ResourceFieldSelector,
    limits: &BTreeMap<String, Quantity>,
    container: &Container,
) -> Result<String, String> {
    let requests = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    let resource = selector.resource.as_str();
    let (list, name) = if let Some(name) = resource.strip_prefix("limits.") {
        (limits, name)
    } else if let Some(name) = resource.strip_prefix("requests.") {
        (&requests, name)
    } else {
        return Err(unsupported(resource));
    };
    let cpu = name == "cpu";
    if !(cpu || name == "memory" || name == "ephemeral-storage" || name.starts_with("hugepages-")) {
        return Err(unsupported(resource));
    }
    let divisor = divisor(selector)?;
    let amount = match list.get(name) {
        Some(q) => quantity::parse(&q.0).map_err(|e| format!("{resource} {:?}: {e}", q.0))?,
        None => quantity::parse("0").expect("zero parses"),
    };
    // The kubelet divides in float64 and rounds up.
    let value = if cpu {
        (amount.milli_value() as f64 / divisor.milli_value() as f64).ceil()
    } else {
        (amount.value() as f64 / divisor.value() as f64).ceil()
    };
    Ok((value as i64).to_string())
}

fn unsupported(resource: &str) -> String {
    format!("unsupported container resource : {resource}")
}

/// The selector's divisor; unset or zero means 1.
fn divisor(selector: &ResourceFieldSelector) -> Result<quantity::Quantity, String> {
    let one = quantity::parse("1").expect("one parses");
    let Some(text) = selector.divisor.as_ref() else {
        return Ok(one);
    };
    let divisor = quantity::parse(&text.0).map_err(|e| format!("divisor {:?}: {e}", text.0))?;
    Ok(if divisor.milli_value() == 0 {
        one
    } else {
        divisor
    })
}

#[cfg(test)]
mod tests;
