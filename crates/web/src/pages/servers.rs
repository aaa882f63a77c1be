//! A server's page and its forms: adding a server, its script and host key, packages, sites, databases.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use brokeforge_core::EventStatus;
use brokeforge_core::{Secret, ServiceStatus};
use brokeforge_packages::catalogue;
use brokeforge_packages::services::database;
use brokeforge_packages::services::sites::site::SiteRequest;
use brokeforge_store::Server;
use serde::Deserialize;
use serde_json::json;

use super::common::*;
use super::jobs::*;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::OwnedServer;
use crate::state::AppState;
use brokeforge_domain::servers::NewServer;
use brokeforge_packages::services::webserver::nginx::SERVICE_NAME as WEBSERVER;

// ---- servers ----

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct ServerForm {
    pub name: String,
    pub public_ip: String,
    pub ssh_port: String,
    pub root_key: String,
    pub host_key_fingerprint: String,
    pub trust_on_first_use: Option<String>,
    /// The team to add it to (empty: the personal team).
    pub team: Option<String>,
}

#[derive(Template)]
#[template(path = "server_new.html")]
pub struct NewServerPage {
    pub nav: Nav,
    pub form: ServerForm,
}

pub async fn new_server_form(PageUser(u): PageUser) -> Response {
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

pub async fn create_server(
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
            let new = NewServer {
                team: f.team.clone(),
                name: f.name.clone(),
                public_ip: f.public_ip.clone(),
                ssh_port: Some(port),
                host_key_fingerprint: Some(f.host_key_fingerprint.clone())
                    .filter(|s| !s.trim().is_empty()),
                root_key: Some(f.root_key.clone()).filter(|s| !s.trim().is_empty()),
                trust_on_first_use: f.trust_on_first_use.is_some(),
            };
            let base = if new.root_key.is_some() {
                // Onboarded over SSH with the user's key: no script is handed out.
                state
                    .base_url(&headers)
                    .ok_or_else(|| ApiError::invalid("host", "set BROKEFORGE_PUBLIC_URL"))
            } else {
                state.script_base_url(&headers).map(|b| b.url)
            };
            match base {
                Ok(base) => state
                    .domain
                    .add_server(&u.user, &base, &new)
                    .await
                    .map_err(ApiError::from),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(added) => {
            // Onboarded directly: no script to show.
            let script = if added.job.is_some() {
                String::new()
            } else {
                added.script
            };
            server_view(
                &state,
                &u,
                &added.server,
                "overview",
                script,
                None,
                SiteForm::default(),
            )
            .await
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

/// After a server form: to the overview, where the job it queued shows live; or its area again with the error.
pub async fn server_result(
    state: &AppState,
    u: &Authed,
    server: &Server,
    area: &'static str,
    result: Result<(), ApiError>,
) -> PageResult {
    match result {
        Ok(()) => Ok(see_other(format!("/servers/{}", server.id))),
        Err(e) => {
            server_view(
                state,
                u,
                server,
                area,
                String::new(),
                Some(&e),
                SiteForm::default(),
            )
            .await
        }
    }
}

/// The user's own server, or the "not found" page.
pub struct ServiceView {
    pub service_name: String,
    pub status: ServiceStatus,
    pub error: Option<String>,
    pub details: String,
    pub removable: bool,
    /// The package's removal options (all booleans today: dump first, delete data).
    pub remove_options: Vec<ParamView>,
}

pub struct ParamView {
    pub name: String,
    pub kind: String,
    pub description: String,
    pub default_text: String,
    pub default_bool: bool,
    pub allowed: Vec<String>,
}

pub fn param_view(p: &catalogue::Parameter) -> ParamView {
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

pub struct CatalogueView {
    pub name: String,
    /// "Install MariaDB": the install job's title.
    pub title: String,
    pub description: String,
    pub parameters: Vec<ParamView>,
    pub milestones_json: String,
    /// Why it cannot go on this server's OS (shown instead of the install button).
    pub unavailable: Option<String>,
}

pub struct SiteRow {
    pub id: i64,
    pub domain: String,
    /// What it runs: "PHP 8.2", "Laravel · PHP 8.2", "Node.js application · port 3000".
    pub runs: String,
    pub status: String,
}

/// What a site runs, for lists.
pub fn site_runs(site: &brokeforge_store::ServerSite) -> String {
    use brokeforge_packages::services::sites::config::{SiteConfig, SiteKind};
    let c = SiteConfig::of(site);
    let php = format!("PHP {}", site.php_version.as_deref().unwrap_or_default());
    match c.kind {
        SiteKind::Php => php,
        SiteKind::Laravel | SiteKind::Wordpress => format!("{} · {php}", c.kind.label()),
        SiteKind::Static => c.kind.label().to_string(),
        SiteKind::Node | SiteKind::Proxy => format!(
            "{} · port {}",
            c.kind.label(),
            c.proxy_port.map(|p| p.to_string()).unwrap_or_default()
        ),
    }
}

pub struct EventRow {
    pub when: String,
    pub what: String,
    pub step: String,
    pub status: String,
    pub error: String,
}

pub struct DbView {
    pub engine: String,
    pub schemas: Vec<String>,
    pub users: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct SiteForm {
    pub domain: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub proxy_port: String,
    pub spa_fallback: Option<String>,
    pub aliases: String,
    pub php_version: String,
    pub web_directory: String,
    pub default_site: Option<String>,
    /// Unchecked (the default): the site gets its own Linux user and PHP-FPM pool.
    pub shared_user: Option<String>,
}

#[derive(Template)]
#[template(path = "server.html")]
pub struct ServerPage {
    pub nav: Nav,
    pub server: Server,
    pub os: String,
    pub host_key: String,
    pub pending: bool,
    pub script: String,
    pub services: Vec<ServiceView>,
    pub cursor: i64,
    pub jobs: Vec<JobView>,
    pub catalogue: Vec<CatalogueView>,
    pub sites: Vec<SiteRow>,
    pub site_form: SiteForm,
    pub php_versions: Vec<String>,
    /// (value, label) of each site type.
    pub site_types: Vec<(&'static str, &'static str)>,
    pub db_engines: Vec<String>,
    pub databases: Vec<DbView>,
    pub events: Vec<EventRow>,
}

/// One area of a server's workspace (`SERVER_AREAS`); each reads only what it shows.
pub async fn server_view(
    state: &AppState,
    u: &Authed,
    server: &Server,
    area: &'static str,
    script: String,
    error: Option<&ApiError>,
    site_form: SiteForm,
) -> PageResult {
    let id = server.id;
    let shows = |areas: &[&str]| areas.contains(&area);
    // The cursor first: anything after it arrives live.
    let cursor = state.store.activity_head(id).await?;
    let services = if shows(&["overview", "services"]) {
        state.store.services(id).await?
    } else {
        Vec::new()
    };
    let mut jobs = Vec::new();
    let recent = match area {
        "overview" | "services" | "databases" => 8,
        "activity" => 30,
        _ => 0,
    };
    if recent > 0 {
        for job in state.store.recent_jobs(id, recent).await? {
            jobs.push(job_view(state, &job).await?);
        }
    }
    // Steps reported by the one-line script (no job): one box, after the jobs it started.
    let script_events = if recent > 0 {
        state.store.script_events(id).await?
    } else {
        Vec::new()
    };
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
    let php_versions = if shows(&["overview", "services", "sites"]) {
        state.domain.php_versions(server).await?
    } else {
        Vec::new()
    };
    let databases: Vec<DbView> = if shows(&["databases"]) {
        state.domain.database_engines(server).await?
    } else {
        Vec::new()
    }
    .into_iter()
    .map(|d| DbView {
        engine: d.engine,
        schemas: d.schemas,
        users: d.users,
    })
    .collect();
    let db_engines: Vec<String> = databases.iter().map(|d| d.engine.clone()).collect();
    let services = services
        .into_iter()
        .map(|s| ServiceView {
            details: if s.service_name == WEBSERVER {
                format!("PHP {}", php_versions.join(", "))
            } else {
                String::new()
            },
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
            title: brokeforge_packages::titles::job_title("", Some((e.name, true)), None),
            description: e.description.to_string(),
            milestones_json: serde_json::to_string(&e.install_milestones).unwrap_or_default(),
            parameters: e.parameters.iter().map(param_view).collect(),
            unavailable: server.os.as_deref().and_then(|os| (e.unavailable)(os)),
        })
        .collect();
    let sites = if shows(&["overview", "sites"]) {
        state.store.sites(id).await?
    } else {
        Vec::new()
    }
    .into_iter()
    .map(|s| SiteRow {
        id: s.id,
        runs: site_runs(&s),
        domain: s.domain,
        status: s.status.as_str().into(),
    })
    .collect();
    let events = if shows(&["activity"]) {
        state.store.recent_events(id, 30).await?
    } else {
        Vec::new()
    }
    .into_iter()
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
    let mut nav = Nav::server(u, server, area);
    if let Some(e) = error {
        nav = nav.with_error(e);
    }
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
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
            server: server.clone(),
            script,
            services,
            cursor,
            jobs,
            catalogue,
            sites,
            site_form,
            php_versions,
            site_types: brokeforge_packages::services::sites::config::SiteKind::ALL
                .iter()
                .map(|k| (k.as_str(), k.label()))
                .collect(),
            db_engines,
            databases,
            events,
        },
        status,
    ))
}

pub async fn server_page(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
) -> PageResult {
    server_view(
        &state,
        &u,
        &server,
        "overview",
        String::new(),
        None,
        SiteForm::default(),
    )
    .await
}

macro_rules! area_pages {
    ($($name:ident $area:literal;)+) => {$(
        pub async fn $name(
            State(state): State<AppState>,
            OwnedServer(u, server): OwnedServer,
        ) -> PageResult {
            server_view(&state, &u, &server, $area, String::new(), None, SiteForm::default()).await
        }
    )+};
}

area_pages! {
    sites_page "sites";
    databases_page "databases";
    services_page "services";
    activity_page "activity";
    settings_page "settings";
}

pub async fn server_script(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedServer(u, server): OwnedServer,
) -> PageResult {
    let base = state.script_base_url(&headers)?.url;
    let script = state.domain.new_script(&server, &base).await?;
    server_view(
        &state,
        &u,
        &server,
        "overview",
        script,
        None,
        SiteForm::default(),
    )
    .await
}

#[derive(Deserialize)]
pub struct PinForm {
    pub fingerprint: String,
}

pub async fn pin_host_key(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Form(f): Form<PinForm>,
) -> PageResult {
    let r = state
        .domain
        .pin_host_key(&server, &f.fingerprint)
        .await
        .map(|_| ())
        .map_err(ApiError::from);
    server_result(&state, &u, &server, "settings", r).await
}

#[derive(Deserialize)]
pub struct ForgetForm {
    #[serde(default)]
    pub remove_access: Option<String>,
}

pub async fn delete_server(
    State(state): State<AppState>,
    OwnedServer(_u, server): OwnedServer,
    Form(f): Form<ForgetForm>,
) -> PageResult {
    if f.remove_access.is_some() {
        let job = state.domain.remove_access_and_forget(&server).await?;
        return Ok(see_other(format!("/jobs/{}", job.id)));
    }
    state.domain.forget_server(&server).await?;
    Ok(see_other("/"))
}

/// Move the server into another of the caller's teams.
pub async fn move_server(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let team = f.get("team").cloned().unwrap_or_default();
    let server = state.domain.move_server(&u.user, &server, &team).await?;
    Ok(see_other(format!("/servers/{}", server.id)))
}

/// The install form without JavaScript: `package` plus `set.NAME` fields.
pub async fn install(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    headers: axum::http::HeaderMap,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let package = f.get("package").cloned().unwrap_or_default();
    let r = match state.install_settings(&headers, &package, set_fields(&f)) {
        Ok(settings) => state
            .domain
            .install(&server, &package, &settings)
            .await
            .map(|_| ())
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    server_result(&state, &u, &server, "services", r).await
}

pub async fn remove_service(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Path((_, name)): Path<(i64, String)>,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let settings = set_fields(&f);
    let r = state.domain.remove(&server, &name, &settings).await;
    server_result(
        &state,
        &u,
        &server,
        "services",
        r.map(|_| ()).map_err(ApiError::from),
    )
    .await
}

pub async fn create_site(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Form(f): Form<SiteForm>,
) -> PageResult {
    let proxy_port = match f.proxy_port.trim() {
        "" => None,
        p => match p.parse::<u16>() {
            Ok(p) => Some(p),
            Err(_) => {
                let e = brokeforge_core::ValidationError::new(
                    "proxy_port",
                    format!("`{p}` is not a port number"),
                );
                let e = ApiError::from(brokeforge_domain::DomainError::from(e));
                return server_view(&state, &u, &server, "sites", String::new(), Some(&e), f).await;
            }
        },
    };
    let req = SiteRequest {
        domain: f.domain.clone(),
        kind: Some(f.kind.clone()).filter(|k| !k.is_empty()),
        proxy_port,
        spa_fallback: f.spa_fallback.is_some(),
        aliases: f
            .aliases
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
        php_version: Some(f.php_version.clone()).filter(|v| !v.is_empty()),
        // Empty: the type's default (`public`, or the release itself for static files); `/`: the release.
        web_directory: Some(f.web_directory.clone()).filter(|d| !d.trim().is_empty()),
        default_site: f.default_site.is_some(),
        isolated: Some(f.shared_user.is_none()),
        pm: None,
        max_children: None,
    };
    match state.domain.create_site(&server, &req).await {
        Ok((site, _)) => Ok(see_other(format!("/sites/{}", site.id))),
        Err(e) => {
            let e = e.into();
            server_view(&state, &u, &server, "sites", String::new(), Some(&e), f).await
        }
    }
}

pub async fn create_schema(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let req: Result<database::sql::SchemaRequest, _> =
        serde_json::from_value(json!({"engine": f.get("engine"), "name": f.get("name")}));
    let result = match req {
        Ok(r) => state
            .domain
            .create_schema(&server, &r)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(ApiError::invalid("name", e.to_string())),
    };
    server_result(&state, &u, &server, "databases", result.map(|_| ())).await
}

pub async fn create_db_user(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
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
        Ok(r) => state
            .domain
            .create_database_user(
                &server,
                &r,
                &Secret::new(f.get("password").cloned().unwrap_or_default()),
            )
            .await
            .map_err(ApiError::from),
        Err(e) => Err(ApiError::invalid("user", e.to_string())),
    };
    server_result(&state, &u, &server, "databases", result.map(|_| ())).await
}

/// Drop a schema or a user (`kind` is `schemas` or `users`).
pub async fn drop_db_item(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Path((_, kind, engine, name)): Path<(i64, String, String, String)>,
) -> PageResult {
    let r = match kind.as_str() {
        "schemas" => state.domain.drop_schema(&server, &engine, &name).await,
        "users" => {
            state
                .domain
                .drop_database_user(&server, &engine, &name)
                .await
        }
        _ => return Err(PageError(ApiError::not_found(), Some(Box::new(u)))),
    };
    server_result(
        &state,
        &u,
        &server,
        "databases",
        r.map(|_| ()).map_err(ApiError::from),
    )
    .await
}
