//! Reading Pod manifests: YAML (several documents separated by `---`) or
//! JSON (one or more objects), each a `v1` Pod or a `v1` `List`/`PodList` of
//! Pods. Unknown fields are rejected like the API server's strict field
//! validation (kubectl's default) does, which k8s-openapi alone would ignore.
//!
//! Parsing is bounded: callers refuse more than [`MAX_MANIFEST_BYTES`], and
//! nesting deeper than [`MAX_DEPTH`] is refused by a linear pre-scan before
//! the parser runs. Parsing a large manifest still takes milliseconds of
//! CPU: async callers run it on a blocking thread.

mod nesting;

pub use nesting::MAX_DEPTH;

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use serde_json::{Map, Value};

/// What is wrong with which document (documents count from 1, empty ones
/// included, so the number matches the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {document}: {message}")]
pub struct ManifestError {
    pub document: usize,
    pub message: String,
}

/// The largest manifest accepted, from a file or in a request: the API
/// server's limit on request bodies (`MaxRequestBodyBytes`, 3 MiB).
pub const MAX_MANIFEST_BYTES: usize = 3 * 1024 * 1024;

/// Refuses a manifest over [`MAX_MANIFEST_BYTES`] or nested deeper than the
/// parser can take cheaply, before anything parses it.
pub fn check_bounds(text: &str) -> Result<(), ManifestError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError {
            document: 1,
            message: format!(
                "{} bytes is more than the {MAX_MANIFEST_BYTES} bytes a manifest may have",
                text.len()
            ),
        });
    }
    nesting::check(text, is_json(text))
}

/// Parses every Pod in `text`; empty documents are skipped.
pub fn parse_pods(text: &str) -> Result<Vec<Pod>, ManifestError> {
    let json = is_json(text);
    nesting::check(text, json)?;
    let mut pods = Vec::new();
    for (i, doc) in documents(text, json).into_iter().enumerate() {
        let document = i + 1;
        let fail = |message: String| ManifestError { document, message };
        match doc.map_err(fail)? {
            Value::Null => {}
            Value::Object(object) => pods.extend(pods_in(object, "").map_err(fail)?),
            other => {
                return Err(fail(format!(
                    "expected an object, found {}",
                    type_name(&other)
                )))
            }
        }
    }
    Ok(pods)
}

/// JSON (one or more objects), or else YAML.
fn is_json(text: &str) -> bool {
    text.trim_start().starts_with(['{', '['])
}

/// The documents of `text` as JSON values (`Null` for an empty one).
fn documents(text: &str, json: bool) -> Vec<Result<Value, String>> {
    if json {
        let mut docs = Vec::new();
        for doc in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            let failed = doc.is_err();
            docs.push(doc.map_err(|e| e.to_string()));
            if failed {
                break;
            }
        }
        return docs;
    }
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        match Value::deserialize(doc) {
            Ok(v) => docs.push(Ok(v)),
            Err(e) => {
                docs.push(Err(e.to_string()));
                break;
            }
        }
    }
    docs
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn field<'a>(object: &'a Map<String, Value>, key: &str) -> &'a str {
    object.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The Pods in one object: itself, or the items of a list. `at` prefixes
/// messages about list items (`items[2]: `).
fn pods_in(object: Map<String, Value>, at: &str) -> Result<Vec<Pod>, String> {
    let kind = field(&object, "kind").to_string();
    let version = field(&object, "apiVersion").to_string();
    match kind.as_str() {
        "" => Err(format!(
            "{at}kind is missing (berth runs Pods: kind: Pod, apiVersion: v1)"
        )),
        "Pod" if version == "v1" => decode(object, at).map(|p| vec![p]),
        "List" | "PodList" if version == "v1" => {
            let items = match object.get("items") {
                None | Some(Value::Null) => return Ok(vec![]),
                Some(Value::Array(items)) => items.clone(),
                Some(other) => {
                    return Err(format!(
                        "items: expected a list, found {}",
                        type_name(other)
                    ))
                }
            };
            let mut pods = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let at = format!("items[{i}]: ");
                let Value::Object(mut item) = item else {
                    return Err(format!(
                        "{at}expected an object, found {}",
                        type_name(&item)
                    ));
                };
                // A PodList's items carry no kind/apiVersion of their own.
                if kind == "PodList" || !item.contains_key("kind") {
                    item.entry("kind").or_insert_with(|| "Pod".into());
                    item.entry("apiVersion").or_insert_with(|| "v1".into());
                }
                if field(&item, "kind") != "Pod" {
                    return Err(format!(
                        "{at}kind {:?} is not supported: berth runs Pods only",
                        field(&item, "kind")
                    ));
                }
                pods.extend(pods_in(item, &at)?);
            }
            Ok(pods)
        }
        "Pod" | "List" | "PodList" => Err(format!(
            "{at}apiVersion {version:?} is not supported for kind {kind} (expected \"v1\")"
        )),
        other => Err(format!(
            "{at}kind {other:?} is not supported: berth runs Pods only"
        )),
    }
}

/// Decodes one Pod object, naming the path of a bad value and rejecting
/// fields the Pod type does not have.
fn decode(object: Map<String, Value>, at: &str) -> Result<Pod, String> {
    let input = Value::Object(object);
    let pod: Pod = serde_path_to_error::deserialize(&input).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "." | "" => format!("{at}{}", e.inner()),
            _ => format!("{at}{path}: {}", e.inner()),
        }
    })?;
    let decoded = serde_json::to_value(&pod).map_err(|e| format!("{at}{e}"))?;
    let mut unknown = Vec::new();
    unknown_fields("", &input, &decoded, &mut unknown);
    if !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect();
        return Err(format!("{at}{}", list.join(", ")));
    }
    Ok(pod)
}

