//! Client-side import of an OCI image layout or `docker save` tar: blobs
//! stream into the content store, get their GC labels, are unpacked, and the
//! named image records are pointed at them; all under one lease.

use std::collections::HashMap;
use std::io::{self, Read};

use berth_runtime::{ImageInfo, RuntimeError};
use containerd_client::services::v1::WriteContentRequest;
use containerd_client::types::Descriptor as CdDescriptor;
use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifestBuilder, MediaType};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::content::{Upload, CHUNK};
use super::resolve::Resolved;
use super::{descriptor, normalize_reference};
use crate::archive::{canonical_json, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::client::Svc;
use crate::Containerd;

/// Archive members that are documents, not blobs.
const DOCUMENTS: [&str; 4] = ["index.json", "manifest.json", "oci-layout", "repositories"];
/// Bigger "documents" are garbage, not something to hold in memory.
const MAX_DOCUMENT: u64 = 16 << 20;

/// One blob on its way from the archive reader to Content.Write.
type Uploads = mpsc::Sender<mpsc::Receiver<WriteContentRequest>>;

/// An archive's documents, and the stored blob behind each other member.
#[derive(Default)]
struct Archive {
    documents: HashMap<String, Vec<u8>>,
    blobs: HashMap<String, Blob>,
}

struct Blob {
    digest: Digest,
    size: u64,
    gzip: bool,
}

/// One image of a docker archive's `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn malformed(what: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::other(format!("image archive: {what}"))
}

/// What is wrong with an archive's JSON document, by position only: the
/// decoder's message can quote the document's content.
fn bad_document(name: &str, error: &serde_json::Error) -> RuntimeError {
    use serde_json::error::Category;
    let problem = match error.classify() {
        Category::Syntax => "is not valid JSON",
        Category::Data => "does not have the expected fields and types",
        Category::Eof => "ends early",
        Category::Io => "cannot be read",
    };
    let (line, column) = (error.line(), error.column());
    malformed(format!("{name} {problem} (line {line}, column {column})"))
}

/// A tar reader's error, without the bytes it quotes: the tar crate puts a
/// bad header's fields in its messages, and the file given to import may
/// be anything (`/etc/shadow`). Errors of the reader itself pass through.
fn tar_error(error: io::Error, entries_read: usize) -> io::Error {
    if error.kind() != io::ErrorKind::Other {
        return error;
    }
    io::Error::other(if entries_read == 0 {
        "not a tar archive (it does not start with a tar header)".to_string()
    } else {
        format!(
            "not a valid tar archive (entry {} is corrupt or truncated)",
            entries_read + 1
        )
    })
}

