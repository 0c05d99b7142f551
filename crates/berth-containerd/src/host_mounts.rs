//! The node's side of a container's bind mounts, prepared as containerd's
//! CRI plugin does in `WithMounts` before it writes the spec: a missing
//! source is made a directory (the kubelet does not check a hostPath volume
//! without a type; the runtime makes its path), and a volume that propagates
//! mounts must sit on a mount of the node that propagates them
//! (`ensureShared` for Bidirectional, `ensureSharedOrSlave` for
//! HostToContainer).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use berth_runtime::{Mount, MountPropagation, RuntimeError, RuntimeErrorKind};

/// Creates what is missing and checks the propagation of each mount.
pub(crate) fn prepare(mounts: &[Mount]) -> Result<(), RuntimeError> {
    let mut table: Option<Vec<MountEntry>> = None;
    for mount in mounts {
        ensure_source(&mount.host_path)?;
        if mount.propagation == MountPropagation::Private {
            continue;
        }
        let source = std::fs::canonicalize(&mount.host_path).map_err(|e| {
            failed(format!(
                "failed to resolve symlink {:?}: {e}",
                mount.host_path.display().to_string()
            ))
        })?;
        let table = table.get_or_insert_with(|| {
            parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
        });
        check_propagation(&source, mount.propagation, table).map_err(failed)?;
    }
    Ok(())
}

fn failed(message: String) -> RuntimeError {
    RuntimeError::new(RuntimeErrorKind::Other, message)
}

/// A missing source becomes a directory (0755), as the CRI plugin's
/// `MkdirAll`; a file or directory that is there is left as it is.
fn ensure_source(path: &Path) -> Result<(), RuntimeError> {
    let quoted = || format!("{:?}", path.display().to_string());
    match std::fs::metadata(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .map_err(|e| failed(format!("failed to mkdir {}: {e}", quoted()))),
        Err(e) => Err(failed(format!("failed to stat {}: {e}", quoted()))),
    }
}

/// One line of `/proc/self/mountinfo`: where it is mounted and its optional
/// fields (`shared:N`, `master:N`…), which say how it propagates.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    mount_point: PathBuf,
    optional: Vec<String>,
}

fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let mount_point = fields.get(4)?;
            let optional = fields
                .get(6..)?
                .iter()
                .take_while(|f| **f != "-")
                .map(|f| f.to_string())
                .collect();
            Some(MountEntry {
                mount_point: PathBuf::from(berth_runtime::unescape_mount_field(mount_point)),
                optional,
            })
        })
        .collect()
}

/// Bidirectional needs the mount holding `source` to be shared;
/// HostToContainer, shared or a slave. The error texts are the CRI plugin's.
fn check_propagation(
    source: &Path,
    propagation: MountPropagation,
    table: &[MountEntry],
) -> Result<(), String> {
    // The deepest mount point at or above the source; the last one mounted
    // there is the one on top.
    let holder = table
        .iter()
        .filter(|m| source.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count())
        .ok_or_else(|| format!("could not find source mount of {}", source.display()))?;
    let has = |prefix: &str| holder.optional.iter().any(|o| o.starts_with(prefix));
    let quoted = |p: &Path| format!("{:?}", p.display().to_string());
    match propagation {
        MountPropagation::Private => Ok(()),
        MountPropagation::Bidirectional if has("shared:") => Ok(()),
        MountPropagation::Bidirectional => Err(format!(
            "path {} is mounted on {} but it is not a shared mount",
            quoted(source),
            quoted(&holder.mount_point)
        )),
        MountPropagation::HostToContainer if has("shared:") || has("master:") => Ok(()),
        MountPropagation::HostToContainer => Err(format!(
            "path {} is mounted on {} but it is not a shared or slave mount",
            quoted(source),
            quoted(&holder.mount_point)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:1 / / rw,relatime - ext4 /dev/vda rw
30 22 0:40 / /var/lib/kubelet rw,relatime shared:12 - ext4 /dev/vda rw
31 22 0:41 / /var/lib/slave rw,relatime master:12 - ext4 /dev/vda rw
32 22 0:42 / /var/lib/both rw,relatime shared:14 master:12 - ext4 /dev/vda rw
33 30 0:43 / /var/lib/kubelet/private rw,relatime - tmpfs tmpfs rw
34 22 0:44 / /with\\040space rw shared:15 - tmpfs tmpfs rw
";

    fn check(path: &str, propagation: MountPropagation) -> Result<(), String> {
        check_propagation(Path::new(path), propagation, &parse_mountinfo(MOUNTINFO))
    }

    #[test]
    fn optional_fields_are_read_up_to_the_separator() {
        let table = parse_mountinfo(MOUNTINFO);
        assert_eq!(table[0].optional, Vec::<String>::new());
        assert_eq!(table[3].optional, ["shared:14", "master:12"]);
        assert_eq!(table[5].mount_point, Path::new("/with space"));
    }

    #[test]
    fn bidirectional_needs_a_shared_mount() {
        use MountPropagation::Bidirectional;
        assert_eq!(check("/var/lib/kubelet/ns-1", Bidirectional), Ok(()));
        assert_eq!(check("/var/lib/both/x", Bidirectional), Ok(()));
        assert_eq!(check("/with space/x", Bidirectional), Ok(()));
        assert_eq!(
            check("/var/lib/slave/x", Bidirectional),
            Err(r#"path "/var/lib/slave/x" is mounted on "/var/lib/slave" but it is not a shared mount"#.into())
        );
        assert_eq!(
            check("/var/lib/kubelet/private/x", Bidirectional),
            Err(r#"path "/var/lib/kubelet/private/x" is mounted on "/var/lib/kubelet/private" but it is not a shared mount"#.into())
        );
        // A name that only starts like a mount point is not under it.
        assert_eq!(
            check("/var/lib/kubeletx", Bidirectional),
            Err(
                r#"path "/var/lib/kubeletx" is mounted on "/" but it is not a shared mount"#.into()
            )
        );
    }

    #[test]
    fn host_to_container_needs_a_shared_or_slave_mount() {
        use MountPropagation::HostToContainer;
        assert_eq!(check("/var/lib/kubelet/x", HostToContainer), Ok(()));
        assert_eq!(check("/var/lib/slave/x", HostToContainer), Ok(()));
        assert_eq!(
            check("/srv/x", HostToContainer),
            Err(r#"path "/srv/x" is mounted on "/" but it is not a shared or slave mount"#.into())
        );
        assert_eq!(check("/srv/x", MountPropagation::Private), Ok(()));
    }

    #[test]
    fn a_missing_source_becomes_a_directory_and_a_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("a/b");
        ensure_source(&missing).unwrap();
        let meta = std::fs::metadata(&missing).unwrap();
        assert!(meta.is_dir());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o755 & !umask());
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        ensure_source(&file).unwrap();
        assert!(std::fs::metadata(&file).unwrap().is_file());
    }

    fn umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
            .unwrap_or(0o022)
    }
}
