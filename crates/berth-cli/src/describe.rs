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

fn labels_multiline(w: &mut Writer, title: &str, labels: Option<&BTreeMap<String, String>>) {
    w.write(0, &format!("{title}:\t"));
    let labels = labels.filter(|l| !l.is_empty());
    let Some(labels) = labels else {
        w.write(0, "<none>\n");
        return;
    };
    for (i, (key, value)) in labels.iter().enumerate() {
        if i > 0 {
            w.write(0, "\t");
        }
        w.write(0, &format!("{key}={value}\n"));
    }
}

const MAX_ANNOTATION_LEN: usize = 140;

fn annotations_multiline(
    w: &mut Writer,
    title: &str,
    annotations: Option<&BTreeMap<String, String>>,
) {
    w.write(0, &format!("{title}:\t"));
    let shown: Vec<(&String, &String)> = annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != LAST_APPLIED)
        .collect();
    if shown.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    for (i, (key, value)) in shown.into_iter().enumerate() {
        if i > 0 {
            w.write(0, "\t");
        }
        let value = value.strip_suffix('\n').unwrap_or(value);
        if value.len() + key.len() + 2 > MAX_ANNOTATION_LEN || value.contains('\n') {
            w.write(0, &format!("{key}:\n"));
            for line in value.split('\n') {
                w.write(
                    0,
                    &format!("\t  {}\n", shorten(line, MAX_ANNOTATION_LEN - 2)),
                );
            }
        } else {
            w.write(0, &format!("{key}: {value}\n"));
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}

fn containers(
    w: &mut Writer,
    pod: &Pod,
    label: &str,
    specs: &[Container],
    statuses: Option<&[ContainerStatus]>,
    tz: &TimeZone,
) {
    let none = if specs.is_empty() { " <none>" } else { "" };
    w.write(0, &format!("{label}:{none}\n"));
    for container in specs {
        let status = statuses
            .unwrap_or_default()
            .iter()
            .find(|s| s.name == container.name);
        w.write(1, &format!("{}:\n", container.name));
        if let Some(s) = status {
            w.write(
                2,
                &format!(
                    "Container ID:\t{}\n",
                    s.container_id.as_deref().unwrap_or_default()
                ),
            );
        }
        w.write(
            2,
            &format!(
                "Image:\t{}\n",
                container.image.as_deref().unwrap_or_default()
            ),
        );
        if let Some(s) = status {
            w.write(2, &format!("Image ID:\t{}\n", s.image_id));
        }
        let ports = container.ports.as_deref().unwrap_or_default();
        let proto = |p: &k8s_openapi::api::core::v1::ContainerPort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        let port_text: Vec<String> = ports
            .iter()
            .map(|p| format!("{}/{}", p.container_port, proto(p)))
            .collect();
        let host_text: Vec<String> = ports
            .iter()
            .map(|p| format!("{}/{}", p.host_port.unwrap_or(0), proto(p)))
            .collect();
        port_line(w, "Port", &port_text.join(", "));
        port_line(w, "Host Port", &host_text.join(", "));
        if let Some(profile) = container
            .security_context
            .as_ref()
            .and_then(|s| s.seccomp_profile.as_ref())
        {
            w.write(2, &format!("SeccompProfile:\t{}\n", profile.type_));
        }
        for (title, lines) in [("Command", &container.command), ("Args", &container.args)] {
            if let Some(lines) = lines.as_deref().filter(|l| !l.is_empty()) {
                w.write(2, &format!("{title}:\n"));
                for line in lines.iter().flat_map(|l| l.split('\n')) {
                    w.write(3, &format!("{line}\n"));
                }
            }
        }
        if let Some(s) = status {
            state(w, "State", s.state.as_ref(), tz);
            if let Some(last) = s.last_state.as_ref().filter(|l| l.terminated.is_some()) {
                state(w, "Last State", Some(last), tz);
            }
            w.write(2, &format!("Ready:\t{}\n", bool_text(s.ready)));
            w.write(2, &format!("Restart Count:\t{}\n", s.restart_count));
        }
        if let Some(resources) = &container.resources {
            for (title, list) in [
                ("Limits", &resources.limits),
                ("Requests", &resources.requests),
            ] {
                if let Some(list) = list.as_ref().filter(|l| !l.is_empty()) {
                    w.write(2, &format!("{title}:\n"));
                    for (name, quantity) in list {
                        w.write(3, &format!("{name}:\t{}\n", quantity.0));
                    }
                }
            }
        }
        for (title, probe) in [
            ("Liveness", &container.liveness_probe),
            ("Readiness", &container.readiness_probe),
            ("Startup", &container.startup_probe),
        ] {
            if let Some(probe) = probe {
                w.write(2, &format!("{title}:\t{}\n", describe_probe(probe)));
            }
        }
        env_from(w, container);
        env(w, pod, container);
        mounts(w, container);
    }
}

fn port_line(w: &mut Writer, title: &str, text: &str) {
    if text.contains(',') {
        w.write(2, &format!("{title}s:\t{text}\n"));
    } else if text.is_empty() {
        w.write(2, &format!("{title}:\t<none>\n"));
    } else {
        w.write(2, &format!("{title}:\t{text}\n"));
    }
}

fn state(w: &mut Writer, title: &str, state: Option<&ContainerState>, tz: &TimeZone) {
    let time = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.map(|t| rfc1123z(&t.0, tz)).unwrap_or_else(zero_time)
    };
    let state = state.cloned().unwrap_or_default();
    if let Some(running) = &state.running {
        w.write(2, &format!("{title}:\tRunning\n"));
        w.write(
            3,
            &format!("Started:\t{}\n", time(running.started_at.as_ref())),
        );
    } else if let Some(waiting) = &state.waiting {
        w.write(2, &format!("{title}:\tWaiting\n"));
        if let Some(reason) = waiting.reason.as_deref().filter(|r| !r.is_empty()) {
            w.write(3, &format!("Reason:\t{reason}\n"));
        }
    } else if let Some(t) = &state.terminated {
        w.write(2, &format!("{title}:\tTerminated\n"));
        if let Some(reason) = t.reason.as_deref().filter(|r| !r.is_empty()) {
            w.write(3, &format!("Reason:\t{reason}\n"));
        }
        if let Some(message) = t.message.as_deref().filter(|r| !r.is_empty()) {
            w.write(3, &format!("Message:\t{message}\n"));
        }
        w.write(3, &format!("Exit Code:\t{}\n", t.exit_code));
        if let Some(signal) = t.signal.filter(|s| *s > 0) {
            w.write(3, &format!("Signal:\t{signal}\n"));
        }
        w.write(3, &format!("Started:\t{}\n", time(t.started_at.as_ref())));
        w.write(3, &format!("Finished:\t{}\n", time(t.finished_at.as_ref())));
    } else {
        w.write(2, &format!("{title}:\tWaiting\n"));
    }
}

