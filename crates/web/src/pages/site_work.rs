//! The site page's forms for the work a site does: its scheduled commands and daemons (with Laravel's
//! presets), its `.env`, commands run in it, and who calls its deploy webhook.

use axum::extract::{Form, State};
use axum::http::HeaderMap;
use brokeforge_core::Secret;
use brokeforge_packages::services::sites::schedule::SiteTasks;
use serde::Deserialize;

use super::common::*;
use super::site_view::{SiteView, site_area_url, site_view};
use super::sites::{TasksForm, site_result};
use crate::error::ApiError;
use crate::extract::OwnedSite;
use crate::state::AppState;

pub async fn save_tasks(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(u, site, server): OwnedSite,
    Form(f): Form<TasksForm>,
) -> PageResult {
    let r = match SiteTasks::parse(&f.schedules, &f.daemons) {
        Ok(t) => state.domain.set_tasks(&site, &t).await,
        Err(e) => Err(e.into()),
    };
    match r {
        Ok(_) => Ok(see_other(site_area_url(&site, "tasks"))),
        Err(e) => {
            let e = ApiError::from(e);
            let view = SiteView {
                area: "tasks",
                error: Some(&e),
                tasks_draft: Some(&f),
                ..Default::default()
            };
            site_view(&state, &u, &headers, (&site, &server), view).await
        }
    }
}

#[derive(Deserialize)]
pub struct EnvForm {
    pub env: String,
}

pub async fn save_env(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(u, site, server): OwnedSite,
    Form(f): Form<EnvForm>,
) -> PageResult {
    let r = state
        .domain
        .write_env(&site, &Secret::new(f.env.replace("\r\n", "\n")))
        .await;
    match r {
        Ok(_) => {
            site_view(
                &state,
                &u,
                &headers,
                (&site, &server),
                SiteView {
                    area: "environment",
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
                (&site, &server),
                SiteView {
                    area: "environment",
                    error: Some(&e),
                    ..Default::default()
                },
            )
            .await
        }
    }
}

#[derive(Deserialize)]
pub struct CommandForm {
    pub command: String,
}

pub async fn run_command(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(u, site, server): OwnedSite,
    Form(f): Form<CommandForm>,
) -> PageResult {
    let r = state
        .domain
        .queue_command(&site, &f.command, None)
        .await
        .map(|_| ())
        .map_err(ApiError::from);
    site_result(&state, &u, &headers, (&site, &server), "commands", r).await
}

#[derive(Deserialize)]
pub struct WebhookForm {
    pub provider: String,
}

pub async fn save_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(u, site, server): OwnedSite,
    Form(f): Form<WebhookForm>,
) -> PageResult {
    let r = state
        .domain
        .set_webhook_provider(&site, &f.provider)
        .await
        .map(|_| ())
        .map_err(ApiError::from);
    site_result(&state, &u, &headers, (&site, &server), "deployments", r).await
}
