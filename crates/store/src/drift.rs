//! Drift: the items a user manages by hand, the newest check of a server, and which servers are due one.

use brokeforge_core::time::now_ms;
use sqlx::Row;

use crate::jobs::{JOB_COLS, Job, job_from};
use crate::{Result, Store};

impl Store {
    /// The items of a server marked "managed by hand", sorted.
    pub async fn drift_by_hand(&self, server_id: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT item FROM drift_by_hand WHERE server_id = $1 ORDER BY item")
            .bind(server_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("item")?))
            .collect()
    }

    /// Mark or unmark an item as managed by hand.
    pub async fn set_drift_by_hand(&self, server_id: i64, item: &str, by_hand: bool) -> Result<()> {
        if by_hand {
            sqlx::query(
                "INSERT INTO drift_by_hand (server_id, item, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(server_id)
            .bind(item)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        } else {
            sqlx::query("DELETE FROM drift_by_hand WHERE server_id = $1 AND item = $2")
                .bind(server_id)
                .bind(item)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// The server's newest finished job of `kind` that succeeded.
    pub async fn latest_done_job(&self, server_id: i64, kind: &str) -> Result<Option<Job>> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE server_id = $1 AND kind = $2 AND status = 'done' ORDER BY id DESC LIMIT 1"
        ))
        .bind(server_id)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from).transpose()
    }

    /// Provisioned servers added before `since_ms` with no job of `kind` created since then (at most `limit`,
    /// oldest ids first): a new server's first scheduled check comes one period after it was added.
    pub async fn servers_without_recent_job(
        &self,
        kind: &str,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT s.id FROM servers s WHERE s.provision_status = 'provisioned' AND s.created_at < $2 AND NOT EXISTS \
             (SELECT 1 FROM jobs j WHERE j.server_id = s.id AND j.kind = $1 AND j.created_at >= $2) \
             ORDER BY s.id LIMIT $3",
        )
        .bind(kind)
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<i64, _>("id")?))
            .collect()
    }
}
