//! `/stats/summary` and `/metrics/resource`: the node's, its pods' and their
//! running containers' CPU and memory, read from the host and the cgroups
//! the runtime placed them in (kubelet `pkg/kubelet/server/stats`).

mod cgroup;
mod host;
pub mod resource_metrics;
pub mod summary;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_runtime::cgroup_layout::{container_cgroup, pod_cgroup};
use http::{Response, StatusCode};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::super::body::{full, json_response, Body};
use cgroup::{Hierarchies, Usage};
use summary::{
    ContainerStats, CpuStats, FsStats, MemoryStats, NodeStats, PodReference, PodStats, Summary,
};

/// Answers `/stats/summary` (with `only_cpu_and_memory=true` as the
/// kubelet reads it) or `/metrics/resource`.
pub async fn serve(
    segments: &[&str],
    query: Option<&str>,
    pods: Vec<Pod>,
    provider: Arc<StatsProvider>,
) -> Response<Body> {
    let metrics = segments.first() == Some(&"metrics");
    let only_cpu_and_memory = metrics
        || query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .any(|pair| pair == "only_cpu_and_memory=true");
    let summary =
        tokio::task::spawn_blocking(move || provider.summary(&pods, only_cpu_and_memory)).await;
    let Ok(summary) = summary else {
        let mut response = Response::new(full("Internal Error: reading the stats failed"));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return response;
    };
    if !metrics {
        return json_response(StatusCode::OK, &summary);
    }
    let mut response = Response::new(full(resource_metrics::render(&summary)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(resource_metrics::CONTENT_TYPE),
    );
    response
}

/// Samples shorter apart than this give no usage rate (too noisy).
const MIN_RATE_WINDOW_NS: i128 = 1_000_000_000;

pub struct StatsProvider {
    node_name: String,
    /// Its filesystem is the node's.
    root_dir: PathBuf,
    /// The previous CPU sample of each cgroup (and of the node), for
    /// `usageNanoCores`.
    previous: Mutex<HashMap<String, (u64, Timestamp)>>,
}

impl StatsProvider {
    pub fn new(node_name: String, root_dir: PathBuf) -> Self {
        Self {
            node_name,
            root_dir,
            previous: Mutex::new(HashMap::new()),
        }
    }

    /// The summary of the node and of `pods` whose cgroup exists; with
    /// `only_cpu_and_memory`, without filesystems.
    pub fn summary(&self, pods: &[Pod], only_cpu_and_memory: bool) -> Summary {
        let hierarchies = Hierarchies::of_host();
        let now = Timestamp::now();
        let mut seen = Vec::new();
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let times = host::cpu_times(&read("/proc/stat"));
        let node = NodeStats {
            node_name: self.node_name.clone(),
            start_time: Time(
                times
                    .as_ref()
                    .and_then(|t| Timestamp::from_second(t.boot_time).ok())
                    .unwrap_or(now),
            ),
            cpu: times.map(|t| self.cpu("node", t.busy_ns, now, &mut seen)),
            memory: host::node_memory(&read("/proc/meminfo")).map(|m| MemoryStats {
                time: Time(now),
                available_bytes: Some(m.capacity.saturating_sub(m.working_set)),
                usage_bytes: m.usage,
                working_set_bytes: m.working_set,
                rss_bytes: Some(m.rss),
                page_faults: None,
                major_page_faults: None,
            }),
            fs: (!only_cpu_and_memory)
                .then(|| host::filesystem(&self.root_dir))
                .flatten()
                .map(|fs| FsStats {
                    time: Time(now),
                    available_bytes: fs.available,
                    capacity_bytes: fs.capacity,
                    used_bytes: fs.used,
                    inodes_free: fs.inodes_free,
                    inodes: fs.inodes,
                    inodes_used: fs.inodes.saturating_sub(fs.inodes_free),
                }),
        };
        let pods = pods
            .iter()
            .filter_map(|pod| self.pod(&hierarchies, pod, now, &mut seen))
            .collect();
        self.previous
            .lock()
            .unwrap()
            .retain(|key, _| seen.contains(key));
        Summary { node, pods }
    }

    fn pod(
        &self,
        hierarchies: &Hierarchies,
        pod: &Pod,
        now: Timestamp,
        seen: &mut Vec<String>,
    ) -> Option<PodStats> {
        let meta = &pod.metadata;
        let uid = meta.uid.as_deref().filter(|uid| path_safe(uid))?;
        let status = pod.status.as_ref();
        let containers = status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|container| {
                let started = container
                    .state
                    .as_ref()?
                    .running
                    .as_ref()?
                    .started_at
                    .clone()?;
                let id = container
                    .container_id
                    .as_deref()?
                    .strip_prefix("containerd://")
                    .filter(|id| path_safe(id))?;
                let usage = hierarchies.usage(&container_cgroup(uid, id))?;
                let (cpu, memory) = self.usage_stats(id, usage, now, seen);
                Some(ContainerStats {
                    name: container.name.clone(),
                    start_time: started,
                    cpu,
                    memory,
                })
            })
            .collect::<Vec<_>>();
        // The pod's cgroup is read after its containers': its CPU counter then
        // holds at least each container's. Read first, it would miss what a
        // busy container used between the two reads, and show a pod that used
        // less than one of its containers.
        let usage = hierarchies.usage(&pod_cgroup(uid))?;
        let (cpu, memory) = self.usage_stats(&format!("pod{uid}"), usage, now, seen);
        Some(PodStats {
            pod_ref: PodReference {
                name: meta.name.clone().unwrap_or_default(),
                namespace: meta.namespace.clone().unwrap_or_default(),
                uid: uid.to_owned(),
            },
            start_time: status
                .and_then(|s| s.start_time.clone())
                .unwrap_or(Time(now)),
            containers,
            cpu,
            memory,
        })
    }

    fn usage_stats(
        &self,
        key: &str,
        usage: Usage,
        now: Timestamp,
        seen: &mut Vec<String>,
    ) -> (Option<CpuStats>, Option<MemoryStats>) {
        let cpu = usage.cpu_ns.map(|ns| self.cpu(key, ns, now, seen));
        let memory = usage.memory.map(|m| MemoryStats {
            time: Time(now),
            available_bytes: None,
            usage_bytes: m.usage,
            working_set_bytes: m.working_set,
            rss_bytes: Some(m.rss),
            page_faults: Some(m.page_faults),
            major_page_faults: Some(m.major_page_faults),
        });
        (cpu, memory)
    }

    /// CPU stats, with the rate since the previous sample of `key` (kubelet
    /// `getAndUpdateContainerUsageNanoCores`).
    fn cpu(&self, key: &str, usage_ns: u64, now: Timestamp, seen: &mut Vec<String>) -> CpuStats {
        seen.push(key.to_owned());
        let mut previous = self.previous.lock().unwrap();
        let (usage_nano_cores, keep) = match previous.get(key) {
            Some(&(before, at)) => {
                let elapsed = now.as_nanosecond() - at.as_nanosecond();
                if elapsed < MIN_RATE_WINDOW_NS {
                    (None, true)
                } else {
                    (Some(nano_cores(before, usage_ns, elapsed)), false)
                }
            }
            None => (None, false),
        };
        if !keep {
            previous.insert(key.to_owned(), (usage_ns, now));
        }
        CpuStats {
            time: Time(now),
            usage_nano_cores,
            usage_core_nano_seconds: usage_ns,
        }
    }
}

