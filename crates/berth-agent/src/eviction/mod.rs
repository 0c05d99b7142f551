//! Local storage isolation, as the kubelet's eviction manager enforces it
//! (`localStorageEviction` in `pkg/kubelet/eviction/eviction_manager.go`):
//! every monitoring period, each active pod's disk use is measured (`usage`)
//! and held against its limits (`limits`); a pod over one is evicted: it
//! fails with reason `Evicted` and the limit's message, a Warning event, its
//! containers stopped at once, and `kubelet_evictions{eviction_signal}`
//! counts it. Critical pods (static ones, and those of a system-critical
//! priority) are never evicted, as the kubelet's `evictPod` refuses them.

pub mod limits;
pub mod usage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::{ContainerRuntime, ImageService};
use k8s_openapi::api::core::v1::Pod;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::supervisor::Supervisor;

/// The kubelet's `evictionMonitoringPeriod`.
pub const MONITORING_PERIOD: Duration = Duration::from_secs(10);

/// `scheduling.SystemCriticalPriority`: pods at or above it are critical.
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Where the pods' files are, and how often to look.
#[derive(Debug, Clone)]
pub struct EvictionPolicy {
    pub root_dir: PathBuf,
    pub log_dir: PathBuf,
    pub period: Duration,
}

/// Every period, evicts the active pods over a local storage limit, until
/// `shutdown`.
pub async fn run<R: ContainerRuntime + ImageService>(
    supervisor: Arc<Supervisor<R>>,
    policy: EvictionPolicy,
    shutdown: CancellationToken,
) {
    let mut every = crate::periodic::Every::new(policy.period, &shutdown);
    while every.tick().await {
        // Only the pods that could be evicted are copied.
        let limited: Vec<Pod> = supervisor.store().read(|pods| {
            pods.filter(|p| is_active(p) && has_storage_limits(p))
                .cloned()
                .collect()
        });
        for pod in limited {
            let target = usage::Target::of(&pod, &policy.root_dir, &policy.log_dir);
            let used = target.measure(supervisor.runtime().as_ref()).await;
            let spec = pod.spec.as_ref().expect("stored pods have a spec");
            let Some(violation) = limits::violation(spec, &used) else {
                continue;
            };
            let meta = &pod.metadata;
            let name = format!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default()
            );
            if is_critical(&pod) {
                warn!(pod = %name, "eviction manager: cannot evict a critical pod");
                continue;
            }
            let uid = pod.metadata.uid.as_deref().unwrap_or_default();
            if supervisor.evict(uid, violation.message.clone()) {
                supervisor.store().metrics().evicted(violation.signal);
                info!(pod = %name, message = %violation.message, "eviction manager: evicting the pod");
            }
        }
    }
}

/// Not terminal and not being deleted (the kubelet's active pods).
fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Whether any limit could be broken: a container's ephemeral-storage limit
/// or a disk emptyDir's size limit. Other pods are not measured.
fn has_storage_limits(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let limited = containers
        .filter_map(|c| c.resources.as_ref()?.limits.as_ref())
        .any(|l| l.contains_key("ephemeral-storage"));
    let sized = spec
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.empty_dir.as_ref())
        .any(|e| e.size_limit.is_some() && e.medium.as_deref() != Some("Memory"));
    limited || sized
}

/// The kubelet's `IsCriticalPod`: a static pod, or a system-critical
/// priority.
fn is_critical(pod: &Pod) -> bool {
    let priority = pod.spec.as_ref().and_then(|s| s.priority);
    crate::manifests::is_static(pod) || priority.is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn only_active_pods_with_storage_limits_are_measured() {
        let limited = serde_json::json!({"containers": [
            {"name": "a", "resources": {"limits": {"ephemeral-storage": "1Mi"}}}]});
        assert!(has_storage_limits(&pod(
            serde_json::json!({"spec": limited})
        )));
        let sized = serde_json::json!({"containers": [{"name": "a"}],
            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Mi"}}]});
        assert!(has_storage_limits(&pod(serde_json::json!({"spec": sized}))));
        let memory = serde_json::json!({"containers": [{"name": "a"}],
            "volumes": [{"name": "v", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]});
        assert!(!has_storage_limits(&pod(
            serde_json::json!({"spec": memory})
        )));

        assert!(is_active(&pod(
            serde_json::json!({"status": {"phase": "Running"}})
        )));
        assert!(!is_active(&pod(
            serde_json::json!({"status": {"phase": "Failed"}})
        )));
        assert!(!is_active(&pod(serde_json::json!({
            "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}))));
    }

    #[test]
    fn static_and_system_critical_pods_are_critical() {
        assert!(is_critical(&pod(serde_json::json!({
            "metadata": {"annotations": {"kubernetes.io/config.source": "file"}}}))));
        assert!(is_critical(&pod(serde_json::json!({
            "spec": {"containers": [], "priority": 2_000_000_000}}))));
        assert!(!is_critical(&pod(serde_json::json!({
            "spec": {"containers": [], "priority": 1000}}))));
    }
}
