//! `logs POD [-c C] [-p] [-f] [--tail N]`: streams the container's log.

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

/// The log request for these options.
pub fn log_path(
    namespace: &str,
    pod: &str,
    container: &str,
    previous: bool,
    follow: bool,
    tail: i64,
) -> String {
    let mut path = format!(
        "{}/log?container={}",
        pod_path(namespace, pod),
        encode_query(container)
    );
    if previous {
        path.push_str("&previous=true");
    }
    if follow {
        path.push_str("&follow=true");
    }
    if tail >= 0 {
        path.push_str(&format!("&tailLines={tail}"));
    }
    path
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
    let path = log_path(
        &namespace,
        &name,
        &container,
        args.previous,
        args.follow,
        args.tail,
    );
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
        assert_eq!(
            log_path("default", "web", "a", true, true, 10),
            "/api/v1/namespaces/default/pods/web/log?container=a&previous=true&follow=true&tailLines=10"
        );
        assert_eq!(
            log_path("default", "web", "a", false, false, -1),
            "/api/v1/namespaces/default/pods/web/log?container=a"
        );
    }
}
