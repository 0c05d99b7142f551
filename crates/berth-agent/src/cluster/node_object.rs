//! The Node object berth registers and the status it reports, built from
//! the host's facts (the kubelet's `initialNode` and its status setters in
//! `pkg/kubelet/nodestatus/setters.go`).

use std::collections::BTreeMap;

use berth_api::resource_field::NodeAllocatable;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::config::AgentConfig;

/// The Kubernetes version whose kubelet berth stands in for, with berth's
/// own as build metadata: `kubectl get nodes` shows it as VERSION.
pub const KUBELET_VERSION: &str = concat!("v1.37.2+berth-", env!("CARGO_PKG_VERSION"));

/// The kubelet's default `maxPods`.
pub(crate) const MAX_PODS: u32 = 110;

/// The kubelet's default hard eviction threshold for memory (100Mi), which
/// allocatable leaves out.
const EVICTION_HARD_MEMORY_KI: u64 = 100 * 1024;

/// What the Node says about this host, read once at start.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    pub name: String,
    pub internal_ip: String,
    pub hostname: String,
    pub cpus: u32,
    pub memory_ki: u64,
    /// The size of the filesystem holding the agent's root directory.
    pub ephemeral_storage_bytes: u64,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
    /// The kubelet API's port, reported in `daemonEndpoints`.
    pub port: u16,
}

impl NodeFacts {
    pub fn read(config: &AgentConfig) -> Self {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        Self {
            name: config.node_name.clone(),
            internal_ip: config
                .node_ip
                .map_or_else(crate::node::host_ip, |ip| ip.to_string()),
            hostname: berth_runtime::node_hostname(),
            cpus: cpu_count(&read("/proc/cpuinfo")),
            memory_ki: mem_total_ki(&read("/proc/meminfo")),
            ephemeral_storage_bytes: nix::sys::statvfs::statvfs(&config.root_dir)
                .map(|s| s.blocks().saturating_mul(s.fragment_size()))
                .unwrap_or(0),
            machine_id: read("/etc/machine-id"),
            system_uuid: read("/sys/class/dmi/id/product_uuid"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            kernel_version: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            os_image: pretty_name(&read("/etc/os-release")),
            port: config.port,
        }
    }
}

/// Logical CPUs, as `/proc/cpuinfo` lists them.
fn cpu_count(cpuinfo: &str) -> u32 {
    let n = cpuinfo
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count();
    u32::try_from(n.max(1)).unwrap_or(1)
}

fn mem_total_ki(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn pretty_name(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// The architecture in Go's words, as Kubernetes labels and reports it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The labels the kubelet puts on its Node and keeps there.
pub fn default_labels(facts: &NodeFacts) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".into(), facts.name.clone()),
        ("kubernetes.io/os".into(), "linux".into()),
        ("kubernetes.io/arch".into(), go_arch().into()),
        ("beta.kubernetes.io/os".into(), "linux".into()),
        ("beta.kubernetes.io/arch".into(), go_arch().into()),
    ])
}

