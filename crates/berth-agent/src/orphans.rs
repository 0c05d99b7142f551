//! Pods the runtime runs that no source claims (deleted while the agent was
//! down): stopped with a short grace and removed, as the kubelet's
//! housekeeping kills runtime-only pods with a 1 s grace.

use std::time::Duration;

use berth_pod::Adopted;
use berth_runtime::{ContainerRuntime, ObservedState, Signal};
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
    for c in &orphan.containers {
        if let Err(e) = runtime.remove_container(&c.id).await {
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
