//! Web Service Installer: nginx and PHP-FPM for one PHP version (run again for more versions; they coexist).

use brokeforge_core::{CredentialKind, ServiceStatus, ServiceType, ValidationError, validate};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{DEFAULT_CONF, DEFAULT_SITE_PAGE, PHP_INI, SERVICE_NAME, WebServerConfig};
use crate::base::config::Configuration;
use crate::base::package::{Gather, Package, PackageInstaller};
use crate::base::{FileContents, FileStep, PackageError, Plan, RunStep, StoreChange};
use crate::milestones;
use crate::services::server::provision::APT;
use crate::templates;

milestones! {
    pub enum WebServiceInstallerMilestones {
        PrepareSystem => ("prepare_system", "Preparing the system"),
        AddRepository => ("add_repository", "Adding the PHP package repository"),
        InstallSoftware => ("install_software", "Installing nginx and PHP"),
        ConfigurePhp => ("configure_php", "Configuring PHP-FPM"),
        ConfigureNginx => ("configure_nginx", "Configuring nginx"),
        EnableServices => ("enable_services", "Starting the services"),
        Complete => ("complete", "Web server installed"),
    }
}

/// Test the config, reload nginx, and wait (up to 10 s) until the workers of the old config have exited, so
/// the next request is answered by the new config.
pub const NGINX_RELOAD: &str = "nginx -t && old=$(ps -o pid= --ppid \"$(cat /run/nginx.pid)\" | tr '\\n' ' ') && \
     systemctl reload nginx && for i in $(seq 1 100); do alive=0; for p in $old; do kill -0 \"$p\" 2>/dev/null && alive=1; done; \
     [ \"$alive\" = 0 ] && break; sleep 0.1; done";

/// Extensions installed with every PHP version.
pub const PHP_EXTENSIONS: &[&str] = &[
    "fpm", "cli", "common", "curl", "mbstring", "xml", "zip", "intl", "mysql", "pgsql", "gd",
    "bcmath", "opcache", "redis",
];

/// Versions the well-known third-party repositories carry (packages.sury.org for Debian, ppa:ondrej/php for
/// Ubuntu).
pub const THIRD_PARTY_PHP: &[&str] = &["7.4", "8.0", "8.1", "8.2", "8.3", "8.4"];

/// The PHP version the distribution itself ships.
pub fn distro_php(os: &str) -> Option<&'static str> {
    match os {
        "debian 12" => Some("8.2"),
        "debian 13" => Some("8.4"),
        "ubuntu 22.04" => Some("8.1"),
        "ubuntu 24.04" => Some("8.3"),
        _ => None,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebServiceOptions {
    /// Empty (or `distribution`): the distribution's version.
    #[serde(deserialize_with = "php_choice")]
    pub php_version: Option<String>,
    pub memory_limit: String,
    pub upload_max_filesize: String,
    pub post_max_size: String,
    pub max_execution_time: u32,
    /// Make this version the `php` on the command line.
    pub cli_default: bool,
}

impl Default for WebServiceOptions {
    fn default() -> Self {
        WebServiceOptions {
            php_version: None,
            memory_limit: "256M".into(),
            upload_max_filesize: "64M".into(),
            post_max_size: "64M".into(),
            max_execution_time: 60,
            cli_default: true,
        }
    }
}

/// The catalogue's `distribution` choice means: let the installer pick the OS's own version.
fn php_choice<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<String>::deserialize(d)?;
    Ok(v.filter(|v| !v.is_empty() && v != "distribution"))
}

fn size(field: &'static str, v: &str) -> Result<String, ValidationError> {
    let (num, unit) = v.split_at(v.len().saturating_sub(1));
    if !num.is_empty()
        && num.len() <= 5
        && num.bytes().all(|b| b.is_ascii_digit())
        && matches!(unit, "K" | "M" | "G")
    {
        Ok(v.to_string())
    } else {
        Err(ValidationError::new(
            field,
            format!("`{v}` is not a size like 256M"),
        ))
    }
}

