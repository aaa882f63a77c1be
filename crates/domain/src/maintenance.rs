//! Housekeeping that runs in the background of every node: what BrokeForge keeps only for a while is pruned
//! in small batches, so history stays bounded and no single statement holds the database for long.

use std::time::Duration;

use brokeforge_core::CredentialKind;
use brokeforge_core::time::now_ms;

use crate::{Domain, DomainResult};

/// How often the housekeeping runs.
pub const EVERY: Duration = Duration::from_secs(60);
/// Rows deleted per statement.
const BATCH: i64 = 5_000;
/// Sign-in attempts matter for the throttle window only; a day is plenty.
const LOGIN_ATTEMPTS_MS: i64 = 24 * 3600 * 1000;
/// Webhook delivery ids are kept long enough to catch a provider's redeliveries.
const WEBHOOK_DELIVERIES_MS: i64 = 30 * 24 * 3600 * 1000;
/// A user's root key for direct onboarding is deleted by its job; one a crashed onboarding left goes after
/// an hour.
const BOOTSTRAP_KEYS_MS: i64 = 3600 * 1000;

/// What one round removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub login_attempts: u64,
    pub webhook_deliveries: u64,
    pub bootstrap_keys: u64,
}

impl Domain {
    /// One round of housekeeping.
    pub async fn prune(&self) -> DomainResult<Pruned> {
        let now = now_ms();
        let mut out = Pruned::default();
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
                .prune_webhook_deliveries(now - WEBHOOK_DELIVERIES_MS, BATCH)
                .await?;
            out.webhook_deliveries += n;
            if n < BATCH as u64 {
                break;
            }
        }
        out.bootstrap_keys = self
            .store
            .expire_credentials(CredentialKind::Bootstrap, now - BOOTSTRAP_KEYS_MS)
            .await?;
        Ok(out)
    }

    /// Run housekeeping until `stop` is cancelled.
    pub async fn run_maintenance(&self, stop: tokio_util::sync::CancellationToken) {
        loop {
            match self.prune().await {
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
