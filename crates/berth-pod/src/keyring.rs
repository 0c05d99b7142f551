//! A pod's image pull secrets as the kubelet reads them
//! (`pkg/credentialprovider/secrets.MakeDockerKeyring` and
//! `BasicDockerKeyring`): `kubernetes.io/dockerconfigjson` secrets'
//! `.dockerconfigjson`, `kubernetes.io/dockercfg` secrets' `.dockercfg`,
//! each entry keyed by a registry host (a `*` per host label allowed, the
//! port exact) and an optional path prefix; an image gets the credentials
//! of every key that matches its repository, the most specific key first.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use berth_runtime::RegistryCredentials;
use serde::Deserialize;

const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
const DOCKERCFG_KEY: &str = ".dockercfg";
/// The kubelet's `defaultRegistryHost`: its credentials serve images of
/// Docker Hub that no key names.
const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// An image pull secret as read from the API server.
#[derive(Clone, Default)]
pub struct PullSecret {
    pub name: String,
    pub type_: Option<String>,
    pub data: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for PullSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullSecret")
            .field("name", &self.name)
            .field("type", &self.type_)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
}

impl Entry {
    /// `auth`, when set, is `base64(username:password)` and wins.
    fn credentials(self) -> Result<RegistryCredentials, String> {
        if self.auth.is_empty() {
            return Ok(RegistryCredentials {
                username: self.username,
                password: self.password,
            });
        }
        let malformed =
            || "unable to parse auth field, must be formatted as base64(username:password)";
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(self.auth.as_bytes())
            .map_err(|e| format!("{}: {e}", malformed()))?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed().to_string())?;
        let (username, password) = decoded.split_once(':').ok_or_else(malformed)?;
        Ok(RegistryCredentials {
            username: username.to_string(),
            password: password.to_string(),
        })
    }
}

/// Credentials by registry key, keys most specific first.
#[derive(Debug, Default)]
pub struct Keyring {
    index: Vec<String>,
    credentials: HashMap<String, Vec<RegistryCredentials>>,
}

impl Keyring {
    /// The keyring of `secrets`, in their order; secrets of other types are
    /// ignored. A config that does not parse is an error naming its secret.
    pub fn from_secrets(secrets: &[PullSecret]) -> Result<Self, String> {
        let mut keyring = Self::default();
        for secret in secrets {
            let entries = match Self::entries(secret) {
                Ok(entries) => entries,
                Err(e) => return Err(format!("image pull secret \"{}\": {e}", secret.name)),
            };
            // Sorted: JSON objects have no order, and the result must not vary.
            let mut entries: Vec<(String, Entry)> = entries.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (location, entry) in entries {
                let credentials = entry
                    .credentials()
                    .map_err(|e| format!("image pull secret \"{}\": {e}", secret.name))?;
                let Some(key) = registry_key(&location) else {
                    continue;
                };
                keyring
                    .credentials
                    .entry(key.clone())
                    .or_default()
                    .push(credentials);
                keyring.index.push(key);
            }
        }
        keyring.index.sort();
        keyring.index.dedup();
        // Reversed, so "quay.io/team" comes before "quay.io".
        keyring.index.reverse();
        Ok(keyring)
    }

    fn entries(secret: &PullSecret) -> Result<HashMap<String, Entry>, String> {
        let type_ = secret.type_.as_deref().unwrap_or_default();
        let data = |key: &str| secret.data.get(key).filter(|d| !d.is_empty());
        if let (DOCKER_CONFIG_JSON_TYPE, Some(json)) = (type_, data(DOCKER_CONFIG_JSON_KEY)) {
            let config: DockerConfigJson =
                serde_json::from_slice(json).map_err(|e| e.to_string())?;
            Ok(config.auths)
        } else if let (DOCKERCFG_TYPE, Some(json)) = (type_, data(DOCKERCFG_KEY)) {
            serde_json::from_slice(json).map_err(|e| e.to_string())
        } else {
            Ok(HashMap::new())
        }
    }

    /// The credentials for `image`, to try in order; none: pull anonymously.
    pub fn lookup(&self, image: &str) -> Vec<RegistryCredentials> {
        let repository = repository(image);
        let found: Vec<RegistryCredentials> = self
            .index
            .iter()
            .filter(|key| urls_match(key, &repository))
            .flat_map(|key| self.credentials[key].iter().cloned())
            .collect();
        if !found.is_empty() {
            return found;
        }
        if is_default_registry(&repository) {
            if let Some(credentials) = self.credentials.get(DEFAULT_REGISTRY_HOST) {
                return credentials.clone();
            }
        }
        Vec::new()
    }
}

