//! Resolutions already made, so that an image status costs one Images.Get.
//!
//! Everything derived from a target digest is content-addressed, and the top
//! snapshot is kept by the config's GC label while the image exists; only
//! images found unpacked are remembered. Entries live on the instance, one
//! containerd and namespace, since snapshots live there.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_runtime::ImageInfo;

use super::resolve::Resolved;
use crate::Containerd;

#[derive(Clone)]
pub(crate) struct Entry {
    info: ImageInfo,
    top: String,
}

/// Unpacked images by the digest of their record's target.
pub(crate) type Resolutions = Mutex<HashMap<String, Entry>>;

impl Containerd {
    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        crate::client::lock(&self.state.resolved)
    }

    /// Remembers an unpacked image by the digest of its record's target.
    pub(super) fn remember(&self, target_digest: &str, image: &Resolved) {
        let entry = Entry {
            info: image.info(""),
            top: image.top().to_string(),
        };
        self.cache().insert(target_digest.to_string(), entry);
    }

    /// Forgets a target whose record is gone: GC may take its snapshots.
    pub(super) fn forget(&self, target_digest: &str) {
        self.cache().remove(target_digest);
    }

    /// The image a target resolves to, named `reference`, if remembered.
    pub(super) fn recall(&self, target_digest: &str, reference: &str) -> Option<ImageInfo> {
        let entry = self.cache().get(target_digest)?.clone();
        Some(ImageInfo {
            reference: reference.to_string(),
            ..entry.info
        })
    }

    /// The top chain ID of a remembered manifest.
    pub(super) fn recall_top(&self, manifest_digest: &str) -> Option<String> {
        self.cache()
            .values()
            .find(|e| e.info.digest == manifest_digest)
            .map(|e| e.top.clone())
    }
}
