//! A site's workspace pages: each area (overview, deployments, environment, commands, tasks, HTTPS, health)
//! reads only what it shows.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use brokeforge_domain::policy::Action;
use brokeforge_packages::Milestones;
use brokeforge_packages::services::sites::config::SiteConfig;
use brokeforge_packages::services::sites::deployment::DeploymentInstallerMilestones;
use brokeforge_packages::services::sites::{certificate, deployment, tasks};
use brokeforge_store::{Server, ServerSite};
use serde::Deserialize;
use serde_json::json;

use super::common::*;
use super::jobs::*;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::OwnedSite;
use crate::state::AppState;

pub struct DeploymentRow {
    pub id: i64,
    pub job_id: Option<i64>,
    pub when: String,
    pub kind: String,
    pub commit: String,
    pub release: String,
    pub status: String,
    pub by: String,
    pub took: String,
    pub can_roll_back: bool,
}

pub struct CommandRow {
    pub command: String,
    pub when: String,
    pub took: String,
    pub status: String,
    pub output: String,
}

#[derive(Template)]
#[template(path = "site.html")]
pub struct SitePage {
    pub nav: Nav,
    pub server: Server,
    pub site: ServerSite,
    pub aliases: String,
    pub php: String,
    /// What the site is ("PHP", "Node.js application", ...); the PHP versions it may move to (PHP sites).
    pub kind: &'static str,
    /// The Linux user the site's code runs as, and whether it is the site's own.
    pub runs_as: String,
    /// The site's own pool (isolated PHP sites).
    pub pool: Option<brokeforge_packages::services::sites::config::PoolSettings>,
    pub other_php_versions: Vec<String>,
    pub web_directory: String,
    pub current_release: String,
    pub deploy_key: String,
    pub repository: String,
    pub git_host_keys: String,
    pub repo_url: String,
    pub repo_branch: String,
    pub deploy_milestones: String,
    pub cursor: i64,
    pub jobs: Vec<JobView>,
    pub deployments: Vec<DeploymentRow>,
    pub deploy_script: String,
    pub env_loaded: bool,
    pub env: String,
    pub commands: Vec<CommandRow>,
    pub webhook_url: String,
    pub webhook_secret: String,
    pub webhook_provider: String,
    pub keep_releases: u32,
    pub deploy_timeout: u64,
    pub shared_paths: String,
    /// Scheduled commands and daemons in their text forms, and their newest output when asked for.
    pub tasks_output: Option<String>,
    pub schedules: String,
    pub daemons: String,
    /// A Laravel site's presets not yet in place: (button label, schedules, daemons) as they would be saved.
    pub presets: Vec<(&'static str, String, String)>,
    /// The certificate's names and expiry; empty when the site serves plain HTTP.
    pub certificate: String,
    pub certificate_milestones: String,
    /// The health check, as set (or the defaults to offer).
    pub check: CheckView,
}

/// The site's health check in the page: its settings (for the form) and, once set, its state.
pub struct CheckView {
    pub set: bool,
    pub path: String,
    pub https: bool,
    pub expect: i64,
    pub interval: i64,
    pub timeout: i64,
    pub after_deploy: String,
    pub state: String,
    /// The last answer in words.
    pub last: String,
}

impl CheckView {
    fn of(check: Option<&brokeforge_store::SiteCheck>) -> CheckView {
        let spec = brokeforge_domain::monitoring::CheckSpec::default();
        match check {
            None => CheckView {
                set: false,
                path: spec.path,
                https: false,
                expect: spec.expect,
                interval: spec.interval_seconds,
                timeout: spec.timeout_seconds,
                after_deploy: spec.after_deploy,
                state: String::new(),
                last: String::new(),
            },
            Some(c) => {
                let (https, path) = c.target();
                let path = path.to_string();
                let last = match (c.last_checked_at, c.last_status, &c.last_error) {
                    (None, ..) => "not checked yet".to_string(),
                    (Some(at), _, Some(e)) => format!("{} {e}", ago(at)),
                    (Some(at), Some(status), None) => format!(
                        "{}: answered {status} in {} ms",
                        ago(at),
                        c.last_ms.unwrap_or(0)
                    ),
                    (Some(at), None, None) => ago(at),
                };
                CheckView {
                    set: true,
                    path,
                    https,
                    expect: c.expect_status,
                    interval: c.interval_secs,
                    timeout: c.timeout_secs,
                    after_deploy: c.after_deploy.clone(),
                    state: c.state.clone(),
                    last,
                }
            }
        }
    }
}

#[derive(Deserialize, Default)]
pub struct SiteQuery {
    pub env: Option<String>,
    pub output: Option<String>,
}

/// How the site page is shown beyond the site itself.
#[derive(Default)]
pub struct SiteView<'a> {
    /// Read the .env from the server into the editor.
    pub load_env: bool,
    /// Read the newest output of the scheduled commands and daemons from the server.
    pub load_output: bool,
    pub error: Option<&'a ApiError>,
    pub notice: &'a str,
    /// What the user typed into the background-work form, shown again with its error.
    pub tasks_draft: Option<&'a TasksForm>,
    /// The workspace area shown (`SITE_AREAS`; empty: the overview).
    pub area: &'static str,
}

