//! Database schemas and users on a server.

use axum::extract::{Path, State};
use brokeforge_core::Secret;
use brokeforge_packages::services::database::sql::SchemaRequest;

use super::common::{Accepted, Body, Queued};
use super::types::DbUserBody;
use crate::extract::OwnedServer;
use crate::state::AppState;

pub async fn create_schema(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Body(b): Body<SchemaRequest>,
) -> Queued {
    Ok(Accepted(state.domain.create_schema(&server, &b).await?))
}

pub async fn drop_schema(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, engine, name)): Path<(i64, String, String)>,
) -> Queued {
    Ok(Accepted(
        state.domain.drop_schema(&server, &engine, &name).await?,
    ))
}

pub async fn create_db_user(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Body(b): Body<DbUserBody>,
) -> Queued {
    let job = state
        .domain
        .create_database_user(&server, &b.request, &Secret::new(b.password))
        .await?;
    Ok(Accepted(job))
}

pub async fn drop_db_user(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Path((_, engine, name)): Path<(i64, String, String)>,
) -> Queued {
    Ok(Accepted(
        state
            .domain
            .drop_database_user(&server, &engine, &name)
            .await?,
    ))
}
