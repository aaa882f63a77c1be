//! The JSON API under `/api/v1`, by area. Every resource is reached through its server, found only among
//! the caller's own (the `Owned*` extractors): another user's server, site, job or deployment answers 404.
//! The route table below is also the OpenAPI document.

mod account;
mod audit;
mod backups;
pub mod contract;
pub mod idempotency;
/// The page links to the same download.
pub use backups::download as backups_download;
pub use backups::recovery_kit as backups_recovery_kit;
pub mod common;
mod databases;
mod drift;
mod firewall;
mod jobs;
mod logs;
mod monitoring;
pub mod openapi;
mod php;
mod recipes;
mod servers;
mod sites;
mod ssh_keys;
mod stream;
mod teams;
pub mod types;

use axum::routing::MethodRouter;
use axum::{Json, Router};
use serde_json::Value;

use common::Op;
use types::*;

use crate::state::AppState;

/// A row: `METHOD "PATH" HANDLER, POLICY_ACTION, "summary", "example body"`, then for a typed operation its
/// request body's type (`, in T`), its query's (`, query T`) and its success status and answer's type
/// (`=> 200 T`, or `=> 200 T | 202 U` for a route with two answers). The types are the ones the handler reads and answers; the document's schemas come from them.
macro_rules! ops {
    ($($method:ident $path:literal $handler:path, $action:ident, $summary:literal, $body:literal
       $(, in $request:ty)? $(, query $query:ty)? $(=> $status:literal $answer:ty $(| $status2:literal $answer2:ty)?)?;)+) => {
        vec![$(Op {
            method: stringify!($method),
            path: $path,
            action: brokeforge_domain::policy::Action::$action,
            summary: $summary,
            body: $body,
            request: opt!($(contract::schema::<$request> as contract::SchemaFn)?),
            query: opt!($(contract::inline::<$query> as contract::SchemaFn)?),
            answer: opt!($(($status, contract::schema::<$answer> as contract::SchemaFn))?),
            also: opt!($($(($status2, contract::schema::<$answer2> as contract::SchemaFn))?)?),
            route: || axum::routing::$method($handler),
        }),+]
    };
}

macro_rules! opt {
    () => {
        None
    };
    ($e:expr) => {
        Some($e)
    };
}

