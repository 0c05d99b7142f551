//! An in-memory [`ContainerRuntime`] for unit tests, driven by tokio's clock.
//!
//! Each container runs a [`Script`] chosen by container name: how long it runs,
//! what it exits with, whether it ignores the stop signal, whether create or
//! start fails. Every call is recorded as a [`Call`] for assertions.
//!
//! Images: [`FakeRuntime::add_image`] makes one present; a pull succeeds for
//! images made pullable with [`FakeRuntime::add_pullable`] (or present
//! already), takes [`FakeRuntime::pull_delay`] of tokio time, and fails with
//! the error set by [`FakeRuntime::fail_pull`].
//!
//! A deferred pod network ([`SandboxConfig::defer_network`]) is set up in
//! [`FakeRuntime::network_delay`] of tokio time and fails with the error set
//! by [`FakeRuntime::fail_network`].

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{oneshot, Notify};

use crate::*;

/// How a fake container behaves.
#[derive(Debug, Clone)]
pub struct Script {
    /// Exit on its own after this long (`None`: run until signalled).
    pub run_for: Option<Duration>,
    pub exit_code: i32,
    /// Ignores the stop signal (only SIGKILL ends it).
    pub ignores_stop: bool,
    /// The exit code when a stop signal ends it.
    pub stop_exit_code: i32,
    pub create_error: Option<RuntimeError>,
    pub start_error: Option<RuntimeError>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            run_for: None,
            exit_code: 0,
            ignores_stop: false,
            stop_exit_code: 143,
            create_error: None,
            start_error: None,
        }
    }
}

impl Script {
    /// Runs for `d`, then exits with `code`.
    pub fn exits(code: i32, after: Duration) -> Self {
        Self {
            run_for: Some(after),
            exit_code: code,
            ..Self::default()
        }
    }
}

/// A recorded runtime call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    CreateSandbox {
        pod: String,
    },
    StopSandbox {
        id: String,
    },
    RemoveSandbox {
        id: String,
    },
    /// A deferred network was set up (recorded once it is).
    NetworkReady {
        id: String,
    },
    CreateContainer {
        name: String,
        attempt: u32,
    },
    Start {
        name: String,
        attempt: u32,
    },
    Signal {
        name: String,
        signal: Signal,
    },
    RemoveContainer {
        name: String,
    },
    Exec {
        name: String,
        command: Vec<String>,
    },
    Pull {
        image: String,
    },
    RemoveImage {
        image: String,
    },
    ForceStopSandbox {
        id: String,
    },
    UpdateResources {
        name: String,
        resources: Resources,
    },
    MountImageVolume {
        key: String,
        image: String,
    },
    UnmountImageVolume {
        key: String,
    },
}

struct FakeContainer {
    name: String,
    config: ContainerConfig,
    sandbox: SandboxId,
    state: ObservedState,
    waiters: Vec<oneshot::Sender<Result<ExitInfo, RuntimeError>>>,
    script: Script,
    /// Bumped when the container exits, so its run timer stops.
    generation: u64,
}

#[derive(Default)]
struct Inner {
    images: HashMap<String, ImageInfo>,
    /// What the "registry" serves; a pull makes it present.
    pullable: HashMap<String, ImageInfo>,
    pull_errors: HashMap<String, RuntimeError>,
    /// The only credentials the "registry" takes for an image.
    private: HashMap<String, RegistryCredentials>,
    /// Each pull's image and credentials, in order.
    pull_credentials: Vec<(String, Option<RegistryCredentials>)>,
    pull_delay: Duration,
    scripts: HashMap<String, Script>,
    sandboxes: BTreeMap<String, SandboxInfo>,
    /// Waiters for each sandbox's pause exit.
    pause_waiters: HashMap<String, Vec<oneshot::Sender<Result<ExitInfo, RuntimeError>>>>,
    containers: BTreeMap<String, FakeContainer>,
    calls: Vec<Call>,
    exec_results: HashMap<String, ExecOutput>,
    exec_failures: HashMap<String, usize>,
    /// Signals that fail as if the runtime were away.
    unavailable_signals: usize,
    exec_delays: HashMap<String, Duration>,
    /// How long every start takes.
    start_delay: Duration,
    /// How long a deferred network takes, and its error if it fails.
    network_delay: Duration,
    network_error: Option<RuntimeError>,
    /// Set while the runtime does not answer signals and removals: each
    /// takes this long, then times out (until a forced stop).
    wedged: Option<Duration>,
    next_id: u64,
    /// What each container "uses", by name (0 unless set).
    memory_usage: HashMap<String, u64>,
    /// Image volumes "mounted": snapshot key to image reference.
    image_volumes: BTreeMap<String, String>,
}

