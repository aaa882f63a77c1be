//! Web Service Remover: stops and purges nginx and every PHP version the installer added; other services stay.

use brokeforge_core::{CredentialKind, ServiceType, validate};
use serde_json::json;

use crate::base::executor::{Executor, RunContext};
use crate::base::{Package, PackageError, PackageRemover, Plan, StoreChange};
use crate::milestones;
use crate::services::server::APT;

use super::PHP_EXTENSIONS;

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
    fn service_type(&self) -> ServiceType {
        ServiceType::Webserver
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }
}

impl PackageRemover for WebServiceRemover {}

impl WebServiceRemover {
    pub async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
    ) -> Result<Vec<String>, PackageError> {
        let services = executor.store().services(ctx.server.id).await?;
        let versions: Vec<String> = services
            .iter()
            .find(|s| s.service_name == super::SERVICE_NAME)
            .and_then(|s| s.configuration.get("php_versions"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let versions = versions
            .iter()
            .map(|v| validate::php_version(v))
            .collect::<Result<Vec<_>, _>>()?;
        self.remove(executor, ctx, self.commands(&versions)).await?;
        Ok(versions)
    }

    pub fn commands(&self, versions: &[String]) -> Plan {
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
            .record(StoreChange::DeleteService { name: super::SERVICE_NAME.into() })
    }
}

crate::job_handler! {
    WebServiceRemoverJob, "webserver_remover", |ctx| {
        let versions = WebServiceRemover
            .execute(ctx.executor, &ctx.run_context()?)
            .await?;
        Ok(json!({"removed_php_versions": versions}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_snapshot() {
        insta::assert_snapshot!(
            WebServiceRemover
                .commands(&["8.2".into(), "8.3".into()])
                .to_string()
        );
    }
}
