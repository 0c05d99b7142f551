//! `delete pod NAME... | --all [--grace-period N] [--force] [--now] [--wait]`,
//! with kubectl's grace-period rules and messages (kubectl cmd/delete).

use std::collections::BTreeMap;
use std::io::Write;

use http::Method;
use serde_json::{json, Value};

use crate::client::{pod_path, pods_path, BodyStream, Client, ClientError};
use crate::error::{render, CliError};
use crate::get::WatchEvent;
use crate::target::{name_of, pod_names, sorted_items, uid_of};
use crate::{namespace_or_default, VerbResult};

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// `pods NAME...` or `pod/NAME...`
    #[arg(required_unless_present = "filename", value_name = "TYPE[/NAME]")]
    args: Vec<String>,
    /// Delete the pods of these manifests (files, directories, or - for stdin)
    #[arg(short = 'f', long = "filename", conflicts_with = "all")]
    filename: Vec<String>,
    /// The namespace of the request
    #[arg(short, long)]
    namespace: Option<String>,
    /// Delete all pods in the namespace
    #[arg(long)]
    all: bool,
    /// Seconds given to the pod to terminate gracefully; -1 uses the pod's
    /// own; 0 requires --force
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    grace_period: i64,
    /// Remove the pod immediately, without waiting for it to terminate
    #[arg(long)]
    force: bool,
    /// Signal the pod for immediate shutdown (same as --grace-period=1)
    #[arg(long)]
    now: bool,
    /// Wait until the pod is gone before returning
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    wait: bool,
    /// Treat "pod not found" as a successful delete
    #[arg(long)]
    ignore_not_found: bool,
}

pub const FORCE_WARNING: &str = "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.\n";

/// The grace period kubectl sends (-1: the pod's own), after its
/// conversions: `--now` is 1, and 0 without `--force` becomes 1.
pub fn effective_grace_period(grace_period: i64, force: bool, now: bool) -> Result<i64, CliError> {
    let mut grace = grace_period;
    if now {
        if grace != -1 {
            return Err(CliError::usage(
                "--now and --grace-period cannot be specified together",
            ));
        }
        grace = 1;
    }
    if grace == 0 && !force {
        grace = 1;
    }
    if force && grace < 0 {
        grace = 0;
    }
    if force && grace > 0 {
        return Err(CliError::usage(
            "--force and --grace-period greater than 0 cannot be specified together",
        ));
    }
    Ok(grace)
}

/// `pod "web" deleted from default namespace` (kubectl ≥ 1.32).
pub fn deleted_message(name: &str, namespace: &str, grace_period: i64) -> String {
    let operation = if grace_period == 0 {
        "force deleted"
    } else {
        "deleted"
    };
    format!("pod \"{name}\" {operation} from {namespace} namespace\n")
}

pub fn delete_options(grace_period: i64) -> Value {
    let mut body = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
    if grace_period >= 0 {
        body["gracePeriodSeconds"] = json!(grace_period);
    }
    body
}

