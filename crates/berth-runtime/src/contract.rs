//! The contract every [`ContainerRuntime`] keeps, as checks that run against
//! any runtime. The in-memory runtime (`berth-runtime/tests/contract.rs`) and
//! containerd (`berth-containerd/tests/contract.rs`) both pass them, so the
//! fake the pod worker's tests run on cannot drift from the real runtime.
//!
//! Each check panics with what it saw when the runtime breaks the contract.

use std::future::Future;
use std::time::Duration;

use crate::*;

/// How a container made for a check behaves once started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Exits at once with this code.
    Exits(i32),
    /// Runs until it is killed.
    RunsUntilKilled,
}

/// A runtime under test, and how to make configs it can run.
pub trait Subject: Sync {
    type Runtime: ContainerRuntime;
    fn runtime(&self) -> &Self::Runtime;
    /// A sandbox for `pod`; host network is enough for the contract.
    fn sandbox_config(&self, pod: &PodRef) -> SandboxConfig;
    fn container_config(&self, pod: &PodRef, name: &str, behaviour: Behaviour) -> ContainerConfig;
}

/// A host-network sandbox config for `pod`, for a subject to hand out.
pub fn host_network_sandbox(pod: &PodRef, log_dir: std::path::PathBuf) -> SandboxConfig {
    SandboxConfig {
        pod: pod.clone(),
        hostname: pod.name.clone(),
        host_network: true,
        log_dir,
        port_mappings: vec![],
        labels: Default::default(),
        times: PodTimes {
            created: jiff::Timestamp::now(),
            started: jiff::Timestamp::now(),
        },
        security: Default::default(),
        defer_network: false,
    }
}

/// A plain container config running `args` from `image`, for a subject to
/// hand out.
pub fn plain_container(
    pod: &PodRef,
    name: &str,
    image: ImageInfo,
    args: Vec<String>,
    log_path: std::path::PathBuf,
) -> ContainerConfig {
    ContainerConfig {
        pod: pod.clone(),
        name: name.into(),
        kind: ContainerKind::Regular,
        attempt: 0,
        image,
        args,
        env: vec![("PATH".into(), "/bin".into())],
        working_dir: "/".into(),
        user: None,
        mounts: vec![],
        log_path,
        read_only_root: false,
        privileged: false,
        security: Default::default(),
        resources: Resources::default(),
        annotations: Default::default(),
        stdio: Default::default(),
    }
}

/// How long any one exit may take to be reported.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// Every check, each on a pod of its own.
pub async fn check_all<S: Subject>(s: &S) {
    removal_is_idempotent(s).await;
    a_waiter_armed_before_start_sees_a_fast_exit(s).await;
    a_waiter_armed_after_the_exit_gets_it_at_once(s).await;
    sigkill_ends_a_container_with_137(s).await;
    unknown_containers_are_not_found(s).await;
    list_shows_what_was_made(s).await;
    a_prepared_start_is_a_start(s).await;
    a_prepared_container_that_never_starts_is_removed(s).await;
}

fn pod(name: &str) -> PodRef {
    PodRef {
        uid: format!("contract-{name}-{:08x}", std::process::id()),
        namespace: "contract".into(),
        name: name.into(),
    }
}

async fn exit_of(waiter: impl Future<Output = Result<ExitInfo, RuntimeError>>) -> ExitInfo {
    tokio::time::timeout(EXIT_DEADLINE, waiter)
        .await
        .expect("the exit is reported in time")
        .expect("the waiter reports an exit")
}

/// A sandbox and a created (not started) container in it.
async fn made<S: Subject>(
    s: &S,
    pod_name: &str,
    behaviour: Behaviour,
) -> (PodRef, SandboxInfo, ContainerId) {
    let rt = s.runtime();
    let pod = pod(pod_name);
    let sandbox = rt
        .create_sandbox(&s.sandbox_config(&pod))
        .await
        .expect("create sandbox");
    let config = s.container_config(&pod, "main", behaviour);
    let id = rt
        .create_container(&sandbox, &config)
        .await
        .expect("create container");
    (pod, sandbox, id)
}

