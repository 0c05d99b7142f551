//! `berth image` through the runtime boundary.

use std::path::Path;

use berth_runtime::{ImageInfo, ImageService, RuntimeError};

use crate::Containerd;

impl ImageService for Containerd {
    async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        Containerd::list_images(self).await
    }

    async fn import_image(&self, path: &Path) -> Result<Vec<ImageInfo>, RuntimeError> {
        self.import_archive(path).await
    }

    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        Containerd::remove_image(self, reference).await
    }
}
