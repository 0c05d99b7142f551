//! The pod's directories and files on the host: volumes, the `/etc` files the
//! kubelet manages, termination-message files, and the CRI log directory.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_api::empty_dir::{memory_size, Medium};
use berth_runtime::files::create_dir;
use k8s_openapi::api::core::v1::{Pod, Volume};

/// Where one pod's files live.
#[derive(Debug, Clone)]
pub struct PodDirs {
    /// `<root-dir>/pods/<uid>`.
    pub pod: PathBuf,
    /// `<log-dir>/<ns>_<name>_<uid>`.
    pub logs: PathBuf,
}

impl PodDirs {
    pub fn new(root_dir: &Path, log_dir: &Path, namespace: &str, name: &str, uid: &str) -> Self {
        Self {
            pod: root_dir.join("pods").join(uid),
            logs: log_dir.join(format!("{namespace}_{name}_{uid}")),
        }
    }

    pub fn log_path(&self, container: &str, attempt: u32) -> PathBuf {
        self.logs.join(container).join(format!("{attempt}.log"))
    }

    /// Removes an instance's log file and the files rotated from it.
    pub(crate) fn remove_logs(&self, container: &str, attempt: u32) {
        let live = self.log_path(container, attempt);
        let rotated = format!("{attempt}.log.");
        let dir = self.logs.join(container);
        let files = fs::read_dir(&dir).into_iter().flatten().flatten();
        for file in files.filter(|f| f.file_name().to_string_lossy().starts_with(&rotated)) {
            let _ = fs::remove_file(file.path());
        }
        let _ = fs::remove_file(live);
    }

    fn empty_dir(&self, volume: &str) -> PathBuf {
        self.pod
            .join("volumes/kubernetes.io~empty-dir")
            .join(volume)
    }

    pub(crate) fn etc_file(&self, name: &str) -> PathBuf {
        self.pod.join(name)
    }

