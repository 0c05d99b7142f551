//! Failures as the Kubernetes API reports them: a `Status` object and its HTTP code.

use http::{header, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusDetails};

use super::body::{full, Body};
use crate::service::ApiError;

/// A request that ends in a `Status` with `status: Failure`.
#[derive(Debug)]
pub(crate) struct Failure {
    code: StatusCode,
    reason: &'static str,
    message: String,
    /// The object the request was about: (kind, name).
    details: Option<(&'static str, String)>,
}

impl Failure {
    pub(crate) fn code(&self) -> StatusCode {
        self.code
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::CONFLICT, "Conflict", message)
    }

    /// The API server's answer to a path it does not serve.
    pub(crate) fn unknown_path() -> Failure {
        Failure::not_found("the server could not find the requested resource")
    }

    pub(crate) fn method_not_allowed() -> Failure {
        Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub(crate) fn too_large(limit: usize) -> Failure {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    pub(crate) fn unsupported_media_type(media_type: &str) -> Failure {
        Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {media_type:?})"),
        )
    }

    /// 415 for a PATCH body of no patch type.
    pub(crate) fn unsupported_patch(media_type: &str) -> Failure {
        Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {media_type:?})"),
        )
    }

    /// 422 `Invalid`.
    pub(crate) fn unprocessable(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
    }

    /// 410 `Expired`: a watch can no longer continue.
    pub(crate) fn expired(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::GONE, "Expired", message)
    }

    /// Names the pod the failure is about in `details`, as the API server does.
    pub(crate) fn for_pod(mut self, name: &str) -> Failure {
        self.details = Some(("pods", name.to_owned()));
        self
    }

    /// Names the object the failure is about in `details`.
    pub(crate) fn for_kind(mut self, kind: &'static str, name: &str) -> Failure {
        self.details = Some((kind, name.to_owned()));
        self
    }

    /// Names the image the failure is about in `details`.
    pub(crate) fn for_image(mut self, reference: &str) -> Failure {
        self.details = Some(("images", reference.to_owned()));
        self
    }

    pub(crate) fn status(&self) -> Status {
        Status {
            code: Some(i32::from(self.code.as_u16())),
            details: self.details.as_ref().map(|(kind, name)| StatusDetails {
                kind: Some((*kind).to_owned()),
                name: Some(name.clone()),
                ..StatusDetails::default()
            }),
            message: Some(self.message.clone()),
            reason: Some(self.reason.to_owned()),
            status: Some("Failure".to_owned()),
            ..Status::default()
        }
    }

    pub(crate) fn into_response(self) -> Response<Body> {
        tracing::debug!(code = %self.code, reason = self.reason, message = %self.message, "request failed");
        let json = serde_json::to_vec(&self.status()).unwrap_or_default();
        Response::builder()
            .status(self.code)
            .header(header::CONTENT_TYPE, "application/json")
            .body(full(json))
            .unwrap_or_default()
    }
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Failure {
        match error {
            ApiError::NotFound(message) => Failure::not_found(message),
            ApiError::AlreadyExists(message) => {
                Failure::new(StatusCode::CONFLICT, "AlreadyExists", message)
            }
            ApiError::Invalid(message) => {
                Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
            }
            ApiError::Conflict(message) => Failure::conflict(message),
            ApiError::BadRequest(message) => Failure::bad_request(message),
            ApiError::Internal(message) => Failure::internal(message),
        }
    }
}