/// A config entry's location as a key: host and path, without scheme;
/// `/v1/` and `/v2/` mean the host alone, as for the docker client.
fn registry_key(location: &str) -> Option<String> {
    let rest = location
        .strip_prefix("https://")
        .or_else(|| location.strip_prefix("http://"))
        .unwrap_or(location);
    let (host, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if host.is_empty() {
        return None;
    }
    let path = path
        .strip_prefix("/v1")
        .or_else(|| path.strip_prefix("/v2"))
        .filter(|p| p.starts_with('/'))
        .unwrap_or(path);
    Some(match path {
        "" | "/" => host.to_string(),
        path => format!("{host}{path}"),
    })
}

/// The repository an image names, normalized as the docker client does:
/// no tag or digest, Docker Hub's host and `library/` filled in.
fn repository(image: &str) -> String {
    let image = image.split_once('@').map_or(image, |(name, _)| name);
    let image = match image.rfind(':') {
        Some(colon) if !image[colon..].contains('/') => &image[..colon],
        _ => image,
    };
    match image.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            if first == DEFAULT_REGISTRY_HOST {
                format!("docker.io/{rest}")
            } else {
                image.to_string()
            }
        }
        Some(_) => format!("docker.io/{image}"),
        None => format!("docker.io/library/{image}"),
    }
}

/// The kubelet's `isDefaultRegistryMatch`.
fn is_default_registry(repository: &str) -> bool {
    match repository.split_once('/') {
        None => !repository.is_empty(),
        Some(("docker.io" | DEFAULT_REGISTRY_HOST, _)) => true,
        Some((first, _)) => !first.is_empty() && !first.contains(['.', ':']),
    }
}

/// The kubelet's `URLsMatch`: the same number of host labels each matching
/// its glob, the same port, and the key's path a prefix of the image's.
fn urls_match(key: &str, repository: &str) -> bool {
    let split = |url: &str| -> (String, String) {
        match url.find('/') {
            Some(at) => (url[..at].to_string(), url[at..].to_string()),
            None => (url.to_string(), String::new()),
        }
    };
    let (key_host, key_path) = split(key);
    let (host, path) = split(repository);
    let host_port = |h: &str| -> (String, String) {
        match h.rsplit_once(':') {
            Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                (name.to_string(), port.to_string())
            }
            _ => (h.to_string(), String::new()),
        }
    };
    let (key_name, key_port) = host_port(&key_host);
    let (name, port) = host_port(&host);
    if key_port != port || !path.starts_with(&key_path) {
        return false;
    }
    let key_labels: Vec<&str> = key_name.split('.').collect();
    let labels: Vec<&str> = name.split('.').collect();
    key_labels.len() == labels.len()
        && key_labels
            .iter()
            .zip(&labels)
            .all(|(glob, label)| glob_match(glob.as_bytes(), label.as_bytes()))
}

