//! The files `fileKeyRef` variables read (EnvFiles): a key of an env file
//! in one of the pod's emptyDir volumes, read when the container starts, as
//! the kubelet's `makeEnvironmentVariables` reads it: the path joined to the
//! volume with symlinks kept inside it (`securejoin.SecureJoin`), the file
//! parsed by `berth_api::env_file`, a failure to open or parse it reported
//! as "couldn't parse env file" (the detail goes to the log).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use berth_api::env::EnvFiles;
use k8s_openapi::api::core::v1::Pod;
use tracing::warn;

use crate::dirs::PodDirs;

/// Symlinks followed in one join before it gives up, as SecureJoin.
const MAX_SYMLINKS: usize = 255;

/// Env files bigger than this are refused rather than read into memory.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// The pod's volumes, for `fileKeyRef`.
pub(crate) struct VolumeFiles<'a> {
    pub pod: &'a Pod,
    pub dirs: &'a PodDirs,
}

impl EnvFiles for VolumeFiles<'_> {
    fn file_value(&self, volume: &str, path: &str, key: &str) -> Result<(String, String), String> {
        let spec_volume = self.pod.spec.as_ref().and_then(|s| {
            let volumes = s.volumes.iter().flatten();
            volumes
                .into_iter()
                .find(|v| v.name == volume && v.empty_dir.is_some())
        });
        let root = spec_volume
            .and_then(|v| self.dirs.volume_path(v))
            .ok_or_else(|| format!("cannot find the volume {volume:?} referenced by FileKeyRef"))?;
        let file = secure_join(&root, path);
        let pod = self.pod.metadata.name.as_deref().unwrap_or_default();
        let value = read(&file).and_then(|text| berth_api::env_file::value_of(&text, key));
        match value {
            Ok(value) => Ok((file.display().to_string(), value)),
            Err(detail) => {
                warn!(pod, error = %detail, "Failed to parse env file");
                Err("couldn't parse env file".into())
            }
        }
    }
}

fn read(file: &Path) -> Result<String, String> {
    let open_error =
        |e: std::io::Error| format!("failed to open environment variable file {file:?}: {e}");
    let handle = std::fs::File::open(file).map_err(open_error)?;
    let mut bytes = Vec::new();
    handle
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("error reading environment variable file {file:?}: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "environment variable file {file:?} is larger than {MAX_FILE_BYTES} bytes"
        ));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `unsafe_path` below `root` with every symlink on the way resolved as if
/// `root` were `/`: the result never leaves `root`. Missing components are
/// kept as they are; too many symlinks leave the path at the link.
pub(crate) fn secure_join(root: &Path, unsafe_path: &str) -> PathBuf {
    let mut inside: Vec<std::ffi::OsString> = Vec::new();
    let mut pending: Vec<std::ffi::OsString> = components(Path::new(unsafe_path));
    pending.reverse();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            inside.pop();
            continue;
        }
        let candidate: PathBuf = root.join(inside.iter().collect::<PathBuf>()).join(&name);
        let target = match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() && links < MAX_SYMLINKS => {
                std::fs::read_link(&candidate).ok()
            }
            _ => None,
        };
        let Some(target) = target else {
            inside.push(name);
            continue;
        };
        links += 1;
        if target.is_absolute() {
            inside.clear();
        }
        let mut more = components(&target);
        more.reverse();
        pending.extend(more);
    }
    root.join(inside.iter().collect::<PathBuf>())
}

/// The normal and `..` components of `path` (`/` and `.` dropped).
fn components(path: &Path) -> Vec<std::ffi::OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        symlink("/etc/passwd", root.join("abs")).unwrap();
        symlink("../../../etc/passwd", root.join("sub/rel")).unwrap();
        symlink("sub", root.join("dir")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(secure_join(&root, "abs"), root.join("etc/passwd"));
        assert_eq!(secure_join(&root, "sub/rel"), root.join("etc/passwd"));
        assert_eq!(secure_join(&root, "dir/env"), root.join("sub/env"));
        assert_eq!(secure_join(&root, "missing/env"), root.join("missing/env"));
        assert!(secure_join(&root, "loop").starts_with(&root));
    }

    #[test]
    fn a_missing_or_malformed_file_is_a_parse_error_a_volume_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = PodDirs::new(dir.path(), dir.path(), "default", "p", "uid-1");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p" },
            "spec": {
                "containers": [],
                "volumes": [
                    { "name": "data", "emptyDir": {} },
                    { "name": "host", "hostPath": { "path": "/etc" } }
                ]
            }
        }))
        .unwrap();
        let files = VolumeFiles {
            pod: &pod,
            dirs: &dirs,
        };
        let root = dirs.pod.join("volumes/kubernetes.io~empty-dir/data");
        std::fs::create_dir_all(&root).unwrap();
        let parse = Err("couldn't parse env file".to_string());
        assert_eq!(files.file_value("data", "env", "A"), parse);
        std::fs::write(root.join("env"), "A=1\n").unwrap();
        assert_eq!(files.file_value("data", "env", "A"), parse);
        std::fs::write(root.join("env"), "A='1'\n").unwrap();
        let host_path = root.join("env").display().to_string();
        assert_eq!(
            files.file_value("data", "env", "A"),
            Ok((host_path, "1".into()))
        );
        let no_volume = "cannot find the volume \"host\" referenced by FileKeyRef";
        assert_eq!(files.file_value("host", "env", "A"), Err(no_volume.into()));
    }
}