/// Go's zero `time.Time` in RFC1123Z.
fn zero_time() -> String {
    "Mon, 01 Jan 0001 00:00:00 +0000".to_string()
}

/// kubectl's `DescribeProbe`.
pub fn describe_probe(probe: &Probe) -> String {
    let attrs = format!(
        "delay={}s timeout={}s period={}s #success={} #failure={}",
        probe.initial_delay_seconds.unwrap_or(0),
        probe.timeout_seconds.unwrap_or(1),
        probe.period_seconds.unwrap_or(10),
        probe.success_threshold.unwrap_or(1),
        probe.failure_threshold.unwrap_or(3),
    );
    if let Some(exec) = &probe.exec {
        return format!(
            "exec [{}] {attrs}",
            exec.command.clone().unwrap_or_default().join(" ")
        );
    }
    if let Some(http) = &probe.http_get {
        let scheme = http.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
        let host = http.host.as_deref().unwrap_or_default();
        let port = int_or_string(&http.port);
        let host_port = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let path = http.path.as_deref().unwrap_or_default();
        let sep = if path.is_empty() || path.starts_with('/') {
            ""
        } else {
            "/"
        };
        return format!("http-get {scheme}://{host_port}{sep}{path} {attrs}");
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host = tcp.host.as_deref().unwrap_or_default();
        return format!("tcp-socket {host}:{} {attrs}", int_or_string(&tcp.port));
    }
    if let Some(grpc) = &probe.grpc {
        let service = grpc.service.as_deref().unwrap_or_default();
        return format!("grpc <pod>:{} {service} {attrs}", grpc.port);
    }
    format!("unknown {attrs}")
}

