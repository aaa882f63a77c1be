//! Sites: creating and removing them, their repository, deployments and rollbacks, HTTPS, background work,
//! commands, the `.env`, deploy settings and the deploy webhook.

use std::time::Duration;

use brokeforge_core::Secret;
use brokeforge_packages::RunContext;
use brokeforge_packages::services::sites::certificate::{self, CertificateRequest};
use brokeforge_packages::services::sites::command::{CommandRequest, SiteCommandInstaller};
use brokeforge_packages::services::sites::common::{DEFAULT_COMMAND_TIMEOUT, shared_path};
use brokeforge_packages::services::sites::config::{SiteConfig, WebhookSource};
use brokeforge_packages::services::sites::environment::{self, EnvironmentInstaller};
use brokeforge_packages::services::sites::repository::{self, RepositoryRequest};
use brokeforge_packages::services::sites::schedule::SiteTasks;
use brokeforge_packages::services::sites::site::{self, SiteRequest};
use brokeforge_packages::services::sites::{deployment, git, rollback, tasks, webhook};
use brokeforge_store::{Deployment, Job, Server, ServerSite, SiteCommandRecord, User};
use serde::Deserialize;

use crate::{Domain, DomainError, DomainResult};

/// How long saving a `.env` waits for its job before saying it is queued.
const ENV_WAIT: Duration = Duration::from_secs(60);

/// Deployment settings a user may change; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(default)]
pub struct SiteSettings {
    pub keep_releases: Option<u32>,
    pub deploy_timeout_secs: Option<u64>,
    pub shared_paths: Option<Vec<String>>,
}

/// Where GitHub, GitLab or any tool posts to deploy, who the site expects, and the secret they prove.
pub struct WebhookInfo {
    /// The path under BrokeForge's base URL (its id finds the site; it proves nothing).
    pub path: Secret,
    /// GitHub's webhook secret, GitLab's secret token, or any other caller's `X-BrokeForge-Token`.
    pub secret: Secret,
    pub provider: WebhookSource,
}

impl Domain {
    /// One of the user's sites, with its server.
    pub async fn owned_site(
        &self,
        user: &User,
        id: i64,
        action: crate::policy::Action,
    ) -> DomainResult<(ServerSite, Server)> {
        let site = self.store.site(id).await?;
        let server = self.owned_server(user, site.server_id, action).await?;
        Ok((site, server))
    }

    /// A context for a read that runs outside the queue (it changes nothing on the server): the one way
    /// callers reach a server live.
    fn live(&self, server: &Server) -> RunContext {
        RunContext::new(server.clone())
    }

    pub async fn create_site(
        &self,
        server: &Server,
        req: &SiteRequest,
    ) -> DomainResult<(ServerSite, Job)> {
        Ok(site::create_site(&self.store, server.id, req).await?)
    }

    pub async fn remove_site(&self, site: &ServerSite, keep_files: bool) -> DomainResult<Job> {
        Ok(site::remove_site(&self.store, site, keep_files).await?)
    }

    /// The site's deploy key's public half (generated on first use).
    pub async fn deploy_key(&self, site: &ServerSite) -> DomainResult<String> {
        Ok(git::deploy_key(&self.store, site).await?.0)
    }

    pub async fn connect_repository(
        &self,
        site: &ServerSite,
        req: &RepositoryRequest,
        deploy: bool,
    ) -> DomainResult<Job> {
        Ok(repository::connect_repository(&self.store, site, req, deploy).await?)
    }

    pub async fn request_certificate(
        &self,
        site: &ServerSite,
        req: &CertificateRequest,
    ) -> DomainResult<Job> {
        Ok(certificate::request_certificate(&self.store, site, req).await?)
    }

    /// A certificate the user brings, checked (chain order, names, dates, key) before anything is queued.
    pub async fn upload_certificate(
        &self,
        site: &ServerSite,
        certificate: &str,
        private_key: &brokeforge_core::Secret,
        hsts: bool,
    ) -> DomainResult<Job> {
        Ok(certificate::custom::upload_certificate(
            &self.store,
            site,
            certificate,
            private_key,
            hsts,
        )
        .await?)
    }

    pub async fn remove_certificate(&self, site: &ServerSite) -> DomainResult<Job> {
        Ok(certificate::remove_certificate(&self.store, site).await?)
    }

    /// Move a PHP site to another installed PHP version (queued; refused first when it cannot).
    pub async fn set_site_php_version(
        &self,
        site: &ServerSite,
        version: &str,
    ) -> DomainResult<Job> {
        Ok(
            brokeforge_packages::services::sites::php_version::change_php_version(
                &self.store,
                site,
                version,
            )
            .await?,
        )
    }

    /// New process-manager settings for an isolated PHP site's pool (queued; refused first when it cannot).
    pub async fn set_site_pool(
        &self,
        site: &ServerSite,
        pm: Option<&str>,
        max_children: Option<u32>,
    ) -> DomainResult<Job> {
        Ok(brokeforge_packages::services::sites::php_pool::change_pool(
            &self.store,
            site,
            pm,
            max_children,
        )
        .await?)
    }

    pub async fn set_tasks(&self, site: &ServerSite, wanted: &SiteTasks) -> DomainResult<Job> {
        Ok(tasks::set_tasks(&self.store, site, wanted).await?)
    }

    /// The newest output of the site's scheduled commands and daemons, read live (never stored).
    pub async fn tasks_output(
        &self,
        server: &Server,
        site: &ServerSite,
        lines: u32,
    ) -> DomainResult<String> {
        Ok(tasks::SiteTasksInstaller
            .recent_output(&self.executor, &self.live(server), site, lines)
            .await?)
    }

