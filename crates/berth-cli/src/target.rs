//! Resource arguments the way kubectl reads them: `pods web db`, `pod/web`.

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::error::CliError;

fn is_pod_type(kind: &str) -> bool {
    matches!(kind.to_ascii_lowercase().as_str(), "pod" | "pods" | "po")
}

fn unknown_type(kind: &str) -> CliError {
    CliError::usage(format!(
        "the server doesn't have a resource type \"{kind}\""
    ))
}

/// The pod names named by `args` (`TYPE [NAME...]` or `TYPE/NAME...`).
pub fn pod_names(args: &[String]) -> Result<Vec<String>, CliError> {
    let Some(first) = args.first() else {
        return Err(CliError::usage(
            "You must specify the type of resource to get. Use \"berth get pods\".",
        ));
    };
    if first.contains('/') {
        return args
            .iter()
            .map(|arg| match arg.split_once('/') {
                Some((kind, name)) if is_pod_type(kind) && !name.is_empty() => Ok(name.to_string()),
                Some((kind, _)) if !is_pod_type(kind) => Err(unknown_type(kind)),
                _ => Err(CliError::usage(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'berth get resource/<resource_name>' instead of 'berth get resource resource/<resource_name>'",
                )),
            })
            .collect();
    }
    if !is_pod_type(first) {
        return Err(unknown_type(first));
    }
    Ok(args[1..].to_vec())
}

/// The pod a single `POD` or `pod/POD` argument names.
pub fn single_pod(arg: &str) -> Result<String, CliError> {
    match arg.split_once('/') {
        Some((kind, name)) if is_pod_type(kind) => Ok(name.to_string()),
        Some((kind, _)) => Err(unknown_type(kind)),
        None => Ok(arg.to_string()),
    }
}

pub fn decode_pod(value: &Value) -> Result<Pod, CliError> {
    serde_json::from_value(value.clone())
        .map_err(|e| CliError::Client(crate::client::ClientError::Decode(e)))
}

pub fn name_of(value: &Value) -> &str {
    value["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn namespace_of(value: &Value) -> &str {
    value["metadata"]["namespace"].as_str().unwrap_or_default()
}

pub fn uid_of(value: &Value) -> &str {
    value["metadata"]["uid"].as_str().unwrap_or_default()
}

/// The `items` of a list answer, in the API server's order (namespace, name).
pub fn sorted_items(list: Value) -> Vec<Value> {
    let mut items = match list {
        Value::Object(mut map) => match map.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    items.sort_by(|a, b| (namespace_of(a), name_of(a)).cmp(&(namespace_of(b), name_of(b))));
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn type_and_names_forms() {
        assert_eq!(pod_names(&args(&["pods"])).unwrap(), Vec::<String>::new());
        assert_eq!(
            pod_names(&args(&["po", "a", "b"])).unwrap(),
            args(&["a", "b"])
        );
        assert_eq!(
            pod_names(&args(&["pod/a", "pods/b"])).unwrap(),
            args(&["a", "b"])
        );
        let err = pod_names(&args(&["svc"])).unwrap_err();
        assert_eq!(
            crate::error::render(&err),
            "error: the server doesn't have a resource type \"svc\"\n"
        );
        assert_eq!(single_pod("pod/web").unwrap(), "web");
    }
}
