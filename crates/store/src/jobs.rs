//! The job queue: enqueue, claim with a lease, heartbeat, finish (fenced by attempt), cancel, recover.
//!
//! At most one job per server is `running`: a partial unique index enforces it, so two workers racing for
//! the same server cannot both win, whatever their code does. Claims are one statement (atomic on SQLite;
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL). New jobs wake workers in this process directly and, on
//! PostgreSQL, in other processes through `NOTIFY brokeforge_jobs`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use brokeforge_core::ProvisionType;
use brokeforge_core::time::now_ms;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Backend, LogStream, Result, Store, StoreError, json};

pub const NOTIFY_CHANNEL: &str = "brokeforge_jobs";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

impl std::str::FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return Err(format!("unknown job status `{s}`")),
        })
    }
}

use crate::events::job_activity;
pub use crate::job_targets::JobTarget;
use crate::job_targets::{run_row_ending, settle_target, target_columns, target_from};

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub server_id: Option<i64>,
    pub payload: serde_json::Value,
    pub target: Option<JobTarget>,
    pub status: JobStatus,
    pub attempt: i64,
    pub max_attempts: i64,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub run_at: i64,
    pub lease_owner: Option<String>,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub lease_expires_at: Option<i64>,
    pub cancel_requested: bool,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub started_at: Option<i64>,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub server_id: Option<i64>,
    pub payload: serde_json::Value,
    pub target: Option<JobTarget>,
    pub delay: Duration,
    /// Attempts when the job itself fails (1 = no automatic retry; installers leave retrying to the user).
    pub max_attempts: i64,
}

impl NewJob {
    pub fn new(kind: &str, server_id: Option<i64>, payload: serde_json::Value) -> Self {
        NewJob {
            kind: kind.to_string(),
            server_id,
            payload,
            target: None,
            delay: Duration::ZERO,
            max_attempts: 1,
        }
    }
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// The lease is no longer ours (expired and taken over, or the job was finished elsewhere).
    pub lost: bool,
    pub cancel_requested: bool,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Done(serde_json::Value),
    /// The reason, and the exit code of the command that failed (when one did).
    Failed(String, Option<i64>),
    Cancelled,
}

impl Outcome {
    /// The job's status and error once it ended so.
    pub fn status_and_error(&self) -> (JobStatus, Option<String>) {
        match self {
            Outcome::Done(_) => (JobStatus::Done, None),
            Outcome::Failed(e, _) => (JobStatus::Failed, Some(e.clone())),
            Outcome::Cancelled => (JobStatus::Cancelled, Some("cancelled".to_string())),
        }
    }
}

/// On PostgreSQL, after a CTE `j` that ended job `$5` at `$4` (returning its `server_id`): the job's end in
/// its server's activity feed, the parameter `chunk` its row, under the per-server lock taken before the
/// row's id is drawn (see `Store::insert_activity`).
fn announce_ctes(chunk: &str) -> String {
    format!(
        "l AS (SELECT pg_advisory_xact_lock(4242, CAST(j.server_id % 2147483647 AS INTEGER)) AS a, \
         pg_notify('brokeforge_activity', CAST(j.server_id AS TEXT)) AS b FROM j WHERE j.server_id IS NOT NULL), \
         a AS (INSERT INTO command_logs (server_id, job_id, event_id, stream, chunk, created_at) \
         SELECT j.server_id, $5, NULL, 'job', {chunk}, $4 FROM j, l)"
    )
}

/// What recovery did with a job whose worker vanished.
#[derive(Debug, Clone)]
pub enum Recovered {
    Requeued(Job),
    Failed(Job),
}

pub(crate) const JOB_COLS: &str = "id, kind, server_id, payload, target_type, target_name, target_service_type, provision_type, status, attempt, max_attempts, run_at, lease_owner, lease_expires_at, cancel_requested, error, result, created_at, started_at, finished_at";

/// Insert a queued job (on the pool, or inside a transaction that queues several); workers are not woken.
pub(crate) async fn insert_job<'c, E>(ex: E, new: &NewJob) -> Result<Job>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let now = now_ms();
    let sql = format!(
        "INSERT INTO jobs (kind, server_id, payload, target_type, target_name, target_service_type, provision_type, status, attempt, max_attempts, run_at, cancel_requested, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, $8, $9, 0, $10, $10) RETURNING {JOB_COLS}"
    );
    let row = bind_new_job(sqlx::query(&sql), new, now)
        .bind(now)
        .fetch_one(ex)
        .await?;
    job_from(&row)
}

