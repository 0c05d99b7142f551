//! Graceful node shutdown (docs/kubelet-semantics.md §13): with
//! `shutdownGracePeriodSeconds`, stopping the agent terminates every pod the
//! way a delete does; without it, the pods outlive the agent (agent_restart.rs).

use berth_integration::*;
use berth_testkit::{AgentOptions, AgentProcess, PrivateContainerd};

#[tokio::test]
async fn stopping_the_agent_with_a_shutdown_grace_terminates_the_pods() {
    let Some(containerd) = PrivateContainerd::start_or_skip().await else {
        return;
    };
    let mut agent = AgentProcess::start_with(
        &containerd,
        AgentOptions {
            extra_args: vec!["--shutdown-grace-period-seconds".into(), "5".into()],
            ..AgentOptions::default()
        },
    )
    .await;
    let stamps = tempfile::tempdir().unwrap();
    let mut spec = pod(
        "drained",
        "Always",
        vec![sh_container(
            "main",
            &format!(
                "trap '{}; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
                stamp("TERM")
            ),
        )],
    );
    let file = mount_stamps(&mut spec, stamps.path());
    agent.apply_yaml(&manifest(&spec)).await;
    wait_running(&agent, "drained").await;
    wait_log_contains(&agent, "drained", "main", "ready").await;

    agent.stop().await;

    let got = read_stamps(&file);
    assert!(
        got.iter().any(|s| s.name == "TERM"),
        "the container got its stop signal: {got:?}"
    );
    let containers = agent.ctr(&["containers", "list", "-q"]);
    assert!(
        String::from_utf8_lossy(&containers.stdout)
            .trim()
            .is_empty(),
        "nothing left in containerd: {}",
        String::from_utf8_lossy(&containers.stdout)
    );
}
