//! Fleet operations: server tags, recipes and their runs. Recipes belong to a team; the domain checks the
//! caller's role in it (root-level for recipes that run as root) and for each server a run touches.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use brokeforge_domain::recipes::{RecipeBody, RunBody};
use serde::Deserialize;
use serde_json::json;

use super::common::{ApiJson, ApiResponse, Body, accepted_with};
use crate::auth::Authed;
use crate::extract::OwnedServer;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsBody {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

pub async fn tag_server(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Body(b): Body<TagsBody>,
) -> ApiJson {
    let tags = state.domain.tag_server(&server, &b.add, &b.remove).await?;
    Ok(Json(json!({"server_id": server.id, "tags": tags})))
}

pub async fn list(State(state): State<AppState>, authed: Authed) -> ApiJson {
    Ok(Json(
        json!({"recipes": state.domain.recipes(&authed.user).await?}),
    ))
}

pub async fn save(
    State(state): State<AppState>,
    authed: Authed,
    Body(b): Body<RecipeBody>,
) -> ApiResponse {
    let recipe = state.domain.save_recipe(&authed.user, &b).await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(json!({"recipe": recipe})),
    )
        .into_response())
}

pub async fn show(
    State(state): State<AppState>,
    authed: Authed,
    Path(key): Path<String>,
) -> ApiJson {
    let recipe = state.domain.recipe_for(&authed.user, &key).await?;
    Ok(Json(json!({"recipe": recipe})))
}

pub async fn delete(
    State(state): State<AppState>,
    authed: Authed,
    Path(key): Path<String>,
) -> ApiJson {
    let recipe = state.domain.recipe_for(&authed.user, &key).await?;
    state.domain.delete_recipe(&authed.user, &recipe).await?;
    Ok(Json(json!({"deleted": recipe.id})))
}

/// With `plan: true` only the plan (200); else the run starts (202).
pub async fn run(
    State(state): State<AppState>,
    authed: Authed,
    Path(key): Path<String>,
    Body(b): Body<RunBody>,
) -> ApiResponse {
    let recipe = state.domain.recipe_for(&authed.user, &key).await?;
    if b.plan {
        let plan = state
            .domain
            .plan_recipe_run(&authed.user, &recipe, &b)
            .await?;
        return Ok(Json(json!({"plan": plan})).into_response());
    }
    let run = state
        .domain
        .start_recipe_run(&authed.user, &recipe, &b)
        .await?;
    Ok(accepted_with(json!({"run": run})))
}

#[derive(Deserialize)]
pub struct RunsQuery {
    limit: Option<i64>,
}

pub async fn runs(
    State(state): State<AppState>,
    authed: Authed,
    Query(q): Query<RunsQuery>,
) -> ApiJson {
    let runs = state
        .domain
        .recipe_runs(&authed.user, q.limit.unwrap_or(50))
        .await?;
    Ok(Json(json!({"runs": runs})))
}

pub async fn show_run(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiJson {
    Ok(Json(json!(
        state.domain.recipe_run_for(&authed.user, id).await?
    )))
}

pub async fn resume(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> ApiResponse {
    let run = state.domain.resume_recipe_run(&authed.user, id).await?;
    Ok(accepted_with(json!({"run": run})))
}
