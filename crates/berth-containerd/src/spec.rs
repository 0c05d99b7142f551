//! OCI runtime specs for the pause container and for the pod's containers, as
//! pure functions of their inputs (what containerd's CRI plugin would build).
//!
//! The spec is written as JSON and parsed into [`Spec`]: oci-spec's defaults
//! (and its builders, which fall back to them) are not Kubernetes' defaults.

use std::collections::BTreeMap;
use std::path::Path;

use berth_runtime::{
    ContainerConfig, ImageInfo, Mount, MountPropagation, PidNamespace, Resources, RuntimeError,
    RuntimeErrorKind, SandboxSecurity,
};
use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::capabilities;
use crate::netns::PodNamespaces;
use crate::seccomp;

/// Puts every container of a pod into the one shim of its sandbox.
pub(crate) const GROUP_ANNOTATION: &str = "io.containerd.runc.v2.group";

const OCI_VERSION: &str = "1.0.2-dev";
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Paths containerd's CRI plugin masks in unprivileged containers.
const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// Paths containerd's CRI plugin makes read-only in unprivileged containers.
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A user resolved to numeric ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UserIds {
    pub uid: u32,
    pub gid: u32,
    /// The groups of the image's `/etc/group` that list the user.
    pub additional_gids: Vec<u32>,
}

/// Inputs of the pause container's spec.
pub(crate) struct SandboxSpec<'a> {
    pub sandbox_id: &'a str,
    pub pod_uid: &'a str,
    pub image: &'a ImageInfo,
    /// The pod's pinned namespaces (the UTS one already carries the hostname).
    pub namespaces: &'a PodNamespaces,
    pub security: &'a SandboxSecurity,
}

/// What a container's spec needs besides its config and sandbox.
pub(crate) struct ContainerSpec<'a> {
    pub container_id: &'a str,
    pub sandbox_id: &'a str,
    /// The pod's pinned namespaces, joined by path.
    pub namespaces: &'a PodNamespaces,
    /// The pause process, whose PID namespace a `shareProcessNamespace`
    /// pod's containers join (0: not running).
    pub sandbox_pid: Option<u32>,
    /// The running process whose PID namespace the container joins instead
    /// (`ContainerSecurity::pid_target`, resolved).
    pub target_pid: Option<u32>,
    /// The pod's hostname (for `HOSTNAME`).
    pub hostname: &'a str,
    pub user: UserIds,
    /// The `/dev/shm` to bind (the pod's, or the node's with `hostIPC`);
    /// `None` gives the container its own tmpfs.
    pub shm: Option<&'a Path>,
    /// What `ALL` and `privileged` grant on this host.
    pub host_capabilities: &'a [&'static str],
    /// The host's device nodes, for a privileged container.
    pub host_devices: &'a [Value],
}

fn invalid(message: String) -> RuntimeError {
    RuntimeError::new(RuntimeErrorKind::InvalidSpec, message)
}

/// The pause container: joins the pod's pinned namespaces like every other
/// container, with a PID namespace of its own (the node's with `hostPID`),
/// as the pod's `runAsUser`, under the sandbox's seccomp profile.
pub(crate) fn sandbox_spec(input: &SandboxSpec<'_>) -> Result<Spec, RuntimeError> {
    let config = &input.image.config;
    let args: Vec<String> = config
        .entrypoint
        .iter()
        .chain(&config.cmd)
        .cloned()
        .collect();
    if args.is_empty() {
        return Err(invalid(format!(
            "pause image {} has no entrypoint or cmd",
            input.image.reference
        )));
    }
    let mut env = config.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let security = input.security;
    let pid = (security.namespaces.pid != PidNamespace::Node).then(|| ns("pid", None));
    let namespaces = [
        pid.into_iter().chain([ns("mount", None)]).collect(),
        pod_namespaces(input.namespaces),
    ]
    .concat();
    let annotations =
        BTreeMap::from([(GROUP_ANNOTATION.to_string(), input.sandbox_id.to_string())]);
    // The pod's runAsUser and runAsGroup (CRI's sandbox WithUser), with its
    // fsGroup and supplementalGroups.
    let (uid, gid) = (
        security.run_as_user.unwrap_or(0),
        security.run_as_group.unwrap_or(0),
    );
    let primary = security.run_as_user.map(|_| gid);
    let groups = merge_gids(
        primary
            .into_iter()
            .chain(security.supplemental_groups.iter().copied()),
    );
    let mut user = json!({"uid": uid, "gid": gid});
    if !groups.is_empty() {
        user["additionalGids"] = json!(groups);
    }
    let mut linux = json!({
        "cgroupsPath": crate::cgroups::container_cgroup(input.pod_uid, input.sandbox_id),
        "resources": {"devices": [{"allow": false, "access": "rwm"}]},
        "namespaces": namespaces,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    });
    if let Some(profile) = seccomp::for_process(
        &security.seccomp,
        security.privileged,
        &capabilities::DEFAULT,
    )? {
        linux["seccomp"] = profile;
    }
    let spec = json!({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": false,
            "user": user,
            "args": args,
            "env": env,
            "cwd": config.working_dir.as_deref().filter(|d| !d.is_empty()).unwrap_or("/"),
            "capabilities": capability_sets(&capabilities::DEFAULT),
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": true},
        "mounts": default_mounts(false, None),
        "annotations": annotations,
        "linux": linux,
    });
    to_spec(spec, input.sandbox_id)
}

