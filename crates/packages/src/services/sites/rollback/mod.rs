//! Rollback: point `current` at a release the server still keeps, reload PHP-FPM, restart the daemons there.

use brokeforge_core::{CredentialKind, ServiceType, ValidationError, shell_quote, validate};
use brokeforge_store::{Deployment, Job, ServerSite, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{SiteUser, on_server};
use super::config::{ReleaseInfo, SiteConfig};
use super::deployment::{activate_steps, exit_code, ready, restart_daemons};
use crate::base::executor::{Executor, RunContext};
use crate::base::package::{Gather, Package, PackageInstaller, job};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(RollbackInstaller);
}

milestones! {
    pub enum RollbackInstallerMilestones {
        CheckRelease => ("check_release", "Checking the release"),
        Activate => ("activate", "Activating the release"),
        Complete => ("complete", "Rolled back"),
    }
}

/// Queue a rollback to a kept release.
pub async fn rollback(
    store: &Store,
    site: &ServerSite,
    release: &str,
    triggered_by: &str,
) -> Result<(Deployment, Job), PackageError> {
    let config = ready(site)?;
    let info = config
        .releases
        .iter()
        .find(|r| r.name == release)
        .ok_or_else(|| {
            ValidationError::new(
                "release",
                format!(
                    "`{release}` is not a kept release of this site (kept: {})",
                    config
                        .releases
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
    Ok(store
        .queue_deployment(
            site,
            "rollback",
            None,
            Some(&info.name),
            triggered_by,
            job::<RollbackInstaller>(
                site.server_id,
                &RollbackRequest {
                    site_id: site.id,
                    deployment_id: 0,
                    release: info.name.clone(),
                },
            )?,
        )
        .await?)
}

pub struct RollbackInstaller;

/// A queued rollback: which site, which deployment record, which kept release.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackRequest {
    pub site_id: i64,
    /// Set by the store when it records the rollback with its job.
    #[serde(default)]
    pub deployment_id: i64,
    pub release: String,
}

pub struct RollbackInput {
    pub site: ServerSite,
    pub deployment: Deployment,
    pub release: ReleaseInfo,
}

impl Package for RollbackInstaller {
    type Milestones = RollbackInstallerMilestones;
    type Request = RollbackRequest;
    type Input = RollbackInput;
    const JOB: &'static str = "site_rollback";
    /// It may have partly run: after a lost worker the user decides whether to run it again.
    const RESUMABLE: bool = false;

    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::User
    }

    async fn gather(
        &self,
        cx: &Gather<'_>,
        r: &RollbackRequest,
    ) -> Result<RollbackInput, PackageError> {
        let site = cx.store.site(r.site_id).await?;
        on_server(cx.server.id, &site)?;
        let deployment = cx.store.deployment(r.deployment_id).await?;
        let release = SiteConfig::of(&site)
            .releases
            .iter()
            .find(|k| k.name == r.release)
            .cloned()
            .ok_or_else(|| {
                ValidationError::new("release", format!("`{}` is not a kept release", r.release))
            })?;
        Ok(RollbackInput {
            site,
            deployment,
            release,
        })
    }

    fn commands(&self, i: &RollbackInput) -> Result<Plan, PackageError> {
        self.rollback_plan(&i.site, &i.release.name)
    }
}

impl PackageInstaller for RollbackInstaller {
    async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        request: &RollbackRequest,
    ) -> Result<serde_json::Value, PackageError> {
        let store = executor.store();
        let i = self
            .gather(&Gather::new(store, &ctx.server), request)
            .await?;
        let (deployment, info) = (&i.deployment, &i.release);
        store
            .set_deployment_details(
                deployment.id,
                None,
                info.commit.as_deref(),
                Some(&info.name),
                None,
            )
            .await?;
        let plan = self.commands(&i)?;
        if let Err(e) = self.install(executor, ctx, plan).await {
            store
                .set_deployment_details(deployment.id, None, None, None, exit_code(&e))
                .await?;
            return Err(e);
        }
        store
            .set_deployment_details(deployment.id, None, None, None, Some(0))
            .await?;
        let name = info.name.clone();
        SiteConfig::update(store, i.site.id, |c| c.current_release = Some(name.clone())).await?;
        Ok(json!({"deployment_id": deployment.id, "release": info.name}))
    }
}

impl RollbackInstaller {
    pub fn rollback_plan(&self, site: &ServerSite, release: &str) -> Result<Plan, PackageError> {
        use RollbackInstallerMilestones as M;
        let domain = validate::domain(&site.domain)?;
        let php = validate::php_version(site.php_version.as_deref().unwrap_or_default())?;
        if release.is_empty()
            || !release
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ValidationError::new(
                "release",
                format!("`{release}` is not a release name"),
            )
            .into());
        }
        let config = SiteConfig::of(site);
        let user = SiteUser::new(site.id, config.isolated);
        let root = user.site_root(&domain);
        let plan = self
            .plan()
            .track(M::CheckRelease)
            .run_step(user.step(
                format!(
                    "test -d {} || {{ echo 'release {release} is no longer on the server' >&2; exit 1; }}",
                    shell_quote(&format!("{root}/releases/{release}"))
                ),
                crate::base::DEFAULT_TIMEOUT,
            ))
            .track(M::Activate);
        let plan = activate_steps(plan, &user, &config, &root, release, &php);
        let plan = super::deployment::restart_app(plan, site.id, &config);
        Ok(restart_daemons(plan, site.id, &config).track(M::Complete))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_plan() {
        let site = super::super::site::tests::site();
        insta::assert_snapshot!(
            RollbackInstaller
                .rollback_plan(&site, "20261125120000-42")
                .unwrap()
                .to_string()
        );
        assert!(RollbackInstaller.rollback_plan(&site, "../x").is_err());
    }
}
