//! Registry settings, read from `--registry-config FILE` (YAML, or JSON when
//! the file starts with `{`):
//!
//! ```yaml
//! # docker's config.json format, accepted as-is: `auth` is base64("user:pass"),
//! # or `username` and `password` are given (`email` is ignored).
//! auths:
//!   "registry.example:5000": { auth: "dXNlcjpwYXNz" }
//! # Per registry host (`host[:port]`; docker.io for Docker Hub):
//! registries:
//!   "127.0.0.1:5000": { plainHttp: true }
//!   "registry.example:5000":
//!     insecureSkipVerify: true          # TLS without certificate checks
//!     mirrors: ["mirror.local:5000"]    # tried in order before the registry
//!     username: u                       # wins over `auths`
//!     password: p
//! ```
//!
//! A mirror is a host with settings of its own in the same file; a mirror
//! written `http://host:port` is reached over plain HTTP. A registry on
//! `localhost` or a loopback address that `registries` does not name is
//! reached over plain HTTP (containerd's CRI plugin, the kubelet's puller,
//! defaults such hosts to `http`); named, it follows its settings. Unknown keys are
//! refused, naming the key. Credentials never reach a log: their `Debug`
//! shows only the user name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

#[doc(hidden)]
pub mod fuzzing;

/// Why a registry config file was refused.
#[derive(Debug, thiserror::Error)]
#[error("registry config {path}: {message}")]
pub struct RegistryConfigError {
    pub path: PathBuf,
    pub message: String,
}

/// A user name and password for a registry's basic auth (or token exchange).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to reach one registry host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryHost {
    /// Named in `registries` (not only in `auths`).
    pub named: bool,
    pub plain_http: bool,
    pub insecure_skip_verify: bool,
    /// Hosts tried, in order, before this one.
    pub mirrors: Vec<String>,
    pub credentials: Option<Credentials>,
}

/// One place an image can be fetched from, with how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub host: String,
    pub plain_http: bool,
    pub insecure_skip_verify: bool,
    pub credentials: Option<Credentials>,
}

/// Every registry's settings; hosts not named use HTTPS (plain HTTP on this
/// machine) without credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    hosts: BTreeMap<String, RegistryHost>,
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
    #[serde(default)]
    registries: BTreeMap<String, HostEntry>,
}

/// An entry of docker's `config.json` `auths`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    #[allow(dead_code)]
    email: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HostEntry {
    #[serde(default)]
    plain_http: bool,
    #[serde(default)]
    insecure_skip_verify: bool,
    #[serde(default)]
    mirrors: Vec<String>,
    username: Option<String>,
    password: Option<String>,
}

/// `https://index.docker.io/v1/` and `registry-1.docker.io` are `docker.io`;
/// a scheme and a path are dropped (docker's `auths` keys carry both), and
/// so are spaces around the host: a canonical host is its own canonical
/// host, so lookups find what the file named.
pub(crate) fn canonical_host(key: &str) -> String {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key
        .split('/')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => host,
    }
}

impl DockerAuth {
    fn credentials(self, host: &str) -> Result<Credentials, String> {
        if let Some(auth) = self.auth.filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| format!("auths.{host}.auth: not base64: {e}"))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| format!("auths.{host}.auth: not UTF-8 text"))?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| format!("auths.{host}.auth: not base64 of \"user:password\""))?;
            return Ok(Credentials {
                username: username.to_string(),
                password: password.to_string(),
            });
        }
        match (self.username, self.password) {
            (Some(username), Some(password)) => Ok(Credentials { username, password }),
            _ => Err(format!(
                "auths.{host}: needs `auth`, or `username` and `password`"
            )),
        }
    }
}

impl RegistryConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, RegistryConfigError> {
        let error = |message: String| RegistryConfigError {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        Self::parse(&text).map_err(error)
    }

