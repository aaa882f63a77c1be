//! A server's logs page: pick a log (nginx, PHP-FPM, a unit's journal; the server's or a site's), read its
//! newest lines, or follow it live (app.js streams the API's answer into the page). Nothing is stored.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use brokeforge_domain::logs::LogRequest;
use brokeforge_store::Server;

use super::common::*;
use crate::error::ApiError;
use crate::extract::OwnedServer;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "logs.html")]
pub struct LogsPage {
    pub nav: Nav,
    pub server: Server,
    pub sites: Vec<String>,
    pub units: Vec<String>,
    pub kind: String,
    pub site: String,
    pub unit: String,
    pub lines: u32,
    /// What was read, when a log was asked for.
    pub text: Option<String>,
}

#[derive(serde::Deserialize, Default)]
pub struct LogForm {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub site: String,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub lines: String,
}

pub async fn logs_page(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Query(q): Query<LogForm>,
) -> PageResult {
    let sites = state
        .store
        .sites(server.id)
        .await
        .map_err(brokeforge_domain::DomainError::from)?
        .into_iter()
        .map(|s| s.domain)
        .collect();
    let units = state.domain.managed_units(&server).await?;
    let mut nav = Nav::server(&u, &server, "logs");
    let mut status = StatusCode::OK;
    let lines = q.lines.trim().parse().unwrap_or(200);
    let mut text = None;
    if !q.kind.is_empty() {
        let req = LogRequest {
            kind: q.kind.clone(),
            site: Some(q.site.clone()),
            unit: Some(q.unit.clone()).filter(|_| q.kind == "unit"),
            lines: Some(lines),
            ..Default::default()
        };
        match read_all(&state, &server, &req).await {
            Ok(t) => text = Some(t),
            Err(e) => {
                status = e.status;
                nav = nav.with_error(&e);
            }
        }
    }
    Ok(render(
        &LogsPage {
            nav,
            server,
            sites,
            units,
            kind: q.kind,
            site: q.site,
            unit: q.unit,
            lines,
            text,
        },
        status,
    ))
}

async fn read_all(state: &AppState, server: &Server, req: &LogRequest) -> Result<String, ApiError> {
    let (_, mut body) = state.domain.logs(server, req).await?;
    let mut all = Vec::new();
    while let Some(chunk) = body.recv().await {
        all.extend_from_slice(&chunk.map_err(|e| {
            ApiError::from(brokeforge_domain::DomainError::Remote {
                code: "command_failed",
                message: e.to_string(),
            })
        })?);
    }
    Ok(String::from_utf8_lossy(&all).into_owned())
}
