//! `apply -f FILE|DIR|-`: creates pods that are absent and updates those whose
//! configuration changed, keeping kubectl's last-applied-configuration
//! annotation so the next apply can tell removals from server defaults.

use std::io::{Read, Write};
use std::path::Path;

use http::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::client::{pod_path, pods_path, Client, ClientError};
use crate::error::{render, with_object, with_source, CliError};
use crate::output::sorted;
use crate::target::name_of;
use crate::VerbResult;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The manifest: a YAML or JSON file, a directory of them, or - for stdin
    #[arg(short = 'f', long = "filename", required = true)]
    filename: Vec<String>,
    /// The namespace of the request
    #[arg(short, long)]
    namespace: Option<String>,
}

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One object from a manifest, with the file it came from.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub source: String,
    pub object: Value,
}

/// Reads every object of `-f` arguments; nothing is sent if any is invalid.
pub fn read_manifests(filenames: &[String]) -> Result<Vec<Manifest>, CliError> {
    let mut manifests = Vec::new();
    for filename in filenames {
        if filename == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            manifests.extend(parse_manifest(&text, "STDIN")?);
            continue;
        }
        let path = Path::new(filename);
        if !path.exists() {
            return Err(CliError::usage(format!(
                "the path \"{filename}\" does not exist"
            )));
        }
        let files = if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                })
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        for file in files {
            let text = std::fs::read_to_string(&file)?;
            manifests.extend(parse_manifest(&text, &file.display().to_string())?);
        }
    }
    Ok(manifests)
}

/// The pods of a (multi-document) YAML or JSON manifest; `List`s are
/// flattened. Anything but a v1 Pod is an error naming the file.
pub fn parse_manifest(text: &str, source: &str) -> Result<Vec<Manifest>, CliError> {
    // The agent would refuse it too; parsing it here first would take long.
    berth_api::manifest::check_bounds(text)
        .map_err(|e| CliError::usage(format!("error parsing {source}: {e}")))?;
    let mut objects = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document)
            .map_err(|e| CliError::usage(format!("error parsing {source}: {e}")))?;
        match value {
            Value::Null => {}
            Value::Object(ref map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
                objects.extend(
                    map.get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            other => objects.push(other),
        }
    }
    objects
        .into_iter()
        .map(|object| {
            check_pod(&object, source)?;
            Ok(Manifest {
                source: source.to_string(),
                object,
            })
        })
        .collect()
}

fn check_pod(object: &Value, source: &str) -> Result<(), CliError> {
    let invalid = |what: &str| {
        CliError::usage(format!(
            "error validating \"{source}\": error validating data: {what}"
        ))
    };
    if !object.is_object() {
        return Err(invalid("the document is not an object"));
    }
    let kind = object["kind"].as_str().unwrap_or_default();
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    if kind.is_empty() {
        return Err(invalid("kind not set"));
    }
    if api_version.is_empty() {
        return Err(invalid("apiVersion not set"));
    }
    if kind != "Pod" || api_version != "v1" {
        return Err(CliError::usage(format!(
            "resource mapping not found for name: \"{}\" namespace: \"{}\" from \"{source}\": no matches for kind \"{kind}\" in version \"{api_version}\"\nensure CRDs are installed first",
            name_of(object),
            object["metadata"]["namespace"].as_str().unwrap_or_default()
        )));
    }
    serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(object.clone())
        .map_err(|e| invalid(&e.to_string()))?;
    Ok(())
}

