//! Resolutions already made, so that an image status costs one Images.Get.
//!
//! Everything derived from a target digest is content-addressed, and the top
//! snapshot is kept by the config's GC label while the image exists; only
//! images found unpacked are remembered. Entries are per containerd socket
//! and namespace, since snapshots live there.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

use berth_runtime::ImageInfo;

use super::resolve::Resolved;
use crate::Containerd;

#[derive(Clone)]
struct Entry {
    info: ImageInfo,
    top: String,
}

type Key = (PathBuf, String, String);

static RESOLVED: LazyLock<Mutex<HashMap<Key, Entry>>> = LazyLock::new(Default::default);

fn cache() -> std::sync::MutexGuard<'static, HashMap<Key, Entry>> {
    // A panic while holding the lock cannot leave a half-written entry.
    RESOLVED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Containerd {
    fn cache_key(&self, target_digest: &str) -> Key {
        (
            self.config.socket.clone(),
            self.config.namespace.clone(),
            target_digest.to_string(),
        )
    }

    /// Remembers an unpacked image by the digest of its record's target.
    pub(super) fn remember(&self, target_digest: &str, image: &Resolved) {
        let entry = Entry {
            info: image.info(""),
            top: image.top().to_string(),
        };
        cache().insert(self.cache_key(target_digest), entry);
    }

    /// Forgets a target whose record is gone: GC may take its snapshots.
    pub(super) fn forget(&self, target_digest: &str) {
        cache().remove(&self.cache_key(target_digest));
    }

    /// The image a target resolves to, named `reference`, if remembered.
    pub(super) fn recall(&self, target_digest: &str, reference: &str) -> Option<ImageInfo> {
        let entry = cache().get(&self.cache_key(target_digest))?.clone();
        Some(ImageInfo {
            reference: reference.to_string(),
            ..entry.info
        })
    }

    /// The top chain ID of a remembered manifest.
    pub(super) fn recall_top(&self, manifest_digest: &str) -> Option<String> {
        let (socket, namespace) = (&self.config.socket, &self.config.namespace);
        cache()
            .iter()
            .find(|((s, n, _), e)| {
                s == socket && n == namespace && e.info.digest == manifest_digest
            })
            .map(|(_, e)| e.top.clone())
    }
}