async fn clean_up<S: Subject>(s: &S, sandbox: &SandboxInfo, id: &ContainerId) {
    s.runtime()
        .remove_container(id)
        .await
        .expect("remove container");
    s.runtime()
        .remove_sandbox(sandbox)
        .await
        .expect("remove sandbox");
}

/// Removing what is gone succeeds, so teardown can be retried blindly.
pub async fn removal_is_idempotent<S: Subject>(s: &S) {
    let rt = s.runtime();
    let (_, sandbox, id) = made(s, "removal", Behaviour::RunsUntilKilled).await;
    rt.start_container(&id).await.expect("start");
    rt.remove_container(&id)
        .await
        .expect("remove a running container");
    rt.remove_container(&id).await.expect("remove it again");
    let gone = rt.wait_container(&id).await.err().map(|e| e.kind);
    assert_eq!(
        gone,
        Some(RuntimeErrorKind::NotFound),
        "wait on a removed container"
    );
    rt.signal_container(&id, Signal::KILL)
        .await
        .expect("a signal to a removed container is not an error");
    rt.remove_sandbox(&sandbox).await.expect("remove sandbox");
    rt.remove_sandbox(&sandbox).await.expect("remove it again");
}

/// The waiter is armed before start, so an exit that comes at once is seen.
pub async fn a_waiter_armed_before_start_sees_a_fast_exit<S: Subject>(s: &S) {
    let rt = s.runtime();
    let (_, sandbox, id) = made(s, "fast-exit", Behaviour::Exits(3)).await;
    let waiter = rt.wait_container(&id).await.expect("arm the waiter");
    rt.start_container(&id).await.expect("start");
    let exit = exit_of(waiter).await;
    assert_eq!((exit.exit_code, exit.oom_killed), (3, false));
    clean_up(s, &sandbox, &id).await;
}

/// A waiter armed after the exit gets the same exit at once.
pub async fn a_waiter_armed_after_the_exit_gets_it_at_once<S: Subject>(s: &S) {
    let rt = s.runtime();
    let (_, sandbox, id) = made(s, "late-waiter", Behaviour::Exits(5)).await;
    let first = rt.wait_container(&id).await.expect("arm the waiter");
    rt.start_container(&id).await.expect("start");
    let exit = exit_of(first).await;
    let again = exit_of(rt.wait_container(&id).await.expect("arm again")).await;
    assert_eq!(exit.exit_code, 5);
    assert_eq!(again.exit_code, 5, "a second waiter sees the same exit");
    clean_up(s, &sandbox, &id).await;
}

/// SIGKILL ends a container with 128 + 9, not taken for an OOM kill.
pub async fn sigkill_ends_a_container_with_137<S: Subject>(s: &S) {
    let rt = s.runtime();
    let (_, sandbox, id) = made(s, "sigkill", Behaviour::RunsUntilKilled).await;
    let waiter = rt.wait_container(&id).await.expect("arm the waiter");
    rt.start_container(&id).await.expect("start");
    rt.signal_container(&id, Signal::KILL).await.expect("kill");
    let exit = exit_of(waiter).await;
    assert_eq!((exit.exit_code, exit.oom_killed), (137, false));
    clean_up(s, &sandbox, &id).await;
}

/// Verbs on a container that never existed answer NotFound.
pub async fn unknown_containers_are_not_found<S: Subject>(s: &S) {
    let rt = s.runtime();
    let unknown = ContainerId("contract-no-such-container".into());
    let kind = |r: Result<(), RuntimeError>| r.err().map(|e| e.kind);
    assert_eq!(
        kind(rt.wait_container(&unknown).await.map(drop)),
        Some(RuntimeErrorKind::NotFound),
        "wait"
    );
    assert_eq!(
        kind(rt.start_container(&unknown).await.map(drop)),
        Some(RuntimeErrorKind::NotFound),
        "start"
    );
    assert_eq!(
        kind(rt.prepare_start(&unknown).await),
        Some(RuntimeErrorKind::NotFound),
        "prepare the start"
    );
    rt.remove_container(&unknown)
        .await
        .expect("removing what never existed succeeds");
}

