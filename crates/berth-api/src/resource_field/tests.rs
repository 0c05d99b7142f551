use k8s_openapi::api::core::v1::ResourceRequirements;

use super::*;
use crate::testutil::{container, pod_with};

fn q(text: &str) -> Quantity {
    Quantity(text.into())
}

fn list(items: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
    Some(items.iter().map(|(k, v)| (k.to_string(), q(v))).collect())
}

fn sized(name: &str, limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
    Container {
        resources: Some(ResourceRequirements {
            limits: list(limits),
            requests: list(requests),
            ..Default::default()
        }),
        ..container(name, "busybox")
    }
}

fn node() -> NodeAllocatable {
    NodeAllocatable {
        cpu: Some(q("2")),
        memory: Some(q("1913600Ki")),
        ephemeral_storage: Some(q("9000000000")),
    }
}

fn field(resource: &str, divisor: Option<&str>, container: Option<&str>) -> ResourceFieldSelector {
    ResourceFieldSelector {
        resource: resource.into(),
        divisor: divisor.map(q),
        container_name: container.map(Into::into),
    }
}

#[test]
fn limits_and_requests_round_up_by_the_divisor() {
    let app = sized(
        "app",
        &[("cpu", "250m"), ("memory", "64Mi")],
        &[
            ("cpu", "100m"),
            ("memory", "32Mi"),
            ("ephemeral-storage", "1G"),
        ],
    );
    let pod = pod_with("p", vec![], vec![app.clone()]);
    let value = |resource, divisor| env_value(&field(resource, divisor, None), &pod, &app, &node());
    assert_eq!(
        value("limits.cpu", None).unwrap(),
        "1",
        "250m rounds up to one core"
    );
    assert_eq!(value("limits.cpu", Some("1m")).unwrap(), "250");
    assert_eq!(value("requests.cpu", Some("1m")).unwrap(), "100");
    assert_eq!(value("limits.memory", None).unwrap(), "67108864");
    assert_eq!(value("limits.memory", Some("1Mi")).unwrap(), "64");
    assert_eq!(
        value("requests.memory", Some("1M")).unwrap(),
        "34",
        "33.55 MB rounds up"
    );
    assert_eq!(
        value("requests.ephemeral-storage", Some("1Gi")).unwrap(),
        "1"
    );
    assert_eq!(
        value("limits.cpu", Some("0")).unwrap(),
        "1",
        "a zero divisor is 1"
    );
    assert_eq!(value("requests.hugepages-2Mi", None).unwrap(), "0");
}

#[test]
fn unset_limits_read_as_the_pod_limits_then_the_node_allocatable() {
    let app = sized("app", &[("cpu", "0")], &[]);
    let pod = pod_with("p", vec![], vec![app.clone()]);
    let value = |pod: &Pod, resource, divisor| {
        env_value(&field(resource, divisor, None), pod, &app, &node()).unwrap()
    };
    assert_eq!(
        value(&pod, "limits.cpu", Some("1m")),
        "2000",
        "a zero limit is unset"
    );
    assert_eq!(value(&pod, "limits.memory", Some("1Ki")), "1913600");
    assert_eq!(value(&pod, "limits.ephemeral-storage", None), "9000000000");
    assert_eq!(
        value(&pod, "requests.memory", None),
        "0",
        "requests never default"
    );

    let mut pod_level = pod.clone();
    pod_level.spec.as_mut().unwrap().resources = Some(ResourceRequirements {
        limits: list(&[("memory", "1Gi"), ("ephemeral-storage", "5G")]),
        ..Default::default()
    });
    assert_eq!(value(&pod_level, "limits.memory", Some("1Mi")), "1024");
    assert_eq!(
        value(&pod_level, "limits.ephemeral-storage", None),
        "9000000000",
        "ephemeral storage is no pod-level resource"
    );
}

#[test]
fn container_name_reads_another_container() {
    let app = sized("app", &[("memory", "64Mi")], &[]);
    let side = sized("side", &[], &[("cpu", "300m")]);
    let init = sized("init", &[], &[]);
    let pod = pod_with("p", vec![init], vec![app.clone(), side]);
    let value = |resource, name| env_value(&field(resource, None, Some(name)), &pod, &app, &node());
    assert_eq!(value("requests.cpu", "side").unwrap(), "1");
    assert_eq!(
        value("limits.cpu", "side").unwrap(),
        "2",
        "defaulted to the node's"
    );
    // The kubelet defaults only the regular containers of the pod.
    assert_eq!(value("limits.cpu", "init").unwrap(), "0");
    assert_eq!(
        value("limits.cpu", "nope").unwrap_err(),
        "container nope not found"
    );
}

#[test]
fn volume_items_default_the_named_container_to_the_node() {
    let init = sized("init", &[], &[]);
    let app = sized("app", &[("cpu", "500m")], &[]);
    let mut pod = pod_with("p", vec![init], vec![app]);
    pod.spec.as_mut().unwrap().resources = Some(ResourceRequirements {
        limits: list(&[("cpu", "1")]),
        ..Default::default()
    });
    let value = |resource, divisor, name| {
        volume_value(&field(resource, divisor, Some(name)), &pod, &node())
    };
    assert_eq!(value("limits.cpu", Some("1m"), "app").unwrap(), "500");
    assert_eq!(value("limits.cpu", Some("1m"), "init").unwrap(), "2000");
    assert_eq!(
        value("limits.cpu", None, "x").unwrap_err(),
        "container x not found"
    );
}

#[test]
fn bad_selectors_are_errors() {
    let app = container("app", "busybox");
    let pod = pod_with("p", vec![], vec![app.clone()]);
    let err = |resource, divisor| {
        env_value(&field(resource, divisor, None), &pod, &app, &node()).unwrap_err()
    };
    assert_eq!(
        err("limits.gpu", None),
        "unsupported container resource : limits.gpu"
    );
    assert_eq!(err("cpu", None), "unsupported container resource : cpu");
    assert!(err("limits.cpu", Some("lots")).starts_with("divisor \"lots\": "));
}
