//! PATCH on a pod, in the four patch types the API server takes: JSON
//! patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch
//! (lists merged by their key, as apimachinery's `strategicpatch` does for
//! the Pod type) and server-side apply (`apply-patch+yaml`, here the applied
//! configuration merged as a strategic merge patch, or created when absent).

use serde_json::{Map, Value};

use super::status::Failure;

/// The patch types, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub(crate) fn from_content_type(value: &str) -> Result<Self, Failure> {
        let media = value.split(';').next().unwrap_or_default().trim();
        match media.to_ascii_lowercase().as_str() {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" => Ok(Self::Apply),
            _ => Err(Failure::unsupported_patch(value)),
        }
    }
}

/// Decodes the patch body (JSON, or YAML for apply).
pub(crate) fn decode(kind: PatchType, body: &[u8]) -> Result<Value, Failure> {
    let bad = |e: String| Failure::bad_request(format!("error decoding patch: {e}"));
    let value: Value = match kind {
        PatchType::Apply => {
            let text =
                std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8".into()))?;
            // Deep nesting is refused before the YAML parser sees it, as for
            // manifests (its cost grows with the depth).
            berth_api::manifest::check_bounds(text).map_err(|e| bad(e.to_string()))?;
            serde_yaml_ng::from_str(text).map_err(|e| bad(e.to_string()))?
        }
        _ => serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?,
    };
    let shape_ok = match kind {
        PatchType::Json => value.is_array(),
        _ => value.is_object(),
    };
    if !shape_ok {
        let want = if kind == PatchType::Json {
            "a list of operations"
        } else {
            "an object"
        };
        return Err(bad(format!("the patch must be {want}")));
    }
    Ok(value)
}

/// Applies `patch` to `target` (a pod as JSON).
pub(crate) fn apply(kind: PatchType, target: &mut Value, patch: &Value) -> Result<(), Failure> {
    match kind {
        PatchType::Json => json_patch(target, patch),
        PatchType::Merge => {
            merge_patch(target, patch);
            Ok(())
        }
        PatchType::Strategic | PatchType::Apply => strategic(target, patch),
    }
}

fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let object = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            object.remove(key);
        } else {
            merge_patch(object.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The merge key of the Pod's lists that merge (their `patchMergeKey`);
/// other lists are replaced whole.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => "name",
        "ports" => "containerPort",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

fn strategic(target: &mut Value, patch: &Value) -> Result<(), Failure> {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove("$patch");
            *target = Value::Object(replaced);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some(other) => {
            return Err(Failure::bad_request(format!(
                "Unknown patch type: {other} in map"
            )))
        }
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let object = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let gone = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = object.get_mut(field) {
                items.retain(|item| !gone.contains(item));
            }
            continue;
        }
        if value.is_null() {
            object.remove(key);
            continue;
        }
        match (merge_key(key), value) {
            (Some(merge_key), Value::Array(items)) => {
                let slot = object
                    .entry(key.clone())
                    .or_insert(Value::Array(Vec::new()));
                merge_list(slot, items, merge_key)?;
            }
            (None, Value::Object(_)) => {
                strategic(object.entry(key.clone()).or_insert(Value::Null), value)?;
            }
            _ => {
                object.insert(key.clone(), value.clone());
            }
        }
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        object.retain(|key, _| keep.iter().any(|k| k.as_str() == Some(key)));
    }
    Ok(())
}

fn merge_list(target: &mut Value, patch: &[Value], merge_key: &str) -> Result<(), Failure> {
    if patch
        .iter()
        .any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        let rest = patch
            .iter()
            .filter(|item| item.get("$patch").is_none())
            .cloned();
        *target = Value::Array(rest.collect());
        return Ok(());
    }
    if !target.is_array() {
        *target = Value::Array(Vec::new());
    }
    let items = target.as_array_mut().expect("made a list above");
    for item in patch {
        let key = item.get(merge_key).cloned().ok_or_else(|| {
            Failure::bad_request(format!(
                "map: {item} does not contain declared merge key: {merge_key}"
            ))
        })?;
        let position = items.iter().position(|i| i.get(merge_key) == Some(&key));
        let deleting = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, deleting) {
            (Some(at), true) => {
                items.remove(at);
            }
            (None, true) => {}
            (Some(at), false) => strategic(&mut items[at], item)?,
            (None, false) => {
                let mut added = Value::Null;
                strategic(&mut added, item)?;
                items.push(added);
            }
        }
    }
    Ok(())
}

