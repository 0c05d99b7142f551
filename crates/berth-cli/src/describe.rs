//! `describe pod NAME`: kubectl describe's text (kubectl pkg/describe
//! `describePod`), tab-separated and laid out by Go's tabwriter rules.

use std::collections::BTreeMap;
use std::io::Write;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStatus, Event, Pod, Probe, Toleration, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

use crate::apply::LAST_APPLIED;
use crate::client::{encode_query, pod_path, pods_path, Client};
use crate::get_events::events_path;
use crate::tabwriter::TabWriter;
use crate::target::{decode_pod, pod_names, sorted_items};
use crate::{namespace_or_default, VerbResult};

mod containers;
mod events;
mod metadata;
mod volumes;

use containers::containers;
use events::describe_events;
use metadata::{annotations_multiline, labels_multiline, tolerations};
use volumes::volumes;

#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// `pods [NAME...]` or `pod/NAME`
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    args: Vec<String>,
    /// The namespace of the request
    #[arg(short, long)]
    namespace: Option<String>,
}

pub async fn run(client: &Client, args: DescribeArgs, out: &mut (dyn Write + Send)) -> VerbResult {
    let names = pod_names(&args.args)?;
    let namespace = namespace_or_default(args.namespace.as_deref());
    let pods = if names.is_empty() {
        sorted_items(client.get(&pods_path(Some(&namespace))).await?)
    } else {
        let mut pods = Vec::new();
        for name in &names {
            pods.push(client.get(&pod_path(&namespace, name)).await?);
        }
        pods
    };
    for (i, value) in pods.iter().enumerate() {
        let pod = decode_pod(value)?;
        let events = events_of(client, &pod).await;
        let text = describe_pod(&pod, &events, Timestamp::now(), &TimeZone::system());
        if i > 0 {
            out.write_all(b"\n\n")?;
        }
        out.write_all(text.as_bytes())?;
    }
    Ok(0)
}

/// The pod's events; none when the agent keeps none (404) or fails.
async fn events_of(client: &Client, pod: &Pod) -> Vec<Event> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let path = format!(
        "{}?fieldSelector={}",
        events_path(Some(namespace)),
        encode_query(&format!("involvedObject.uid={uid}"))
    );
    match client.get(&path).await {
        Ok(Value::Object(mut list)) => match list.remove("items") {
            Some(items) => serde_json::from_value(items).unwrap_or_default(),
            None => Vec::new(),
        },
        Ok(_) => Vec::new(),
        Err(e) => {
            tracing::debug!(%e, "no events for the pod");
            Vec::new()
        }
    }
}

/// kubectl's PrefixWriter over a describe tabwriter.
struct Writer {
    tab: TabWriter,
    out: String,
}

impl Writer {
    fn new() -> Self {
        Self {
            tab: TabWriter::for_describe(),
            out: String::new(),
        }
    }

    fn write(&mut self, level: usize, text: &str) {
        self.tab.write_str(&"  ".repeat(level));
        self.tab.write_str(text);
    }

    fn flush(&mut self) {
        let text = self.tab.flush();
        self.out.push_str(&text);
    }

    fn finish(mut self) -> String {
        self.flush();
        self.out
    }
}

/// kubectl's `translateTimestampSince`: apimachinery's `HumanDuration`.
fn since(at: Timestamp, now: Timestamp) -> String {
    let seconds = now.as_second() - at.as_second();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    berth_api::kubectl::human_duration(std::time::Duration::from_secs(seconds.max(0) as u64))
}

