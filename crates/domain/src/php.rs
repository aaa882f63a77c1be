//! PHP settings and extensions of a server's installed PHP versions: read live from the server, changed through
//! queued jobs after the request was checked against the web server's record.

use std::collections::BTreeMap;
use std::time::Duration;

use brokeforge_packages::base::package::job;
use brokeforge_packages::services::webserver::nginx::WebServerConfig;
use brokeforge_packages::services::webserver::php::{
    PhpExtensionInstaller, PhpExtensionsRequest, PhpSettingsInstaller, PhpSettingsRequest,
    installed_version, modules_command, parse_modules, plan_extensions, plan_settings,
    setting_names,
};
use brokeforge_store::{Job, Server};
use serde::Serialize;

use crate::{Domain, DomainResult};

/// One PHP version's settings: what BrokeForge set, and what PHP's command line reports for each allowed name.
#[derive(Debug, Serialize)]
pub struct PhpSettings {
    pub version: String,
    /// Set in BrokeForge (written to the server).
    pub set: BTreeMap<String, String>,
    /// As `phpV` reports them now (`ini_get`), for every setting BrokeForge can set.
    pub effective: BTreeMap<String, String>,
}

impl Domain {
    /// A version's settings: BrokeForge's record and the values PHP reports on the server now.
    pub async fn php_settings(&self, server: &Server, version: &str) -> DomainResult<PhpSettings> {
        let config = WebServerConfig::current(&self.store, server.id).await?;
        let version = installed_version(&config, version)?;
        // The names are BrokeForge's own constants; one `name=value` line each.
        let names: Vec<String> = setting_names().iter().map(|n| format!("\"{n}\"")).collect();
        let code = format!(
            "foreach ([{}] as $k) {{ $v = ini_get($k); echo $k, \"=\", $v === false ? \"\" : $v, \"\\n\"; }}",
            names.join(",")
        );
        let command = format!("php{version} -r {}", brokeforge_core::shell_quote(&code));
        let text = self
            .read_on_server(server, &command, Duration::from_secs(30))
            .await?;
        let effective = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(PhpSettings {
            set: config
                .php_settings
                .get(&version)
                .cloned()
                .unwrap_or_default(),
            version,
            effective,
        })
    }

    /// Queue a settings change; bad names or values, or a version not installed, are refused first.
    pub async fn set_php_settings(
        &self,
        server: &Server,
        r: &PhpSettingsRequest,
    ) -> DomainResult<Job> {
        let config = WebServerConfig::current(&self.store, server.id).await?;
        plan_settings(&config, r)?;
        Ok(self
            .store
            .enqueue(&job::<PhpSettingsInstaller>(server.id, r)?)
            .await?)
    }

    /// The modules a version loads now (`php -m` on the server).
    pub async fn php_extensions(
        &self,
        server: &Server,
        version: &str,
    ) -> DomainResult<(String, Vec<String>)> {
        let config = WebServerConfig::current(&self.store, server.id).await?;
        let version = installed_version(&config, version)?;
        let text = self
            .read_on_server(server, &modules_command(&version), Duration::from_secs(30))
            .await?;
        Ok((version, parse_modules(&text)))
    }

    /// Queue extensions to add and remove; bad names, the web server's own ones, or a version not installed
    /// are refused first (a package the server's sources lack is refused by the job before anything changes).
    pub async fn change_php_extensions(
        &self,
        server: &Server,
        r: &PhpExtensionsRequest,
    ) -> DomainResult<Job> {
        let config = WebServerConfig::current(&self.store, server.id).await?;
        plan_extensions(&config, r)?;
        Ok(self
            .store
            .enqueue(&job::<PhpExtensionInstaller>(server.id, r)?)
            .await?)
    }
}
