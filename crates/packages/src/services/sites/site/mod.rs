//! Site Installer and Site Remover: an nginx vhost and the site's directory layout
//! (`releases/`, `shared/`, `current -> releases/...`) under the app user's home.

use brokeforge_core::{
    CredentialKind, ServiceStatus, ServiceType, ValidationError, shell_quote, validate,
};
use brokeforge_store::{JobTarget, NewJob, NewSite, ServerSite, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{
    SiteRef, SiteUser, app_unit, app_unit_file, certificate_delete_command, deploy_key_secret, on_server,
    site_root, tasks_remove_command, vhost_path, webhook_secret,
};
use super::pool::{create_user_command, remove_pool_command, remove_user_command, write_pool};
use super::config::{PoolSettings, SiteConfig, SiteKind};
use super::vhost::{SITE_CONF, write_vhosts};
use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller, PackageRemover, job};
use crate::base::registry::Registry;
use crate::base::{FileContents, FileStep, PackageError, Plan};
use crate::milestones;
use crate::services::webserver::nginx::{NGINX_RELOAD, SERVICE_NAME as WEBSERVER, WebServerConfig};

pub fn register(r: &mut Registry) {
    r.template(&SITE_CONF);
    r.installer(SiteInstaller);
    r.remover(SiteRemover);
}

/// Name of the placeholder release a new site serves until its first deployment.
pub const INITIAL_RELEASE: &str = "00000000000000-initial";

milestones! {
    pub enum SiteInstallerMilestones {
        PrepareSite => ("prepare_site", "Preparing the site's directories"),
        ConfigureNginx => ("configure_nginx", "Writing the nginx site"),
        ReloadNginx => ("reload_nginx", "Testing and reloading nginx"),
        Complete => ("complete", "Site ready"),
    }
}

