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