pub struct WebServiceInstaller;

impl Package for WebServiceInstaller {
    type Milestones = WebServiceInstallerMilestones;
    type Request = WebServiceOptions;
    type Input = WebServicePlan;
    const JOB: &'static str = "webserver_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Webserver
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(
        &self,
        cx: &Gather<'_>,
        options: &WebServiceOptions,
    ) -> Result<WebServicePlan, PackageError> {
        let current = WebServerConfig::current(cx.store, cx.server.id).await?;
        self.prepare(cx.server.os.as_deref(), &cx.server.name, &current, options)
    }

    fn commands(&self, p: &WebServicePlan) -> Result<Plan, PackageError> {
        self.webserver_plan(p)
    }

    async fn finish(
        &self,
        _cx: &Gather<'_>,
        done: WebServicePlan,
        _report: crate::base::executor::RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        Ok(json!({"php_version": done.php_version, "php_versions": done.php_versions}))
    }
}

impl PackageInstaller for WebServiceInstaller {}

/// What the plan needs, validated.
#[derive(Debug, Clone)]
pub struct WebServicePlan {
    pub os: String,
    pub php_version: String,
    pub third_party: bool,
    pub options: WebServiceOptions,
    pub server_name: String,
    /// Versions installed before plus this one; the first is the CLI default.
    pub php_versions: Vec<String>,
    pub cli_default: String,
    /// Kept as they are: the settings file is the `php` package's.
    pub php_settings: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

impl WebServiceInstaller {
    /// Check the options against the server's OS and what is installed already.
    pub fn prepare(
        &self,
        os: Option<&str>,
        server_name: &str,
        current: &WebServerConfig,
        options: &WebServiceOptions,
    ) -> Result<WebServicePlan, PackageError> {
        let os = os.ok_or_else(|| {
            ValidationError::new(
                "server",
                "the server is not provisioned yet: provision it first",
            )
        })?;
        let distro = distro_php(os).ok_or_else(|| {
            ValidationError::new("os", format!("unsupported operating system `{os}`"))
        })?;
        let version = match options.php_version.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => validate::php_version(v)?,
            None => distro.to_string(),
        };
        let third_party = version != distro;
        if third_party && !THIRD_PARTY_PHP.contains(&version.as_str()) {
            let source = if os.starts_with("ubuntu") {
                "ppa:ondrej/php"
            } else {
                "packages.sury.org"
            };
            return Err(ValidationError::new(
                "php_version",
                format!(
                    "PHP {version} is not available for {os}: choose {distro} (from the distribution) or one of {} (from {source})",
                    THIRD_PARTY_PHP.join(", ")
                ),
            )
            .into());
        }
        size("memory_limit", &options.memory_limit)?;
        size("upload_max_filesize", &options.upload_max_filesize)?;
        size("post_max_size", &options.post_max_size)?;
        if !(1..=3600).contains(&options.max_execution_time) {
            return Err(ValidationError::new(
                "max_execution_time",
                "must be between 1 and 3600 seconds",
            )
            .into());
        }
        let mut versions = current.php_versions.clone();
        if !versions.contains(&version) {
            versions.push(version.clone());
        }
        let previous_default = current.cli_default.clone();
        let cli_default = match (options.cli_default, previous_default) {
            (false, Some(prev)) => prev,
            _ => version.clone(),
        };
        Ok(WebServicePlan {
            os: os.to_string(),
            php_version: version,
            third_party,
            options: options.clone(),
            server_name: server_name.to_string(),
            php_versions: versions,
            cli_default,
            php_settings: current.php_settings.clone(),
        })
    }

