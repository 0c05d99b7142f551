//! The Init Containers and Containers sections: each container's image,
//! ports, state, probes, environment and mounts.

use super::*;

pub(super) fn containers(
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
fn describe_probe(probe: &Probe) -> String {
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
