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

fn resized(cpu: &str, memory: &str, policy: &str) -> Arc<Pod> {
    pod(&format!(
        "
apiVersion: v1
kind: Pod
metadata: {{name: web, generation: 2}}
spec:
  containers:
  - name: app
    image: busybox
    resizePolicy:
    - {{resourceName: memory, restartPolicy: {policy}}}
    resources:
      requests: {{cpu: {cpu}, memory: {memory}}}
      limits: {{cpu: {cpu}, memory: {memory}}}
"
    ))
}

fn sized(policy: &str) -> Arc<Pod> {
    let mut p = (*resized("100m", "100Mi", policy)).clone();
    p.metadata.generation = Some(1);
    Arc::new(p)
}

fn condition<'a>(s: &'a PodStatus, type_: &str) -> Option<&'a PodCondition> {
    s.conditions.iter().flatten().find(|c| c.type_ == type_)
}

fn limits(s: &PodStatus) -> Option<std::collections::BTreeMap<String, Quantity>> {
    container(s, "app").resources.clone()?.limits
}

fn messages(h: &Harness, reason: &str) -> Vec<String> {
    h.sink
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.reason == reason)
        .map(|e| e.message.clone())
        .collect()
}

fn updates(h: &Harness) -> Vec<Resources> {
    h.rt.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::UpdateResources { resources, .. } => Some(resources),
            _ => None,
        })
        .collect()
}

use berth_runtime::Resources;
use k8s_openapi::api::core::v1::PodCondition;

