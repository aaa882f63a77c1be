//! Site Installer and Site Remover: an nginx vhost and the site's directory layout
//! (`releases/`, `shared/`, `current -> releases/...`) under the app user's home.

use brokeforge_core::{
    CredentialKind, ServiceStatus, ServiceType, ValidationError, shell_quote, validate,
};
use brokeforge_store::{JobTarget, NewJob, NewSite, ServerSite, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::base::executor::{Executor, RunContext};
use crate::base::{
    FileContents, FileStep, Package, PackageError, PackageInstaller, PackageRemover, Plan,
};
use crate::milestones;
use crate::services::webserver::{NGINX_RELOAD, SERVICE_NAME as WEBSERVER};
use crate::templates;

/// The app user's home: every site lives below it.
pub const APP_HOME: &str = "/home/brokeforge";
/// Default number of releases kept on the server.
pub const DEFAULT_KEEP_RELEASES: u32 = 5;
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

/// A release kept on the server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleaseInfo {
    pub name: String,
    pub commit: Option<String>,
    pub deployment_id: Option<i64>,
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
    pub aliases: Vec<String>,
    /// Served directory inside a release (e.g. `public`); empty for the release root.
    pub web_directory: String,
    pub default_site: bool,
    pub client_max_body_size: String,
    pub repository: Option<RepositoryConfig>,
    /// The public half of the site's deploy key, for the user to add to their git host.
    pub deploy_key_public: Option<String>,
    /// The deploy script; `None` runs [`super::deployment::DEFAULT_DEPLOY_SCRIPT`].
    pub deploy_script: Option<String>,
    pub deploy_timeout_secs: u64,
    pub keep_releases: u32,
    /// Files and directories (ending in `/`) linked from `shared/` into every release.
    pub shared_paths: Vec<String>,
    pub current_release: Option<String>,
    pub releases: Vec<ReleaseInfo>,
    /// The site's HTTPS certificate; `None` serves plain HTTP only.
    pub certificate: Option<super::certificate::CertificateConfig>,
    /// Scheduled commands and daemons.
    pub tasks: super::tasks::SiteTasks,
}

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
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
        }
    }
}

impl SiteConfig {
    pub fn of(site: &ServerSite) -> SiteConfig {
        serde_json::from_value(site.configuration.clone()).unwrap_or_default()
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Change a site's stored configuration as it is now (not as a job read it when it started: the user
    /// may have edited other fields meanwhile) and store it.
    pub async fn update(
        store: &Store,
        site_id: i64,
        change: impl FnOnce(&mut SiteConfig),
    ) -> Result<SiteConfig, PackageError> {
        let mut fresh = SiteConfig::of(&store.site(site_id).await?);
        change(&mut fresh);
        store
            .set_site_configuration(site_id, &fresh.to_value())
            .await?;
        Ok(fresh)
    }
}

/// Where a site lives on the server.
pub fn site_root(domain: &str) -> String {
    format!("{APP_HOME}/{domain}")
}

pub fn vhost_path(domain: &str) -> (String, String) {
    (
        format!("/etc/nginx/sites-available/{domain}.conf"),
        format!("/etc/nginx/sites-enabled/{domain}.conf"),
    )
}

pub fn fpm_socket(php_version: &str) -> String {
    format!("/run/php/php{php_version}-fpm-brokeforge.sock")
}

/// Validate a shared path (`.env`, `storage/`): relative, no `..`, simple characters.
pub fn shared_path(value: &str) -> Result<String, ValidationError> {
    let dir = value.ends_with('/');
    let v = value.trim_end_matches('/');
    let ok = !v.is_empty()
        && v.len() <= 200
        && !v.starts_with('/')
        && !v.starts_with('-')
        && v.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
    if !ok {
        return Err(ValidationError::new(
            "shared_paths",
            format!("`{value}` is not a path inside the release (like `.env` or `storage/`)"),
        ));
    }
    Ok(if dir { format!("{v}/") } else { v.to_string() })
}

/// What a user asks for when creating a site.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SiteRequest {
    pub domain: String,
    pub aliases: Vec<String>,
    /// Empty: the server's command-line PHP version.
    pub php_version: Option<String>,
    /// `None`: `public`.
    pub web_directory: Option<String>,
    pub default_site: bool,
}

