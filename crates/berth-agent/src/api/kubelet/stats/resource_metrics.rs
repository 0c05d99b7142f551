//! `/metrics/resource` in the Prometheus text format, as the kubelet's
//! `pkg/kubelet/metrics/collectors` resource metrics collector writes it from
//! the summary: families sorted by name, labels sorted, samples stamped with
//! the time they were read. (`scrape_error`, deprecated in 1.29, is hidden
//! by v1.37 kubelets, so only `resource_scrape_error` is written.)

use std::fmt::Write;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::summary::Summary;

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<String>,
}

/// The text of the resource metrics of `summary`.
pub fn render(summary: &Summary) -> String {
    let family = |name, help, kind| Family {
        name,
        help,
        kind,
        samples: Vec::new(),
    };
    let mut container_cpu = family(
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed by the container in core-seconds",
        "counter",
    );
    let mut container_memory = family(
        "container_memory_working_set_bytes",
        "Current working set of the container in bytes",
        "gauge",
    );
    let mut container_start = family(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds",
        "gauge",
    );
    let mut node_cpu = family(
        "node_cpu_usage_seconds_total",
        "Cumulative cpu time consumed by the node in core-seconds",
        "counter",
    );
    let mut node_memory = family(
        "node_memory_working_set_bytes",
        "Current working set of the node in bytes",
        "gauge",
    );
    let mut pod_cpu = family(
        "pod_cpu_usage_seconds_total",
        "Cumulative cpu time consumed by the pod in core-seconds",
        "counter",
    );
    let mut pod_memory = family(
        "pod_memory_working_set_bytes",
        "Current working set of the pod in bytes",
        "gauge",
    );
    let mut scrape_error = family(
        "resource_scrape_error",
        "1 if there was an error while getting container metrics, 0 otherwise",
        "gauge",
    );

    if let Some(cpu) = &summary.node.cpu {
        node_cpu.samples.push(sample(
            "",
            seconds(cpu.usage_core_nano_seconds),
            Some(&cpu.time),
        ));
    }
    if let Some(memory) = &summary.node.memory {
        node_memory.samples.push(sample(
            "",
            memory.working_set_bytes as f64,
            Some(&memory.time),
        ));
    }
    for pod in &summary.pods {
        let (name, namespace) = (&pod.pod_ref.name, &pod.pod_ref.namespace);
        for container in &pod.containers {
            let labels = labels(&[
                ("container", &container.name),
                ("namespace", namespace),
                ("pod", name),
            ]);
            let started = container.start_time.0.as_nanosecond() as f64 / 1e9;
            if started > 0.0 {
                container_start.samples.push(sample(&labels, started, None));
            }
            if let Some(cpu) = &container.cpu {
                container_cpu.samples.push(sample(
                    &labels,
                    seconds(cpu.usage_core_nano_seconds),
                    Some(&cpu.time),
                ));
            }
            if let Some(memory) = &container.memory {
                container_memory.samples.push(sample(
                    &labels,
                    memory.working_set_bytes as f64,
                    Some(&memory.time),
                ));
            }
        }
        let labels = labels(&[("namespace", namespace), ("pod", name)]);
        if let Some(cpu) = &pod.cpu {
            pod_cpu.samples.push(sample(
                &labels,
                seconds(cpu.usage_core_nano_seconds),
                Some(&cpu.time),
            ));
        }
        if let Some(memory) = &pod.memory {
            pod_memory.samples.push(sample(
                &labels,
                memory.working_set_bytes as f64,
                Some(&memory.time),
            ));
        }
    }
    // Reading the cgroups has no failure mode that loses the whole summary:
    // a cgroup that cannot be read leaves its pod out, as the kubelet does.
    scrape_error.samples.push(sample("", 0.0, None));

    let mut text = String::new();
    for family in [
        container_cpu,
        container_memory,
        container_start,
        node_cpu,
        node_memory,
        pod_cpu,
        pod_memory,
        scrape_error,
    ] {
        if family.samples.is_empty() {
            continue;
        }
        let _ = writeln!(text, "# HELP {} [STABLE] {}", family.name, family.help);
        let _ = writeln!(text, "# TYPE {} {}", family.name, family.kind);
        for line in family.samples {
            let _ = writeln!(text, "{}{line}", family.name);
        }
    }
    text
}

