//! Fleet: tags, recipes and their runs, the audit log.

use brokeforge_store::{Recipe, RecipeRun};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Tags to add to a server and to take off it (lowercase letters, digits, - and _).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagsBody {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ServerTags {
    pub server_id: i64,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RecipeList {
    pub recipes: Vec<Recipe>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RecipeResponse {
    pub recipe: Recipe,
}

/// What a run would do (`plan: true`): nothing has started.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunPlanResponse {
    pub plan: brokeforge_domain::recipes::RunPlan,
}

/// A run started or resumed (`202`); its servers' jobs follow in waves.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunStarted {
    pub run: RecipeRun,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunList {
    pub runs: Vec<RecipeRun>,
}

/// `GET /recipe-runs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RunsQuery {
    /// The newest runs to list (50 by default).
    pub limit: Option<i64>,
}

/// `GET /audit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct AuditQuery {
    /// A server id.
    pub server: Option<i64>,
    /// A user's email.
    pub user: Option<String>,
    /// Text the action contains (`deploy`, `POST /servers`).
    pub action: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub since: Option<i64>,
    /// The `next_cursor` of the page before.
    #[serde(alias = "before")]
    pub cursor: Option<String>,
    /// Entries per page, 1 to 1000 (100 by default).
    pub limit: Option<i64>,
    /// A team's id: entries about its servers.
    pub team: Option<i64>,
}

/// Audit entries, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditPage {
    pub entries: Vec<brokeforge_store::AuditEntry>,
    /// The `cursor` of the following page; null at the end.
    pub next_cursor: Option<String>,
}
