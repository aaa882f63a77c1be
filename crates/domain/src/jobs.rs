//! Jobs as their owners see them: found through the owner's servers, cancelled, retried, and their output.

use brokeforge_store::{CommandLog, Deployment, Job, Server, ServerSite, User};

use crate::{Domain, DomainError, DomainResult};

impl Domain {
    /// A job on one of the user's servers.
    pub async fn owned_job(
        &self,
        user: &User,
        id: i64,
        action: crate::policy::Action,
    ) -> DomainResult<Job> {
        let job = self.store.job(id).await?;
        let server_id = job.server_id.ok_or(DomainError::NotFound)?;
        self.owned_server(user, server_id, action).await?;
        Ok(job)
    }

    /// A deployment of one of the user's sites.
    pub async fn owned_deployment(
        &self,
        user: &User,
        id: i64,
        action: crate::policy::Action,
    ) -> DomainResult<(Deployment, ServerSite)> {
        let d = self.store.deployment(id).await?;
        let (site, _) = self.owned_site(user, d.site_id, action).await?;
        Ok((d, site))
    }

    /// A page of the server's jobs older than `before` (newest first).
    pub async fn jobs_page(
        &self,
        server: &Server,
        before: Option<i64>,
        limit: i64,
    ) -> DomainResult<Vec<Job>> {
        Ok(self
            .store
            .jobs_before(server.id, before.unwrap_or(i64::MAX), limit)
            .await?)
    }

    /// A page of the job's output after `after` (oldest first).
    pub async fn job_logs_page(
        &self,
        job: &Job,
        after: i64,
        limit: i64,
    ) -> DomainResult<Vec<CommandLog>> {
        Ok(self.store.job_logs_after(job.id, after, limit).await?)
    }

    /// Cancel a queued or running job; a job that already ended is a conflict.
    pub async fn cancel_job(&self, job: &Job) -> DomainResult<Job> {
        if job.status.is_finished() {
            return Err(DomainError::conflict(
                "already_finished",
                format!("job {} has already ended ({})", job.id, job.status.as_str()),
            ));
        }
        let job = self.store.cancel_job(job.id).await?;
        if job.status.is_finished() {
            self.store.announce_job(&job).await?;
        }
        Ok(job)
    }

    /// Run a failed or cancelled job again, as a new job.
    pub async fn retry_job(&self, job: &Job) -> DomainResult<Job> {
        Ok(self.store.retry_job(job.id).await?)
    }

    /// A deployment's log: the output of its job (its newest 5,000 rows; the job's API pages through all).
    pub async fn deployment_log(&self, d: &Deployment) -> DomainResult<String> {
        Ok(match d.job_id {
            Some(j) => self
                .store
                .job_logs_tail(j, i64::MAX, 5_000)
                .await?
                .into_iter()
                .map(|l| l.chunk)
                .collect(),
            None => String::new(),
        })
    }
}