fn seconds(nanoseconds: u64) -> f64 {
    nanoseconds as f64 / 1e9
}

/// `{labels} value [timestamp in ms]`, after the metric name.
fn sample(labels: &str, value: f64, at: Option<&Time>) -> String {
    match at {
        Some(at) => format!("{labels} {} {}", go_float(value), at.0.as_millisecond()),
        None => format!("{labels} {}", go_float(value)),
    }
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let pairs: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// A label value with backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it (what
/// the Prometheus client writes): shortest digits, exponent form below 1e-4
/// and from 1e6 up, with a signed two-digit exponent.
fn go_float(value: f64) -> String {
    if !value.is_finite() {
        return match value {
            v if v.is_nan() => "NaN".into(),
            v if v > 0.0 => "+Inf".into(),
            _ => "-Inf".into(),
        };
    }
    if value == 0.0 {
        return "0".into();
    }
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..6).contains(&exponent) {
        format!("{value}")
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::super::summary::*;
    use super::*;
    use jiff::Timestamp;

    fn at(ms: i64) -> Time {
        Time(Timestamp::from_millisecond(ms).unwrap())
    }

    fn cpu(ns: u64, time: Time) -> Option<CpuStats> {
        Some(CpuStats {
            time,
            usage_nano_cores: None,
            usage_core_nano_seconds: ns,
        })
    }

    fn memory(working_set: u64, time: Time) -> Option<MemoryStats> {
        Some(MemoryStats {
            time,
            available_bytes: None,
            usage_bytes: working_set,
            working_set_bytes: working_set,
            rss_bytes: None,
            page_faults: None,
            major_page_faults: None,
        })
    }

    #[test]
    fn go_float_matches_strconv_g() {
        assert_eq!(go_float(4.710169), "4.710169");
        assert_eq!(go_float(12_533_760.0), "1.253376e+07");
        assert_eq!(go_float(1_633_252_712.0), "1.633252712e+09");
        assert_eq!(go_float(123_456.0), "123456");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(0.0), "0");
        assert_eq!(go_float(1.0), "1");
    }

    #[test]
    fn renders_the_kubelet_families_in_order() {
        let summary = Summary {
            node: NodeStats {
                node_name: "n".into(),
                start_time: at(0),
                cpu: cpu(357_354_910_000, at(1_633_253_809_720)),
                memory: memory(1_616_273_408, at(1_633_253_809_720)),
                fs: None,
            },
            pods: vec![PodStats {
                pod_ref: PodReference {
                    name: "web".into(),
                    namespace: "default".into(),
                    uid: "u".into(),
                },
                start_time: at(1_633_252_700_000),
                containers: vec![ContainerStats {
                    name: "c\"1".into(),
                    start_time: at(1_633_252_712_000),
                    cpu: cpu(4_710_169_000, at(1_633_253_812_125)),
                    memory: memory(12_533_760, at(1_633_253_812_125)),
                }],
                cpu: cpu(4_678_120_000, at(1_633_253_803_935)),
                memory: memory(12_627_968, at(1_633_253_803_935)),
            }],
        };
        let expected = r#"# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="c\"1",namespace="default",pod="web"} 4.710169 1633253812125
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="c\"1",namespace="default",pod="web"} 1.253376e+07 1633253812125
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="c\"1",namespace="default",pod="web"} 1.633252712e+09
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 357.35491 1633253809720
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.616273408e+09 1633253809720
# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace="default",pod="web"} 4.67812 1633253803935
# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{namespace="default",pod="web"} 1.2627968e+07 1633253803935
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
"#;
        assert_eq!(render(&summary), expected);
    }
}
