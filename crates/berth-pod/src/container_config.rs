//! Turns a spec container and its image into the runtime's `ContainerConfig`,
//! by the kubelet's rules (docs/kubelet-semantics.md §11): image env then spec env,
//! `$(VAR)` expansion of command and args, ENTRYPOINT/CMD merging, volumes.

use std::collections::BTreeMap;

use berth_api::{command, env};
use berth_runtime::{
    ContainerConfig, ContainerKind, ContainerStdio, ImageInfo, Mount, MountPropagation, PodRef,
    Resources,
};
use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};

use crate::dirs::PodDirs;
use crate::security::{self, SecurityDefaults};
use crate::subpath;
use berth_api::quantity;

/// Why a container cannot be configured.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The kubelet's `CreateContainerConfigError`.
    #[error("{0}")]
    Config(String),
    /// What containerd's CRI finds at `CreateContainer` (an image volume's
    /// subPath): `CreateContainerError`.
    #[error("{0}")]
    Create(String),
}

impl ConfigError {
    /// The container's waiting reason.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            ConfigError::Config(_) => "CreateContainerConfigError",
            ConfigError::Create(_) => "CreateContainerError",
        }
    }
}

/// Everything about the pod a container config needs.
pub(crate) struct PodContext<'a> {
    pub pod: &'a Pod,
    pub pod_ref: &'a PodRef,
    pub dirs: &'a PodDirs,
    /// The sandbox's IPs (none before its network is set up).
    pub pod_ips: Vec<String>,
    pub host_ip: &'a str,
    pub node_name: &'a str,
    pub hostname: &'a str,
    pub security: SecurityDefaults<'a>,
    /// Cluster mode's service variables, under the spec's.
    pub service_vars: Vec<(String, String)>,
    /// Where `envFrom`, `configMapKeyRef` and `secretKeyRef` resolve
    /// (cluster mode).
    pub objects: Option<&'a (dyn env::EnvObjects + Sync)>,
    /// What `resourceFieldRef` reads for limits nothing sets.
    pub allocatable: &'a berth_api::resource_field::NodeAllocatable,
}

pub(crate) fn build(
    ctx: &PodContext<'_>,
    container: &Container,
    kind: ContainerKind,
    attempt: u32,
    image: &ImageInfo,
    termination_message_file: Option<&std::path::Path>,
) -> Result<ContainerConfig, ConfigError> {
    let config_error = |e: env::EnvError| ConfigError::Config(e.to_string());
    let files = crate::env_files::VolumeFiles {
        pod: ctx.pod,
        dirs: ctx.dirs,
    };
    let scope = env::EnvScope {
        pod: ctx.pod,
        pod_ips: &ctx.pod_ips,
        host_ip: ctx.host_ip,
        node_name: ctx.node_name,
        objects: ctx.objects.map(|o| o as &dyn env::EnvObjects),
        allocatable: ctx.allocatable,
        files: Some(&files),
    };
    // command and args see the kubelet's variables only, not the image's.
    let kubelet_vars =
        env::container_vars(ctx.service_vars.clone(), &scope, container).map_err(config_error)?;
    let mut vars = env::with_image_env(&image.config.env, kubelet_vars.clone());
    // containerd's CRI sets HOSTNAME unless the pod does.
    if !vars.iter().any(|(k, _)| k == "HOSTNAME") {
        vars.push(("HOSTNAME".into(), ctx.hostname.to_string()));
    }
    let (command, args) = command::expand_command_and_args(
        container.command.as_deref().unwrap_or_default(),
        container.args.as_deref().unwrap_or_default(),
        &kubelet_vars,
    );
    let args =
        command::container_args(&image.config.entrypoint, &image.config.cmd, &command, &args);
    if args.is_empty() {
        return Err(ConfigError::Config(
            "no command specified: the image has no ENTRYPOINT or CMD and the container no command"
                .into(),
        ));
    }
    let working_dir = container
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| image.config.working_dir.clone().filter(|d| !d.is_empty()))
        .unwrap_or_else(|| "/".into());
    let security = container.security_context.as_ref();
    let settings = security::container(
        ctx.pod,
        &ctx.pod_ref.to_string(),
        container,
        image,
        ctx.security,
    )
    .map_err(ConfigError::Config)?;

    let mut annotations = BTreeMap::new();
    annotations.insert(
        "io.kubernetes.container.terminationMessagePath".to_string(),
        container
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into()),
    );
    if let Some(spec_image) = &container.image {
        annotations.insert(
            crate::worker::SPEC_IMAGE_ANNOTATION.into(),
            spec_image.clone(),
        );
    }
    if let Some(signal) = &image.config.stop_signal {
        annotations.insert("io.berth.container.stopSignal".into(), signal.clone());
    }

    Ok(ContainerConfig {
        pod: ctx.pod_ref.clone(),
        name: container.name.clone(),
        kind,
        attempt,
        image: image.clone(),
        args,
        env: vars,
        working_dir,
        user: Some(settings.user),
        mounts: mounts(ctx, container, &kubelet_vars, termination_message_file)?,
        log_path: ctx.dirs.log_path(&container.name, attempt),
        read_only_root: security
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        privileged: security.and_then(|s| s.privileged).unwrap_or(false),
        security: settings.security,
        resources: resources(container),
        annotations,
        stdio: ContainerStdio {
            stdin: container.stdin.unwrap_or(false),
            stdin_once: container.stdin_once.unwrap_or(false),
            tty: container.tty.unwrap_or(false),
        },
    })
}

