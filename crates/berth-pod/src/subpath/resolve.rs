//! Opens a path inside a volume without ever leaving it, as the kubelet's
//! `doSafeOpen` / `doSafeMakeDir` (pkg/volume/util/subpath): one component at
//! a time with `openat(O_PATH | O_NOFOLLOW)` relative to the directory opened
//! before, so a symlink the pod made is read, never followed by the kernel.
//!
//! Symlinks are resolved here, against the volume: the kubelet allows a
//! subPath through symlinks that end inside the volume (it evaluates them and
//! checks the result lies within the volume), so a relative link to a sibling
//! directory works, and so does an absolute link naming a path under the
//! volume's real path on the host. Anything else is refused.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fchmod, fstat, mkdirat, Mode, SFlag};

/// Linux's own limit on symlinks followed in one lookup (MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;
/// How deep below the volume a subPath may lead; each level holds an open
/// directory while the walk lasts.
const MAX_DEPTH: usize = 256;
/// Lookups in one walk: symlink targets add components, and each is a
/// syscall the agent makes for the pod.
const MAX_LOOKUPS: usize = 4096;

/// What the walk opened: an `O_PATH` descriptor of the object the subPath
/// names, to bind-mount through `/proc/self/fd/N`.
#[derive(Debug)]
pub(crate) struct Opened {
    pub fd: OwnedFd,
    pub is_dir: bool,
}

/// Why a subPath cannot be opened. Its texts never name anything outside the
/// volume: they end up in the pod's status.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("it leads out of the volume through a symbolic link")]
    Escapes,
    #[error("too many levels of symbolic links")]
    TooManyLinks,
    #[error("it is more than {MAX_DEPTH} directories deep")]
    TooDeep,
    #[error("it takes more than {MAX_LOOKUPS} lookups to resolve")]
    TooLong,
    #[error("a component of it is not a directory")]
    NotADirectory,
    #[error("{}", .0.desc())]
    Io(Errno),
}

/// The result of a walk: whether a missing directory was (or had to be)
/// created decides the kubelet's message ("create" or "prepare").
#[derive(Debug)]
pub(crate) struct Walk {
    pub result: Result<Opened, Refusal>,
    pub was_missing: bool,
}

/// Opens `sub_path` below the directory `volume`, creating missing
/// directories (mode `dir_mode`, as the kubelet gives them the volume's) on
/// the way; with no `dir_mode` (a read-only volume) a missing one is an
/// error. `volume` itself is trusted (berth's or the admin's path) and may
/// be reached through symlinks; nothing below it is.
pub(crate) fn open_beneath(volume: &Path, sub_path: &str, dir_mode: Option<Mode>) -> Walk {
    let mut walker = Walker {
        was_missing: false,
        links: 0,
    };
    let result = walker.walk(volume, sub_path, dir_mode);
    Walk {
        result,
        was_missing: walker.was_missing,
    }
}

struct Walker {
    was_missing: bool,
    links: usize,
}

