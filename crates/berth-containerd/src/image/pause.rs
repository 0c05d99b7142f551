//! The built-in pause image: a tiny static program (pause/pause.c, built by
//! build.rs) in a one-layer image named after the program's hash.

use std::sync::LazyLock;

use berth_runtime::{ImageInfo, RuntimeError, RuntimeErrorKind};
use sha2::{Digest, Sha256};

use crate::archive::ImageBuilder;
use crate::Containerd;

static PAUSE_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

static PAUSE_REFERENCE: LazyLock<String> = LazyLock::new(|| {
    let hash = hex::encode(Sha256::digest(PAUSE_BINARY));
    format!("berth.local/pause:{}", &hash[..12])
});

/// The reference of the built-in pause image; it changes with the program.
pub(crate) fn builtin_pause_reference() -> &'static str {
    &PAUSE_REFERENCE
}

fn builtin_pause_archive() -> std::io::Result<Vec<u8>> {
    let mut archive = Vec::new();
    ImageBuilder::new(builtin_pause_reference())
        .file("/pause", PAUSE_BINARY.to_vec(), 0o755)
        .entrypoint(vec!["/pause".to_string()])
        .write_oci_archive(&mut archive)?;
    Ok(archive)
}

impl Containerd {
    pub(super) async fn ensure_pause_image(&self) -> Result<ImageInfo, RuntimeError> {
        if let Some(reference) = &self.config.pod_infra_image {
            return self.image_status(reference).await?.ok_or_else(|| {
                RuntimeError::new(
                    RuntimeErrorKind::ImageNotPresent,
                    format!("pod infra image {reference} is not present; import it first"),
                )
            });
        }
        let reference = builtin_pause_reference();
        if let Some(image) = self.image_status(reference).await? {
            return Ok(image);
        }
        tracing::debug!(reference, "importing the built-in pause image");
        let archive = builtin_pause_archive()
            .map_err(|e| RuntimeError::other(format!("build the pause image: {e}")))?;
        self.import_tar(std::io::Cursor::new(archive))
            .await?
            .into_iter()
            .find(|image| image.reference == reference)
            .ok_or_else(|| RuntimeError::other("the pause image archive does not name it"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_program_is_a_static_elf() {
        assert!(PAUSE_BINARY.starts_with(b"\x7fELF"));
        // No interpreter: it runs in an image with nothing else.
        assert!(!PAUSE_BINARY.windows(14).any(|w| w == b"/lib64/ld-linu"));
        assert!(builtin_pause_reference().starts_with("berth.local/pause:"));
    }
}