pub fn operations() -> Vec<Op> {
    ops! {
        get "/openapi.json" document, Account, "This document", "";
        post "/login" account::login, Account, "Start a session (answers with the CSRF token for later requests)", r#"{"email":"you@example.com","password":"...","code":"123456 (with two-factor sign-in)"}"#, in LoginRequest => 200 LoginResponse;
        post "/logout" account::logout, Account, "End the session", "" => 200 Done;
        get "/me" account::me, Account, "The signed-in user", "" => 200 UserResponse;
        post "/account/2fa" account::two_factor_setup, Account, "Start setting up two-factor sign-in: the secret and its otpauth:// URI", "" => 200 TwoFactorSetup;
        post "/account/2fa/confirm" account::two_factor_confirm, Account, "Turn two-factor sign-in on with the app's first code; answers with 10 recovery codes (shown once)", r#"{"code":"123456"}"#, in TwoFactorBody => 200 TwoFactorState;
        post "/account/2fa/disable" account::two_factor_disable, Account, "Turn two-factor sign-in off (password and a code)", r#"{"password":"...","code":"123456"}"#, in TwoFactorBody => 200 TwoFactorState;
        get "/catalogue" servers::list_catalogue, Account, "Installable packages with their parameters and milestones; with ?server=ID, the ones that server's OS cannot take say why (unavailable)", "", query CatalogueQuery => 200 Catalogue;
        get "/servers" servers::list_servers, Account, "Your teams' servers with their services (paged: limit, after, next; name=NAME finds one, team=ID one team's, search=TEXT part of a name or address, or a tag)", "", query ServersQuery => 200 ServerList;
        post "/servers" servers::create_server, Account, "Add a server (with root_key: onboard it directly; else use the one-line script)", r#"{"name":"web-1","public_ip":"203.0.113.10","ssh_port":22}"#, in brokeforge_domain::servers::NewServer => 201 AddedServer;
        get "/servers/{id}" servers::show_server, Read, "A server with its services and sites", "" => 200 ServerDetail;
        delete "/servers/{id}" servers::delete_server, ServerRemove, "Forget a server (nothing on it changes); ?remove_access=true first takes BrokeForge's keys and sudo rights off it (queued job)", "" => 200 Forgotten | 202 JobResponse;
        post "/servers/{id}/script" servers::server_script, ServerManage, "A fresh one-line provisioning command", "" => 200 ScriptResponse;
        post "/servers/{id}/host-key" servers::pin_host_key, ServerManage, "Pin the server's SSH host key", r#"{"fingerprint":"SHA256:..."}"#, in PinBody => 200 ServerResponse;
        put "/servers/{id}/team" servers::move_server, ServerRemove, "Move the server into another of your teams (where you may make root-level changes); members' SSH keys the new team does not allow leave it", r#"{"team":"agency"}"#, in MoveBody => 200 ServerResponse;
        get "/servers/{id}/services" servers::list_services, Read, "Installed services", "" => 200 ServiceList;
        put "/servers/{id}/tags" recipes::tag_server, ServerManage, "Add and remove the server's tags (lowercase letters, digits, - and _): sets of servers for recipes", r#"{"add":["web"],"remove":["old"]}"#, in TagsBody => 200 ServerTags;
        post "/servers/{id}/services" servers::install_service, ServerManage, "Install a catalogue package (queued job)", r#"{"package":"webserver","settings":{"php_version":"8.3"}}"#, in InstallBody => 202 JobResponse;
        delete "/servers/{id}/services/{name}" servers::remove_service, ServerManage, "Remove a package (settings as query parameters)", "" => 202 JobResponse;
        post "/servers/{id}/plan/{package}" servers::plan_service, Read, "The exact steps a package would run, secrets masked; runs nothing", r#"{"php_version":"8.3"}"#, in std::collections::BTreeMap<String, serde_json::Value> => 200 PackagePlan;
        get "/servers/{id}/events" servers::list_events, Read, "Provision events (after=ID for newer ones)", "", query common::NewerQuery => 200 EventList;
        get "/servers/{id}/stream" stream::server_stream, Read, "Live activity (SSE): milestone, output and job events; resumes from Last-Event-ID", "";
        get "/servers/{id}/jobs" servers::list_jobs, Read, "Recent jobs of the server", "", query common::OlderQuery => 200 JobList;
        post "/servers/{id}/databases/schemas" databases::create_schema, Databases, "Create a database schema", r#"{"engine":"mariadb","name":"app"}"#, in brokeforge_packages::services::database::sql::SchemaRequest => 202 JobResponse;
        delete "/servers/{id}/databases/schemas/{engine}/{name}" databases::drop_schema, Databases, "Drop a database schema", "" => 202 JobResponse;
        post "/servers/{id}/databases/users" databases::create_db_user, Databases, "Create or update a database user", r#"{"engine":"mariadb","name":"app","password":"...","schemas":["app"],"privileges":"read-write"}"#, in DbUserBody => 202 JobResponse;
        delete "/servers/{id}/databases/users/{engine}/{name}" databases::drop_db_user, Databases, "Drop a database user", "" => 202 JobResponse;
        post "/servers/{id}/drift" drift::check, ServerManage, "Check the server for drift (queued job): what BrokeForge put there (vhosts, schedules and daemons, service packages and units, the firewall's baseline) compared with what is there, in one SSH connection", "" => 202 JobResponse;
        get "/servers/{id}/drift" drift::report, Read, "The newest drift report: items (file, link, package, unit, firewall) with state ok, missing, changed or unexpected, a diff for edited files BrokeForge rendered (secrets masked), the package that repairs each, and whether the user manages it by hand", "" => 200 DriftAnswer;
        post "/servers/{id}/drift/repair" drift::repair, ServerManage, "Repair the newest report's drift: queue again the packages whose items drifted (plan:true shows them and queues nothing); items managed by hand and things BrokeForge did not make are left alone", r#"{"plan":true}"#, in RepairBody => 202 brokeforge_domain::drift::RepairPlan | 200 brokeforge_domain::drift::RepairPlan;
        put "/servers/{id}/drift/by-hand" drift::by_hand, ServerManage, "Mark an item of the drift report as managed by hand (reported, never repaired), or take the mark away", r#"{"item":"file:/etc/cron.d/brokeforge-site-4","by_hand":true}"#, in ByHandBody => 200 ByHandBody;
        get "/servers/{id}/firewall" firewall::list, Read, "The firewall as ufw has it now, read from the server: each rule with its origin (brokeforge, baseline, other) and whether BrokeForge will remove it", "" => 200 brokeforge_packages::services::server::firewall::FirewallState;
        post "/servers/{id}/firewall" firewall::add, ServerManage, "Add a firewall rule (queued job): a port or range, tcp/udp/any, a source address or network (empty: anywhere), allow or deny", r#"{"name":"app","port":"8080","protocol":"tcp","source":"10.0.0.0/8","action":"allow"}"#, in brokeforge_packages::services::server::firewall::RuleSpec => 202 JobResponse;
        get "/servers/{id}/php/{version}/settings" php::settings, Read, "A PHP version's php.ini settings: those set in BrokeForge and, for every setting it can set, the value PHP reports on the server now", "" => 200 PhpSettingsView;
        put "/servers/{id}/php/{version}/settings" php::change_settings, ServerManage, "Set or unset php.ini settings of a PHP version (queued job; names from an allow-list, values checked; php-fpm -t must accept them)", r#"{"set":{"memory_limit":"512M"},"unset":["max_input_vars"]}"#, in SettingsBody => 202 JobResponse;
        get "/servers/{id}/php/{version}/extensions" php::extensions, Read, "The modules a PHP version loads now (php -m on the server)", "" => 200 PhpModules;
        post "/servers/{id}/php/{version}/extensions" php::change_extensions, ServerManage, "Install or remove extensions of a PHP version from the package sources (queued job)", r#"{"add":["bz2"],"remove":["xdebug"]}"#, in ExtensionsBody => 202 JobResponse;
        delete "/servers/{id}/firewall/{rule}" firewall::remove, ServerManage, "Remove a firewall rule BrokeForge added (queued job); others and the SSH rule are refused", "" => 202 JobResponse;
        get "/servers/{id}/logs" logs::read, Read, "A log as plain text, streamed from the server (?kind=nginx-access|nginx-error|php-fpm|unit&site=DOMAIN&unit=NAME&lines=200&since=MS&until=MS&follow=true&download=true); nothing is stored", "";
        get "/servers/{id}/metrics" monitoring::metrics, Read, "The newest metrics report and, for ?metrics=a,b, their series since ?since=1h|24h|7d|MS (oldest first)", "", query MetricsQuery => 200 brokeforge_domain::monitoring::MetricsView;
        get "/servers/{id}/alerts" monitoring::list_alerts, Read, "Alert rules with their state (ok, pending, firing, resolved)", "" => 200 AlertList;
        post "/servers/{id}/alerts" monitoring::add_alert, ServerManage, "Add an alert rule: kind metric (a metric above or below a threshold), service_down, not_reporting, job_failed (the newest finished job failed), drift (the newest drift check found items not ok and not managed by hand) or cert_expiring (a site's certificate, as the site serves it, expires within days, default 14); for: how long it must hold; channel: a team channel (none: all of them)", r#"{"kind":"metric","metric":"disk_used_percent","above":90,"for":"5m","channel":"ops"}"#, in brokeforge_domain::monitoring::AlertSpec => 201 AlertResponse;
        put "/servers/{id}/alerts/{rule}" monitoring::update_alert, ServerManage, "Change an alert rule (the whole definition, as when adding); its state stays, so a raised threshold resolves it at the next evaluation", r#"{"kind":"metric","metric":"disk_used_percent","above":95,"for":"5m"}"#, in brokeforge_domain::monitoring::AlertSpec => 200 AlertResponse;
        delete "/servers/{id}/alerts/{rule}" monitoring::remove_alert, ServerManage, "Delete an alert rule", "" => 204 NoContent;
        get "/teams/{id}/channels" monitoring::list_channels, Read, "The team's notification channels (where they send, never their secrets)", "" => 200 ChannelList;
        post "/teams/{id}/channels" monitoring::add_channel, ServerManage, "Add a notification channel: webhook (signed with HMAC-SHA256 in X-BrokeForge-Signature; the generated key is shown once), slack, discord (incoming webhook URL), telegram (bot token as secret, chat_id) or email (url: the address; needs the operator's mail relay)", r#"{"name":"ops","kind":"webhook","url":"https://hooks.example.com/brokeforge"}"#, in brokeforge_domain::monitoring::ChannelSpec => 201 brokeforge_domain::monitoring::NewChannel;
        delete "/teams/{id}/channels/{name}" monitoring::remove_channel, ServerManage, "Delete a notification channel", "" => 204 NoContent;
        post "/teams/{id}/channels/{name}/test" monitoring::test_channel, ServerManage, "Send a test message now (with retries) and answer with the delivery", "" => 200 DeliveryResponse;
        get "/teams/{id}/channels/{name}/deliveries" monitoring::deliveries, Read, "The channel's newest deliveries: event, status, attempts, error", "" => 200 DeliveryList;
        get "/backup-storages" backups::list_storages, Account, "Your backup storages (S3-compatible, SFTP with its public key, or a directory on a server)", "" => 200 StorageList;
        post "/backup-storages" backups::add_storage, Account, "Define a backup storage; an SFTP one answers with the public key to authorize", r#"{"name":"offsite","kind":"s3","endpoint":"https://s3.example.com","bucket":"backups","region":"eu-1","path_style":true,"access_key_id":"AKIA...","secret_access_key":"..."}"#, in brokeforge_domain::backups::StorageRequest => 201 StorageResponse;
        delete "/backup-storages/{name}" backups::delete_storage, Account, "Delete a backup storage no plan uses", "" => 200 DeletedName;
        post "/servers/{id}/backup-storages/{name}/check" backups::check_storage, ServerManage, "Test a backup storage from this server: write, read back and delete a small object (queued job)", "" => 202 JobResponse;
        get "/servers/{id}/backups" backups::list_plans, Read, "The server's backup plans with their newest snapshot", "" => 200 PlanList;
        post "/servers/{id}/backups" backups::create_plan, ServerManage, "Create a backup plan (schedule and verify_schedule are cron in UTC)", r#"{"name":"shop","database":"mariadb:shop","storage":"offsite","schedule":"0 3 * * *","verify_schedule":"@weekly","retention":{"keep_last":7,"keep_daily":7,"keep_weekly":4,"keep_monthly":6}}"#, in brokeforge_domain::backups::PlanRequest => 201 PlanResponse;
        get "/servers/{id}/backups/{plan}" backups::show_plan, Read, "A backup plan, its last restore drill and its snapshots", "" => 200 PlanDetail;
        delete "/servers/{id}/backups/{plan}" backups::delete_plan, ServerManage, "Delete a backup plan (its repository and snapshots stay on the storage)", "" => 200 DeletedName;
        post "/servers/{id}/backups/{plan}/run" backups::run_plan, ServerManage, "Back up now (queued job)", "" => 202 JobResponse;
        get "/servers/{id}/backups/{plan}/snapshots" backups::list_snapshots, Read, "The plan's snapshots, newest first", "" => 200 SnapshotList;
        get "/servers/{id}/backups/{plan}/snapshots/{snapshot}/download" backups::download, ReadCredentials, "Download a snapshot, streamed from the server (a dump, an RDB file, or a tar of a site's files)", "";
        post "/servers/{id}/backups/{plan}/restore" backups::restore, ServerManage, "Restore a snapshot into a new schema (into) or over the plan's own (confirm: its name); queued job", r#"{"snapshot":"1a2b3c4d","into":"shop_restored"}"#, in RestoreBody => 202 JobResponse;
        post "/servers/{id}/backups/{plan}/verify" backups::verify, ServerManage, "A restore drill now: restore the newest snapshot into a scratch schema, count rows, drop it (queued job)", "" => 202 JobResponse;
        get "/servers/{id}/backups/{plan}/recovery-kit" backups::recovery_kit, ReadCredentials, "The repository and its password, to restore without BrokeForge (text; keep it offline)", "";
        get "/servers/{id}/sites" sites::list_sites, Read, "Sites of the server", "" => 200 SiteList;
        post "/servers/{id}/sites" sites::create_site, ServerManage, "Create a site (queued job)", r#"{"domain":"example.com","aliases":["www.example.com"],"php_version":"8.2","web_directory":"public"}"#, in brokeforge_packages::services::sites::site::SiteRequest => 202 SiteQueued;
        get "/jobs/{id}" jobs::show_job, Read, "A job and how it ended", "" => 200 JobResponse;
        get "/jobs/{id}/logs" jobs::job_logs, Read, "A job's command output", "", query common::NewerQuery => 200 JobLogs;
        post "/jobs/{id}/cancel" jobs::cancel_job, Deploy, "Cancel a queued or running job", "" => 200 JobResponse;
        post "/jobs/{id}/retry" jobs::retry_job, Deploy, "Run a failed or cancelled job again (a new job)", "" => 202 JobResponse;
        get "/sites/{id}" sites::show_site, Read, "A site", "" => 200 SiteResponse;
        delete "/sites/{id}" sites::remove_site, ServerManage, "Remove a site (?keep_files=true keeps its files)", "" => 202 JobResponse;
        get "/sites/{id}/deploy-key" sites::deploy_key, Read, "The site's deploy key (add it to your git host)", "" => 200 DeployKey;
        post "/sites/{id}/repository" sites::connect_repository, SiteConfigure, "Connect a git repository, then deploy", r#"{"url":"git@github.com:acme/app.git","branch":"main","host_key_fingerprint":"SHA256:..."}"#, in RepositoryBody => 202 JobResponse;
        post "/sites/{id}/certificate" sites::request_certificate, ServerManage, "Get an HTTPS certificate (Let's Encrypt unless another ACME directory is given), then serve HTTPS", r#"{"email":"ops@example.com"}"#, in brokeforge_packages::services::sites::certificate::CertificateRequest => 202 JobResponse;
        post "/sites/{id}/certificate/custom" sites::upload_certificate, ServerManage, "Serve HTTPS with your own certificate: PEM chain (leaf first) and key, checked before anything runs (order, names, dates, the key matches)", r#"{"certificate":"-----BEGIN CERTIFICATE-----...","private_key":"-----BEGIN PRIVATE KEY-----..."}"#, in CustomCertificate => 202 JobResponse;
        delete "/sites/{id}/certificate" sites::remove_certificate, ServerManage, "Remove the site's certificate and serve plain HTTP", "" => 202 JobResponse;
        get "/sites/{id}/check" monitoring::show_check, Read, "The site's health check: its state, last answer, and the history of up (1/0) and response time since ?since=1h|24h|7d|30d", "", query MetricsQuery => 200 CheckWithHistory;
        put "/sites/{id}/check" monitoring::put_check, ServerManage, "Check the site over HTTP every interval (to the server's address with the site's name as Host; https: to https://DOMAIN); an alert rule fires when it does not answer as expected; after_deploy: off, fail (checked from the server after each deploy, the deployment fails when the site does not answer) or rollback (and the previous release goes live again)", r#"{"path":"/","expect":200,"interval_seconds":60,"timeout_seconds":10,"https":false,"after_deploy":"rollback"}"#, in brokeforge_domain::monitoring::CheckSpec => 200 CheckResponse;
        delete "/sites/{id}/check" monitoring::remove_check, ServerManage, "Stop checking the site (its rule goes too)", "" => 204 NoContent;
        get "/sites/{id}/tasks/output" sites::tasks_output, Read, "The newest output of the site's scheduled commands and daemons (?lines=200)", "", query OutputQuery => 200 TasksOutput;
        put "/sites/{id}/tasks" sites::set_tasks, SiteConfigure, "Replace the site's scheduled commands (cron) and daemons (kept running), then apply them", r#"{"schedules":[{"cron":"* * * * *","command":"php artisan schedule:run"}],"daemons":[{"command":"php artisan queue:work","processes":2}]}"#, in brokeforge_packages::services::sites::schedule::SiteTasks => 202 JobResponse;
        get "/sites/{id}/deployments" sites::list_deployments, Read, "Deployments, kept releases and the live one", "", query common::OlderQuery => 200 DeploymentList;
        post "/sites/{id}/deployments" sites::deploy, Deploy, "Deploy (queued; deploys of a server run one at a time)", r#"{"branch":"main"}"#, in DeployBody => 202 DeploymentQueued;
        post "/sites/{id}/rollback" sites::rollback, Deploy, "Make a kept release live again", r#"{"release":"20261125120000-42"}"#, in RollbackBody => 202 DeploymentQueued;
        put "/sites/{id}/deploy-script" sites::set_deploy_script, SiteConfigure, "Replace the deploy script (empty: the default)", r#"{"script":"composer install --no-dev"}"#, in ScriptBody => 200 Done;
        put "/sites/{id}/php" sites::set_php_version, SiteConfigure, "Move a PHP site to another installed PHP version (queued job; nginx switches to that version's pool gracefully)", r#"{"version":"8.3"}"#, in PhpVersionBody => 202 JobResponse;
        put "/sites/{id}/pool" sites::set_pool, SiteConfigure, "Change an isolated PHP site's PHP-FPM pool: pm (ondemand, dynamic, static) and max_children (1-200); omitted fields keep their value (queued job)", r#"{"pm":"dynamic","max_children":8}"#, in PoolBody => 202 JobResponse;
        put "/sites/{id}/settings" sites::set_site_settings, SiteConfigure, "Deployment settings: releases kept, deploy timeout, shared paths", r#"{"keep_releases":5,"deploy_timeout_secs":900,"shared_paths":[".env","storage/"]}"#, in brokeforge_domain::sites::SiteSettings => 200 DeploySettings;
        get "/sites/{id}/commands" sites::list_commands, Read, "Site command history", "", query common::OlderQuery => 200 CommandList;
        post "/sites/{id}/commands" sites::run_command, SiteCommand, "Run a command in the live release (queued job)", r#"{"command":"php artisan migrate --force","timeout_secs":120}"#, in CommandBody => 202 JobResponse;
        get "/sites/{id}/env" sites::read_env, ReadEnv, "Read the site's .env", "" => 200 EnvFile;
        put "/sites/{id}/env" sites::write_env, SiteConfigure, "Replace the site's .env", r#"{"env":"APP_ENV=production\n"}"#, in EnvFile => 200 Done;
        get "/sites/{id}/webhook" sites::site_webhook, ReadCredentials, "The deploy webhook: URL, secret, and the provider it expects", "" => 200 Webhook;
        put "/sites/{id}/webhook" sites::set_webhook, SiteConfigure, "Choose who calls the deploy webhook (github, gitlab or generic)", r#"{"provider":"gitlab"}"#, in WebhookBody => 200 Webhook;
        get "/deployments/{id}" jobs::show_deployment, Read, "A deployment with its log", "" => 200 DeploymentDetail;
        get "/recipes" recipes::list, Account, "The recipes of your teams", "" => 200 RecipeList;
        post "/recipes" recipes::save, Account, "Create a recipe (a named script of a team, run as root or brokeforge), or change the team's recipe of that name; running as root needs a role that may make root-level changes", r#"{"name":"apt-upgrade","script":"apt-get update && apt-get -y upgrade","user":"root","team":"ops"}"#, in brokeforge_domain::recipes::RecipeBody => 201 RecipeResponse;
        get "/recipes/{key}" recipes::show, Account, "A recipe, by id or name", "" => 200 RecipeResponse;
        delete "/recipes/{key}" recipes::delete, Account, "Delete a recipe", "" => 200 Deleted;
        post "/recipes/{key}/runs" recipes::run, Account, "Run a recipe on servers of its team (a list, a tag or all): a canary first, then `parallel` at a time, no new servers once more than `max_failures` failed; each server's part is a job. With plan: true, only what would run", r#"{"tag":"web","parallel":10,"canary":1,"max_failures":0,"plan":false}"#, in brokeforge_domain::recipes::RunBody => 202 RunStarted | 200 RunPlanResponse;
        get "/recipe-runs" recipes::runs, Account, "Runs of your teams' recipes, newest first (?limit=N)", "", query RunsQuery => 200 RunList;
        get "/recipe-runs/{id}" recipes::show_run, Account, "A run: its status and each server's state (pending, queued, running, done, failed, skipped), job, exit code and duration, with counts", "" => 200 brokeforge_domain::recipes::RunView;
        post "/recipe-runs/{id}/resume" recipes::resume, Account, "Go on with a stopped run: the servers it did not start start, as many new failures allowed as before", "" => 202 RunStarted;
        get "/audit" audit::list, Account, "The audit log, newest first (?server=ID&team=ID&user=EMAIL&action=TEXT&since=MS&before=ID&limit=N): administrators see everything, others their own actions and those on their servers", "", query AuditQuery => 200 AuditPage;
        get "/account/ssh-keys" ssh_keys::list, Account, "Your personal SSH public keys and the servers they are on", "" => 200 SshKeyList;
        post "/account/ssh-keys" ssh_keys::add, Account, "Add a personal SSH public key", r#"{"name":"laptop","public_key":"ssh-ed25519 AAAA... you@laptop"}"#, in NewSshKey => 201 SshKeyResponse;
        delete "/account/ssh-keys/{key}" ssh_keys::remove, Account, "Delete a key (by id, name or fingerprint); it leaves every server it is on (queued jobs)", "" => 202 JobsQueued;
        get "/servers/{id}/ssh-keys" ssh_keys::on_server, Read, "Personal keys on the server (whose, for which Unix user)", "" => 200 ServerKeyList;
        post "/servers/{id}/ssh-keys" ssh_keys::deploy, SiteCommand, "Put one of your keys on the server for brokeforge (or root, if your role allows root-level changes); queued job", r#"{"key":"laptop","user":"brokeforge"}"#, in KeyPlacement => 202 JobResponse;
        delete "/servers/{id}/ssh-keys/{key}" ssh_keys::undeploy, SiteCommand, "Take one of your keys off the server (queued)", "" => 202 JobsQueued;
        get "/teams" teams::list, Account, "Your teams with your role in each (your personal team first)", "" => 200 TeamList;
        post "/teams" teams::create, Account, "Create a team (you are its owner)", r#"{"name":"agency"}"#, in NewTeam => 201 TeamResponse;
        get "/teams/{id}/members" teams::members, Read, "A team's members with their roles (and, for owners, its invitations)", "" => 200 TeamMembers;
        post "/teams/{id}/invitations" teams::invite, Members, "Invite someone by email (owners): answers with the single-use link path, valid 7 days; never a role above yours", r#"{"email":"dev@example.com","role":"developer"}"#, in Invite => 201 InvitationCreated;
        put "/teams/{id}/members" teams::set_role, Members, "Change a member's role (owners; a team keeps one owner); servers: narrow the member to these of the team's servers (by name; [] for all of them again)", r#"{"email":"dev@example.com","role":"developer","servers":["web-1"]}"#, in SetRole => 200 Done;
        delete "/teams/{id}/members/{email}" teams::remove_member, Members, "Take a member out of the team (owners; a team keeps one owner)", "" => 200 Done;
        post "/teams/{id}/leave" teams::leave, Read, "Leave the team (a team keeps one owner)", "" => 200 Done;
        put "/teams/{id}/settings" teams::settings, Members, "Team settings: require two-factor sign-in of members", r#"{"require_two_factor":true}"#, in TeamSettings => 200 TeamResponse;
        get "/invitations/{token}" teams::show_invitation, Account, "What an invitation offers", "" => 200 InvitationView;
        post "/invitations/{token}/accept" teams::accept_invitation, Account, "Accept an invitation (signed in with the invited email)", "" => 200 JoinedTeam;
        get "/sessions" account::list_sessions, Account, "Your live browser sessions (where and when they started)", "" => 200 SessionList;
        delete "/sessions/{id}" account::end_session, Account, "End one of your browser sessions", "" => 200 Done;
        get "/tokens" account::list_tokens, Account, "Your API tokens", "" => 200 TokenList;
        post "/tokens" account::create_token, Account, "Create an API token (shown once): scope read (safe requests, no secrets), deploy (also deployments, rollbacks, site commands) or full; optional expiry in days", r#"{"name":"ci","scope":"deploy","expires_in_days":90}"#, in TokenBody => 201 CreatedToken;
        delete "/tokens/{id}" account::revoke_token, Account, "Revoke an API token", "" => 200 Done;
        get "/users" account::list_users, Account, "All users (administrators)", "" => 200 UserList;
        post "/users" account::create_user, Account, "Create a user (administrators)", r#"{"email":"dev@example.com","password":"...","admin":false}"#, in brokeforge_domain::accounts::NewUser => 201 UserResponse;
        delete "/users/{id}" account::delete_user, Account, "Delete a user and everything they own (administrators)", "" => 200 Done;
        post "/users/{id}/password" account::set_password, Account, "Set a password: your own (with current_password), or anyone's as administrator; their sessions and API tokens end", r#"{"password":"...","current_password":"..."}"#, in PasswordBody => 200 Done;
    }
}

/// `GET /api/v1/openapi.json`.
async fn document() -> Json<Value> {
    Json(openapi::spec(&operations()))
}

pub fn routes() -> Router<AppState> {
    let mut by_path: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for op in operations() {
        // The route carries its policy action for the extractors that find the team's objects.
        let route = (op.route)().layer(axum::Extension(op.action));
        match by_path.iter_mut().find(|(p, _)| *p == op.path) {
            Some((_, mr)) => *mr = std::mem::take(mr).merge(route),
            None => by_path.push((op.path, route)),
        }
    }
    by_path
        .into_iter()
        .fold(Router::new(), |r, (path, mr)| r.route(path, mr))
}