/// The process's groups as containerd's `WithUser`, `WithAdditionalGIDs`
/// and `WithSupplementalGroups` leave them: sorted, each once.
fn merge_gids(gids: impl Iterator<Item = u32>) -> Vec<u32> {
    let set: std::collections::BTreeSet<u32> = gids.collect();
    set.into_iter().collect()
}

/// A container of the pod: its own mount namespace, its own PID namespace
/// (or the pause's, or the node's), the pod's pinned IPC, UTS and network;
/// capabilities, seccomp and groups from its security settings.
pub(crate) fn container_spec(
    config: &ContainerConfig,
    input: &ContainerSpec<'_>,
) -> Result<Spec, RuntimeError> {
    if config.args.is_empty() {
        return Err(invalid(format!(
            "container {}: no command specified",
            config.name
        )));
    }
    let cwd = if config.working_dir.is_empty() {
        "/"
    } else {
        config.working_dir.as_str()
    };
    if !cwd.starts_with('/') {
        return Err(invalid(format!(
            "container {}: working directory {cwd:?} is not absolute",
            config.name
        )));
    }
    let mut env: Vec<String> = Vec::with_capacity(config.env.len() + 2);
    if !config.env.iter().any(|(k, _)| k == "PATH") {
        env.push(DEFAULT_PATH.to_string());
    }
    if !config.env.iter().any(|(k, _)| k == "HOSTNAME") {
        env.push(format!("HOSTNAME={}", input.hostname));
    }
    for (key, value) in &config.env {
        if key.is_empty() || key.contains('=') {
            return Err(invalid(format!(
                "container {}: invalid environment variable name {key:?}",
                config.name
            )));
        }
        env.push(format!("{key}={value}"));
    }

    let security = &config.security;
    let pid = match security.namespaces.pid {
        _ if input.target_pid.is_some() => input.target_pid.map(|target| {
            json!({
                "type": "pid",
                "path": format!("/proc/{target}/ns/pid"),
            })
        }),
        PidNamespace::Container => Some(ns("pid", None)),
        PidNamespace::Pod => {
            let Some(pause) = input.sandbox_pid else {
                return Err(RuntimeError::other(format!(
                    "container {}: the pod shares its process namespace, but its sandbox {} has no running pause process",
                    config.name, input.sandbox_id
                )));
            };
            Some(json!({
                "type": "pid",
                "path": format!("/proc/{pause}/ns/pid"),
            }))
        }
        PidNamespace::Node => None,
    };
    let namespaces = [
        pid.into_iter().chain([ns("mount", None)]).collect(),
        pod_namespaces(input.namespaces),
    ]
    .concat();

    let mut mounts = default_mounts(config.privileged, input.shm);
    for mount in &config.mounts {
        if !mount.container_path.starts_with('/') {
            return Err(invalid(format!(
                "container {}: mount destination {:?} is not absolute",
                config.name, mount.container_path
            )));
        }
    }
    // A volume replaces a default mount at the same place, as in containerd.
    mounts.retain(|m| {
        !config
            .mounts
            .iter()
            .any(|v| clean(&v.container_path) == m["destination"].as_str().unwrap_or(""))
    });
    for mount in &config.mounts {
        let mode = if mount.read_only { "ro" } else { "rw" };
        mounts.push(json!({
            "destination": clean(&mount.container_path),
            "type": "bind",
            "source": mount.host_path,
            "options": ["rbind", propagation_option(mount.propagation), mode],
        }));
    }

    let mut annotations: BTreeMap<String, String> = config.annotations.clone();
    annotations.insert(GROUP_ANNOTATION.into(), input.sandbox_id.into());

    let caps = capabilities::container_set(config.privileged, security, input.host_capabilities)
        .map_err(|e| invalid(format!("container {}: {}", config.name, e.message)))?;
    let mut linux = json!({
        "cgroupsPath": crate::cgroups::container_cgroup(&config.pod.uid, input.container_id),
        "resources": resources(&config.resources, config.privileged),
        "namespaces": namespaces,
    });
    if let Some(propagation) = rootfs_propagation(&config.mounts) {
        linux["rootfsPropagation"] = json!(propagation);
    }
    // Privileged: nothing masked, every host device (CRI's WithPrivileged,
    // WithHostDevices); procMount Unmasked: nothing masked either.
    if config.privileged {
        linux["devices"] = json!(input.host_devices);
    } else if !security.unmasked_proc {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    if let Some(profile) = seccomp::for_process(&security.seccomp, config.privileged, &caps)? {
        linux["seccomp"] = profile;
    }
    // The primary group is a supplementary one too (containerd 1.6.18+).
    let image_groups = if security.strict_supplemental_groups {
        Vec::new()
    } else {
        input.user.additional_gids.clone()
    };
    let groups = merge_gids(
        [input.user.gid]
            .into_iter()
            .chain(image_groups)
            .chain(security.supplemental_groups.iter().copied()),
    );
    let user = json!({"uid": input.user.uid, "gid": input.user.gid, "additionalGids": groups});
    // No oomScoreAdj: negative values fail on these hosts (EIO) and the
    // container inherits the shim's. No rlimits: raising one above the agent's
    // own hard limit fails.
    let spec = json!({
        "ociVersion": OCI_VERSION,
        "process": {
            // CRI's WithTTY: the shim makes the console.
            "terminal": config.stdio.tty,
            "user": user,
            "args": config.args,
            "env": env,
            "cwd": cwd,
            "capabilities": capability_sets(&caps),
            "noNewPrivileges": security.no_new_privileges,
        },
        "root": {"path": "rootfs", "readonly": config.read_only_root},
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    });
    to_spec(spec, input.container_id)
}

/// A volume's bind propagation, as the CRI plugin's `WithMounts` sets it.
fn propagation_option(propagation: MountPropagation) -> &'static str {
    match propagation {
        MountPropagation::Private => "rprivate",
        MountPropagation::HostToContainer => "rslave",
        MountPropagation::Bidirectional => "rshared",
    }
}

