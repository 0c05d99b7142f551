//! The resize events' messages: a prefix, then the containers' resources,
//! the pod's generation and any error as JSON, in the field order of the
//! kubelet's `podResourceSummary` (`pkg/kubelet/events/resize.go`).

use k8s_openapi::api::core::v1::ResourceRequirements;
use serde_json::{json, Map, Value};

/// One container's entry: its name and resources.
pub(crate) struct Entry<'a> {
    pub name: &'a str,
    pub init: bool,
    pub resources: &'a ResourceRequirements,
}

fn resources_json(r: &ResourceRequirements) -> Value {
    // Go's `omitempty` drops empty lists; keys in Go's field order.
    let mut out = Map::new();
    for (key, list) in [("limits", &r.limits), ("requests", &r.requests)] {
        if let Some(list) = list.as_ref().filter(|l| !l.is_empty()) {
            out.insert(key.into(), json!(list));
        }
    }
    Value::Object(out)
}

/// `<prefix>: {"initContainers":[…],"containers":[…],"generation":N,"error":"…"}`.
pub(crate) fn message<'a>(
    prefix: &str,
    entries: impl IntoIterator<Item = Entry<'a>>,
    generation: i64,
    error: &str,
) -> String {
    let (mut init, mut regular) = (Vec::new(), Vec::new());
    for e in entries {
        let entry = format!(
            "{{\"name\":{},\"resources\":{}}}",
            json!(e.name),
            resources_json(e.resources)
        );
        if e.init {
            init.push(entry);
        } else {
            regular.push(entry);
        }
    }
    let mut fields = Vec::new();
    if !init.is_empty() {
        fields.push(format!("\"initContainers\":[{}]", init.join(",")));
    }
    if !regular.is_empty() {
        fields.push(format!("\"containers\":[{}]", regular.join(",")));
    }
    fields.push(format!("\"generation\":{generation}"));
    if !error.is_empty() {
        fields.push(format!("\"error\":{}", json!(error)));
    }
    format!("{prefix}: {{{}}}", fields.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn messages_follow_the_kubelets_summary() {
        let r = ResourceRequirements {
            limits: Some([("memory".to_string(), Quantity("200Mi".into()))].into()),
            requests: Some(
                [
                    ("memory".to_string(), Quantity("100Mi".into())),
                    ("cpu".to_string(), Quantity("100m".into())),
                ]
                .into(),
            ),
            ..Default::default()
        };
        let none = ResourceRequirements::default();
        let got = message(
            "Pod resize started",
            [
                Entry {
                    name: "c1",
                    init: false,
                    resources: &r,
                },
                Entry {
                    name: "s",
                    init: true,
                    resources: &none,
                },
            ],
            2,
            "",
        );
        assert_eq!(
            got,
            "Pod resize started: {\"initContainers\":[{\"name\":\"s\",\"resources\":{}}],\
             \"containers\":[{\"name\":\"c1\",\"resources\":{\"limits\":{\"memory\":\"200Mi\"},\
             \"requests\":{\"cpu\":\"100m\",\"memory\":\"100Mi\"}}}],\"generation\":2}"
        );
        let got = message("Pod resize error", [], 3, "boom \"x\"");
        assert_eq!(
            got,
            "Pod resize error: {\"generation\":3,\"error\":\"boom \\\"x\\\"\"}"
        );
    }
}
