//! Git Repository Installer: connects a site to its repository. BrokeForge generates a deploy key per site
//! (the user adds its public half to the git host), learns the git server's host key and pins it (checked
//! against a fingerprint when the user gives one), and clones a mirror that deployments fetch from.

use std::time::Duration;

use brokeforge_core::validate::{GitRemote, GitTransport};
use brokeforge_core::{
    CredentialKind, Secret, ServiceType, ValidationError, shell_quote, validate,
};
use brokeforge_store::{ServerSite, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{SiteUser, deploy_key_secret, on_server, require_active};
use super::config::{RepositoryConfig, SiteConfig};
use super::git::{deploy_key, git_env};
use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller, job};
use crate::base::registry::Registry;
use crate::base::{FileContents, FileStep, PackageError, Plan};
use crate::milestones;
use crate::services::sites::deployment;

pub fn register(r: &mut Registry) {
    r.installer(GitRepositoryInstaller);
}

milestones! {
    pub enum GitRepositoryInstallerMilestones {
        InstallDeployKey => ("install_deploy_key", "Installing the deploy key"),
        LearnHostKey => ("learn_host_key", "Learning the git server's host key"),
        CloneRepository => ("clone_repository", "Cloning the repository"),
        Complete => ("complete", "Repository connected"),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct RepositoryRequest {
    pub url: String,
    pub branch: Option<String>,
    /// The git server's host key fingerprint (`SHA256:...`) as the git host publishes it; when given, the
    /// learned key must match it.
    pub host_key_fingerprint: Option<String>,
}

pub struct GitRepositoryInstaller;

/// The job: connect `site_id` to the repository, then (unless `deploy` is false) queue a first deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepositoryPayload {
    pub site_id: i64,
    #[serde(flatten)]
    pub request: RepositoryRequest,
    #[serde(default = "yes")]
    pub deploy: bool,
}

fn yes() -> bool {
    true
}

/// What the plan needs: the site, the repository as it will be stored, the deploy key, the fingerprint the
/// git server's key must have.
pub struct RepositoryInput {
    pub site: ServerSite,
    pub repo: RepositoryConfig,
    pub private_key: Secret,
    pub expected_fingerprint: Option<String>,
    pub deploy: bool,
}

impl Package for GitRepositoryInstaller {
    type Milestones = GitRepositoryInstallerMilestones;
    type Request = RepositoryPayload;
    type Input = RepositoryInput;
    const JOB: &'static str = "git_repository_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::User
    }

    async fn gather(
        &self,
        cx: &Gather<'_>,
        p: &RepositoryPayload,
    ) -> Result<RepositoryInput, PackageError> {
        let site = cx.store.site(p.site_id).await?;
        on_server(cx.server.id, &site)?;
        let (remote, branch, fp) = prepare(&p.request)?;
        let existing = cx
            .store
            .service_secret(site.server_id, &deploy_key_secret(site.id))
            .await?;
        let (public, private) = match existing {
            // A preview generates no key.
            None if cx.dry_run => (None, Secret::new("preview-deploy-key")),
            _ => {
                let (public, private) = deploy_key(cx.store, &site).await?;
                (Some(public), private)
            }
        };
        let repo = RepositoryConfig {
            url: remote.url.clone(),
            branch,
            transport: match remote.transport {
                GitTransport::Ssh => "ssh".into(),
                GitTransport::Https => "https".into(),
            },
            host: remote.host.clone(),
            port: remote.port,
            deploy_key_public: public,
            host_key_fingerprints: Vec::new(),
            known_hosts: String::new(),
        };
        Ok(RepositoryInput {
            site,
            repo,
            private_key: private,
            expected_fingerprint: fp,
            deploy: p.deploy,
        })
    }

    fn commands(&self, i: &RepositoryInput) -> Result<Plan, PackageError> {
        self.repository_plan(
            &i.site,
            &i.repo,
            &i.private_key,
            i.expected_fingerprint.as_deref(),
        )
    }

    /// Store the repository with the host keys the run learned; queue the first deployment.
    async fn finish(
        &self,
        cx: &Gather<'_>,
        i: RepositoryInput,
        report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        let mut repo = i.repo;
        if repo.transport == "ssh" {
            // The learn step prints the pinned known_hosts lines, then their fingerprints.
            let out = report
                .outputs
                .first()
                .map(|o| o.stdout_text())
                .unwrap_or_default();
            for line in out.lines() {
                if let Some(fp) = line.split_whitespace().find(|w| w.starts_with("SHA256:")) {
                    repo.host_key_fingerprints.push(fp.to_string());
                } else if !line.trim().is_empty() && !line.starts_with('#') {
                    repo.known_hosts.push_str(line.trim());
                    repo.known_hosts.push('\n');
                }
            }
        }
        let stored = repo.clone();
        SiteConfig::update(cx.store, i.site.id, |c| c.repository = Some(stored.clone())).await?;
        let mut result = json!({
            "site_id": i.site.id,
            "repository": repo.url,
            "branch": repo.branch,
            "host_key_fingerprints": repo.host_key_fingerprints,
        });
        if i.deploy {
            let site = cx.store.site(i.site.id).await?;
            let (d, job) = deployment::deploy(cx.store, &site, None, "repository connected").await?;
            result["deployment_id"] = d.id.into();
            result["deployment_job_id"] = job.id.into();
        }
        Ok(result)
    }
}

impl PackageInstaller for GitRepositoryInstaller {}

