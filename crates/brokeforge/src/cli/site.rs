//! `brokeforge site`: sites, their repository, deployments, HTTPS, background work, .env and commands.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};

use super::common::*;
use crate::client::{Client, ClientArgs, OutputMode, follow};
use brokeforge_domain::monitoring::CheckSpec;
use brokeforge_domain::sites::SiteSettings;
use brokeforge_packages::services::sites::certificate::CertificateRequest;
use brokeforge_packages::services::sites::repository::RepositoryRequest;
use brokeforge_packages::services::sites::site::SiteRequest;
use brokeforge_web::api::types::{
    CommandBody, CustomCertificate, DeployBody, EnvFile, JobResponse, PhpVersionBody, PoolBody,
    RepositoryBody, RollbackBody, ScriptBody,
};

#[derive(Args, Clone)]
pub struct SiteTarget {
    #[arg(long)]
    pub server: String,
    #[arg(long)]
    pub domain: String,
}

#[derive(Subcommand)]
pub enum SiteCommand {
    /// Create a site (nginx vhost, releases/shared/current); with --repository, connect it and deploy.
    Create {
        #[command(flatten)]
        target: SiteTarget,
        /// Another name the site answers to (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// What the site runs.
        #[arg(long = "type", value_parser = ["php", "laravel", "wordpress", "static", "node", "proxy"])]
        kind: Option<String>,
        /// Where a proxy site sends requests (required), or a Node.js site's port (default: one is chosen).
        #[arg(long)]
        proxy_port: Option<u16>,
        /// A static site answers unknown paths with /index.html (single-page applications).
        #[arg(long)]
        spa: bool,
        /// PHP version (default: the server's command-line PHP).
        #[arg(long)]
        php: Option<String>,
        /// Served directory inside a release (default: public; a static site's release itself; `/` for the
        /// release).
        #[arg(long)]
        web_dir: Option<String>,
        /// Make it the server's default site.
        #[arg(long)]
        default: bool,
        /// Run the site as its own Linux user with its own PHP-FPM pool (the default).
        #[arg(long, conflicts_with = "shared_user")]
        isolated: bool,
        /// Run the site as the shared app user `brokeforge`, like sites from before isolation.
        #[arg(long)]
        shared_user: bool,
        /// How the site's PHP-FPM pool starts workers: ondemand (default), dynamic or static.
        #[arg(long, value_parser = ["ondemand", "dynamic", "static"])]
        pm: Option<String>,
        /// Most PHP workers of the site's pool (default 5).
        #[arg(long)]
        max_children: Option<u32>,
        /// Git repository (ssh or https); add the site's deploy key to the git host first.
        #[arg(long, requires = "branch")]
        repository: Option<String>,
        #[arg(long)]
        branch: Option<String>,
        /// The git server's host key fingerprint (SHA256:...), checked when the repository connects.
        #[arg(long)]
        git_host_key_fingerprint: Option<String>,
        #[arg(long)]
        follow: bool,
    },
    /// Move a PHP site to another installed PHP version.
    Php {
        #[command(flatten)]
        target: SiteTarget,
        #[arg(long)]
        version: String,
        #[arg(long)]
        follow: bool,
    },
    /// Change an isolated PHP site's PHP-FPM pool (omitted settings keep their value).
    Pool {
        #[command(flatten)]
        target: SiteTarget,
        /// How the pool starts workers.
        #[arg(long, value_parser = ["ondemand", "dynamic", "static"])]
        pm: Option<String>,
        /// Most PHP workers (1-200).
        #[arg(long)]
        max_children: Option<u32>,
        #[arg(long)]
        follow: bool,
    },
    /// Sites of a server.
    List {
        #[arg(long)]
        server: String,
    },
    /// One site.
    Show(SiteTarget),
    /// Remove a site (its vhost and files unless --keep-files).
    Remove {
        #[command(flatten)]
        target: SiteTarget,
        #[arg(long)]
        keep_files: bool,
        #[arg(long)]
        follow: bool,
    },
    /// Deploy the site's repository.
    Deploy {
        #[command(flatten)]
        target: SiteTarget,
        /// Another branch than the configured one.
        #[arg(long)]
        branch: Option<String>,
        #[arg(long)]
        follow: bool,
    },
    /// Make a kept release live again (default: the one before the live one).
    Rollback {
        #[command(flatten)]
        target: SiteTarget,
        #[arg(long)]
        release: Option<String>,
        #[arg(long)]
        follow: bool,
    },
    /// Connect a git repository (add the deploy key to the git host first), then deploy.
    Repository {
        #[command(flatten)]
        target: SiteTarget,
        /// ssh (git@host:owner/repo.git) or https URL.
        #[arg(long)]
        repository: String,
        #[arg(long, default_value = "main")]
        branch: String,
        /// The git server's host key fingerprint (SHA256:...), checked before anything is cloned.
        #[arg(long)]
        host_key_fingerprint: Option<String>,
        /// Connect only; do not deploy.
        #[arg(long)]
        no_deploy: bool,
        #[arg(long)]
        follow: bool,
    },
    /// A health check of the site, run by BrokeForge every interval: create or change it, --status to see its
    /// state and recent answers, --remove to stop it. An alert rule fires when the site stops answering.
    Check {
        #[command(flatten)]
        target: SiteTarget,
        #[arg(long, default_value = "/")]
        path: String,
        /// The HTTP status a healthy answer has.
        #[arg(long, default_value_t = 200)]
        expect: i64,
        /// Seconds between checks.
        #[arg(long, default_value_t = 60)]
        interval: i64,
        #[arg(long, default_value_t = 10)]
        timeout: i64,
        /// Check https://DOMAIN as visitors reach it (else the server's address over HTTP, Host: DOMAIN).
        #[arg(long)]
        https: bool,
        /// After each deploy, from the server: fail (the deployment fails when the site does not answer as
        /// expected) or rollback (and the previous release goes live again).
        #[arg(long, default_value = "off", value_parser = ["off", "fail", "rollback"])]
        after_deploy: String,
        #[arg(long, conflicts_with = "remove")]
        status: bool,
        #[arg(long)]
        remove: bool,
    },
    /// HTTPS: get a certificate (Let's Encrypt unless --acme-directory says otherwise) and serve the site over
    /// HTTPS with plain HTTP redirected; again to renew early or add new aliases; --remove to go back to HTTP.
    Certificate {
        #[command(flatten)]
        target: SiteTarget,
        /// Where the certificate authority sends expiry notices.
        #[arg(long)]
        email: Option<String>,
        /// Another ACME directory URL (e.g. Let's Encrypt's staging directory, or a private ACME server).
        #[arg(long)]
        acme_directory: Option<String>,
        /// PEM file with the CA certificate of a private ACME server.
        #[arg(long)]
        acme_ca: Option<PathBuf>,
        /// Send Strict-Transport-Security (browsers then insist on HTTPS for a year).
        #[arg(long)]
        hsts: bool,
        /// Your own certificate instead of ACME: a PEM file with the chain, leaf first (with --key-file).
        #[arg(long, requires = "key_file", conflicts_with_all = ["email", "acme_directory", "acme_ca"])]
        cert_file: Option<PathBuf>,
        /// The PEM private key of --cert-file's certificate.
        #[arg(long, requires = "cert_file")]
        key_file: Option<PathBuf>,
        /// Remove the certificate and serve plain HTTP.
        #[arg(long, conflicts_with_all = ["email", "acme_directory", "acme_ca", "hsts", "cert_file"])]
        remove: bool,
        #[arg(long)]
        follow: bool,
    },
    /// Scheduled commands and daemons, run as the app user in the live release. Without --schedule, --daemon
    /// or --clear: print them. Otherwise the given set replaces the current one and is applied.
    Tasks {
        #[command(flatten)]
        target: SiteTarget,
        /// A crontab line: `--schedule '* * * * * php artisan schedule:run'` (repeatable).
        #[arg(long = "schedule")]
        schedules: Vec<String>,
        /// A daemon kept running, with an optional process count: `--daemon '2: php artisan queue:work'`
        /// (repeatable).
        #[arg(long = "daemon")]
        daemons: Vec<String>,
        /// Remove every scheduled command and daemon of the site.
        #[arg(long, conflicts_with_all = ["schedules", "daemons"])]
        clear: bool,
        /// Print the newest lines they wrote (from the server's journal).
        #[arg(long, conflicts_with_all = ["schedules", "daemons", "clear"])]
        output: bool,
        /// With --output: how many lines.
        #[arg(long, default_value_t = 200, requires = "output")]
        lines: u32,
        #[arg(long)]
        follow: bool,
    },
    /// Deployments, kept releases and the live one.
    Deployments(SiteTarget),
    /// Replace the deploy script from a file.
    DeployScript {
        #[command(flatten)]
        target: SiteTarget,
        #[arg(long)]
        file: PathBuf,
    },
    /// Deployment settings: releases kept, deploy timeout, shared paths.
    Settings {
        #[command(flatten)]
        target: SiteTarget,
        /// Releases kept on the server (1-50).
        #[arg(long)]
        keep_releases: Option<u32>,
        /// Seconds the deploy script may run.
        #[arg(long)]
        deploy_timeout: Option<u64>,
        /// A file or directory (ending in /) shared by every release; repeat for several (replaces the list).
        #[arg(long = "shared")]
        shared: Vec<String>,
    },
    /// The site's deploy key (add it to your git host).
    DeployKey(SiteTarget),
    /// The deploy webhook URL and secret.
    Webhook(SiteTarget),
    /// Read or replace the site's .env.
    Env {
        #[command(subcommand)]
        command: EnvCommand,
    },
    /// Run a command in the live release as the app user; its output streams here and its exit code becomes
    /// this command's: `brokeforge site run --server S --domain D -- php artisan migrate --force`
    Run {
        #[command(flatten)]
        target: SiteTarget,
        /// Seconds before the command is stopped.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum EnvCommand {
    /// Print the .env.
    Get(SiteTarget),
    /// Replace the .env with a file's contents, or standard input.
    Set {
        #[command(flatten)]
        target: SiteTarget,
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

/// Lines indented for a listing; `  (none)` when there are none.
pub(crate) fn indent(lines: &str) -> String {
    if lines.trim().is_empty() {
        return "  (none)".into();
    }
    lines
        .lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn site_id(client: &Client, t: &SiteTarget) -> Result<(i64, i64)> {
    let server = client.server_id(&t.server)?;
    let site = client.site(server, &t.domain)?;
    Ok((server, site["id"].as_i64().unwrap_or_default()))
}

pub async fn site(c: ClientArgs, cmd: SiteCommand) -> Result<()> {
    let client = Client::new(&c)?;
    match cmd {
        SiteCommand::Check {
            target,
            path,
            expect,
            interval,
            timeout,
            https,
            after_deploy,
            status,
            remove,
        } => {
            let (_, site) = site_id(&client, &target)?;
            super::monitoring::site_check(
                &client,
                site,
                &target.domain,
                super::monitoring::CheckAction::from_flags(status, remove),
                CheckSpec {
                    path,
                    expect,
                    interval_seconds: interval,
                    timeout_seconds: timeout,
                    https,
                    after_deploy,
                },
            )?;
        }
        SiteCommand::Create {
            target,
            kind,
            proxy_port,
            spa,
            aliases,
            php,
            web_dir,
            default,
            isolated: _,
            shared_user,
            pm,
            max_children,
            repository,
            branch,
            git_host_key_fingerprint,
            follow: do_follow,
        } => {
            let server = client.server_id(&target.server)?;
            let v = client.post(
                &format!("/servers/{server}/sites"),
                SiteRequest {
                    domain: target.domain.clone(),
                    kind,
                    proxy_port,
                    spa_fallback: spa,
                    aliases,
                    php_version: php,
                    web_directory: web_dir,
                    default_site: default,
                    isolated: Some(!shared_user),
                    pm,
                    max_children,
                },
            )?;
            let site_id = v["site"]["id"].as_i64().unwrap_or_default();
            let Some(repo) = repository else {
                job_result(&client, server, &job_of(&v)?, do_follow).await?;
                return Ok(());
            };
            // The repository connects once the site exists.
            job_result(&client, server, &job_of(&v)?, true).await?;
            let key = client.get(&format!("/sites/{site_id}/deploy-key"))?;
            if !client.json {
                eprintln!(
                    "deploy key (add it to the git host as a read-only key):\n  {}",
                    key["public_key"].as_str().unwrap_or_default()
                );
            }
            let r = client.post(
                &format!("/sites/{site_id}/repository"),
                RepositoryBody {
                    request: RepositoryRequest {
                        url: repo,
                        branch,
                        host_key_fingerprint: git_host_key_fingerprint,
                    },
                    deploy: true,
                },
            )?;
            let done = job_result(&client, server, &job_of(&r)?, do_follow).await?;
            let result = done.result.unwrap_or_default();
            if do_follow && let Some(dj) = result["deployment_job_id"].as_i64() {
                let job: JobResponse = client.get_as(&format!("/jobs/{dj}"))?;
                job_result(&client, server, &job.job, true).await?;
            }
        }
        SiteCommand::Php {
            target,
            version,
            follow,
        } => {
            let (server, id) = site_id(&client, &target)?;
            let v = client.put(&format!("/sites/{id}/php"), PhpVersionBody { version })?;
            job_result(&client, server, &job_of(&v)?, follow).await?;
        }
        SiteCommand::Pool {
            target,
            pm,
            max_children,
            follow,
        } => {
            let (server, id) = site_id(&client, &target)?;
            let v = client.put(&format!("/sites/{id}/pool"), PoolBody { pm, max_children })?;
            job_result(&client, server, &job_of(&v)?, follow).await?;
        }
        SiteCommand::List { server } => {
            let id = client.server_id(&server)?;
            let v = client.get(&format!("/servers/{id}/sites"))?;
            if client.json {
                print_json(&v);
                return Ok(());
            }
            super::site_view::print_sites(&v);
        }
        SiteCommand::Show(t) => {
            let (_, id) = site_id(&client, &t)?;
            let v = client.get(&format!("/sites/{id}"))?;
            if client.json {
                print_json(&v);
            } else {
                super::site_view::print_site(&v);
            }
        }
        SiteCommand::Remove {
            target,
            keep_files,
            follow: do_follow,
        } => {
            let (server, id) = site_id(&client, &target)?;
            let v = client.delete(&format!("/sites/{id}?keep_files={keep_files}"))?;
            job_result(&client, server, &job_of(&v)?, do_follow).await?;
        }
        SiteCommand::Deploy {
            target,
            branch,
            follow: do_follow,
        } => {
            let (server, id) = site_id(&client, &target)?;
            let v = client.post(&format!("/sites/{id}/deployments"), DeployBody { branch })?;
            if !client.json {
                eprintln!("deployment {} queued", v["deployment"]["id"]);
            }
            job_result(&client, server, &job_of(&v)?, do_follow).await?;
        }
        SiteCommand::Rollback {
            target,
            release,
            follow: do_follow,
        } => {
            let (server, id) = site_id(&client, &target)?;
            let release = match release {
                Some(r) => r,
                None => {
                    let d = client.get(&format!("/sites/{id}/deployments"))?;
                    let current = d["current_release"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let kept: Vec<String> = d["releases"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r["name"].as_str().map(str::to_string))
                        .collect();
                    let pos = kept.iter().position(|r| *r == current);
                    match pos {
                        Some(p) if p > 0 => kept[p - 1].clone(),
                        _ => bail!(
                            "there is no kept release before the live one ({current}); name one with --release"
                        ),
                    }
                }
            };
            let v = client.post(
                &format!("/sites/{id}/rollback"),
                RollbackBody {
                    release: release.clone(),
                },
            )?;
            if !client.json {
                eprintln!("rolling back to {release}");
            }
            job_result(&client, server, &job_of(&v)?, do_follow).await?;
        }
        SiteCommand::Tasks {
            target,
            schedules,
            daemons,
            clear,
            output,
            lines,
            follow: do_follow,
        } => {
            let (server, id) = site_id(&client, &target)?;
            if output {
                let v = client.get(&format!("/sites/{id}/tasks/output?lines={lines}"))?;
                if client.json {
                    print_json(&v);
                } else {
                    print!("{}", v["output"].as_str().unwrap_or_default());
                }
                return Ok(());
            }
            if schedules.is_empty() && daemons.is_empty() && !clear {
                let s = client.get(&format!("/sites/{id}"))?;
                let tasks = &s["site"]["configuration"]["tasks"];
                if client.json {
                    print_json(tasks);
                } else {
                    let parsed: brokeforge_packages::services::sites::schedule::SiteTasks =
                        serde_json::from_value(tasks.clone()).unwrap_or_default();
                    let (sched, daem) = parsed.to_text();
                    println!("scheduled commands:\n{}", indent(&sched));
                    println!("daemons:\n{}", indent(&daem));
                }
                return Ok(());
            }
            // Parsed here too, so a mistake is reported before anything is sent.
            let tasks = brokeforge_packages::services::sites::schedule::SiteTasks::parse(
                &schedules.join("\n"),
                &daemons.join("\n"),
            )
            .map_err(|e| anyhow!("{}: {}", e.field, e.message))?;
            let v = client.put(&format!("/sites/{id}/tasks"), serde_json::to_value(&tasks)?)?;
            job_result(&client, server, &job_of(&v)?, do_follow).await?;
        }
        SiteCommand::Certificate {
            target,
            email,
            acme_directory,
            acme_ca,
            hsts,
            cert_file,
            key_file,
            remove,
            follow: do_follow,
        } => {
            let (server, id) = site_id(&client, &target)?;
            let v = if remove {
                client.delete(&format!("/sites/{id}/certificate"))?
            } else if let (Some(cert), Some(key)) = (cert_file, key_file) {
                let read = |p: &PathBuf| {
                    std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read {}", p.display()))
                };
                client.post(
                    &format!("/sites/{id}/certificate/custom"),
                    CustomCertificate {
                        certificate: read(&cert)?,
                        private_key: read(&key)?,
                        hsts,
                    },
                )?
            } else {
                let ca = match acme_ca {
                    Some(path) => Some(
                        std::fs::read_to_string(&path)
                            .with_context(|| format!("cannot read {}", path.display()))?,
                    ),
                    None => None,
                };
                client.post(
                    &format!("/sites/{id}/certificate"),
                    CertificateRequest {
                        email,
                        acme_directory,
                        acme_ca_certificate: ca,
                        hsts,
                    },
                )?
            };
            job_result(&client, server, &job_of(&v)?, do_follow).await?;
        }
        SiteCommand::Repository {
            target,
            repository: url,
            branch,
            host_key_fingerprint,
            no_deploy,
            follow: do_follow,
        } => {
            let (server, id) = site_id(&client, &target)?;
            let r = client.post(
                &format!("/sites/{id}/repository"),
                RepositoryBody {
                    request: RepositoryRequest {
                        url,
                        branch: Some(branch),
                        host_key_fingerprint,
                    },
                    deploy: !no_deploy,
                },
            )?;
            let done = job_result(&client, server, &job_of(&r)?, do_follow).await?;
            if !client.json && do_follow {
                let result = done.result.clone().unwrap_or_default();
                let fps: Vec<&str> = result["host_key_fingerprints"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default();
                if !fps.is_empty() {
                    eprintln!("git server host key pinned: {}", fps.join(", "));
                }
            }
            let result = done.result.unwrap_or_default();
            if do_follow && let Some(dj) = result["deployment_job_id"].as_i64() {
                let job: JobResponse = client.get_as(&format!("/jobs/{dj}"))?;
                job_result(&client, server, &job.job, true).await?;
            }
        }
        SiteCommand::Deployments(t) => {
            let (_, id) = site_id(&client, &t)?;
            let v = client.get(&format!("/sites/{id}/deployments"))?;
            if client.json {
                print_json(&v);
                return Ok(());
            }
            println!(
                "live release: {}",
                v["current_release"].as_str().unwrap_or("none")
            );
            for d in v["deployments"].as_array().into_iter().flatten() {
                println!(
                    "{:<6} {:<9} {:<10} {:<12} {:<24} {}",
                    d["id"],
                    d["kind"].as_str().unwrap_or_default(),
                    d["status"].as_str().unwrap_or_default(),
                    d["commit_hash"]
                        .as_str()
                        .map(|c| &c[..c.len().min(10)])
                        .unwrap_or("-"),
                    d["release"].as_str().unwrap_or("-"),
                    d["triggered_by"].as_str().unwrap_or_default()
                );
            }
        }
        SiteCommand::DeployScript { target, file } => {
            let (_, id) = site_id(&client, &target)?;
            let script = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            client.put(&format!("/sites/{id}/deploy-script"), ScriptBody { script })?;
            if !client.json {
                println!("deploy script saved");
            }
        }
        SiteCommand::Settings {
            target,
            keep_releases,
            deploy_timeout,
            shared,
        } => {
            let (_, id) = site_id(&client, &target)?;
            let body = SiteSettings {
                keep_releases,
                deploy_timeout_secs: deploy_timeout,
                shared_paths: (!shared.is_empty()).then_some(shared),
            };
            let v = client.put(&format!("/sites/{id}/settings"), body)?;
            if client.json {
                print_json(&v);
            } else {
                println!(
                    "keep {} releases; deploy timeout {} s; shared: {}",
                    v["keep_releases"],
                    v["deploy_timeout_secs"],
                    v["shared_paths"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                );
            }
        }
        SiteCommand::DeployKey(t) => {
            let (_, id) = site_id(&client, &t)?;
            let v = client.get(&format!("/sites/{id}/deploy-key"))?;
            if client.json {
                print_json(&v);
            } else {
                println!("{}", v["public_key"].as_str().unwrap_or_default());
            }
        }
        SiteCommand::Webhook(t) => {
            let (_, id) = site_id(&client, &t)?;
            let v = client.get(&format!("/sites/{id}/webhook"))?;
            if client.json {
                print_json(&v);
            } else {
                println!(
                    "url:    {}\nsecret: {}",
                    v["url"].as_str().unwrap_or_default(),
                    v["secret"].as_str().unwrap_or_default()
                );
            }
        }
        SiteCommand::Env { command } => match command {
            EnvCommand::Get(t) => {
                let (_, id) = site_id(&client, &t)?;
                let v = client.get(&format!("/sites/{id}/env"))?;
                if client.json {
                    print_json(&v);
                } else {
                    print!("{}", v["env"].as_str().unwrap_or_default());
                }
            }
            EnvCommand::Set { target, file } => {
                let (_, id) = site_id(&client, &target)?;
                let env = match file {
                    Some(f) => std::fs::read_to_string(&f)
                        .with_context(|| format!("reading {}", f.display()))?,
                    None => read_stdin("the .env")?,
                };
                client.put(&format!("/sites/{id}/env"), EnvFile { env })?;
                if !client.json {
                    println!(".env replaced");
                }
            }
        },
        SiteCommand::Run {
            target,
            timeout,
            command,
        } => {
            let (server, id) = site_id(&client, &target)?;
            let v = client.post(
                &format!("/sites/{id}/commands"),
                CommandBody {
                    command: command.join(" "),
                    timeout_secs: Some(timeout),
                },
            )?;
            let f = follow(&client, server, &job_of(&v)?, OutputMode::Passthrough).await?;
            if client.json {
                print_json(&JobResponse { job: f.job.clone() });
            }
            let Some(result) = &f.job.result else {
                bail!(
                    "the command did not run: {}",
                    f.job.error.as_deref().unwrap_or("no reason given")
                );
            };
            if result["timed_out"] == true {
                eprintln!("the command was stopped after {timeout} s");
                return Err(ExitWith(124).into());
            }
            let code = result["exit_code"].as_i64().unwrap_or(1) as i32;
            if code != 0 {
                return Err(ExitWith(code).into());
            }
        }
    }
    Ok(())
}
