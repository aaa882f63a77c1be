//! Backups: storages (the caller's), plans of a server, runs, snapshots, restores, drills, recovery kits.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::IntoResponse;
use brokeforge_domain::backups::{PlanRequest, StorageRequest};

use super::common::{Accepted, ApiResponse, Body, Created, Queued, Typed};
use super::types::RestoreBody;
use super::types::{
    DeletedName, PlanDetail, PlanList, PlanResponse, SnapshotList, StorageList, StorageResponse,
};
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::OwnedServer;
use crate::state::AppState;

pub async fn list_storages(State(state): State<AppState>, authed: Authed) -> Typed<StorageList> {
    Ok(Json(StorageList {
        storages: state.domain.backup_storages(&authed.user).await?,
    }))
}

pub async fn add_storage(
    State(state): State<AppState>,
    authed: Authed,
    Body(b): Body<StorageRequest>,
) -> Result<Created<StorageResponse>, ApiError> {
    let storage = state.domain.add_backup_storage(&authed.user, &b).await?;
    Ok(Created(StorageResponse { storage }))
}

pub async fn delete_storage(
    State(state): State<AppState>,
    authed: Authed,
    Path(name): Path<String>,
) -> Typed<DeletedName> {
    state
        .domain
        .delete_backup_storage(&authed.user, &name)
        .await?;
    Ok(Json(DeletedName { deleted: name }))
}

pub async fn check_storage(
    State(state): State<AppState>,
    OwnedServer(authed, server): OwnedServer,
    Path((_, name)): Path<(i64, String)>,
) -> Queued {
    Ok(Accepted(
        state
            .domain
            .check_backup_storage(&authed.user, &server, &name)
            .await?,
    ))
}

pub async fn list_plans(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
) -> Typed<PlanList> {
    Ok(Json(PlanList {
        plans: state.domain.backup_plans(&server).await?,
    }))
}

pub async fn create_plan(
    State(state): State<AppState>,
    OwnedServer(authed, server): OwnedServer,
    Body(b): Body<PlanRequest>,
) -> Result<Created<PlanResponse>, ApiError> {
    let plan = state
        .domain
        .create_backup_plan(&authed.user, &server, &b)
        .await?;
    Ok(Created(PlanResponse { plan }))
}

pub async fn show_plan(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, plan)): Path<(i64, String)>,
) -> Typed<PlanDetail> {
    let view = state.domain.backup_plan_view(&server, &plan).await?;
    let snapshots = state.domain.backup_snapshots(&server, &plan).await?;
    Ok(Json(PlanDetail {
        plan: view,
        snapshots,
    }))
}

pub async fn delete_plan(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, plan)): Path<(i64, String)>,
) -> Typed<DeletedName> {
    state.domain.delete_backup_plan(&server, &plan).await?;
    Ok(Json(DeletedName { deleted: plan }))
}

pub async fn run_plan(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, plan)): Path<(i64, String)>,
) -> Queued {
    Ok(Accepted(state.domain.run_backup_now(&server, &plan).await?))
}

pub async fn list_snapshots(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, plan)): Path<(i64, String)>,
) -> Typed<SnapshotList> {
    Ok(Json(SnapshotList {
        snapshots: state.domain.backup_snapshots(&server, &plan).await?,
    }))
}

pub async fn restore(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, plan)): Path<(i64, String)>,
    Body(b): Body<RestoreBody>,
) -> Queued {
    let job = state
        .domain
        .restore_backup(
            &server,
            &plan,
            &b.snapshot,
            b.into.as_deref(),
            b.confirm.as_deref(),
        )
        .await?;
    Ok(Accepted(job))
}

pub async fn verify(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, plan)): Path<(i64, String)>,
) -> Queued {
    Ok(Accepted(
        state.domain.verify_backup_now(&server, &plan).await?,
    ))
}

/// A snapshot's bytes, streamed from the server as they come (a dump, an RDB file, or a tar of a site's
/// files).
pub async fn download(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, plan, snapshot)): Path<(i64, String, String)>,
) -> ApiResponse {
    let (name, body) = state
        .domain
        .download_backup(&server, &plan, &snapshot)
        .await?;
    Ok((
        [
            (CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (CACHE_CONTROL, "no-store".to_string()),
        ],
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(body)),
    )
        .into_response())
}

pub async fn recovery_kit(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, plan)): Path<(i64, String)>,
) -> ApiResponse {
    let kit = state.domain.backup_recovery_kit(&server, &plan).await?;
    Ok((
        [
            (CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
            (
                CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"brokeforge-recovery-{}-{plan}.txt\"",
                    server.name
                ),
            ),
            (CACHE_CONTROL, "no-store".to_string()),
        ],
        kit,
    )
        .into_response())
}
