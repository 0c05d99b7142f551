//! The static pod source: the manifest directory, watched with inotify.
//!
//! Like the kubelet's file source, each pod gets a deterministic UID hashed
//! from the node, the file and the decoded pod (so editing a comment keeps the
//! pod, changing the pod replaces it), the name `<name>-<nodeName>`, the
//! namespace `default` when it has none, and the config annotations.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_api::manifest::MAX_MANIFEST_BYTES;
use k8s_openapi::api::core::v1::{Pod, PodStatus, Toleration};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The kubelet's annotation naming where a pod came from.
pub const CONFIG_SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
/// The kubelet's annotation carrying a static pod's hash (its UID).
pub const CONFIG_HASH_ANNOTATION: &str = "kubernetes.io/config.hash";

/// Where a pod came from, as the kubelet marks it (`file`, `api`).
pub(crate) fn config_source(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(CONFIG_SOURCE_ANNOTATION)
        .map(String::as_str)
}

/// A pod from the manifest directory.
pub(crate) fn is_static(pod: &Pod) -> bool {
    config_source(pod) == Some("file")
}

/// How long to wait for more events before reading changed files (editors
/// write a file in several steps).
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A full rescan catches what inotify missed (the kubelet relists every 20 s).
const RESCAN_PERIOD: Duration = Duration::from_secs(20);

/// What changed in the manifest directory, per file.
#[derive(Debug, Clone)]
pub enum ManifestEvent {
    /// The file's current pods (possibly none), defaults applied.
    Pods { path: PathBuf, pods: Vec<Pod> },
    /// The file cannot be read or parsed; its previous pods are left as they were.
    Invalid { path: PathBuf, error: String },
    /// The file is gone (or no longer a manifest).
    Removed { path: PathBuf },
}

/// Whether a directory entry is a manifest: `*.yaml`, `*.yml` or `*.json`,
/// not hidden and not an editor's temporary file.
pub fn is_manifest_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if name.starts_with('.') || name.starts_with('#') || name.ends_with('~') {
        return false;
    }
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Applies the kubelet's static pod defaults to the `index`th pod of `path`.
pub fn static_pod(mut pod: Pod, path: &Path, index: usize, node_name: &str) -> Result<Pod, String> {
    let name = match pod.metadata.name.as_deref() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => return Err(format!("pod {} has no metadata.name", index + 1)),
    };
    let uid = match pod.metadata.uid.as_deref() {
        // The kubelet keeps a UID the manifest sets.
        Some(uid) if !uid.is_empty() => uid.to_owned(),
        _ => static_pod_uid(&pod, path, index, node_name),
    };
    let meta = &mut pod.metadata;
    meta.uid = Some(uid.clone());
    meta.name = Some(format!("{name}-{node_name}"));
    if meta.namespace.as_deref().is_none_or(str::is_empty) {
        meta.namespace = Some("default".into());
    }
    let annotations = meta.annotations.get_or_insert_with(Default::default);
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), uid);
    annotations.insert(CONFIG_SOURCE_ANNOTATION.into(), "file".into());

    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node_name.to_owned());
    // Static pods tolerate every NoExecute taint, so node problems never evict them.
    let tolerate_all = Toleration {
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        ..Toleration::default()
    };
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    if !tolerations.contains(&tolerate_all) {
        tolerations.push(tolerate_all);
    }
    pod.status = Some(PodStatus {
        phase: Some("Pending".into()),
        ..PodStatus::default()
    });
    Ok(pod)
}

/// 32 hex digits over the node, the file and the pod as decoded.
fn static_pod_uid(pod: &Pod, path: &Path, index: usize, node_name: &str) -> String {
    let mut hasher = Sha256::new();
    // Serializing k8s-openapi types is deterministic (maps are ordered).
    hasher.update(serde_json::to_vec(pod).unwrap_or_default());
    hasher.update(format!(
        "host:{node_name}\0file:{}\0index:{index}",
        path.display()
    ));
    hex::encode(&hasher.finalize()[..16])
}

/// Reads one file into the event describing it.
pub async fn read_manifest(path: &Path, node_name: &str) -> Option<ManifestEvent> {
    let invalid = |error: String| ManifestEvent::Invalid {
        path: path.to_owned(),
        error,
    };
    let text = match read_text(path).await {
        Ok(Some(text)) => text,
        Ok(None) => return None,
        Err(error) => return Some(invalid(error)),
    };
    // Parsing and validating cost CPU in proportion to the file: off the
    // async threads, so a big file never holds up the API.
    let (file, node) = (path.to_owned(), node_name.to_owned());
    let decoded = tokio::task::spawn_blocking(move || decode(&text, &file, &node)).await;
    Some(match decoded {
        Ok(Ok(pods)) => ManifestEvent::Pods {
            path: path.to_owned(),
            pods,
        },
        Ok(Err(error)) => invalid(error),
        Err(error) => invalid(format!("decoding failed: {error}")),
    })
}

