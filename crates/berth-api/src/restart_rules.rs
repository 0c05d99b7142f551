//! Whether an exited container runs again, with its own `restartPolicy` and
//! `restartPolicyRules` (ContainerRestartRules, beta and on by default in
//! v1.35; the `RestartAllContainers` action, RestartAllContainersOnContainerExits,
//! beta in v1.36): the kubelet's `podutil.ContainerShouldRestart`,
//! `FindMatchingContainerRestartRule` and `AllContainersCouldRestart`
//! (`pkg/api/v1/pod/util.go`).

use k8s_openapi::api::core::v1::{Container, ContainerRestartRule, PodSpec};

/// The rule action that restarts the container that exited.
pub const RESTART: &str = "Restart";
/// The rule action that restarts every container of the pod, from its
/// first init container, in the same sandbox.
pub const RESTART_ALL_CONTAINERS: &str = "RestartAllContainers";

/// The `reason` of a container the kubelet stopped for a
/// `RestartAllContainers` restart: it runs again, whatever its policy.
pub const RESTARTING_ALL_CONTAINERS: &str = "RestartingAllContainers";

/// The message of a container removed for a `RestartAllContainers` restart,
/// on its waiting state and its last (terminated) state.
pub const RESTARTING_ALL_CONTAINERS_MESSAGE: &str =
    "The container is removed because RestartAllContainers in place";

/// The first of the container's rules whose exit codes match `exit_code`.
/// A rule without exit codes or with another operator matches nothing.
pub fn matching_rule(container: &Container, exit_code: i32) -> Option<&ContainerRestartRule> {
    container
        .restart_policy_rules
        .iter()
        .flatten()
        .find(|rule| {
            let Some(codes) = &rule.exit_codes else {
                return false;
            };
            let listed = codes.values.iter().flatten().any(|&v| v == exit_code);
            match codes.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            }
        })
}

/// The action of the rule matching `exit_code`, when the container sets its
/// own `restartPolicy` (rules count only then, as in the kubelet).
pub fn matching_action(container: &Container, exit_code: i32) -> Option<&str> {
    container.restart_policy.as_ref()?;
    matching_rule(container, exit_code).map(|r| r.action.as_str())
}

/// Whether `container`, exited with `exit_code`, runs again: the first
/// matching rule's action, else the container's `restartPolicy`, else the
/// pod's (default `Always`).
pub fn container_should_restart(container: &Container, spec: &PodSpec, exit_code: i32) -> bool {
    if let Some(policy) = container.restart_policy.as_deref() {
        if let Some(RESTART | RESTART_ALL_CONTAINERS) = matching_action(container, exit_code) {
            return true;
        }
        match policy {
            "Always" => return true,
            "OnFailure" => return exit_code != 0,
            "Never" => return false,
            _ => {}
        }
    }
    match spec.restart_policy.as_deref() {
        Some("OnFailure") => exit_code != 0,
        Some("Never") => false,
        _ => true,
    }
}

/// Whether a running container killed by the kubelet (a failed probe) runs
/// again: its own `restartPolicy` is not `Never`, else the pod's is not (the
/// rules need an exit code, which a running container has not).
pub fn restarts_after_kill(container: Option<&Container>, spec: &PodSpec) -> bool {
    match container.and_then(|c| c.restart_policy.as_deref()) {
        Some(policy) => policy != "Never",
        None => spec.restart_policy.as_deref() != Some("Never"),
    }
}

/// Some container of the pod has a `RestartAllContainers` rule: any
/// container may then run again whatever its own policy.
pub fn all_containers_could_restart(spec: &PodSpec) -> bool {
    let inits = spec.init_containers.iter().flatten();
    inits.chain(&spec.containers).any(|c| {
        c.restart_policy_rules
            .iter()
            .flatten()
            .any(|r| r.action == RESTART_ALL_CONTAINERS)
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ContainerRestartRuleOnExitCodes;

    use super::*;

    fn rule(action: &str, operator: &str, values: &[i32]) -> ContainerRestartRule {
        ContainerRestartRule {
            action: action.into(),
            exit_codes: Some(ContainerRestartRuleOnExitCodes {
                operator: operator.into(),
                values: Some(values.to_vec()),
            }),
        }
    }

    fn container(policy: Option<&str>, rules: Vec<ContainerRestartRule>) -> Container {
        Container {
            name: "c".into(),
            restart_policy: policy.map(Into::into),
            restart_policy_rules: Some(rules),
            ..Default::default()
        }
    }

    fn pod(policy: &str) -> PodSpec {
        PodSpec {
            restart_policy: Some(policy.into()),
            ..Default::default()
        }
    }

    #[test]
    fn first_matching_rule_then_container_policy_then_pod_policy() {
        let rules = vec![rule(RESTART, "In", &[42]), rule(RESTART, "NotIn", &[0, 1])];
        let c = container(Some("Never"), rules);
        let never = pod("Never");
        assert!(container_should_restart(&c, &never, 42));
        assert!(container_should_restart(&c, &never, 7), "NotIn [0, 1]");
        assert!(!container_should_restart(&c, &never, 1));
        assert!(!container_should_restart(&c, &never, 0));

        let on_failure = container(Some("OnFailure"), vec![]);
        assert!(container_should_restart(&on_failure, &never, 3));
        assert!(!container_should_restart(&on_failure, &pod("Always"), 0));
        let always = container(Some("Always"), vec![]);
        assert!(container_should_restart(&always, &never, 0));

        let plain = container(None, vec![]);
        assert!(container_should_restart(&plain, &pod("Always"), 0));
        assert!(container_should_restart(&plain, &pod("OnFailure"), 1));
        assert!(!container_should_restart(&plain, &pod("OnFailure"), 0));
        assert!(!container_should_restart(&plain, &never, 1));
    }

    #[test]
    fn rules_count_only_with_a_container_policy() {
        let c = container(None, vec![rule(RESTART, "In", &[42])]);
        assert!(!container_should_restart(&c, &pod("Never"), 42));
        assert_eq!(matching_action(&c, 42), None);
    }

    #[test]
    fn restart_all_containers_restarts_and_marks_the_pod() {
        let c = container(
            Some("Never"),
            vec![rule(RESTART_ALL_CONTAINERS, "In", &[9])],
        );
        assert!(container_should_restart(&c, &pod("Never"), 9));
        assert_eq!(matching_action(&c, 9), Some(RESTART_ALL_CONTAINERS));
        let mut spec = pod("Never");
        assert!(!all_containers_could_restart(&spec));
        spec.containers.push(c);
        assert!(all_containers_could_restart(&spec));
    }

    #[test]
    fn probe_kills_follow_the_container_policy_first() {
        let never = container(Some("Never"), vec![]);
        assert!(!restarts_after_kill(Some(&never), &pod("Always")));
        let always = container(Some("Always"), vec![]);
        assert!(restarts_after_kill(Some(&always), &pod("Never")));
        assert!(!restarts_after_kill(None, &pod("Never")));
    }
}