    /// A page of the site's deployments older than `before` (newest first).
    pub async fn deployments(
        &self,
        site: &ServerSite,
        before: Option<i64>,
        limit: i64,
    ) -> DomainResult<Vec<Deployment>> {
        Ok(self
            .store
            .deployments_before(site.id, before.unwrap_or(i64::MAX), limit)
            .await?)
    }

    pub async fn deploy(
        &self,
        site: &ServerSite,
        branch: Option<&str>,
        triggered_by: &str,
    ) -> DomainResult<(Deployment, Job)> {
        Ok(deployment::deploy(&self.store, site, branch, triggered_by).await?)
    }

    pub async fn rollback(
        &self,
        site: &ServerSite,
        release: &str,
        triggered_by: &str,
    ) -> DomainResult<(Deployment, Job)> {
        Ok(rollback::rollback(&self.store, site, release, triggered_by).await?)
    }

    /// Replace the deploy script (empty: back to the default).
    pub async fn save_deploy_script(&self, site: &ServerSite, script: &str) -> DomainResult<()> {
        if script.len() > 64 * 1024 || script.contains('\0') {
            return Err(DomainError::invalid(
                "script",
                "the script must be text of at most 64 KiB",
            ));
        }
        let script = (!script.trim().is_empty()).then(|| script.replace("\r\n", "\n"));
        SiteConfig::update(&self.store, site.id, |c| c.deploy_script = script.clone()).await?;
        Ok(())
    }

    /// Change a site's deployment settings (validated first; nothing changes on a bad value).
    pub async fn save_site_settings(
        &self,
        site: &ServerSite,
        s: &SiteSettings,
    ) -> DomainResult<SiteConfig> {
        if let Some(k) = s.keep_releases
            && !(1..=50).contains(&k)
        {
            return Err(DomainError::invalid(
                "keep_releases",
                "keep between 1 and 50 releases",
            ));
        }
        if let Some(t) = s.deploy_timeout_secs
            && !(10..=7200).contains(&t)
        {
            return Err(DomainError::invalid(
                "deploy_timeout_secs",
                "between 10 and 7200 seconds",
            ));
        }
        let paths = match &s.shared_paths {
            Some(paths) => Some(
                paths
                    .iter()
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| shared_path(p.trim()))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        Ok(SiteConfig::update(&self.store, site.id, |c| {
            if let Some(k) = s.keep_releases {
                c.keep_releases = k;
            }
            if let Some(t) = s.deploy_timeout_secs {
                c.deploy_timeout_secs = t;
            }
            if let Some(p) = &paths {
                c.shared_paths = p.clone();
            }
        })
        .await?)
    }

    /// A page of the site's commands older than `before` (newest first).
    pub async fn site_commands(
        &self,
        site: &ServerSite,
        before: Option<i64>,
        limit: i64,
    ) -> DomainResult<Vec<SiteCommandRecord>> {
        Ok(self
            .store
            .site_commands_before(site.id, before.unwrap_or(i64::MAX), limit)
            .await?)
    }

    /// Queue a site command; its output streams on the server's feed, its result is the job's.
    pub async fn queue_command(
        &self,
        site: &ServerSite,
        command: &str,
        timeout_secs: Option<u64>,
    ) -> DomainResult<Job> {
        if command.trim().is_empty() {
            return Err(DomainError::invalid("command", "enter a command"));
        }
        if command.len() > 8192 || command.contains('\0') {
            return Err(DomainError::invalid("command", "at most 8 KiB of text"));
        }
        let timeout = timeout_secs.unwrap_or(DEFAULT_COMMAND_TIMEOUT.as_secs());
        if !(1..=3600).contains(&timeout) {
            return Err(DomainError::invalid(
                "timeout_secs",
                "between 1 and 3600 seconds",
            ));
        }
        let request = CommandRequest::new(site.id, command, Duration::from_secs(timeout));
        Ok(self
            .store
            .enqueue(&brokeforge_packages::base::package::job::<
                SiteCommandInstaller,
            >(site.server_id, &request)?)
            .await?)
    }

    /// The site's `.env`, read live (never stored or logged).
    pub async fn read_env(&self, server: &Server, site: &ServerSite) -> DomainResult<Secret> {
        Ok(EnvironmentInstaller
            .read(&self.executor, &self.live(server), site)
            .await?)
    }

    /// Write the site's `.env` through its job, waiting for it like a save.
    pub async fn write_env(&self, site: &ServerSite, contents: &Secret) -> DomainResult<()> {
        environment::write_env_and_wait(&self.store, site, contents, ENV_WAIT).await?;
        Ok(())
    }

    pub async fn webhook(&self, site: &ServerSite) -> DomainResult<WebhookInfo> {
        Ok(WebhookInfo {
            path: webhook::webhook_path(&self.store, site).await?,
            secret: webhook::signing_secret(&self.store, site).await?,
            provider: SiteConfig::of(site).webhook_provider,
        })
    }

    /// Choose who calls the site's deploy webhook (`github`, `gitlab` or `generic`).
    pub async fn set_webhook_provider(
        &self,
        site: &ServerSite,
        provider: &str,
    ) -> DomainResult<WebhookSource> {
        let provider = WebhookSource::parse(provider)?;
        SiteConfig::update(&self.store, site.id, |c| c.webhook_provider = provider).await?;
        Ok(provider)
    }

    /// A call of a site's deploy webhook (from GitHub, GitLab or another tool; not a user).
    pub async fn deploy_webhook(
        &self,
        site_id: i64,
        url_id: &str,
        header: impl Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> Result<webhook::WebhookOutcome, webhook::WebhookError> {
        webhook::handle(&self.store, site_id, url_id, header, body).await
    }
}
