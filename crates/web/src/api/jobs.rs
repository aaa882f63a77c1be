//! Jobs and deployments: how they ended, their output, cancel and retry.

use super::common::Typed;
use super::types::JobResponse;
use axum::Json;
use axum::extract::{Query, State};
use serde_json::json;

use super::common::{Accepted, ApiJson, PageQuery, Queued};
use crate::extract::{OwnedDeployment, OwnedJob};
use crate::state::AppState;

pub async fn show_job(OwnedJob(_, job): OwnedJob) -> Typed<JobResponse> {
    Ok(Json(JobResponse { job }))
}

pub async fn job_logs(
    State(state): State<AppState>,
    OwnedJob(_, job): OwnedJob,
    Query(q): Query<PageQuery>,
) -> ApiJson {
    let limit = q.limit()?;
    let logs = state
        .domain
        .job_logs_page(&job, q.after.unwrap_or(0), limit)
        .await?;
    let next = q.next_after(logs.len(), logs.last().map(|l| l.id), limit);
    Ok(Json(json!({"logs": logs, "next": next})))
}

pub async fn cancel_job(
    State(state): State<AppState>,
    OwnedJob(_, job): OwnedJob,
) -> Typed<JobResponse> {
    Ok(Json(JobResponse {
        job: state.domain.cancel_job(&job).await?,
    }))
}

pub async fn retry_job(State(state): State<AppState>, OwnedJob(_, job): OwnedJob) -> Queued {
    Ok(Accepted(state.domain.retry_job(&job).await?))
}

pub async fn show_deployment(
    State(state): State<AppState>,
    OwnedDeployment(_, d, _): OwnedDeployment,
) -> ApiJson {
    let log = state.domain.deployment_log(&d).await?;
    Ok(Json(
        json!({"deployment": d, "duration_ms": d.duration_ms(), "log": log}),
    ))
}
