//! Jobs and deployments: how they ended, their output, cancel and retry.

use axum::Json;
use axum::extract::{Query, State};

use super::common::{Accepted, NewerQuery, Queued, Typed};
use super::types::{DeploymentDetail, JobLogs, JobResponse};
use crate::extract::{OwnedDeployment, OwnedJob};
use crate::state::AppState;

pub async fn show_job(OwnedJob(_, job): OwnedJob) -> Typed<JobResponse> {
    Ok(Json(JobResponse { job }))
}

pub async fn job_logs(
    State(state): State<AppState>,
    OwnedJob(_, job): OwnedJob,
    Query(q): Query<NewerQuery>,
) -> Typed<JobLogs> {
    let page = q.page()?;
    let logs = state
        .domain
        .job_logs_page(&job, page.cursor.unwrap_or(0), page.limit)
        .await?;
    let next_cursor = page.next_cursor(logs.len(), logs.last().map(|l| l.id));
    Ok(Json(JobLogs { logs, next_cursor }))
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
) -> Typed<DeploymentDetail> {
    let log = state.domain.deployment_log(&d).await?;
    Ok(Json(DeploymentDetail {
        duration_ms: d.duration_ms(),
        deployment: d,
        log,
    }))
}
