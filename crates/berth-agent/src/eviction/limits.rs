//! Which local storage limit a pod broke, as the kubelet's eviction manager
//! decides it (`localStorageEviction` in `pkg/kubelet/eviction`): first a
//! disk emptyDir over its `sizeLimit` (`emptyDirLimitEviction`), then the
//! pod's total over the sum of its containers' limits
//! (`podEphemeralStorageLimitEviction`), then one container over its own
//! (`containerEphemeralStorageLimitEviction`). Pure: usage in, verdict out.

use std::collections::BTreeMap;

use berth_api::empty_dir::Medium;
use berth_api::quantity;
use k8s_openapi::api::core::v1::{Container, PodSpec};

/// What a pod uses on the node's disk, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodUsage {
    /// Disk-backed emptyDir volumes, by volume name.
    pub empty_dirs: BTreeMap<String, u64>,
    /// Each container's writable layer and logs, by container name.
    pub containers: Vec<ContainerUsage>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerUsage {
    pub name: String,
    pub writable_layer: u64,
    pub logs: u64,
}

impl ContainerUsage {
    fn total(&self) -> u64 {
        self.writable_layer.saturating_add(self.logs)
    }
}

impl PodUsage {
    /// The pod's ephemeral storage: its containers' layers and logs and its
    /// disk emptyDirs (the kubelet's `calcEphemeralStorage`).
    pub fn total(&self) -> u64 {
        let containers = self.containers.iter().map(ContainerUsage::total);
        containers
            .chain(self.empty_dirs.values().copied())
            .fold(0, u64::saturating_add)
    }
}

/// Why the pod is evicted: the `kubelet_evictions` signal and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub signal: &'static str,
    pub message: String,
}

/// The first limit `usage` breaks, in the kubelet's order, if any.
pub fn violation(spec: &PodSpec, usage: &PodUsage) -> Option<Violation> {
    empty_dir_over_limit(spec, usage)
        .or_else(|| pod_over_limit(spec, usage))
        .or_else(|| container_over_limit(spec, usage))
}

fn empty_dir_over_limit(spec: &PodSpec, usage: &PodUsage) -> Option<Violation> {
    spec.volumes.iter().flatten().find_map(|volume| {
        let source = volume.empty_dir.as_ref()?;
        // A memory emptyDir is a tmpfs of its size limit: the kernel holds it.
        if Medium::of(source).ok()? == Medium::Memory {
            return None;
        }
        let limit = Limit::parse(&source.size_limit.as_ref()?.0)?;
        let used = *usage.empty_dirs.get(&volume.name)?;
        (limit.value > 0 && i128::from(used) > limit.value).then(|| Violation {
            signal: "emptydirfs.limit",
            message: format!(
                "Usage of EmptyDir volume {:?} exceeds the limit {:?}. ",
                volume.name,
                limit.canonical()
            ),
        })
    })
}

fn pod_over_limit(spec: &PodSpec, usage: &PodUsage) -> Option<Violation> {
    let limit = pod_limit(spec)?;
    (i128::from(usage.total()) > limit.value).then(|| Violation {
        signal: "ephemeralpodfs.limit",
        message: format!(
            "Pod ephemeral local storage usage exceeds the total limit of containers {}. ",
            limit.canonical()
        ),
    })
}

fn container_over_limit(spec: &PodSpec, usage: &PodUsage) -> Option<Violation> {
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c));
    let limits: BTreeMap<&str, Limit> = spec
        .containers
        .iter()
        .chain(sidecars)
        .filter_map(|c| Some((c.name.as_str(), container_limit(c)?)))
        .filter(|(_, limit)| limit.value != 0)
        .collect();
    usage.containers.iter().find_map(|c| {
        let limit = limits.get(c.name.as_str())?;
        (i128::from(c.total()) > limit.value).then(|| Violation {
            signal: "ephemeralcontainerfs.limit",
            message: format!(
                "Container {} exceeded its local ephemeral storage limit {:?}. ",
                c.name,
                limit.canonical()
            ),
        })
    })
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn container_limit(c: &Container) -> Option<Limit> {
    let limits = c.resources.as_ref()?.limits.as_ref()?;
    Limit::parse(&limits.get("ephemeral-storage")?.0)
}

