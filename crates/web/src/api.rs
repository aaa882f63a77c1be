//! The JSON API under `/api/v1`. Every resource is reached through its server, and a server is found only
//! among the caller's own: another user's server, site, job or deployment answers 404.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Json, Router};
use brokeforge_core::Secret;
use brokeforge_packages::RunContext;
use brokeforge_packages::catalogue;
use brokeforge_packages::services::database;
use brokeforge_packages::services::server::access::onboarding::{
    AddServer, TOKEN_LIFETIME, add_server, start_direct_onboarding,
};
use brokeforge_packages::services::sites::command::{CommandRequest, SiteCommandInstaller};
use brokeforge_packages::services::sites::common::{DEFAULT_COMMAND_TIMEOUT, shared_path};
use brokeforge_packages::services::sites::config::SiteConfig;
use brokeforge_packages::services::sites::environment::{self, EnvironmentInstaller};
use brokeforge_packages::services::sites::repository::{
    self as git_repository_installer, RepositoryRequest,
};
use brokeforge_packages::services::sites::schedule::SiteTasks;
use brokeforge_packages::services::sites::site::SiteRequest;
use brokeforge_packages::services::sites::{
    certificate, deployment, rollback, site, tasks, webhook,
};
use brokeforge_store::{Deployment, Job, Server, ServerSite, User};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{self, Authed};
use crate::error::{ApiError, ApiResult};

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

macro_rules! ops {
    ($($method:ident $path:literal $handler:path, $summary:literal, $body:literal;)+) => {
        vec![$(Op {
            method: stringify!($method),
            path: $path,
            summary: $summary,
            body: $body,
            route: || axum::routing::$method($handler),
        }),+]
    };
}

