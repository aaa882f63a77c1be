//! What BrokeForge's records say is on a server: the items a drift check looks for.


use brokeforge_core::{
    ServiceStatus, validate,
};

use crate::base::package::Gather;
use crate::base::{FileContents, PackageError, Step};
use crate::services::server::access::{SSHD_HARDENING, sudoers};
use crate::services::sites::common::{SiteUser, app_unit, vhost_path};
use crate::services::sites::config::{SiteConfig, SiteKind};
use crate::services::sites::tasks::SiteTasksInstaller;
use crate::services::sites::vhost::render_vhost;
use crate::services::database::engine::{
    DatabaseConfig, DatabaseInstallerMilestones, EngineInput, EngineSpec,
};
use crate::services::database::postgresql::PostgreSql;
use crate::services::database::redis::Redis;
use crate::services::database::mariadb::{cnf_dir, server_cnf_path, server_cnf_text};
use crate::services::webserver::nginx::WebServerConfig;
use crate::services::webserver::php::{settings_file, settings_text};

use super::*;

/// The Debian packages, units and remote-access port of a catalogue service (`php_versions` for the web
/// server's PHP-FPM). Also what `logs` lets users read.
pub fn service_parts(
    service: &str,
    php_versions: &[String],
) -> (Vec<String>, Vec<String>, Option<u16>) {
    let one = |p: &str, u: &str| (vec![p.to_string()], vec![u.to_string()]);
    let ((packages, units), port) = match service {
        "webserver" => {
            let mut packages = vec!["nginx".to_string()];
            let mut units = vec!["nginx".to_string()];
            for v in php_versions {
                packages.push(format!("php{v}-fpm"));
                units.push(format!("php{v}-fpm"));
            }
            ((packages, units), None)
        }
        "mariadb" => (one("mariadb-server", "mariadb"), Some(3306)),
        "mysql" => (one("mysql-server", "mysql"), Some(3306)),
        "postgresql" => (one("postgresql", "postgresql"), Some(5432)),
        "redis" => (one("redis-server", "redis-server"), Some(6379)),
        "memcached" => (one("memcached", "memcached"), None),
        "nodejs" => ((vec!["nodejs".to_string()], vec![]), None),
        _ => ((vec![], vec![]), None),
    };
    (packages, units, port)
}