impl Containerd {
    /// Imports a tar read from `reader` and returns the images it names.
    pub(super) async fn import_tar<R: Read + Send + 'static>(
        &self,
        reader: R,
    ) -> Result<Vec<ImageInfo>, RuntimeError> {
        let started = Instant::now();
        let lease = self.create_lease().await?;
        let imported = self.import_leased(&lease, reader).await;
        self.delete_lease(&lease).await;
        if let Ok(images) = &imported {
            let names: Vec<_> = images.iter().map(|i| &i.reference).collect();
            tracing::debug!(?names, elapsed = ?started.elapsed(), "archive imported");
        }
        imported
    }

    async fn import_leased<R: Read + Send + 'static>(
        &self,
        lease: &str,
        reader: R,
    ) -> Result<Vec<ImageInfo>, RuntimeError> {
        let svc = self.svc_leased(lease);
        let (uploads, mut pending) = mpsc::channel(1);
        let reading = tokio::task::spawn_blocking(move || read_archive(reader, uploads));
        // Each commit waits for an fsync: let it overlap with the next blob.
        let mut writes = tokio::task::JoinSet::new();
        while let Some(requests) = pending.recv().await {
            writes.spawn(Self::write_content(
                svc.clone(),
                ReceiverStream::new(requests),
            ));
        }
        let archive = reading
            .await
            .map_err(|e| malformed(format!("reader failed: {e}")))?
            .map_err(malformed)?;
        while let Some(written) = writes.join_next().await {
            written.map_err(|e| malformed(format!("writer failed: {e}")))??;
        }

        let named = if let Some(index) = archive.documents.get("index.json") {
            oci_targets(index)?
        } else if let Some(manifest) = archive.documents.get("manifest.json") {
            docker_targets(&svc, manifest, &archive.blobs).await?
        } else {
            return Err(malformed("neither an OCI layout nor a docker archive"));
        };
        if named.is_empty() {
            return Err(malformed("it names no image"));
        }

        let mut images = Vec::with_capacity(named.len());
        let mut prepared: HashMap<String, Resolved> = HashMap::new();
        for (name, target) in named {
            // Imported before: content, labels and snapshots are in place.
            let current = self.image_target(&name).await?;
            if current.is_some_and(|t| t.digest == target.digest) {
                if let Some(image) = self.unpacked_image(&name, &target).await? {
                    images.push(image);
                    continue;
                }
            }
            if !prepared.contains_key(&target.digest) {
                let image = self
                    .prepare_image(lease, &target.media_type, &target.digest)
                    .await?;
                prepared.insert(target.digest.clone(), image);
            }
            let image = prepared[&target.digest].info(&name);
            self.put_image_record(&name, target).await?;
            images.push(image);
        }
        Ok(images)
    }

    /// Makes an image whose content is all in the store usable under
    /// `lease`: GC labels, unpacked layers, remembered resolution. The image
    /// record comes after.
    pub(super) async fn prepare_image(
        &self,
        lease: &str,
        media_type: &str,
        digest: &str,
    ) -> Result<Resolved, RuntimeError> {
        let image = self.resolve(media_type, digest).await?;
        self.label_image_content(&image).await?;
        self.unpack(lease, &image).await?;
        self.remember(digest, &image);
        Ok(image)
    }

    /// The GC references that keep an image's content and snapshots alive
    /// from its record on (the labels `ctr import` writes).
    pub(super) async fn label_image_content(&self, image: &Resolved) -> Result<(), RuntimeError> {
        for (index, manifests) in &image.indexes {
            let labels = manifests
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("containerd.io/gc.ref.content.m.{i}"), m.clone()));
            self.label_content(index, labels.collect()).await?;
        }
        let config = image.manifest.config().digest().to_string();
        let mut labels = HashMap::from([(
            "containerd.io/gc.ref.content.config".to_string(),
            config.clone(),
        )]);
        for (i, layer) in image.manifest.layers().iter().enumerate() {
            labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                layer.digest().to_string(),
            );
        }
        self.label_content(&image.manifest_digest, labels).await?;
        let snapshot = (
            "containerd.io/gc.ref.snapshot.overlayfs".to_string(),
            image.top().to_string(),
        );
        self.label_content(&config, [snapshot].into()).await?;
        let diff_ids = image.config.rootfs().diff_ids();
        for (layer, diff_id) in image.manifest.layers().iter().zip(diff_ids) {
            let uncompressed = ("containerd.io/uncompressed".to_string(), diff_id.clone());
            self.label_content(layer.digest().as_ref(), [uncompressed].into())
                .await?;
        }
        Ok(())
    }
}

/// The images an OCI layout's `index.json` names: by containerd's name
/// annotation, else by a `ref.name` that is a whole reference (not a bare tag).
fn oci_targets(index: &[u8]) -> Result<Vec<(String, CdDescriptor)>, RuntimeError> {
    let index: ImageIndex =
        serde_json::from_slice(index).map_err(|e| bad_document("index.json", &e))?;
    let mut named = Vec::new();
    for desc in index.manifests() {
        let annotations = desc.annotations().clone().unwrap_or_default();
        let name = annotations.get(ANNOTATION_IMAGE_NAME).or_else(|| {
            annotations
                .get(ANNOTATION_REF_NAME)
                .filter(|r| r.contains(['/', ':', '@']))
        });
        match name {
            Some(name) => named.push((normalize_reference(name), descriptor(desc))),
            None => tracing::debug!(digest = %desc.digest(), "skipping an unnamed manifest"),
        }
    }
    Ok(named)
}

/// The images of a docker archive, each given an OCI manifest stored in the
/// content store (docker archives carry none).
async fn docker_targets(
    svc: &Svc,
    manifest_json: &[u8],
    blobs: &HashMap<String, Blob>,
) -> Result<Vec<(String, CdDescriptor)>, RuntimeError> {
    let images: Vec<DockerImage> =
        serde_json::from_slice(manifest_json).map_err(|e| bad_document("manifest.json", &e))?;
    let blob = |path: &str| {
        blobs
            .get(path)
            .ok_or_else(|| malformed(format!("{path} is missing")))
    };
    let mut named = Vec::new();
    for image in images {
        let config = blob(&image.config)?;
        let layers = image
            .layers
            .iter()
            .map(|path| {
                let layer = blob(path)?;
                let media_type = if layer.gzip {
                    MediaType::ImageLayerGzip
                } else {
                    MediaType::ImageLayer
                };
                Ok(Descriptor::new(
                    media_type,
                    layer.size,
                    layer.digest.clone(),
                ))
            })
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config.size,
                config.digest.clone(),
            ))
            .layers(layers)
            .build()
            .map_err(malformed)?;
        let manifest = canonical_json(&manifest);
        let target = CdDescriptor {
            media_type: MediaType::ImageManifest.to_string(),
            digest: Containerd::write_bytes(svc.clone(), "manifest", &manifest).await?,
            size: manifest.len() as i64,
            annotations: Default::default(),
        };
        for tag in image.repo_tags.unwrap_or_default() {
            named.push((normalize_reference(&tag), target.clone()));
        }
    }
    Ok(named)
}

