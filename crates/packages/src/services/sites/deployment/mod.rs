//! Deployments with zero downtime: every deploy builds a new release directory from the repository, links
//! the shared files, runs the site's deploy script there, and only when all of that succeeded swaps the
//! `current` symlink atomically and reloads PHP-FPM gracefully. Rollback points `current` at a kept release.

use std::time::Duration;

use brokeforge_core::time::{now_ms, utc_stamp};
use brokeforge_core::{
    CredentialKind, ServiceStatus, ServiceType, ValidationError, shell_quote, validate,
};
use brokeforge_store::{Deployment, Job, ServerSite, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{
    SiteUser, on_server, restart_app_command, restart_daemons_command, shared_path,
};
use super::config::{ReleaseInfo, SiteConfig, SiteKind};
use super::git::{deploy_key, git_env};
use crate::base::executor::{Executor, RunContext};
use crate::base::package::{Gather, Package, PackageInstaller, job};
use crate::base::registry::Registry;
use crate::base::{FileContents, FileStep, PackageError, Plan, RunStep};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(DeploymentInstaller);
}

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

/// A static site's: its files are served as they are; a `package.json` with a build script is built.
pub const STATIC_DEPLOY_SCRIPT: &str = r#"# Runs in the new release directory as the app user, before the release goes live.
# A failing command stops the deployment; the current release stays live.
# Available: $RELEASE_DIR $SITE_ROOT $BRANCH $COMMIT
# The files are served as they are. To build them first (npm, for example), write the build here.
true
"#;

/// A Node.js site's: install the dependencies and build when there is a build script; the application is
/// restarted in the new release once it is live.
pub const NODE_DEPLOY_SCRIPT: &str = r#"# Runs in the new release directory as the app user, before the release goes live.
# A failing command stops the deployment; the current release stays live.
# Available: $RELEASE_DIR $SITE_ROOT $BRANCH $COMMIT $PORT
# After this script, the application restarts in the new release with `npm start`.
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
elif [ -f package.json ]; then
  npm install --no-audit --no-fund
fi
npm run build --if-present
"#;

/// The deploy script a new site of `kind` starts with.
pub fn default_deploy_script(kind: SiteKind) -> &'static str {
    match kind {
        SiteKind::Php | SiteKind::Laravel | SiteKind::Wordpress => DEFAULT_DEPLOY_SCRIPT,
        SiteKind::Static | SiteKind::Proxy => STATIC_DEPLOY_SCRIPT,
        SiteKind::Node => NODE_DEPLOY_SCRIPT,
    }
}

milestones! {
    pub enum DeploymentInstallerMilestones {
        PrepareRelease => ("prepare_release", "Preparing the release"),
        FetchCode => ("fetch_code", "Fetching the code"),
        LinkShared => ("link_shared", "Linking shared files"),
        RunScript => ("run_script", "Running the deploy script"),
        Activate => ("activate", "Activating the release"),
        Verify => ("verify", "Checking that the site answers"),
        CleanUp => ("clean_up", "Removing old releases"),
    }
}

/// The site's health check, run from the server right after the release went live.
#[derive(Debug, Clone)]
pub struct AfterDeployCheck {
    /// `/path`, or `https:/path` for HTTPS.
    pub path: String,
    pub expect: i64,
    pub timeout_secs: i64,
    /// Put the previous release back when the check fails.
    pub rollback: bool,
}

/// What the verify step prints on stdout when the check failed, and when it rolled back (`rolled_back=R`).
const VERIFY_FAILED: &str = "verify=failed";
const ROLLED_BACK: &str = "rolled_back=";
/// Tries of the check after activation, two seconds apart.
const VERIFY_TRIES: u32 = 5;

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
            job::<DeploymentInstaller>(
                site.server_id,
                &DeployRequest {
                    site_id: site.id,
                    deployment_id: 0,
                    branch: Some(branch.clone()),
                },
            )?,
        )
        .await?)
}

pub fn ready(site: &ServerSite) -> Result<SiteConfig, PackageError> {
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
    /// The site's check, when the user asked for it after deploys.
    pub verify: Option<AfterDeployCheck>,
}

pub struct DeploymentInstaller;

