//! Server-rendered pages (askama). Forms post here and redirect back; bad input re-renders the form with the
//! message and saves nothing. Forms marked `data-api` are sent to the JSON API by `app.js` instead, so a job's
//! progress shows live without a reload.

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::{Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use brokeforge_core::EventStatus;
use brokeforge_core::time::now_ms;
use brokeforge_core::{Secret, ServiceStatus};
use brokeforge_packages::catalogue;
use brokeforge_packages::services::database;
use brokeforge_packages::services::server::access::onboarding::TOKEN_LIFETIME;
use brokeforge_packages::services::sites::config::SiteConfig;
use brokeforge_packages::services::sites::deployment::DeploymentInstallerMilestones;
use brokeforge_packages::services::sites::environment::{self, EnvironmentInstaller};
use brokeforge_packages::services::sites::repository::{
    self as git_repository_installer, RepositoryRequest,
};
use brokeforge_packages::services::sites::schedule::SiteTasks;
use brokeforge_packages::services::sites::site::SiteRequest;
use brokeforge_packages::services::sites::{
    certificate, deployment, rollback, site, tasks, webhook,
};
use brokeforge_packages::{Milestones, RunContext};
use brokeforge_store::{Job, JobStatus, LogStream, Server, ServerSite};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::api::{self, NewServerBody, owned_deployment, owned_server, owned_site};
use crate::auth::{self, Authed};
use crate::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .route("/setup", get(setup_form).post(setup))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/servers/new", get(new_server_form))
        .route("/servers", post(create_server))
        .route("/servers/{id}", get(server_page))
        .route("/servers/{id}/script", post(server_script))
        .route("/servers/{id}/host-key", post(pin_host_key))
        .route("/servers/{id}/delete", post(delete_server))
        .route("/servers/{id}/install", post(install))
        .route("/servers/{id}/services/{name}/remove", post(remove_service))
        .route("/servers/{id}/sites", post(create_site))
        .route("/servers/{id}/databases/schemas", post(create_schema))
        .route("/servers/{id}/databases/users", post(create_db_user))
        .route(
            "/servers/{id}/databases/{kind}/{engine}/{name}/drop",
            post(drop_db_item),
        )
        .route("/sites/{id}", get(site_page))
        .route("/sites/{id}/delete", post(remove_site))
        .route("/sites/{id}/repository", post(connect_repository))
        .route("/sites/{id}/deploy", post(deploy))
        .route("/sites/{id}/tasks", post(save_tasks))
        .route("/sites/{id}/certificate", post(request_certificate))
        .route("/sites/{id}/certificate/delete", post(remove_certificate))
        .route("/sites/{id}/rollback", post(rollback))
        .route("/sites/{id}/deploy-script", post(save_script))
        .route("/sites/{id}/settings", post(save_settings))
        .route("/sites/{id}/env", post(save_env))
        .route("/sites/{id}/commands", post(run_command))
        .route("/deployments/{id}", get(deployment_page))
        .route("/jobs/{id}", get(job_page))
        .route("/account", get(account))
        .route("/account/tokens", post(create_token))
        .route("/account/tokens/{id}/revoke", post(revoke_token))
        .route("/account/password", post(change_password))
        .route("/users", get(users).post(create_user))
        .route("/users/{id}/delete", post(delete_user))
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../static/app.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../static/app.js"),
    )
        .into_response()
}

/// What the layout needs.
#[derive(Default)]
pub struct Nav {
    pub title: String,
    pub signed_in: bool,
    pub email: String,
    pub is_admin: bool,
    pub csrf: String,
    pub error: String,
    pub notice: String,
}

impl Nav {
    fn of(u: &Authed, title: impl Into<String>) -> Nav {
        Nav {
            title: title.into(),
            signed_in: true,
            email: u.user.email.clone(),
            is_admin: u.user.is_admin,
            csrf: u.csrf.clone(),
            ..Nav::default()
        }
    }
    fn with_error(mut self, e: &ApiError) -> Nav {
        self.error = match e.field {
            Some(f) => format!("{f}: {}", e.message),
            None => e.message.clone(),
        };
        self
    }
}

fn render(t: &impl Template, status: StatusCode) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    nav: Nav,
    heading: String,
    message: String,
}

/// A page-level error: a clear page, with the status the API would give.
pub struct PageError(ApiError, Option<Authed>);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e, None)
    }
}

impl From<brokeforge_store::StoreError> for PageError {
    fn from(e: brokeforge_store::StoreError) -> Self {
        PageError(e.into(), None)
    }
}

impl From<brokeforge_packages::PackageError> for PageError {
    fn from(e: brokeforge_packages::PackageError) -> Self {
        PageError(e.into(), None)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let heading = match self.0.status {
            StatusCode::NOT_FOUND => "Not found".to_string(),
            StatusCode::FORBIDDEN => "Not allowed".to_string(),
            s if s.is_server_error() => "Something went wrong".to_string(),
            _ => "That did not work".to_string(),
        };
        let message = if self.0.status == StatusCode::NOT_FOUND {
            "There is nothing here, or it belongs to someone else.".to_string()
        } else {
            self.0.message.clone()
        };
        let nav = match &self.1 {
            Some(a) => Nav::of(a, heading.clone()),
            None => Nav {
                title: heading.clone(),
                ..Nav::default()
            },
        };
        render(
            &MessagePage {
                nav,
                heading,
                message,
            },
            self.0.status,
        )
    }
}

type PageResult = Result<Response, PageError>;

