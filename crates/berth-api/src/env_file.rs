//! The env-file format `fileKeyRef` reads (EnvFiles), as the kubelet's
//! `ParseEnv` (`pkg/kubelet/util/env/env_util.go`) parses it: `KEY='value'`
//! lines, the value single-quoted and taken literally (newlines included),
//! blank lines and `#` comments skipped, an inline comment allowed after
//! the closing quote. Whitespace before `=` is an error; whitespace after it
//! makes the value empty, as in a shell.

/// The value of `key` in `text`; empty when the file does not define it
/// (the kubelet treats an empty value as a missing key). An error names the
/// line, as the kubelet's parser does.
pub fn value_of(text: &str, key: &str) -> Result<String, String> {
    let invalid = |line: usize, what: &str| {
        format!("invalid environment variable format at line {line}: {what}")
    };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((number, line)) = lines.next() {
        let line = line.trim_start_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name_part, value_part)) = line.split_once('=') else {
            return Err(invalid(number, "missing '='"));
        };
        let name = name_part.trim_end_matches([' ', '\t']);
        if name.is_empty() {
            return Err(invalid(number, "empty variable name"));
        }
        if name != name_part {
            return Err(invalid(number, "whitespace before '=' is not allowed"));
        }
        let trimmed = value_part.trim_start_matches([' ', '\t']);
        if trimmed != value_part {
            // `KEY= 'v'` assigns the empty string, as a shell does.
            if name == key {
                return Ok(String::new());
            }
            continue;
        }
        let Some(mut rest) = trimmed.strip_prefix('\'') else {
            return Err(invalid(number, "value must be enclosed in single quotes"));
        };
        let start = number;
        let mut current = number;
        let mut value = String::new();
        loop {
            if let Some(end) = rest.find('\'') {
                value.push_str(&rest[..end]);
                let after = rest[end + 1..].trim_start_matches([' ', '\t']);
                if !after.is_empty() && !after.starts_with('#') {
                    return Err(invalid(current, "unexpected content after closing quote"));
                }
                if name == key {
                    return Ok(value);
                }
                break;
            }
            value.push_str(rest);
            value.push('\n');
            let Some((n, next)) = lines.next() else {
                return Err(format!(
                    "invalid environment variable format starting at line {start}: unclosed single quote"
                ));
            };
            current = n;
            rest = next;
        }
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::value_of;

    #[test]
    fn single_quoted_values_comments_and_multiple_lines() {
        let text = "# made by init\n\n  A='one'\nB='two words' # comment\nC='line 1\nline 2'\nD= 'ignored'\nE=''\n";
        assert_eq!(value_of(text, "A").unwrap(), "one");
        assert_eq!(value_of(text, "B").unwrap(), "two words");
        assert_eq!(value_of(text, "C").unwrap(), "line 1\nline 2");
        assert_eq!(value_of(text, "D").unwrap(), "");
        assert_eq!(value_of(text, "E").unwrap(), "");
        assert_eq!(value_of(text, "F").unwrap(), "", "missing");
        assert_eq!(
            value_of("A='$HOME \\n'", "A").unwrap(),
            "$HOME \\n",
            "literal"
        );
        assert_eq!(
            value_of("A='1'\nA='2'", "A").unwrap(),
            "1",
            "the first wins"
        );
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        let cases = [
            ("# x\nB", "invalid environment variable format at line 2: missing '='"),
            ("='1'", "invalid environment variable format at line 1: empty variable name"),
            ("A ='1'", "invalid environment variable format at line 1: whitespace before '=' is not allowed"),
            ("A=1", "invalid environment variable format at line 1: value must be enclosed in single quotes"),
            ("A=\"1\"", "invalid environment variable format at line 1: value must be enclosed in single quotes"),
            ("A='1' x", "invalid environment variable format at line 1: unexpected content after closing quote"),
            ("X='1'\nA='1\n2", "invalid environment variable format starting at line 2: unclosed single quote"),
        ];
        for (text, want) in cases {
            assert_eq!(value_of(text, "A").unwrap_err(), want, "{text:?}");
        }
        // A malformed line after the key is not reached.
        assert_eq!(value_of("A='1'\nB", "A").unwrap(), "1");
    }
}
