//! Servers: adding and forgetting them, their script and host key, the catalogue and its packages, events.

use super::common::Typed;
use super::types::{
    AddedServer, Catalogue, CatalogueEntry, CatalogueQuery, EventList, Forgotten, JobList,
    MoveBody, PackagePlan, ScriptResponse, ServerDetail, ServerEntry, ServerList, ServerResponse,
    ServersQuery, ServiceList,
};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use brokeforge_core::ProvisionType;
use brokeforge_domain::servers::NewServer;
use brokeforge_packages::catalogue;
use serde::Deserialize;
use serde_json::Value;

use super::common::{Accepted, ApiResponse, Body, NewerQuery, OlderQuery, Page, Queued};
use super::types::{InstallBody, PinBody};
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::OwnedServer;
use crate::state::AppState;

/// The base URL servers reach BrokeForge at, or a clear error when it cannot be told.
pub fn base_url(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    state
        .base_url(headers)
        .ok_or_else(|| ApiError::invalid("host", "set BROKEFORGE_PUBLIC_URL"))
}

pub async fn list_catalogue(
    State(state): State<AppState>,
    authed: Authed,
    Query(q): Query<CatalogueQuery>,
) -> Typed<Catalogue> {
    // The server's OS, when one of the caller's servers is named: packages it cannot take say why.
    let os = match q.server {
        Some(id) => state
            .domain
            .owned_server(&authed.user, id, brokeforge_domain::policy::Action::Read)
            .await?
            .os
            .unwrap_or_default(),
        None => String::new(),
    };
    let packages = catalogue::catalogue()
        .into_iter()
        .map(|package| CatalogueEntry {
            unavailable: Some(os.as_str())
                .filter(|os| !os.is_empty())
                .and_then(package.unavailable),
            package,
        })
        .collect();
    Ok(Json(Catalogue { packages }))
}

pub async fn list_servers(
    State(state): State<AppState>,
    authed: Authed,
    Query(q): Query<ServersQuery>,
) -> Typed<ServerList> {
    let page = Page::of(q.cursor.as_deref(), q.limit)?;
    let servers = state
        .domain
        .servers_page(
            &authed.user,
            page.cursor.unwrap_or(0),
            page.limit,
            &brokeforge_store::ServerFilter {
                name: q.name.as_deref(),
                search: q.search.as_deref(),
                team: q.team,
            },
        )
        .await?;
    let next_cursor = page.next_cursor(servers.len(), servers.last().map(|(s, _)| s.id));
    let servers = servers
        .into_iter()
        .map(|(server, services)| ServerEntry { server, services })
        .collect();
    Ok(Json(ServerList {
        servers,
        next_cursor,
    }))
}

pub async fn create_server(
    State(state): State<AppState>,
    authed: Authed,
    headers: HeaderMap,
    Body(b): Body<NewServer>,
) -> ApiResponse {
    let base = if b.root_key.is_some() {
        // Onboarded over SSH with the user's key: no script is handed out.
        base_url(&state, &headers)?
    } else {
        state.script_base_url(&headers)?.url
    };
    let added = state.domain.add_server(&authed.user, &base, &b).await?;
    Ok((
        StatusCode::CREATED,
        Json(AddedServer {
            server: added.server,
            script: added.script,
            job: added.job,
        }),
    )
        .into_response())
}

pub async fn show_server(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
) -> Typed<ServerDetail> {
    let services = state.domain.services(&server).await?;
    let sites = state.domain.sites(&server).await?;
    Ok(Json(ServerDetail {
        server,
        services,
        sites,
    }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ForgetQuery {
    remove_access: bool,
}

/// Forget a server; with `?remove_access=true`, first take BrokeForge's keys off it (a queued job that
/// forgets the server when it is done).
pub async fn delete_server(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Query(q): Query<ForgetQuery>,
) -> ApiResponse {
    if q.remove_access {
        let job = state.domain.remove_access_and_forget(&server).await?;
        return Ok(Accepted(job).into_response());
    }
    state.domain.forget_server(&server).await?;
    Ok(axum::response::IntoResponse::into_response(Json(
        Forgotten {
            ok: true,
            note: "BrokeForge forgot the server; nothing on it was changed".into(),
        },
    )))
}

/// A fresh one-line script (the previous link stops working).
pub async fn server_script(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedServer(_, server): OwnedServer,
) -> Typed<ScriptResponse> {
    let base = state.script_base_url(&headers)?.url;
    let script = state.domain.new_script(&server, &base).await?;
    Ok(Json(ScriptResponse { script }))
}

pub async fn pin_host_key(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Body(b): Body<PinBody>,
) -> Typed<ServerResponse> {
    let server = state.domain.pin_host_key(&server, &b.fingerprint).await?;
    Ok(Json(ServerResponse { server }))
}

/// Move a server into another of the caller's teams.
pub async fn move_server(
    State(state): State<AppState>,
    OwnedServer(authed, server): OwnedServer,
    Body(b): Body<MoveBody>,
) -> Typed<ServerResponse> {
    let server = state
        .domain
        .move_server(&authed.user, &server, &b.team)
        .await?;
    Ok(Json(ServerResponse { server }))
}

pub async fn list_services(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
) -> Typed<ServiceList> {
    Ok(Json(ServiceList {
        services: state.domain.services(&server).await?,
    }))
}

/// JSON settings as the catalogue reads them (it types them against the package's parameters).
fn settings_text(settings: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
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

pub async fn install_service(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    headers: axum::http::HeaderMap,
    Body(b): Body<InstallBody>,
) -> Queued {
    let settings = state.install_settings(&headers, &b.package, settings_text(&b.settings))?;
    let job = state.domain.install(&server, &b.package, &settings).await?;
    Ok(Accepted(job))
}

pub async fn remove_service(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, name)): Path<(i64, String)>,
    Query(settings): Query<BTreeMap<String, String>>,
) -> Queued {
    let job = state.domain.remove(&server, &name, &settings).await?;
    Ok(Accepted(job))
}

/// What a package would run, without running it (secrets masked).
pub async fn plan_service(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, package)): Path<(i64, String)>,
    headers: axum::http::HeaderMap,
    Body(b): Body<BTreeMap<String, Value>>,
) -> Typed<PackagePlan> {
    // The same settings an install would get (report_to filled), so the preview is what would run.
    let settings = state.install_settings(&headers, &package, settings_text(&b))?;
    let plan = state
        .domain
        .plan(&server, &package, &settings, ProvisionType::Install)
        .await?;
    Ok(Json(PackagePlan { package, plan }))
}

pub async fn list_events(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Query(q): Query<NewerQuery>,
) -> Typed<EventList> {
    let page = q.page()?;
    let events = state
        .domain
        .events_page(&server, page.cursor.unwrap_or(0), page.limit)
        .await?;
    let next_cursor = page.next_cursor(events.len(), events.last().map(|e| e.id));
    Ok(Json(EventList {
        events,
        next_cursor,
    }))
}

pub async fn list_jobs(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Query(q): Query<OlderQuery>,
) -> Typed<JobList> {
    let page = q.page()?;
    let jobs = state
        .domain
        .jobs_page(&server, page.cursor, page.limit)
        .await?;
    let next_cursor = page.next_cursor(jobs.len(), jobs.last().map(|j| j.id));
    Ok(Json(JobList { jobs, next_cursor }))
}