/// The root's propagation, which a volume's must not be narrower than (the
/// CRI plugin's `WithMounts`): rshared with a Bidirectional volume, else
/// rslave with a HostToContainer one, else runc's default (rprivate).
fn rootfs_propagation(mounts: &[Mount]) -> Option<&'static str> {
    let has = |p| mounts.iter().any(|m| m.propagation == p);
    if has(MountPropagation::Bidirectional) {
        Some("rshared")
    } else if has(MountPropagation::HostToContainer) {
        Some("rslave")
    } else {
        None
    }
}

/// Parses the written JSON into oci-spec's [`Spec`], and refuses a spec
/// from which a key would be dropped (one oci-spec does not know): runc
/// would silently not apply it.
fn to_spec(spec: Value, id: &str) -> Result<Spec, RuntimeError> {
    let parsed: Spec = serde_json::from_value(spec.clone())
        .map_err(|e| invalid(format!("build OCI spec of {id}: {e}")))?;
    let kept = serde_json::to_value(&parsed)
        .map_err(|e| invalid(format!("build OCI spec of {id}: {e}")))?;
    match lost_key(&spec, &kept, "") {
        Some(key) => Err(invalid(format!(
            "build OCI spec of {id}: {key} does not survive into the OCI spec"
        ))),
        None => Ok(parsed),
    }
}

/// The first key of `written` with a value that `kept` lacks. Defaults
/// (false, 0, "", empty lists and maps) may be left out when serialized.
fn lost_key(written: &Value, kept: &Value, path: &str) -> Option<String> {
    let is_default = |v: &Value| match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    };
    match (written, kept) {
        (Value::Object(written), Value::Object(kept)) => written.iter().find_map(|(key, value)| {
            let path = format!("{path}.{key}");
            match kept.get(key) {
                Some(kept) => lost_key(value, kept, &path),
                None if is_default(value) => None,
                None => Some(path),
            }
        }),
        (Value::Array(written), Value::Array(kept)) => {
            if written.len() != kept.len() {
                return Some(path.to_string());
            }
            written
                .iter()
                .zip(kept)
                .enumerate()
                .find_map(|(i, (w, k))| lost_key(w, k, &format!("{path}[{i}]")))
        }
        (written, Value::Null) if !is_default(written) => Some(path.to_string()),
        _ => None,
    }
}

fn ns(kind: &str, path: Option<&Path>) -> Value {
    match path {
        Some(path) => json!({"type": kind, "path": path}),
        None => json!({"type": kind}),
    }
}

/// The pod's pinned namespaces: those it does not share with the node.
fn pod_namespaces(pinned: &PodNamespaces) -> Vec<Value> {
    let mut namespaces = Vec::new();
    if let Some(ipc) = &pinned.ipc {
        namespaces.push(ns("ipc", Some(ipc)));
    }
    if let Some(uts) = &pinned.uts {
        namespaces.push(ns("uts", Some(uts)));
    }
    if let Some(net) = &pinned.net {
        namespaces.push(ns("network", Some(net)));
    }
    namespaces
}

/// Bounding, effective and permitted; never inheritable or ambient.
fn capability_sets(caps: &[&str]) -> Value {
    json!({"bounding": caps, "effective": caps, "permitted": caps})
}

fn clean(path: &str) -> &str {
    match path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    }
}

/// containerd's default Linux mounts (without `/run`, as the CRI plugin does).
fn default_mounts(privileged: bool, shm: Option<&Path>) -> Vec<Value> {
    let sys_mode = if privileged { "rw" } else { "ro" };
    let shm = match shm {
        Some(source) => json!({
            "destination": "/dev/shm", "type": "bind", "source": source,
            "options": ["rbind", "rprivate", "rw"],
        }),
        None => json!({
            "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        }),
    };
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        shm,
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", sys_mode]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", sys_mode]}),
    ]
}

fn resources(resources: &Resources, privileged: bool) -> Value {
    // Privileged containers may use every device node (the nodes themselves are
    // not created here: only runc's defaults exist in /dev).
    let mut out = cgroup_resources(resources);
    out["devices"] = json!([{"allow": privileged, "access": "rwm"}]);
    out
}

