//! berth's own files on the host: records only root may read, written whole,
//! and directories with the modes the kubelet gives its own.
//!
//! A pod record holds the pod's env values, so it is as secret as the
//! secrets in it; every record berth writes goes through [`write_private`].

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The mode of every record berth writes.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Directories only berth enters.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Tells apart the temporary files of concurrent writers.
static TEMPORARY: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` with mode 0600, whole or not at all: into a
/// fresh temporary file beside it (`.<name>.<pid>.<n>.tmp`, never a name a
/// reader of `*.json` picks up), renamed over `path`. A crash mid-write
/// leaves the previous file.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} names no file", path.display())))?;
    let n = TEMPORARY.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(
        ".{}.{}.{n}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(&tmp)
        .and_then(|mut file| file.write_all(bytes))
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Creates `dir` and its missing parents with `mode` (less the umask, as
/// `mkdir -p -m` would); an existing directory is left as it is.
pub fn create_dir(dir: &Path, mode: u32) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(mode).create(dir)
}

/// Takes from `path` every permission bit `mode` does not allow (a file or
/// directory left more open by an older berth); returns the old mode when
/// it changed. Symbolic links are not followed, nor changed.
pub fn restrict_mode(path: &Path, mode: u32) -> io::Result<Option<u32>> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(None);
    }
    let old = meta.permissions().mode() & 0o7777;
    let new = old & mode;
    if new == old {
        return Ok(None);
    }
    fs::set_permissions(path, Permissions::from_mode(new))?;
    Ok(Some(old))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn private_files_are_0600_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod.json");
        write_private(&path, b"first").unwrap();
        assert_eq!(mode(&path), 0o600);
        // An existing, too open file is replaced by a private one.
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["pod.json"], "no temporary file is left");
        // A failed write leaves nothing behind either.
        assert!(write_private(&dir.path().join("absent/x.json"), b"x").is_err());
    }

    #[test]
    fn modes_are_only_ever_restricted() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_dir(&sub, 0o700).unwrap();
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);

        fs::set_permissions(&sub, Permissions::from_mode(0o755)).unwrap();
        assert_eq!(restrict_mode(&sub, 0o750).unwrap(), Some(0o755));
        assert_eq!(mode(&sub), 0o750);
        assert_eq!(restrict_mode(&sub, 0o750).unwrap(), None);
        // Never widened.
        fs::set_permissions(&sub, Permissions::from_mode(0o700)).unwrap();
        assert_eq!(restrict_mode(&sub, 0o750).unwrap(), None);
        assert_eq!(mode(&sub), 0o700);

        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        assert_eq!(restrict_mode(&link, 0o600).unwrap(), None);
        assert_eq!(mode(Path::new("/etc/passwd")) & 0o044, 0o044);
    }
}
