//! Queue health and crash recovery: how the queue stands, and jobs whose worker died (their lease expired).

use brokeforge_core::time::now_ms;
use sqlx::Row;

use crate::job_targets::settle_target;
use crate::jobs::{JOB_COLS, Recovered, job_from};
use crate::{Result, Store};

impl Store {
    /// How many jobs wait in the queue, how many run, and how many run under a lease that expired more than
    /// `grace_ms` ago (no worker recovers them: none is running).
    pub async fn queue_health(&self, now: i64, grace_ms: i64) -> Result<(i64, i64, i64)> {
        let row = sqlx::query(
            "SELECT \
               COALESCE(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), 0) AS queued, \
               COALESCE(SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END), 0) AS running, \
               COALESCE(SUM(CASE WHEN status = 'running' AND lease_expires_at < $1 THEN 1 ELSE 0 END), 0) AS stale \
             FROM jobs WHERE status IN ('queued', 'running')",
        )
        .bind(now - grace_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok((
            row.try_get("queued")?,
            row.try_get("running")?,
            row.try_get("stale")?,
        ))
    }

    /// Running jobs whose lease expired (their worker died): requeue them while attempts remain under
    /// `resume_limit`, otherwise fail them with the reason.
    /// `resumable(kind)` says whether a job of that kind may start again after its worker was lost (an
    /// idempotent installer may; a site command or a deployment that may have partly run may not).
    pub async fn recover_expired_jobs(
        &self,
        resume_limit: i64,
        resumable: impl Fn(&str) -> bool,
    ) -> Result<Vec<Recovered>> {
        let now = now_ms();
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE status = 'running' AND lease_expires_at < $1 ORDER BY id"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in rows {
            let job = job_from(&row)?;
            let reason = format!(
                "the worker running attempt {} stopped responding (lease expired{})",
                job.attempt,
                job.lease_owner
                    .as_deref()
                    .map(|w| format!(", worker {w}"))
                    .unwrap_or_default()
            );
            let may_resume = resumable(&job.kind);
            let (status, fin) = if may_resume && job.attempt < resume_limit && !job.cancel_requested
            {
                ("queued", None)
            } else {
                ("failed", Some(now))
            };
            let error = if status == "failed" && job.cancel_requested {
                "cancelled (the worker stopped responding)".to_string()
            } else if !may_resume {
                format!(
                    "{reason}; not started again by itself, as it may have partly run: check the server, then run it again"
                )
            } else if status == "failed" {
                format!("{reason}; gave up after {} attempts", job.attempt)
            } else {
                reason
            };
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(
                "UPDATE jobs SET status = $1, error = $2, finished_at = $3, lease_owner = NULL, lease_expires_at = NULL, updated_at = $4 \
                 WHERE id = $5 AND attempt = $6 AND status = 'running' AND lease_expires_at < $4",
            )
            .bind(status)
            .bind(&error)
            .bind(fin)
            .bind(now)
            .bind(job.id)
            .bind(job.attempt)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 && status == "failed" {
                settle_target(
                    &mut tx,
                    job.id,
                    job.server_id,
                    &job.target,
                    Some(&error),
                    None,
                )
                .await?;
            }
            tx.commit().await?;
            if done.rows_affected() == 1 {
                let job = self.job(job.id).await?;
                out.push(if status == "queued" {
                    Recovered::Requeued(job)
                } else {
                    Recovered::Failed(job)
                });
            }
        }
        if out.iter().any(|r| matches!(r, Recovered::Requeued(_))) {
            self.wake_workers().await?;
        }
        Ok(out)
    }
}
