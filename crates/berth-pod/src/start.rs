//! Starting one container instance, step by step as the kubelet's
//! `startContainer` (docs/kubelet-semantics.md §2.4), each failure with its waiting
//! reason: image → config → create → arm the exit waiter → start → postStart.

use berth_runtime::{ContainerId, ContainerKind, ContainerRuntime, RuntimeErrorKind};
use jiff::Timestamp;
use tokio::time::Instant;
use tracing::debug;

use crate::container_config::{self, PodContext};
use crate::reasons;
use crate::record::{Instance, InstanceState, Waiting};
use crate::security::SecurityDefaults;
use crate::sink::{EventType, PodSink};
use crate::timeline::TimelineStep;
use crate::worker::{Worker, RETRY_AFTER};

impl<R: ContainerRuntime, S: PodSink> Worker<R, S> {
    /// Records why container `i` could not start and when to try again.
    pub(crate) fn start_failed(
        &mut self,
        i: usize,
        reason: &str,
        message: String,
        event: Option<(&'static str, String)>,
    ) {
        let field_path = self.field_path(i);
        let (event_reason, event_message) =
            event.unwrap_or((reasons::FAILED, format!("Error: {message}")));
        self.event(EventType::Warning, event_reason, field_path, event_message);
        let rec = &mut self.records[i];
        rec.waiting = Some(Waiting {
            reason: reason.into(),
            message,
        });
        rec.retry_at = Some(Instant::now() + RETRY_AFTER);
    }

    /// The container whose PID namespace ephemeral container `i` joins, if
    /// it names one: the current instance of its target, or why there is
    /// none.
    fn ephemeral_target(&self, i: usize) -> Option<Result<ContainerId, String>> {
        let rec = &self.records[i];
        if rec.kind != ContainerKind::Ephemeral {
            return None;
        }
        let target = berth_api::pod::ephemeral_containers(self.spec())
            .iter()
            .find(|ec| ec.name == rec.name)?
            .target_container_name
            .as_deref()
            .filter(|t| !t.is_empty())?;
        let instance = self
            .records
            .iter()
            .filter(|r| r.kind != ContainerKind::Ephemeral && r.name == target)
            .find_map(|r| r.current.as_ref());
        Some(
            instance
                .map(|c| c.id.clone())
                .ok_or_else(|| format!("unable to find target container {target}")),
        )
    }

    /// Creates and starts a new instance of container `i`.
    pub(crate) async fn start_container(&mut self, i: usize) {
        if !self.ready_image_volumes(i).await {
            return;
        }
        let Some(image) = self.ensure_image(i).await else {
            return;
        };
        let Some(mut container) = self.spec_container(i).cloned() else {
            return;
        };
        // Its environment is fixed at create: the pod IP must be known.
        if reads_pod_ip(&container) && !self.settle_network(None).await {
            return;
        }
        let Some(sandbox) = self.sandbox.ready().cloned() else {
            return;
        };
        // A new instance runs with what the node allocated, which a resize
        // not (yet) accepted leaves behind the spec.
        let allocated = self.records[i].allocated.clone();
        container.resources = Some(allocated.clone());
        let attempt = self.records[i].next_attempt();
        let kind = self.records[i].kind;
        let message_file = match self.dirs.termination_message_file(&container.name) {
            Ok(path) => Some(path),
            Err(e) => {
                self.start_failed(
                    i,
                    "CreateContainerConfigError",
                    format!("create termination message file: {e}"),
                    None,
                );
                return;
            }
        };
        let hostname = if sandbox.host_network {
            String::new()
        } else {
            // As the sandbox got it (its FQDN was checked then).
            let name = self.pod_hostname();
            let spec = self.pod.spec.as_ref();
            name.for_kernel(spec).unwrap_or(name.hostname)
        };
        let service_vars = match &self.cfg.cluster_data {
            None => Vec::new(),
            Some(source) => {
                let links = self.spec().enable_service_links.unwrap_or(true);
                match source
                    .0
                    .service_env(&self.pod, &self.pod_ref.namespace, links)
                {
                    Ok(vars) => vars,
                    Err(e) => {
                        self.start_failed(i, "CreateContainerConfigError", e, None);
                        return;
                    }
                }
            }
        };
        let seccomp_root = self.cfg.root_dir.join("seccomp");
        let ctx = PodContext {
            pod: &self.pod,
            pod_ref: &self.pod_ref,
            dirs: &self.dirs,
            pod_ips: self.pod_ips(),
            host_ip: &self.cfg.host_ip,
            node_name: &self.cfg.node_name,
            hostname: &hostname,
            security: SecurityDefaults {
                seccomp_root: &seccomp_root,
                seccomp_default: self.cfg.seccomp_default,
                selinux_enabled: crate::security::selinux_enabled(),
            },
            service_vars,
            allocatable: &self.cfg.node_allocatable,
            objects: self
                .cfg
                .cluster_data
                .as_ref()
                .map(|source| &*source.0 as &(dyn berth_api::env::EnvObjects + Sync)),
        };
        // An ephemeral container with `targetContainerName` joins that
        // container's PID namespace (the kubelet's `getTargetID`).
        let pid_target = match self.ephemeral_target(i) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(message)) => {
                self.start_failed(i, "CreateContainerConfigError", message, None);
                return;
            }
        };
        let mut config = match container_config::build(
            &ctx,
            &container,
            kind,
            attempt,
            &image,
            message_file.as_deref(),
        ) {
            Ok(config) => config,
            Err(e) => {
                self.start_failed(i, e.reason(), e.to_string(), None);
                return;
            }
        };
        config.security.pid_target = pid_target;
        if let Some(dir) = config.log_path.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                self.start_failed(
                    i,
                    "CreateContainerConfigError",
                    format!("create log directory {}: {e}", dir.display()),
                    None,
                );
                return;
            }
        }
        // Keep one dead instance (for `logs --previous`), as the kubelet's GC.
        if let Some(old) = self.records[i].previous.take() {
            self.remove_container(&old.id).await;
            self.dirs.remove_logs(&container.name, old.attempt);
        }
        let id = match self.rt.create_container(&sandbox, &config).await {
            Ok(id) => id,
            Err(e) => {
                let reason = if e.kind == RuntimeErrorKind::InvalidSpec {
                    "CreateContainerConfigError"
                } else {
                    "CreateContainerError"
                };
                self.start_failed(i, reason, e.message, None);
                return;
            }
        };
        self.step(
            Some(&container.name),
            TimelineStep::ContainerCreated,
            id.to_string(),
        );
        if self.network.is_some() {
            // Its task is made while the network is set up; it starts after.
            if let Err(e) = self.rt.prepare_start(&id).await {
                debug!(pod = %self.pod_ref, container = %container.name, "prepare the start (the start tries again): {e}");
            }
            if !self.settle_network(Some(&id)).await {
                return;
            }
        }
        let field_path = self.field_path(i);
        self.event(
            EventType::Normal,
            reasons::CREATED,
            field_path.clone(),
            "Container created".into(),
        );
        let waiter = match self.rt.wait_container(&id).await {
            Ok(waiter) => waiter,
            Err(e) => {
                self.remove_container(&id).await;
                self.start_failed(i, "CreateContainerError", e.message, None);
                return;
            }
        };
        let state = match self.rt.start_container(&id).await {
            Ok(started) => {
                debug!(pod = %self.pod_ref, container = %container.name, attempt, "container started");
                self.event(
                    EventType::Normal,
                    reasons::STARTED,
                    field_path,
                    "Container started".into(),
                );
                self.step(
                    Some(&container.name),
                    TimelineStep::ContainerStarted,
                    format!("attempt {attempt}"),
                );
                self.forward_exit(id.clone(), waiter);
                InstanceState::Running {
                    started_at: started.started_at,
                }
            }
            Err(e) => {
                // containerd reports a failed start as a terminated container:
                // reason StartError, exit code 128. The restart policy decides
                // on the next pass, at once.
                self.wake_no_later_than(Instant::now());
                self.event(
                    EventType::Warning,
                    reasons::FAILED,
                    field_path,
                    format!("Error: {}", e.message),
                );
                InstanceState::Exited {
                    started_at: None,
                    exit: berth_runtime::ExitInfo {
                        exit_code: 128,
                        finished_at: Timestamp::now(),
                        oom_killed: false,
                    },
                    reason: "StartError".into(),
                    message: Some(e.message),
                    observed: Instant::now(),
                }
            }
        };
        let rec = &mut self.records[i];
        rec.previous = rec.current.take();
        rec.current = Some(Instance {
            id,
            attempt,
            image,
            state,
            termination_message_file: message_file,
            spec_image: container.image.clone(),
            actuated: allocated,
        });
        rec.waiting = None;
        rec.retry_at = None;
        rec.definition_changed = false;
        rec.kill_pending = None;
        self.run_post_start(i).await;
        if self.records[i].kill_pending.is_none() {
            self.start_probers(i, false);
        }
    }
}

/// Whether the container's environment names the pod IP (the downward
/// API's `status.podIP` or `status.podIPs`).
fn reads_pod_ip(container: &k8s_openapi::api::core::v1::Container) -> bool {
    container.env.iter().flatten().any(|var| {
        var.value_from
            .as_ref()
            .and_then(|from| from.field_ref.as_ref())
            .is_some_and(|field| {
                matches!(field.field_path.as_str(), "status.podIP" | "status.podIPs")
            })
    })
}