/// The page of one of a site's areas.
pub fn site_area_url(site: &ServerSite, area: &str) -> String {
    let path = SITE_AREAS
        .iter()
        .find(|(a, ..)| *a == area)
        .map_or("", |(_, p, _)| *p);
    format!("/sites/{}{path}", site.id)
}

pub async fn site_view(
    state: &AppState,
    u: &Authed,
    headers: &HeaderMap,
    (site, server): (&ServerSite, &Server),
    view: SiteView<'_>,
) -> PageResult {
    let SiteView {
        load_env,
        load_output,
        error,
        notice,
        tasks_draft,
        area,
    } = view;
    let area = if area.is_empty() { "overview" } else { area };
    let (site, server) = (site.clone(), server.clone());
    let cursor = state.store.activity_head(server.id).await?;
    let config = SiteConfig::of(&site);
    // Each area reads what it shows (a credential read, a history query, the PHP versions): a site with
    // long histories opens its tabs without paying for the others.
    let deploy_key = match area {
        "overview" => state.domain.deploy_key(&site).await?,
        _ => String::new(),
    };
    let (webhook_url, webhook_secret, webhook_provider) = match area {
        "deployments" => {
            let hook = state.domain.webhook(&site).await?;
            let url = format!(
                "{}{}",
                state.base_url(headers).unwrap_or_default(),
                hook.path.expose()
            );
            (url, Some(hook.secret), hook.provider.as_str().to_string())
        }
        _ => (String::new(), None, String::new()),
    };
    // The page shows what the caller's role may read, and no more.
    let may_read_credentials = state
        .domain
        .may(&u.user, &server, Action::ReadCredentials)
        .await?;
    let may_read_env = state.domain.may(&u.user, &server, Action::ReadEnv).await?;
    let kept: Vec<&str> = config.releases.iter().map(|r| r.name.as_str()).collect();
    // Other areas read the newest few only, for deployments still at work.
    let deployments_shown = if area == "deployments" { 30 } else { 3 };
    let deployments = state.store.deployments(site.id, deployments_shown).await?;
    let mut jobs = Vec::new();
    for d in deployments.iter().take(3) {
        if let Some(j) = d.job_id
            && let Ok(job) = state.store.job(j).await
            && !job.status.is_finished()
        {
            jobs.push(job_view(state, &job).await?);
        }
    }
    // Certificate and background-work jobs of this site still at work (a reload keeps showing them).
    for job in state.store.unfinished_jobs(server.id).await? {
        let site_job = job.kind
            == <certificate::CertificateInstaller as brokeforge_packages::Package>::JOB
            || job.kind == <certificate::CertificateRemover as brokeforge_packages::Package>::JOB
            || job.kind == <tasks::SiteTasksInstaller as brokeforge_packages::Package>::JOB;
        if site_job && job.payload["site_id"].as_i64() == Some(site.id) {
            jobs.push(job_view(state, &job).await?);
        }
    }
    let rows = deployments
        .iter()
        .map(|d| DeploymentRow {
            id: d.id,
            job_id: d.job_id,
            when: ago(d.created_at),
            kind: d.kind.clone(),
            commit: d
                .commit_hash
                .as_deref()
                .map(|c| c.chars().take(10).collect())
                .unwrap_or_default(),
            release: d.release.clone().unwrap_or_default(),
            status: d.status.as_str().into(),
            by: d.triggered_by.clone(),
            took: took(d.duration_ms()),
            can_roll_back: d.kind == "deploy"
                && d.release.as_deref().is_some_and(|r| kept.contains(&r))
                && d.release != config.current_release,
        })
        .collect();
    let commands = match area {
        "commands" => state.store.site_commands(site.id, 20).await?,
        _ => Vec::new(),
    };
    let commands = commands
        .into_iter()
        .map(|c| CommandRow {
            status: if c.timed_out {
                "timed out".into()
            } else if c.success {
                "done".into()
            } else {
                format!("exit {}", c.exit_code.unwrap_or(-1))
            },
            output: format!("{}{}", c.output, c.error_output),
            when: ago(c.ran_at),
            took: took(Some(c.duration_ms)),
            command: c.command,
        })
        .collect();
    let (env_loaded, env, mut env_error) = if load_env && !may_read_env {
        (
            false,
            String::new(),
            Some(ApiError::forbidden(
                "your role may not read a site's environment".to_string(),
            )),
        )
    } else if load_env {
        match state.domain.read_env(&server, &site).await {
            Ok(s) => (true, s.expose().to_string(), None),
            Err(e) => (false, String::new(), Some(ApiError::from(e))),
        }
    } else {
        (false, String::new(), None)
    };
    let (tasks_output, output_error) = if load_output {
        match state.domain.tasks_output(&server, &site, 200).await {
            Ok(o) if o.is_empty() => (Some("(no output yet)".to_string()), None),
            Ok(o) => (Some(o), None),
            Err(e) => (None, Some(ApiError::from(e))),
        }
    } else {
        (None, None)
    };
    let (schedules, daemons) = match tasks_draft {
        Some(d) => (d.schedules.clone(), d.daemons.clone()),
        None => config.tasks.to_text(),
    };
    let presets = laravel_presets(&config, &schedules, &daemons);
    let other_php_versions: Vec<String> = if config.kind.runs_php() && area == "environment" {
        state
            .domain
            .php_versions(&server)
            .await?
            .into_iter()
            .filter(|v| Some(v) != site.php_version.as_ref())
            .collect()
    } else {
        Vec::new()
    };
    let mut nav = Nav::site(u, &site, area);
    if let Some(e) = error.or(env_error.as_ref()).or(output_error.as_ref()) {
        nav = nav.with_error(e);
    }
    nav.notice = notice.to_string();
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    env_error.take();
    let repo = config.repository.clone();
    let check = CheckView::of(state.domain.site_check(&site).await?.as_ref());
    Ok(render(
        &SitePage {
            nav,
            aliases: if config.aliases.is_empty() {
                "—".into()
            } else {
                config.aliases.join(", ")
            },
            php: if config.kind.runs_php() {
                site.php_version.clone().unwrap_or_default()
            } else {
                String::new()
            },
            kind: config.kind.label(),
            runs_as: {
                let u = brokeforge_packages::services::sites::common::SiteUser::new(
                    site.id,
                    config.isolated,
                );
                if u.isolated {
                    format!("{} (its own user and PHP-FPM pool)", u.name)
                } else {
                    format!("{} (shared with the server's other shared sites)", u.name)
                }
            },
            pool: brokeforge_packages::services::sites::config::PoolSettings::own_pool(
                config.isolated,
                config.kind,
            )
            .is_ok()
            .then(|| config.pool.clone()),
            other_php_versions,
            web_directory: if config.web_directory.is_empty() {
                "/".into()
            } else {
                config.web_directory.clone()
            },
            current_release: config
                .current_release
                .clone()
                .unwrap_or_else(|| "placeholder (no deployment yet)".into()),
            deploy_key,
            repository: repo
                .as_ref()
                .map(|r| format!("{} ({})", r.url, r.branch))
                .unwrap_or_default(),
            git_host_keys: repo
                .as_ref()
                .map(|r| r.host_key_fingerprints.join(", "))
                .unwrap_or_default(),
            repo_url: repo.as_ref().map(|r| r.url.clone()).unwrap_or_default(),
            repo_branch: repo
                .as_ref()
                .map(|r| r.branch.clone())
                .unwrap_or_else(|| "main".into()),
            deploy_milestones: milestones_json(DeploymentInstallerMilestones::all()),
            tasks_output,
            schedules,
            daemons,
            presets,
            certificate_milestones: milestones_json(
                certificate::CertificateInstallerMilestones::all(),
            ),
            certificate: config
                .certificate
                .as_ref()
                .map(|c| {
                    format!(
                        "{} · expires {}",
                        c.domains.join(", "),
                        c.expires.as_deref().unwrap_or("(unknown)")
                    )
                })
                .unwrap_or_default(),
            cursor,
            jobs,
            deployments: rows,
            deploy_script: config
                .deploy_script
                .clone()
                .unwrap_or_else(|| deployment::default_deploy_script(config.kind).to_string()),
            env_loaded,
            env,
            commands,
            webhook_url,
            webhook_secret: if may_read_credentials {
                webhook_secret
                    .map(|s| s.expose().to_string())
                    .unwrap_or_default()
            } else {
                "(hidden: your role may not read credentials)".to_string()
            },
            webhook_provider,
            keep_releases: config.keep_releases,
            deploy_timeout: config.deploy_timeout_secs,
            shared_paths: config.shared_paths.join(", "),
            check,
            server,
            site,
        },
        status,
    ))
}

