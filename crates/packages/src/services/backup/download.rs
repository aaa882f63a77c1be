//! A snapshot downloaded through BrokeForge: `restic dump` on the server, its stdout streamed to the caller
//! as it arrives (never whole in memory), over the plan's own repository settings and secrets.

use std::time::Duration;

use brokeforge_core::CredentialKind;

use super::repository::{Repository, Source};
use crate::base::PackageError;
use crate::base::executor::{Executor, RunContext};
use crate::base::package::Gather;

/// What a download of a snapshot of `source` is called (the file the user gets).
pub fn file_name(source: &Source, snapshot: &str) -> String {
    let short: String = snapshot.chars().take(8).collect();
    match source {
        Source::Database { engine, schema } if engine == "postgresql" => {
            format!("{schema}-{short}.dump")
        }
        Source::Database { schema, .. } => format!("{schema}-{short}.sql"),
        Source::Redis {} => format!("redis-{short}.rdb"),
        Source::Site { domain, .. } => format!("{domain}-shared-{short}.tar"),
    }
}

/// Stream snapshot `snapshot` of plan `plan_id` into `out`. Checks the plan belongs to the context's server.
pub async fn download(
    executor: &Executor,
    ctx: &RunContext,
    plan_id: i64,
    snapshot: &str,
    out: &tokio::sync::mpsc::Sender<bytes::Bytes>,
) -> Result<(), PackageError> {
    let cx = Gather::new(executor.store(), &ctx.server);
    let repo = Repository::open(&cx, plan_id).await?;
    let file = match &repo.source {
        Source::Database { engine, schema } if engine == "postgresql" => format!("/{schema}.dump"),
        Source::Database { schema, .. } => format!("/{schema}.sql"),
        Source::Redis {} => "/redis.rdb".to_string(),
        Source::Site { .. } => repo.source.path().unwrap_or_default(),
    };
    let step = repo.step("dump", &[snapshot, &file], 6 * 3600);
    executor
        .stream(
            ctx,
            CredentialKind::Root,
            &step.command,
            step.stdin.as_ref(),
            repo.secrets(),
            Duration::from_secs(6 * 3600),
            out,
        )
        .await
}
