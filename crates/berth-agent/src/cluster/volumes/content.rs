//! The files of a volume of API data, as the kubelet's configMap, secret,
//! downwardAPI and projected volume plugins lay them out: every key, or
//! the listed items at their paths; `defaultMode` unless an item says
//! otherwise (0644 by default).

use std::collections::BTreeMap;

use berth_api::resource_field::{self, NodeAllocatable};
use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod};
use k8s_openapi::ByteString;

use super::atomic_writer::{check_path, Files, Payload};

/// The kubelet's default mode for files of API data.
pub const DEFAULT_MODE: i32 = 0o644;

/// An object's keys and values (a configMap's data and binaryData, a
/// secret's data).
pub type Data = BTreeMap<String, Vec<u8>>;

pub fn config_map_data(
    data: Option<&BTreeMap<String, String>>,
    binary: Option<&BTreeMap<String, ByteString>>,
) -> Data {
    let text = data
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
    let binary = binary
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()));
    text.chain(binary).collect()
}

pub fn secret_data(data: Option<&BTreeMap<String, ByteString>>) -> Data {
    data.into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// A file's mode: the item's, else the volume's default, else 0644.
pub fn mode(item: Option<i32>, default: Option<i32>) -> u32 {
    u32::try_from(item.or(default).unwrap_or(DEFAULT_MODE) & 0o777).unwrap_or(0o644)
}

/// The files of a configMap or secret: all keys, or `items` (a key missing
/// from the object is an error unless `optional`).
pub fn keyed_files(
    kind: &str,
    name: &str,
    data: &Data,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Files, String> {
    let mut files = Files::new();
    match items {
        None => {
            for (key, bytes) in data {
                check_path(key).map_err(|e| format!("{kind} {name:?} key: {e}"))?;
                let payload = Payload {
                    bytes: bytes.clone(),
                    mode: mode(None, default_mode),
                };
                files.insert(key.clone(), payload);
            }
        }
        Some(items) => {
            for item in items {
                check_path(&item.path).map_err(|e| format!("items path: {e}"))?;
                let Some(bytes) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!(
                        "configuration of {kind} {name:?} has no key {:?}",
                        item.key
                    ));
                };
                let payload = Payload {
                    bytes: bytes.clone(),
                    mode: mode(item.mode, default_mode),
                };
                files.insert(item.path.clone(), payload);
            }
        }
    }
    Ok(files)
}

/// The files of a downwardAPI volume or projection: fields of the pod's
/// metadata, and containers' resources with the node's `allocatable` for
/// unset limits.
pub fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    allocatable: &NodeAllocatable,
) -> Result<Files, String> {
    let mut files = Files::new();
    for item in items {
        check_path(&item.path).map_err(|e| format!("downwardAPI path: {e}"))?;
        let value = match (&item.field_ref, &item.resource_field_ref) {
            (Some(field), _) => field_value(pod, &field.field_path)?,
            (None, Some(resource)) => resource_field::volume_value(resource, pod, allocatable)?,
            (None, None) => return Err(format!("downwardAPI {:?}: no source", item.path)),
        };
        let payload = Payload {
            bytes: value.into_bytes(),
            mode: mode(item.mode, default_mode),
        };
        files.insert(item.path.clone(), payload);
    }
    Ok(files)
}

/// A `fieldRef` of a downwardAPI volume (the kubelet's
/// `ExtractFieldPathAsString`): maps print as sorted `key="value"` lines.
fn field_value(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let lines = |map: Option<&BTreeMap<String, String>>| {
        map.into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("']"))
            .map(str::to_string)
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => lines(meta.labels.as_ref()),
        "metadata.annotations" => lines(meta.annotations.as_ref()),
        _ => {
            if let Some(key) = subscript("metadata.labels['") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(key) = subscript("metadata.annotations['") {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(format!("fieldRef {path:?} is not supported in a volume"));
            }
        }
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectFieldSelector;

    fn data() -> Data {
        Data::from([("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())])
    }

    #[test]
    fn all_keys_or_the_items_with_their_modes() {
        let all = keyed_files("configmap", "c", &data(), None, Some(0o600), false).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["a"].mode, 0o600);
        let items = [KeyToPath {
            key: "b".into(),
            path: "dir/x".into(),
            mode: Some(0o400),
            user: None,
        }];
        let some = keyed_files("configmap", "c", &data(), Some(&items), None, false).unwrap();
        assert_eq!(some.keys().collect::<Vec<_>>(), ["dir/x"]);
        assert_eq!(some["dir/x"].mode, 0o400);
        assert_eq!(some["dir/x"].bytes, b"2");
    }

    #[test]
    fn a_missing_key_fails_unless_optional_and_bad_paths_fail() {
        let items = [KeyToPath {
            key: "zz".into(),
            path: "x".into(),
            mode: None,
            user: None,
        }];
        let err = keyed_files("configmap", "c", &data(), Some(&items), None, false).unwrap_err();
        assert!(err.contains("\"zz\""), "{err}");
        assert!(
            keyed_files("configmap", "c", &data(), Some(&items), None, true)
                .unwrap()
                .is_empty()
        );
        let escape = [KeyToPath {
            key: "a".into(),
            path: "../../etc/x".into(),
            mode: None,
            user: None,
        }];
        assert!(keyed_files("configmap", "c", &data(), Some(&escape), None, false).is_err());
    }

    #[test]
    fn downward_api_fields() {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("ns".into());
        pod.metadata.labels = Some(BTreeMap::from([
            ("b".into(), "2".into()),
            ("a".into(), "1".into()),
        ]));
        let item = |path: &str, field: &str| DownwardAPIVolumeFile {
            path: path.into(),
            field_ref: Some(ObjectFieldSelector {
                field_path: field.into(),
                api_version: None,
            }),
            ..Default::default()
        };
        let files = downward_files(
            &pod,
            &[
                item("namespace", "metadata.namespace"),
                item("labels", "metadata.labels"),
                item("a", "metadata.labels['a']"),
            ],
            None,
            &NodeAllocatable::default(),
        )
        .unwrap();
        assert_eq!(files["namespace"].bytes, b"ns");
        assert_eq!(files["labels"].bytes, b"a=\"1\"\nb=\"2\"");
        assert_eq!(files["a"].bytes, b"1");
        let no_node = NodeAllocatable::default();
        assert!(downward_files(&pod, &[item("x", "spec.nodeName")], None, &no_node).is_err());
    }

    #[test]
    fn downward_api_resources() {
        use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceFieldSelector};
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let item = |path: &str, container: &str| DownwardAPIVolumeFile {
            path: path.into(),
            resource_field_ref: Some(ResourceFieldSelector {
                container_name: Some(container.into()),
                resource: "limits.memory".into(),
                divisor: Some(Quantity("1Mi".into())),
            }),
            ..Default::default()
        };
        let node = NodeAllocatable {
            memory: Some(Quantity("2Gi".into())),
            ..Default::default()
        };
        let files = downward_files(&pod, &[item("mem", "app")], None, &node).unwrap();
        assert_eq!(files["mem"].bytes, b"2048");
        let err = downward_files(&pod, &[item("mem", "gone")], None, &node).unwrap_err();
        assert_eq!(err, "container gone not found");
    }
}
