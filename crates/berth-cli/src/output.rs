//! `-o json|yaml|name`, written as kubectl writes them: JSON with sorted keys,
//! four-space indent and Go's HTML escaping; YAML as sigs.k8s.io/yaml emits
//! it (sorted keys, unindented sequences, YAML 1.1 look-alikes double-quoted).

use serde_json::{Map, Value};

/// The `-o` formats `get` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Wide,
    Json,
    Yaml,
    Name,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "wide" => Ok(Self::Wide),
            "json" => Ok(Self::Json),
            "yaml" => Ok(Self::Yaml),
            "name" => Ok(Self::Name),
            other => Err(format!(
                "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,name,wide,yaml"
            )),
        }
    }
}

/// A v1 `List` of objects, as kubectl prints several objects.
pub fn list(items: Vec<Value>) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    })
}

/// `value` with every object's keys in order, as Go marshals maps.
pub fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                out.insert(key.clone(), sorted(&map[key]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// `json.MarshalIndent(obj, "", "    ")` plus a newline.
pub fn to_json(value: &Value) -> String {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    serde::Serialize::serialize(&sorted(value), &mut ser).expect("a Value always serializes");
    let text = String::from_utf8(buf).expect("serde_json writes UTF-8");
    // Go escapes these even inside strings; they cannot occur outside one.
    let mut out = String::with_capacity(text.len() + 1);
    for ch in text.chars() {
        match ch {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

/// YAML as `kubectl -o yaml` prints it.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => yaml_map(map, 0, &mut out),
        Value::Array(items) if !items.is_empty() => yaml_seq(items, 0, &mut out),
        scalar => {
            out.push_str(&yaml_inline(scalar, 0));
            out.push('\n');
        }
    }
    out
}

fn yaml_map(map: &Map<String, Value>, indent: usize, out: &mut String) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for (i, key) in keys.into_iter().enumerate() {
        // The first key of a sequence item shares the "- " line.
        if i > 0 || !out.ends_with("- ") {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&yaml_string(key, indent));
        out.push(':');
        yaml_value_after_key(&map[key], indent, out);
    }
}

fn yaml_value_after_key(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            yaml_map(map, indent + 2, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            yaml_seq(items, indent, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&yaml_inline(scalar, indent + 2));
            out.push('\n');
        }
    }
}

fn yaml_seq(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        if !out.ends_with("- ") {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str("- ");
        match item {
            Value::Object(map) if !map.is_empty() => yaml_map(map, indent + 2, out),
            Value::Array(inner) if !inner.is_empty() => yaml_seq(inner, indent + 2, out),
            scalar => {
                out.push_str(&yaml_inline(scalar, indent + 2));
                out.push('\n');
            }
        }
    }
}

/// A scalar, or an empty collection, on the current line; `indent` is where
/// the lines of a literal block go.
fn yaml_inline(value: &Value, indent: usize) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_string(s, indent),
        Value::Array(_) => "[]".to_string(),
        Value::Object(_) => "{}".to_string(),
    }
}

fn yaml_string(s: &str, indent: usize) -> String {
    if s.contains('\n') && !s.chars().any(|c| c.is_control() && c != '\n') {
        return literal_block(s, indent);
    }
    if resolves_to_non_string(s) {
        return double_quoted(s);
    }
    if !plain_allowed(s) {
        return if s.chars().any(|c| c.is_control()) {
            double_quoted(s)
        } else {
            format!("'{}'", s.replace('\'', "''"))
        };
    }
    s.to_string()
}

fn literal_block(s: &str, indent: usize) -> String {
    let body = s.trim_end_matches('\n');
    let trailing = s.len() - body.len();
    let chomp = match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let mut out = format!("|{chomp}");
    let pad = " ".repeat(indent);
    let lines: Vec<&str> = if trailing > 1 {
        s[..s.len() - 1].split('\n').collect()
    } else {
        body.split('\n').collect()
    };
    for line in lines {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    out
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Would a plain scalar with this text be read back as something other than
/// a string (YAML 1.1 as go-yaml v2 resolves it)?
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "y",
        "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF", ".inf", ".Inf", ".INF", "-.inf", "-.Inf", "-.INF", "+.inf", ".nan", ".NaN", ".NAN",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let digits = s.trim_start_matches(['-', '+']).replace('_', "");
    if digits.is_empty() {
        return false;
    }
    let is_int = digits.chars().all(|c| c.is_ascii_digit())
        || digits
            .strip_prefix("0x")
            .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
        || digits
            .strip_prefix("0b")
            .is_some_and(|b| !b.is_empty() && b.chars().all(|c| c == '0' || c == '1'));
    let is_float = digits.parse::<f64>().is_ok()
        && digits
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
        && !digits.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E');
    is_int || is_float || looks_like_timestamp(s)
}

fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
        && (b.len() == 10 || matches!(b[10], b'T' | b't' | b' '))
}

fn plain_allowed(s: &str) -> bool {
    let first = s.chars().next().unwrap_or(' ');
    let last = s.chars().last().unwrap_or(' ');
    if first.is_whitespace() || last.is_whitespace() || last == ':' {
        return false;
    }
    if "!&*[]{}|>'\"%@`#,".contains(first) {
        return false;
    }
    if matches!(first, '-' | '?' | ':') && (s.len() == 1 || s[1..].starts_with(' ')) {
        return false;
    }
    !(s.contains(": ") || s.contains(" #") || s.chars().any(|c| c.is_control()))
}

/// `-o name`.
pub fn name_line(kind: &str, name: &str) -> String {
    format!("{kind}/{name}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_sorted_indented_by_four_and_html_escaped() {
        let value = json!({"spec": {"b": 1, "a": "<x&y>"}, "kind": "Pod", "items": []});
        assert_eq!(
            to_json(&value),
            "{\n    \"items\": [],\n    \"kind\": \"Pod\",\n    \"spec\": {\n        \"a\": \"\\u003cx\\u0026y\\u003e\",\n        \"b\": 1\n    }\n}\n"
        );
    }

    #[test]
    fn yaml_reads_like_kubectl() {
        let value = list(vec![json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:59:15Z", "labels": {"on": "true"}},
            "spec": {"containers": [{"name": "c", "args": ["sh", "-c", "echo a: b"], "ports": []}]},
            "status": {"message": "two\nlines"},
        })]);
        assert_eq!(
            to_yaml(&value),
            "apiVersion: v1\n\
             items:\n\
             - apiVersion: v1\n  \
               kind: Pod\n  \
               metadata:\n    \
                 creationTimestamp: \"2024-05-01T11:59:15Z\"\n    \
                 labels:\n      \
                   \"on\": \"true\"\n    \
                 name: web\n  \
               spec:\n    \
                 containers:\n    \
                 - args:\n      \
                   - sh\n      \
                   - -c\n      \
                   - 'echo a: b'\n      \
                   name: c\n      \
                   ports: []\n  \
               status:\n    \
                 message: |-\n      \
                   two\n      \
                   lines\n\
             kind: List\n\
             metadata:\n  \
               resourceVersion: \"\"\n"
        );
    }

    #[test]
    fn output_formats_parse() {
        assert_eq!("wide".parse::<OutputFormat>(), Ok(OutputFormat::Wide));
        assert!("xml".parse::<OutputFormat>().is_err());
    }
}
