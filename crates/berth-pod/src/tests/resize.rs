//! In-place resize: what the node allocated and applied shows in the
//! container statuses (`allocatedResources`, `resources`).

use super::*;

const SIZED: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web, generation: 1}
spec:
  containers:
  - name: app
    image: busybox
    resources:
      requests: {cpu: 100m, memory: 100Mi}
      limits: {cpu: 200m, memory: 200Mi}
  - {name: plain, image: busybox}
";

fn quantities(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

#[tokio::test(start_paused = true)]
async fn running_containers_report_their_allocated_and_applied_resources() {
    let h = Harness::new();
    let _w = h.spawn(pod(SIZED));
    let s = h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    let app = container(&s, "app");
    assert_eq!(
        app.allocated_resources,
        Some(quantities(&[("cpu", "100m"), ("memory", "100Mi")]))
    );
    let resources = app
        .resources
        .clone()
        .expect("resources of a running container");
    assert_eq!(
        resources.requests,
        Some(quantities(&[("cpu", "100m"), ("memory", "100Mi")]))
    );
    assert_eq!(
        resources.limits,
        Some(quantities(&[("cpu", "200m"), ("memory", "200Mi")]))
    );
    // A best-effort container reports empty resources, not none.
    let plain = container(&s, "plain");
    assert_eq!(plain.resources, Some(Default::default()));
    assert_eq!(plain.allocated_resources, None);
}
