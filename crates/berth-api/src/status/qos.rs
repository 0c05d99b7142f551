//! The pod's QoS class (the kubelet's GetPodQOS,
//! pkg/apis/core/v1/helper/qos): cpu and memory requests and limits summed
//! over all containers, quantities compared by value.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;

use crate::quantity::milli_value;

const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

/// `Guaranteed` when every container limits cpu and memory and the summed
/// requests equal the summed limits; `BestEffort` when nothing is requested
/// or limited; `Burstable` otherwise. Requests default to limits, as the API
/// server defaults them; zero quantities do not count.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    for c in containers {
        let r = c.resources.as_ref();
        let container_limits = r.and_then(|r| r.limits.as_ref());
        let container_requests = r.and_then(|r| r.requests.as_ref());
        for resource in QOS_RESOURCES {
            let limit = container_limits.and_then(|l| l.get(resource));
            let request = container_requests.and_then(|q| q.get(resource)).or(limit);
            let value = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
                q.and_then(|q| milli_value(&q.0)).filter(|v| *v != 0)
            };
            if let Some(v) = value(request) {
                *requests.entry(resource).or_default() += v;
            }
            if let Some(v) = value(limit) {
                *limits.entry(resource).or_default() += v;
            }
            if limit.is_none() {
                guaranteed = false;
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        "BestEffort"
    } else if guaranteed && requests == limits {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qos(containers: &str) -> &'static str {
        let pods = crate::manifest::parse_pods(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n{containers}"
        ))
        .unwrap();
        qos_class(pods[0].spec.as_ref().unwrap())
    }

    #[test]
    fn classes() {
        assert_eq!(qos("  - {name: a, image: i}\n"), "BestEffort");
        let limits = "resources: {limits: {cpu: 500m, memory: 64Mi}}";
        assert_eq!(
            qos(&format!("  - {{name: a, image: i, {limits}}}\n")),
            "Guaranteed"
        );
        assert_eq!(
            qos(&format!(
                "  - {{name: a, image: i, {limits}}}\n  - {{name: b, image: i}}\n"
            )),
            "Burstable",
            "a container without limits"
        );
        assert_eq!(
            qos("  - {name: a, image: i, resources: {requests: {cpu: 100m}}}\n"),
            "Burstable"
        );
        // Compared by value, not by spelling.
        assert_eq!(
            qos("  - {name: a, image: i, resources: {limits: {cpu: \"1\", memory: 1Gi}, requests: {cpu: 1000m, memory: 1024Mi}}}\n"),
            "Guaranteed"
        );
    }
}
