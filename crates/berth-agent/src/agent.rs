//! Boots the agent: sources, supervisor, local API; stops it on shutdown.

use berth_runtime::ContainerRuntime;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;

/// Runs the agent until `shutdown` is cancelled. Pods keep running after it
/// returns (the kubelet's rule: an agent restart adopts them).
pub async fn run<R: ContainerRuntime>(
    config: AgentConfig,
    runtime: R,
    shutdown: CancellationToken,
) -> Result<(), crate::AgentError> {
    let _ = (config, runtime);
    shutdown.cancelled().await;
    Ok(())
}