/// The in-memory runtime. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct FakeRuntime {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake runtime lock")
    }

    /// Makes an image present under `reference`.
    pub fn add_image(&self, reference: &str, config: ImageConfig) {
        let info = ImageInfo {
            reference: reference.to_string(),
            digest: format!("sha256:{:064x}", reference.len()),
            size: 1024,
            config,
        };
        self.lock().images.insert(reference.to_string(), info);
    }

    /// Makes `image` pullable under `reference`: after a pull, `image_status`
    /// returns it (with `reference` as its reference). Replacing it models a
    /// tag moved in the registry.
    pub fn add_pullable(&self, reference: &str, image: ImageInfo) {
        let image = ImageInfo {
            reference: reference.to_string(),
            ..image
        };
        self.lock().pullable.insert(reference.to_string(), image);
    }

    /// Makes every pull of `reference` fail with `error` until set to `None`.
    pub fn fail_pull(&self, reference: &str, error: Option<RuntimeError>) {
        let mut inner = self.lock();
        match error {
            Some(error) => inner.pull_errors.insert(reference.to_string(), error),
            None => inner.pull_errors.remove(reference),
        };
    }

    /// Makes `reference` served only to pulls given `credentials`; others
    /// fail as a registry refuses them.
    pub fn require_credentials(&self, reference: &str, credentials: RegistryCredentials) {
        self.lock()
            .private
            .insert(reference.to_string(), credentials);
    }

    /// The image and credentials of each pull so far, in order.
    pub fn pull_credentials(&self) -> Vec<(String, Option<RegistryCredentials>)> {
        self.lock().pull_credentials.clone()
    }

    /// How long every container start takes (tokio time).
    pub fn start_delay(&self, delay: Duration) {
        self.lock().start_delay = delay;
    }

    /// How long setting up a deferred pod network takes (tokio time).
    pub fn network_delay(&self, delay: Duration) {
        self.lock().network_delay = delay;
    }

    /// Setting up a deferred pod network fails with `error` (`None`: it
    /// works again).
    pub fn fail_network(&self, error: Option<RuntimeError>) {
        self.lock().network_error = error;
    }

    /// How long every pull takes (tokio time, so instant under a paused clock).
    pub fn pull_delay(&self, delay: Duration) {
        self.lock().pull_delay = delay;
    }

    /// Sets how containers named `name` behave from now on.
    pub fn script(&self, name: &str, script: Script) {
        self.lock().scripts.insert(name.to_string(), script);
    }

    /// The result of every exec into containers named `name`.
    /// The next `times` execs in containers named `name` fail with a runtime
    /// error (not a non-zero exit).
    pub fn fail_exec(&self, name: &str, times: usize) {
        self.lock().exec_failures.insert(name.to_string(), times);
    }

    pub fn exec_result(&self, name: &str, output: ExecOutput) {
        self.lock().exec_results.insert(name.to_string(), output);
    }

    /// How long every exec into containers named `name` takes.
    pub fn exec_delay(&self, name: &str, delay: Duration) {
        self.lock().exec_delays.insert(name.to_string(), delay);
    }

    /// What container `name` reports as its memory usage from now on.
    pub fn set_memory_usage(&self, name: &str, bytes: u64) {
        self.lock().memory_usage.insert(name.to_string(), bytes);
    }

    /// The resources the newest container named `name` was created with or
    /// last updated to.
    pub fn resources(&self, name: &str) -> Option<Resources> {
        let inner = self.lock();
        inner
            .containers
            .values()
            .rev()
            .find(|c| c.name == name)
            .map(|c| c.config.resources.clone())
    }

    /// The mounts the newest container named `name` was created with.
    pub fn mounts(&self, name: &str) -> Option<Vec<Mount>> {
        let inner = self.lock();
        let mut containers = inner.containers.values().rev();
        containers
            .find(|c| c.name == name)
            .map(|c| c.config.mounts.clone())
    }

    /// The environment the newest container named `name` was created with.
    pub fn env(&self, name: &str) -> Option<Vec<(String, String)>> {
        let inner = self.lock();
        let mut containers = inner.containers.values().rev();
        containers
            .find(|c| c.name == name)
            .map(|c| c.config.env.clone())
    }

    /// The container whose PID namespace the newest container named `name`
    /// was created to join.
    pub fn pid_target(&self, name: &str) -> Option<ContainerId> {
        let inner = self.lock();
        inner
            .containers
            .values()
            .rev()
            .find(|c| c.name == name)
            .and_then(|c| c.config.security.pid_target.clone())
    }

    /// The id of the newest container named `name`.
    pub fn id_of(&self, name: &str) -> Option<ContainerId> {
        let inner = self.lock();
        inner
            .containers
            .iter()
            .rev()
            .find(|(_, c)| c.name == name)
            .map(|(id, _)| ContainerId(id.clone()))
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The image volumes mounted now: snapshot key and image reference.
    pub fn image_volumes(&self) -> Vec<(String, String)> {
        let inner = self.lock();
        let volumes = inner.image_volumes.iter();
        volumes.map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Ids of the containers that exist, with their names and states.
    pub fn containers(&self) -> Vec<(String, ObservedState)> {
        self.lock()
            .containers
            .values()
            .map(|c| (c.name.clone(), c.state))
            .collect()
    }

    pub fn sandbox_count(&self) -> usize {
        self.lock().sandboxes.len()
    }

    /// Waits until `check` holds for the recorded calls.
    pub async fn wait_for_calls(&self, check: impl Fn(&[Call]) -> bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a change in between is not lost.
            notified.as_mut().enable();
            if check(&self.lock().calls) {
                return;
            }
            notified.await;
        }
    }

    /// Makes a running container exit now with `code`, as if it ended by itself.
    pub fn exit(&self, name: &str, code: i32) {
        let mut inner = self.lock();
        if let Some(id) = running_id(&inner, name) {
            finish(&mut inner, &id, code);
        }
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Kills the pause process of pod `pod`'s sandbox, as someone on the
    /// node might; like the kernel, ends every process of the pod's shared
    /// PID namespace with it (exit 137).
    pub fn kill_pause(&self, pod: &str) {
        let mut inner = self.lock();
        let Some(sandbox) = inner
            .sandboxes
            .values_mut()
            .find(|s| s.pod.name == pod && s.pause.pid().is_some())
        else {
            return;
        };
        sandbox.pause = PauseProcess::Gone;
        let id = sandbox.id.clone();
        let exit = exit_now(137);
        for waiter in inner.pause_waiters.remove(&id.0).unwrap_or_default() {
            let _ = waiter.send(Ok(exit));
        }
        kill_sandbox(&mut inner, &id);
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Fails the next `times` signals with `Unavailable`, as while the
    /// runtime restarts.
    pub fn fail_signals(&self, times: usize) {
        self.lock().unavailable_signals = times;
    }

    /// From now until [`ContainerRuntime::force_stop_sandbox`], signals,
    /// removals and listings take `after` and then fail with `Timeout`, as
    /// through a shim that stopped answering.
    pub fn wedge(&self, after: Duration) {
        self.lock().wedged = Some(after);
    }

    /// Waits out a wedge, if there is one, and fails as it does.
    async fn through_wedge(&self) -> Result<(), RuntimeError> {
        let Some(after) = self.lock().wedged else {
            return Ok(());
        };
        tokio::time::sleep(after).await;
        Err(RuntimeError::new(
            RuntimeErrorKind::Timeout,
            format!("no answer within {after:?}"),
        ))
    }

    /// Fails every armed exit waiter with `error`, as a runtime restart cuts
    /// off its waits; the containers go on running.
    pub fn fail_waiters(&self, error: RuntimeError) {
        let mut inner = self.lock();
        for c in inner.containers.values_mut() {
            for waiter in c.waiters.drain(..) {
                let _ = waiter.send(Err(error.clone()));
            }
        }
        drop(inner);
        self.changed.notify_waiters();
    }

    fn record(&self, call: Call) {
        self.lock().calls.push(call);
        self.changed.notify_waiters();
    }

    fn schedule_exit(&self, id: String, generation: u64, after: Duration, code: i32) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let mut inner = this.lock();
            if inner
                .containers
                .get(&id)
                .is_some_and(|c| c.generation == generation)
            {
                finish(&mut inner, &id, code);
            }
            drop(inner);
            this.changed.notify_waiters();
        });
    }
}