    /// Makes the pod's directories and its emptyDir volumes, and checks its
    /// hostPath volumes as the kubelet's `type` rules say.
    pub(crate) fn prepare(&self, pod: &Pod) -> Result<(), String> {
        let io = |what: &str, p: &Path, e: io::Error| format!("{what} {}: {e}", p.display());
        // The kubelet's modes (makePodDataDirs; the pod's log directory).
        let volumes = self.pod.join("volumes");
        create_dir(&volumes, 0o750).map_err(|e| io("create", &volumes, e))?;
        create_dir(&self.logs, 0o755).map_err(|e| io("create", &self.logs, e))?;
        let Some(spec) = &pod.spec else {
            return Ok(());
        };
        for volume in spec.volumes.iter().flatten() {
            if let Some(source) = &volume.empty_dir {
                let set_up_failed = |e: String| set_up_failed(&volume.name, &e);
                let medium = Medium::of(source).map_err(set_up_failed)?;
                let dir = self.empty_dir(&volume.name);
                fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))
                    .map_err(|e| io("chmod", &dir, e))?;
                // Mounted once: a pod adopted after an agent restart keeps
                // what its tmpfs holds.
                if medium == Medium::Memory && !is_mount_point(&dir) {
                    let size = memory_size(spec, source, node_memory());
                    mount_tmpfs(&dir, size)
                        .map_err(|e| set_up_failed(io("mount tmpfs on", &dir, e)))?;
                }
            } else if let Some(host) = &volume.host_path {
                check_host_path(
                    &volume.name,
                    Path::new(&host.path),
                    host.type_.as_deref().unwrap_or(""),
                )?;
            }
        }
        Ok(())
    }

    /// The host path behind a volume.
    pub(crate) fn volume_path(&self, volume: &Volume) -> Option<PathBuf> {
        if volume.empty_dir.is_some() {
            Some(self.empty_dir(&volume.name))
        } else {
            volume.host_path.as_ref().map(|h| PathBuf::from(&h.path))
        }
    }

    /// Writes `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` for the pod.
    pub(crate) fn write_etc_files(
        &self,
        hostname: &str,
        pod_ip: Option<&str>,
        host_network: bool,
    ) -> io::Result<()> {
        let hosts = if host_network {
            let host = fs::read_to_string("/etc/hosts").unwrap_or_default();
            format!("# Kubernetes-managed hosts file (host network).\n{host}")
        } else {
            let mut hosts = String::from(
                "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
            );
            if let Some(ip) = pod_ip {
                hosts.push_str(&format!("{ip}\t{hostname}\n"));
            }
            hosts
        };
        fs::write(self.etc_file("etc-hosts"), hosts)?;
        fs::write(self.etc_file("hostname"), format!("{hostname}\n"))?;
        // No cluster DNS here: ClusterFirst falls back to the host's resolver,
        // as the kubelet does without --cluster-dns.
        let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        fs::write(self.etc_file("resolv.conf"), resolv)
    }

    /// A fresh, empty termination-message file for one container instance
    /// (mode 0666, as the kubelet makes it).
    pub(crate) fn termination_message_file(&self, container: &str) -> io::Result<PathBuf> {
        let dir = self.pod.join("containers").join(container);
        fs::create_dir_all(&dir)?;
        let path = dir.join(hex::encode(rand::random::<[u8; 4]>()));
        fs::write(&path, b"")?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666))?;
        Ok(path)
    }

    /// Removes everything of the pod on the host, its tmpfs volumes
    /// unmounted first.
    pub(crate) fn remove(&self) -> io::Result<()> {
        let volumes = self.empty_dir("");
        for entry in fs::read_dir(&volumes).into_iter().flatten().flatten() {
            let dir = entry.path();
            if is_mount_point(&dir) {
                nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH)
                    .map_err(|e| io::Error::other(format!("unmount {}: {e}", dir.display())))?;
            }
        }
        for dir in [&self.pod, &self.logs] {
            match fs::remove_dir_all(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether `dir` is the root of a mount: another device than its parent's.
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let parent = dir.parent().unwrap_or(dir);
    match (fs::metadata(dir), fs::metadata(parent)) {
        (Ok(d), Ok(p)) => d.dev() != p.dev(),
        _ => false,
    }
}

fn mount_tmpfs(dir: &Path, size: u64) -> io::Result<()> {
    let options = format!("size={size}");
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(io::Error::from)
}

/// The node's memory (MemTotal), what a pod could use at most.
fn node_memory() -> u64 {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(u64::MAX, |kib| kib * 1024)
}

/// A volume that could not be set up, in the kubelet's words.
fn set_up_failed(volume: &str, error: &str) -> String {
    format!("MountVolume.SetUp failed for volume \"{volume}\" : {error}")
}

/// The kubelet's hostPath `type` checks; `DirectoryOrCreate` and
/// `FileOrCreate` create what is missing.
fn check_host_path(volume: &str, path: &Path, kind: &str) -> Result<(), String> {
    let meta = fs::metadata(path);
    let fail = |what: &str| {
        let check = format!(
            "hostPath type check failed: {} is not a {what}",
            path.display()
        );
        Err(set_up_failed(volume, &check))
    };
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => fail("directory"),
            Err(_) => {
                fs::create_dir_all(path).map_err(|e| format!("create {}: {e}", path.display()))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| format!("chmod {}: {e}", path.display()))
            }
        },
        "FileOrCreate" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => fail("file"),
            Err(_) => fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(|_| ())
                .map_err(|e| format!("create {}: {e}", path.display())),
        },
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => fail("directory"),
        },
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => fail("file"),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => fail("socket file"),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => fail("character device"),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => fail("block device"),
        },
        other => Err(format!("unsupported hostPath type {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts_at(dir: &Path) -> usize {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = dir.to_string_lossy();
        mountinfo
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(&*dir))
            .count()
    }

    #[test]
    fn a_memory_empty_dir_is_a_sized_tmpfs_mounted_once_and_unmounted_at_removal() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dirs = PodDirs::new(tmp.path(), tmp.path(), "ns", "web", "u1");
        let pod: Pod = serde_json::from_str(
            r#"{"spec": {"containers": [{"name": "a"}], "volumes": [{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]}}"#,
        )
        .unwrap();
        dirs.prepare(&pod).unwrap();
        let dir = dirs.empty_dir("cache");
        assert_eq!(mounts_at(&dir), 1);
        fs::write(dir.join("kept"), "x").unwrap();
        let too_big = fs::write(dir.join("big"), vec![0u8; 2 << 20]).unwrap_err();
        assert_eq!(
            too_big.raw_os_error(),
            Some(nix::errno::Errno::ENOSPC as i32),
            "{too_big}"
        );
        // Again (an adopted pod): the same tmpfs, its files kept.
        dirs.prepare(&pod).unwrap();
        assert_eq!(mounts_at(&dir), 1);
        assert!(dir.join("kept").exists());

        dirs.remove().unwrap();
        assert_eq!(mounts_at(&dir), 0);
        assert!(!dirs.pod.exists());
    }

    #[test]
    fn an_unknown_medium_fails_naming_the_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = PodDirs::new(tmp.path(), tmp.path(), "ns", "web", "u1");
        let pod: Pod = serde_json::from_str(
            r#"{"spec": {"containers": [{"name": "a"}], "volumes": [{"name": "huge", "emptyDir": {"medium": "HugePages"}}]}}"#,
        )
        .unwrap();
        assert_eq!(
            dirs.prepare(&pod).unwrap_err(),
            "MountVolume.SetUp failed for volume \"huge\" : unknown storage medium \"HugePages\""
        );
    }

    #[test]
    fn an_instances_logs_go_with_their_rotated_files_and_no_others() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = PodDirs::new(tmp.path(), tmp.path(), "ns", "web", "u1");
        let dir = dirs.logs.join("app");
        fs::create_dir_all(&dir).unwrap();
        for name in [
            "1.log",
            "1.log.20260101-000000.gz",
            "1.log.20260101-000001",
            "2.log",
            "11.log",
        ] {
            fs::write(dir.join(name), "x").unwrap();
        }
        dirs.remove_logs("app", 1);
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["11.log", "2.log"]);
    }

    #[test]
    fn host_path_types_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("made");
        assert!(check_host_path("v", &dir, "Directory").is_err());
        check_host_path("v", &dir, "DirectoryOrCreate").unwrap();
        assert!(dir.is_dir());
        check_host_path("v", &dir, "Directory").unwrap();
        let err = check_host_path("v", &dir, "File").unwrap_err();
        assert!(err.contains("is not a file"), "{err}");
        let file = tmp.path().join("f");
        check_host_path("v", &file, "FileOrCreate").unwrap();
        assert!(file.is_file());
        assert!(check_host_path("v", &file, "Socket").is_err());
        check_host_path("v", &tmp.path().join("whatever"), "").unwrap();
    }
}
