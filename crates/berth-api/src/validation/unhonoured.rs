//! Fields of the v1.37 Pod that berth does not honour, refused by name
//! instead of being dropped without a word.
//!
//! Most belong to alpha features, off by default, which the API server
//! drops from a pod unless their gate is on; a cluster that turned one on
//! would otherwise get a node that ignores it. The rest are features berth
//! does not implement yet.

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, KeyToPath, LifecycleHandler, PodSpec, Probe, Volume,
};

use super::errors::FieldError;

/// The error for a field of an alpha feature.
fn alpha(field: String, gate: &str) -> FieldError {
    FieldError::forbidden(
        field,
        format!("berth does not support this field (alpha feature gate {gate})"),
    )
}

/// Every refused field of `spec`.
pub(super) fn spec(spec: &PodSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        volume_fields(volume, &format!("spec.volumes[{i}]"), &mut errs);
    }
    let inits = spec.init_containers.iter().flatten();
    let groups = [
        ("spec.initContainers", inits.collect::<Vec<_>>()),
        ("spec.containers", spec.containers.iter().collect()),
    ];
    for (group, containers) in groups {
        for (i, c) in containers.into_iter().enumerate() {
            container(c, &format!("{group}[{i}]"), &mut errs);
        }
    }
    errs
}

fn container(c: &Container, path: &str, errs: &mut Vec<FieldError>) {
    for (i, mount) in c.volume_mounts.iter().flatten().enumerate() {
        if mount.bind_mount_options.is_some() {
            let field = format!("{path}.volumeMounts[{i}].bindMountOptions");
            errs.push(alpha(field, "VolumeBindMountOptions"));
        }
    }
    let probes = [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ];
    for (name, probe) in probes {
        if let Some(probe) = probe {
            probe_fields(probe, &format!("{path}.{name}"), errs);
        }
    }
    if let Some(lifecycle) = &c.lifecycle {
        let hooks = [
            ("postStart", &lifecycle.post_start),
            ("preStop", &lifecycle.pre_stop),
        ];
        for (name, hook) in hooks {
            if let Some(LifecycleHandler {
                http_get: Some(get),
                ..
            }) = hook
            {
                http_get(get, &format!("{path}.lifecycle.{name}.httpGet"), errs);
            }
        }
    }
}

fn probe_fields(probe: &Probe, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(get) = &probe.http_get {
        http_get(get, &format!("{path}.httpGet"), errs);
    }
    if probe.grpc.as_ref().is_some_and(|g| g.mode.is_some()) {
        errs.push(alpha(format!("{path}.grpc.mode"), "GRPCContainerProbeTLS"));
    }
}

fn http_get(get: &HTTPGetAction, path: &str, errs: &mut Vec<FieldError>) {
    if get.protocol.is_some() {
        errs.push(alpha(format!("{path}.protocol"), "H2CContainerProbe"));
    }
}

/// The `user` of each item.
fn item_users(items: Option<&Vec<KeyToPath>>) -> impl Iterator<Item = Option<i64>> + '_ {
    items.into_iter().flatten().map(|i| i.user)
}

fn volume_fields(volume: &Volume, path: &str, errs: &mut Vec<FieldError>) {
    const USERS: &str = "AtomicWriteVolumeUserFields";
    if volume.empty_dir.as_ref().is_some_and(|e| e.mode.is_some()) {
        errs.push(alpha(format!("{path}.emptyDir.mode"), "EmptyDirVolumeMode"));
    }
    let mut default_user = |source: &str, set: bool| {
        if set {
            errs.push(alpha(format!("{path}.{source}.defaultUser"), USERS));
        }
    };
    default_user(
        "secret",
        volume
            .secret
            .as_ref()
            .is_some_and(|s| s.default_user.is_some()),
    );
    default_user(
        "configMap",
        volume
            .config_map
            .as_ref()
            .is_some_and(|s| s.default_user.is_some()),
    );
    default_user(
        "downwardAPI",
        volume
            .downward_api
            .as_ref()
            .is_some_and(|s| s.default_user.is_some()),
    );
    default_user(
        "projected",
        volume
            .projected
            .as_ref()
            .is_some_and(|s| s.default_user.is_some()),
    );
    let mut users: Vec<(String, Option<i64>)> = Vec::new();
    if let Some(secret) = &volume.secret {
        let at = |j| format!("{path}.secret.items[{j}].user");
        users.extend(
            item_users(secret.items.as_ref())
                .enumerate()
                .map(|(j, u)| (at(j), u)),
        );
    }
    if let Some(cm) = &volume.config_map {
        let at = |j| format!("{path}.configMap.items[{j}].user");
        users.extend(
            item_users(cm.items.as_ref())
                .enumerate()
                .map(|(j, u)| (at(j), u)),
        );
    }
    if let Some(api) = &volume.downward_api {
        let files = api.items.iter().flatten().map(|f| f.user);
        let at = |j| format!("{path}.downwardAPI.items[{j}].user");
        users.extend(files.enumerate().map(|(j, u)| (at(j), u)));
    }
    for (k, source) in volume
        .projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
        .enumerate()
    {
        let at = format!("{path}.projected.sources[{k}]");
        if let Some(secret) = &source.secret {
            let f = |j| format!("{at}.secret.items[{j}].user");
            users.extend(
                item_users(secret.items.as_ref())
                    .enumerate()
                    .map(|(j, u)| (f(j), u)),
            );
        }
        if let Some(cm) = &source.config_map {
            let f = |j| format!("{at}.configMap.items[{j}].user");
            users.extend(
                item_users(cm.items.as_ref())
                    .enumerate()
                    .map(|(j, u)| (f(j), u)),
            );
        }
        if let Some(api) = &source.downward_api {
            let files = api.items.iter().flatten().map(|f| f.user);
            let f = |j| format!("{at}.downwardAPI.items[{j}].user");
            users.extend(files.enumerate().map(|(j, u)| (f(j), u)));
        }
        if let Some(bundle) = &source.cluster_trust_bundle {
            users.push((format!("{at}.clusterTrustBundle.user"), bundle.user));
        }
    }
    for (field, user) in users {
        if user.is_some() {
            errs.push(alpha(field, USERS));
        }
    }
}
