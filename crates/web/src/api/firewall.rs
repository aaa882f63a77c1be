//! Firewall rules: read live from ufw on the server; added and removed through queued jobs.

use axum::Json;
use axum::extract::{Path, State};
use brokeforge_packages::services::server::firewall::{FirewallState, RuleSpec};

use super::common::{Accepted, Body, Queued, Typed};
use crate::extract::OwnedServer;
use crate::state::AppState;

pub async fn list(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
) -> Typed<FirewallState> {
    Ok(Json(state.domain.firewall(&server).await?))
}

pub async fn add(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Body(spec): Body<RuleSpec>,
) -> Queued {
    Ok(Accepted(
        state.domain.add_firewall_rule(&server, &spec).await?,
    ))
}

pub async fn remove(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, rule)): Path<(i64, String)>,
) -> Queued {
    Ok(Accepted(
        state.domain.remove_firewall_rule(&server, &rule).await?,
    ))
}
