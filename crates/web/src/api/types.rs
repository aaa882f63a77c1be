//! The API's request and response bodies as types: the handlers build their answers from them, and the OpenAPI
//! document's schemas are generated from them (`super::contract`: schemars, from the same serde attributes that
//! make the wire format).

use brokeforge_store::{Deployment, Job, Server, ServerService, ServerSite, User};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

/// A server with its installed services.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerEntry {
    pub server: Server,
    pub services: Vec<ServerService>,
}

/// The query of a list's following page: `after` (lists read oldest first) or `before` (newest first), and
/// the same `limit`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NextPage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    pub limit: i64,
}

/// `GET /servers`: which servers, and the page.
// Not `#[serde(flatten)]` over PageQuery: flattened query strings lose their numbers.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(default)]
pub struct ServersQuery {
    /// The `after` of the previous page's `next`.
    pub after: Option<i64>,
    /// Servers per page, 1 to 1000 (100 by default).
    pub limit: Option<i64>,
    /// Only the server of this name.
    pub name: Option<String>,
    /// Only the servers of this team (its id).
    pub team: Option<i64>,
    /// Only servers whose name or address contains this (case-insensitive), or with this tag.
    pub search: Option<String>,
}

/// A page of servers; `next` is the query of the following page, null at the end.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerList {
    pub servers: Vec<ServerEntry>,
    pub next: Option<NextPage>,
}

/// A server just added: its one-line provisioning command (empty when BrokeForge onboards it with the
/// root key given), and then the onboarding job.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AddedServer {
    pub server: Server,
    pub script: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerDetail {
    pub server: Server,
    pub services: Vec<ServerService>,
    pub sites: Vec<ServerSite>,
}

/// A job (a queued one answers `202`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobResponse {
    pub job: Job,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SiteList {
    pub sites: Vec<ServerSite>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SiteResponse {
    pub site: ServerSite,
}

/// A site being created (`202`): the record, and the job that sets it up on the server.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SiteQueued {
    pub site: ServerSite,
    pub job: Job,
}

/// A deployment or rollback queued (`202`): its record, and the job that runs it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentQueued {
    pub deployment: Deployment,
    pub job: Job,
}