fn mounts(
    ctx: &PodContext<'_>,
    container: &Container,
    vars: &[(String, String)],
    termination_message_file: Option<&std::path::Path>,
) -> Result<Vec<Mount>, ConfigError> {
    let volumes = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut mounts = Vec::new();
    // Staging mounts made so far, released if a later volume mount fails.
    let mut staged: Vec<std::path::PathBuf> = Vec::new();
    for (index, vm) in container.volume_mounts.iter().flatten().enumerate() {
        let release_staged = |_: &ConfigError| {
            for target in &staged {
                let _ = subpath::release(target);
            }
        };
        let propagation =
            mount_propagation(vm.mount_propagation.as_deref()).inspect_err(release_staged)?;
        let source =
            volume_source(ctx, volumes, container, vars, index, vm).inspect_err(release_staged)?;
        if source.staged {
            staged.push(source.path.clone());
        }
        mounts.push(Mount {
            host_path: source.path,
            container_path: vm.mount_path.clone(),
            // API data (configMap, secret, downwardAPI, projected) and
            // images are always mounted read-only, as by the kubelet.
            read_only: vm.read_only.unwrap_or(false) || source.read_only,
            propagation,
        });
    }
    let taken = |path: &str| mounts.iter().any(|m: &Mount| m.container_path == path);
    let mut extra = Vec::new();
    for (file, path) in [
        ("etc-hosts", "/etc/hosts"),
        ("hostname", "/etc/hostname"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        if !taken(path) {
            extra.push(Mount {
                host_path: ctx.dirs.etc_file(file),
                container_path: path.into(),
                read_only: false,
                propagation: MountPropagation::Private,
            });
        }
    }
    if let Some(file) = termination_message_file {
        let path = container
            .termination_message_path
            .as_deref()
            .unwrap_or("/dev/termination-log");
        if !path.is_empty() && !taken(path) {
            extra.push(Mount {
                host_path: file.to_path_buf(),
                container_path: path.into(),
                read_only: false,
                propagation: MountPropagation::Private,
            });
        }
    }
    mounts.extend(extra);
    Ok(mounts)
}

/// The kubelet's `translateMountPropagation`: unset and `None` are private.
fn mount_propagation(mode: Option<&str>) -> Result<MountPropagation, ConfigError> {
    match mode {
        None | Some("None") => Ok(MountPropagation::Private),
        Some("HostToContainer") => Ok(MountPropagation::HostToContainer),
        Some("Bidirectional") => Ok(MountPropagation::Bidirectional),
        Some(other) => Err(ConfigError::Config(format!(
            "invalid MountPropagation mode: {other:?}"
        ))),
    }
}

/// The host path runc mounts for one volume mount.
struct VolumeSource {
    path: std::path::PathBuf,
    /// A subPath staging mount berth made for this start.
    staged: bool,
    /// The volume is read-only whatever the mount says (API data, images).
    read_only: bool,
}

/// The volume's path, or for a subPath the staging mount of it that
/// `subpath` made (never the joined path: the pod controls what is in it).
fn volume_source(
    ctx: &PodContext<'_>,
    volumes: &[k8s_openapi::api::core::v1::Volume],
    container: &Container,
    vars: &[(String, String)],
    index: usize,
    vm: &k8s_openapi::api::core::v1::VolumeMount,
) -> Result<VolumeSource, ConfigError> {
    let volume = volumes
        .iter()
        .find(|v| v.name == vm.name)
        .ok_or_else(|| ConfigError::Config(format!("volume {:?} not found", vm.name)))?;
    let path = ctx.dirs.volume_path(volume).ok_or_else(|| {
        ConfigError::Config(format!("volume {:?} has no supported source", vm.name))
    })?;
    let image = volume.image.is_some();
    let read_only = image || ctx.dirs.api_object_volume(volume).is_some();
    let Some(sub_path) = subpath::requested(vm, vars).map_err(ConfigError::Config)? else {
        return Ok(VolumeSource {
            path,
            staged: false,
            read_only,
        });
    };
    let staging = subpath::SubPathMount {
        pod_dir: &ctx.dirs.pod,
        volume: &vm.name,
        volume_path: &path,
        sub_path: &sub_path,
        container: &container.name,
        index,
    };
    let staged = if image {
        // containerd's CRI resolves an image subPath at CreateContainer.
        staging.prepare_in_image().map_err(|e| {
            ConfigError::Create(format!(
                "failed to mount image volume: ImageVolumeMountFailed: {e}"
            ))
        })?
    } else {
        staging.prepare().map_err(ConfigError::Config)?
    };
    Ok(VolumeSource {
        path: staged,
        staged: true,
        read_only,
    })
}

/// The kubelet's mapping of `resources` to cgroup settings: CPU requests to
/// shares, CPU limits to a CFS quota over a 100 ms period, memory limits as is.
fn resources(container: &Container) -> Resources {
    cgroup_resources(&container.resources.clone().unwrap_or_default())
}

/// [`resources`] of a container's requirements, also what a resize applies.
pub(crate) fn cgroup_resources(r: &ResourceRequirements) -> Resources {
    let r = Some(r);
    let get = |map: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
               key: &str| map.and_then(|m| m.get(key)).map(|q| q.0.clone());
    let limits = r.and_then(|r| r.limits.as_ref());
    let requests = r.and_then(|r| r.requests.as_ref());
    let memory_limit_bytes = get(limits, "memory").and_then(|q| quantity::value(&q));
    let cpu_limit = get(limits, "cpu").and_then(|q| quantity::milli_value(&q));
    // A limit without a request requests the limit (API server defaulting).
    let cpu_request = get(requests, "cpu")
        .and_then(|q| quantity::milli_value(&q))
        .or(cpu_limit);
    const PERIOD: u64 = 100_000;
    Resources {
        memory_limit_bytes,
        cpu_shares: Some(cpu_request.map_or(2, |m| ((m * 1024 / 1000) as u64).max(2))),
        cpu_quota: cpu_limit.map(|m| ((m * PERIOD as i128 / 1000) as i64).max(1000)),
        cpu_period: cpu_limit.map(|_| PERIOD),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime::ImageConfig;

    fn pod(yaml: &str) -> Pod {
        let mut pod = berth_api::manifest::parse_pods(yaml).unwrap().remove(0);
        berth_api::defaults::apply_defaults(&mut pod);
        pod.metadata.uid = Some("u1".into());
        pod
    }

    fn image() -> ImageInfo {
        ImageInfo {
            reference: "docker.io/library/app:1".into(),
            digest: "sha256:00".into(),
            size: 0,
            config: ImageConfig {
                entrypoint: vec!["/entry".into()],
                cmd: vec!["default".into()],
                env: vec!["PATH=/bin".into(), "MODE=image".into()],
                working_dir: Some("/srv".into()),
                user: Some("1000".into()),
                stop_signal: None,
            },
        }
    }

    fn build_for(yaml: &str) -> ContainerConfig {
        let pod = pod(yaml);
        let tmp = std::env::temp_dir();
        let dirs = PodDirs::new(&tmp, &tmp, "default", "p", "u1");
        let pod_ref = PodRef {
            uid: "u1".into(),
            namespace: "default".into(),
            name: "p".into(),
        };
        let ctx = PodContext {
            pod: &pod,
            pod_ref: &pod_ref,
            dirs: &dirs,
            pod_ips: vec!["10.0.0.7".into(), "fd00::7".into()],
            host_ip: "192.0.2.1",
            node_name: "node",
            hostname: "p",
            security: SecurityDefaults {
                seccomp_root: &tmp,
                seccomp_default: false,
                selinux_enabled: false,
            },
            service_vars: Vec::new(),
            objects: None,
            allocatable: &Default::default(),
        };
        let container = &pod.spec.as_ref().unwrap().containers[0];
        build(&ctx, container, ContainerKind::Regular, 2, &image(), None).unwrap()
    }

    #[test]
    fn stdin_stdin_once_and_tty_reach_the_runtime() {
        let spec = |fields: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - {{name: app, image: app:1{fields}}}\n")
        };
        assert_eq!(build_for(&spec("")).stdio, ContainerStdio::default());
        assert_eq!(
            build_for(&spec(", stdin: true, stdinOnce: true, tty: true")).stdio,
            ContainerStdio {
                stdin: true,
                stdin_once: true,
                tty: true
            }
        );
        assert_eq!(
            build_for(&spec(", stdin: true")).stdio,
            ContainerStdio {
                stdin: true,
                ..Default::default()
            }
        );
    }

    #[test]
    fn args_follow_the_kubelet_rules_and_expand_spec_variables_only() {
        let c = build_for(
            r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: app
    image: app:1
    args: ["$(GREETING) $$(GREETING) $(PATH) $(MISSING)"]
    env:
    - {name: GREETING, value: hi}
    - {name: MODE, value: spec}
    - name: IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
"#,
        );
        assert_eq!(c.args, vec!["/entry", "hi $(GREETING) $(PATH) $(MISSING)"]);
        let env: std::collections::HashMap<_, _> = c.env.iter().cloned().collect();
        assert_eq!(env["MODE"], "spec", "spec env overrides the image's");
        assert_eq!(env["PATH"], "/bin");
        assert_eq!(env["IP"], "10.0.0.7");
        assert_eq!(env["HOSTNAME"], "p");
        assert_eq!(c.working_dir, "/srv");
        assert_eq!(c.user.as_deref(), Some("1000"));
        assert!(c.log_path.ends_with("default_p_u1/app/2.log"));
    }

    #[test]
    fn command_replaces_entrypoint_and_cmd() {
        let c = build_for(
            "
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  securityContext: {runAsUser: 7, runAsGroup: 8}
  containers:
  - {name: app, image: 'app:1', command: [sh, -c, 'exit 0'], workingDir: /w}
",
        );
        assert_eq!(c.args, vec!["sh", "-c", "exit 0"]);
        assert_eq!(c.working_dir, "/w");
        assert_eq!(c.user.as_deref(), Some("7:8"));
    }

    #[test]
    fn volumes_and_etc_files_are_mounted() {
        let c = build_for(
            "
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  volumes:
  - {name: data, emptyDir: {}}
  - {name: host, hostPath: {path: /srv/x}}
  containers:
  - name: app
    image: 'app:1'
    volumeMounts:
    - {name: data, mountPath: /data}
    - {name: host, mountPath: /etc/hosts, readOnly: true}
",
        );
        let paths: Vec<_> = c
            .mounts
            .iter()
            .map(|m| (m.container_path.as_str(), m.read_only))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("/data", false),
                ("/etc/hosts", true),
                ("/etc/hostname", false),
                ("/etc/resolv.conf", false)
            ]
        );
        assert!(c.mounts[0]
            .host_path
            .ends_with("pods/u1/volumes/kubernetes.io~empty-dir/data"));
    }

    #[test]
    fn mount_propagation_is_translated_as_the_kubelet_does() {
        let c = build_for(
            "
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  volumes:
  - {name: host, hostPath: {path: /srv/x}}
  containers:
  - name: app
    image: 'app:1'
    securityContext: {privileged: true}
    volumeMounts:
    - {name: host, mountPath: /unset}
    - {name: host, mountPath: /none, mountPropagation: None}
    - {name: host, mountPath: /slave, mountPropagation: HostToContainer}
    - {name: host, mountPath: /shared, mountPropagation: Bidirectional}
",
        );
        let modes: Vec<_> = c
            .mounts
            .iter()
            .map(|m| (m.container_path.as_str(), m.propagation))
            .collect();
        assert_eq!(
            modes[..4],
            [
                ("/unset", MountPropagation::Private),
                ("/none", MountPropagation::Private),
                ("/slave", MountPropagation::HostToContainer),
                ("/shared", MountPropagation::Bidirectional),
            ]
        );
        assert_eq!(
            mount_propagation(Some("Shared")).unwrap_err().to_string(),
            r#"invalid MountPropagation mode: "Shared""#
        );
    }

    #[test]
    fn resources_map_to_cgroup_settings() {
        let c = build_for(
            "
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - name: app
    image: 'app:1'
    resources:
      limits: {cpu: 500m, memory: 64Mi}
      requests: {cpu: 250m}
",
        );
        assert_eq!(
            c.resources,
            Resources {
                memory_limit_bytes: Some(64 << 20),
                cpu_shares: Some(256),
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
            }
        );
    }
}
