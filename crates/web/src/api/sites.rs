//! Sites: create, remove, repository, deployments, rollback, HTTPS, background work, settings, commands,
//! the `.env` and the deploy webhook.

use super::types::{
    CommandList, DeployKey, DeploySettings, DeploymentList, DeploymentQueued, Done, EnvFile,
    OutputQuery, ScriptBody, SiteList, SiteQueued, SiteResponse, TasksOutput, Webhook, WebhookBody,
};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use brokeforge_core::Secret;
use brokeforge_domain::sites::SiteSettings;
use brokeforge_packages::services::sites::certificate::CertificateRequest;
use brokeforge_packages::services::sites::config::SiteConfig;
use brokeforge_packages::services::sites::schedule::SiteTasks;
use brokeforge_packages::services::sites::site::SiteRequest;
use serde::Deserialize;

use super::common::{Accepted, AcceptedWith, Body, OlderQuery, Queued, Typed};
use super::types::{
    CommandBody, CustomCertificate, DeployBody, PhpVersionBody, PoolBody, RepositoryBody,
    RollbackBody,
};
use crate::error::ApiError;
use crate::extract::{OwnedServer, OwnedSite};
use crate::state::AppState;

/// Who queued a deployment, as the deployment records it.
fn triggered_by(authed: &crate::auth::Authed) -> String {
    format!("user:{}", authed.user.email)
}

pub async fn list_sites(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
) -> Typed<SiteList> {
    Ok(Json(SiteList {
        sites: state.domain.sites(&server).await?,
    }))
}

pub async fn create_site(
    State(state): State<AppState>,
    OwnedServer(_, server): OwnedServer,
    Body(b): Body<SiteRequest>,
) -> Result<AcceptedWith<SiteQueued>, ApiError> {
    let (site, job) = state.domain.create_site(&server, &b).await?;
    Ok(AcceptedWith(SiteQueued { site, job }))
}

