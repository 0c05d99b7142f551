//! The content store (blobs by digest) and the leases that keep new content
//! and snapshots from garbage collection until an image record refers to them.

use std::collections::HashMap;

use berth_runtime::RuntimeError;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    AbortRequest, AddResourceRequest, CreateRequest, DeleteRequest, Info, InfoRequest,
    ReadContentRequest, Resource, UpdateRequest, WriteAction, WriteContentRequest,
};
use futures::Stream;
use tonic::Code;

use crate::archive::sha256_digest;
use crate::client::{status_error, Svc};
use crate::Containerd;

/// Size of one Content.Write or Content.Read message.
pub(super) const CHUNK: usize = 1 << 20;

/// The label containerd's garbage collector expires a lease by.
pub(crate) const EXPIRE_LABEL: &str = "containerd.io/gc.expire";
/// How long an import (or a container create) may take before containerd
/// may collect its leftovers.
pub(crate) const LEASE_TTL: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

/// The messages of one Content.Write session: data at increasing offsets,
/// then a commit carrying the digest.
pub(super) struct Upload {
    ingest_ref: String,
    total: i64,
    expected: String,
    offset: i64,
}

impl Upload {
    /// With `expected` known up front, containerd answers `AlreadyExists` to
    /// the first message when it has the blob, and nothing is sent twice.
    pub(super) fn new(name: &str, total: u64, expected: Option<&str>) -> Self {
        Self {
            ingest_ref: format!("berth-{name}-{:016x}", rand::random::<u64>()),
            total: total as i64,
            expected: expected.unwrap_or_default().to_string(),
            offset: 0,
        }
    }

    /// The ingest this session writes to, for aborting it.
    pub(super) fn ingest_ref(&self) -> &str {
        &self.ingest_ref
    }

    pub(super) fn data(&mut self, data: Vec<u8>) -> WriteContentRequest {
        let request = self.request(WriteAction::Write, data);
        self.offset += request.data.len() as i64;
        request
    }

    pub(super) fn commit(mut self, digest: &str) -> WriteContentRequest {
        self.expected = digest.to_string();
        self.request(WriteAction::Commit, Vec::new())
    }

    fn request(&self, action: WriteAction, data: Vec<u8>) -> WriteContentRequest {
        WriteContentRequest {
            action: action as i32,
            r#ref: self.ingest_ref.clone(),
            total: self.total,
            expected: self.expected.clone(),
            offset: self.offset,
            data,
            labels: HashMap::new(),
        }
    }
}

impl Containerd {
    /// Runs one Content.Write session; a blob that exists already is success.
    pub(super) async fn write_content(
        svc: Svc,
        requests: impl Stream<Item = WriteContentRequest> + Send + 'static,
    ) -> Result<(), RuntimeError> {
        let session = async {
            let mut responses = ContentClient::new(svc).write(requests).await?.into_inner();
            while responses.message().await?.is_some() {}
            Ok::<_, tonic::Status>(())
        };
        match session.await {
            Err(status) if status.code() != Code::AlreadyExists => Err(status_error(status)),
            _ => Ok(()),
        }
    }

    /// Stores an in-memory blob and returns its digest.
    pub(super) async fn write_bytes(
        svc: Svc,
        name: &str,
        data: &[u8],
    ) -> Result<String, RuntimeError> {
        let digest = sha256_digest(data);
        let mut upload = Upload::new(name, data.len() as u64, Some(&digest));
        let mut requests: Vec<_> = data
            .chunks(CHUNK)
            .map(|c| upload.data(c.to_vec()))
            .collect();
        requests.push(upload.commit(&digest));
        Self::write_content(svc, futures::stream::iter(requests)).await?;
        Ok(digest)
    }

    /// Reads a whole blob and checks it against its digest.
    pub(super) async fn read_content(&self, digest: &str) -> Result<Vec<u8>, RuntimeError> {
        let request = ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        };
        let mut stream = ContentClient::new(self.svc())
            .read(request)
            .await
            .map_err(status_error)?
            .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(status_error)? {
            data.extend_from_slice(&chunk.data);
        }
        if sha256_digest(&data) != digest {
            return Err(RuntimeError::other(format!("content {digest} is corrupt")));
        }
        Ok(data)
    }

    /// Whether the content store has the blob.
    pub(super) async fn content_exists(&self, digest: &str) -> Result<bool, RuntimeError> {
        let request = InfoRequest {
            digest: digest.to_string(),
        };
        match ContentClient::new(self.svc()).info(request).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(status_error(status)),
        }
    }

    /// Puts a blob that exists already under `lease`, so GC keeps it until
    /// the image that is being made refers to it.
    pub(super) async fn lease_content(
        &self,
        lease: &str,
        digest: &str,
    ) -> Result<(), RuntimeError> {
        self.lease_resource(lease, digest, "content").await
    }

    /// The same for a resource of any type (`snapshots/overlayfs`, ...).
    pub(super) async fn lease_resource(
        &self,
        lease: &str,
        id: &str,
        kind: &str,
    ) -> Result<(), RuntimeError> {
        let request = AddResourceRequest {
            id: lease.to_string(),
            resource: Some(Resource {
                id: id.to_string(),
                r#type: kind.to_string(),
            }),
        };
        LeasesClient::new(self.svc())
            .add_resource(request)
            .await
            .map_err(status_error)?;
        Ok(())
    }

    /// Drops a half-written ingest (a failed or interrupted fetch).
    pub(super) async fn abort_ingest(&self, ingest_ref: &str) {
        let request = AbortRequest {
            r#ref: ingest_ref.to_string(),
        };
        match ContentClient::new(self.svc()).abort(request).await {
            Ok(_) => tracing::debug!(ingest_ref, "ingest aborted"),
            // Never started, or committed after all.
            Err(status) if status.code() == Code::NotFound => {}
            Err(status) => {
                tracing::warn!(ingest_ref, error = %status.message(), "cannot abort ingest")
            }
        }
    }

    /// Merges labels into a blob's labels (the GC references of notes 3.9).
    pub(super) async fn label_content(
        &self,
        digest: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        let request = UpdateRequest {
            info: Some(Info {
                digest: digest.to_string(),
                labels,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        };
        ContentClient::new(self.svc())
            .update(request)
            .await
            .map_err(status_error)?;
        Ok(())
    }

    /// A lease that expires by itself should the agent die mid-import.
    pub(super) async fn create_lease(&self) -> Result<String, RuntimeError> {
        self.create_named_lease(format!("berth-image-{:016x}", rand::random::<u64>()))
            .await
    }

    /// A lease named `id` that expires by itself after [`LEASE_TTL`].
    pub(crate) async fn create_named_lease(&self, id: String) -> Result<String, RuntimeError> {
        let expire = jiff::Timestamp::now() + LEASE_TTL;
        let request = CreateRequest {
            id: id.clone(),
            labels: HashMap::from([(EXPIRE_LABEL.to_string(), expire.to_string())]),
        };
        LeasesClient::new(self.svc())
            .create(request)
            .await
            .map_err(status_error)?;
        Ok(id)
    }

    /// Drops a lease; what it protected is then kept only by references.
    pub(crate) async fn delete_lease(&self, id: &str) {
        let request = DeleteRequest {
            id: id.to_string(),
            sync: false,
        };
        if let Err(status) = LeasesClient::new(self.svc()).delete(request).await {
            // It expires on its own; nothing to undo.
            tracing::warn!(lease = id, error = %status.message(), "cannot delete lease");
        }
    }
}