pub fn operations() -> Vec<Op> {
    ops! {
        get "/openapi.json" crate::openapi::document, "This document", "";
        post "/login" login, "Start a session (answers with the CSRF token for later requests)", r#"{"email":"you@example.com","password":"..."}"#;
        post "/logout" logout, "End the session", "";
        get "/me" me, "The signed-in user", "";
        get "/catalogue" list_catalogue, "Installable packages with their parameters and milestones", "";
        get "/servers" list_servers, "Your servers with their services", "";
        post "/servers" create_server, "Add a server (with root_key: onboard it directly; else use the one-line script)", r#"{"name":"web-1","public_ip":"203.0.113.10","ssh_port":22}"#;
        get "/servers/{id}" show_server, "A server with its services and sites", "";
        delete "/servers/{id}" delete_server, "Forget a server (nothing on it changes)", "";
        post "/servers/{id}/script" server_script, "A fresh one-line provisioning command", "";
        post "/servers/{id}/host-key" pin_host_key, "Pin the server's SSH host key", r#"{"fingerprint":"SHA256:..."}"#;
        get "/servers/{id}/services" list_services, "Installed services", "";
        post "/servers/{id}/services" install_service, "Install a catalogue package (queued job)", r#"{"package":"webserver","settings":{"php_version":"8.3"}}"#;
        delete "/servers/{id}/services/{name}" remove_service, "Remove a package (settings as query parameters)", "";
        post "/servers/{id}/plan/{package}" plan_service, "The exact steps a package would run, secrets masked; runs nothing", r#"{"php_version":"8.3"}"#;
        get "/servers/{id}/events" list_events, "Provision events (after=ID for newer ones)", "";
        get "/servers/{id}/stream" crate::sse::server_stream, "Live activity (SSE): milestone, output and job events; resumes from Last-Event-ID", "";
        get "/servers/{id}/jobs" list_jobs, "Recent jobs of the server", "";
        post "/servers/{id}/databases/schemas" create_schema, "Create a database schema", r#"{"engine":"mariadb","name":"app"}"#;
        delete "/servers/{id}/databases/schemas/{engine}/{name}" drop_schema, "Drop a database schema", "";
        post "/servers/{id}/databases/users" create_db_user, "Create or update a database user", r#"{"engine":"mariadb","name":"app","password":"...","schemas":["app"],"privileges":"read-write"}"#;
        delete "/servers/{id}/databases/users/{engine}/{name}" drop_db_user, "Drop a database user", "";
        get "/servers/{id}/sites" list_sites, "Sites of the server", "";
        post "/servers/{id}/sites" create_site, "Create a site (queued job)", r#"{"domain":"example.com","aliases":["www.example.com"],"php_version":"8.2","web_directory":"public"}"#;
        get "/jobs/{id}" show_job, "A job and how it ended", "";
        get "/jobs/{id}/logs" job_logs, "A job's command output", "";
        post "/jobs/{id}/cancel" cancel_job, "Cancel a queued or running job", "";
        post "/jobs/{id}/retry" retry_job, "Run a failed or cancelled job again (a new job)", "";
        get "/sites/{id}" show_site, "A site", "";
        delete "/sites/{id}" remove_site, "Remove a site (?keep_files=true keeps its files)", "";
        get "/sites/{id}/deploy-key" deploy_key, "The site's deploy key (add it to your git host)", "";
        post "/sites/{id}/repository" connect_repository, "Connect a git repository, then deploy", r#"{"url":"git@github.com:acme/app.git","branch":"main","host_key_fingerprint":"SHA256:..."}"#;
        post "/sites/{id}/certificate" request_certificate, "Get an HTTPS certificate (Let's Encrypt unless another ACME directory is given), then serve HTTPS", r#"{"email":"ops@example.com"}"#;
        delete "/sites/{id}/certificate" remove_certificate, "Remove the site's certificate and serve plain HTTP", "";
        get "/sites/{id}/tasks/output" tasks_output, "The newest output of the site's scheduled commands and daemons (?lines=200)", "";
        put "/sites/{id}/tasks" set_tasks, "Replace the site's scheduled commands (cron) and daemons (kept running), then apply them", r#"{"schedules":[{"cron":"* * * * *","command":"php artisan schedule:run"}],"daemons":[{"command":"php artisan queue:work","processes":2}]}"#;
        get "/sites/{id}/deployments" list_deployments, "Deployments, kept releases and the live one", "";
        post "/sites/{id}/deployments" deploy, "Deploy (queued; deploys of a server run one at a time)", r#"{"branch":"main"}"#;
        post "/sites/{id}/rollback" rollback, "Make a kept release live again", r#"{"release":"20261125120000-42"}"#;
        put "/sites/{id}/deploy-script" set_deploy_script, "Replace the deploy script (empty: the default)", r#"{"script":"composer install --no-dev"}"#;
        put "/sites/{id}/settings" set_site_settings, "Deployment settings: releases kept, deploy timeout, shared paths", r#"{"keep_releases":5,"deploy_timeout_secs":900,"shared_paths":[".env","storage/"]}"#;
        get "/sites/{id}/commands" list_commands, "Site command history", "";
        post "/sites/{id}/commands" run_command, "Run a command in the live release (queued job)", r#"{"command":"php artisan migrate --force","timeout_secs":120}"#;
        get "/sites/{id}/env" read_env, "Read the site's .env", "";
        put "/sites/{id}/env" write_env, "Replace the site's .env", r#"{"env":"APP_ENV=production\n"}"#;
        get "/sites/{id}/webhook" site_webhook, "The deploy webhook URL and secret", "";
        get "/deployments/{id}" show_deployment, "A deployment with its log", "";
        get "/tokens" list_tokens, "Your API tokens", "";
        post "/tokens" create_token, "Create an API token (shown once)", r#"{"name":"ci"}"#;
        delete "/tokens/{id}" revoke_token, "Revoke an API token", "";
        get "/users" list_users, "All users (administrators)", "";
        post "/users" create_user, "Create a user (administrators)", r#"{"email":"dev@example.com","password":"...","admin":false}"#;
        delete "/users/{id}" delete_user, "Delete a user and everything they own (administrators)", "";
        post "/users/{id}/password" set_password, "Set a password (your own, or anyone's as administrator)", r#"{"password":"..."}"#;
    }
}