    /// Parses the file's text; the error names the offending key.
    pub fn parse(text: &str) -> Result<Self, String> {
        // docker writes config.json indented with tabs, which YAML refuses.
        let file: File = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())?
        } else {
            let value: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
            if value.is_null() {
                return Ok(Self::default());
            }
            serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
        };
        let mut hosts: BTreeMap<String, RegistryHost> = BTreeMap::new();
        for (key, auth) in file.auths {
            let host = canonical_host(&key);
            let credentials = auth.credentials(&key)?;
            hosts.entry(host).or_default().credentials = Some(credentials);
        }
        for (key, entry) in file.registries {
            let host = canonical_host(&key);
            if host.is_empty() {
                return Err(format!("registries.{key:?}: not a registry host"));
            }
            let credentials = match (entry.username, entry.password) {
                (Some(username), Some(password)) => Some(Credentials { username, password }),
                (None, None) => None,
                _ => {
                    return Err(format!(
                        "registries.{key}: `username` and `password` go together"
                    ))
                }
            };
            for mirror in &entry.mirrors {
                if canonical_host(mirror).is_empty() {
                    return Err(format!(
                        "registries.{key}.mirrors: {mirror:?} is not a host"
                    ));
                }
            }
            let settings = hosts.entry(host).or_default();
            settings.named = true;
            settings.plain_http = entry.plain_http;
            settings.insecure_skip_verify = entry.insecure_skip_verify;
            settings.mirrors = entry.mirrors;
            if credentials.is_some() {
                settings.credentials = credentials;
            }
        }
        Ok(Self { hosts })
    }

    /// The settings of `host` (defaults when the file does not name it).
    pub fn host(&self, host: &str) -> RegistryHost {
        self.hosts
            .get(&canonical_host(host))
            .cloned()
            .unwrap_or_default()
    }

    /// Where to fetch an image of `registry` from: its mirrors in order,
    /// then the registry itself.
    pub(crate) fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let own = self.host(registry);
        let mut endpoints: Vec<Endpoint> = own
            .mirrors
            .iter()
            .map(|mirror| {
                let host = canonical_host(mirror);
                let settings = self.host(&host);
                Endpoint {
                    plain_http: settings.plain_http
                        || mirror.trim().starts_with("http://")
                        || local_http(&host, &settings),
                    insecure_skip_verify: settings.insecure_skip_verify,
                    credentials: settings.credentials,
                    host,
                }
            })
            .collect();
        let host = canonical_host(registry);
        endpoints.push(Endpoint {
            plain_http: own.plain_http || local_http(&host, &own),
            host,
            insecure_skip_verify: own.insecure_skip_verify,
            credentials: own.credentials,
        });
        endpoints
    }
}

/// A registry on this machine speaks plain HTTP unless the file says how
/// to reach it.
fn local_http(host: &str, settings: &RegistryHost) -> bool {
    is_localhost(host) && !settings.named
}

