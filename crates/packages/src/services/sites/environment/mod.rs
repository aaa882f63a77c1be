//! A site's environment file (`shared/.env`, linked into every release): read live, and replaced atomically
//! over the SSH channel by a job. Its contents never appear on a command line, in a job's payload, its log or
//! its events: they wait sealed in the store until the job writes them.

use brokeforge_core::{CredentialKind, Secret, ServiceType, ValidationError, validate};
use brokeforge_store::{Job, ServerSite, Store};

use super::common::{SiteRef, SiteUser, on_server, read_live_step};
use crate::base::executor::{Executor, RunContext, RunReport};
use crate::base::package::{Gather, Package, PackageInstaller, job};
use crate::base::registry::Registry;
use crate::base::{FileContents, FileStep, PackageError, Plan};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(EnvironmentInstaller);
}

/// Where a `.env` waits (sealed) for the job that writes it.
pub fn pending_secret(site_id: i64) -> String {
    format!("site:{site_id}:env_pending")
}

/// Seal the new `.env` and queue the job that writes it.
pub async fn write_env(store: &Store, site: &ServerSite, contents: &Secret) -> Result<Job, PackageError> {
    check(contents)?;
    store
        .put_service_secret(site.server_id, &pending_secret(site.id), contents)
        .await?;
    Ok(store
        .enqueue(&job::<EnvironmentInstaller>(
            site.server_id,
            &SiteRef { site_id: site.id },
        )?)
        .await?)
}

/// Write the new `.env` through its job and wait for it (up to `wait`): what a user saving the file expects.
/// A job still queued behind other work on the server is reported, and writes the file when its turn comes.
pub async fn write_env_and_wait(
    store: &Store,
    site: &ServerSite,
    contents: &Secret,
    wait: std::time::Duration,
) -> Result<Job, PackageError> {
    let job = write_env(store, site, contents).await?;
    let job = store.wait_for_job(job.id, wait).await?;
    match job.status {
        brokeforge_store::JobStatus::Done => Ok(job),
        brokeforge_store::JobStatus::Failed | brokeforge_store::JobStatus::Cancelled => Err(
            ValidationError::new(
                "env",
                format!(
                    "writing the .env failed: {}",
                    job.error.as_deref().unwrap_or("unknown error")
                ),
            )
            .into(),
        ),
        _ => Err(ValidationError::new(
            "env",
            format!(
                "the .env is queued behind other work on this server (job {}); it is written when its turn comes",
                job.id
            ),
        )
        .into()),
    }
}

fn check(contents: &Secret) -> Result<(), ValidationError> {
    let text = contents.expose();
    if text.len() > MAX_ENV_BYTES {
        return Err(ValidationError::new(
            "env",
            "the environment file is larger than 64 KiB",
        ));
    }
    if text.contains('\0') {
        return Err(ValidationError::new("env", "the environment file must be text"));
    }
    Ok(())
}

/// Largest accepted `.env`.
pub const MAX_ENV_BYTES: usize = 64 * 1024;

milestones! {
    pub enum EnvironmentInstallerMilestones {
        WriteEnvironment => ("write_environment", "Writing the environment file"),
    }
}

pub struct EnvironmentInstaller;

impl Package for EnvironmentInstaller {
    type Milestones = EnvironmentInstallerMilestones;
    type Request = SiteRef;
    type Input = (ServerSite, Secret);
    const JOB: &'static str = "site_environment_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::User
    }

    async fn gather(&self, cx: &Gather<'_>, r: &SiteRef) -> Result<(ServerSite, Secret), PackageError> {
        let site = cx.store.site(r.site_id).await?;
        on_server(cx.server.id, &site)?;
        let contents = cx
            .store
            .service_secret(site.server_id, &pending_secret(site.id))
            .await?
            .ok_or_else(|| ValidationError::new("env", "no new environment file is waiting to be written"))?;
        Ok((site, contents))
    }

    fn commands(&self, (site, contents): &(ServerSite, Secret)) -> Result<Plan, PackageError> {
        self.env_plan(site, contents)
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        (site, _): (ServerSite, Secret),
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        cx.store
            .delete_service_secret(site.server_id, &pending_secret(site.id))
            .await?;
        Ok(serde_json::json!({"site_id": site.id}))
    }
}

impl PackageInstaller for EnvironmentInstaller {}

fn env_path(site: &ServerSite) -> Result<String, PackageError> {
    Ok(format!(
        "{}/shared/.env",
        SiteUser::of(site).site_root(&validate::domain(&site.domain)?)
    ))
}

impl EnvironmentInstaller {
    /// The current `.env` (empty when there is none yet).
    pub async fn read(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        site: &ServerSite,
    ) -> Result<Secret, PackageError> {
        on_server(ctx.server.id, site)?;
        let command = format!(
            "cat {} 2>/dev/null || true",
            brokeforge_core::shell_quote(&env_path(site)?)
        );
        // As the site's user: a link it planted in place of `.env` leads nowhere it could not read itself.
        let step = SiteUser::of(site).step(command, std::time::Duration::from_secs(30));
        Ok(Secret::new(
            read_live_step(executor, ctx, self.plan(), step).await?,
        ))
    }

    /// Replace the `.env` (mode 0600, the app user's).
    pub fn env_plan(&self, site: &ServerSite, contents: &Secret) -> Result<Plan, PackageError> {
        check(contents)?;
        Ok(self
            .plan()
            .track(EnvironmentInstallerMilestones::WriteEnvironment)
            .put_file(SiteUser::of(site).file(FileStep::new(
                env_path(site)?,
                FileContents::Secret(contents.clone()),
                0o600,
            ))))
    }
}