pub fn routes() -> Router<AppState> {
    let mut by_path: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for op in operations() {
        match by_path.iter_mut().find(|(p, _)| *p == op.path) {
            Some((_, mr)) => *mr = std::mem::take(mr).merge((op.route)()),
            None => by_path.push((op.path, (op.route)())),
        }
    }
    by_path
        .into_iter()
        .fold(Router::new(), |r, (path, mr)| r.route(path, mr))
}

// ---- ownership: everything is found through the caller's own servers ----

pub async fn owned_server(state: &AppState, user: &User, id: i64) -> ApiResult<Server> {
    Ok(state.store.server_for_user(user.id, id).await?)
}

pub async fn owned_site(state: &AppState, user: &User, id: i64) -> ApiResult<(ServerSite, Server)> {
    let site = state.store.site(id).await?;
    let server = owned_server(state, user, site.server_id).await?;
    Ok((site, server))
}

pub async fn owned_job(state: &AppState, user: &User, id: i64) -> ApiResult<Job> {
    let job = state.store.job(id).await?;
    let server_id = job.server_id.ok_or_else(ApiError::not_found)?;
    owned_server(state, user, server_id).await?;
    Ok(job)
}

pub async fn owned_deployment(
    state: &AppState,
    user: &User,
    id: i64,
) -> ApiResult<(Deployment, ServerSite)> {
    let d = state.store.deployment(id).await?;
    let (site, _) = owned_site(state, user, d.site_id).await?;
    Ok((d, site))
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

fn created(v: Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

fn accepted(job: &Job) -> Response {
    (StatusCode::ACCEPTED, Json(json!({"job": job}))).into_response()
}

// ---- account ----

async fn me(authed: Authed) -> Json<Value> {
    Json(json!({"user": authed.user}))
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

/// Sign in for an API session (browsers use the login page); answers with the cookie and the CSRF token.
async fn login(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    Body(b): Body<LoginBody>,
) -> ApiResult<Response> {
    let address = auth::client_address(&parts, state.config.trust_proxy);
    let user = auth::login(&state.store, &b.email, &b.password, &address).await?;
    let (token, csrf) = auth::start_session(&state.store, user.id).await?;
    Ok((
        [(
            axum::http::header::SET_COOKIE,
            auth::session_cookie(&token, state.config.secure_cookies),
        )],
        Json(json!({"user": user, "csrf_token": csrf})),
    )
        .into_response())
}

async fn logout(State(state): State<AppState>, authed: Authed) -> ApiResult<Response> {
    if let Some(h) = &authed.session_hash {
        state.store.delete_session(h).await?;
    }
    Ok((
        [(
            axum::http::header::SET_COOKIE,
            auth::clear_cookie(state.config.secure_cookies),
        )],
        Json(json!({"ok": true})),
    )
        .into_response())
}

#[derive(Deserialize)]
struct TokenBody {
    name: String,
}

async fn list_tokens(State(state): State<AppState>, authed: Authed) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({"tokens": state.store.api_tokens(authed.user.id).await?}),
    ))
}

/// A new personal API token; the token itself is in this answer only.
pub async fn new_token(state: &AppState, user_id: i64, name: &str) -> ApiResult<(String, Value)> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::invalid(
            "name",
            "name the token (1 to 100 characters)",
        ));
    }
    let token = auth::random_token("bf_");
    let record = state
        .store
        .create_api_token(user_id, name, &auth::sha256_hex(&token), &token[..10])
        .await?;
    Ok((token.clone(), json!({"token": token, "record": record})))
}

async fn create_token(
    State(state): State<AppState>,
    authed: Authed,
    Body(b): Body<TokenBody>,
) -> ApiResult<Response> {
    Ok(created(new_token(&state, authed.user.id, &b.name).await?.1))
}

