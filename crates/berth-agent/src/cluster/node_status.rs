//! Registers the Node and reports its status: computed every 10 s
//! (`nodeStatusUpdateFrequency`), patched when it changed or every 5 min
//! (`nodeStatusReportFrequency`), as the kubelet's `syncNodeStatus`.

use std::sync::Arc;
use std::time::Duration;

use berth_runtime::ContainerRuntime;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::node_object::{self, NodeFacts, Readiness};
use super::Retry;

const UPDATE_EVERY: Duration = Duration::from_secs(10);
const REPORT_EVERY: Duration = Duration::from_secs(5 * 60);

pub async fn run<R: ContainerRuntime>(
    client: kube::Client,
    facts: NodeFacts,
    runtime: Arc<R>,
    registered: watch::Sender<Option<String>>,
    stop: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, super::lease::NAMESPACE);
    let mut status = current_status(&facts, runtime.as_ref(), &[]).await;
    let mut retry = Retry::new();
    let uid = loop {
        match register(&nodes, &leases, &facts, &status).await {
            Ok(uid) => break uid,
            Err(e) => warn!(node = %facts.name, "register the node: {e}"),
        }
        if !retry.wait(&stop).await {
            return;
        }
    };
    info!(node = %facts.name, "node registered");
    let _ = registered.send(Some(uid));
    let mut reported: Option<(NodeStatus, Instant)> = None;
    loop {
        // The conditions as the API server has them: the node controller
        // sets Ready to Unknown while no heartbeat arrives, and only the
        // node sets it back (the kubelet compares with the Node it read).
        let server = match nodes.get(&facts.name).await {
            Ok(node) => node.status.and_then(|s| s.conditions),
            Err(e) => {
                debug!(node = %facts.name, "read the node's status: {e}");
                None
            }
        };
        let previous = server
            .clone()
            .or_else(|| status.conditions.clone())
            .unwrap_or_default();
        status = current_status(&facts, runtime.as_ref(), &previous).await;
        if should_report(&status, reported.as_ref(), server.as_deref()) {
            match patch_status(&nodes, &facts.name, &status).await {
                Ok(()) => reported = Some((status.clone(), Instant::now())),
                Err(e) => warn!(node = %facts.name, "update node status: {e}"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(UPDATE_EVERY) => {}
        }
    }
}

/// Whether to patch the status: it changed from the one last sent, the API
/// server's copy of its conditions differs (another writer changed them),
/// or the report period passed (kubelet `tryUpdateNodeStatus`).
fn should_report(
    status: &NodeStatus,
    reported: Option<&(NodeStatus, Instant)>,
    server: Option<&[NodeCondition]>,
) -> bool {
    let Some((sent, at)) = reported else {
        return true;
    };
    let changed = node_object::without_heartbeats(sent) != node_object::without_heartbeats(status);
    let drifted = server.is_some_and(|server| {
        status.conditions.iter().flatten().any(|mine| {
            let theirs = server.iter().find(|c| c.type_ == mine.type_);
            theirs.is_none_or(|theirs| {
                let ignore_heartbeat = |c: &NodeCondition| NodeCondition {
                    last_heartbeat_time: None,
                    ..c.clone()
                };
                ignore_heartbeat(theirs) != ignore_heartbeat(mine)
            })
        })
    });
    changed || drifted || at.elapsed() >= REPORT_EVERY
}

/// The status now: Ready while the runtime answers.
async fn current_status<R: ContainerRuntime>(
    facts: &NodeFacts,
    runtime: &R,
    previous: &[NodeCondition],
) -> NodeStatus {
    let (version, readiness): (String, Readiness) = match runtime.version().await {
        Ok(v) => (format!("{}://{}", v.name, v.version), Ok(())),
        Err(e) => (
            String::new(),
            Err(format!("container runtime is down: {e}")),
        ),
    };
    node_object::node_status(facts, &version, &readiness, previous, now())
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// Creates the Node, or takes over the one that exists (never deleted: the
/// Lease and others own references to its UID) unless another live node
/// holds it. Returns its UID.
async fn register(
    nodes: &Api<Node>,
    leases: &Api<Lease>,
    facts: &NodeFacts,
    status: &NodeStatus,
) -> Result<String, String> {
    let node = node_object::initial_node(facts, status.clone());
    match nodes.create(&PostParams::default(), &node).await {
        Ok(created) => return Ok(created.metadata.uid.unwrap_or_default()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            debug!(node = %facts.name, "the node exists; reconciling it");
        }
        Err(e) => return Err(e.to_string()),
    }
    let existing = nodes.get(&facts.name).await.map_err(|e| e.to_string())?;
    let lease = leases
        .get_opt(&facts.name)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(owner) = held_by_another(&existing, lease.as_ref(), facts, jiff::Timestamp::now()) {
        return Err(format!(
            "node {:?} already exists and belongs to another node ({owner}); \
             not taking it over while its lease is live",
            facts.name
        ));
    }
    // The kubelet's default labels (and the attach-detach annotation) are
    // put back if someone changed them; other labels stay.
    let patch = serde_json::json!({
        "metadata": {
            "labels": node_object::default_labels(facts),
            "annotations": { "volumes.kubernetes.io/controller-managed-attach-detach": "true" },
        }
    });
    let node = nodes
        .patch(
            &facts.name,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(node.metadata.uid.unwrap_or_default())
}

/// Why an existing Node is another's, if it is: its Lease is live (renewed
/// within its duration) and held by another identity, or by a node on
/// another machine. The kubelet's lease holder is its node name, so a
/// kubelet of the same name elsewhere is told apart by the Node's
/// `nodeInfo.machineID`. An expired Lease, or this machine's own Node (an
/// agent restart), is taken over and reconciled.
fn held_by_another(
    node: &Node,
    lease: Option<&Lease>,
    facts: &NodeFacts,
    now: jiff::Timestamp,
) -> Option<String> {
    let spec = lease?.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref()?.0;
    let duration = jiff::SignedDuration::from_secs(spec.lease_duration_seconds?.into());
    if renewed.checked_add(duration).ok()? <= now {
        return None;
    }
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder != facts.name {
        return Some(format!(
            "its lease kube-node-lease/{} is held by {holder:?}",
            facts.name
        ));
    }
    let machine = node
        .status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.machine_id.as_str())
        .unwrap_or_default();
    (!machine.is_empty() && !facts.machine_id.is_empty() && machine != facts.machine_id).then(
        || {
            format!(
                "its machineID is {machine:?}, this host's {:?}",
                facts.machine_id
            )
        },
    )
}

/// A strategic-merge patch of `nodes/<name>/status`: conditions merge by
/// type, so those others set survive. `addresses` merges by type too, which
/// would keep a stale address: the list is replaced whole instead (the
/// kubelet's `fixupPatchForNodeStatusAddresses`).
async fn patch_status(
    nodes: &Api<Node>,
    name: &str,
    status: &NodeStatus,
) -> Result<(), kube::Error> {
    let mut body = serde_json::to_value(status).unwrap_or_default();
    if let Some(addresses) = body.get_mut("addresses").and_then(|a| a.as_array_mut()) {
        addresses.push(serde_json::json!({ "$patch": "replace" }));
    }
    let patch = serde_json::json!({ "status": body });
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(type_: &str, status: &str, heartbeat: i64) -> NodeCondition {
        let at = |s| Time(jiff::Timestamp::from_second(s).unwrap());
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            last_heartbeat_time: Some(at(heartbeat)),
            last_transition_time: Some(at(1)),
            ..Default::default()
        }
    }

    fn status(ready: &str, heartbeat: i64) -> NodeStatus {
        NodeStatus {
            conditions: Some(vec![
                condition("MemoryPressure", "False", heartbeat),
                condition("Ready", ready, heartbeat),
            ]),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reports_on_change_drift_or_when_due() {
        let now = status("True", 20);
        assert!(should_report(&now, None, None), "first report");
        let sent = (status("True", 10), Instant::now());
        assert!(
            !should_report(&now, Some(&sent), None),
            "heartbeats alone are no change"
        );
        let server = status("True", 10).conditions.unwrap();
        assert!(!should_report(&now, Some(&sent), Some(&server)));
        // The node controller set Ready to Unknown: the node sets it back.
        let mut marked = server.clone();
        marked[1].status = "Unknown".into();
        assert!(should_report(&now, Some(&sent), Some(&marked)));
        // Conditions only others set are theirs.
        let mut more = server.clone();
        more.push(condition("NetworkUnavailable", "False", 1));
        assert!(!should_report(&now, Some(&sent), Some(&more)));
        assert!(should_report(&status("False", 20), Some(&sent), None));
        tokio::time::advance(REPORT_EVERY).await;
        assert!(should_report(&now, Some(&sent), Some(&server)), "due");
    }

    fn lease(holder: &str, renewed: i64) -> Lease {
        use k8s_openapi::api::coordination::v1::LeaseSpec;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(40),
                renew_time: Some(MicroTime(jiff::Timestamp::from_second(renewed).unwrap())),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node_on(machine: &str) -> Node {
        let mut node = Node::default();
        let info = &mut node.status.get_or_insert_with(Default::default).node_info;
        info.get_or_insert_with(Default::default).machine_id = machine.into();
        node
    }

    #[test]
    fn a_node_with_a_live_lease_of_another_holder_or_machine_is_anothers() {
        let facts = NodeFacts {
            name: "node-a".into(),
            internal_ip: "10.0.0.5".into(),
            hostname: "host-a".into(),
            cpus: 2,
            memory_ki: 1,
            ephemeral_storage_bytes: 1,
            machine_id: "mine".into(),
            system_uuid: "u".into(),
            boot_id: "b".into(),
            kernel_version: "6.1.0".into(),
            os_image: "linux".into(),
            port: 10250,
        };
        let now = jiff::Timestamp::from_second(1_000).unwrap();
        let anothers = |node: &Node, lease: Option<&Lease>| {
            held_by_another(node, lease, &facts, now).is_some()
        };
        let mine = node_on("mine");
        assert!(anothers(&mine, Some(&lease("other-host", 990))));
        assert!(anothers(&node_on("theirs"), Some(&lease("node-a", 990))));
        // This host's own Node (an agent restart) is reconciled.
        assert!(!anothers(&mine, Some(&lease("node-a", 990))));
        assert!(!anothers(&node_on(""), Some(&lease("node-a", 990))));
        // An expired lease or none: nobody holds the Node.
        assert!(!anothers(&mine, Some(&lease("other-host", 950))));
        assert!(!anothers(&node_on("theirs"), None));
    }
}