milestones! {
    pub enum SiteRemoverMilestones {
        DisableSite => ("disable_site", "Disabling the nginx site"),
        RemoveFiles => ("remove_files", "Removing the site's files"),
        Complete => ("complete", "Site removed"),
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(default)]
pub struct SiteRequest {
    pub domain: String,
    /// `php` (the default), `laravel`, `static`, `node` or `proxy`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Where a proxy site sends requests (required), or a Node.js site's port (chosen when empty).
    pub proxy_port: Option<u16>,
    /// A static site answers unknown paths with `/index.html`.
    pub spa_fallback: bool,
    pub aliases: Vec<String>,
    /// Empty: the server's command-line PHP version.
    pub php_version: Option<String>,
    /// `None`: `public` for PHP sites, the release itself for static ones.
    pub web_directory: Option<String>,
    pub default_site: bool,
    /// The site runs as its own Linux user with its own PHP-FPM pool (the default); `false` shares the app
    /// user with the server's other shared sites.
    pub isolated: Option<bool>,
    /// The site's pool (isolated PHP sites): `ondemand` (the default), `dynamic` or `static`.
    pub pm: Option<String>,
    /// Most PHP workers of the site's pool (5 unless given).
    pub max_children: Option<u32>,
}

/// Validate a site request against the server (the web server must be installed with that PHP version),
/// store the site as `installing` and queue its installer (a WordPress site also its WordPress installer,
/// whose job is returned).
pub async fn create_site(
    store: &Store,
    server_id: i64,
    req: &SiteRequest,
) -> Result<(ServerSite, brokeforge_store::Job), PackageError> {
    let domain = validate::domain(&req.domain)?;
    let mut aliases = Vec::new();
    for a in &req.aliases {
        let a = validate::domain(a).map_err(|e| ValidationError::new("aliases", e.message))?;
        if a != domain && !aliases.contains(&a) {
            aliases.push(a);
        }
    }
    let kind = match req.kind.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => SiteKind::parse(k)?,
        None => SiteKind::Php,
    };
    let web_directory = match &req.web_directory {
        Some(d) => validate::relative_dir("web_directory", d)?,
        None if matches!(kind, SiteKind::Static | SiteKind::Wordpress) => String::new(),
        None => "public".into(),
    };
    if req.spa_fallback && kind != SiteKind::Static {
        return Err(ValidationError::new(
            "spa_fallback",
            "only a static site answers unknown paths with /index.html",
        )
        .into());
    }
    if !store
        .services(server_id)
        .await?
        .iter()
        .any(|s| s.service_name == WEBSERVER && s.status == ServiceStatus::Active)
    {
        return Err(ValidationError::new(
            "server",
            "the web server is not installed on this server: install the `webserver` package first",
        )
        .into());
    }
    let webserver = WebServerConfig::current(store, server_id).await?;
    let php_version = match req.php_version.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => crate::services::webserver::php::installed_version(&webserver, v)
            .map_err(|e| ValidationError::new("php_version", e.message))?,
        None => webserver
            .cli_default
            .clone()
            .or_else(|| webserver.php_versions.first().cloned())
            .ok_or_else(|| ValidationError::new("php_version", "no PHP version is installed"))?,
    };
    for other in store.sites(server_id).await? {
        if aliases.contains(&other.domain)
            || SiteConfig::of(&other).aliases.contains(&domain)
            || SiteConfig::of(&other)
                .aliases
                .iter()
                .any(|a| aliases.contains(a))
        {
            return Err(ValidationError::new(
                "aliases",
                format!("a name of this site is already used by {}", other.domain),
            )
            .into());
        }
    }
    let isolated = req.isolated.unwrap_or(true);
    let pool = if req.pm.is_some() || req.max_children.is_some() {
        PoolSettings::own_pool(isolated, kind)?;
        let d = PoolSettings::default();
        PoolSettings::check(
            req.pm.as_deref().unwrap_or(&d.pm),
            req.max_children.unwrap_or(d.max_children),
        )?
    } else {
        PoolSettings::default()
    };
    let proxy_port = site_port(store, server_id, kind, req.proxy_port).await?;
    if kind == SiteKind::Wordpress {
        super::wordpress::wordpress_engine(store, server_id).await?;
    }
    let defaults = SiteConfig::default();
    let config = SiteConfig {
        kind,
        proxy_port,
        spa_fallback: req.spa_fallback,
        isolated,
        pool,
        aliases,
        web_directory,
        default_site: req.default_site,
        // Only PHP applications keep `storage/` across releases; a Node.js app reads its `.env`.
        shared_paths: match kind {
            SiteKind::Php | SiteKind::Laravel => defaults.shared_paths.clone(),
            SiteKind::Node => vec![".env".into()],
            SiteKind::Wordpress => vec!["wp-config.php".into(), "wp-content/uploads/".into()],
            SiteKind::Static | SiteKind::Proxy => Vec::new(),
        },
        ..defaults
    };
    let site = store
        .create_site(&NewSite {
            server_id,
            domain: domain.clone(),
            document_root: if isolated {
                // As `SiteUser::new(id, true)` has it; the store puts the new site's id in.
                format!("/home/site{{id}}/{domain}")
            } else {
                site_root(&domain)
            },
            php_version: Some(php_version),
            status: ServiceStatus::Installing,
            configuration: config.to_value(),
        })
        .await
        .map_err(|e| match e {
            brokeforge_store::StoreError::Conflict(m) => ValidationError::new("domain", m).into(),
            e => PackageError::from(e),
        })?;
    let job = store
        .enqueue(&NewJob {
            target: Some(JobTarget::Site {
                id: site.id,
                provision_type: brokeforge_core::ProvisionType::Install,
            }),
            ..job::<SiteInstaller>(server_id, &SiteRef { site_id: site.id })?
        })
        .await?;
    // WordPress follows (jobs of a server run one at a time, in order); its job is the one to follow.
    let job = if kind == SiteKind::Wordpress {
        super::wordpress::queue_wordpress(store, &site).await?
    } else {
        job
    };
    Ok((site, job))
}

/// Lowest port a Node.js site is given when it does not name one.
pub const FIRST_APP_PORT: u16 = 3000;

