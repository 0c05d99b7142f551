//! A container's resources as the node holds them: what it allocated to the
//! container (`status.containerStatuses[].allocatedResources`) and what the
//! running instance's cgroup carries (`status.containerStatuses[].resources`),
//! read back through the cgroup units as the kubelet reads them from the
//! runtime (kubelet `convertContainerStatusResources`,
//! `toKubeContainerResources`).

use std::collections::BTreeMap;

use berth_api::quantity;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// CFS period the kubelet sets with a CPU limit, in microseconds.
pub(crate) const QUOTA_PERIOD: i64 = 100_000;
/// The kubelet's `MinShares`: the shares of a container with no CPU request.
const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;
/// The kubelet's `MinQuotaPeriod`: the smallest quota, 1 ms per period.
const MIN_QUOTA: i64 = 1_000;
/// The kubelet's `MinMilliCPULimit`: limits at or below act alike.
const MIN_MILLI_CPU_LIMIT: i64 = 10;

/// `cm.MilliCPUToShares`.
pub(crate) fn milli_cpu_to_shares(milli: i64) -> i64 {
    if milli <= 0 {
        return MIN_SHARES;
    }
    (milli * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// `cm.SharesToMilliCPU`: rounded up, so that shares made from a request
/// read back as that request.
fn shares_to_milli_cpu(shares: i64) -> i64 {
    if shares < MIN_SHARES {
        return 0;
    }
    (shares * 1000 + 1023) / 1024
}

/// `cm.MilliCPUToQuota` over the kubelet's 100 ms period.
pub(crate) fn milli_cpu_to_quota(milli: i64) -> i64 {
    (milli * QUOTA_PERIOD / 1000).max(MIN_QUOTA)
}

/// `cm.QuotaToMilliCPU`.
fn quota_to_milli_cpu(quota: i64) -> i64 {
    quota * 1000 / QUOTA_PERIOD
}

/// `resource` of `list` in thousandths (cpu) or units (memory).
fn milli(list: Option<&BTreeMap<String, Quantity>>, resource: &str) -> Option<i64> {
    let q = list?.get(resource)?;
    quantity::milli_value(&q.0).and_then(|m| i64::try_from(m).ok())
}

fn bytes(list: Option<&BTreeMap<String, Quantity>>, resource: &str) -> Option<i64> {
    quantity::value(&list?.get(resource)?.0)
}

/// A CPU amount as `resource.NewMilliQuantity(milli, DecimalSI)` prints it.
fn cpu_quantity(milli: i64) -> Quantity {
    if milli % 1000 == 0 {
        Quantity((milli / 1000).to_string())
    } else {
        Quantity(format!("{milli}m"))
    }
}

/// A byte count as `resource.NewQuantity(n, BinarySI)` prints it.
fn memory_quantity(bytes: i64) -> Quantity {
    const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut value = bytes;
    let mut suffix = "";
    for s in SUFFIXES {
        if value == 0 || value % 1024 != 0 {
            break;
        }
        value /= 1024;
        suffix = s;
    }
    Quantity(format!("{value}{suffix}"))
}

/// `value` in `list` unless `list` already holds the same amount (its own
/// spelling is kept then).
fn put(list: &mut BTreeMap<String, Quantity>, resource: &str, value: Quantity, same: bool) {
    if !same {
        list.insert(resource.into(), value);
    }
}

/// `status.containerStatuses[].resources`: the allocated resources; for a
/// running instance, its CPU request, CPU limit and memory limit as its
/// cgroup carries them (shares and quota read back in millicores) and its
/// memory request as last applied.
pub(crate) fn status_resources(
    allocated: &ResourceRequirements,
    actuated: &ResourceRequirements,
    running: bool,
) -> ResourceRequirements {
    let mut out = allocated.clone();
    if !running {
        return out;
    }
    let applied_limits = actuated.limits.as_ref();
    let applied_requests = actuated.requests.as_ref();
    if let Some(limits) = out.limits.as_mut() {
        let allocated_cpu = milli(Some(limits), "cpu");
        if let Some(cpu) = milli(applied_limits, "cpu") {
            let read_back = quota_to_milli_cpu(milli_cpu_to_quota(cpu));
            // Both at or below the smallest limit: the allocated value stays.
            if read_back > MIN_MILLI_CPU_LIMIT || allocated_cpu.unwrap_or(0) > MIN_MILLI_CPU_LIMIT {
                let same = allocated_cpu == Some(read_back);
                put(limits, "cpu", cpu_quantity(read_back), same);
            }
        }
        if let Some(memory) = bytes(applied_limits, "memory").filter(|b| *b > 0) {
            let same = bytes(Some(limits), "memory") == Some(memory);
            put(limits, "memory", memory_quantity(memory), same);
        }
    }
    if let Some(requests) = out.requests.as_mut() {
        let allocated_cpu = milli(Some(requests), "cpu");
        let read_back = shares_to_milli_cpu(milli_cpu_to_shares(
            milli(applied_requests, "cpu").unwrap_or(0),
        ));
        if read_back > MIN_SHARES || allocated_cpu.unwrap_or(0) > MIN_SHARES {
            let same = allocated_cpu == Some(read_back);
            put(requests, "cpu", cpu_quantity(read_back), same);
        }
        if let Some(memory) = bytes(applied_requests, "memory") {
            let same = bytes(Some(requests), "memory") == Some(memory);
            put(requests, "memory", memory_quantity(memory), same);
        }
    }
    out
}

/// `status.containerStatuses[].allocatedResources`: the allocated requests.
pub(crate) fn allocated_resources(
    allocated: &ResourceRequirements,
) -> Option<BTreeMap<String, Quantity>> {
    allocated.requests.clone().filter(|r| !r.is_empty())
}

/// The four amounts a resize can change, in the cgroup's units of account
/// (the kubelet's `containerResources`): CPU in millicores, memory in bytes,
/// 0 when unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Amounts {
    pub cpu_request: i64,
    pub cpu_limit: i64,
    pub memory_request: i64,
    pub memory_limit: i64,
}

impl Amounts {
    pub(crate) fn of(r: &ResourceRequirements) -> Self {
        let (requests, limits) = (r.requests.as_ref(), r.limits.as_ref());
        Self {
            cpu_request: milli(requests, "cpu").unwrap_or(0),
            cpu_limit: milli(limits, "cpu").unwrap_or(0),
            memory_request: bytes(requests, "memory").unwrap_or(0),
            memory_limit: bytes(limits, "memory").unwrap_or(0),
        }
    }
}

/// Two resource lists hold the same amounts, however spelled.
fn same_list(
    a: Option<&BTreeMap<String, Quantity>>,
    b: Option<&BTreeMap<String, Quantity>>,
) -> bool {
    let empty = BTreeMap::new();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    a.len() == b.len()
        && a.iter().all(|(k, qa)| {
            b.get(k).is_some_and(|qb| {
                qa.0 == qb.0 || quantity::parse(&qa.0).ok() == quantity::parse(&qb.0).ok()
            })
        })
}

/// `apiequality.Semantic.DeepEqual` of two requirements' requests and limits.
pub(crate) fn same(a: &ResourceRequirements, b: &ResourceRequirements) -> bool {
    same_list(a.requests.as_ref(), b.requests.as_ref())
        && same_list(a.limits.as_ref(), b.limits.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> ResourceRequirements {
        let list = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty()).then(|| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        ResourceRequirements {
            requests: list(requests),
            limits: list(limits),
            ..Default::default()
        }
    }

    #[test]
    fn cgroup_units_round_trip_as_the_kubelets() {
        assert_eq!(milli_cpu_to_shares(100), 102);
        assert_eq!(shares_to_milli_cpu(102), 100);
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(shares_to_milli_cpu(2), 2);
        assert_eq!(milli_cpu_to_quota(5), 1_000);
        assert_eq!(quota_to_milli_cpu(1_000), 10);
        assert_eq!(milli_cpu_to_quota(1500), 150_000);
    }

    #[test]
    fn a_stopped_container_reports_its_allocation() {
        let allocated = reqs(&[("cpu", "100m")], &[("cpu", "200m")]);
        let actuated = reqs(&[("cpu", "50m")], &[("cpu", "50m")]);
        assert_eq!(status_resources(&allocated, &actuated, false), allocated);
    }

    #[test]
    fn a_running_container_reports_what_its_cgroup_carries() {
        let allocated = reqs(
            &[("cpu", "200m"), ("memory", "400Mi")],
            &[("cpu", "400m"), ("memory", "500Mi")],
        );
        let actuated = reqs(
            &[("cpu", "100m"), ("memory", "200Mi")],
            &[("cpu", "200m"), ("memory", "250Mi")],
        );
        let got = status_resources(&allocated, &actuated, true);
        assert_eq!(
            got,
            reqs(
                &[("cpu", "100m"), ("memory", "200Mi")],
                &[("cpu", "200m"), ("memory", "250Mi")],
            )
        );
    }

    #[test]
    fn equal_amounts_keep_the_specs_spelling() {
        let allocated = reqs(&[("cpu", "0.1"), ("memory", "1G")], &[("cpu", "1")]);
        let got = status_resources(&allocated, &allocated, true);
        assert_eq!(got, allocated);
    }

    #[test]
    fn tiny_cpu_amounts_keep_the_allocated_value() {
        // 1m of request is 2 shares, read back as 2m; 5m of limit is the
        // 1 ms minimum quota, read back as 10m: both stay as allocated.
        let allocated = reqs(&[("cpu", "1m")], &[("cpu", "5m")]);
        assert_eq!(status_resources(&allocated, &allocated, true), allocated);
    }

    #[test]
    fn a_best_effort_container_reports_empty_resources() {
        let none = ResourceRequirements::default();
        assert_eq!(status_resources(&none, &none, true), none);
        assert_eq!(allocated_resources(&none), None);
    }

    #[test]
    fn sameness_is_by_amount() {
        let a = reqs(&[("cpu", "0.1"), ("memory", "1Mi")], &[]);
        let b = reqs(&[("cpu", "100m"), ("memory", "1048576")], &[]);
        assert!(same(&a, &b));
        assert!(!same(&a, &reqs(&[("cpu", "100m")], &[])));
        assert!(same(&ResourceRequirements::default(), &reqs(&[], &[])));
        let amounts = Amounts::of(&reqs(&[("cpu", "1")], &[("memory", "1Ki")]));
        assert_eq!((amounts.cpu_request, amounts.memory_limit), (1000, 1024));
    }

    #[test]
    fn memory_prints_as_binary_si() {
        assert_eq!(memory_quantity(250 << 20).0, "250Mi");
        assert_eq!(memory_quantity(1000).0, "1000");
        assert_eq!(memory_quantity(0).0, "0");
        assert_eq!(cpu_quantity(1500).0, "1500m");
        assert_eq!(cpu_quantity(2000).0, "2");
    }
}
