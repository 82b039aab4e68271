//! Every error is one type that is a response: `application/problem+json` (RFC 9457) with a
//! `detail` a person can act on and, for validation, the offending `field`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::pipeline::PipelineError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError { status, title, detail: detail.into(), field: None }
    }
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "Bad request", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Not found", detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "Forbidden", detail)
    }
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", detail)
    }
    pub fn with_field(mut self, field: Option<String>) -> ApiError {
        self.field = field;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        (self.status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NoSuchOrg(_) => ApiError::not_found(e.to_string()),
            StoreError::OrgExists(_) => ApiError::new(StatusCode::CONFLICT, "Conflict", e.to_string()),
            StoreError::Invalid(_) | StoreError::Filter(_) => ApiError::bad_request(e.to_string()),
            StoreError::Conflict(_) => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "Precondition failed", e.to_string())
            }
            other if other.is_storage_failure() => {
                tracing::error!("the database cannot be written: {other}; free space on the data volume");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "Storage full or failing",
                    format!(
                        "the server could not write to its database ({other}); nothing of this request was stored. \
                         Reads still work; the operator must free space on the data volume (or replace a failing \
                         disk), then retry"
                    ),
                )
            }
            other => {
                tracing::error!("store error: {other}");
                ApiError::internal(other.to_string())
            }
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> ApiError {
        let e = match e {
            PipelineError::Store(s) => return s.into(),
            other => other,
        };
        let field = e.field().map(str::to_owned);
        let unprocessable = |title| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, title, e.to_string());
        match &e {
            PipelineError::Denied { .. } => unprocessable("Denied by a policy").with_field(field),
            PipelineError::PolicyFailed { .. } => unprocessable("A policy failed"),
            PipelineError::DepthExceeded { .. } => unprocessable("Follow-up actions loop"),
            PipelineError::Config(_) => unprocessable("Invalid plugin configuration").with_field(field),
            PipelineError::Plugin(_) => unprocessable("Plugin error"),
            PipelineError::NotFound(_) => ApiError::not_found(e.to_string()),
            PipelineError::Invalid(_) => ApiError::bad_request(e.to_string()),
            PipelineError::OutOfScope(_) => ApiError::forbidden(e.to_string()),
            PipelineError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "Conflict", e.to_string()),
            PipelineError::Store(_) => unreachable!("handled above"),
        }
    }
}
