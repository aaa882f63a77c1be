//! Errors mapped to responses in one place: JSON with a stable code for the API, an HTML page for browsers.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use brokeforge_core::ValidationError;
use brokeforge_domain::DomainError;
use brokeforge_packages::PackageError;
use brokeforge_store::StoreError;
use serde_json::json;

/// An error as the API reports it: `{"error": {"code", "message", "field"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "not found")
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in, or send an API token as `Authorization: Bearer <token>`",
        )
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
        }
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the details",
        )
    }
}

impl From<ValidationError> for ApiError {
    fn from(v: ValidationError) -> Self {
        ApiError::invalid(v.field, v.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => ApiError::not_found(),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            e => {
                tracing::error!(error = %e, "store error");
                ApiError::internal()
            }
        }
    }
}

impl From<PackageError> for ApiError {
    fn from(e: PackageError) -> Self {
        match e {
            PackageError::Validation(v) => v.into(),
            PackageError::Store(s) => s.into(),
            PackageError::Ssh(s) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "ssh_error", s.to_string())
            }
            PackageError::CommandFailed { message, .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "command_failed", message)
            }
            PackageError::Cancelled => {
                ApiError::new(StatusCode::CONFLICT, "cancelled", "cancelled")
            }
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(v) => v.into(),
            DomainError::NotFound => ApiError::not_found(),
            DomainError::Forbidden(m) => ApiError::forbidden(m),
            DomainError::Unauthorized(m) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "bad_credentials", m)
            }
            DomainError::SecondFactorRequired(m) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "two_factor_required", m)
            }
            DomainError::Throttled(m) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", m)
            }
            DomainError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            DomainError::Remote { code, message } => {
                ApiError::new(StatusCode::BAD_GATEWAY, code, message)
            }
            DomainError::Internal(_) => ApiError::internal(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(
                json!({"error": {"code": self.code, "message": self.message, "field": self.field}}),
            ),
        )
            .into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
