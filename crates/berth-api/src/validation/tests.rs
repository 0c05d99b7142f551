use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, Container, ContainerPort, ContainerRestartRule,
    ContainerRestartRuleOnExitCodes, EmptyDirVolumeSource, EnvFromSource, EnvVarSource, ExecAction,
    HTTPGetAction, HostPathVolumeSource, ImageVolumeSource, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, Probe, ResourceFieldSelector, ResourceRequirements, SecretEnvSource,
    SleepAction, TCPSocketAction, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

type Mutation = Box<dyn Fn(&mut Pod)>;
use crate::defaults::apply_defaults;
use crate::testutil::{container, env, pod, sidecar};

fn base() -> Pod {
    let mut p = pod("web");
    let spec = p.spec.as_mut().unwrap();
    spec.containers = vec![container("app", "busybox:1.36")];
    spec.volumes = Some(vec![Volume {
        name: "data".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }]);
    apply_defaults(&mut p);
    p
}

fn spec(p: &mut Pod) -> &mut PodSpec {
    p.spec.as_mut().unwrap()
}

fn app(p: &mut Pod) -> &mut Container {
    &mut spec(p).containers[0]
}

fn exec(cmd: &[&str]) -> ExecAction {
    ExecAction {
        command: Some(cmd.iter().map(|s| s.to_string()).collect()),
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

fn image(name: &str, reference: Option<&str>, policy: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        image: Some(ImageVolumeSource {
            reference: reference.map(Into::into),
            pull_policy: policy.map(Into::into),
        }),
        ..Default::default()
    }
}

fn host_path(name: &str, path: &str, type_: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.into(),
            type_: type_.map(Into::into),
        }),
        ..Default::default()
    }
}

