//! The pod-level lists of `describe`: labels, annotations, tolerations.

use super::*;

pub(super) fn labels_multiline(
    w: &mut Writer,
    title: &str,
    labels: Option<&BTreeMap<String, String>>,
) {
    w.write(0, &format!("{title}:\t"));
    let labels = labels.filter(|l| !l.is_empty());
    let Some(labels) = labels else {
        w.write(0, "<none>\n");
        return;
    };
    for (i, (key, value)) in labels.iter().enumerate() {
        if i > 0 {
            w.write(0, "\t");
        }
        w.write(0, &format!("{key}={value}\n"));
    }
}

const MAX_ANNOTATION_LEN: usize = 140;

pub(super) fn annotations_multiline(
    w: &mut Writer,
    title: &str,
    annotations: Option<&BTreeMap<String, String>>,
) {
    w.write(0, &format!("{title}:\t"));
    let shown: Vec<(&String, &String)> = annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != LAST_APPLIED)
        .collect();
    if shown.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    for (i, (key, value)) in shown.into_iter().enumerate() {
        if i > 0 {
            w.write(0, "\t");
        }
        let value = value.strip_suffix('\n').unwrap_or(value);
        if value.len() + key.len() + 2 > MAX_ANNOTATION_LEN || value.contains('\n') {
            w.write(0, &format!("{key}:\n"));
            for line in value.split('\n') {
                w.write(
                    0,
                    &format!("\t  {}\n", shorten(line, MAX_ANNOTATION_LEN - 2)),
                );
            }
        } else {
            w.write(0, &format!("{key}: {value}\n"));
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}

pub(super) fn tolerations(w: &mut Writer, mut tolerations: Vec<Toleration>) {
    w.write(0, "Tolerations:\t");
    if tolerations.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    tolerations.sort_by(|a, b| a.key.cmp(&b.key));
    for (i, t) in tolerations.iter().enumerate() {
        if i > 0 {
            w.write(0, "\t");
        }
        let key = t.key.as_deref().unwrap_or_default();
        let value = t.value.as_deref().unwrap_or_default();
        let effect = t.effect.as_deref().unwrap_or_default();
        let mut text = key.to_string();
        if !value.is_empty() {
            text.push_str(&format!("={value}"));
        }
        if !effect.is_empty() {
            text.push_str(&format!(":{effect}"));
        }
        if t.operator.as_deref() == Some("Exists") && value.is_empty() {
            text.push_str(if key.is_empty() && effect.is_empty() {
                "op=Exists"
            } else {
                " op=Exists"
            });
        }
        if let Some(seconds) = t.toleration_seconds {
            text.push_str(&format!(" for {seconds}s"));
        }
        w.write(0, &format!("{text}\n"));
    }
}
