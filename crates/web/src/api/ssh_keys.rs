//! Personal SSH keys: on the account, and put on servers.

use axum::Json;
use axum::extract::{Path, State};

use super::common::{Accepted, AcceptedWith, Body, Created, Queued, Typed};
use super::types::{
    JobsQueued, KeyPlacement, NewSshKey, ServerKeyEntry, ServerKeyList, SshKeyEntry, SshKeyList,
    SshKeyResponse,
};
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::OwnedServer;
use crate::state::AppState;

pub async fn list(State(state): State<AppState>, authed: Authed) -> Typed<SshKeyList> {
    let keys = state.domain.ssh_keys(&authed.user).await?;
    Ok(Json(SshKeyList {
        keys: keys
            .into_iter()
            .map(|(k, servers)| SshKeyEntry {
                id: k.id,
                name: k.name,
                public_key: k.public_key,
                fingerprint: k.fingerprint,
                created_at: k.created_at,
                servers,
            })
            .collect(),
    }))
}

pub async fn add(
    State(state): State<AppState>,
    authed: Authed,
    Body(b): Body<NewSshKey>,
) -> Result<Created<SshKeyResponse>, ApiError> {
    let key = state
        .domain
        .add_ssh_key(&authed.user, &b.name, &b.public_key)
        .await?;
    Ok(Created(SshKeyResponse { key }))
}

pub async fn remove(
    State(state): State<AppState>,
    authed: Authed,
    Path(key): Path<String>,
) -> Result<AcceptedWith<JobsQueued>, ApiError> {
    let jobs = state.domain.remove_ssh_key(&authed.user, &key).await?;
    Ok(AcceptedWith(JobsQueued { jobs }))
}

pub async fn on_server(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
) -> Typed<ServerKeyList> {
    let keys = state.domain.server_ssh_keys(&server).await?;
    Ok(Json(ServerKeyList {
        keys: keys
            .into_iter()
            .map(|(d, k)| ServerKeyEntry {
                key_id: d.key_id,
                user_id: d.user_id,
                unix_user: d.unix_user,
                status: d.status,
                name: k.as_ref().map(|k| k.name.clone()),
                fingerprint: k.map(|k| k.fingerprint),
            })
            .collect(),
    }))
}

pub async fn deploy(
    State(state): State<AppState>,
    OwnedServer(authed, server): OwnedServer,
    Body(b): Body<KeyPlacement>,
) -> Queued {
    let job = state
        .domain
        .deploy_ssh_key(&authed.user, &server, &b.key, &b.user)
        .await?;
    Ok(Accepted(job))
}

pub async fn undeploy(
    State(state): State<AppState>,
    OwnedServer(authed, server): OwnedServer,
    Path((_, key)): Path<(i64, String)>,
) -> Result<AcceptedWith<JobsQueued>, ApiError> {
    let jobs = state
        .domain
        .undeploy_ssh_key(&authed.user, &server, &key)
        .await?;
    Ok(AcceptedWith(JobsQueued { jobs }))
}