/// Reads the tar sequentially (on a blocking thread): documents into memory,
/// every other file streamed to a Content.Write session handed to `uploads`.
fn read_archive(reader: impl Read, uploads: Uploads) -> io::Result<Archive> {
    let mut archive = Archive::default();
    let mut tar = tar::Archive::new(reader);
    for (read, entry) in tar.entries()?.enumerate() {
        let mut entry = entry.map_err(|e| tar_error(e, read))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| tar_error(e, read))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let size = entry.size();
        if DOCUMENTS.contains(&path.as_str()) {
            if size > MAX_DOCUMENT {
                return Err(io::Error::other(format!("{path} is too big")));
            }
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(|e| tar_error(e, read))?;
            archive.documents.insert(path, data);
            continue;
        }

        let expected = path
            .strip_prefix("blobs/sha256/")
            .map(|hex| format!("sha256:{hex}"));
        let mut upload = Upload::new("import", size, expected.as_deref());
        let (requests, pending) = mpsc::channel(2);
        uploads
            .blocking_send(pending)
            .map_err(|_| io::Error::other("import aborted"))?;
        // The session ends early when containerd has the blob already; the
        // archive is still read through, to check it.
        let mut sending = true;
        let mut hasher = Sha256::new();
        let mut gzip = None;
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            (&mut entry)
                .take(CHUNK as u64)
                .read_to_end(&mut chunk)
                .map_err(|e| tar_error(e, read))?;
            if chunk.is_empty() {
                break;
            }
            gzip.get_or_insert(chunk.starts_with(&[0x1f, 0x8b]));
            hasher.update(&chunk);
            sending = sending && requests.blocking_send(upload.data(chunk)).is_ok();
        }
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        if expected.as_ref().is_some_and(|e| *e != digest) {
            return Err(io::Error::other(format!(
                "{path} does not match its digest"
            )));
        }
        if sending {
            let _ = requests.blocking_send(upload.commit(&digest));
        }
        let blob = Blob {
            digest: digest.parse().map_err(io::Error::other)?,
            size,
            gzip: gzip.unwrap_or(false),
        };
        archive.blobs.insert(path, blob);
    }
    Ok(archive)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI";

    fn read_error(bytes: Vec<u8>) -> String {
        let (uploads, _pending) = mpsc::channel(8);
        match read_archive(io::Cursor::new(bytes), uploads) {
            Ok(_) => panic!("read as an archive"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_file_that_is_not_an_archive_is_not_echoed() {
        let cases = [
            format!("{SECRET}\n").repeat(40).into_bytes(),
            SECRET.as_bytes().to_vec(),
            [
                b"x".repeat(100),
                vec![0; 412],
                SECRET.repeat(20).into_bytes(),
            ]
            .concat(),
        ];
        for bytes in cases {
            let error = read_error(bytes);
            assert_eq!(
                error,
                "not a tar archive (it does not start with a tar header)"
            );
        }
    }

    #[test]
    fn a_corrupt_entry_after_a_good_one_is_not_echoed() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_cksum();
        tar.append_data(&mut header, "oci-layout", &b"{}\n"[..])
            .unwrap();
        let mut bytes = tar.into_inner().unwrap();
        bytes.truncate(1024);
        bytes.extend(format!("{SECRET}\n").repeat(20).into_bytes());
        let error = read_error(bytes);
        assert_eq!(
            error,
            "not a valid tar archive (entry 2 is corrupt or truncated)"
        );
    }

    #[test]
    fn bad_documents_are_described_by_position() {
        let text = format!("[{{\"Config\": 1, \"Layers\": [\"{SECRET}\"]}}]");
        let Err(error) = serde_json::from_slice::<Vec<DockerImage>>(text.as_bytes()) else {
            panic!("decoded");
        };
        let message = bad_document("manifest.json", &error).to_string();
        assert!(!message.contains("AWS"), "{message}");
        assert!(
            message.contains(
                "manifest.json does not have the expected fields and types (line 1, column"
            ),
            "{message}"
        );
        let error = serde_json::from_slice::<ImageIndex>(SECRET.as_bytes()).unwrap_err();
        let message = bad_document("index.json", &error).to_string();
        assert!(!message.contains("AWS"), "{message}");
        assert!(
            message.contains("index.json is not valid JSON (line 1, column"),
            "{message}"
        );
    }
}
