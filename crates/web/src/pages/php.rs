//! A server's PHP page: per installed version, its php.ini settings (what PHP reports now and what was set in
//! BrokeForge) with a form to set one, and the modules it loads with forms to add and remove extensions.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use brokeforge_packages::services::webserver::nginx::WebServerConfig;
use brokeforge_packages::services::webserver::php::{
    PhpExtensionsRequest, PhpSettingsRequest, setting_names,
};
use brokeforge_store::Server;
use serde::Deserialize;

use super::common::*;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::OwnedServer;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "php.html")]
pub struct PhpPage {
    pub nav: Nav,
    pub server: Server,
    pub versions: Vec<String>,
    /// The version shown; empty when no PHP is installed.
    pub version: String,
    /// (name, value PHP reports, value set in BrokeForge or empty).
    pub settings: Vec<(String, String, String)>,
    pub modules: Vec<String>,
    pub read_error: String,
    pub names: Vec<&'static str>,
}

#[derive(Deserialize, Default)]
pub struct VersionQuery {
    #[serde(default)]
    version: String,
}

async fn view(
    state: &AppState,
    u: &Authed,
    server: &Server,
    version: &str,
    error: Option<&ApiError>,
) -> PageResult {
    let config = WebServerConfig::current(&state.store, server.id)
        .await
        .map_err(ApiError::from)?;
    let version = if version.is_empty() {
        config.cli_default.clone().unwrap_or_default()
    } else {
        version.to_string()
    };
    let mut settings = Vec::new();
    let mut modules = Vec::new();
    let mut read_error = String::new();
    if config.php_versions.contains(&version) {
        match state.domain.php_settings(server, &version).await {
            Ok(s) => {
                settings = s
                    .effective
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.clone(),
                            s.set.get(k).cloned().unwrap_or_default(),
                        )
                    })
                    .collect();
                match state.domain.php_extensions(server, &version).await {
                    Ok((_, m)) => modules = m,
                    Err(e) => read_error = ApiError::from(e).message,
                }
            }
            Err(e) => read_error = ApiError::from(e).message,
        }
    }
    let (nav, status) = Nav::server(u, server, "php").with_result(error);
    Ok(render(
        &PhpPage {
            nav,
            server: server.clone(),
            versions: config.php_versions.clone(),
            version: if config.php_versions.contains(&version) {
                version
            } else {
                String::new()
            },
            settings,
            modules,
            read_error,
            names: setting_names(),
        },
        status,
    ))
}

pub async fn php_page(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Query(q): Query<VersionQuery>,
) -> PageResult {
    view(&state, &u, &server, q.version.trim(), None).await
}

/// One setting: a value sets it, an empty value puts the web server's default back.
pub async fn set_setting(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Path((_, version)): Path<(i64, String)>,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let name = f
        .get("name")
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let value = f
        .get("value")
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let mut r = PhpSettingsRequest {
        version: version.clone(),
        ..Default::default()
    };
    if value.is_empty() {
        r.unset.push(name);
    } else {
        r.set.insert(name, value);
    }
    match state.domain.set_php_settings(&server, &r).await {
        Ok(job) => Ok(see_other(format!("/jobs/{}", job.id))),
        Err(e) => view(&state, &u, &server, &version, Some(&e.into())).await,
    }
}

/// Extensions to add and remove (comma- or space-separated names).
pub async fn change_extensions(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Path((_, version)): Path<(i64, String)>,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let list = |k: &str| -> Vec<String> {
        f.get(k)
            .map(|v| {
                v.split([',', ' '])
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let r = PhpExtensionsRequest {
        version: version.clone(),
        add: list("add"),
        remove: list("remove"),
    };
    match state.domain.change_php_extensions(&server, &r).await {
        Ok(job) => Ok(see_other(format!("/jobs/{}", job.id))),
        Err(e) => view(&state, &u, &server, &version, Some(&e.into())).await,
    }
}