/// The file's text, at most [`MAX_MANIFEST_BYTES`]; `None` when it is gone.
async fn read_text(path: &Path) -> Result<Option<String>, String> {
    use tokio::io::AsyncReadExt;
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|error| error.to_string())?;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(format!("file is larger than {MAX_MANIFEST_BYTES} bytes"));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| "file is not UTF-8".into())
}

/// A file's pods with the static pod defaults, each valid as the API server
/// would require (the kubelet's file source validates them too).
fn decode(text: &str, path: &Path, node_name: &str) -> Result<Vec<Pod>, String> {
    let pods = berth_api::manifest::parse_pods(text).map_err(|e| e.to_string())?;
    pods.into_iter()
        .enumerate()
        .map(|(index, pod)| {
            let pod = static_pod(pod, path, index, node_name)?;
            validate(&pod)?;
            Ok(pod)
        })
        .collect()
}

fn validate(pod: &Pod) -> Result<(), String> {
    validate_static_pod(pod).map_err(|e| e.to_string())
}

/// A static pod as the API would check it, on a defaulted copy (so the pod,
/// and the UID hashed from it, stay as the file says), and a UID that can
/// name directories. The supervisor checks again what any source hands it.
pub(crate) fn validate_static_pod(
    pod: &Pod,
) -> Result<(), berth_api::validation::ValidationErrors> {
    berth_api::validation::validate_uid(pod)?;
    let mut defaulted = pod.clone();
    berth_api::defaults::apply_defaults(&mut defaulted);
    berth_api::validation::validate_pod(&defaulted)
}

/// Follows the manifest directory until `shutdown`: first the current files,
/// then one event per changed file. The directory is created if absent.
/// `known` are files whose pods the caller already holds: one that is gone
/// by the first scan is reported `Removed`.
pub fn watch_manifests(
    dir: PathBuf,
    node_name: String,
    known: Vec<PathBuf>,
    tx: mpsc::Sender<ManifestEvent>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut source = ManifestSource {
            dir,
            node_name,
            tx,
            // A digest no event has, so the first scan reports them again.
            reported: known.into_iter().map(|path| (path, [0; 32])).collect(),
        };
        source.run(shutdown).await;
    })
}

struct ManifestSource {
    dir: PathBuf,
    node_name: String,
    tx: mpsc::Sender<ManifestEvent>,
    /// Per reported file, a digest of the last event sent, to drop repeats
    /// (one write raises several inotify events).
    reported: HashMap<PathBuf, [u8; 32]>,
}

impl ManifestSource {
    async fn run(&mut self, shutdown: CancellationToken) {
        let (changed_tx, mut changed) = mpsc::unbounded_channel();
        let mut watcher = self.watch_dir(changed_tx.clone());
        if !self.rescan().await {
            return;
        }
        let mut rescan = tokio::time::interval(RESCAN_PERIOD);
        rescan.reset();
        loop {
            let mut dirty = BTreeSet::new();
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = rescan.tick() => {
                    // Also when the directory was deleted: its watch died with it.
                    if watcher.is_none() || !self.dir.is_dir() {
                        watcher = self.watch_dir(changed_tx.clone());
                    }
                    if !self.rescan().await {
                        return;
                    }
                    continue;
                }
                Some(path) = changed.recv() => { dirty.insert(path); }
            }
            let settle = tokio::time::sleep(DEBOUNCE);
            tokio::pin!(settle);
            loop {
                tokio::select! {
                    () = &mut settle => break,
                    Some(path) = changed.recv() => { dirty.insert(path); }
                }
            }
            for path in dirty {
                if !self.refresh(&path).await {
                    return;
                }
            }
        }
    }

    /// Starts inotify on the directory, creating it first; `None` if that fails
    /// (the periodic rescan retries).
    fn watch_dir(
        &self,
        changed: mpsc::UnboundedSender<PathBuf>,
    ) -> Option<notify::RecommendedWatcher> {
        use notify::{event::AccessKind, event::AccessMode, EventKind, Watcher};
        if let Err(error) = std::fs::create_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot create the manifest directory");
            return None;
        }
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            // Our own reads raise open/close events; only writes matter.
            if matches!(event.kind, EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write)) {
                return;
            }
            for path in event.paths {
                let _ = changed.send(path);
            }
        })
        .and_then(|mut watcher| {
            watcher.watch(&self.dir, notify::RecursiveMode::NonRecursive)?;
            Ok(watcher)
        });
        match watcher {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot watch the manifest directory");
                None
            }
        }
    }

    /// Re-reads every manifest and every file reported before. False once
    /// the receiver is gone.
    async fn rescan(&mut self) -> bool {
        let mut paths: BTreeSet<PathBuf> = self.reported.keys().cloned().collect();
        match tokio::fs::read_dir(&self.dir).await {
            Ok(mut entries) => {
                while let Ok(Some(entry)) = entries.next_entry().await {
                    paths.insert(entry.path());
                }
            }
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot list the manifest directory");
            }
        }
        for path in paths {
            if !self.refresh(&path).await {
                return false;
            }
        }
        true
    }

    /// Sends what `path` holds now, unless it is what was sent last.
    async fn refresh(&mut self, path: &Path) -> bool {
        if path.parent() != Some(self.dir.as_path()) {
            return true;
        }
        let is_file = tokio::fs::metadata(path).await.is_ok_and(|m| m.is_file());
        let event = if is_file && is_manifest_file(path) {
            read_manifest(path, &self.node_name).await
        } else {
            None
        };
        let event = match event {
            Some(event) => event,
            None if self.reported.contains_key(path) => ManifestEvent::Removed {
                path: path.to_owned(),
            },
            None => return true,
        };
        let digest = event_digest(&event);
        if let ManifestEvent::Removed { .. } = event {
            self.reported.remove(path);
        } else if self.reported.insert(path.to_owned(), digest) == Some(digest) {
            return true;
        }
        tracing::debug!(path = %path.display(), kind = event_kind(&event), "static pod manifest changed");
        self.tx.send(event).await.is_ok()
    }
}

