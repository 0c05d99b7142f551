//! subPath and subPathExpr volume mounts, as the kubelet's `makeMounts` and
//! pkg/volume/util/subpath (the fix for CVE-2017-1002101).
//!
//! A subPath names a path inside a volume the pod writes to, so anything in
//! it may be a symlink the pod made. berth never hands such a path to runc:
//! it opens the subPath below the volume without following a symlink out of
//! it ([`resolve`]), bind-mounts the opened descriptor onto a staging path of
//! its own, `<pod dir>/volume-subpaths/<volume>/<container>/<index>`, and
//! gives runc that mount. A container's staging mounts are replaced at its
//! next start and go with the pod's directory at teardown.

mod resolve;

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use berth_api::expansion;
use k8s_openapi::api::core::v1::VolumeMount;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use tracing::{debug, warn};

use crate::mount_table;
use resolve::Refusal;

/// The directory of a pod's staging mounts (the kubelet's name).
pub(crate) const STAGING_DIR: &str = "volume-subpaths";

/// The subPath a volume mount asks for, if any, checked as the kubelet's
/// `makeMounts` checks it: subPathExpr expanded against the container's
/// variables (a missing or empty one is an error), then no absolute path and
/// no `..`. Errors are the kubelet's texts.
pub(crate) fn requested(
    mount: &VolumeMount,
    vars: &[(String, String)],
) -> Result<Option<String>, String> {
    let sub_path = match mount.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
        Some(expr) => expand(expr, vars)?,
        None => mount.sub_path.clone().unwrap_or_default(),
    };
    if sub_path.is_empty() {
        return Ok(None);
    }
    if sub_path.starts_with('/') {
        return Err(format!(
            "error SubPath `{sub_path}` must not be an absolute path"
        ));
    }
    if sub_path.split('/').any(|c| c == "..") {
        return Err(format!(
            "unable to provision SubPath `{sub_path}`: must not contain '..'"
        ));
    }
    Ok(Some(sub_path))
}

/// The kubelet's `ExpandContainerVolumeMounts`: `$(VAR)` against the
/// container's variables, the last definition winning; every variable that
/// is undefined or empty is named in the error.
fn expand(expr: &str, vars: &[(String, String)]) -> Result<String, String> {
    let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let expanded = expansion::expand(expr, |name| {
        let value = vars
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if value.is_empty() {
            missing.borrow_mut().insert(name.to_string());
        }
        Some(value)
    });
    let missing = missing.into_inner();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(String::as_str).collect();
        return Err(format!("missing value for {}", names.join(", ")));
    }
    Ok(expanded)
}

/// One subPath mount of one container.
pub(crate) struct SubPathMount<'a> {
    pub pod_dir: &'a Path,
    pub volume: &'a str,
    pub volume_path: &'a Path,
    pub sub_path: &'a str,
    pub container: &'a str,
    /// The mount's index in the container's `volumeMounts`.
    pub index: usize,
}