/// The port a proxying site sends requests to: a proxy site's is required; a Node.js site gets the one asked
/// for or the lowest from [`FIRST_APP_PORT`] no other site of the server uses. Other kinds take none.
async fn site_port(
    store: &Store,
    server_id: i64,
    kind: SiteKind,
    asked: Option<u16>,
) -> Result<Option<u16>, PackageError> {
    if !kind.proxies() {
        if asked.is_some() {
            return Err(ValidationError::new(
                "proxy_port",
                format!("a {} site takes no port", kind.as_str()),
            )
            .into());
        }
        return Ok(None);
    }
    if kind == SiteKind::Node
        && !store
            .services(server_id)
            .await?
            .iter()
            .any(|s| s.service_name == "nodejs" && s.status == ServiceStatus::Active)
    {
        return Err(ValidationError::new(
            "type",
            "Node.js is not installed on this server: install the `nodejs` package first",
        )
        .into());
    }
    let used: Vec<u16> = store
        .sites(server_id)
        .await?
        .iter()
        .filter_map(|s| SiteConfig::of(s).proxy_port)
        .collect();
    match asked {
        Some(p) if p < 1024 => Err(ValidationError::new(
            "proxy_port",
            format!("{p} is a privileged port: give one from 1024 to 65535"),
        )
        .into()),
        Some(p) if kind == SiteKind::Node && used.contains(&p) => Err(ValidationError::new(
            "proxy_port",
            format!("another site of this server already runs on port {p}"),
        )
        .into()),
        Some(p) => Ok(Some(p)),
        None if kind == SiteKind::Proxy => Err(ValidationError::new(
            "proxy_port",
            "a proxy site needs the port to send requests to",
        )
        .into()),
        None => Ok((FIRST_APP_PORT..u16::MAX).find(|p| !used.contains(p))),
    }
}

/// Queue a site's removal; `keep_files` leaves its directory on the server.
pub async fn remove_site(
    store: &Store,
    site: &ServerSite,
    keep_files: bool,
) -> Result<brokeforge_store::Job, PackageError> {
    Ok(store
        .enqueue(&NewJob {
            target: Some(JobTarget::Site {
                id: site.id,
                provision_type: brokeforge_core::ProvisionType::Uninstall,
            }),
            ..job::<SiteRemover>(
                site.server_id,
                &RemoveSite {
                    site_id: site.id,
                    keep_files,
                },
            )?
        })
        .await?)
}

pub struct SiteInstaller;

/// A site to install: its configuration, and the other sites whose vhosts change with it (they lose the
/// default-site flag when this one takes it).
pub struct SiteInput {
    pub site: ServerSite,
    pub config: SiteConfig,
    pub others: Vec<(ServerSite, SiteConfig)>,
}

impl Package for SiteInstaller {
    type Milestones = SiteInstallerMilestones;
    type Request = SiteRef;
    type Input = SiteInput;
    const JOB: &'static str = "site_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        // The vhost lives in /etc/nginx; the site's files are created as the app user.
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, r: &SiteRef) -> Result<SiteInput, PackageError> {
        let site = cx.store.site(r.site_id).await?;
        on_server(cx.server.id, &site)?;
        let config = SiteConfig::of(&site);
        // Only one site is the server's default: the others lose the flag (their vhosts are rewritten).
        let mut others = Vec::new();
        if config.default_site {
            for other in cx.store.sites(cx.server.id).await? {
                let mut oc = SiteConfig::of(&other);
                if other.id != site.id && oc.default_site {
                    oc.default_site = false;
                    others.push((other, oc));
                }
            }
        }
        Ok(SiteInput {
            site,
            config,
            others,
        })
    }

    fn commands(&self, i: &SiteInput) -> Result<Plan, PackageError> {
        self.site_plan(&i.site, &i.config, &i.others)
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        i: SiteInput,
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        for (other, _) in i.others {
            SiteConfig::update(cx.store, other.id, |c| c.default_site = false).await?;
        }
        Ok(json!({"site_id": i.site.id, "domain": i.site.domain}))
    }
}

impl PackageInstaller for SiteInstaller {}