/// The memory and CPU part of the runtime-spec `LinuxResources`, which is
/// also what a running container's update carries.
pub(crate) fn cgroup_resources(resources: &Resources) -> Value {
    let mut out = json!({});
    if let Some(limit) = resources.memory_limit_bytes.filter(|l| *l > 0) {
        // swap = limit: no swap beyond the limit, so an OOM is an OOM.
        out["memory"] = json!({"limit": limit, "swap": limit});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(shares) = resources.cpu_shares {
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(quota) = resources.cpu_quota {
        cpu.insert("quota".into(), json!(quota));
    }
    if let Some(period) = resources.cpu_period {
        cpu.insert("period".into(), json!(period));
    }
    if !cpu.is_empty() {
        out["cpu"] = Value::Object(cpu);
    }
    out
}

/// Resolves a `user[:group]` (names or numbers) against the image's
/// `/etc/passwd` and `/etc/group`, as containerd does. No user means root.
/// The additional groups are those that list the user as a member.
pub(crate) fn resolve_user(
    user: Option<&str>,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<UserIds, RuntimeError> {
    let spec = user.map(str::trim).filter(|u| !u.is_empty()).unwrap_or("0");
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd_entries: Vec<Vec<&str>> = passwd
        .unwrap_or("")
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let group_entries: Vec<Vec<&str>> = group
        .unwrap_or("")
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();

    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd_entries.iter().find(|f| f[2].parse() == Ok(uid)),
        Err(_) => passwd_entries.iter().find(|f| f[0] == user_part),
    };
    let (uid, mut gid, name) = match (user_part.parse::<u32>(), entry) {
        (Ok(uid), Some(f)) => (uid, f[3].parse().unwrap_or(0), Some(f[0])),
        (Ok(uid), None) => (uid, 0, None),
        (Err(_), Some(f)) => {
            let uid = f[2].parse().map_err(|_| {
                invalid(format!(
                    "user {user_part:?}: bad uid in the image's /etc/passwd"
                ))
            })?;
            (uid, f[3].parse().unwrap_or(0), Some(f[0]))
        }
        // root is root even in an image without /etc/passwd.
        (Err(_), None) if user_part == "root" => (0, 0, Some("root")),
        (Err(_), None) => {
            return Err(invalid(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            )))
        }
    };
    if let Some(group_part) = group_part {
        gid = match group_part.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_entries
                .iter()
                .find(|f| f[0] == group_part)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "unable to find group {group_part}: no matching entries in group file"
                    ))
                })?,
        };
    }
    let mut additional_gids = Vec::new();
    if let Some(name) = name {
        // As containerd's WithAdditionalGIDs: groups listing the user, except
        // one named after the user.
        for f in group_entries.iter().filter(|f| f[0] != name) {
            let member = f
                .get(3)
                .is_some_and(|m| m.split(',').any(|m| m.trim() == name));
            if let (true, Ok(g)) = (member, f[2].parse::<u32>()) {
                if !additional_gids.contains(&g) {
                    additional_gids.push(g);
                }
            }
        }
    }
    Ok(UserIds {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime::{ContainerKind, ContainerSecurity, ImageConfig, Mount, PodRef};
    use oci_spec::runtime::{Capability, LinuxNamespaceType};
    use std::path::PathBuf;
    use std::sync::LazyLock;

    fn image() -> ImageInfo {
        ImageInfo {
            reference: "localhost/pause:1".into(),
            digest: "sha256:00".into(),
            size: 1,
            config: ImageConfig {
                entrypoint: vec!["/pause".into()],
                ..Default::default()
            },
        }
    }

    fn config() -> ContainerConfig {
        ContainerConfig {
            pod: PodRef {
                uid: "uid-1".into(),
                namespace: "default".into(),
                name: "web".into(),
            },
            name: "app".into(),
            kind: ContainerKind::Regular,
            attempt: 0,
            image: image(),
            args: vec!["httpd".into(), "-f".into()],
            env: vec![("A".into(), "1".into()), ("B".into(), "x=y".into())],
            working_dir: "/www".into(),
            user: None,
            mounts: vec![Mount {
                host_path: "/var/lib/berth/pods/uid-1/volumes/data".into(),
                container_path: "/data/".into(),
                read_only: true,
                propagation: MountPropagation::Private,
            }],
            log_path: "/var/log/pods/x/app/0.log".into(),
            read_only_root: false,
            privileged: false,
            security: Default::default(),
            resources: Resources {
                memory_limit_bytes: Some(64 << 20),
                cpu_shares: Some(256),
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
            },
            annotations: BTreeMap::from([("io.berth.hash".into(), "abc".into())]),
            stdio: Default::default(),
        }
    }

    /// The pins of sandbox `sb1` under root `/r`, on a pod network or the host's.
    static POD_NS: LazyLock<PodNamespaces> =
        LazyLock::new(|| PodNamespaces::of(Path::new("/r"), "sb1", false, false));
    static HOST_NS: LazyLock<PodNamespaces> =
        LazyLock::new(|| PodNamespaces::of(Path::new("/r"), "sb1", true, false));
    /// What this host grants: every capability but CAP_SYS_RESOURCE.
    static HOST_CAPS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
        let mut caps = capabilities::DEFAULT.to_vec();
        caps.extend(["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE"]);
        caps
    });
    static HOST_DEVICES: LazyLock<Vec<Value>> =
        LazyLock::new(|| vec![json!({"path": "/dev/sda", "type": "b", "major": 8, "minor": 0})]);

    fn input(namespaces: &PodNamespaces) -> ContainerSpec<'_> {
        ContainerSpec {
            container_id: "sb1-app-1",
            sandbox_id: "sb1",
            namespaces,
            sandbox_pid: None,
            target_pid: None,
            hostname: "web",
            user: UserIds {
                uid: 1000,
                gid: 100,
                additional_gids: vec![10],
            },
            shm: Some(Path::new("/r/sandboxes/sb1/shm")),
            host_capabilities: &HOST_CAPS,
            host_devices: &HOST_DEVICES,
        }
    }

    fn namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        let linux = spec.linux().as_ref().unwrap();
        linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| (n.typ(), n.path().clone()))
            .collect()
    }

    #[test]
    fn a_container_joins_the_sandbox_namespaces() {
        let spec = container_spec(&config(), &input(&POD_NS)).unwrap();
        assert_eq!(
            namespaces(&spec),
            vec![
                (LinuxNamespaceType::Pid, None),
                (LinuxNamespaceType::Mount, None),
                (LinuxNamespaceType::Ipc, Some("/r/ns/sb1/ipc".into())),
                (LinuxNamespaceType::Uts, Some("/r/ns/sb1/uts".into())),
                (LinuxNamespaceType::Network, Some("/r/ns/sb1/net".into())),
            ]
        );
        assert_eq!(spec.hostname(), &None, "the UTS namespace is the sandbox's");
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/berth/poduid-1/sb1-app-1"))
        );
        assert_eq!(
            linux.masked_paths().as_ref().unwrap().len(),
            MASKED_PATHS.len()
        );
        assert!(linux
            .readonly_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/sys".to_string()));
        let annotations = spec.annotations().as_ref().unwrap();
        assert_eq!(annotations[GROUP_ANNOTATION], "sb1");
        assert_eq!(annotations["io.berth.hash"], "abc");
    }

    #[test]
    fn host_network_containers_have_no_net_or_uts_namespace() {
        let spec = container_spec(&config(), &input(&HOST_NS)).unwrap();
        let kinds: Vec<_> = namespaces(&spec).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            kinds,
            vec![
                LinuxNamespaceType::Pid,
                LinuxNamespaceType::Mount,
                LinuxNamespaceType::Ipc
            ]
        );
    }

    #[test]
    fn the_process_gets_args_env_cwd_user_and_the_default_capabilities() {
        let spec = container_spec(&config(), &input(&HOST_NS)).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.args().as_ref().unwrap(), &["httpd", "-f"]);
        assert_eq!(
            process.env().as_ref().unwrap(),
            &[DEFAULT_PATH, "HOSTNAME=web", "A=1", "B=x=y"]
        );
        assert_eq!(process.cwd(), Path::new("/www"));
        assert_eq!(process.user().uid(), 1000);
        assert_eq!(process.user().gid(), 100);
        // The primary group and the image's groups of the user.
        assert_eq!(
            process.user().additional_gids().as_ref().unwrap(),
            &[10, 100]
        );
        assert_eq!(process.no_new_privileges(), Some(false));
        assert_eq!(process.oom_score_adj(), None);
        assert_eq!(process.rlimits(), &None);
        let caps = process.capabilities().as_ref().unwrap();
        let bounding = caps.bounding().as_ref().unwrap();
        assert_eq!(bounding.len(), 14);
        assert!(bounding.contains(&Capability::NetRaw));
        assert!(!bounding.contains(&Capability::SysAdmin));
        assert_eq!(caps.effective(), caps.bounding());
        assert_eq!(caps.permitted(), caps.bounding());
        assert_eq!(caps.inheritable(), &None);
        assert_eq!(caps.ambient(), &None);
    }

    #[test]
    fn mount_propagation_sets_the_bind_and_the_roots_propagation() {
        let volume = |path: &str, propagation| Mount {
            host_path: format!("/host{path}").into(),
            container_path: path.into(),
            read_only: false,
            propagation,
        };
        let options = |spec: &Spec, destination: &str| {
            spec.mounts()
                .as_ref()
                .unwrap()
                .iter()
                .find(|m| m.destination() == Path::new(destination))
                .and_then(|m| m.options().clone())
                .unwrap()
        };
        let rootfs = |spec: &Spec| {
            let linux = spec.linux().as_ref().unwrap();
            linux.rootfs_propagation().clone()
        };

        let mut config = config();
        let spec = container_spec(&config, &input(&HOST_NS)).unwrap();
        assert_eq!(rootfs(&spec), None, "runc's default, rprivate");

        config.mounts = vec![
            volume("/none", MountPropagation::Private),
            volume("/slave", MountPropagation::HostToContainer),
        ];
        let spec = container_spec(&config, &input(&HOST_NS)).unwrap();
        assert_eq!(options(&spec, "/none"), ["rbind", "rprivate", "rw"]);
        assert_eq!(options(&spec, "/slave"), ["rbind", "rslave", "rw"]);
        assert_eq!(rootfs(&spec).as_deref(), Some("rslave"));

        config
            .mounts
            .push(volume("/shared", MountPropagation::Bidirectional));
        let spec = container_spec(&config, &input(&HOST_NS)).unwrap();
        assert_eq!(options(&spec, "/shared"), ["rbind", "rshared", "rw"]);
        assert_eq!(rootfs(&spec).as_deref(), Some("rshared"));
    }

    #[test]
    fn mounts_are_the_defaults_plus_volumes_as_rprivate_binds() {
        let mut config = config();
        config.mounts.push(Mount {
            host_path: "/big".into(),
            container_path: "/dev/shm".into(),
            read_only: false,
            propagation: MountPropagation::Private,
        });
        let spec = container_spec(&config, &input(&HOST_NS)).unwrap();
        let mounts = spec.mounts().as_ref().unwrap();
        let destinations: Vec<_> = mounts.iter().map(|m| m.destination().clone()).collect();
        let expected: Vec<PathBuf> = [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/data",
            "/dev/shm",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(destinations, expected);
        let data = &mounts[6];
        assert_eq!(data.typ().as_deref(), Some("bind"));
        assert_eq!(
            data.source().as_deref(),
            Some(Path::new("/var/lib/berth/pods/uid-1/volumes/data"))
        );
        assert_eq!(
            data.options().as_ref().unwrap(),
            &["rbind", "rprivate", "ro"]
        );
        let sys = &mounts[4];
        assert!(sys.options().as_ref().unwrap().contains(&"ro".to_string()));
        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.path(), Path::new("rootfs"));
        assert_eq!(root.readonly(), Some(false));
    }

    #[test]
    fn the_sandbox_shm_is_shared_unless_absent() {
        let spec = container_spec(&config(), &input(&HOST_NS)).unwrap();
        let shm = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/dev/shm"))
            .unwrap();
        assert_eq!(
            shm.source().as_deref(),
            Some(Path::new("/r/sandboxes/sb1/shm"))
        );
        let mut own = input(&HOST_NS);
        own.shm = None;
        let spec = container_spec(&config(), &own).unwrap();
        let shm = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/dev/shm"))
            .unwrap();
        assert_eq!(shm.typ().as_deref(), Some("tmpfs"));
    }

    #[test]
    fn resources_set_memory_with_equal_swap_and_cpu() {
        let spec = container_spec(&config(), &input(&HOST_NS)).unwrap();
        let resources = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        let memory = resources.memory().as_ref().unwrap();
        assert_eq!(memory.limit(), Some(64 << 20));
        assert_eq!(memory.swap(), Some(64 << 20));
        let cpu = resources.cpu().as_ref().unwrap();
        assert_eq!(cpu.shares(), Some(256));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.period(), Some(100_000));

        let mut config = config();
        config.resources = Resources::default();
        let spec = container_spec(&config, &input(&HOST_NS)).unwrap();
        let resources = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        assert_eq!(resources.memory(), &None);
        assert_eq!(resources.cpu(), &None);
    }

    #[test]
    fn privileged_containers_get_every_capability_and_no_masks() {
        let mut config = config();
        config.privileged = true;
        let spec = container_spec(&config, &input(&HOST_NS)).unwrap();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert!(caps
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin));
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(linux.masked_paths(), &None);
        assert_eq!(linux.readonly_paths(), &None);
    }

    #[test]
    fn bad_configs_are_invalid_specs() {
        let mut no_args = config();
        no_args.args.clear();
        let err = container_spec(&no_args, &input(&HOST_NS)).unwrap_err();
        assert_eq!(err.kind, RuntimeErrorKind::InvalidSpec);
        assert!(err.message.contains("no command specified"), "{err}");
        let mut relative = config();
        relative.working_dir = "www".into();
        let err = container_spec(&relative, &input(&HOST_NS)).unwrap_err();
        assert_eq!(err.kind, RuntimeErrorKind::InvalidSpec);
        let mut bad_env = config();
        bad_env.env.push(("".into(), "x".into()));
        assert_eq!(
            container_spec(&bad_env, &input(&HOST_NS)).unwrap_err().kind,
            RuntimeErrorKind::InvalidSpec
        );
    }

    #[test]
    fn the_pause_spec_joins_the_pinned_namespaces() {
        let image = image();
        let spec = sandbox_spec(&SandboxSpec {
            sandbox_id: "sb1",
            pod_uid: "uid-1",
            image: &image,
            namespaces: &POD_NS,
            security: &SandboxSecurity::default(),
        })
        .unwrap();
        assert_eq!(spec.hostname(), &None, "the pinned UTS namespace has it");
        assert_eq!(
            namespaces(&spec),
            vec![
                (LinuxNamespaceType::Pid, None),
                (LinuxNamespaceType::Mount, None),
                (LinuxNamespaceType::Ipc, Some("/r/ns/sb1/ipc".into())),
                (LinuxNamespaceType::Uts, Some("/r/ns/sb1/uts".into())),
                (LinuxNamespaceType::Network, Some("/r/ns/sb1/net".into())),
            ]
        );
        assert_eq!(
            spec.process().as_ref().unwrap().args().as_ref().unwrap(),
            &["/pause"]
        );
        assert_eq!(
            spec.linux().as_ref().unwrap().cgroups_path().as_deref(),
            Some(Path::new("/berth/poduid-1/sb1"))
        );
        assert_eq!(
            spec.annotations().as_ref().unwrap()[GROUP_ANNOTATION],
            "sb1"
        );

        let host = sandbox_spec(&SandboxSpec {
            sandbox_id: "sb1",
            pod_uid: "uid-1",
            image: &image,
            namespaces: &HOST_NS,
            security: &SandboxSecurity::default(),
        })
        .unwrap();
        assert_eq!(host.hostname(), &None);
        assert_eq!(
            namespaces(&host),
            vec![
                (LinuxNamespaceType::Pid, None),
                (LinuxNamespaceType::Mount, None),
                (LinuxNamespaceType::Ipc, Some("/r/ns/sb1/ipc".into())),
            ]
        );
    }

    fn caps_of(spec: &Spec) -> Vec<Capability> {
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        caps.bounding().clone().unwrap().into_iter().collect()
    }

    fn secured(security: ContainerSecurity) -> ContainerConfig {
        ContainerConfig {
            security,
            ..config()
        }
    }

    #[test]
    fn capabilities_are_added_and_dropped_and_no_new_privs_set() {
        let config = secured(ContainerSecurity {
            add_capabilities: vec!["NET_ADMIN".into()],
            drop_capabilities: vec!["NET_RAW".into(), "CAP_CHOWN".into()],
            no_new_privileges: true,
            ..Default::default()
        });
        let spec = container_spec(&config, &input(&POD_NS)).unwrap();
        let caps = caps_of(&spec);
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(!caps.contains(&Capability::NetRaw) && !caps.contains(&Capability::Chown));
        assert_eq!(caps.len(), 13);
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.no_new_privileges(), Some(true));
        let unknown = secured(ContainerSecurity {
            add_capabilities: vec!["NOPE".into()],
            ..Default::default()
        });
        let err = container_spec(&unknown, &input(&POD_NS)).unwrap_err();
        assert_eq!(err.kind, RuntimeErrorKind::InvalidSpec);
        assert_eq!(err.message, r#"container app: unknown capability "NOPE""#);
    }

    #[test]
    fn seccomp_follows_the_profile_and_privileged_runs_unconfined() {
        let spec = container_spec(&config(), &input(&POD_NS)).unwrap();
        assert_eq!(spec.linux().as_ref().unwrap().seccomp(), &None);
        let confined = secured(ContainerSecurity {
            seccomp: berth_runtime::SeccompProfile::RuntimeDefault,
            ..Default::default()
        });
        let spec = container_spec(&confined, &input(&POD_NS)).unwrap();
        let seccomp = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
        assert_eq!(
            seccomp.default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActErrno
        );
        let privileged = ContainerConfig {
            privileged: true,
            ..confined
        };
        let spec = container_spec(&privileged, &input(&POD_NS)).unwrap();
        assert_eq!(spec.linux().as_ref().unwrap().seccomp(), &None);
    }

    #[test]
    fn privileged_containers_get_the_hosts_capabilities_and_devices() {
        let privileged = ContainerConfig {
            privileged: true,
            ..config()
        };
        let spec = container_spec(&privileged, &input(&POD_NS)).unwrap();
        assert_eq!(caps_of(&spec).len(), HOST_CAPS.len());
        assert!(!caps_of(&spec).contains(&Capability::SysResource));
        let linux = spec.linux().as_ref().unwrap();
        let devices = linux.devices().as_ref().unwrap();
        assert_eq!(devices[0].path(), Path::new("/dev/sda"));
        let allowed = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap();
        assert!(allowed[0].allow());
        let sys = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap();
        assert!(sys.options().as_ref().unwrap().contains(&"rw".to_string()));
    }

    #[test]
    fn unmasked_proc_has_no_masked_or_read_only_paths() {
        let config = secured(ContainerSecurity {
            unmasked_proc: true,
            ..Default::default()
        });
        let spec = container_spec(&config, &input(&POD_NS)).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(linux.masked_paths(), &None);
        assert_eq!(linux.readonly_paths(), &None);
    }

    #[test]
    fn pid_namespaces_are_the_containers_the_pods_or_the_nodes() {
        let mode = |pid| {
            secured(ContainerSecurity {
                namespaces: berth_runtime::NamespaceOptions {
                    pid,
                    host_ipc: false,
                },
                ..Default::default()
            })
        };
        let spec = container_spec(&mode(PidNamespace::Node), &input(&POD_NS)).unwrap();
        assert!(!namespaces(&spec)
            .iter()
            .any(|(k, _)| *k == LinuxNamespaceType::Pid));
        let err = container_spec(&mode(PidNamespace::Pod), &input(&POD_NS)).unwrap_err();
        assert!(err.message.contains("no running pause process"), "{err}");
        let mut shared = input(&POD_NS);
        shared.sandbox_pid = Some(4242);
        let spec = container_spec(&mode(PidNamespace::Pod), &shared).unwrap();
        assert_eq!(
            namespaces(&spec)[0],
            (LinuxNamespaceType::Pid, Some("/proc/4242/ns/pid".into()))
        );
    }

    #[test]
    fn host_ipc_pods_join_no_ipc_namespace() {
        let host_ipc = PodNamespaces::of(Path::new("/r"), "sb1", false, true);
        let spec = container_spec(&config(), &input(&host_ipc)).unwrap();
        assert!(!namespaces(&spec)
            .iter()
            .any(|(k, _)| *k == LinuxNamespaceType::Ipc));
    }

    #[test]
    fn groups_merge_the_primary_the_images_and_the_pods() {
        let config = secured(ContainerSecurity {
            supplemental_groups: vec![3000, 10, 2000],
            ..Default::default()
        });
        let spec = container_spec(&config, &input(&POD_NS)).unwrap();
        let user = spec.process().as_ref().unwrap().user().clone();
        assert_eq!(
            user.additional_gids().as_ref().unwrap(),
            &[10, 100, 2000, 3000]
        );
        let strict = secured(ContainerSecurity {
            supplemental_groups: vec![3000],
            strict_supplemental_groups: true,
            ..Default::default()
        });
        let spec = container_spec(&strict, &input(&POD_NS)).unwrap();
        let user = spec.process().as_ref().unwrap().user().clone();
        assert_eq!(user.additional_gids().as_ref().unwrap(), &[100, 3000]);
    }

    #[test]
    fn the_pause_runs_confined_as_the_pods_user_in_its_namespaces() {
        let image = image();
        let security = SandboxSecurity {
            namespaces: berth_runtime::NamespaceOptions {
                pid: PidNamespace::Node,
                host_ipc: true,
            },
            seccomp: berth_runtime::SeccompProfile::RuntimeDefault,
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            supplemental_groups: vec![2000],
            ..Default::default()
        };
        let host_ipc = PodNamespaces::of(Path::new("/r"), "sb1", false, true);
        let spec = sandbox_spec(&SandboxSpec {
            sandbox_id: "sb1",
            pod_uid: "uid-1",
            image: &image,
            namespaces: &host_ipc,
            security: &security,
        })
        .unwrap();
        let kinds: Vec<_> = namespaces(&spec).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            kinds,
            vec![
                LinuxNamespaceType::Mount,
                LinuxNamespaceType::Uts,
                LinuxNamespaceType::Network
            ]
        );
        assert!(spec.linux().as_ref().unwrap().seccomp().is_some());
        let user = spec.process().as_ref().unwrap().user().clone();
        assert_eq!((user.uid(), user.gid()), (1000, 3000));
        assert_eq!(user.additional_gids().as_ref().unwrap(), &[2000, 3000]);
        let privileged = SandboxSecurity {
            privileged: true,
            ..security
        };
        let spec = sandbox_spec(&SandboxSpec {
            sandbox_id: "sb1",
            pod_uid: "uid-1",
            image: &image,
            namespaces: &host_ipc,
            security: &privileged,
        })
        .unwrap();
        assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
    }

    #[test]
    fn users_resolve_by_number_or_name() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n";
        let group = "root:x:0:\nwheel:x:10:root,www\nwww:x:33:\nstaff:x:50:www\n";
        let ids = |u: Option<&str>| resolve_user(u, Some(passwd), Some(group));
        assert_eq!(
            ids(None).unwrap(),
            UserIds {
                uid: 0,
                gid: 0,
                additional_gids: vec![10]
            }
        );
        assert_eq!(
            ids(Some("33")).unwrap(),
            UserIds {
                uid: 33,
                gid: 33,
                additional_gids: vec![10, 50]
            }
        );
        assert_eq!(ids(Some("www:staff")).unwrap().gid, 50);
        assert_eq!(
            ids(Some("1234")).unwrap(),
            UserIds {
                uid: 1234,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            ids(Some("1234:5")).unwrap(),
            UserIds {
                uid: 1234,
                gid: 5,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            resolve_user(Some("root"), None, None).unwrap(),
            UserIds::default()
        );
        let err = ids(Some("nobody")).unwrap_err();
        assert_eq!(err.kind, RuntimeErrorKind::InvalidSpec);
        assert!(err.message.contains("unable to find user nobody"), "{err}");
        assert_eq!(
            ids(Some("www:nogroup")).unwrap_err().kind,
            RuntimeErrorKind::InvalidSpec
        );
    }

    #[test]
    fn a_key_oci_spec_would_drop_is_refused_naming_it() {
        let spec = json!({
            "ociVersion": OCI_VERSION,
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "noSuchKnob": true},
            "root": {"path": "rootfs"},
        });
        let err = to_spec(spec, "c1").unwrap_err();
        assert!(
            err.message.contains(".process.noSuchKnob"),
            "{}",
            err.message
        );
        // Defaults may go unwritten; they are not lost.
        let spec = json!({
            "ociVersion": OCI_VERSION,
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "terminal": false},
            "root": {"path": "rootfs"},
        });
        to_spec(spec, "c1").unwrap();
    }
}
