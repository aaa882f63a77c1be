//! What every API area shares: the operation type the route table is made of, the JSON body extractor with
//! a clear error, and the shapes of "created" and "queued" answers.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use brokeforge_store::Job;

use super::contract::SchemaFn;
use crate::error::ApiError;
use crate::state::AppState;

/// One API operation: the route and its documentation come from the same entry, so the OpenAPI document
/// (`/api/v1/openapi.json`) always matches what is served.
pub struct Op {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// What the route does to a team's objects, for the policy table (`brokeforge_domain::policy`).
    pub action: brokeforge_domain::policy::Action,
    /// An example request body (JSON), empty when there is none.
    pub body: &'static str,
    /// A typed operation's request body, query parameters, and success status with its answer.
    pub request: Option<SchemaFn>,
    pub query: Option<SchemaFn>,
    pub answer: Option<(u16, SchemaFn)>,
    /// A second answer of a route that has two (a plan or the run it would start; forgotten or queued).
    pub also: Option<(u16, SchemaFn)>,
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

/// Something created, as the handler's answer type: `201` with the body.
pub struct Created<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (StatusCode::CREATED, Json(self.0)).into_response()
    }
}

/// A queued job, as its handler's answer type: `202` with `{"job": ...}` (`JobResponse` in the document).
pub struct Accepted(pub Job);

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let body = super::types::JobResponse { job: self.0 };
        (StatusCode::ACCEPTED, Json(body)).into_response()
    }
}

/// The answer of a route that queues one job.
pub type Queued = Result<Accepted, ApiError>;

/// Something queued with its job, as the handler's answer type: `202` with the body.
pub struct AcceptedWith<T>(pub T);

impl<T: serde::Serialize> IntoResponse for AcceptedWith<T> {
    fn into_response(self) -> Response {
        (StatusCode::ACCEPTED, Json(self.0)).into_response()
    }
}

/// An answer of one of the API's types (`super::types`), the type its schema in the document comes from.
pub type Typed<T> = Result<Json<T>, ApiError>;
pub type ApiResponse = Result<Response, ApiError>;

/// How lists are paged: `?limit=N` (1 to 1000, 100 by default) and `?cursor=`, the `next_cursor` of the page
/// before (none: the first page). Each page carries `next_cursor`, null at the end. A cursor is opaque to
/// clients; here it is the last id of the page before, read oldest first (events, output, servers) or newest
/// first (jobs, deployments, commands, audit). `after`/`before`, the names before `cursor`, are read too.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub cursor: Option<i64>,
    pub limit: i64,
}

pub const MAX_PAGE: i64 = 1000;

impl Page {
    pub fn of(cursor: Option<&str>, limit: Option<i64>) -> Result<Page, ApiError> {
        let limit = match limit {
            None => 100,
            Some(n) if (1..=MAX_PAGE).contains(&n) => n,
            Some(n) => {
                return Err(ApiError::invalid(
                    "limit",
                    format!("limit must be between 1 and {MAX_PAGE} (got {n})"),
                ));
            }
        };
        let cursor = match cursor.map(str::trim).filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(c.parse::<i64>().ok().filter(|id| *id >= 0).ok_or_else(|| {
                ApiError::invalid(
                    "cursor",
                    format!("cursor `{c}` is not one a page gave (use its next_cursor)"),
                )
            })?),
        };
        Ok(Page { cursor, limit })
    }

    /// The cursor of the page after this one, whose last id is `last`; none when this page was not full.
    pub fn next_cursor(&self, len: usize, last: Option<i64>) -> Option<String> {
        match last {
            Some(id) if len as i64 == self.limit => Some(id.to_string()),
            _ => None,
        }
    }
}

/// The query of a list read oldest first (events, output): the document's parameters for it.
#[derive(Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct NewerQuery {
    /// The `next_cursor` of the page before (none: from the start).
    #[serde(alias = "after")]
    pub cursor: Option<String>,
    /// Items per page, 1 to 1000 (100 by default).
    pub limit: Option<i64>,
}

/// The query of a list read newest first (jobs, deployments, commands).
#[derive(Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct OlderQuery {
    /// The `next_cursor` of the page before (none: from the newest).
    #[serde(alias = "before")]
    pub cursor: Option<String>,
    /// Items per page, 1 to 1000 (100 by default).
    pub limit: Option<i64>,
}

impl NewerQuery {
    pub fn page(&self) -> Result<Page, ApiError> {
        Page::of(self.cursor.as_deref(), self.limit)
    }
}

impl OlderQuery {
    pub fn page(&self) -> Result<Page, ApiError> {
        Page::of(self.cursor.as_deref(), self.limit)
    }
}