/// Fields present in `input` that did not survive decoding.
fn unknown_fields(path: &str, input: &Value, decoded: &Value, out: &mut Vec<String>) {
    match (input, decoded) {
        (Value::Object(inp), Value::Object(dec)) => {
            for (key, value) in inp {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match dec.get(key) {
                    Some(d) => unknown_fields(&child, value, d, out),
                    None if !value.is_null() => out.push(child),
                    None => {}
                }
            }
        }
        (Value::Array(inp), Value::Array(dec)) => {
            for (i, (value, d)) in inp.iter().zip(dec).enumerate() {
                unknown_fields(&format!("{path}[{i}]"), value, d, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(pods: &[Pod]) -> Vec<&str> {
        pods.iter()
            .map(|p| p.metadata.name.as_deref().unwrap_or_default())
            .collect()
    }

    const WEB: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: app
    image: nginx:1.25
    ports:
    - containerPort: 80
    resources:
      limits:
        cpu: 1
        memory: 64Mi
";

    #[test]
    fn single_yaml_pod() {
        let pods = parse_pods(WEB).unwrap();
        assert_eq!(names(&pods), ["web"]);
        let c = &pods[0].spec.as_ref().unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("nginx:1.25"));
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 80);
        let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["cpu"].0, "1");
    }

    #[test]
    fn multi_document_yaml_skips_empty_documents() {
        let text = format!(
            "---\n{WEB}---\n# only a comment\n---\n{}\n---\n",
            WEB.replace("name: web", "name: api")
        );
        let pods = parse_pods(&text).unwrap();
        assert_eq!(names(&pods), ["web", "api"]);
        assert_eq!(parse_pods("").unwrap(), vec![]);
        assert_eq!(parse_pods("---\n---\n").unwrap(), vec![]);
    }

    #[test]
    fn json_single_and_stream() {
        let one = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j1"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
        assert_eq!(names(&parse_pods(one).unwrap()), ["j1"]);
        let two = format!("{one}\n{}", one.replace("j1", "j2"));
        assert_eq!(names(&parse_pods(&two).unwrap()), ["j1", "j2"]);
    }

    #[test]
    fn lists_of_pods() {
        let list = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"busybox"}]}},
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"b"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}
        ]}"#;
        assert_eq!(names(&parse_pods(list).unwrap()), ["a", "b"]);
        let pod_list = "apiVersion: v1
kind: PodList
metadata: {}
items:
- metadata: {name: x}
  spec: {containers: [{name: c, image: busybox}]}
";
        assert_eq!(names(&parse_pods(pod_list).unwrap()), ["x"]);
        assert_eq!(
            parse_pods("apiVersion: v1\nkind: List\nitems: []\n").unwrap(),
            vec![]
        );
    }

    #[test]
    fn errors_name_document_and_problem() {
        let service = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n";
        let cases = [
            (format!("{WEB}---\n{service}"), r#"document 2: kind "Service" is not supported: berth runs Pods only"#.to_string()),
            (WEB.replace("containers:", "contaners:"), r#"document 1: unknown field "spec.contaners""#.into()),
            (
                WEB.replace("    image: nginx:1.25", "    imagee: nginx:1.25\n    colour: red"),
                r#"document 1: unknown field "spec.containers[0].colour", unknown field "spec.containers[0].imagee""#.into(),
            ),
            (
                WEB.replace("containerPort: 80", "containerPort: http"),
                r#"document 1: spec.containers[0].ports[0].containerPort: invalid type: string "http", expected i32"#.into(),
            ),
            (WEB.replace("apiVersion: v1", "apiVersion: apps/v1"), r#"document 1: apiVersion "apps/v1" is not supported for kind Pod (expected "v1")"#.into()),
            ("metadata: {name: x}\n".into(), "document 1: kind is missing (berth runs Pods: kind: Pod, apiVersion: v1)".into()),
            ("- a\n- b\n".into(), "document 1: expected an object, found a list".into()),
            (
                r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap"}]}"#.into(),
                r#"document 1: items[0]: kind "ConfigMap" is not supported: berth runs Pods only"#.into(),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_pods(&text).unwrap_err().to_string(),
                want,
                "for:\n{text}"
            );
        }
    }

    #[test]
    fn syntax_errors_carry_a_location() {
        let err = parse_pods(&format!("{WEB}---\nkind: Pod\n  bad: [\n")).unwrap_err();
        assert_eq!(err.document, 2);
        assert!(err.message.contains("line"), "{err}");
        let err = parse_pods(r#"{"apiVersion": "v1", "kind": "Pod",}"#).unwrap_err();
        assert_eq!(err.document, 1);
        assert!(err.message.contains("column"), "{err}");
    }

    #[test]
    // A pure, synchronous crate: the wall clock is what this measures.
    #[allow(clippy::disallowed_types)]
    fn deep_nesting_is_refused_before_parsing() {
        // Unbounded, libyaml would spend seconds on this before failing.
        let started = std::time::Instant::now();
        let err = parse_pods(&format!("{WEB}---\nkind: {}", "[".repeat(100_000))).unwrap_err();
        assert_eq!(err.document, 2);
        assert!(err.message.contains("exceeded max depth of 100"), "{err}");
        let err = parse_pods(&"[".repeat(100_000)).unwrap_err();
        assert!(err.message.contains("exceeded max depth of 100"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
    }

    #[test]
    fn null_fields_are_not_unknown() {
        let text = WEB
            .replace("metadata:\n", "metadata:\n  labels: null\n")
            .replace("spec:\n", "spec:\n  volumes:\n");
        assert_eq!(names(&parse_pods(&text).unwrap()), ["web"]);
    }
}
