//! Client-side pull (containerd 1.6 has none): the manifest is always
//! resolved at the registry (or a mirror), the node's platform picked from an
//! index, blobs not in the content store yet streamed into it, then the
//! import's path: GC labels, unpack, image record. All under one lease.

use std::collections::HashMap;

use berth_runtime::{ImageInfo, PullProgress, RegistryCredentials, RuntimeError, RuntimeErrorKind};
use containerd_client::types::Descriptor as CdDescriptor;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use oci_client::Reference;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::content::{Upload, CHUNK};
use super::flight::Progress;
use super::normalize_reference;
use super::registry::Source;
use super::resolve::{
    no_platform, node_arch, pick_platform, INDEX_MEDIA_TYPES, MANIFEST_TYPES, MAX_INDEX_DEPTH,
    OCI_INDEX, OCI_MANIFEST,
};
use crate::client::Svc;
use crate::Containerd;

/// Blobs fetched at once (containerd's default is 3 as well).
const PARALLEL_FETCHES: usize = 3;

/// The media type a manifest document declares, or what its shape says.
fn media_type_of(document: &[u8]) -> Result<String, RuntimeError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let head: Head = serde_json::from_slice(document)
        .map_err(|e| RuntimeError::other(format!("malformed manifest: {e}")))?;
    if head.schema_version != Some(2) {
        return Err(RuntimeError::other(format!(
            "unsupported manifest schema version {:?} (only 2 is)",
            head.schema_version
        )));
    }
    let media_type = match head.media_type {
        Some(declared) => declared,
        None if head.manifests.is_some() => OCI_INDEX.to_string(),
        None => OCI_MANIFEST.to_string(),
    };
    if !MANIFEST_TYPES.contains(&media_type.as_str()) {
        return Err(RuntimeError::other(format!(
            "unsupported manifest media type {media_type}"
        )));
    }
    Ok(media_type)
}

