//! What the node allocated to a pod's containers and what their cgroups
//! carry outlive an agent restart, as the kubelet keeps them in its
//! allocation and actuation checkpoints: the worker keeps them in the pod's
//! directory, and a worker that adopts the running pod takes them back (a
//! resize still pending or not yet applied then stays so).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::ResourceRequirements;
use serde::{Deserialize, Serialize};

const FILE: &str = "resources.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// By container name.
    pub allocated: BTreeMap<String, ResourceRequirements>,
    /// The pod-level resources allocated.
    pub pod: ResourceRequirements,
    /// By container (instance) id.
    pub actuated: BTreeMap<String, ResourceRequirements>,
}

fn path(pod_dir: &Path) -> PathBuf {
    pod_dir.join(FILE)
}

/// Replaces the checkpoint (root's alone: 0600). The pod's directory must
/// exist: none is made, so a torn-down pod's stays gone.
pub(crate) fn save(pod_dir: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(checkpoint).map_err(std::io::Error::other)?;
    berth_runtime::files::write_private(&path(pod_dir), &bytes)
}

/// The checkpoint saved last, if there is a readable one.
pub(crate) fn load(pod_dir: &Path) -> Option<Checkpoint> {
    serde_json::from_slice(&std::fs::read(path(pod_dir)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn checkpoints_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), None);
        let r = ResourceRequirements {
            limits: Some([("cpu".to_string(), Quantity("1".into()))].into()),
            ..Default::default()
        };
        let checkpoint = Checkpoint {
            allocated: [("app".to_string(), r.clone())].into(),
            pod: Default::default(),
            actuated: [("c-1".to_string(), r)].into(),
        };
        save(dir.path(), &checkpoint).unwrap();
        assert_eq!(load(dir.path()), Some(checkpoint.clone()));
        std::fs::write(path(dir.path()), "garbage").unwrap();
        assert_eq!(load(dir.path()), None);
        assert!(save(&dir.path().join("gone"), &checkpoint).is_err());
    }
}