async fn revoke_token(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    state.store.revoke_api_token(authed.user.id, id).await?;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
pub struct NewUser {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub admin: bool,
}

/// Validate and create an account.
pub async fn make_user(state: &AppState, u: &NewUser) -> ApiResult<User> {
    let email = brokeforge_core::validate::email(&u.email)
        .map_err(|e| ApiError::invalid("email", e.message))?;
    auth::check_password_rules(&u.password)?;
    let hash = auth::hash_password(&u.password).await?;
    Ok(state.store.create_user(&email, &hash, u.admin).await?)
}

async fn list_users(State(state): State<AppState>, authed: Authed) -> ApiResult<Json<Value>> {
    authed.require_admin()?;
    Ok(Json(json!({"users": state.store.users().await?})))
}

async fn create_user(
    State(state): State<AppState>,
    authed: Authed,
    Body(b): Body<NewUser>,
) -> ApiResult<Response> {
    authed.require_admin()?;
    Ok(created(json!({"user": make_user(&state, &b).await?})))
}

async fn delete_user(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    authed.require_admin()?;
    if id == authed.user.id {
        return Err(ApiError::invalid(
            "user",
            "you cannot delete your own account",
        ));
    }
    state.store.user(id).await?;
    state.store.delete_user(id).await?;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
struct PasswordBody {
    password: String,
}

async fn set_password(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Body(b): Body<PasswordBody>,
) -> ApiResult<Json<Value>> {
    if id != authed.user.id {
        authed.require_admin()?;
    }
    auth::check_password_rules(&b.password)?;
    let hash = auth::hash_password(&b.password).await?;
    state.store.set_password_hash(id, &hash).await?;
    Ok(Json(json!({"ok": true})))
}

// ---- servers ----

async fn list_catalogue() -> Json<Value> {
    Json(json!({"packages": catalogue::catalogue()}))
}

async fn list_servers(State(state): State<AppState>, authed: Authed) -> ApiResult<Json<Value>> {
    let servers = state.store.servers_for_user(authed.user.id).await?;
    let mut out = Vec::new();
    for s in servers {
        let services = state.store.services(s.id).await?;
        out.push(json!({"server": s, "services": services}));
    }
    Ok(Json(json!({"servers": out})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewServerBody {
    pub name: String,
    pub public_ip: String,
    pub ssh_port: Option<i64>,
    pub host_key_fingerprint: Option<String>,
    /// An existing root private key: BrokeForge connects itself (direct onboarding).
    pub root_key: Option<String>,
    pub trust_on_first_use: bool,
}

/// The one-line command a user runs as root on the new server.
pub fn script_command(base: &str, token: &str) -> String {
    format!("curl -fsSL {base}/provision/{token} | sudo bash")
}

/// Add a server; with a root key BrokeForge onboards it directly, else the answer has the one-line script.
pub async fn add(
    state: &AppState,
    user: &User,
    headers: &HeaderMap,
    b: &NewServerBody,
) -> ApiResult<Value> {
    let root_key = b
        .root_key
        .as_deref()
        .filter(|k| !k.trim().is_empty())
        .map(Secret::new);
    if let Some(k) = &root_key {
        // Checked before anything is stored.
        brokeforge_ssh::keys::parse_private(k)
            .map_err(|e| ApiError::invalid("root_key", format!("not a usable private key: {e}")))?;
    }
    let added = add_server(
        &state.store,
        &AddServer {
            user_id: user.id,
            name: b.name.clone(),
            public_ip: b.public_ip.clone(),
            ssh_port: b.ssh_port.unwrap_or(22),
            host_key_fingerprint: b.host_key_fingerprint.clone(),
        },
    )
    .await?;
    let base = state
        .base_url(headers)
        .ok_or_else(|| ApiError::invalid("host", "set BROKEFORGE_PUBLIC_URL"))?;
    let mut out = json!({
        "server": added.server,
        "script": script_command(&base, &added.token),
    });
    if let Some(k) = root_key {
        let job = start_direct_onboarding(&state.store, added.server.id, &k, b.trust_on_first_use)
            .await?;
        out["job"] = json!(job);
    }
    Ok(out)
}

async fn create_server(
    State(state): State<AppState>,
    authed: Authed,
    headers: HeaderMap,
    Body(b): Body<NewServerBody>,
) -> ApiResult<Response> {
    Ok(created(add(&state, &authed.user, &headers, &b).await?))
}

async fn show_server(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let server = owned_server(&state, &authed.user, id).await?;
    let services = state.store.services(id).await?;
    let sites = state.store.sites(id).await?;
    Ok(Json(
        json!({"server": server, "services": services, "sites": sites}),
    ))
}

async fn delete_server(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    owned_server(&state, &authed.user, id).await?;
    state.store.delete_server(id).await?;
    Ok(Json(
        json!({"ok": true, "note": "BrokeForge forgot the server; nothing on it was changed"}),
    ))
}

/// A fresh one-line script (the previous link stops working).
async fn server_script(
    State(state): State<AppState>,
    authed: Authed,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let server = owned_server(&state, &authed.user, id).await?;
    let token = state
        .store
        .create_provision_token(server.id, TOKEN_LIFETIME)
        .await?;
    let base = state
        .base_url(&headers)
        .ok_or_else(|| ApiError::invalid("host", "set BROKEFORGE_PUBLIC_URL"))?;
    Ok(Json(json!({"script": script_command(&base, &token)})))
}

#[derive(Deserialize)]
struct PinBody {
    fingerprint: String,
}

async fn pin_host_key(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Body(b): Body<PinBody>,
) -> ApiResult<Json<Value>> {
    owned_server(&state, &authed.user, id).await?;
    let fp = brokeforge_ssh::keys::validate_fingerprint(&b.fingerprint)?;
    state.store.pin_host_key(id, Some(&fp)).await?;
    Ok(Json(json!({"server": state.store.server(id).await?})))
}

async fn list_services(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    owned_server(&state, &authed.user, id).await?;
    Ok(Json(json!({"services": state.store.services(id).await?})))
}

#[derive(Deserialize)]
pub struct InstallBody {
    pub package: String,
    #[serde(default)]
    pub settings: BTreeMap<String, Value>,
}

/// Settings as the catalogue takes them (text; it types and checks them).
pub fn settings_text(settings: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    settings
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

async fn install_service(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Body(b): Body<InstallBody>,
) -> ApiResult<Response> {
    owned_server(&state, &authed.user, id).await?;
    let job = catalogue::install(&state.store, id, &b.package, &settings_text(&b.settings)).await?;
    Ok(accepted(&job))
}

async fn remove_service(
    State(state): State<AppState>,
    authed: Authed,
    Path((id, name)): Path<(i64, String)>,
    Query(settings): Query<BTreeMap<String, String>>,
) -> ApiResult<Response> {
    owned_server(&state, &authed.user, id).await?;
    let job = catalogue::remove(&state.store, id, &name, &settings).await?;
    Ok(accepted(&job))
}

/// What a package would run, without running it (secrets masked).
async fn plan_service(
    State(state): State<AppState>,
    authed: Authed,
    Path((id, package)): Path<(i64, String)>,
    Body(b): Body<BTreeMap<String, Value>>,
) -> ApiResult<Json<Value>> {
    let server = owned_server(&state, &authed.user, id).await?;
    let plan = catalogue::preview(&state.store, &server, &package, &settings_text(&b)).await?;
    Ok(Json(json!({"package": package, "plan": plan})))
}

#[derive(Deserialize, Default)]
struct AfterQuery {
    #[serde(default)]
    after: i64,
}

async fn list_events(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Query(q): Query<AfterQuery>,
) -> ApiResult<Json<Value>> {
    owned_server(&state, &authed.user, id).await?;
    Ok(Json(
        json!({"events": state.store.events(id, q.after).await?}),
    ))
}

async fn list_jobs(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    owned_server(&state, &authed.user, id).await?;
    let jobs = state.store.recent_jobs(id, 100).await?;
    Ok(Json(json!({"jobs": jobs})))
}

async fn show_job(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({"job": owned_job(&state, &authed.user, id).await?}),
    ))
}

async fn job_logs(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    owned_job(&state, &authed.user, id).await?;
    Ok(Json(json!({"logs": state.store.job_logs(id).await?})))
}

async fn cancel_job(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let job = owned_job(&state, &authed.user, id).await?;
    if job.status.is_finished() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_finished",
            format!("job {id} has already ended ({})", job.status.as_str()),
        ));
    }
    let job = state.store.cancel_job(id).await?;
    if job.status.is_finished() {
        state.store.announce_job(&job).await?;
    }
    Ok(Json(json!({"job": job})))
}

async fn retry_job(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    owned_job(&state, &authed.user, id).await?;
    let job = state.store.retry_job(id).await?;
    Ok(accepted(&job))
}

// ---- databases ----

async fn create_schema(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Body(b): Body<database::sql::SchemaRequest>,
) -> ApiResult<Response> {
    owned_server(&state, &authed.user, id).await?;
    Ok(accepted(
        &database::schema::create_schema(&state.store, id, &b).await?,
    ))
}

async fn drop_schema(
    State(state): State<AppState>,
    authed: Authed,
    Path((id, engine, name)): Path<(i64, String, String)>,
) -> ApiResult<Response> {
    owned_server(&state, &authed.user, id).await?;
    Ok(accepted(
        &database::schema::drop_schema(&state.store, id, &engine, &name).await?,
    ))
}

#[derive(Deserialize)]
struct DbUserBody {
    #[serde(flatten)]
    request: database::sql::UserRequest,
    password: String,
}

async fn create_db_user(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Body(b): Body<DbUserBody>,
) -> ApiResult<Response> {
    owned_server(&state, &authed.user, id).await?;
    let job =
        database::user::create_user(&state.store, id, &b.request, &Secret::new(b.password)).await?;
    Ok(accepted(&job))
}

async fn drop_db_user(
    State(state): State<AppState>,
    authed: Authed,
    Path((id, engine, name)): Path<(i64, String, String)>,
) -> ApiResult<Response> {
    owned_server(&state, &authed.user, id).await?;
    Ok(accepted(
        &database::user::drop_user(&state.store, id, &engine, &name).await?,
    ))
}

// ---- sites ----

async fn list_sites(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    owned_server(&state, &authed.user, id).await?;
    Ok(Json(json!({"sites": state.store.sites(id).await?})))
}

async fn create_site(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Body(b): Body<SiteRequest>,
) -> ApiResult<Response> {
    owned_server(&state, &authed.user, id).await?;
    let (site, job) = site::create_site(&state.store, id, &b).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"site": site, "job": job})),
    )
        .into_response())
}

