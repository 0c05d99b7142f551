//! The `kubectl get pods` table: columns of `printPod`, laid out by the
//! remembering tabwriter so watch rows line up with the first table.

use berth_api::kubectl::{age_column, ready_column, restarts_column, status_column};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

use crate::tabwriter::TabWriter;

#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    /// `-o wide`.
    pub wide: bool,
    /// `-A`: a NAMESPACE column first.
    pub with_namespace: bool,
    /// `--show-labels`: a LABELS column last.
    pub show_labels: bool,
}

pub fn headers(options: TableOptions) -> Vec<&'static str> {
    let mut headers = Vec::new();
    if options.with_namespace {
        headers.push("NAMESPACE");
    }
    headers.extend(["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    if options.wide {
        headers.extend(["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]);
    }
    if options.show_labels {
        headers.push("LABELS");
    }
    headers
}

pub fn pod_row(pod: &Pod, options: TableOptions, now: Timestamp) -> Vec<String> {
    let mut row = Vec::new();
    if options.with_namespace {
        row.push(pod.metadata.namespace.clone().unwrap_or_default());
    }
    row.push(pod.metadata.name.clone().unwrap_or_default());
    row.push(ready_column(pod));
    row.push(status_column(pod));
    row.push(restarts_column(pod, now));
    row.push(age_column(pod, now));
    if options.wide {
        row.extend(berth_api::kubectl::wide_columns(pod));
    }
    if options.show_labels {
        row.push(labels_column(pod));
    }
    row
}

/// kubectl's LABELS: `key=value` sorted by key, comma-joined; `<none>`.
fn labels_column(pod: &Pod) -> String {
    match &pod.metadata.labels {
        Some(labels) if !labels.is_empty() => labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".to_string(),
    }
}

/// A table printed in pieces (`get -w`): the header once, before the first
/// row, and columns that only ever widen.
pub struct PodTable {
    options: TableOptions,
    writer: TabWriter,
    header_printed: bool,
}

impl PodTable {
    pub fn new(options: TableOptions) -> Self {
        Self {
            options,
            writer: TabWriter::for_table(),
            header_printed: false,
        }
    }

    /// The text for these pods; empty when there are none.
    pub fn print(&mut self, pods: &[Pod], now: Timestamp) -> String {
        if pods.is_empty() {
            return String::new();
        }
        if !self.header_printed {
            self.writer.write_str(&headers(self.options).join("\t"));
            self.writer.write_str("\n");
            self.header_printed = true;
        }
        for pod in pods {
            self.writer
                .write_str(&pod_row(pod, self.options, now).join("\t"));
            self.writer.write_str("\n");
        }
        self.writer.flush()
    }
}

/// A whole table at once.
#[cfg(test)]
pub fn pod_table(pods: &[Pod], options: TableOptions, now: Timestamp) -> String {
    PodTable::new(options).print(pods, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn running(name: &str, ns: &str) -> Pod {
        pod(json!({
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2024-05-01T11:59:15Z"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "nodeName": "node-1"},
            "status": {
                "phase": "Running",
                "podIP": "10.88.0.5",
                "podIPs": [{"ip": "10.88.0.5"}],
                "containerStatuses": [{
                    "name": "c", "image": "busybox", "imageID": "", "ready": true, "restartCount": 2,
                    "state": {"running": {"startedAt": "2024-05-01T11:59:50Z"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:49Z"}}
                }]
            }
        }))
    }

    #[test]
    fn table_is_padded_like_kubectl() {
        let pods = [
            running("web", "default"),
            running("a-much-longer-name", "default"),
        ];
        assert_eq!(
            pod_table(&pods, TableOptions::default(), now()),
            "NAME                 READY   STATUS    RESTARTS      AGE\n\
             web                  1/1     Running   2 (11s ago)   45s\n\
             a-much-longer-name   1/1     Running   2 (11s ago)   45s\n"
        );
    }

    #[test]
    fn all_namespaces_and_wide_add_columns() {
        let mut pending = pod(json!({
            "metadata": {"name": "p", "namespace": "kube-system", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}],
                      "readinessGates": [{"conditionType": "example.com/gate"}]},
            "status": {"phase": "Pending"}
        }));
        pending.metadata.labels = None;
        let options = TableOptions {
            wide: true,
            with_namespace: true,
            ..TableOptions::default()
        };
        assert_eq!(
            pod_table(&[running("web", "default"), pending], options, now()),
            "NAMESPACE     NAME   READY   STATUS    RESTARTS      AGE   IP          NODE     NOMINATED NODE   READINESS GATES\n\
             default       web    1/1     Running   2 (11s ago)   45s   10.88.0.5   node-1   <none>           <none>\n\
             kube-system   p      0/1     Pending   0             60m   <none>      <none>   <none>           0/1\n"
        );
    }

    #[test]
    fn watch_rows_keep_the_first_widths_and_no_second_header() {
        let mut table = PodTable::new(TableOptions::default());
        let first = table.print(&[running("a-much-longer-name", "default")], now());
        assert!(first.starts_with("NAME                 READY"));
        let row = table.print(&[running("web", "default")], now());
        assert_eq!(
            row,
            "web                  1/1     Running   2 (11s ago)   45s\n"
        );
        assert_eq!(table.print(&[], now()), "");
    }

    #[test]
    fn show_labels_adds_sorted_labels_last() {
        let mut labelled = running("web", "default");
        labelled.metadata.labels = Some(
            [("tier", "front"), ("app", "web")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
        );
        let mut bare = running("db", "default");
        bare.metadata.labels = None;
        let options = TableOptions {
            show_labels: true,
            ..TableOptions::default()
        };
        let table = pod_table(&[labelled, bare], options, now());
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].ends_with("AGE   LABELS"), "{table}");
        assert!(lines[1].ends_with("app=web,tier=front"), "{table}");
        assert!(lines[2].ends_with("<none>"), "{table}");
    }
}
