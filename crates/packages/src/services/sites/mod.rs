//! The spec's `Services/Sites` category: sites (nginx vhost + directory layout), git repositories,
//! zero-downtime deployments with rollback, the environment file, deploy webhooks and site commands.

pub mod certificate;
pub mod deployment;
pub mod environment;
pub mod git_repository_installer;
pub mod site;
mod site_command_installer;
mod site_command_installer_job;
pub mod tasks;
pub mod webhook;

use std::time::Duration;

use brokeforge_core::ValidationError;
use serde::Deserialize;

pub use deployment::{
    DeploymentInstaller, DeploymentInstallerMilestones, RollbackInstaller,
    RollbackInstallerMilestones,
};
pub use environment::EnvironmentInstaller;
pub use git_repository_installer::{
    GitRepositoryInstaller, GitRepositoryInstallerMilestones, RepositoryRequest,
};
pub use site::{
    SiteConfig, SiteInstaller, SiteInstallerMilestones, SiteRemover, SiteRemoverMilestones,
    SiteRequest,
};
pub use site_command_installer::{SiteCommandInstaller, SiteCommandInstallerMilestones};
pub use site_command_installer_job::SiteCommandInstallerJob;

use brokeforge_store::ServerSite;

use crate::base::Plan;
use crate::base::executor::{Executor, RunContext};
use crate::job_handler;
use crate::jobs::{JobContext, Registry};

/// Store name of a site's sealed deploy key.
pub fn deploy_key_secret(site_id: i64) -> String {
    format!("site:{site_id}:deploy_key")
}

/// Store name of a site's webhook token.
pub fn webhook_secret(site_id: i64) -> String {
    format!("site:{site_id}:webhook")
}

/// Where the deploy key lives on the server.
pub fn deploy_key_path(site_id: i64) -> String {
    format!("{}/.ssh/brokeforge-site-{site_id}", site::APP_HOME)
}

/// A site's job runs against the site's own server only.
fn on_server(ctx: &RunContext, site: &ServerSite) -> Result<(), ValidationError> {
    if site.server_id != ctx.server.id {
        return Err(ValidationError::new(
            "site",
            "the site belongs to another server",
        ));
    }
    Ok(())
}

/// Work on a site (repository, certificate, background work) waits until the site is installed.
fn require_active(site: &ServerSite) -> Result<(), ValidationError> {
    if site.status != brokeforge_core::ServiceStatus::Active {
        return Err(ValidationError::new("site", "the site is not active yet"));
    }
    Ok(())
}

/// Run one command on `plan`'s credential and return what it printed: read live for the user, never stored
/// in the job log or events.
async fn read_live(
    executor: &Executor,
    ctx: &RunContext,
    plan: Plan,
    command: String,
) -> Result<String, crate::PackageError> {
    let plan = plan.run_step(crate::base::RunStep {
        command,
        timeout: Duration::from_secs(30),
        stdin: None,
        credential: None,
        private_output: true,
    });
    let report = executor
        .run(ctx, &plan, brokeforge_core::ProvisionType::Install)
        .await?;
    Ok(report
        .outputs
        .first()
        .map(|o| o.stdout_text())
        .unwrap_or_default())
}

fn payload<T: for<'de> Deserialize<'de>>(ctx: &JobContext<'_>) -> Result<T, ValidationError> {
    serde_json::from_value(ctx.job.payload.clone())
        .map_err(|e| ValidationError::new("payload", format!("invalid {} job: {e}", ctx.job.kind)))
}

#[derive(Deserialize)]
struct SitePayload {
    site_id: i64,
    #[serde(default)]
    keep_files: bool,
}

job_handler! {
    /// Runs a [`SiteInstaller`] from the queue.
    SiteInstallerJob, "site_installer", |ctx| {
        let p: SitePayload = payload(ctx)?;
        let site = ctx.store.site(p.site_id).await?;
        SiteInstaller.execute(ctx.executor, &ctx.run_context()?, &site).await?;
        Ok(serde_json::json!({"site_id": site.id, "domain": site.domain}))
    }
}

job_handler! {
    /// Runs a [`SiteRemover`] from the queue.
    SiteRemoverJob, "site_remover", |ctx| {
        let p: SitePayload = payload(ctx)?;
        let site = ctx.store.site(p.site_id).await?;
        SiteRemover.execute(ctx.executor, &ctx.run_context()?, &site, p.keep_files).await?;
        Ok(serde_json::json!({"site_id": site.id, "kept_files": p.keep_files}))
    }
}

