//! The API's request and response bodies as types: the handlers build their answers from them, and the OpenAPI
//! document's schemas are generated from them (`super::contract`: schemars, from the same serde attributes that
//! make the wire format).

use brokeforge_packages::services::sites::config::ReleaseInfo;
use brokeforge_store::{
    ApiToken, CommandLog, Deployment, Invitation, Job, KeyDeployment, Member, ProvisionEvent,
    Recipe, RecipeRun, Server, ServerService, ServerSite, SiteCommandRecord, User, UserSshKey,
    accounts::SessionInfo,
};
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

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TokenList {
    pub tokens: Vec<ApiToken>,
}

/// A token just created: `token` is shown this once (send it as `Authorization: Bearer TOKEN`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CreatedToken {
    pub token: String,
    pub record: ApiToken,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

/// Two-factor sign-in being set up: the secret for the app, also as an `otpauth://` URI (a QR code).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TwoFactorSetup {
    pub secret: String,
    pub otpauth_uri: String,
}

/// Whether two-factor sign-in is on; when just turned on, the recovery codes (shown this once).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TwoFactorState {
    pub two_factor: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery_codes: Vec<String>,
}

/// A browser session; `current` marks the one asking.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionEntry {
    pub session: SessionInfo,
    pub current: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionEntry>,
}

/// Confirm or turn off two-factor sign-in.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TwoFactorBody {
    /// A code from the app (or, to turn it off, a recovery code).
    pub code: String,
    /// To turn it off: the account's password.
    #[serde(default)]
    pub password: String,
}

/// A team as its member sees it: `role` is the caller's own.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TeamEntry {
    pub id: i64,
    pub name: String,
    /// The caller's personal team (it takes no members).
    pub personal: bool,
    /// Members must have two-factor sign-in on.
    pub require_two_factor: bool,
    pub role: brokeforge_core::TeamRole,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
}

