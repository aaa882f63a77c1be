//! Fleet operations: server tags, recipes (a named script of a team) and their runs over many servers. A run
//! keeps one row per server (its place in the waves, its job, how it ended); what moves a run on is in the
//! domain layer.

use std::collections::BTreeMap;

use brokeforge_core::time::now_ms;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, is_unique_violation};

#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Recipe {
    pub id: i64,
    pub team_id: i64,
    pub name: String,
    pub script: String,
    /// `root` or `brokeforge`.
    pub run_as: String,
    pub created_by: Option<i64>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct RecipeRun {
    pub id: i64,
    pub recipe_id: i64,
    pub user_id: Option<i64>,
    /// The script as it was when the run started (the recipe may change later).
    pub script: String,
    pub run_as: String,
    pub parallel: i64,
    pub canary: i64,
    /// New servers stop once more than this many failed.
    pub max_failures: i64,
    /// running | stopped | done | failed
    pub status: String,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub finished_at: Option<i64>,
}

/// One server's part of a run.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct RunServer {
    pub run_id: i64,
    pub server_id: i64,
    pub position: i64,
    /// pending | queued | running | done | failed
    pub state: String,
    pub job_id: Option<i64>,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<i64>,
}

pub struct NewRecipeRun {
    pub recipe_id: i64,
    pub user_id: i64,
    pub script: String,
    pub run_as: String,
    pub parallel: i64,
    pub canary: i64,
    pub max_failures: i64,
}

/// A row's state as the grid shows it: a server whose job runs is `running`, and one whose job ended without
/// settling its row (a job queued by an older version) shows how the job ended. Needs `rs` and `j` (the
/// row's job, left-joined).
const ROW_STATE: &str = "CASE WHEN rs.state NOT IN ('queued', 'running') OR j.status IS NULL THEN rs.state \
     WHEN j.status = 'running' THEN 'running' WHEN j.status = 'done' THEN 'done' \
     WHEN j.status IN ('failed', 'cancelled') THEN 'failed' ELSE rs.state END";

/// Where a run stands, counted by the database (the ticker looks at every running run whenever a job ends:
/// reading each row was a row per server per job, #17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunProgress {
    pub failed: i64,
    /// Queued or running.
    pub active: i64,
    pub pending: i64,
    /// Servers of the canary wave (the first `canary` by position) not done or failed yet.
    pub canary_open: i64,
}

const RECIPE_COLS: &str = "id, team_id, name, script, run_as, created_by, created_at, updated_at";
const RUN_COLS: &str = "id, recipe_id, user_id, script, run_as, parallel, canary, max_failures, status, created_at, finished_at";

