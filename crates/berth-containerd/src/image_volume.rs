//! Image volumes (`volumes[].image`), as containerd's CRI mounts them
//! (`mutateImageMount`): the image's root filesystem, read-only, from a
//! snapshot on its top layer, mounted on the host where the pod's
//! containers bind it from.
//!
//! The snapshot is a view (read-only by construction) labelled as a GC root,
//! so that it outlives both a restart of containerd and the image's own
//! record; it goes when the volume is unmounted. The mount lives in the
//! host's mount namespace, so a restart of containerd leaves it alone, and
//! an agent that restarts finds it mounted and keeps it.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use berth_runtime::{ImageInfo, RuntimeError};
use containerd_client::services::v1::snapshots::{
    MountsRequest, RemoveSnapshotRequest, StatSnapshotRequest, ViewSnapshotRequest,
};
use containerd_client::types::Mount as SnapshotMount;
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::image::SNAPSHOTTER;
use crate::task::failed;
use crate::Containerd;

/// The label that makes a snapshot a root of containerd's garbage collector.
const GC_ROOT_LABEL: &str = "containerd.io/gc.root";

/// Mounts `image`'s root filesystem read-only at `target` (a directory
/// that exists), unless something is mounted there already.
pub(crate) async fn mount_volume(
    c: &Containerd,
    image: &ImageInfo,
    key: &str,
    target: &Path,
) -> Result<(), RuntimeError> {
    if is_mount_point(target) {
        return Ok(());
    }
    let parent = c.snapshot_parent(image).await?;
    let mounts = view(c, key, &parent).await?;
    mount_all(&mounts, target).map_err(|e| {
        RuntimeError::other(format!(
            "failed to mount image volume component {}: {e}",
            target.display()
        ))
    })?;
    tracing::debug!(key, image = image.reference, target = %target.display(), "image volume mounted");
    Ok(())
}

/// Unmounts `target` and removes the snapshot; both may be gone.
pub(crate) async fn unmount_volume(
    c: &Containerd,
    key: &str,
    target: &Path,
) -> Result<(), RuntimeError> {
    unmount(target).map_err(|e| {
        RuntimeError::other(format!(
            "failed to unmount image volume component {}: {e}",
            target.display()
        ))
    })?;
    match std::fs::remove_dir(target) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::debug!(target = %target.display(), "remove image volume mount point: {e}")
        }
        _ => {}
    }
    let request = RemoveSnapshotRequest {
        snapshotter: SNAPSHOTTER.to_string(),
        key: key.to_string(),
    };
    match c.snapshots().remove(request).await {
        Err(status) if status.code() != tonic::Code::NotFound => {
            Err(failed(&format!("remove snapshot {key}"), status))
        }
        _ => Ok(()),
    }
}

/// The mounts of the view `key` on `parent`, made if missing. A view left on
/// another parent (the image moved on while it was unmounted) is made again.
async fn view(c: &Containerd, key: &str, parent: &str) -> Result<Vec<SnapshotMount>, RuntimeError> {
    let stat = StatSnapshotRequest {
        snapshotter: SNAPSHOTTER.to_string(),
        key: key.to_string(),
    };
    match c.snapshots().stat(stat).await {
        Ok(info)
            if info
                .get_ref()
                .info
                .as_ref()
                .is_some_and(|i| i.parent == parent) =>
        {
            let request = MountsRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.to_string(),
            };
            let mounts = c.snapshots().mounts(request).await;
            return Ok(mounts
                .map_err(|s| failed(&format!("mounts of snapshot {key}"), s))?
                .into_inner()
                .mounts);
        }
        Ok(_) => {
            let request = RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.to_string(),
            };
            c.snapshots()
                .remove(request)
                .await
                .map_err(|s| failed(&format!("remove snapshot {key}"), s))?;
        }
        Err(status) if status.code() == tonic::Code::NotFound => {}
        Err(status) => return Err(failed(&format!("stat snapshot {key}"), status)),
    }
    let labels = HashMap::from([(
        GC_ROOT_LABEL.to_string(),
        jiff::Timestamp::now().to_string(),
    )]);
    let request = ViewSnapshotRequest {
        snapshotter: SNAPSHOTTER.to_string(),
        key: key.to_string(),
        parent: parent.to_string(),
        labels,
    };
    Ok(c.snapshots()
        .view(request)
        .await
        .map_err(|s| failed(&format!("view snapshot {key} on {parent}"), s))?
        .into_inner()
        .mounts)
}

/// Whether something is mounted at `dir` itself.
fn is_mount_point(dir: &Path) -> bool {
    std::fs::canonicalize(dir).is_ok_and(|dir| berth_runtime::mount_points().contains(&dir))
}

/// How one snapshot mount is made: `mount(2)`'s flags and data.
#[derive(Debug, PartialEq, Eq)]
struct MountCall {
    fstype: Option<String>,
    flags: MsFlags,
    data: String,
}

/// Splits a snapshot mount's options into flags and filesystem data, as
/// containerd's `mount.All` does, always read-only.
fn mount_call(m: &SnapshotMount) -> MountCall {
    let mut flags = MsFlags::MS_RDONLY;
    let mut data = Vec::new();
    for option in &m.options {
        match option.as_str() {
            "ro" | "rw" => {}
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            other => data.push(other),
        }
    }
    let bind = flags.contains(MsFlags::MS_BIND);
    MountCall {
        fstype: (!bind).then(|| m.r#type.clone()),
        flags,
        data: data.join(","),
    }
}

/// Mounts the snapshot's mounts on `target`, read-only; what was mounted
/// goes again if a later one fails.
fn mount_all(mounts: &[SnapshotMount], target: &Path) -> io::Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        let call = mount_call(m);
        let data = (!call.data.is_empty()).then_some(call.data.as_str());
        let mounted = mount(
            Some(m.source.as_str()),
            target,
            call.fstype.as_deref(),
            call.flags,
            data,
        )
        .and_then(|()| {
            // A bind mount takes MS_RDONLY only on a remount.
            if !call.flags.contains(MsFlags::MS_BIND) {
                return Ok(());
            }
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        });
        if let Err(e) = mounted {
            if i > 0 || is_mount_point(target) {
                let _ = unmount(target);
            }
            return Err(io::Error::other(format!("{} mount: {e}", m.r#type)));
        }
    }
    Ok(())
}

/// Lazily unmounts every mount stacked on `target`; none is fine.
fn unmount(target: &Path) -> io::Result<()> {
    for _ in 0..8 {
        match umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            Err(Errno::EINVAL | Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(io::Error::from(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_mount(kind: &str, options: &[&str]) -> SnapshotMount {
        SnapshotMount {
            r#type: kind.into(),
            source: "src".into(),
            options: options.iter().map(|o| o.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_one_layer_view_is_a_read_only_bind_mount() {
        let call = mount_call(&snapshot_mount("bind", &["ro", "rbind"]));
        assert_eq!(
            call,
            MountCall {
                fstype: None,
                flags: MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC,
                data: String::new(),
            }
        );
    }

    #[test]
    fn an_overlay_view_keeps_its_layers_as_data_and_is_read_only() {
        let call = mount_call(&snapshot_mount(
            "overlay",
            &["index=off", "lowerdir=/a:/b", "rw"],
        ));
        assert_eq!(
            call,
            MountCall {
                fstype: Some("overlay".into()),
                flags: MsFlags::MS_RDONLY,
                data: "index=off,lowerdir=/a:/b".into(),
            }
        );
    }
}
