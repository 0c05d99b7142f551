//! The defaults the API server fills in on create (pkg/apis/core/v1/defaults.go,
//! the Priority admission plugin, the pod strategy's initial status), so a
//! manifest berth runs looks like what `kubectl get -o yaml` shows.

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, HTTPGetAction, LifecycleHandler, Pod, PodSecurityContext,
    PodStatus, Probe, Volume,
};

/// Fills every unset defaulted field of `pod`; set fields are left alone.
pub fn apply_defaults(pod: &mut Pod) {
    if pod
        .metadata
        .namespace
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        pod.metadata.namespace = Some("default".into());
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    or_set_str(&mut spec.restart_policy, "Always");
    or_set(&mut spec.termination_grace_period_seconds, 30);
    or_set_str(&mut spec.dns_policy, "ClusterFirst");
    or_set_str(&mut spec.scheduler_name, "default-scheduler");
    or_set(&mut spec.security_context, PodSecurityContext::default());
    or_set(&mut spec.enable_service_links, true);
    or_set(&mut spec.priority, 0);
    let host_network = spec.host_network == Some(true);
    let inits = spec.init_containers.iter_mut().flatten();
    for container in inits.chain(spec.containers.iter_mut()) {
        default_container(container, host_network);
    }
    // Ephemeral containers are defaulted as the containers they run as.
    for ec in spec.ephemeral_containers.iter_mut().flatten() {
        let mut c = crate::pod::ephemeral_as_container(ec);
        default_container(&mut c, host_network);
        *ec = crate::pod::container_as_ephemeral(c, ec.target_container_name.take());
    }
    for volume in spec.volumes.iter_mut().flatten() {
        default_volume(volume);
    }
    let status = pod.status.get_or_insert_with(PodStatus::default);
    or_set_str(&mut status.phase, "Pending");
}

/// `imagePullPolicy` for an image reference: `Always` when the tag is
/// `latest`, which includes a reference with neither tag nor digest;
/// otherwise `IfNotPresent` (a digest-only reference included).
pub fn default_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    // A `:` after the last `/` separates the tag; before it, a registry port.
    let last_component = name.rsplit('/').next().unwrap_or(name);
    let tag = last_component.split_once(':').map(|(_, tag)| tag);
    match (tag, digest) {
        (Some("latest"), _) | (None, None) => "Always",
        _ => "IfNotPresent",
    }
}

fn or_set<T>(field: &mut Option<T>, value: T) {
    if field.is_none() {
        *field = Some(value);
    }
}

/// Go strings have no "unset" apart from empty: both get the default.
fn or_set_str(field: &mut Option<String>, value: &str) {
    if field.as_deref().unwrap_or_default().is_empty() {
        *field = Some(value.into());
    }
}

/// Probe numbers are plain `int32` in Go: zero means unset.
fn or_set_nonzero(field: &mut Option<i32>, value: i32) {
    if field.unwrap_or(0) == 0 {
        *field = Some(value);
    }
}

fn default_container(c: &mut Container, host_network: bool) {
    let pull_policy = default_pull_policy(c.image.as_deref().unwrap_or_default());
    or_set_str(&mut c.image_pull_policy, pull_policy);
    or_set_str(&mut c.termination_message_path, "/dev/termination-log");
    or_set_str(&mut c.termination_message_policy, "File");
    for port in c.ports.iter_mut().flatten() {
        or_set_str(&mut port.protocol, "TCP");
        // With the host's network the container port is the host port.
        if host_network && port.host_port.unwrap_or(0) == 0 {
            port.host_port = Some(port.container_port);
        }
    }
    let probes = [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ];
    for probe in probes.into_iter().flatten() {
        default_probe(probe);
    }
    if let Some(lifecycle) = &mut c.lifecycle {
        for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop]
            .into_iter()
            .flatten()
        {
            default_lifecycle_handler(handler);
        }
    }
    for var in c.env.iter_mut().flatten() {
        if let Some(field) = var.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            or_set_str(&mut field.api_version, "v1");
        }
    }
    // Requests default to limits when only limits are given.
    if let Some(resources) = &mut c.resources {
        if let Some(limits) = &resources.limits {
            let requests = resources.requests.get_or_insert_with(Default::default);
            for (name, quantity) in limits {
                requests
                    .entry(name.clone())
                    .or_insert_with(|| quantity.clone());
            }
        }
    }
}

fn default_probe(p: &mut Probe) {
    or_set_nonzero(&mut p.timeout_seconds, 1);
    or_set_nonzero(&mut p.period_seconds, 10);
    or_set_nonzero(&mut p.success_threshold, 1);
    or_set_nonzero(&mut p.failure_threshold, 3);
    if let Some(http) = &mut p.http_get {
        default_http_get(http);
    }
}

