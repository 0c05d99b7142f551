//! The pod's sandbox: what the worker knows of it, its creation, and the
//! replacement of one found dead.
//!
//! The pod network (CNI ADD) is set up in a task of its own while the first
//! container is created and its task made: only the container's start (and
//! a container whose environment reads the pod IP) waits for it.

use std::sync::Arc;

use berth_runtime::{
    ContainerId, ContainerRuntime, PodNetwork, PodTimes, RuntimeError, SandboxConfig, SandboxInfo,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::warn;

use crate::reasons;
use crate::sink::{EventType, PodSink};
use crate::timeline::TimelineStep;
use crate::worker::{Worker, RETRY_AFTER};

/// The pod's sandbox as the worker knows it.
pub(crate) enum Sandbox {
    /// Not created yet (or its creation failed).
    Absent,
    Ready(SandboxInfo),
    /// Found dead (its pause process exited, or at adoption its namespace
    /// pins were gone), with the containers it held: removed before the
    /// pod gets a new one.
    Dead {
        sandbox: SandboxInfo,
        containers: Vec<ContainerId>,
    },
}

impl Sandbox {
    /// The sandbox the pod runs in.
    pub(crate) fn ready(&self) -> Option<&SandboxInfo> {
        match self {
            Self::Ready(sandbox) => Some(sandbox),
            _ => None,
        }
    }

    /// The sandbox to remove when the pod goes, live or dead.
    pub(crate) fn info(&self) -> Option<&SandboxInfo> {
        match self {
            Self::Absent => None,
            Self::Ready(sandbox) | Self::Dead { sandbox, .. } => Some(sandbox),
        }
    }
}

/// The pod network of a new sandbox, being set up.
pub(crate) struct PendingNetwork(JoinHandle<Result<PodNetwork, RuntimeError>>);

impl<R: ContainerRuntime, S: PodSink> Worker<R, S> {
    /// The sandbox died (its pause process or its pins are gone): as the
    /// kubelet does,
    /// kill it and what ran in it; the pod starts again in a new one.
    pub(crate) async fn remove_dead_sandbox(&mut self) {
        let Sandbox::Dead {
            sandbox,
            containers,
        } = std::mem::replace(&mut self.sandbox, Sandbox::Absent)
        else {
            return;
        };
        self.event(
            EventType::Normal,
            reasons::SANDBOX_CHANGED,
            None,
            "Pod sandbox changed, it will be killed and re-created.".into(),
        );
        for id in &containers {
            self.remove_container(id).await;
        }
        if let Err(e) = self.rt.remove_sandbox(&sandbox).await {
            warn!(pod = %self.pod_ref, "remove the dead sandbox: {e}");
        }
    }

    /// Arms the waiter for the exit of the sandbox's pause process, if it
    /// has one; the exit comes to [`Self::on_exit`] as a container's would.
    pub(crate) async fn watch_pause(&self) {
        let Some(sandbox) = self.sandbox.ready() else {
            return;
        };
        match self.rt.wait_sandbox(sandbox).await {
            Ok(Some(waiter)) => self.forward_exit(ContainerId(sandbox.id.0.clone()), waiter),
            Ok(None) => {}
            Err(e) => warn!(pod = %self.pod_ref, "wait for the pause process: {e}"),
        }
    }

    /// The pause process, PID 1 of the pod's process namespace, exited: the
    /// kernel ended every process of the pod with it, and the sandbox is
    /// dead. As the kubelet's `podSandboxChanged`, the next pass replaces it
    /// (or, for a pod that must not restart, lets it end).
    pub(crate) fn on_pause_exit(&mut self, note: crate::worker::ExitNote) {
        let exit = match note.result {
            Ok(exit) => exit,
            Err(e) => {
                tracing::debug!(pod = %self.pod_ref, "pause waiter failed, re-arming: {e}");
                self.rearm_waiter(note.id);
                return;
            }
        };
        if matches!(self.stage, crate::stage::Stage::Terminating { .. }) {
            // The pod's own teardown is ending it.
            return;
        }
        let Sandbox::Ready(sandbox) = std::mem::replace(&mut self.sandbox, Sandbox::Absent) else {
            return;
        };
        warn!(pod = %self.pod_ref, sandbox = %sandbox.id, code = exit.exit_code, "the pod's pause process exited: its sandbox is dead");
        let containers = self
            .records
            .iter()
            .flat_map(|r| r.current.iter().chain(&r.previous))
            .map(|instance| instance.id.clone())
            .collect();
        self.sandbox = Sandbox::Dead {
            sandbox,
            containers,
        };
    }

    /// Creates the pod's sandbox and writes its /etc files, and starts
    /// setting up its network; false (with a FailedCreatePodSandBox event
    /// and a retry) when it could not.
    pub(crate) async fn create_sandbox(&mut self) -> bool {
        let security = match crate::security::sandbox(&self.pod) {
            Ok(security) => security,
            Err(e) => {
                self.sandbox_failed(&e);
                return false;
            }
        };
        let spec = self.pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        let hostname = match self.kernel_hostname(&spec) {
            Ok(hostname) => hostname,
            Err(e) => {
                self.sandbox_failed(&e);
                return false;
            }
        };
        let config = SandboxConfig {
            pod: self.pod_ref.clone(),
            hostname,
            host_network,
            log_dir: self.dirs.logs.clone(),
            port_mappings: port_mappings(&spec),
            labels: self.pod.metadata.labels.clone().unwrap_or_default(),
            times: PodTimes {
                created: self
                    .pod
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or(self.start_time, |t| t.0),
                started: self.start_time,
            },
            security,
            defer_network: !host_network,
        };
        self.step(None, TimelineStep::SandboxCreating, String::new());
        match self.rt.create_sandbox(&config).await {
            Ok(sandbox) => {
                let id = sandbox.id.to_string();
                if let Some(at) = sandbox.network_ready_at {
                    self.network_ready(at, &sandbox.ips);
                }
                let hostname = config.hostname.clone();
                if config.defer_network {
                    let (rt, created) = (Arc::clone(&self.rt), sandbox.clone());
                    self.network = Some(PendingNetwork(tokio::spawn(async move {
                        rt.attach_network(&created, &config).await
                    })));
                }
                self.sandbox = Sandbox::Ready(sandbox);
                self.watch_pause().await;
                self.write_etc_files(&hostname);
                self.step(None, TimelineStep::SandboxCreated, id);
                true
            }
            Err(e) => {
                self.sandbox_failed(&e.to_string());
                false
            }
        }
    }

    /// Waits for the sandbox's network if it is being set up, and writes the
    /// pod IPs into its `/etc/hosts`. False when it could not be set up:
    /// then `made` (a container created in the sandbox meanwhile) and the
    /// sandbox are removed, and the pod is retried with a new one
    /// (FailedCreatePodSandBox), as when its create fails.
    pub(crate) async fn settle_network(&mut self, made: Option<&ContainerId>) -> bool {
        let Some(PendingNetwork(setup)) = self.network.take() else {
            return true;
        };
        let result = setup
            .await
            .unwrap_or_else(|e| Err(RuntimeError::other(format!("pod network setup: {e}"))));
        match result {
            Ok(network) => {
                self.network_ready(network.ready_at, &network.ips);
                if let Sandbox::Ready(sandbox) = &mut self.sandbox {
                    sandbox.ips = network.ips;
                    sandbox.network_ready_at = Some(network.ready_at);
                }
                // Only a pod on its own network defers it.
                let written = self.dirs.write_hosts(
                    &self.pod_hostname(),
                    &self.pod_ips(),
                    false,
                    self.host_aliases(),
                );
                if let Err(e) = written {
                    warn!(pod = %self.pod_ref, "write /etc/hosts: {e}");
                }
                true
            }
            Err(e) => {
                self.sandbox_failed(&e.to_string());
                if let Some(id) = made {
                    self.remove_container(id).await;
                }
                if let Some(sandbox) = self.sandbox.info().cloned() {
                    self.sandbox = Sandbox::Absent;
                    if let Err(e) = self.rt.remove_sandbox(&sandbox).await {
                        warn!(pod = %self.pod_ref, "remove a sandbox without its network: {e}");
                    }
                }
                false
            }
        }
    }

    fn network_ready(&self, at: jiff::Timestamp, ips: &[std::net::IpAddr]) {
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        self.report
            .step_at(at, None, TimelineStep::NetworkReady, ips.join(","));
    }

    /// The pod's `/etc/hosts` (with the pod IPs known so far: a deferred
    /// network rewrites it), `hostname` and `resolv.conf`. A pod on a
    /// cluster node without cluster DNS is warned of it.
    fn write_etc_files(&mut self, kernel_hostname: &str) {
        let host_network = self.pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        let name = self.pod_hostname();
        let ips = self.pod_ips();
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let (resolv, warning) = crate::dns::resolv_conf(&self.pod, &host, &self.cfg.cluster_dns);
        // Standalone, there is no cluster DNS to miss: only a
        // cluster node without one warns, as the kubelet does.
        if let Some(message) = warning.filter(|_| self.cfg.cluster_data.is_some()) {
            let message = format!("pod: \"{}\". {message}", self.pod_ref);
            self.event(
                EventType::Warning,
                reasons::MISSING_CLUSTER_DNS,
                None,
                message,
            );
        }
        if let Err(e) = self.dirs.write_etc_files(
            &name,
            kernel_hostname,
            &ips,
            host_network,
            self.host_aliases(),
            &resolv,
        ) {
            warn!(pod = %self.pod_ref, "write /etc files: {e}");
        }
    }

    /// The pod's `hostAliases`, for its `/etc/hosts`.
    fn host_aliases(&self) -> &[k8s_openapi::api::core::v1::HostAlias] {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.host_aliases.as_deref())
            .unwrap_or_default()
    }

    /// The host name the pod's UTS namespace gets: the node's on its
    /// network, else the pod's (an error when its FQDN is too long).
    fn kernel_hostname(
        &self,
        spec: &k8s_openapi::api::core::v1::PodSpec,
    ) -> Result<String, String> {
        if spec.host_network.unwrap_or(false) {
            Ok(berth_runtime::node_hostname())
        } else {
            self.pod_hostname().for_kernel(Some(spec))
        }
    }

    /// The pod's host name and domain on its own network.
    pub(crate) fn pod_hostname(&self) -> crate::hostname::PodHostname {
        crate::hostname::PodHostname::of(
            self.pod.spec.as_ref(),
            &self.pod_ref.name,
            &self.pod_ref.namespace,
            &self.cfg.cluster_dns.domain,
        )
    }

    fn sandbox_failed(&mut self, error: &str) {
        warn!(pod = %self.pod_ref, "create sandbox: {error}");
        self.event(
            EventType::Warning,
            reasons::FAILED_CREATE_POD_SANDBOX,
            None,
            format!("Failed to create pod sandbox: {error}"),
        );
        self.wake_no_later_than(Instant::now() + RETRY_AFTER);
    }
}

fn port_mappings(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<berth_runtime::PortMapping> {
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(berth_runtime::PortMapping {
                host_port: u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?,
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                host_ip: p.host_ip.clone(),
            })
        })
        .collect()
}
