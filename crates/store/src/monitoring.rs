//! Monitoring's rules and messages: site checks, notification channels (per team; what they need to send
//! is sealed), alert rules (per server) and the log of deliveries. The samples are in `metrics.rs`.

use brokeforge_core::Secret;
use brokeforge_core::time::now_ms;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, is_unique_violation};

/// An HTTP check of a site, run by BrokeForge.
#[derive(Debug, Clone, Serialize)]
pub struct SiteCheck {
    pub id: i64,
    pub site_id: i64,
    pub server_id: i64,
    pub path: String,
    pub expect_status: i64,
    pub interval_secs: i64,
    pub timeout_secs: i64,
    /// After each deploy: off | fail | rollback.
    pub after_deploy: String,
    /// unknown | ok | failing
    pub state: String,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub next_check_at: i64,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub last_checked_at: Option<i64>,
    pub last_status: Option<i64>,
    pub last_ms: Option<i64>,
    pub last_error: Option<String>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
}

/// How a check's stored path says it goes to `https://DOMAIN` rather than to the server's address.
const HTTPS_PREFIX: &str = "https:";

/// Where a check's stored path sends it: (to `https://DOMAIN`, the path). Read through this only.
pub fn check_target(stored: &str) -> (bool, &str) {
    match stored.strip_prefix(HTTPS_PREFIX) {
        Some(path) => (true, path),
        None => (false, stored),
    }
}

/// The stored form of a check's path ([`check_target`] reads it back).
pub fn check_path(https: bool, path: &str) -> String {
    if https {
        format!("{HTTPS_PREFIX}{path}")
    } else {
        path.to_string()
    }
}

impl SiteCheck {
    /// (to `https://DOMAIN`, the path).
    pub fn target(&self) -> (bool, &str) {
        check_target(&self.path)
    }
}

fn check_from(r: &AnyRow) -> Result<SiteCheck> {
    Ok(SiteCheck {
        id: r.try_get("id")?,
        site_id: r.try_get("site_id")?,
        server_id: r.try_get("server_id")?,
        path: r.try_get("path")?,
        expect_status: r.try_get("expect_status")?,
        interval_secs: r.try_get("interval_secs")?,
        timeout_secs: r.try_get("timeout_secs")?,
        after_deploy: r.try_get("after_deploy")?,
        state: r.try_get("state")?,
        next_check_at: r.try_get("next_check_at")?,
        last_checked_at: r.try_get("last_checked_at")?,
        last_status: r.try_get("last_status")?,
        last_ms: r.try_get("last_ms")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
    })
}

const CHECK_COLS: &str = "id, site_id, server_id, path, expect_status, interval_secs, timeout_secs, after_deploy, state, \
     next_check_at, last_checked_at, last_status, last_ms, last_error, created_at";

