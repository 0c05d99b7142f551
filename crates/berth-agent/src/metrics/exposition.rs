//! The two text formats `/metrics` serves: Prometheus' classic 0.0.4 (the
//! kubelet's, and the default) and OpenMetrics, only for a scraper whose
//! `Accept` names it.

use prometheus_client::registry::Registry;

pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which format a scraper gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Classic,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics only when `Accept` asks for it by name; anything else
    /// (none, `*/*`, `text/plain`) gets the classic format.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let asks = accept.is_some_and(|accept| {
            accept
                .split(',')
                .filter_map(|range| range.split(';').next())
                .any(|media| {
                    media
                        .trim()
                        .eq_ignore_ascii_case("application/openmetrics-text")
                })
        });
        if asks {
            Self::OpenMetrics
        } else {
            Self::Classic
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Classic => CLASSIC_CONTENT_TYPE,
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// The registry in `format`.
pub fn encode(registry: &Registry, format: Format) -> String {
    let mut text = String::new();
    match format {
        Format::OpenMetrics => {
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut text, registry);
            text
        }
        Format::Classic => {
            let _ = prometheus_client::encoding::text::encode_registry(&mut text, registry);
            to_classic(&text)
        }
    }
}

/// OpenMetrics text without its EOF into the classic format: a counter's
/// family is named after its samples (`x_total`, not `x`), and there are no
/// `# UNIT` lines. Gauges and histograms read the same in both.
fn to_classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                if !tail.is_empty() {
                    out.push(' ');
                    out.push_str(tail);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;

    use super::*;

    #[test]
    fn openmetrics_only_when_asked_by_name() {
        assert_eq!(Format::negotiate(None), Format::Classic);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Classic);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4")),
            Format::Classic
        );
        // What Prometheus itself sends.
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
    }

    #[test]
    fn classic_names_counter_families_after_their_samples() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        counter.inc();
        registry.register("kubelet_started_containers", "Started", counter);
        let gauge = Gauge::<i64>::default();
        gauge.set(3);
        registry.register("kubelet_running_pods", "Running", gauge);

        assert_eq!(
            encode(&registry, Format::Classic),
            "# HELP kubelet_started_containers_total Started.\n\
             # TYPE kubelet_started_containers_total counter\n\
             kubelet_started_containers_total 1\n\
             # HELP kubelet_running_pods Running.\n\
             # TYPE kubelet_running_pods gauge\n\
             kubelet_running_pods 3\n"
        );
        let openmetrics = encode(&registry, Format::OpenMetrics);
        assert!(
            openmetrics.contains("# TYPE kubelet_started_containers counter\n"),
            "{openmetrics}"
        );
        assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    }
}