/// Validate a site request against the server (the web server must be installed with that PHP version),
/// store the site as `installing` and queue its installer.
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
    let web_directory = match &req.web_directory {
        Some(d) => validate::relative_dir("web_directory", d)?,
        None => "public".into(),
    };
    let webserver = store
        .services(server_id)
        .await?
        .into_iter()
        .find(|s| s.service_name == WEBSERVER && s.status == ServiceStatus::Active)
        .ok_or_else(|| {
            ValidationError::new(
                "server",
                "the web server is not installed on this server: install the `webserver` package first",
            )
        })?;
    let installed: Vec<String> = webserver
        .configuration
        .get("php_versions")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let php_version = match req.php_version.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => {
            let v = validate::php_version(v)?;
            if !installed.contains(&v) {
                return Err(ValidationError::new(
                    "php_version",
                    format!(
                        "PHP {v} is not installed on this server (installed: {}); install it with the web server package first",
                        installed.join(", ")
                    ),
                )
                .into());
            }
            v
        }
        None => webserver
            .configuration
            .get("cli_default")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .or_else(|| installed.first().cloned())
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
    let config = SiteConfig {
        aliases,
        web_directory,
        default_site: req.default_site,
        ..SiteConfig::default()
    };
    let site = store
        .create_site(&NewSite {
            server_id,
            domain: domain.clone(),
            document_root: site_root(&domain),
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
            ..NewJob::new(
                super::SiteInstallerJob::KIND,
                Some(server_id),
                json!({"site_id": site.id}),
            )
        })
        .await?;
    Ok((site, job))
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
            ..NewJob::new(
                super::SiteRemoverJob::KIND,
                Some(site.server_id),
                json!({"site_id": site.id, "keep_files": keep_files}),
            )
        })
        .await?)
}

/// Render a site's vhost.
/// The names a site answers to (its vhost's `server_name`, its certificate's names): the domain, then its
/// aliases, each once.
pub fn server_names(site: &ServerSite, config: &SiteConfig) -> Result<Vec<String>, PackageError> {
    let mut names = vec![validate::domain(&site.domain)?];
    for a in &config.aliases {
        let a = validate::domain(a)?;
        if !names.contains(&a) {
            names.push(a);
        }
    }
    Ok(names)
}

pub fn render_vhost(site: &ServerSite, config: &SiteConfig) -> Result<String, PackageError> {
    let domain = validate::domain(&site.domain)?;
    let php = site
        .php_version
        .as_deref()
        .ok_or_else(|| ValidationError::new("php_version", "the site has no PHP version"))?;
    let php = validate::php_version(php)?;
    let web = validate::relative_dir("web_directory", &config.web_directory)?;
    let names = server_names(site, config)?;
    let root = if web.is_empty() {
        format!("{}/current", site_root(&domain))
    } else {
        format!("{}/current/{web}", site_root(&domain))
    };
    templates::render(
        "nginx/site.conf",
        json!({
            "domain": domain,
            "server_names": names,
            "default_server": config.default_site,
            "root": root,
            "client_max_body_size": config.client_max_body_size,
            "fpm_socket": fpm_socket(&php),
            "acme_root": super::certificate::ACME_ROOT,
            "certificate": config.certificate.as_ref().map(|c| json!({
                "fullchain": c.fullchain_path(),
                "key": c.key_path(),
                "hsts": c.hsts,
            })),
        }),
    )
}

/// Write a site's vhost (and those of `others`, rewritten alongside) and enable it, keeping nginx serving:
/// every vhost this rewrites (its own on a re-run; other sites' when it takes the default from them) is kept
/// aside until `nginx -t` accepts the new set, so a refused vhost puts everything back as it was. A new
/// site's vhost is simply taken out again. Reloading is the caller's next step.
pub(crate) fn write_vhosts(
    mut plan: Plan,
    site: &ServerSite,
    config: &SiteConfig,
    others: &[(ServerSite, SiteConfig)],
) -> Result<Plan, PackageError> {
    let q = shell_quote;
    let (available, enabled) = vhost_path(&validate::domain(&site.domain)?);
    let mut rewrites = vec![(available.clone(), render_vhost(site, config)?)];
    for (other, oc) in others {
        rewrites.push((vhost_path(&other.domain).0, render_vhost(other, oc)?));
    }
    let mut undo = Vec::new();
    let mut done = Vec::new();
    for (path, text) in rewrites {
        let kept = format!("{path}.brokeforge-previous");
        plan = plan
            .run(format!(
                "rm -f {kept}; if [ -e {p} ]; then cp -p {p} {kept}; fi",
                p = q(&path),
                kept = q(&kept)
            ))
            .put_file(FileStep::new(path.clone(), FileContents::Text(text), 0o644));
        undo.push(format!(
            "if [ -e {kept} ]; then mv -f {kept} {p}; fi",
            p = q(&path),
            kept = q(&kept)
        ));
        done.push(format!("rm -f {}", q(&kept)));
    }
    let mut enable = format!(
        "out=$(mktemp) || exit 1; new_site=; if [ ! -e {e} ]; then new_site=1; fi; ",
        e = q(&enabled)
    );
    if config.default_site {
        // BrokeForge's own default site gives way (it also claims default_server).
        enable.push_str(
            "had_default=; if [ -e /etc/nginx/sites-enabled/default ]; then had_default=1; \
             rm -f /etc/nginx/sites-enabled/default; fi; ",
        );
        undo.push(
            "if [ -n \"$had_default\" ]; then ln -sfn /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default; fi"
                .into(),
        );
    }
    undo.push(format!(
        "if [ -n \"$new_site\" ]; then rm -f {e} {a}; fi",
        e = q(&enabled),
        a = q(&available)
    ));
    enable.push_str(&format!(
        "if ! ln -sfn {a} {e} || ! nginx -t 2>\"$out\"; then cat \"$out\" >&2; rm -f \"$out\"; \
         {undo}; exit 1; fi; rm -f \"$out\"; {done}",
        a = q(&available),
        e = q(&enabled),
        undo = undo.join("; "),
        done = done.join("; "),
    ));
    Ok(plan.run(enable))
}