/// The Node as first registered: status included, as the API server
/// accepts it on create.
pub fn initial_node(facts: &NodeFacts, status: NodeStatus) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(facts.name.clone()),
            labels: Some(default_labels(facts)),
            annotations: Some(BTreeMap::from([(
                "volumes.kubernetes.io/controller-managed-attach-detach".into(),
                "true".into(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(status),
    }
}

/// Whether the node can run pods: `Ok` or why not (the Ready condition's
/// message).
pub type Readiness = Result<(), String>;

/// The node's status now. `runtime_version` is the runtime's answer
/// (`containerd://1.6.20`); `previous` conditions keep their transition
/// times while their status holds.
pub fn node_status(
    facts: &NodeFacts,
    runtime_version: &str,
    readiness: &Readiness,
    previous: &[NodeCondition],
    now: Time,
) -> NodeStatus {
    let capacity = capacity(facts);
    let allocatable = allocatable(facts);
    NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: facts.internal_ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: facts.hostname.clone(),
            },
        ]),
        allocatable: Some(allocatable),
        capacity: Some(capacity),
        conditions: Some(conditions(readiness, previous, now)),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(facts.port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().into(),
            boot_id: facts.boot_id.clone(),
            container_runtime_version: runtime_version.into(),
            kernel_version: facts.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: facts.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: facts.os_image.clone(),
            system_uuid: facts.system_uuid.clone(),
            ..Default::default()
        }),
        // The scheduler then places pods with a RestartAllContainers rule
        // here (its NodeDeclaredFeatures filter); the API server proxies
        // exec over WebSocket to this node instead of translating it to
        // SPDY, and lets resizes of init containers through. Sorted: the
        // API server refuses a node status whose list is not
        // (validateNodeDeclaredFeatures). Pod-level resources resize
        // (`InPlacePodLevelResourcesVerticalScaling`) is not declared:
        // berth's pods have no cgroup limits of their own.
        declared_features: Some(vec![
            "ExtendWebSocketsToKubelet".into(),
            "InPlacePodVerticalScalingInitContainers".into(),
            "RestartAllContainersOnContainerExits".into(),
        ]),
        ..Default::default()
    }
}

fn capacity(facts: &NodeFacts) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".into(), Quantity(facts.cpus.to_string())),
        ("memory".into(), Quantity(format!("{}Ki", facts.memory_ki))),
        (
            "ephemeral-storage".into(),
            Quantity(facts.ephemeral_storage_bytes.to_string()),
        ),
        ("pods".into(), Quantity(MAX_PODS.to_string())),
        ("hugepages-1Gi".into(), Quantity("0".into())),
        ("hugepages-2Mi".into(), Quantity("0".into())),
    ])
}

/// Capacity less the kubelet's default hard eviction thresholds
/// (`memory.available<100Mi`, `nodefs.available<10%`); no reservations.
fn allocatable(facts: &NodeFacts) -> BTreeMap<String, Quantity> {
    let mut allocatable = capacity(facts);
    let memory = facts.memory_ki.saturating_sub(EVICTION_HARD_MEMORY_KI);
    allocatable.insert("memory".into(), Quantity(format!("{memory}Ki")));
    let storage = facts.ephemeral_storage_bytes / 10 * 9;
    allocatable.insert("ephemeral-storage".into(), Quantity(storage.to_string()));
    allocatable
}

/// The allocatable the downward API reads for limits nothing sets (the
/// kubelet reads its Node's `status.allocatable`).
pub fn downward_allocatable(facts: &NodeFacts) -> NodeAllocatable {
    let allocatable = allocatable(facts);
    NodeAllocatable {
        cpu: allocatable.get("cpu").cloned(),
        memory: allocatable.get("memory").cloned(),
        ephemeral_storage: allocatable.get("ephemeral-storage").cloned(),
    }
}

/// The four conditions, Ready last, as the kubelet orders them.
fn conditions(readiness: &Readiness, previous: &[NodeCondition], now: Time) -> Vec<NodeCondition> {
    let (ready_status, ready_reason, ready_message) = match readiness {
        Ok(()) => (
            "True",
            "KubeletReady",
            "kubelet is posting ready status".to_string(),
        ),
        Err(why) => ("False", "KubeletNotReady", why.clone()),
    };
    let rows = [
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available".to_string(),
        ),
        (
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure".to_string(),
        ),
        (
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available".to_string(),
        ),
        ("Ready", ready_status, ready_reason, ready_message),
    ];
    rows.into_iter()
        .map(|(type_, status, reason, message)| {
            let kept = previous
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .and_then(|c| c.last_transition_time.clone());
            NodeCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(kept.unwrap_or_else(|| now.clone())),
            }
        })
        .collect()
}