async fn show_site(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    Ok(Json(json!({"site": site})))
}

#[derive(Deserialize, Default)]
struct RemoveSiteQuery {
    #[serde(default)]
    keep_files: bool,
}

async fn remove_site(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Query(q): Query<RemoveSiteQuery>,
) -> ApiResult<Response> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    Ok(accepted(
        &site::remove_site(&state.store, &site, q.keep_files).await?,
    ))
}

async fn deploy_key(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    let (public, _) =
        brokeforge_packages::services::sites::git::deploy_key(&state.store, &site).await?;
    Ok(Json(json!({"public_key": public})))
}

#[derive(Deserialize)]
struct RepositoryBody {
    #[serde(flatten)]
    request: RepositoryRequest,
    #[serde(default = "yes")]
    deploy: bool,
}

fn yes() -> bool {
    true
}

async fn connect_repository(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Body(b): Body<RepositoryBody>,
) -> ApiResult<Response> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    let job =
        git_repository_installer::connect_repository(&state.store, &site, &b.request, b.deploy)
            .await?;
    Ok(accepted(&job))
}

async fn request_certificate(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Body(b): Body<certificate::CertificateRequest>,
) -> ApiResult<Response> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    let job = certificate::request_certificate(&state.store, &site, &b).await?;
    Ok(accepted(&job))
}

