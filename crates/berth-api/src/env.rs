//! A container's environment (kubelet `makeEnvironmentVariables`).
//!
//! The kubelet builds the spec's variables itself: `envFrom` sources first
//! (a later source's key replacing an earlier one's), then `env` entries in
//! order, overriding them; a literal `value` expanded against the variables
//! defined before it; `valueFrom` resolved from the pod. The image's ENV is
//! merged in by the runtime underneath (image first, spec overriding), so the
//! kubelet's `$(VAR)` expansion never sees image variables. Standalone berth
//! has no API server, hence no ConfigMaps or Secrets: references to them
//! resolve like missing objects do in the kubelet (optional → skipped,
//! otherwise an error).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvFromSource, EnvVar, EnvVarSource, Pod};

use crate::expansion;
use crate::resource_field::{self, NodeAllocatable};

/// Why the variables cannot be produced; the worker reports it as
/// `CreateContainerConfigError`, with the kubelet's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// Image env (`KEY=VALUE` strings) merged with the kubelet's variables
/// (`kubelet_env`): a spec variable replaces an image one of the same name
/// in place, new ones are appended in spec order.
pub fn container_env(
    image_env: &[String],
    spec_env: &[EnvVar],
    pod: &Pod,
    pod_ip: Option<&str>,
    node_name: &str,
) -> Result<Vec<(String, String)>, EnvError> {
    let kubelet_vars = kubelet_env(spec_env, pod, pod_ip, node_name)?;
    Ok(with_image_env(image_env, kubelet_vars))
}

/// [`container_env`] for a caller that already has [`kubelet_env`]'s
/// variables (it needs them for `command`/`args` expansion too).
pub fn with_image_env(
    image_env: &[String],
    kubelet_vars: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut merged: Vec<(String, String)> = Vec::new();
    let image_vars = image_env.iter().map(|kv| match kv.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (kv.clone(), String::new()),
    });
    for (name, value) in image_vars.chain(kubelet_vars) {
        set(&mut merged, name, value);
    }
    merged
}

/// Only the variables the kubelet itself defines from `spec_env`, one per
/// name (the last definition wins) in order of first definition, with no
/// configMaps or secrets. This is the map the kubelet expands
/// `command`/`args` against.
pub fn kubelet_env(
    spec_env: &[EnvVar],
    pod: &Pod,
    pod_ip: Option<&str>,
    node_name: &str,
) -> Result<Vec<(String, String)>, EnvError> {
    let container = Container {
        env: Some(spec_env.to_vec()),
        ..Default::default()
    };
    let pod_ips: Vec<String> = pod_ip.map(str::to_string).into_iter().collect();
    let scope = EnvScope {
        pod,
        pod_ips: &pod_ips,
        host_ip: "",
        node_name,
        objects: None,
        allocatable: &NodeAllocatable::default(),
        files: None,
    };
    container_vars(Vec::new(), &scope, &container)
}

/// The configMaps and secrets that `envFrom`, `configMapKeyRef` and
/// `secretKeyRef` name (cluster mode reads them from the API server).
pub trait EnvObjects {
    /// A configMap's `data` (the kubelet reads no `binaryData` into env);
    /// `None` when it does not exist.
    fn config_map(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>>;
    /// A secret's data, decoded; `None` when it does not exist.
    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>>;
}

/// The files of the pod's volumes that `fileKeyRef` reads (the worker's
/// emptyDir directories).
pub trait EnvFiles {
    /// The value of `key` in the env file at `path` in volume `volume`, and
    /// the file's host path: the value is empty when the file does not
    /// define it. `Err` carries the kubelet's message.
    fn file_value(&self, volume: &str, path: &str, key: &str) -> Result<(String, String), String>;
}

/// What a container's variables resolve against.
pub struct EnvScope<'a> {
    pub pod: &'a Pod,
    /// The sandbox's IPs, once its network is set up (the node's with host
    /// network).
    pub pod_ips: &'a [String],
    /// The node's IP.
    pub host_ip: &'a str,
    pub node_name: &'a str,
    /// Where `envFrom` and key references resolve (none: every object is
    /// missing).
    pub objects: Option<&'a dyn EnvObjects>,
    /// What `resourceFieldRef` reads for a limit nothing sets.
    pub allocatable: &'a NodeAllocatable,
    /// Where `fileKeyRef` reads (none: no volume is found).
    pub files: Option<&'a dyn EnvFiles>,
}