/// `base` (a reference or a host) keyed by the credentials used with it:
/// a digest tells credentials apart without carrying them (keys are logged).
pub(super) fn credentials_key(base: &str, credentials: Option<&RegistryCredentials>) -> String {
    use std::hash::{Hash, Hasher};
    let Some(credentials) = credentials else {
        return base.to_string();
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    credentials.hash(&mut hasher);
    format!("{base} auth:{:016x}", hasher.finish())
}

fn in_words(context: String) -> impl FnOnce(RuntimeError) -> RuntimeError {
    move |e| RuntimeError::new(e.kind, format!("{context}: {}", e.message))
}

impl Containerd {
    /// Pulls `image` (normalized: a missing tag is `latest`, short names are
    /// Docker Hub's) and returns it unpacked. Concurrent pulls of one
    /// reference share one fetch.
    pub async fn pull_image(
        &self,
        image: &str,
        progress: Option<UnboundedSender<PullProgress>>,
    ) -> Result<ImageInfo, RuntimeError> {
        self.pull_image_with_credentials(image, progress, None)
            .await
    }

    /// `pull_image` with `credentials` for the image's own registry; only
    /// pulls with the same credentials share a fetch.
    pub async fn pull_image_with_credentials(
        &self,
        image: &str,
        progress: Option<UnboundedSender<PullProgress>>,
        credentials: Option<&RegistryCredentials>,
    ) -> Result<ImageInfo, RuntimeError> {
        let name = normalize_reference(image);
        let this = self.clone();
        let key = credentials_key(&name, credentials);
        let credentials = credentials.cloned();
        self.pulls
            .join(&key, progress, move |hub| async move {
                this.pull_fresh(&name, credentials.as_ref(), hub).await
            })
            .await
    }

    async fn pull_fresh(
        &self,
        name: &str,
        credentials: Option<&RegistryCredentials>,
        progress: Progress,
    ) -> Result<ImageInfo, RuntimeError> {
        let started = Instant::now();
        let failed = in_words(format!("failed to pull and unpack image \"{name}\""));
        let reference: Reference = name.parse().map_err(|e| {
            RuntimeError::new(
                RuntimeErrorKind::InvalidSpec,
                format!("invalid image name \"{name}\": {e}"),
            )
        })?;
        let lease = match self.create_lease().await {
            Ok(lease) => lease,
            Err(e) => return Err(failed(e)),
        };
        let pulled = self
            .pull_leased(&lease, name, &reference, credentials, &progress)
            .await;
        self.delete_lease(&lease).await;
        let image = pulled.map_err(failed)?;
        tracing::debug!(image = name, digest = image.digest, elapsed = ?started.elapsed(), "image pulled");
        Ok(image)
    }

    async fn pull_leased(
        &self,
        lease: &str,
        name: &str,
        reference: &Reference,
        credentials: Option<&RegistryCredentials>,
        progress: &Progress,
    ) -> Result<ImageInfo, RuntimeError> {
        let svc = self.svc_leased(lease);
        let (source, top, top_digest) = self
            .registries
            .resolve(reference, credentials)
            .await
            .map_err(in_words(format!("failed to resolve reference \"{name}\"")))?;
        let top_type = media_type_of(&top)?;
        self.store_document(&svc, lease, &top_digest, &top).await?;

        // Down the indexes to the node's manifest.
        let (mut media_type, mut digest, mut document) =
            (top_type.clone(), top_digest.clone(), top.to_vec());
        for depth in 0.. {
            if !INDEX_MEDIA_TYPES.contains(&media_type.as_str()) {
                break;
            }
            if depth == MAX_INDEX_DEPTH {
                return Err(RuntimeError::other(format!(
                    "{digest}: indexes nest too deep"
                )));
            }
            let index = ImageIndex::from_reader(document.as_slice())
                .map_err(|e| RuntimeError::other(format!("index {digest}: {e}")))?;
            let arch = node_arch();
            let chosen = pick_platform(&index, &arch)
                .ok_or_else(|| RuntimeError::other(format!("{digest}: {}", no_platform(&arch))))?;
            (media_type, digest) = (chosen.media_type().to_string(), chosen.digest().to_string());
            document = if self.have_content(lease, &digest).await? {
                self.read_content(&digest).await?
            } else {
                let fetched = source.manifest(&digest).await?;
                self.store_document(&svc, lease, &digest, &fetched).await?;
                fetched.to_vec()
            };
        }
        let manifest = ImageManifest::from_reader(document.as_slice())
            .map_err(|e| RuntimeError::other(format!("manifest {digest}: {e}")))?;

        // Boxed: the stream of borrowing futures is otherwise not provably Send.
        let fetches: Vec<BoxFuture<'_, Result<(), RuntimeError>>> =
            std::iter::once(manifest.config())
                .chain(manifest.layers())
                .map(|blob| {
                    self.fetch_blob(&svc, lease, &source, blob.clone(), progress)
                        .boxed()
                })
                .collect();
        futures::stream::iter(fetches)
            .buffer_unordered(PARALLEL_FETCHES)
            .try_collect::<Vec<()>>()
            .await?;

        // From here on, as an import: everything is in the content store.
        let image = self.prepare_image(lease, &top_type, &top_digest).await?;
        let target = CdDescriptor {
            media_type: top_type,
            digest: top_digest,
            size: top.len() as i64,
            annotations: HashMap::new(),
        };
        self.put_image_record(name, target).await?;
        Ok(image.info(name))
    }

    /// Whether the store has the blob, which is then kept by `lease`. Leased
    /// first: GC may be taking a blob that the last, failed pull left
    /// unreferenced, and once in the lease it either stays or is seen gone.
    async fn have_content(&self, lease: &str, digest: &str) -> Result<bool, RuntimeError> {
        self.lease_content(lease, digest).await?;
        self.content_exists(digest).await
    }

    /// Stores a fetched manifest or index unless the store has it.
    async fn store_document(
        &self,
        svc: &Svc,
        lease: &str,
        digest: &str,
        document: &[u8],
    ) -> Result<(), RuntimeError> {
        if self.have_content(lease, digest).await? {
            return Ok(());
        }
        let written = Self::write_bytes(svc.clone(), "manifest", document).await?;
        if written != digest {
            return Err(RuntimeError::other(format!(
                "manifest {digest} arrived as {written}"
            )));
        }
        Ok(())
    }

    /// Streams a blob from the registry into the content store, unless the
    /// store has it. A fetch that fails leaves no ingest behind.
    async fn fetch_blob(
        &self,
        svc: &Svc,
        lease: &str,
        source: &Source,
        blob: Descriptor,
        progress: &Progress,
    ) -> Result<(), RuntimeError> {
        let digest = blob.digest().to_string();
        let total = blob.size();
        if self.have_content(lease, &digest).await? {
            progress.report(&digest, total, total);
            return Ok(());
        }
        progress.report(&digest, 0, total);
        let mut upload = Upload::new("pull", total, Some(&digest));
        let ingest_ref = upload.ingest_ref().to_string();
        let (requests, pending) = mpsc::channel(2);
        let writer = tokio::spawn(Self::write_content(
            svc.clone(),
            ReceiverStream::new(pending),
        ));

        let fetched = async {
            let mut body = source.blob(&digest).await?;
            let mut chunk = Vec::with_capacity(CHUNK);
            let mut done = 0u64;
            while let Some(bytes) = body.next().await {
                let bytes = bytes?;
                done += bytes.len() as u64;
                if done > total {
                    return Err(RuntimeError::other(format!(
                        "blob {digest} is bigger than its {total} bytes"
                    )));
                }
                chunk.extend_from_slice(&bytes);
                if chunk.len() >= CHUNK {
                    let data = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    if requests.send(upload.data(data)).await.is_err() {
                        // The writer ended early: its result says why.
                        return Ok(());
                    }
                    progress.report(&digest, done, total);
                }
            }
            if done != total {
                return Err(RuntimeError::other(format!(
                    "blob {digest} ended after {done} of {total} bytes"
                )));
            }
            if !chunk.is_empty() {
                let _ = requests.send(upload.data(chunk)).await;
            }
            let _ = requests.send(upload.commit(&digest)).await;
            Ok(())
        }
        .await;
        drop(requests);
        let written = writer
            .await
            .unwrap_or_else(|e| Err(RuntimeError::other(format!("content writer failed: {e}"))));
        match fetched.and(written) {
            Ok(()) => {
                progress.report(&digest, total, total);
                tracing::debug!(
                    blob = digest,
                    size = total,
                    host = source.host,
                    "blob fetched"
                );
                Ok(())
            }
            Err(e) => {
                self.abort_ingest(&ingest_ref).await;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::resolve::DOCKER_MANIFEST;

    #[test]
    fn media_types_from_the_document() {
        let doc = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
        let docker = doc(serde_json::json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST}));
        assert_eq!(media_type_of(&docker).unwrap(), DOCKER_MANIFEST);
        let bare_index = doc(serde_json::json!({"schemaVersion": 2, "manifests": []}));
        assert_eq!(media_type_of(&bare_index).unwrap(), OCI_INDEX);
        let bare = doc(serde_json::json!({"schemaVersion": 2, "layers": []}));
        assert_eq!(media_type_of(&bare).unwrap(), OCI_MANIFEST);
        let v1 = doc(serde_json::json!({"schemaVersion": 1}));
        assert!(media_type_of(&v1)
            .unwrap_err()
            .message
            .contains("schema version"));
        let odd = doc(serde_json::json!({"schemaVersion": 2, "mediaType": "text/plain"}));
        assert!(media_type_of(&odd)
            .unwrap_err()
            .message
            .contains("text/plain"));
    }
}