/// A queued deployment: which site, which deployment record, which branch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployRequest {
    pub site_id: i64,
    /// Set by the store when it records the deployment with its job.
    #[serde(default)]
    pub deployment_id: i64,
    pub branch: Option<String>,
}

/// What a deploy plan needs, with the records it reports to.
pub struct DeployInput {
    pub site: ServerSite,
    pub deployment: Deployment,
    pub plan: DeployPlan,
}

impl Package for DeploymentInstaller {
    type Milestones = DeploymentInstallerMilestones;
    type Request = DeployRequest;
    type Input = DeployInput;
    const JOB: &'static str = "site_deploy";
    /// It may have partly run: after a lost worker the user decides whether to run it again.
    const RESUMABLE: bool = false;

    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::User
    }

    async fn gather(&self, cx: &Gather<'_>, r: &DeployRequest) -> Result<DeployInput, PackageError> {
        let site = cx.store.site(r.site_id).await?;
        on_server(cx.server.id, &site)?;
        let deployment = cx.store.deployment(r.deployment_id).await?;
        let mut plan = Self::prepare(&site, &deployment, r.branch.as_deref())?;
        if plan
            .config
            .repository
            .as_ref()
            .is_some_and(|r| r.transport == "ssh")
        {
            plan.deploy_key = Some(if cx.dry_run {
                brokeforge_core::Secret::new("preview-deploy-key")
            } else {
                deploy_key(cx.store, &site).await?.1
            });
        }
        plan.verify = cx
            .store
            .site_check(site.id)
            .await?
            .filter(|c| c.after_deploy != "off")
            .map(|c| AfterDeployCheck {
                path: c.path,
                expect: c.expect_status,
                timeout_secs: c.timeout_secs,
                rollback: c.after_deploy == "rollback",
            });
        Ok(DeployInput {
            site,
            deployment,
            plan,
        })
    }

    fn commands(&self, i: &DeployInput) -> Result<Plan, PackageError> {
        self.deploy_plan(&i.plan)
    }
}

