//! A server's drift page: the newest check's items (state, what, diff), a button to check again, the repair
//! plan (what repair will queue and what it leaves, shown before anything is queued) and the "managed by
//! hand" marks.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Form, State};
use brokeforge_domain::drift::{DriftView, RepairPlan};
use brokeforge_store::Server;

use super::common::*;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::OwnedServer;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "drift.html")]
pub struct DriftPage {
    pub nav: Nav,
    pub server: Server,
    /// `None` before the first check.
    pub view: Option<DriftView>,
    pub checked: String,
    /// What repair would do now (`None` without a report).
    pub plan: Option<RepairPlan>,
}

impl DriftPage {
    /// The items that are not ok (the ones to look at).
    pub fn drifted(&self) -> Vec<&brokeforge_packages::services::server::drift::DriftItem> {
        let Some(v) = &self.view else {
            return Vec::new();
        };
        v.report
            .items
            .iter()
            .filter(|i| i.state.as_str() != "ok")
            .collect()
    }

    /// The items that are as BrokeForge left them.
    pub fn ok_items(&self) -> Vec<&brokeforge_packages::services::server::drift::DriftItem> {
        let Some(v) = &self.view else {
            return Vec::new();
        };
        v.report
            .items
            .iter()
            .filter(|i| i.state.as_str() == "ok")
            .collect()
    }
}

async fn view(
    state: &AppState,
    u: &Authed,
    server: &Server,
    error: Option<&ApiError>,
    notice: String,
) -> PageResult {
    let view = state.domain.drift_report(server).await?;
    let plan = match &view {
        Some(_) => Some(state.domain.repair_drift(server, false).await?),
        None => None,
    };
    let (mut nav, status) = Nav::server(u, server, "drift").with_result(error);
    nav.notice = notice;
    Ok(render(
        &DriftPage {
            nav,
            server: server.clone(),
            checked: view
                .as_ref()
                .and_then(|v| v.checked_at)
                .map(ago)
                .unwrap_or_default(),
            view,
            plan,
        },
        status,
    ))
}

pub async fn drift_page(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
) -> PageResult {
    view(&state, &u, &server, None, String::new()).await
}

/// Queue a check; its job page shows it live.
pub async fn check(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
) -> PageResult {
    match state.domain.check_drift(&server).await {
        Ok(job) => Ok(see_other(format!("/jobs/{}", job.id))),
        Err(e) => view(&state, &u, &server, Some(&e.into()), String::new()).await,
    }
}

/// Queue the repair the page showed; the page again, naming the queued jobs.
pub async fn repair(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
) -> PageResult {
    match state.domain.repair_drift(&server, true).await {
        Ok(plan) if plan.steps.is_empty() => {
            let notice = "Nothing to repair: check again to see the server as it is now.".into();
            view(&state, &u, &server, None, notice).await
        }
        Ok(plan) => {
            let queued: Vec<String> = plan
                .steps
                .iter()
                .map(|s| format!("{} (job {})", s.title, s.job_id.unwrap_or_default()))
                .collect();
            let notice = format!(
                "Queued: {}. Check again once they are done.",
                queued.join("; ")
            );
            view(&state, &u, &server, None, notice).await
        }
        Err(e) => view(&state, &u, &server, Some(&e.into()), String::new()).await,
    }
}

/// Mark an item managed by hand (`by_hand=1`) or take the mark away.
pub async fn by_hand(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let item = f.get("item").cloned().unwrap_or_default();
    let on = f.get("by_hand").is_some_and(|v| v == "1");
    match state.domain.set_drift_by_hand(&server, &item, on).await {
        Ok(()) => Ok(see_other(format!("/servers/{}/drift", server.id))),
        Err(e) => view(&state, &u, &server, Some(&e.into()), String::new()).await,
    }
}
