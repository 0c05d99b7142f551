//! Agent-owned network namespaces, pinned by a bind mount under berth's root.
//!
//! The namespace outlives the pause process, so CNI DEL always gets a valid
//! path and a pause container can be re-created in the same network.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// The directory holding the pins, `<root>/netns`.
pub(crate) fn dir(root_dir: &Path) -> PathBuf {
    root_dir.join("netns")
}

/// Creates a fresh network namespace pinned at `path`.
///
/// `unshare` moves the calling thread, so it runs on a throwaway thread (never a
/// tokio worker); the pin keeps the namespace alive after that thread exits.
pub(crate) fn create(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::File::create(path)?;
    let target = path.to_path_buf();
    let pinned = std::thread::spawn(move || -> io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        // thread-self, not self: /proc/self/ns/net is the main thread's namespace.
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(io::Error::from)
    })
    .join()
    .map_err(|_| io::Error::other("netns thread panicked"))?;
    if let Err(e) = pinned {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

/// Unpins and removes a namespace; a missing pin is not an error.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a half-made pin); ENOENT: gone already.
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_pins_a_new_namespace_and_remove_unpins_it() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let pin = dir(tmp.path()).join("t1");
        create(&pin).unwrap();
        let own = std::fs::metadata("/proc/self/ns/net").unwrap();
        let pinned = std::fs::metadata(&pin).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_ne!(own.ino(), pinned.ino(), "pin must be a different namespace");
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(mounts.contains(pin.to_str().unwrap()));
        remove(&pin).unwrap();
        remove(&pin).unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!mounts.contains(pin.to_str().unwrap()));
        assert!(!pin.exists());
    }
}
