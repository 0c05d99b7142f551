//! The pod's directories and files on the host: volumes, the `/etc` files the
//! kubelet manages, termination-message files, and the CRI log directory.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_api::empty_dir::{memory_size, Medium};
use berth_runtime::files::create_dir;
use k8s_openapi::api::core::v1::{HostAlias, Pod, Volume};

use crate::hostname::PodHostname;
use crate::mount_table;

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

    /// Where the emptyDir volume `volume` lives on disk.
    pub fn empty_dir(&self, volume: &str) -> PathBuf {
        self.pod
            .join("volumes/kubernetes.io~empty-dir")
            .join(volume)
    }

    /// Where the image volume `volume` is mounted.
    pub fn image_volume(&self, volume: &str) -> PathBuf {
        image_volumes_dir(&self.pod).join(volume)
    }

    /// Where a volume whose content comes from API objects (configMap,
    /// secret, downwardAPI, projected) is written, by the kubelet's plugin
    /// names; `None` for other kinds. Cluster mode writes it.
    pub fn api_object_volume(&self, volume: &Volume) -> Option<PathBuf> {
        let plugin = if volume.config_map.is_some() {
            "kubernetes.io~configmap"
        } else if volume.secret.is_some() {
            "kubernetes.io~secret"
        } else if volume.downward_api.is_some() {
            "kubernetes.io~downward-api"
        } else if volume.projected.is_some() {
            "kubernetes.io~projected"
        } else {
            return None;
        };
        Some(self.pod.join("volumes").join(plugin).join(&volume.name))
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
                if medium == Medium::Memory && !mount_table::is_mount_point(&dir) {
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

    /// The names of the pod's volumes of API data (configMap, secret,
    /// downwardAPI, projected) whose content is not there yet: cluster mode
    /// writes it through a `..data` link, which appears once it is whole.
    pub(crate) fn unwritten_volumes(&self, pod: &Pod) -> Vec<String> {
        let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
        volumes
            .filter(|volume| {
                self.api_object_volume(volume)
                    .is_some_and(|dir| fs::symlink_metadata(dir.join(DATA_LINK)).is_err())
            })
            .map(|volume| volume.name.clone())
            .collect()
    }

    /// The host path behind a volume.
    pub(crate) fn volume_path(&self, volume: &Volume) -> Option<PathBuf> {
        if volume.empty_dir.is_some() {
            Some(self.empty_dir(&volume.name))
        } else if let Some(host) = &volume.host_path {
            Some(PathBuf::from(&host.path))
        } else if volume.image.is_some() {
            Some(self.image_volume(&volume.name))
        } else {
            self.api_object_volume(volume)
        }
    }

    /// Writes `/etc/hosts` (see [`Self::write_hosts`]), `/etc/hostname` and
    /// `/etc/resolv.conf` for the pod: `kernel_hostname` (the sandbox's)
    /// goes into `/etc/hostname`, as containerd's CRI writes it.
    pub(crate) fn write_etc_files(
        &self,
        name: &PodHostname,
        kernel_hostname: &str,
        pod_ips: &[String],
        host_network: bool,
        host_aliases: &[HostAlias],
        resolv_conf: &str,
    ) -> io::Result<()> {
        self.write_hosts(name, pod_ips, host_network, host_aliases)?;
        fs::write(self.etc_file("hostname"), format!("{kernel_hostname}\n"))?;
        fs::write(self.etc_file("resolv.conf"), resolv_conf)
    }

    /// Writes the pod's `/etc/hosts` in place (containers bind-mount it):
    /// the kubelet's `managedHostsFileContent`, `name` for the pod's IPs,
    /// with the pod's `hostAliases`.
    pub(crate) fn write_hosts(
        &self,
        name: &PodHostname,
        pod_ips: &[String],
        host_network: bool,
        host_aliases: &[HostAlias],
    ) -> io::Result<()> {
        let hosts = if host_network {
            let host = fs::read_to_string("/etc/hosts").unwrap_or_default();
            format!("# Kubernetes-managed hosts file (host network).\n{host}")
        } else {
            let mut hosts = String::from(
                "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
            );
            let PodHostname { hostname, domain } = name;
            for ip in pod_ips {
                if domain.is_empty() {
                    hosts.push_str(&format!("{ip}\t{hostname}\n"));
                } else {
                    hosts.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"));
                }
            }
            hosts
        };
        let hosts = hosts + &host_alias_entries(host_aliases);
        fs::write(self.etc_file("etc-hosts"), hosts)
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

    /// Removes everything of the pod on the host (see [`remove_dirs`]).
    pub(crate) fn remove(&self) -> io::Result<()> {
        remove_dirs([&self.pod, &self.logs])
    }
}

/// The directory of a pod's image volume mounts, by the kubelet's plugin
/// name.
pub(crate) fn image_volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes/kubernetes.io~image")
}

/// The kubelet's `hostsEntriesFromHostAliases`: a header, then one line
/// per alias, its IP and its host names tab-separated. An entry that is
/// not an IP address and host names (which the API server would refuse)
/// is left out rather than let it add lines of its own.
fn host_alias_entries(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for alias in aliases {
        let names = alias.hostnames.as_deref().unwrap_or_default();
        let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        if alias.ip.parse::<std::net::IpAddr>().is_err() || !names.iter().all(|n| plain(n)) {
            tracing::warn!(ip = %alias.ip.escape_debug(), "hostAliases: not an IP address and host names; left out of /etc/hosts");
            continue;
        }
        out.push_str(&format!("{}\t{}\n", alias.ip, names.join("\t")));
    }
    out
}

/// Removes the directories of pods that are gone (deleted while the agent
/// was down): `<root-dir>/pods/<uid>` for every uid `is_known` denies, with
/// its log directory, unmounting what is mounted in it first. As the
/// kubelet's `cleanupOrphanedPodDirs`.
pub fn remove_orphaned_pod_dirs(root_dir: &Path, log_dir: &Path, is_known: impl Fn(&str) -> bool) {
    let pods = fs::read_dir(root_dir.join("pods"))
        .into_iter()
        .flatten()
        .flatten();
    let orphans: Vec<String> = pods
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|uid| !is_known(uid))
        .collect();
    if orphans.is_empty() {
        return;
    }
    let log_dirs: Vec<PathBuf> = fs::read_dir(log_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    for uid in orphans {
        let suffix = format!("_{uid}");
        let logs = log_dirs.iter().filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(&suffix))
        });
        let removed = remove_dirs(std::iter::once(&root_dir.join("pods").join(&uid)).chain(logs));
        match removed {
            Ok(()) => tracing::info!(uid, "removed the directories of an orphaned pod"),
            Err(e) => tracing::warn!(uid, "remove orphaned pod directories: {e}"),
        }
    }
}

