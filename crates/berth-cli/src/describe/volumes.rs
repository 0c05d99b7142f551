//! The Volumes section: each volume by its source kind.

use super::*;

pub(super) fn volumes(w: &mut Writer, volumes: &[Volume]) {
    if volumes.is_empty() {
        w.write(0, "Volumes:\t<none>\n");
        return;
    }
    w.write(0, "Volumes:\n");
    for volume in volumes {
        w.write(1, &format!("{}:\n", volume.name));
        if let Some(host) = &volume.host_path {
            w.write(
                2,
                &format!(
                    "Type:\tHostPath (bare host directory volume)\n    Path:\t{}\n    HostPathType:\t{}\n",
                    host.path,
                    host.type_.as_deref().unwrap_or_default()
                ),
            );
        } else if let Some(empty) = &volume.empty_dir {
            let limit = empty
                .size_limit
                .as_ref()
                .map(|q| q.0.clone())
                .filter(|q| !q.is_empty() && q != "0")
                .unwrap_or_else(|| "<unset>".to_string());
            w.write(
                2,
                &format!(
                    "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n    Medium:\t{}\n    SizeLimit:\t{limit}\n",
                    empty.medium.as_deref().unwrap_or_default()
                ),
            );
        } else if let Some(map) = &volume.config_map {
            w.write(
                2,
                &format!(
                    "Type:\tConfigMap (a volume populated by a ConfigMap)\n    Name:\t{}\n    Optional:\t{}\n",
                    map.name,
                    map.optional.unwrap_or(false)
                ),
            );
        } else if let Some(secret) = &volume.secret {
            w.write(
                2,
                &format!(
                    "Type:\tSecret (a volume populated by a Secret)\n    SecretName:\t{}\n    Optional:\t{}\n",
                    secret.secret_name.as_deref().unwrap_or_default(),
                    secret.optional.unwrap_or(false)
                ),
            );
        } else if let Some(claim) = &volume.persistent_volume_claim {
            w.write(
                2,
                &format!(
                    "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)\n    ClaimName:\t{}\n    ReadOnly:\t{}\n",
                    claim.claim_name,
                    claim.read_only.unwrap_or(false)
                ),
            );
        } else if volume.projected.is_some() {
            w.write(
                2,
                "Type:\tProjected (a volume that contains injected data from multiple sources)\n",
            );
        } else if let Some(image) = &volume.image {
            w.write(
                2,
                &format!(
                    "Type:\tImage (a container image or OCI artifact)\n    Reference:\t{}\n    PullPolicy:\t{}\n",
                    image.reference.as_deref().unwrap_or_default(),
                    image.pull_policy.as_deref().unwrap_or_default()
                ),
            );
        } else if volume.downward_api.is_some() {
            w.write(2, "Type:\tDownwardAPI (a volume populated by information about the pod)\n    Items:\n");
        } else {
            w.write(1, "<unknown>\n");
        }
    }
}
