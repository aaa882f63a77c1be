//! What a queued job gets to run with, and the contract of a job kind. Packages declare their jobs through
//! the [`Registry`](super::registry::Registry) (`r.installer(FooInstaller)`); only jobs that are not packages
//! (the queue benchmark's no-op) implement [`JobHandler`] by hand.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use brokeforge_core::ValidationError;
use brokeforge_store::{Job, Server, Store, StoreError};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::PackageError;
use super::executor::{Connections, Executor, RunContext};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a handler gets to run one job.
pub struct JobContext<'a> {
    pub job: &'a Job,
    pub store: &'a Store,
    pub executor: &'a Executor,
    pub server: Option<Server>,
    /// Cancelled when the user cancels the job, the lease is lost, or the worker stops for good.
    pub cancel: CancellationToken,
    /// The job's SSH connections, shared by every plan it runs and closed when it ends.
    pub connections: Connections,
}

impl JobContext<'_> {
    /// The executor context for this job's server.
    pub fn run_context(&self) -> Result<RunContext, PackageError> {
        let server = self
            .server
            .clone()
            .ok_or_else(|| StoreError::InvalidData(format!("job {} has no server", self.job.id)))?;
        let panel = self.store.panel_id();
        Ok(RunContext {
            tag: Some(format!("{panel}-{}-{}", server.id, self.job.id)),
            lock: Some(format!("/run/lock/brokeforge-{panel}-{}.lock", server.id)),
            server,
            job_id: Some(self.job.id),
            attempt: Some(self.job.attempt),
            cancel: self.cancel.clone(),
            trust_on_first_use: self
                .job
                .payload
                .get("trust_on_first_use")
                .and_then(|v| v.as_bool())
                == Some(true),
            connections: self.connections.clone(),
        })
    }

    /// The job's payload as the request type it was queued with.
    pub fn request<T: DeserializeOwned>(&self) -> Result<T, ValidationError> {
        serde_json::from_value(self.job.payload.clone()).map_err(|e| {
            ValidationError::new("payload", format!("invalid {} job: {e}", self.job.kind))
        })
    }
}

/// One kind of job.
pub trait JobHandler: Send + Sync + 'static {
    fn kind(&self) -> &'static str;
    fn run<'a>(
        &'a self,
        ctx: &'a JobContext<'a>,
    ) -> BoxFuture<'a, Result<serde_json::Value, PackageError>>;
    /// Whether the job may start again by itself after its worker was lost. Idempotent work may; work that
    /// may have partly run and would do something twice (a command, a deployment) may not.
    fn resumable(&self) -> bool {
        true
    }
    /// Wait before automatic retry number `attempt` (only for jobs enqueued with `max_attempts > 1`).
    fn retry_delay(&self, attempt: i64) -> Duration {
        Duration::from_secs(5 * attempt.max(1) as u64)
    }
}
