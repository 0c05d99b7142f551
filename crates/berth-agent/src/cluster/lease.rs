//! The node's heartbeat: Lease `kube-node-lease/<node>`, 40 s long, renewed
//! every 10 s (the kubelet's `nodeLeaseDurationSeconds` and
//! `nodeLeaseRenewIntervalFraction`, component-helpers' lease controller).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Retry;

pub(super) const NAMESPACE: &str = "kube-node-lease";
const DURATION_SECONDS: i32 = 40;
const RENEW_EVERY: Duration = Duration::from_secs(10);

pub async fn run(
    client: kube::Client,
    node: String,
    mut registered: watch::Receiver<Option<String>>,
    stop: CancellationToken,
) {
    // The owner reference needs the Node's UID.
    let Some(node_uid) = super::registered_node(&mut registered, &stop).await else {
        return;
    };
    let leases: Api<Lease> = Api::namespaced(client, NAMESPACE);
    let mut current: Option<Lease> = None;
    let mut retry = Retry::new();
    loop {
        let renewed = match current.take() {
            // Renewing is a PUT of the last lease the server returned; a
            // conflict means someone else wrote it: read it again.
            Some(lease) => renew(&leases, lease, &node, &node_uid).await,
            None => ensure(&leases, &node, &node_uid).await,
        };
        let wait = match renewed {
            Ok(lease) => {
                current = Some(lease);
                retry = Retry::new();
                RENEW_EVERY
            }
            Err(e) => {
                warn!(%node, "renew the node lease: {e}");
                if !retry.wait(&stop).await {
                    return;
                }
                continue;
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn owner(node: &str, node_uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.into(),
        uid: node_uid.into(),
        ..Default::default()
    }
}

/// The lease as it is on the server, made if missing.
async fn ensure(leases: &Api<Lease>, node: &str, node_uid: &str) -> Result<Lease, kube::Error> {
    match leases.get_opt(node).await? {
        Some(lease) => renew(leases, lease, node, node_uid).await,
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node.into()),
                    namespace: Some(NAMESPACE.into()),
                    owner_references: Some(vec![owner(node, node_uid)]),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node.into()),
                    lease_duration_seconds: Some(DURATION_SECONDS),
                    renew_time: Some(now()),
                    ..Default::default()
                }),
            };
            debug!(%node, "creating the node lease");
            leases.create(&PostParams::default(), &lease).await
        }
    }
}

async fn renew(
    leases: &Api<Lease>,
    mut lease: Lease,
    node: &str,
    node_uid: &str,
) -> Result<Lease, kube::Error> {
    let spec = lease.spec.get_or_insert_with(Default::default);
    spec.holder_identity = Some(node.into());
    spec.lease_duration_seconds = Some(DURATION_SECONDS);
    spec.renew_time = Some(now());
    let owners = lease.metadata.owner_references.get_or_insert_with(Vec::new);
    if !owners.iter().any(|o| o.uid == node_uid) {
        owners.retain(|o| o.kind != "Node");
        owners.push(owner(node, node_uid));
    }
    match leases.replace(node, &PostParams::default(), &lease).await {
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
            ensure_fresh(leases, node, node_uid).await
        }
        other => other,
    }
}

/// After a conflict: the server's lease, renewed (once).
async fn ensure_fresh(
    leases: &Api<Lease>,
    node: &str,
    node_uid: &str,
) -> Result<Lease, kube::Error> {
    match leases.get_opt(node).await? {
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.holder_identity = Some(node.into());
            spec.lease_duration_seconds = Some(DURATION_SECONDS);
            spec.renew_time = Some(now());
            leases.replace(node, &PostParams::default(), &lease).await
        }
        None => Box::pin(ensure(leases, node, node_uid)).await,
    }
}
