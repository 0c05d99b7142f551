//! The registry config fuzz target's entry point (`fuzz/`), also run over
//! its seed corpus by the workspace's tests.

use super::{canonical_host, RegistryConfig};

/// Parses arbitrary bytes as the file named by `registryConfig`. Must not
/// panic; an accepted file must answer for each host it names, give each
/// registry its mirrors then itself, and never show a password in its
/// `Debug` output (which is what reaches a log).
pub fn registry_config(data: &[u8]) {
    // `RegistryConfig::load` refuses a file that is not UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = RegistryConfig::parse(text) else {
        return;
    };
    for (host, settings) in &config.hosts {
        assert_eq!(
            &config.host(host),
            settings,
            "the settings of {host:?} are not found under that name"
        );
        let endpoints = config.endpoints(host);
        assert_eq!(endpoints.len(), settings.mirrors.len() + 1);
        let (own, mirrors) = endpoints.split_last().expect("the registry itself");
        assert_eq!(own.host, canonical_host(host));
        for (endpoint, mirror) in mirrors.iter().zip(&settings.mirrors) {
            assert!(!endpoint.host.is_empty(), "mirror {mirror:?} has no host");
            assert_eq!(endpoint.host, canonical_host(mirror));
        }
    }
    let mut other = config.clone();
    for settings in other.hosts.values_mut() {
        if let Some(credentials) = settings.credentials.as_mut() {
            credentials.password.push_str("-changed");
        }
    }
    assert_eq!(
        format!("{config:?}"),
        format!("{other:?}"),
        "Debug shows a password"
    );
    for host in config.hosts.keys() {
        assert_eq!(
            format!("{:?}", config.endpoints(host)),
            format!("{:?}", other.endpoints(host)),
            "Debug of the endpoints of {host:?} shows a password"
        );
    }
}