impl SubPathMount<'_> {
    fn staging_path(&self) -> PathBuf {
        self.pod_dir
            .join(STAGING_DIR)
            .join(self.volume)
            .join(self.container)
            .join(self.index.to_string())
    }

    /// Opens the subPath inside its volume (creating missing directories
    /// with the volume's mode) and bind-mounts it onto the staging path,
    /// which it returns: the source to give runc.
    pub(crate) fn prepare(&self) -> Result<PathBuf, String> {
        // Validation makes both DNS labels; a spec that skipped it must not
        // steer the staging path out of the pod's directory.
        if !is_plain_name(self.volume) || !is_plain_name(self.container) {
            return Err(self.failed_to_prepare(None));
        }
        let dir_mode = fs::metadata(self.volume_path)
            .map(|m| Mode::from_bits_truncate(m.mode() & 0o7777))
            .map_err(|e| {
                warn!(volume = self.volume, "subPath: stat volume: {e}");
                self.failed_to_prepare(None)
            })?;
        let walk = resolve::open_beneath(self.volume_path, self.sub_path, Some(dir_mode));
        let opened = walk.result.map_err(|refusal| {
            debug!(
                volume = self.volume,
                sub_path = self.sub_path,
                "subPath refused: {refusal}"
            );
            if walk.was_missing {
                self.failed_to_create(&refusal)
            } else {
                self.failed_to_prepare(Some(&refusal))
            }
        })?;
        let target = self.staging_path();
        bind_fd(&opened, &target).map_err(|e| {
            warn!(
                volume = self.volume,
                container = self.container,
                "subPath: {e}"
            );
            let _ = release(&target);
            self.failed_to_prepare(None)
        })?;
        debug!(
            volume = self.volume,
            sub_path = self.sub_path,
            source = %resolve::fd_path(&opened.fd).display(),
            target = %target.display(),
            "subPath mounted"
        );
        Ok(target)
    }

    /// For an image volume (read-only, as containerd's CRI resolves its
    /// `ImageSubPath`): opens the subPath inside the image's root without
    /// following a link out of it and without creating anything; it must be
    /// a directory. Errors say what was wrong in terms of the volume only.
    pub(crate) fn prepare_in_image(&self) -> Result<PathBuf, String> {
        let ensure_failed = |what: &dyn std::fmt::Display| {
            format!(
                "failed to ensure image subpath {:?} in volume {:?}: {what}",
                self.sub_path, self.volume
            )
        };
        if !is_plain_name(self.volume) || !is_plain_name(self.container) {
            return Err(ensure_failed(&"invalid volume or container name"));
        }
        let walk = resolve::open_beneath(self.volume_path, self.sub_path, None);
        let opened = walk.result.map_err(|refusal| ensure_failed(&refusal))?;
        if !opened.is_dir {
            return Err(ensure_failed(&"only directory subpath is supported"));
        }
        let target = self.staging_path();
        bind_fd(&opened, &target).map_err(|e| {
            warn!(
                volume = self.volume,
                container = self.container,
                "image subPath: {e}"
            );
            let _ = release(&target);
            ensure_failed(&"cannot be mounted")
        })?;
        Ok(target)
    }

    /// The kubelet's texts (which name the volume mount and container) and
    /// what was wrong with the subPath, in terms of the volume only.
    fn failed_to_prepare(&self, refusal: Option<&Refusal>) -> String {
        let mut message = format!(
            "failed to prepare subPath for volumeMount {:?} of container {:?}",
            self.volume, self.container
        );
        if let Some(refusal) = refusal {
            message.push_str(&format!(": subPath {:?}: {refusal}", self.sub_path));
        }
        message
    }

    fn failed_to_create(&self, refusal: &Refusal) -> String {
        format!(
            "failed to create subPath directory for volumeMount {:?} of container {:?}: subPath {:?}: {refusal}",
            self.volume, self.container, self.sub_path
        )
    }
}

/// A single path component that names a child: not empty, `.` or `..`.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Replaces whatever is at `target` by a bind mount of the opened object,
/// through `/proc/self/fd/N`: the mount takes the very inode that was
/// opened, whatever its path now leads to.
fn bind_fd(opened: &resolve::Opened, target: &Path) -> io::Result<()> {
    release(target)?;
    if let Some(parent) = target.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(parent)?;
    }
    // A file target takes any non-directory (file, socket, device...).
    if opened.is_dir {
        fs::DirBuilder::new().mode(0o750).create(target)?;
    } else {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(target)?;
    }
    let source = format!("/proc/self/fd/{}", opened.fd.as_raw_fd());
    mount(
        Some(source.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| io::Error::other(format!("bind-mount onto {}: {e}", target.display())))
}

