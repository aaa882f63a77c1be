//! Housekeeping that runs in the background of every node: what BrokeForge keeps only for a while is pruned
//! in small batches, so history stays bounded and no single statement holds the database for long.

use std::time::Duration;

use brokeforge_core::CredentialKind;
use brokeforge_core::time::now_ms;
use brokeforge_store::IDEMPOTENCY_TTL_MS;

use crate::{Domain, DomainResult};

/// How often the housekeeping runs.
pub const EVERY: Duration = Duration::from_secs(60);
/// Rows deleted per statement.
const BATCH: i64 = 5_000;
/// Sign-in attempts matter for the throttle window only; a day is plenty.
const LOGIN_ATTEMPTS_MS: i64 = 24 * 3600 * 1000;
/// Webhook delivery ids are kept long enough to catch a provider's redeliveries.
const WEBHOOK_DELIVERIES_MS: i64 = 30 * 24 * 3600 * 1000;
/// The notification delivery log is kept 90 days (or the history's retention, if shorter).
const NOTIFICATION_DELIVERIES_MS: i64 = 90 * 24 * 3600 * 1000;
/// A user's root key for direct onboarding is deleted by its job; one a crashed onboarding left goes after
/// an hour.
/// Raw metric samples are kept 48 hours, 10-minute rollups 14 days, hourly ones 90 days.
pub const SAMPLES_MS: i64 = 48 * 3600 * 1000;
pub const ROLLUPS_10M_MS: i64 = 14 * 24 * 3600 * 1000;
pub const ROLLUPS_1H_MS: i64 = 90 * 24 * 3600 * 1000;
const BOOTSTRAP_KEYS_MS: i64 = 3600 * 1000;

/// Servers whose per-server limits one round checks (each an index walk of the kept rows).
const SERVERS_PER_ROUND: i64 = 50;
/// Rounds stop deleting history after this long, and go on in the next one.
const ROUND_BUDGET: Duration = Duration::from_secs(5);

/// How much history is kept. The defaults keep a year of a 1,000-server panel within a few GB: about
/// 20,000 output lines and 5,000 progress events per server (a few hundred installs and deploys each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `BROKEFORGE_RETENTION_DAYS`: output, events, site commands and finished jobs older than this go.
    pub days: i64,
    /// `BROKEFORGE_RETENTION_LOG_LINES`: the newest output rows kept per server.
    pub log_lines_per_server: i64,
    /// `BROKEFORGE_RETENTION_EVENTS`: the newest progress events kept per server.
    pub events_per_server: i64,
    /// `BROKEFORGE_RETENTION_AUDIT_DAYS`: audit log entries older than this go (longer than other history).
    pub audit_days: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            days: 365,
            log_lines_per_server: 20_000,
            events_per_server: 5_000,
            audit_days: 730,
        }
    }
}

/// What one round removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub audit: u64,
    pub login_attempts: u64,
    /// API idempotency keys past their day.
    pub idempotency_keys: u64,
    pub webhook_deliveries: u64,
    pub notification_deliveries: u64,
    pub bootstrap_keys: u64,
    pub history: brokeforge_store::retention::Removed,
    /// Raw metric samples past their 48 hours, rollups past theirs.
    pub samples: u64,
    /// Rollup rows written.
    pub rollups: u64,
}

impl Domain {
    /// One round of housekeeping. `cursor` walks the servers for their per-server limits, a few each round.
    pub async fn prune(&self, retention: &Retention, cursor: &mut i64) -> DomainResult<Pruned> {
        let now = now_ms();
        let started = std::time::Instant::now();
        let mut out = Pruned::default();
        let before = now - retention.days.max(1) * 24 * 3600 * 1000;
        loop {
            let n = self.store.prune_history_before(before, BATCH).await?;
            out.history += n;
            if n.total() == 0 || started.elapsed() > ROUND_BUDGET {
                break;
            }
        }
        let servers = self
            .store
            .server_ids_after(*cursor, SERVERS_PER_ROUND)
            .await?;
        *cursor = servers.last().copied().unwrap_or(0);
        for id in servers {
            loop {
                let n = self
                    .store
                    .prune_server_history(
                        id,
                        retention.log_lines_per_server.max(1),
                        retention.events_per_server.max(1),
                        BATCH,
                    )
                    .await?;
                out.history += n;
                if n.log_lines < BATCH as u64 && n.events < BATCH as u64 {
                    break;
                }
                if started.elapsed() > ROUND_BUDGET {
                    break;
                }
            }
        }
        let audit_before = now - retention.audit_days.max(1) * 24 * 3600 * 1000;
        loop {
            let n = self.store.prune_audit_before(audit_before).await?;
            out.audit += n;
            if n == 0 || started.elapsed() > ROUND_BUDGET {
                break;
            }
        }
        loop {
            let n = self
                .store
                .prune_login_attempts(now - LOGIN_ATTEMPTS_MS, BATCH)
                .await?;
            out.login_attempts += n;
            if n < BATCH as u64 {
                break;
            }
        }
        loop {
            let n = self
                .store
                .prune_idempotency_keys(now - IDEMPOTENCY_TTL_MS, BATCH)
                .await?;
            out.idempotency_keys += n;
            if n < BATCH as u64 {
                break;
            }
        }
        loop {
            let n = self
                .store
                .prune_webhook_deliveries(now - WEBHOOK_DELIVERIES_MS, BATCH)
                .await?;
            out.webhook_deliveries += n;
            if n < BATCH as u64 {
                break;
            }
        }
        let deliveries_before = (now - NOTIFICATION_DELIVERIES_MS).max(before);
        loop {
            let n = self
                .store
                .prune_notification_deliveries(deliveries_before, BATCH)
                .await?;
            out.notification_deliveries += n;
            if n < BATCH as u64 {
                break;
            }
        }
        loop {
            let n = self
                .store
                .prune_samples_before(now - SAMPLES_MS, BATCH)
                .await?;
            out.samples += n;
            if n < BATCH as u64 || started.elapsed() > ROUND_BUDGET {
                break;
            }
        }
        // Rollups: 10-minute buckets from the raw samples (a minute after a bucket ends), hourly ones from
        // those, each pruned at its age.
        loop {
            let n = self.store.roll_up(600, now - 60_000, 3_600_000).await?;
            out.rollups += n;
            if n == 0 || started.elapsed() > ROUND_BUDGET {
                break;
            }
        }
        if let Some(upto) = self.store.rolled_up_until(600).await? {
            loop {
                let n = self.store.roll_up(3600, upto, 24 * 3_600_000).await?;
                out.rollups += n;
                if n == 0 || started.elapsed() > ROUND_BUDGET {
                    break;
                }
            }
        }
        for (resolution, keep) in [(600, ROLLUPS_10M_MS), (3600, ROLLUPS_1H_MS)] {
            loop {
                let n = self
                    .store
                    .prune_rollups_before(resolution, now - keep)
                    .await?;
                out.samples += n;
                if n == 0 || started.elapsed() > ROUND_BUDGET {
                    break;
                }
            }
        }
        out.bootstrap_keys = self
            .store
            .expire_credentials(CredentialKind::Bootstrap, now - BOOTSTRAP_KEYS_MS)
            .await?;
        Ok(out)
    }

    /// Run housekeeping until `stop` is cancelled.
    pub async fn run_maintenance(
        &self,
        retention: Retention,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut cursor = 0;
        loop {
            match self.prune(&retention, &mut cursor).await {
                Ok(p) if p != Pruned::default() => tracing::info!(?p, "pruned old records"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "housekeeping failed; trying again later"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }
}