fn errors_of(p: &Pod) -> Vec<String> {
    match validate_pod(p) {
        Ok(()) => vec![],
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

#[test]
fn valid_pods_pass() {
    assert_eq!(errors_of(&base()), Vec::<String>::new());
    let mut p = base();
    let s = spec(&mut p);
    s.init_containers = Some(vec![container("setup", "busybox"), sidecar("proxy")]);
    s.volumes
        .as_mut()
        .unwrap()
        .push(host_path("logs", "/var/log", Some("DirectoryOrCreate")));
    let c = &mut s.containers[0];
    c.volume_mounts = Some(vec![
        mount("data", "/data"),
        VolumeMount {
            mount_propagation: Some("HostToContainer".into()),
            ..mount("logs", "/logs")
        },
    ]);
    c.ports = Some(vec![ContainerPort {
        name: Some("http".into()),
        container_port: 8080,
        ..Default::default()
    }]);
    c.liveness_probe = Some(Probe {
        exec: Some(exec(&["true"])),
        ..Default::default()
    });
    c.readiness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        success_threshold: Some(2),
        ..Default::default()
    });
    c.lifecycle = Some(Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction { seconds: 5 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    c.env = Some(vec![
        env("A", "1"),
        env("my.var-x", "2"),
        file_env("C", "C", "data", "vars/env"),
    ]);
    apply_defaults(&mut p);
    assert_eq!(errors_of(&p), Vec::<String>::new());

    let mut p = base();
    let c = app(&mut p);
    c.security_context = Some(k8s_openapi::api::core::v1::SecurityContext {
        privileged: Some(true),
        ..Default::default()
    });
    c.volume_mounts = Some(vec![VolumeMount {
        mount_propagation: Some("Bidirectional".into()),
        ..mount("data", "/data")
    }]);
    assert_eq!(errors_of(&p), Vec::<String>::new());
}

fn file_env(name: &str, key: &str, volume: &str, path: &str) -> k8s_openapi::api::core::v1::EnvVar {
    k8s_openapi::api::core::v1::EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            file_key_ref: Some(k8s_openapi::api::core::v1::FileKeySelector {
                key: key.into(),
                path: path.into(),
                volume_name: volume.into(),
                optional: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn restart_rule(action: &str, operator: &str, values: Vec<i32>) -> ContainerRestartRule {
    ContainerRestartRule {
        action: action.into(),
        exit_codes: Some(ContainerRestartRuleOnExitCodes {
            operator: operator.into(),
            values: Some(values),
        }),
    }
}

#[test]
fn containers_may_set_their_own_restart_policy_and_rules() {
    let mut p = base();
    let s = spec(&mut p);
    let mut setup = container("setup", "busybox");
    setup.restart_policy = Some("Never".into());
    setup.restart_policy_rules = Some(vec![restart_rule("Restart", "In", vec![42])]);
    let mut proxy = sidecar("proxy");
    proxy.restart_policy_rules = Some(vec![restart_rule("RestartAllContainers", "In", vec![3])]);
    s.init_containers = Some(vec![setup, proxy]);
    let c = &mut s.containers[0];
    c.restart_policy = Some("OnFailure".into());
    c.restart_policy_rules = Some(vec![
        restart_rule("Restart", "NotIn", vec![0, 1]),
        restart_rule("RestartAllContainers", "In", vec![1]),
    ]);
    apply_defaults(&mut p);
    assert_eq!(errors_of(&p), Vec::<String>::new());
}

#[test]
fn validation_error_table() {
    let cases: Vec<(&str, Mutation, Vec<String>)> = vec![
        ("image required", Box::new(|p| app(p).image = None), vec!["spec.containers[0].image: Required value".into()]),
        ("image blank", Box::new(|p| app(p).image = Some(" ".into())), vec![r#"spec.containers[0].image: Invalid value: " ": must not have leading or trailing whitespace"#.into()]),
        ("name required", Box::new(|p| p.metadata.name = None), vec!["metadata.name: Required value: name or generateName is required".into()]),
        ("name not a subdomain", Box::new(|p| p.metadata.name = Some("Web_1".into())), vec![r#"metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#.into()]),
        ("name too long", Box::new(|p| p.metadata.name = Some("a".repeat(254))), vec![format!("metadata.name: Invalid value: \"{}\": must be no more than 253 characters", "a".repeat(254))]),
        ("namespace with dots", Box::new(|p| p.metadata.namespace = Some("team.a".into())), vec![r#"metadata.namespace: Invalid value: "team.a": must not contain dots"#.into()]),
        ("no containers", Box::new(|p| spec(p).containers.clear()), vec!["spec.containers: Required value".into()]),
        ("container name", Box::new(|p| app(p).name = "App".into()), vec![format!("spec.containers[0].name: Invalid value: \"App\": {LABEL_MSG}")]),
        ("container name required", Box::new(|p| app(p).name = String::new()), vec!["spec.containers[0].name: Required value".into()]),
        ("duplicate container names", Box::new(|p| { let c = app(p).clone(); spec(p).containers.push(c) }), vec![r#"spec.containers[1].name: Duplicate value: "app""#.into()]),
        ("init name clashes with regular", Box::new(|p| spec(p).init_containers = Some(vec![container("app", "busybox")])), vec![r#"spec.initContainers[0].name: Duplicate value: "app""#.into()]),
        ("restart policy", Box::new(|p| spec(p).restart_policy = Some("Sometimes".into())), vec![r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#.into()]),
        ("restart policy empty", Box::new(|p| spec(p).restart_policy = Some(String::new())), vec!["spec.restartPolicy: Required value".into()]),
        ("pull policy", Box::new(|p| app(p).image_pull_policy = Some("Maybe".into())), vec![r#"spec.containers[0].imagePullPolicy: Unsupported value: "Maybe": supported values: "Always", "IfNotPresent", "Never""#.into()]),
        ("grace period", Box::new(|p| spec(p).termination_grace_period_seconds = Some(-1)), vec!["spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0".into()]),
        ("active deadline", Box::new(|p| spec(p).active_deadline_seconds = Some(0)), vec!["spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive".into()]),
        ("container port range", Box::new(|p| app(p).ports = Some(vec![ContainerPort { container_port: 70000, protocol: Some("TCP".into()), ..Default::default() }])), vec!["spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive".into()]),
        ("container port required", Box::new(|p| app(p).ports = Some(vec![ContainerPort::default()])), vec!["spec.containers[0].ports[0].containerPort: Required value".into()]),
        ("port protocol", Box::new(|p| app(p).ports = Some(vec![ContainerPort { container_port: 80, protocol: Some("ICMP".into()), ..Default::default() }])), vec![r#"spec.containers[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP""#.into()]),
        (
            "duplicate port names",
            Box::new(|p| {
                let port = |n| ContainerPort { name: Some("web".into()), container_port: n, ..Default::default() };
                app(p).ports = Some(vec![port(80), port(81)]);
            }),
            vec![r#"spec.containers[0].ports[1].name: Duplicate value: "web""#.into()],
        ),
        (
            "host port conflict",
            Box::new(|p| {
                let port = |n| ContainerPort { container_port: n, host_port: Some(8080), protocol: Some("TCP".into()), ..Default::default() };
                let mut other = container("other", "busybox");
                other.ports = Some(vec![port(81)]);
                app(p).ports = Some(vec![port(80)]);
                spec(p).containers.push(other);
            }),
            vec![r#"spec.containers[1].ports[0].hostPort: Duplicate value: "/TCP/8080""#.into()],
        ),
        (
            "envFrom without a source",
            Box::new(|p| app(p).env_from = Some(vec![Default::default()])),
            vec!["spec.containers[0].envFrom: Invalid value: \"\": must specify one of: `configMapRef` or `secretRef`".into()],
        ),
        (
            "envFrom with two sources, a bad prefix and bad names",
            Box::new(|p| {
                app(p).env_from = Some(vec![EnvFromSource {
                    prefix: Some("A=".into()),
                    config_map_ref: Some(ConfigMapEnvSource { name: "Bad_Name".into(), optional: None }),
                    secret_ref: Some(SecretEnvSource { name: String::new(), optional: None }),
                }])
            }),
            vec![
                "spec.containers[0].envFrom[0].prefix: Invalid value: \"A=\": a valid environment variable name must consist only of printable ASCII characters other than '='".into(),
                "spec.containers[0].envFrom[0].configMapRef.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into(),
                "spec.containers[0].envFrom[0].secretRef.name: Required value".into(),
                "spec.containers[0].envFrom: Invalid value: \"\": may not have more than one field specified at a time".into(),
            ],
        ),
        ("duplicate volume", Box::new(|p| spec(p).volumes.as_mut().unwrap().push(Volume { name: "data".into(), empty_dir: Some(Default::default()), ..Default::default() })), vec![r#"spec.volumes[1].name: Duplicate value: "data""#.into()]),
        ("volume name", Box::new(|p| spec(p).volumes.as_mut().unwrap()[0].name = "Data".into()), vec![format!("spec.volumes[0].name: Invalid value: \"Data\": {LABEL_MSG}")]),
        (
            "unsupported volume type",
            Box::new(|p| {
                spec(p).volumes.as_mut().unwrap().push(Volume {
                    name: "cfg".into(),
                    config_map: Some(Default::default()),
                    ..Default::default()
                })
            }),
            vec![r#"spec.volumes[1].configMap: Unsupported value: "configMap": supported values: "emptyDir", "hostPath", "image""#.into()],
        ),
        (
            "two volume sources",
            Box::new(|p| spec(p).volumes.as_mut().unwrap()[0].host_path = Some(HostPathVolumeSource { path: "/x".into(), type_: Some(String::new()) })),
            vec!["spec.volumes[0].emptyDir: Forbidden: may not specify more than 1 volume type".into()],
        ),
        ("hostPath relative", Box::new(|p| spec(p).volumes.as_mut().unwrap().push(host_path("h", "var/log", Some("")))), vec![r#"spec.volumes[1].hostPath.path: Invalid value: "var/log": must be an absolute path"#.into()]),
        ("hostPath backsteps", Box::new(|p| spec(p).volumes.as_mut().unwrap().push(host_path("h", "/var/../etc", Some("")))), vec![r#"spec.volumes[1].hostPath.path: Invalid value: "/var/../etc": must not contain '..'"#.into()]),
        ("hostPath path required", Box::new(|p| spec(p).volumes.as_mut().unwrap().push(host_path("h", "", None))), vec!["spec.volumes[1].hostPath.path: Required value".into()]),
        ("hostPath type", Box::new(|p| spec(p).volumes.as_mut().unwrap().push(host_path("h", "/x", Some("Dir")))), vec![r#"spec.volumes[1].hostPath.type: Unsupported value: "Dir": supported values: "", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket""#.into()]),
        ("image volume", Box::new(|p| spec(p).volumes.as_mut().unwrap().push(image("img", Some("kitten:1.8"), Some("IfNotPresent")))), vec![]),
        ("image reference required", Box::new(|p| spec(p).volumes.as_mut().unwrap().push(image("img", None, Some("Always")))), vec!["spec.volumes[1].image.reference: Required value".into()]),
        ("image reference empty", Box::new(|p| spec(p).volumes.as_mut().unwrap().push(image("img", Some(""), Some("Always")))), vec!["spec.volumes[1].image.reference: Required value".into()]),
        ("image pull policy required", Box::new(|p| spec(p).volumes.as_mut().unwrap().push(image("img", Some("kitten:1.8"), None))), vec!["spec.volumes[1].image.pullPolicy: Required value".into()]),
        ("image pull policy", Box::new(|p| spec(p).volumes.as_mut().unwrap().push(image("img", Some("kitten:1.8"), Some("Sometimes")))), vec![r#"spec.volumes[1].image.pullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never""#.into()]),
        ("image and emptyDir", Box::new(|p| spec(p).volumes.as_mut().unwrap()[0].image = image("x", Some("kitten:1.8"), Some("Always")).image), vec!["spec.volumes[0].image: Forbidden: may not specify more than 1 volume type".into()]),
        ("mount of unknown volume", Box::new(|p| app(p).volume_mounts = Some(vec![mount("nope", "/x")])), vec![r#"spec.containers[0].volumeMounts[0].name: Not found: "nope""#.into()]),
        ("mount path relative", Box::new(|p| app(p).volume_mounts = Some(vec![mount("data", "data")])), vec![r#"spec.containers[0].volumeMounts[0].mountPath: Invalid value: "data": must be an absolute path"#.into()]),
        ("mount path required", Box::new(|p| app(p).volume_mounts = Some(vec![mount("data", "")])), vec!["spec.containers[0].volumeMounts[0].mountPath: Required value".into()]),
        ("mount path unique", Box::new(|p| app(p).volume_mounts = Some(vec![mount("data", "/d"), mount("data", "/d")])), vec![r#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/d": must be unique"#.into()]),
        ("mount propagation unknown", Box::new(|p| app(p).volume_mounts = Some(vec![VolumeMount { mount_propagation: Some("Shared".into()), ..mount("data", "/d") }])), vec![r#"spec.containers[0].volumeMounts[0].mountPropagation: Unsupported value: "Shared": supported values: "Bidirectional", "HostToContainer", "None""#.into()]),
        ("bidirectional unprivileged", Box::new(|p| app(p).volume_mounts = Some(vec![VolumeMount { mount_propagation: Some("Bidirectional".into()), ..mount("data", "/d") }])), vec!["spec.containers[0].volumeMounts[0].mountPropagation: Forbidden: Bidirectional mount propagation is available only to privileged containers".into()]),
        ("liveness success threshold", Box::new(|p| app(p).liveness_probe = Some(Probe { exec: Some(exec(&["true"])), success_threshold: Some(3), ..Default::default() })), vec!["spec.containers[0].livenessProbe.successThreshold: Invalid value: 3: must be 1".into()]),
        ("startup success threshold", Box::new(|p| app(p).startup_probe = Some(Probe { exec: Some(exec(&["true"])), success_threshold: Some(2), ..Default::default() })), vec!["spec.containers[0].startupProbe.successThreshold: Invalid value: 2: must be 1".into()]),
        ("probe without handler", Box::new(|p| app(p).liveness_probe = Some(Probe::default())), vec!["spec.containers[0].livenessProbe: Required value: must specify a handler type".into()]),
        (
            "probe with two handlers",
            Box::new(|p| {
                app(p).readiness_probe = Some(Probe {
                    exec: Some(exec(&["true"])),
                    tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(80), host: None }),
                    ..Default::default()
                })
            }),
            vec!["spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type".into()],
        ),
        ("probe negative period", Box::new(|p| app(p).readiness_probe = Some(Probe { exec: Some(exec(&["true"])), period_seconds: Some(-5), ..Default::default() })), vec!["spec.containers[0].readinessProbe.periodSeconds: Invalid value: -5: must be greater than or equal to 0".into()]),
        ("exec without command", Box::new(|p| app(p).liveness_probe = Some(Probe { exec: Some(exec(&[])), ..Default::default() })), vec!["spec.containers[0].livenessProbe.exec.command: Required value".into()]),
        ("http port", Box::new(|p| app(p).liveness_probe = Some(Probe { http_get: Some(HTTPGetAction { port: IntOrString::Int(0), ..Default::default() }), ..Default::default() })), vec!["spec.containers[0].livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive".into()]),
        ("hook without handler", Box::new(|p| app(p).lifecycle = Some(Lifecycle { post_start: Some(LifecycleHandler::default()), ..Default::default() })), vec!["spec.containers[0].lifecycle.postStart: Required value: must specify a handler type".into()]),
        (
            "hook with two handlers",
            Box::new(|p| {
                app(p).lifecycle = Some(Lifecycle {
                    pre_stop: Some(LifecycleHandler { exec: Some(exec(&["x"])), sleep: Some(SleepAction { seconds: 1 }), ..Default::default() }),
                    ..Default::default()
                })
            }),
            vec!["spec.containers[0].lifecycle.preStop.sleep: Forbidden: may not specify more than 1 handler type".into()],
        ),
        ("sleep beyond grace", Box::new(|p| app(p).lifecycle = Some(Lifecycle { pre_stop: Some(LifecycleHandler { sleep: Some(SleepAction { seconds: 31 }), ..Default::default() }), ..Default::default() })), vec!["spec.containers[0].lifecycle.preStop.sleep: Invalid value: 31: must be non-negative and less than terminationGracePeriodSeconds (30)".into()]),
        (
            "init restart policy",
            Box::new(|p| {
                let mut c = container("setup", "busybox");
                c.restart_policy = Some("Sometimes".into());
                spec(p).init_containers = Some(vec![c]);
            }),
            vec![r#"spec.initContainers[0].restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure""#.into()],
        ),
        (
            "init restart rules without a policy",
            Box::new(|p| {
                let mut c = container("setup", "busybox");
                c.restart_policy_rules = Some(vec![restart_rule("Restart", "In", vec![1])]);
                spec(p).init_containers = Some(vec![c]);
            }),
            vec!["spec.initContainers[0].restartPolicy: Required value: must specify restartPolicy when restart rules are used".into()],
        ),
        (
            "probe on a regular init container",
            Box::new(|p| {
                let mut c = container("setup", "busybox");
                c.readiness_probe = Some(Probe { exec: Some(exec(&["true"])), ..Default::default() });
                spec(p).init_containers = Some(vec![c]);
            }),
            vec!["spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always".into()],
        ),
        (
            "sidecar probes are validated",
            Box::new(|p| {
                let mut c = sidecar("proxy");
                c.liveness_probe = Some(Probe::default());
                spec(p).init_containers = Some(vec![c]);
            }),
            vec!["spec.initContainers[0].livenessProbe: Required value: must specify a handler type".into()],
        ),
        ("hostname not a label", Box::new(|p| spec(p).hostname = Some("db.x".into())), vec![r#"spec.hostname: Invalid value: "db.x": must not contain dots"#.into()]),
        (
            "hostnameOverride with a FQDN host name",
            Box::new(|p| {
                spec(p).hostname_override = Some("w.example".into());
                spec(p).set_hostname_as_fqdn = Some(true);
            }),
            vec!["spec.hostnameOverride: Forbidden: may not be specified when setHostnameAsFQDN is true".into()],
        ),
        ("container restart policy", Box::new(|p| app(p).restart_policy = Some("Sometimes".into())), vec![r#"spec.containers[0].restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure""#.into()]),
        (
            "fileKeyRef selector",
            Box::new(|p| app(p).env = Some(vec![file_env("A", "", "", "../env")])),
            vec![
                "spec.containers[0].env[0].valueFrom.fileKeyRef.key: Required value".into(),
                "spec.containers[0].env[0].valueFrom.fileKeyRef.volumeName: Required value".into(),
                r#"spec.containers[0].env[0].valueFrom.fileKeyRef.path: Invalid value: "../env": must not contain '..'"#.into(),
                r#"spec.containers[0].env[0].valueFrom.fileKeyRef.volumeName: Not found: """#.into(),
            ],
        ),
        (
            "fileKeyRef volumes",
            Box::new(|p| {
                spec(p).volumes.as_mut().unwrap().push(host_path("host", "/var/log", None));
                app(p).env = Some(vec![file_env("A", "A", "nope", "env"), file_env("B", "B", "host", "env")]);
            }),
            vec![
                r#"spec.containers[0].env[0].valueFrom.fileKeyRef.volumeName: Not found: "nope""#.into(),
                r#"spec.containers[0].env[1].valueFrom.fileKeyRef.volumeName: Invalid value: "host": referenced volume must be of type emptyDir"#.into(),
            ],
        ),
        ("restart rules without a policy", Box::new(|p| app(p).restart_policy_rules = Some(vec![restart_rule("Restart", "In", vec![1])])), vec!["spec.containers[0].restartPolicy: Required value: must specify restartPolicy when restart rules are used".into()]),
        (
            "restart rule action, operator and exit codes",
            Box::new(|p| {
                let c = app(p);
                c.restart_policy = Some("Never".into());
                let mut no_codes = restart_rule("Restart", "In", vec![]);
                no_codes.exit_codes = None;
                c.restart_policy_rules = Some(vec![restart_rule("Reboot", "Is", (0..256).collect()), no_codes]);
            }),
            vec![
                r#"spec.containers[0].restartPolicyRules[0].action: Unsupported value: "Reboot": supported values: "Restart", "RestartAllContainers""#.into(),
                r#"spec.containers[0].restartPolicyRules[0].exitCodes.operator: Unsupported value: "Is": supported values: "In", "NotIn""#.into(),
                "spec.containers[0].restartPolicyRules[0].exitCodes.values: Too many: 256: must have at most 255 items".into(),
                "spec.containers[0].restartPolicyRules[1].exitCodes: Required value: must be specified".into(),
            ],
        ),
        (
            "too many restart rules",
            Box::new(|p| {
                let c = app(p);
                c.restart_policy = Some("Never".into());
                c.restart_policy_rules = Some(vec![restart_rule("Restart", "In", vec![1]); 21]);
            }),
            vec!["spec.containers[0].restartPolicyRules: Too many: 21: must have at most 20 items".into()],
        ),
        ("env name with =", Box::new(|p| app(p).env = Some(vec![env("A=B", "1")])), vec![r#"spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#.into()]),
        ("env name required", Box::new(|p| app(p).env = Some(vec![env("", "1")])), vec!["spec.containers[0].env[0].name: Required value".into()]),
        (
            "env value and valueFrom",
            Box::new(|p| {
                let mut var = env("X", "1");
                var.value_from = Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector { api_version: Some("v1".into()), field_path: "metadata.name".into() }),
                    ..Default::default()
                });
                app(p).env = Some(vec![var]);
            }),
            vec![r#"spec.containers[0].env[0].valueFrom: Invalid value: "": may not be specified when `value` is not empty"#.into()],
        ),
        (
            "env fieldRef not allowed",
            Box::new(|p| {
                let mut var = env("X", "");
                var.value_from = Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector { api_version: Some("v1".into()), field_path: "status.phase".into() }),
                    ..Default::default()
                });
                app(p).env = Some(vec![var]);
            }),
            vec![r#"spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: "status.phase": supported values: "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs""#.into()],
        ),
        (
            "env resourceFieldRef resource and divisors",
            Box::new(|p| {
                let var = |resource: &str, divisor: &str| {
                    let mut var = env("X", "");
                    var.value_from = Some(EnvVarSource {
                        resource_field_ref: Some(ResourceFieldSelector {
                            resource: resource.into(),
                            divisor: Some(Quantity(divisor.into())),
                            container_name: None,
                        }),
                        ..Default::default()
                    });
                    var
                };
                app(p).env = Some(vec![
                    var("limits.gpu", "1"),
                    var("limits.cpu", "1Ki"),
                    var("requests.memory", "1m"),
                    var("limits.ephemeral-storage", "lots"),
                    var("limits.cpu", "1000m"),
                    var("requests.memory", "1Mi"),
                    var("limits.hugepages-2Mi", "0"),
                ]);
            }),
            vec![
                r#"spec.containers[0].env[0].valueFrom.resourceFieldRef.resource: Unsupported value: "limits.gpu": supported values: "limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu", "requests.ephemeral-storage", "requests.memory""#.into(),
                r#"spec.containers[0].env[1].valueFrom.resourceFieldRef.divisor: Invalid value: "limits.cpu": only divisor's values 1m and 1 are supported with the cpu resource"#.into(),
                r#"spec.containers[0].env[2].valueFrom.resourceFieldRef.divisor: Invalid value: "requests.memory": only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource"#.into(),
                r#"spec.containers[0].env[3].valueFrom.resourceFieldRef.divisor: Invalid value: "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"#.into(),
            ],
        ),
    ];
    for (name, mutate, want) in cases {
        let mut p = base();
        mutate(&mut p);
        assert_eq!(errors_of(&p), want, "case {name:?}");
    }
}

#[test]
fn display_like_the_api_server() {
    let mut p = base();
    app(&mut p).image = None;
    assert_eq!(
        validate_pod(&p).unwrap_err().to_string(),
        r#"Pod "web" is invalid: spec.containers[0].image: Required value"#
    );
    spec(&mut p).volumes.as_mut().unwrap().push(Volume {
        name: "data".into(),
        empty_dir: Some(Default::default()),
        ..Default::default()
    });
    assert_eq!(
        validate_pod(&p).unwrap_err().to_string(),
        r#"Pod "web" is invalid: [spec.volumes[1].name: Duplicate value: "data", spec.containers[0].image: Required value]"#
    );
    // Identical messages are shown once.
    let err = ValidationErrors {
        kind: "Pod".into(),
        name: "x".into(),
        errors: vec![
            FieldError::required("a", ""),
            FieldError::required("a", ""),
            FieldError::not_found("b", BadValue::Str("c".into())),
        ],
    };
    assert_eq!(
        err.to_string(),
        r#"Pod "x" is invalid: [a: Required value, b: Not found: "c"]"#
    );
    assert_eq!(err.errors[0].kind.to_string(), "Required value");
}

fn update_errors(old: &Pod, new: &Pod) -> Vec<String> {
    match validate_update(old, new) {
        Ok(()) => vec![],
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn updates() {
    let old = base();
    let allowed: Vec<(&str, Mutation)> = vec![
        ("nothing", Box::new(|_| {})),
        (
            "image",
            Box::new(|p| app(p).image = Some("busybox:1.37".into())),
        ),
        (
            "set deadline",
            Box::new(|p| spec(p).active_deadline_seconds = Some(60)),
        ),
        (
            "add toleration",
            Box::new(|p| {
                spec(p).tolerations = Some(vec![Toleration {
                    key: Some("k".into()),
                    operator: Some("Exists".into()),
                    ..Default::default()
                }])
            }),
        ),
        (
            "labels",
            Box::new(|p| p.metadata.labels = Some([("a".to_string(), "b".to_string())].into())),
        ),
        (
            "empty list same as unset",
            Box::new(|p| app(p).ports = Some(vec![])),
        ),
    ];
    for (name, mutate) in allowed {
        let mut new = old.clone();
        mutate(&mut new);
        assert_eq!(update_errors(&old, &new), Vec::<String>::new(), "{name}");
    }

    let mut with_init = old.clone();
    spec(&mut with_init).init_containers = Some(vec![container("setup", "busybox:1")]);
    apply_defaults(&mut with_init);
    let mut new_init_image = with_init.clone();
    spec(&mut new_init_image).init_containers.as_mut().unwrap()[0].image = Some("busybox:2".into());
    assert_eq!(
        update_errors(&with_init, &new_init_image),
        Vec::<String>::new()
    );
    assert_eq!(
        update_errors(&old, &with_init).len(),
        1,
        "adding an init container is forbidden"
    );

    let mut with_deadline = old.clone();
    spec(&mut with_deadline).active_deadline_seconds = Some(60);
    let mut raised = with_deadline.clone();
    spec(&mut raised).active_deadline_seconds = Some(120);
    assert_eq!(
        update_errors(&with_deadline, &raised),
        vec!["spec.activeDeadlineSeconds: Invalid value: 120: must be less than or equal to previous value"]
    );
    let mut lowered = with_deadline.clone();
    spec(&mut lowered).active_deadline_seconds = Some(30);
    assert_eq!(
        update_errors(&with_deadline, &lowered),
        Vec::<String>::new()
    );
    assert_eq!(
        update_errors(&with_deadline, &old),
        vec![
            r#"spec.activeDeadlineSeconds: Invalid value: "null": must not update from a positive integer to nil value"#
        ]
    );

    let mut tolerating = old.clone();
    spec(&mut tolerating).tolerations = Some(vec![Toleration {
        key: Some("k".into()),
        ..Default::default()
    }]);
    assert_eq!(
        update_errors(&tolerating, &old),
        vec!["spec.tolerations[0]: Forbidden: existing toleration can not be modified except its tolerationSeconds"]
    );

    let mut renamed = old.clone();
    renamed.metadata.name = Some("api".into());
    assert_eq!(
        update_errors(&old, &renamed),
        vec![r#"metadata.name: Invalid value: "api": field is immutable"#]
    );

    let mut changed = old.clone();
    spec(&mut changed).restart_policy = Some("Never".into());
    app(&mut changed).image = Some("busybox:1.37".into());
    app(&mut changed).command = Some(vec!["sleep".into()]);
    let err = validate_update(&old, &changed).unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert_eq!(
        err.to_string(),
        "Pod \"web\" is invalid: spec: Forbidden: pod updates may not change fields other than \
         `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,\
         `spec.tolerations` (only additions to existing tolerations),\
         `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n  \
         changed: spec.containers[0].command, spec.restartPolicy"
    );

    let mut grace = old.clone();
    spec(&mut grace).termination_grace_period_seconds = Some(10);
    assert_eq!(
        update_errors(&old, &grace).len(),
        1,
        "grace period is immutable"
    );
    let mut negative = old.clone();
    spec(&mut negative).termination_grace_period_seconds = Some(-1);
    let mut one = old.clone();
    spec(&mut one).termination_grace_period_seconds = Some(1);
    assert_eq!(update_errors(&negative, &one), Vec::<String>::new());
}

fn quantities(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

fn resources(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> ResourceRequirements {
    ResourceRequirements {
        limits: (!limits.is_empty()).then(|| quantities(limits)),
        requests: (!requests.is_empty()).then(|| quantities(requests)),
        ..Default::default()
    }
}

const QUANTITY_FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

#[test]
fn unparsable_quantities_name_their_field() {
    for bad in ["512MB", "1gb", "lots"] {
        let mut p = base();
        app(&mut p).resources = Some(resources(&[("memory", bad)], &[]));
        assert_eq!(
            errors_of(&p),
            [format!(
                "spec.containers[0].resources.limits[memory]: Invalid value: \"{bad}\": {QUANTITY_FORMAT}"
            )]
        );
    }
    let mut p = base();
    app(&mut p).resources = Some(resources(&[("cpu", "fast")], &[("memory", "1MM")]));
    assert_eq!(
        errors_of(&p),
        [
            format!("spec.containers[0].resources.limits[cpu]: Invalid value: \"fast\": {QUANTITY_FORMAT}"),
            r#"spec.containers[0].resources.requests[memory]: Invalid value: "1MM": unable to parse quantity's suffix"#.to_string(),
        ]
    );
}

#[test]
fn quantities_are_checked_wherever_a_pod_has_them() {
    let mut p = base();
    let s = spec(&mut p);
    let mut init = container("setup", "busybox");
    init.resources = Some(resources(&[], &[("cpu", "fast")]));
    let mut proxy = sidecar("proxy");
    proxy.resources = Some(resources(&[("memory", "1gb")], &[]));
    s.init_containers = Some(vec![init, proxy]);
    s.overhead = Some(quantities(&[("memory", "lots"), ("cpu", "-1")]));
    s.resources = Some(resources(&[("cpu", "x")], &[]));
    s.volumes.as_mut().unwrap()[0].empty_dir = Some(EmptyDirVolumeSource {
        size_limit: Some(Quantity("1 Gi".into())),
        ..Default::default()
    });
    spec(&mut p).containers[0].volume_mounts = None;
    apply_defaults(&mut p);
    assert_eq!(
        errors_of(&p),
        [
            format!("spec.volumes[0].emptyDir.sizeLimit: Invalid value: \"1 Gi\": {QUANTITY_FORMAT}"),
            format!("spec.initContainers[0].resources.requests[cpu]: Invalid value: \"fast\": {QUANTITY_FORMAT}"),
            format!("spec.initContainers[1].resources.limits[memory]: Invalid value: \"1gb\": {QUANTITY_FORMAT}"),
            r#"spec.overhead[cpu]: Invalid value: "-1": must be greater than or equal to 0"#.to_string(),
            format!("spec.overhead[memory]: Invalid value: \"lots\": {QUANTITY_FORMAT}"),
            format!("spec.resources.limits[cpu]: Invalid value: \"x\": {QUANTITY_FORMAT}"),
        ]
    );
}

#[test]
fn quantity_signs_and_requests_above_limits() {
    let mut p = base();
    app(&mut p).resources = Some(resources(
        &[("cpu", "500m"), ("memory", "-1Mi")],
        &[("cpu", "1"), ("memory", "-2")],
    ));
    assert_eq!(
        errors_of(&p),
        [
            r#"spec.containers[0].resources.limits[memory]: Invalid value: "-1Mi": must be greater than or equal to 0"#,
            r#"spec.containers[0].resources.requests: Invalid value: "1": must be less than or equal to cpu limit of 500m"#,
            r#"spec.containers[0].resources.requests[memory]: Invalid value: "-2": must be greater than or equal to 0"#,
        ]
    );
    let mut p = base();
    app(&mut p).resources = Some(resources(
        &[("cpu", "1"), ("memory", "1Gi")],
        &[("cpu", "1000m"), ("memory", "512Mi")],
    ));
    spec(&mut p).volumes.as_mut().unwrap()[0].empty_dir = Some(EmptyDirVolumeSource {
        size_limit: Some(Quantity("-1".into())),
        ..Default::default()
    });
    assert_eq!(
        errors_of(&p),
        ["spec.volumes[0].emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid resource quantity"]
    );
}

#[test]
fn annotations_are_bounded_in_total() {
    let mut p = base();
    let at_limit = MAX_ANNOTATIONS_BYTES - "a".len() - "b".len();
    p.metadata.annotations = Some(
        [
            ("a".to_string(), "x".repeat(at_limit)),
            ("b".to_string(), String::new()),
        ]
        .into(),
    );
    assert_eq!(errors_of(&p), Vec::<String>::new());
    p.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("b".into(), "y".into());
    assert_eq!(
        errors_of(&p),
        ["metadata.annotations: Too long: may not be more than 262144 bytes"]
    );
}

#[test]
fn fields_berth_does_not_honour_are_refused_by_name() {
    use k8s_openapi::api::core::v1::{GRPCAction, KeyToPath, SecretVolumeSource};
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "emptyDir mode",
            Box::new(|p| spec(p).volumes.as_mut().unwrap()[0].empty_dir.as_mut().unwrap().mode = Some(0o700)),
            "spec.volumes[0].emptyDir.mode: Forbidden: berth does not support this field (alpha feature gate EmptyDirVolumeMode)",
        ),
        (
            "item user",
            Box::new(|p| {
                spec(p).volumes.as_mut().unwrap().push(Volume {
                    name: "s".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some("s".into()),
                        items: Some(vec![KeyToPath { key: "k".into(), path: "k".into(), mode: None, user: Some(7) }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }),
            "spec.volumes[1].secret.items[0].user: Forbidden: berth does not support this field (alpha feature gate AtomicWriteVolumeUserFields)",
        ),
        (
            "bind mount options",
            Box::new(|p| {
                let mut m = mount("data", "/d");
                m.bind_mount_options = Some(vec!["ro".into()]);
                app(p).volume_mounts = Some(vec![m]);
            }),
            "spec.containers[0].volumeMounts[0].bindMountOptions: Forbidden: berth does not support this field (alpha feature gate VolumeBindMountOptions)",
        ),
        (
            "probe protocol",
            Box::new(|p| {
                app(p).readiness_probe = Some(Probe {
                    http_get: Some(HTTPGetAction {
                        port: IntOrString::Int(80),
                        protocol: Some("H2C".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }),
            "spec.containers[0].readinessProbe.httpGet.protocol: Forbidden: berth does not support this field (alpha feature gate H2CContainerProbe)",
        ),
        (
            "grpc mode",
            Box::new(|p| {
                app(p).liveness_probe = Some(Probe {
                    grpc: Some(GRPCAction { port: 9000, service: None, mode: Some("TLS".into()) }),
                    ..Default::default()
                })
            }),
            "spec.containers[0].livenessProbe.grpc.mode: Forbidden: berth does not support this field (alpha feature gate GRPCContainerProbeTLS)",
        ),
    ];
    for (name, mutate, want) in cases {
        let mut p = base();
        mutate(&mut p);
        let got = errors_of(&p);
        assert!(got.iter().any(|e| e == want), "{name}: {got:?}");
    }
}
