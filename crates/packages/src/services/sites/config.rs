//! What a site's `configuration` column holds, as types: the site's settings, repository, releases,
//! certificate and background work. Read and written only through [`SiteConfig`].

use brokeforge_core::ValidationError;
use brokeforge_store::Store;
use serde::{Deserialize, Serialize};

use super::common::{DEFAULT_KEEP_RELEASES, SiteUser};
use super::schedule::SiteTasks;
use crate::base::PackageError;
use crate::base::config::Configuration;

/// A release kept on the server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct ReleaseInfo {
    pub name: String,
    pub commit: Option<String>,
    pub deployment_id: Option<i64>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub deployed_at: i64,
}

/// The site's git repository (spec: `GitRepositoryInstaller`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RepositoryConfig {
    pub url: String,
    pub branch: String,
    /// `ssh` or `https`.
    pub transport: String,
    pub host: String,
    pub port: u16,
    /// The deploy key's public half, for the user to add to their git host.
    pub deploy_key_public: Option<String>,
    /// Fingerprints of the git server's host keys as learned (and pinned) when the repository was installed.
    #[serde(default)]
    pub host_key_fingerprints: Vec<String>,
    /// The pinned `known_hosts` lines.
    #[serde(default)]
    pub known_hosts: String,
}

/// What a site's `configuration` column holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SiteConfig {
    /// What the site runs, and so its vhost and default deploy script.
    #[serde(rename = "type")]
    pub kind: SiteKind,
    /// Where nginx sends requests of a Node.js or proxy site (on 127.0.0.1).
    pub proxy_port: Option<u16>,
    /// A static site answers unknown paths with `/index.html` (single-page applications).
    pub spa_fallback: bool,
    /// The site runs as its own Linux user with its own PHP-FPM pool (see `SiteUser`). Stored sites from before
    /// isolation existed share the app user.
    pub isolated: bool,
    /// The site's own PHP-FPM pool (isolated PHP sites).
    pub pool: PoolSettings,
    pub aliases: Vec<String>,
    /// Served directory inside a release (e.g. `public`); empty for the release root.
    pub web_directory: String,
    pub default_site: bool,
    pub client_max_body_size: String,
    pub repository: Option<RepositoryConfig>,
    /// The public half of the site's deploy key, for the user to add to their git host.
    pub deploy_key_public: Option<String>,
    /// The deploy script; `None` runs the deployment package's default script.
    pub deploy_script: Option<String>,
    pub deploy_timeout_secs: u64,
    pub keep_releases: u32,
    /// Files and directories (ending in `/`) linked from `shared/` into every release.
    pub shared_paths: Vec<String>,
    pub current_release: Option<String>,
    pub releases: Vec<ReleaseInfo>,
    /// The site's HTTPS certificate; `None` serves plain HTTP only.
    pub certificate: Option<CertificateConfig>,
    /// Scheduled commands and daemons.
    pub tasks: SiteTasks,
    /// Who calls the deploy webhook, and so which proof it must bring.
    pub webhook_provider: WebhookSource,
}

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
            kind: SiteKind::Php,
            proxy_port: None,
            spa_fallback: false,
            isolated: false,
            pool: PoolSettings::default(),
            aliases: Vec::new(),
            web_directory: "public".into(),
            default_site: false,
            client_max_body_size: "64M".into(),
            repository: None,
            deploy_key_public: None,
            deploy_script: None,
            deploy_timeout_secs: 900,
            keep_releases: DEFAULT_KEEP_RELEASES,
            shared_paths: vec![".env".into(), "storage/".into()],
            current_release: None,
            releases: Vec::new(),
            certificate: None,
            tasks: Default::default(),
            webhook_provider: Default::default(),
        }
    }
}

impl Configuration for SiteConfig {
    const WHAT: &'static str = "site configuration";
}

impl SiteConfig {
    /// A site's configuration for display and planning (the default when it cannot be read; such a
    /// configuration is never written back, see [`SiteConfig::update`]).
    pub fn of(site: &brokeforge_store::ServerSite) -> SiteConfig {
        SiteConfig::read_or_default(&site.configuration)
    }

    pub fn to_value(&self) -> serde_json::Value {
        Configuration::to_value(self)
    }

    /// Change a site's stored configuration as it is now (not as a job read it when it started: the user
    /// may have edited other fields meanwhile), under a revision check: a concurrent change is never
    /// overwritten; `change` is applied again to the newer configuration instead. An unreadable stored
    /// configuration is an error, never replaced by a default.
    pub async fn update(
        store: &Store,
        site_id: i64,
        mut change: impl FnMut(&mut SiteConfig),
    ) -> Result<SiteConfig, PackageError> {
        for _ in 0..20 {
            let site = store.site(site_id).await?;
            let mut fresh = SiteConfig::read(&site.configuration)?;
            change(&mut fresh);
            if store
                .set_site_configuration_if(site_id, site.config_revision, &fresh.to_value())
                .await?
            {
                return Ok(fresh);
            }
        }
        Err(brokeforge_store::StoreError::Conflict(format!(
            "the configuration of site {site_id} keeps changing; try again"
        ))
        .into())
    }
}

