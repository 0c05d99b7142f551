//! A container's own `restartPolicy` and `restartPolicyRules`, as the API
//! server's `validateContainerRestartPolicy` and
//! `validateInitContainerRestartPolicy` check them with the v1.37 default
//! gates (ContainerRestartRules and RestartAllContainersOnContainerExits on).

use k8s_openapi::api::core::v1::Container;

use super::errors::{s, FieldError};
use crate::restart_rules::{RESTART, RESTART_ALL_CONTAINERS};

const POLICIES: [&str; 3] = ["Always", "Never", "OnFailure"];
const ACTIONS: [&str; 2] = [RESTART, RESTART_ALL_CONTAINERS];
const OPERATORS: [&str; 2] = ["In", "NotIn"];
const MAX_RULES: usize = 20;
const MAX_EXIT_CODES: usize = 255;

/// A regular container's policy and rules.
pub(super) fn container(c: &Container, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let rules = c.restart_policy_rules.as_deref().unwrap_or_default();
    match c.restart_policy.as_deref() {
        None if rules.is_empty() => return errs,
        None => errs.push(FieldError::required(
            format!("{path}.restartPolicy"),
            "must specify restartPolicy when restart rules are used",
        )),
        Some(policy) if !POLICIES.contains(&policy) => errs.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            s(policy),
            &POLICIES,
        )),
        Some(_) => {}
    }
    let field = format!("{path}.restartPolicyRules");
    if rules.len() > MAX_RULES {
        errs.push(FieldError::too_many(&field, rules.len(), MAX_RULES));
    }
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if !ACTIONS.contains(&rule.action.as_str()) {
            let action = format!("{at}.action");
            errs.push(FieldError::not_supported(action, s(&rule.action), &ACTIONS));
        }
        let Some(codes) = &rule.exit_codes else {
            errs.push(FieldError::required(
                format!("{at}.exitCodes"),
                "must be specified",
            ));
            continue;
        };
        if !OPERATORS.contains(&codes.operator.as_str()) {
            let operator = format!("{at}.exitCodes.operator");
            errs.push(FieldError::not_supported(
                operator,
                s(&codes.operator),
                &OPERATORS,
            ));
        }
        let values = codes.values.as_deref().unwrap_or_default();
        if values.len() > MAX_EXIT_CODES {
            let field = format!("{at}.exitCodes.values");
            errs.push(FieldError::too_many(field, values.len(), MAX_EXIT_CODES));
        }
    }
    errs
}

/// An init container's: without a policy, no rules; with one, as a regular
/// container's (a sidecar's rules included).
pub(super) fn init_container(c: &Container, path: &str) -> Vec<FieldError> {
    let has_rules = c
        .restart_policy_rules
        .as_ref()
        .is_some_and(|r| !r.is_empty());
    if c.restart_policy.is_none() {
        if has_rules {
            return vec![FieldError::required(
                format!("{path}.restartPolicy"),
                "must specify restartPolicy when restart rules are used",
            )];
        }
        return Vec::new();
    }
    container(c, path)
}
