//! Writes a volume's files so that a container never sees half of an
//! update, as the kubelet's `AtomicWriter`: the files go into a new
//! timestamped directory, `..data` is switched to it with one rename, and
//! each top-level name is a link through `..data`.
//!
//! The paths come from a pod spec and API objects: each must be relative
//! and stay below the volume (no `..`, no empty parts).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path};

use berth_pod::DATA_LINK;

const DATA_TMP_LINK: &str = "..data_tmp";

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub bytes: Vec<u8>,
    pub mode: u32,
}

/// The volume's files by relative path.
pub type Files = BTreeMap<String, Payload>;

/// Checks a path from a spec or an object key: relative, and below the
/// volume.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return Err(format!("{path:?} must be a relative path"));
    }
    if path.starts_with("..") {
        return Err(format!("{path:?} must not start with '..'"));
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("{path:?} must not contain '..' or empty parts"));
    }
    Ok(())
}

/// Makes `dir` hold exactly `files`; true when something changed.
pub fn write(dir: &Path, files: &Files) -> io::Result<bool> {
    for path in files.keys() {
        check_path(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    // Readable by the container's user, whoever that is, as the kubelet's
    // wrapped emptyDir.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o777))?;
    if current(dir).as_ref() == Some(files) {
        return Ok(false);
    }
    let stamp = jiff::Zoned::now()
        .strftime("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let new_dir = dir.join(&stamp);
    fs::DirBuilder::new().mode(0o755).create(&new_dir)?;
    for (path, payload) in files {
        let target = new_dir.join(path);
        if let Some(parent) = target.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)?;
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(payload.mode)
            .open(&target)?;
        io::Write::write_all(&mut file, &payload.bytes)?;
        // The mode exactly as asked, whatever the umask.
        fs::set_permissions(&target, fs::Permissions::from_mode(payload.mode))?;
    }
    let old_dir = fs::read_link(dir.join(DATA_LINK)).ok();
    let tmp = dir.join(DATA_TMP_LINK);
    let _ = fs::remove_file(&tmp);
    symlink(&stamp, &tmp)?;
    fs::rename(&tmp, dir.join(DATA_LINK))?;
    // Top-level names through `..data`; names no longer there go.
    let top: std::collections::BTreeSet<String> = files
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for name in &top {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_LINK).join(name), &link)?;
        }
    }
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || top.contains(&name) {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            let _ = fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old_dir.filter(|old| old.as_os_str() != stamp.as_str()) {
        // Only a timestamped directory of ours, never what a link names.
        if old.to_string_lossy().starts_with("..") && old.components().count() == 1 {
            let _ = fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(true)
}

/// The files `..data` holds now, if it reads back whole.
fn current(dir: &Path) -> Option<Files> {
    let data = fs::read_link(dir.join(DATA_LINK)).ok()?;
    let root = dir.join(data);
    let mut files = Files::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).ok()?.flatten() {
            let kind = entry.file_type().ok()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let meta = entry.metadata().ok()?;
                let rel = entry
                    .path()
                    .strip_prefix(&root)
                    .ok()?
                    .to_string_lossy()
                    .into_owned();
                files.insert(
                    rel,
                    Payload {
                        bytes: fs::read(entry.path()).ok()?,
                        mode: meta.permissions().mode() & 0o7777,
                    },
                );
            }
        }
    }
    Some(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str)]) -> Files {
        entries
            .iter()
            .map(|(p, b)| {
                (
                    p.to_string(),
                    Payload {
                        bytes: b.as_bytes().to_vec(),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn files_appear_through_data_and_updates_replace_them_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        assert!(write(&dir, &files(&[("a", "1"), ("sub/b", "2")])).unwrap());
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert!(fs::symlink_metadata(dir.join("a"))
            .unwrap()
            .file_type()
            .is_symlink());
        let first = fs::read_link(dir.join(DATA_LINK)).unwrap();
        // The same content again changes nothing.
        assert!(!write(&dir, &files(&[("a", "1"), ("sub/b", "2")])).unwrap());
        assert_eq!(fs::read_link(dir.join(DATA_LINK)).unwrap(), first);
        // An update: a new directory, the old one and the dropped name gone.
        assert!(write(&dir, &files(&[("a", "3")])).unwrap());
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "3");
        assert!(fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(!dir.join(&first).exists());
        let mode = fs::metadata(dir.join("a")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn paths_out_of_the_volume_are_refused_and_nothing_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        for bad in ["../x", "/etc/passwd", "a/../../x", "..data", ""] {
            assert!(check_path(bad).is_err(), "{bad:?}");
            assert!(write(&dir, &files(&[(bad, "x")])).is_err(), "{bad:?}");
        }
        assert!(!tmp.path().join("x").exists());
        assert!(fs::symlink_metadata(dir.join(DATA_LINK)).is_err());
    }
}