impl Walker {
    fn walk(
        &mut self,
        volume: &Path,
        sub_path: &str,
        dir_mode: Option<Mode>,
    ) -> Result<Opened, Refusal> {
        let real_volume = std::fs::canonicalize(volume)
            .map_err(|e| Refusal::Io(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        let root = open_dir_path(&real_volume)?;
        // The directories entered below the root; `..` pops one.
        let mut dirs: Vec<OwnedFd> = Vec::new();
        let mut pending: VecDeque<OsString> = components(Path::new(sub_path));
        let mut last: Option<Opened> = None;
        let mut lookups = 0;
        while let Some(name) = pending.pop_front() {
            lookups += 1;
            if lookups > MAX_LOOKUPS {
                return Err(Refusal::TooLong);
            }
            if last.is_some() {
                // Something that is not a directory, with more to come.
                return Err(Refusal::NotADirectory);
            }
            if name == ".." {
                dirs.pop().ok_or(Refusal::Escapes)?;
                continue;
            }
            let parent = dirs.last().unwrap_or(&root);
            let fd = match openat(parent, name.as_os_str(), path_flags(), Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    self.was_missing = true;
                    let Some(dir_mode) = dir_mode else {
                        return Err(Refusal::Io(Errno::ENOENT));
                    };
                    match make_dir(parent, &name, dir_mode) {
                        Ok(fd) => fd,
                        // Made by someone else meanwhile: look again.
                        Err(Refusal::Io(Errno::EEXIST)) => {
                            self.count_step()?;
                            pending.push_front(name);
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(Refusal::Io(e)),
            };
            let kind =
                SFlag::from_bits_truncate(fstat(&fd).map_err(Refusal::Io)?.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFLNK {
                self.count_step()?;
                // Empty path: the link `fd` itself, not whatever now has its name.
                let target = readlinkat(&fd, "").map_err(Refusal::Io)?;
                let target = Path::new(&target);
                let rest = if target.is_absolute() {
                    // Absolute: inside only when it names the volume's real path.
                    let inside = target
                        .strip_prefix(&real_volume)
                        .map_err(|_| Refusal::Escapes)?;
                    dirs.clear();
                    components(inside)
                } else {
                    components(target)
                };
                for component in rest.into_iter().rev() {
                    pending.push_front(component);
                }
            } else if kind == SFlag::S_IFDIR {
                if dirs.len() == MAX_DEPTH {
                    return Err(Refusal::TooDeep);
                }
                dirs.push(fd);
            } else {
                last = Some(Opened { fd, is_dir: false });
            }
        }
        Ok(match (last, dirs.pop()) {
            (Some(file), _) => file,
            (None, Some(dir)) => Opened {
                fd: dir,
                is_dir: true,
            },
            (None, None) => Opened {
                fd: root,
                is_dir: true,
            },
        })
    }

    /// Bounds the symlinks read and the lookups retried, as the kernel's ELOOP.
    fn count_step(&mut self) -> Result<(), Refusal> {
        self.links += 1;
        if self.links > MAX_SYMLINKS {
            return Err(Refusal::TooManyLinks);
        }
        Ok(())
    }
}

fn path_flags() -> OFlag {
    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn open_dir_path(path: &Path) -> Result<OwnedFd, Refusal> {
    openat(
        nix::fcntl::AT_FDCWD,
        path,
        path_flags() | OFlag::O_DIRECTORY,
        Mode::empty(),
    )
    .map_err(Refusal::Io)
}

/// `mkdirat` in the opened parent, then opens what was made without
/// following a link and sets its mode (mkdir's is cut by the umask). If the
/// pod swapped in a symlink meanwhile, the open fails; if a file, it is the
/// pod's own file and mounting it gives the pod nothing new.
fn make_dir(parent: &OwnedFd, name: &OsStr, mode: Mode) -> Result<OwnedFd, Refusal> {
    mkdirat(parent.as_fd(), name, mode).map_err(Refusal::Io)?;
    let dir = openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => Refusal::NotADirectory,
        e => Refusal::Io(e),
    })?;
    fchmod(&dir, mode).map_err(Refusal::Io)?;
    Ok(dir)
}

/// The names to walk: `.` and empty components dropped, `..` kept, a root
/// dropped (the caller decides what an absolute path means).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsStr::from_bytes(b"..").to_os_string()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// The path an opened descriptor names now, for logs only.
pub(crate) fn fd_path(fd: &OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    const MODE: Mode = Mode::from_bits_truncate(0o777);

    fn volume() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let volume = tmp.path().join("vol");
        fs::create_dir(&volume).unwrap();
        (tmp, volume)
    }

    fn open(volume: &Path, sub: &str) -> Result<Opened, Refusal> {
        open_beneath(volume, sub, Some(MODE)).result
    }

    /// The inode an `Opened` names, to compare with what a path names.
    fn same(opened: &Opened, path: &Path) -> bool {
        let a = fstat(&opened.fd).unwrap();
        let b = fs::symlink_metadata(path).unwrap();
        a.st_ino == b.ino() && a.st_dev == b.dev()
    }

    #[test]
    fn a_symlink_to_the_host_root_is_refused() {
        let (_tmp, vol) = volume();
        symlink("/", vol.join("escape")).unwrap();
        assert_eq!(open(&vol, "escape").unwrap_err(), Refusal::Escapes);
        assert_eq!(open(&vol, "escape/etc").unwrap_err(), Refusal::Escapes);
    }

    #[test]
    fn a_symlink_to_the_parent_is_refused() {
        let (tmp, vol) = volume();
        symlink("..", vol.join("up")).unwrap();
        fs::create_dir(vol.join("d")).unwrap();
        symlink("../../x", vol.join("d/up2")).unwrap();
        assert_eq!(open(&vol, "up").unwrap_err(), Refusal::Escapes);
        assert_eq!(open(&vol, "d/up2").unwrap_err(), Refusal::Escapes);
        assert!(!tmp.path().join("x").exists());
    }

    #[test]
    fn a_missing_directory_behind_an_outward_symlink_is_not_created() {
        let (tmp, vol) = volume();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        symlink(&outside, vol.join("t")).unwrap();
        assert_eq!(open(&vol, "t/newdir").unwrap_err(), Refusal::Escapes);
        assert!(!outside.join("newdir").exists());
    }

    #[test]
    fn dot_dot_and_absolute_paths_stay_below_the_volume() {
        let (tmp, vol) = volume();
        // The caller refuses these first; the walk is safe with them anyway.
        assert_eq!(open(&vol, "..").unwrap_err(), Refusal::Escapes);
        assert_eq!(open(&vol, "a/../../b").unwrap_err(), Refusal::Escapes);
        assert!(!tmp.path().join("b").exists());
        let abs = open(&vol, "/etc").unwrap();
        assert!(same(&abs, &vol.join("etc")), "an absolute path is relative");
    }

    #[test]
    fn symlinks_that_stay_inside_the_volume_are_followed() {
        let (_tmp, vol) = volume();
        fs::create_dir_all(vol.join("data/current")).unwrap();
        symlink("data/current", vol.join("rel")).unwrap();
        symlink("../../data", vol.join("data/current/back")).unwrap();
        symlink(vol.join("data"), vol.join("abs")).unwrap();
        let rel = open(&vol, "rel").unwrap();
        assert!(rel.is_dir && same(&rel, &vol.join("data/current")));
        let back = open(&vol, "rel/back/current").unwrap();
        assert!(same(&back, &vol.join("data/current")));
        let abs = open(&vol, "abs/current").unwrap();
        assert!(same(&abs, &vol.join("data/current")));
    }

    #[test]
    fn nested_missing_directories_are_created_with_the_given_mode() {
        let (_tmp, vol) = volume();
        let walk = open_beneath(&vol, "a/b/c", Some(Mode::from_bits_truncate(0o2775)));
        let opened = walk.result.unwrap();
        assert!(walk.was_missing);
        assert!(opened.is_dir && same(&opened, &vol.join("a/b/c")));
        for dir in ["a", "a/b", "a/b/c"] {
            let mode = fs::metadata(vol.join(dir)).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, 0o2775, "{dir}");
        }
        let again = open_beneath(&vol, "a/b/c", Some(MODE));
        assert!(!again.was_missing);
    }

    #[test]
    fn without_a_mode_nothing_missing_is_created() {
        let (_tmp, vol) = volume();
        fs::create_dir(vol.join("a")).unwrap();
        let walk = open_beneath(&vol, "a/b/c", None);
        assert_eq!(walk.result.unwrap_err(), Refusal::Io(Errno::ENOENT));
        assert!(walk.was_missing);
        assert!(!vol.join("a/b").exists());
    }

    #[test]
    fn a_file_sub_path_opens_the_file() {
        let (_tmp, vol) = volume();
        fs::write(vol.join("app.conf"), "x").unwrap();
        let opened = open(&vol, "app.conf").unwrap();
        assert!(!opened.is_dir && same(&opened, &vol.join("app.conf")));
        assert_eq!(
            open(&vol, "app.conf/more").unwrap_err(),
            Refusal::NotADirectory
        );
    }

    #[test]
    fn long_and_deep_walks_are_bounded() {
        let (_tmp, vol) = volume();
        // Each link costs 1600 lookups and leads back to the volume.
        fs::create_dir(vol.join("d")).unwrap();
        symlink(vec!["d/.."; 800].join("/"), vol.join("l")).unwrap();
        assert!(open(&vol, "l/l/d").is_ok());
        assert_eq!(open(&vol, "l/l/l/d").unwrap_err(), Refusal::TooLong);
        let deep = vec!["d"; MAX_DEPTH + 1].join("/");
        assert_eq!(open(&vol, &deep).unwrap_err(), Refusal::TooDeep);
    }

    #[test]
    fn a_symlink_loop_ends() {
        let (_tmp, vol) = volume();
        symlink("b", vol.join("a")).unwrap();
        symlink("a", vol.join("b")).unwrap();
        assert_eq!(open(&vol, "a").unwrap_err(), Refusal::TooManyLinks);
    }

    #[test]
    fn the_volume_itself_may_be_reached_through_a_symlink() {
        let (tmp, vol) = volume();
        fs::create_dir(vol.join("d")).unwrap();
        let link = tmp.path().join("link-to-vol");
        symlink(&vol, &link).unwrap();
        let opened = open(&link, "d").unwrap();
        assert!(same(&opened, &vol.join("d")));
        let root = open(&vol, "").unwrap();
        assert!(root.is_dir && same(&root, &vol));
    }
}
