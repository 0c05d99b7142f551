//! Agent-owned pod namespaces (network, IPC, UTS), each pinned by a bind mount
//! under `<root>/ns/<sandbox>/`.
//!
//! The pins, not a process, keep the namespaces: CNI DEL always gets a valid
//! path, and the pod's containers join them by path, so no pause process is
//! needed to hold them. A sandbox whose pins are gone is dead.

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
/// or UTS pin (the node's are used), with `hostIPC` no IPC pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodNamespaces {
    pub dir: PathBuf,
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
}

impl PodNamespaces {
    pub(crate) fn of(
        root_dir: &Path,
        sandbox_id: &str,
        host_network: bool,
        host_ipc: bool,
    ) -> Self {
        let dir = dir(root_dir).join(sandbox_id);
        let own = |kind: &str, host: bool| (!host).then(|| dir.join(kind));
        PodNamespaces {
            net: own("net", host_network),
            ipc: own("ipc", host_ipc),
            uts: own("uts", host_network),
            dir,
        }
    }
}

/// Creates the pod's namespaces and pins them; `hostname` is set in the new
/// UTS namespace (ignored on host network), and `sysctls` in the new network
/// and IPC namespaces, before any of the pod's processes runs in them.
///
/// `unshare` moves the calling thread, so it runs on a throwaway thread (never
/// a tokio worker); the pins keep the namespaces alive after it exits.
pub(crate) fn create(
    ns: &PodNamespaces,
    hostname: &str,
    sysctls: &[(String, String)],
) -> io::Result<()> {
    crate::sysctl::check_namespaced(sysctls, ns.net.is_some(), ns.ipc.is_some())
        .map_err(io::Error::other)?;
    std::fs::create_dir_all(&ns.dir)?;
    let mut flags = CloneFlags::empty();
    let mut pins = Vec::new();
    if let Some(ipc) = &ns.ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
        pins.push(("ipc", ipc.clone()));
    }
    if let (Some(net), Some(uts)) = (&ns.net, &ns.uts) {
        flags |= CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS;
        pins.push(("net", net.clone()));
        pins.push(("uts", uts.clone()));
    }
    for (_, path) in &pins {
        std::fs::File::create(path)?;
    }
    let hostname = (ns.uts.is_some()).then(|| hostname.to_string());
    let sysctls = sysctls.to_vec();
    let pinned = std::thread::spawn(move || -> io::Result<()> {
        unshare(flags).map_err(io::Error::from)?;
        if let Some(hostname) = hostname {
            nix::unistd::sethostname(hostname).map_err(io::Error::from)?;
        }
        // /proc/sys answers for the namespaces of the thread that opens it.
        crate::sysctl::write_all(&sysctls)?;
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

/// The node's boot id: pins do not outlive a reboot.
pub(crate) fn boot_id() -> &'static str {
    static BOOT_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT_ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|id| id.trim().to_string())
            .unwrap_or_default()
    })
}

/// Whether a sandbox's pins, made on the boot `pinned_on`, still hold its
/// namespaces: the node has not rebooted since, and every pin is a namespace
/// file (a pin unmounted, or a file left from another boot, is not).
pub(crate) fn pins_alive(ns: &PodNamespaces, pinned_on: &str) -> bool {
    let is_namespace = |pin: &PathBuf| {
        nix::sys::statfs::statfs(pin)
            .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
    };
    pinned_on == boot_id()
        && [&ns.net, &ns.ipc, &ns.uts]
            .into_iter()
            .flatten()
            .all(is_namespace)
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
        let ns = PodNamespaces::of(tmp.path(), "t1", false, false);
        let sysctls = [(
            "net.ipv4.ip_local_port_range".to_string(),
            "40000 40100".to_string(),
        )];
        create(&ns, "pod-host", &sysctls).unwrap();
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
        // The sysctl is the pod network's, not the host's.
        let net = ns.net.clone().unwrap();
        let range = std::thread::spawn(move || {
            let file = std::fs::File::open(net).unwrap();
            nix::sched::setns(file, CloneFlags::CLONE_NEWNET).unwrap();
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(
            range.split_whitespace().collect::<Vec<_>>(),
            ["40000", "40100"]
        );
        let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        assert_ne!(
            host.split_whitespace().collect::<Vec<_>>(),
            ["40000", "40100"]
        );

        assert!(pins_alive(&ns, boot_id()));
        assert!(!pins_alive(&ns, "another-boot"));
        assert!(!boot_id().is_empty());

        remove(&ns.dir).unwrap();
        assert!(!pins_alive(&ns, boot_id()));
        // Plain files where the pins were (a pin directory on disk after a
        // reboot) hold nothing.
        std::fs::create_dir_all(&ns.dir).unwrap();
        for kind in KINDS {
            std::fs::write(ns.dir.join(kind), b"").unwrap();
        }
        assert!(!pins_alive(&ns, boot_id()));
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
        let ns = PodNamespaces::of(tmp.path(), "t2", true, false);
        assert_eq!((ns.net.clone(), ns.uts.clone()), (None, None));
        let before = nix::unistd::gethostname().unwrap();
        // A net sysctl would be the host's: refused, nothing made.
        let sysctls = [("net.ipv4.tcp_syncookies".to_string(), "1".to_string())];
        assert!(create(&ns, "ignored", &sysctls).is_err());
        create(&ns, "ignored", &[]).unwrap();
        assert_eq!(nix::unistd::gethostname().unwrap(), before);
        assert_ne!(ino("/proc/self/ns/ipc"), ino(ns.ipc.as_ref().unwrap()));
        assert!(!ns.dir.join("net").exists() && !ns.dir.join("uts").exists());
        remove(&ns.dir).unwrap();
        assert!(!mounted(&ns.dir));
        assert!(!ns.dir.exists());
    }
}
