//! Deployments with zero downtime: every deploy builds a new release directory from the repository, links
//! the shared files, runs the site's deploy script there, and only when all of that succeeded swaps the
//! `current` symlink atomically and reloads PHP-FPM gracefully. Rollback points `current` at a kept release.

use std::time::Duration;

use brokeforge_core::time::{now_ms, utc_stamp};
use brokeforge_core::{
    CredentialKind, ServiceStatus, ServiceType, ValidationError, shell_quote, validate,
};
use brokeforge_store::{Deployment, Job, NewJob, ServerSite, Store};
use serde_json::json;

use super::git_repository_installer::git_env;
use super::site::{ReleaseInfo, SiteConfig, shared_path, site_root};
use crate::base::executor::{Executor, RunContext};
use crate::base::{FileContents, FileStep, Package, PackageError, PackageInstaller, Plan, RunStep};
use crate::milestones;

/// The deploy script a new site starts with: works for plain PHP (nothing to do) and Laravel.
pub const DEFAULT_DEPLOY_SCRIPT: &str = r#"# Runs in the new release directory as the app user, before the release goes live.
# A failing command stops the deployment; the current release stays live.
# Available: $RELEASE_DIR $SITE_ROOT $BRANCH $COMMIT $PHP (e.g. php8.2)
if [ -f composer.json ]; then
  if ! command -v composer >/dev/null 2>&1; then
    echo "composer.json found but composer is not installed on this server" >&2
    exit 1
  fi
  $PHP "$(command -v composer)" install --no-dev --no-interaction --prefer-dist --optimize-autoloader
fi
if [ -f artisan ]; then
  $PHP artisan migrate --force
  $PHP artisan config:cache
  $PHP artisan route:cache
  $PHP artisan view:cache
fi
"#;

milestones! {
    pub enum DeploymentInstallerMilestones {
        PrepareRelease => ("prepare_release", "Preparing the release"),
        FetchCode => ("fetch_code", "Fetching the code"),
        LinkShared => ("link_shared", "Linking shared files"),
        RunScript => ("run_script", "Running the deploy script"),
        Activate => ("activate", "Activating the release"),
        CleanUp => ("clean_up", "Removing old releases"),
    }
}

milestones! {
    pub enum RollbackInstallerMilestones {
        CheckRelease => ("check_release", "Checking the release"),
        Activate => ("activate", "Activating the release"),
        Complete => ("complete", "Rolled back"),
    }
}

/// Queue a deployment of the site's repository (of `branch`, or the configured one).
pub async fn deploy(
    store: &Store,
    site: &ServerSite,
    branch: Option<&str>,
    triggered_by: &str,
) -> Result<(Deployment, Job), PackageError> {
    let config = ready(site)?;
    let repo = config.repository.as_ref().ok_or_else(|| {
        ValidationError::new(
            "repository",
            "the site has no git repository: connect one first",
        )
    })?;
    let branch = match branch {
        Some(b) => validate::git_branch(b)?,
        None => repo.branch.clone(),
    };
    Ok(store
        .queue_deployment(
            site,
            "deploy",
            Some(&branch),
            None,
            triggered_by,
            NewJob::new(
                super::DeploymentInstallerJob::KIND,
                Some(site.server_id),
                json!({"site_id": site.id, "branch": branch}),
            ),
        )
        .await?)
}