/// `list` shows the sandbox and its container in the state they are in.
pub async fn list_shows_what_was_made<S: Subject>(s: &S) {
    let rt = s.runtime();
    let (pod, sandbox, id) = made(s, "listed", Behaviour::Exits(7)).await;
    let state = |observed: &Observed| {
        observed
            .containers
            .iter()
            .find(|c| c.id == id)
            .map(|c| (c.state, c.pod.uid.clone(), c.sandbox.clone()))
    };
    let observed = rt.list().await.expect("list");
    assert!(
        observed
            .sandboxes
            .iter()
            .any(|b| b.id == sandbox.id && b.pod.uid == pod.uid),
        "the sandbox is listed: {observed:?}"
    );
    let (created, uid, in_sandbox) = state(&observed).expect("the container is listed");
    assert_eq!(created, ObservedState::Created);
    assert_eq!((uid, in_sandbox), (pod.uid.clone(), sandbox.id.clone()));
    let waiter = rt.wait_container(&id).await.expect("arm the waiter");
    rt.start_container(&id).await.expect("start");
    exit_of(waiter).await;
    let (exited, _, _) = state(&rt.list().await.expect("list")).expect("still listed");
    match exited {
        ObservedState::Exited { exit, .. } => assert_eq!(exit.exit_code, 7),
        other => panic!("an exited container is listed as {other:?}"),
    }
    clean_up(s, &sandbox, &id).await;
    let after = rt.list().await.expect("list");
    assert!(state(&after).is_none(), "a removed container is not listed");
    assert!(!after.sandboxes.iter().any(|b| b.id == sandbox.id));
}

/// A start prepared ahead (the container still listed as created) is then
/// a start like any other: a waiter armed after the preparation sees the
/// exit.
pub async fn a_prepared_start_is_a_start<S: Subject>(s: &S) {
    let rt = s.runtime();
    let (_, sandbox, id) = made(s, "prepared", Behaviour::Exits(9)).await;
    rt.prepare_start(&id).await.expect("prepare the start");
    let observed = rt.list().await.expect("list");
    let listed = observed.containers.iter().find(|c| c.id == id);
    assert_eq!(
        listed.map(|c| c.state),
        Some(ObservedState::Created),
        "a prepared container is still created: {observed:?}"
    );
    let waiter = rt.wait_container(&id).await.expect("arm the waiter");
    rt.start_container(&id).await.expect("start");
    assert_eq!(exit_of(waiter).await.exit_code, 9);
    clean_up(s, &sandbox, &id).await;
}

/// A container whose start was prepared and never made (its pod's network
/// failed) is removed like any other, and is gone.
pub async fn a_prepared_container_that_never_starts_is_removed<S: Subject>(s: &S) {
    let rt = s.runtime();
    let (_, sandbox, id) = made(s, "prepared-removed", Behaviour::RunsUntilKilled).await;
    let waiter = rt.wait_container(&id).await.expect("arm the waiter");
    rt.prepare_start(&id).await.expect("prepare the start");
    clean_up(s, &sandbox, &id).await;
    let observed = rt.list().await.expect("list");
    assert!(
        !observed.containers.iter().any(|c| c.id == id),
        "a removed container is not listed: {observed:?}"
    );
    // Its waiter ends (the container is gone), it does not hang.
    let ended = tokio::time::timeout(EXIT_DEADLINE, waiter).await;
    assert!(ended.is_ok(), "the waiter of a removed container ends");
}
