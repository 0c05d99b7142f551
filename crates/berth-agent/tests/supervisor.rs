//! The agent library against the in-memory runtime: the pod service's
//! contract, static manifests, and an agent restart that adopts its pods.

mod common;

use std::sync::Arc;
use std::time::Duration;

use berth_agent::{AgentConfig, ApiError, PodService, Supervisor};
use berth_runtime::fake::{Call, FakeRuntime};
use k8s_openapi::api::core::v1::Pod;
use tokio_util::sync::CancellationToken;

use common::{runtime, WEB};

fn pod(yaml: &str) -> Pod {
    berth_api::manifest::parse_pods(yaml).unwrap().remove(0)
}

struct Fixture {
    rt: FakeRuntime,
    supervisor: Arc<Supervisor<FakeRuntime>>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let supervisor = common::supervisor(&rt, dir.path());
    Fixture {
        rt,
        supervisor,
        _dir: dir,
    }
}

async fn wait_for(f: &Fixture, what: &str, check: impl Fn(&[Pod]) -> bool) {
    let mut changes = f.supervisor.watch();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pods = f.supervisor.list(None);
        if check(&pods) {
            return;
        }
        tokio::select! {
            _ = changes.recv() => {}
            _ = tokio::time::sleep_until(deadline) => panic!("timed out waiting for {what}: {pods:#?}"),
        }
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

#[tokio::test]
async fn create_get_delete_as_the_api_does() {
    let f = fixture();
    let created = f.supervisor.create("default", pod(WEB)).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(
        created.spec.as_ref().unwrap().restart_policy.as_deref(),
        Some("Always")
    );
    wait_for(&f, "Running", |pods| {
        pods.iter().any(|p| phase(p) == "Running")
    })
    .await;

    let again = f.supervisor.create("default", pod(WEB)).await.unwrap_err();
    assert_eq!(
        again,
        ApiError::AlreadyExists("pods \"web\" already exists".into())
    );
    assert!(matches!(
        f.supervisor.get("default", "nope"),
        Err(ApiError::NotFound(_))
    ));
    assert!(
        f.supervisor.get("other", "web").is_err(),
        "namespaces are apart"
    );

    let deleting = f.supervisor.delete("default", "web", None).await.unwrap();
    assert_eq!(deleting.metadata.deletion_grace_period_seconds, Some(1));
    assert!(deleting.metadata.deletion_timestamp.is_some());
    wait_for(&f, "gone", |pods| pods.is_empty()).await;
    assert_eq!(f.rt.sandbox_count(), 0);
}

#[tokio::test]
async fn an_invalid_pod_is_rejected_and_nothing_is_created() {
    let f = fixture();
    let bad = pod("
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - {name: app}
");
    let err = f.supervisor.create("default", bad).await.unwrap_err();
    let ApiError::Invalid(message) = err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("spec.containers[0].image: Required value"),
        "{message}"
    );
    assert!(f.supervisor.list(None).is_empty());
    assert!(f.rt.calls().is_empty());
}

#[tokio::test]
async fn an_exec_runs_in_the_named_container() {
    let f = fixture();
    f.rt.exec_result(
        "app",
        berth_runtime::ExecOutput {
            exit_code: 3,
            stdout: b"hi\n".to_vec(),
            stderr: Vec::new(),
        },
    );
    f.supervisor.create("default", pod(WEB)).await.unwrap();
    wait_for(&f, "Running", |pods| {
        pods.iter().any(|p| phase(p) == "Running")
    })
    .await;
    let out = f
        .supervisor
        .exec("default", "web", None, vec!["echo".into(), "hi".into()])
        .await
        .unwrap();
    assert_eq!((out.exit_code, out.stdout.as_slice()), (3, &b"hi\n"[..]));
    let err = f
        .supervisor
        .exec("default", "web", Some("nope"), vec!["true".into()])
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::BadRequest(_)), "{err:?}");
}

fn agent_config(dir: &std::path::Path) -> AgentConfig {
    AgentConfig {
        root_dir: dir.join("root"),
        log_dir: dir.join("logs"),
        manifest_dir: dir.join("manifests"),
        socket: dir.join("berth.sock"),
        node_name: "node".into(),
        ..AgentConfig::default()
    }
}

/// `berth_agent::run` on a task.
struct Agent {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Agent {
    /// Starts one and waits until it is ready.
    async fn start(config: AgentConfig, rt: FakeRuntime) -> Self {
        let shutdown = CancellationToken::new();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            berth_agent::run(config, rt, token, move || {
                let _ = ready_tx.send(());
            })
            .await
            .unwrap();
        });
        ready_rx.await.expect("agent became ready");
        Self { shutdown, task }
    }

    /// Cancels it and waits for a clean exit.
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

