//! Site PHP Version Installer: a PHP site moves to another installed PHP version. Its vhost is rewritten to
//! that version's PHP-FPM pool and nginx reloads gracefully (requests in flight finish on the old pool; a
//! vhost nginx refuses puts the old one back); the site's record changes only when that worked.

use brokeforge_core::{CredentialKind, ServiceType, ValidationError, validate};
use brokeforge_store::{JobTarget, NewJob, ServerSite, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{SiteUser, on_server};
use super::pool::{remove_pool_command, write_pool};
use super::config::SiteConfig;
use super::vhost::write_vhosts;
use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller, job};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan};
use crate::milestones;
use crate::services::webserver::nginx::{NGINX_RELOAD, WebServerConfig};

pub fn register(r: &mut Registry) {
    r.installer(SitePhpVersionInstaller);
}

milestones! {
    pub enum SitePhpVersionInstallerMilestones {
        ConfigureNginx => ("configure_nginx", "Pointing the site at the new PHP version"),
        ReloadNginx => ("reload_nginx", "Testing and reloading nginx"),
        Complete => ("complete", "PHP version changed"),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhpVersionRequest {
    pub site_id: i64,
    pub version: String,
}

/// Check the version for the site: a PHP site, an installed version, not the one it has.
pub fn check_version(
    site: &ServerSite,
    webserver: &WebServerConfig,
    version: &str,
) -> Result<String, ValidationError> {
    let config = SiteConfig::of(site);
    if !config.kind.runs_php() {
        return Err(ValidationError::new(
            "version",
            format!("a {} site runs no PHP", config.kind.as_str()),
        ));
    }
    let v = crate::services::webserver::php::installed_version(webserver, version)?;
    if site.php_version.as_deref() == Some(v.as_str()) {
        return Err(ValidationError::new(
            "version",
            format!("the site runs PHP {v} already"),
        ));
    }
    Ok(v)
}

/// Check and queue a site's move to another PHP version.
pub async fn change_php_version(
    store: &Store,
    site: &ServerSite,
    version: &str,
) -> Result<brokeforge_store::Job, PackageError> {
    let webserver = WebServerConfig::current(store, site.server_id).await?;
    let version = check_version(site, &webserver, version)?;
    Ok(store
        .enqueue(&NewJob {
            target: Some(JobTarget::Site {
                id: site.id,
                provision_type: brokeforge_core::ProvisionType::Install,
            }),
            ..job::<SitePhpVersionInstaller>(
                site.server_id,
                &PhpVersionRequest {
                    site_id: site.id,
                    version,
                },
            )?
        })
        .await?)
}

pub struct SitePhpVersionInstaller;

impl Package for SitePhpVersionInstaller {
    type Milestones = SitePhpVersionInstallerMilestones;
    type Request = PhpVersionRequest;
    /// The site as it will be (with the new version), its configuration and the version it leaves.
    type Input = (ServerSite, SiteConfig, Option<String>);
    const JOB: &'static str = "site_php_version_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(
        &self,
        cx: &Gather<'_>,
        r: &PhpVersionRequest,
    ) -> Result<(ServerSite, SiteConfig, Option<String>), PackageError> {
        let mut site = cx.store.site(r.site_id).await?;
        on_server(cx.server.id, &site)?;
        let old = site.php_version.clone();
        let webserver = WebServerConfig::current(cx.store, cx.server.id).await?;
        site.php_version = Some(check_version(&site, &webserver, &r.version)?);
        let config = SiteConfig::of(&site);
        Ok((site, config, old))
    }

    /// An isolated site's pool moves with it: the new version's pool first, then nginx to it, then the old
    /// pool away (requests in flight on the old one finish: PHP-FPM reloads gracefully).
    fn commands(
        &self,
        (site, config, old): &(ServerSite, SiteConfig, Option<String>),
    ) -> Result<Plan, PackageError> {
        use SitePhpVersionInstallerMilestones as M;
        validate::domain(&site.domain)?;
        let user = SiteUser::new(site.id, config.isolated);
        let version = validate::php_version(site.php_version.as_deref().unwrap_or_default())?;
        let plan = write_pool(self.plan().track(M::ConfigureNginx), &user, &version, &config.pool)?;
        let mut plan = write_vhosts(plan, site, config, &[])?
            .track(M::ReloadNginx)
            .run(NGINX_RELOAD);
        if let Some(remove) = old
            .as_deref()
            .filter(|o| *o != version)
            .and_then(|o| validate::php_version(o).ok())
            .and_then(|o| remove_pool_command(&user, &o))
        {
            plan = plan.run(remove);
        }
        Ok(plan.track(M::Complete))
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        (site, _, _): (ServerSite, SiteConfig, Option<String>),
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        let version = site.php_version.clone().unwrap_or_default();
        cx.store.set_site_php_version(site.id, &version).await?;
        Ok(json!({"site_id": site.id, "php_version": version}))
    }
}

impl PackageInstaller for SitePhpVersionInstaller {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_checked_and_the_vhost_follows() {
        let site = crate::services::sites::site::tests::site();
        let webserver = WebServerConfig {
            php_versions: vec!["8.2".into(), "8.3".into()],
            cli_default: Some("8.2".into()),
            ..Default::default()
        };
        for (v, says) in [
            ("8.2", "already"),
            ("8.4", "not installed"),
            ("8.3; reboot", "PHP version"),
        ] {
            let e = check_version(&site, &webserver, v).unwrap_err();
            assert!(e.message.contains(says), "{v}: {}", e.message);
        }
        let mut moved = site.clone();
        moved.php_version = Some(check_version(&site, &webserver, "8.3").unwrap());
        let plan = SitePhpVersionInstaller
            .commands(&(moved.clone(), SiteConfig::of(&moved), Some("8.2".into())))
            .unwrap()
            .to_string();
        assert!(
            plan.contains("fastcgi_pass unix:/run/php/php8.3-fpm-brokeforge.sock;")
                && plan.contains("nginx -t"),
            "{plan}"
        );
        let mut static_site = site.clone();
        static_site.configuration = SiteConfig {
            kind: crate::services::sites::config::SiteKind::Static,
            ..SiteConfig::of(&site)
        }
        .to_value();
        assert!(check_version(&static_site, &webserver, "8.3").is_err());
    }
}