fn int_or_string(v: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> String {
    match v {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => i.to_string(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
    }
}

fn env_from(w: &mut Writer, container: &Container) {
    let Some(sources) = container.env_from.as_deref().filter(|e| !e.is_empty()) else {
        return;
    };
    w.write(2, "Environment Variables from:\n");
    for source in sources {
        let (name, from, optional) = match (&source.config_map_ref, &source.secret_ref) {
            (Some(c), _) => (c.name.clone(), "ConfigMap", c.optional.unwrap_or(false)),
            (None, Some(s)) => (s.name.clone(), "Secret", s.optional.unwrap_or(false)),
            (None, None) => (String::new(), "", false),
        };
        match source.prefix.as_deref().filter(|p| !p.is_empty()) {
            None => w.write(3, &format!("{name}\t{from}\tOptional: {optional}\n")),
            Some(prefix) => w.write(
                3,
                &format!("{name}\t{from} with prefix '{prefix}'\tOptional: {optional}\n"),
            ),
        }
    }
}

fn env(w: &mut Writer, pod: &Pod, container: &Container) {
    let vars = container.env.as_deref().unwrap_or_default();
    if vars.is_empty() {
        w.write(2, "Environment:\t<none>\n");
        return;
    }
    w.write(2, "Environment:\n");
    for var in vars {
        let Some(from) = &var.value_from else {
            let value = var.value.as_deref().unwrap_or_default();
            for (i, line) in value.split('\n').enumerate() {
                if i == 0 {
                    w.write(3, &format!("{}:\t{line}\n", var.name));
                } else {
                    w.write(3, &format!("\t{line}\n"));
                }
            }
            continue;
        };
        if let Some(field) = &from.field_ref {
            let api_version = field.api_version.as_deref().unwrap_or("v1");
            let value = field_value(pod, &field.field_path);
            w.write(
                3,
                &format!(
                    "{}:\t{value} ({api_version}:{})\n",
                    var.name, field.field_path
                ),
            );
        } else if let Some(resource) = &from.resource_field_ref {
            let value = resource_value(container, &resource.resource);
            w.write(
                3,
                &format!("{}:\t{value} ({})\n", var.name, resource.resource),
            );
        } else if let Some(secret) = &from.secret_key_ref {
            w.write(
                3,
                &format!(
                    "{}:\t<set to the key '{}' in secret '{}'>\tOptional: {}\n",
                    var.name,
                    secret.key,
                    secret.name,
                    secret.optional.unwrap_or(false)
                ),
            );
        } else if let Some(map) = &from.config_map_key_ref {
            w.write(
                3,
                &format!(
                    "{}:\t<set to the key '{}' of config map '{}'>\tOptional: {}\n",
                    var.name,
                    map.key,
                    map.name,
                    map.optional.unwrap_or(false)
                ),
            );
        }
    }
}

/// The downward-API value a `fieldRef` names.
fn field_value(pod: &Pod, path: &str) -> String {
    let meta = &pod.metadata;
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    if let Some(v) = keyed("metadata.labels['", meta.labels.as_ref()) {
        return v;
    }
    if let Some(v) = keyed("metadata.annotations['", meta.annotations.as_ref()) {
        return v;
    }
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()),
        _ => None,
    };
    value.unwrap_or_default()
}

fn resource_value(container: &Container, resource: &str) -> String {
    let resources = container.resources.as_ref();
    let lookup = |list: Option<&BTreeMap<String, Quantity>>, name: &str| {
        list.and_then(|l| l.get(name)).map(|q| q.0.clone())
    };
    let value = match resource.split_once('.') {
        Some(("limits", name)) => lookup(resources.and_then(|r| r.limits.as_ref()), name),
        Some(("requests", name)) => lookup(resources.and_then(|r| r.requests.as_ref()), name),
        _ => None,
    };
    match value {
        Some(v) => v,
        None if resource == "limits.cpu" || resource == "limits.memory" => {
            "node allocatable".to_string()
        }
        None => "0".to_string(),
    }
}

fn mounts(w: &mut Writer, container: &Container) {
    let mut mounts = container.volume_mounts.clone().unwrap_or_default();
    if mounts.is_empty() {
        w.write(2, "Mounts:\t<none>\n");
        return;
    }
    w.write(2, "Mounts:\n");
    mounts.sort_by(|a, b| a.mount_path.cmp(&b.mount_path));
    for mount in mounts {
        let mut flags = vec![if mount.read_only == Some(true) {
            "ro".to_string()
        } else {
            "rw".to_string()
        }];
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            flags.push(format!("path={sub:?}"));
        }
        w.write(
            3,
            &format!(
                "{} from {} ({})\n",
                mount.mount_path,
                mount.name,
                flags.join(",")
            ),
        );
    }
}

