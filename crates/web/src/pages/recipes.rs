//! Recipes: the team's named scripts with a form to run one on a set of servers (its plan shown first), and
//! each run's page with a per-server grid that follows the run live.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use brokeforge_domain::recipes::{RecipeBody, RunBody, RunPlan, RunView};
use brokeforge_store::{Recipe, RecipeRun};

use super::common::*;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "recipes.html")]
pub struct RecipesPage {
    pub nav: Nav,
    pub recipes: Vec<Recipe>,
    pub runs: Vec<(RecipeRun, String)>,
    /// What a run would do, after "Show the plan".
    pub plan: Option<RunPlan>,
    /// The run form's fields, kept when shown again.
    pub form: BTreeMap<String, String>,
}

impl RecipesPage {
    /// A form field as it was sent, or `default`.
    pub fn value(&self, key: &str, default: &str) -> String {
        self.form
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
}

#[derive(Template)]
#[template(path = "recipe_run.html")]
pub struct RunPage {
    pub nav: Nav,
    pub view: RunView,
    pub summary: String,
}

async fn view(
    state: &AppState,
    u: &Authed,
    plan: Option<RunPlan>,
    form: BTreeMap<String, String>,
    error: Option<&ApiError>,
) -> PageResult {
    let recipes = state.domain.recipes(&u.user).await?;
    let names: BTreeMap<i64, String> = recipes.iter().map(|r| (r.id, r.name.clone())).collect();
    let runs = state
        .domain
        .recipe_runs(&u.user, 20)
        .await?
        .into_iter()
        .map(|r| {
            let name = names.get(&r.recipe_id).cloned().unwrap_or_default();
            (r, name)
        })
        .collect();
    let (nav, status) = Nav::of(u, "Recipes").with_result(error);
    Ok(render(
        &RecipesPage {
            nav,
            recipes,
            runs,
            plan,
            form,
        },
        status,
    ))
}

pub async fn recipes_page(State(state): State<AppState>, PageUser(u): PageUser) -> PageResult {
    view(&state, &u, None, BTreeMap::new(), None).await
}

fn field(f: &BTreeMap<String, String>, k: &str) -> String {
    f.get(k).map(|v| v.trim().to_string()).unwrap_or_default()
}

pub async fn save_recipe(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let body = RecipeBody {
        name: field(&f, "name"),
        script: f
            .get("script")
            .cloned()
            .unwrap_or_default()
            .replace("\r\n", "\n"),
        user: Some(field(&f, "user")).filter(|v| !v.is_empty()),
        team: Some(field(&f, "team")).filter(|v| !v.is_empty()),
    };
    match state.domain.save_recipe(&u.user, &body).await {
        Ok(_) => Ok(see_other("/recipes")),
        Err(e) => view(&state, &u, None, f, Some(&e.into())).await,
    }
}

fn number(f: &BTreeMap<String, String>, k: &'static str) -> Result<Option<u32>, ApiError> {
    match field(f, k).as_str() {
        "" => Ok(None),
        v => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid(k, format!("`{v}` is not a number"))),
    }
}

/// The run form: "plan" shows what would run; "run" starts it and opens its page.
pub async fn run_recipe(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let r: Result<_, ApiError> = async {
        let recipe = state
            .domain
            .recipe_for(&u.user, &field(&f, "recipe"))
            .await?;
        let target = field(&f, "target");
        let body = RunBody {
            servers: if target == "servers" {
                field(&f, "servers")
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            } else {
                Vec::new()
            },
            tag: (target == "tag").then(|| field(&f, "tag")),
            all: target == "all",
            parallel: number(&f, "parallel")?,
            canary: number(&f, "canary")?,
            max_failures: number(&f, "max_failures")?,
            plan: field(&f, "op") == "plan",
        };
        Ok((recipe, body))
    }
    .await;
    let (recipe, body) = match r {
        Ok(x) => x,
        Err(e) => return view(&state, &u, None, f, Some(&e)).await,
    };
    if body.plan {
        return match state.domain.plan_recipe_run(&u.user, &recipe, &body).await {
            Ok(plan) => view(&state, &u, Some(plan), f, None).await,
            Err(e) => view(&state, &u, None, f, Some(&e.into())).await,
        };
    }
    match state.domain.start_recipe_run(&u.user, &recipe, &body).await {
        Ok(run) => Ok(see_other(format!("/recipe-runs/{}", run.id))),
        Err(e) => view(&state, &u, None, f, Some(&e.into())).await,
    }
}

pub async fn run_page(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
) -> PageResult {
    let view = state.domain.recipe_run_for(&u.user, id).await?;
    let summary = view
        .summary
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let nav = Nav::of(&u, format!("Run {id} of {}", view.recipe));
    Ok(render(&RunPage { nav, view, summary }, StatusCode::OK))
}

pub async fn resume_run(
    State(state): State<AppState>,
    PageUser(u): PageUser,
    Path(id): Path<i64>,
) -> PageResult {
    state.domain.resume_recipe_run(&u.user, id).await?;
    Ok(see_other(format!("/recipe-runs/{id}")))
}