/// Removes directories of a pod, each after unmounting what is mounted in it
/// (tmpfs volumes, subPath staging mounts, also those of an agent that died);
/// nothing is removed while anything stays mounted there: removing would
/// walk into the volume behind the mount.
fn remove_dirs<'a>(dirs: impl IntoIterator<Item = &'a PathBuf>) -> io::Result<()> {
    for dir in dirs {
        mount_table::unmount_all_under(dir)?;
        match fs::remove_dir_all(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
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
/// The link an API-object volume's writer swaps in last (the kubelet's
/// atomic writer's `..data`).
pub const DATA_LINK: &str = "..data";

fn set_up_failed(volume: &str, error: &str) -> String {
    format!("MountVolume.SetUp failed for volume \"{volume}\" : {error}")
}

/// The kubelet's hostPath `checkType`. A hostPath follows symlinks (the
/// API says so, and runc mounts what the path leads to), so the checks use
/// stat, not lstat, as the kubelet's `getFileType` does: they describe the
/// object that will be mounted. `DirectoryOrCreate` and `FileOrCreate` create
/// what is missing with the kubelet's modes (0755, 0644, less the umask) and
/// change nothing that exists.
fn check_host_path(volume: &str, path: &Path, kind: &str) -> Result<(), String> {
    let failed = |e: String| set_up_failed(volume, &e);
    let exists = fs::metadata(path).is_ok();
    let (want, description) = match kind {
        "" => return Ok(()),
        "DirectoryOrCreate" if !exists => {
            return fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(path)
                .map_err(|e| failed(format!("mkdir {}: {e}", path.display())));
        }
        "FileOrCreate" if !exists => {
            return fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o644)
                .open(path)
                .map(|_| ())
                .map_err(|e| failed(format!("open {}: {e}", path.display())));
        }
        "Directory" | "DirectoryOrCreate" => ("Directory", "directory"),
        "File" | "FileOrCreate" => ("File", "file"),
        "Socket" => ("Socket", "socket file"),
        "CharDevice" => ("CharDevice", "character device"),
        "BlockDevice" => ("BlockDevice", "block device"),
        other => return Err(failed(format!("{other} is an invalid volume type"))),
    };
    let meta = fs::metadata(path)
        .map_err(|_| failed(format!("hostPath {} doesn't exist", path.display())))?;
    let file_type = meta.file_type();
    let actual = if file_type.is_dir() {
        "Directory"
    } else if file_type.is_file() {
        "File"
    } else if file_type.is_socket() {
        "Socket"
    } else if file_type.is_char_device() {
        "CharDevice"
    } else if file_type.is_block_device() {
        "BlockDevice"
    } else {
        return Err(failed(format!(
            "hostPath type check failed, {} is not a {description}, unable to determine its type: \
             only recognize file, directory, socket, block device and character device",
            path.display()
        )));
    };
    if actual != want {
        return Err(failed(format!(
            "hostPath type check failed: {} is not a {description}, it's a {actual}",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_aliases_are_appended_as_the_kubelet_writes_them() {
        let alias = |ip: &str, names: &[&str]| HostAlias {
            ip: ip.into(),
            hostnames: Some(names.iter().map(|n| n.to_string()).collect()),
        };
        assert_eq!(host_alias_entries(&[]), "");
        let entries = host_alias_entries(&[
            alias("123.45.67.89", &["foo", "bar"]),
            alias("not-an-ip", &["x"]),
            alias("10.0.0.1", &["evil\n1.2.3.4 injected"]),
            alias("::1", &["six"]),
        ]);
        assert_eq!(
            entries,
            "\n# Entries added by HostAliases.\n123.45.67.89\tfoo\tbar\n::1\tsix\n"
        );
    }

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
    fn orphaned_pod_dirs_go_with_their_mounts_and_what_is_behind_them_stays() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: bind mounts need root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (root, logs) = (tmp.path().join("root"), tmp.path().join("logs"));
        let kept = PodDirs::new(&root, &logs, "ns", "kept", "u-kept");
        let gone = PodDirs::new(&root, &logs, "ns", "gone", "u-gone");
        for dirs in [&kept, &gone] {
            fs::create_dir_all(&dirs.pod).unwrap();
            fs::create_dir_all(dirs.logs.join("app")).unwrap();
        }
        // A staging mount left by an agent that died, of a host directory.
        let host = tmp.path().join("host-data");
        fs::create_dir(&host).unwrap();
        fs::write(host.join("precious"), "x").unwrap();
        let staging = gone.pod.join("volume-subpaths/v/app/0");
        fs::create_dir_all(&staging).unwrap();
        nix::mount::mount(
            Some(&host),
            &staging,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();

        remove_orphaned_pod_dirs(&root, &logs, |uid| uid == "u-kept");
        assert!(!mount_table::is_mount_point(&staging));
        assert!(!gone.pod.exists() && !gone.logs.exists());
        assert!(kept.pod.exists() && kept.logs.exists());
        assert_eq!(fs::read_to_string(host.join("precious")).unwrap(), "x");
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
        assert_eq!(
            err,
            format!(
                "MountVolume.SetUp failed for volume \"v\" : hostPath type check failed: \
                 {} is not a file, it's a Directory",
                dir.display()
            )
        );
        let file = tmp.path().join("f");
        check_host_path("v", &file, "FileOrCreate").unwrap();
        assert!(file.is_file());
        assert!(check_host_path("v", &file, "Socket").is_err());
        check_host_path("v", &tmp.path().join("whatever"), "").unwrap();
        let missing = tmp.path().join("missing");
        assert_eq!(
            check_host_path("v", &missing, "CharDevice").unwrap_err(),
            format!(
                "MountVolume.SetUp failed for volume \"v\" : hostPath {} doesn't exist",
                missing.display()
            )
        );
    }

    #[test]
    fn host_path_checks_follow_symlinks_as_the_mount_does() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("real");
        fs::create_dir(&dir).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        check_host_path("v", &link, "Directory").unwrap();
        check_host_path("v", &link, "DirectoryOrCreate").unwrap();
        assert!(check_host_path("v", &link, "File").is_err());
        // A link to /dev/null is the character device it leads to.
        let null = tmp.path().join("null");
        std::os::unix::fs::symlink("/dev/null", &null).unwrap();
        check_host_path("v", &null, "CharDevice").unwrap();
        // FileOrCreate on an existing directory creates nothing and fails.
        assert!(check_host_path("v", &dir, "FileOrCreate").is_err());
        assert!(dir.is_dir());
    }
}