impl TeamEntry {
    pub fn of(t: &brokeforge_store::Team, role: brokeforge_core::TeamRole) -> TeamEntry {
        TeamEntry {
            id: t.id,
            name: t.name.clone(),
            personal: t.personal_of.is_some(),
            require_two_factor: t.require_two_factor,
            role,
            created_at: t.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TeamList {
    pub teams: Vec<TeamEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TeamResponse {
    pub team: TeamEntry,
}

/// A team's members; its open invitations are listed to those who may manage members.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TeamMembers {
    pub team: TeamEntry,
    pub members: Vec<Member>,
    pub invitations: Vec<Invitation>,
}

/// An invitation made: its single-use link path (valid 7 days), and whether it was emailed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InvitationCreated {
    pub invitation: Invitation,
    pub path: String,
    pub emailed: bool,
    /// Why mailing failed, when a mail relay is configured and it did.
    pub email_error: Option<String>,
}

/// A team by id and name (what an invitation leads to).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TeamRef {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InvitationView {
    pub invitation: Invitation,
    pub team: TeamRef,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JoinedTeam {
    pub team: TeamRef,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NewTeam {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Invite {
    pub email: String,
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SetRole {
    pub email: String,
    pub role: String,
    /// The team's servers (by name) the member is narrowed to; `[]`: all of them; absent: unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TeamSettings {
    pub require_two_factor: bool,
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

/// A personal SSH key and the servers it is on.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SshKeyEntry {
    pub id: i64,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    pub servers: Vec<KeyDeployment>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SshKeyList {
    pub keys: Vec<SshKeyEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NewSshKey {
    pub name: String,
    /// One line of `authorized_keys`: `ssh-ed25519 AAAA... comment`.
    pub public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SshKeyResponse {
    pub key: UserSshKey,
}

/// The jobs queued (one per server the change touches; none when it touched no server).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobsQueued {
    pub jobs: Vec<Job>,
}

/// A personal key on a server: whose, for which Unix user; `name` and `fingerprint` are absent when the
/// key was deleted from its account and is being taken off.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerKeyEntry {
    pub key_id: i64,
    pub user_id: i64,
    pub unix_user: String,
    /// installing, active, failed or removing.
    pub status: String,
    pub name: Option<String>,
    pub fingerprint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerKeyList {
    pub keys: Vec<ServerKeyEntry>,
}

/// Put one of your keys on a server.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct KeyPlacement {
    /// The key's id, name or fingerprint.
    pub key: String,
    /// `brokeforge` (the default) or `root`.
    #[serde(default = "brokeforge_user")]
    pub user: String,
}

fn brokeforge_user() -> String {
    "brokeforge".into()
}

/// Tags to add to a server and to take off it (lowercase letters, digits, - and _).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagsBody {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerTags {
    pub server_id: i64,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RecipeList {
    pub recipes: Vec<Recipe>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RecipeResponse {
    pub recipe: Recipe,
}

/// What was deleted: its id.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Deleted {
    pub deleted: i64,
}

/// What a run would do (`plan: true`): nothing has started.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunPlanResponse {
    pub plan: brokeforge_domain::recipes::RunPlan,
}

/// A run started or resumed (`202`); its servers' jobs follow in waves.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunStarted {
    pub run: RecipeRun,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunList {
    pub runs: Vec<RecipeRun>,
}

/// `GET /recipe-runs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RunsQuery {
    /// The newest runs to list (50 by default).
    pub limit: Option<i64>,
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

/// An alert rule with its state; `description` says it in words.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AlertEntry {
    pub id: i64,
    /// metric, service_down, not_reporting, job_failed, drift or cert_expiring.
    pub kind: String,
    pub metric: Option<String>,
    /// above or below.
    pub comparison: Option<String>,
    pub threshold: Option<f64>,
    pub for_seconds: i64,
    /// The team channel it notifies (none: all of them).
    pub channel: Option<String>,
    /// ok, pending, firing or resolved.
    pub state: String,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub state_since: i64,
    pub last_value: Option<f64>,
    pub detail: Option<String>,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub last_notified_at: Option<i64>,
    pub description: String,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AlertResponse {
    pub alert: AlertEntry,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ChannelList {
    pub channels: Vec<brokeforge_store::Channel>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryResponse {
    pub delivery: brokeforge_store::Delivery,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<brokeforge_store::Delivery>,
}

/// `GET /servers/{id}/metrics` and `GET /sites/{id}/check`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct MetricsQuery {
    /// Milliseconds since the epoch, or a duration back from now (`1h`, `24h`, `7d`); 1h by default.
    pub since: Option<String>,
    /// Comma-separated metric names whose series to return.
    pub metrics: Option<String>,
}

/// A site's HTTP check and how it went last.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CheckEntry {
    pub path: String,
    pub https: bool,
    pub expect: i64,
    pub interval_seconds: i64,
    pub timeout_seconds: i64,
    /// off, fail or rollback.
    pub after_deploy: String,
    /// ok, failing or unknown.
    pub state: String,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub last_checked_at: Option<i64>,
    pub last_status: Option<i64>,
    pub last_ms: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CheckResponse {
    pub check: CheckEntry,
}

/// The check, and its up (1/0) and response-time series since `since`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CheckWithHistory {
    pub check: CheckEntry,
    pub history: Vec<brokeforge_domain::monitoring::Series>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StorageList {
    pub storages: Vec<brokeforge_store::BackupStorage>,
}

/// A storage defined; an SFTP one's `configuration.public_key` is the key to authorize on the host.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StorageResponse {
    pub storage: brokeforge_store::BackupStorage,
}

/// What was deleted: its name.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DeletedName {
    pub deleted: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PlanList {
    pub plans: Vec<brokeforge_domain::backups::PlanView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PlanResponse {
    pub plan: brokeforge_store::BackupPlan,
}

/// A plan with its newest snapshot, last restore drill and every snapshot, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PlanDetail {
    pub plan: brokeforge_domain::backups::PlanView,
    pub snapshots: Vec<brokeforge_store::BackupSnapshot>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotList {
    pub snapshots: Vec<brokeforge_store::BackupSnapshot>,
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

/// `GET /audit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct AuditQuery {
    /// A server id.
    pub server: Option<i64>,
    /// A user's email.
    pub user: Option<String>,
    /// Text the action contains (`deploy`, `POST /servers`).
    pub action: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub since: Option<i64>,
    /// The `next_cursor` of the page before.
    #[serde(alias = "before")]
    pub cursor: Option<String>,
    /// Entries per page, 1 to 1000 (100 by default).
    pub limit: Option<i64>,
    /// A team's id: entries about its servers.
    pub team: Option<i64>,
}

/// Audit entries, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditPage {
    pub entries: Vec<brokeforge_store::AuditEntry>,
    /// The `cursor` of the following page; null at the end.
    pub next_cursor: Option<String>,
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
