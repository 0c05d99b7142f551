//! Carrying out a restart of all the pod's containers (the kubelet's
//! `SyncPod` over `ContainersToReset`): the running ones are killed without
//! a grace period, together (the kubelet kills them one after another: the
//! same end, sooner), then every instance is removed in the plan's order,
//! the sandbox kept; the next plan runs the pod again from its first init
//! container.
//!
//! It survives an agent restart: before anything is killed, the attempt
//! each container's next instance gets is saved in the pod's directory. An
//! instance older than that belongs to before the restart, so a worker
//! that adopts the pod removes it (finishing the restart) and keeps the
//! newer ones (nothing runs twice); the restart counts carry on from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_api::restart_rules::{RESTARTING_ALL_CONTAINERS, RESTARTING_ALL_CONTAINERS_MESSAGE};
use berth_runtime::ContainerRuntime;
use tracing::{debug, warn};

use crate::plan::{KillReason, Reset, Stop};
use crate::record::Waiting;
use crate::sink::PodSink;
use crate::worker::Worker;

const FILE: &str = "restart-all.json";

/// The kubelet kills with a grace period of 0, which its `killContainer`
/// raises to `minimumGracePeriodInSeconds`: the stop signal, then SIGKILL
/// 2 s later, and no preStop hook.
const GRACE: Duration = Duration::from_secs(2);

/// The attempt of each container's first instance after the last restart
/// of all containers, by name.
pub(crate) type Checkpoint = BTreeMap<String, u32>;

fn path(pod_dir: &Path) -> PathBuf {
    pod_dir.join(FILE)
}

fn save(pod_dir: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(checkpoint).map_err(std::io::Error::other)?;
    berth_runtime::files::write_private(&path(pod_dir), &bytes)
}

/// The checkpoint saved last; empty when there is none or it is unreadable.
pub(crate) fn load(pod_dir: &Path) -> Checkpoint {
    std::fs::read(path(pod_dir))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

impl<R: ContainerRuntime, S: PodSink> Worker<R, S> {
    /// Kills and removes the containers of `resets`, in their order.
    pub(crate) async fn restart_all(&mut self, resets: &[Reset]) {
        debug!(pod = %self.pod_ref, "a container's exit restarts all containers");
        // The AllContainersRestarting condition is True until they are gone.
        self.restarting_all = true;
        self.publish(false);
        let checkpoint: Checkpoint = resets
            .iter()
            .map(|r| {
                let rec = &self.records[r.index];
                (rec.name.clone(), rec.next_attempt())
            })
            .collect();
        if let Err(e) = save(&self.dirs.pod, &checkpoint) {
            warn!(pod = %self.pod_ref, "save the restart of all containers: {e}");
        }
        let killed: Vec<usize> = resets.iter().filter(|r| r.kill).map(|r| r.index).collect();
        if !killed.is_empty() {
            let stop = Stop {
                turns: vec![killed],
                grace: GRACE,
                pre_stop: Vec::new(),
            };
            if let Some(failure) = self.stop(&stop, KillReason::RestartAllContainers).await {
                warn!(pod = %self.pod_ref, "kill containers: {failure}");
            }
        }
        for reset in resets {
            self.reset(reset.index).await;
        }
        self.restarting_all = false;
        self.publish(false);
        // Shown once, as the kubelet's next status has the usual waiting
        // reason again for a container not started yet.
        for reset in resets {
            let rec = &mut self.records[reset.index];
            if rec
                .waiting
                .as_ref()
                .is_some_and(|w| w.reason == RESTARTING_ALL_CONTAINERS)
            {
                rec.waiting = None;
            }
        }
    }

    /// Removes every instance of container `i`; it waits to run again as
    /// its next attempt.
    async fn reset(&mut self, i: usize) {
        let next = self.records[i].next_attempt();
        let rec = &mut self.records[i];
        let instances: Vec<_> = rec
            .current
            .take()
            .into_iter()
            .chain(rec.previous.take())
            .collect();
        rec.reset = Some(next);
        rec.waiting = Some(Waiting {
            reason: RESTARTING_ALL_CONTAINERS.into(),
            message: RESTARTING_ALL_CONTAINERS_MESSAGE.into(),
        });
        rec.retry_at = None;
        rec.definition_changed = false;
        rec.kill_pending = None;
        // Its logs stay until the pod goes, as the kubelet keeps them.
        for instance in instances {
            self.stop_probers(&instance.id);
            self.remove_container(&instance.id).await;
        }
    }
}

/// At adoption: an instance of `name` at `attempt` is from before the last
/// restart of all containers; removing it finishes that restart.
pub(crate) fn from_before(checkpoint: &Checkpoint, name: &str, attempt: u32) -> bool {
    checkpoint.get(name).is_some_and(|&next| attempt < next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_round_trips_privately() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_empty());
        let checkpoint = Checkpoint::from([("app".into(), 3), ("init".into(), 1)]);
        save(dir.path(), &checkpoint).unwrap();
        assert_eq!(load(dir.path()), checkpoint);
        assert!(from_before(&checkpoint, "app", 2));
        assert!(!from_before(&checkpoint, "app", 3));
        assert!(!from_before(&checkpoint, "other", 0));
        std::fs::write(path(dir.path()), "garbage").unwrap();
        assert!(load(dir.path()).is_empty());
    }
}
