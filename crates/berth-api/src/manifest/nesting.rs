//! A linear pre-scan of a manifest's nesting depth, run before the YAML or
//! JSON parser sees it.
//!
//! libyaml's scanner spends time proportional to the flow depth on every
//! token, so a document of tens of thousands of `[` costs seconds of CPU
//! before any depth limit in the parser applies. This scan follows only
//! what makes nesting (flow brackets, block indentation, `- `, `? `, keys),
//! skipping quoted scalars, block scalars and comments, and errs on the
//! side of counting too deep: only absurd documents come near the bound.

use super::ManifestError;

/// The deepest nesting accepted. A Pod nests about 10 levels (30 with
/// `managedFields`); the API server's decoders stop at 10000, but serde's
/// own recursion limit refuses anything past 128 anyway.
pub const MAX_DEPTH: usize = 100;

/// Refuses `text` when it nests deeper than [`MAX_DEPTH`], naming the
/// document (counted as the parser counts them) and where the bound is
/// crossed.
pub(super) fn check(text: &str, json: bool) -> Result<(), ManifestError> {
    let mut scan = Scan {
        json,
        document: 1,
        flow: 0,
        indents: Vec::new(),
        block_scalar: None,
        quote: None,
    };
    for (number, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        scan.line(line.as_bytes()).map_err(|column| ManifestError {
            document: scan.document,
            message: format!(
                "line {}, column {}: exceeded max depth of {MAX_DEPTH}",
                number + 1,
                column + 1
            ),
        })?;
    }
    Ok(())
}

struct Scan {
    /// JSON: a document ends where its top-level value closes.
    json: bool,
    document: usize,
    /// Open flow collections (`[`, `{`).
    flow: usize,
    /// Columns of the open block collections, innermost last.
    indents: Vec<usize>,
    /// Inside a block scalar whose lines are indented more than this.
    block_scalar: Option<isize>,
    /// Inside a quoted scalar that spans lines.
    quote: Option<u8>,
}

fn is_blank(byte: Option<&u8>) -> bool {
    matches!(byte, None | Some(b' ' | b'\t'))
}

impl Scan {
    /// Scans one line; `Err(column)` where the depth bound is crossed.
    fn line(&mut self, line: &[u8]) -> Result<(), usize> {
        let indent = line.iter().take_while(|b| **b == b' ').count();
        let content = &line[indent..];
        if let Some(parent) = self.block_scalar {
            if content.is_empty() || indent as isize > parent {
                return Ok(());
            }
            self.block_scalar = None;
        }
        let mut pos = 0;
        if self.quote.is_none() && self.flow == 0 {
            let marker = |m: &[u8]| line.starts_with(m) && is_blank(line.get(3));
            if marker(b"---") {
                if !self.json {
                    self.document += 1;
                }
                self.indents.clear();
                pos = 3;
            } else if marker(b"...") || line.starts_with(b"%") {
                self.indents.clear();
                return Ok(());
            } else if content.is_empty() || content[0] == b'#' {
                return Ok(());
            } else {
                while self.indents.last().is_some_and(|&top| top > indent) {
                    self.indents.pop();
                }
                pos = indent;
            }
        }
        self.tokens(line, pos)
    }

    fn depth(&self) -> usize {
        self.indents.len() + self.flow
    }

    /// A block collection starting at `column` (when deeper than the
    /// innermost one, as libyaml's `roll_indent`).
    fn push_indent(&mut self, column: usize) -> Result<(), usize> {
        if self.indents.last().is_none_or(|&top| column > top) {
            self.indents.push(column);
            if self.depth() > MAX_DEPTH {
                return Err(column);
            }
        }
        Ok(())
    }