/// Queue a rollback to a kept release.
pub async fn rollback(
    store: &Store,
    site: &ServerSite,
    release: &str,
    triggered_by: &str,
) -> Result<(Deployment, Job), PackageError> {
    let config = ready(site)?;
    let info = config
        .releases
        .iter()
        .find(|r| r.name == release)
        .ok_or_else(|| {
            ValidationError::new(
                "release",
                format!(
                    "`{release}` is not a kept release of this site (kept: {})",
                    config
                        .releases
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
    Ok(store
        .queue_deployment(
            site,
            "rollback",
            None,
            Some(&info.name),
            triggered_by,
            NewJob::new(
                super::RollbackInstallerJob::KIND,
                Some(site.server_id),
                json!({"site_id": site.id, "release": info.name}),
            ),
        )
        .await?)
}

fn ready(site: &ServerSite) -> Result<SiteConfig, PackageError> {
    if site.status != ServiceStatus::Active {
        return Err(ValidationError::new(
            "site",
            format!(
                "the site is {}, not active: wait for it or retry its installation",
                site.status.as_str()
            ),
        )
        .into());
    }
    Ok(SiteConfig::of(site))
}

/// What a deploy plan needs, validated.
#[derive(Debug, Clone)]
pub struct DeployPlan {
    pub site_id: i64,
    pub domain: String,
    pub php_version: String,
    pub release: String,
    pub branch: String,
    pub config: SiteConfig,
    /// The deploy key, written again on every deploy (ssh repositories) so a deploy converges even when the
    /// key file went missing on the server.
    pub deploy_key: Option<brokeforge_core::Secret>,
}

pub struct DeploymentInstaller;

impl Package for DeploymentInstaller {
    type Milestones = DeploymentInstallerMilestones;
    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::User
    }
}

impl PackageInstaller for DeploymentInstaller {}

fn exit_code(e: &PackageError) -> Option<i64> {
    match e {
        PackageError::CommandFailed { exit_code, .. } => exit_code.map(i64::from),
        _ => None,
    }
}

impl DeploymentInstaller {
    pub fn prepare(
        site: &ServerSite,
        deployment: &Deployment,
        branch: Option<&str>,
    ) -> Result<DeployPlan, PackageError> {
        let config = SiteConfig::of(site);
        let repo = config.repository.as_ref().ok_or_else(|| {
            ValidationError::new(
                "repository",
                "the site has no git repository: connect one first",
            )
        })?;
        let branch = validate::git_branch(branch.unwrap_or(&repo.branch))?;
        let php_version = validate::php_version(site.php_version.as_deref().unwrap_or_default())?;
        for p in &config.shared_paths {
            shared_path(p)?;
        }
        Ok(DeployPlan {
            site_id: site.id,
            domain: validate::domain(&site.domain)?,
            php_version,
            release: format!("{}-{}", utc_stamp(now_ms()), deployment.id),
            branch,
            config,
            deploy_key: None,
        })
    }

    /// Run a deployment. On failure the half-built release is removed and the live one stays.
    pub async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        site: &ServerSite,
        deployment: &Deployment,
        branch: Option<&str>,
    ) -> Result<ReleaseInfo, PackageError> {
        let store = executor.store();
        super::on_server(ctx, site)?;
        let mut p = Self::prepare(site, deployment, branch)?;
        if p.config
            .repository
            .as_ref()
            .is_some_and(|r| r.transport == "ssh")
        {
            p.deploy_key = Some(
                super::git_repository_installer::deploy_key(store, site)
                    .await?
                    .1,
            );
        }
        store
            .set_deployment_details(deployment.id, Some(&p.branch), None, Some(&p.release), None)
            .await?;
        let plan = self.commands(&p)?;
        let report = match self.install(executor, ctx, plan).await {
            Ok(r) => r,
            Err(e) => {
                store
                    .set_deployment_details(deployment.id, None, None, None, exit_code(&e))
                    .await?;
                if !matches!(e, PackageError::Validation(_)) {
                    let root = site_root(&p.domain);
                    let cleanup = self.plan().run(format!(
                        "rm -rf -- {}",
                        shell_quote(&format!("{root}/releases/{}", p.release))
                    ));
                    if let Err(c) = executor
                        .run(ctx, &cleanup, brokeforge_core::ProvisionType::Install)
                        .await
                    {
                        tracing::warn!(site_id = site.id, error = %c, "removing a failed release failed");
                    }
                }
                return Err(e);
            }
        };
        // Output of the fetch step: `commit=<sha>`; of the clean-up step: the kept releases.
        let commit = report
            .outputs
            .iter()
            .flat_map(|o| {
                o.stdout_text()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .find_map(|l| l.strip_prefix("commit=").map(str::to_string));
        let kept: Vec<String> = report
            .outputs
            .last()
            .map(|o| o.stdout_text().lines().map(str::to_string).collect())
            .unwrap_or_default();
        let info = ReleaseInfo {
            name: p.release.clone(),
            commit: commit.clone(),
            deployment_id: Some(deployment.id),
            deployed_at: now_ms(),
        };
        store
            .set_deployment_details(deployment.id, None, commit.as_deref(), None, Some(0))
            .await?;
        SiteConfig::update(store, site.id, |c| {
            c.releases.retain(|r| kept.contains(&r.name));
            c.releases.push(info.clone());
            c.current_release = Some(p.release.clone());
        })
        .await?;
        Ok(info)
    }

    pub fn commands(&self, p: &DeployPlan) -> Result<Plan, PackageError> {
        use DeploymentInstallerMilestones as M;
        let q = shell_quote;
        let root = site_root(&p.domain);
        let release_dir = format!("{root}/releases/{}", p.release);
        let repo =
            p.config.repository.as_ref().ok_or_else(|| {
                ValidationError::new("repository", "the site has no git repository")
            })?;
        let env = git_env(p.site_id, &p.domain, repo);
        let mut link = String::from("set -e; ");
        for path in &p.config.shared_paths {
            let path = shared_path(path)?;
            let name = path.trim_end_matches('/');
            let shared = q(&format!("{root}/shared/{name}"));
            let target = q(&format!("{release_dir}/{name}"));
            if path.ends_with('/') {
                // A directory: seeded from the first release that has it, then shared by all.
                link.push_str(&format!(
                    "if [ ! -e {shared} ]; then mkdir -p \"$(dirname {shared})\"; if [ -d {target} ]; then cp -a {target} {shared}; else mkdir -p {shared}; fi; fi; \
                     rm -rf {target}; mkdir -p \"$(dirname {target})\"; ln -s {shared} {target}; "
                ));
            } else {
                link.push_str(&format!(
                    "if [ ! -e {shared} ]; then mkdir -p \"$(dirname {shared})\"; (umask 077; touch {shared}); fi; \
                     rm -rf {target}; mkdir -p \"$(dirname {target})\"; ln -s {shared} {target}; "
                ));
            }
        }
        link.push_str("echo linked");
        let script = p
            .config
            .deploy_script
            .clone()
            .unwrap_or_else(|| DEFAULT_DEPLOY_SCRIPT.to_string());
        let keep = p.config.keep_releases.clamp(1, 50);
        let plan = self
            .plan()
            .track(M::PrepareRelease)
            .run(format!(
                "set -e; cd {root}; install -d releases shared .brokeforge; \
                 if [ -e {rel} ]; then echo 'release {release} exists already' >&2; exit 1; fi",
                root = q(&root),
                rel = q(&release_dir),
                release = p.release,
            ))
            .put_file(FileStep::new(
                format!("{root}/.brokeforge/deploy.sh"),
                FileContents::Text(script),
                0o700,
            ))
            .track(M::FetchCode);
        let plan = match (&p.deploy_key, repo.transport.as_str()) {
            (Some(key), "ssh") => {
                let plan = plan.put_file(FileStep::new(
                    super::deploy_key_path(p.site_id),
                    FileContents::Secret(key.clone()),
                    0o600,
                ));
                if repo.known_hosts.is_empty() {
                    plan
                } else {
                    plan.put_file(FileStep::new(
                        format!("{root}/.brokeforge/known_hosts"),
                        FileContents::Text(repo.known_hosts.clone()),
                        0o600,
                    ))
                }
            }
            _ => plan,
        };
        let mut plan = plan
            .run_with_timeout(
                format!(
                    "set -e; {env}cd {root}; if [ ! -d repo.git ]; then rm -rf repo.git.tmp; git clone --mirror --quiet {url} repo.git.tmp; mv repo.git.tmp repo.git; fi; \
                     git -C repo.git remote set-url origin {url}; git -C repo.git fetch --prune --quiet origin; \
                     commit=$(git -C repo.git rev-parse --verify --quiet {refq}) || {{ echo \"the repository has no branch {branch}\" >&2; exit 1; }}; \
                     mkdir {rel}; git -C repo.git archive --format=tar --output={rel}.tar \"$commit\"; \
                     tar -xf {rel}.tar -C {rel}; rm -f {rel}.tar; echo \"$commit\" > {rel}/.revision; \
                     echo \"commit=$commit\"; git -C repo.git log -1 --format='%h %s' \"$commit\"",
                    root = q(&root),
                    url = q(&repo.url),
                    refq = q(&format!("refs/heads/{}^{{commit}}", p.branch)),
                    branch = p.branch,
                    rel = q(&release_dir),
                ),
                Duration::from_secs(900),
            )
            .track(M::LinkShared)
            .run(link)
            .track(M::RunScript)
            .run_step(RunStep {
                command: format!(
                    "cd {rel} && RELEASE_DIR={rel} SITE_ROOT={root} BRANCH={branch} COMMIT=$(cat .revision) PHP=php{php} \
                     bash -e {root}/.brokeforge/deploy.sh",
                    rel = q(&release_dir),
                    root = q(&root),
                    branch = q(&p.branch),
                    php = p.php_version,
                ),
                timeout: Duration::from_secs(p.config.deploy_timeout_secs.clamp(10, 7200)),
                stdin: None,
                credential: None,
                private_output: false,
            })
            .track(M::Activate)
            .run(activate(&root, &p.release, &p.php_version));
        plan = restart_daemons(plan, p.site_id, &p.config)
            .track(M::CleanUp)
            .run(format!(
                "cd {root}/releases && ls -1 | sort -r | tail -n +{from} | while read -r r; do [ \"$r\" = {rel} ] || rm -rf -- \"$r\"; done; ls -1 | sort",
                root = q(&root),
                from = keep + 1,
                rel = q(&p.release),
            ));
        Ok(plan)
    }
}

/// Daemons keep running in the release they started in: restart them in the live one (as root, who owns
/// their units).
fn restart_daemons(plan: Plan, site_id: i64, config: &SiteConfig) -> Plan {
    if config.tasks.daemons.is_empty() {
        return plan;
    }
    plan.run_step(RunStep {
        command: super::tasks::restart_daemons_command(site_id),
        timeout: Duration::from_secs(120),
        stdin: None,
        credential: Some(CredentialKind::Root),
        private_output: false,
    })
}

/// Point `current` at `release` atomically (a new symlink renamed over the old one), then reload PHP-FPM
/// gracefully so workers pick up the new code paths.
fn activate(root: &str, release: &str, php_version: &str) -> String {
    format!(
        "set -e; cd {root}; test -d {rel}; ln -sfn {rel} current.new; mv -Tf current.new current; \
         sudo -n /usr/bin/systemctl reload php{php_version}-fpm; echo \"live: $(readlink current)\"",
        root = shell_quote(root),
        rel = shell_quote(&format!("releases/{release}")),
    )
}

pub struct RollbackInstaller;

impl Package for RollbackInstaller {
    type Milestones = RollbackInstallerMilestones;
    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::User
    }
}

impl PackageInstaller for RollbackInstaller {}

impl RollbackInstaller {
    pub async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        site: &ServerSite,
        deployment: &Deployment,
        release: &str,
    ) -> Result<(), PackageError> {
        let store = executor.store();
        let config = SiteConfig::of(site);
        let info = config
            .releases
            .iter()
            .find(|r| r.name == release)
            .cloned()
            .ok_or_else(|| {
                ValidationError::new("release", format!("`{release}` is not a kept release"))
            })?;
        store
            .set_deployment_details(
                deployment.id,
                None,
                info.commit.as_deref(),
                Some(&info.name),
                None,
            )
            .await?;
        let plan = self.commands(site, &info.name)?;
        if let Err(e) = self.install(executor, ctx, plan).await {
            store
                .set_deployment_details(deployment.id, None, None, None, exit_code(&e))
                .await?;
            return Err(e);
        }
        store
            .set_deployment_details(deployment.id, None, None, None, Some(0))
            .await?;
        SiteConfig::update(store, site.id, |c| c.current_release = Some(info.name)).await?;
        Ok(())
    }

    pub fn commands(&self, site: &ServerSite, release: &str) -> Result<Plan, PackageError> {
        use RollbackInstallerMilestones as M;
        let domain = validate::domain(&site.domain)?;
        let php = validate::php_version(site.php_version.as_deref().unwrap_or_default())?;
        if release.is_empty()
            || !release
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ValidationError::new(
                "release",
                format!("`{release}` is not a release name"),
            )
            .into());
        }
        let root = site_root(&domain);
        let plan = self
            .plan()
            .track(M::CheckRelease)
            .run(format!(
                "test -d {} || {{ echo 'release {release} is no longer on the server' >&2; exit 1; }}",
                shell_quote(&format!("{root}/releases/{release}"))
            ))
            .track(M::Activate)
            .run(activate(&root, release, &php));
        Ok(restart_daemons(plan, site.id, &SiteConfig::of(site)).track(M::Complete))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::sites::site::RepositoryConfig;

    fn deployment() -> Deployment {
        Deployment {
            id: 42,
            site_id: 7,
            job_id: Some(1),
            kind: "deploy".into(),
            status: brokeforge_store::DeploymentStatus::Running,
            branch: None,
            commit_hash: None,
            release: None,
            triggered_by: "test".into(),
            exit_code: None,
            error: None,
            created_at: 0,
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn deploy_plan() {
        let mut site = super::super::site::tests::site();
        let mut c = SiteConfig::of(&site);
        c.repository = Some(RepositoryConfig {
            url: "git@github.com:acme/app.git".into(),
            branch: "main".into(),
            transport: "ssh".into(),
            host: "github.com".into(),
            port: 22,
            deploy_key_public: None,
            host_key_fingerprints: vec![],
            known_hosts: "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n".into(),
        });
        site.configuration = c.to_value();
        let mut p = DeploymentInstaller::prepare(&site, &deployment(), None).unwrap();
        p.release = "20261125120000-42".into();
        p.deploy_key = Some(brokeforge_core::Secret::new("PRIVATE KEY MATERIAL"));
        let text = DeploymentInstaller.commands(&p).unwrap().to_string();
        assert!(!text.contains("PRIVATE KEY MATERIAL"));
        insta::assert_snapshot!(text);
        assert!(DeploymentInstaller::prepare(&site, &deployment(), Some("main;id")).is_err());
    }

    #[test]
    fn rollback_plan() {
        let site = super::super::site::tests::site();
        insta::assert_snapshot!(
            RollbackInstaller
                .commands(&site, "20261125120000-42")
                .unwrap()
                .to_string()
        );
        assert!(RollbackInstaller.commands(&site, "../x").is_err());
    }
}
