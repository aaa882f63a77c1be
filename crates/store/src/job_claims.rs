//! Claiming jobs: the oldest due job of each server that has nothing running, leased to one worker, on the
//! claims connection (one statement for many on either backend).

use std::time::Duration;

use brokeforge_core::time::now_ms;

use crate::jobs::{JOB_COLS, Job, job_from};
use crate::{Backend, Result, Store, is_unique_violation};

impl Store {
    /// Claim the oldest due job whose server has nothing running, for `lease`.
    pub async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<Job>> {
        let mut conn = self.claims.acquire().await?;
        self.claim_on(&mut conn, worker, lease).await
    }

    /// Claim up to `n` jobs on the claims connection: as many as one statement finds, what was due then. Only
    /// when that statement lost a race for a server to another node (or `n` is 1) does it go one at a time
    /// (each claim commits on its own). Looking again after it costs a round trip per turn of a wave that
    /// finds nothing (#17): jobs queued meanwhile wake the worker, and a job the statement left (more than
    /// `4n` due rows of a few servers) is claimed at the next turn, which the jobs it claimed bring.
    pub async fn claim_up_to(&self, worker: &str, lease: Duration, n: usize) -> Result<Vec<Job>> {
        let mut conn = self.claims.acquire().await?;
        let mut out = Vec::new();
        if n > 1
            && let Some(jobs) = self.claim_many(&mut conn, worker, lease, n).await?
        {
            return Ok(jobs);
        }
        while out.len() < n {
            match self.claim_on(&mut conn, worker, lease).await? {
                Some(job) => out.push(job),
                None => break,
            }
        }
        Ok(out)
    }

    /// Up to `n` due jobs of different servers with nothing running, in one statement: while a wave of jobs
    /// starts, every round trip to the database waits for CPU behind the SSH handshakes (and on SQLite every
    /// commit waits for the writer), so a hundred claims one by one took seconds. Rows are picked from the
    /// oldest `4n` queued (on PostgreSQL locked, skipping those another node is claiming); one job per
    /// server. Losing a race for a server to another node (the unique index) claims nothing here (`None`),
    /// and the one-by-one path goes on.
    async fn claim_many(
        &self,
        conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
        worker: &str,
        lease: Duration,
        n: usize,
    ) -> Result<Option<Vec<Job>>> {
        let due = "SELECT j.id, j.server_id, j.run_at FROM jobs j WHERE j.status = 'queued' AND j.run_at <= $3 \
               AND (j.server_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs r WHERE r.server_id = j.server_id AND r.status = 'running')) \
               ORDER BY j.run_at, j.id LIMIT $5";
        let set = "UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_owner = $1, lease_expires_at = $2, \
             started_at = COALESCE(started_at, $3), updated_at = $3";
        // PostgreSQL allows no row lock beside DISTINCT ON or a window, hence the CTE; SQLite has one writer.
        let sql = match self.backend {
            Backend::Postgres => format!(
                "WITH due AS ({due} FOR UPDATE SKIP LOCKED), \
                 pick AS (SELECT id FROM (SELECT DISTINCT ON (COALESCE(server_id, -id)) id, run_at FROM due \
                   ORDER BY COALESCE(server_id, -id), run_at, id) d ORDER BY run_at, id LIMIT $4) \
                 {set} WHERE id IN (SELECT id FROM pick) AND status = 'queued' RETURNING {JOB_COLS}"
            ),
            Backend::Sqlite => format!(
                "{set} WHERE id IN (SELECT id FROM (SELECT id, run_at, ROW_NUMBER() OVER \
                   (PARTITION BY COALESCE(server_id, -id) ORDER BY run_at, id) AS rn FROM ({due}) d) c \
                   WHERE rn = 1 ORDER BY run_at, id LIMIT $4) AND status = 'queued' RETURNING {JOB_COLS}"
            ),
        };
        let now = now_ms();
        let rows = sqlx::query(&sql)
            .bind(worker)
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .bind(n as i64)
            .bind((n * 4) as i64)
            .fetch_all(&mut **conn)
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) if is_unique_violation(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut jobs = rows.iter().map(job_from).collect::<Result<Vec<_>>>()?;
        jobs.sort_by_key(|j| (j.run_at, j.id));
        Ok(Some(jobs))
    }

    async fn claim_on(
        &self,
        conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Job>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_owner = $1, lease_expires_at = $2, \
             started_at = COALESCE(started_at, $3), updated_at = $3 \
             WHERE id = (SELECT j.id FROM jobs j WHERE j.status = 'queued' AND j.run_at <= $3 \
               AND (j.server_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs r WHERE r.server_id = j.server_id AND r.status = 'running')) \
               ORDER BY j.run_at, j.id LIMIT 1{lock}) \
             AND status = 'queued' RETURNING {JOB_COLS}"
        );
        // On PostgreSQL the claim commits without waiting for its WAL flush (the progress pool): if the
        // database crashes and loses it, the job is simply queued again, and the worker that held it is fenced
        // out at its next heartbeat, exactly as after a lost worker. Finishing a job stays fully durable.
        // A lost race for a server (the unique index said no) just means: try again.
        for _ in 0..8 {
            let now = now_ms();
            match sqlx::query(&sql)
                .bind(worker)
                .bind(now + lease.as_millis() as i64)
                .bind(now)
                .fetch_optional(&mut **conn)
                .await
            {
                Ok(row) => return row.as_ref().map(job_from).transpose(),
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }
}