#[tokio::test(start_paused = true)]
async fn a_resize_is_applied_to_the_running_container_without_a_restart() {
    let h = Harness::new();
    let w = h.spawn(sized("NotRequired"));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;

    w.update(resized("200m", "300Mi", "NotRequired"));
    let s = h
        .sink
        .wait_for("the new limits applied", |s| {
            limits(s) == Some(quantities(&[("cpu", "200m"), ("memory", "300Mi")]))
        })
        .await;
    assert_eq!(
        updates(&h),
        vec![Resources {
            memory_limit_bytes: Some(300 << 20),
            cpu_shares: Some(204),
            cpu_quota: Some(20_000),
            cpu_period: Some(100_000),
        }],
        "one update of the running container's cgroup"
    );
    assert_eq!(h.starts("app"), 1, "no restart");
    assert_eq!(container(&s, "app").restart_count, 0);
    // No status claims generation 2 before it carries the resize.
    let statuses = h.sink.statuses.lock().unwrap().clone();
    let (old, new): (Vec<_>, Vec<_>) = statuses
        .iter()
        .filter(|s| phase(s) == "Running")
        .partition(|s| s.observed_generation == Some(1));
    assert!(!old.is_empty() && !new.is_empty());
    for status in new {
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(limits(status), limits(&s), "{status:#?}");
    }
    assert_eq!(
        container(&s, "app").allocated_resources,
        Some(quantities(&[("cpu", "200m"), ("memory", "300Mi")]))
    );
    assert!(condition(&s, "PodResizePending").is_none());
    assert!(condition(&s, "PodResizeInProgress").is_none());
    assert_eq!(
        messages(&h, reasons::RESIZE_STARTED),
        vec![
            "Pod resize started: {\"containers\":[{\"name\":\"app\",\"resources\":{\"limits\":\
              {\"cpu\":\"200m\",\"memory\":\"300Mi\"},\"requests\":{\"cpu\":\"200m\",\"memory\":\
              \"300Mi\"}}}],\"generation\":2}"
        ]
    );
    assert_eq!(messages(&h, reasons::RESIZE_COMPLETED).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_resize_restarts_the_container_when_its_policy_says_so() {
    let h = Harness::new();
    let w = h.spawn(sized("RestartContainer"));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;

    w.update(resized("100m", "300Mi", "RestartContainer"));
    let s = h
        .sink
        .wait_for("app restarted with its new memory", |s| {
            container(s, "app").restart_count == 1
                && container(s, "app").ready
                && limits(s) == Some(quantities(&[("cpu", "100m"), ("memory", "300Mi")]))
        })
        .await;
    assert!(updates(&h).is_empty(), "no update in place");
    assert_eq!(
        h.rt.resources("app").and_then(|r| r.memory_limit_bytes),
        Some(300 << 20),
        "the new instance was created with the new allocation"
    );
    assert_eq!(
        messages(&h, reasons::KILLING),
        vec!["Container app resize requires restart"]
    );
    assert!(condition(&s, "PodResizeInProgress").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_resize_the_node_has_no_room_for_is_deferred_until_reverted() {
    let mut h = Harness::new();
    Arc::get_mut(&mut h.config).unwrap().node_allocatable =
        berth_api::resource_field::NodeAllocatable {
            cpu: Some(Quantity("1".into())),
            memory: Some(Quantity("1Gi".into())),
            ephemeral_storage: None,
        };
    let w = h.spawn(sized("NotRequired"));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;

    w.update(resized("2", "100Mi", "NotRequired"));
    let s = h
        .sink
        .wait_for("the resize pending", |s| {
            condition(s, "PodResizePending").is_some()
        })
        .await;
    let pending = condition(&s, "PodResizePending").unwrap();
    assert_eq!(pending.reason.as_deref(), Some("Deferred"));
    assert_eq!(
        pending.message.as_deref(),
        Some("Node didn't have enough resource: cpu, requested: 2000, used: 0, capacity: 1000")
    );
    assert_eq!(pending.observed_generation, Some(2));
    assert_eq!(
        limits(&s),
        Some(quantities(&[("cpu", "100m"), ("memory", "100Mi")])),
        "the allocation stands"
    );
    assert!(updates(&h).is_empty());
    assert_eq!(messages(&h, reasons::RESIZE_DEFERRED).len(), 1);

    let mut back = (*sized("NotRequired")).clone();
    back.metadata.generation = Some(3);
    w.update(Arc::new(back));
    h.sink
        .wait_for("the pending resize cleared", |s| {
            condition(s, "PodResizePending").is_none()
        })
        .await;
    assert!(updates(&h).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_memory_limit_below_usage_is_an_error_until_reverted() {
    let h = Harness::new();
    let w = h.spawn(sized("NotRequired"));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    h.rt.set_memory_usage("app", 60 << 20);

    w.update(resized("100m", "50Mi", "NotRequired"));
    let s = h
        .sink
        .wait_for("the resize error", |s| {
            condition(s, "PodResizeInProgress")
                .is_some_and(|c| c.reason.as_deref() == Some("Error"))
        })
        .await;
    assert_eq!(
        condition(&s, "PodResizeInProgress")
            .unwrap()
            .message
            .as_deref(),
        Some(
            "cannot decrease memory limits: attempting to set container \"app\" memory limit \
             (52428800) below current usage (62914560)"
        )
    );
    assert!(condition(&s, "PodResizePending").is_none());
    assert_eq!(
        limits(&s),
        Some(quantities(&[("cpu", "100m"), ("memory", "100Mi")])),
        "the cgroup keeps its limit"
    );
    assert!(updates(&h).is_empty());
    assert_eq!(messages(&h, reasons::RESIZE_ERROR).len(), 1);

    let mut back = (*sized("NotRequired")).clone();
    back.metadata.generation = Some(3);
    w.update(Arc::new(back));
    let s = h
        .sink
        .wait_for("the resize over", |s| {
            condition(s, "PodResizeInProgress").is_none()
        })
        .await;
    assert_eq!(
        limits(&s),
        Some(quantities(&[("cpu", "100m"), ("memory", "100Mi")]))
    );
    assert_eq!(messages(&h, reasons::RESIZE_COMPLETED).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pod_level_resize_is_infeasible() {
    let h = Harness::new();
    let w = h.spawn(sized("NotRequired"));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    let mut p = (*resized("100m", "100Mi", "NotRequired")).clone();
    p.spec.as_mut().unwrap().resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
        limits: Some(quantities(&[("cpu", "1")])),
        ..Default::default()
    });
    w.update(Arc::new(p));
    let s = h
        .sink
        .wait_for("the resize infeasible", |s| {
            condition(s, "PodResizePending").is_some()
        })
        .await;
    let pending = condition(&s, "PodResizePending").unwrap();
    assert_eq!(pending.reason.as_deref(), Some("Infeasible"));
    assert_eq!(
        pending.message.as_deref(),
        Some("InPlacePodLevelResourcesVerticalScaling is disabled")
    );
    assert_eq!(messages(&h, reasons::RESIZE_INFEASIBLE).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_done_init_containers_resize_changes_its_allocation_only() {
    let h = Harness::new();
    let spec = |cpu: &str, generation: u32| {
        pod(&format!(
            "
apiVersion: v1
kind: Pod
metadata: {{name: web, generation: {generation}}}
spec:
  initContainers:
  - {{name: init, image: busybox, resources: {{requests: {{cpu: {cpu}}}}}}}
  containers:
  - {{name: app, image: busybox}}
"
        ))
    };
    h.rt.script("init", Script::exits(0, Duration::from_millis(10)));
    let w = h.spawn(spec("100m", 1));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    w.update(spec("200m", 2));
    let s = h
        .sink
        .wait_for("the init container's new allocation", |s| {
            container(s, "init").allocated_resources == Some(quantities(&[("cpu", "200m")]))
        })
        .await;
    assert_eq!(
        container(&s, "init")
            .resources
            .clone()
            .and_then(|r| r.requests),
        Some(quantities(&[("cpu", "200m")]))
    );
    assert!(updates(&h).is_empty(), "nothing runs to update");
    assert_eq!(h.starts("init"), 1, "not run again");
    assert!(condition(&s, "PodResizeInProgress").is_none());
}

#[tokio::test(start_paused = true)]
async fn an_adopted_pod_keeps_its_allocation_and_what_its_cgroup_carries() {
    let mut h = Harness::new();
    Arc::get_mut(&mut h.config).unwrap().node_allocatable =
        berth_api::resource_field::NodeAllocatable {
            cpu: Some(Quantity("1".into())),
            memory: Some(Quantity("1Gi".into())),
            ephemeral_storage: None,
        };
    let w = h.spawn(sized("NotRequired"));
    h.sink.wait_for("Running", |s| phase(s) == "Running").await;
    // An applied resize, then one the node has no room for.
    w.update(resized("200m", "100Mi", "NotRequired"));
    h.sink
        .wait_for("the first resize applied", |s| {
            limits(s) == Some(quantities(&[("cpu", "200m"), ("memory", "100Mi")]))
        })
        .await;
    let mut deferred = (*resized("2", "100Mi", "NotRequired")).clone();
    deferred.metadata.generation = Some(3);
    w.update(Arc::new(deferred.clone()));
    h.sink
        .wait_for("the second deferred", |s| {
            condition(s, "PodResizePending").is_some()
        })
        .await;
    w.detach().await;

    // The agent restarts with the newest spec, the deferred one.
    let (sink, _w) = h.adopt(Arc::new(deferred), None).await;
    let s = sink
        .wait_for("the adopted pod's status", |s| {
            phase(s) == "Running" && condition(s, "PodResizePending").is_some()
        })
        .await;
    assert_eq!(
        limits(&s),
        Some(quantities(&[("cpu", "200m"), ("memory", "100Mi")])),
        "the applied resize, not the pending one"
    );
    assert_eq!(
        container(&s, "app").allocated_resources,
        Some(quantities(&[("cpu", "200m"), ("memory", "100Mi")]))
    );
    assert_eq!(h.starts("app"), 1, "nothing restarted");
}
