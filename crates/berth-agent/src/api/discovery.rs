//! What kubectl asks before anything else: `/version`, the discovery
//! documents (`/api`, `/api/v1`, `/apis`; aggregated, `apidiscovery.k8s.io/v2`,
//! when the client asks for it as kubectl does) and the OpenAPI v3 index.
//!
//! The OpenAPI v3 document for `api/v1` describes only the pod PATCH
//! operation: that is what kubectl reads to learn that the server validates
//! fields itself (`fieldValidation`) and takes strategic merge patches. It
//! carries no schemas, so `kubectl apply` computes its patch from the Pod
//! type compiled into kubectl (its documented fallback) and `kubectl
//! explain` has nothing to show.

use http::{header, HeaderMap, Response, StatusCode};
use serde_json::{json, Value};

use super::body::{full, json_response, Body};

/// The Kubernetes API version berth's routes follow.
const MAJOR: &str = "1";
const MINOR: &str = "37";
pub(crate) const GIT_VERSION: &str = concat!("v1.37.2+berth-", env!("CARGO_PKG_VERSION"));

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// One resource of the core group as discovery lists it.
struct Served {
    name: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    verbs: &'static [&'static str],
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    /// (subresource, kind, verbs)
    subresources: &'static [(&'static str, &'static str, &'static [&'static str])],
}

const SERVED: &[Served] = &[
    Served {
        name: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        short_names: &["po"],
        categories: &["all"],
        subresources: &[
            ("ephemeralcontainers", "Pod", &["get", "patch", "update"]),
            ("exec", "PodExecOptions", &["create", "get"]),
            ("log", "Pod", &["get"]),
        ],
    },
    Served {
        name: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        verbs: &["get", "list"],
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
    },
    Served {
        name: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        verbs: &["get", "list"],
        short_names: &["ns"],
        categories: &[],
        subresources: &[],
    },
];

pub(crate) fn version() -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({
            "major": MAJOR,
            "minor": MINOR,
            "emulationMajor": MAJOR,
            "emulationMinor": MINOR,
            "minCompatibilityMajor": MAJOR,
            "minCompatibilityMinor": "36",
            "gitVersion": GIT_VERSION,
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "",
            "goVersion": "",
            "compiler": "rustc",
            "platform": format!("linux/{}", go_arch()),
        }),
    )
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Whether the client takes the aggregated discovery document.
fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params.contains(&"g=apidiscovery.k8s.io")
                && params.contains(&"v=v2")
                && params.contains(&"as=APIGroupDiscoveryList")
        })
}

/// `GET /api`.
pub(crate) fn core(headers: &HeaderMap) -> Response<Body> {
    if wants_aggregated(headers) {
        let resources: Vec<Value> = SERVED.iter().map(aggregated_resource).collect();
        return aggregated(json!([{
            "metadata": {"creationTimestamp": null},
            "versions": [{"version": "v1", "resources": resources, "freshness": "Current"}],
        }]));
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [],
        }),
    )
}

/// `GET /apis`: no groups besides the core one.
pub(crate) fn groups(headers: &HeaderMap) -> Response<Body> {
    if wants_aggregated(headers) {
        return aggregated(json!([]));
    }
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
    )
}

/// `GET /api/v1`.
pub(crate) fn core_v1() -> Response<Body> {
    let mut resources = Vec::new();
    for served in SERVED {
        resources.push(json!({
            "name": served.name,
            "singularName": served.singular,
            "namespaced": served.namespaced,
            "kind": served.kind,
            "verbs": served.verbs,
            "shortNames": served.short_names,
            "categories": served.categories,
        }));
        for (sub, kind, verbs) in served.subresources {
            resources.push(json!({
                "name": format!("{}/{sub}", served.name),
                "singularName": "",
                "namespaced": served.namespaced,
                "kind": kind,
                "verbs": verbs,
            }));
        }
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "v1",
            "resources": resources,
        }),
    )
}

fn aggregated_resource(served: &Served) -> Value {
    let kind = |kind: &str| json!({"group": "", "version": "v1", "kind": kind});
    let subresources: Vec<Value> = served
        .subresources
        .iter()
        .map(|(sub, sub_kind, verbs)| {
            json!({"subresource": sub, "responseKind": kind(sub_kind), "verbs": verbs})
        })
        .collect();
    json!({
        "resource": served.name,
        "responseKind": kind(served.kind),
        "scope": if served.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": served.singular,
        "verbs": served.verbs,
        "shortNames": served.short_names,
        "categories": served.categories,
        "subresources": subresources,
    })
}

fn aggregated(items: Value) -> Response<Body> {
    let list = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    });
    Response::builder()
        .header(header::CONTENT_TYPE, AGGREGATED)
        .body(full(list.to_string()))
        .unwrap_or_default()
}

/// `GET /openapi/v3`: the index of per-group-version documents.
pub(crate) fn openapi_v3_index() -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({"paths": {"api/v1": {"serverRelativeURL": format!("/openapi/v3/api/v1?hash={}", document_hash())}}}),
    )
}

/// `GET /openapi/v3/api/v1`.
pub(crate) fn openapi_v3_core() -> Response<Body> {
    json_response(StatusCode::OK, &openapi_v3_document())
}

fn document_hash() -> String {
    use sha2::Digest;
    let digest = sha2::Sha512::digest(openapi_v3_document().to_string());
    hex::encode(&digest[..16]).to_uppercase()
}

fn openapi_v3_document() -> Value {
    let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let body = json!({"schema": {"type": "object"}});
    // What `kubectl explain` looks for to tell a resource's kind.
    let list = |kind: &str, id: &str| {
        json!({"get": {
            "operationId": id,
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": "list",
            "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": kind},
        }})
    };
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": {
            "/api/v1/namespaces/{namespace}/pods": list("Pod", "listCoreV1NamespacedPod"),
            "/api/v1/namespaces/{namespace}/events": list("Event", "listCoreV1NamespacedEvent"),
            "/api/v1/namespaces": list("Namespace", "listCoreV1Namespace"),
            "/api/v1/namespaces/{namespace}/pods/{name}": {
                "patch": {
                    "operationId": "patchCoreV1NamespacedPod",
                    // No dryRun: berth has no dry run, so kubectl must not offer one.
                    "parameters": [query("fieldManager"), query("fieldValidation"), query("force")],
                    // Strategic merge patches are served, but not named
                    // here: the schemas below lack the patch-merge-key
                    // extensions, and kubectl must compute its patches
                    // from its built-in types instead.
                    "requestBody": {"content": {
                        "application/apply-patch+yaml": body,
                        "application/json-patch+json": body,
                        "application/merge-patch+json": body,
                    }, "required": true},
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Pod"},
                },
            },
        },
        "components": {"schemas": super::openapi_schemas::schemas()},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_only_when_asked() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
                .parse()
                .unwrap(),
        );
        assert!(wants_aggregated(&headers));
        headers.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wants_aggregated(&headers));
    }
}