async fn remove_certificate(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    let job = certificate::remove_certificate(&state.store, &site).await?;
    Ok(accepted(&job))
}

#[derive(Deserialize)]
struct OutputQuery {
    lines: Option<u32>,
}

async fn tasks_output(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Query(q): Query<OutputQuery>,
) -> ApiResult<Json<Value>> {
    let (site, server) = owned_site(&state, &authed.user, id).await?;
    let output = tasks::SiteTasksInstaller
        .recent_output(
            &state.executor,
            &RunContext::new(server),
            &site,
            q.lines.unwrap_or(200),
        )
        .await?;
    Ok(Json(json!({"output": output})))
}

async fn set_tasks(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Body(b): Body<SiteTasks>,
) -> ApiResult<Response> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    let job = tasks::set_tasks(&state.store, &site, &b).await?;
    Ok(accepted(&job))
}

async fn list_deployments(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    let config = SiteConfig::of(&site);
    Ok(Json(json!({
        "deployments": state.store.deployments(site.id, 50).await?,
        "current_release": config.current_release,
        "releases": config.releases,
    })))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeployBody {
    branch: Option<String>,
}

async fn deploy(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    // The body is optional: an empty one deploys the configured branch.
    let branch = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<DeployBody>(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?
            .branch
    };
    let who = format!("user:{}", authed.user.email);
    let (d, job) = deployment::deploy(&state.store, &site, branch.as_deref(), &who).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"deployment": d, "job": job})),
    )
        .into_response())
}