/// Milestones as the page script reads them (`data-milestones`), to draw a job's steps before it starts.
pub fn milestones_json<M: Milestones>(all: &[M]) -> String {
    serde_json::to_string(
        &all.iter()
            .map(|m| json!({"key": m.key(), "label": m.label()}))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default()
}

macro_rules! site_area_pages {
    ($($name:ident $area:literal;)+) => {$(
        pub async fn $name(
            State(state): State<AppState>,
            headers: HeaderMap,
            OwnedSite(u, site, server): OwnedSite,
            Query(q): Query<SiteQuery>,
        ) -> PageResult {
            let view = SiteView {
                // What is read from the server only when asked for, in its own area.
                load_env: $area == "environment" && q.env.is_some(),
                load_output: $area == "tasks" && q.output.is_some(),
                area: $area,
                ..Default::default()
            };
            site_view(&state, &u, &headers, (&site, &server), view).await
        }
    )+};
}

site_area_pages! {
    site_page "overview";
    deployments_page "deployments";
    environment_page "environment";
    commands_page "commands";
    tasks_page "tasks";
    https_page "https";
    health_page "health";
}

#[derive(Deserialize)]
pub struct TasksForm {
    #[serde(default)]
    pub schedules: String,
    #[serde(default)]
    pub daemons: String,
}

/// Laravel's scheduler and queue worker, offered on a Laravel site until they are among its tasks: each the
/// whole set the tasks form would save with it added.
fn laravel_presets(
    config: &SiteConfig,
    schedules: &str,
    daemons: &str,
) -> Vec<(&'static str, String, String)> {
    use brokeforge_packages::services::sites::config::SiteKind;
    if config.kind != SiteKind::Laravel {
        return Vec::new();
    }
    let mut out = Vec::new();
    if !schedules.contains("artisan schedule:run") {
        out.push((
            "Add Laravel's scheduler",
            format!("{schedules}* * * * * php artisan schedule:run\n"),
            daemons.to_string(),
        ));
    }
    if !daemons.contains("artisan queue:work") {
        out.push((
            "Add a queue worker",
            schedules.to_string(),
            format!("{daemons}php artisan queue:work --sleep=3 --tries=3 --max-time=3600\n"),
        ));
    }
    out
}