pub async fn run(
    client: &Client,
    args: ApplyArgs,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> VerbResult {
    let manifests = read_manifests(&args.filename)?;
    if manifests.is_empty() {
        return Err(CliError::usage("no objects passed to apply"));
    }
    let mut configs = Vec::new();
    for manifest in &manifests {
        configs.push(prepare(manifest, args.namespace.as_deref())?);
    }
    let mut failed = Vec::new();
    for (manifest, config) in manifests.iter().zip(configs) {
        match apply_one(client, manifest, config, err).await {
            Ok(line) => {
                out.write_all(line.as_bytes())?;
                out.flush()?;
            }
            Err(e) => failed.push(e),
        }
    }
    for e in &failed {
        err.write_all(render(e).as_bytes())?;
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}

/// The object to send: namespace resolved and the last-applied annotation
/// set to the configuration itself (kubectl's `GetModifiedConfiguration`).
pub fn prepare(manifest: &Manifest, namespace_flag: Option<&str>) -> Result<Value, CliError> {
    let mut config = manifest.object.clone();
    let declared = config["metadata"]["namespace"].as_str().map(str::to_string);
    let namespace = match (namespace_flag, declared.as_deref()) {
        (Some(flag), Some(declared)) if flag != declared => {
            return Err(CliError::usage(format!(
                "the namespace from the provided object \"{declared}\" does not match the namespace \"{flag}\". You must pass '--namespace={declared}' to perform this operation."
            )))
        }
        (Some(flag), _) => flag.to_string(),
        (None, Some(declared)) => declared.to_string(),
        (None, None) => crate::DEFAULT_NAMESPACE.to_string(),
    };
    let name = name_of(&config).to_string();
    if name.is_empty() {
        return Err(CliError::usage(format!(
            "error when retrieving current configuration of:\nResource: \"/v1, Resource=pods\", GroupVersionKind: \"/v1, Kind=Pod\"\nName: \"\", Namespace: \"{namespace}\"\nfrom server for: \"{}\": resource name may not be empty",
            manifest.source
        )));
    }
    let metadata = config["metadata"]
        .as_object_mut()
        .expect("a pod with a name has metadata");
    metadata.insert("namespace".into(), Value::String(namespace));
    let mut annotations = match metadata.remove("annotations") {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    annotations.remove(LAST_APPLIED);
    metadata.insert("annotations".into(), Value::Object(annotations.clone()));
    let applied = compact_sorted_json(&config);
    annotations.insert(LAST_APPLIED.into(), Value::String(applied));
    config["metadata"]["annotations"] = Value::Object(annotations);
    Ok(config)
}

/// Go's `json.Encoder` output of an unstructured object: sorted keys, no
/// spaces, a trailing newline.
fn compact_sorted_json(value: &Value) -> String {
    let mut text = serde_json::to_string(&sorted(value)).expect("a Value always serializes");
    text.push('\n');
    text
}

async fn apply_one(
    client: &Client,
    manifest: &Manifest,
    config: Value,
    err: &mut (dyn Write + Send),
) -> Result<String, CliError> {
    let name = name_of(&config).to_string();
    let namespace = config["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let live = match client.get(&pod_path(&namespace, &name)).await {
        Ok(live) => live,
        Err(ClientError::Api(status)) if status.is_not_found() => {
            client
                .json(Method::POST, &pods_path(Some(&namespace)), Some(&config))
                .await
                .map_err(|e| {
                    with_source(
                        with_object(e.into(), "Pod", &name),
                        "creating",
                        &manifest.source,
                    )
                })?;
            return Ok(format!("pod/{name} created\n"));
        }
        Err(e) => {
            return Err(with_source(
                e.into(),
                "retrieving current configuration of",
                &manifest.source,
            ))
        }
    };
    let last_applied = live["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    if last_applied.is_none() {
        writeln!(
            err,
            "Warning: resource pods/{name} is missing the {LAST_APPLIED} annotation which is required by berth apply. berth apply should only be used on resources created declaratively by berth apply. The missing annotation will be patched automatically."
        )?;
    }
    let merged = three_way_merge(&live, last_applied.as_ref(), &config);
    if merged == live {
        return Ok(format!("pod/{name} unchanged\n"));
    }
    client
        .json(Method::PUT, &pod_path(&namespace, &name), Some(&merged))
        .await
        .map_err(|e| {
            with_source(
                with_object(e.into(), "Pod", &name),
                "replacing",
                &manifest.source,
            )
        })?;
    Ok(format!("pod/{name} configured\n"))
}

/// What a strategic-merge apply makes of `live`: fields of `new` win,
/// fields dropped since `last` (the last applied configuration) are
/// removed, everything else (server defaults, status) is kept. Lists of
/// named objects (containers, env, ports) merge item by item.
pub fn three_way_merge(live: &Value, last: Option<&Value>, new: &Value) -> Value {
    match (live, new) {
        (Value::Object(live_map), Value::Object(new_map)) => {
            let mut out = live_map.clone();
            for (key, new_value) in new_map {
                let live_value = live_map.get(key).unwrap_or(&Value::Null);
                let last_value = last.and_then(|l| l.get(key));
                out.insert(
                    key.clone(),
                    three_way_merge(live_value, last_value, new_value),
                );
            }
            if let Some(Value::Object(last_map)) = last {
                for key in last_map.keys() {
                    if !new_map.contains_key(key) {
                        out.remove(key);
                    }
                }
            }
            Value::Object(out)
        }
        (Value::Array(live_items), Value::Array(new_items))
            if !new_items.is_empty() && new_items.iter().all(|i| i.get("name").is_some()) =>
        {
            let named = |items: Option<&Vec<Value>>, name: &Value| {
                items.and_then(|items| items.iter().find(|i| i.get("name") == Some(name)).cloned())
            };
            let last_items = last.and_then(Value::as_array);
            Value::Array(
                new_items
                    .iter()
                    .map(|item| {
                        let name = &item["name"];
                        match named(Some(live_items), name) {
                            Some(live_item) => {
                                three_way_merge(&live_item, named(last_items, name).as_ref(), item)
                            }
                            None => item.clone(),
                        }
                    })
                    .collect(),
            )
        }
        _ => new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn multi_document_yaml_and_lists_are_read() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: c\n    image: busybox\n---\n---\n{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"b\"},\"spec\":{\"containers\":[]}}]}\n";
        let pods = parse_manifest(text, "pods.yaml").unwrap();
        let names: Vec<&str> = pods.iter().map(|m| name_of(&m.object)).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn a_deeply_nested_file_is_refused_before_it_is_parsed() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse_manifest(&deep, "deep.yaml").unwrap_err().to_string();
        assert!(
            err.contains("deep.yaml") && err.contains("exceeded max depth"),
            "{err}"
        );
    }

    #[test]
    fn invalid_files_are_named() {
        let err = parse_manifest("kind: Pod\n  bad: [", "bad.yaml").unwrap_err();
        assert!(
            render(&err).starts_with("error: error parsing bad.yaml: "),
            "{}",
            render(&err)
        );
        let err = parse_manifest(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n",
            "d.yaml",
        )
        .unwrap_err();
        assert_eq!(
            render(&err),
            "error: resource mapping not found for name: \"d\" namespace: \"\" from \"d.yaml\": no matches for kind \"Deployment\" in version \"apps/v1\"\nensure CRDs are installed first\n"
        );
        let err = parse_manifest(
            "apiVersion: v1\nkind: Pod\nspec:\n  containers: 3\n",
            "p.yaml",
        )
        .unwrap_err();
        assert!(render(&err).starts_with("error: error validating \"p.yaml\""));
    }

    #[test]
    fn prepare_sets_namespace_and_last_applied() {
        let manifest = Manifest {
            source: "p.yaml".into(),
            object: json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        };
        let config = prepare(&manifest, None).unwrap();
        assert_eq!(config["metadata"]["namespace"], "default");
        assert_eq!(
            config["metadata"]["annotations"][LAST_APPLIED],
            "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"annotations\":{},\"name\":\"web\",\"namespace\":\"default\"},\"spec\":{\"containers\":[{\"image\":\"busybox\",\"name\":\"c\"}]}}\n"
        );
        let mut other = manifest.clone();
        other.object["metadata"]["namespace"] = json!("prod");
        assert_eq!(
            render(&prepare(&other, Some("dev")).unwrap_err()),
            "error: the namespace from the provided object \"prod\" does not match the namespace \"dev\". You must pass '--namespace=prod' to perform this operation.\n"
        );
    }

    #[test]
    fn merge_keeps_server_fields_and_drops_removed_ones() {
        let live = json!({
            "metadata": {"name": "web", "uid": "u1", "labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1", "imagePullPolicy": "IfNotPresent"}], "restartPolicy": "Always"},
            "status": {"phase": "Running"}
        });
        let last = json!({"metadata": {"name": "web", "labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}});
        let same = last.clone();
        assert_eq!(three_way_merge(&live, Some(&last), &same), live);
        let new = json!({"metadata": {"name": "web", "labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "busybox:2"}]}});
        let merged = three_way_merge(&live, Some(&last), &new);
        assert_eq!(merged["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(merged["metadata"]["uid"], "u1");
        assert_eq!(merged["spec"]["containers"][0]["image"], "busybox:2");
        assert_eq!(
            merged["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(merged["status"]["phase"], "Running");
    }
}
