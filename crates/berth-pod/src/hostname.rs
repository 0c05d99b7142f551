//! The pod's host name, as the kubelet's `GeneratePodHostNameAndDomain`
//! makes it: `spec.hostname`, else the pod's name, cut to 63 characters
//! (`truncatePodHostnameIfNeeded`; the kernel takes no more) without a
//! trailing `-` or `.`. Pod names may be up to 253 characters long.

use k8s_openapi::api::core::v1::PodSpec;

/// The longest host name, as the kubelet caps it (64 bytes with the NUL).
const HOSTNAME_MAX_LEN: usize = 63;

/// The host name of a pod named `pod_name` (not on the host's network).
pub(crate) fn pod_hostname(spec: Option<&PodSpec>, pod_name: &str) -> String {
    let hostname = spec
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
        .unwrap_or(pod_name);
    if hostname.len() <= HOSTNAME_MAX_LEN {
        return hostname.to_owned();
    }
    // Names are DNS subdomains (ASCII); stepping back to a char boundary
    // keeps a hostile non-ASCII name from panicking.
    let mut end = HOSTNAME_MAX_LEN;
    while !hostname.is_char_boundary(end) {
        end -= 1;
    }
    let truncated = hostname[..end].trim_end_matches(['-', '.']);
    tracing::warn!(
        pod = pod_name,
        hostname_max_len = HOSTNAME_MAX_LEN,
        truncated_hostname = truncated,
        "hostname for pod was too long, truncated it"
    );
    truncated.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept_and_spec_hostname_wins() {
        assert_eq!(pod_hostname(None, "web"), "web");
        let spec = PodSpec {
            hostname: Some("db".into()),
            ..Default::default()
        };
        assert_eq!(pod_hostname(Some(&spec), "web"), "db");
        let empty = PodSpec {
            hostname: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(pod_hostname(Some(&empty), "web"), "web");
    }

    #[test]
    fn long_names_are_cut_to_63_without_a_trailing_dash_or_dot() {
        let exact = "a".repeat(63);
        assert_eq!(pod_hostname(None, &exact), exact);
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(40));
        assert_eq!(pod_hostname(None, &long), "a".repeat(62));
        let dots = format!("{}.-.{}", "c".repeat(61), "d".repeat(10));
        assert_eq!(pod_hostname(None, &dots), "c".repeat(61));
        let name = "termination-message-containerbd7e065a-6bf2-4019-b0d2-c0a27ff3672c";
        let cut = pod_hostname(None, name);
        assert_eq!(cut, &name[..63]);
        assert!(cut.len() <= 63);
    }
}