/// The kubelet's variables for `container`, over `services`' variables
/// (cluster mode's `KUBERNETES_SERVICE_HOST` and the like): `envFrom`'s
/// keys override the services', and `env` overrides both and may refer to
/// them, as in the kubelet's `makeEnvironmentVariables`.
pub fn container_vars(
    services: Vec<(String, String)>,
    scope: &EnvScope<'_>,
    container: &Container,
) -> Result<Vec<(String, String)>, EnvError> {
    let mut vars = services;
    for source in container.env_from.iter().flatten() {
        for (name, value) in env_from(source, scope)? {
            set(&mut vars, name, value);
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(literal) = var.value.as_deref().filter(|v| !v.is_empty()) {
            expansion::expand(literal, |name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
        } else if let Some(source) = &var.value_from {
            match value_from(source, scope, container) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(detail) => return Err(EnvError(detail)),
            }
        } else {
            String::new()
        };
        set(&mut vars, var.name.clone(), value);
    }
    Ok(vars)
}

/// One `envFrom` source's variables: every key of the object, behind the
/// prefix. Keys that are no valid variable names are kept, as the kubelet
/// has since it relaxed variable names (it no longer skips them with an
/// `InvalidEnvironmentVariableNames` event). A missing optional object
/// gives none.
fn env_from(
    source: &EnvFromSource,
    scope: &EnvScope<'_>,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = namespace(scope.pod);
    let (object, name, optional) = match (&source.config_map_ref, &source.secret_ref) {
        (Some(cm), _) => (Object::ConfigMap, &cm.name, cm.optional),
        (None, Some(secret)) => (Object::Secret, &secret.name, secret.optional),
        (None, None) => return Ok(Vec::new()),
    };
    let data = object.data(scope.objects, namespace, name);
    let data = object_or_missing(data, object.resource(), name, optional)?;
    let prefix = source.prefix.as_deref().unwrap_or_default();
    Ok(data
        .into_iter()
        .flatten()
        .map(|(key, value)| (format!("{prefix}{key}"), value))
        .collect())
}

/// The object's data; a missing one is `Ok(None)` when optional, else the
/// API server's NotFound message, as the kubelet passes it on.
fn object_or_missing(
    data: Option<BTreeMap<String, String>>,
    resource: &str,
    name: &str,
    optional: Option<bool>,
) -> Result<Option<BTreeMap<String, String>>, EnvError> {
    match data {
        Some(data) => Ok(Some(data)),
        None if optional == Some(true) => Ok(None),
        None => Err(EnvError(format!("{resource} {name:?} not found"))),
    }
}

/// The two kinds of object a variable may take its values from.
#[derive(Debug, Clone, Copy)]
enum Object {
    ConfigMap,
    Secret,
}

impl Object {
    /// The API resource, as the API server's NotFound message names it.
    fn resource(self) -> &'static str {
        match self {
            Object::ConfigMap => "configmaps",
            Object::Secret => "secrets",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Object::ConfigMap => "ConfigMap",
            Object::Secret => "Secret",
        }
    }

    fn data(
        self,
        objects: Option<&dyn EnvObjects>,
        namespace: &str,
        name: &str,
    ) -> Option<BTreeMap<String, String>> {
        let objects = objects?;
        match self {
            Object::ConfigMap => objects.config_map(namespace, name),
            Object::Secret => objects.secret(namespace, name),
        }
    }
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

fn set(vars: &mut Vec<(String, String)>, name: String, value: String) {
    match vars.iter_mut().find(|(k, _)| *k == name) {
        Some(slot) => slot.1 = value,
        None => vars.push((name, value)),
    }
}

/// `Ok(None)`: an optional reference that does not resolve (the kubelet
/// skips the variable).
fn value_from(
    source: &EnvVarSource,
    scope: &EnvScope<'_>,
    container: &Container,
) -> Result<Option<String>, String> {
    let EnvScope {
        pod,
        pod_ips,
        host_ip,
        node_name,
        objects,
        allocatable,
        files,
    } = *scope;
    if let Some(field) = &source.field_ref {
        let version = field.api_version.as_deref().unwrap_or("v1");
        if !version.is_empty() && version != "v1" {
            return Err(format!("unsupported pod version: {version}"));
        }
        let node = NodeFacts { node_name, host_ip };
        return field_value(&field.field_path, pod, pod_ips, &node).map(Some);
    }
    let namespace = namespace(pod);
    let key_ref = match (&source.config_map_key_ref, &source.secret_key_ref) {
        (Some(cm), _) => Some((Object::ConfigMap, &cm.name, &cm.key, cm.optional)),
        (None, Some(secret)) => Some((Object::Secret, &secret.name, &secret.key, secret.optional)),
        (None, None) => None,
    };
    if let Some((object, name, key, optional)) = key_ref {
        let data = object.data(objects, namespace, name);
        return key_value(data, object, namespace, name, key, optional);
    }
    if let Some(resource) = &source.resource_field_ref {
        return resource_field::env_value(resource, pod, container, allocatable).map(Some);
    }
    if let Some(file) = &source.file_key_ref {
        let no_volume = || {
            let volume = &file.volume_name;
            format!("cannot find the volume {volume:?} referenced by FileKeyRef")
        };
        let files = files.ok_or_else(no_volume)?;
        let (host_path, value) = files.file_value(&file.volume_name, &file.path, &file.key)?;
        if !value.is_empty() {
            return Ok(Some(value));
        }
        if file.optional == Some(true) {
            return Ok(None);
        }
        let key = &file.key;
        return Err(format!(
            "environment variable key {key:?} not found in file {host_path:?}"
        ));
    }
    Ok(Some(String::new()))
}

/// One key of a configMap or secret, with the kubelet's messages when the
/// object or the key is missing and the reference is not optional.
fn key_value(
    data: Option<BTreeMap<String, String>>,
    object: Object,
    namespace: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, String> {
    let optional = optional == Some(true);
    let Some(data) = data else {
        return if optional {
            Ok(None)
        } else {
            Err(format!("{} {name:?} not found", object.resource()))
        };
    };
    match data.get(key) {
        Some(value) => Ok(Some(value.clone())),
        None if optional => Ok(None),
        None => Err(format!(
            "couldn't find key {key} in {} {namespace}/{name}",
            object.kind()
        )),
    }
}

/// What the node knows of itself that a field path may name.
struct NodeFacts<'a> {
    node_name: &'a str,
    host_ip: &'a str,
}

/// The downward-API field paths an env var may name (kubelet
/// `podFieldSelectorRuntimeValue`): the IPs as the status reports them,
/// the plural ones comma-joined.
fn field_value(
    path: &str,
    pod: &Pod,
    pod_ips: &[String],
    node: &NodeFacts<'_>,
) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let text = |v: Option<&String>| v.cloned().unwrap_or_default();
    if let Some(key) = subscript(path, "metadata.labels") {
        return Ok(text(meta.labels.as_ref().and_then(|m| m.get(key))));
    }
    if let Some(key) = subscript(path, "metadata.annotations") {
        return Ok(text(meta.annotations.as_ref().and_then(|m| m.get(key))));
    }
    match path {
        "metadata.name" => Ok(text(meta.name.as_ref())),
        "metadata.namespace" => Ok(text(meta.namespace.as_ref())),
        "metadata.uid" => Ok(text(meta.uid.as_ref())),
        "spec.nodeName" => Ok(spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| node.node_name.to_string())),
        "spec.serviceAccountName" => Ok(text(spec.and_then(|s| s.service_account_name.as_ref()))),
        "status.podIP" => Ok(pod_ips.first().cloned().unwrap_or_default()),
        "status.podIPs" => Ok(pod_ips.join(",")),
        // berth's node has one IP, so hostIPs is that one.
        "status.hostIP" | "status.hostIPs" => Ok(node.host_ip.to_string()),
        _ => Err(format!("field path {path:?} is not supported by berth")),
    }
}

