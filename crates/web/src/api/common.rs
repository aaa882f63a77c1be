//! What every API area shares: the operation type the route table is made of, the JSON body extractor with
//! a clear error, and the shapes of "created" and "queued" answers.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use brokeforge_store::Job;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// One API operation: the route and its documentation come from the same entry, so the OpenAPI document
/// (`/api/v1/openapi.json`) always matches what is served.
pub struct Op {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// An example request body (JSON), empty when there is none.
    pub body: &'static str,
    pub route: fn() -> MethodRouter<AppState>,
}

/// A body parsed as JSON, with a clear error for a bad one.
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                e.body_text(),
            )),
        }
    }
}

pub fn created(v: Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

/// A queued job: `202` with the job.
pub fn accepted(job: &Job) -> Response {
    (StatusCode::ACCEPTED, Json(json!({"job": job}))).into_response()
}

/// Something queued with its job (a site, a deployment): `202`.
pub fn accepted_with(v: Value) -> Response {
    (StatusCode::ACCEPTED, Json(v)).into_response()
}

pub type ApiJson = Result<Json<Value>, ApiError>;
pub type ApiResponse = Result<Response, ApiError>;
