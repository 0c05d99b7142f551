//! Image records: the names containerd keeps, each pointing at a target.

use berth_runtime::RuntimeError;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageRequest, Image, ListImagesRequest,
    UpdateImageRequest,
};
use containerd_client::types::Descriptor;
use tonic::Code;

use crate::client::status_error;
use crate::{labels, Containerd};

impl Containerd {
    /// The target of the image record `name`, or `None` without one.
    pub(super) async fn image_target(
        &self,
        name: &str,
    ) -> Result<Option<Descriptor>, RuntimeError> {
        let request = GetImageRequest {
            name: name.to_string(),
        };
        match ImagesClient::new(self.svc()).get(request).await {
            Ok(response) => Ok(response.into_inner().image.and_then(|i| i.target)),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status_error(status)),
        }
    }

    /// Deletes the record `name`; `NotFound` when there is none.
    pub(super) async fn delete_image_record(&self, name: &str) -> Result<(), RuntimeError> {
        let request = DeleteImageRequest {
            name: name.to_string(),
            sync: false,
            target: None,
        };
        match ImagesClient::new(self.svc()).delete(request).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => Err(RuntimeError::not_found(
                format!("image \"{name}\": not found"),
            )),
            Err(status) => Err(status_error(status)),
        }
    }

    /// Every image record in the namespace.
    pub(super) async fn image_records(&self) -> Result<Vec<Image>, RuntimeError> {
        let request = ListImagesRequest { filters: vec![] };
        let response = ImagesClient::new(self.svc())
            .list(request)
            .await
            .map_err(status_error)?;
        Ok(response.into_inner().images)
    }

    /// Creates the record, or points an existing one at the new target.
    pub(super) async fn put_image_record(
        &self,
        name: &str,
        target: Descriptor,
    ) -> Result<(), RuntimeError> {
        let image = Image {
            name: name.to_string(),
            labels: [(labels::MANAGED.to_string(), "true".to_string())].into(),
            target: Some(target),
            created_at: None,
            updated_at: None,
        };
        let mut images = ImagesClient::new(self.svc());
        let create = CreateImageRequest {
            image: Some(image.clone()),
            source_date_epoch: None,
        };
        match images.create(create).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::AlreadyExists => {
                // No mask: target and labels are replaced.
                let update = UpdateImageRequest {
                    image: Some(image),
                    update_mask: None,
                    source_date_epoch: None,
                };
                images.update(update).await.map_err(status_error)?;
                Ok(())
            }
            Err(status) => Err(status_error(status)),
        }
    }
}