fn running_id(inner: &Inner, name: &str) -> Option<String> {
    inner
        .containers
        .iter()
        .find(|(_, c)| c.name == name && matches!(c.state, ObservedState::Running { .. }))
        .map(|(id, _)| id.clone())
}

/// An exit at this moment with `code`, not by the OOM killer.
fn exit_now(code: i32) -> ExitInfo {
    ExitInfo {
        exit_code: code,
        finished_at: Timestamp::now(),
        oom_killed: false,
    }
}

/// Ends every running container of the sandbox with SIGKILL's code.
fn kill_sandbox(inner: &mut Inner, sandbox: &SandboxId) {
    let ids: Vec<String> = inner
        .containers
        .iter()
        .filter(|(_, c)| c.sandbox == *sandbox)
        .map(|(id, _)| id.clone())
        .collect();
    for id in ids {
        finish(inner, &id, 137);
    }
}

fn finish(inner: &mut Inner, id: &str, code: i32) {
    let Some(c) = inner.containers.get_mut(id) else {
        return;
    };
    let ObservedState::Running { started_at } = c.state else {
        return;
    };
    let exit = exit_now(code);
    c.state = ObservedState::Exited {
        started_at: Some(started_at),
        exit,
    };
    c.generation += 1;
    for waiter in c.waiters.drain(..) {
        let _ = waiter.send(Ok(exit));
    }
}

