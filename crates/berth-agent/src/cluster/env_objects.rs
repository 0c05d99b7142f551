//! The configMaps and secrets the env of the node's pods names
//! (`configMapKeyRef`, `secretKeyRef`), read from the API server when a pod
//! is first seen and on every refresh of its volumes, for the worker to
//! resolve at container start. The Node authorizer lets a node read only
//! the objects its pods name.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use k8s_openapi::api::core::v1::Pod;
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
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    let mut keys: Vec<Key> = containers
        .flat_map(|c| c.env.iter().flatten())
        .filter_map(|var| {
            let source = var.value_from.as_ref()?;
            if let Some(cm) = &source.config_map_key_ref {
                Some((Kind::ConfigMap, namespace.clone(), cm.name.clone()))
            } else {
                let secret = source.secret_key_ref.as_ref()?;
                Some((Kind::Secret, namespace.clone(), secret.name.clone()))
            }
        })
        .collect();
    keys.sort_by(|a, b| (a.1.as_str(), a.2.as_str()).cmp(&(b.1.as_str(), b.2.as_str())));
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
            let data = read_data(client, *kind, namespace, name).await;
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

impl berth_api::env::EnvObjects for EnvObjectCache {
    fn config_map(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>> {
        self.get(Kind::ConfigMap, namespace, name)
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>> {
        self.get(Kind::Secret, namespace, name)
    }
}
