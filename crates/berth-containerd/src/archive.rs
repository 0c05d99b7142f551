//! A deterministic builder of single-layer container images, written as an
//! OCI image-layout tar or a `docker save` tar. It makes the built-in pause
//! image and the test images; there is no registry to pull from.
//!
//! Every timestamp is 0, every owner root and every entry sorted, so the same
//! input always gives the same digests.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

use flate2::write::GzEncoder;
use flate2::Compression;
use oci_spec::image::{
    Arch, Config, Descriptor, Digest, ImageConfiguration, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::image::normalize_reference;

/// Annotation naming the full image reference (containerd's import reads it).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation naming the tag of a manifest in an image layout.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Clone)]
enum Node {
    File { contents: Vec<u8>, mode: u32 },
    Symlink(String),
    Dir(u32),
}

/// A one-layer linux/amd64 image under construction.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    reference: String,
    nodes: BTreeMap<String, Node>,
    config: Config,
    labels: BTreeMap<String, String>,
}

/// The blobs of a built image.
struct Blobs {
    layer_tar: Vec<u8>,
    config: Vec<u8>,
}

impl ImageBuilder {
    /// `reference` is normalized (`busybox` becomes `docker.io/library/busybox:latest`).
    pub fn new(reference: &str) -> Self {
        Self {
            reference: normalize_reference(reference),
            nodes: BTreeMap::new(),
            config: Config::default(),
            labels: BTreeMap::new(),
        }
    }

    /// The normalized reference the archives will name.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// A regular file; missing parent directories are added (mode 0755).
    pub fn file(mut self, path: &str, contents: Vec<u8>, mode: u32) -> Self {
        insert(&mut self.nodes, path, Node::File { contents, mode });
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        insert(&mut self.nodes, path, Node::Symlink(target.to_string()));
        self
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        insert(&mut self.nodes, path, Node::Dir(mode));
        self
    }

    pub fn entrypoint(mut self, entrypoint: Vec<String>) -> Self {
        self.config.set_entrypoint(Some(entrypoint));
        self
    }

    pub fn cmd(mut self, cmd: Vec<String>) -> Self {
        self.config.set_cmd(Some(cmd));
        self
    }

    pub fn env(mut self, env: Vec<String>) -> Self {
        self.config.set_env(Some(env));
        self
    }

    pub fn working_dir(mut self, dir: String) -> Self {
        self.config.set_working_dir(Some(dir));
        self
    }

    pub fn user(mut self, user: String) -> Self {
        self.config.set_user(Some(user));
        self
    }

    pub fn stop_signal(mut self, signal: String) -> Self {
        self.config.set_stop_signal(Some(signal));
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// Writes an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`)
    /// with one gzip layer.
    pub fn write_oci_archive(&self, out: impl Write) -> io::Result<()> {
        let blobs = self.blobs()?;
        let layer_gz = gzip(&blobs.layer_tar)?;
        let config = Descriptor::new(
            MediaType::ImageConfig,
            blobs.config.len() as u64,
            digest_of(&blobs.config),
        );
        let layer = Descriptor::new(
            MediaType::ImageLayerGzip,
            layer_gz.len() as u64,
            digest_of(&layer_gz),
        );
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config)
            .layers(vec![layer])
            .build()
            .map_err(io::Error::other)?;
        let manifest = canonical_json(&manifest);

        let mut annotations =
            HashMap::from([(ANNOTATION_IMAGE_NAME.to_string(), self.reference.clone())]);
        if let Some(tag) = tag_of(&self.reference) {
            annotations.insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
        }
        let mut manifest_desc = Descriptor::new(
            MediaType::ImageManifest,
            manifest.len() as u64,
            digest_of(&manifest),
        );
        manifest_desc.set_annotations(Some(annotations));
        manifest_desc.set_platform(Some(
            PlatformBuilder::default()
                .architecture(Arch::Amd64)
                .os(Os::Linux)
                .build()
                .map_err(io::Error::other)?,
        ));
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![manifest_desc])
            .build()
            .map_err(io::Error::other)?;

        let mut files = BTreeMap::new();
        for blob in [blobs.config, layer_gz, manifest] {
            let path = format!("blobs/sha256/{}", hex::encode(Sha256::digest(&blob)));
            insert_file(&mut files, &path, blob);
        }
        insert_file(&mut files, "index.json", canonical_json(&index));
        insert_file(
            &mut files,
            "oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        );
        write_tar(out, &files)
    }