impl ContainerRuntime for FakeRuntime {
    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        Ok(self.lock().images.get(image).cloned())
    }

    async fn pull_image_with_credentials(
        &self,
        image: &str,
        progress: Option<tokio::sync::mpsc::UnboundedSender<PullProgress>>,
        credentials: Option<&RegistryCredentials>,
    ) -> Result<ImageInfo, RuntimeError> {
        self.record(Call::Pull {
            image: image.to_string(),
        });
        self.lock()
            .pull_credentials
            .push((image.to_string(), credentials.cloned()));
        let delay = self.lock().pull_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut inner = self.lock();
        if let Some(error) = inner.pull_errors.get(image) {
            return Err(error.clone());
        }
        if let Some(required) = inner.private.get(image) {
            if credentials != Some(required) {
                return Err(RuntimeError::other(format!(
                    "failed to pull and unpack image \"{image}\": unauthorized: authentication required"
                )));
            }
        }
        let pulled = inner
            .pullable
            .get(image)
            .or_else(|| inner.images.get(image))
            .cloned()
            .ok_or_else(|| {
                RuntimeError::other(format!(
                    "failed to pull and unpack image \"{image}\": manifest unknown"
                ))
            })?;
        inner.images.insert(image.to_string(), pulled.clone());
        drop(inner);
        if let Some(progress) = progress {
            let _ = progress.send(PullProgress {
                layer: pulled.digest.clone(),
                done: pulled.size,
                total: pulled.size,
            });
        }
        Ok(pulled)
    }

    async fn mount_image_volume(
        &self,
        image: &ImageInfo,
        key: &str,
        target: &std::path::Path,
    ) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        if inner.image_volumes.contains_key(key) {
            return Ok(());
        }
        if !inner.images.values().any(|i| i.digest == image.digest) {
            return Err(RuntimeError::new(
                RuntimeErrorKind::ImageNotPresent,
                format!("image {} is not present", image.reference),
            ));
        }
        // The volume's "content": an empty directory.
        std::fs::create_dir_all(target)
            .map_err(|e| RuntimeError::other(format!("create {}: {e}", target.display())))?;
        inner
            .image_volumes
            .insert(key.to_string(), image.reference.clone());
        inner.calls.push(Call::MountImageVolume {
            key: key.to_string(),
            image: image.reference.clone(),
        });
        drop(inner);
        self.changed.notify_waiters();
        Ok(())
    }

    async fn unmount_image_volume(
        &self,
        key: &str,
        _target: &std::path::Path,
    ) -> Result<(), RuntimeError> {
        if self.lock().image_volumes.remove(key).is_some() {
            self.record(Call::UnmountImageVolume {
                key: key.to_string(),
            });
        }
        Ok(())
    }

    async fn create_sandbox(&self, config: &SandboxConfig) -> Result<SandboxInfo, RuntimeError> {
        self.record(Call::CreateSandbox {
            pod: config.pod.name.clone(),
        });
        let mut inner = self.lock();
        inner.next_id += 1;
        let n = inner.next_id;
        let info = SandboxInfo {
            id: SandboxId(format!("sb-{n}")),
            pod: config.pod.clone(),
            host_network: config.host_network,
            netns: None,
            // As the containerd runtime: a pause only for a shared
            // process namespace.
            pause: match config.security.namespaces.pid {
                crate::PidNamespace::Pod => PauseProcess::Running {
                    pid: 1000 + n as u32,
                },
                _ => PauseProcess::Pinned,
            },
            ips: vec![IpAddr::V4(Ipv4Addr::new(10, 88, 0, n as u8))],
            created_at: Timestamp::now(),
            pod_times: Some(config.times),
            network_ready_at: (!config.host_network).then(Timestamp::now),
        };
        if config.defer_network && !config.host_network {
            // What `attach_network` gives it.
            inner.sandboxes.insert(info.id.0.clone(), info.clone());
            return Ok(SandboxInfo {
                ips: Vec::new(),
                network_ready_at: None,
                ..info
            });
        }
        inner.sandboxes.insert(info.id.0.clone(), info.clone());
        Ok(info)
    }

    async fn wait_sandbox(
        &self,
        sandbox: &SandboxInfo,
    ) -> Result<Option<ExitWaiter>, RuntimeError> {
        let mut inner = self.lock();
        let pause = match inner.sandboxes.get(&sandbox.id.0) {
            Some(known) => known.pause,
            None => PauseProcess::Gone,
        };
        if pause == PauseProcess::Pinned {
            return Ok(None);
        }
        let (tx, waiter) = ExitWaiter::channel();
        if pause == PauseProcess::Gone {
            let _ = tx.send(Ok(exit_now(255)));
        } else {
            inner
                .pause_waiters
                .entry(sandbox.id.0.clone())
                .or_default()
                .push(tx);
        }
        Ok(Some(waiter))
    }

    async fn stop_sandbox(&self, sandbox: &SandboxInfo) -> Result<(), RuntimeError> {
        self.through_wedge().await?;
        self.record(Call::StopSandbox {
            id: sandbox.id.0.clone(),
        });
        Ok(())
    }

    async fn remove_sandbox(&self, sandbox: &SandboxInfo) -> Result<(), RuntimeError> {
        self.through_wedge().await?;
        self.record(Call::RemoveSandbox {
            id: sandbox.id.0.clone(),
        });
        let mut inner = self.lock();
        inner.sandboxes.remove(&sandbox.id.0);
        // Removing it ends the pause, as the runtime's task delete does.
        for waiter in inner
            .pause_waiters
            .remove(&sandbox.id.0)
            .unwrap_or_default()
        {
            let _ = waiter.send(Ok(exit_now(137)));
        }
        Ok(())
    }

    async fn attach_network(
        &self,
        sandbox: &SandboxInfo,
        _config: &SandboxConfig,
    ) -> Result<PodNetwork, RuntimeError> {
        let delay = self.lock().network_delay;
        tokio::time::sleep(delay).await;
        let inner = self.lock();
        if let Some(error) = inner.network_error.clone() {
            return Err(error);
        }
        let ips = inner
            .sandboxes
            .get(&sandbox.id.0)
            .map(|made| made.ips.clone())
            .ok_or_else(|| RuntimeError::not_found(format!("sandbox {}", sandbox.id)))?;
        drop(inner);
        self.record(Call::NetworkReady {
            id: sandbox.id.0.clone(),
        });
        Ok(PodNetwork {
            ips,
            ready_at: Timestamp::now(),
        })
    }

    async fn prepare_start(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        if self.lock().containers.contains_key(&id.0) {
            Ok(())
        } else {
            Err(RuntimeError::not_found(format!("container {id}")))
        }
    }

    async fn create_container(
        &self,
        sandbox: &SandboxInfo,
        config: &ContainerConfig,
    ) -> Result<ContainerId, RuntimeError> {
        self.record(Call::CreateContainer {
            name: config.name.clone(),
            attempt: config.attempt,
        });
        let mut inner = self.lock();
        let script = inner.scripts.get(&config.name).cloned().unwrap_or_default();
        if let Some(error) = script.create_error.clone() {
            return Err(error);
        }
        inner.next_id += 1;
        let id = format!("c-{}-{}", config.name, inner.next_id);
        inner.containers.insert(
            id.clone(),
            FakeContainer {
                name: config.name.clone(),
                config: config.clone(),
                sandbox: sandbox.id.clone(),
                state: ObservedState::Created,
                waiters: Vec::new(),
                script,
                generation: 0,
            },
        );
        Ok(ContainerId(id))
    }

    async fn update_container_resources(
        &self,
        id: &ContainerId,
        resources: &Resources,
    ) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        let c = inner
            .containers
            .get_mut(&id.0)
            .ok_or_else(|| RuntimeError::not_found(format!("container {id}")))?;
        if !matches!(c.state, ObservedState::Running { .. }) {
            return Err(RuntimeError::other(format!(
                "container {id} is not running"
            )));
        }
        c.config.resources = resources.clone();
        let name = c.name.clone();
        drop(inner);
        self.record(Call::UpdateResources {
            name,
            resources: resources.clone(),
        });
        Ok(())
    }

    async fn container_memory_usage(&self, id: &ContainerId) -> Result<u64, RuntimeError> {
        let inner = self.lock();
        let c = inner
            .containers
            .get(&id.0)
            .ok_or_else(|| RuntimeError::not_found(format!("container {id}")))?;
        Ok(inner.memory_usage.get(&c.name).copied().unwrap_or(0))
    }

    async fn wait_container(&self, id: &ContainerId) -> Result<ExitWaiter, RuntimeError> {
        let mut inner = self.lock();
        let c = inner
            .containers
            .get_mut(&id.0)
            .ok_or_else(|| RuntimeError::not_found(format!("container {id}")))?;
        let (tx, waiter) = ExitWaiter::channel();
        match c.state {
            ObservedState::Exited { exit, .. } => {
                let _ = tx.send(Ok(exit));
            }
            _ => c.waiters.push(tx),
        }
        Ok(waiter)
    }

    async fn start_container(&self, id: &ContainerId) -> Result<Started, RuntimeError> {
        let (name, attempt) = {
            let inner = self.lock();
            let c = inner
                .containers
                .get(&id.0)
                .ok_or_else(|| RuntimeError::not_found(format!("container {id}")))?;
            (c.name.clone(), c.config.attempt)
        };
        self.record(Call::Start { name, attempt });
        let delay = self.lock().start_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut inner = self.lock();
        let c = inner.containers.get_mut(&id.0).expect("checked above");
        if let Some(error) = c.script.start_error.clone() {
            return Err(error);
        }
        let started_at = Timestamp::now();
        c.state = ObservedState::Running { started_at };
        let script = c.script.clone();
        let generation = c.generation;
        drop(inner);
        if let Some(run_for) = script.run_for {
            self.schedule_exit(id.0.clone(), generation, run_for, script.exit_code);
        }
        Ok(Started {
            pid: 4242,
            started_at,
        })
    }

    async fn signal_container(&self, id: &ContainerId, signal: Signal) -> Result<(), RuntimeError> {
        self.through_wedge().await?;
        let mut inner = self.lock();
        if inner.unavailable_signals > 0 {
            inner.unavailable_signals -= 1;
            return Err(RuntimeError::new(
                RuntimeErrorKind::Unavailable,
                "transport error",
            ));
        }
        let Some(c) = inner.containers.get(&id.0) else {
            return Ok(());
        };
        let name = c.name.clone();
        let exit_code = if signal == Signal::KILL {
            Some(137)
        } else if c.script.ignores_stop {
            None
        } else {
            Some(c.script.stop_exit_code)
        };
        if let Some(code) = exit_code {
            finish(&mut inner, &id.0, code);
        }
        inner.calls.push(Call::Signal { name, signal });
        drop(inner);
        self.changed.notify_waiters();
        Ok(())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        self.through_wedge().await?;
        // As containerd's: a running task is killed first.
        let removed = {
            let mut inner = self.lock();
            finish(&mut inner, &id.0, 137);
            inner.containers.remove(&id.0)
        };
        if let Some(c) = removed {
            self.record(Call::RemoveContainer { name: c.name });
        }
        Ok(())
    }

    async fn force_stop_sandbox(&self, sandbox: &SandboxInfo) -> Result<(), RuntimeError> {
        self.record(Call::ForceStopSandbox {
            id: sandbox.id.0.clone(),
        });
        let mut inner = self.lock();
        inner.wedged = None;
        kill_sandbox(&mut inner, &sandbox.id);
        drop(inner);
        self.changed.notify_waiters();
        Ok(())
    }

    async fn exec(
        &self,
        id: &ContainerId,
        command: &[String],
        _timeout: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError> {
        let name = {
            let inner = self.lock();
            let c = inner
                .containers
                .get(&id.0)
                .ok_or_else(|| RuntimeError::not_found(format!("container {id}")))?;
            if !matches!(c.state, ObservedState::Running { .. }) {
                return Err(RuntimeError::other("cannot exec in a stopped state"));
            }
            c.name.clone()
        };
        self.record(Call::Exec {
            name: name.clone(),
            command: command.to_vec(),
        });
        if let Some(left) = self.lock().exec_failures.get_mut(&name).filter(|n| **n > 0) {
            *left -= 1;
            return Err(RuntimeError::other("exec failed: the shim went away"));
        }
        let delay = self.lock().exec_delays.get(&name).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        Ok(self
            .lock()
            .exec_results
            .get(&name)
            .cloned()
            .unwrap_or_default())
    }

    async fn reclaim(&self) -> Result<Reclaimed, RuntimeError> {
        Ok(Reclaimed::default())
    }

    async fn version(&self) -> Result<crate::RuntimeVersion, RuntimeError> {
        Ok(crate::RuntimeVersion {
            name: "fake".into(),
            version: "0.0.0".into(),
        })
    }

    async fn container_images(&self) -> Result<Vec<String>, RuntimeError> {
        let inner = self.lock();
        Ok(inner
            .containers
            .values()
            .map(|c| c.config.image.reference.clone())
            .collect())
    }

    async fn list(&self) -> Result<Observed, RuntimeError> {
        // Task states come from the shims.
        self.through_wedge().await?;
        let inner = self.lock();
        Ok(Observed {
            sandboxes: inner.sandboxes.values().cloned().collect(),
            containers: inner
                .containers
                .iter()
                .map(|(id, c)| ObservedContainer {
                    id: ContainerId(id.clone()),
                    sandbox: c.sandbox.clone(),
                    pod: c.config.pod.clone(),
                    name: c.name.clone(),
                    kind: c.config.kind,
                    attempt: c.config.attempt,
                    image: c.config.image.reference.clone(),
                    state: c.state,
                    annotations: c.config.annotations.clone(),
                })
                .collect(),
        })
    }
}

