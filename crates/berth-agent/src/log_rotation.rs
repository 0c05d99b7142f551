//! Container log rotation, as the kubelet's container log manager
//! (docs/kubelet-semantics.md §14): every monitor interval, the log file of each
//! running container that has reached the maximum size is renamed to
//! `<file>.<YYYYMMDD-hhmmss>` and a fresh file takes its place; older
//! rotated files are gzipped, and only `maxFiles − 2` of them are kept.
//!
//! berth's logger (`berth logger`) notices the new file before its next write
//! and reopens it: the step the kubelet asks of containerd with CRI's
//! ReopenContainerLog.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_pod::PodDirs;
use flate2::write::GzEncoder;
use k8s_openapi::api::core::v1::Pod;

use crate::store::PodStore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

const COMPRESSED: &str = ".gz";
const TMP: &str = ".tmp";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRotationPolicy {
    /// A live file this big (bytes) or bigger is rotated.
    pub max_size: u64,
    /// Files per container, the live one included.
    pub max_files: usize,
    pub interval: Duration,
}

/// Rotates the live log file at `path` if it has reached the maximum size;
/// `stamp` (`YYYYMMDD-hhmmss`) names the rotated file. Returns whether it
/// rotated.
pub fn rotate_if_needed(path: &Path, policy: &LogRotationPolicy, stamp: &str) -> io::Result<bool> {
    let size = match fs::metadata(path) {
        Ok(meta) => meta.len(),
        // Not written yet, or already gone with its container.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if size < policy.max_size {
        return Ok(false);
    }
    let rotated = remove_unused(rotated_files(path)?)?;
    let rotated = remove_excess(rotated, policy.max_files.saturating_sub(2))?;
    for file in rotated.iter().filter(|f| !is_compressed(f)) {
        compress(file)?;
    }
    let target = with_suffix(path, &format!(".{stamp}"));
    fs::rename(path, &target)?;
    // The new live file, so that readers find one before the logger's next
    // write; the logger may have made it already (it appends).
    if let Err(e) = open_live(path) {
        let _ = fs::rename(&target, path);
        return Err(e);
    }
    debug!(log = %path.display(), rotated = %target.display(), "rotated a container log");
    Ok(true)
}

/// The live file's rotated files (`<file>.*`), in name order: the
/// timestamps sort oldest first.
fn rotated_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path())
        .collect();
    files.sort();
    Ok(files)
}

/// Drops what an interrupted rotation left: temporary files, and
/// uncompressed files whose compressed copy is complete.
fn remove_unused(files: Vec<PathBuf>) -> io::Result<Vec<PathBuf>> {
    let mut kept = Vec::new();
    for file in &files {
        let name = file.to_string_lossy();
        let compressed_exists = files
            .iter()
            .any(|f| f.to_string_lossy() == format!("{name}{COMPRESSED}"));
        if name.ends_with(TMP) || (!is_compressed(file) && compressed_exists) {
            remove(file)?;
        } else {
            kept.push(file.clone());
        }
    }
    Ok(kept)
}

/// Removes the oldest files until at most `keep` are left.
fn remove_excess(mut files: Vec<PathBuf>, keep: usize) -> io::Result<Vec<PathBuf>> {
    let excess = files.len().saturating_sub(keep);
    for file in files.drain(..excess) {
        remove(&file)?;
    }
    Ok(files)
}

