//! Fleet operations: server tags, recipes and their runs. Recipes belong to a team; the domain checks the
//! caller's role in it (root-level for recipes that run as root) and for each server a run touches.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use brokeforge_domain::recipes::{RecipeBody, RunBody, RunView};

use super::common::{AcceptedWith, Body, Created, Typed};
use super::types::{
    Deleted, RecipeList, RecipeResponse, RunList, RunPlanResponse, RunStarted, RunsQuery,
    ServerTags, TagsBody,
};
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::OwnedServer;
use crate::state::AppState;

pub async fn tag_server(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Body(b): Body<TagsBody>,
) -> Typed<ServerTags> {
    let tags = state.domain.tag_server(&server, &b.add, &b.remove).await?;
    Ok(Json(ServerTags {
        server_id: server.id,
        tags,
    }))
}

pub async fn list(State(state): State<AppState>, authed: Authed) -> Typed<RecipeList> {
    Ok(Json(RecipeList {
        recipes: state.domain.recipes(&authed.user).await?,
    }))
}

pub async fn save(
    State(state): State<AppState>,
    authed: Authed,
    Body(b): Body<RecipeBody>,
) -> Result<Created<RecipeResponse>, ApiError> {
    let recipe = state.domain.save_recipe(&authed.user, &b).await?;
    Ok(Created(RecipeResponse { recipe }))
}

pub async fn show(
    State(state): State<AppState>,
    authed: Authed,
    Path(key): Path<String>,
) -> Typed<RecipeResponse> {
    let recipe = state.domain.recipe_for(&authed.user, &key).await?;
    Ok(Json(RecipeResponse { recipe }))
}

pub async fn delete(
    State(state): State<AppState>,
    authed: Authed,
    Path(key): Path<String>,
) -> Typed<Deleted> {
    let recipe = state.domain.recipe_for(&authed.user, &key).await?;
    state.domain.delete_recipe(&authed.user, &recipe).await?;
    Ok(Json(Deleted { deleted: recipe.id }))
}

/// With `plan: true` only the plan (200, `RunPlanResponse`); else the run starts (202, `RunStarted`).
pub async fn run(
    State(state): State<AppState>,
    authed: Authed,
    Path(key): Path<String>,
    Body(b): Body<RunBody>,
) -> Result<Response, ApiError> {
    let recipe = state.domain.recipe_for(&authed.user, &key).await?;
    if b.plan {
        let plan = state
            .domain
            .plan_recipe_run(&authed.user, &recipe, &b)
            .await?;
        return Ok(Json(RunPlanResponse { plan }).into_response());
    }
    let run = state
        .domain
        .start_recipe_run(&authed.user, &recipe, &b)
        .await?;
    Ok(AcceptedWith(RunStarted { run }).into_response())
}

pub async fn runs(
    State(state): State<AppState>,
    authed: Authed,
    Query(q): Query<RunsQuery>,
) -> Typed<RunList> {
    let runs = state
        .domain
        .recipe_runs(&authed.user, q.limit.unwrap_or(50))
        .await?;
    Ok(Json(RunList { runs }))
}

pub async fn show_run(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> Typed<RunView> {
    Ok(Json(state.domain.recipe_run_for(&authed.user, id).await?))
}

pub async fn resume(
    State(state): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> Result<AcceptedWith<RunStarted>, ApiError> {
    let run = state.domain.resume_recipe_run(&authed.user, id).await?;
    Ok(AcceptedWith(RunStarted { run }))
}
