//! nginx and PHP-FPM (catalogue name `webserver`): the installer adds a PHP version (run again for more; they
//! coexist), the remover takes nginx and every PHP version away.

mod installer;
mod remover;

use brokeforge_core::ServiceType;
use brokeforge_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use installer::{
    NGINX_RELOAD, PHP_EXTENSIONS, THIRD_PARTY_PHP, WebServiceInstaller,
    WebServiceInstallerMilestones, WebServiceOptions, WebServicePlan, distro_php,
};
pub use remover::{WebServiceRemover, WebServiceRemoverMilestones};

use crate::base::PackageError;
use crate::base::config::{Configuration, service_config};
use crate::base::registry::{Entry, Parameter, Registry};
use crate::templates::Template;

/// The service record's name (and the catalogue's).
pub const SERVICE_NAME: &str = "webserver";

pub static DEFAULT_CONF: Template = Template {
    name: "nginx/default.conf",
    source: include_str!("default.conf.j2"),
};
pub static PHP_INI: Template = Template {
    name: "php/php.ini",
    source: include_str!("php.ini.j2"),
};
pub static FPM_POOL: Template = Template {
    name: "php/fpm-pool.conf",
    source: include_str!("fpm-pool.conf.j2"),
};
pub static DEFAULT_SITE_PAGE: Template = Template {
    name: "provision/default-site.html",
    source: include_str!("default-site.html.j2"),
};

/// A PHP-FPM pool file: the shared `brokeforge` pool the web server package writes, or an isolated site's.
pub fn render_pool(
    version: &str,
    user: &crate::services::sites::common::SiteUser,
    settings: &crate::services::sites::config::PoolSettings,
) -> Result<String, PackageError> {
    let max = settings.max_children.max(1);
    crate::templates::render(
        &FPM_POOL,
        json!({
            "version": version,
            "purpose": if user.isolated { "one site as its own user" } else { "sites as the app user" },
            "pool": user.pool(),
            "user": user.name,
            "socket": user.fpm_socket(version),
            "pm": settings.pm,
            "max_children": max,
            "start_servers": max.min(2),
            "max_spare_servers": max.min(3),
            "error_log": pool_log(version, user.pool()),
        }),
    )
}

/// Where a pool's PHP errors go.
pub fn pool_log(version: &str, pool: &str) -> String {
    format!("/var/log/php{version}-fpm-{pool}.log")
}

/// What the web server's service record holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct WebServerConfig {
    /// Installed PHP versions, oldest first.
    pub php_versions: Vec<String>,
    /// The version `php` runs on the command line (and BrokeForge's default page uses).
    pub cli_default: Option<String>,
    /// php.ini settings set in BrokeForge, per version (see the `php` package).
    pub php_settings: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

impl Configuration for WebServerConfig {
    const WHAT: &'static str = "web server configuration";
}

impl WebServerConfig {
    /// The server's web server configuration (empty when it has none).
    pub async fn current(store: &Store, server_id: i64) -> Result<WebServerConfig, PackageError> {
        service_config(store, server_id, SERVICE_NAME).await
    }
}

pub fn register(r: &mut Registry) {
    for t in [&DEFAULT_CONF, &PHP_INI, &FPM_POOL, &DEFAULT_SITE_PAGE] {
        r.template(t);
    }
    let installer = r.installer(WebServiceInstaller);
    let remover = r.remover(WebServiceRemover);
    let mut php = vec!["distribution".to_string()];
    php.extend(THIRD_PARTY_PHP.iter().map(|v| v.to_string()));
    r.catalogue(
        Entry::new(
            SERVICE_NAME,
            ServiceType::Webserver,
            "nginx and PHP-FPM with the usual extensions; run again to add PHP versions",
            installer,
        )
        .parameters(vec![
            Parameter::choice(
                "php_version",
                "PHP version (the distribution's, or one from the well-known PHP repository)",
                "distribution",
                php,
            ),
            Parameter::new("memory_limit", "string", "PHP memory_limit", json!("256M")),
            Parameter::new("upload_max_filesize", "string", "largest upload", json!("64M")),
            Parameter::new("post_max_size", "string", "largest POST body", json!("64M")),
            Parameter::new(
                "max_execution_time",
                "integer",
                "seconds a request may run",
                json!(60),
            ),
            Parameter::new(
                "cli_default",
                "boolean",
                "make this version the command-line php",
                json!(true),
            ),
        ])
        .remover(remover, Vec::new()),
    );
}