pub struct SiteInstaller;

impl Package for SiteInstaller {
    type Milestones = SiteInstallerMilestones;
    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        // The vhost lives in /etc/nginx; the site's files are created as the app user.
        CredentialKind::Root
    }
}

impl PackageInstaller for SiteInstaller {}

impl SiteInstaller {
    pub async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        site: &ServerSite,
    ) -> Result<(), PackageError> {
        super::on_server(ctx, site)?;
        let config = SiteConfig::of(site);
        // Only one site is the server's default: the others lose the flag (their vhosts are rewritten).
        let mut others = Vec::new();
        if config.default_site {
            for other in executor.store().sites(ctx.server.id).await? {
                let mut oc = SiteConfig::of(&other);
                if other.id != site.id && oc.default_site {
                    oc.default_site = false;
                    others.push((other, oc));
                }
            }
        }
        let plan = self.commands(site, &config, &others)?;
        self.install(executor, ctx, plan).await?;
        for (other, oc) in others {
            executor
                .store()
                .set_site_configuration(other.id, &oc.to_value())
                .await?;
        }
        Ok(())
    }

    pub fn commands(
        &self,
        site: &ServerSite,
        config: &SiteConfig,
        others: &[(ServerSite, SiteConfig)],
    ) -> Result<Plan, PackageError> {
        use SiteInstallerMilestones as M;
        let domain = validate::domain(&site.domain)?;
        let root = site_root(&domain);
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
        let mut plan = self
            .plan()
            .track(M::PrepareSite)
            .run_step(crate::base::RunStep {
                // A placeholder release keeps `current` valid until the first deployment; an existing
                // `current` (a re-run) is left alone.
                command: format!(
                    "set -e; cd {home}; install -d -m 750 {root}; cd {root}; install -d releases shared .brokeforge; \
                     if [ ! -e current ]; then install -d {iw}; [ -e {iw}/index.html ] || printf '%s' {page} > {iw}/index.html; \
                     ln -sfn releases/{INITIAL_RELEASE} current; fi",
                    home = q(APP_HOME),
                    root = q(&root),
                    iw = q(&initial_web),
                    page = q(&page),
                ),
                timeout: std::time::Duration::from_secs(60),
                stdin: None,
                credential: Some(CredentialKind::User),
                private_output: false,
            })
            .track(M::ConfigureNginx);
        plan = write_vhosts(plan, site, config, others)?;
        plan = plan
            .track(M::ReloadNginx)
            .run(NGINX_RELOAD)
            .track(M::Complete);
        Ok(plan)
    }
}

pub struct SiteRemover;

impl Package for SiteRemover {
    type Milestones = SiteRemoverMilestones;
    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }
}

impl PackageRemover for SiteRemover {}

impl SiteRemover {
    pub async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        site: &ServerSite,
        keep_files: bool,
    ) -> Result<(), PackageError> {
        super::on_server(ctx, site)?;
        let plan = self.commands(site, &SiteConfig::of(site), keep_files)?;
        self.remove(executor, ctx, plan).await?;
        let store = executor.store();
        store
            .delete_service_secret(ctx.server.id, &super::deploy_key_secret(site.id))
            .await?;
        store
            .delete_service_secret(ctx.server.id, &super::webhook_secret(site.id))
            .await?;
        Ok(())
    }

    pub fn commands(
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
            plan = plan.run(super::certificate::delete_command(&cert.name));
        }
        if config.tasks != Default::default() {
            plan = plan.run(super::tasks::remove_command(site.id));
        }
        let key = q(&super::deploy_key_path(site.id));
        plan = if keep_files {
            plan.run(format!(
                "rm -f {key} && echo 'the site files are kept in {}'",
                site_root(&domain)
            ))
        } else {
            plan.run(format!("rm -rf -- {} {key}", q(&site_root(&domain))))
        };
        Ok(plan.track(M::Complete))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
                .commands(&s, &c, &[(other, oc)])
                .unwrap()
                .to_string()
        );
    }

    #[test]
    fn remove_plan() {
        let s = site();
        insta::assert_snapshot!(
            SiteRemover
                .commands(&s, &SiteConfig::of(&s), false)
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
