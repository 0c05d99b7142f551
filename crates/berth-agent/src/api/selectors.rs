//! `labelSelector` and `fieldSelector` on pod lists and watches, as the API
//! server reads them (apimachinery's `labels.Parse` and `fields.Parse`, and
//! the pod fields of `pkg/registry/core/pod` `ToSelectableFields`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::routes::Query;
use super::status::Failure;

/// Both selectors of a request.
#[derive(Debug, Default)]
pub(crate) struct PodSelector {
    labels: Vec<LabelRequirement>,
    fields: Vec<FieldRequirement>,
}

impl PodSelector {
    pub(crate) fn from_query(query: &Query) -> Result<Self, Failure> {
        Ok(Self {
            labels: parse_labels(query.get("labelSelector").unwrap_or_default())?,
            fields: parse_fields(query.get("fieldSelector").unwrap_or_default())?,
        })
    }

    pub(crate) fn matches(&self, pod: &Pod) -> bool {
        let empty = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        self.labels.iter().all(|r| r.matches(labels))
            && self
                .fields
                .iter()
                .all(|r| (pod_field(pod, &r.key) == r.value) == r.equal)
    }
}

#[derive(Debug, PartialEq)]
enum LabelRequirement {
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl LabelRequirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Exists(key) => labels.contains_key(key),
            Self::NotExists(key) => !labels.contains_key(key),
            Self::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            // As in apimachinery: a pod without the label is "not in" any set.
            Self::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
        }
    }
}

/// Splits at commas outside parentheses.
fn terms(selector: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_labels(selector: &str) -> Result<Vec<LabelRequirement>, Failure> {
    let invalid = |term: &str, why: &str| {
        Failure::bad_request(format!(
            "unable to parse requirement: {why}: {term:?} in label selector {selector:?}"
        ))
    };
    let mut requirements = Vec::new();
    for term in terms(selector) {
        let requirement = if let Some(key) = term.strip_prefix('!') {
            LabelRequirement::NotExists(
                label_key(key.trim()).ok_or_else(|| invalid(term, "invalid key"))?,
            )
        } else if let Some((key, value)) = term.split_once("!=") {
            let key = label_key(key).ok_or_else(|| invalid(term, "invalid key"))?;
            LabelRequirement::NotIn(key, vec![value.trim().to_owned()])
        } else if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
            let key = label_key(key).ok_or_else(|| invalid(term, "invalid key"))?;
            LabelRequirement::In(key, vec![value.trim().to_owned()])
        } else if let Some(open) = term.find('(') {
            let close = term
                .strip_suffix(')')
                .ok_or_else(|| invalid(term, "found no closing ')'"))?;
            let values = close[open + 1..]
                .split(',')
                .map(|v| v.trim().to_owned())
                .collect();
            let mut words = term[..open].split_whitespace();
            let (key, op) = (words.next(), words.next());
            let key = key
                .and_then(label_key)
                .ok_or_else(|| invalid(term, "invalid key"))?;
            match (op, words.next()) {
                (Some("in"), None) => LabelRequirement::In(key, values),
                (Some("notin"), None) => LabelRequirement::NotIn(key, values),
                _ => return Err(invalid(term, "expected in or notin")),
            }
        } else {
            LabelRequirement::Exists(label_key(term).ok_or_else(|| invalid(term, "invalid key"))?)
        };
        requirements.push(requirement);
    }
    Ok(requirements)
}

/// A label key: `[prefix/]name`, the characters labels allow.
fn label_key(key: &str) -> Option<String> {
    let key = key.trim();
    let ok = !key.is_empty()
        && key.len() <= 317
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    ok.then(|| key.to_owned())
}

#[derive(Debug, PartialEq)]
struct FieldRequirement {
    key: String,
    value: String,
    equal: bool,
}

/// The pod fields the API server selects on.
const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];

fn parse_fields(selector: &str) -> Result<Vec<FieldRequirement>, Failure> {
    let mut requirements = Vec::new();
    for term in terms(selector) {
        let (key, value, equal) = if let Some((k, v)) = term.split_once("!=") {
            (k, v, false)
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            (k, v, true)
        } else {
            return Err(Failure::bad_request(format!(
                "invalid selector: '{selector}'; can't understand '{term}'"
            )));
        };
        let key = key.trim();
        if !POD_FIELDS.contains(&key) {
            return Err(Failure::bad_request(format!(
                "field label not supported: {key}"
            )));
        }
        requirements.push(FieldRequirement {
            key: key.to_owned(),
            value: value.trim().to_owned(),
            equal,
        });
    }
    Ok(requirements)
}

fn pod_field(pod: &Pod, key: &str) -> String {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let text = |s: Option<&String>| s.cloned().unwrap_or_default();
    match key {
        "metadata.name" => text(pod.metadata.name.as_ref()),
        "metadata.namespace" => text(pod.metadata.namespace.as_ref()),
        "spec.nodeName" => text(spec.and_then(|s| s.node_name.as_ref())),
        "spec.restartPolicy" => text(spec.and_then(|s| s.restart_policy.as_ref())),
        "spec.schedulerName" => text(spec.and_then(|s| s.scheduler_name.as_ref())),
        "spec.serviceAccountName" => text(spec.and_then(|s| s.service_account_name.as_ref())),
        "spec.hostNetwork" => spec
            .and_then(|s| s.host_network)
            .unwrap_or(false)
            .to_string(),
        "status.phase" => text(status.and_then(|s| s.phase.as_ref())),
        "status.podIP" => text(status.and_then(|s| s.pod_ip.as_ref())),
        "status.nominatedNodeName" => text(status.and_then(|s| s.nominated_node_name.as_ref())),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(labels: &[(&str, &str)], phase: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        pod.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        pod
    }

    fn selects(labels: &str, fields: &str, pod: &Pod) -> bool {
        PodSelector {
            labels: parse_labels(labels).unwrap(),
            fields: parse_fields(fields).unwrap(),
        }
        .matches(pod)
    }

    #[test]
    fn label_selectors_as_apimachinery_reads_them() {
        let web = pod(&[("app", "web"), ("tier", "front")], "Running");
        assert!(selects("app=web", "", &web));
        assert!(selects("app==web,tier", "", &web));
        assert!(!selects("app!=web", "", &web));
        assert!(selects("app in (db, web),!missing", "", &web));
        assert!(!selects("tier notin (front,back)", "", &web));
        assert!(selects("missing notin (x)", "", &web));
        assert!(!selects("missing", "", &web));
        assert!(parse_labels("app in (web").is_err());
        assert!(parse_labels("a b").is_err());
    }

    #[test]
    fn field_selectors_on_pod_fields() {
        let web = pod(&[], "Running");
        assert!(selects("", "status.phase=Running,metadata.name=web", &web));
        assert!(!selects("", "status.phase!=Running", &web));
        assert!(selects("", "spec.nodeName=", &web));
        let err = parse_fields("spec.image=x").unwrap_err();
        assert!(format!("{err:?}").contains("field label not supported: spec.image"));
    }
}
