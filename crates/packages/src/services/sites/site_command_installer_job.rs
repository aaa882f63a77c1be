//! Site Command Installer Job: runs a [`SiteCommandInstaller`] from the queue.

use std::time::Duration;

use brokeforge_core::ValidationError;
use serde::Deserialize;

use super::SiteCommandInstaller;
use crate::base::PackageError;
use crate::jobs::{BoxFuture, JobContext, JobHandler};

pub struct SiteCommandInstallerJob;

#[derive(Deserialize)]
struct Payload {
    site_id: i64,
    command: String,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
}

fn default_timeout() -> u64 {
    120
}

impl SiteCommandInstallerJob {
    pub const KIND: &'static str = "site_command";

    pub fn payload(site_id: i64, command: &str, timeout: Duration) -> serde_json::Value {
        serde_json::json!({"site_id": site_id, "command": command, "timeout_secs": timeout.as_secs()})
    }
}

impl JobHandler for SiteCommandInstallerJob {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn run<'a>(
        &'a self,
        ctx: &'a JobContext<'a>,
    ) -> BoxFuture<'a, Result<serde_json::Value, PackageError>> {
        Box::pin(async move {
            let p: Payload = serde_json::from_value(ctx.job.payload.clone()).map_err(|e| {
                ValidationError::new("payload", format!("invalid site command job: {e}"))
            })?;
            let site = ctx.store.site(p.site_id).await?;
            let record = SiteCommandInstaller::new(site)
                .execute(
                    ctx.executor,
                    &ctx.run_context()?,
                    &p.command,
                    Duration::from_secs(p.timeout_secs),
                )
                .await?;
            Ok(serde_json::to_value(record).unwrap_or_default())
        })
    }
}
