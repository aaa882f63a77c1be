//! The API's request and response bodies as types: the handlers build their answers from them, and the OpenAPI
//! document's schemas are generated from them (`super::contract`: schemars, from the same serde attributes that
//! make the wire format). One file per area; all are re-exported here.

use brokeforge_store::{Job, User};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod account;
pub use account::*;
mod backups;
pub use backups::*;
mod fleet;
pub use fleet::*;
mod monitoring;
pub use monitoring::*;
mod servers;
pub use servers::*;
mod sites;
pub use sites::*;

/// An error: every non-2xx answer has this shape.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `bad_request` (400: not JSON, or fields the route does not take),
    /// `unauthorized`, `bad_credentials`, `two_factor_required` (401), `forbidden` (403), `not_found` (404:
    /// also another team's objects), `conflict`, `cancelled` (409), `invalid_input` (422, with `field`),
    /// `too_many_attempts` (429), `ssh_error`, `command_failed` (502: the server did not do it), `internal`.
    pub code: String,
    /// For people.
    pub message: String,
    /// The request field at fault, when one is.
    pub field: Option<String>,
}

/// `POST /login`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// For accounts with two-factor sign-in: a code from the app, or a recovery code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// A session: send the cookie back, and the CSRF token in `X-CSRF-Token` with every change.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LoginResponse {
    pub user: User,
    pub csrf_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UserResponse {
    pub user: User,
}

/// A job (a queued one answers `202`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobResponse {
    pub job: Job,
}

/// The answer of a change with nothing more to say.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Done {
    pub ok: bool,
}

impl Done {
    pub fn ok() -> Done {
        Done { ok: true }
    }
}

/// The jobs queued (one per server the change touches; none when it touched no server).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobsQueued {
    pub jobs: Vec<Job>,
}

/// What was deleted: its id.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Deleted {
    pub deleted: i64,
}

/// A server forgotten: nothing on it changed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Forgotten {
    pub ok: bool,
    pub note: String,
}

/// An answer without a body (`204`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NoContent;

/// What was deleted: its name.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeletedName {
    pub deleted: String,
}
