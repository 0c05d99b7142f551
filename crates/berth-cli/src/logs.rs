//! `logs POD [-c C] [-p] [-f] [--tail N] [--timestamps] [--limit-bytes N]
//! [--since D | --since-time T]`: streams the container's log.

use std::io::Write;

use k8s_openapi::api::core::v1::Pod;

use crate::client::{encode_query, pod_path, BodyStream, Client};
use crate::error::CliError;
use crate::target::{decode_pod, single_pod};
use crate::{namespace_or_default, VerbResult};

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The pod (`NAME` or `pod/NAME`)
    pod: String,
    /// The container (same as -c)
    #[arg(value_name = "CONTAINER")]
    container_arg: Option<String>,
    /// The container to print the logs of
    #[arg(short, long)]
    container: Option<String>,
    /// The logs of the previous, terminated instance of the container
    #[arg(short, long)]
    previous: bool,
    /// Keep streaming as the log grows
    #[arg(short, long)]
    follow: bool,
    /// Lines of recent log to show; -1 shows everything
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    tail: i64,
    /// Prefix each line with its time (RFC 3339)
    #[arg(long)]
    timestamps: bool,
    /// The most bytes of log to show; 0 shows everything
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    limit_bytes: i64,
    /// Only lines newer than this, like 5s, 2m or 3h
    #[arg(long, value_parser = go_duration, allow_hyphen_values = true)]
    since: Option<f64>,
    /// Only lines newer than this time (RFC 3339)
    #[arg(long)]
    since_time: Option<String>,
    /// The namespace of the request
    #[arg(short, long)]
    namespace: Option<String>,
}

const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// kubectl's `FindOrDefaultContainerByName` for an unnamed container: the
/// annotated default, else the first container, with the notice kubectl
/// prints when there was a choice.
pub fn default_container(pod: &Pod) -> Result<(String, Option<String>), CliError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let names = |list: &[k8s_openapi::api::core::v1::Container]| {
        list.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
    };
    let containers = names(&spec.containers);
    let init = names(spec.init_containers.as_deref().unwrap_or_default());
    let ephemeral: Vec<String> = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    let Some(first) = containers.first() else {
        return Err(CliError::usage(format!(
            "pod {}/{} does not have any containers",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        )));
    };
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .filter(|name| {
            containers.contains(name) || init.contains(name) || ephemeral.contains(name)
        });
    if let Some(name) = annotated {
        return Ok((name.clone(), None));
    }
    let notice = (containers.len() > 1 || !init.is_empty() || !ephemeral.is_empty()).then(|| {
        let all: Vec<String> = containers
            .iter()
            .cloned()
            .chain(ephemeral.iter().map(|n| format!("{n} (ephem)")))
            .chain(init.iter().map(|n| format!("{n} (init)")))
            .collect();
        format!(
            "Defaulted container \"{first}\" out of: {}\n",
            all.join(", ")
        )
    });
    Ok((first.clone(), notice))
}

/// The container `-c` named, else the default one (with kubectl's notice on
/// `err` when there was a choice).
pub fn container_or_default(
    pod: &Pod,
    named: Option<String>,
    err: &mut (dyn Write + Send),
) -> Result<String, CliError> {
    if let Some(container) = named {
        return Ok(container);
    }
    let (container, notice) = default_container(pod)?;
    if let Some(notice) = notice {
        err.write_all(notice.as_bytes())?;
    }
    Ok(container)
}

/// What of the log to show: the query parameters of the log request
/// (`PodLogOptions`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogQuery {
    pub previous: bool,
    pub follow: bool,
    /// -1: all lines.
    pub tail: i64,
    pub timestamps: bool,
    /// 0: no limit.
    pub limit_bytes: i64,
    /// Seconds; 0: from the start.
    pub since: f64,
    pub since_time: Option<String>,
}

impl LogQuery {
    /// kubectl's `LogsOptions.Validate`.
    fn validate(&self) -> Result<(), CliError> {
        if self.since_time.is_some() && self.since != 0.0 {
            return Err(CliError::usage(
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            ));
        }
        if self.limit_bytes < 0 {
            return Err(CliError::usage("--limit-bytes must be greater than 0"));
        }
        if self.since < 0.0 {
            return Err(CliError::usage("--since must be greater than 0"));
        }
        if self.tail < -1 {
            return Err(CliError::usage(
                "--tail must be greater than or equal to -1",
            ));
        }
        Ok(())
    }
}

/// The log request for these options.
pub fn log_path(namespace: &str, pod: &str, container: &str, query: &LogQuery) -> String {
    let mut path = format!(
        "{}/log?container={}",
        pod_path(namespace, pod),
        encode_query(container)
    );
    if query.previous {
        path.push_str("&previous=true");
    }
    if query.follow {
        path.push_str("&follow=true");
    }
    if query.tail >= 0 {
        path.push_str(&format!("&tailLines={}", query.tail));
    }
    if query.timestamps {
        path.push_str("&timestamps=true");
    }
    if query.limit_bytes != 0 {
        path.push_str(&format!("&limitBytes={}", query.limit_bytes));
    }
    if query.since != 0.0 {
        // Rounded to whole seconds, as kubectl does.
        path.push_str(&format!("&sinceSeconds={}", query.since.round() as i64));
    }
    if let Some(time) = &query.since_time {
        path.push_str(&format!("&sinceTime={}", encode_query(time)));
    }
    path
}