/// How many values [`bind_new_job`] binds.
pub(crate) const NEW_JOB_VALUES: usize = 9;

/// Bind a new job's kind, server, payload, target (four columns), attempts and when it is due.
pub(crate) fn bind_new_job<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    new: &'q NewJob,
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let (tt, tn, ts, pt) = target_columns(&new.target);
    q.bind(&new.kind)
        .bind(new.server_id)
        .bind(new.payload.to_string())
        .bind(tt)
        .bind(tn)
        .bind(ts)
        .bind(pt)
        .bind(new.max_attempts.max(1))
        .bind(now + new.delay.as_millis() as i64)
}

pub(crate) fn job_from(row: &AnyRow) -> Result<Job> {
    let target = target_from(row)?;
    let result: Option<String> = row.try_get("result")?;
    Ok(Job {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        server_id: row.try_get("server_id")?,
        payload: json(row, "payload")?,
        target,
        status: crate::parse(row, "status")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        run_at: row.try_get("run_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        error: row.try_get("error")?,
        result: result
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| StoreError::InvalidData(e.to_string()))?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

impl Store {
    pub async fn enqueue(&self, new: &NewJob) -> Result<Job> {
        let job = insert_job(&self.pool, new).await?;
        self.wake_workers().await?;
        Ok(job)
    }

    /// Wake workers: in this process at once, in other processes through NOTIFY (PostgreSQL).
    pub async fn wake_workers(&self) -> Result<()> {
        self.jobs_notify.notify_waiters();
        if self.backend == Backend::Postgres {
            sqlx::query(&format!("SELECT pg_notify('{NOTIFY_CHANNEL}', '')"))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Notified when a job finishes in this process, and when a recipe run ends (for callers waiting on
    /// results, not for workers).
    pub fn job_finished_notify(&self) -> &tokio::sync::Notify {
        &self.finished_notify
    }

    /// Wait until job `id` has finished (done, failed or cancelled), at most `timeout`; the job as it is then.
    /// Woken at once by jobs finishing in this process, and checks every quarter second for other nodes.
    pub async fn wait_for_job(&self, id: i64, timeout: std::time::Duration) -> Result<Job> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.finished_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let job = self.job(id).await?;
            if job.status.is_finished() || tokio::time::Instant::now() >= deadline {
                return Ok(job);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Resolves when a job may have become claimable in this process (see [`Store::wake_workers`]).
    pub fn jobs_notify(&self) -> &tokio::sync::Notify {
        &self.jobs_notify
    }

    /// Extend the lease of a running job we hold; tells whether the lease was lost and whether cancel was asked.
    pub async fn heartbeat(&self, id: i64, attempt: i64, lease: Duration) -> Result<Heartbeat> {
        let now = now_ms();
        let row = sqlx::query(
            "UPDATE jobs SET lease_expires_at = $1, updated_at = $2 WHERE id = $3 AND attempt = $4 AND status = 'running' RETURNING cancel_requested",
        )
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .bind(id)
        .bind(attempt)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Heartbeat {
                lost: false,
                cancel_requested: r.try_get::<i64, _>("cancel_requested")? != 0,
            },
            None => Heartbeat {
                lost: true,
                cancel_requested: false,
            },
        })
    }

    /// Record the outcome of attempt `attempt`. Returns false (and writes nothing) when that attempt no longer
    /// holds the job: a stale worker cannot overwrite the result of the one that took over.
    pub async fn finish_job(&self, id: i64, attempt: i64, outcome: &Outcome) -> Result<bool> {
        self.finish_job_with(id, attempt, None, None, outcome).await
    }

    /// [`Store::finish_job`] for a claimed job the caller holds: no statement is spent finding out which way
    /// it ends, and the server's activity feed gets the job's end (what [`Store::announce_job`] writes); on
    /// PostgreSQL a plain job or a recipe server's job ends with both (and its grid row) in one statement.
    pub async fn finish_claimed_job(&self, job: &Job, outcome: &Outcome) -> Result<bool> {
        let ended = job.server_id.map(|server_id| {
            let (status, error) = outcome.status_and_error();
            let chunk = job_activity(job.id, &job.kind, &job.target, status, error.as_deref());
            (server_id, chunk)
        });
        self.finish_job_with(
            job.id,
            job.attempt,
            Some(&job.target),
            ended.as_ref(),
            outcome,
        )
        .await
    }

    async fn finish_job_with(
        &self,
        id: i64,
        attempt: i64,
        target: Option<&Option<JobTarget>>,
        announce: Option<&(i64, String)>,
        outcome: &Outcome,
    ) -> Result<bool> {
        if let (Some(Some(JobTarget::RecipeRun { id: run_id })), Backend::Postgres) =
            (target, self.backend)
        {
            return self
                .finish_recipe_job(id, attempt, *run_id, announce, outcome)
                .await;
        }
        let (status, error) = outcome.status_and_error();
        let result = match outcome {
            Outcome::Done(v) => Some(v.to_string()),
            _ => None,
        };
        let now = now_ms();
        let pg_announce = announce.filter(|_| self.backend == Backend::Postgres);
        // Fast path, one statement: a job with no record to settle. It also returns whether a job of the same
        // server waits for this one, so other nodes are woken only then. Skipped for a job known to have one.
        let plain = if matches!(target, Some(Some(_))) {
            None
        } else {
            let set = "UPDATE jobs SET status = $1, error = $2, result = $3, finished_at = $4, updated_at = $4, lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $5 AND attempt = $6 AND status = 'running' AND target_type IS NULL \
             RETURNING server_id, (SELECT COUNT(*) FROM jobs q WHERE q.server_id = jobs.server_id AND q.status = 'queued') AS waiting";
            let sql = match pg_announce {
                Some(_) => format!(
                    "WITH j AS ({set}), {} SELECT waiting FROM j",
                    announce_ctes("$7")
                ),
                None => set.to_string(),
            };
            let mut q = sqlx::query(&sql)
                .bind(status.as_str())
                .bind(error.clone())
                .bind(result.clone())
                .bind(now)
                .bind(id)
                .bind(attempt);
            if let Some((_, chunk)) = pg_announce {
                q = q.bind(chunk);
            }
            q.fetch_optional(&self.pool).await?
        };
        if let Some(row) = plain {
            match (announce, pg_announce) {
                (_, Some((server_id, _))) => {
                    let _ = self.activity.send(*server_id);
                }
                (Some((server_id, chunk)), None) => self.announce(*server_id, id, chunk).await?,
                (None, None) => {}
            }
            self.job_ended(&row).await?;
            return Ok(true);
        }
        if matches!(target, Some(None)) {
            // No record to settle and not running (any more): fenced out.
            return Ok(false);
        }
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE jobs SET status = $1, error = $2, result = $3, finished_at = $4, updated_at = $4, lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $5 AND attempt = $6 AND status = 'running' \
             RETURNING server_id, target_type, target_name, target_service_type, provision_type, \
             (SELECT COUNT(*) FROM jobs q WHERE q.server_id = jobs.server_id AND q.status = 'queued') AS waiting",
        )
        .bind(status.as_str())
        .bind(error.clone())
        .bind(result)
        .bind(now)
        .bind(id)
        .bind(attempt)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let (failure, exit_code) = match outcome {
            Outcome::Done(_) => (None, None),
            Outcome::Failed(e, code) => (Some(e.as_str()), *code),
            Outcome::Cancelled => (Some("cancelled"), None),
        };
        settle_target(
            &mut tx,
            id,
            row.try_get("server_id")?,
            &target_from(&row)?,
            failure,
            exit_code,
        )
        .await?;
        tx.commit().await?;
        if let Some((server_id, chunk)) = announce {
            self.announce(*server_id, id, chunk).await?;
        }
        self.job_ended(&row).await?;
        Ok(true)
    }

    /// A recipe server's job ends with its grid row (and its end in the activity feed) in one statement
    /// (PostgreSQL: data-modifying CTEs), the same ending [`settle_target`] writes in a transaction.
    async fn finish_recipe_job(
        &self,
        id: i64,
        attempt: i64,
        run_id: i64,
        announce: Option<&(i64, String)>,
        outcome: &Outcome,
    ) -> Result<bool> {
        let (status, error, result, failed, exit_code) = match outcome {
            Outcome::Done(v) => (JobStatus::Done, None, Some(v.to_string()), false, None),
            Outcome::Failed(e, code) => (JobStatus::Failed, Some(e.clone()), None, true, *code),
            Outcome::Cancelled => (
                JobStatus::Cancelled,
                Some("cancelled".to_string()),
                None,
                true,
                None,
            ),
        };
        let (state, exit_code) = run_row_ending(failed, exit_code);
        let feed = match announce {
            Some(_) => format!(", {}", announce_ctes("$10")),
            None => String::new(),
        };
        let sql = format!(
            "WITH j AS (UPDATE jobs SET status = $1, error = $2, result = $3, finished_at = $4, updated_at = $4, \
             lease_owner = NULL, lease_expires_at = NULL WHERE id = $5 AND attempt = $6 AND status = 'running' \
             RETURNING server_id, started_at, \
             (SELECT COUNT(*) FROM jobs q WHERE q.server_id = jobs.server_id AND q.status = 'queued') AS waiting), \
             r AS (UPDATE recipe_run_servers SET state = $7, exit_code = $8, duration_ms = $4 - j.started_at \
             FROM j WHERE recipe_run_servers.run_id = $9 AND recipe_run_servers.server_id = j.server_id \
             AND recipe_run_servers.job_id = $5){feed} \
             SELECT waiting FROM j"
        );
        let mut q = sqlx::query(&sql)
            .bind(status.as_str())
            .bind(error)
            .bind(result)
            .bind(now_ms())
            .bind(id)
            .bind(attempt)
            .bind(state)
            .bind(exit_code)
            .bind(run_id);
        if let Some((_, chunk)) = announce {
            q = q.bind(chunk);
        }
        let Some(row) = q.fetch_optional(&self.pool).await? else {
            return Ok(false);
        };
        if let Some((server_id, _)) = announce {
            let _ = self.activity.send(*server_id);
        }
        self.job_ended(&row).await?;
        Ok(true)
    }

    /// The job's end in its server's activity feed (after a transaction that recorded it).
    async fn announce(&self, server_id: i64, job_id: i64, chunk: &str) -> Result<()> {
        self.append_activity(server_id, Some(job_id), None, LogStream::Job, chunk, None)
            .await?;
        let _ = self.activity.send(server_id);
        Ok(())
    }

    /// After a job's end is recorded: wake whoever waits on results, and workers when a job of the same
    /// server waits (`row`'s `waiting` count), so other nodes are woken only then.
    async fn job_ended(&self, row: &AnyRow) -> Result<()> {
        self.finished_notify.notify_waiters();
        if row.try_get::<i64, _>("waiting")? > 0 {
            self.wake_workers().await?;
        }
        Ok(())
    }

    /// Put a running job back in the queue (a retry after `delay`, or a graceful shutdown), fenced by attempt.
    pub async fn requeue_job(
        &self,
        id: i64,
        attempt: i64,
        delay: Duration,
        error: Option<&str>,
    ) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', run_at = $1, error = $2, lease_owner = NULL, lease_expires_at = NULL, updated_at = $3 \
             WHERE id = $4 AND attempt = $5 AND status = 'running'",
        )
        .bind(now + delay.as_millis() as i64)
        .bind(error.map(str::to_string))
        .bind(now)
        .bind(id)
        .bind(attempt)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            self.wake_workers().await?;
        }
        Ok(done.rows_affected() == 1)
    }

    /// Cancel a job: a queued one at once, a running one at its next heartbeat. Returns the job afterwards.
    pub async fn cancel_job(&self, id: i64) -> Result<Job> {
        let now = now_ms();
        // A queued job never ran: its record (a site or deployment created with it) is settled here.
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE jobs SET status = 'cancelled', error = 'cancelled', finished_at = $1, updated_at = $1 WHERE id = $2 AND status = 'queued' \
             RETURNING server_id, target_type, target_name, target_service_type, provision_type",
        )
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            // Only records made for this job (a new site, a deployment) change; an installed service or
            // site whose re-run or removal was cancelled stays as it was.
            let target = target_from(&row)?;
            if matches!(
                target,
                Some(JobTarget::Deployment { .. })
                    | Some(JobTarget::RecipeRun { .. })
                    | Some(JobTarget::Site {
                        provision_type: ProvisionType::Install,
                        ..
                    })
            ) {
                settle_target(
                    &mut tx,
                    id,
                    row.try_get("server_id")?,
                    &target,
                    Some("cancelled"),
                    None,
                )
                .await?;
            }
        }
        tx.commit().await?;
        sqlx::query("UPDATE jobs SET cancel_requested = 1, updated_at = $1 WHERE id = $2 AND status = 'running'")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.job(id).await
    }

    /// The soonest `run_at` of a queued job, or of a lease expiry, so an idle worker knows when to look again.
    pub async fn next_job_wakeup(&self) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(t) AS t FROM (SELECT MIN(run_at) AS t FROM jobs WHERE status = 'queued' \
             UNION ALL SELECT MIN(lease_expires_at) AS t FROM jobs WHERE status = 'running') x",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>("t")?)
    }

    pub async fn job(&self, id: i64) -> Result<Job> {
        let row = sqlx::query(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("job {id}")))?;
        job_from(&row)
    }

    pub async fn jobs_for_server(&self, server_id: i64) -> Result<Vec<Job>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE server_id = $1 ORDER BY id"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from).collect()
    }

    /// The server's newest jobs first, at most `limit`.
    pub async fn recent_jobs(&self, server_id: i64, limit: i64) -> Result<Vec<Job>> {
        self.jobs_before(server_id, i64::MAX, limit).await
    }

    /// A page of a server's jobs older than `before_id`, newest first.
    pub async fn jobs_before(
        &self,
        server_id: i64,
        before_id: i64,
        limit: i64,
    ) -> Result<Vec<Job>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE server_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        ))
        .bind(server_id)
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from).collect()
    }

    /// The server's queued and running jobs, oldest first.
    pub async fn unfinished_jobs(&self, server_id: i64) -> Result<Vec<Job>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE server_id = $1 AND status IN ('queued', 'running') ORDER BY id"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from).collect()
    }

    /// Jobs that are done, failed or cancelled.
    pub async fn count_finished_jobs(&self) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM jobs WHERE status IN ('done', 'failed', 'cancelled')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    pub async fn count_jobs(&self, status: JobStatus) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE status = $1")
            .bind(status.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Enqueue a fresh copy of a finished job (the user's retry), keeping the old one as history.
    pub async fn retry_job(&self, id: i64) -> Result<Job> {
        let old = self.job(id).await?;
        if !matches!(old.status, JobStatus::Failed | JobStatus::Cancelled) {
            return Err(StoreError::Conflict(format!(
                "job {id} is {}: only failed or cancelled jobs can be retried",
                old.status.as_str()
            )));
        }
        self.enqueue(&NewJob {
            kind: old.kind,
            server_id: old.server_id,
            payload: old.payload,
            target: old.target,
            delay: Duration::ZERO,
            max_attempts: old.max_attempts,
        })
        .await
    }
}

impl Store {
    /// Whether notifications from other nodes reach this one now (PostgreSQL's job listener is subscribed).
    pub fn listening_for_jobs(&self) -> bool {
        self.jobs_listening.load(Ordering::SeqCst)
    }

    /// On PostgreSQL, forward `NOTIFY brokeforge_jobs` from other nodes to this process's workers.
    /// Reconnects on errors; ends when the returned handle is aborted.
    pub fn spawn_job_listener(&self) -> Option<tokio::task::JoinHandle<()>> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let store = self.clone();
        Some(tokio::spawn(async move {
            loop {
                match sqlx::postgres::PgListener::connect(&store.url).await {
                    Ok(mut listener) => {
                        if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
                            tracing::warn!(error = %e, "cannot LISTEN for jobs");
                        } else {
                            store.jobs_listening.store(true, Ordering::SeqCst);
                            // A reconnect may have missed notifications: wake everyone once.
                            store.jobs_notify.notify_waiters();
                            while listener.recv().await.is_ok() {
                                store.jobs_notify.notify_waiters();
                            }
                            store.jobs_listening.store(false, Ordering::SeqCst);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot connect the job listener"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    }
}
