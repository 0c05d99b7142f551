//! An agent killed in the middle of pod starts: the next agent releases what
//! the interrupted starts made (network attachments and addresses, namespace
//! pins, mounts, shims, loggers), answers its API at once, and once the pods
//! are deleted the host is as clean as before.

use std::time::Duration;

use berth_integration::*;
use berth_testkit::mounts::mounts_under;
use tokio::time::Instant;

const PODS: usize = 10;

#[tokio::test]
async fn kill_9_during_pod_starts_leaks_nothing() {
    let Some((_containerd, mut agent)) = setup().await else {
        return;
    };
    let names: Vec<String> = (0..PODS).map(|i| format!("s{i}")).collect();
    for round in 0..2 {
        let docs: Vec<String> = names
            .iter()
            .map(|n| {
                manifest(&pod(
                    n,
                    "Always",
                    vec![sh_container("main", "exec sleep 3600")],
                ))
            })
            .collect();
        agent.apply_yaml(&docs.join("\n---\n")).await;
        // Killed as soon as the first sandbox is being made: the other
        // starts are at every step between namespaces and a running task.
        let deadline = Instant::now() + START_TIMEOUT;
        while sandboxes_pinned(&agent) == 0 {
            assert!(Instant::now() < deadline, "no sandbox is being made");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        agent.kill().await;

        let relaunched = Instant::now();
        agent.launch().await;
        let api_back = relaunched.elapsed();
        eprintln!("round {round}: API back {api_back:?} after the crash");
        assert!(
            api_back < Duration::from_secs(3),
            "API took {api_back:?} to come back"
        );
        for name in &names {
            wait_running(&agent, name).await;
        }
        assert_eq!(allocated_ips(&agent).len(), PODS, "one address per pod");
        assert_eq!(veths(&agent), PODS, "one veth per pod");
        assert_eq!(sandboxes_pinned(&agent), PODS, "one set of pins per pod");

        for name in &names {
            agent
                .cli_ok(&["delete", "pod", name, "--grace-period", "0"])
                .await;
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while !list_pods(&agent).await.is_empty() {
            assert!(Instant::now() < deadline, "pods not deleted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(ctr_list(&agent, "containers"), Vec::<String>::new());
        assert_eq!(ctr_list(&agent, "tasks"), Vec::<String>::new());
        assert_eq!(
            allocated_ips(&agent),
            Vec::<String>::new(),
            "addresses left"
        );
        assert_eq!(veths(&agent), 0, "veths left");
        assert_eq!(sandboxes_pinned(&agent), 0, "namespace pins left");
        assert_eq!(
            mounts_under(&agent.root_dir()),
            Vec::<std::path::PathBuf>::new(),
            "mounts left"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while shims(agent.namespace()) + loggers(agent.namespace()) > 0 {
            assert!(
                Instant::now() < deadline,
                "{} shims and {} loggers left",
                shims(agent.namespace()),
                loggers(agent.namespace())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