pub async fn show_site(OwnedSite(_, site, _): OwnedSite) -> Typed<SiteResponse> {
    Ok(Json(SiteResponse { site }))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
pub struct RemoveSiteQuery {
    #[serde(default)]
    keep_files: bool,
}

pub async fn remove_site(
    State(state): State<AppState>,
    OwnedSite(_, site, _): OwnedSite,
    Query(q): Query<RemoveSiteQuery>,
) -> Queued {
    Ok(Accepted(
        state.domain.remove_site(&site, q.keep_files).await?,
    ))
}

pub async fn deploy_key(
    State(state): State<AppState>,
    OwnedSite(_, site, _): OwnedSite,
) -> Typed<DeployKey> {
    Ok(Json(DeployKey {
        public_key: state.domain.deploy_key(&site).await?,
    }))
}

pub async fn connect_repository(
    State(state): State<AppState>,
    OwnedSite(_, site, _): OwnedSite,
    Body(b): Body<RepositoryBody>,
) -> Queued {
    let job = state
        .domain
        .connect_repository(&site, &b.request, b.deploy)
        .await?;
    Ok(Accepted(job))
}

pub async fn request_certificate(
    State(state): State<AppState>,
    OwnedSite(_, site, _): OwnedSite,
    Body(b): Body<CertificateRequest>,
) -> Queued {
    Ok(Accepted(state.domain.request_certificate(&site, &b).await?))
}

pub async fn upload_certificate(
    State(state): State<AppState>,
    OwnedSite(_, site, _): OwnedSite,
    Body(b): Body<CustomCertificate>,
) -> Queued {
    let key = brokeforge_core::Secret::new(b.private_key);
    Ok(Accepted(
        state
            .domain
            .upload_certificate(&site, &b.certificate, &key, b.hsts)
            .await?,
    ))
}

pub async fn remove_certificate(
    State(state): State<AppState>,
    OwnedSite(_, site, _): OwnedSite,
) -> Queued {
    Ok(Accepted(state.domain.remove_certificate(&site).await?))
}

pub async fn tasks_output(
    State(state): State<AppState>,
    OwnedSite(_, site, server): OwnedSite,
    Query(q): Query<OutputQuery>,
) -> Typed<TasksOutput> {
    let output = state
        .domain
        .tasks_output(&server, &site, q.lines.unwrap_or(200))
        .await?;
    Ok(Json(TasksOutput { output }))
}

pub async fn set_tasks(
    State(state): State<AppState>,
    OwnedSite(_, site, _): OwnedSite,
    Body(b): Body<SiteTasks>,
) -> Queued {
    Ok(Accepted(state.domain.set_tasks(&site, &b).await?))
}

pub async fn list_deployments(
    State(state): State<AppState>,
    OwnedSite(_, site, _): OwnedSite,
    Query(q): Query<OlderQuery>,
) -> Typed<DeploymentList> {
    let page = q.page()?;
    let config = SiteConfig::of(&site);
    let deployments = state
        .domain
        .deployments(&site, page.cursor, page.limit)
        .await?;
    let next_cursor = page.next_cursor(deployments.len(), deployments.last().map(|d| d.id));
    Ok(Json(DeploymentList {
        deployments,
        next_cursor,
        current_release: config.current_release,
        releases: config.releases,
    }))
}

pub async fn deploy(
    State(state): State<AppState>,
    OwnedSite(authed, site, _): OwnedSite,
    body: axum::body::Bytes,
) -> Result<AcceptedWith<DeploymentQueued>, ApiError> {
    // The body is optional: an empty one deploys the configured branch.
    let branch = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<DeployBody>(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?
            .branch
    };
    let (d, job) = state
        .domain
        .deploy(&site, branch.as_deref(), &triggered_by(&authed))
        .await?;
    Ok(AcceptedWith(DeploymentQueued { deployment: d, job }))
}

pub async fn rollback(
    State(state): State<AppState>,
    OwnedSite(authed, site, _): OwnedSite,
    Body(b): Body<RollbackBody>,
) -> Result<AcceptedWith<DeploymentQueued>, ApiError> {
    let (d, job) = state
        .domain
        .rollback(&site, &b.release, &triggered_by(&authed))
        .await?;
    Ok(AcceptedWith(DeploymentQueued { deployment: d, job }))
}

pub async fn set_deploy_script(
    State(state): State<AppState>,
    OwnedSite(_, site, _): OwnedSite,
    Body(b): Body<ScriptBody>,
) -> Typed<Done> {
    state.domain.save_deploy_script(&site, &b.script).await?;
    Ok(Json(Done::ok()))
}

pub async fn set_site_settings(
    State(state): State<AppState>,
    OwnedSite(_, site, _): OwnedSite,
    Body(b): Body<SiteSettings>,
) -> Typed<DeploySettings> {
    let config = state.domain.save_site_settings(&site, &b).await?;
    Ok(Json(DeploySettings {
        keep_releases: config.keep_releases,
        deploy_timeout_secs: config.deploy_timeout_secs,
        shared_paths: config.shared_paths,
    }))
}

pub async fn set_php_version(
    State(state): State<AppState>,
    OwnedSite(_, site, _): OwnedSite,
    Body(b): Body<PhpVersionBody>,
) -> Queued {
    Ok(Accepted(
        state.domain.set_site_php_version(&site, &b.version).await?,
    ))
}

pub async fn set_pool(
    State(state): State<AppState>,
    OwnedSite(_, site, _): OwnedSite,
    Body(b): Body<PoolBody>,
) -> Queued {
    Ok(Accepted(
        state
            .domain
            .set_site_pool(&site, b.pm.as_deref(), b.max_children)
            .await?,
    ))
}

pub async fn list_commands(
    State(state): State<AppState>,
    OwnedSite(_, site, _): OwnedSite,
    Query(q): Query<OlderQuery>,
) -> Typed<CommandList> {
    let page = q.page()?;
    let commands = state
        .domain
        .site_commands(&site, page.cursor, page.limit)
        .await?;
    let next_cursor = page.next_cursor(commands.len(), commands.last().map(|c| c.id));
    Ok(Json(CommandList {
        commands,
        next_cursor,
    }))
}

/// Queue a site command; follow its output on the server's stream, its result is the job's.
pub async fn run_command(
    State(state): State<AppState>,
    OwnedSite(_, site, _): OwnedSite,
    Body(b): Body<CommandBody>,
) -> Queued {
    Ok(Accepted(
        state
            .domain
            .queue_command(&site, &b.command, b.timeout_secs)
            .await?,
    ))
}

pub async fn read_env(
    State(state): State<AppState>,
    OwnedSite(_, site, server): OwnedSite,
) -> Typed<EnvFile> {
    let env = state.domain.read_env(&server, &site).await?;
    Ok(Json(EnvFile {
        env: env.expose().to_string(),
    }))
}

pub async fn write_env(
    State(state): State<AppState>,
    OwnedSite(_, site, _): OwnedSite,
    Body(b): Body<EnvFile>,
) -> Typed<Done> {
    state.domain.write_env(&site, &Secret::new(b.env)).await?;
    Ok(Json(Done::ok()))
}

pub async fn site_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(_, site, _): OwnedSite,
) -> Typed<Webhook> {
    let hook = state.domain.webhook(&site).await?;
    Ok(Json(webhook_of(&state, &headers, &hook)))
}

fn webhook_of(
    state: &AppState,
    headers: &HeaderMap,
    hook: &brokeforge_domain::sites::WebhookInfo,
) -> Webhook {
    let base = state.base_url(headers).unwrap_or_default();
    Webhook {
        url: format!("{base}{}", hook.path.expose()),
        secret: hook.secret.expose().to_string(),
        provider: hook.provider.as_str().to_string(),
        note: "GitHub: the URL with content type application/json and this secret; GitLab: the URL with this secret token; anything else: POST to the URL with the secret in X-BrokeForge-Token (and a unique X-BrokeForge-Delivery per call)".into(),
    }
}

pub async fn set_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    OwnedSite(_, site, _): OwnedSite,
    Body(b): Body<WebhookBody>,
) -> Typed<Webhook> {
    state
        .domain
        .set_webhook_provider(&site, &b.provider)
        .await?;
    let site = state.store.site(site.id).await?;
    let hook = state.domain.webhook(&site).await?;
    Ok(Json(webhook_of(&state, &headers, &hook)))
}
