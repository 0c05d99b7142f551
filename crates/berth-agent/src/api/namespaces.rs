//! `GET /api/v1/namespaces[/{name}]`: a standalone node has no Namespace
//! objects, so it shows the ones that exist for it: `default` and every
//! namespace that has a pod, each `Active`.

use std::collections::BTreeSet;

use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::body::json_response;
use super::routes::{Context, Query, Reply};
use super::status::Failure;
use super::table::{wants_table, IncludeObject};
use crate::service::PodService;

fn names<S: PodService>(cx: &Context<S>) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = cx
        .service
        .list(None)
        .into_iter()
        .filter_map(|pod| pod.metadata.namespace)
        .collect();
    names.insert("default".into());
    names
}

fn namespace(name: &str) -> Value {
    json!({
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

pub(crate) fn list<S: PodService>(cx: &Context<S>, headers: &HeaderMap, query: &Query) -> Reply {
    let items: Vec<Value> = names(cx).iter().map(|n| namespace(n)).collect();
    if wants_table(headers) {
        let include = IncludeObject::from_query(query)?;
        return Ok(json_response(StatusCode::OK, &table(&items, include)));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": "0"}, "items": items}),
    ))
}

pub(crate) fn get<S: PodService>(
    cx: &Context<S>,
    name: &str,
    headers: &HeaderMap,
    query: &Query,
) -> Reply {
    if !names(cx).contains(name) {
        return Err(
            Failure::not_found(format!("namespaces \"{name}\" not found"))
                .for_kind("namespaces", name),
        );
    }
    let item = namespace(name);
    if wants_table(headers) {
        let include = IncludeObject::from_query(query)?;
        return Ok(json_response(StatusCode::OK, &table(&[item], include)));
    }
    Ok(json_response(StatusCode::OK, &item))
}

/// printNamespace's columns: NAME, STATUS, AGE (unknown: nothing records
/// when a namespace began).
fn table(items: &[Value], include: IncludeObject) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|ns| {
            let object = match include {
                IncludeObject::None => Value::Null,
                IncludeObject::Object => ns.clone(),
                IncludeObject::Metadata => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": ns["metadata"]}),
            };
            json!({"cells": [ns["metadata"]["name"], "Active", "<unknown>"], "object": object})
        })
        .collect();
    let column = |name: &str| json!({"name": name, "type": "string", "format": if name == "Name" {"name"} else {""}, "description": "", "priority": 0});
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "0"},
        "columnDefinitions": [column("Name"), column("Status"), column("Age")],
        "rows": rows,
    })
}
