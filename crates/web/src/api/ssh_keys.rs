//! Personal SSH keys: on the account, and put on servers.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::json;

use super::common::{ApiJson, ApiResponse, Body, accepted_with, created};
use crate::auth::Authed;
use crate::extract::OwnedServer;
use crate::state::AppState;

pub async fn list(State(state): State<AppState>, authed: Authed) -> ApiJson {
    let keys = state.domain.ssh_keys(&authed.user).await?;
    Ok(Json(json!({
        "keys": keys.iter().map(|(k, on)| json!({
            "id": k.id, "name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint,
            "created_at": k.created_at, "servers": on,
        })).collect::<Vec<_>>()
    })))
}

#[derive(Deserialize)]
pub struct NewKey {
    pub name: String,
    pub public_key: String,
}

pub async fn add(
    State(state): State<AppState>,
    authed: Authed,
    Body(b): Body<NewKey>,
) -> ApiResponse {
    let k = state
        .domain
        .add_ssh_key(&authed.user, &b.name, &b.public_key)
        .await?;
    Ok(created(json!({"key": k})))
}

pub async fn remove(
    State(state): State<AppState>,
    authed: Authed,
    Path(key): Path<String>,
) -> ApiResponse {
    let jobs = state.domain.remove_ssh_key(&authed.user, &key).await?;
    Ok(accepted_with(json!({"jobs": jobs})))
}

pub async fn on_server(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
) -> ApiJson {
    let keys = state.domain.server_ssh_keys(&server).await?;
    Ok(Json(json!({
        "keys": keys.iter().map(|(d, k)| json!({
            "key_id": d.key_id, "user_id": d.user_id, "unix_user": d.unix_user, "status": d.status,
            "name": k.as_ref().map(|k| k.name.clone()), "fingerprint": k.as_ref().map(|k| k.fingerprint.clone()),
        })).collect::<Vec<_>>()
    })))
}

#[derive(Deserialize)]
pub struct DeployKey {
    /// The key's id, name or fingerprint.
    pub key: String,
    #[serde(default = "default_user")]
    pub user: String,
}

fn default_user() -> String {
    "brokeforge".into()
}

pub async fn deploy(
    State(state): State<AppState>,
    OwnedServer(authed, server): OwnedServer,
    Body(b): Body<DeployKey>,
) -> ApiResponse {
    let job = state
        .domain
        .deploy_ssh_key(&authed.user, &server, &b.key, &b.user)
        .await?;
    Ok(super::common::accepted(&job))
}

pub async fn undeploy(
    State(state): State<AppState>,
    OwnedServer(authed, server): OwnedServer,
    Path((_, key)): Path<(i64, String)>,
) -> ApiResponse {
    let jobs = state
        .domain
        .undeploy_ssh_key(&authed.user, &server, &key)
        .await?;
    Ok(accepted_with(json!({"jobs": jobs})))
}
