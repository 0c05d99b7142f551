//! The `components.schemas` of the `/openapi/v3/api/v1` document: the
//! served kinds (Pod, Event, Namespace) and all they refer to, from
//! k8s-openapi's schemas of the v1.37 API, so that `kubectl explain` reads
//! the same field docs as from an API server.

use std::sync::LazyLock;

use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

/// The schemas, made once.
pub(crate) fn schemas() -> &'static Map<String, Value> {
    static SCHEMAS: LazyLock<Map<String, Value>> = LazyLock::new(generate);
    &SCHEMAS
}

fn generate() -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let kinds = [
        (generator.subschema_for::<Pod>(), "Pod"),
        (generator.subschema_for::<Event>(), "Event"),
        (generator.subschema_for::<Namespace>(), "Namespace"),
    ];
    let mut schemas = generator.take_definitions(true);
    for (reference, kind) in kinds {
        let name = reference
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
            .unwrap_or_default()
            .to_string();
        // How kubectl finds a kind's schema.
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": "", "version": "v1", "kind": kind}]),
            );
        }
    }
    schemas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_and_what_it_refers_to_are_there_with_their_docs() {
        let schemas = schemas();
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        // References as an API server writes them, description beside.
        assert_eq!(
            pod["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
        let container = &schemas["io.k8s.api.core.v1.Container"];
        assert!(container["properties"]["restartPolicyRules"]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()));
        // Every reference resolves.
        let text = Value::Object(schemas.clone()).to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                schemas.contains_key(name),
                "{name} is referred to but missing"
            );
        }
    }
}