job_handler! {
    /// Runs a [`tasks::SiteTasksInstaller`]: the server's scheduled commands and daemons of a site made to
    /// match its configuration.
    SiteTasksInstallerJob, "site_tasks_installer", |ctx| {
        let p: SitePayload = payload(ctx)?;
        let site = ctx.store.site(p.site_id).await?;
        tasks::SiteTasksInstaller.execute(ctx.executor, &ctx.run_context()?, &site).await?;
        let t = SiteConfig::of(&site).tasks;
        Ok(serde_json::json!({"site_id": site.id, "schedules": t.schedules.len(), "daemons": t.daemons.len()}))
    }
}

#[derive(Deserialize)]
struct CertificatePayload {
    site_id: i64,
    #[serde(default)]
    request: certificate::CertificateRequest,
}

job_handler! {
    /// Runs a [`certificate::CertificateInstaller`] from the queue.
    CertificateInstallerJob, "site_certificate_installer", |ctx| {
        let p: CertificatePayload = payload(ctx)?;
        let site = ctx.store.site(p.site_id).await?;
        let cert = certificate::CertificateInstaller
            .execute(ctx.executor, &ctx.run_context()?, &site, &p.request)
            .await?;
        Ok(serde_json::json!({"site_id": site.id, "domains": cert.domains, "expires": cert.expires}))
    }
}

job_handler! {
    /// Runs a [`certificate::CertificateRemover`] from the queue.
    CertificateRemoverJob, "site_certificate_remover", |ctx| {
        let p: CertificatePayload = payload(ctx)?;
        let site = ctx.store.site(p.site_id).await?;
        certificate::CertificateRemover.execute(ctx.executor, &ctx.run_context()?, &site).await?;
        Ok(serde_json::json!({"site_id": site.id}))
    }
}

#[derive(Deserialize)]
struct RepositoryPayload {
    site_id: i64,
    #[serde(flatten)]
    request: RepositoryRequest,
    #[serde(default = "yes")]
    deploy: bool,
}

fn yes() -> bool {
    true
}

job_handler! {
    /// Runs a [`GitRepositoryInstaller`] and queues the first deployment.
    GitRepositoryInstallerJob, "git_repository_installer", |ctx| {
        let p: RepositoryPayload = payload(ctx)?;
        let site = ctx.store.site(p.site_id).await?;
        let repo = GitRepositoryInstaller
            .execute(ctx.executor, &ctx.run_context()?, &site, &p.request)
            .await?;
        let mut result = serde_json::json!({
            "site_id": site.id,
            "repository": repo.url,
            "branch": repo.branch,
            "host_key_fingerprints": repo.host_key_fingerprints,
        });
        if p.deploy {
            let site = ctx.store.site(p.site_id).await?;
            let (d, job) = deployment::deploy(ctx.store, &site, None, "repository connected").await?;
            result["deployment_id"] = d.id.into();
            result["deployment_job_id"] = job.id.into();
        }
        Ok(result)
    }
}

#[derive(Deserialize)]
struct DeployPayload {
    site_id: i64,
    deployment_id: i64,
    branch: Option<String>,
    release: Option<String>,
}

job_handler! {
    /// Runs a [`DeploymentInstaller`] for a queued deployment.
    DeploymentInstallerJob, "site_deploy", |ctx| {
        let p: DeployPayload = payload(ctx)?;
        let site = ctx.store.site(p.site_id).await?;
        let d = ctx.store.deployment(p.deployment_id).await?;
        let info = DeploymentInstaller
            .execute(ctx.executor, &ctx.run_context()?, &site, &d, p.branch.as_deref())
            .await?;
        Ok(serde_json::json!({"deployment_id": d.id, "release": info.name, "commit": info.commit}))
    }
}

job_handler! {
    /// Runs a [`RollbackInstaller`] for a queued rollback.
    RollbackInstallerJob, "site_rollback", |ctx| {
        let p: DeployPayload = payload(ctx)?;
        let site = ctx.store.site(p.site_id).await?;
        let d = ctx.store.deployment(p.deployment_id).await?;
        let release = p.release.ok_or_else(|| ValidationError::new("release", "missing"))?;
        RollbackInstaller
            .execute(ctx.executor, &ctx.run_context()?, &site, &d, &release)
            .await?;
        Ok(serde_json::json!({"deployment_id": d.id, "release": release}))
    }
}

/// Register the site job kinds.
pub fn register(r: &mut Registry) {
    r.register(SiteCommandInstallerJob);
    r.register(SiteInstallerJob);
    r.register(SiteRemoverJob);
    r.register(GitRepositoryInstallerJob);
    r.register(DeploymentInstallerJob);
    r.register(RollbackInstallerJob);
    r.register(CertificateInstallerJob);
    r.register(CertificateRemoverJob);
    r.register(SiteTasksInstallerJob);
}

/// Longest a site command may run by default.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