/// `localhost` or a loopback address, with or without a port (containerd's
/// `docker.IsLocalhost`).
fn is_localhost(host: &str) -> bool {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_on_this_machine_default_to_plain_http() {
        let config = RegistryConfig::parse(
            "auths: { \"localhost:5000\": { auth: \"dTpw\" } }\n\
             registries:\n  \"localhost:5443\": { insecureSkipVerify: true }\n  \"127.0.0.1:5443\": {}\n",
        )
        .unwrap();
        for host in [
            "localhost:5000",
            "localhost",
            "127.0.0.1:5000",
            "127.9.9.9",
            "[::1]:5000",
            "::1",
        ] {
            assert!(config.endpoints(host)[0].plain_http, "{host}");
        }
        for host in [
            "localhost:5443",
            "localhost.example:5000",
            "10.0.0.1:5000",
            "quay.io",
        ] {
            assert!(!config.endpoints(host)[0].plain_http, "{host}");
        }
    }

    #[test]
    fn the_documented_example_parses() {
        let config = RegistryConfig::parse(
            r#"
auths: { "registry.example:5000": { auth: "dXNlcjpwYXNz" } }
registries:
  "127.0.0.1:5000": { plainHttp: true }
  "registry.example:5000": { insecureSkipVerify: true, mirrors: ["mirror.local:5000", "http://m2:80"] }
  "mirror.local:5000": { username: mu, password: mp }
"#,
        )
        .unwrap();
        assert!(config.host("127.0.0.1:5000").plain_http);
        let host = config.host("registry.example:5000");
        assert!(host.insecure_skip_verify);
        let creds = host.credentials.unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("user", "pass")
        );
        let endpoints = config.endpoints("registry.example:5000");
        let hosts: Vec<_> = endpoints.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(
            hosts,
            ["mirror.local:5000", "m2:80", "registry.example:5000"]
        );
        assert_eq!(endpoints[0].credentials.as_ref().unwrap().username, "mu");
        assert!(!endpoints[0].plain_http);
        assert!(endpoints[1].plain_http);
        assert!(endpoints[2].insecure_skip_verify);
        // Unnamed hosts: HTTPS, anonymous, no mirrors.
        assert_eq!(config.endpoints("quay.io").len(), 1);
        assert_eq!(config.host("quay.io"), RegistryHost::default());
    }

    #[test]
    fn the_shipped_example_parses() {
        let config =
            RegistryConfig::parse(include_str!("../../../../deploy/registries.yaml")).unwrap();
        assert!(config.host("127.0.0.1:5000").plain_http);
        assert_eq!(config.endpoints("registry.example:5000").len(), 2);
    }

    #[test]
    fn docker_config_json_is_accepted_as_is() {
        // docker writes tabs; username/password entries are accepted too.
        let text = "{\n\t\"auths\": {\n\t\t\"https://index.docker.io/v1/\": {\n\t\t\t\"auth\": \"YWxpY2U6czNjcjN0OndpdGgtY29sb24=\"\n\t\t},\n\t\t\"reg:5000\": {\"username\": \"bob\", \"password\": \"pw\", \"email\": \"b@x\"}\n\t}\n}";
        let config = RegistryConfig::parse(text).unwrap();
        let hub = config.host("docker.io").credentials.unwrap();
        assert_eq!(hub.username, "alice");
        assert_eq!(hub.password, "s3cr3t:with-colon");
        assert_eq!(config.host("reg:5000").credentials.unwrap().username, "bob");
    }

    #[test]
    fn registries_credentials_win_over_auths() {
        let config = RegistryConfig::parse(
            "auths: {\"r:1\": {username: a, password: b}}\nregistries: {\"r:1\": {username: c, password: d}}\n",
        )
        .unwrap();
        assert_eq!(config.host("r:1").credentials.unwrap().username, "c");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err =
            RegistryConfig::parse("registries:\n  \"r:1\": { plainhttp: true }\n").unwrap_err();
        assert!(err.contains("plainhttp"), "{err}");
        let err = RegistryConfig::parse("mirrors: []\n").unwrap_err();
        assert!(err.contains("mirrors"), "{err}");
        let err = RegistryConfig::parse(r#"{"auths": {}, "credsStore": "desktop"}"#).unwrap_err();
        assert!(err.contains("credsStore"), "{err}");
    }

    #[test]
    fn bad_entries_are_refused() {
        let err = RegistryConfig::parse("auths: {\"r:1\": {auth: \"!!!\"}}\n").unwrap_err();
        assert!(err.contains("auths.r:1.auth"), "{err}");
        let err =
            RegistryConfig::parse("auths: {\"r:1\": {auth: \"bm9jb2xvbg==\"}}\n").unwrap_err();
        assert!(err.contains("user:password"), "{err}");
        let err = RegistryConfig::parse("registries: {\"r:1\": {username: a}}\n").unwrap_err();
        assert!(err.contains("go together"), "{err}");
        assert!(RegistryConfig::parse("").unwrap().hosts.is_empty());
        assert!(RegistryConfig::parse("# nothing\n")
            .unwrap()
            .hosts
            .is_empty());
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registries.yaml");
        std::fs::write(&path, "registries: {\"r:1\": {mirror: []}}\n").unwrap();
        let err = RegistryConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("mirror"), "{err}");
        let err = RegistryConfig::load(&dir.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent"), "{err}");
    }

    #[test]
    fn a_key_with_spaces_around_its_host_names_that_host() {
        // Found by the registry_config fuzz target: the host was kept with
        // its trailing space, so no lookup ever found these credentials.
        let config =
            RegistryConfig::parse("auths: {\"https://reg:5000 /v1/\": {auth: \"dTpw\"}}\n")
                .unwrap();
        assert_eq!(config.host("reg:5000").credentials.unwrap().username, "u");
    }

    #[test]
    fn debug_never_shows_a_password() {
        let config = RegistryConfig::parse(
            "auths: {\"r:1\": {auth: \"dXNlcjpodW50ZXIy\"}}\nregistries: {\"r:2\": {username: u, password: swordfish}}\n",
        )
        .unwrap();
        let shown = format!("{config:?} {:?}", config.endpoints("r:1"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("swordfish"), "{shown}");
        assert!(!shown.contains("dXNlcjpodW50ZXIy"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