/// The pod's ephemeral-storage limit (`resourcehelper.PodLimits`): its
/// containers' and sidecars' together, or an init container's with the
/// sidecars started before it, whichever is more; the overhead added to a
/// non-zero limit. Pod-level resources do not cover ephemeral storage.
/// `None` when no container sets one.
fn pod_limit(spec: &PodSpec) -> Option<Limit> {
    let mut total: Option<Limit> = None;
    for c in &spec.containers {
        total = Limit::add(total, container_limit(c));
    }
    let mut sidecars: Option<Limit> = None;
    let mut init_peak: Option<Limit> = None;
    for c in spec.init_containers.iter().flatten() {
        let own = container_limit(c);
        let during = if is_sidecar(c) {
            total = Limit::add(total, own);
            sidecars = Limit::add(sidecars, own);
            sidecars
        } else {
            Limit::add(own, sidecars)
        };
        init_peak = Limit::max(init_peak, during);
    }
    let total = Limit::max(total, init_peak)?;
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| Limit::parse(&o.get("ephemeral-storage")?.0));
    if total.value != 0 {
        return Limit::add(Some(total), overhead);
    }
    Some(total)
}

/// How apimachinery writes a quantity back (`Quantity.String()`), which
/// follows the suffix it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `Ki`, `Mi`, …
    BinarySi,
    /// `k`, `M`, … or none.
    DecimalSi,
    /// `e3`, `E6`, …
    DecimalExponent,
}

/// A storage quantity: its value in bytes (rounded up), and the format of
/// the quantity it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limit {
    value: i128,
    format: Format,
}

impl Limit {
    fn parse(text: &str) -> Option<Self> {
        let value = i128::from(quantity::parse(text).ok()?.value());
        let text = text.trim();
        let format = if text.ends_with('i') {
            Format::BinarySi
        } else if text.trim_start_matches(['+', '-']).contains(['e', 'E']) {
            Format::DecimalExponent
        } else {
            Format::DecimalSi
        };
        Some(Self { value, format })
    }

