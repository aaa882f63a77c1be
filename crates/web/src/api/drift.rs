//! Drift: queue a check, read the newest report, repair (plan first), mark items managed by hand.

use axum::Json;
use axum::extract::State;
use brokeforge_domain::drift::RepairPlan;

use super::common::{Accepted, Body, Queued, Typed};
use super::types::{ByHandBody, DriftAnswer, RepairBody};
use crate::error::ApiError;
use crate::extract::OwnedServer;
use crate::state::AppState;

pub async fn check(State(state): State<AppState>, OwnedServer(_, server): OwnedServer) -> Queued {
    Ok(Accepted(state.domain.check_drift(&server).await?))
}

pub async fn report(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
) -> Typed<DriftAnswer> {
    Ok(Json(match state.domain.drift_report(&server).await? {
        Some(view) => DriftAnswer::Report(view),
        None => DriftAnswer::None {
            job_id: None,
            items: Vec::new(),
            summary: None,
        },
    }))
}

pub async fn repair(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Body(b): Body<RepairBody>,
) -> Result<(axum::http::StatusCode, Json<RepairPlan>), ApiError> {
    let plan = state.domain.repair_drift(&server, !b.plan).await?;
    let status = if b.plan || plan.steps.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::ACCEPTED
    };
    Ok((status, Json(plan)))
}

pub async fn by_hand(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Body(b): Body<ByHandBody>,
) -> Typed<ByHandBody> {
    state
        .domain
        .set_drift_by_hand(&server, &b.item, b.by_hand)
        .await?;
    Ok(Json(ByHandBody {
        item: b.item.trim().to_string(),
        by_hand: b.by_hand,
    }))
}
