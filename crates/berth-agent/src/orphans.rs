//! Pods the runtime runs that no source claims (deleted while the agent was
//! down): stopped with a short grace and removed, as the kubelet's
//! housekeeping kills runtime-only pods with a 1 s grace.

use std::time::Duration;

use berth_pod::Adopted;
use berth_runtime::{ContainerRuntime, ObservedState, RuntimeErrorKind, Signal};
use tracing::{info, warn};

const ORPHAN_GRACE: Duration = Duration::from_secs(1);

pub async fn remove_orphan<R: ContainerRuntime>(runtime: &R, orphan: Adopted) {
    let mut waiters = Vec::new();
    for c in &orphan.containers {
        if matches!(c.state, ObservedState::Running { .. }) {
            if let Ok(waiter) = runtime.wait_container(&c.id).await {
                let _ = runtime.signal_container(&c.id, Signal::TERM).await;
                waiters.push((c.id.clone(), waiter));
            }
        }
    }
    for (id, waiter) in waiters {
        if tokio::time::timeout(ORPHAN_GRACE, waiter).await.is_err() {
            let _ = runtime.signal_container(&id, Signal::KILL).await;
        }
    }
    let mut forced = false;
    for c in &orphan.containers {
        let mut removed = runtime.remove_container(&c.id).await;
        if let (Err(e), Some(sandbox), false) = (&removed, &orphan.sandbox, forced) {
            if e.kind == RuntimeErrorKind::Timeout {
                // The pod's shim does not answer: force it down, then go on.
                warn!(pod = %sandbox.pod, "orphaned pod does not answer, forcing it down: {e}");
                if let Err(e) = runtime.force_stop_sandbox(sandbox).await {
                    warn!(pod = %sandbox.pod, "force orphaned pod down: {e}");
                }
                forced = true;
                removed = runtime.remove_container(&c.id).await;
            }
        }
        if let Err(e) = removed {
            warn!(container = %c.id, "remove orphan container: {e}");
        }
    }
    if let Some(sandbox) = &orphan.sandbox {
        info!(pod = %sandbox.pod, "removing orphaned pod");
        if let Err(e) = runtime.remove_sandbox(sandbox).await {
            warn!(sandbox = %sandbox.id, "remove orphan sandbox: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_runtime::fake::{Call, FakeRuntime};
    use berth_runtime::{ContainerConfig, ContainerKind, PodRef, PodTimes, SandboxConfig};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_orphan_whose_shim_does_not_answer_is_forced_down() {
        let rt = FakeRuntime::new();
        rt.add_image("busybox", Default::default());
        let pod = PodRef {
            uid: "u1".into(),
            namespace: "default".into(),
            name: "gone".into(),
        };
        let now = jiff::Timestamp::now();
        let sandbox = rt
            .create_sandbox(&SandboxConfig {
                pod: pod.clone(),
                hostname: "gone".into(),
                host_network: false,
                log_dir: "/logs".into(),
                port_mappings: vec![],
                labels: Default::default(),
                times: PodTimes {
                    created: now,
                    started: now,
                },
                security: Default::default(),
                defer_network: false,
            })
            .await
            .unwrap();
        let image = rt.image_status("busybox").await.unwrap().unwrap();
        let config = ContainerConfig {
            pod,
            name: "app".into(),
            kind: ContainerKind::Regular,
            attempt: 0,
            image,
            args: vec![],
            env: vec![],
            working_dir: String::new(),
            user: None,
            mounts: vec![],
            log_path: "/logs/app/0.log".into(),
            read_only_root: false,
            privileged: false,
            resources: Default::default(),
            annotations: Default::default(),
            stdio: Default::default(),
            security: Default::default(),
        };
        let id = rt.create_container(&sandbox, &config).await.unwrap();
        rt.start_container(&id).await.unwrap();
        let observed = rt.list().await.unwrap();
        rt.wedge(Duration::from_secs(10));
        let orphan = Adopted {
            sandbox: Some(sandbox),
            containers: observed.containers,
        };
        remove_orphan(&rt, orphan).await;
        assert!(rt.containers().is_empty());
        assert_eq!(rt.sandbox_count(), 0);
        assert!(rt
            .calls()
            .iter()
            .any(|c| matches!(c, Call::ForceStopSandbox { .. })));
    }
}
