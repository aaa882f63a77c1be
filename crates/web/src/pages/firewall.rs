//! A server's firewall page: the rules ufw has now (read live from the server), a form to add one, and a
//! remove button on the rules BrokeForge will remove.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Form, Path, State};
use brokeforge_packages::services::server::firewall::{FirewallRule, RuleSpec};
use brokeforge_store::Server;

use super::common::*;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::OwnedServer;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "firewall.html")]
pub struct FirewallPage {
    pub nav: Nav,
    pub server: Server,
    /// `None` when the server could not be read (the reason is in `read_error`).
    pub active: Option<bool>,
    pub rules: Vec<FirewallRule>,
    pub read_error: String,
    pub form: BTreeMap<String, String>,
}

impl FirewallPage {
    /// What the user typed into field `k` (kept after an error).
    pub fn field(&self, k: &str) -> &str {
        self.form.get(k).map(String::as_str).unwrap_or_default()
    }
}

async fn view(
    state: &AppState,
    u: &Authed,
    server: &Server,
    error: Option<&ApiError>,
    form: BTreeMap<String, String>,
) -> PageResult {
    let (active, rules, read_error) = match state.domain.firewall(server).await {
        Ok(fw) => (Some(fw.active), fw.rules, String::new()),
        Err(e) => (None, Vec::new(), ApiError::from(e).message),
    };
    let (nav, status) = Nav::server(u, server, "firewall").with_result(error);
    Ok(render(
        &FirewallPage {
            nav,
            server: server.clone(),
            active,
            rules,
            read_error,
            form,
        },
        status,
    ))
}

pub async fn firewall_page(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
) -> PageResult {
    view(&state, &u, &server, None, BTreeMap::new()).await
}

pub async fn add_rule(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let text = |k: &str| f.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let spec = RuleSpec {
        name: text("name"),
        action: text("action"),
        protocol: text("protocol"),
        port: text("port"),
        source: text("source"),
    };
    match state.domain.add_firewall_rule(&server, &spec).await {
        Ok(job) => Ok(see_other(format!("/jobs/{}", job.id))),
        Err(e) => {
            let mut kept = f.clone();
            kept.remove("_csrf");
            view(&state, &u, &server, Some(&e.into()), kept).await
        }
    }
}

pub async fn remove_rule(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Path((_, rule)): Path<(i64, String)>,
) -> PageResult {
    match state.domain.remove_firewall_rule(&server, &rule).await {
        Ok(job) => Ok(see_other(format!("/jobs/{}", job.id))),
        Err(e) => view(&state, &u, &server, Some(&e.into()), BTreeMap::new()).await,
    }
}
