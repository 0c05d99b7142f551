//! Images: client-side import (containerd 1.6 has no server-side import or
//! pull), resolution of a reference to its config and top snapshot, listing,
//! and the built-in pause image.

mod cache;
mod content;
mod flight;
mod import;
mod pause;
mod pull;
mod records;
mod reference;
mod registry;
pub(crate) mod registry_config;
mod resolve;
mod unpack;

use berth_runtime::{ImageInfo, RuntimeError, RuntimeErrorKind};
use containerd_client::types::Descriptor;
use oci_spec::image::MediaType;

pub(crate) use cache::Resolutions;
pub(crate) use content::{EXPIRE_LABEL, LEASE_TTL};
pub(crate) use flight::Flights;
pub use reference::normalize_reference;
pub(crate) use registry::Registries;
pub use registry_config::{Credentials, RegistryConfig, RegistryConfigError, RegistryHost};

use crate::Containerd;

/// The snapshotter images are unpacked for.
pub(crate) const SNAPSHOTTER: &str = "overlayfs";

/// An OCI descriptor as containerd's API carries it (annotations dropped).
fn descriptor(desc: &oci_spec::image::Descriptor) -> Descriptor {
    Descriptor {
        media_type: desc.media_type().to_string(),
        digest: desc.digest().to_string(),
        size: desc.size() as i64,
        annotations: Default::default(),
    }
}

impl Containerd {
    /// The image as present in containerd (unpacked), or `None`.
    pub async fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        let name = normalize_reference(reference);
        match self.image_target(&name).await? {
            Some(target) => self.unpacked_image(&name, &target).await,
            None => Ok(None),
        }
    }

    /// The top snapshot (chain ID) a container of this image is prepared on.
    pub(crate) async fn snapshot_parent(&self, image: &ImageInfo) -> Result<String, RuntimeError> {
        if let Some(top) = self.recall_top(&image.digest) {
            return Ok(top);
        }
        let manifest = MediaType::ImageManifest.to_string();
        Ok(self
            .resolve(&manifest, &image.digest)
            .await?
            .top()
            .to_string())
    }

    /// The pause image, imported from the built-in one when absent (or the
    /// configured `--pod-infra-image`, which must be present); every sandbox
    /// uses it.
    pub async fn pause_image(&self) -> Result<ImageInfo, RuntimeError> {
        self.ensure_pause_image().await
    }

    /// Imports an OCI image layout tar or a docker-archive tar, unpacks it and
    /// returns the images it named.
    pub async fn import_archive(
        &self,
        path: &std::path::Path,
    ) -> Result<Vec<ImageInfo>, RuntimeError> {
        let file = std::fs::File::open(path).map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => RuntimeErrorKind::NotFound,
                _ => RuntimeErrorKind::Other,
            };
            RuntimeError::new(kind, format!("open {}: {e}", path.display()))
        })?;
        self.import_tar(std::io::BufReader::new(file)).await
    }

    /// Removes the image record `reference` names; `NotFound` without one.
    /// containerd's GC then takes what no other image uses.
    pub async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        let name = normalize_reference(reference);
        let target = self.image_target(&name).await?;
        self.delete_image_record(&name).await?;
        if let Some(target) = target {
            self.forget(&target.digest);
        }
        tracing::debug!(image = name, "image removed");
        Ok(())
    }

    /// Every image in the namespace.
    pub async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        let mut images = Vec::new();
        for record in self.image_records().await? {
            let Some(target) = record.target else {
                continue;
            };
            match self.unpacked_image(&record.name, &target).await {
                Ok(Some(image)) => images.push(image),
                Ok(None) => tracing::debug!(image = record.name, "skipping an image not unpacked"),
                Err(e) => {
                    tracing::debug!(image = record.name, error = %e, "skipping an unresolvable image")
                }
            }
        }
        Ok(images)
    }

    /// The image a record's target resolves to, if its content is present and
    /// its top snapshot committed.
    pub(super) async fn unpacked_image(
        &self,
        name: &str,
        target: &Descriptor,
    ) -> Result<Option<ImageInfo>, RuntimeError> {
        if let Some(image) = self.recall(&target.digest, name) {
            return Ok(Some(image));
        }
        let image = match self.resolve(&target.media_type, &target.digest).await {
            Ok(image) => image,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        if !self.snapshot_exists(image.top()).await? {
            return Ok(None);
        }
        self.remember(&target.digest, &image);
        Ok(Some(image.info(name)))
    }
}