impl PackageInstaller for DeploymentInstaller {
    /// Run a deployment. On failure the half-built release is removed and the live one stays.
    async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        request: &DeployRequest,
    ) -> Result<serde_json::Value, PackageError> {
        let store = executor.store();
        let i = self
            .gather(&Gather::new(store, &ctx.server), request)
            .await?;
        let (site, deployment, p) = (&i.site, &i.deployment, &i.plan);
        store
            .set_deployment_details(deployment.id, Some(&p.branch), None, Some(&p.release), None)
            .await?;
        let plan = self.commands(&i)?;
        let report = match self.install(executor, ctx, plan).await {
            Ok(r) => r,
            Err(e) => {
                let e = check_failure(e);
                store
                    .set_deployment_details(deployment.id, None, None, None, exit_code(&e))
                    .await?;
                // The check after activation failed and nothing was rolled back: the new release is live,
                // and the site's record says so (the deployment still failed).
                if let PackageError::CommandFailed { stdout, .. } = &e
                    && stdout.lines().any(|l| l == VERIFY_FAILED)
                    && !stdout.lines().any(|l| l.starts_with(ROLLED_BACK))
                {
                    let commit = stdout
                        .lines()
                        .find_map(|l| l.strip_prefix("commit=").map(str::to_string));
                    store
                        .set_deployment_details(deployment.id, None, commit.as_deref(), None, None)
                        .await?;
                    self.went_live(store, site, deployment, p, commit, None).await?;
                    return Err(e);
                }
                if !matches!(e, PackageError::Validation(_)) {
                    // Never the live release (a failed check may have left it live).
                    let user = SiteUser::new(p.site_id, p.config.isolated);
                    let root = user.site_root(&p.domain);
                    let rel = format!("releases/{}", p.release);
                    let cleanup = self.plan().run_step(user.step(
                        format!(
                            "cd {root} && if [ \"$(readlink current)\" != {rel} ]; then rm -rf -- {rel}; fi",
                            root = shell_quote(&root),
                            rel = shell_quote(&rel),
                        ),
                        crate::base::DEFAULT_TIMEOUT,
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
        store
            .set_deployment_details(deployment.id, None, commit.as_deref(), None, Some(0))
            .await?;
        let info = self
            .went_live(store, site, deployment, p, commit, Some(kept))
            .await?;
        Ok(json!({"deployment_id": deployment.id, "release": info.name, "commit": info.commit}))
    }
}

impl DeploymentInstaller {
    /// Record that the release is live (`kept`: the releases left on the server, when the clean-up ran).
    async fn went_live(
        &self,
        store: &Store,
        site: &ServerSite,
        deployment: &Deployment,
        p: &DeployPlan,
        commit: Option<String>,
        kept: Option<Vec<String>>,
    ) -> Result<ReleaseInfo, PackageError> {
        let info = ReleaseInfo {
            name: p.release.clone(),
            commit,
            deployment_id: Some(deployment.id),
            deployed_at: now_ms(),
        };
        let stored = info.clone();
        SiteConfig::update(store, site.id, |c| {
            if let Some(kept) = &kept {
                c.releases.retain(|r| kept.contains(&r.name));
            }
            c.releases.push(stored.clone());
            c.current_release = Some(p.release.clone());
        })
        .await?;
        Ok(info)
    }
}

pub fn exit_code(e: &PackageError) -> Option<i64> {
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
            verify: None,
        })
    }

    pub fn deploy_plan(&self, p: &DeployPlan) -> Result<Plan, PackageError> {
        use DeploymentInstallerMilestones as M;
        let q = shell_quote;
        let user = SiteUser::new(p.site_id, p.config.isolated);
        let t = crate::base::DEFAULT_TIMEOUT;
        let root = user.site_root(&p.domain);
        let release_dir = format!("{root}/releases/{}", p.release);
        let repo =
            p.config.repository.as_ref().ok_or_else(|| {
                ValidationError::new("repository", "the site has no git repository")
            })?;
        let env = git_env(&user, p.site_id, &p.domain, repo);
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
            .unwrap_or_else(|| default_deploy_script(p.config.kind).to_string());
        let keep = p.config.keep_releases.clamp(1, 50);
        let plan = self
            .plan()
            .track(M::PrepareRelease)
            .run_step(user.step(
                format!(
                    "set -e; cd {root}; install -d releases shared .brokeforge; \
                     if [ -e {rel} ]; then echo 'release {release} exists already' >&2; exit 1; fi",
                    root = q(&root),
                    rel = q(&release_dir),
                    release = p.release,
                ),
                t,
            ))
            .put_file(user.file(FileStep::new(
                format!("{root}/.brokeforge/deploy.sh"),
                FileContents::Text(script),
                0o700,
            )))
            .track(M::FetchCode);
        let plan = match (&p.deploy_key, repo.transport.as_str()) {
            (Some(key), "ssh") => {
                let plan = plan.put_file(user.file(FileStep::new(
                    user.deploy_key_path(p.site_id),
                    FileContents::Secret(key.clone()),
                    0o600,
                )));
                if repo.known_hosts.is_empty() {
                    plan
                } else {
                    plan.put_file(user.file(FileStep::new(
                        format!("{root}/.brokeforge/known_hosts"),
                        FileContents::Text(repo.known_hosts.clone()),
                        0o600,
                    )))
                }
            }
            _ => plan,
        };
        let mut plan = plan
            .run_step(user.step(
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
            ))
            .track(M::LinkShared)
            .run_step(user.step(link, t))
            .track(M::RunScript)
            .run_step(user.step(
                format!(
                    "cd {rel} && RELEASE_DIR={rel} SITE_ROOT={root} BRANCH={branch} COMMIT=$(cat .revision) PHP=php{php}{port} \
                     bash -e {root}/.brokeforge/deploy.sh",
                    rel = q(&release_dir),
                    root = q(&root),
                    branch = q(&p.branch),
                    php = p.php_version,
                    port = p.config.proxy_port.map(|p| format!(" PORT={p}")).unwrap_or_default(),
                ),
                Duration::from_secs(p.config.deploy_timeout_secs.clamp(10, 7200)),
            ))
            .track(M::Activate);
        plan = activate_steps(plan, &user, &p.config, &root, &p.release, &p.php_version);
        plan = restart_app(plan, p.site_id, &p.config);
        if let Some(check) = &p.verify {
            plan = plan.track(M::Verify).run_step(user.step(
                verify_command(p, &user, check),
                Duration::from_secs(
                    (check.timeout_secs.clamp(1, 60) as u64 + 2) * u64::from(VERIFY_TRIES) + 60,
                ),
            ));
        }
        plan = restart_daemons(plan, p.site_id, &p.config)
            .track(M::CleanUp)
            .run_step(user.step(
                format!(
                    "cd {root}/releases && ls -1 | sort -r | tail -n +{from} | while read -r r; do [ \"$r\" = {rel} ] || rm -rf -- \"$r\"; done; ls -1 | sort",
                    root = q(&root),
                    from = keep + 1,
                    rel = q(&p.release),
                ),
                t,
            ));
        Ok(plan)
    }
}

/// A failed check after activation says what the site answered and what became of the release, not the
/// whole script that asked.
fn check_failure(e: PackageError) -> PackageError {
    match e {
        PackageError::CommandFailed {
            message,
            exit_code,
            timed_out,
            stdout,
            stderr,
            duration,
        } if stdout.lines().any(|l| l == VERIFY_FAILED) => PackageError::CommandFailed {
            message: stderr
                .lines()
                .rev()
                .find(|l| l.starts_with("the site "))
                .map(str::to_string)
                .unwrap_or(message),
            exit_code,
            timed_out,
            stdout,
            stderr,
            duration,
        },
        other => other,
    }
}

/// Ask the site from the server itself (through nginx, with the site's name) until it answers as expected,
/// a few times; when it does not, say so on stdout ([`VERIFY_FAILED`]) and, when asked to and there is a
/// previous release, put that one back ([`ROLLED_BACK`]) before failing.
fn verify_command(p: &DeployPlan, user: &SiteUser, check: &AfterDeployCheck) -> String {
    let q = shell_quote;
    let (https, path) = brokeforge_store::check_target(&check.path);
    let request = if https {
        format!(
            "-k --resolve {resolve} {url}",
            resolve = q(&format!("{}:443:127.0.0.1", p.domain)),
            url = q(&format!("https://{}{path}", p.domain)),
        )
    } else {
        format!(
            "-H {host} {url}",
            host = q(&format!("Host: {}", p.domain)),
            url = q(&format!("http://127.0.0.1{path}")),
        )
    };
    let shown = q(&format!("{}{path}", if https { "https:" } else { "" }));
    let back = match (&p.config.current_release, check.rollback) {
        (Some(previous), true) => format!(
            "if ( {activate} ) >/dev/null; then echo {rolled}; echo \"$why; rolled back to {previous}\" >&2; \
             else echo \"$why; putting {previous} back failed too\" >&2; fi",
            // A site user cannot reload PHP-FPM; its releases have their own paths, so OPcache serves the
            // right files without.
            activate = activate(&user.site_root(&p.domain), previous, (!user.isolated).then_some(p.php_version.as_str())),
            rolled = q(&format!("{ROLLED_BACK}{previous}")),
        ),
        (None, true) => {
            "echo \"$why; there is no earlier release to go back to, this one stays live\" >&2".into()
        }
        (_, false) => {
            "echo \"$why; this release stays live (brokeforge site rollback goes back)\" >&2".into()
        }
    };
    format!(
        "code=000; for i in $(seq {tries}); do \
         code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time {timeout} {request}) || true; \
         if [ \"$code\" = {expect} ]; then echo \"the site answered $code\"; exit 0; fi; \
         [ \"$i\" = {tries} ] || sleep 2; done; \
         echo {failed}; cat {rel}/.revision 2>/dev/null | sed 's/^/commit=/'; where={shown}; \
         if [ \"$code\" = 000 ]; then why=\"the site did not answer at $where\"; \
         else why=\"the site answered $code at $where, expected {expect}\"; fi; \
         why=\"$why after the deploy ({tries} tries)\"; {back}; exit 1",
        tries = VERIFY_TRIES,
        timeout = check.timeout_secs.clamp(1, 60),
        expect = check.expect,
        failed = VERIFY_FAILED,
        rel = q(&format!("{}/releases/{}", user.site_root(&p.domain), p.release)),
    )
}

/// A Node.js site's application runs the release it started in: restart it in the live one (as root).
pub fn restart_app(plan: Plan, site_id: i64, config: &SiteConfig) -> Plan {
    if config.kind != SiteKind::Node {
        return plan;
    }
    plan.run_step(RunStep {
        command: restart_app_command(site_id),
        timeout: Duration::from_secs(120),
        stdin: None,
        credential: Some(CredentialKind::Root),
        private_output: false,
    })
}

/// Daemons keep running in the release they started in: restart them in the live one (as root, who owns
/// their units).
pub fn restart_daemons(plan: Plan, site_id: i64, config: &SiteConfig) -> Plan {
    if config.tasks.daemons.is_empty() {
        return plan;
    }
    plan.run_step(RunStep {
        command: restart_daemons_command(site_id),
        timeout: Duration::from_secs(120),
        stdin: None,
        credential: Some(CredentialKind::Root),
        private_output: false,
    })
}

/// Point `current` at `release` atomically (a new symlink renamed over the old one), then reload PHP-FPM
/// gracefully so workers pick up the new code paths.
/// Point `current` at `release` atomically; with `reload_php`, reload that PHP-FPM gracefully through the app
/// user's sudoers entry.
pub fn activate(root: &str, release: &str, reload_php: Option<&str>) -> String {
    let reload = reload_php
        .map(|v| format!("sudo -n /usr/bin/systemctl reload php{v}-fpm; "))
        .unwrap_or_default();
    format!(
        "set -e; cd {root}; test -d {rel}; ln -sfn {rel} current.new; mv -Tf current.new current; \
         {reload}echo \"live: $(readlink current)\"",
        root = shell_quote(root),
        rel = shell_quote(&format!("releases/{release}")),
    )
}

/// Activate `release` as the site's user. The app user reloads PHP-FPM itself; a site user has no sudo, so
/// root reloads it in a step of its own (for sites that run PHP).
pub fn activate_steps(
    plan: Plan,
    user: &SiteUser,
    config: &SiteConfig,
    root: &str,
    release: &str,
    php_version: &str,
) -> Plan {
    let t = crate::base::DEFAULT_TIMEOUT;
    if !user.isolated {
        return plan.run_step(user.step(activate(root, release, Some(php_version)), t));
    }
    let plan = plan.run_step(user.step(activate(root, release, None), t));
    if !config.kind.runs_php() {
        return plan;
    }
    plan.run_step(RunStep {
        command: format!("systemctl reload php{php_version}-fpm"),
        timeout: t,
        stdin: None,
        credential: Some(CredentialKind::Root),
        private_output: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::sites::config::RepositoryConfig;

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
        let text = DeploymentInstaller.deploy_plan(&p).unwrap().to_string();
        assert!(!text.contains("PRIVATE KEY MATERIAL"));
        insta::assert_snapshot!(text);
        assert!(DeploymentInstaller::prepare(&site, &deployment(), Some("main;id")).is_err());
    }

    /// With a check after deploys: a verify step after activation that puts the live release back.
    #[test]
    fn deploy_plan_with_check() {
        let mut site = super::super::site::tests::site();
        let mut c = SiteConfig::of(&site);
        c.repository = Some(RepositoryConfig {
            url: "https://git.example.com/acme/app.git".into(),
            branch: "main".into(),
            transport: "https".into(),
            host: "git.example.com".into(),
            port: 443,
            deploy_key_public: None,
            host_key_fingerprints: vec![],
            known_hosts: String::new(),
        });
        c.current_release = Some("20261101000000-41".into());
        site.configuration = c.to_value();
        let mut p = DeploymentInstaller::prepare(&site, &deployment(), None).unwrap();
        p.release = "20261125120000-42".into();
        p.verify = Some(AfterDeployCheck {
            path: "/health?x=$HOME".into(),
            expect: 204,
            timeout_secs: 5,
            rollback: true,
        });
        let text = DeploymentInstaller.deploy_plan(&p).unwrap().to_string();
        insta::assert_snapshot!(text);
    }


}