/// A package form's `set.NAME` fields (empty ones left to the package's defaults).
fn set_fields(f: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    f.iter()
        .filter_map(|(k, v)| k.strip_prefix("set.").map(|k| (k.to_string(), v.clone())))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// After a server form: back to the server page, or the page again with the error.
async fn server_result(
    state: &AppState,
    u: &Authed,
    id: i64,
    result: Result<(), ApiError>,
) -> PageResult {
    match result {
        Ok(()) => Ok(see_other(format!("/servers/{id}"))),
        Err(e) => server_view(state, u, id, String::new(), Some(&e), SiteForm::default()).await,
    }
}

/// The user's own server, or the "not found" page.
async fn page_server(state: &AppState, u: &Authed, id: i64) -> Result<Server, PageError> {
    owned_server(state, &u.user, id)
        .await
        .map_err(|e| PageError(e, Some(u.clone())))
}

/// The user's own site (with its server), or the "not found" page.
async fn page_site(
    state: &AppState,
    u: &Authed,
    id: i64,
) -> Result<(ServerSite, Server), PageError> {
    owned_site(state, &u.user, id)
        .await
        .map_err(|e| PageError(e, Some(u.clone())))
}

/// The signed-in user of a page; anyone else goes to the login page (or to setup on a new install).
pub struct PageUser(pub Authed);

impl<S: Send + Sync> FromRequestParts<S> for PageUser {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _s: &S) -> Result<Self, Response> {
        match parts.extensions.get::<Authed>() {
            Some(a) => Ok(PageUser(a.clone())),
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}

fn see_other(to: impl AsRef<str>) -> Response {
    Redirect::to(to.as_ref()).into_response()
}

fn ago(ms: i64) -> String {
    let s = ((now_ms() - ms) / 1000).max(0);
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

fn took(ms: Option<i64>) -> String {
    match ms {
        None => String::new(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) if ms < 120_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

// ---- first run, sign in ----

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Nav,
    setup: bool,
    email: String,
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

async fn setup_form(State(state): State<AppState>) -> PageResult {
    if state.store.count_users().await? > 0 {
        return Ok(see_other("/login"));
    }
    Ok(render(
        &LoginPage {
            nav: Nav {
                title: "Welcome".into(),
                ..Nav::default()
            },
            setup: true,
            email: String::new(),
        },
        StatusCode::OK,
    ))
}

fn signed_in_redirect(state: &AppState, token: &str, to: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, to.to_string()),
            (
                header::SET_COOKIE,
                auth::session_cookie(token, state.config.secure_cookies),
            ),
        ],
    )
        .into_response()
}

/// The first visit on an empty database creates the administrator.
async fn setup(State(state): State<AppState>, Form(f): Form<Credentials>) -> PageResult {
    if state.store.count_users().await? > 0 {
        return Ok(see_other("/login"));
    }
    let made = api::make_user(
        &state,
        &api::NewUser {
            email: f.email.clone(),
            password: f.password,
            admin: true,
        },
    )
    .await;
    match made {
        Ok(user) => {
            let (token, _) = auth::start_session(&state.store, user.id).await?;
            Ok(signed_in_redirect(&state, &token, "/"))
        }
        Err(e) => Ok(render(
            &LoginPage {
                nav: Nav {
                    title: "Welcome".into(),
                    ..Nav::default()
                }
                .with_error(&e),
                setup: true,
                email: f.email,
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        )),
    }
}

async fn login_form(State(state): State<AppState>, parts: Parts) -> PageResult {
    if state.store.count_users().await? == 0 {
        return Ok(see_other("/setup"));
    }
    if parts.extensions.get::<Authed>().is_some() {
        return Ok(see_other("/"));
    }
    Ok(render(
        &LoginPage {
            nav: Nav {
                title: "Sign in".into(),
                ..Nav::default()
            },
            setup: false,
            email: String::new(),
        },
        StatusCode::OK,
    ))
}

async fn login(
    State(state): State<AppState>,
    parts: Parts,
    Form(f): Form<Credentials>,
) -> PageResult {
    let address = auth::client_address(&parts, state.config.trust_proxy);
    match auth::login(&state.store, &f.email, &f.password, &address).await {
        Ok(user) => {
            let (token, _) = auth::start_session(&state.store, user.id).await?;
            Ok(signed_in_redirect(&state, &token, "/"))
        }
        Err(e) => Ok(render(
            &LoginPage {
                nav: Nav {
                    title: "Sign in".into(),
                    ..Nav::default()
                }
                .with_error(&e),
                setup: false,
                email: f.email,
            },
            e.status,
        )),
    }
}

async fn logout(State(state): State<AppState>, PageUser(u): PageUser) -> PageResult {
    if let Some(h) = &u.session_hash {
        state.store.delete_session(h).await?;
    }
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/login".to_string()),
            (
                header::SET_COOKIE,
                auth::clear_cookie(state.config.secure_cookies),
            ),
        ],
    )
        .into_response())
}

// ---- dashboard ----

struct ServerRow {
    id: i64,
    name: String,
    status: String,
    connection: String,
    address: String,
    os: String,
    services: String,
    last_activity: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    nav: Nav,
    servers: Vec<ServerRow>,
}