/// Validate a repository request into the configuration the plan and deployments use.
pub fn prepare(
    req: &RepositoryRequest,
) -> Result<(GitRemote, String, Option<String>), PackageError> {
    let remote = validate::git_remote(&req.url)?;
    let branch = validate::git_branch(req.branch.as_deref().unwrap_or("main"))?;
    let fp = req
        .host_key_fingerprint
        .as_deref()
        .filter(|f| !f.trim().is_empty())
        .map(brokeforge_ssh::keys::validate_fingerprint)
        .transpose()?;
    if fp.is_some() && remote.transport == GitTransport::Https {
        return Err(ValidationError::new(
            "host_key_fingerprint",
            "an https repository has no SSH host key; leave the fingerprint empty",
        )
        .into());
    }
    Ok((remote, branch, fp))
}

/// Validate a repository request and queue its installer (then, unless `deploy` is false, a first deployment).
pub async fn connect_repository(
    store: &Store,
    site: &ServerSite,
    req: &RepositoryRequest,
    deploy: bool,
) -> Result<brokeforge_store::Job, PackageError> {
    prepare(req)?;
    require_active(site)?;
    let payload = RepositoryPayload {
        site_id: site.id,
        request: req.clone(),
        deploy,
    };
    Ok(store
        .enqueue(&job::<GitRepositoryInstaller>(site.server_id, &payload)?)
        .await?)
}

impl GitRepositoryInstaller {
    pub fn repository_plan(
        &self,
        site: &ServerSite,
        repo: &RepositoryConfig,
        private_key: &Secret,
        expected_fingerprint: Option<&str>,
    ) -> Result<Plan, PackageError> {
        use GitRepositoryInstallerMilestones as M;
        let domain = validate::domain(&site.domain)?;
        let user = SiteUser::of(site);
        let root = user.site_root(&domain);
        let q = shell_quote;
        let mut plan = self.plan().track(M::InstallDeployKey);
        plan = plan.put_file(user.file(FileStep::new(
            user.deploy_key_path(site.id),
            FileContents::Secret(private_key.clone()),
            0o600,
        )));
        plan = plan.track(M::LearnHostKey);
        if repo.transport == "ssh" {
            let target = if repo.port == 22 {
                q(&repo.host)
            } else {
                format!("-p {} {}", repo.port, q(&repo.host))
            };
            let check = match expected_fingerprint {
                Some(fp) => format!(
                    " && if ! ssh-keygen -lf \"$tmp\" | grep -qF {fp}; then echo \"the git server's host key does not match {fp}; it offered:\" >&2; \
                     ssh-keygen -lf \"$tmp\" >&2; exit 1; fi",
                    fp = q(fp)
                ),
                None => String::new(),
            };
            plan = plan.run_step(user.step(
                format!(
                    "set -e; install -d -m 700 {root}/.brokeforge; tmp=$(mktemp); trap 'rm -f \"$tmp\"' EXIT; \
                     ssh-keyscan -T 15 -t ed25519,ecdsa,rsa {target} > \"$tmp\" 2>/dev/null || true; \
                     if [ ! -s \"$tmp\" ]; then echo 'the git server {host} did not answer on SSH port {port}' >&2; exit 1; fi{check}; \
                     install -m 600 \"$tmp\" {root}/.brokeforge/known_hosts; cat \"$tmp\"; ssh-keygen -lf \"$tmp\"",
                    root = q(&root),
                    host = repo.host,
                    port = repo.port,
                ),
                Duration::from_secs(60),
            ));
        } else {
            plan = plan.run("echo 'https repository: no SSH host key to learn'");
        }
        let env = git_env(&user, site.id, &domain, repo);
        plan = plan
            .track(M::CloneRepository)
            .run_step(user.step(
                format!(
                    "set -e; {env}cd {root}; if [ -d repo.git ]; then git -C repo.git remote set-url origin {url}; \
                     git -C repo.git fetch --prune --quiet origin; else rm -rf repo.git.tmp; \
                     git clone --mirror --quiet {url} repo.git.tmp && mv repo.git.tmp repo.git; fi; \
                     if ! git -C repo.git rev-parse --verify --quiet {refq} >/dev/null; then \
                     echo \"the repository has no branch {branch}\" >&2; exit 1; fi; git -C repo.git rev-parse {refq}",
                    root = q(&root),
                    url = q(&repo.url),
                    refq = q(&format!("refs/heads/{}^{{commit}}", repo.branch)),
                    branch = repo.branch,
                ),
                Duration::from_secs(900),
            ))
            .track(M::Complete);
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_snapshot() {
        let site = super::super::site::tests::site();
        let (remote, branch, fp) = prepare(&RepositoryRequest {
            url: "ssh://git@git.example.com:2222/acme/app.git".into(),
            branch: Some("main".into()),
            host_key_fingerprint: Some("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".into()),
        })
        .unwrap();
        let repo = RepositoryConfig {
            url: remote.url,
            branch,
            transport: "ssh".into(),
            host: remote.host,
            port: remote.port,
            deploy_key_public: None,
            host_key_fingerprints: vec![],
            known_hosts: String::new(),
        };
        let plan = GitRepositoryInstaller
            .repository_plan(&site, &repo, &Secret::new("PRIVATE KEY"), fp.as_deref())
            .unwrap();
        let text = plan.to_string();
        assert!(!text.contains("PRIVATE KEY"));
        insta::assert_snapshot!(text);
    }

    #[test]
    fn bad_requests_are_refused() {
        for (url, branch) in [
            ("git@github.com:acme/app.git;touch /tmp/x", "main"),
            ("git@github.com:acme/app.git", "main;id"),
            ("https://u:p@github.com/acme/app.git", "main"),
        ] {
            let r = RepositoryRequest {
                url: url.into(),
                branch: Some(branch.into()),
                host_key_fingerprint: None,
            };
            assert!(prepare(&r).is_err(), "{url} {branch}");
        }
    }
}
