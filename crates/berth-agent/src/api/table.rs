//! Server-side printing: a `meta.k8s.io/v1` `Table` instead of the list
//! when the client asks for one (`Accept: application/json;as=Table;...`),
//! as kubectl get does. The columns and cells are the API server's
//! (`pkg/printers/internalversion` printPod and printEvent); every cell is
//! sent, the `-o wide` ones included, and kubectl picks by priority.

use http::{header, HeaderMap};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use berth_api::kubectl::{
    age_column, ready_column, restarts_column, status_column, timestamp_since, wide_columns,
};

use super::routes::Query;
use super::status::Failure;

/// Whether the request asks for a Table (meta.k8s.io v1; v1beta1 is the
/// same shape).
pub(crate) fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
        })
}

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub(crate) fn from_query(query: &Query) -> Result<Self, Failure> {
        match query.get("includeObject").unwrap_or_default() {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(Failure::bad_request(format!(
                "includeObject: Unsupported value: \"{other}\": supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }

    fn embed(self, kind: &str, object: Value) -> Value {
        match self {
            Self::None => Value::Null,
            Self::Object => {
                let mut object = object;
                object["kind"] = kind.into();
                object["apiVersion"] = "v1".into();
                object
            }
            Self::Metadata => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object["metadata"],
            }),
        }
    }
}

fn column(name: &str, priority: i32, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": "string", "format": format, "description": description, "priority": priority})
}

fn pod_columns() -> Vec<Value> {
    vec![
        column("Name", 0, "Name must be unique within a namespace."),
        column("Ready", 0, "The aggregate readiness state of this pod for accepting traffic."),
        column("Status", 0, "The aggregate status of the containers in this pod."),
        column("Restarts", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
        column("Age", 0, "CreationTimestamp is a timestamp representing the server time when this object was created."),
        column("IP", 1, "podIP address allocated to the pod."),
        column("Node", 1, "NodeName indicates in which node this pod is scheduled."),
        column("Nominated Node", 1, "nominatedNodeName is set only when this pod preempts other pods on the node."),
        column("Readiness Gates", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
    ]
}

fn pod_row(pod: &Pod, include: IncludeObject, now: Timestamp) -> Value {
    let mut cells = vec![
        pod.metadata.name.clone().unwrap_or_default(),
        ready_column(pod),
        status_column(pod),
        restarts_column(pod, now),
        age_column(pod, now),
    ];
    cells.extend(wide_columns(pod));
    let object = serde_json::to_value(pod).unwrap_or_default();
    json!({"cells": cells, "object": include.embed("Pod", object)})
}

/// A Table of pods, as a list or one object is printed.
pub(crate) fn pods(pods: &[Pod], resource_version: &str, include: IncludeObject) -> Value {
    let now = Timestamp::now();
    let rows: Vec<Value> = pods.iter().map(|p| pod_row(p, include, now)).collect();
    table(pod_columns(), rows, resource_version)
}

/// A watch event's object: a Table of the one pod, with no column
/// definitions after the first (as the API server sends them).
pub(crate) fn pod_event_table(pod: &Pod, include: IncludeObject, first: bool) -> Value {
    let columns = if first { pod_columns() } else { Vec::new() };
    let row = pod_row(pod, include, Timestamp::now());
    let rv = pod.metadata.resource_version.clone().unwrap_or_default();
    table(columns, vec![row], &rv)
}

fn table(columns: Vec<Value>, rows: Vec<Value>, resource_version: &str) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

pub(crate) fn events(events: &[Event], include: IncludeObject) -> Value {
    let now = Timestamp::now();
    let columns = vec![
        column("Last Seen", 0, "The time at which the most recent occurrence of this event was recorded."),
        column("Type", 0, "Type of this event (Normal, Warning), new types could be added in the future"),
        column("Reason", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
        column("Object", 0, "The object that this event is about."),
        column("Subobject", 1, "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
        column("Source", 1, "The component reporting this event. Should be a short machine understandable string."),
        column("Message", 0, "A human-readable description of the status of this operation."),
        column("First Seen", 1, "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
        column("Count", 1, "The number of times this event has occurred."),
        column("Name", 1, "Name must be unique within a namespace."),
    ];
    let rows = events.iter().map(|event| {
        let first = event
            .first_timestamp
            .as_ref()
            .map(|t| t.0)
            .or(event.event_time.as_ref().map(|t| t.0));
        let first_seen = timestamp_since(first, now);
        let mut last_seen = match &event.last_timestamp {
            Some(t) => timestamp_since(Some(t.0), now),
            None => first_seen.clone(),
        };
        let mut count = event.count.unwrap_or(0);
        if let Some(series) = &event.series {
            last_seen = timestamp_since(series.last_observed_time.as_ref().map(|t| t.0), now);
            count = series.count.unwrap_or(0);
        } else if count == 0 {
            count = 1;
        }
        let object = &event.involved_object;
        let kind = object.kind.clone().unwrap_or_default().to_lowercase();
        let target = match object.name.as_deref() {
            Some(name) if !name.is_empty() => format!("{kind}/{name}"),
            _ => kind,
        };
        let cells = json!([
            last_seen,
            event.type_.clone().unwrap_or_default(),
            event.reason.clone().unwrap_or_default(),
            target,
            object.field_path.clone().unwrap_or_default(),
            event_source(event),
            event.message.clone().unwrap_or_default().trim(),
            first_seen,
            count,
            event.metadata.name.clone().unwrap_or_default(),
        ]);
        let value = serde_json::to_value(event).unwrap_or_default();
        json!({"cells": cells, "object": include.embed("Event", value)})
    });
    table(columns, rows.collect(), "")
}

/// printers' `formatEventSource`: `component, host`.
fn event_source(event: &Event) -> String {
    let source = event.source.clone().unwrap_or_default();
    let component = source
        .component
        .filter(|c| !c.is_empty())
        .or_else(|| event.reporting_component.clone())
        .unwrap_or_default();
    match source.host.filter(|h| !h.is_empty()) {
        Some(host) => format!("{component}, {host}"),
        None => component,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_row_has_every_column_and_its_metadata() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        pod.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        let table = pods(&[pod], "7", IncludeObject::Metadata);
        assert_eq!(table["columnDefinitions"].as_array().unwrap().len(), 9);
        let row = &table["rows"][0];
        assert_eq!(row["cells"].as_array().unwrap().len(), 9);
        assert_eq!(row["cells"][0], "web");
        assert_eq!(row["cells"][5], "<none>");
        assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(row["object"]["metadata"]["labels"]["app"], "web");
        assert_eq!(table["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn table_is_asked_for_with_its_media_type_parameters() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert!(wants_table(&headers));
        headers.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wants_table(&headers));
    }
}