async fn dashboard(State(state): State<AppState>, parts: Parts) -> PageResult {
    let Some(u) = parts.extensions.get::<Authed>().cloned() else {
        if state.store.count_users().await? == 0 {
            return Ok(see_other("/setup"));
        }
        return Ok(see_other("/login"));
    };
    let mut rows = Vec::new();
    for s in state.store.servers_for_user(u.user.id).await? {
        let services = state.store.services(s.id).await?;
        let last = state
            .store
            .events(s.id, 0)
            .await?
            .last()
            .map(|e| format!("{} · {}", e.label, ago(e.updated_at)))
            .unwrap_or_else(|| format!("added {}", ago(s.created_at)));
        rows.push(ServerRow {
            id: s.id,
            name: s.name.clone(),
            status: s.provision_status.as_str().into(),
            connection: s.connection_status.as_str().into(),
            address: format!("{}:{}", s.public_ip, s.ssh_port),
            os: s.os.clone().unwrap_or_else(|| "—".into()),
            services: services
                .iter()
                .map(|x| x.service_name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            last_activity: last,
        });
    }
    Ok(render(
        &Dashboard {
            nav: Nav::of(&u, "Servers"),
            servers: rows,
        },
        StatusCode::OK,
    ))
}

// ---- servers ----

#[derive(Default, Deserialize)]
#[serde(default)]
struct ServerForm {
    name: String,
    public_ip: String,
    ssh_port: String,
    root_key: String,
    host_key_fingerprint: String,
    trust_on_first_use: Option<String>,
}

#[derive(Template)]
#[template(path = "server_new.html")]
struct NewServerPage {
    nav: Nav,
    form: ServerForm,
}

async fn new_server_form(PageUser(u): PageUser) -> Response {
    render(
        &NewServerPage {
            nav: Nav::of(&u, "Add a server"),
            form: ServerForm {
                ssh_port: "22".into(),
                ..ServerForm::default()
            },
        },
        StatusCode::OK,
    )
}

async fn create_server(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    headers: HeaderMap,
    Form(f): Form<ServerForm>,
) -> PageResult {
    let port = if f.ssh_port.trim().is_empty() {
        Ok(22)
    } else {
        f.ssh_port.trim().parse::<i64>().map_err(|_| {
            ApiError::invalid("ssh_port", format!("`{}` is not a port number", f.ssh_port))
        })
    };
    let result = match port {
        Ok(port) => {
            api::add(
                &state,
                &u.user,
                &headers,
                &NewServerBody {
                    name: f.name.clone(),
                    public_ip: f.public_ip.clone(),
                    ssh_port: Some(port),
                    host_key_fingerprint: Some(f.host_key_fingerprint.clone())
                        .filter(|s| !s.trim().is_empty()),
                    root_key: Some(f.root_key.clone()).filter(|s| !s.trim().is_empty()),
                    trust_on_first_use: f.trust_on_first_use.is_some(),
                },
            )
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => {
            let id = v["server"]["id"].as_i64().unwrap_or_default();
            let script = if v.get("job").is_some() {
                String::new()
            } else {
                v["script"].as_str().unwrap_or_default().to_string()
            };
            server_view(&state, &u, id, script, None, SiteForm::default()).await
        }
        Err(e) => Ok(render(
            &NewServerPage {
                nav: Nav::of(&u, "Add a server").with_error(&e),
                form: ServerForm {
                    root_key: String::new(),
                    ..f
                },
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        )),
    }
}

struct MilestoneView {
    key: String,
    label: String,
    status: String,
    error: String,
}

pub struct JobView {
    id: i64,
    label: String,
    when: String,
    status: String,
    error: String,
    total: i64,
    done: i64,
    milestones: Vec<MilestoneView>,
    finished: bool,
    cancellable: bool,
    retryable: bool,
}

/// A job with its milestones: the package's full list when the catalogue knows it, ticked from its events.
async fn job_view(state: &AppState, job: &Job) -> Result<JobView, ApiError> {
    let server_id = job.server_id.unwrap_or_default();
    let events: Vec<_> = state
        .store
        .events(server_id, 0)
        .await?
        .into_iter()
        .filter(|e| e.job_id == Some(job.id))
        .collect();
    let mut milestones: Vec<MilestoneView> = known_milestones(&job.kind)
        .into_iter()
        .map(|(key, label)| MilestoneView {
            key: key.to_string(),
            label: label.to_string(),
            status: "pending".into(),
            error: String::new(),
        })
        .collect();
    let mut total = milestones.len() as i64;
    let mut done = 0;
    for e in &events {
        total = e.total_steps;
        let status = e.status.as_str().to_string();
        if e.status == EventStatus::Completed {
            done = done.max(e.current_step);
        }
        match milestones.iter_mut().find(|m| m.key == e.milestone) {
            Some(m) => {
                m.status = status;
                m.error = e.error.clone().unwrap_or_default();
            }
            None => milestones.push(MilestoneView {
                key: e.milestone.clone(),
                label: e.label.clone(),
                status,
                error: e.error.clone().unwrap_or_default(),
            }),
        }
    }
    if job.status == JobStatus::Done {
        done = total;
    }
    Ok(JobView {
        id: job.id,
        label: job_label(job),
        when: ago(job.created_at),
        status: job.status.as_str().into(),
        error: job.error.clone().unwrap_or_default(),
        total: total.max(1),
        done,
        milestones,
        finished: job.status.is_finished(),
        cancellable: !job.status.is_finished(),
        retryable: matches!(job.status, JobStatus::Failed | JobStatus::Cancelled),
    })
}

fn job_label(job: &Job) -> String {
    if let Some(brokeforge_store::JobTarget::Service {
        name,
        provision_type,
        ..
    }) = &job.target
    {
        let verb = match provision_type {
            brokeforge_core::ProvisionType::Install => "Install",
            brokeforge_core::ProvisionType::Uninstall => "Remove",
        };
        return format!("{verb} {name}");
    }
    job.kind.replace('_', " ")
}

fn known_milestones(kind: &str) -> Vec<(&'static str, &'static str)> {
    for e in catalogue::catalogue() {
        if e.installer_kind() == kind {
            return e
                .install_milestones
                .iter()
                .map(|m| (m.key, m.label))
                .collect();
        }
        if e.remover_kind() == Some(kind) {
            return e
                .remove_milestones
                .iter()
                .map(|m| (m.key, m.label))
                .collect();
        }
    }
    if kind == <deployment::DeploymentInstaller as brokeforge_packages::Package>::JOB {
        return DeploymentInstallerMilestones::all()
            .iter()
            .map(|m| (m.key(), m.label()))
            .collect();
    }
    Vec::new()
}

struct ServiceView {
    service_name: String,
    status: ServiceStatus,
    error: Option<String>,
    details: String,
    removable: bool,
    /// The package's removal options (all booleans today: dump first, delete data).
    remove_options: Vec<ParamView>,
}

struct ParamView {
    name: String,
    kind: String,
    description: String,
    default_text: String,
    default_bool: bool,
    allowed: Vec<String>,
}

fn param_view(p: &catalogue::Parameter) -> ParamView {
    ParamView {
        name: p.name.to_string(),
        kind: p.kind.to_string(),
        description: p.description.to_string(),
        default_text: match &p.default {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        },
        default_bool: p.default == json!(true),
        allowed: p.allowed.clone(),
    }
}

struct CatalogueView {
    name: String,
    description: String,
    parameters: Vec<ParamView>,
    milestones_json: String,
}

struct SiteRow {
    id: i64,
    domain: String,
    php: String,
    status: String,
}

struct EventRow {
    when: String,
    what: String,
    step: String,
    status: String,
    error: String,
}

struct DbView {
    engine: String,
    schemas: Vec<String>,
    users: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct SiteForm {
    domain: String,
    aliases: String,
    php_version: String,
    web_directory: String,
    default_site: Option<String>,
}

#[derive(Template)]
#[template(path = "server.html")]
struct ServerPage {
    nav: Nav,
    server: Server,
    os: String,
    host_key: String,
    pending: bool,
    script: String,
    services: Vec<ServiceView>,
    cursor: i64,
    jobs: Vec<JobView>,
    catalogue: Vec<CatalogueView>,
    sites: Vec<SiteRow>,
    site_form: SiteForm,
    php_versions: Vec<String>,
    db_engines: Vec<String>,
    databases: Vec<DbView>,
    events: Vec<EventRow>,
}

async fn server_view(
    state: &AppState,
    u: &Authed,
    id: i64,
    script: String,
    error: Option<&ApiError>,
    site_form: SiteForm,
) -> PageResult {
    let server = owned_server(state, &u.user, id)
        .await
        .map_err(|e| PageError(e, Some(u.clone())))?;
    // The cursor first: anything after it arrives live.
    let cursor = state.store.activity_head(id).await?;
    let services = state.store.services(id).await?;
    let mut jobs = Vec::new();
    for job in state.store.recent_jobs(id, 8).await? {
        jobs.push(job_view(state, &job).await?);
    }
    // Steps reported by the one-line script (no job): one box, after the jobs it started.
    let script_events: Vec<_> = state
        .store
        .events(id, 0)
        .await?
        .into_iter()
        .filter(|e| e.job_id.is_none())
        .collect();
    if !script_events.is_empty() {
        let failed = script_events
            .iter()
            .any(|e| e.status == EventStatus::Failed);
        let running = script_events
            .iter()
            .any(|e| e.status == EventStatus::InProgress);
        jobs.push(JobView {
            id: 0,
            label: "Provisioning script".into(),
            when: ago(script_events[0].created_at),
            status: if failed {
                "failed"
            } else if running {
                "running"
            } else {
                "done"
            }
            .into(),
            error: script_events
                .iter()
                .find_map(|e| e.error.clone())
                .unwrap_or_default(),
            total: script_events
                .last()
                .map(|e| e.total_steps)
                .unwrap_or(1)
                .max(1),
            done: script_events
                .iter()
                .filter(|e| e.status == EventStatus::Completed)
                .map(|e| e.current_step)
                .max()
                .unwrap_or(0),
            milestones: script_events
                .iter()
                .map(|e| MilestoneView {
                    key: e.milestone.clone(),
                    label: e.label.clone(),
                    status: e.status.as_str().into(),
                    error: e.error.clone().unwrap_or_default(),
                })
                .collect(),
            finished: !running,
            cancellable: false,
            retryable: false,
        });
    }
    let php_versions: Vec<String> = services
        .iter()
        .find(|s| s.service_name == "webserver")
        .and_then(|s| s.configuration.get("php_versions").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let db_engines: Vec<String> = services
        .iter()
        .filter(|s| {
            matches!(s.service_name.as_str(), "mariadb" | "mysql" | "postgresql")
                && s.status == ServiceStatus::Active
        })
        .map(|s| s.service_name.clone())
        .collect();
    let databases = services
        .iter()
        .filter(|s| db_engines.contains(&s.service_name))
        .map(|s| {
            let names = |k: &str| -> Vec<String> {
                s.configuration
                    .get(k)
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x["name"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            DbView {
                engine: s.service_name.clone(),
                schemas: names("schemas"),
                users: names("users"),
            }
        })
        .collect();
    let services = services
        .into_iter()
        .map(|s| ServiceView {
            details: s
                .configuration
                .get("php_versions")
                .map(|v| {
                    format!(
                        "PHP {}",
                        v.as_array()
                            .map(|a| a
                                .iter()
                                .filter_map(|x| x.as_str())
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default(),
            removable: catalogue::entry(&s.service_name).is_ok()
                && !matches!(
                    s.status,
                    ServiceStatus::Installing | ServiceStatus::Removing
                ),
            remove_options: catalogue::entry(&s.service_name)
                .map(|e| e.remove_parameters.iter().map(param_view).collect())
                .unwrap_or_default(),
            service_name: s.service_name,
            status: s.status,
            error: s.error,
        })
        .collect();
    let catalogue = catalogue::catalogue()
        .into_iter()
        .map(|e| CatalogueView {
            name: e.name.to_string(),
            description: e.description.to_string(),
            milestones_json: serde_json::to_string(&e.install_milestones).unwrap_or_default(),
            parameters: e.parameters.iter().map(param_view).collect(),
        })
        .collect();
    let sites = state
        .store
        .sites(id)
        .await?
        .into_iter()
        .map(|s| SiteRow {
            id: s.id,
            domain: s.domain,
            php: s.php_version.unwrap_or_default(),
            status: s.status.as_str().into(),
        })
        .collect();
    let events = state
        .store
        .events(id, 0)
        .await?
        .into_iter()
        .rev()
        .take(30)
        .map(|e| EventRow {
            when: ago(e.updated_at),
            what: format!(
                "{} {}: {}",
                e.provision_type.as_str(),
                e.service_type.as_str(),
                e.label
            ),
            step: format!("{}/{}", e.current_step, e.total_steps),
            status: e.status.as_str().into(),
            error: e.error.unwrap_or_default(),
        })
        .collect();
    let mut nav = Nav::of(u, server.name.clone());
    if let Some(e) = error {
        nav = nav.with_error(e);
    }
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let site_form = SiteForm {
        web_directory: if site_form.web_directory.is_empty() && site_form.domain.is_empty() {
            "public".into()
        } else {
            site_form.web_directory
        },
        ..site_form
    };
    Ok(render(
        &ServerPage {
            nav,
            os: server
                .os
                .clone()
                .unwrap_or_else(|| "not detected yet".into()),
            host_key: server
                .host_key_fingerprint
                .clone()
                .unwrap_or_else(|| "not pinned yet".into()),
            pending: server.provision_status != brokeforge_core::ProvisionStatus::Provisioned,
            server,
            script,
            services,
            cursor,
            jobs,
            catalogue,
            sites,
            site_form,
            php_versions,
            db_engines,
            databases,
            events,
        },
        status,
    ))
}

async fn server_page(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
) -> PageResult {
    server_view(&state, &u, id, String::new(), None, SiteForm::default()).await
}

async fn server_script(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> PageResult {
    let server = page_server(&state, &u, id).await?;
    let token = state
        .store
        .create_provision_token(server.id, TOKEN_LIFETIME)
        .await?;
    let base = state
        .base_url(&headers)
        .ok_or_else(|| ApiError::invalid("host", "set BROKEFORGE_PUBLIC_URL"))?;
    server_view(
        &state,
        &u,
        id,
        api::script_command(&base, &token),
        None,
        SiteForm::default(),
    )
    .await
}

#[derive(Deserialize)]
struct PinForm {
    fingerprint: String,
}

async fn pin_host_key(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
    Form(f): Form<PinForm>,
) -> PageResult {
    page_server(&state, &u, id).await?;
    let r = match brokeforge_ssh::keys::validate_fingerprint(&f.fingerprint) {
        Ok(fp) => Ok(state.store.pin_host_key(id, Some(&fp)).await?),
        Err(e) => Err(e.into()),
    };
    server_result(&state, &u, id, r).await
}

async fn delete_server(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
) -> PageResult {
    page_server(&state, &u, id).await?;
    state.store.delete_server(id).await?;
    Ok(see_other("/"))
}

/// The install form without JavaScript: `package` plus `set.NAME` fields.
async fn install(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    page_server(&state, &u, id).await?;
    let package = f.get("package").cloned().unwrap_or_default();
    let settings = set_fields(&f);
    let r = catalogue::install(&state.store, id, &package, &settings).await;
    server_result(&state, &u, id, r.map(|_| ()).map_err(ApiError::from)).await
}

async fn remove_service(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path((id, name)): Path<(i64, String)>,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    page_server(&state, &u, id).await?;
    let settings = set_fields(&f);
    let r = catalogue::remove(&state.store, id, &name, &settings).await;
    server_result(&state, &u, id, r.map(|_| ()).map_err(ApiError::from)).await
}

async fn create_site(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
    Form(f): Form<SiteForm>,
) -> PageResult {
    page_server(&state, &u, id).await?;
    let req = SiteRequest {
        domain: f.domain.clone(),
        aliases: f
            .aliases
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
        php_version: Some(f.php_version.clone()).filter(|v| !v.is_empty()),
        web_directory: Some(f.web_directory.clone()),
        default_site: f.default_site.is_some(),
    };
    match site::create_site(&state.store, id, &req).await {
        Ok((site, _)) => Ok(see_other(format!("/sites/{}", site.id))),
        Err(e) => server_view(&state, &u, id, String::new(), Some(&e.into()), f).await,
    }
}

async fn create_schema(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    page_server(&state, &u, id).await?;
    let req: Result<database::sql::SchemaRequest, _> =
        serde_json::from_value(json!({"engine": f.get("engine"), "name": f.get("name")}));
    let result = match req {
        Ok(r) => database::schema::create_schema(&state.store, id, &r)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(ApiError::invalid("name", e.to_string())),
    };
    server_result(&state, &u, id, result.map(|_| ())).await
}

async fn create_db_user(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    page_server(&state, &u, id).await?;
    let schemas: Vec<String> = f
        .get("schemas")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let req: Result<database::sql::UserRequest, _> = serde_json::from_value(json!({
        "engine": f.get("engine"), "name": f.get("name"), "schemas": schemas, "privileges": f.get("privileges"),
    }));
    let result = match req {
        Ok(r) => database::user::create_user(
            &state.store,
            id,
            &r,
            &Secret::new(f.get("password").cloned().unwrap_or_default()),
        )
        .await
        .map_err(ApiError::from),
        Err(e) => Err(ApiError::invalid("user", e.to_string())),
    };
    server_result(&state, &u, id, result.map(|_| ())).await
}

/// Drop a schema or a user (`kind` is `schemas` or `users`).
async fn drop_db_item(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path((id, kind, engine, name)): Path<(i64, String, String, String)>,
) -> PageResult {
    page_server(&state, &u, id).await?;
    let r = match kind.as_str() {
        "schemas" => database::schema::drop_schema(&state.store, id, &engine, &name).await,
        "users" => database::user::drop_user(&state.store, id, &engine, &name).await,
        _ => return Err(PageError(ApiError::not_found(), Some(u))),
    };
    server_result(&state, &u, id, r.map(|_| ()).map_err(ApiError::from)).await
}

// ---- sites ----

struct DeploymentRow {
    id: i64,
    job_id: Option<i64>,
    when: String,
    kind: String,
    commit: String,
    release: String,
    status: String,
    by: String,
    took: String,
    can_roll_back: bool,
}

struct CommandRow {
    command: String,
    when: String,
    took: String,
    status: String,
    output: String,
}

#[derive(Template)]
#[template(path = "site.html")]
struct SitePage {
    nav: Nav,
    server: Server,
    site: ServerSite,
    aliases: String,
    php: String,
    web_directory: String,
    current_release: String,
    deploy_key: String,
    repository: String,
    git_host_keys: String,
    repo_url: String,
    repo_branch: String,
    deploy_milestones: String,
    cursor: i64,
    jobs: Vec<JobView>,
    deployments: Vec<DeploymentRow>,
    deploy_script: String,
    env_loaded: bool,
    env: String,
    commands: Vec<CommandRow>,
    webhook_url: String,
    webhook_secret: String,
    keep_releases: u32,
    deploy_timeout: u64,
    shared_paths: String,
    /// Scheduled commands and daemons in their text forms, and their newest output when asked for.
    tasks_output: Option<String>,
    schedules: String,
    daemons: String,
    /// The certificate's names and expiry; empty when the site serves plain HTTP.
    certificate: String,
    certificate_milestones: String,
}

#[derive(Deserialize, Default)]
struct SiteQuery {
    env: Option<String>,
    output: Option<String>,
}

/// How the site page is shown beyond the site itself.
#[derive(Default)]
struct SiteView<'a> {
    /// Read the .env from the server into the editor.
    load_env: bool,
    /// Read the newest output of the scheduled commands and daemons from the server.
    load_output: bool,
    error: Option<&'a ApiError>,
    notice: &'a str,
    /// What the user typed into the background-work form, shown again with its error.
    tasks_draft: Option<&'a TasksForm>,
}

async fn site_view(
    state: &AppState,
    u: &Authed,
    headers: &HeaderMap,
    id: i64,
    view: SiteView<'_>,
) -> PageResult {
    let SiteView {
        load_env,
        load_output,
        error,
        notice,
        tasks_draft,
    } = view;
    let (site, server) = owned_site(state, &u.user, id)
        .await
        .map_err(|e| PageError(e, Some(u.clone())))?;
    let cursor = state.store.activity_head(server.id).await?;
    let config = SiteConfig::of(&site);
    let (deploy_key, _) =
        brokeforge_packages::services::sites::git::deploy_key(&state.store, &site).await?;
    let hook = webhook::webhook_path(&state.store, &site).await?;
    let secret = webhook::webhook_token(&state.store, &site).await?;
    let kept: Vec<&str> = config.releases.iter().map(|r| r.name.as_str()).collect();
    let deployments = state.store.deployments(site.id, 30).await?;
    let mut jobs = Vec::new();
    for d in deployments.iter().take(3) {
        if let Some(j) = d.job_id
            && let Ok(job) = state.store.job(j).await
            && !job.status.is_finished()
        {
            jobs.push(job_view(state, &job).await?);
        }
    }
    // Certificate and background-work jobs of this site still at work (a reload keeps showing them).
    for job in state.store.unfinished_jobs(server.id).await? {
        let site_job = job.kind
            == <certificate::CertificateInstaller as brokeforge_packages::Package>::JOB
            || job.kind == <certificate::CertificateRemover as brokeforge_packages::Package>::JOB
            || job.kind == <tasks::SiteTasksInstaller as brokeforge_packages::Package>::JOB;
        if site_job && job.payload["site_id"].as_i64() == Some(site.id) {
            jobs.push(job_view(state, &job).await?);
        }
    }
    let rows = deployments
        .iter()
        .map(|d| DeploymentRow {
            id: d.id,
            job_id: d.job_id,
            when: ago(d.created_at),
            kind: d.kind.clone(),
            commit: d
                .commit_hash
                .as_deref()
                .map(|c| c.chars().take(10).collect())
                .unwrap_or_default(),
            release: d.release.clone().unwrap_or_default(),
            status: d.status.as_str().into(),
            by: d.triggered_by.clone(),
            took: took(d.duration_ms()),
            can_roll_back: d.kind == "deploy"
                && d.release.as_deref().is_some_and(|r| kept.contains(&r))
                && d.release != config.current_release,
        })
        .collect();
    let commands = state
        .store
        .site_commands(site.id, 20)
        .await?
        .into_iter()
        .map(|c| CommandRow {
            status: if c.timed_out {
                "timed out".into()
            } else if c.success {
                "done".into()
            } else {
                format!("exit {}", c.exit_code.unwrap_or(-1))
            },
            output: format!("{}{}", c.output, c.error_output),
            when: ago(c.ran_at),
            took: took(Some(c.duration_ms)),
            command: c.command,
        })
        .collect();
    let (env_loaded, env, mut env_error) = if load_env {
        match EnvironmentInstaller
            .read(&state.executor, &RunContext::new(server.clone()), &site)
            .await
        {
            Ok(s) => (true, s.expose().to_string(), None),
            Err(e) => (false, String::new(), Some(ApiError::from(e))),
        }
    } else {
        (false, String::new(), None)
    };
    let (tasks_output, output_error) = if load_output {
        match tasks::SiteTasksInstaller
            .recent_output(
                &state.executor,
                &RunContext::new(server.clone()),
                &site,
                200,
            )
            .await
        {
            Ok(o) if o.is_empty() => (Some("(no output yet)".to_string()), None),
            Ok(o) => (Some(o), None),
            Err(e) => (None, Some(ApiError::from(e))),
        }
    } else {
        (None, None)
    };
    let (schedules, daemons) = match tasks_draft {
        Some(d) => (d.schedules.clone(), d.daemons.clone()),
        None => config.tasks.to_text(),
    };
    let mut nav = Nav::of(u, site.domain.clone());
    if let Some(e) = error.or(env_error.as_ref()).or(output_error.as_ref()) {
        nav = nav.with_error(e);
    }
    nav.notice = notice.to_string();
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    env_error.take();
    let repo = config.repository.clone();
    Ok(render(
        &SitePage {
            nav,
            aliases: if config.aliases.is_empty() {
                "—".into()
            } else {
                config.aliases.join(", ")
            },
            php: site.php_version.clone().unwrap_or_default(),
            web_directory: if config.web_directory.is_empty() {
                "/".into()
            } else {
                config.web_directory.clone()
            },
            current_release: config
                .current_release
                .clone()
                .unwrap_or_else(|| "placeholder (no deployment yet)".into()),
            deploy_key,
            repository: repo
                .as_ref()
                .map(|r| format!("{} ({})", r.url, r.branch))
                .unwrap_or_default(),
            git_host_keys: repo
                .as_ref()
                .map(|r| r.host_key_fingerprints.join(", "))
                .unwrap_or_default(),
            repo_url: repo.as_ref().map(|r| r.url.clone()).unwrap_or_default(),
            repo_branch: repo
                .as_ref()
                .map(|r| r.branch.clone())
                .unwrap_or_else(|| "main".into()),
            deploy_milestones: milestones_json(DeploymentInstallerMilestones::all()),
            tasks_output,
            schedules,
            daemons,
            certificate_milestones: milestones_json(
                certificate::CertificateInstallerMilestones::all(),
            ),
            certificate: config
                .certificate
                .as_ref()
                .map(|c| {
                    format!(
                        "{} · expires {}",
                        c.domains.join(", "),
                        c.expires.as_deref().unwrap_or("(unknown)")
                    )
                })
                .unwrap_or_default(),
            cursor,
            jobs,
            deployments: rows,
            deploy_script: config
                .deploy_script
                .clone()
                .unwrap_or_else(|| deployment::DEFAULT_DEPLOY_SCRIPT.to_string()),
            env_loaded,
            env,
            commands,
            webhook_url: format!(
                "{}{}",
                state.base_url(headers).unwrap_or_default(),
                hook.expose()
            ),
            webhook_secret: secret.expose().to_string(),
            keep_releases: config.keep_releases,
            deploy_timeout: config.deploy_timeout_secs,
            shared_paths: config.shared_paths.join(", "),
            server,
            site,
        },
        status,
    ))
}

/// Milestones as the page script reads them (`data-milestones`), to draw a job's steps before it starts.
fn milestones_json<M: Milestones>(all: &[M]) -> String {
    serde_json::to_string(
        &all.iter()
            .map(|m| json!({"key": m.key(), "label": m.label()}))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default()
}

async fn site_page(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<SiteQuery>,
) -> PageResult {
    site_view(
        &state,
        &u,
        &headers,
        id,
        SiteView {
            load_env: q.env.is_some(),
            load_output: q.output.is_some(),
            ..Default::default()
        },
    )
    .await
}

async fn site_result(
    state: &AppState,
    u: &Authed,
    headers: &HeaderMap,
    id: i64,
    result: Result<(), ApiError>,
) -> PageResult {
    match result {
        Ok(()) => Ok(see_other(format!("/sites/{id}"))),
        Err(e) => {
            site_view(
                state,
                u,
                headers,
                id,
                SiteView {
                    error: Some(&e),
                    ..Default::default()
                },
            )
            .await
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeepForm {
    keep_files: Option<String>,
}

async fn remove_site(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
    Form(f): Form<KeepForm>,
) -> PageResult {
    let (site, server) = page_site(&state, &u, id).await?;
    site::remove_site(&state.store, &site, f.keep_files.is_some()).await?;
    Ok(see_other(format!("/servers/{}", server.id)))
}

async fn connect_repository(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<RepositoryRequest>,
) -> PageResult {
    let (site, _) = page_site(&state, &u, id).await?;
    let r = git_repository_installer::connect_repository(&state.store, &site, &f, true)
        .await
        .map(|_| ())
        .map_err(ApiError::from);
    site_result(&state, &u, &headers, id, r).await
}

async fn request_certificate(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<certificate::CertificateRequest>,
) -> PageResult {
    let (site, _) = page_site(&state, &u, id).await?;
    let r = certificate::request_certificate(&state.store, &site, &f)
        .await
        .map(|_| ())
        .map_err(ApiError::from);
    site_result(&state, &u, &headers, id, r).await
}

async fn remove_certificate(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> PageResult {
    let (site, _) = page_site(&state, &u, id).await?;
    let r = certificate::remove_certificate(&state.store, &site)
        .await
        .map(|_| ())
        .map_err(ApiError::from);
    site_result(&state, &u, &headers, id, r).await
}

#[derive(Deserialize)]
struct TasksForm {
    #[serde(default)]
    schedules: String,
    #[serde(default)]
    daemons: String,
}

async fn save_tasks(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<TasksForm>,
) -> PageResult {
    let (site, _) = page_site(&state, &u, id).await?;
    let r = match SiteTasks::parse(&f.schedules, &f.daemons) {
        Ok(t) => tasks::set_tasks(&state.store, &site, &t).await,
        Err(e) => Err(e.into()),
    };
    match r {
        Ok(_) => Ok(see_other(format!("/sites/{id}"))),
        Err(e) => {
            let e = ApiError::from(e);
            let view = SiteView {
                error: Some(&e),
                tasks_draft: Some(&f),
                ..Default::default()
            };
            site_view(&state, &u, &headers, id, view).await
        }
    }
}

async fn deploy(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> PageResult {
    let (site, _) = page_site(&state, &u, id).await?;
    let r = deployment::deploy(&state.store, &site, None, &format!("user:{}", u.user.email))
        .await
        .map(|_| ())
        .map_err(ApiError::from);
    site_result(&state, &u, &headers, id, r).await
}

#[derive(Deserialize)]
struct RollbackForm {
    release: String,
}

async fn rollback(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<RollbackForm>,
) -> PageResult {
    let (site, _) = page_site(&state, &u, id).await?;
    let r = rollback::rollback(
        &state.store,
        &site,
        &f.release,
        &format!("user:{}", u.user.email),
    )
    .await
    .map(|_| ())
    .map_err(ApiError::from);
    site_result(&state, &u, &headers, id, r).await
}

#[derive(Deserialize)]
struct ScriptForm {
    script: String,
}

async fn save_script(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<ScriptForm>,
) -> PageResult {
    let (site, _) = page_site(&state, &u, id).await?;
    let r = api::save_deploy_script(&state, &site, &f.script).await;
    site_result(&state, &u, &headers, id, r).await
}

#[derive(Deserialize)]
struct SettingsForm {
    keep_releases: String,
    deploy_timeout_secs: String,
    shared_paths: String,
}

async fn save_settings(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<SettingsForm>,
) -> PageResult {
    let (site, _) = page_site(&state, &u, id).await?;
    let parsed = (|| -> Result<api::SiteSettings, ApiError> {
        Ok(api::SiteSettings {
            keep_releases: Some(
                f.keep_releases
                    .trim()
                    .parse()
                    .map_err(|_| ApiError::invalid("keep_releases", "enter a number"))?,
            ),
            deploy_timeout_secs: Some(f.deploy_timeout_secs.trim().parse().map_err(|_| {
                ApiError::invalid("deploy_timeout_secs", "enter a number of seconds")
            })?),
            shared_paths: Some(
                f.shared_paths
                    .split(',')
                    .map(|p| p.trim().to_string())
                    .collect(),
            ),
        })
    })();
    let r = match parsed {
        Ok(s) => api::save_site_settings(&state, &site, &s).await.map(|_| ()),
        Err(e) => Err(e),
    };
    site_result(&state, &u, &headers, id, r).await
}

#[derive(Deserialize)]
struct EnvForm {
    env: String,
}

async fn save_env(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<EnvForm>,
) -> PageResult {
    let (site, _) = page_site(&state, &u, id).await?;
    let r = environment::write_env_and_wait(
        &state.store,
        &site,
        &Secret::new(f.env.replace("\r\n", "\n")),
        std::time::Duration::from_secs(60),
    )
    .await;
    match r {
        Ok(_) => {
            site_view(
                &state,
                &u,
                &headers,
                id,
                SiteView {
                    notice: "Saved the .env",
                    ..Default::default()
                },
            )
            .await
        }
        Err(e) => {
            let e = e.into();
            site_view(
                &state,
                &u,
                &headers,
                id,
                SiteView {
                    error: Some(&e),
                    ..Default::default()
                },
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct CommandForm {
    command: String,
}

async fn run_command(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<CommandForm>,
) -> PageResult {
    let (site, _) = page_site(&state, &u, id).await?;
    let r = api::queue_command(&state, &site, &f.command, None)
        .await
        .map(|_| ());
    site_result(&state, &u, &headers, id, r).await
}

#[derive(Template)]
#[template(path = "deployment.html")]
struct DeploymentPage {
    nav: Nav,
    id: i64,
    site_id: i64,
    server_id: i64,
    domain: String,
    kind: String,
    status: String,
    job_id: Option<i64>,
    branch: String,
    commit: String,
    release: String,
    by: String,
    took: String,
    exit_code: String,
    error: String,
    cursor: i64,
    log: String,
}

async fn deployment_page(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
) -> PageResult {
    let (d, site) = owned_deployment(&state, &u.user, id)
        .await
        .map_err(|e| PageError(e, Some(u.clone())))?;
    let cursor = state.store.activity_head(site.server_id).await?;
    let log: String = match d.job_id {
        Some(j) => state
            .store
            .job_logs(j)
            .await?
            .into_iter()
            .filter(|l| l.id <= cursor && l.stream != LogStream::Event)
            .map(|l| l.chunk)
            .collect(),
        None => String::new(),
    };
    Ok(render(
        &DeploymentPage {
            nav: Nav::of(&u, format!("Deployment {}", d.id)),
            id: d.id,
            site_id: site.id,
            server_id: site.server_id,
            domain: site.domain.clone(),
            kind: d.kind.clone(),
            status: d.status.as_str().into(),
            job_id: d.job_id,
            branch: d.branch.clone().unwrap_or_default(),
            commit: d.commit_hash.clone().unwrap_or_default(),
            release: d.release.clone().unwrap_or_default(),
            by: d.triggered_by.clone(),
            took: took(d.duration_ms()),
            exit_code: d.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            error: d.error.clone().unwrap_or_default(),
            cursor,
            log,
        },
        StatusCode::OK,
    ))
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    nav: Nav,
    id: i64,
    server_id: i64,
    server_name: String,
    label: String,
    status: String,
    error: String,
    cursor: i64,
    log: String,
    job: JobView,
}

/// One job: its milestones, error and output (live while it runs).
async fn job_page(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
) -> PageResult {
    let job = api::owned_job(&state, &u.user, id)
        .await
        .map_err(|e| PageError(e, Some(u.clone())))?;
    let server = page_server(&state, &u, job.server_id.unwrap_or_default()).await?;
    let cursor = state.store.activity_head(server.id).await?;
    let log: String = state
        .store
        .job_logs(id)
        .await?
        .into_iter()
        .filter(|l| l.id <= cursor)
        .map(|l| l.chunk)
        .collect();
    let mut view = job_view(&state, &job).await?;
    // The output is shown below in full; the box keeps only the milestones.
    view.error = String::new();
    Ok(render(
        &JobPage {
            nav: Nav::of(&u, format!("Job {id}")),
            id,
            server_id: server.id,
            server_name: server.name.clone(),
            label: job_label(&job),
            status: job.status.as_str().into(),
            error: job.error.clone().unwrap_or_default(),
            cursor,
            log,
            job: view,
        },
        StatusCode::OK,
    ))
}

// ---- account and users ----

struct TokenRow {
    id: i64,
    name: String,
    prefix: String,
    state: String,
    live: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    nav: Nav,
    tokens: Vec<TokenRow>,
    new_token: String,
}

async fn account_view(
    state: &AppState,
    u: &Authed,
    new_token: String,
    error: Option<&ApiError>,
    notice: &str,
) -> PageResult {
    let tokens = state
        .store
        .api_tokens(u.user.id)
        .await?
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            live: t.revoked_at.is_none(),
            state: match (t.revoked_at, t.last_used_at) {
                (Some(r), _) => format!("revoked {}", ago(r)),
                (None, Some(l)) => format!("used {}", ago(l)),
                (None, None) => "never used".into(),
            },
            name: t.name,
            prefix: t.prefix,
        })
        .collect();
    let mut nav = Nav::of(u, "Account");
    if let Some(e) = error {
        nav = nav.with_error(e);
    }
    nav.notice = notice.into();
    Ok(render(
        &AccountPage {
            nav,
            tokens,
            new_token,
        },
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
    ))
}

async fn account(State(state): State<AppState>, PageUser(u): PageUser) -> PageResult {
    account_view(&state, &u, String::new(), None, "").await
}

#[derive(Deserialize)]
struct TokenForm {
    name: String,
}

async fn create_token(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Form(f): Form<TokenForm>,
) -> PageResult {
    match api::new_token(&state, u.user.id, &f.name).await {
        Ok((token, _)) => account_view(&state, &u, token, None, "").await,
        Err(e) => account_view(&state, &u, String::new(), Some(&e), "").await,
    }
}

async fn revoke_token(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
) -> PageResult {
    state.store.revoke_api_token(u.user.id, id).await?;
    Ok(see_other("/account"))
}

#[derive(Deserialize)]
struct PasswordForm {
    current: String,
    password: String,
}

async fn change_password(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Form(f): Form<PasswordForm>,
) -> PageResult {
    if !auth::verify_password(&f.current, &u.user.password_hash).await {
        return account_view(
            &state,
            &u,
            String::new(),
            Some(&ApiError::invalid(
                "current",
                "the current password is wrong",
            )),
            "",
        )
        .await;
    }
    if let Err(e) = auth::check_password_rules(&f.password) {
        return account_view(&state, &u, String::new(), Some(&e), "").await;
    }
    let hash = auth::hash_password(&f.password).await?;
    state.store.set_password_hash(u.user.id, &hash).await?;
    // Every session ended with the change; start a fresh one for this browser.
    let (token, _) = auth::start_session(&state.store, u.user.id).await?;
    Ok(signed_in_redirect(&state, &token, "/account"))
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    nav: Nav,
    users: Vec<brokeforge_store::User>,
    me: i64,
    email: String,
}

async fn users_view(
    state: &AppState,
    u: &Authed,
    email: String,
    error: Option<&ApiError>,
) -> PageResult {
    u.require_admin()
        .map_err(|e| PageError(e, Some(u.clone())))?;
    let mut nav = Nav::of(u, "Users");
    if let Some(e) = error {
        nav = nav.with_error(e);
    }
    Ok(render(
        &UsersPage {
            nav,
            users: state.store.users().await?,
            me: u.user.id,
            email,
        },
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
    ))
}

async fn users(State(state): State<AppState>, PageUser(u): PageUser) -> PageResult {
    users_view(&state, &u, String::new(), None).await
}

#[derive(Deserialize)]
struct UserForm {
    email: String,
    password: String,
    admin: Option<String>,
}

async fn create_user(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Form(f): Form<UserForm>,
) -> PageResult {
    u.require_admin()
        .map_err(|e| PageError(e, Some(u.clone())))?;
    match api::make_user(
        &state,
        &api::NewUser {
            email: f.email.clone(),
            password: f.password,
            admin: f.admin.is_some(),
        },
    )
    .await
    {
        Ok(_) => Ok(see_other("/users")),
        Err(e) => users_view(&state, &u, f.email, Some(&e)).await,
    }
}

async fn delete_user(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
) -> PageResult {
    u.require_admin()
        .map_err(|e| PageError(e, Some(u.clone())))?;
    if id == u.user.id {
        return users_view(
            &state,
            &u,
            String::new(),
            Some(&ApiError::invalid(
                "user",
                "you cannot delete your own account",
            )),
        )
        .await;
    }
    state.store.user(id).await?;
    state.store.delete_user(id).await?;
    Ok(see_other("/users"))
}
