//! PHP settings and extensions per installed version: read live from the server, changed through queued jobs.

use axum::Json;
use axum::extract::{Path, State};
use brokeforge_packages::services::webserver::php::{PhpExtensionsRequest, PhpSettingsRequest};

use super::common::{Accepted, Body, Queued, Typed};
use super::types::{ExtensionsBody, SettingsBody};
use super::types::{PhpModules, PhpSettingsView};
use crate::extract::OwnedServer;
use crate::state::AppState;

pub async fn settings(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, version)): Path<(i64, String)>,
) -> Typed<PhpSettingsView> {
    let s = state.domain.php_settings(&server, &version).await?;
    Ok(Json(PhpSettingsView {
        version: s.version,
        set: s.set,
        effective: s.effective,
    }))
}

pub async fn change_settings(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, version)): Path<(i64, String)>,
    Body(b): Body<SettingsBody>,
) -> Queued {
    let r = PhpSettingsRequest {
        version,
        set: b.set,
        unset: b.unset,
    };
    Ok(Accepted(state.domain.set_php_settings(&server, &r).await?))
}

pub async fn extensions(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, version)): Path<(i64, String)>,
) -> Typed<PhpModules> {
    let (version, modules) = state.domain.php_extensions(&server, &version).await?;
    Ok(Json(PhpModules { version, modules }))
}

pub async fn change_extensions(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, version)): Path<(i64, String)>,
    Body(b): Body<ExtensionsBody>,
) -> Queued {
    let r = PhpExtensionsRequest {
        version,
        add: b.add,
        remove: b.remove,
    };
    Ok(Accepted(
        state.domain.change_php_extensions(&server, &r).await?,
    ))
}
