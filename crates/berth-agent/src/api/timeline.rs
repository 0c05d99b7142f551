//! `GET /apis/berth.io/v1/namespaces/{ns}/pods/{name}/timeline`: the pod's
//! lifecycle timeline, oldest first, with millisecond timestamps.

use berth_pod::TimelineEntry;
use hyper::StatusCode;
use serde::Serialize;

use super::body::json_response;
use super::routes::{Context, Reply};
use super::status::Failure;
use crate::service::PodService;

/// The wire form of one entry.
#[derive(Debug, Serialize)]
struct Item<'a> {
    /// RFC 3339, UTC, always three fractional digits.
    time: String,
    container: Option<&'a str>,
    step: &'static str,
    detail: &'a str,
}

#[derive(Debug, Serialize)]
struct TimelineList<'a> {
    items: Vec<Item<'a>>,
}

fn item(entry: &TimelineEntry) -> Item<'_> {
    Item {
        time: format!("{:.3}", entry.at),
        container: entry.container.as_deref(),
        step: entry.step.as_str(),
        detail: &entry.detail,
    }
}

pub(crate) fn get<S: PodService>(cx: &Context<S>, namespace: &str, name: &str) -> Reply {
    let entries = cx
        .service
        .timeline(namespace, name)
        .map_err(|e| Failure::from(e).for_pod(name))?;
    let list = TimelineList {
        items: entries.iter().map(item).collect(),
    };
    Ok(json_response(StatusCode::OK, &list))
}

#[cfg(test)]
mod tests {
    use berth_pod::TimelineStep;

    use super::*;

    #[test]
    fn entries_have_millisecond_rfc3339_times() {
        let entry = TimelineEntry {
            at: "2024-05-01T11:00:00Z".parse().unwrap(),
            container: None,
            step: TimelineStep::SandboxCreated,
            detail: String::new(),
        };
        let value = serde_json::to_value(item(&entry)).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"time": "2024-05-01T11:00:00.000Z", "container": null,
                               "step": "SandboxCreated", "detail": ""})
        );
        let entry = TimelineEntry {
            at: "2024-05-01T11:00:01.25Z".parse().unwrap(),
            container: Some("app".into()),
            step: TimelineStep::Sigkill,
            detail: "grace period 2s over".into(),
        };
        let value = serde_json::to_value(item(&entry)).unwrap();
        assert_eq!(value["time"], "2024-05-01T11:00:01.250Z");
        assert_eq!(value["container"], "app");
        assert_eq!(value["step"], "SIGKILL");
    }
}