#[derive(Deserialize)]
struct RollbackBody {
    release: String,
}

async fn rollback(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Body(b): Body<RollbackBody>,
) -> ApiResult<Response> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    let who = format!("user:{}", authed.user.email);
    let (d, job) = rollback::rollback(&state.store, &site, &b.release, &who).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"deployment": d, "job": job})),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ScriptBody {
    script: String,
}

/// Replace the deploy script (empty: back to the default).
pub async fn save_deploy_script(
    state: &AppState,
    site: &ServerSite,
    script: &str,
) -> ApiResult<()> {
    if script.len() > 64 * 1024 || script.contains('\0') {
        return Err(ApiError::invalid(
            "script",
            "the script must be text of at most 64 KiB",
        ));
    }
    let mut config = SiteConfig::of(&state.store.site(site.id).await?);
    config.deploy_script = (!script.trim().is_empty()).then(|| script.replace("\r\n", "\n"));
    state
        .store
        .set_site_configuration(site.id, &config.to_value())
        .await?;
    Ok(())
}

async fn set_deploy_script(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Body(b): Body<ScriptBody>,
) -> ApiResult<Json<Value>> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    save_deploy_script(&state, &site, &b.script).await?;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SiteSettings {
    pub keep_releases: Option<u32>,
    pub deploy_timeout_secs: Option<u64>,
    pub shared_paths: Option<Vec<String>>,
}

/// Change a site's deployment settings (validated; nothing changes on a bad value).
pub async fn save_site_settings(
    state: &AppState,
    site: &ServerSite,
    s: &SiteSettings,
) -> ApiResult<SiteConfig> {
    let mut config = SiteConfig::of(&state.store.site(site.id).await?);
    if let Some(k) = s.keep_releases {
        if !(1..=50).contains(&k) {
            return Err(ApiError::invalid(
                "keep_releases",
                "keep between 1 and 50 releases",
            ));
        }
        config.keep_releases = k;
    }
    if let Some(t) = s.deploy_timeout_secs {
        if !(10..=7200).contains(&t) {
            return Err(ApiError::invalid(
                "deploy_timeout_secs",
                "between 10 and 7200 seconds",
            ));
        }
        config.deploy_timeout_secs = t;
    }
    if let Some(paths) = &s.shared_paths {
        let mut checked = Vec::new();
        for p in paths.iter().filter(|p| !p.trim().is_empty()) {
            checked.push(shared_path(p.trim())?);
        }
        config.shared_paths = checked;
    }
    state
        .store
        .set_site_configuration(site.id, &config.to_value())
        .await?;
    Ok(config)
}

