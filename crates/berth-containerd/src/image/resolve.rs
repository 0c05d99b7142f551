//! From an image record's target to what a container needs: the manifest
//! for the node's platform, its config, and the chain IDs naming its unpacked layers.

use berth_runtime::{ImageConfig, ImageInfo, RuntimeError};
use oci_spec::image::{Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, Os};

use crate::archive::sha256_digest;
use crate::Containerd;

pub(super) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(super) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(super) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(super) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

pub(super) const INDEX_MEDIA_TYPES: [&str; 2] = [OCI_INDEX, DOCKER_LIST];

/// Every manifest type a pull understands, in the order a registry is asked for them.
pub(super) const MANIFEST_TYPES: [&str; 4] =
    [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// Indexes nest rarely, and never this deep in a sane image.
pub(super) const MAX_INDEX_DEPTH: usize = 4;

/// An image resolved for the node's platform.
#[derive(Debug)]
pub(super) struct Resolved {
    /// The indexes walked on the way down, each with the manifests it lists.
    pub indexes: Vec<(String, Vec<String>)>,
    pub manifest_digest: String,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
    /// One per layer, bottom first; the last names the image's top snapshot.
    pub chain_ids: Vec<String>,
}

impl Resolved {
    pub fn top(&self) -> &str {
        self.chain_ids
            .last()
            .expect("resolve rejects images without layers")
    }

    pub fn info(&self, reference: &str) -> ImageInfo {
        let layers: u64 = self.manifest.layers().iter().map(|l| l.size()).sum();
        ImageInfo {
            reference: reference.to_string(),
            digest: self.manifest_digest.clone(),
            size: layers + self.manifest.config().size(),
            config: image_config(&self.config),
        }
    }
}

/// chainID(L0) = diffID(L0); chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln)).
pub(super) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let id = match ids.last() {
            None => diff_id.clone(),
            Some(parent) => sha256_digest(format!("{parent} {diff_id}").as_bytes()),
        };
        ids.push(id);
    }
    ids
}

/// The node's architecture in the OCI's words (`amd64`, `arm64`, ...).
pub(super) fn node_arch() -> Arch {
    match std::env::consts::ARCH {
        "x86_64" => Arch::Amd64,
        "aarch64" => Arch::ARM64,
        other => Arch::from(other),
    }
}

/// The linux/`arch` entry of an index, else one that names no platform.
pub(super) fn pick_platform<'a>(index: &'a ImageIndex, arch: &Arch) -> Option<&'a Descriptor> {
    let manifests = index.manifests();
    manifests
        .iter()
        .find(|d| {
            d.platform()
                .as_ref()
                .is_some_and(|p| *p.os() == Os::Linux && p.architecture() == arch)
        })
        .or_else(|| manifests.iter().find(|d| d.platform().is_none()))
}

/// Why an index has nothing for this node.
pub(super) fn no_platform(arch: &Arch) -> String {
    format!("no manifest for platform linux/{arch}")
}

fn image_config(image: &ImageConfiguration) -> ImageConfig {
    let Some(config) = image.config() else {
        return ImageConfig::default();
    };
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    ImageConfig {
        entrypoint: config.entrypoint().clone().unwrap_or_default(),
        cmd: config.cmd().clone().unwrap_or_default(),
        env: config.env().clone().unwrap_or_default(),
        working_dir: non_empty(config.working_dir()),
        user: non_empty(config.user()),
        stop_signal: non_empty(config.stop_signal()),
    }
}

fn invalid(digest: &str, what: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::other(format!("image content {digest}: {what}"))
}

impl Containerd {
    /// Reads the target (an index or a manifest) and what it points to from
    /// the content store.
    pub(super) async fn resolve(
        &self,
        media_type: &str,
        digest: &str,
    ) -> Result<Resolved, RuntimeError> {
        let (mut media_type, mut digest) = (media_type.to_string(), digest.to_string());
        let mut indexes = Vec::new();
        for _ in 0..=MAX_INDEX_DEPTH {
            let blob = self.read_content(&digest).await?;
            if INDEX_MEDIA_TYPES.contains(&media_type.as_str()) {
                let index =
                    ImageIndex::from_reader(blob.as_slice()).map_err(|e| invalid(&digest, e))?;
                let children = index
                    .manifests()
                    .iter()
                    .map(|d| d.digest().to_string())
                    .collect();
                let arch = node_arch();
                let chosen = pick_platform(&index, &arch)
                    .ok_or_else(|| invalid(&digest, no_platform(&arch)))?;
                let next = (chosen.media_type().to_string(), chosen.digest().to_string());
                indexes.push((digest, children));
                (media_type, digest) = next;
                continue;
            }
            let manifest =
                ImageManifest::from_reader(blob.as_slice()).map_err(|e| invalid(&digest, e))?;
            let config_digest = manifest.config().digest().to_string();
            let config: ImageConfiguration =
                serde_json::from_slice(&self.read_content(&config_digest).await?)
                    .map_err(|e| invalid(&config_digest, e))?;
            let diff_ids = config.rootfs().diff_ids();
            if diff_ids.is_empty() || diff_ids.len() != manifest.layers().len() {
                return Err(invalid(&digest, "layers and rootfs.diff_ids do not match"));
            }
            return Ok(Resolved {
                indexes,
                chain_ids: chain_ids(diff_ids),
                manifest_digest: digest,
                manifest,
                config,
            });
        }
        Err(invalid(&digest, "indexes nest too deep"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = format!("sha256:{}", "c".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(ids[0], a);
        let ab = sha256_digest(format!("{a} {b}").as_bytes());
        assert_eq!(ids[1], ab);
        assert_eq!(ids[2], sha256_digest(format!("{ab} {c}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn picks_linux_amd64() {
        let index: ImageIndex = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
                 "digest": format!("sha256:{}", "1".repeat(64)),
                 "platform": {"os": "linux", "architecture": "arm64"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 2,
                 "digest": format!("sha256:{}", "2".repeat(64)),
                 "platform": {"os": "linux", "architecture": "amd64"}},
            ]
        }))
        .unwrap();
        assert_eq!(pick_platform(&index, &Arch::Amd64).unwrap().size(), 2);
        assert_eq!(pick_platform(&index, &Arch::ARM64).unwrap().size(), 1);
        assert!(pick_platform(&index, &Arch::ARM).is_none());
    }
}
