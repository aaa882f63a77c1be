//! Site PHP Pool Installer: an isolated PHP site's PHP-FPM pool gets other process-manager settings (`pm`,
//! `max_children`). The pool file is rewritten, PHP-FPM must accept it and reloads gracefully; the site's
//! record changes only when that worked.

use brokeforge_core::{CredentialKind, ServiceType, ValidationError, validate};
use brokeforge_store::{JobTarget, NewJob, ServerSite, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{SiteUser, on_server, require_active};
use super::config::{PoolSettings, SiteConfig};
use super::pool::write_pool;
use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller, job};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(SitePhpPoolInstaller);
}

milestones! {
    pub enum SitePhpPoolInstallerMilestones {
        WritePool => ("write_pool", "Writing the site's PHP-FPM pool"),
        Complete => ("complete", "Pool settings changed"),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolRequest {
    pub site_id: i64,
    pub pm: String,
    pub max_children: u32,
}

/// The settings asked for, for a site that has a pool of its own; `None` fields keep the current value.
pub fn check_pool(
    site: &ServerSite,
    pm: Option<&str>,
    max_children: Option<u32>,
) -> Result<PoolSettings, ValidationError> {
    let config = SiteConfig::of(site);
    PoolSettings::own_pool(config.isolated, config.kind)?;
    let wanted = PoolSettings::check(
        pm.unwrap_or(&config.pool.pm),
        max_children.unwrap_or(config.pool.max_children),
    )?;
    if wanted == config.pool {
        return Err(ValidationError::new(
            "pm",
            format!(
                "the pool has these settings already (pm {}, {} workers)",
                wanted.pm, wanted.max_children
            ),
        ));
    }
    Ok(wanted)
}

/// Check and queue new pool settings for a site.
pub async fn change_pool(
    store: &Store,
    site: &ServerSite,
    pm: Option<&str>,
    max_children: Option<u32>,
) -> Result<brokeforge_store::Job, PackageError> {
    require_active(site)?;
    let wanted = check_pool(site, pm, max_children)?;
    Ok(store
        .enqueue(&NewJob {
            target: Some(JobTarget::Site {
                id: site.id,
                provision_type: brokeforge_core::ProvisionType::Install,
            }),
            ..job::<SitePhpPoolInstaller>(
                site.server_id,
                &PoolRequest {
                    site_id: site.id,
                    pm: wanted.pm,
                    max_children: wanted.max_children,
                },
            )?
        })
        .await?)
}

pub struct SitePhpPoolInstaller;

impl Package for SitePhpPoolInstaller {
    type Milestones = SitePhpPoolInstallerMilestones;
    type Request = PoolRequest;
    /// The site and the settings it will have.
    type Input = (ServerSite, PoolSettings);
    const JOB: &'static str = "site_php_pool_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(
        &self,
        cx: &Gather<'_>,
        r: &PoolRequest,
    ) -> Result<(ServerSite, PoolSettings), PackageError> {
        let site = cx.store.site(r.site_id).await?;
        on_server(cx.server.id, &site)?;
        let config = SiteConfig::of(&site);
        PoolSettings::own_pool(config.isolated, config.kind)?;
        Ok((site, PoolSettings::check(&r.pm, r.max_children)?))
    }

    fn commands(&self, (site, pool): &(ServerSite, PoolSettings)) -> Result<Plan, PackageError> {
        use SitePhpPoolInstallerMilestones as M;
        let version = validate::php_version(site.php_version.as_deref().unwrap_or_default())?;
        let user = SiteUser::of(site);
        Ok(write_pool(self.plan().track(M::WritePool), &user, &version, pool)?.track(M::Complete))
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        (site, pool): (ServerSite, PoolSettings),
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        let stored = pool.clone();
        SiteConfig::update(cx.store, site.id, |c| c.pool = stored.clone()).await?;
        Ok(json!({"site_id": site.id, "pm": pool.pm, "max_children": pool.max_children}))
    }
}

impl PackageInstaller for SitePhpPoolInstaller {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_isolated_php_sites_have_a_pool_to_set() {
        let mut site = crate::services::sites::site::tests::site();
        assert!(check_pool(&site, Some("static"), None).is_err(), "a shared site");
        let mut c = SiteConfig::of(&site);
        c.isolated = true;
        site.configuration = c.to_value();
        assert!(check_pool(&site, None, None).is_err(), "nothing changes");
        assert!(check_pool(&site, Some("forking"), None).is_err());
        assert!(check_pool(&site, None, Some(0)).is_err());
        let wanted = check_pool(&site, Some("dynamic"), Some(8)).unwrap();
        let plan = SitePhpPoolInstaller
            .commands(&(site.clone(), wanted))
            .unwrap()
            .to_string();
        assert!(plan.contains("| pm = dynamic"), "{plan}");
        assert!(plan.contains("| pm.max_children = 8"), "{plan}");
        assert!(plan.contains("php-fpm8.2 -t"), "{plan}");
        c.kind = crate::services::sites::config::SiteKind::Static;
        site.configuration = c.to_value();
        assert!(check_pool(&site, Some("static"), None).is_err(), "a static site");
    }
}
