//! Bounded history: output, progress events, finished jobs and site commands are kept for a number of days
//! and, per server, up to a number of rows; older ones are deleted in small batches so that no statement
//! holds the database for long. Ids grow with time, so "the oldest rows" are the first ones by id: every
//! statement here walks a primary key or the `(server_id, id)` indexes, never a whole table.

use sqlx::Row;

use crate::{Result, Store};

/// The tables whose rows expire by age: (table, its time column, whether only finished jobs may go).
const BY_AGE: [(&str, &str, bool); 4] = [
    ("command_logs", "created_at", false),
    ("provision_events", "created_at", false),
    ("site_commands", "ran_at", false),
    ("jobs", "created_at", true),
];

/// What one pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub log_lines: u64,
    pub events: u64,
    pub site_commands: u64,
    pub jobs: u64,
}

impl Removed {
    pub fn total(&self) -> u64 {
        self.log_lines + self.events + self.site_commands + self.jobs
    }
}

impl std::ops::AddAssign for Removed {
    fn add_assign(&mut self, o: Removed) {
        self.log_lines += o.log_lines;
        self.events += o.events;
        self.site_commands += o.site_commands;
        self.jobs += o.jobs;
    }
}

impl Store {
    /// Delete up to `batch` rows of each history table created before `before_ms` (jobs: finished ones).
    pub async fn prune_history_before(&self, before_ms: i64, batch: i64) -> Result<Removed> {
        let mut out = Removed::default();
        for (table, time, finished_only) in BY_AGE {
            let extra = if finished_only { ", status" } else { "" };
            // The oldest rows by id: the ones that may have expired.
            let rows = sqlx::query(&format!(
                "SELECT id, {time} AS t{extra} FROM {table} ORDER BY id LIMIT $1"
            ))
            .bind(batch)
            .fetch_all(&self.pool)
            .await?;
            let mut ids = Vec::new();
            for row in &rows {
                let created: i64 = row.try_get("t")?;
                if created >= before_ms {
                    break;
                }
                if finished_only {
                    let status: String = row.try_get("status")?;
                    if !matches!(status.as_str(), "done" | "failed" | "cancelled") {
                        continue;
                    }
                }
                ids.push(row.try_get::<i64, _>("id")?);
            }
            let n = self.delete_ids(table, &ids).await?;
            match table {
                "command_logs" => out.log_lines += n,
                "provision_events" => out.events += n,
                "site_commands" => out.site_commands += n,
                _ => out.jobs += n,
            }
        }
        Ok(out)
    }

    /// Keep only the newest `keep_log_lines` output rows and `keep_events` events of `server_id`; deletes at
    /// most `batch` rows of each per call (call again while it removes a full batch).
    pub async fn prune_server_history(
        &self,
        server_id: i64,
        keep_log_lines: i64,
        keep_events: i64,
        batch: i64,
    ) -> Result<Removed> {
        let mut out = Removed::default();
        for (table, keep) in [
            ("command_logs", keep_log_lines),
            ("provision_events", keep_events),
        ] {
            // The id of the newest row past the limit (an index walk of `keep` entries).
            let edge = sqlx::query(&format!(
                "SELECT id FROM {table} WHERE server_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2"
            ))
            .bind(server_id)
            .bind(keep)
            .fetch_optional(&self.pool)
            .await?;
            let Some(edge) = edge else { continue };
            let edge: i64 = edge.try_get("id")?;
            let done = sqlx::query(&format!(
                "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE server_id = $1 AND id <= $2 ORDER BY id LIMIT $3)"
            ))
            .bind(server_id)
            .bind(edge)
            .bind(batch)
            .execute(&self.pool)
            .await?;
            match table {
                "command_logs" => out.log_lines += done.rows_affected(),
                _ => out.events += done.rows_affected(),
            }
        }
        Ok(out)
    }

    /// Ids of servers after `after_id`, in order (to walk every server a few at a time).
    pub async fn server_ids_after(&self, after_id: i64, limit: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT id FROM servers WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>("id").map_err(Into::into))
            .collect()
    }

    async fn delete_ids(&self, table: &str, ids: &[i64]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        // Ids from our own query, joined as numbers: nothing to quote.
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let done = sqlx::query(&format!("DELETE FROM {table} WHERE id IN ({list})"))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