impl ImageService for FakeRuntime {
    async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        let mut images: Vec<_> = self.lock().images.values().cloned().collect();
        images.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(images)
    }

    async fn import_image(&self, path: &std::path::Path) -> Result<Vec<ImageInfo>, RuntimeError> {
        Err(RuntimeError::new(
            RuntimeErrorKind::InvalidSpec,
            format!("the fake runtime cannot import {}", path.display()),
        ))
    }

    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        self.record(Call::RemoveImage {
            image: reference.to_string(),
        });
        match self.lock().images.remove(reference) {
            Some(_) => Ok(()),
            None => Err(RuntimeError::not_found(format!(
                "image \"{reference}\": not found"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(digest: &str) -> ImageInfo {
        ImageInfo {
            reference: String::new(),
            digest: digest.into(),
            size: 7,
            config: ImageConfig::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pulls_are_scripted_delayed_and_recorded() {
        let rt = FakeRuntime::new();
        rt.add_pullable("r/app:1", image("sha256:a"));
        rt.pull_delay(Duration::from_secs(3));
        assert_eq!(rt.image_status("r/app:1").await.unwrap(), None);

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let started = tokio::time::Instant::now();
        let pulled = rt.pull_image("r/app:1", Some(tx)).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert_eq!(pulled.reference, "r/app:1");
        assert_eq!(rt.image_status("r/app:1").await.unwrap(), Some(pulled));
        assert_eq!(rx.recv().await.unwrap().done, 7);

        // A moved tag: the next pull brings the new image.
        rt.add_pullable("r/app:1", image("sha256:b"));
        let moved = rt.pull_image("r/app:1", None).await.unwrap();
        assert_eq!(moved.digest, "sha256:b");

        rt.fail_pull("r/app:1", Some(RuntimeError::other("manifest unknown")));
        let err = rt.pull_image("r/app:1", None).await.unwrap_err();
        assert_eq!(err.message, "manifest unknown");
        rt.fail_pull("r/app:1", None);
        rt.pull_image("r/app:1", None).await.unwrap();

        let err = rt.pull_image("r/absent:1", None).await.unwrap_err();
        assert!(err.message.contains("manifest unknown"), "{err}");
        let pulls = rt
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Pull { .. }))
            .count();
        assert_eq!(pulls, 5);
    }

    #[tokio::test]
    async fn present_images_pull_and_remove() {
        let rt = FakeRuntime::new();
        rt.add_image("r/app:1", ImageConfig::default());
        rt.pull_image("r/app:1", None).await.unwrap();
        rt.remove_image("r/app:1").await.unwrap();
        assert_eq!(rt.image_status("r/app:1").await.unwrap(), None);
        let err = rt.remove_image("r/app:1").await.unwrap_err();
        assert!(err.is_not_found());
    }
}
