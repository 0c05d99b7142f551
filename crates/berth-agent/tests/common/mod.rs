//! What the agent's integration tests share: the in-memory runtime with a
//! busybox image, a pod using it, and a supervisor over that runtime, with
//! its finished pods handed back as the agent does.

use std::path::Path;
use std::sync::Arc;

use berth_agent::store::PodStore;
use berth_agent::Supervisor;
use berth_pod::{BackoffPolicy, WorkerConfig};
use berth_runtime::fake::FakeRuntime;
use berth_runtime::ImageConfig;

/// A pod with one container on `busybox`, quick to stop.
pub const WEB: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: busybox}
";

/// The in-memory runtime holding `busybox` (its command `sh`).
pub fn runtime() -> FakeRuntime {
    let rt = FakeRuntime::new();
    rt.add_image(
        "busybox",
        ImageConfig {
            cmd: vec!["sh".into()],
            ..Default::default()
        },
    );
    rt
}

/// A supervisor driving `rt`, its state under `dir`. Call inside a runtime.
pub fn supervisor(rt: &FakeRuntime, dir: &Path) -> Arc<Supervisor<FakeRuntime>> {
    let (finished_tx, mut finished_rx) = tokio::sync::mpsc::unbounded_channel();
    let supervisor = Arc::new(Supervisor::new(
        Arc::new(rt.clone()),
        Arc::new(PodStore::new(finished_tx)),
        Arc::new(WorkerConfig {
            root_dir: dir.join("root"),
            log_dir: dir.join("logs"),
            node_name: "node".into(),
            host_ip: "192.0.2.1".into(),
            backoff: BackoffPolicy::default(),
            image_pull_backoff: BackoffPolicy::default(),
            image_pulls: None,
            seccomp_default: false,
            cluster_data: None,
            cluster_dns: Default::default(),
            node_allocatable: Default::default(),
            allocations: Default::default(),
        }),
        dir.join("root/api-pods"),
        Default::default(),
    ));
    let s = supervisor.clone();
    tokio::spawn(async move {
        while let Some(uid) = finished_rx.recv().await {
            s.on_finished(&uid);
        }
    });
    supervisor
}