pub async fn run(
    client: &Client,
    args: DeleteArgs,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> VerbResult {
    let grace = effective_grace_period(args.grace_period, args.force, args.now)?;
    let mut groups = if args.filename.is_empty() {
        BTreeMap::from([(
            namespace_or_default(args.namespace.as_deref()),
            pod_names(&args.args)?,
        )])
    } else {
        if !args.args.is_empty() {
            return Err(CliError::usage(
                "resource names cannot be given with --filename",
            ));
        }
        manifest_pods(&args.filename, args.namespace.as_deref())?
    };
    let names_given = groups.values().any(|names| !names.is_empty());
    if args.all && names_given {
        return Err(CliError::usage(
            "cannot set --all and pod names at the same time",
        ));
    }
    if !args.all && !names_given {
        return Err(CliError::usage(
            "resource(s) were provided, but no name was specified",
        ));
    }
    if grace == 0 && args.force {
        err.write_all(FORCE_WARNING.as_bytes())?;
    }
    if args.all {
        let namespace = namespace_or_default(args.namespace.as_deref());
        let items = sorted_items(client.get(&pods_path(Some(&namespace))).await?);
        let names: Vec<String> = items.iter().map(|p| name_of(p).to_string()).collect();
        if names.is_empty() {
            out.write_all(b"No resources found\n")?;
            return Ok(0);
        }
        groups = BTreeMap::from([(namespace, names)]);
    }
    let mut failed = false;
    for (namespace, names) in &groups {
        failed |= !delete_in(client, &args, grace, namespace, names, out, err).await?;
    }
    Ok(if failed { 1 } else { 0 })
}

/// The pods named in manifests, by namespace (the flag's, the manifest's,
/// or `default`; a manifest's that differs from the flag is an error).
fn manifest_pods(
    filenames: &[String],
    namespace_flag: Option<&str>,
) -> Result<BTreeMap<String, Vec<String>>, CliError> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for manifest in crate::apply::read_manifests(filenames)? {
        let prepared = crate::apply::prepare(&manifest, namespace_flag)?;
        let namespace = prepared["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        groups
            .entry(namespace.to_string())
            .or_default()
            .push(name_of(&prepared).to_string());
    }
    Ok(groups)
}

/// Deletes `names` in one namespace; whether every delete succeeded.
async fn delete_in(
    client: &Client,
    args: &DeleteArgs,
    grace: i64,
    namespace: &str,
    names: &[String],
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> Result<bool, CliError> {
    // Watch before deleting, so the DELETED event cannot slip by.
    let mut watch = match args.wait {
        true => Some(open_watch(client, namespace).await?),
        false => None,
    };
    let body = delete_options(grace);
    let mut deleted = BTreeMap::new();
    let mut errors = Vec::new();
    for name in names {
        match client
            .json(Method::DELETE, &pod_path(namespace, name), Some(&body))
            .await
        {
            Ok(response) => {
                out.write_all(deleted_message(name, namespace, grace).as_bytes())?;
                let uid = match uid_of(&response) {
                    "" => response["details"]["uid"].as_str().unwrap_or_default(),
                    uid => uid,
                };
                deleted.insert(name.clone(), uid.to_string());
            }
            Err(ClientError::Api(status)) if status.is_not_found() && args.ignore_not_found => {}
            Err(e) => errors.push(CliError::from(e)),
        }
    }
    out.flush()?;
    if let Some(stream) = watch.as_mut() {
        wait_for_deletion(client, namespace, stream, deleted).await?;
    }
    for e in &errors {
        err.write_all(render(e).as_bytes())?;
    }
    Ok(errors.is_empty())
}

async fn open_watch(client: &Client, namespace: &str) -> Result<BodyStream, CliError> {
    let path = format!("{}?watch=true", pods_path(Some(namespace)));
    Ok(BodyStream::new(
        client.send(Method::GET, &path, None).await?,
    ))
}

/// Is the pod `name` (with `uid`, when known) still there?
async fn still_exists(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<bool, CliError> {
    match client.get(&pod_path(namespace, name)).await {
        Ok(pod) => Ok(uid.is_empty() || uid_of(&pod) == uid),
        Err(ClientError::Api(status)) if status.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Returns once every pod in `pending` is gone: a DELETED event for it, or a
/// 404 (or a new pod under its name).
async fn wait_for_deletion(
    client: &Client,
    namespace: &str,
    stream: &mut BodyStream,
    mut pending: BTreeMap<String, String>,
) -> Result<(), CliError> {
    loop {
        let mut gone = Vec::new();
        for (name, uid) in &pending {
            if !still_exists(client, namespace, name, uid).await? {
                gone.push(name.clone());
            }
        }
        for name in gone {
            pending.remove(&name);
        }
        while !pending.is_empty() {
            let Some(line) = stream.line().await? else {
                break;
            };
            let Ok(event) = serde_json::from_slice::<WatchEvent>(&line) else {
                continue;
            };
            if event.kind != "DELETED" {
                continue;
            }
            let name = name_of(&event.object);
            let matches = pending
                .get(name)
                .is_some_and(|uid| uid.is_empty() || uid == uid_of(&event.object));
            if matches {
                pending.remove(name);
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        // The agent ended the stream early: watch again, then re-check.
        tracing::debug!("watch ended while waiting for deletion; reopening");
        *stream = open_watch(client, namespace).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_period_conversions_follow_kubectl() {
        assert_eq!(effective_grace_period(-1, false, false).unwrap(), -1);
        assert_eq!(effective_grace_period(0, false, false).unwrap(), 1);
        assert_eq!(effective_grace_period(0, true, false).unwrap(), 0);
        assert_eq!(effective_grace_period(-1, true, false).unwrap(), 0);
        assert_eq!(effective_grace_period(-1, false, true).unwrap(), 1);
        assert_eq!(effective_grace_period(30, false, false).unwrap(), 30);
        assert!(effective_grace_period(5, true, false).is_err());
        assert!(effective_grace_period(5, false, true).is_err());
    }

    #[test]
    fn messages_and_body() {
        assert_eq!(
            deleted_message("web", "default", -1),
            "pod \"web\" deleted from default namespace\n"
        );
        assert_eq!(
            deleted_message("web", "prod", 0),
            "pod \"web\" force deleted from prod namespace\n"
        );
        assert_eq!(
            delete_options(0),
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
        );
        assert_eq!(
            delete_options(-1),
            json!({"kind": "DeleteOptions", "apiVersion": "v1"})
        );
    }
}
