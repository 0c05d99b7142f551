//! A pod that failed as a whole (evicted, past its active deadline) stays
//! failed across an agent restart, as the API server keeps its status for a
//! restarted kubelet: the worker records the reason and message in the
//! pod's directory when it fails, and a worker that adopts the pod takes
//! them back instead of running its containers again.

use std::path::{Path, PathBuf};

const FILE: &str = "failure.json";

fn path(pod_dir: &Path) -> PathBuf {
    pod_dir.join(FILE)
}

/// Records the pod's `reason` and `message` (root's alone: 0600). The
/// pod's directory must exist: none is made.
pub(crate) fn save(pod_dir: &Path, reason: &str, message: &str) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(&(reason, message)).map_err(std::io::Error::other)?;
    berth_runtime::files::write_private(&path(pod_dir), &bytes)
}

/// The recorded reason and message; none when there are none or they are
/// unreadable.
pub(crate) fn load(pod_dir: &Path) -> Option<(String, String)> {
    let bytes = std::fs::read(path(pod_dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), None);
        save(dir.path(), "Evicted", "over \"5Mi\". ").unwrap();
        assert_eq!(
            load(dir.path()),
            Some(("Evicted".to_string(), "over \"5Mi\". ".to_string()))
        );
        std::fs::write(path(dir.path()), "garbage").unwrap();
        assert_eq!(load(dir.path()), None);
        assert!(save(&dir.path().join("gone"), "Evicted", "m").is_err());
    }
}