/// The rate of CPU use between two cumulative samples `elapsed_ns` apart.
fn nano_cores(before_ns: u64, after_ns: u64, elapsed_ns: i128) -> u64 {
    let used = i128::from(after_ns.saturating_sub(before_ns));
    u64::try_from(used * 1_000_000_000 / elapsed_ns.max(1)).unwrap_or(u64::MAX)
}

/// A UID or container ID that names one cgroup directory, nothing above it.
fn path_safe(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nano_cores_is_the_rate_between_samples() {
        // 0.5 s of CPU over 2 s: a quarter of a core.
        assert_eq!(
            nano_cores(1_000_000_000, 1_500_000_000, 2_000_000_000),
            250_000_000
        );
        // A counter that went back (a new cgroup) is no negative rate.
        assert_eq!(nano_cores(5, 1, 1_000_000_000), 0);
    }

    #[test]
    fn the_rate_needs_a_previous_sample_a_second_old() {
        let provider = StatsProvider::new("n".into(), "/".into());
        let t0 = Timestamp::from_second(1_000).unwrap();
        let mut seen = Vec::new();
        let first = provider.cpu("c", 1_000_000_000, t0, &mut seen);
        assert_eq!(first.usage_nano_cores, None);
        let soon = provider.cpu(
            "c",
            1_100_000_000,
            t0 + jiff::SignedDuration::from_millis(100),
            &mut seen,
        );
        assert_eq!(soon.usage_nano_cores, None, "a 100 ms window is too short");
        let later = provider.cpu(
            "c",
            3_000_000_000,
            t0 + jiff::SignedDuration::from_secs(4),
            &mut seen,
        );
        assert_eq!(later.usage_nano_cores, Some(500_000_000));
        assert_eq!(later.usage_core_nano_seconds, 3_000_000_000);
    }

    /// A pod and its container's cgroups on this host, with a busy loop in
    /// the container's; removed on drop, with the cgroups above them that
    /// it made.
    struct BusyPod {
        /// Made by this test, deepest first.
        made: Vec<PathBuf>,
        busy: Option<std::process::Child>,
    }

    impl BusyPod {
        /// `None` when this host's cgroups cannot be written (not root).
        fn start(hierarchies: &Hierarchies, uid: &str, id: &str) -> Option<Self> {
            let mut this = Self {
                made: Vec::new(),
                busy: None,
            };
            let mut leaves = Vec::new();
            for mount in hierarchies.read_from() {
                let mut dir = mount.to_path_buf();
                for part in container_cgroup(uid, id).trim_start_matches('/').split('/') {
                    dir.push(part);
                    if !dir.exists() {
                        std::fs::create_dir(&dir).ok()?;
                        this.made.insert(0, dir.clone());
                    }
                }
                leaves.push(dir);
            }
            let busy = std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .unwrap();
            for leaf in &leaves {
                std::fs::write(leaf.join("cgroup.procs"), busy.id().to_string()).unwrap();
            }
            this.busy = Some(busy);
            Some(this)
        }
    }

    impl Drop for BusyPod {
        fn drop(&mut self) {
            if let Some(busy) = &mut self.busy {
                let _ = busy.kill();
                let _ = busy.wait();
            }
            for dir in &self.made {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }

    #[test]
    fn a_busy_pods_cpu_is_never_less_than_its_containers() {
        let hierarchies = Hierarchies::of_host();
        let uid = format!("stats-test-{}", std::process::id());
        let id = "busy";
        let Some(_busy) = BusyPod::start(&hierarchies, &uid, id) else {
            let required = std::env::var("BERTH_REQUIRE_CONTAINERD").as_deref() == Ok("1");
            assert!(!required, "cannot make cgroups on this host");
            eprintln!("skipping: cannot make cgroups on this host");
            return;
        };
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "busy", "namespace": "default", "uid": uid},
            "status": {"containerStatuses": [{
                "name": "busy", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                "containerID": format!("containerd://{id}"),
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            }]},
        }))
        .unwrap();
        let provider = StatsProvider::new("n".into(), "/".into());
        // The loop's counter moves between two reads often enough that
        // reading the pod first shows it behind within a few hundred reads.
        for read in 0..2000 {
            let stats = provider
                .pod(&hierarchies, &pod, Timestamp::now(), &mut Vec::new())
                .unwrap();
            let pod_ns = stats.cpu.unwrap().usage_core_nano_seconds;
            let container_ns = stats.containers[0]
                .cpu
                .as_ref()
                .unwrap()
                .usage_core_nano_seconds;
            assert!(
                pod_ns >= container_ns,
                "read {read}: pod {pod_ns} ns < container {container_ns} ns"
            );
        }
    }

    #[test]
    fn only_plain_names_become_cgroup_paths() {
        assert!(path_safe("0f3c-aa_b.1"));
        for bad in ["", ".", "..", "../x", "a/b", "a b"] {
            assert!(!path_safe(bad), "{bad:?}");
        }
    }
}
