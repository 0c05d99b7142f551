//! `get events [-n NS | -A] [-o wide|json|yaml|name]`: the node's v1 Events.

use std::io::Write;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use serde_json::Value;

use crate::client::{encode_query, Client, ClientError};
use crate::error::CliError;
use crate::event_table::event_table;
use crate::output::{list, name_line, to_json, to_yaml, OutputFormat};
use crate::table::TableOptions;
use crate::target::{name_of, sorted_items};
use crate::VerbResult;

/// `events`, `event` and `ev`, as kubectl resolves the resource.
pub fn is_event_type(kind: &str) -> bool {
    matches!(
        kind.to_ascii_lowercase().as_str(),
        "events" | "event" | "ev"
    )
}

/// The collection path of events: one namespace, or all of them.
pub fn events_path(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("/api/v1/namespaces/{}/events", encode_query(ns)),
        None => "/api/v1/events".to_string(),
    }
}

/// Lists events in `scope` (`None`: every namespace) and prints them.
pub async fn run(
    client: &Client,
    scope: Option<&str>,
    format: OutputFormat,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> VerbResult {
    // kubectl applies no sort of its own: rows keep the API server's order.
    let items = sorted_items(client.get(&events_path(scope)).await?);
    let text = render(items, scope.is_none(), format, Timestamp::now())?;
    out.write_all(text.as_bytes())?;
    if text.is_empty() {
        match scope {
            Some(ns) => writeln!(err, "No resources found in {ns} namespace.")?,
            None => writeln!(err, "No resources found")?,
        }
    }
    out.flush()?;
    Ok(0)
}

fn render(
    items: Vec<Value>,
    all_namespaces: bool,
    format: OutputFormat,
    now: Timestamp,
) -> Result<String, CliError> {
    Ok(match format {
        OutputFormat::Table | OutputFormat::Wide => {
            let events = items
                .iter()
                .map(|v| serde_json::from_value::<Event>(v.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CliError::Client(ClientError::Decode(e)))?;
            let options = TableOptions {
                wide: format == OutputFormat::Wide,
                with_namespace: all_namespaces,
                ..TableOptions::default()
            };
            event_table(&events, options, now)
        }
        OutputFormat::Name => items
            .iter()
            .map(|v| name_line("event", name_of(v)))
            .collect(),
        // Like `get pods`, an empty listing is still printed as a List.
        OutputFormat::Json => to_json(&list(items)),
        OutputFormat::Yaml => to_yaml(&list(items)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_and_type_names() {
        assert_eq!(
            events_path(Some("kube-system")),
            "/api/v1/namespaces/kube-system/events"
        );
        assert_eq!(events_path(None), "/api/v1/events");
        assert!(is_event_type("ev") && is_event_type("Events"));
        assert!(!is_event_type("pods"));
    }

    #[test]
    fn name_and_json_outputs() {
        let items = vec![json!({"metadata": {"name": "web.17a"}, "involvedObject": {}})];
        let now = Timestamp::now();
        assert_eq!(
            render(items.clone(), false, OutputFormat::Name, now).unwrap(),
            "event/web.17a\n"
        );
        let json: Value =
            serde_json::from_str(&render(items, false, OutputFormat::Json, now).unwrap()).unwrap();
        assert_eq!(json["kind"], "List");
        assert_eq!(json["items"][0]["metadata"]["name"], "web.17a");
    }
}
