//! Jobs: every installer and remover runs as a queued job (spec: `{Service}InstallerJob`). A [`Worker`] claims
//! jobs from the store, keeps their lease alive, runs their [`JobHandler`], keeps the provisioned record's
//! status truthful (installing -> active / failed), recovers jobs whose worker died, and shuts down gracefully.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use brokeforge_core::time::now_ms;
use brokeforge_core::{ProvisionStatus, ProvisionType, ServiceStatus};
use brokeforge_store::{
    Job, JobStatus, JobTarget, LogStream, Outcome, Recovered, Store, StoreError,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::base::PackageError;
use crate::base::executor::Executor;
pub use crate::base::job::{BoxFuture, JobContext, JobHandler};
pub use crate::base::registry::Registry;

/// Jobs claimed per call (one statement on either backend).
const CLAIM_CHUNK: usize = 32;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Shown in leases; unique per worker process.
    pub id: String,
    /// Jobs run at once (each for a different server).
    pub concurrency: usize,
    pub lease: Duration,
    /// A job is resumed after a lost worker until it has had this many attempts, then failed.
    pub resume_limit: i64,
    /// On shutdown, running jobs get this long to finish before their leases are released.
    pub grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            id: format!("{}-{}", hostname(), std::process::id()),
            concurrency: 8,
            lease: Duration::from_secs(30),
            resume_limit: 3,
            grace: Duration::from_secs(30),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".into())
}

pub struct Worker {
    store: Store,
    executor: Executor,
    registry: Arc<Registry>,
    config: WorkerConfig,
}

/// How often a running job renews its lease and checks for a cancel request.
fn heartbeat_every(lease: Duration) -> Duration {
    (lease / 3).clamp(Duration::from_millis(50), Duration::from_secs(2))
}

impl Worker {
    pub fn new(store: Store, registry: Registry, config: WorkerConfig) -> Worker {
        Worker {
            executor: Executor::new(store.clone()),
            store,
            registry: Arc::new(registry),
            config,
        }
    }