fn volumes(w: &mut Writer, volumes: &[Volume]) {
    if volumes.is_empty() {
        w.write(0, "Volumes:\t<none>\n");
        return;
    }
    w.write(0, "Volumes:\n");
    for volume in volumes {
        w.write(1, &format!("{}:\n", volume.name));
        if let Some(host) = &volume.host_path {
            w.write(
                2,
                &format!(
                    "Type:\tHostPath (bare host directory volume)\n    Path:\t{}\n    HostPathType:\t{}\n",
                    host.path,
                    host.type_.as_deref().unwrap_or_default()
                ),
            );
        } else if let Some(empty) = &volume.empty_dir {
            let limit = empty
                .size_limit
                .as_ref()
                .map(|q| q.0.clone())
                .filter(|q| !q.is_empty() && q != "0")
                .unwrap_or_else(|| "<unset>".to_string());
            w.write(
                2,
                &format!(
                    "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n    Medium:\t{}\n    SizeLimit:\t{limit}\n",
                    empty.medium.as_deref().unwrap_or_default()
                ),
            );
        } else if let Some(map) = &volume.config_map {
            w.write(
                2,
                &format!(
                    "Type:\tConfigMap (a volume populated by a ConfigMap)\n    Name:\t{}\n    Optional:\t{}\n",
                    map.name,
                    map.optional.unwrap_or(false)
                ),
            );
        } else if let Some(secret) = &volume.secret {
            w.write(
                2,
                &format!(
                    "Type:\tSecret (a volume populated by a Secret)\n    SecretName:\t{}\n    Optional:\t{}\n",
                    secret.secret_name.as_deref().unwrap_or_default(),
                    secret.optional.unwrap_or(false)
                ),
            );
        } else if let Some(claim) = &volume.persistent_volume_claim {
            w.write(
                2,
                &format!(
                    "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)\n    ClaimName:\t{}\n    ReadOnly:\t{}\n",
                    claim.claim_name,
                    claim.read_only.unwrap_or(false)
                ),
            );
        } else if volume.projected.is_some() {
            w.write(
                2,
                "Type:\tProjected (a volume that contains injected data from multiple sources)\n",
            );
        } else if volume.downward_api.is_some() {
            w.write(2, "Type:\tDownwardAPI (a volume populated by information about the pod)\n    Items:\n");
        } else {
            w.write(1, "<unknown>\n");
        }
    }
}

fn tolerations(w: &mut Writer, mut tolerations: Vec<Toleration>) {
    w.write(0, "Tolerations:\t");
    if tolerations.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    tolerations.sort_by(|a, b| a.key.cmp(&b.key));
    for (i, t) in tolerations.iter().enumerate() {
        if i > 0 {
            w.write(0, "\t");
        }
        let key = t.key.as_deref().unwrap_or_default();
        let value = t.value.as_deref().unwrap_or_default();
        let effect = t.effect.as_deref().unwrap_or_default();
        let mut text = key.to_string();
        if !value.is_empty() {
            text.push_str(&format!("={value}"));
        }
        if !effect.is_empty() {
            text.push_str(&format!(":{effect}"));
        }
        if t.operator.as_deref() == Some("Exists") && value.is_empty() {
            text.push_str(if key.is_empty() && effect.is_empty() {
                "op=Exists"
            } else {
                " op=Exists"
            });
        }
        if let Some(seconds) = t.toleration_seconds {
            text.push_str(&format!(" for {seconds}s"));
        }
        w.write(0, &format!("{text}\n"));
    }
}

fn event_time(e: &Event) -> Option<Timestamp> {
    e.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
}

/// kubectl's `DescribeEvents`: its own table, flushed apart from the rest.
fn describe_events(w: &mut Writer, events: &[Event], now: Timestamp) {
    if events.is_empty() {
        w.write(0, "Events:\t<none>\n");
        return;
    }
    w.flush();
    let mut events = events.to_vec();
    events.sort_by_key(event_time);
    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n");
    w.write(1, "----\t------\t----\t----\t-------\n");
    for e in &events {
        let first = match (&e.event_time, &e.first_timestamp) {
            (Some(t), _) => since(t.0, now),
            (None, Some(t)) => since(t.0, now),
            (None, None) => "<unknown>".to_string(),
        };
        let age = if let Some(series) = &e.series {
            let last = series
                .last_observed_time
                .as_ref()
                .map_or("<unknown>".to_string(), |t| since(t.0, now));
            format!("{last} (x{} over {first})", series.count.unwrap_or(0))
        } else if e.count.unwrap_or(0) > 1 {
            let last = e
                .last_timestamp
                .as_ref()
                .map_or("<unknown>".to_string(), |t| since(t.0, now));
            format!("{last} (x{} over {first})", e.count.unwrap_or(0))
        } else {
            first
        };
        let source = e
            .source
            .as_ref()
            .and_then(|s| s.component.clone())
            .filter(|c| !c.is_empty())
            .or_else(|| e.reporting_component.clone())
            .unwrap_or_default();
        w.write(
            1,
            &format!(
                "{}\t{}\t{age}\t{source}\t{}\n",
                e.type_.as_deref().unwrap_or_default(),
                e.reason.as_deref().unwrap_or_default(),
                e.message.as_deref().unwrap_or_default().trim()
            ),
        );
    }
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
