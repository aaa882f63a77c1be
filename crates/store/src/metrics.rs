//! Metrics: each server's collector (known by the hash of its ingest token), the samples it pushes, and
//! their rollups (min/avg/max per 10 minutes and per hour).

use brokeforge_core::time::now_ms;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store};

fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

#[derive(Debug, Clone, Serialize)]
pub struct MonitoringAgent {
    pub server_id: i64,
    pub interval_secs: i64,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub last_seen_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Sample {
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub at: i64,
    pub value: f64,
}

/// A row with `at` and `value` columns.
fn sample_from(r: &AnyRow) -> Result<Sample> {
    Ok(Sample {
        at: r.try_get("at")?,
        value: r.try_get("value")?,
    })
}

fn agent_from(r: &AnyRow) -> Result<MonitoringAgent> {
    Ok(MonitoringAgent {
        server_id: r.try_get("server_id")?,
        interval_secs: r.try_get("interval_secs")?,
        created_at: r.try_get("created_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
    })
}

const AGENT_COLS: &str = "server_id, interval_secs, created_at, last_seen_at";

impl Store {
    /// Register (or replace) a server's collector; only the token's hash is kept.
    pub async fn put_monitoring_agent(
        &self,
        server_id: i64,
        token: &str,
        interval_secs: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM monitoring_agents WHERE server_id = $1")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO monitoring_agents (server_id, token_hash, interval_secs, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(server_id)
        .bind(token_hash(token))
        .bind(interval_secs)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revoke a server's collector token (the package's removal).
    pub async fn delete_monitoring_agent(&self, server_id: i64) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM monitoring_agents WHERE server_id = $1")
                .bind(server_id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    pub async fn monitoring_agent(&self, server_id: i64) -> Result<Option<MonitoringAgent>> {
        let row = sqlx::query(&format!(
            "SELECT {AGENT_COLS} FROM monitoring_agents WHERE server_id = $1"
        ))
        .bind(server_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(agent_from).transpose()
    }

    pub async fn monitoring_agents(&self) -> Result<Vec<MonitoringAgent>> {
        let rows = sqlx::query(&format!("SELECT {AGENT_COLS} FROM monitoring_agents"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(agent_from).collect()
    }

    /// The collectors of these servers (one statement; the dashboard asks for a page of servers).
    pub async fn monitoring_agents_of(&self, server_ids: &[i64]) -> Result<Vec<MonitoringAgent>> {
        if server_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT {AGENT_COLS} FROM monitoring_agents WHERE server_id IN ({})",
            crate::id_list(server_ids)
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(agent_from).collect()
    }

    /// Store one report of a collector, found by its token: all samples in one statement (a report is
    /// a few dozen rows, and a thousand servers report every minute). `None`: no collector has the token.
    pub async fn ingest_samples(
        &self,
        token: &str,
        samples: &[(String, f64)],
    ) -> Result<Option<i64>> {
        let at = now_ms();
        // The write comes first: a SQLite transaction that starts with a read cannot upgrade under load.
        let row = sqlx::query(
            "UPDATE monitoring_agents SET last_seen_at = $1 WHERE token_hash = $2 RETURNING server_id",
        )
        .bind(at)
        .bind(token_hash(token))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let server_id: i64 = row.try_get("server_id")?;
        self.put_samples(server_id, at, samples).await?;
        Ok(Some(server_id))
    }

    /// Store samples of one report taken at `at` (ms): one statement per 200 rows.
    pub async fn put_samples(
        &self,
        server_id: i64,
        at: i64,
        samples: &[(String, f64)],
    ) -> Result<()> {
        // Bounded statements: 4 parameters a row, well under SQLite's and PostgreSQL's limits.
        for chunk in samples.chunks(200) {
            let mut sql =
                String::from("INSERT INTO metric_samples (server_id, metric, at, value) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let b = i * 4;
                sql.push_str(&format!("(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4));
            }
            // Two reports of a server in the same millisecond: the first one's sample stays.
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut q = sqlx::query(&sql);
            for (metric, value) in chunk {
                q = q
                    .bind(server_id)
                    .bind(metric.as_str())
                    .bind(at)
                    .bind(*value);
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// A series' samples in `[since, until)`, oldest first.
    pub async fn samples(
        &self,
        server_id: i64,
        metric: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<Sample>> {
        let rows = sqlx::query(
            "SELECT at, value FROM metric_samples WHERE server_id = $1 AND metric = $2 AND at >= $3 AND at < $4 ORDER BY at",
        )
        .bind(server_id)
        .bind(metric)
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sample_from).collect()
    }

    /// One metric of several servers since `since`, oldest first: (server, sample). For the fleet view: one
    /// statement for a page of servers, each an index range.
    pub async fn samples_of(
        &self,
        server_ids: &[i64],
        metric: &str,
        since: i64,
    ) -> Result<Vec<(i64, Sample)>> {
        if server_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT server_id, at, value FROM metric_samples WHERE server_id IN ({}) AND metric = $1 AND at >= $2 \
             ORDER BY server_id, at",
            crate::id_list(server_ids)
        ))
        .bind(metric)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("server_id")?, sample_from(r)?)))
            .collect()
    }

    /// The newest sample of one series (an index lookup).
    pub async fn latest_sample(&self, server_id: i64, metric: &str) -> Result<Option<Sample>> {
        let row = sqlx::query(
            "SELECT at, value FROM metric_samples WHERE server_id = $1 AND metric = $2 ORDER BY at DESC LIMIT 1",
        )
        .bind(server_id)
        .bind(metric)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(sample_from).transpose()
    }

    /// The newest sample of each of a server's metrics reported since `since` (ms), by name.
    pub async fn latest_samples(
        &self,
        server_id: i64,
        since: i64,
    ) -> Result<Vec<(String, Sample)>> {
        let rows = sqlx::query(
            "SELECT metric, at, value FROM metric_samples WHERE server_id = $1 AND at >= $2 ORDER BY metric, at",
        )
        .bind(server_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(String, Sample)> = Vec::new();
        for r in &rows {
            let metric: String = r.try_get("metric")?;
            let sample = Sample {
                at: r.try_get("at")?,
                value: r.try_get("value")?,
            };
            match out.last_mut() {
                Some((m, s)) if *m == metric => *s = sample,
                _ => out.push((metric, sample)),
            }
        }
        Ok(out)
    }

    /// Delete up to `batch` samples older than `before_ms`; how many went.
    pub async fn prune_samples_before(&self, before_ms: i64, batch: i64) -> Result<u64> {
        // Walk the time index: the oldest rows only, a bounded batch per statement.
        let row = sqlx::query(
            "SELECT at FROM metric_samples WHERE at < $1 ORDER BY at LIMIT 1 OFFSET $2",
        )
        .bind(before_ms)
        .bind(batch - 1)
        .fetch_optional(&self.pool)
        .await?;
        let upto = match row {
            Some(r) => r.try_get::<i64, _>("at")?,
            None => before_ms - 1,
        };
        Ok(
            sqlx::query("DELETE FROM metric_samples WHERE at <= $1 AND at < $2")
                .bind(upto)
                .bind(before_ms)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// Roll samples up into `resolution` buckets (600: from the raw samples; 3600: from the 600 ones), for
    /// whole buckets before `upto`, at most `window_ms` per call; the number of rollup rows written. Safe to
    /// run on several nodes at once (buckets are written once; progress only moves forward).
    pub async fn roll_up(&self, resolution: i64, upto: i64, window_ms: i64) -> Result<u64> {
        let step = resolution * 1000;
        let upto = upto.div_euclid(step) * step;
        let (source, oldest) = if resolution == 600 {
            (
                "metric_samples",
                "SELECT MIN(at) AS t FROM metric_samples".to_string(),
            )
        } else {
            (
                "metric_rollups",
                "SELECT MIN(at) AS t FROM metric_rollups WHERE resolution = 600".to_string(),
            )
        };
        let done: Option<i64> =
            sqlx::query("SELECT done_until FROM metric_rollup_progress WHERE resolution = $1")
                .bind(resolution)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get("done_until"))
                .transpose()?;
        let from = match done {
            Some(d) => d,
            None => match sqlx::query(&oldest)
                .fetch_one(&self.pool)
                .await?
                .try_get::<Option<i64>, _>("t")?
            {
                Some(t) => t.div_euclid(step) * step,
                None => return Ok(0),
            },
        };
        let to = upto.min(from + window_ms.max(step) / step * step);
        if to <= from {
            return Ok(0);
        }
        let select = if source == "metric_samples" {
            format!(
                "SELECT server_id, metric, {resolution}, (at / {step}) * {step}, MIN(value), AVG(value), MAX(value), COUNT(*) \
                 FROM metric_samples WHERE at >= $1 AND at < $2 GROUP BY server_id, metric, (at / {step}) * {step}"
            )
        } else {
            format!(
                "SELECT server_id, metric, {resolution}, (at / {step}) * {step}, MIN(min_value), \
                 SUM(avg_value * samples) / CAST(SUM(samples) AS DOUBLE PRECISION), MAX(max_value), \
                 CAST(SUM(samples) AS BIGINT) \
                 FROM metric_rollups WHERE resolution = 600 AND at >= $1 AND at < $2 \
                 GROUP BY server_id, metric, (at / {step}) * {step}"
            )
        };
        let mut tx = self.pool.begin().await?;
        let written = sqlx::query(&format!(
            "INSERT INTO metric_rollups (server_id, metric, resolution, at, min_value, avg_value, max_value, samples) \
             {select} ON CONFLICT DO NOTHING"
        ))
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO metric_rollup_progress (resolution, done_until) VALUES ($1, $2) \
             ON CONFLICT (resolution) DO UPDATE SET done_until = excluded.done_until \
             WHERE metric_rollup_progress.done_until < excluded.done_until",
        )
        .bind(resolution)
        .bind(to)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // Nothing in the window but more to do: the caller asks again.
        Ok(written.max(u64::from(to < upto)))
    }

    /// Up to when `resolution` is rolled up (ms).
    pub async fn rolled_up_until(&self, resolution: i64) -> Result<Option<i64>> {
        Ok(
            sqlx::query("SELECT done_until FROM metric_rollup_progress WHERE resolution = $1")
                .bind(resolution)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get("done_until"))
                .transpose()?,
        )
    }

    /// A series' rollups at `resolution` in `[since, until)` as (bucket start, average), oldest first.
    pub async fn rollups(
        &self,
        server_id: i64,
        metric: &str,
        resolution: i64,
        since: i64,
        until: i64,
    ) -> Result<Vec<Sample>> {
        let rows = sqlx::query(
            "SELECT at, avg_value AS value FROM metric_rollups WHERE server_id = $1 AND metric = $2 AND resolution = $3 \
             AND at >= $4 AND at < $5 ORDER BY at",
        )
        .bind(server_id)
        .bind(metric)
        .bind(resolution)
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sample_from).collect()
    }

    /// Delete rollups of `resolution` older than `before_ms`, an hour of buckets per statement.
    pub async fn prune_rollups_before(&self, resolution: i64, before_ms: i64) -> Result<u64> {
        let oldest: Option<i64> =
            sqlx::query("SELECT MIN(at) AS t FROM metric_rollups WHERE resolution = $1")
                .bind(resolution)
                .fetch_one(&self.pool)
                .await?
                .try_get("t")?;
        let Some(oldest) = oldest.filter(|t| *t < before_ms) else {
            return Ok(0);
        };
        Ok(
            sqlx::query("DELETE FROM metric_rollups WHERE resolution = $1 AND at < $2")
                .bind(resolution)
                .bind(before_ms.min(oldest + 3_600_000 * (resolution / 600)))
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}
