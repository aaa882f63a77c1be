//! The audit log: appended to, read with filters, pruned by retention; there is no way to change an entry.

use brokeforge_core::time::now_ms;
use serde::Serialize;
use sqlx::Row;

use crate::{Result, Store, like_escape};

#[derive(Debug, Clone, Default)]
pub struct NewAuditEntry {
    pub user_id: Option<i64>,
    /// `ops@example.com`, `ops@example.com (token ci)`, `webhook`, `schedule`.
    pub actor: String,
    pub ip: String,
    pub user_agent: String,
    pub action: String,
    pub target: String,
    pub server_id: Option<i64>,
    pub status: i64,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub at: i64,
    pub user_id: Option<i64>,
    pub actor: String,
    pub ip: String,
    pub user_agent: String,
    pub action: String,
    pub target: String,
    pub server_id: Option<i64>,
    pub status: i64,
    pub summary: String,
}

/// What to read: newest first, before `before` (an id), at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only what this user may see: their own actions and those on their servers (`None`: everything).
    pub visible_to: Option<i64>,
    pub user_id: Option<i64>,
    pub server_id: Option<i64>,
    /// Entries about the servers of this team.
    pub team_id: Option<i64>,
    /// Entries whose action contains this text.
    pub action: Option<String>,
    pub since: Option<i64>,
    pub before: Option<i64>,
    pub limit: i64,
}

impl Store {
    pub async fn append_audit(&self, e: &NewAuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, user_id, actor, ip, user_agent, action, target, server_id, status, summary) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(now_ms())
        .bind(e.user_id)
        .bind(&e.actor)
        .bind(&e.ip)
        .bind(&e.user_agent)
        .bind(&e.action)
        .bind(&e.target)
        .bind(e.server_id)
        .bind(e.status)
        .bind(&e.summary)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn audit_page(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        // Each condition is switched off by a NULL parameter, so one statement serves every filter.
        let rows = sqlx::query(
            "SELECT id, at, user_id, actor, ip, user_agent, action, target, server_id, status, summary FROM audit_log a \
             WHERE ($1 IS NULL OR a.user_id = $1 OR a.server_id IN (SELECT s.id FROM servers s JOIN team_members m ON m.team_id = s.team_id WHERE m.user_id = $1)) \
               AND ($2 IS NULL OR a.user_id = $2) AND ($3 IS NULL OR a.server_id = $3) \
               AND ($4 IS NULL OR a.action LIKE $4 ESCAPE '\\') AND ($5 IS NULL OR a.at >= $5) AND ($6 IS NULL OR a.id < $6) \
               AND ($8 IS NULL OR a.server_id IN (SELECT t.id FROM servers t WHERE t.team_id = $8)) \
             ORDER BY a.id DESC LIMIT $7",
        )
        .bind(f.visible_to)
        .bind(f.user_id)
        .bind(f.server_id)
        .bind(f.action.as_ref().map(|a| format!("%{}%", like_escape(a))))
        .bind(f.since)
        .bind(f.before)
        .bind(f.limit)
        .bind(f.team_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    user_id: r.try_get("user_id")?,
                    actor: r.try_get("actor")?,
                    ip: r.try_get("ip")?,
                    user_agent: r.try_get("user_agent")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    server_id: r.try_get("server_id")?,
                    status: r.try_get("status")?,
                    summary: r.try_get("summary")?,
                })
            })
            .collect()
    }

    /// Retention: entries older than `before_ms` go, in batches.
    pub async fn prune_audit_before(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 ORDER BY id LIMIT 5000)",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
