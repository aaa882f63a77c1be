//! Sites: deployments, commands, settings, the deploy key and webhook.

use brokeforge_packages::services::sites::config::ReleaseInfo;
use brokeforge_packages::services::sites::repository::RepositoryRequest;
use brokeforge_store::{Deployment, Job, ServerSite, SiteCommandRecord};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

/// `GET /sites/{id}/deployments`: newest first, with the releases kept on the server and the live one.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentList {
    pub deployments: Vec<Deployment>,
    /// The `cursor` of the following page; null at the end.
    pub next_cursor: Option<String>,
    pub current_release: Option<String>,
    pub releases: Vec<ReleaseInfo>,
}

/// A deployment with its whole log.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentDetail {
    pub deployment: Deployment,
    pub duration_ms: Option<i64>,
    pub log: String,
}

/// `GET /sites/{id}/commands`: newest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CommandList {
    pub commands: Vec<SiteCommandRecord>,
    /// The `cursor` of the following page; null at the end.
    pub next_cursor: Option<String>,
}

/// The site's deploy key: add it to the git host (read-only is enough).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeployKey {
    pub public_key: String,
}

/// The newest output of the site's scheduled commands and daemons.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TasksOutput {
    pub output: String,
}

/// `GET /sites/{id}/tasks/output`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct OutputQuery {
    /// The newest lines to read (200 by default).
    pub lines: Option<u32>,
}

/// A site's deployment settings as they are now.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeploySettings {
    pub keep_releases: u32,
    pub deploy_timeout_secs: u64,
    pub shared_paths: Vec<String>,
}

/// The deploy script (empty: the default).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScriptBody {
    pub script: String,
}

/// A site's `.env` file, whole.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EnvFile {
    pub env: String,
}

/// The deploy webhook: where to post, the secret the caller proves, and who is expected.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
    /// `github`, `gitlab` or `generic`.
    pub provider: String,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WebhookBody {
    /// `github`, `gitlab` or `generic`.
    pub provider: String,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct RepositoryBody {
    #[serde(flatten)]
    pub request: RepositoryRequest,
    #[serde(default = "yes")]
    pub deploy: bool,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(default)]
pub struct DeployBody {
    pub branch: Option<String>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct RollbackBody {
    pub release: String,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhpVersionBody {
    pub version: String,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolBody {
    pub pm: Option<String>,
    pub max_children: Option<u32>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct CommandBody {
    pub command: String,
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// A certificate the user brings.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct CustomCertificate {
    /// PEM, leaf first, then its intermediates.
    pub certificate: String,
    /// PEM private key of the leaf.
    pub private_key: String,
    #[serde(default)]
    pub hsts: bool,
}