impl SiteInstaller {
    pub fn site_plan(
        &self,
        site: &ServerSite,
        config: &SiteConfig,
        others: &[(ServerSite, SiteConfig)],
    ) -> Result<Plan, PackageError> {
        use SiteInstallerMilestones as M;
        let domain = validate::domain(&site.domain)?;
        let user = SiteUser::new(site.id, config.isolated);
        let root = user.site_root(&domain);
        let web = validate::relative_dir("web_directory", &config.web_directory)?;
        let initial = format!("{root}/releases/{INITIAL_RELEASE}");
        let initial_web = if web.is_empty() {
            initial.clone()
        } else {
            format!("{initial}/{web}")
        };
        let page = format!(
            "<!doctype html><meta charset=utf-8><title>{domain}</title>\
             <h1>{domain}</h1><p>This site is ready for its first deployment.</p>\n"
        );
        let q = shell_quote;
        let mut plan = self.plan().track(M::PrepareSite);
        if user.isolated {
            plan = plan.run(create_user_command(&user));
        }
        let mut plan = plan
            .run_step(user.step(
                // A placeholder release keeps `current` valid until the first deployment; an existing
                // `current` (a re-run) is left alone.
                format!(
                    "set -e; cd {home}; install -d -m 750 {root}; cd {root}; install -d releases shared .brokeforge; \
                     if [ ! -e current ]; then install -d {iw}; [ -e {iw}/index.html ] || printf '%s' {page} > {iw}/index.html; \
                     ln -sfn releases/{INITIAL_RELEASE} current; fi",
                    home = q(&user.home),
                    root = q(&root),
                    iw = q(&initial_web),
                    page = q(&page),
                ),
                std::time::Duration::from_secs(60),
            ))
            .track(M::ConfigureNginx);
        if config.kind.runs_php()
            && let Some(v) = &site.php_version
        {
            plan = write_pool(plan, &user, &validate::php_version(v)?, &config.pool)?;
        }
        if config.kind == SiteKind::Node {
            // Enabled, not started: the placeholder release has no application; the first deploy starts it.
            let port = config.proxy_port.ok_or_else(|| {
                ValidationError::new("proxy_port", "the Node.js site has no port")
            })?;
            let unit = app_unit(site.id);
            plan = plan
                .put_file(FileStep::new(
                    format!("/etc/systemd/system/{unit}.service"),
                    FileContents::Text(app_unit_file(site.id, &user, &domain, port)),
                    0o644,
                ))
                .run(format!("systemctl daemon-reload && systemctl enable {unit}"));
        }
        plan = write_vhosts(plan, site, config, others)?;
        plan = plan
            .track(M::ReloadNginx)
            .run(NGINX_RELOAD)
            .track(M::Complete);
        Ok(plan)
    }
}

pub struct SiteRemover;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveSite {
    pub site_id: i64,
    /// Leave the site's directory on the server.
    #[serde(default)]
    pub keep_files: bool,
}

impl Package for SiteRemover {
    type Milestones = SiteRemoverMilestones;
    type Request = RemoveSite;
    type Input = (ServerSite, bool);
    const JOB: &'static str = "site_remover";

    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, r: &RemoveSite) -> Result<(ServerSite, bool), PackageError> {
        let site = cx.store.site(r.site_id).await?;
        on_server(cx.server.id, &site)?;
        Ok((site, r.keep_files))
    }

    fn commands(&self, (site, keep_files): &(ServerSite, bool)) -> Result<Plan, PackageError> {
        self.removal_plan(site, &SiteConfig::of(site), *keep_files)
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        (site, keep_files): (ServerSite, bool),
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        cx.store
            .delete_service_secret(cx.server.id, &deploy_key_secret(site.id))
            .await?;
        cx.store
            .delete_service_secret(cx.server.id, &webhook_secret(site.id))
            .await?;
        Ok(json!({"site_id": site.id, "kept_files": keep_files}))
    }
}

impl PackageRemover for SiteRemover {}