/// `file` → `file.gz` (written as `file.gz.tmp`, then renamed), and the
/// original removed.
fn compress(file: &Path) -> io::Result<()> {
    let tmp = with_suffix(file, &format!("{COMPRESSED}{TMP}"));
    let result = (|| {
        let mut source = File::open(file)?;
        let target = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)?;
        let mut encoder = GzEncoder::new(target, flate2::Compression::default());
        io::copy(&mut source, &mut encoder)?;
        encoder.finish()?.sync_all()?;
        fs::rename(&tmp, with_suffix(file, COMPRESSED))
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    remove(file)
}

fn open_live(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

fn remove(file: &Path) -> io::Result<()> {
    match fs::remove_file(file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn is_compressed(file: &Path) -> bool {
    file.to_string_lossy().ends_with(COMPRESSED)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The rotated-file stamp for now, in the node's local time as Go's
/// `20060102-150405` layout gives it.
fn stamp_now() -> String {
    jiff::Zoned::now().strftime("%Y%m%d-%H%M%S").to_string()
}

/// The live log files of the pods' running containers, as their statuses
/// show them. The kubelet asks CRI, which answers from its own records; the
/// statuses are berth's, so no runtime call is made (one that a wedged shim
/// could hold up).
pub fn running_logs<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    root_dir: &Path,
    log_dir: &Path,
) -> Vec<PathBuf> {
    let mut logs = Vec::new();
    for pod in pods {
        let meta = &pod.metadata;
        let dirs = PodDirs::new(
            root_dir,
            log_dir,
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
            meta.uid.as_deref().unwrap_or_default(),
        );
        let statuses = pod.status.iter().flat_map(|s| {
            let init = s.init_container_statuses.iter().flatten();
            init.chain(s.container_statuses.iter().flatten())
        });
        for c in statuses {
            if c.state.as_ref().is_some_and(|s| s.running.is_some()) {
                let attempt = u32::try_from(c.restart_count).unwrap_or(0);
                logs.push(dirs.log_path(&c.name, attempt));
            }
        }
    }
    logs
}

/// Every interval, rotates the logs of running containers until `shutdown`.
pub async fn run(
    store: Arc<PodStore>,
    policy: LogRotationPolicy,
    root_dir: PathBuf,
    log_dir: PathBuf,
    shutdown: CancellationToken,
) {
    let mut every = crate::periodic::Every::new(policy.interval, &shutdown);
    while every.tick().await {
        let logs = store.read(|pods| running_logs(pods, &root_dir, &log_dir));
        let policy = policy.clone();
        let rotated = tokio::task::spawn_blocking(move || {
            let stamp = stamp_now();
            for log in logs {
                if let Err(e) = rotate_if_needed(&log, &policy, &stamp) {
                    warn!(log = %log.display(), "log rotation: {e}");
                }
            }
        })
        .await;
        if let Err(e) = rotated {
            warn!("log rotation: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn running_containers_logs_come_from_the_pods_statuses() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "status": {
                "initContainerStatuses": [
                    {"name": "init", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                     "state": {"terminated": {"exitCode": 0}}},
                    {"name": "proxy", "image": "i", "imageID": "", "ready": true, "restartCount": 1,
                     "state": {"running": {}}},
                ],
                "containerStatuses": [
                    {"name": "app", "image": "i", "imageID": "", "ready": true, "restartCount": 2,
                     "state": {"running": {}}},
                    {"name": "idle", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                     "state": {"waiting": {"reason": "ContainerCreating"}}},
                ],
            },
        }))
        .unwrap();
        let logs = running_logs(&[pod], Path::new("/root"), Path::new("/logs"));
        assert_eq!(
            logs,
            [
                PathBuf::from("/logs/ns_web_u1/proxy/1.log"),
                PathBuf::from("/logs/ns_web_u1/app/2.log"),
            ]
        );
    }

    fn policy(max_files: usize) -> LogRotationPolicy {
        LogRotationPolicy {
            max_size: 10,
            max_files,
            interval: Duration::from_secs(10),
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn append(path: &Path, text: &str) {
        open_live(path).unwrap().write_all(text.as_bytes()).unwrap();
    }

    fn gunzip(path: &Path) -> String {
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    #[test]
    fn a_small_or_missing_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        assert!(!rotate_if_needed(&log, &policy(5), "20260101-000000").unwrap());
        append(&log, "short\n");
        assert!(!rotate_if_needed(&log, &policy(5), "20260101-000000").unwrap());
        assert_eq!(names(dir.path()), ["0.log"]);
    }

    #[test]
    fn rotation_renames_compresses_older_files_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        for (i, stamp) in [
            "20260101-000001",
            "20260101-000002",
            "20260101-000003",
            "20260101-000004",
        ]
        .iter()
        .enumerate()
        {
            append(&log, &format!("line number {i}\n"));
            assert!(rotate_if_needed(&log, &policy(4), stamp).unwrap());
        }
        // The live file, the newest rotated one as it was, and max − 2 = 2
        // compressed ones; the oldest is gone.
        assert_eq!(
            names(dir.path()),
            [
                "0.log",
                "0.log.20260101-000002.gz",
                "0.log.20260101-000003.gz",
                "0.log.20260101-000004",
            ]
        );
        assert_eq!(fs::read_to_string(&log).unwrap(), "");
        assert_eq!(
            fs::read_to_string(dir.path().join("0.log.20260101-000004")).unwrap(),
            "line number 3\n"
        );
        assert_eq!(
            gunzip(&dir.path().join("0.log.20260101-000002.gz")),
            "line number 1\n"
        );
        // Another container's (or attempt's) files are not this one's.
        append(&dir.path().join("1.log"), "x");
        assert!(names(dir.path()).contains(&"1.log".to_string()));
    }

    #[test]
    fn leftovers_of_an_interrupted_rotation_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        append(&log, "enough to rotate\n");
        // A compression cut short, and one that finished but kept its source.
        append(&dir.path().join("0.log.20260101-000001.gz.tmp"), "partial");
        append(&dir.path().join("0.log.20260101-000002"), "done\n");
        let gz = File::create(dir.path().join("0.log.20260101-000002.gz")).unwrap();
        let mut encoder = GzEncoder::new(gz, flate2::Compression::default());
        encoder.write_all(b"done\n").unwrap();
        encoder.finish().unwrap();

        assert!(rotate_if_needed(&log, &policy(5), "20260101-000003").unwrap());
        assert_eq!(
            names(dir.path()),
            ["0.log", "0.log.20260101-000002.gz", "0.log.20260101-000003"]
        );
    }
}
