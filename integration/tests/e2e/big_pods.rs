//! Pods with many containers: berth's limit on containers per pod.

use berth_integration::*;
use serde_json::Value;

/// A pod with `n` containers `c0`..`c{n-1}` that sleep.
fn big_pod(name: &str, n: usize) -> Value {
    let containers = (0..n)
        .map(|i| sh_container(&format!("c{i}"), "exec sleep 3600"))
        .collect();
    let mut pod = pod(name, "Always", containers);
    pod["spec"]["terminationGracePeriodSeconds"] = 1.into();
    pod
}

#[tokio::test]
async fn a_pod_over_the_container_limit_is_refused_naming_the_field() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let mut pod = big_pod("huge", 200);
    pod["spec"]["initContainers"] = (0..51)
        .map(|i| sh_container(&format!("init{i}"), "true"))
        .collect();
    let out = agent.apply_yaml_output(&manifest(&pod)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a pod of 251 containers was accepted"
    );
    assert!(
        stderr.contains(r#""huge" is invalid: spec.containers: Forbidden: a pod may have at most 250 containers, initContainers included"#)
            && stderr.contains("this one has 251"),
        "{stderr}"
    );
    assert_eq!(list_pods(&agent).await, Vec::<Value>::new());
    assert_eq!(ctr_list(&agent, "containers"), Vec::<String>::new());
}