    /// Claim and run jobs until `shutdown` is cancelled, then let running jobs finish for the grace period
    /// and release the leases of those that did not.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StoreError> {
        let listener = self.store.spawn_job_listener();
        let hard_stop = CancellationToken::new();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut last_sweep = 0i64;
        let result = loop {
            if shutdown.is_cancelled() {
                break Ok(());
            }
            // Register for wake-ups before looking, so an enqueue in between is not missed.
            let notify = self.store.jobs_notify().notified();
            tokio::pin!(notify);
            notify.as_mut().enable();

            if now_ms() - last_sweep >= 1000 {
                last_sweep = now_ms();
                if let Err(e) = self.recover().await {
                    tracing::warn!(error = %e, "recovering expired jobs failed");
                }
            }
            let mut claim_error = None;
            let mut idle = false;
            // In chunks on one connection: a wave of a hundred jobs starts without a pool wait per claim,
            // and the first of a chunk does not wait long for the last.
            while tasks.len() < self.config.concurrency {
                let room = (self.config.concurrency - tasks.len()).min(CLAIM_CHUNK);
                match self
                    .store
                    .claim_up_to(&self.config.id, self.config.lease, room)
                    .await
                {
                    Ok(jobs) => {
                        let got = jobs.len();
                        for job in jobs {
                            let (store, executor, registry) = (
                                self.store.clone(),
                                self.executor.clone(),
                                self.registry.clone(),
                            );
                            let (lease, stop) = (self.config.lease, hard_stop.clone());
                            tasks.spawn(async move {
                                run_job(store, executor, registry, job, lease, stop).await
                            });
                        }
                        if got < room {
                            idle = true;
                            break;
                        }
                    }
                    Err(e) => {
                        claim_error = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = claim_error {
                tracing::warn!(error = %e, "claiming jobs failed; retrying shortly");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            // Sleep until the next delayed job or lease expiry; a busy worker is woken by its own jobs ending
            // (and looks again within a second), so it does not ask the database when that is.
            let wake = if idle && tasks.is_empty() {
                match self.store.next_job_wakeup().await {
                    Ok(Some(at)) => Duration::from_millis((at - now_ms()).clamp(10, 5000) as u64),
                    _ => Duration::from_secs(5),
                }
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                _ = &mut notify => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = tokio::time::sleep(wake) => {}
                _ = shutdown.cancelled() => {}
            }
            // Every job that has ended frees its slot now, not one per turn: when a wave ends together, the
            // next claims fill all of the room at once.
            while tasks.try_join_next().is_some() {}
        };
        if !tasks.is_empty() {
            tracing::info!(running = tasks.len(), grace = ?self.config.grace, "waiting for running jobs");
            let drained = tokio::time::timeout(self.config.grace, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                // Stop the rest: each releases its lease so another worker resumes it.
                hard_stop.cancel();
                while tasks.join_next().await.is_some() {}
            }
        }
        if let Some(l) = listener {
            l.abort();
        }
        result
    }

    async fn recover(&self) -> Result<(), StoreError> {
        for rec in self
            .store
            .recover_expired_jobs(self.config.resume_limit, |kind| {
                self.registry.get(kind).is_none_or(|h| h.resumable())
            })
            .await?
        {
            match rec {
                Recovered::Requeued(job) => {
                    tracing::warn!(job_id = job.id, server_id = ?job.server_id, attempt = job.attempt, "resuming a job whose worker was lost");
                    self.store
                        .fail_open_events(job.id, "the worker running this step was lost")
                        .await?;
                    if let Some(server_id) = job.server_id {
                        let line = format!(
                            "resumed after a lost worker: attempt {} will start again\n",
                            job.attempt + 1
                        );
                        self.store
                            .append_log(server_id, Some(job.id), None, LogStream::System, &line)
                            .await?;
                    }
                }
                Recovered::Failed(job) => {
                    let reason = job.error.clone().unwrap_or_else(|| "worker lost".into());
                    tracing::error!(job_id = job.id, server_id = ?job.server_id, %reason, "job failed: worker lost");
                    self.store.fail_open_events(job.id, &reason).await?;
                    self.store.announce_job(&job).await?;
                    if let Some(server_id) = job.server_id {
                        self.store
                            .append_log(
                                server_id,
                                Some(job.id),
                                None,
                                LogStream::System,
                                &format!("{reason}\n"),
                            )
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }
}

async fn run_job(
    store: Store,
    executor: Executor,
    registry: Arc<Registry>,
    job: Job,
    lease: Duration,
    hard_stop: CancellationToken,
) {
    let cancel = hard_stop.child_token();
    let lost = Arc::new(AtomicBool::new(false));
    let user_cancel = Arc::new(AtomicBool::new(false));
    let beat = {
        let (store, cancel, lost, user_cancel) = (
            store.clone(),
            cancel.clone(),
            lost.clone(),
            user_cancel.clone(),
        );
        let (id, attempt) = (job.id, job.attempt);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(heartbeat_every(lease));
            tick.tick().await;
            let mut renewed = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                // Each renewal may take long (a database that hangs): give up on it in time to stop.
                let beat =
                    tokio::time::timeout(lease / 3, store.heartbeat(id, attempt, lease)).await;
                match beat {
                    Ok(Ok(hb)) if hb.lost => {
                        lost.store(true, Ordering::SeqCst);
                        cancel.cancel();
                        return;
                    }
                    Ok(Ok(hb)) => {
                        renewed = tokio::time::Instant::now();
                        if hb.cancel_requested {
                            user_cancel.store(true, Ordering::SeqCst);
                            cancel.cancel();
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(job_id = id, error = %e, "heartbeat failed"),
                    Err(_) => tracing::warn!(job_id = id, "heartbeat timed out"),
                }
                // Not renewed for two thirds of the lease: another worker may take the job over soon. Stop
                // here first (the remote commands with it), so two attempts never overlap.
                if renewed.elapsed() >= lease * 2 / 3 {
                    tracing::error!(
                        job_id = id,
                        "the lease could not be renewed: stopping the job here"
                    );
                    lost.store(true, Ordering::SeqCst);
                    cancel.cancel();
                    return;
                }
            }
        })
    };
    let started = std::time::Instant::now();
    let connections = crate::base::executor::Connections::default();
    let outcome = execute(
        &store,
        &executor,
        &registry,
        &job,
        cancel.clone(),
        connections.clone(),
    )
    .await;
    beat.abort();
    // The job's ending is written while its shells close: the next job of a server that comes before
    // they are gone waits for the lock they hold, and a run's next wave does not wait for the goodbyes.
    let (ended, ()) = tokio::join!(
        finish(
            &store,
            &registry,
            &job,
            outcome,
            &lost,
            &user_cancel,
            &hard_stop,
        ),
        connections.close()
    );
    match ended {
        Err(e) => {
            tracing::error!(job_id = job.id, error = %e, "recording the job's outcome failed")
        }
        // Watchers learned how it ended from the ending itself (finish_claimed_job writes it to the feed).
        Ok(Some((status, _))) => {
            crate::base::metrics::JOBS.record(
                &job.kind,
                status.as_str(),
                started.elapsed().as_millis() as u64,
            );
        }
        Ok(_) => {}
    }
}

async fn execute(
    store: &Store,
    executor: &Executor,
    registry: &Registry,
    job: &Job,
    cancel: CancellationToken,
    connections: crate::base::executor::Connections,
) -> Result<serde_json::Value, PackageError> {
    let handler = registry.get(&job.kind).ok_or_else(|| {
        StoreError::InvalidData(format!(
            "unknown job kind `{}`: is this worker older than the one that queued it?",
            job.kind
        ))
    })?;
    let server = match job.server_id {
        Some(id) => Some(store.server(id).await?),
        None => None,
    };
    lifecycle_begin(store, job).await?;
    let ctx = JobContext {
        job,
        store,
        executor,
        server,
        cancel,
        connections,
    };
    handler.run(&ctx).await
}

async fn finish(
    store: &Store,
    registry: &Registry,
    job: &Job,
    outcome: Result<serde_json::Value, PackageError>,
    lost: &AtomicBool,
    user_cancel: &AtomicBool,
    hard_stop: &CancellationToken,
) -> Result<Option<(JobStatus, Option<String>)>, StoreError> {
    if lost.load(Ordering::SeqCst) {
        tracing::warn!(
            job_id = job.id,
            attempt = job.attempt,
            "lease lost: another worker owns this job now; result dropped"
        );
        return Ok(None);
    }
    // How the job ended, when this attempt recorded an end (None: handed back, or fenced out).
    let end = |recorded: bool, status: JobStatus, error: Option<String>| {
        recorded.then_some((status, error))
    };
    Ok(match outcome {
        // finish_job also settles the job's record (active, removed or failed) in the same transaction.
        Ok(value) => end(
            store.finish_claimed_job(job, &Outcome::Done(value)).await?,
            JobStatus::Done,
            None,
        ),
        Err(PackageError::Cancelled)
            if hard_stop.is_cancelled() && !user_cancel.load(Ordering::SeqCst) =>
        {
            // The worker is shutting down: hand the job back for another worker to resume.
            store
                .requeue_job(
                    job.id,
                    job.attempt,
                    Duration::ZERO,
                    Some("released by a worker shutting down"),
                )
                .await?;
            None
        }
        Err(PackageError::Cancelled) => end(
            store.finish_claimed_job(job, &Outcome::Cancelled).await?,
            JobStatus::Cancelled,
            Some("cancelled".into()),
        ),
        Err(e) => {
            let reason = e.to_string();
            tracing::error!(job_id = job.id, server_id = ?job.server_id, kind = %job.kind, attempt = job.attempt, error = %reason, "job failed");
            let handler = registry.get(&job.kind);
            let retry = job.attempt < job.max_attempts && !matches!(e, PackageError::Validation(_));
            if let (true, Some(h)) = (retry, handler) {
                store
                    .requeue_job(
                        job.id,
                        job.attempt,
                        h.retry_delay(job.attempt),
                        Some(&reason),
                    )
                    .await?;
                None
            } else {
                let exit_code = match &e {
                    PackageError::CommandFailed { exit_code, .. } => exit_code.map(i64::from),
                    _ => None,
                };
                let recorded = store
                    .finish_claimed_job(job, &Outcome::Failed(reason.clone(), exit_code))
                    .await?;
                end(recorded, JobStatus::Failed, Some(reason))
            }
        }
    })
}

/// Before running: the record shows what is happening (spec: upsert `ServerService` as installing).
async fn lifecycle_begin(store: &Store, job: &Job) -> Result<(), StoreError> {
    let Some(server_id) = job.server_id else {
        return Ok(());
    };
    match &job.target {
        Some(JobTarget::Service {
            name,
            service_type,
            provision_type: ProvisionType::Install,
        }) => {
            // An existing record keeps its configuration (schemas, users, opened sources): the installer
            // reads it to converge. A new one starts empty.
            let exists = store
                .services(server_id)
                .await?
                .iter()
                .any(|s| s.service_name == *name);
            if exists {
                store
                    .set_service_status(server_id, name, ServiceStatus::Installing, None)
                    .await?;
            } else {
                store
                    .upsert_service(
                        server_id,
                        name,
                        *service_type,
                        &serde_json::json!({}),
                        ServiceStatus::Installing,
                    )
                    .await?;
            }
        }
        Some(JobTarget::Service {
            name,
            provision_type: ProvisionType::Uninstall,
            ..
        }) => {
            store
                .set_service_status(server_id, name, ServiceStatus::Removing, None)
                .await?
        }
        Some(JobTarget::Site {
            id,
            provision_type: ProvisionType::Install,
        }) => store.begin_site_install(*id).await?,
        Some(JobTarget::Site {
            id,
            provision_type: ProvisionType::Uninstall,
        }) => store.set_site_status(*id, ServiceStatus::Removing).await?,
        Some(JobTarget::Server) => {
            store
                .set_provision_status(server_id, ProvisionStatus::Installing)
                .await?
        }
        Some(JobTarget::Deployment { id }) => store.start_deployment(*id).await?,
        // The run's grid reads `running` from the job itself: nothing to write.
        Some(JobTarget::RecipeRun { .. }) | None => {}
    }
    Ok(())
}