fn recipe_from(r: &AnyRow) -> Result<Recipe> {
    Ok(Recipe {
        id: r.try_get("id")?,
        team_id: r.try_get("team_id")?,
        name: r.try_get("name")?,
        script: r.try_get("script")?,
        run_as: r.try_get("run_as")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn run_from(r: &AnyRow) -> Result<RecipeRun> {
    Ok(RecipeRun {
        id: r.try_get("id")?,
        recipe_id: r.try_get("recipe_id")?,
        user_id: r.try_get("user_id")?,
        script: r.try_get("script")?,
        run_as: r.try_get("run_as")?,
        parallel: r.try_get("parallel")?,
        canary: r.try_get("canary")?,
        max_failures: r.try_get("max_failures")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

fn run_server_from(r: &AnyRow) -> Result<RunServer> {
    Ok(RunServer {
        run_id: r.try_get("run_id")?,
        server_id: r.try_get("server_id")?,
        position: r.try_get("position")?,
        state: r.try_get("state")?,
        job_id: r.try_get("job_id")?,
        exit_code: r.try_get("exit_code")?,
        duration_ms: r.try_get("duration_ms")?,
    })
}

impl Store {
    /// Add and remove tags of a server; returns its tags after.
    pub async fn change_server_tags(
        &self,
        server_id: i64,
        add: &[String],
        remove: &[String],
    ) -> Result<Vec<String>> {
        for tag in remove {
            sqlx::query("DELETE FROM server_tags WHERE server_id = $1 AND tag = $2")
                .bind(server_id)
                .bind(tag)
                .execute(&self.pool)
                .await?;
        }
        for tag in add {
            sqlx::query(
                "INSERT INTO server_tags (server_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(server_id)
            .bind(tag)
            .execute(&self.pool)
            .await?;
        }
        Ok(self
            .tags_of(&[server_id])
            .await?
            .remove(&server_id)
            .unwrap_or_default())
    }

    /// The tags of these servers (servers without tags are absent).
    pub async fn tags_of(&self, server_ids: &[i64]) -> Result<BTreeMap<i64, Vec<String>>> {
        let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        if server_ids.is_empty() {
            return Ok(out);
        }
        let rows = sqlx::query(&format!(
            "SELECT server_id, tag FROM server_tags WHERE server_id IN ({}) ORDER BY server_id, tag",
            crate::id_list(server_ids)
        ))
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            out.entry(r.try_get("server_id")?)
                .or_default()
                .push(r.try_get("tag")?);
        }
        Ok(out)
    }

    pub async fn create_recipe(
        &self,
        team_id: i64,
        name: &str,
        script: &str,
        run_as: &str,
        created_by: i64,
    ) -> Result<Recipe> {
        let now = now_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO recipes (team_id, name, script, run_as, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {RECIPE_COLS}"
        ))
        .bind(team_id)
        .bind(name)
        .bind(script)
        .bind(run_as)
        .bind(created_by)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("the team has a recipe {name} already"))
            } else {
                e.into()
            }
        })?;
        recipe_from(&row)
    }

    pub async fn update_recipe(&self, id: i64, script: &str, run_as: &str) -> Result<Recipe> {
        let row = sqlx::query(&format!(
            "UPDATE recipes SET script = $1, run_as = $2, updated_at = $3 WHERE id = $4 RETURNING {RECIPE_COLS}"
        ))
        .bind(script)
        .bind(run_as)
        .bind(now_ms())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("recipe {id}")))?;
        recipe_from(&row)
    }

    pub async fn delete_recipe(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM recipes WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn recipe(&self, id: i64) -> Result<Recipe> {
        let row = sqlx::query(&format!("SELECT {RECIPE_COLS} FROM recipes WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("recipe {id}")))?;
        recipe_from(&row)
    }

    /// The recipes of these teams, by name.
    pub async fn recipes_of_teams(&self, team_ids: &[i64]) -> Result<Vec<Recipe>> {
        if team_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT {RECIPE_COLS} FROM recipes WHERE team_id IN ({}) ORDER BY name, id",
            crate::id_list(team_ids)
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(recipe_from).collect()
    }

    /// Store a run and its servers (in the order given: the first `canary` go first), all pending.
    pub async fn create_recipe_run(
        &self,
        new: &NewRecipeRun,
        server_ids: &[i64],
    ) -> Result<RecipeRun> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "INSERT INTO recipe_runs (recipe_id, user_id, script, run_as, parallel, canary, max_failures, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8) RETURNING {RUN_COLS}"
        ))
        .bind(new.recipe_id)
        .bind(new.user_id)
        .bind(&new.script)
        .bind(&new.run_as)
        .bind(new.parallel)
        .bind(new.canary)
        .bind(new.max_failures)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        let run = run_from(&row)?;
        // A statement per 500 servers (within SQLite's 999 parameters): a row each took a round trip, 70 ms
        // for 200 servers before the canary could start (#17).
        for (c, chunk) in server_ids.chunks(500).enumerate() {
            let values = (0..chunk.len())
                .map(|i| format!("($1, ${}, {}, 'pending')", i + 2, c * 500 + i))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO recipe_run_servers (run_id, server_id, position, state) VALUES {values}"
            );
            let mut q = sqlx::query(&sql).bind(run.id);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(run)
    }

    pub async fn recipe_run(&self, id: i64) -> Result<RecipeRun> {
        let row = sqlx::query(&format!("SELECT {RUN_COLS} FROM recipe_runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("recipe run {id}")))?;
        run_from(&row)
    }

    /// Runs of these recipes, newest first.
    pub async fn recipe_runs_of(&self, recipe_ids: &[i64], limit: i64) -> Result<Vec<RecipeRun>> {
        if recipe_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLS} FROM recipe_runs WHERE recipe_id IN ({}) ORDER BY id DESC LIMIT $1",
            crate::id_list(recipe_ids)
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from).collect()
    }

    /// Runs that may have servers to start or jobs to follow.
    pub async fn running_recipe_runs(&self) -> Result<Vec<RecipeRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLS} FROM recipe_runs WHERE status = 'running' ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from).collect()
    }

    /// A run's servers in their order. A server whose job runs shows `running`, and one whose job ended
    /// without settling its row (a job queued by an older version) shows how the job ended: the job is the
    /// truth, and nothing is written to keep the two in step.
    pub async fn recipe_run_servers(&self, run_id: i64) -> Result<Vec<RunServer>> {
        let rows = sqlx::query(&format!(
            "SELECT rs.run_id AS run_id, rs.server_id AS server_id, rs.position AS position, \
             {ROW_STATE} AS state, \
             rs.job_id AS job_id, rs.exit_code AS exit_code, rs.duration_ms AS duration_ms \
             FROM recipe_run_servers rs LEFT JOIN jobs j ON j.id = rs.job_id \
             WHERE rs.run_id = $1 ORDER BY rs.position"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_server_from).collect()
    }

    /// How far run `run_id` is, with a canary wave of its first `canary` servers.
    pub async fn recipe_run_progress(&self, run_id: i64, canary: i64) -> Result<RunProgress> {
        let row = sqlx::query(&format!(
            "SELECT COALESCE(SUM(CASE WHEN st = 'failed' THEN 1 ELSE 0 END), 0) AS failed, \
             COALESCE(SUM(CASE WHEN st IN ('queued', 'running') THEN 1 ELSE 0 END), 0) AS active, \
             COALESCE(SUM(CASE WHEN st = 'pending' THEN 1 ELSE 0 END), 0) AS pending, \
             COALESCE(SUM(CASE WHEN position < $2 AND st NOT IN ('done', 'failed') THEN 1 ELSE 0 END), 0) \
             AS canary_open \
             FROM (SELECT rs.position AS position, {ROW_STATE} AS st FROM recipe_run_servers rs \
             LEFT JOIN jobs j ON j.id = rs.job_id WHERE rs.run_id = $1) x"
        ))
        .bind(run_id)
        .bind(canary)
        .fetch_one(&self.pool)
        .await?;
        Ok(RunProgress {
            failed: row.try_get("failed")?,
            active: row.try_get("active")?,
            pending: row.try_get("pending")?,
            canary_open: row.try_get("canary_open")?,
        })
    }

    /// The next `limit` servers of a run that have not started (those at a position before `before`, when
    /// given), in their order: id and name.
    pub async fn run_next_pending(
        &self,
        run_id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT s.id AS id, s.name AS name FROM recipe_run_servers rs \
             JOIN servers s ON s.id = rs.server_id WHERE rs.run_id = $1 AND rs.state = 'pending' \
             AND ($2 IS NULL OR rs.position < $2) ORDER BY rs.position LIMIT $3",
        )
        .bind(run_id)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
            .collect()
    }

    /// Start servers of a run, in one transaction (one commit for a whole wave, and never a server taken
    /// without its job): each still pending is taken, its job queued and recorded. Servers another node
    /// took first are left out. Returns the started servers with their jobs; workers are woken once.
    pub async fn start_run_servers(
        &self,
        run_id: i64,
        starts: &[(i64, crate::NewJob)],
    ) -> Result<Vec<(i64, crate::Job)>> {
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        if self.backend == crate::Backend::Postgres {
            return self.start_run_servers_pg(run_id, starts).await;
        }
        // The first statement writes, so a SQLite transaction takes the write lock at once.
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::new();
        for (server_id, new) in starts {
            // The job first, then the row takes it: two statements a server. A row another node took
            // meanwhile takes nothing, and its job goes again before anyone saw it.
            let job = crate::jobs::insert_job(&mut *tx, new).await?;
            let taken = sqlx::query(
                "UPDATE recipe_run_servers SET state = 'queued', job_id = $1 \
                 WHERE run_id = $2 AND server_id = $3 AND state = 'pending'",
            )
            .bind(job.id)
            .bind(run_id)
            .bind(*server_id)
            .execute(&mut *tx)
            .await?;
            if taken.rows_affected() != 1 {
                sqlx::query("DELETE FROM jobs WHERE id = $1")
                    .bind(job.id)
                    .execute(&mut *tx)
                    .await?;
                continue;
            }
            out.push((*server_id, job));
        }
        tx.commit().await?;
        if !out.is_empty() {
            self.wake_workers().await?;
        }
        Ok(out)
    }

    /// PostgreSQL: a statement per 1000 servers that locks their rows still pending, queues a job for each,
    /// records it and wakes the workers (each server is taken with its job or not at all). In a run's steady
    /// state a job's end starts one server: four round trips in a transaction were a third of its job's (#17).
    async fn start_run_servers_pg(
        &self,
        run_id: i64,
        starts: &[(i64, crate::NewJob)],
    ) -> Result<Vec<(i64, crate::Job)>> {
        const COLS: usize = crate::jobs::NEW_JOB_VALUES;
        // A server once: its row takes one job.
        let mut seen = std::collections::HashSet::new();
        let starts: Vec<_> = starts
            .iter()
            .filter(|(_, new)| seen.insert(new.server_id))
            .collect();
        let mut out = Vec::new();
        for chunk in starts.chunks(1000) {
            let values = (0..chunk.len())
                .map(|i| {
                    let row = (0..COLS)
                        .map(|c| format!("${}", 3 + i * COLS + c))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!("({row})")
                })
                .collect::<Vec<_>>()
                .join(", ");
            // `take` locks the rows (one another node is taking is skipped: it is theirs), `ins` queues a job
            // for each taken row only, `up` records it; the wake-up runs once, and only if a job was queued.
            let sql = format!(
                "WITH v (kind, server_id, payload, target_type, target_name, target_service_type, \
                 provision_type, max_attempts, run_at) AS (VALUES {values}), \
                 take AS (SELECT rs.server_id FROM recipe_run_servers rs WHERE rs.run_id = $1 \
                 AND rs.state = 'pending' AND rs.server_id IN (SELECT server_id FROM v) FOR UPDATE SKIP LOCKED), \
                 ins AS (INSERT INTO jobs (kind, server_id, payload, target_type, target_name, target_service_type, \
                 provision_type, status, attempt, max_attempts, run_at, cancel_requested, created_at, updated_at) \
                 SELECT v.kind, v.server_id, v.payload, v.target_type, v.target_name, v.target_service_type, \
                 v.provision_type, 'queued', 0, v.max_attempts, v.run_at, 0, $2, $2 \
                 FROM v JOIN take ON take.server_id = v.server_id RETURNING {JOB_COLS}), \
                 up AS (UPDATE recipe_run_servers rs SET state = 'queued', job_id = ins.id FROM ins \
                 WHERE rs.run_id = $1 AND rs.server_id = ins.server_id) \
                 SELECT ins.*, (SELECT COUNT(*) FROM (SELECT pg_notify('{NOTIFY_CHANNEL}', '')) n) AS woke FROM ins",
                JOB_COLS = crate::jobs::JOB_COLS,
                NOTIFY_CHANNEL = crate::jobs::NOTIFY_CHANNEL,
            );
            let now = now_ms();
            let mut q = sqlx::query(&sql).bind(run_id).bind(now);
            for (_, new) in chunk.iter().copied() {
                q = crate::jobs::bind_new_job(q, new, now);
            }
            for row in q.fetch_all(&self.pool).await? {
                let job = crate::jobs::job_from(&row)?;
                let server_id = job.server_id.unwrap_or_default();
                out.push((server_id, job));
            }
        }
        if !out.is_empty() {
            // The database woke other nodes' workers; this node's are woken here.
            self.jobs_notify.notify_waiters();
        }
        Ok(out)
    }

    /// Change a run's status from `from` (another node may have changed it); `true` when this call did.
    pub async fn set_recipe_run_status(
        &self,
        id: i64,
        from: &str,
        to: &str,
        max_failures: Option<i64>,
    ) -> Result<bool> {
        let finished = matches!(to, "done" | "failed" | "stopped").then(now_ms);
        let done = sqlx::query(
            "UPDATE recipe_runs SET status = $1, finished_at = $2, max_failures = COALESCE($3, max_failures) \
             WHERE id = $4 AND status = $5",
        )
        .bind(to)
        .bind(finished)
        .bind(max_failures)
        .bind(id)
        .bind(from)
        .execute(&self.pool)
        .await?;
        let changed = done.rows_affected() == 1;
        if changed && finished.is_some() {
            self.finished_notify.notify_waiters();
        }
        Ok(changed)
    }
}