/// An agent config under `dir` with [`WEB`] as a static manifest; returns
/// the manifest's path too.
fn with_web_manifest(dir: &std::path::Path) -> (AgentConfig, std::path::PathBuf) {
    let config = agent_config(dir);
    std::fs::create_dir_all(&config.manifest_dir).unwrap();
    let manifest = config.manifest_dir.join("web.yaml");
    std::fs::write(&manifest, WEB).unwrap();
    (config, manifest)
}

/// Runs an agent until it has started a container, then stops it: the
/// pod is left running in `rt`.
async fn run_until_a_start(config: &AgentConfig, rt: &FakeRuntime) {
    let agent = Agent::start(config.clone(), rt.clone()).await;
    rt.wait_for_calls(|calls| calls.iter().any(|c| matches!(c, Call::Start { .. })))
        .await;
    agent.stop().await;
}

fn count(rt: &FakeRuntime, wanted: fn(&Call) -> bool) -> usize {
    rt.calls().iter().filter(|c| wanted(c)).count()
}

#[tokio::test]
async fn static_pods_survive_an_agent_restart_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (config, manifest) = with_web_manifest(dir.path());
    let rt = runtime();

    run_until_a_start(&config, &rt).await;
    assert_eq!(rt.sandbox_count(), 1, "the pod outlives the agent");

    let agent = Agent::start(config.clone(), rt.clone()).await;
    // The restarted agent adopts the pod; removing the manifest then stops it.
    std::fs::remove_file(&manifest).unwrap();
    rt.wait_for_calls(|calls| {
        calls
            .iter()
            .any(|c| matches!(c, Call::RemoveSandbox { .. }))
    })
    .await;
    assert_eq!(count(&rt, |c| matches!(c, Call::CreateSandbox { .. })), 1);
    assert_eq!(count(&rt, |c| matches!(c, Call::Start { .. })), 1);
    agent.stop().await;
}

#[tokio::test]
async fn pods_nobody_claims_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (config, manifest) = with_web_manifest(dir.path());
    let rt = runtime();
    run_until_a_start(&config, &rt).await;

    // Deleted while the agent was down.
    std::fs::remove_file(&manifest).unwrap();
    let agent = Agent::start(config, rt.clone()).await;
    assert_eq!(rt.sandbox_count(), 0);
    assert!(rt.containers().is_empty());
    agent.stop().await;
}

#[tokio::test]
async fn deleting_a_static_pod_through_the_api_leaves_it_running() {
    let f = fixture();
    let mut static_pod = pod(WEB);
    berth_api::defaults::apply_defaults(&mut static_pod);
    static_pod.metadata.uid = Some("static-1".into());
    static_pod.metadata.annotations = Some(
        [(
            "kubernetes.io/config.source".to_string(),
            "file".to_string(),
        )]
        .into(),
    );
    f.supervisor
        .apply_file(std::path::Path::new("/m/web.yaml"), vec![static_pod]);
    wait_for(&f, "Running", |pods| {
        pods.iter().any(|p| phase(p) == "Running")
    })
    .await;
    let mut changes = f.supervisor.watch();
    let deleted = f
        .supervisor
        .delete("default", "web", Some(0))
        .await
        .unwrap();
    assert!(deleted.metadata.creation_timestamp.is_some());
    assert!(matches!(
        changes.recv().await,
        Ok(berth_agent::WatchEvent::Deleted(_))
    ));
    assert!(matches!(
        changes.recv().await,
        Ok(berth_agent::WatchEvent::Added(_))
    ));
    let again = f.supervisor.get("default", "web").unwrap();
    assert!(again.metadata.deletion_timestamp.is_none());
    assert!(!f
        .rt
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Signal { .. })));
}