/// RFC 6902: each operation in turn; any failure leaves the pod as it was.
fn json_patch(target: &mut Value, patch: &Value) -> Result<(), Failure> {
    let mut work = target.clone();
    for op in patch.as_array().into_iter().flatten() {
        let field = |name: &str| {
            op.get(name).ok_or_else(|| {
                Failure::bad_request(format!("the JSON patch operation {op} has no \"{name}\""))
            })
        };
        let path = field("path")?.as_str().unwrap_or_default();
        match field("op")?.as_str().unwrap_or_default() {
            "add" => add(&mut work, path, field("value")?.clone())?,
            "remove" => {
                remove(&mut work, path)?;
            }
            "replace" => {
                remove(&mut work, path)?;
                add(&mut work, path, field("value")?.clone())?;
            }
            "move" => {
                let from = field("from")?.as_str().unwrap_or_default();
                let value = remove(&mut work, from)?;
                add(&mut work, path, value)?;
            }
            "copy" => {
                let from = field("from")?.as_str().unwrap_or_default();
                let value = work.pointer(from).cloned().ok_or_else(|| missing(from))?;
                add(&mut work, path, value)?;
            }
            "test" => {
                if work.pointer(path) != Some(field("value")?) {
                    return Err(Failure::unprocessable(format!(
                        "the test operation on {path} failed"
                    )));
                }
            }
            other => return Err(Failure::bad_request(format!("Unexpected kind: {other}"))),
        }
    }
    *target = work;
    Ok(())
}

fn missing(path: &str) -> Failure {
    Failure::unprocessable(format!("doc is missing path: \"{path}\""))
}

/// The parent of a JSON pointer's target, and the last token.
fn parent<'a>(doc: &'a mut Value, path: &str) -> Result<(&'a mut Value, String), Failure> {
    let (parent, last) = path.rsplit_once('/').ok_or_else(|| missing(path))?;
    let last = last.replace("~1", "/").replace("~0", "~");
    let node = doc.pointer_mut(parent).ok_or_else(|| missing(path))?;
    Ok((node, last))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), Failure> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (node, last) = parent(doc, path)?;
    match node {
        Value::Object(map) => {
            map.insert(last, value);
        }
        Value::Array(items) => {
            let at = if last == "-" {
                items.len()
            } else {
                last.parse()
                    .ok()
                    .filter(|i| *i <= items.len())
                    .ok_or_else(|| missing(path))?
            };
            items.insert(at, value);
        }
        _ => return Err(missing(path)),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, Failure> {
    let (node, last) = parent(doc, path)?;
    match node {
        Value::Object(map) => map.remove(&last).ok_or_else(|| missing(path)),
        Value::Array(items) => {
            let at: usize = last
                .parse()
                .ok()
                .filter(|i| *i < items.len())
                .ok_or_else(|| missing(path))?;
            Ok(items.remove(at))
        }
        _ => Err(missing(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "labels": {"a": "1"}},
               "spec": {"containers": [
                   {"name": "a", "image": "x:1", "env": [{"name": "E", "value": "1"}]},
                   {"name": "b", "image": "y:1"}]}})
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let mut target = pod();
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b", "image": "y:2"},
                           {"name": "a", "env": [{"name": "F", "value": "2"}]}]},
            "metadata": {"labels": {"a": null, "b": "2"}}});
        strategic(&mut target, &patch).unwrap();
        assert_eq!(target["spec"]["containers"][0]["image"], "x:1");
        assert_eq!(
            target["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(target["spec"]["containers"][1]["image"], "y:2");
        assert_eq!(target["metadata"]["labels"], json!({"b": "2"}));
        let delete = json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}});
        strategic(&mut target, &delete).unwrap();
        assert_eq!(target["spec"]["containers"].as_array().unwrap().len(), 1);
        let keyless = json!({"spec": {"containers": [{"image": "z"}]}});
        assert!(strategic(&mut target, &keyless).is_err());
    }

    #[test]
    fn merge_patch_replaces_lists_and_deletes_nulls() {
        let mut target = pod();
        merge_patch(
            &mut target,
            &json!({"metadata": {"annotations": {"k": "v"}, "labels": null}}),
        );
        assert_eq!(
            target["metadata"],
            json!({"name": "p", "annotations": {"k": "v"}})
        );
    }

    #[test]
    fn json_patch_is_all_or_nothing() {
        let mut target = pod();
        let ok = json!([{"op": "replace", "path": "/spec/containers/1/image", "value": "y:3"},
                        {"op": "add", "path": "/metadata/labels/c", "value": "3"},
                        {"op": "test", "path": "/metadata/name", "value": "p"}]);
        json_patch(&mut target, &ok).unwrap();
        assert_eq!(target["spec"]["containers"][1]["image"], "y:3");
        assert_eq!(target["metadata"]["labels"]["c"], "3");
        let before = target.clone();
        let bad = json!([{"op": "add", "path": "/metadata/labels/d", "value": "4"},
                         {"op": "remove", "path": "/spec/nothing"}]);
        assert!(json_patch(&mut target, &bad).is_err());
        assert_eq!(target, before);
    }

    #[test]
    fn malformed_patches_are_bad_requests() {
        assert!(decode(PatchType::Strategic, b"{not json").is_err());
        assert!(decode(PatchType::Json, b"{}").is_err());
        assert!(decode(PatchType::Merge, b"[]").is_err());
        assert!(PatchType::from_content_type("text/plain").is_err());
        let deep = format!("{}x: 1{}", "{a: ".repeat(5000), "}".repeat(5000));
        let err = decode(PatchType::Apply, deep.as_bytes()).unwrap_err();
        assert!(format!("{err:?}").contains("max depth"), "{err:?}");
    }
}