impl SiteRemover {
    pub fn removal_plan(
        &self,
        site: &ServerSite,
        config: &SiteConfig,
        keep_files: bool,
    ) -> Result<Plan, PackageError> {
        use SiteRemoverMilestones as M;
        let domain = validate::domain(&site.domain)?;
        let (available, enabled) = vhost_path(&domain);
        let q = shell_quote;
        let mut disable = format!("rm -f {} {}", q(&enabled), q(&available));
        if config.default_site {
            // BrokeForge's own default site comes back only if no other site is the default now (this one may
            // never have become it: an install nginx refused leaves the old default in place).
            disable.push_str(
                " && if [ -e /etc/nginx/sites-available/default ] && ! grep -qs 'default_server' /etc/nginx/sites-enabled/*; then \
                 ln -sfn /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default; fi",
            );
        }
        let mut plan = self
            .plan()
            .track(M::DisableSite)
            .run(disable)
            .run(NGINX_RELOAD)
            .track(M::RemoveFiles);
        if let Some(cert) = &config.certificate {
            plan = plan.run(certificate_delete_command(&cert.name));
        }
        if config.tasks != Default::default() {
            plan = plan.run(tasks_remove_command(site.id));
        }
        if config.kind == SiteKind::Node {
            let unit = app_unit(site.id);
            plan = plan.run(format!(
                "systemctl disable --now {unit} 2>/dev/null; rm -f /etc/systemd/system/{unit}.service; \
                 systemctl daemon-reload; systemctl reset-failed {unit} 2>/dev/null; true"
            ));
        }
        let user = SiteUser::new(site.id, config.isolated);
        if let Some(remove) = site
            .php_version
            .as_deref()
            .and_then(|v| validate::php_version(v).ok())
            .and_then(|v| remove_pool_command(&user, &v))
        {
            plan = plan.run(remove);
        }
        let key = q(&user.deploy_key_path(site.id));
        let root = user.site_root(&domain);
        plan = if keep_files {
            plan.run(format!(
                "rm -f {key} && echo 'the site files are kept in {root}{}'",
                if user.isolated { format!(", owned by {}", user.name) } else { String::new() }
            ))
        } else if user.isolated {
            plan.run(remove_user_command(&user))
        } else {
            plan.run(format!("rm -rf -- {} {key}", q(&root)))
        };
        Ok(plan.track(M::Complete))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::services::sites::common::shared_path;

    pub(crate) fn site() -> ServerSite {
        ServerSite {
            id: 7,
            server_id: 3,
            domain: "example.com".into(),
            document_root: "/home/brokeforge/example.com".into(),
            php_version: Some("8.2".into()),
            status: ServiceStatus::Installing,
            configuration: SiteConfig {
                aliases: vec!["www.example.com".into()],
                ..SiteConfig::default()
            }
            .to_value(),
            config_revision: 0,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn install_plan() {
        let s = site();
        let other = ServerSite {
            id: 8,
            domain: "old-default.com".into(),
            ..site()
        };
        let mut c = SiteConfig::of(&s);
        c.default_site = true;
        let oc = SiteConfig::of(&other);
        insta::assert_snapshot!(
            SiteInstaller
                .site_plan(&s, &c, &[(other, oc)])
                .unwrap()
                .to_string()
        );
    }

    /// Each type's vhost: a static site has no PHP handler (and an SPA fallback when asked), a proxy site
    /// passes everything (WebSocket upgrades too) to its port; a Node.js site's install writes its unit.
    #[test]
    fn site_types() {
        use crate::services::sites::vhost::render_vhost;
        let s = site();
        let with = |kind, port, spa| SiteConfig {
            kind,
            proxy_port: port,
            spa_fallback: spa,
            ..SiteConfig::of(&s)
        };
        let static_site = render_vhost(&s, &with(SiteKind::Static, None, true)).unwrap();
        assert!(!static_site.contains("fastcgi"), "{static_site}");
        assert!(static_site.contains("try_files $uri $uri/ /index.html;"));
        let plain = render_vhost(&s, &with(SiteKind::Static, None, false)).unwrap();
        assert!(plain.contains("try_files $uri $uri/ =404;"), "{plain}");
        insta::assert_snapshot!("proxy_vhost", render_vhost(&s, &with(SiteKind::Proxy, Some(8080), false)).unwrap());
        assert!(
            render_vhost(&s, &with(SiteKind::Proxy, None, false)).is_err(),
            "a proxy site without a port rendered"
        );
        let php = render_vhost(&s, &with(SiteKind::Laravel, None, false)).unwrap();
        assert!(php.contains("fastcgi_pass unix:/run/php/php8.2-fpm-brokeforge.sock;"));
        insta::assert_snapshot!(
            "node_install_plan",
            SiteInstaller
                .site_plan(&s, &with(SiteKind::Node, Some(3001), false), &[])
                .unwrap()
                .to_string()
        );
        let removal = SiteRemover
            .removal_plan(&s, &with(SiteKind::Node, Some(3001), false), false)
            .unwrap()
            .to_string();
        assert!(removal.contains("systemctl disable --now brokeforge-site-7-app"), "{removal}");
    }

    /// An isolated site gets its user, home and pool; every step of its own runs as that user (root drops to
    /// it), nginx hands PHP to its pool; removing it takes user, home and pool away.
    #[test]
    fn isolated_site() {
        let mut s = site();
        let mut c = SiteConfig::of(&s);
        c.isolated = true;
        s.configuration = c.to_value();
        let plan = SiteInstaller.site_plan(&s, &c, &[]).unwrap().to_string();
        assert!(plan.contains("useradd --create-home --home-dir \"$h\" --user-group"), "{plan}");
        assert!(plan.contains("runuser -u site7 -- env HOME=/home/site7"), "{plan}");
        assert!(plan.contains("put /etc/php/8.2/fpm/pool.d/site7.conf"), "{plan}");
        assert!(plan.contains("| user = site7"), "{plan}");
        assert!(plan.contains("| listen = /run/php/php8.2-fpm-site7.sock"), "{plan}");
        assert!(plan.contains("fastcgi_pass unix:/run/php/php8.2-fpm-site7.sock;"), "{plan}");
        assert!(plan.contains("root /home/site7/example.com/current/public;"), "{plan}");
        assert!(!plan.contains("as brokeforge]"), "a step ran as the shared user: {plan}");
        insta::assert_snapshot!("isolated_install_plan", plan);
        let removal = SiteRemover.removal_plan(&s, &c, false).unwrap().to_string();
        assert!(removal.contains("rm -f /etc/php/8.2/fpm/pool.d/site7.conf"), "{removal}");
        assert!(removal.contains("userdel --remove \"$u\""), "{removal}");
        let kept = SiteRemover.removal_plan(&s, &c, true).unwrap().to_string();
        assert!(!kept.contains("userdel"), "{kept}");
        // Its scheduled commands and daemons run as its user too.
        let mut tasks = crate::services::sites::schedule::SiteTasks::default();
        tasks.schedules.push(crate::services::sites::schedule::Schedule {
            cron: "* * * * *".into(),
            command: "php artisan schedule:run".into(),
        });
        let t = crate::services::sites::tasks::SiteTasksInstaller
            .tasks_plan(&s, &tasks)
            .unwrap()
            .to_string();
        assert!(t.contains("* * * * * site7 /etc/brokeforge/sites/7/schedule-0.sh"), "{t}");
        assert!(t.contains("cd /home/site7/example.com/current"), "{t}");
    }

    #[test]
    fn remove_plan() {
        let s = site();
        insta::assert_snapshot!(
            SiteRemover
                .removal_plan(&s, &SiteConfig::of(&s), false)
                .unwrap()
                .to_string()
        );
    }

    #[test]
    fn shared_paths_are_checked() {
        assert_eq!(shared_path("storage/").unwrap(), "storage/");
        assert_eq!(shared_path(".env").unwrap(), ".env");
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../b",
            "a b",
            "$(id)",
            "-rf",
            "",
        ] {
            assert!(shared_path(bad).is_err(), "{bad} accepted");
        }
    }
}
