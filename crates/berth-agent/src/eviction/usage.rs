//! Measuring what a pod takes on the node's disk: its disk emptyDirs and
//! container log directories walked as `du` walks them (blocks allocated,
//! each hard-linked file once, never following a symlink nor leaving the
//! filesystem the walk began on), and its containers' writable layers as the
//! runtime counts them.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_pod::PodDirs;
use berth_runtime::{ContainerId, ContainerRuntime};
use k8s_openapi::api::core::v1::Pod;
use tracing::debug;

use super::limits::{ContainerUsage, PodUsage};

/// Bytes allocated under `root` (itself included); 0 when it is absent.
pub fn disk_usage(root: &Path) -> io::Result<u64> {
    let meta = match fs::symlink_metadata(root) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let device = meta.dev();
    let mut seen = HashSet::new();
    let mut total = allocated(&meta, &mut seen);
    if !meta.is_dir() {
        return Ok(total);
    }
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        // Gone meanwhile (a container removed a directory): nothing to count.
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // `DirEntry::metadata` does not follow a symlink.
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.dev() != device {
                continue;
            }
            total = total.saturating_add(allocated(&meta, &mut seen));
            if meta.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(total)
}

/// The blocks a file takes, once per inode.
fn allocated(meta: &fs::Metadata, seen: &mut HashSet<(u64, u64)>) -> u64 {
    if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
        return 0;
    }
    meta.blocks().saturating_mul(512)
}

/// What to measure of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Disk emptyDirs: volume name and directory.
    pub empty_dirs: Vec<(String, PathBuf)>,
    /// Containers with an instance: name, runtime id, log directory.
    pub containers: Vec<(String, ContainerId, PathBuf)>,
}

impl Target {
    /// The pod's disk emptyDirs and its containers' current instances, as
    /// its status names them.
    pub fn of(pod: &Pod, root_dir: &Path, log_dir: &Path) -> Self {
        let meta = &pod.metadata;
        let dirs = PodDirs::new(
            root_dir,
            log_dir,
            meta.namespace.as_deref().unwrap_or("default"),
            meta.name.as_deref().unwrap_or_default(),
            meta.uid.as_deref().unwrap_or_default(),
        );
        let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
        let empty_dirs = volumes
            .filter(|v| {
                v.empty_dir
                    .as_ref()
                    .is_some_and(|e| e.medium.as_deref() != Some("Memory"))
            })
            .filter(|v| is_plain_name(&v.name))
            .map(|v| (v.name.clone(), dirs.empty_dir(&v.name)))
            .collect();
        let statuses = pod.status.iter().flat_map(|s| {
            let init = s.init_container_statuses.iter().flatten();
            init.chain(s.container_statuses.iter().flatten())
        });
        let containers = statuses
            .filter(|c| is_plain_name(&c.name))
            .filter_map(|c| {
                let id = c.container_id.as_deref()?;
                let id = id.split_once("://").map_or(id, |(_, id)| id);
                (!id.is_empty()).then(|| {
                    let logs = dirs.logs.join(&c.name);
                    (c.name.clone(), ContainerId(id.to_string()), logs)
                })
            })
            .collect();
        Self {
            empty_dirs,
            containers,
        }
    }

    /// Measures the target: the directories off the async threads, the
    /// writable layers through the runtime. A container the runtime cannot
    /// measure (removed meanwhile) counts its logs alone.
    pub async fn measure<R: ContainerRuntime>(&self, rt: &R) -> PodUsage {
        let mut layers = Vec::with_capacity(self.containers.len());
        for (name, id, _) in &self.containers {
            layers.push(rt.writable_layer_usage(id).await.unwrap_or_else(|e| {
                debug!(container = %name, "writable layer usage: {e}");
                0
            }));
        }
        let target = self.clone();
        let measured = tokio::task::spawn_blocking(move || {
            let du = |dir: &Path| {
                disk_usage(dir).unwrap_or_else(|e| {
                    debug!(dir = %dir.display(), "disk usage: {e}");
                    0
                })
            };
            let empty_dirs = target
                .empty_dirs
                .iter()
                .map(|(name, dir)| (name.clone(), du(dir)))
                .collect();
            let logs: Vec<u64> = target.containers.iter().map(|(_, _, d)| du(d)).collect();
            (empty_dirs, logs)
        })
        .await;
        let (empty_dirs, logs) = measured.unwrap_or_default();
        let containers = self
            .containers
            .iter()
            .enumerate()
            .map(|(i, (name, _, _))| ContainerUsage {
                name: name.clone(),
                writable_layer: layers.get(i).copied().unwrap_or(0),
                logs: logs.get(i).copied().unwrap_or(0),
            })
            .collect();
        PodUsage {
            empty_dirs,
            containers,
        }
    }
}

/// A volume or container name that is one path component (validation
/// makes them DNS labels; this holds even for a record that escaped it).
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn write(path: &Path, bytes: usize) {
        fs::write(path, vec![1u8; bytes]).unwrap();
    }

    #[test]
    fn counts_blocks_under_a_directory_once_per_inode() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        fs::create_dir_all(root.join("a/b")).unwrap();
        write(&root.join("a/b/file"), 1 << 20);
        fs::hard_link(root.join("a/b/file"), root.join("again")).unwrap();
        let used = disk_usage(&root).unwrap();
        assert!(
            ((1 << 20)..(1 << 20) + 64 * 1024).contains(&used),
            "1 MiB counted once, plus the directories: {used}"
        );
        assert_eq!(disk_usage(&dir.path().join("absent")).unwrap(), 0);
    }

    #[test]
    fn never_follows_a_symlink_out_of_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        write(&outside.join("big"), 4 << 20);
        let root = dir.path().join("vol");
        fs::create_dir(&root).unwrap();
        symlink(&outside, root.join("link")).unwrap();
        symlink(outside.join("big"), root.join("file-link")).unwrap();
        assert!(disk_usage(&root).unwrap() < 64 * 1024);
        // A root that is itself a symlink counts as the link.
        symlink(&outside, dir.path().join("root-link")).unwrap();
        assert!(disk_usage(&dir.path().join("root-link")).unwrap() < 64 * 1024);
    }

    #[test]
    fn the_target_comes_from_the_spec_and_status() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {
                "containers": [{"name": "app"}, {"name": "idle"}],
                "volumes": [
                    {"name": "disk", "emptyDir": {}},
                    {"name": "mem", "emptyDir": {"medium": "Memory"}},
                    {"name": "host", "hostPath": {"path": "/"}},
                    {"name": "..", "emptyDir": {}},
                ],
            },
            "status": {"containerStatuses": [
                {"name": "app", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                 "containerID": "containerd://abc"},
                {"name": "idle", "image": "i", "imageID": "", "ready": false, "restartCount": 0},
            ]},
        }))
        .unwrap();
        let target = Target::of(&pod, Path::new("/root"), Path::new("/logs"));
        assert_eq!(
            target,
            Target {
                empty_dirs: vec![(
                    "disk".into(),
                    PathBuf::from("/root/pods/u1/volumes/kubernetes.io~empty-dir/disk")
                )],
                containers: vec![(
                    "app".into(),
                    ContainerId("abc".into()),
                    PathBuf::from("/logs/ns_web_u1/app")
                )],
            }
        );
    }
}