/// Installing a service again with the settings it has puts back its packages, units and settings files, for
/// the catalogue entries that say so (`Entry::repaired_by_reinstall`).
fn service_repair(s: &brokeforge_store::ServerService) -> Option<Repair> {
    let entry = crate::catalogue::entry(&s.service_name)
        .ok()
        .filter(|e| e.repaired_by_reinstall)?;
    let settings = entry
        .parameters
        .iter()
        .filter_map(|p| {
            let text = match &s.configuration[p.name] {
                serde_json::Value::Null => return None,
                serde_json::Value::String(v) => v.clone(),
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            Some((p.name.to_string(), text))
        })
        .collect();
    Some(Repair::Service {
        name: s.service_name.clone(),
        settings: ServiceSettings(settings),
    })
}

/// A database engine's settings files as its installer writes them, with the remote access and password
/// its record has: (path, text, whether it holds a secret). None without the stored password.
async fn engine_files<E: EngineSpec>(
    cx: &Gather<'_>,
    s: &brokeforge_store::ServerService,
) -> Result<Vec<(String, String, bool)>, PackageError> {
    let engine = E::ENGINE;
    let Some(password) = cx
        .store
        .service_secret(cx.server.id, &engine.secret_name())
        .await?
    else {
        return Ok(Vec::new());
    };
    let sources: Vec<String> = s.configuration["allowed_sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let input = EngineInput {
        os: cx.os()?.to_string(),
        previous: sources.clone(),
        sources,
        password,
        config: DatabaseConfig::current(cx.store, cx.server.id, engine).await?,
    };
    let plan = E::configure(
        Plan::new::<DatabaseInstallerMilestones>(ServiceType::Database, CredentialKind::Root),
        &input,
    )?;
    Ok(plan
        .steps
        .into_iter()
        .filter_map(|step| match step {
            Step::PutFile(f) => match f.contents {
                FileContents::Text(t) => Some((f.path, t, false)),
                FileContents::Secret(t) => Some((f.path, t.expose().to_string(), true)),
            },
            _ => None,
        })
        .collect())
}

impl Expected {
    pub(super) fn file(&mut self, path: String, what: String, text: String, repair: Option<Repair>) {
        self.files.push((
            path.clone(),
            Wanted {
                item: format!("file:{path}"),
                what,
                value: text,
                repair,
            },
        ));
    }

    pub(super) fn user(&mut self, name: &str, what: String) {
        self.users.push(Wanted {
            item: format!("user:{name}"),
            what,
            value: name.into(),
            repair: None,
        });
    }

    /// What BrokeForge's records say is on the server.
    pub async fn gather(cx: &Gather<'_>) -> Result<Expected, PackageError> {
        let server = cx.server;
        let mut e = Expected {
            ssh_port: server.ssh_port,
            firewall: server.provision_status == brokeforge_core::ProvisionStatus::Provisioned,
            by_hand: cx.store.drift_by_hand(server.id).await?.into_iter().collect(),
            ..Expected::default()
        };
        if e.firewall {
            // What provisioning wrote and made (re-run provisioning to put it back).
            e.file(
                "/etc/sudoers.d/brokeforge".into(),
                "sudo rules of the brokeforge user".into(),
                sudoers(),
                None,
            );
            e.file(
                "/etc/ssh/sshd_config.d/01-brokeforge.conf".into(),
                "SSH hardening (keys only)".into(),
                SSHD_HARDENING.into(),
                None,
            );
            for u in ["brokeforge", "worker"] {
                e.user(u, format!("user {u} (provisioning)"));
            }
        }
        let webserver = WebServerConfig::current(cx.store, server.id).await?;
        let php = webserver.php_versions.clone();
        // The php.ini settings set in BrokeForge, for FPM and the CLI, of each installed version.
        for (version, settings) in &webserver.php_settings {
            if settings.is_empty() || !php.contains(version) {
                continue;
            }
            for sapi in ["fpm", "cli"] {
                e.file(
                    settings_file(version, sapi),
                    format!("php.ini settings of PHP {version} ({})", sapi.to_uppercase()),
                    settings_text(version, settings),
                    Some(Repair::PhpSettings {
                        version: version.clone(),
                    }),
                );
            }
        }
        for s in cx.store.services(server.id).await? {
            if s.status != ServiceStatus::Active {
                continue;
            }
            let (packages, units, port) = service_parts(&s.service_name, &php);
            let repair = service_repair(&s);
            for p in packages {
                e.packages.push(Wanted {
                    item: format!("package:{p}"),
                    what: format!("package {p} of {}", s.service_name),
                    value: p,
                    repair: repair.clone(),
                });
            }
            for u in units {
                e.units.push(Wanted {
                    item: format!("unit:{u}"),
                    what: format!("service {u} of {}", s.service_name),
                    value: u,
                    repair: repair.clone(),
                });
            }
            if s.service_name == "webserver" {
                // BrokeForge's own default page.
                e.enabled_vhosts.insert("default".into());
            }
            if let Some(p) = port {
                e.service_ports.insert(p.to_string());
            }
            // PostgreSQL's and Redis's settings files, as their installers render them from the record.
            let files = match s.service_name.as_str() {
                "postgresql" => engine_files::<PostgreSql>(cx, &s).await?,
                "redis" => engine_files::<Redis>(cx, &s).await?,
                _ => Vec::new(),
            };
            for (path, text, secret) in files {
                if secret {
                    e.secret_files.insert(path.clone());
                }
                e.file(
                    path,
                    format!("settings of {}", s.service_name),
                    text,
                    repair.clone(),
                );
            }
            // A MySQL-family server's settings file (bound to localhost unless remote access is open).
            if let Some(dir) = cnf_dir(&s.service_name) {
                let opened = s.configuration["allowed_sources"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty());
                e.file(
                    server_cnf_path(dir),
                    format!("settings of {}", s.service_name),
                    server_cnf_text(opened)?,
                    repair.clone(),
                );
            }
        }
        for site in cx.store.sites(server.id).await? {
            if site.status != ServiceStatus::Active {
                continue;
            }
            let config = SiteConfig::of(&site);
            let domain = validate::domain(&site.domain)?;
            let owner = SiteUser::of(&site);
            if owner.isolated {
                e.user(&owner.name, format!("user {} of {domain}", owner.name));
            }
            let vhost = Repair::SiteVhost {
                site_id: site.id,
                domain: domain.clone(),
            };
            let tasks = Repair::SiteTasks {
                site_id: site.id,
                domain: domain.clone(),
            };
            let (available, enabled) = vhost_path(&domain);
            e.file(
                available.clone(),
                format!("vhost of {domain}"),
                render_vhost(&site, &config)?,
                Some(vhost.clone()),
            );
            if let Some(name) = enabled.rsplit('/').next() {
                e.enabled_vhosts.insert(name.to_string());
            }
            e.links.push((
                enabled,
                Wanted {
                    item: format!("vhost-enabled:{domain}"),
                    what: format!("vhost of {domain} enabled"),
                    value: available,
                    repair: Some(vhost),
                },
            ));
            let plan = SiteTasksInstaller.tasks_plan(&site, &config.tasks)?;
            for step in plan.steps {
                if let Step::PutFile(f) = step
                    && let FileContents::Text(text) = f.contents
                {
                    let what = if f.path.starts_with("/etc/cron.d/") {
                        e.cron_files.insert(f.path.trim_start_matches("/etc/cron.d/").into());
                        format!("schedule of {domain}")
                    } else {
                        format!("background-work file of {domain}")
                    };
                    e.file(f.path, what, text, Some(tasks.clone()));
                }
            }
            for (i, d) in config.tasks.daemons.iter().enumerate() {
                for n in 1..=d.processes {
                    let unit = format!("brokeforge-site-{}-daemon-{i}@{n}", site.id);
                    e.units.push(Wanted {
                        item: format!("unit:{unit}"),
                        what: format!("daemon {i} (process {n}) of {domain}"),
                        value: unit,
                        repair: Some(tasks.clone()),
                    });
                }
            }
            if let Some(cert) = &config.certificate {
                e.certs.push(WantedCert {
                    site_id: site.id,
                    path: cert.fullchain_path(),
                    custom: cert.custom,
                    wanted: Wanted {
                        item: format!("cert:{domain}"),
                        what: format!("HTTPS certificate of {domain}"),
                        value: cert.expires.clone().unwrap_or_default(),
                        repair: None,
                    },
                });
            }
            if config.kind == SiteKind::Node {
                let unit = app_unit(site.id);
                e.units.push(Wanted {
                    item: format!("unit:{unit}"),
                    what: format!("Node.js app of {domain}"),
                    value: unit,
                    repair: None,
                });
            }
        }
        Ok(e)
    }
}
