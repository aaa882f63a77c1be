//! Drift: queue a check, read the newest report, repair (plan first), mark items managed by hand.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::common::{Accepted, ApiJson, ApiResponse, Body, Queued};
use crate::extract::OwnedServer;
use crate::state::AppState;

pub async fn check(State(state): State<AppState>, OwnedServer(_, server): OwnedServer) -> Queued {
    Ok(Accepted(state.domain.check_drift(&server).await?))
}

pub async fn report(State(state): State<AppState>, OwnedServer(_, server): OwnedServer) -> ApiJson {
    Ok(Json(match state.domain.drift_report(&server).await? {
        Some(view) => json!(view),
        None => json!({"job_id": null, "items": [], "summary": null}),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairBody {
    /// Show what would be queued and queue nothing.
    #[serde(default)]
    plan: bool,
}

pub async fn repair(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Body(b): Body<RepairBody>,
) -> ApiResponse {
    let plan = state.domain.repair_drift(&server, !b.plan).await?;
    let status = if b.plan || plan.steps.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::ACCEPTED
    };
    Ok((status, Json(json!(plan))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByHandBody {
    item: String,
    by_hand: bool,
}

pub async fn by_hand(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Body(b): Body<ByHandBody>,
) -> ApiJson {
    state
        .domain
        .set_drift_by_hand(&server, &b.item, b.by_hand)
        .await?;
    Ok(Json(json!({"item": b.item.trim(), "by_hand": b.by_hand})))
}
