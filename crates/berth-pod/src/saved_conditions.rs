//! A pod's conditions outlive an agent restart, as the API server keeps a
//! pod's conditions (and their `lastTransitionTime`) across a kubelet's:
//! the worker keeps them in the pod's directory whenever they change, and
//! a worker that adopts the running pod takes them back.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::PodCondition;

const FILE: &str = "conditions.json";

fn path(pod_dir: &Path) -> PathBuf {
    pod_dir.join(FILE)
}

/// Replaces the saved conditions (root's alone: 0600). The pod's directory
/// must exist: none is made, so a torn-down pod's stays gone.
pub(crate) fn save(pod_dir: &Path, conditions: &[PodCondition]) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(conditions).map_err(std::io::Error::other)?;
    berth_runtime::files::write_private(&path(pod_dir), &bytes)
}

/// The conditions saved last; none when there are none or they are unreadable.
pub(crate) fn load(pod_dir: &Path) -> Vec<PodCondition> {
    std::fs::read(path(pod_dir))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    #[test]
    fn conditions_round_trip_privately() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_empty());
        let conditions = vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time("2026-01-02T03:04:05Z".parse().unwrap())),
            ..Default::default()
        }];
        save(dir.path(), &conditions).unwrap();
        assert_eq!(load(dir.path()), conditions);
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(path(dir.path()), "garbage").unwrap();
        assert!(load(dir.path()).is_empty());
        assert!(save(&dir.path().join("gone"), &conditions).is_err());
    }
}