/// `status` without its heartbeat times: what decides whether a status
/// changed.
pub fn without_heartbeats(status: &NodeStatus) -> NodeStatus {
    let mut status = status.clone();
    for c in status.conditions.iter_mut().flatten() {
        c.last_heartbeat_time = None;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> NodeFacts {
        NodeFacts {
            name: "node-a".into(),
            internal_ip: "10.0.0.5".into(),
            hostname: "host-a".into(),
            cpus: 2,
            memory_ki: 1_000_000,
            ephemeral_storage_bytes: 1_000,
            machine_id: "m".into(),
            system_uuid: "u".into(),
            boot_id: "b".into(),
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            port: 10250,
        }
    }

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn host_files_are_parsed() {
        assert_eq!(cpu_count("processor\t: 0\nx: 1\nprocessor\t: 1\n"), 2);
        assert_eq!(
            mem_total_ki("MemTotal:       24575996 kB\nMemFree: 1 kB\n"),
            24575996
        );
        assert_eq!(
            pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
    }

    #[test]
    fn the_status_has_the_kubelets_fields() {
        let status = node_status(&facts(), "containerd://1.6.20", &Ok(()), &[], at(100));
        let addresses = status.addresses.unwrap();
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[0].address, "10.0.0.5");
        assert_eq!(addresses[1].type_, "Hostname");
        let capacity = status.capacity.unwrap();
        assert_eq!(capacity["cpu"].0, "2");
        assert_eq!(capacity["memory"].0, "1000000Ki");
        assert_eq!(capacity["pods"].0, "110");
        let allocatable = status.allocatable.unwrap();
        assert_eq!(allocatable["memory"].0, "897600Ki");
        assert_eq!(allocatable["ephemeral-storage"].0, "900");
        let declared = status.declared_features.unwrap();
        assert!(declared.contains(&"RestartAllContainersOnContainerExits".into()));
        // The API server takes only a sorted list without duplicates.
        assert!(declared.windows(2).all(|w| w[0] < w[1]), "{declared:?}");
        let info = status.node_info.unwrap();
        assert_eq!(info.container_runtime_version, "containerd://1.6.20");
        assert!(info.kubelet_version.starts_with("v1.37.2+berth-"));
        let types: Vec<_> = status
            .conditions
            .unwrap()
            .into_iter()
            .map(|c| (c.type_, c.status))
            .collect();
        assert_eq!(
            types,
            [
                ("MemoryPressure".to_string(), "False".to_string()),
                ("DiskPressure".into(), "False".into()),
                ("PIDPressure".into(), "False".into()),
                ("Ready".into(), "True".into()),
            ]
        );
    }

    #[test]
    fn the_downward_api_reads_the_reported_allocatable() {
        let reported = node_status(&facts(), "c", &Ok(()), &[], at(100))
            .allocatable
            .unwrap();
        let downward = downward_allocatable(&facts());
        assert_eq!(downward.cpu.as_ref(), Some(&reported["cpu"]));
        assert_eq!(downward.memory.as_ref(), Some(&reported["memory"]));
        assert_eq!(
            downward.ephemeral_storage.as_ref(),
            Some(&reported["ephemeral-storage"])
        );
    }

    #[test]
    fn transition_times_change_only_on_a_flip() {
        let first = node_status(&facts(), "c", &Ok(()), &[], at(100));
        let previous = first.conditions.unwrap();
        let same = node_status(&facts(), "c", &Ok(()), &previous, at(200));
        let ready = same.conditions.as_ref().unwrap()[3].clone();
        assert_eq!(ready.last_transition_time, Some(at(100)));
        assert_eq!(ready.last_heartbeat_time, Some(at(200)));
        let down = node_status(
            &facts(),
            "c",
            &Err("runtime down".into()),
            &previous,
            at(300),
        );
        let ready = down.conditions.as_ref().unwrap()[3].clone();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(ready.message.as_deref(), Some("runtime down"));
        assert_eq!(ready.last_transition_time, Some(at(300)));
        assert_eq!(
            without_heartbeats(&same),
            without_heartbeats(&first_again())
        );
    }

    fn first_again() -> NodeStatus {
        let first = node_status(&facts(), "c", &Ok(()), &[], at(100));
        node_status(
            &facts(),
            "c",
            &Ok(()),
            first.conditions.as_ref().unwrap(),
            at(999),
        )
    }
}
