//! The configMaps and secrets the env of the node's pods names
//! (`envFrom`, `configMapKeyRef`, `secretKeyRef`), read from the API server when a pod
//! is first seen and on every refresh of its volumes, for the worker to
//! resolve at container start. The Node authorizer lets a node read only
//! the objects its pods name.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use tracing::debug;

use super::volumes::{read_data, ObjectKind as Kind};

type Key = (Kind, String, String);

/// The objects last read, by kind, namespace and name; a missing object is
/// absent.
#[derive(Default)]
pub struct EnvObjectCache {
    known: RwLock<HashMap<Key, BTreeMap<String, String>>>,
}

/// The objects a pod's containers name in their env.
fn references(pod: &Pod) -> Vec<Key> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let ephemeral: Vec<_> = berth_api::pod::ephemeral_containers(spec)
        .iter()
        .map(berth_api::pod::ephemeral_as_container)
        .collect();
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .chain(&ephemeral);
    let mut keys: Vec<Key> = Vec::new();
    for container in containers {
        for source in container.env_from.iter().flatten() {
            if let Some(cm) = &source.config_map_ref {
                keys.push((Kind::ConfigMap, namespace.clone(), cm.name.clone()));
            } else if let Some(secret) = &source.secret_ref {
                keys.push((Kind::Secret, namespace.clone(), secret.name.clone()));
            }
        }
        for source in container
            .env
            .iter()
            .flatten()
            .filter_map(|v| v.value_from.as_ref())
        {
            if let Some(cm) = &source.config_map_key_ref {
                keys.push((Kind::ConfigMap, namespace.clone(), cm.name.clone()));
            } else if let Some(secret) = &source.secret_key_ref {
                keys.push((Kind::Secret, namespace.clone(), secret.name.clone()));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

pub fn has_references(pod: &Pod) -> bool {
    !references(pod).is_empty()
}

impl EnvObjectCache {
    /// Reads every object the pod's env names.
    pub async fn refresh(&self, client: &kube::Client, pod: &Pod) {
        for key in references(pod) {
            let (kind, namespace, name) = &key;
            let data = read_env_data(client, *kind, namespace, name).await;
            let mut known = self.known.write().expect("env objects lock");
            match data {
                Ok(Some(data)) => {
                    let text = data
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                        .collect();
                    known.insert(key, text);
                }
                Ok(None) => {
                    known.remove(&key);
                }
                // Kept as last read: the API server may be away for a while.
                Err(e) => debug!(%namespace, %name, "read an env object: {e}"),
            }
        }
    }

    fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let known = self.known.read().expect("env objects lock");
        known
            .get(&(kind, namespace.to_string(), name.to_string()))
            .cloned()
    }
}

/// An object's data as env sees it: a configMap's `data` only, as the
/// kubelet's `makeEnvironmentVariables` reads no `binaryData`.
async fn read_env_data(
    client: &kube::Client,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, kube::Error> {
    match kind {
        Kind::ConfigMap => Ok(Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(|cm| {
                let data = cm.data.unwrap_or_default().into_iter();
                data.map(|(k, v)| (k, v.into_bytes())).collect()
            })),
        Kind::Secret => read_data(client, kind, namespace, name).await,
    }
}

impl berth_api::env::EnvObjects for EnvObjectCache {
    fn config_map(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>> {
        self.get(Kind::ConfigMap, namespace, name)
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>> {
        self.get(Kind::Secret, namespace, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_cover_env_from_and_key_refs_once_each() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "shop"},
            "spec": {
                "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "creds"}}]}],
                "containers": [{
                    "name": "c",
                    "envFrom": [
                        {"configMapRef": {"name": "settings"}, "prefix": "S_"},
                        {"secretRef": {"name": "creds"}}
                    ],
                    "env": [
                        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "a"}}},
                        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "other", "key": "b"}}}
                    ]
                }]
            }
        }))
        .unwrap();
        let key = |kind, name: &str| (kind, "shop".to_string(), name.to_string());
        assert_eq!(
            references(&pod),
            vec![
                key(Kind::ConfigMap, "settings"),
                key(Kind::Secret, "creds"),
                key(Kind::Secret, "other"),
            ]
        );
    }
}