/// Unmounts and removes one staging path; a missing one is fine. Never
/// removes recursively: below a mount point that could not be unmounted
/// lies the volume.
pub(crate) fn release(target: &Path) -> io::Result<()> {
    mount_table::unmount(target)?;
    let removed = match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => fs::remove_dir(target),
        Ok(_) => fs::remove_file(target),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount_with(sub_path: Option<&str>, expr: Option<&str>) -> VolumeMount {
        VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            sub_path: sub_path.map(str::to_string),
            sub_path_expr: expr.map(str::to_string),
            ..Default::default()
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn absolute_and_backstepping_sub_paths_get_the_kubelets_errors() {
        let no_vars = vars(&[]);
        assert_eq!(
            requested(&mount_with(Some("/etc"), None), &no_vars).unwrap_err(),
            "error SubPath `/etc` must not be an absolute path"
        );
        assert_eq!(
            requested(&mount_with(Some("a/../../b"), None), &no_vars).unwrap_err(),
            "unable to provision SubPath `a/../../b`: must not contain '..'"
        );
        assert_eq!(
            requested(&mount_with(Some("a/b..c/d"), None), &no_vars).unwrap(),
            Some("a/b..c/d".into())
        );
        assert_eq!(
            requested(&mount_with(Some(""), None), &no_vars).unwrap(),
            None
        );
        assert_eq!(requested(&mount_with(None, None), &no_vars).unwrap(), None);
    }

    #[test]
    fn sub_path_expr_expands_the_containers_variables() {
        let env = vars(&[("POD", "old"), ("POD", "web-0"), ("EMPTY", "")]);
        let m = mount_with(None, Some("logs/$(POD)/$$(POD)"));
        assert_eq!(
            requested(&m, &env).unwrap(),
            Some("logs/web-0/$(POD)".into())
        );
        let m = mount_with(None, Some("$(NOPE)/$(EMPTY)/$(POD)/$(ALSO_NOPE)"));
        assert_eq!(
            requested(&m, &env).unwrap_err(),
            "missing value for ALSO_NOPE, EMPTY, NOPE"
        );
        // The expansion is checked like a subPath.
        let env = vars(&[("UP", ".."), ("ROOT", "/etc")]);
        let err = requested(&mount_with(None, Some("$(UP)/x")), &env).unwrap_err();
        assert_eq!(
            err,
            "unable to provision SubPath `../x`: must not contain '..'"
        );
        let err = requested(&mount_with(None, Some("$(ROOT)")), &env).unwrap_err();
        assert_eq!(err, "error SubPath `/etc` must not be an absolute path");
    }

    fn mounted_at(path: &Path) -> bool {
        mount_table::is_mount_point(path)
    }

    #[test]
    fn a_sub_path_is_bind_mounted_from_its_opened_inode_and_released() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: bind mounts need root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let pod_dir = tmp.path().join("pod");
        let volume = tmp.path().join("vol");
        fs::create_dir_all(volume.join("dir")).unwrap();
        fs::write(volume.join("dir/inside"), "in").unwrap();
        fs::write(volume.join("file"), "f").unwrap();
        std::os::unix::fs::symlink("/", volume.join("escape")).unwrap();
        let sub = |sub_path, index| SubPathMount {
            pod_dir: &pod_dir,
            volume: "data",
            volume_path: &volume,
            sub_path,
            container: "app",
            index,
        };

        let dir = sub("dir", 0).prepare().unwrap();
        assert_eq!(dir, pod_dir.join("volume-subpaths/data/app/0"));
        assert!(mounted_at(&dir));
        assert_eq!(fs::read_to_string(dir.join("inside")).unwrap(), "in");
        let file = sub("file", 1).prepare().unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "f");
        // Again (the container's next start): replaced, not stacked.
        let again = sub("dir", 0).prepare().unwrap();
        assert_eq!(mount_table::mount_points_under(&again).len(), 0);
        assert_eq!(
            mount_table::mount_points_under(&pod_dir).len(),
            2,
            "one mount per staging path"
        );

        let odd = SubPathMount {
            container: "..",
            ..sub("dir", 3)
        };
        assert!(odd.prepare().is_err());
        assert!(!pod_dir.join("volume-subpaths/data/3").exists());

        let err = sub("escape", 2).prepare().unwrap_err();
        assert_eq!(
            err,
            "failed to prepare subPath for volumeMount \"data\" of container \"app\": \
             subPath \"escape\": it leads out of the volume through a symbolic link"
        );
        assert!(!pod_dir.join("volume-subpaths/data/app/2").exists());

        mount_table::unmount_all_under(&pod_dir).unwrap();
        assert!(!mounted_at(&dir) && !mounted_at(&file));
        release(&dir).unwrap();
        release(&file).unwrap();
        assert!(!dir.exists() && !file.exists());
        assert_eq!(fs::read_to_string(volume.join("dir/inside")).unwrap(), "in");
    }
}
