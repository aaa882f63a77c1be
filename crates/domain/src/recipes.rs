//! Fleet operations: server tags, recipes (a named script of a team) and recipe runs over many servers, in
//! waves: a canary first, then the rest with a chosen parallelism, stopping new servers once failures pass
//! the threshold; a stopped run can be resumed. Each server's part is a normal job (`recipe`); a ticker moves
//! runs on from what their jobs did, so a run survives restarts and works the same on every node.

use std::time::Duration;

use brokeforge_core::ValidationError;
use brokeforge_packages::base::package::job;
use brokeforge_packages::services::server::recipe::{RecipeInstaller, RecipeRequest, run_as};
use brokeforge_store::{NewRecipeRun, Recipe, RecipeRun, RunServer, Server, User};
use serde::{Deserialize, Serialize};

use crate::Domain;
use crate::error::{DomainError, DomainResult};
use crate::policy::Action;

/// How often running runs are looked at.
pub const ADVANCE_EVERY: Duration = Duration::from_secs(1);
/// Most servers of one run at a time.
pub const MAX_PARALLEL: u32 = 100;

/// A tag: lowercase letters, digits, `-` and `_`, up to 40 characters.
pub fn check_tag(tag: &str) -> Result<String, ValidationError> {
    let t = tag.trim();
    let ok = !t.is_empty()
        && t.len() <= 40
        && t.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(ValidationError::new(
            "tag",
            format!("`{t}` is not a tag: lowercase letters, digits, - and _, up to 40 characters"),
        ));
    }
    Ok(t.to_string())
}

fn check_name(name: &str) -> Result<String, ValidationError> {
    let n = name.trim();
    let ok = !n.is_empty()
        && n.len() <= 60
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        return Err(ValidationError::new(
            "name",
            format!("`{n}` is not a recipe name: letters, digits, - _ and ., up to 60 characters"),
        ));
    }
    Ok(n.to_string())
}

