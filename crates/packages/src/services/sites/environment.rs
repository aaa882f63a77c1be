//! A site's environment file (`shared/.env`, linked into every release): read and replaced atomically over
//! the SSH channel. Its contents never appear on a command line, in the job log or in events.

use brokeforge_core::{CredentialKind, Secret, ServiceType, ValidationError, validate};
use brokeforge_store::ServerSite;

use super::site::site_root;
use crate::base::executor::{Executor, RunContext};
use crate::base::{FileContents, FileStep, Package, PackageError, PackageInstaller, Plan};
use crate::milestones;

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
    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::User
    }
}

impl PackageInstaller for EnvironmentInstaller {}

fn env_path(site: &ServerSite) -> Result<String, PackageError> {
    Ok(format!(
        "{}/shared/.env",
        site_root(&validate::domain(&site.domain)?)
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
        super::on_server(ctx, site)?;
        let command = format!(
            "cat {} 2>/dev/null || true",
            brokeforge_core::shell_quote(&env_path(site)?)
        );
        Ok(Secret::new(
            super::read_live(executor, ctx, self.plan(), command).await?,
        ))
    }

    /// Replace the `.env` (mode 0600, the app user's).
    pub async fn write(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        site: &ServerSite,
        contents: &Secret,
    ) -> Result<(), PackageError> {
        super::on_server(ctx, site)?;
        let plan = self.commands(site, contents)?;
        self.install(executor, ctx, plan).await?;
        Ok(())
    }

    pub fn commands(&self, site: &ServerSite, contents: &Secret) -> Result<Plan, PackageError> {
        let text = contents.expose();
        if text.len() > MAX_ENV_BYTES {
            return Err(
                ValidationError::new("env", "the environment file is larger than 64 KiB").into(),
            );
        }
        if text.contains('\0') {
            return Err(ValidationError::new("env", "the environment file must be text").into());
        }
        Ok(self
            .plan()
            .track(EnvironmentInstallerMilestones::WriteEnvironment)
            .put_file(FileStep::new(
                env_path(site)?,
                FileContents::Secret(contents.clone()),
                0o600,
            )))
    }
}
