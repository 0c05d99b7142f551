//! The `kubectl get events` table: the columns of printers.go `printEvent`.
//!
//! LAST SEEN is the age of `lastTimestamp` only (`series.lastObservedTime`
//! for series events); the `5s (x3 over 40s)` folding belongs to `kubectl
//! describe` and `kubectl events`, not to `get`. `-o wide` adds the count.

use berth_api::kubectl::timestamp_since as since;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;

use crate::table::TableOptions;
use crate::tabwriter::TabWriter;

pub fn headers(options: TableOptions) -> Vec<&'static str> {
    let mut headers = Vec::new();
    if options.with_namespace {
        headers.push("NAMESPACE");
    }
    if options.wide {
        headers.extend([
            "LAST SEEN",
            "TYPE",
            "REASON",
            "OBJECT",
            "SUBOBJECT",
            "SOURCE",
            "MESSAGE",
            "FIRST SEEN",
            "COUNT",
            "NAME",
        ]);
    } else {
        headers.extend(["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
    }
    headers
}

fn text(value: Option<&String>) -> &str {
    value.map_or("", String::as_str)
}

fn first_non_empty<'a>(a: Option<&'a String>, b: Option<&'a String>) -> &'a str {
    match text(a) {
        "" => text(b),
        s => s,
    }
}

/// `kind/name` with the kind lowercased, or the kind alone without a name.
fn object_column(event: &Event) -> String {
    let object = &event.involved_object;
    let kind = text(object.kind.as_ref()).to_lowercase();
    match text(object.name.as_ref()) {
        "" => kind,
        name => format!("{kind}/{name}"),
    }
}

/// `component, host` (reporting controller and instance as fallbacks).
fn source_column(event: &Event) -> String {
    let source = event.source.as_ref();
    let component = first_non_empty(
        source.and_then(|s| s.component.as_ref()),
        event.reporting_component.as_ref(),
    );
    match first_non_empty(
        source.and_then(|s| s.host.as_ref()),
        event.reporting_instance.as_ref(),
    ) {
        "" => component.to_string(),
        instance => format!("{component}, {instance}"),
    }
}

pub fn event_row(event: &Event, options: TableOptions, now: Timestamp) -> Vec<String> {
    let first_seen = match &event.first_timestamp {
        Some(t) => since(Some(t.0), now),
        None => since(event.event_time.as_ref().map(|t| t.0), now),
    };
    let mut last_seen = match &event.last_timestamp {
        Some(t) => since(Some(t.0), now),
        None => first_seen.clone(),
    };
    let mut count = event.count.unwrap_or(0);
    if let Some(series) = &event.series {
        last_seen = since(series.last_observed_time.as_ref().map(|t| t.0), now);
        count = series.count.unwrap_or(0);
    } else if count == 0 {
        // Events of the events.k8s.io API leave a singleton's count unset.
        count = 1;
    }

    let mut row = Vec::new();
    if options.with_namespace {
        row.push(text(event.metadata.namespace.as_ref()).to_string());
    }
    row.extend([
        last_seen,
        text(event.type_.as_ref()).to_string(),
        text(event.reason.as_ref()).to_string(),
        object_column(event),
    ]);
    let message = text(event.message.as_ref()).trim().to_string();
    if options.wide {
        row.extend([
            text(event.involved_object.field_path.as_ref()).to_string(),
            source_column(event),
            message,
            first_seen,
            count.to_string(),
            text(event.metadata.name.as_ref()).to_string(),
        ]);
    } else {
        row.push(message);
    }
    row
}

/// The events table, header first; empty when there are no events.
pub fn event_table(events: &[Event], options: TableOptions, now: Timestamp) -> String {
    if events.is_empty() {
        return String::new();
    }
    let mut writer = TabWriter::for_table();
    writer.write_str(&headers(options).join("\t"));
    writer.write_str("\n");
    for event in events {
        writer.write_str(&event_row(event, options, now).join("\t"));
        writer.write_str("\n");
    }
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::reasons;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn event(name: &str, ns: &str, extra: serde_json::Value) -> Event {
        let mut value = json!({
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": ns, "uid": "u1"},
            "reason": reasons::STARTED,
            "message": "Started container app\n",
            "type": "Normal",
            "count": 1,
            "firstTimestamp": "2024-05-01T11:59:20Z",
            "lastTimestamp": "2024-05-01T11:59:20Z",
            "source": {"component": "kubelet"},
        });
        for (k, v) in extra.as_object().unwrap() {
            value[k] = v.clone();
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn table_has_kubectls_columns_and_padding() {
        let events = [
            event("web.1", "default", json!({})),
            event(
                "web.2",
                "default",
                json!({"type": "Warning", "reason": reasons::BACK_OFF,
                       "message": "Back-off restarting failed container app",
                       "involvedObject": {"kind": "Pod", "name": "a-longer-pod", "fieldPath": "spec.containers{app}"}}),
            ),
        ];
        assert_eq!(
            event_table(&events, TableOptions::default(), now()),
            "LAST SEEN   TYPE      REASON    OBJECT             MESSAGE\n\
             40s         Normal    Started   pod/web            Started container app\n\
             40s         Warning   BackOff   pod/a-longer-pod   Back-off restarting failed container app\n"
        );
    }

    #[test]
    fn repeated_events_show_only_the_last_occurrence_unless_wide() {
        let repeated = event(
            "web.1",
            "default",
            json!({"count": 3, "firstTimestamp": "2024-05-01T11:55:00Z", "lastTimestamp": "2024-05-01T11:59:55Z"}),
        );
        let row = event_row(&repeated, TableOptions::default(), now());
        assert_eq!(row[0], "5s", "get events does not fold counts: {row:?}");
        let wide = TableOptions {
            wide: true,
            with_namespace: false,
            ..TableOptions::default()
        };
        assert_eq!(
            event_row(&repeated, wide, now()),
            [
                "5s",
                "Normal",
                "Started",
                "pod/web",
                "",
                "kubelet",
                "Started container app",
                "5m",
                "3",
                "web.1"
            ]
        );
    }

    #[test]
    fn missing_times_fall_back_like_print_event() {
        let no_last = event("a", "default", json!({"lastTimestamp": null}));
        assert_eq!(
            event_row(&no_last, TableOptions::default(), now())[0],
            "40s"
        );
        let micro = event(
            "b",
            "default",
            json!({"firstTimestamp": null, "lastTimestamp": null, "count": null,
                   "eventTime": "2024-05-01T11:58:00.000000Z"}),
        );
        let wide = TableOptions {
            wide: true,
            with_namespace: false,
            ..TableOptions::default()
        };
        let row = event_row(&micro, wide, now());
        assert_eq!((row[0].as_str(), row[8].as_str()), ("2m", "1"));
        let series = event(
            "c",
            "default",
            json!({"series": {"count": 7, "lastObservedTime": "2024-05-01T11:59:58.000000Z"}}),
        );
        let row = event_row(&series, wide, now());
        assert_eq!((row[0].as_str(), row[8].as_str()), ("2s", "7"));
        let unknown = event(
            "d",
            "default",
            json!({"firstTimestamp": null, "lastTimestamp": null}),
        );
        assert_eq!(
            event_row(&unknown, TableOptions::default(), now())[0],
            "<unknown>"
        );
    }

    #[test]
    fn all_namespaces_puts_the_namespace_first() {
        let options = TableOptions {
            wide: false,
            with_namespace: true,
            ..TableOptions::default()
        };
        let events = [
            event("web.1", "default", json!({})),
            event("web.2", "kube-system", json!({})),
        ];
        assert_eq!(
            event_table(&events, options, now()),
            "NAMESPACE     LAST SEEN   TYPE     REASON    OBJECT    MESSAGE\n\
             default       40s         Normal   Started   pod/web   Started container app\n\
             kube-system   40s         Normal   Started   pod/web   Started container app\n"
        );
    }

    #[test]
    fn object_without_name_and_source_with_host() {
        let e = event(
            "n",
            "default",
            json!({"involvedObject": {"kind": "Node"}, "source": {"component": "kubelet", "host": "node-1"}}),
        );
        let wide = TableOptions {
            wide: true,
            with_namespace: false,
            ..TableOptions::default()
        };
        let row = event_row(&e, wide, now());
        assert_eq!(
            (row[3].as_str(), row[5].as_str()),
            ("node", "kubelet, node-1")
        );
    }
}