    fn webserver_plan(&self, p: &WebServicePlan) -> Result<Plan, PackageError> {
        use WebServiceInstallerMilestones as M;
        let v = &p.php_version;
        let mut packages: Vec<String> = std::iter::once("nginx".to_string())
            .chain(PHP_EXTENSIONS.iter().map(|e| format!("php{v}-{e}")))
            .collect();
        // Composer for deploy scripts (Laravel's `composer install`). The distribution's package follows the
        // distribution's PHP, so it comes with that version only (with a third-party PHP it would pull in a
        // second PHP CLI).
        if !p.third_party {
            packages.push("composer".into());
        }
        let ini = templates::render(
            &PHP_INI,
            json!({
                "version": v,
                "memory_limit": p.options.memory_limit,
                "upload_max_filesize": p.options.upload_max_filesize,
                "post_max_size": p.options.post_max_size,
                "max_execution_time": p.options.max_execution_time,
                "timezone": "UTC",
            }),
        )?;
        let pool = super::render_pool(
            v,
            &crate::services::sites::common::SiteUser::new(0, false),
            &crate::services::sites::config::PoolSettings {
                pm: "dynamic".into(),
                max_children: 10,
            },
        )?;
        let default_site = templates::render(
            &DEFAULT_CONF,
            json!({"root": "/home/brokeforge/default/public", "fpm_socket": format!("/run/php/php{}-fpm-brokeforge.sock", p.cli_default)}),
        )?;
        let page = templates::render(
            &DEFAULT_SITE_PAGE,
            json!({"server_name": p.server_name}),
        )?;
        let repository = if !p.third_party {
            format!("echo 'PHP {v} comes from the distribution'")
        } else if p.os.starts_with("ubuntu") {
            format!(
                "{APT} install -y -qq --no-install-recommends software-properties-common && \
                 (ls /etc/apt/sources.list.d/ | grep -q ondrej-ubuntu-php || add-apt-repository -y ppa:ondrej/php) && {APT} update -qq"
            )
        } else {
            format!(
                "[ -f /usr/share/keyrings/deb.sury.org-php.gpg ] || (curl -fsSL -o /tmp/debsuryorg-archive-keyring.deb \
                 https://packages.sury.org/debsuryorg-archive-keyring.deb && dpkg -i /tmp/debsuryorg-archive-keyring.deb); \
                 echo \"deb [signed-by=/usr/share/keyrings/deb.sury.org-php.gpg] https://packages.sury.org/php/ $(. /etc/os-release; echo $VERSION_CODENAME) main\" \
                 > /etc/apt/sources.list.d/php.list && {APT} update -qq"
            )
        };
        let mut plan = self
            .plan()
            .track(M::PrepareSystem)
            .run_with_timeout(
                format!("{APT} update -qq"),
                std::time::Duration::from_secs(900),
            )
            .track(M::AddRepository)
            .run_with_timeout(repository, std::time::Duration::from_secs(900))
            .track(M::InstallSoftware)
            .run_with_timeout(
                format!(
                    "{APT} install -y -qq --no-install-recommends {}",
                    packages.join(" ")
                ),
                std::time::Duration::from_secs(1800),
            )
            .track(M::ConfigurePhp);
        for sapi in ["fpm", "cli"] {
            plan = plan.put_file(FileStep::new(
                format!("/etc/php/{v}/{sapi}/conf.d/99-brokeforge.ini"),
                FileContents::Text(ini.clone()),
                0o644,
            ));
        }
        plan = plan
            .put_file(FileStep::new(format!("/etc/php/{v}/fpm/pool.d/brokeforge.conf"), FileContents::Text(pool), 0o644))
            // A reload (each deploy's) lets workers finish the request they serve: with Debian's 0 they are
            // killed at once and that request gets a 502 from nginx.
            .run(format!(
                "if [ -f /etc/php/{v}/fpm/pool.d/www.conf ]; then mv /etc/php/{v}/fpm/pool.d/www.conf /etc/php/{v}/fpm/pool.d/www.conf.disabled; fi; \
                 sed -i -E 's/^;?[[:space:]]*process_control_timeout[[:space:]]*=.*/process_control_timeout = 10s/' /etc/php/{v}/fpm/php-fpm.conf; \
                 php-fpm{v} -t"
            ));
        if p.cli_default == *v {
            plan = plan.run(format!("update-alternatives --set php /usr/bin/php{v}"));
        }
        Ok(plan
            .track(M::ConfigureNginx)
            .run("usermod -aG brokeforge www-data && chmod 750 /home/brokeforge")
            // The app user's own files are written as the app user: root never follows a path the user controls.
            .run_step(RunStep {
                command: "install -d -m 750 /home/brokeforge/default /home/brokeforge/default/public".into(),
                timeout: std::time::Duration::from_secs(60),
                stdin: None,
                credential: Some(CredentialKind::User),
                private_output: false,
            })
            .put_file(
                FileStep::new("/home/brokeforge/default/public/index.html", FileContents::Text(page), 0o640)
                    .as_credential(CredentialKind::User),
            )
            .put_file(FileStep::new("/etc/nginx/sites-available/default", FileContents::Text(default_site), 0o644))
            .run("ln -sf /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default && nginx -t")
            .track(M::EnableServices)
            .run(format!("systemctl enable php{v}-fpm nginx && systemctl restart php{v}-fpm && systemctl start nginx && {NGINX_RELOAD}"))
            .track(M::Complete)
            .record(StoreChange::UpsertService {
                name: SERVICE_NAME.into(),
                service_type: ServiceType::Webserver,
                configuration: WebServerConfig {
                    php_versions: p.php_versions.clone(),
                    cli_default: Some(p.cli_default.clone()),
                    php_settings: p.php_settings.clone(),
                }
                .to_value(),
                status: ServiceStatus::Active,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_snapshots() {
        let p = WebServiceInstaller
            .prepare(
                Some("debian 12"),
                "web-1",
                &WebServerConfig::default(),
                &WebServiceOptions::default(),
            )
            .unwrap();
        assert_eq!(p.php_version, "8.2");
        insta::assert_snapshot!(
            "debian_distro_php",
            WebServiceInstaller.commands(&p).unwrap().to_string()
        );
        let o = WebServiceOptions {
            php_version: Some("8.3".into()),
            cli_default: false,
            ..Default::default()
        };
        let current = WebServerConfig {
            php_versions: vec!["8.2".into()],
            cli_default: Some("8.2".into()),
            ..Default::default()
        };
        let p = WebServiceInstaller
            .prepare(Some("debian 12"), "web-1", &current, &o)
            .unwrap();
        assert!(p.third_party);
        assert_eq!(p.php_versions, ["8.2", "8.3"]);
        assert_eq!(p.cli_default, "8.2");
        insta::assert_snapshot!(
            "debian_sury_php",
            WebServiceInstaller.commands(&p).unwrap().to_string()
        );
    }

    #[test]
    fn unavailable_versions_and_bad_limits_are_refused_clearly() {
        let o = WebServiceOptions {
            php_version: Some("5.6".into()),
            ..Default::default()
        };
        let err = WebServiceInstaller
            .prepare(Some("debian 12"), "w", &WebServerConfig::default(), &o)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PHP 5.6 is not available for debian 12") && err.contains("8.2"),
            "{err}"
        );
        let o = WebServiceOptions {
            php_version: Some("8.3;id".into()),
            ..Default::default()
        };
        assert!(
            WebServiceInstaller
                .prepare(Some("debian 12"), "w", &WebServerConfig::default(), &o)
                .is_err()
        );
        let o = WebServiceOptions {
            memory_limit: "1T; rm".into(),
            ..Default::default()
        };
        assert!(
            WebServiceInstaller
                .prepare(Some("debian 12"), "w", &WebServerConfig::default(), &o)
                .is_err()
        );
        assert!(
            WebServiceInstaller
                .prepare(None, "w", &WebServerConfig::default(), &WebServiceOptions::default())
                .is_err()
        );
    }
}
