//! Site Vhost Installer: writes a site's nginx vhost again as BrokeForge renders it from the site's record and
//! reloads nginx gracefully. Drift repair queues it when a vhost was edited or removed by hand; a vhost nginx
//! refuses puts the previous one back (see `write_vhosts`).

use brokeforge_core::{CredentialKind, ServiceType};
use brokeforge_store::{ServerSite, Store};
use serde_json::json;

use super::common::{SiteRef, on_server, require_active};
use super::config::SiteConfig;
use super::vhost::write_vhosts;
use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller, job};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan};
use crate::milestones;
use crate::services::webserver::nginx::NGINX_RELOAD;

pub fn register(r: &mut Registry) {
    r.installer(SiteVhostInstaller);
}

milestones! {
    pub enum SiteVhostInstallerMilestones {
        WriteVhost => ("write_vhost", "Writing the site's vhost"),
        ReloadNginx => ("reload_nginx", "Testing and reloading nginx"),
        Complete => ("complete", "Vhost in place"),
    }
}

pub struct SiteVhostInstaller;

/// Queue the rewrite of a site's vhost. No job target: a refused vhost puts the old one back, and the site
/// stays as it was rather than being marked failed.
pub async fn rewrite_vhost(
    store: &Store,
    site: &ServerSite,
) -> Result<brokeforge_store::Job, PackageError> {
    require_active(site)?;
    Ok(store
        .enqueue(&job::<SiteVhostInstaller>(
            site.server_id,
            &SiteRef { site_id: site.id },
        )?)
        .await?)
}

impl Package for SiteVhostInstaller {
    type Milestones = SiteVhostInstallerMilestones;
    type Request = SiteRef;
    type Input = (ServerSite, SiteConfig);
    const JOB: &'static str = "site_vhost_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(
        &self,
        cx: &Gather<'_>,
        r: &SiteRef,
    ) -> Result<(ServerSite, SiteConfig), PackageError> {
        let site = cx.store.site(r.site_id).await?;
        on_server(cx.server.id, &site)?;
        require_active(&site)?;
        let config = SiteConfig::of(&site);
        Ok((site, config))
    }

    fn commands(&self, (site, config): &(ServerSite, SiteConfig)) -> Result<Plan, PackageError> {
        use SiteVhostInstallerMilestones as M;
        Ok(write_vhosts(self.plan().track(M::WriteVhost), site, config, &[])?
            .track(M::ReloadNginx)
            .run(NGINX_RELOAD)
            .track(M::Complete))
    }

    async fn finish(
        &self,
        _cx: &Gather<'_>,
        (site, _): (ServerSite, SiteConfig),
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        Ok(json!({"site_id": site.id, "domain": site.domain}))
    }
}

impl PackageInstaller for SiteVhostInstaller {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_writes_tests_and_reloads() {
        let site = crate::services::sites::site::tests::site();
        let config = SiteConfig::of(&site);
        let plan = SiteVhostInstaller.commands(&(site, config)).unwrap().to_string();
        assert!(plan.contains("/etc/nginx/sites-available/"), "{plan}");
        assert!(plan.contains("nginx -t"), "{plan}");
        assert!(plan.contains("systemctl reload nginx"), "{plan}");
    }
}