async fn set_site_settings(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Body(b): Body<SiteSettings>,
) -> ApiResult<Json<Value>> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    let config = save_site_settings(&state, &site, &b).await?;
    Ok(Json(
        json!({"keep_releases": config.keep_releases, "deploy_timeout_secs": config.deploy_timeout_secs, "shared_paths": config.shared_paths}),
    ))
}

async fn show_deployment(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let (d, _) = owned_deployment(&state, &authed.user, id).await?;
    let log: String = match d.job_id {
        Some(j) => state
            .store
            .job_logs(j)
            .await?
            .into_iter()
            .map(|l| l.chunk)
            .collect(),
        None => String::new(),
    };
    Ok(Json(
        json!({"deployment": d, "duration_ms": d.duration_ms(), "log": log}),
    ))
}

async fn list_commands(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    Ok(Json(
        json!({"commands": state.store.site_commands(site.id, 50).await?}),
    ))
}

#[derive(Deserialize)]
struct CommandBody {
    command: String,
    #[serde(default)]
    timeout_secs: Option<u64>,
}

/// Queue a site command; follow its output on the server's stream (`?job=ID`), its result is the job's.
pub async fn queue_command(
    state: &AppState,
    site: &ServerSite,
    command: &str,
    timeout_secs: Option<u64>,
) -> ApiResult<Job> {
    if command.trim().is_empty() {
        return Err(ApiError::invalid("command", "enter a command"));
    }
    if command.len() > 8192 || command.contains('\0') {
        return Err(ApiError::invalid("command", "at most 8 KiB of text"));
    }
    let timeout = timeout_secs.unwrap_or(DEFAULT_COMMAND_TIMEOUT.as_secs());
    if !(1..=3600).contains(&timeout) {
        return Err(ApiError::invalid(
            "timeout_secs",
            "between 1 and 3600 seconds",
        ));
    }
    Ok(state
        .store
        .enqueue(&brokeforge_packages::base::package::job::<
            SiteCommandInstaller,
        >(
            site.server_id,
            &CommandRequest::new(site.id, command, Duration::from_secs(timeout)),
        )?)
        .await?)
}

async fn run_command(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Body(b): Body<CommandBody>,
) -> ApiResult<Response> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    Ok(accepted(
        &queue_command(&state, &site, &b.command, b.timeout_secs).await?,
    ))
}

async fn read_env(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let (site, server) = owned_site(&state, &authed.user, id).await?;
    let env = EnvironmentInstaller
        .read(&state.executor, &RunContext::new(server), &site)
        .await?;
    Ok(Json(json!({"env": env.expose()})))
}

#[derive(Deserialize)]
struct EnvBody {
    env: String,
}

async fn write_env(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Body(b): Body<EnvBody>,
) -> ApiResult<Json<Value>> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    environment::write_env_and_wait(
        &state.store,
        &site,
        &Secret::new(b.env),
        Duration::from_secs(60),
    )
    .await?;
    Ok(Json(json!({"ok": true})))
}

async fn site_webhook(
    State(state): State<AppState>,
    authed: Authed,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let (site, _) = owned_site(&state, &authed.user, id).await?;
    let path = webhook::webhook_path(&state.store, &site).await?;
    let secret = webhook::webhook_token(&state.store, &site).await?;
    let base = state.base_url(&headers).unwrap_or_default();
    Ok(Json(json!({
        "url": format!("{base}{}", path.expose()),
        "secret": secret.expose(),
        "note": "GitHub: use the URL with content type application/json and this secret; GitLab: the URL with this secret token; anything else: POST to the URL"
    })))
}