#[tokio::test]
async fn a_pod_with_a_forbidden_sysctl_is_rejected_and_never_runs() {
    let f = fixture();
    let forbidden = pod("
apiVersion: v1
kind: Pod
metadata: {name: tuned}
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    sysctls: [{name: net.core.somaxconn, value: '1024'}]
  containers:
  - {name: app, image: busybox}
");
    let created = f.supervisor.create("default", forbidden).await.unwrap();
    let status = created.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.reason.as_deref(), Some("SysctlForbidden"));
    assert_eq!(
        status.message.as_deref(),
        Some(r#"Pod was rejected: forbidden sysctl: "net.core.somaxconn" not allowlisted"#)
    );
    let events = f.supervisor.events(Some("default"));
    let event = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("SysctlForbidden"))
        .expect("a SysctlForbidden event");
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(
        event.message.as_deref(),
        Some(r#"forbidden sysctl: "net.core.somaxconn" not allowlisted"#)
    );
    assert_eq!(f.rt.sandbox_count(), 0, "nothing was started");
    assert!(!f
        .rt
        .calls()
        .iter()
        .any(|c| matches!(c, Call::CreateSandbox { .. })));

    // Deleting it removes it at once: there is nothing to stop.
    f.supervisor.delete("default", "tuned", None).await.unwrap();
    wait_for(&f, "the rejected pod gone", |pods| pods.is_empty()).await;
}

/// A pod as the manifest source hands it over, with `uid`.
fn static_pod_with_uid(yaml: &str, uid: &str) -> Pod {
    let mut p = pod(yaml);
    p.metadata.uid = Some(uid.into());
    p.metadata.name = Some("web-node".into());
    p.metadata.namespace = Some("default".into());
    p.metadata.annotations = Some([("kubernetes.io/config.source".into(), "file".into())].into());
    p
}

#[tokio::test]
async fn invalid_static_pods_are_refused_and_nothing_is_made() {
    let f = fixture();
    let file = std::path::Path::new("/m/web.yaml");
    // A UID that would put the pod's directories outside the root.
    f.supervisor
        .apply_file(file, vec![static_pod_with_uid(WEB, "../../escape")]);
    // A pod the API would refuse (a container name that is no DNS label).
    let bad_name = WEB.replace("name: app", "name: App_1");
    f.supervisor
        .apply_file(file, vec![static_pod_with_uid(&bad_name, "static-1")]);
    let many: String = (0..=berth_api::validation::MAX_CONTAINERS_PER_POD)
        .map(|i| format!("  - {{name: c{i}, image: busybox}}\n"))
        .collect();
    let too_big = WEB.replace("  - {name: app, image: busybox}\n", &many);
    f.supervisor
        .apply_file(file, vec![static_pod_with_uid(&too_big, "static-2")]);
    // An admitted pod is in the store at once.
    assert!(f.supervisor.list(None).is_empty());

    // The file, once valid, starts its pod.
    f.supervisor
        .apply_file(file, vec![static_pod_with_uid(WEB, "static-3")]);
    wait_for(&f, "Running", |pods| {
        pods.iter().any(|p| phase(p) == "Running")
    })
    .await;
}

#[tokio::test]
async fn an_api_pod_whose_uid_is_not_a_plain_name_is_rejected_and_writes_nothing() {
    let f = fixture();
    let mut bad = pod(WEB);
    bad.metadata.namespace = Some("default".into());
    bad.metadata.uid = Some("../../escape".into());
    f.supervisor
        .on_cluster_event(berth_agent::cluster::ClusterPodEvent::Changed(bad));
    let pods = f.supervisor.list(None);
    assert_eq!(pods.len(), 1, "{pods:#?}");
    assert_eq!(phase(&pods[0]), "Failed");
    let status = pods[0].status.as_ref().unwrap();
    assert_eq!(status.reason.as_deref(), Some("UnsupportedPodSpec"));
    assert!(
        status.message.as_deref().unwrap().contains("metadata.uid"),
        "{status:?}"
    );
    assert!(f.rt.calls().is_empty(), "nothing ran: {:?}", f.rt.calls());
    let escaped = f._dir.path().join("escape");
    assert!(!escaped.exists());
}

#[tokio::test]
async fn an_api_pod_update_stores_its_new_generation_for_the_status() {
    use berth_agent::cluster::ClusterPodEvent;
    let f = fixture();
    let mut web = pod(WEB);
    web.metadata.namespace = Some("default".into());
    web.metadata.uid = Some("uid-web".into());
    web.metadata.generation = Some(1);
    f.supervisor
        .on_cluster_event(ClusterPodEvent::Changed(web.clone()));
    wait_for(&f, "the pod running", |pods| {
        pods.iter().any(|p| phase(p) == "Running")
    })
    .await;

    // `kubectl patch` of activeDeadlineSeconds: the API server bumps the
    // generation.
    let mut patched = web;
    patched.metadata.generation = Some(2);
    patched.spec.as_mut().unwrap().active_deadline_seconds = Some(600);
    f.supervisor
        .on_cluster_event(ClusterPodEvent::Changed(patched.clone()));
    let stored = f.supervisor.list(None).remove(0);
    assert_eq!(stored.metadata.generation, Some(2), "{stored:#?}");

    // A change of the generation alone is taken too.
    patched.metadata.generation = Some(3);
    f.supervisor
        .on_cluster_event(ClusterPodEvent::Changed(patched));
    let stored = f.supervisor.list(None).remove(0);
    assert_eq!(stored.metadata.generation, Some(3));
}

#[tokio::test]
async fn a_replace_through_the_api_cannot_set_the_generation() {
    let f = fixture();
    let created = f.supervisor.create("default", pod(WEB)).await.unwrap();
    let mut replacement = created.clone();
    replacement.metadata.generation = Some(99);
    replacement.spec.as_mut().unwrap().active_deadline_seconds = Some(600);
    let replaced = f
        .supervisor
        .replace("default", "web", replacement)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.generation, created.metadata.generation);
}
