//! Unpacking layers into committed overlayfs snapshots named by chain ID.

use berth_runtime::RuntimeError;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::ApplyRequest;
use containerd_client::types::Descriptor;
use tonic::Code;

use super::resolve::Resolved;
use super::{descriptor, SNAPSHOTTER};
use crate::client::status_error;
use crate::Containerd;

impl Containerd {
    /// Whether a committed snapshot of that name exists.
    pub(super) async fn snapshot_exists(&self, name: &str) -> Result<bool, RuntimeError> {
        let request = StatSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: name.to_string(),
        };
        match SnapshotsClient::new(self.svc()).stat(request).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(status_error(status)),
        }
    }

    /// Applies every layer not yet unpacked on its parent chain, under `lease`.
    pub(super) async fn unpack(&self, lease: &str, image: &Resolved) -> Result<(), RuntimeError> {
        // Snapshots found committed must stay until the image refers to them,
        // even if an image removed a moment ago left them to GC.
        let kind = format!("snapshots/{SNAPSHOTTER}");
        for chain_id in &image.chain_ids {
            self.lease_resource(lease, chain_id, &kind).await?;
        }
        if self.snapshot_exists(image.top()).await? {
            return Ok(());
        }
        let mut parent = String::new();
        let layers = image
            .manifest
            .layers()
            .iter()
            .zip(image.config.rootfs().diff_ids());
        for ((layer, diff_id), chain_id) in layers.zip(&image.chain_ids) {
            if !self.snapshot_exists(chain_id).await? {
                self.apply_layer(lease, descriptor(layer), &parent, chain_id, diff_id)
                    .await?;
            }
            parent = chain_id.clone();
        }
        Ok(())
    }

    async fn apply_layer(
        &self,
        lease: &str,
        layer: Descriptor,
        parent: &str,
        chain_id: &str,
        diff_id: &str,
    ) -> Result<(), RuntimeError> {
        let svc = self.svc_leased(lease);
        let mut snapshots = SnapshotsClient::new(svc.clone());
        let key = format!("extract-{:016x}-{chain_id}", rand::random::<u64>());
        let mounts = snapshots
            .prepare(PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.clone(),
                parent: parent.to_string(),
                labels: Default::default(),
            })
            .await
            .map_err(status_error)?
            .into_inner()
            .mounts;
        let digest = layer.digest.clone();
        let applied = async {
            let response = DiffClient::new(svc)
                .apply(ApplyRequest {
                    diff: Some(layer),
                    mounts,
                    ..Default::default()
                })
                .await
                .map_err(status_error)?;
            let applied = response.into_inner().applied.unwrap_or_default();
            if applied.digest != diff_id {
                return Err(RuntimeError::other(format!(
                    "layer {digest} unpacked to {}, the config says {diff_id}",
                    applied.digest
                )));
            }
            let commit = CommitSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                name: chain_id.to_string(),
                key: key.clone(),
                labels: Default::default(),
            };
            match snapshots.commit(commit).await {
                Ok(_) => {
                    tracing::debug!(layer = %digest, chain_id, "layer unpacked");
                    Ok(true)
                }
                // Someone unpacked the same layer meanwhile: theirs serves.
                Err(status) if status.code() == Code::AlreadyExists => Ok(false),
                Err(status) => Err(status_error(status)),
            }
        }
        .await;
        if !matches!(applied, Ok(true)) {
            let remove = RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key,
            };
            if let Err(status) = snapshots.remove(remove).await {
                tracing::debug!(error = %status.message(), "cannot remove extract snapshot");
            }
        }
        applied.map(|_| ())
    }
}
