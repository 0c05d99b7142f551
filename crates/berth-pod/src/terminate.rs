//! Termination (kubelet-semantics §1.2, §7): every running container gets its
//! stop signal at once, in parallel, and SIGKILL when the grace period is
//! over; a later request can only bring the deadline closer. Then everything
//! of the pod is removed and the final status published.

use std::sync::Arc;
use std::time::Duration;

use berth_runtime::{ContainerId, ContainerKind, ContainerRuntime, Signal};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::handle::Termination;
use crate::sink::{EventType, PodSink};
use crate::worker::Worker;

/// The kubelet never gives a container less than this after its stop signal
/// (`minimumGracePeriodInSeconds`), unless the delete was forced with 0.
const MINIMUM_GRACE: Duration = Duration::from_secs(2);

impl<R: ContainerRuntime, S: PodSink> Worker<R, S> {
    pub(crate) async fn terminate(mut self, first: Termination) {
        self.stop_containers(first.grace, true).await;
        self.publish(true);
        self.teardown().await;
        self.publish(true);
        self.sink.finished(&self.pod_ref.uid);
    }

    /// Stops every running container within `grace`: the main and init
    /// containers at once, then the sidecars one by one in reverse order
    /// (kubelet-semantics §7.1), all against one deadline. When `requested`,
    /// later termination requests can bring the deadline closer.
    pub(crate) async fn stop_containers(&mut self, grace: Duration, requested: bool) {
        let start = Instant::now();
        let (deadline_tx, deadline_rx) = watch::channel(start + grace);
        let floor = if grace.is_zero() {
            start
        } else {
            start + MINIMUM_GRACE
        };
        let mut sidecars: Vec<usize> = (0..self.records.len())
            .filter(|&i| self.records[i].kind == ContainerKind::Sidecar)
            .collect();
        sidecars.reverse();
        let first: Vec<usize> = (0..self.records.len())
            .filter(|&i| self.records[i].kind != ContainerKind::Sidecar)
            .collect();
        let waves = std::iter::once(first).chain(sidecars.into_iter().map(|i| vec![i]));
        let mut kills = JoinSet::new();
        for wave in waves {
            for &i in &wave {
                if let Some(kill) = self.kill(i, &deadline_rx, floor) {
                    kills.spawn(kill);
                }
            }
            while wave.iter().any(|&i| self.records[i].is_running()) {
                self.publish(false);
                tokio::select! {
                    Some(note) = self.exits_rx.recv() => self.on_exit(note),
                    Ok(()) = self.term_rx.changed(), if requested => {
                        if let Some(t) = *self.term_rx.borrow_and_update() {
                            let shorter = Instant::now() + t.grace;
                            deadline_tx.send_if_modified(|d| {
                                let earlier = shorter < *d;
                                if earlier {
                                    *d = shorter;
                                }
                                earlier
                            });
                        }
                    }
                }
            }
        }
        while kills.join_next().await.is_some() {}
    }

    /// The kill of container `i` if it runs: its Killing event, then stop
    /// signal and SIGKILL at the deadline.
    fn kill(
        &self,
        i: usize,
        deadline: &watch::Receiver<Instant>,
        floor: Instant,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let current = self.records[i].current.as_ref()?;
        if !current.is_running() {
            return None;
        }
        let signal = current
            .image
            .config
            .stop_signal
            .as_deref()
            .and_then(Signal::parse)
            .unwrap_or(Signal::TERM);
        let name = &self.records[i].name;
        self.event(
            EventType::Normal,
            "Killing",
            self.field_path(i),
            format!("Stopping container {name}"),
        );
        Some(kill_container(
            self.rt.clone(),
            current.id.clone(),
            signal,
            deadline.clone(),
            floor,
        ))
    }

    /// Removes every container, the sandbox and the pod's files. Each removal
    /// is idempotent, so a failure is retried a few times and then reported.
    async fn teardown(&mut self) {
        let ids: Vec<ContainerId> = self
            .records
            .iter()
            .flat_map(|r| r.current.iter().chain(r.previous.iter()))
            .map(|i| i.id.clone())
            .collect();
        for id in &ids {
            retry("remove container", || self.rt.remove_container(id)).await;
        }
        if let Some(sandbox) = self.sandbox.clone() {
            retry("remove sandbox", || self.rt.remove_sandbox(&sandbox)).await;
        }
        if let Err(e) = self.dirs.remove() {
            warn!(pod = %self.pod_ref, "remove pod directories: {e}");
        }
        debug!(pod = %self.pod_ref, "pod torn down");
    }
}

async fn retry<F, Fut>(what: &str, mut call: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), berth_runtime::RuntimeError>>,
{
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=5 {
        match call().await {
            Ok(()) => return,
            Err(e) if attempt == 5 => warn!("{what}: {e}"),
            Err(e) => {
                debug!("{what} (attempt {attempt}): {e}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}

/// Stop signal, then SIGKILL at the deadline (never before `floor`).
async fn kill_container<R: ContainerRuntime>(
    rt: Arc<R>,
    id: ContainerId,
    signal: Signal,
    mut deadline: watch::Receiver<Instant>,
    floor: Instant,
) {
    let Ok(waiter) = rt.wait_container(&id).await else {
        return;
    };
    tokio::pin!(waiter);
    let forced = *deadline.borrow() <= floor && floor <= Instant::now();
    if !forced {
        if let Err(e) = rt.signal_container(&id, signal).await {
            warn!(container = %id, "send {}: {e}", signal.name());
        }
        loop {
            let at = (*deadline.borrow_and_update()).max(floor);
            tokio::select! {
                _ = &mut waiter => return,
                _ = tokio::time::sleep_until(at) => break,
                Ok(()) = deadline.changed() => {}
            }
        }
    }
    debug!(container = %id, "grace period over: SIGKILL");
    if let Err(e) = rt.signal_container(&id, Signal::KILL).await {
        warn!(container = %id, "send SIGKILL: {e}");
    }
}
