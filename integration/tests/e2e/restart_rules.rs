//! A container's own `restartPolicy` and `restartPolicyRules`
//! (ContainerRestartRules, on by default since v1.35): a matching rule
//! restarts the container under a pod that never restarts, and a
//! container-level policy overrides the pod's.

use berth_integration::*;
use serde_json::{json, Value};

/// A container that exits with `first` on its first run and `then` after,
/// counting its runs in the `runs` emptyDir.
fn counting(name: &str, first: i32, then: i32) -> Value {
    let script = format!(
        "n=$(cat /runs/{name} 2>/dev/null || echo 0); n=$((n+1)); echo $n > /runs/{name}; \
         [ $n -ge 2 ] && exit {then}; exit {first}"
    );
    let mut c = sh_container(name, &script);
    c["volumeMounts"] = json!([{ "name": "runs", "mountPath": "/runs" }]);
    c
}

#[tokio::test]
async fn rules_and_container_policies_override_the_pods_never() {
    let Some((_containerd, agent)) = setup_with_back_off(1, 2).await else {
        return;
    };
    // Restarted on 42 only: 42, then 3, which no rule matches.
    let mut ruled = counting("ruled", 42, 3);
    ruled["restartPolicy"] = json!("Never");
    ruled["restartPolicyRules"] = json!([
        { "action": "Restart", "exitCodes": { "operator": "In", "values": [42] } }
    ]);
    // OnFailure of its own: 1, then 0.
    let mut own = counting("own", 1, 0);
    own["restartPolicy"] = json!("OnFailure");
    // The pod's Never: one run.
    let once = counting("once", 0, 0);
    let mut spec = pod("rules", "Never", vec![ruled, own, once]);
    spec["spec"]["volumes"] = json!([{ "name": "runs", "emptyDir": {} }]);
    agent.apply_yaml(&manifest(&spec)).await;

    let done = wait_terminal(&agent, "rules").await;
    // `ruled` ended with a failure no rule restarts.
    assert_eq!(phase(&done), "Failed", "{done:#}");
    let ended = |name: &str, code: i64, last: Option<i64>| {
        let status = container_status(&done, name).expect("status");
        assert_eq!(
            status["state"]["terminated"]["exitCode"], code,
            "{name}: {done:#}"
        );
        let restarts = i64::from(last.is_some());
        assert_eq!(status["restartCount"], restarts, "{name}: {done:#}");
        let previous = &status["lastState"]["terminated"]["exitCode"];
        assert_eq!(previous.as_i64(), last, "{name}: {done:#}");
    };
    ended("ruled", 3, Some(42));
    ended("own", 0, Some(1));
    ended("once", 0, None);
}

#[tokio::test]
async fn a_container_policy_always_keeps_a_never_pod_running() {
    let Some((_containerd, agent)) = setup_with_back_off(1, 2).await else {
        return;
    };
    let mut again = sh_container("again", "exit 0");
    again["restartPolicy"] = json!("Always");
    agent
        .apply_yaml(&manifest(&pod("always-inside", "Never", vec![again])))
        .await;
    let looping = agent
        .wait_for(
            "default",
            "always-inside",
            "restarted twice",
            START_TIMEOUT,
            |p| restart_count(p, "again") >= 2,
        )
        .await;
    // Exited containers about to restart keep the pod Running.
    assert_eq!(phase(&looping), "Running", "{looping:#}");
}

#[tokio::test]
async fn an_init_container_rule_restarts_it_under_never() {
    let Some((_containerd, agent)) = setup_with_back_off(1, 2).await else {
        return;
    };
    let mut setup_c = counting("setup", 7, 0);
    setup_c["restartPolicy"] = json!("Never");
    setup_c["restartPolicyRules"] = json!([
        { "action": "Restart", "exitCodes": { "operator": "In", "values": [7] } }
    ]);
    let mut app = sh_container("app", "exit 0");
    app["volumeMounts"] = json!([{ "name": "runs", "mountPath": "/runs" }]);
    let mut spec = pod("init-rule", "Never", vec![app]);
    spec["spec"]["initContainers"] = json!([setup_c]);
    spec["spec"]["volumes"] = json!([{ "name": "runs", "emptyDir": {} }]);
    agent.apply_yaml(&manifest(&spec)).await;
    let done = wait_terminal(&agent, "init-rule").await;
    assert_eq!(phase(&done), "Succeeded", "{done:#}");
    let init = init_container_status(&done, "setup").expect("init status");
    assert_eq!(init["restartCount"], 1, "{done:#}");
    assert_eq!(init["lastState"]["terminated"]["exitCode"], 7, "{done:#}");
}

/// The status of `name`, an init or a regular container.
fn any_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    container_status(pod, name).or_else(|| init_container_status(pod, name))
}

fn running(pod: &Value, name: &str) -> bool {
    any_status(pod, name).is_some_and(|s| s["state"]["running"].is_object())
}

#[tokio::test]
async fn a_restart_all_containers_rule_runs_the_pod_again_from_its_first_init_container() {
    let Some((_containerd, agent)) = setup_with_back_off(1, 2).await else {
        return;
    };
    // The upstream e2e's pod: `source` exits 42 on its first run only.
    let init = sh_container("init", "exit 0");
    let mut sidecar = sh_container("sidecar", "sleep 10000");
    sidecar["restartPolicy"] = json!("Always");
    let mut source = sh_container(
        "source",
        "if [ -f /mnt/restart-complete ]; then sleep 10000; else touch /mnt/restart-complete; exit 42; fi",
    );
    source["restartPolicy"] = json!("Never");
    source["restartPolicyRules"] = json!([
        { "action": "RestartAllContainers", "exitCodes": { "operator": "In", "values": [42] } }
    ]);
    source["volumeMounts"] = json!([{ "name": "workdir", "mountPath": "/mnt" }]);
    let regular = sh_container("regular", "sleep 10000");
    let mut spec = pod("restart-all", "Never", vec![source, regular]);
    spec["spec"]["initContainers"] = json!([init, sidecar]);
    spec["spec"]["volumes"] = json!([{ "name": "workdir", "emptyDir": {} }]);
    spec["spec"]["terminationGracePeriodSeconds"] = json!(1);
    agent.apply_yaml(&manifest(&spec)).await;

    let names = ["init", "sidecar", "source", "regular"];
    let restarted = agent
        .wait_for(
            "default",
            "restart-all",
            "every container restarted, source and regular running",
            START_TIMEOUT,
            |p| {
                names.iter().all(|n| {
                    any_status(p, n).is_some_and(|s| s["restartCount"].as_i64() >= Some(1))
                }) && running(p, "source")
                    && running(p, "regular")
            },
        )
        .await;
    assert_eq!(phase(&restarted), "Running", "{restarted:#}");
    for name in names {
        let status = any_status(&restarted, name).expect("status");
        assert_eq!(status["restartCount"], 1, "{name}: {restarted:#}");
        let last = &status["lastState"]["terminated"];
        assert_eq!(
            last["reason"], "RestartingAllContainers",
            "{name}: {restarted:#}"
        );
        assert_eq!(last["exitCode"], 137, "{name}: {restarted:#}");
    }
    let condition = restarted["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "AllContainersRestarting")
        .cloned()
        .unwrap_or_default();
    assert_eq!(condition["status"], "False", "{restarted:#}");
    let initialized = restarted["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Initialized")
        .cloned()
        .unwrap_or_default();
    assert_eq!(initialized["status"], "True", "{restarted:#}");
}