/// A Go duration (`time.ParseDuration`: `300ms`, `1.5h`, `2h45m`), in seconds.
fn go_duration(text: &str) -> Result<f64, String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let (sign, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(0.0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut seconds = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration {text:?}"))?;
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("time: unknown unit {unit:?} in duration {text:?}")),
        };
        seconds += number * scale;
        rest = &rest[unit_len..];
    }
    Ok(sign * seconds)
}

pub async fn run(
    client: &Client,
    args: LogsArgs,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> VerbResult {
    let name = single_pod(&args.pod)?;
    let namespace = namespace_or_default(args.namespace.as_deref());
    let pod = decode_pod(&client.get(&pod_path(&namespace, &name)).await?)?;
    let container = container_or_default(&pod, args.container.or(args.container_arg), err)?;
    let query = LogQuery {
        previous: args.previous,
        follow: args.follow,
        tail: args.tail,
        timestamps: args.timestamps,
        limit_bytes: args.limit_bytes,
        since: args.since.unwrap_or_default(),
        since_time: args.since_time,
    };
    query.validate()?;
    let path = log_path(&namespace, &name, &container, &query);
    let mut stream = BodyStream::new(client.send(http::Method::GET, &path, None).await?);
    while let Some(chunk) = stream.chunk().await? {
        out.write_all(&chunk)?;
        out.flush()?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn single_container_needs_no_notice() {
        let p = pod(json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "a"}]}}));
        assert_eq!(default_container(&p).unwrap(), ("a".to_string(), None));
    }

    #[test]
    fn several_containers_default_to_the_first_with_a_notice() {
        let p = pod(json!({"metadata": {"name": "web"}, "spec": {
            "containers": [{"name": "a"}, {"name": "b"}],
            "initContainers": [{"name": "setup"}]
        }}));
        assert_eq!(
            default_container(&p).unwrap(),
            (
                "a".to_string(),
                Some("Defaulted container \"a\" out of: a, b, setup (init)\n".to_string())
            )
        );
    }

    #[test]
    fn the_default_container_annotation_wins_silently() {
        let p = pod(json!({
            "metadata": {"name": "web", "annotations": {"kubectl.kubernetes.io/default-container": "b"}},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}
        }));
        assert_eq!(default_container(&p).unwrap(), ("b".to_string(), None));
    }

    #[test]
    fn log_query() {
        let query = LogQuery {
            previous: true,
            follow: true,
            tail: 10,
            ..LogQuery::default()
        };
        assert_eq!(
            log_path("default", "web", "a", &query),
            "/api/v1/namespaces/default/pods/web/log?container=a&previous=true&follow=true&tailLines=10"
        );
        let all = LogQuery {
            tail: -1,
            ..LogQuery::default()
        };
        assert_eq!(
            log_path("default", "web", "a", &all),
            "/api/v1/namespaces/default/pods/web/log?container=a"
        );
        let shaped = LogQuery {
            tail: -1,
            timestamps: true,
            limit_bytes: 100,
            since: 90.6,
            ..LogQuery::default()
        };
        assert_eq!(
            log_path("default", "web", "a", &shaped),
            "/api/v1/namespaces/default/pods/web/log?container=a&timestamps=true&limitBytes=100&sinceSeconds=91"
        );
        let since_time = LogQuery {
            tail: -1,
            since_time: Some("2026-01-01T00:00:00+01:00".into()),
            ..LogQuery::default()
        };
        assert_eq!(
            log_path("default", "web", "a", &since_time),
            "/api/v1/namespaces/default/pods/web/log?container=a&sinceTime=2026-01-01T00%3A00%3A00%2B01%3A00"
        );
    }

    #[test]
    fn kubectl_checks_the_options() {
        let both = LogQuery {
            tail: -1,
            since: 5.0,
            since_time: Some("2026-01-01T00:00:00Z".into()),
            ..LogQuery::default()
        };
        assert!(both
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at most one"));
        let negative = LogQuery {
            tail: -1,
            limit_bytes: -1,
            ..LogQuery::default()
        };
        assert_eq!(
            negative.validate().unwrap_err().to_string(),
            "--limit-bytes must be greater than 0"
        );
        let tail = LogQuery {
            tail: -2,
            ..LogQuery::default()
        };
        assert!(tail.validate().is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("5s"), Ok(5.0));
        assert_eq!(go_duration("2m"), Ok(120.0));
        assert_eq!(go_duration("1h30m"), Ok(5400.0));
        assert_eq!(go_duration("1.5h"), Ok(5400.0));
        assert_eq!(go_duration("300ms"), Ok(0.3));
        assert_eq!(go_duration("0"), Ok(0.0));
        assert_eq!(go_duration("-1s"), Ok(-1.0));
        assert!(go_duration("5").is_err());
        assert!(go_duration("").is_err());
        assert!(go_duration("5d").is_err());
        assert!(go_duration("s").is_err());
    }
}