/// `metadata.labels['key']` → `key`.
fn subscript<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let inner = path.strip_prefix(prefix)?.strip_prefix("['")?;
    inner.strip_suffix("']")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{env, env_field, pod};
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, SecretEnvSource, SecretKeySelector,
    };

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sample_pod() -> Pod {
        let mut p = pod("web");
        p.metadata.uid = Some("uid-1".into());
        p.metadata.labels = Some([("app".to_string(), "shop".to_string())].into());
        p
    }

    #[test]
    fn image_env_first_then_spec_overrides_in_place() {
        let image = vec![
            "PATH=/usr/bin".to_string(),
            "HOME=/root".to_string(),
            "EMPTY".to_string(),
        ];
        let spec = vec![env("HOME", "/home/app"), env("NEW", "1")];
        let got = container_env(&image, &spec, &sample_pod(), None, "node-a").unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("PATH", "/usr/bin"),
                ("HOME", "/home/app"),
                ("EMPTY", ""),
                ("NEW", "1")
            ])
        );
    }

    #[test]
    fn values_expand_against_earlier_spec_variables_only() {
        let image = vec!["IMG=from-image".to_string()];
        let spec = vec![
            env("LATER_REF", "$(A)"),
            env("A", "a"),
            env("B", "$(A)-b"),
            env("C", "$(IMG)|$(MISSING)|$$(A)"),
            env("A", "again"),
            env("D", "$(A)"),
        ];
        let got = container_env(&image, &spec, &sample_pod(), None, "node-a").unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("IMG", "from-image"),
                ("LATER_REF", "$(A)"),
                ("A", "again"),
                ("B", "a-b"),
                ("C", "$(IMG)|$(MISSING)|$(A)"),
                ("D", "again"),
            ])
        );
    }

    #[test]
    fn field_refs() {
        let spec = vec![
            env_field("NAME", "metadata.name"),
            env_field("NS", "metadata.namespace"),
            env_field("UID", "metadata.uid"),
            env_field("NODE", "spec.nodeName"),
            env_field("IP", "status.podIP"),
            env_field("IPS", "status.podIPs"),
            env_field("APP", "metadata.labels['app']"),
            env_field("NOPE", "metadata.annotations['x']"),
            env("GREETING", "hi $(NAME) on $(NODE)"),
        ];
        let got = kubelet_env(&spec, &sample_pod(), Some("10.1.0.7"), "node-a").unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("NAME", "web"),
                ("NS", "default"),
                ("UID", "uid-1"),
                ("NODE", "node-a"),
                ("IP", "10.1.0.7"),
                ("IPS", "10.1.0.7"),
                ("APP", "shop"),
                ("NOPE", ""),
                ("GREETING", "hi web on node-a"),
            ])
        );
        let no_ip =
            kubelet_env(&[env_field("IP", "status.podIP")], &sample_pod(), None, "n").unwrap();
        assert_eq!(no_ip, pairs(&[("IP", "")]));
    }

    #[test]
    fn ip_field_refs_read_the_sandbox_and_the_node() {
        let spec = vec![
            env_field("POD_IP", "status.podIP"),
            env_field("POD_IPS", "status.podIPs"),
            env_field("HOST_IP", "status.hostIP"),
            env_field("HOST_IPS", "status.hostIPs"),
        ];
        let container = Container {
            env: Some(spec),
            ..Default::default()
        };
        let pod = sample_pod();
        let pod_ips = ["10.1.0.7".to_string(), "fd00::7".to_string()];
        let scope = EnvScope {
            files: None,
            pod: &pod,
            pod_ips: &pod_ips,
            host_ip: "192.0.2.1",
            node_name: "n",
            objects: None,
            allocatable: &NodeAllocatable::default(),
        };
        let got = container_vars(Vec::new(), &scope, &container).unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("POD_IP", "10.1.0.7"),
                ("POD_IPS", "10.1.0.7,fd00::7"),
                ("HOST_IP", "192.0.2.1"),
                ("HOST_IPS", "192.0.2.1"),
            ])
        );
    }

    #[test]
    fn unresolvable_sources_name_the_variable() {
        let mut cm = env("CFG", "");
        cm.value_from = Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: "settings".into(),
                key: "k".into(),
                optional: None,
            }),
            ..Default::default()
        });
        let err = kubelet_env(&[cm.clone()], &sample_pod(), None, "n").unwrap_err();
        assert_eq!(err.to_string(), r#"configmaps "settings" not found"#);

        // Optional references that do not resolve are skipped, like the kubelet does.
        let mut secret = env("S", "");
        secret.value_from = Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: "creds".into(),
                key: "k".into(),
                optional: Some(true),
            }),
            ..Default::default()
        });
        let got = kubelet_env(&[secret, env("X", "1")], &sample_pod(), None, "n").unwrap();
        assert_eq!(got, pairs(&[("X", "1")]));
    }

    struct Objects;

    impl EnvObjects for Objects {
        fn config_map(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>> {
            (namespace == "default" && name == "settings").then(|| {
                BTreeMap::from([
                    ("mode".to_string(), "fast".to_string()),
                    ("log.level".to_string(), "debug".to_string()),
                ])
            })
        }
        fn secret(&self, _: &str, name: &str) -> Option<BTreeMap<String, String>> {
            (name == "creds").then(|| {
                BTreeMap::from([
                    ("pw".to_string(), "s3cret".to_string()),
                    ("mode".to_string(), "secret".to_string()),
                ])
            })
        }
    }

    fn vars_of(container: &Container) -> Result<Vec<(String, String)>, EnvError> {
        let pod = sample_pod();
        let scope = EnvScope {
            files: None,
            pod: &pod,
            pod_ips: &[],
            host_ip: "",
            node_name: "n",
            objects: Some(&Objects),
            allocatable: &NodeAllocatable::default(),
        };
        container_vars(Vec::new(), &scope, container)
    }

    /// One file, `/v/env`, in volume `data`.
    struct Files;
    impl EnvFiles for Files {
        fn file_value(&self, volume: &str, _: &str, key: &str) -> Result<(String, String), String> {
            if volume != "data" {
                return Err(format!(
                    "cannot find the volume {volume:?} referenced by FileKeyRef"
                ));
            }
            let value = crate::env_file::value_of("A='1'\nEMPTY=''\n", key)?;
            Ok(("/v/env".into(), value))
        }
    }

    #[test]
    fn file_key_refs_resolve_with_the_kubelets_messages() {
        use k8s_openapi::api::core::v1::FileKeySelector;
        let var = |key: &str, volume: &str, optional: bool| EnvVar {
            name: "V".into(),
            value_from: Some(EnvVarSource {
                file_key_ref: Some(FileKeySelector {
                    key: key.into(),
                    path: "env".into(),
                    volume_name: volume.into(),
                    optional: Some(optional),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let resolve = |var: EnvVar, files: Option<&dyn EnvFiles>| {
            let pod = sample_pod();
            let scope = EnvScope {
                files,
                pod: &pod,
                pod_ips: &[],
                host_ip: "",
                node_name: "n",
                objects: None,
                allocatable: &NodeAllocatable::default(),
            };
            let container = Container {
                env: Some(vec![var]),
                ..Default::default()
            };
            container_vars(Vec::new(), &scope, &container).map_err(|e| e.0)
        };
        assert_eq!(
            resolve(var("A", "data", false), Some(&Files)),
            Ok(pairs(&[("V", "1")]))
        );
        assert_eq!(resolve(var("B", "data", true), Some(&Files)), Ok(vec![]));
        // An empty value is a missing key, as in the kubelet.
        let missing = r#"environment variable key "EMPTY" not found in file "/v/env""#;
        assert_eq!(
            resolve(var("EMPTY", "data", false), Some(&Files)),
            Err(missing.into())
        );
        let no_volume = r#"cannot find the volume "other" referenced by FileKeyRef"#;
        assert_eq!(
            resolve(var("A", "other", true), Some(&Files)),
            Err(no_volume.into())
        );
        let no_volume = r#"cannot find the volume "data" referenced by FileKeyRef"#;
        assert_eq!(
            resolve(var("A", "data", false), None),
            Err(no_volume.into())
        );
    }

    fn with_objects(env: &[EnvVar]) -> Result<Vec<(String, String)>, EnvError> {
        vars_of(&Container {
            env: Some(env.to_vec()),
            ..Default::default()
        })
    }

    fn key_ref(var: &str, config_map: bool, name: &str, key: &str, optional: bool) -> EnvVar {
        let mut e = env(var, "");
        let optional = Some(optional);
        e.value_from = Some(if config_map {
            EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: name.into(),
                    key: key.into(),
                    optional,
                }),
                ..Default::default()
            }
        } else {
            EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: name.into(),
                    key: key.into(),
                    optional,
                }),
                ..Default::default()
            }
        });
        e
    }

    #[test]
    fn key_references_resolve_from_the_objects_with_the_kubelets_messages() {
        let vars = [
            key_ref("MODE", true, "settings", "mode", false),
            key_ref("PW", false, "creds", "pw", false),
            key_ref("GONE", true, "settings", "nope", true),
            env("BOTH", "$(MODE)-$(PW)"),
        ];
        let got = with_objects(&vars).unwrap();
        assert_eq!(
            got,
            pairs(&[("MODE", "fast"), ("PW", "s3cret"), ("BOTH", "fast-s3cret")])
        );
        let missing_key = [key_ref("X", true, "settings", "nope", false)];
        let err = with_objects(&missing_key).unwrap_err();
        assert_eq!(
            err.0,
            "couldn't find key nope in ConfigMap default/settings"
        );
        let missing_secret = [key_ref("X", false, "other", "pw", false)];
        let err = with_objects(&missing_secret).unwrap_err();
        assert_eq!(err.0, r#"secrets "other" not found"#);
    }

    fn from_config_map(name: &str, prefix: Option<&str>, optional: Option<bool>) -> EnvFromSource {
        EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: name.into(),
                optional,
            }),
            prefix: prefix.map(Into::into),
            secret_ref: None,
        }
    }

    fn from_secret(name: &str, prefix: Option<&str>, optional: Option<bool>) -> EnvFromSource {
        EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: name.into(),
                optional,
            }),
            prefix: prefix.map(Into::into),
            config_map_ref: None,
        }
    }

    fn with_env_from(
        services: &[(&str, &str)],
        env_from: Vec<EnvFromSource>,
        env: Vec<EnvVar>,
    ) -> Result<Vec<(String, String)>, EnvError> {
        let pod = sample_pod();
        let scope = EnvScope {
            files: None,
            pod: &pod,
            pod_ips: &[],
            host_ip: "",
            node_name: "n",
            objects: Some(&Objects),
            allocatable: &NodeAllocatable::default(),
        };
        let container = Container {
            env_from: Some(env_from),
            env: Some(env),
            ..Default::default()
        };
        container_vars(pairs(services), &scope, &container)
    }

    #[test]
    fn env_from_keys_come_first_later_sources_and_env_override() {
        let got = with_env_from(
            &[("mode", "service"), ("SVC", "1")],
            vec![
                from_config_map("settings", None, None),
                from_config_map("settings", Some("CFG_"), None),
                from_secret("creds", None, Some(false)),
            ],
            vec![env("CFG_mode", "$(mode)-$(SVC)-override")],
        )
        .unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("mode", "secret"),
                ("SVC", "1"),
                ("log.level", "debug"),
                ("CFG_log.level", "debug"),
                ("CFG_mode", "secret-1-override"),
                ("pw", "s3cret"),
            ]),
            "keys that are no C identifiers are kept, the secret's mode replaces the configMap's and the service's"
        );
    }

    #[test]
    fn env_from_missing_objects_are_skipped_only_when_optional() {
        let got = with_env_from(
            &[],
            vec![
                from_config_map("absent", None, Some(true)),
                from_secret("absent", Some("S_"), Some(true)),
            ],
            vec![env("X", "1")],
        )
        .unwrap();
        assert_eq!(got, pairs(&[("X", "1")]));

        let err =
            with_env_from(&[], vec![from_config_map("absent", None, None)], vec![]).unwrap_err();
        assert_eq!(err.to_string(), r#"configmaps "absent" not found"#);
        let err =
            with_env_from(&[], vec![from_secret("absent", None, Some(false))], vec![]).unwrap_err();
        assert_eq!(err.to_string(), r#"secrets "absent" not found"#);

        // Standalone there are no objects: every one is missing.
        let container = Container {
            env_from: Some(vec![from_config_map("settings", None, None)]),
            ..Default::default()
        };
        let pod = sample_pod();
        let scope = EnvScope {
            files: None,
            pod: &pod,
            pod_ips: &[],
            host_ip: "",
            node_name: "n",
            objects: None,
            allocatable: &NodeAllocatable::default(),
        };
        let err = container_vars(Vec::new(), &scope, &container).unwrap_err();
        assert_eq!(err.to_string(), r#"configmaps "settings" not found"#);
    }

    #[test]
    fn resource_field_refs_read_the_container_or_the_node() {
        use k8s_openapi::api::core::v1::{ResourceFieldSelector, ResourceRequirements};
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

        let resource = |name: &str, resource: &str, divisor: &str| EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(EnvVarSource {
                resource_field_ref: Some(ResourceFieldSelector {
                    resource: resource.into(),
                    divisor: Some(Quantity(divisor.into())),
                    container_name: None,
                }),
                ..Default::default()
            }),
        };
        let container = Container {
            env: Some(vec![
                resource("CPU", "limits.cpu", "1m"),
                resource("MEM", "limits.memory", "1Mi"),
                env("BOTH", "$(CPU)/$(MEM)"),
            ]),
            resources: Some(ResourceRequirements {
                limits: Some([("memory".to_string(), Quantity("64Mi".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = sample_pod();
        let scope = EnvScope {
            files: None,
            pod: &pod,
            pod_ips: &[],
            host_ip: "",
            node_name: "n",
            objects: None,
            allocatable: &NodeAllocatable {
                cpu: Some(Quantity("2".into())),
                ..Default::default()
            },
        };
        let got = container_vars(Vec::new(), &scope, &container).unwrap();
        assert_eq!(
            got,
            pairs(&[("CPU", "2000"), ("MEM", "64"), ("BOTH", "2000/64")])
        );
    }
}
