//! The pod's host name and domain, as the kubelet's
//! `GeneratePodHostNameAndDomain` makes them: `spec.hostnameOverride` as it
//! is, else `spec.hostname`, else the pod's name, cut to 63 characters
//! (`truncatePodHostnameIfNeeded`; the kernel takes no more) without a
//! trailing `-` or `.`; the domain from `spec.subdomain`. Pod names may be
//! up to 253 characters long.

use k8s_openapi::api::core::v1::PodSpec;

/// The longest host name, as the kubelet caps it (64 bytes with the NUL).
const HOSTNAME_MAX_LEN: usize = 63;

/// The longest FQDN `setHostnameAsFQDN` may put in the kernel's nodename
/// (the kubelet's `GetNodenameForKernel`).
const FQDN_MAX_LEN: usize = 64;

/// A pod's name on its network (not on the host's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodHostname {
    pub(crate) hostname: String,
    /// `<subdomain>.<namespace>.svc.<cluster domain>`, or empty.
    pub(crate) domain: String,
}

impl PodHostname {
    pub(crate) fn of(
        spec: Option<&PodSpec>,
        pod_name: &str,
        namespace: &str,
        cluster_domain: &str,
    ) -> Self {
        if let Some(name) = spec.and_then(|s| s.hostname_override.as_deref()) {
            return Self {
                hostname: pod_hostname(Some(name), pod_name),
                domain: String::new(),
            };
        }
        let hostname = spec.and_then(|s| s.hostname.as_deref());
        let domain = match spec.and_then(|s| s.subdomain.as_deref()) {
            Some(sub) if !sub.is_empty() => format!("{sub}.{namespace}.svc.{cluster_domain}"),
            _ => String::new(),
        };
        Self {
            hostname: pod_hostname(hostname, pod_name),
            domain,
        }
    }

    /// What the sandbox's UTS namespace gets: the FQDN with
    /// `setHostnameAsFQDN` (and a domain), else the host name.
    pub(crate) fn for_kernel(&self, spec: Option<&PodSpec>) -> Result<String, String> {
        let as_fqdn = spec.and_then(|s| s.set_hostname_as_fqdn) == Some(true);
        if !as_fqdn || self.domain.is_empty() {
            return Ok(self.hostname.clone());
        }
        let fqdn = format!("{}.{}", self.hostname, self.domain);
        if fqdn.len() > FQDN_MAX_LEN {
            return Err(format!(
                "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long ({FQDN_MAX_LEN} characters is the max, {} characters requested)",
                fqdn.len()
            ));
        }
        Ok(fqdn)
    }
}

/// `wanted` (else the pod's name), cut to what the kernel takes.
fn pod_hostname(wanted: Option<&str>, pod_name: &str) -> String {
    let hostname = wanted.filter(|h| !h.is_empty()).unwrap_or(pod_name);
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
        assert_eq!(pod_hostname(Some("db"), "web"), "db");
        assert_eq!(pod_hostname(Some(""), "web"), "web");
    }

    fn named(spec: &PodSpec) -> PodHostname {
        PodHostname::of(Some(spec), "web", "shop", "cluster.local")
    }

    #[test]
    fn subdomain_makes_the_domain_and_an_override_has_none() {
        let mut spec = PodSpec {
            hostname: Some("db".into()),
            subdomain: Some("backend".into()),
            ..Default::default()
        };
        let name = named(&spec);
        assert_eq!(name.hostname, "db");
        assert_eq!(name.domain, "backend.shop.svc.cluster.local");
        assert_eq!(name.for_kernel(Some(&spec)).unwrap(), "db");
        spec.set_hostname_as_fqdn = Some(true);
        assert_eq!(
            name.for_kernel(Some(&spec)).unwrap(),
            "db.backend.shop.svc.cluster.local"
        );
        spec.subdomain = Some("a".repeat(40));
        let long = named(&spec).for_kernel(Some(&spec)).unwrap_err();
        assert!(
            long.contains("is too long (64 characters is the max, 66 characters requested)"),
            "{long}"
        );
        let spec = PodSpec {
            hostname: Some("db".into()),
            subdomain: Some("backend".into()),
            hostname_override: Some("worker-1.example".into()),
            ..Default::default()
        };
        let name = named(&spec);
        assert_eq!(name.hostname, "worker-1.example");
        assert_eq!(name.domain, "");
    }

    #[test]
    fn long_names_are_cut_to_63_without_a_trailing_dash_or_dot() {
        let exact = "a".repeat(63);
        assert_eq!(pod_hostname(None, &exact), exact);
        assert_eq!(pod_hostname(Some(&format!("{exact}.x")), "web"), exact);
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
