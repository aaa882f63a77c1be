//! Records as stored. Timestamps are Unix milliseconds.

use brokeforge_core::{
    ConnectionStatus, CredentialKind, EventStatus, ProvisionStatus, ProvisionType, ServiceStatus,
    ServiceType,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct User {
    pub id: i64,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    pub is_admin: bool,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    /// Signing in asks for a second factor (TOTP or a recovery code).
    pub two_factor: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Server {
    pub id: i64,
    /// Who added it.
    pub user_id: i64,
    /// The team it belongs to.
    pub team_id: i64,
    pub name: String,
    pub public_ip: String,
    pub ssh_port: u16,
    pub os: Option<String>,
    pub provision_status: ProvisionStatus,
    pub connection_status: ConnectionStatus,
    pub host_key_fingerprint: Option<String>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewServer {
    pub user_id: i64,
    pub name: String,
    pub public_ip: String,
    pub ssh_port: u16,
    pub host_key_fingerprint: Option<String>,
}

/// A server credential with its private key decrypted (the key never leaves this struct as text in logs).
#[derive(Debug, Clone)]
pub struct ServerCredential {
    pub server_id: i64,
    pub credential: CredentialKind,
    pub public_key: String,
    pub private_key: brokeforge_core::Secret,
    /// Log in as this user instead of the credential's usual one (e.g. `ubuntu` on some clouds).
    pub username: Option<String>,
}

impl ServerCredential {
    pub fn unix_user(&self) -> &str {
        self.username
            .as_deref()
            .unwrap_or(self.credential.unix_user())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServerService {
    pub id: i64,
    pub server_id: i64,
    pub service_name: String,
    pub service_type: ServiceType,
    pub configuration: serde_json::Value,
    pub status: ServiceStatus,
    pub error: Option<String>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServerSite {
    pub id: i64,
    pub server_id: i64,
    pub domain: String,
    pub document_root: String,
    pub php_version: Option<String>,
    pub status: ServiceStatus,
    pub configuration: serde_json::Value,
    /// Bumped by every change of `configuration` (changes are made under a check of it).
    #[serde(default)]
    pub config_revision: i64,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewSite {
    pub server_id: i64,
    pub domain: String,
    pub document_root: String,
    pub php_version: Option<String>,
    pub status: ServiceStatus,
    pub configuration: serde_json::Value,
}

/// One milestone of one provision run (spec: `ProvisionEvent`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProvisionEvent {
    pub id: i64,
    pub server_id: i64,
    pub job_id: Option<i64>,
    pub service_type: ServiceType,
    pub provision_type: ProvisionType,
    pub milestone: String,
    pub label: String,
    pub current_step: i64,
    pub total_steps: i64,
    pub details: serde_json::Value,
    pub status: EventStatus,
    pub error: Option<String>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub updated_at: i64,
}

impl ProvisionEvent {
    pub fn progress_percentage(&self) -> f64 {
        if self.total_steps <= 0 {
            return 0.0;
        }
        ((self.current_step as f64 / self.total_steps as f64) * 10000.0).round() / 100.0
    }
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub server_id: i64,
    pub job_id: Option<i64>,
    /// The job's attempt writing the event: the write is refused once that attempt no longer owns the job.
    pub attempt: Option<i64>,
    pub service_type: ServiceType,
    pub provision_type: ProvisionType,
    pub milestone: String,
    pub label: String,
    pub current_step: i64,
    pub total_steps: i64,
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Lines the executor writes itself (`$ command`, exit codes).
    System,
    /// A provision event changed; the chunk is the event as JSON. Part of the activity feed, not of logs.
    Event,
    /// A job ended; the chunk is `{"job_id", "status", "error"}`. Part of the activity feed, not of logs.
    Job,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
            LogStream::Event => "event",
            LogStream::Job => "job",
        }
    }
    pub fn parse(s: &str) -> LogStream {
        match s {
            "stdout" => LogStream::Stdout,
            "stderr" => LogStream::Stderr,
            "event" => LogStream::Event,
            "job" => LogStream::Job,
            _ => LogStream::System,
        }
    }
}

/// A chunk of a job's output.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CommandLog {
    pub id: i64,
    pub server_id: i64,
    pub job_id: Option<i64>,
    pub event_id: Option<i64>,
    pub stream: LogStream,
    pub chunk: String,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
}

/// A finished site command (spec: the array `SiteCommandInstaller::execute` returns).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, schemars::JsonSchema)]
pub struct SiteCommandRecord {
    pub id: i64,
    pub site_id: i64,
    pub command: String,
    pub output: String,
    pub error_output: String,
    pub exit_code: Option<i64>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub ran_at: i64,
    pub duration_ms: i64,
    pub success: bool,
    pub timed_out: bool,
}

/// How a deployment stands (a rollback is a deployment of a kept release).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Queued => "queued",
            DeploymentStatus::Running => "running",
            DeploymentStatus::Succeeded => "succeeded",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for DeploymentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "queued" => DeploymentStatus::Queued,
            "running" => DeploymentStatus::Running,
            "succeeded" => DeploymentStatus::Succeeded,
            "failed" => DeploymentStatus::Failed,
            "cancelled" => DeploymentStatus::Cancelled,
            _ => return Err(format!("unknown deployment status `{s}`")),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Deployment {
    pub id: i64,
    pub site_id: i64,
    /// The job that runs it; its command log is the deployment's log.
    pub job_id: Option<i64>,
    /// `deploy` or `rollback`.
    pub kind: String,
    pub status: DeploymentStatus,
    pub branch: Option<String>,
    pub commit_hash: Option<String>,
    /// The release directory under `releases/`.
    pub release: Option<String>,
    /// Who or what started it: `user:EMAIL`, `webhook:github`, `cli`, ...
    pub triggered_by: String,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub started_at: Option<i64>,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub finished_at: Option<i64>,
}

impl Deployment {
    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.finished_at? - self.started_at?)
    }
}