    /// `a + b`, in `a`'s format (apimachinery's `Add` keeps the receiver's).
    fn add(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Self {
                value: a.value.saturating_add(b.value),
                format: a.format,
            }),
            (a, b) => a.or(b),
        }
    }

    /// The larger; `a` on a tie (`maxResourceList` replaces only when more).
    fn max(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.value > a.value { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// The canonical text of the value (`Quantity.String()` of a whole
    /// number): the largest suffix that keeps it whole; binary quantities
    /// under 1024 are written as decimal ones.
    fn canonical(self) -> String {
        let (base, suffixes): (i128, &[&str]) = match self.format {
            Format::BinarySi if self.value.abs() >= 1024 => {
                (1024, &["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])
            }
            Format::DecimalExponent => (1000, &["", "e3", "e6", "e9", "e12", "e15", "e18"]),
            _ => (1000, &["", "k", "M", "G", "T", "P", "E"]),
        };
        let mut mantissa = self.value;
        let mut exponent = 0;
        while mantissa != 0 && mantissa % base == 0 && exponent + 1 < suffixes.len() {
            mantissa /= base;
            exponent += 1;
        }
        format!("{mantissa}{}", suffixes[exponent])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> PodSpec {
        serde_json::from_value(json).unwrap()
    }

    fn container(name: &str, writable_layer: u64, logs: u64) -> ContainerUsage {
        ContainerUsage {
            name: name.into(),
            writable_layer,
            logs,
        }
    }

    const MI: u64 = 1 << 20;

    /// The upstream spec's pod: one container limited to 5Mi.
    fn bar() -> PodSpec {
        spec(serde_json::json!({"containers": [
            {"name": "bar", "resources": {"limits": {"ephemeral-storage": "5Mi"}}},
        ]}))
    }

    #[test]
    fn within_the_limits_nothing_happens() {
        let usage = PodUsage {
            containers: vec![container("bar", 5 * MI - 100, 100)],
            ..Default::default()
        };
        assert_eq!(
            violation(&bar(), &usage),
            None,
            "equal to the limit is within it"
        );
        assert_eq!(
            violation(
                &spec(serde_json::json!({"containers": [{"name": "a"}]})),
                &PodUsage {
                    containers: vec![container("a", 100 * MI, 0)],
                    ..Default::default()
                }
            ),
            None,
            "no limit, no eviction"
        );
    }

    #[test]
    fn a_container_over_the_pods_total_names_the_pods_limit_first() {
        let usage = PodUsage {
            containers: vec![container("bar", 10 * MI, 4096)],
            ..Default::default()
        };
        assert_eq!(
            violation(&bar(), &usage),
            Some(Violation {
                signal: "ephemeralpodfs.limit",
                message:
                    "Pod ephemeral local storage usage exceeds the total limit of containers 5Mi. "
                        .into(),
            })
        );
    }

    #[test]
    fn the_pod_total_counts_logs_and_disk_empty_dirs() {
        let usage = PodUsage {
            containers: vec![container("bar", 2 * MI, 2 * MI)],
            empty_dirs: [("scratch".to_string(), 2 * MI)].into(),
        };
        let pod = spec(serde_json::json!({
            "containers": [{"name": "bar", "resources": {"limits": {"ephemeral-storage": "5Mi"}}}],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        }));
        assert_eq!(
            violation(&pod, &usage).unwrap().signal,
            "ephemeralpodfs.limit"
        );
    }

    #[test]
    fn one_container_over_its_own_limit_within_the_pods() {
        let pod = spec(serde_json::json!({"containers": [
            {"name": "small", "resources": {"limits": {"ephemeral-storage": "1Mi"}}},
            {"name": "big", "resources": {"limits": {"ephemeral-storage": "100Mi"}}},
        ]}));
        let usage = PodUsage {
            containers: vec![container("small", MI, 1), container("big", MI, 0)],
            ..Default::default()
        };
        assert_eq!(
            violation(&pod, &usage),
            Some(Violation {
                signal: "ephemeralcontainerfs.limit",
                message: "Container small exceeded its local ephemeral storage limit \"1Mi\". "
                    .into(),
            })
        );
    }

    #[test]
    fn a_sidecars_limit_counts_an_init_containers_does_not() {
        let pod = spec(serde_json::json!({
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"limits": {"ephemeral-storage": "1Mi"}}},
                {"name": "init", "resources": {"limits": {"ephemeral-storage": "1Mi"}}},
            ],
            "containers": [{"name": "app", "resources": {"limits": {"ephemeral-storage": "100Mi"}}}],
        }));
        let usage = |name: &str| PodUsage {
            containers: vec![container(name, 2 * MI, 0)],
            ..Default::default()
        };
        assert_eq!(
            violation(&pod, &usage("side")).unwrap().signal,
            "ephemeralcontainerfs.limit"
        );
        assert_eq!(violation(&pod, &usage("init")), None);
    }

    #[test]
    fn an_empty_dir_over_its_size_limit_comes_first() {
        let pod = spec(serde_json::json!({
            "containers": [{"name": "bar", "resources": {"limits": {"ephemeral-storage": "5Mi"}}}],
            "volumes": [
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                {"name": "x", "emptyDir": {"sizeLimit": "1Mi"}},
            ],
        }));
        let usage = PodUsage {
            containers: vec![container("bar", 10 * MI, 0)],
            empty_dirs: [("x".to_string(), MI + 1), ("mem".to_string(), 2 * MI)].into(),
        };
        assert_eq!(
            violation(&pod, &usage),
            Some(Violation {
                signal: "emptydirfs.limit",
                message: "Usage of EmptyDir volume \"x\" exceeds the limit \"1Mi\". ".into(),
            })
        );
        let within = PodUsage {
            empty_dirs: [("x".to_string(), MI)].into(),
            ..Default::default()
        };
        assert_eq!(violation(&pod, &within), None);
    }

    #[test]
    fn the_pod_limit_sums_containers_with_the_init_peak_and_overhead() {
        let pod = spec(serde_json::json!({
            "initContainers": [{"name": "init", "resources": {"limits": {"ephemeral-storage": "20Mi"}}}],
            "containers": [
                {"name": "a", "resources": {"limits": {"ephemeral-storage": "3Mi"}}},
                {"name": "b", "resources": {"limits": {"ephemeral-storage": "4Mi"}}},
                {"name": "c"},
            ],
        }));
        assert_eq!(pod_limit(&pod).unwrap().canonical(), "20Mi");
        let pod = spec(serde_json::json!({
            "containers": [
                {"name": "a", "resources": {"limits": {"ephemeral-storage": "3Mi"}}},
                {"name": "b", "resources": {"limits": {"ephemeral-storage": "4Mi"}}},
            ],
            "overhead": {"ephemeral-storage": "1Mi"},
        }));
        assert_eq!(pod_limit(&pod).unwrap().canonical(), "8Mi");
    }

    #[test]
    fn limits_are_written_as_apimachinery_writes_them() {
        let canonical = |text: &str| Limit::parse(text).unwrap().canonical();
        assert_eq!(canonical("5Mi"), "5Mi");
        assert_eq!(canonical("5120Ki"), "5Mi");
        assert_eq!(canonical("1536Mi"), "1536Mi");
        assert_eq!(canonical("1.5Gi"), "1536Mi");
        assert_eq!(canonical("512Ki"), "512Ki");
        assert_eq!(canonical("100Ki"), "100Ki");
        assert_eq!(canonical("5000000"), "5M");
        assert_eq!(canonical("5M"), "5M");
        assert_eq!(canonical("1500k"), "1500k");
        assert_eq!(canonical("1e6"), "1e6");
        assert_eq!(canonical("0"), "0");
    }
}
