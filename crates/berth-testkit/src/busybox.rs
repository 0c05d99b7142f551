//! A busybox image built from the host's static busybox (Debian's
//! busybox-static): there is no registry to pull from, so tests and the
//! set-up script make their image locally.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_containerd::archive::ImageBuilder;

/// The static busybox the image is made from.
pub const BUSYBOX_BIN: &str = "/bin/busybox";

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\n";

/// An image like Docker Hub's busybox: `/bin/busybox` with a symlink per
/// applet, `root` and `nobody` users, a world-writable `/tmp`, `Cmd ["sh"]`.
/// Panics when busybox-static is not installed.
pub fn busybox_image(reference: &str) -> ImageBuilder {
    busybox_image_from(reference, Path::new(BUSYBOX_BIN))
}

/// [`busybox_image`] made from another static busybox binary.
pub fn busybox_image_from(reference: &str, busybox: &Path) -> ImageBuilder {
    let binary = fs::read(busybox).unwrap_or_else(|e| {
        panic!(
            "read {} (apt-get install busybox-static): {e}",
            busybox.display()
        )
    });
    let mut image = ImageBuilder::new(reference)
        .dir("bin", 0o755)
        .file("bin/busybox", binary, 0o755)
        .dir("etc", 0o755)
        .file("etc/passwd", PASSWD.as_bytes().to_vec(), 0o644)
        .file("etc/group", GROUP.as_bytes().to_vec(), 0o644)
        .dir("root", 0o700)
        .dir("tmp", 0o1777)
        .dir("var", 0o755)
        .dir("var/www", 0o755)
        .env(vec![PATH_ENV.to_owned()])
        .cmd(vec!["sh".to_owned()]);
    for applet in applets(busybox) {
        image = image.symlink(&format!("bin/{applet}"), "busybox");
    }
    image
}

/// Writes [`busybox_image`] as an OCI archive into `dir` and returns its path.
pub fn write_busybox_archive(dir: &Path, reference: &str) -> PathBuf {
    let safe: String = reference
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let path = dir.join(format!("busybox-{safe}.oci.tar"));
    let file = fs::File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut out = BufWriter::new(file);
    busybox_image(reference)
        .write_oci_archive(&mut out)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    out.flush().expect("flush image archive");
    path
}

/// The applet names `busybox --list` prints (without `busybox` itself).
fn applets(busybox: &Path) -> Vec<String> {
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .unwrap_or_else(|e| panic!("{} --list: {e}", busybox.display()));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty() && *name != "busybox" && !name.contains('/'))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerd::PrivateContainerd;

    #[tokio::test]
    async fn the_archive_imports_and_runs_under_ctr() {
        let Some(containerd) = PrivateContainerd::start_or_skip().await else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let reference = "berth.test/busybox:selftest";
        let archive = write_busybox_archive(dir.path(), reference);
        let archive = archive.to_string_lossy().into_owned();
        let out = containerd.ctr(&["images", "import", &archive]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = containerd.ctr(&["images", "ls", "-q"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains(reference));

        // Each check exits with its own code, and all passing with 7: ctr can
        // lose a short-lived container's stdout on a busy machine, not its
        // exit code.
        let script = "[ \"$(id -un)\" = root ] || exit 11; \
                      [ \"$(ls -ld /tmp | cut -c1-10)\" = drwxrwxrwt ] || exit 12; \
                      wget --help 2>&1 | head -c 7 | grep -q BusyBox || exit 13; \
                      case \"$PATH\" in */bin*) ;; *) exit 14 ;; esac; exit 7";
        let out = containerd.ctr(&["run", "--rm", reference, "selftest", "sh", "-c", script]);
        assert_eq!(
            out.status.code(),
            Some(7),
            "11: not root, 12: /tmp not 1777, 13: no busybox wget, 14: PATH; {}",
            String::from_utf8_lossy(&out.stderr)
        );

        // runc left the namespace's cgroup; the daemon's drop removes it.
        let namespace = containerd.namespace().to_owned();
        let cgroups = || {
            let mut found = crate::containerd::namespace_cgroups(&namespace);
            found.retain(|dir| dir.is_dir());
            found
        };
        assert!(!cgroups().is_empty(), "ctr run made no /{namespace} cgroup");
        drop(containerd);
        assert_eq!(cgroups(), Vec::<std::path::PathBuf>::new());
    }
}