fn event_kind(event: &ManifestEvent) -> &'static str {
    match event {
        ManifestEvent::Pods { .. } => "pods",
        ManifestEvent::Invalid { .. } => "invalid",
        ManifestEvent::Removed { .. } => "removed",
    }
}

fn event_digest(event: &ManifestEvent) -> [u8; 32] {
    let mut hasher = Sha256::new();
    match event {
        ManifestEvent::Pods { pods, .. } => {
            hasher.update(b"pods");
            hasher.update(serde_json::to_vec(pods).unwrap_or_default());
        }
        ManifestEvent::Invalid { error, .. } => {
            hasher.update(b"invalid");
            hasher.update(error.as_bytes());
        }
        ManifestEvent::Removed { .. } => hasher.update(b"removed"),
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n";

    #[test]
    fn manifest_file_names() {
        for yes in ["a.yaml", "b.yml", "c.json"] {
            assert!(is_manifest_file(Path::new(yes)), "{yes}");
        }
        for no in [
            ".a.yaml",
            "a.yaml~",
            "a.yaml.swp",
            "#a.yaml#",
            "a.txt",
            "yaml",
        ] {
            assert!(!is_manifest_file(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn static_pod_defaults() {
        let pod = berth_api::manifest::parse_pods(POD).unwrap().remove(0);
        let path = Path::new("/etc/berth/manifests/web.yaml");
        let out = static_pod(pod.clone(), path, 0, "node1").unwrap();
        let meta = &out.metadata;
        assert_eq!(meta.name.as_deref(), Some("web-node1"));
        assert_eq!(meta.namespace.as_deref(), Some("default"));
        let uid = meta.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(annotations[CONFIG_HASH_ANNOTATION], uid);
        assert_eq!(annotations[CONFIG_SOURCE_ANNOTATION], "file");
        assert_eq!(
            out.spec.as_ref().unwrap().node_name.as_deref(),
            Some("node1")
        );

        // Deterministic, and different per content, file, index and node.
        let again = static_pod(pod.clone(), path, 0, "node1").unwrap();
        assert_eq!(again.metadata.uid.as_deref(), Some(uid.as_str()));
        let mut changed = pod.clone();
        changed.spec.as_mut().unwrap().containers[0].image = Some("busybox:2".into());
        let uids = [
            static_pod(changed, path, 0, "node1").unwrap(),
            static_pod(pod.clone(), Path::new("/other.yaml"), 0, "node1").unwrap(),
            static_pod(pod.clone(), path, 1, "node1").unwrap(),
            static_pod(pod.clone(), path, 0, "node2").unwrap(),
        ]
        .map(|p| p.metadata.uid.unwrap());
        for other in &uids {
            assert_ne!(other, &uid);
        }

        let mut nameless = pod;
        nameless.metadata.name = None;
        assert!(static_pod(nameless, path, 0, "node1").is_err());
    }
}
