//! Images: client-side import (containerd 1.6 has no server-side import or
//! pull), resolution of a reference to its config and top snapshot, listing,
//! and the built-in pause image.

use berth_runtime::{ImageInfo, RuntimeError};

use crate::Containerd;

impl Containerd {
    /// The image as present in containerd (unpacked), or `None`.
    pub async fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        let _ = reference;
        todo!("image_status")
    }

    /// The top snapshot (chain ID) a container of this image is prepared on.
    pub(crate) async fn snapshot_parent(&self, image: &ImageInfo) -> Result<String, RuntimeError> {
        let _ = image;
        todo!("snapshot_parent")
    }

    /// The pause image, imported from the built-in one when absent (or the
    /// configured `--pod-infra-image`, which must be present).
    pub(crate) async fn pause_image(&self) -> Result<ImageInfo, RuntimeError> {
        todo!("pause_image")
    }

    /// Imports an OCI image layout tar or a docker-archive tar, unpacks it and
    /// returns the images it named.
    pub async fn import_archive(&self, path: &std::path::Path) -> Result<Vec<ImageInfo>, RuntimeError> {
        let _ = path;
        todo!("import_archive")
    }

    /// Every image in the namespace.
    pub async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        todo!("list_images")
    }
}
