//! A site's forms (its pages are in `site_view`): repository, deployments, HTTPS, background work, settings, .env, commands.

use axum::extract::{Form, State};
use axum::http::HeaderMap;
use brokeforge_packages::services::sites::certificate;
use brokeforge_packages::services::sites::repository::RepositoryRequest;
use brokeforge_store::{Server, ServerSite};
use serde::Deserialize;

use super::common::*;
pub use super::site_view::*;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::OwnedSite;
use crate::state::AppState;
use brokeforge_domain::sites::SiteSettings;

// ---- sites ----

/// After a site form: to its area's page (the job it queued shows live there), or the area again with the error.
pub async fn site_result(
    state: &AppState,
    u: &Authed,
    headers: &HeaderMap,
    (site, server): (&ServerSite, &Server),
    area: &'static str,
    result: Result<(), ApiError>,
) -> PageResult {
    match result {
        Ok(()) => Ok(see_other(site_area_url(site, area))),
        Err(e) => {
            site_view(
                state,
                u,
                headers,
                (site, server),
                SiteView {
                    area,
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
pub struct KeepForm {
    pub keep_files: Option<String>,
}

pub async fn remove_site(
    State(state): State<AppState>,
    OwnedSite(u, site, server): OwnedSite,
    Form(f): Form<KeepForm>,
) -> PageResult {
    state
        .domain
        .remove_site(&site, f.keep_files.is_some())
        .await
        .map_err(|e| PageError::with_user(e.into(), &u))?;
    Ok(see_other(format!("/servers/{}", server.id)))
}

pub async fn connect_repository(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(u, site, server): OwnedSite,
    Form(f): Form<RepositoryRequest>,
) -> PageResult {
    let r = state
        .domain
        .connect_repository(&site, &f, true)
        .await
        .map(|_| ())
        .map_err(ApiError::from);
    site_result(&state, &u, &headers, (&site, &server), "overview", r).await
}

pub async fn request_certificate(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(u, site, server): OwnedSite,
    Form(f): Form<certificate::CertificateRequest>,
) -> PageResult {
    let r = state
        .domain
        .request_certificate(&site, &f)
        .await
        .map(|_| ())
        .map_err(ApiError::from);
    site_result(&state, &u, &headers, (&site, &server), "https", r).await
}

pub async fn remove_certificate(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(u, site, server): OwnedSite,
) -> PageResult {
    let r = state
        .domain
        .remove_certificate(&site)
        .await
        .map(|_| ())
        .map_err(ApiError::from);
    site_result(&state, &u, &headers, (&site, &server), "https", r).await
}

pub async fn deploy(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(u, site, server): OwnedSite,
) -> PageResult {
    let r = state
        .domain
        .deploy(&site, None, &format!("user:{}", u.user.email))
        .await
        .map(|_| ())
        .map_err(ApiError::from);
    site_result(&state, &u, &headers, (&site, &server), "deployments", r).await
}

#[derive(Deserialize)]
pub struct RollbackForm {
    pub release: String,
}

pub async fn rollback(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(u, site, server): OwnedSite,
    Form(f): Form<RollbackForm>,
) -> PageResult {
    let r = state
        .domain
        .rollback(&site, &f.release, &format!("user:{}", u.user.email))
        .await
        .map(|_| ())
        .map_err(ApiError::from);
    site_result(&state, &u, &headers, (&site, &server), "deployments", r).await
}

#[derive(Deserialize)]
pub struct ScriptForm {
    pub script: String,
}

pub async fn save_script(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(u, site, server): OwnedSite,
    Form(f): Form<ScriptForm>,
) -> PageResult {
    let r = state
        .domain
        .save_deploy_script(&site, &f.script)
        .await
        .map_err(ApiError::from);
    site_result(&state, &u, &headers, (&site, &server), "deployments", r).await
}

#[derive(Deserialize)]
pub struct SettingsForm {
    pub keep_releases: String,
    pub deploy_timeout_secs: String,
    pub shared_paths: String,
}

pub async fn save_settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(u, site, server): OwnedSite,
    Form(f): Form<SettingsForm>,
) -> PageResult {
    let parsed = (|| -> Result<SiteSettings, ApiError> {
        Ok(SiteSettings {
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
        Ok(s) => state
            .domain
            .save_site_settings(&site, &s)
            .await
            .map(|_| ())
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    site_result(&state, &u, &headers, (&site, &server), "deployments", r).await
}

#[derive(Deserialize)]
pub struct PhpForm {
    pub version: String,
}

pub async fn change_php(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(u, site, server): OwnedSite,
    Form(f): Form<PhpForm>,
) -> PageResult {
    let r = state
        .domain
        .set_site_php_version(&site, &f.version)
        .await
        .map(|_| ())
        .map_err(ApiError::from);
    site_result(&state, &u, &headers, (&site, &server), "environment", r).await
}

#[derive(Deserialize)]
pub struct PoolForm {
    pub pm: String,
    pub max_children: String,
}

pub async fn change_pool(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(u, site, server): OwnedSite,
    Form(f): Form<PoolForm>,
) -> PageResult {
    let r = match f.max_children.trim().parse::<u32>() {
        Ok(n) => state
            .domain
            .set_site_pool(&site, Some(&f.pm), Some(n))
            .await
            .map(|_| ())
            .map_err(ApiError::from),
        Err(_) => Err(ApiError::from(brokeforge_domain::DomainError::from(
            brokeforge_core::ValidationError::new(
                "max_children",
                format!("`{}` is not a number of workers", f.max_children.trim()),
            ),
        ))),
    };
    site_result(&state, &u, &headers, (&site, &server), "environment", r).await
}

/// Set the site's health check from the page's form.
pub async fn save_check(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(u, site, server): OwnedSite,
    Form(f): Form<std::collections::BTreeMap<String, String>>,
) -> PageResult {
    let number = |field: &'static str| -> Result<Option<i64>, ApiError> {
        match f.get(field).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::invalid(field, "give a whole number")),
        }
    };
    let r = async {
        let defaults = brokeforge_domain::monitoring::CheckSpec::default();
        let spec = brokeforge_domain::monitoring::CheckSpec {
            path: f.get("path").cloned().unwrap_or(defaults.path),
            expect: number("expect")?.unwrap_or(defaults.expect),
            interval_seconds: number("interval_seconds")?.unwrap_or(defaults.interval_seconds),
            timeout_seconds: number("timeout_seconds")?.unwrap_or(defaults.timeout_seconds),
            https: f.get("https").is_some_and(|v| v == "true"),
            after_deploy: f
                .get("after_deploy")
                .cloned()
                .unwrap_or(defaults.after_deploy),
        };
        state
            .domain
            .put_site_check(&site, &spec)
            .await
            .map(|_| ())
            .map_err(ApiError::from)
    }
    .await;
    site_result(&state, &u, &headers, (&site, &server), "health", r).await
}

/// Stop checking the site.
pub async fn remove_check(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(u, site, server): OwnedSite,
) -> PageResult {
    let r = state
        .domain
        .remove_site_check(&site)
        .await
        .map_err(ApiError::from);
    site_result(&state, &u, &headers, (&site, &server), "health", r).await
}