/// A site check as it is set.
#[derive(Debug, Clone)]
pub struct NewSiteCheck {
    pub site_id: i64,
    pub server_id: i64,
    /// `/path`, or `https:/path` for a check over HTTPS.
    pub path: String,
    pub expect_status: i64,
    pub interval_secs: i64,
    pub timeout_secs: i64,
    /// off | fail | rollback
    pub after_deploy: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Channel {
    pub id: i64,
    pub team_id: i64,
    pub name: String,
    pub kind: String,
    /// Where it sends, with nothing secret in it (a URL's host, an email address).
    pub target: String,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertRule {
    pub id: i64,
    pub server_id: i64,
    /// metric | service_down | not_reporting
    pub kind: String,
    pub metric: Option<String>,
    /// above | below
    pub comparison: Option<String>,
    pub threshold: Option<f64>,
    pub for_secs: i64,
    pub channel_id: Option<i64>,
    /// ok | pending | firing | resolved
    pub state: String,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub pending_since: Option<i64>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub state_since: i64,
    pub last_value: Option<f64>,
    /// What the last evaluation saw (the services that are down, the last report).
    pub detail: Option<String>,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub last_notified_at: Option<i64>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
}

pub struct NewAlertRule {
    pub server_id: i64,
    pub kind: String,
    pub metric: Option<String>,
    pub comparison: Option<String>,
    pub threshold: Option<f64>,
    pub for_secs: i64,
    pub channel_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Delivery {
    pub id: i64,
    pub channel_id: i64,
    pub rule_id: Option<i64>,
    /// firing | resolved | reminder | test
    pub event: String,
    /// sending | sent | failed
    pub status: String,
    pub attempts: i64,
    pub error: Option<String>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub finished_at: Option<i64>,
}

fn channel_from(r: &AnyRow) -> Result<Channel> {
    Ok(Channel {
        id: r.try_get("id")?,
        team_id: r.try_get("team_id")?,
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        target: r.try_get("target")?,
        created_at: r.try_get("created_at")?,
    })
}

fn rule_from(r: &AnyRow) -> Result<AlertRule> {
    Ok(AlertRule {
        id: r.try_get("id")?,
        server_id: r.try_get("server_id")?,
        kind: r.try_get("kind")?,
        metric: r.try_get("metric")?,
        comparison: r.try_get("comparison")?,
        threshold: r.try_get("threshold")?,
        for_secs: r.try_get("for_secs")?,
        channel_id: r.try_get("channel_id")?,
        state: r.try_get("state")?,
        pending_since: r.try_get("pending_since")?,
        state_since: r.try_get("state_since")?,
        last_value: r.try_get("last_value")?,
        detail: r.try_get("detail")?,
        last_notified_at: r.try_get("last_notified_at")?,
        created_at: r.try_get("created_at")?,
    })
}

fn delivery_from(r: &AnyRow) -> Result<Delivery> {
    Ok(Delivery {
        id: r.try_get("id")?,
        channel_id: r.try_get("channel_id")?,
        rule_id: r.try_get("rule_id")?,
        event: r.try_get("event")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        error: r.try_get("error")?,
        created_at: r.try_get("created_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

const CHANNEL_COLS: &str = "id, team_id, name, kind, target, created_at";
const RULE_COLS: &str = "id, server_id, kind, metric, comparison, threshold, for_secs, channel_id, state, \
     pending_since, state_since, last_value, detail, last_notified_at, created_at";
const DELIVERY_COLS: &str =
    "id, channel_id, rule_id, event, status, attempts, error, created_at, finished_at";

// Sealed to the team and name (neither changes), so a secret copied to another row does not open.
fn channel_context(team_id: i64, name: &str) -> String {
    format!("notification_channels:{team_id}:{name}")
}

/// How an alert rule's state changes, applied only if the rule is still in the state the evaluator saw (so
/// two nodes evaluating at once notify once).
pub struct RuleTransition {
    pub state: String,
    pub pending_since: Option<i64>,
    pub state_since: i64,
    pub last_value: Option<f64>,
    pub detail: Option<String>,
    pub last_notified_at: Option<i64>,
}

impl Store {
    /// Create or replace a site's check (its state starts over).
    #[allow(clippy::too_many_arguments)]
    pub async fn put_site_check(&self, new: &NewSiteCheck) -> Result<SiteCheck> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM site_checks WHERE site_id = $1")
            .bind(new.site_id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "INSERT INTO site_checks (site_id, server_id, path, expect_status, interval_secs, timeout_secs, after_deploy, \
             state, next_check_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'unknown', $8, $8) RETURNING {CHECK_COLS}"
        ))
        .bind(new.site_id)
        .bind(new.server_id)
        .bind(&new.path)
        .bind(new.expect_status)
        .bind(new.interval_secs)
        .bind(new.timeout_secs)
        .bind(&new.after_deploy)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        check_from(&row)
    }

    pub async fn site_check(&self, site_id: i64) -> Result<Option<SiteCheck>> {
        let row = sqlx::query(&format!(
            "SELECT {CHECK_COLS} FROM site_checks WHERE site_id = $1"
        ))
        .bind(site_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(check_from).transpose()
    }

    pub async fn delete_site_check(&self, site_id: i64) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM site_checks WHERE site_id = $1")
            .bind(site_id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    /// Claim up to `limit` checks that are due: each moves to its next time here, so another node
    /// running the same loop does not take it too.
    pub async fn claim_due_checks(&self, now: i64, limit: i64) -> Result<Vec<SiteCheck>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHECK_COLS} FROM site_checks WHERE next_check_at <= $1 ORDER BY next_check_at LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let c = check_from(r)?;
            let claimed = sqlx::query(
                "UPDATE site_checks SET next_check_at = $1 WHERE id = $2 AND next_check_at = $3",
            )
            .bind(now + c.interval_secs * 1000)
            .bind(c.id)
            .bind(c.next_check_at)
            .execute(&self.pool)
            .await?
            .rows_affected()
                > 0;
            if claimed {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Record a check's result: its state and last answer.
    pub async fn record_site_check(
        &self,
        id: i64,
        ok: bool,
        status: Option<i64>,
        ms: i64,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE site_checks SET state = $1, last_checked_at = $2, last_status = $3, last_ms = $4, last_error = $5 \
             WHERE id = $6",
        )
        .bind(if ok { "ok" } else { "failing" })
        .bind(now_ms())
        .bind(status)
        .bind(ms)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn create_channel(
        &self,
        team_id: i64,
        name: &str,
        kind: &str,
        target: &str,
        secret: &Secret,
    ) -> Result<Channel> {
        let sealed = self
            .cipher
            .seal(&channel_context(team_id, name), secret.expose().as_bytes())?;
        let row = sqlx::query(&format!(
            "INSERT INTO notification_channels (team_id, name, kind, target, secret_enc, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {CHANNEL_COLS}"
        ))
        .bind(team_id)
        .bind(name)
        .bind(kind)
        .bind(target)
        .bind(sealed)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("the team already has a channel {name}"))
            } else {
                e.into()
            }
        })?;
        channel_from(&row)
    }

    pub async fn channels(&self, team_id: i64) -> Result<Vec<Channel>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANNEL_COLS} FROM notification_channels WHERE team_id = $1 ORDER BY name"
        ))
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(channel_from).collect()
    }

    pub async fn channel(&self, id: i64) -> Result<Channel> {
        let row = sqlx::query(&format!(
            "SELECT {CHANNEL_COLS} FROM notification_channels WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("channel {id}")))?;
        channel_from(&row)
    }

    /// What a channel needs to send (its sealed settings), for the sender only.
    pub async fn channel_secret(&self, id: i64) -> Result<Secret> {
        let row = sqlx::query(
            "SELECT team_id, name, secret_enc FROM notification_channels WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("channel {id}")))?;
        let team_id: i64 = row.try_get("team_id")?;
        let name: String = row.try_get("name")?;
        let sealed: Vec<u8> = row.try_get("secret_enc")?;
        self.cipher
            .open_secret(&channel_context(team_id, &name), &sealed)
    }

    pub async fn delete_channel(&self, team_id: i64, id: i64) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM notification_channels WHERE id = $1 AND team_id = $2")
                .bind(id)
                .bind(team_id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    pub async fn create_alert_rule(&self, new: &NewAlertRule) -> Result<AlertRule> {
        let now = now_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO alert_rules (server_id, kind, metric, comparison, threshold, for_secs, channel_id, state, \
             state_since, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'ok', $8, $8) RETURNING {RULE_COLS}"
        ))
        .bind(new.server_id)
        .bind(&new.kind)
        .bind(new.metric.as_deref())
        .bind(new.comparison.as_deref())
        .bind(new.threshold)
        .bind(new.for_secs)
        .bind(new.channel_id)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        rule_from(&row)
    }

    /// Replace a rule's definition, keeping its state; `None`: no such rule on the server.
    pub async fn update_alert_rule(
        &self,
        id: i64,
        new: &NewAlertRule,
    ) -> Result<Option<AlertRule>> {
        let row = sqlx::query(&format!(
            "UPDATE alert_rules SET kind = $1, metric = $2, comparison = $3, threshold = $4, for_secs = $5, \
             channel_id = $6 WHERE id = $7 AND server_id = $8 RETURNING {RULE_COLS}"
        ))
        .bind(&new.kind)
        .bind(new.metric.as_deref())
        .bind(new.comparison.as_deref())
        .bind(new.threshold)
        .bind(new.for_secs)
        .bind(new.channel_id)
        .bind(id)
        .bind(new.server_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rule_from).transpose()
    }

    pub async fn alert_rules(&self, server_id: i64) -> Result<Vec<AlertRule>> {
        let rows = sqlx::query(&format!(
            "SELECT {RULE_COLS} FROM alert_rules WHERE server_id = $1 ORDER BY id"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rule_from).collect()
    }

    /// Every rule of every server, for the evaluator.
    pub async fn all_alert_rules(&self) -> Result<Vec<AlertRule>> {
        let rows = sqlx::query(&format!("SELECT {RULE_COLS} FROM alert_rules ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rule_from).collect()
    }

    pub async fn delete_alert_rule(&self, server_id: i64, id: i64) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM alert_rules WHERE id = $1 AND server_id = $2")
                .bind(id)
                .bind(server_id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    /// Apply a rule's new state if it is still `from` (as the evaluator read it); whether it applied.
    pub async fn transition_alert_rule(
        &self,
        id: i64,
        from: &AlertRule,
        to: &RuleTransition,
    ) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE alert_rules SET state = $1, pending_since = $2, state_since = $3, last_value = $4, detail = $5, \
             last_notified_at = $6 WHERE id = $7 AND state = $8 AND state_since = $9 \
             AND COALESCE(last_notified_at, 0) = $10",
        )
        .bind(&to.state)
        .bind(to.pending_since)
        .bind(to.state_since)
        .bind(to.last_value)
        .bind(to.detail.as_deref())
        .bind(to.last_notified_at)
        .bind(id)
        .bind(&from.state)
        .bind(from.state_since)
        .bind(from.last_notified_at.unwrap_or(0))
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    pub async fn start_delivery(
        &self,
        channel_id: i64,
        rule_id: Option<i64>,
        event: &str,
    ) -> Result<Delivery> {
        let row = sqlx::query(&format!(
            "INSERT INTO notification_deliveries (channel_id, rule_id, event, status, attempts, created_at) \
             VALUES ($1, $2, $3, 'sending', 0, $4) RETURNING {DELIVERY_COLS}"
        ))
        .bind(channel_id)
        .bind(rule_id)
        .bind(event)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        delivery_from(&row)
    }

    /// Record an attempt: `done` with `error` None is sent, with an error failed; not done is still trying.
    pub async fn record_delivery(
        &self,
        id: i64,
        attempts: i64,
        done: bool,
        error: Option<&str>,
    ) -> Result<()> {
        let status = match (done, error) {
            (false, _) => "sending",
            (true, None) => "sent",
            (true, Some(_)) => "failed",
        };
        sqlx::query(
            "UPDATE notification_deliveries SET status = $1, attempts = $2, error = $3, finished_at = $4 WHERE id = $5",
        )
        .bind(status)
        .bind(attempts)
        .bind(error)
        .bind(done.then(now_ms))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delivery(&self, id: i64) -> Result<Delivery> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM notification_deliveries WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("delivery {id}")))?;
        delivery_from(&row)
    }

    pub async fn deliveries(&self, channel_id: i64, limit: i64) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM notification_deliveries WHERE channel_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(channel_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from).collect()
    }

    /// Delete up to `limit` delivery log rows older than `before_ms`; how many went.
    pub async fn prune_notification_deliveries(&self, before_ms: i64, limit: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM notification_deliveries WHERE id IN \
             (SELECT id FROM notification_deliveries WHERE created_at < $1 LIMIT $2)",
        )
        .bind(before_ms)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// How many rules fire on each of these servers (servers with none are left out).
    pub async fn firing_counts(&self, server_ids: &[i64]) -> Result<Vec<(i64, i64)>> {
        if server_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT server_id, COUNT(*) AS n FROM alert_rules WHERE state = 'firing' AND server_id IN ({}) \
             GROUP BY server_id",
            crate::id_list(server_ids)
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("server_id")?, r.try_get("n")?)))
            .collect()
    }
}