/// Go's `time.RFC1123Z` in `tz`, as describe prints times.
fn rfc1123z(at: &Timestamp, tz: &TimeZone) -> String {
    at.to_zoned(tz.clone())
        .strftime("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

fn bool_text(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// The whole `kubectl describe pod` text.
pub fn describe_pod(pod: &Pod, events: &[Event], now: Timestamp, tz: &TimeZone) -> String {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let mut w = Writer::new();
    w.write(
        0,
        &format!("Name:\t{}\n", meta.name.as_deref().unwrap_or_default()),
    );
    w.write(
        0,
        &format!(
            "Namespace:\t{}\n",
            meta.namespace.as_deref().unwrap_or_default()
        ),
    );
    if let Some(priority) = spec.priority {
        w.write(0, &format!("Priority:\t{priority}\n"));
    }
    if let Some(class) = spec
        .priority_class_name
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        w.write(0, &format!("Priority Class Name:\t{class}\n"));
    }
    if let Some(class) = spec.runtime_class_name.as_deref().filter(|s| !s.is_empty()) {
        w.write(0, &format!("Runtime Class Name:\t{class}\n"));
    }
    if let Some(sa) = spec
        .service_account_name
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        w.write(0, &format!("Service Account:\t{sa}\n"));
    }
    match spec.node_name.as_deref().filter(|s| !s.is_empty()) {
        Some(node) => w.write(
            0,
            &format!(
                "Node:\t{node}/{}\n",
                status.host_ip.as_deref().unwrap_or_default()
            ),
        ),
        None => w.write(0, "Node:\t<none>\n"),
    }
    if let Some(start) = &status.start_time {
        w.write(0, &format!("Start Time:\t{}\n", rfc1123z(&start.0, tz)));
    }
    labels_multiline(&mut w, "Labels", meta.labels.as_ref());
    annotations_multiline(&mut w, "Annotations", meta.annotations.as_ref());
    let phase = status.phase.clone().unwrap_or_default();
    match &meta.deletion_timestamp {
        Some(at) if phase != "Failed" && phase != "Succeeded" => {
            w.write(
                0,
                &format!("Status:\tTerminating (lasts {})\n", since(at.0, now)),
            );
            let grace = meta.deletion_grace_period_seconds.unwrap_or_default();
            w.write(0, &format!("Termination Grace Period:\t{grace}s\n"));
        }
        _ => w.write(0, &format!("Status:\t{phase}\n")),
    }
    if let Some(reason) = status.reason.as_deref().filter(|s| !s.is_empty()) {
        w.write(0, &format!("Reason:\t{reason}\n"));
    }
    if let Some(message) = status.message.as_deref().filter(|s| !s.is_empty()) {
        w.write(0, &format!("Message:\t{message}\n"));
    }
    if let Some(profile) = spec
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
    {
        w.write(0, &format!("SeccompProfile:\t{}\n", profile.type_));
        if profile.type_ == "Localhost" {
            let localhost = profile.localhost_profile.as_deref().unwrap_or_default();
            w.write(0, &format!("LocalhostProfile:\t{localhost}\n"));
        }
    }
    w.write(
        0,
        &format!("IP:\t{}\n", status.pod_ip.as_deref().unwrap_or_default()),
    );
    match status.pod_ips.as_deref().unwrap_or_default() {
        [] => w.write(0, "IPs:\t<none>\n"),
        ips => {
            w.write(0, "IPs:\n");
            for ip in ips {
                w.write(1, &format!("IP:\t{}\n", ip.ip));
            }
        }
    }
    if let Some(owner) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    {
        w.write(
            0,
            &format!("Controlled By:\t{}/{}\n", owner.kind, owner.name),
        );
    }
    if let Some(nominated) = status
        .nominated_node_name
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        w.write(0, &format!("NominatedNodeName:\t{nominated}\n"));
    }
    let init = spec.init_containers.clone().unwrap_or_default();
    if !init.is_empty() {
        containers(
            &mut w,
            pod,
            "Init Containers",
            &init,
            status.init_container_statuses.as_deref(),
            tz,
        );
    }
    containers(
        &mut w,
        pod,
        "Containers",
        &spec.containers,
        status.container_statuses.as_deref(),
        tz,
    );
    let conditions = status.conditions.clone().unwrap_or_default();
    if let Some(gates) = spec.readiness_gates.as_deref().filter(|g| !g.is_empty()) {
        w.write(0, "Readiness Gates:\n  Type\tStatus\n");
        for gate in gates {
            let state = conditions
                .iter()
                .find(|c| c.type_ == gate.condition_type)
                .map_or("<none>", |c| c.status.as_str());
            w.write(1, &format!("{} \t{} \n", gate.condition_type, state));
        }
    }
    if !conditions.is_empty() {
        w.write(0, "Conditions:\n  Type\tStatus\n");
        for c in &conditions {
            w.write(1, &format!("{} \t{} \n", c.type_, c.status));
        }
    }
    volumes(&mut w, spec.volumes.as_deref().unwrap_or_default());
    w.write(0, &format!("QoS Class:\t{}\n", qos_class(pod)));
    labels_multiline(&mut w, "Node-Selectors", spec.node_selector.as_ref());
    tolerations(&mut w, spec.tolerations.clone().unwrap_or_default());
    describe_events(&mut w, events, now);
    w.finish()
}

/// The pod's QoS class: the status's, else computed as kubectl's `GetPodQOS`.
pub fn qos_class(pod: &Pod) -> String {
    if let Some(class) = pod
        .status
        .as_ref()
        .and_then(|s| s.qos_class.clone())
        .filter(|c| !c.is_empty())
    {
        return class;
    }
    pod.spec
        .as_ref()
        .map_or("BestEffort", berth_api::status::qos_class)
        .to_string()
}

#[cfg(test)]
mod tests;
