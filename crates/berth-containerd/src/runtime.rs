//! [`ContainerRuntime`] for [`Containerd`]: each verb delegates to the module
//! that owns it.

use std::time::Duration;

use berth_runtime::{
    ContainerConfig, ContainerId, ContainerRuntime, ExecOutput, ExitWaiter, ImageInfo, Observed,
    PodNetwork, Reclaimed, Resources, RuntimeError, SandboxConfig, SandboxInfo, Signal, Started,
};

use crate::{
    container, events, exec, exec_stream, image_volume, list, reclaim, sandbox, shim, task,
    Containerd,
};

impl ContainerRuntime for Containerd {
    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        Containerd::image_status(self, image).await
    }

    async fn pull_image_with_credentials(
        &self,
        image: &str,
        progress: Option<tokio::sync::mpsc::UnboundedSender<berth_runtime::PullProgress>>,
        credentials: Option<&berth_runtime::RegistryCredentials>,
    ) -> Result<ImageInfo, RuntimeError> {
        Containerd::pull_image_with_credentials(self, image, progress, credentials).await
    }

    async fn mount_image_volume(
        &self,
        image: &ImageInfo,
        key: &str,
        target: &std::path::Path,
    ) -> Result<(), RuntimeError> {
        image_volume::mount_volume(self, image, key, target).await
    }

    async fn unmount_image_volume(
        &self,
        key: &str,
        target: &std::path::Path,
    ) -> Result<(), RuntimeError> {
        image_volume::unmount_volume(self, key, target).await
    }

    async fn create_sandbox(&self, config: &SandboxConfig) -> Result<SandboxInfo, RuntimeError> {
        sandbox::create(self, config).await
    }

    async fn stop_sandbox(&self, sandbox: &SandboxInfo) -> Result<(), RuntimeError> {
        sandbox::stop(self, sandbox).await
    }

    async fn remove_sandbox(&self, sandbox: &SandboxInfo) -> Result<(), RuntimeError> {
        sandbox::remove(self, sandbox).await
    }

    async fn attach_network(
        &self,
        sandbox: &SandboxInfo,
        config: &SandboxConfig,
    ) -> Result<PodNetwork, RuntimeError> {
        sandbox::attach_network(self, sandbox, config).await
    }

    async fn create_container(
        &self,
        sandbox: &SandboxInfo,
        config: &ContainerConfig,
    ) -> Result<ContainerId, RuntimeError> {
        container::create(self, sandbox, config).await
    }

    async fn wait_sandbox(
        &self,
        sandbox: &SandboxInfo,
    ) -> Result<Option<ExitWaiter>, RuntimeError> {
        if sandbox.pause.pid().is_none() {
            return Ok(None);
        }
        let (tx, waiter) = ExitWaiter::channel();
        let (this, id) = (self.clone(), sandbox.id.0.clone());
        tokio::spawn(async move {
            let _ = tx.send(crate::sandbox::wait_for_pause_exit(&this, &id).await);
        });
        Ok(Some(waiter))
    }

    async fn wait_container(&self, id: &ContainerId) -> Result<ExitWaiter, RuntimeError> {
        if !container::exists(self, &id.0).await? {
            return Err(RuntimeError::not_found(format!("container {id} not found")));
        }
        // Live before the container can start, so its OOM event is not missed.
        let oom_watcher = events::oom_watcher(self).await;
        let (tx, waiter) = ExitWaiter::channel();
        let this = self.clone();
        let id = id.0.clone();
        tokio::spawn(async move {
            let _ = tx.send(task::wait_for_exit(&this, &id, oom_watcher).await);
        });
        Ok(waiter)
    }

    async fn prepare_start(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        container::prepare_start(self, id).await
    }

    async fn start_container(&self, id: &ContainerId) -> Result<Started, RuntimeError> {
        container::start(self, id).await
    }

    async fn signal_container(&self, id: &ContainerId, signal: Signal) -> Result<(), RuntimeError> {
        // SIGKILL goes to every process of the container; other signals to its
        // init process, as the kubelet's stop signal is meant.
        task::kill(self, &id.0, signal.0 as u32, signal == Signal::KILL).await
    }

    async fn update_container_resources(
        &self,
        id: &ContainerId,
        resources: &Resources,
    ) -> Result<(), RuntimeError> {
        task::update(self, &id.0, resources).await
    }

    async fn container_memory_usage(&self, id: &ContainerId) -> Result<u64, RuntimeError> {
        task::memory_usage(self, &id.0).await
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        container::remove(self, &id.0).await
    }

    async fn force_stop_sandbox(&self, sandbox: &SandboxInfo) -> Result<(), RuntimeError> {
        let killed = shim::force_stop(self, &sandbox.id.0).await?;
        tracing::debug!(sandbox = %sandbox.id, killed, "forced the pod's shim down");
        Ok(())
    }

    async fn exec(
        &self,
        id: &ContainerId,
        command: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError> {
        exec::exec(self, &id.0, command, timeout).await
    }

    async fn exec_stream(
        &self,
        id: &ContainerId,
        request: &berth_runtime::ExecStreamRequest,
    ) -> Result<berth_runtime::ExecSession, RuntimeError> {
        exec_stream::exec_stream(self, &id.0, request).await
    }

    async fn attach_stdin(
        &self,
        id: &ContainerId,
    ) -> Result<berth_runtime::ExecWriter, RuntimeError> {
        crate::stdio::open_stdin(self, &id.0).await
    }

    async fn close_stdin(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        crate::stdio::close_stdin(self, &id.0).await
    }

    async fn resize_terminal(
        &self,
        id: &ContainerId,
        width: u16,
        height: u16,
    ) -> Result<(), RuntimeError> {
        crate::stdio::resize(self, &id.0, width, height).await
    }

    async fn network_namespace(
        &self,
        id: &ContainerId,
    ) -> Result<std::path::PathBuf, RuntimeError> {
        let pid = task::find(self, &id.0)
            .await?
            .map(|process| process.pid)
            .filter(|pid| *pid > 0)
            .ok_or_else(|| RuntimeError::not_found(format!("container {id} is not running")))?;
        Ok(std::path::PathBuf::from(format!("/proc/{pid}/ns/net")))
    }

    async fn list(&self) -> Result<Observed, RuntimeError> {
        list::list(self).await
    }

    async fn writable_layer_usage(&self, id: &ContainerId) -> Result<u64, RuntimeError> {
        container::writable_layer_usage(self, &id.0).await
    }

    async fn container_images(&self) -> Result<Vec<String>, RuntimeError> {
        let records = list::records(self).await?;
        Ok(records.into_iter().map(|r| r.image).collect())
    }

    async fn reclaim(&self) -> Result<Reclaimed, RuntimeError> {
        reclaim::reclaim(self).await
    }

    async fn version(&self) -> Result<berth_runtime::RuntimeVersion, RuntimeError> {
        self.version().await
    }
}
