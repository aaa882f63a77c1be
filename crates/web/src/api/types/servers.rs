//! Servers: the list, a server, its jobs and events, the catalogue, PHP, drift.

use brokeforge_store::{CommandLog, Job, ProvisionEvent, Server, ServerService, ServerSite};
use std::collections::BTreeMap;

use brokeforge_packages::services::database::sql::UserRequest;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A server with its installed services.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerEntry {
    pub server: Server,
    pub services: Vec<ServerService>,
}

/// `GET /servers`: which servers, and the page.
// Not `#[serde(flatten)]` over NewerQuery: flattened query strings lose their numbers.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(default)]
pub struct ServersQuery {
    /// The `next_cursor` of the page before.
    #[serde(alias = "after")]
    pub cursor: Option<String>,
    /// Servers per page, 1 to 1000 (100 by default).
    pub limit: Option<i64>,
    /// Only the server of this name.
    pub name: Option<String>,
    /// Only the servers of this team (its id).
    pub team: Option<i64>,
    /// Only servers whose name or address contains this (case-insensitive), or with this tag.
    pub search: Option<String>,
}

/// A page of servers.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerList {
    pub servers: Vec<ServerEntry>,
    /// The `cursor` of the following page; null at the end.
    pub next_cursor: Option<String>,
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

/// `GET /servers/{id}/jobs`: newest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
    /// The `cursor` of the following page; null at the end.
    pub next_cursor: Option<String>,
}

/// `GET /servers/{id}/events`: provision events, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EventList {
    pub events: Vec<ProvisionEvent>,
    /// The `cursor` of the following page; null at the end.
    pub next_cursor: Option<String>,
}

/// `GET /jobs/{id}/logs`: the job's output, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobLogs {
    pub logs: Vec<CommandLog>,
    /// The `cursor` of the following page; null at the end.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServiceList {
    pub services: Vec<ServerService>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerResponse {
    pub server: Server,
}

/// A one-line provisioning command to paste into the server's root shell.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ScriptResponse {
    pub script: String,
}

/// The newest drift report, or none yet (`job_id` null, no items).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum DriftAnswer {
    Report(brokeforge_domain::drift::DriftView),
    None {
        job_id: Option<i64>,
        items: Vec<brokeforge_packages::services::server::drift::DriftItem>,
        summary: Option<brokeforge_packages::services::server::drift::DriftSummary>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepairBody {
    /// Show what would be queued and queue nothing.
    #[serde(default)]
    pub plan: bool,
}

/// Mark an item of the drift report as managed by hand, or take the mark away.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ByHandBody {
    /// The item's name as the report gives it (`file:/etc/...`).
    pub item: String,
    pub by_hand: bool,
}

/// A PHP version's php.ini settings: those set in BrokeForge, and what PHP reports now for every setting
/// BrokeForge can set.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PhpSettingsView {
    pub version: String,
    pub set: std::collections::BTreeMap<String, String>,
    pub effective: std::collections::BTreeMap<String, String>,
}

/// The modules a PHP version loads now (`php -m`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PhpModules {
    pub version: String,
    pub modules: Vec<String>,
}

/// Move a server into another of your teams.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    /// The team (id or name) to move the server into.
    pub team: String,
}

/// The exact steps a package would run, secrets masked.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PackagePlan {
    pub package: String,
    pub plan: String,
}

/// `GET /catalogue`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CatalogueQuery {
    /// One of your servers: each package then says whether it can go on that server's OS.
    pub server: Option<i64>,
}

/// A package of the catalogue; with `?server=`, why it cannot go on that server (absent when it can).
#[derive(Clone, Serialize, JsonSchema)]
pub struct CatalogueEntry {
    #[serde(flatten)]
    pub package: brokeforge_packages::catalogue::Entry,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

#[derive(Clone, Serialize, JsonSchema)]
pub struct Catalogue {
    pub packages: Vec<CatalogueEntry>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstallBody {
    pub package: String,
    #[serde(default)]
    pub settings: BTreeMap<String, Value>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct DbUserBody {
    #[serde(flatten)]
    pub request: UserRequest,
    pub password: String,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub unset: Vec<String>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtensionsBody {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Pin the server's SSH host key: its SHA-256 fingerprint, as `ssh-keygen -lf` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PinBody {
    pub fingerprint: String,
}
