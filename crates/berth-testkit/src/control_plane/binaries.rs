//! Finding the control plane's binaries (built by
//! scripts/build-control-plane.sh into a cache outside the clone) and
//! `kubectl` (on PATH; scripts/install-deps.sh --test installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// A directory holding etcd, kube-apiserver, kube-controller-manager and
/// kube-scheduler; overrides the build script's cache.
pub const BIN_ENV: &str = "BERTH_K8S_BIN";
/// Set to `1` (scripts/test.sh does) to make a missing control plane or
/// kubectl fail the test instead of skipping it.
pub const REQUIRE_ENV: &str = "BERTH_REQUIRE_CONTROL_PLANE";
/// The binaries a control plane runs.
pub const COMPONENTS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// The build script, found from this crate's sources.
fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-control-plane.sh")
}

/// The binaries' directory if they are there, without building them:
/// `$BERTH_K8S_BIN`, else the build script's cache when complete.
/// `Err` says why there are none.
pub fn installed_bin_dir() -> Result<PathBuf, String> {
    let dir = match std::env::var_os(BIN_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let out = Command::new("bash")
                .arg(build_script())
                .arg("--no-build")
                .output()
                .map_err(|e| format!("run {}: {e}", build_script().display()))?;
            if !out.status.success() {
                return Err(format!(
                    "control plane not built ({}); run scripts/build-control-plane.sh or set {BIN_ENV}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    check_bin_dir(&dir).map_err(|e| format!("{e:#}"))?;
    Ok(dir)
}

/// The binaries' directory, building them first if needed (about 25
/// minutes on 2 cores the first time; at once when cached).
pub fn built_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_ENV) {
        let dir = PathBuf::from(dir);
        check_bin_dir(&dir)?;
        return Ok(dir);
    }
    let out = Command::new("bash")
        .arg(build_script())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", build_script().display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", build_script().display(), out.status);
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    check_bin_dir(&dir)?;
    Ok(dir)
}

fn check_bin_dir(dir: &Path) -> anyhow::Result<()> {
    for component in COMPONENTS {
        let bin = dir.join(component);
        if !is_executable(&bin) {
            bail!("{} is missing or not executable", bin.display());
        }
    }
    Ok(())
}

/// `kubectl` as PATH finds it.
pub fn kubectl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("kubectl"))
        .find(|bin| is_executable(bin))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bin_dir_without_the_components_is_refused_naming_the_first_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_bin_dir(dir.path()).unwrap_err();
        assert!(format!("{err}").contains("/etcd is missing"), "{err}");
    }
}
