//! The pod's `/etc/resolv.conf`, as the kubelet composes it
//! (`pkg/kubelet/network/dns/dns.go`, `GetPodDNS`): by `dnsPolicy`, from the
//! cluster's DNS or the host's resolver, then `dnsConfig` merged in.

use k8s_openapi::api::core::v1::Pod;

/// The kubelet's limits (`MaxDNSNameservers`, `MaxDNSSearchPaths`).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// The node's cluster DNS (`clusterDNS`, `clusterDomain`); no servers means
/// none is configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterDns {
    pub servers: Vec<String>,
    pub domain: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct ResolvConf {
    nameservers: Vec<String>,
    searches: Vec<String>,
    options: Vec<String>,
}

impl ResolvConf {
    fn parse(text: &str) -> Self {
        let mut conf = Self::default();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => conf.nameservers.extend(fields.next().map(str::to_string)),
                Some("search") => conf.searches = fields.map(str::to_string).collect(),
                Some("options") => conf.options.extend(fields.map(str::to_string)),
                _ => {}
            }
        }
        conf
    }

    fn render(&self) -> String {
        let mut text = String::new();
        for server in self.nameservers.iter().take(MAX_NAMESERVERS) {
            text.push_str(&format!("nameserver {server}\n"));
        }
        if !self.searches.is_empty() {
            let searches: Vec<&str> = self
                .searches
                .iter()
                .take(MAX_SEARCHES)
                .map(String::as_str)
                .collect();
            text.push_str(&format!("search {}\n", searches.join(" ")));
        }
        if !self.options.is_empty() {
            text.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        text
    }
}

/// What resolv.conf to write, and a warning when ClusterFirst had to fall
/// back to the host's resolver (the kubelet's `MissingClusterDNS` event).
pub(crate) fn resolv_conf(pod: &Pod, host: &str, cluster: &ClusterDns) -> (String, Option<String>) {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let cluster_first = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut warning = None;
    let mut conf = match policy {
        "None" => ResolvConf::default(),
        _ if cluster_first && !cluster.servers.is_empty() => {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            let domain = &cluster.domain;
            // Without a cluster domain, only the host's searches.
            let mut searches = if domain.is_empty() {
                Vec::new()
            } else {
                vec![
                    format!("{namespace}.svc.{domain}"),
                    format!("svc.{domain}"),
                    domain.clone(),
                ]
            };
            searches.extend(ResolvConf::parse(host).searches);
            ResolvConf {
                nameservers: cluster.servers.clone(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        _ => {
            if cluster_first {
                warning = Some(
                    "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy."
                        .to_string(),
                );
            }
            ResolvConf::parse(host)
        }
    };
    if let Some(config) = spec.and_then(|s| s.dns_config.as_ref()) {
        push_unique(&mut conf.nameservers, config.nameservers.iter().flatten());
        push_unique(&mut conf.searches, config.searches.iter().flatten());
        for option in config.options.iter().flatten() {
            let name = option.name.clone().unwrap_or_default();
            conf.options
                .retain(|o| o.split(':').next() != Some(name.as_str()));
            conf.options.push(match &option.value {
                Some(value) => format!("{name}:{value}"),
                None => name,
            });
        }
    }
    (conf.render(), warning)
}

fn push_unique<'a>(list: &mut Vec<String>, more: impl Iterator<Item = &'a String>) {
    for item in more {
        if !list.contains(item) {
            list.push(item.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption, PodSpec};

    const HOST: &str = "nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n";

    fn pod(policy: Option<&str>, host_network: bool, config: Option<PodDNSConfig>) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("app".into());
        pod.spec = Some(PodSpec {
            dns_policy: policy.map(str::to_string),
            host_network: Some(host_network),
            dns_config: config,
            ..Default::default()
        });
        pod
    }

    fn cluster() -> ClusterDns {
        ClusterDns {
            servers: vec!["10.96.0.10".into()],
            domain: "cluster.local".into(),
        }
    }

    #[test]
    fn cluster_first_uses_the_cluster_dns_with_the_kubelets_searches() {
        let (text, warning) = resolv_conf(&pod(None, false, None), HOST, &cluster());
        assert_eq!(
            text,
            "nameserver 10.96.0.10\nsearch app.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n"
        );
        assert_eq!(warning, None);
        // With the host's network, ClusterFirst is the host's resolver.
        let (text, _) = resolv_conf(&pod(Some("ClusterFirst"), true, None), HOST, &cluster());
        assert_eq!(text, HOST);
        let (text, _) = resolv_conf(
            &pod(Some("ClusterFirstWithHostNet"), true, None),
            HOST,
            &cluster(),
        );
        assert!(text.starts_with("nameserver 10.96.0.10\n"), "{text}");
    }

    #[test]
    fn without_a_cluster_dns_cluster_first_falls_back_with_a_warning() {
        let (text, warning) = resolv_conf(&pod(None, false, None), HOST, &ClusterDns::default());
        assert_eq!(text, HOST);
        assert!(warning.unwrap().contains("ClusterDNS"));
        let (_, warning) = resolv_conf(
            &pod(Some("Default"), false, None),
            HOST,
            &ClusterDns::default(),
        );
        assert_eq!(warning, None);
    }

    #[test]
    fn none_takes_the_dns_config_alone_and_others_merge_it() {
        let config = PodDNSConfig {
            nameservers: Some(vec!["1.1.1.1".into()]),
            searches: Some(vec!["my.dns.search".into()]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDNSConfigOption {
                    name: Some("edns0".into()),
                    value: None,
                },
            ]),
        };
        let (text, _) = resolv_conf(
            &pod(Some("None"), false, Some(config.clone())),
            HOST,
            &cluster(),
        );
        assert_eq!(
            text,
            "nameserver 1.1.1.1\nsearch my.dns.search\noptions ndots:2 edns0\n"
        );
        let (text, _) = resolv_conf(&pod(None, false, Some(config)), HOST, &cluster());
        assert_eq!(
            text,
            "nameserver 10.96.0.10\nnameserver 1.1.1.1\nsearch app.svc.cluster.local svc.cluster.local cluster.local corp.example my.dns.search\noptions ndots:2 edns0\n"
        );
    }
}