/// `filepath.Match` for one host label: `*` any run, `?` one character
/// (no character classes). Backtracks to the last `*` only, so a hostile
/// pattern costs at most glob × text steps.
fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    let (mut g, mut t) = (0, 0);
    // The last `*` seen, and where in the text its run now ends.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some(b'*') => {
                star = Some((g, t));
                g += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                g += 1;
                t += 1;
            }
            _ => match star {
                Some((star_at, run_end)) => {
                    star = Some((star_at, run_end + 1));
                    g = star_at + 1;
                    t = run_end + 1;
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: &str, pass: &str) -> RegistryCredentials {
        RegistryCredentials {
            username: user.into(),
            password: pass.into(),
        }
    }

    fn json_secret(name: &str, auths: serde_json::Value) -> PullSecret {
        PullSecret {
            name: name.into(),
            type_: Some(DOCKER_CONFIG_JSON_TYPE.into()),
            data: BTreeMap::from([(
                DOCKER_CONFIG_JSON_KEY.to_string(),
                serde_json::to_vec(&serde_json::json!({ "auths": auths })).unwrap(),
            )]),
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn auth_field_wins_over_username_and_password() {
        let secret = json_secret(
            "s",
            serde_json::json!({
                "localhost:5000": {"auth": b64("user:pa:ss"), "username": "x", "password": "y"},
                "other.io": {"username": "u", "password": "p"},
            }),
        );
        let keyring = Keyring::from_secrets(&[secret]).unwrap();
        assert_eq!(
            keyring.lookup("localhost:5000/pause:testing"),
            vec![creds("user", "pa:ss")]
        );
        assert_eq!(keyring.lookup("other.io/app"), vec![creds("u", "p")]);
        assert!(keyring.lookup("localhost:5001/pause").is_empty());
        assert!(keyring.lookup("busybox").is_empty());
    }

    #[test]
    fn a_malformed_auth_field_names_the_secret() {
        let secret = json_secret("bad", serde_json::json!({"r.io": {"auth": b64("nocolon")}}));
        let error = Keyring::from_secrets(&[secret]).unwrap_err();
        assert!(error.contains("\"bad\""), "{error}");
        assert!(error.contains("base64(username:password)"), "{error}");
        let garbage = PullSecret {
            name: "junk".into(),
            type_: Some(DOCKER_CONFIG_JSON_TYPE.into()),
            data: BTreeMap::from([(DOCKER_CONFIG_JSON_KEY.to_string(), b"{".to_vec())]),
        };
        assert!(Keyring::from_secrets(&[garbage]).is_err());
    }

    #[test]
    fn dockercfg_and_other_types() {
        let cfg = PullSecret {
            name: "old".into(),
            type_: Some(DOCKERCFG_TYPE.into()),
            data: BTreeMap::from([(
                DOCKERCFG_KEY.to_string(),
                br#"{"https://r.io/v1/": {"username": "a", "password": "b"}}"#.to_vec(),
            )]),
        };
        // Opaque, or the right key under the wrong type: not a pull secret.
        let opaque = PullSecret {
            name: "opaque".into(),
            type_: Some("Opaque".into()),
            data: BTreeMap::from([(
                DOCKERCFG_KEY.to_string(),
                br#"{"q.io": {"username": "c", "password": "d"}}"#.to_vec(),
            )]),
        };
        let keyring = Keyring::from_secrets(&[cfg, opaque]).unwrap();
        assert_eq!(keyring.lookup("r.io/team/app:1"), vec![creds("a", "b")]);
        assert!(keyring.lookup("q.io/app").is_empty());
    }

    #[test]
    fn matching_by_host_glob_port_and_path_most_specific_first() {
        let secret = json_secret(
            "s",
            serde_json::json!({
                "*.example.com": {"username": "glob", "password": "1"},
                "quay.io": {"username": "host", "password": "2"},
                "https://quay.io/team": {"username": "team", "password": "3"},
                "reg.io:5000": {"username": "port", "password": "4"},
            }),
        );
        let keyring = Keyring::from_secrets(&[secret]).unwrap();
        assert_eq!(
            keyring.lookup("quay.io/team/app@sha256:abc"),
            vec![creds("team", "3"), creds("host", "2")]
        );
        assert_eq!(
            keyring.lookup("quay.io/other/app"),
            vec![creds("host", "2")]
        );
        assert_eq!(
            keyring.lookup("a.example.com/app"),
            vec![creds("glob", "1")]
        );
        // A glob is one label; the label count must match.
        assert!(keyring.lookup("a.b.example.com/app").is_empty());
        assert!(keyring.lookup("example.com/app").is_empty());
        assert_eq!(
            keyring.lookup("reg.io:5000/app:1"),
            vec![creds("port", "4")]
        );
        assert!(keyring.lookup("reg.io/app:1").is_empty());
    }

    #[test]
    fn host_label_globs() {
        assert!(glob_match(b"*", b"abc"));
        assert!(glob_match(b"a*c", b"abbbc"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(!glob_match(b"a?c", b"ac"));
        assert!(glob_match(b"*b*", b"aaabaaa"));
        assert!(!glob_match(b"a*b", b"aaa"));
        assert!(glob_match(b"", b""));
        assert!(!glob_match(b"", b"a"));
        // A hostile pattern must not take exponential time.
        let pattern = format!("{}b", "*a".repeat(40));
        assert!(!glob_match(pattern.as_bytes(), "a".repeat(200).as_bytes()));
    }

    #[test]
    fn docker_hub_images_take_index_docker_io_credentials() {
        let secret = json_secret(
            "s",
            serde_json::json!({"https://index.docker.io/v1/": {"username": "hub", "password": "h"}}),
        );
        let keyring = Keyring::from_secrets(&[secret]).unwrap();
        assert_eq!(keyring.lookup("busybox"), vec![creds("hub", "h")]);
        assert_eq!(keyring.lookup("team/app:1"), vec![creds("hub", "h")]);
        assert_eq!(
            keyring.lookup("docker.io/team/app"),
            vec![creds("hub", "h")]
        );
        assert!(keyring.lookup("quay.io/team/app").is_empty());
    }

    #[test]
    fn credentials_of_several_secrets_keep_their_order() {
        let first = json_secret(
            "a",
            serde_json::json!({"r.io": {"username": "1", "password": "x"}}),
        );
        let second = json_secret(
            "b",
            serde_json::json!({"r.io": {"username": "2", "password": "y"}}),
        );
        let keyring = Keyring::from_secrets(&[first, second]).unwrap();
        assert_eq!(
            keyring.lookup("r.io/app"),
            vec![creds("1", "x"), creds("2", "y")]
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", creds("user", "hunter2"));
        assert!(
            shown.contains("user") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
