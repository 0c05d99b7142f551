//! Events outlive an agent restart, as a kubelet's outlive its restart in the
//! API server: the store's events are written to `<root-dir>/events.json` a
//! few seconds after they change and once more at shutdown, and are read
//! back at start (minus those past the one-hour TTL).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::store::PodStore;

/// How long a change may wait to be written: what a crash can lose.
const SAVE_EVERY: Duration = Duration::from_secs(5);

pub fn path(root_dir: &Path) -> PathBuf {
    root_dir.join("events.json")
}

/// Puts the saved events back into `store`. An unreadable file is reported
/// and left for the next save to replace: events are history, not state.
pub fn load(store: &PodStore, path: &Path) {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            warn!(file = %path.display(), "saved events not read: {e}");
            return;
        }
    };
    match serde_json::from_slice::<Vec<Event>>(&bytes) {
        Ok(events) => {
            debug!(file = %path.display(), events = events.len(), "restoring saved events");
            store.restore_events(events);
        }
        Err(e) => warn!(file = %path.display(), "saved events not read: {e}"),
    }
}

/// Writes the store's events if they changed since `saved` (a version);
/// returns the version now on disk.
pub async fn save(store: &PodStore, path: &Path, saved: u64) -> u64 {
    if store.events_version() == saved {
        return saved;
    }
    let (version, events) = store.events_snapshot();
    let path = path.to_owned();
    let written = tokio::task::spawn_blocking(move || write(&path, &events)).await;
    match written {
        Ok(Ok(())) => version,
        Ok(Err(e)) => {
            warn!("save events: {e}");
            saved
        }
        Err(e) => {
            warn!("save events: {e}");
            saved
        }
    }
}

/// Whole or not at all (a crash mid-write leaves the previous file), and
/// root's alone: event messages can carry what pods print.
fn write(path: &Path, events: &[Event]) -> io::Result<()> {
    berth_runtime::files::write_private(path, &serde_json::to_vec(events)?)
}

/// Saves changed events every few seconds until `stop`; returns the version
/// on disk, for the final save.
pub async fn run(store: Arc<PodStore>, path: PathBuf, stop: CancellationToken) -> u64 {
    let mut saved = store.events_version();
    let mut every = crate::periodic::Every::new(SAVE_EVERY, &stop);
    while every.tick().await {
        saved = save(&store, &path, saved).await;
    }
    saved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_written_are_read_back_and_a_bad_file_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        let store = PodStore::new(tokio::sync::mpsc::unbounded_channel().0);
        store.node_event(
            "node-1",
            berth_pod::EventType::Warning,
            "FreeDiskSpaceFailed",
            "full".into(),
        );
        let version = save(&store, &path, 0).await;
        assert_eq!(version, store.events_version());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Unchanged: nothing to write.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(save(&store, &path, version).await, version);
        assert!(!path.exists());
        assert_eq!(save(&store, &path, 0).await, version);

        let restored = PodStore::new(tokio::sync::mpsc::unbounded_channel().0);
        load(&restored, &path);
        // As the API shows them (times to the second).
        let json = |s: &PodStore| serde_json::to_value(s.events(None)).unwrap();
        assert_eq!(json(&restored), json(&store));

        std::fs::write(&path, "{not json").unwrap();
        let empty = PodStore::new(tokio::sync::mpsc::unbounded_channel().0);
        load(&empty, &path);
        assert!(empty.events(None).is_empty());
        load(&empty, &dir.path().join("absent.json"));
        assert!(empty.events(None).is_empty());
    }
}