    /// Writes a `docker save` archive: `manifest.json`, `<config>.json` and an
    /// uncompressed `<diffID>/layer.tar`.
    pub fn write_docker_archive(&self, out: impl Write) -> io::Result<()> {
        let blobs = self.blobs()?;
        let config_path = format!("{}.json", hex::encode(Sha256::digest(&blobs.config)));
        let layer_path = format!(
            "{}/layer.tar",
            hex::encode(Sha256::digest(&blobs.layer_tar))
        );
        let repo_tags: Vec<String> = tag_of(&self.reference)
            .map(|_| familiar_name(&self.reference))
            .into_iter()
            .collect();
        let manifest = serde_json::json!([{
            "Config": config_path,
            "RepoTags": repo_tags,
            "Layers": [layer_path],
        }]);

        let mut files = BTreeMap::new();
        insert_file(&mut files, &config_path, blobs.config);
        insert_file(&mut files, &layer_path, blobs.layer_tar);
        insert_file(&mut files, "manifest.json", canonical_json(&manifest));
        write_tar(out, &files)
    }

    fn blobs(&self) -> io::Result<Blobs> {
        let mut layer_tar = Vec::new();
        write_tar(&mut layer_tar, &self.nodes)?;
        let mut config = self.config.clone();
        if !self.labels.is_empty() {
            config.set_labels(Some(self.labels.clone().into_iter().collect()));
        }
        let image: ImageConfiguration = ImageConfigurationBuilder::default()
            .architecture(Arch::Amd64)
            .os(Os::Linux)
            .config(config)
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![digest_of(&layer_tar).to_string()])
                    .build()
                    .map_err(io::Error::other)?,
            )
            .build()
            .map_err(io::Error::other)?;
        Ok(Blobs {
            layer_tar,
            config: canonical_json(&image),
        })
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn digest_of(bytes: &[u8]) -> Digest {
    sha256_digest(bytes)
        .parse()
        .expect("a sha256 digest is well-formed")
}

/// JSON with object keys sorted, so documents holding hash maps are stable.
pub(crate) fn canonical_json(value: &impl Serialize) -> Vec<u8> {
    let mut value = serde_json::to_value(value).expect("image documents serialize");
    value.sort_all_objects();
    serde_json::to_vec(&value).expect("a JSON value serializes")
}

/// The tag of a normalized reference, if it has one.
fn tag_of(reference: &str) -> Option<&str> {
    let name = reference.split('@').next().unwrap_or(reference);
    let (_, tag) = name.rsplit_once(':')?;
    (!tag.contains('/')).then_some(tag)
}

/// The short form `docker save` writes: `busybox:latest`, `team/app:v1`.
fn familiar_name(reference: &str) -> String {
    let short = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    short.to_string()
}

/// Inserts a node under its cleaned path, adding missing parent directories.
fn insert(nodes: &mut BTreeMap<String, Node>, path: &str, node: Node) {
    let path = path.trim_matches('/');
    let mut end = 0;
    while let Some(i) = path[end..].find('/') {
        end += i;
        nodes
            .entry(path[..end].to_string())
            .or_insert(Node::Dir(0o755));
        end += 1;
    }
    nodes.insert(path.to_string(), node);
}

fn insert_file(nodes: &mut BTreeMap<String, Node>, path: &str, contents: Vec<u8>) {
    insert(
        nodes,
        path,
        Node::File {
            contents,
            mode: 0o644,
        },
    );
}

/// Writes the nodes as a tar in path order (parents sort before children).
fn write_tar(out: impl Write, nodes: &BTreeMap<String, Node>) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    for (path, node) in nodes {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        match node {
            Node::File { contents, mode } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(contents.len() as u64);
                tar.append_data(&mut header, path, contents.as_slice())?;
            }
            Node::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, path, target)?;
            }
            Node::Dir(mode) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                tar.append_data(&mut header, format!("{path}/"), io::empty())?;
            }
        }
    }
    tar.into_inner()?.flush()
}

fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    // flate2's default header has mtime 0 and no file name: deterministic.
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{ImageIndex, ImageManifest};
    use std::io::Read;

    fn busybox_like() -> ImageBuilder {
        ImageBuilder::new("busybox")
            .file("/bin/busybox", b"#!binary".to_vec(), 0o755)
            .symlink("/bin/sh", "busybox")
            .dir("/tmp", 0o1777)
            .entrypoint(vec!["/bin/sh".into()])
            .cmd(vec!["-c".into(), "true".into()])
            .env(vec!["PATH=/bin".into()])
            .label("b", "2")
            .label("a", "1")
    }

    fn read_tar(bytes: &[u8]) -> BTreeMap<String, (tar::EntryType, u32, Vec<u8>)> {
        let mut archive = tar::Archive::new(bytes);
        let mut entries = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            assert_eq!(header.mtime().unwrap(), 0);
            assert_eq!(header.uid().unwrap(), 0);
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            if header.entry_type() == tar::EntryType::Symlink {
                data = entry.link_name_bytes().unwrap().into_owned();
            }
            entries.insert(path, (header.entry_type(), header.mode().unwrap(), data));
        }
        entries
    }

    #[test]
    fn same_input_same_bytes() {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        busybox_like().write_oci_archive(&mut a).unwrap();
        busybox_like().write_oci_archive(&mut b).unwrap();
        assert_eq!(a, b);
        busybox_like().write_docker_archive(&mut c).unwrap();
        let mut d = Vec::new();
        busybox_like().write_docker_archive(&mut d).unwrap();
        assert_eq!(c, d);
        let mut other = Vec::new();
        busybox_like()
            .cmd(vec!["x".into()])
            .write_oci_archive(&mut other)
            .unwrap();
        assert_ne!(a, other);
    }

    #[test]
    fn oci_layout_is_complete_and_consistent() {
        let mut bytes = Vec::new();
        busybox_like().write_oci_archive(&mut bytes).unwrap();
        let files = read_tar(&bytes);
        for (path, (_, _, data)) in files
            .iter()
            .filter(|(p, _)| p.starts_with("blobs/sha256/") && p.len() > 13)
        {
            assert_eq!(
                path.strip_prefix("blobs/sha256/").unwrap(),
                &sha256_digest(data)[7..]
            );
        }
        assert!(files.contains_key("oci-layout"));
        let blob = |d: &Digest| files[&format!("blobs/sha256/{}", d.digest())].2.clone();

        let index = ImageIndex::from_reader(files["index.json"].2.as_slice()).unwrap();
        let desc = &index.manifests()[0];
        let annotations = desc.annotations().as_ref().unwrap();
        assert_eq!(
            annotations[ANNOTATION_IMAGE_NAME],
            "docker.io/library/busybox:latest"
        );
        assert_eq!(annotations[ANNOTATION_REF_NAME], "latest");
        let manifest = ImageManifest::from_reader(blob(desc.digest()).as_slice()).unwrap();
        let config: ImageConfiguration =
            serde_json::from_slice(&blob(manifest.config().digest())).unwrap();
        assert_eq!(
            config.config().as_ref().unwrap().cmd().as_ref().unwrap(),
            &["-c", "true"]
        );

        let mut layer = Vec::new();
        flate2::read::GzDecoder::new(blob(manifest.layers()[0].digest()).as_slice())
            .read_to_end(&mut layer)
            .unwrap();
        assert_eq!(config.rootfs().diff_ids(), &[sha256_digest(&layer)]);
        let entries = read_tar(&layer);
        let paths: Vec<&str> = entries.keys().map(String::as_str).collect();
        assert_eq!(paths, ["bin/", "bin/busybox", "bin/sh", "tmp/"]);
        assert_eq!(entries["bin/busybox"].1, 0o755);
        assert_eq!(
            entries["bin/sh"],
            (tar::EntryType::Symlink, 0o777, b"busybox".to_vec())
        );
        assert_eq!(entries["tmp/"].1, 0o1777);
    }

    #[test]
    fn docker_archive_names_short_tags_and_plain_layers() {
        let mut bytes = Vec::new();
        busybox_like().write_docker_archive(&mut bytes).unwrap();
        let files = read_tar(&bytes);
        let manifest: serde_json::Value =
            serde_json::from_slice(&files["manifest.json"].2).unwrap();
        assert_eq!(
            manifest[0]["RepoTags"],
            serde_json::json!(["busybox:latest"])
        );
        let layer_path = manifest[0]["Layers"][0].as_str().unwrap();
        let config: ImageConfiguration =
            serde_json::from_slice(&files[manifest[0]["Config"].as_str().unwrap()].2).unwrap();
        assert_eq!(
            config.rootfs().diff_ids(),
            &[sha256_digest(&files[layer_path].2)]
        );
        assert_eq!(
            config.config().as_ref().unwrap().labels().as_ref().unwrap()["a"],
            "1"
        );
    }

    #[test]
    fn familiar_names() {
        assert_eq!(familiar_name("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(familiar_name("docker.io/team/app:v1"), "team/app:v1");
        assert_eq!(familiar_name("berth.local/pause:1"), "berth.local/pause:1");
        assert_eq!(tag_of("localhost:5000/app"), None);
        assert_eq!(tag_of("localhost:5000/app:v2"), Some("v2"));
    }
}
