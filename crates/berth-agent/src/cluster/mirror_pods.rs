//! Mirror pods: each static pod (from the manifest directory) is shown in
//! the API server by a pod of the same name, owned by the Node, which
//! carries the static pod's status (the kubelet's `mirror_client.go`). A
//! deleted mirror is made again; it goes when its static pod goes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::manifests::{is_static, CONFIG_HASH_ANNOTATION};
use crate::store::PodStore;

/// The annotation that makes a pod a mirror, holding its static pod's hash.
pub const CONFIG_MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// How often every mirror is checked (a deleted one made again).
const RESYNC_EVERY: Duration = Duration::from_secs(10);

pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONFIG_MIRROR_ANNOTATION))
}

pub async fn run(
    client: kube::Client,
    node: String,
    store: Arc<PodStore>,
    mut registered: watch::Receiver<Option<String>>,
    stop: CancellationToken,
) {
    let Some(node_uid) = super::registered_node(&mut registered, &stop).await else {
        return;
    };
    let mut changes = store.subscribe();
    // Mirror UID and the status last sent, by static pod UID.
    let mut mirrors: HashMap<String, (String, Option<k8s_openapi::api::core::v1::PodStatus>)> =
        HashMap::new();
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    loop {
        let check_all = tokio::select! {
            _ = stop.cancelled() => return,
            _ = resync.tick() => true,
            change = changes.recv() => match change {
                Ok(crate::service::WatchEvent::Deleted(pod)) if is_static(&pod) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if let Some((mirror_uid, _)) = mirrors.remove(&uid) {
                        delete(&client, &pod, &mirror_uid).await;
                    }
                    continue;
                }
                Ok(_) => false,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                Err(_) => true,
            },
        };
        for pod in store.list(None).into_iter().filter(is_static) {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let known = mirrors.get(&uid).cloned();
            let mirror_uid = match known {
                Some((mirror_uid, _)) if !check_all => mirror_uid,
                _ => match ensure(&client, &node, &node_uid, &pod).await {
                    Ok(mirror_uid) => mirror_uid,
                    Err(e) => {
                        warn!(
                            pod = pod.metadata.name.as_deref().unwrap_or(""),
                            "mirror pod: {e}"
                        );
                        continue;
                    }
                },
            };
            let sent = mirrors
                .get(&uid)
                .and_then(|(m, s)| (*m == mirror_uid).then(|| s.clone()))
                .flatten();
            if pod.status.is_some() && sent != pod.status {
                if let Err(e) = patch_status(&client, &pod, &mirror_uid).await {
                    debug!("mirror pod status: {e}");
                    mirrors.insert(uid, (mirror_uid, None));
                    continue;
                }
            }
            mirrors.insert(uid, (mirror_uid, pod.status.clone()));
        }
    }
}

fn api(client: &kube::Client, pod: &Pod) -> Api<Pod> {
    Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    )
}

/// The mirror's UID: the one there, or one made now. A mirror of another
/// version of the static pod (another hash) is replaced.
async fn ensure(
    client: &kube::Client,
    node: &str,
    node_uid: &str,
    pod: &Pod,
) -> Result<String, kube::Error> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let hash = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_HASH_ANNOTATION))
        .cloned()
        .unwrap_or_default();
    let pods = api(client, pod);
    let mirror = mirror_of(pod, node, node_uid, &hash);
    // Made first: the Node authorizer lets a node read only pods bound to
    // it, so a pod that does not exist yet cannot be looked up.
    match pods.create(&PostParams::default(), &mirror).await {
        Ok(created) => {
            debug!(pod = %name, "mirror pod created");
            return Ok(created.metadata.uid.unwrap_or_default());
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    let existing = pods.get(&name).await?;
    let existing_hash = existing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_MIRROR_ANNOTATION));
    if existing_hash == Some(&hash) && existing.metadata.deletion_timestamp.is_none() {
        return Ok(existing.metadata.uid.unwrap_or_default());
    }
    // A mirror of an older version, or one being deleted: replaced.
    if existing_hash.is_some() {
        delete(
            client,
            pod,
            existing.metadata.uid.as_deref().unwrap_or_default(),
        )
        .await;
    }
    let created = pods.create(&PostParams::default(), &mirror).await?;
    Ok(created.metadata.uid.unwrap_or_default())
}

/// The mirror of a static pod: its name, labels, annotations and spec,
/// bound to this node and owned by the Node.
fn mirror_of(pod: &Pod, node: &str, node_uid: &str, hash: &str) -> Pod {
    let mut annotations = pod.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(CONFIG_MIRROR_ANNOTATION.into(), hash.into());
    let mut spec = pod.spec.clone().unwrap_or_default();
    spec.node_name = Some(node.into());
    Pod {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            labels: pod.metadata.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.into(),
                uid: node_uid.into(),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

async fn patch_status(
    client: &kube::Client,
    pod: &Pod,
    mirror_uid: &str,
) -> Result<(), kube::Error> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let patch = serde_json::json!({
        "metadata": { "uid": mirror_uid },
        "status": pod.status,
    });
    api(client, pod)
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map(|_| ())
}

async fn delete(client: &kube::Client, pod: &Pod, mirror_uid: &str) {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(mirror_uid.into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api(client, pod).delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => warn!(pod = name, "delete mirror pod: {e}"),
    }
}