    fn tokens(&mut self, line: &[u8], mut i: usize) -> Result<(), usize> {
        // Whether the next token starts a node (rather than continuing a
        // scalar), and where the current scalar started (a key's column).
        let mut node_start = true;
        let mut scalar_at = i;
        while i < line.len() {
            let c = line[i];
            if let Some(quote) = self.quote {
                i += match (quote, c) {
                    (b'"', b'\\') => 2,
                    (b'\'', b'\'') if line.get(i + 1) == Some(&b'\'') => 2,
                    _ if c == quote => {
                        self.quote = None;
                        1
                    }
                    _ => 1,
                };
                continue;
            }
            let blank_before = i == 0 || is_blank(line.get(i - 1));
            let blank_after = is_blank(line.get(i + 1));
            match c {
                b' ' | b'\t' => {}
                b'#' if blank_before => return Ok(()),
                b'[' | b'{' if node_start || self.flow > 0 => {
                    self.flow += 1;
                    if self.depth() > MAX_DEPTH {
                        return Err(i);
                    }
                    node_start = true;
                }
                b']' | b'}' if self.flow > 0 => {
                    self.flow -= 1;
                    if self.flow == 0 && self.json {
                        self.document += 1;
                    }
                    node_start = false;
                }
                b',' if self.flow > 0 => node_start = true,
                b':' if self.flow > 0 => node_start = true,
                b':' if blank_after => {
                    // A block mapping's key ends here (or an explicit value).
                    self.push_indent(if node_start { i } else { scalar_at })?;
                    node_start = true;
                }
                b'-' | b'?' if node_start && self.flow == 0 && blank_after => {
                    self.push_indent(i)?;
                }
                b'|' | b'>' if node_start && self.flow == 0 => {
                    let parent = self.indents.last().map_or(-1, |&top| top as isize);
                    self.block_scalar = Some(parent);
                    return Ok(());
                }
                b'"' | b'\'' if node_start => {
                    self.quote = Some(c);
                    scalar_at = i;
                    node_start = false;
                }
                b'&' | b'!' if node_start => {
                    // An anchor or tag: the node follows it.
                    while i < line.len() && !is_blank(line.get(i)) {
                        i += 1;
                    }
                    continue;
                }
                _ if node_start => {
                    scalar_at = i;
                    node_start = false;
                }
                _ => {}
            }
            i += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_error(text: &str) -> Option<String> {
        let json = text.starts_with(['{', '[']);
        check(text, json).err().map(|e| e.to_string())
    }

    #[test]
    fn real_manifests_pass() {
        let pod = "apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations: {a: '[[[[', b: \"{{{{\\\"\"}
spec:
  containers:
  - name: app
    image: nginx
    command: [sh, -c, 'echo [[[ ]]']
    args:
    - |
      if [[ -f x ]]; then { {{ [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
    - >-
      {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{
    env:
    - {name: A, value: \"x # not a comment [\"}
    - name: B   # a comment [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
      value: a[b{c
    - name: C
      value: 'it''s [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
        still quoted [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['
";
        assert_eq!(depth_error(pod), None);
        let json = r#"{"kind":"Pod","metadata":{"name":"a[{"},"spec":{"containers":[{"name":"c","args":["\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]}]}}"#;
        assert_eq!(depth_error(json), None);
        // Nesting up to the bound is fine, in every style.
        let n = MAX_DEPTH;
        assert_eq!(
            depth_error(&format!("a: {}{}", "[".repeat(n - 1), "]".repeat(n - 1))),
            None
        );
        assert_eq!(
            depth_error(&format!("{}{}", "[".repeat(n), "]".repeat(n))),
            None
        );
        assert_eq!(depth_error(&format!("{}x\n", "- ".repeat(n))), None);
    }

    #[test]
    fn deep_nesting_is_refused_where_it_crosses_the_bound() {
        let n = 100_000;
        let cases = [
            format!("a: {}", "[".repeat(n)),
            format!("a: {}{}", "{a: ".repeat(n), "}".repeat(n)),
            format!("{}{}", "[".repeat(n), "]".repeat(n)),
            format!("{}x\n", "- ".repeat(n)),
            format!("{}x\n", "? ".repeat(n)),
            (0..200).map(|i| format!("{}k:\n", " ".repeat(i))).collect(),
            format!("a: [{}]", "{\"k\": [".repeat(n)),
        ];
        for text in &cases {
            let err = depth_error(text).expect("refused");
            assert!(err.contains("exceeded max depth of 100"), "{err}");
        }
        assert_eq!(
            depth_error(&format!("a: {}", "[".repeat(n))).unwrap(),
            "document 1: line 1, column 103: exceeded max depth of 100"
        );
        assert_eq!(
            depth_error(&format!("{}\n", "- ".repeat(101))).unwrap(),
            "document 1: line 1, column 201: exceeded max depth of 100"
        );
    }

    #[test]
    fn names_the_document() {
        let deep = "[".repeat(200);
        assert_eq!(
            depth_error(&format!("a: 1\n---\nb: 2\n---\nc: {deep}")).unwrap(),
            "document 3: line 5, column 103: exceeded max depth of 100"
        );
        assert_eq!(
            depth_error(&format!("{{}}\n{{\"a\": [1]}}\n{deep}")).unwrap(),
            "document 3: line 3, column 101: exceeded max depth of 100"
        );
    }
}
