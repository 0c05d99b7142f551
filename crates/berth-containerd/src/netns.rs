//! Agent-owned pod namespaces (network, IPC, UTS), each pinned by a bind mount
//! under `<root>/ns/<sandbox>/`.
//!
//! The namespaces outlive the pause process: CNI DEL always gets a valid path,
//! and the pod's containers join them by path, so none of them waits for the
//! pause container to run.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// The namespace kinds berth pins, by their `/proc/<pid>/ns/` names.
const KINDS: [&str; 3] = ["net", "ipc", "uts"];

/// The directory holding every sandbox's pins, `<root>/ns`.
pub(crate) fn dir(root_dir: &Path) -> PathBuf {
    root_dir.join("ns")
}

/// The pinned namespaces of one sandbox. On host network there is no network
/// or UTS pin (the node's are used); IPC is always the pod's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodNamespaces {
    pub dir: PathBuf,
    pub net: Option<PathBuf>,
    pub ipc: PathBuf,
    pub uts: Option<PathBuf>,
}

impl PodNamespaces {
    pub(crate) fn of(root_dir: &Path, sandbox_id: &str, host_network: bool) -> Self {
        let dir = dir(root_dir).join(sandbox_id);
        let own = |kind: &str| (!host_network).then(|| dir.join(kind));
        PodNamespaces {
            net: own("net"),
            ipc: dir.join("ipc"),
            uts: own("uts"),
            dir,
        }
    }
}

/// Creates the pod's namespaces and pins them; `hostname` is set in the new
/// UTS namespace (ignored on host network).
///
/// `unshare` moves the calling thread, so it runs on a throwaway thread (never
/// a tokio worker); the pins keep the namespaces alive after it exits.
pub(crate) fn create(ns: &PodNamespaces, hostname: &str) -> io::Result<()> {
    std::fs::create_dir_all(&ns.dir)?;
    let mut flags = CloneFlags::CLONE_NEWIPC;
    let mut pins = vec![("ipc", ns.ipc.clone())];
    if let (Some(net), Some(uts)) = (&ns.net, &ns.uts) {
        flags |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
        pins.push(("net", net.clone()));
        pins.push(("uts", uts.clone()));
    }
    for (_, path) in &pins {
        std::fs::File::create(path)?;
    }
    let hostname = (ns.uts.is_some()).then(|| hostname.to_string());
    let pinned = std::thread::spawn(move || -> io::Result<()> {
        unshare(flags).map_err(io::Error::from)?;
        if let Some(hostname) = hostname {
            nix::unistd::sethostname(hostname).map_err(io::Error::from)?;
        }
        for (kind, target) in pins {
            // thread-self, not self: /proc/self/ns/* are the main thread's.
            mount(
                Some(format!("/proc/thread-self/ns/{kind}").as_str()),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(io::Error::from)?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?;
    if let Err(e) = pinned {
        let _ = remove(&ns.dir);
        return Err(e);
    }
    Ok(())
}

/// Unpins and removes a sandbox's namespaces (`dir` is its pin directory);
/// missing pins are not an error.
pub(crate) fn remove(dir: &Path) -> io::Result<()> {
    for kind in KINDS {
        let pin = dir.join(kind);
        match umount2(&pin, MntFlags::MNT_DETACH) {
            // EINVAL: not a mount point (a half-made pin); ENOENT: gone already.
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        match std::fs::remove_file(&pin) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn ino(path: impl AsRef<Path>) -> u64 {
        std::fs::metadata(path).unwrap().ino()
    }

    fn mounted(path: &Path) -> bool {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        mounts.contains(path.to_str().unwrap())
    }

    #[test]
    fn create_pins_new_namespaces_and_remove_unpins_them() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let ns = PodNamespaces::of(tmp.path(), "t1", false);
        create(&ns, "pod-host").unwrap();
        for kind in KINDS {
            let pin = ns.dir.join(kind);
            assert_ne!(
                ino(format!("/proc/self/ns/{kind}")),
                ino(&pin),
                "{kind} must be a new namespace"
            );
            assert!(mounted(&pin), "{kind} pinned");
        }
        // The hostname lives in the pinned UTS namespace, not the agent's.
        let uts = ns.uts.clone().unwrap();
        let seen = std::thread::spawn(move || {
            let file = std::fs::File::open(uts).unwrap();
            nix::sched::setns(file, CloneFlags::CLONE_NEWUTS).unwrap();
            nix::unistd::gethostname().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, "pod-host");
        assert_ne!(nix::unistd::gethostname().unwrap(), "pod-host");

        remove(&ns.dir).unwrap();
        remove(&ns.dir).unwrap();
        assert!(!mounted(&ns.dir));
        assert!(!ns.dir.exists());
    }

    #[test]
    fn host_network_pins_only_ipc() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let ns = PodNamespaces::of(tmp.path(), "t2", true);
        assert_eq!((ns.net.clone(), ns.uts.clone()), (None, None));
        let before = nix::unistd::gethostname().unwrap();
        create(&ns, "ignored").unwrap();
        assert_eq!(nix::unistd::gethostname().unwrap(), before);
        assert_ne!(ino("/proc/self/ns/ipc"), ino(&ns.ipc));
        assert!(!ns.dir.join("net").exists() && !ns.dir.join("uts").exists());
        remove(&ns.dir).unwrap();
        assert!(!mounted(&ns.dir));
        assert!(!ns.dir.exists());
    }
}