fn default_lifecycle_handler(h: &mut LifecycleHandler) {
    if let Some(http) = &mut h.http_get {
        default_http_get(http);
    }
}

fn default_http_get(http: &mut HTTPGetAction) {
    or_set_str(&mut http.path, "/");
    or_set_str(&mut http.scheme, "HTTP");
}

fn default_volume(v: &mut Volume) {
    // A volume without any source is an emptyDir.
    let named_only = Volume {
        name: v.name.clone(),
        ..Default::default()
    };
    if *v == named_only {
        v.empty_dir = Some(EmptyDirVolumeSource::default());
    }
    if let Some(host_path) = &mut v.host_path {
        or_set(&mut host_path.type_, String::new());
    }
    // An image volume's pull policy defaults as a container image's
    // (SetDefaults_Volume).
    if let Some(image) = &mut v.image {
        let policy = default_pull_policy(image.reference.as_deref().unwrap_or_default());
        or_set_str(&mut image.pull_policy, policy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{container, env_field, pod, pod_with};
    use k8s_openapi::api::core::v1::{
        ContainerPort, ExecAction, HostPathVolumeSource, Lifecycle, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn pull_policy_table() {
        let cases = [
            ("busybox", "Always"),
            ("busybox:latest", "Always"),
            ("busybox:1.36", "IfNotPresent"),
            ("docker.io/library/busybox", "Always"),
            ("localhost:5000/busybox", "Always"),
            ("localhost:5000/busybox:v1", "IfNotPresent"),
            ("localhost:5000/team/app:latest", "Always"),
            ("busybox@sha256:abcd", "IfNotPresent"),
            ("busybox:1.36@sha256:abcd", "IfNotPresent"),
            ("busybox:latest@sha256:abcd", "Always"),
            ("berth.local/test/sleeper:v2", "IfNotPresent"),
        ];
        for (image, want) in cases {
            assert_eq!(default_pull_policy(image), want, "{image}");
        }
    }

    #[test]
    fn pod_level_defaults() {
        let mut p = pod("web");
        p.metadata.namespace = None;
        apply_defaults(&mut p);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(spec.security_context, Some(PodSecurityContext::default()));
        assert_eq!(spec.enable_service_links, Some(true));
        assert_eq!(spec.priority, Some(0));
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));

        // Set values are kept, and empty namespace counts as unset.
        let mut p = pod("web");
        p.metadata.namespace = Some(String::new());
        let spec = p.spec.as_mut().unwrap();
        spec.restart_policy = Some("Never".into());
        spec.termination_grace_period_seconds = Some(0);
        spec.enable_service_links = Some(false);
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        });
        apply_defaults(&mut p);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.termination_grace_period_seconds, Some(0));
        assert_eq!(spec.enable_service_links, Some(false));
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    }

    #[test]
    fn container_defaults_apply_to_init_and_regular() {
        let probe = || Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(8080),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut app = container("app", "nginx:1.25");
        app.ports = Some(vec![ContainerPort {
            container_port: 80,
            ..Default::default()
        }]);
        app.liveness_probe = Some(probe());
        app.readiness_probe = Some(Probe {
            period_seconds: Some(2),
            timeout_seconds: Some(0),
            ..probe()
        });
        app.lifecycle = Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                http_get: Some(HTTPGetAction {
                    port: IntOrString::Int(80),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        app.env = Some(vec![env_field("NAME", "metadata.name")]);
        app.env.as_mut().unwrap()[0]
            .value_from
            .as_mut()
            .unwrap()
            .field_ref
            .as_mut()
            .unwrap()
            .api_version = None;
        app.resources = Some(ResourceRequirements {
            limits: Some(
                [
                    ("memory".to_string(), Quantity("64Mi".into())),
                    ("cpu".to_string(), Quantity("1".into())),
                ]
                .into(),
            ),
            requests: Some([("cpu".to_string(), Quantity("100m".into()))].into()),
            ..Default::default()
        });
        let mut init = container("setup", "busybox");
        init.image_pull_policy = Some("Never".into());
        let mut p = pod_with("web", vec![init], vec![app]);
        apply_defaults(&mut p);
        let spec = p.spec.unwrap();
        let init = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.image_pull_policy.as_deref(), Some("Never"));
        assert_eq!(
            init.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        assert_eq!(init.termination_message_policy.as_deref(), Some("File"));
        let app = &spec.containers[0];
        assert_eq!(app.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            app.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        let port = &app.ports.as_ref().unwrap()[0];
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
        assert_eq!(port.host_port, None);
        let live = app.liveness_probe.as_ref().unwrap();
        assert_eq!(
            (
                live.timeout_seconds,
                live.period_seconds,
                live.success_threshold,
                live.failure_threshold
            ),
            (Some(1), Some(10), Some(1), Some(3))
        );
        assert_eq!(live.initial_delay_seconds, None);
        let http = live.http_get.as_ref().unwrap();
        assert_eq!(
            (http.path.as_deref(), http.scheme.as_deref()),
            (Some("/"), Some("HTTP"))
        );
        let readiness = app.readiness_probe.as_ref().unwrap();
        assert_eq!(
            (readiness.period_seconds, readiness.timeout_seconds),
            (Some(2), Some(1))
        );
        let pre_stop = app.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
        assert_eq!(
            pre_stop.http_get.as_ref().unwrap().path.as_deref(),
            Some("/")
        );
        let field = app.env.as_ref().unwrap()[0]
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap();
        assert_eq!(field.api_version.as_deref(), Some("v1"));
        let requests = app.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(requests.get("cpu"), Some(&Quantity("100m".into())));
        assert_eq!(requests.get("memory"), Some(&Quantity("64Mi".into())));
    }

    #[test]
    fn host_network_ports_and_volumes() {
        let mut app = container("app", "busybox:latest");
        app.ports = Some(vec![
            ContainerPort {
                container_port: 80,
                ..Default::default()
            },
            ContainerPort {
                container_port: 81,
                host_port: Some(9081),
                protocol: Some("UDP".into()),
                ..Default::default()
            },
        ]);
        app.startup_probe = Some(Probe {
            exec: Some(ExecAction {
                command: Some(vec!["true".into()]),
            }),
            failure_threshold: Some(30),
            ..Default::default()
        });
        let mut p = pod_with("web", vec![], vec![app]);
        let spec = p.spec.as_mut().unwrap();
        spec.host_network = Some(true);
        spec.volumes = Some(vec![
            Volume {
                name: "scratch".into(),
                ..Default::default()
            },
            Volume {
                name: "logs".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/var/log".into(),
                    type_: None,
                }),
                ..Default::default()
            },
            Volume {
                name: "sock".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/run/x.sock".into(),
                    type_: Some("Socket".into()),
                }),
                ..Default::default()
            },
            Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]);
        apply_defaults(&mut p);
        let spec = p.spec.unwrap();
        let app = &spec.containers[0];
        assert_eq!(app.image_pull_policy.as_deref(), Some("Always"));
        let ports = app.ports.as_ref().unwrap();
        assert_eq!(
            (ports[0].host_port, ports[0].protocol.as_deref()),
            (Some(80), Some("TCP"))
        );
        assert_eq!(
            (ports[1].host_port, ports[1].protocol.as_deref()),
            (Some(9081), Some("UDP"))
        );
        let startup = app.startup_probe.as_ref().unwrap();
        assert_eq!(
            (startup.failure_threshold, startup.period_seconds),
            (Some(30), Some(10))
        );
        let vols = spec.volumes.unwrap();
        assert_eq!(vols[0].empty_dir, Some(EmptyDirVolumeSource::default()));
        assert_eq!(
            vols[1].host_path.as_ref().unwrap().type_.as_deref(),
            Some("")
        );
        assert_eq!(vols[1].empty_dir, None);
        assert_eq!(
            vols[2].host_path.as_ref().unwrap().type_.as_deref(),
            Some("Socket")
        );
        assert_eq!(
            vols[3].empty_dir.as_ref().unwrap().medium.as_deref(),
            Some("Memory")
        );
    }

    #[test]
    fn image_volume_pull_policy_defaults_as_a_container_images() {
        use k8s_openapi::api::core::v1::ImageVolumeSource;
        let image = |reference: &str, policy: Option<&str>| Volume {
            name: "v".into(),
            image: Some(ImageVolumeSource {
                reference: Some(reference.into()),
                pull_policy: policy.map(str::to_string),
            }),
            ..Default::default()
        };
        for (volume, want) in [
            (image("kitten:1.8", None), "IfNotPresent"),
            (image("kitten", None), "Always"),
            (image("kitten:latest", None), "Always"),
            (image("kitten:1.8", Some("")), "IfNotPresent"),
            (image("kitten:latest", Some("Never")), "Never"),
        ] {
            let mut v = volume;
            default_volume(&mut v);
            assert_eq!(v.image.unwrap().pull_policy.as_deref(), Some(want));
        }
    }

    #[test]
    fn defaulting_is_idempotent() {
        let mut once = pod("web");
        apply_defaults(&mut once);
        let mut twice = once.clone();
        apply_defaults(&mut twice);
        assert_eq!(once, twice);
    }
}
