//! apimachinery's name and identifier checks (util/validation), returning
//! the same messages.

const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn max_len(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// Matches `[a-z0-9]([-a-z0-9]*[a-z0-9])?` with no length limit.
fn is_label_shape(s: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = s.as_bytes();
    !b.is_empty()
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter().all(|&c| alnum(c) || c == b'-')
}

fn is_subdomain_shape(s: &str) -> bool {
    s.split('.').all(is_label_shape)
}

/// `IsDNS1123Label`: container, volume and namespace names.
pub fn dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push(max_len(63));
    }
    if !is_label_shape(value) {
        if is_subdomain_shape(value) {
            errs.push("must not contain dots".into());
        } else {
            errs.push(LABEL_MSG.into());
        }
    }
    errs
}

/// `IsDNS1123Subdomain`: pod names.
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push(max_len(253));
    }
    if !is_subdomain_shape(value) {
        errs.push(SUBDOMAIN_MSG.into());
    }
    errs
}

/// `IsValidPortName` (IANA_SVC_NAME).
pub fn port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len(15));
    }
    if port.is_empty()
        || !port
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// `IsValidPortNum`: 1-65535.
pub fn port_number(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        return vec![];
    }
    vec!["must be between 1 and 65535, inclusive".into()]
}

/// `IsRelaxedEnvVarName`: printable ASCII other than `=`.
pub fn env_var_name(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.is_empty() {
        errs.push("environment variable name must be non-empty".into());
    }
    if name.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(
            "a valid environment variable name must consist only of printable ASCII characters other than '='"
                .into(),
        );
    }
    errs
}

/// `IsHTTPHeaderName`.
pub fn http_header_name(name: &str) -> Vec<String> {
    if !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
        return vec![];
    }
    vec!["a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')".into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        let cases: [(&str, bool, bool); 12] = [
            // (value, valid label, valid subdomain)
            ("web", true, true),
            ("a", true, true),
            ("0", true, true),
            ("my-app-2", true, true),
            ("web.example", false, true),
            ("Web", false, false),
            ("-web", false, false),
            ("web-", false, false),
            ("we_b", false, false),
            ("", false, false),
            ("a..b", false, false),
            ("web.", false, false),
        ];
        for (v, label, sub) in cases {
            assert_eq!(dns1123_label(v).is_empty(), label, "label {v:?}");
            assert_eq!(dns1123_subdomain(v).is_empty(), sub, "subdomain {v:?}");
        }
        assert_eq!(
            dns1123_label("a.b"),
            vec!["must not contain dots".to_string()]
        );
        assert_eq!(dns1123_label(&"a".repeat(64)), vec![max_len(63)]);
        assert!(dns1123_label(&"a".repeat(63)).is_empty());
        assert!(dns1123_subdomain(&"a".repeat(253)).is_empty());
        assert_eq!(dns1123_subdomain(&"a".repeat(254)), vec![max_len(253)]);
    }

    #[test]
    fn port_names_and_numbers() {
        assert!(port_name("http").is_empty());
        assert!(port_name("h2-c").is_empty());
        assert_eq!(
            port_name("8080"),
            vec!["must contain at least one letter (a-z)".to_string()]
        );
        assert_eq!(
            port_name("a--b"),
            vec!["must not contain consecutive hyphens".to_string()]
        );
        assert_eq!(
            port_name("-ab"),
            vec!["must not begin or end with a hyphen".to_string()]
        );
        assert_eq!(port_name("averyveryverylongname").len(), 1);
        assert_eq!(port_name("HTTP").len(), 2);
        assert!(port_number(1).is_empty() && port_number(65535).is_empty());
        assert_eq!(port_number(0).len(), 1);
        assert_eq!(port_number(65536).len(), 1);
    }

    #[test]
    fn env_names() {
        for ok in ["PATH", "my.var-1", "1ABC", "a b", "x:y"] {
            assert!(env_var_name(ok).is_empty(), "{ok:?}");
        }
        for bad in ["A=B", "tab\there", "ümlaut", ""] {
            assert_eq!(env_var_name(bad).len(), 1, "{bad:?}");
        }
    }
}
