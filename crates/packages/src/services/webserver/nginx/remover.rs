//! Web Service Remover: stops and purges nginx and every PHP version the installer added; other services stay.

use brokeforge_core::{CredentialKind, ServiceType, ValidationError, validate};
use serde_json::json;

use super::installer::PHP_EXTENSIONS;
use super::{SERVICE_NAME, WebServerConfig};
use crate::base::package::{Gather, NoRequest, Package, PackageRemover};
use crate::base::{PackageError, Plan, StoreChange};
use crate::milestones;
use crate::services::server::provision::APT;

milestones! {
    pub enum WebServiceRemoverMilestones {
        StopServices => ("stop_services", "Stopping nginx and PHP-FPM"),
        RemoveSoftware => ("remove_software", "Removing nginx and PHP"),
        RemoveConfiguration => ("remove_configuration", "Removing configuration"),
        Complete => ("complete", "Web server removed"),
    }
}

pub struct WebServiceRemover;

impl Package for WebServiceRemover {
    type Milestones = WebServiceRemoverMilestones;
    type Request = NoRequest;
    /// The PHP versions to remove.
    type Input = Vec<String>;
    const JOB: &'static str = "webserver_remover";

    fn service_type(&self) -> ServiceType {
        ServiceType::Webserver
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, _r: &NoRequest) -> Result<Vec<String>, PackageError> {
        let sites = cx.store.sites(cx.server.id).await?;
        if !sites.is_empty() {
            let names: Vec<&str> = sites.iter().map(|s| s.domain.as_str()).collect();
            return Err(ValidationError::new(
                SERVICE_NAME,
                format!(
                    "the server still has sites ({}): remove them first, or they stop being served",
                    names.join(", ")
                ),
            )
            .into());
        }
        let config = WebServerConfig::current(cx.store, cx.server.id).await?;
        Ok(config
            .php_versions
            .iter()
            .map(|v| validate::php_version(v))
            .collect::<Result<Vec<_>, _>>()?)
    }

    fn commands(&self, versions: &Vec<String>) -> Result<Plan, PackageError> {
        Ok(self.remover_plan(versions))
    }

    async fn finish(
        &self,
        _cx: &Gather<'_>,
        versions: Vec<String>,
        _report: crate::base::executor::RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        Ok(json!({"removed_php_versions": versions}))
    }
}

impl PackageRemover for WebServiceRemover {}

impl WebServiceRemover {
    fn remover_plan(&self, versions: &[String]) -> Plan {
        use WebServiceRemoverMilestones as M;
        let units: Vec<String> = versions
            .iter()
            .map(|v| format!("php{v}-fpm"))
            .chain(["nginx".to_string()])
            .collect();
        let mut packages = vec![
            "nginx".to_string(),
            "nginx-common".to_string(),
            "nginx-core".to_string(),
            "composer".to_string(),
        ];
        for v in versions {
            packages.extend(PHP_EXTENSIONS.iter().map(|e| format!("php{v}-{e}")));
            packages.push(format!("php{v}-readline"));
        }
        let dirs: Vec<String> = versions.iter().map(|v| format!("/etc/php/{v}")).collect();
        self.plan()
            .track(M::StopServices)
            .run(format!(
                "for u in {}; do systemctl disable --now \"$u\" 2>/dev/null || true; done",
                units.join(" ")
            ))
            .track(M::RemoveSoftware)
            // Only packages that are installed: purging an unknown name would fail the whole command.
            .run_with_timeout(
                format!(
                    "pkgs=$(dpkg-query -W -f '${{Package}} ${{Status}}\\n' {} 2>/dev/null | awk '/install ok installed/ {{print $1}}'); \
                     [ -z \"$pkgs\" ] || {APT} purge -y -qq $pkgs; {APT} autoremove --purge -y -qq",
                    packages.join(" ")
                ),
                std::time::Duration::from_secs(1800),
            )
            .track(M::RemoveConfiguration)
            .run(format!(
                "rm -rf /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default /home/brokeforge/default {}",
                dirs.join(" ")
            ))
            .track(M::Complete)
            .record(StoreChange::DeleteService { name: SERVICE_NAME.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_snapshot() {
        insta::assert_snapshot!(
            WebServiceRemover
                .commands(&vec!["8.2".into(), "8.3".into()])
                .unwrap()
                .to_string()
        );
    }
}