/// Running as root is a root-level change; as the app user, what running a command in a site is.
fn action_for(run_as: &str) -> Action {
    if run_as == "root" {
        Action::ServerManage
    } else {
        Action::SiteCommand
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipeBody {
    pub name: String,
    pub script: String,
    /// `root` or `brokeforge` (the default).
    #[serde(default)]
    pub user: Option<String>,
    /// The team's id or name; the caller's own team when empty.
    #[serde(default)]
    pub team: Option<String>,
}

/// Which servers, and how: exactly one of `servers`, `tag`, `all`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub all: bool,
    /// Servers at a time after the canary (default 10).
    #[serde(default)]
    pub parallel: Option<u32>,
    /// Servers that run first, alone (default 1).
    #[serde(default)]
    pub canary: Option<u32>,
    /// New servers stop once more than this many failed (default 0).
    #[serde(default)]
    pub max_failures: Option<u32>,
    /// Only show what would run.
    #[serde(default)]
    pub plan: bool,
}

/// What a run will do, shown before it starts.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunPlan {
    pub recipe: String,
    pub script: String,
    pub run_as: String,
    /// In order: the first `canary` go first.
    pub servers: Vec<PlannedServer>,
    pub parallel: u32,
    pub canary: u32,
    pub max_failures: u32,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct PlannedServer {
    pub id: i64,
    pub name: String,
    pub wave: &'static str,
}

/// A run as the page and the API show it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunView {
    pub run: RecipeRun,
    pub recipe: String,
    pub servers: Vec<RunServerView>,
    /// Count per state.
    pub summary: std::collections::BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunServerView {
    #[serde(flatten)]
    pub row: RunServer,
    pub name: String,
    /// `skipped` for servers a stopped run did not start.
    pub shown_state: String,
}

impl Domain {
    /// Add and remove tags of a server.
    pub async fn tag_server(
        &self,
        server: &Server,
        add: &[String],
        remove: &[String],
    ) -> DomainResult<Vec<String>> {
        let add = add
            .iter()
            .map(|t| check_tag(t))
            .collect::<Result<Vec<_>, _>>()?;
        let remove = remove
            .iter()
            .map(|t| check_tag(t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .store
            .change_server_tags(server.id, &add, &remove)
            .await?)
    }

    async fn team_of(&self, user: &User, team: Option<&str>, action: Action) -> DomainResult<i64> {
        match team.map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => Ok(self.team_for(user, t, action).await?.0.id),
            None => {
                let teams = self.store.teams_of(user.id).await?;
                let (team, role) = teams
                    .into_iter()
                    .find(|(t, _)| t.personal_of == Some(user.id))
                    .ok_or_else(|| DomainError::invalid("team", "name the team"))?;
                if !crate::policy::allows(role, action) {
                    return Err(DomainError::Forbidden(format!(
                        "your role in {} ({role}) may not {}",
                        team.name,
                        action.describe()
                    )));
                }
                Ok(team.id)
            }
        }
    }

    /// Create a recipe, or change the script and user of the team's recipe of that name.
    pub async fn save_recipe(&self, user: &User, b: &RecipeBody) -> DomainResult<Recipe> {
        let name = check_name(&b.name)?;
        let run = b.user.clone().unwrap_or_else(|| "brokeforge".into());
        run_as(&run)?;
        if b.script.trim().is_empty() {
            return Err(DomainError::invalid("script", "the script is empty"));
        }
        if b.script.len() > 256 * 1024 || b.script.contains('\0') {
            return Err(DomainError::invalid(
                "script",
                "the script must be text of at most 256 KiB",
            ));
        }
        let team = self
            .team_of(user, b.team.as_deref(), action_for(&run))
            .await?;
        let existing = self
            .store
            .recipes_of_teams(&[team])
            .await?
            .into_iter()
            .find(|r| r.name == name);
        Ok(match existing {
            Some(r) => self.store.update_recipe(r.id, &b.script, &run).await?,
            None => {
                self.store
                    .create_recipe(team, &name, &b.script, &run, user.id)
                    .await?
            }
        })
    }

    /// The recipes of the user's teams.
    pub async fn recipes(&self, user: &User) -> DomainResult<Vec<Recipe>> {
        let teams: Vec<i64> = self
            .store
            .teams_of(user.id)
            .await?
            .into_iter()
            .map(|(t, _)| t.id)
            .collect();
        Ok(self.store.recipes_of_teams(&teams).await?)
    }

    /// One of the user's recipes, by id or name.
    pub async fn recipe_for(&self, user: &User, key: &str) -> DomainResult<Recipe> {
        let key = key.trim();
        let mut found: Vec<Recipe> = self
            .recipes(user)
            .await?
            .into_iter()
            .filter(|r| r.id.to_string() == key || r.name == key)
            .collect();
        match found.len() {
            0 => Err(DomainError::NotFound),
            1 => Ok(found.remove(0)),
            _ => Err(DomainError::invalid(
                "recipe",
                format!("several of your teams have a recipe {key}: give its id"),
            )),
        }
    }

    pub async fn delete_recipe(&self, user: &User, recipe: &Recipe) -> DomainResult<()> {
        self.team_for(
            user,
            &recipe.team_id.to_string(),
            action_for(&recipe.run_as),
        )
        .await?;
        Ok(self.store.delete_recipe(recipe.id).await?)
    }

    /// The servers a run would touch, in order, each checked against the caller's role.
    pub async fn plan_recipe_run(
        &self,
        user: &User,
        recipe: &Recipe,
        b: &RunBody,
    ) -> DomainResult<RunPlan> {
        let chosen =
            usize::from(!b.servers.is_empty()) + usize::from(b.tag.is_some()) + usize::from(b.all);
        if chosen != 1 {
            return Err(DomainError::invalid(
                "servers",
                "choose the servers one way: a list, a tag, or all of the team's",
            ));
        }
        let parallel = b.parallel.unwrap_or(10);
        if !(1..=MAX_PARALLEL).contains(&parallel) {
            return Err(DomainError::invalid(
                "parallel",
                format!("run on 1 to {MAX_PARALLEL} servers at a time"),
            ));
        }
        let canary = b.canary.unwrap_or(1);
        let max_failures = b.max_failures.unwrap_or(0);
        let visible: Vec<Server> = self
            .store
            .servers_for_user(user.id)
            .await?
            .into_iter()
            .filter(|s| s.team_id == recipe.team_id)
            .collect();
        let picked: Vec<Server> = if b.all {
            visible
        } else if let Some(tag) = &b.tag {
            let tag = check_tag(tag)?;
            let ids: Vec<i64> = visible.iter().map(|s| s.id).collect();
            let tags = self.store.tags_of(&ids).await?;
            visible
                .into_iter()
                .filter(|s| tags.get(&s.id).is_some_and(|t| t.contains(&tag)))
                .collect()
        } else {
            let mut out: Vec<Server> = Vec::new();
            for name in &b.servers {
                let name = name.trim();
                let s = visible
                    .iter()
                    .find(|s| s.name == name || s.id.to_string() == name)
                    .ok_or_else(|| {
                        DomainError::invalid(
                            "servers",
                            format!("the recipe's team has no server {name} you can see"),
                        )
                    })?;
                if !out.iter().any(|o| o.id == s.id) {
                    out.push(s.clone());
                }
            }
            out
        };
        if picked.is_empty() {
            return Err(DomainError::invalid("servers", "no server matches"));
        }
        // A role that may not run as root (or a team that wants two-factor sign-in the caller lacks) is
        // refused before anything is queued. Both are the team's, the same for every server picked (each of
        // the recipe's team and visible to the caller, so a narrowed member's others are not here): one check,
        // where one per server took two reads each, 400 before a run of 200 could start (#17).
        self.owned_server(user, picked[0].id, action_for(&recipe.run_as))
            .await?;
        let servers = picked
            .iter()
            .enumerate()
            .map(|(i, s)| PlannedServer {
                id: s.id,
                name: s.name.clone(),
                wave: if (i as u32) < canary {
                    "canary"
                } else {
                    "rest"
                },
            })
            .collect();
        Ok(RunPlan {
            recipe: recipe.name.clone(),
            script: recipe.script.clone(),
            run_as: recipe.run_as.clone(),
            servers,
            parallel,
            canary,
            max_failures,
        })
    }

    /// Start a run: its servers stored, the first wave queued at once.
    pub async fn start_recipe_run(
        &self,
        user: &User,
        recipe: &Recipe,
        b: &RunBody,
    ) -> DomainResult<RecipeRun> {
        let plan = self.plan_recipe_run(user, recipe, b).await?;
        let ids: Vec<i64> = plan.servers.iter().map(|s| s.id).collect();
        let run = self
            .store
            .create_recipe_run(
                &NewRecipeRun {
                    recipe_id: recipe.id,
                    user_id: user.id,
                    script: recipe.script.clone(),
                    run_as: recipe.run_as.clone(),
                    parallel: i64::from(plan.parallel),
                    canary: i64::from(plan.canary),
                    max_failures: i64::from(plan.max_failures),
                },
                &ids,
            )
            .await?;
        self.advance_run(&run).await?;
        Ok(self.store.recipe_run(run.id).await?)
    }

    /// A run of one of the user's recipes.
    pub async fn recipe_run_for(&self, user: &User, run_id: i64) -> DomainResult<RunView> {
        let run = self.store.recipe_run(run_id).await?;
        let recipe = self.store.recipe(run.recipe_id).await?;
        if !self.recipes(user).await?.iter().any(|r| r.id == recipe.id) {
            return Err(DomainError::NotFound);
        }
        let rows = self.store.recipe_run_servers(run.id).await?;
        let names: std::collections::HashMap<i64, String> = self
            .store
            .team_servers(recipe.team_id)
            .await?
            .into_iter()
            .map(|s| (s.id, s.name))
            .collect();
        let mut summary = std::collections::BTreeMap::new();
        let servers: Vec<RunServerView> = rows
            .into_iter()
            .map(|row| {
                let shown_state = if row.state == "pending" && run.status != "running" {
                    "skipped".to_string()
                } else {
                    row.state.clone()
                };
                *summary.entry(shown_state.clone()).or_insert(0) += 1;
                RunServerView {
                    name: names
                        .get(&row.server_id)
                        .cloned()
                        .unwrap_or_else(|| format!("server {}", row.server_id)),
                    row,
                    shown_state,
                }
            })
            .collect();
        Ok(RunView {
            run,
            recipe: recipe.name,
            servers,
            summary,
        })
    }

    /// Runs of the user's recipes, newest first.
    pub async fn recipe_runs(&self, user: &User, limit: i64) -> DomainResult<Vec<RecipeRun>> {
        let ids: Vec<i64> = self.recipes(user).await?.iter().map(|r| r.id).collect();
        Ok(self.store.recipe_runs_of(&ids, limit.clamp(1, 200)).await?)
    }

    /// Go on with a stopped run: its servers not started yet start, and as many new failures as the run
    /// allowed are allowed again.
    pub async fn resume_recipe_run(&self, user: &User, run_id: i64) -> DomainResult<RecipeRun> {
        let view = self.recipe_run_for(user, run_id).await?;
        let recipe = self.store.recipe(view.run.recipe_id).await?;
        self.team_for(
            user,
            &recipe.team_id.to_string(),
            action_for(&view.run.run_as),
        )
        .await?;
        if view.run.status != "stopped" {
            return Err(DomainError::conflict(
                "not_stopped",
                format!("the run is {}, not stopped", view.run.status),
            ));
        }
        let failed = view
            .servers
            .iter()
            .filter(|s| s.row.state == "failed")
            .count() as i64;
        self.store
            .set_recipe_run_status(
                run_id,
                "stopped",
                "running",
                Some(failed + view.run.max_failures),
            )
            .await?;
        let run = self.store.recipe_run(run_id).await?;
        self.advance_run(&run).await?;
        Ok(self.store.recipe_run(run_id).await?)
    }

    /// Move every running run on. Returns how many servers were started.
    pub async fn advance_recipe_runs(&self) -> DomainResult<usize> {
        let mut started = 0;
        for run in self.store.running_recipe_runs().await? {
            started += self.advance_run(&run).await?;
        }
        Ok(started)
    }

    /// One run: take in what its jobs did, stop it past the threshold, start servers into free slots (the
    /// canary wave first, alone), finish it when nothing is left.
    async fn advance_run(&self, run: &RecipeRun) -> DomainResult<usize> {
        // A row's ending is written with its job's (or read from the job); the database counts them.
        let canary = run.canary.max(0);
        let p = self.store.recipe_run_progress(run.id, canary).await?;
        if p.failed > run.max_failures {
            self.store
                .set_recipe_run_status(run.id, "running", "stopped", None)
                .await?;
            return Ok(0);
        }
        if p.pending == 0 && p.active == 0 {
            let end = if p.failed > 0 { "failed" } else { "done" };
            self.store
                .set_recipe_run_status(run.id, "running", end, None)
                .await?;
            return Ok(0);
        }
        // Until the canary wave is done or failed, only its servers may start.
        let window = (p.canary_open > 0).then_some(canary);
        let slots = (run.parallel - p.active).max(0);
        if slots == 0 || p.pending == 0 {
            return Ok(0);
        }
        // The next servers with their names in one read; the wave's jobs queued together.
        let mut starts = Vec::new();
        for (server_id, server) in self.store.run_next_pending(run.id, window, slots).await? {
            let mut new = job::<RecipeInstaller>(
                server_id,
                &RecipeRequest {
                    run_id: run.id,
                    script: run.script.clone(),
                    run_as: run.run_as.clone(),
                    server,
                },
            )?;
            // The job's ending settles the server's row in the same transaction.
            new.target = Some(brokeforge_store::JobTarget::RecipeRun { id: run.id });
            starts.push((server_id, new));
        }
        let started = self.store.start_run_servers(run.id, &starts).await?.len();
        Ok(started)
    }

    /// The ticker `serve` runs: every second, and at once when a job of this node finishes, so a wave
    /// starts when the canary is done rather than up to a tick later (other nodes' jobs wait for the tick).
    pub async fn run_recipe_runs(&self, stop: tokio_util::sync::CancellationToken) {
        loop {
            // Listening before the pass: a job that finishes during it wakes the next one.
            let finished = self.store.job_finished_notify().notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            if let Err(e) = self.advance_recipe_runs().await {
                tracing::warn!(error = %e, "moving recipe runs on failed; trying again");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(ADVANCE_EVERY) => {}
                _ = finished => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_names_are_checked() {
        assert_eq!(check_tag(" web ").unwrap(), "web");
        for bad in ["", "Web", "-x", "a b", "$(id)", &"x".repeat(41)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
        assert!(check_name("deploy-keys.v2").is_ok());
        assert!(check_name("rm -rf").is_err());
    }
}