impl SiteUser {
    /// The user a stored site runs as.
    pub fn of(site: &brokeforge_store::ServerSite) -> SiteUser {
        SiteUser::new(site.id, SiteConfig::of(site).isolated)
    }
}

/// How an isolated site's PHP-FPM pool starts workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolSettings {
    /// `ondemand` (workers only while requests come: many quiet sites), `dynamic` or `static`.
    pub pm: String,
    pub max_children: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            pm: "ondemand".into(),
            max_children: 5,
        }
    }
}

impl PoolSettings {
    /// Only an isolated site that runs PHP has a pool of its own (others share the app user's).
    pub fn own_pool(isolated: bool, kind: SiteKind) -> Result<(), ValidationError> {
        if isolated && kind.runs_php() {
            Ok(())
        } else {
            Err(ValidationError::new(
                "pm",
                "only an isolated PHP site has a pool of its own to set",
            ))
        }
    }

    pub fn check(pm: &str, max_children: u32) -> Result<PoolSettings, ValidationError> {
        if !["ondemand", "dynamic", "static"].contains(&pm) {
            return Err(ValidationError::new(
                "pm",
                format!("`{pm}` is not a process manager mode: use ondemand, dynamic or static"),
            ));
        }
        if !(1..=200).contains(&max_children) {
            return Err(ValidationError::new(
                "max_children",
                format!("{max_children} workers: give 1 to 200"),
            ));
        }
        Ok(PoolSettings {
            pm: pm.into(),
            max_children,
        })
    }
}

/// A site's certificate, as stored in its configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CertificateConfig {
    /// certbot's certificate name (the site's domain).
    pub name: String,
    pub domains: Vec<String>,
    pub email: Option<String>,
    pub acme_directory: String,
    /// As certbot reports it, e.g. `2027-02-24 01:59:05+00:00`.
    pub expires: Option<String>,
    #[serde(default)]
    pub hsts: bool,
    /// Brought by the user (uploaded), not from an ACME certificate authority.
    #[serde(default)]
    pub custom: bool,
}

impl CertificateConfig {
    fn dir(&self) -> String {
        if self.custom {
            super::common::custom_certificate_dir(&self.name)
        } else {
            format!("/etc/letsencrypt/live/{}", self.name)
        }
    }
    pub fn fullchain_path(&self) -> String {
        format!("{}/fullchain.pem", self.dir())
    }
    pub fn key_path(&self) -> String {
        format!("{}/privkey.pem", self.dir())
    }
}

/// What a site runs. Stored sites from before types existed are PHP sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteKind {
    #[default]
    Php,
    /// PHP with Laravel's layout; its queue worker and scheduler are offered as presets.
    Laravel,
    /// WordPress from the distribution's package, with its own database and user.
    Wordpress,
    /// Files served as they are; no PHP.
    Static,
    /// A Node.js application run by a systemd unit on `proxy_port`, nginx in front.
    Node,
    /// nginx in front of something already listening on `proxy_port`.
    Proxy,
}

impl SiteKind {
    pub const ALL: [SiteKind; 6] = [
        SiteKind::Php,
        SiteKind::Laravel,
        SiteKind::Wordpress,
        SiteKind::Static,
        SiteKind::Node,
        SiteKind::Proxy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SiteKind::Php => "php",
            SiteKind::Laravel => "laravel",
            SiteKind::Wordpress => "wordpress",
            SiteKind::Static => "static",
            SiteKind::Node => "node",
            SiteKind::Proxy => "proxy",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SiteKind::Php => "PHP",
            SiteKind::Laravel => "Laravel",
            SiteKind::Wordpress => "WordPress",
            SiteKind::Static => "Static files",
            SiteKind::Node => "Node.js application",
            SiteKind::Proxy => "Reverse proxy to a port",
        }
    }

    pub fn parse(value: &str) -> Result<SiteKind, ValidationError> {
        SiteKind::ALL
            .into_iter()
            .find(|k| k.as_str() == value)
            .ok_or_else(|| {
                ValidationError::new(
                    "type",
                    format!(
                        "`{value}` is not a site type: use php, laravel, wordpress, static, node or proxy"
                    ),
                )
            })
    }

    /// nginx hands PHP files to PHP-FPM.
    pub fn runs_php(self) -> bool {
        matches!(
            self,
            SiteKind::Php | SiteKind::Laravel | SiteKind::Wordpress
        )
    }

    /// nginx passes every request to `proxy_port`.
    pub fn proxies(self) -> bool {
        matches!(self, SiteKind::Node | SiteKind::Proxy)
    }
}

/// Who calls a site's webhook (the site chooses; the default is GitHub).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookSource {
    #[default]
    GitHub,
    GitLab,
    Generic,
}

impl WebhookSource {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookSource::GitHub => "github",
            WebhookSource::GitLab => "gitlab",
            WebhookSource::Generic => "generic",
        }
    }

    pub fn parse(value: &str) -> Result<WebhookSource, ValidationError> {
        match value {
            "github" => Ok(WebhookSource::GitHub),
            "gitlab" => Ok(WebhookSource::GitLab),
            "generic" => Ok(WebhookSource::Generic),
            other => Err(ValidationError::new(
                "provider",
                format!("`{other}` is not github, gitlab or generic"),
            )),
        }
    }
}
