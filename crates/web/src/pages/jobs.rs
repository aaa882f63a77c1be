//! Jobs with their milestones, a job's page, a deployment's page.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use brokeforge_core::EventStatus;
use brokeforge_packages::Milestones;
use brokeforge_packages::catalogue;
use brokeforge_packages::services::sites::deployment;
use brokeforge_packages::services::sites::deployment::DeploymentInstallerMilestones;
use brokeforge_store::{Job, JobStatus, LogStream};

use super::common::*;
use crate::error::ApiError;
use crate::extract::{OwnedDeployment, OwnedJob};
use crate::state::AppState;

pub struct MilestoneView {
    pub key: String,
    pub label: String,
    pub status: String,
    pub error: String,
}

pub struct JobView {
    pub id: i64,
    pub label: String,
    pub when: String,
    pub status: String,
    pub error: String,
    pub total: i64,
    pub done: i64,
    pub milestones: Vec<MilestoneView>,
    pub finished: bool,
    pub cancellable: bool,
    pub retryable: bool,
}

/// A job with its milestones: the package's full list when the catalogue knows it, ticked from its events.
pub async fn job_view(state: &AppState, job: &Job) -> Result<JobView, ApiError> {
    let events = state.store.job_milestone_events(job.id).await?;
    let mut milestones: Vec<MilestoneView> = known_milestones(&job.kind)
        .into_iter()
        .map(|(key, label)| MilestoneView {
            key: key.to_string(),
            label: label.to_string(),
            status: "pending".into(),
            error: String::new(),
        })
        .collect();
    let mut total = milestones.len() as i64;
    let mut done = 0;
    for e in &events {
        total = e.total_steps;
        let status = e.status.as_str().to_string();
        if e.status == EventStatus::Completed {
            done = done.max(e.current_step);
        }
        match milestones.iter_mut().find(|m| m.key == e.milestone) {
            Some(m) => {
                m.status = status;
                m.error = e.error.clone().unwrap_or_default();
            }
            None => milestones.push(MilestoneView {
                key: e.milestone.clone(),
                label: e.label.clone(),
                status,
                error: e.error.clone().unwrap_or_default(),
            }),
        }
    }
    if job.status == JobStatus::Done {
        done = total;
    }
    Ok(JobView {
        id: job.id,
        label: job_label(state, job).await,
        when: ago(job.created_at),
        status: job.status.as_str().into(),
        error: job.error.clone().unwrap_or_default(),
        total: total.max(1),
        done,
        milestones,
        finished: job.status.is_finished(),
        cancellable: !job.status.is_finished(),
        retryable: matches!(job.status, JobStatus::Failed | JobStatus::Cancelled),
    })
}

/// A job's title ([`brokeforge_packages::titles`]), with the site it is about by name.
pub async fn job_label(state: &AppState, job: &Job) -> String {
    let service = match &job.target {
        Some(brokeforge_store::JobTarget::Service {
            name,
            provision_type,
            ..
        }) => Some((
            name.as_str(),
            *provision_type == brokeforge_core::ProvisionType::Install,
        )),
        _ => None,
    };
    let site_id = match &job.target {
        Some(brokeforge_store::JobTarget::Site { id, .. }) => Some(*id),
        _ => job.payload["site_id"].as_i64(),
    };
    let subject = match site_id {
        Some(id) => state.store.site(id).await.ok().map(|s| s.domain),
        None => None,
    };
    brokeforge_packages::titles::job_title(&job.kind, service, subject.as_deref())
}

pub fn known_milestones(kind: &str) -> Vec<(&'static str, &'static str)> {
    for e in catalogue::catalogue() {
        if e.installer_kind() == kind {
            return e
                .install_milestones
                .iter()
                .map(|m| (m.key, m.label))
                .collect();
        }
        if e.remover_kind() == Some(kind) {
            return e
                .remove_milestones
                .iter()
                .map(|m| (m.key, m.label))
                .collect();
        }
    }
    if kind == <deployment::DeploymentInstaller as brokeforge_packages::Package>::JOB {
        return DeploymentInstallerMilestones::all()
            .iter()
            .map(|m| (m.key(), m.label()))
            .collect();
    }
    Vec::new()
}

#[derive(Template)]
#[template(path = "deployment.html")]
pub struct DeploymentPage {
    pub nav: Nav,
    pub id: i64,
    pub site_id: i64,
    pub server_id: i64,
    pub domain: String,
    pub kind: String,
    pub status: String,
    pub job_id: Option<i64>,
    pub branch: String,
    pub commit: String,
    pub release: String,
    pub by: String,
    pub took: String,
    pub exit_code: String,
    pub error: String,
    pub cursor: i64,
    pub log: String,
}

pub async fn deployment_page(
    State(state): State<AppState>,
    OwnedDeployment(u, d, site): OwnedDeployment,
) -> PageResult {
    let cursor = state.store.activity_head(site.server_id).await?;
    let log: String = match d.job_id {
        Some(j) => state
            .store
            .job_logs(j)
            .await?
            .into_iter()
            .filter(|l| l.id <= cursor && l.stream != LogStream::Event)
            .map(|l| l.chunk)
            .collect(),
        None => String::new(),
    };
    Ok(render(
        &DeploymentPage {
            nav: Nav::of(&u, format!("Deployment {}", d.id)),
            id: d.id,
            site_id: site.id,
            server_id: site.server_id,
            domain: site.domain.clone(),
            kind: d.kind.clone(),
            status: d.status.as_str().into(),
            job_id: d.job_id,
            branch: d.branch.clone().unwrap_or_default(),
            commit: d.commit_hash.clone().unwrap_or_default(),
            release: d.release.clone().unwrap_or_default(),
            by: d.triggered_by.clone(),
            took: took(d.duration_ms()),
            exit_code: d.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            error: d.error.clone().unwrap_or_default(),
            cursor,
            log,
        },
        StatusCode::OK,
    ))
}

#[derive(Template)]
#[template(path = "job.html")]
pub struct JobPage {
    pub nav: Nav,
    pub id: i64,
    pub server_id: i64,
    pub server_name: String,
    pub label: String,
    pub status: String,
    pub error: String,
    pub cursor: i64,
    pub log: String,
    /// Only the newest rows are on the page (the API pages through all of them).
    pub log_cut: bool,
    pub job: JobView,
}

/// Output rows a job page shows (the newest ones).
const PAGE_LOG_ROWS: i64 = 2_000;

/// One job: its milestones, error and output (live while it runs).
pub async fn job_page(State(state): State<AppState>, OwnedJob(u, job): OwnedJob) -> PageResult {
    let id = job.id;
    let server = page_server(
        &state,
        &u,
        job.server_id.unwrap_or_default(),
        brokeforge_domain::policy::Action::Read,
    )
    .await?;
    let cursor = state.store.activity_head(server.id).await?;
    let rows = state.store.job_logs_tail(id, cursor, PAGE_LOG_ROWS).await?;
    let log_cut = rows.len() as i64 == PAGE_LOG_ROWS;
    let log: String = rows.into_iter().map(|l| l.chunk).collect();
    let mut view = job_view(&state, &job).await?;
    // The output is shown below in full; the box keeps only the milestones.
    view.error = String::new();
    Ok(render(
        &JobPage {
            nav: Nav::of(&u, format!("Job {id}")),
            id,
            server_id: server.id,
            server_name: server.name.clone(),
            label: job_label(&state, &job).await,
            status: job.status.as_str().into(),
            error: job.error.clone().unwrap_or_default(),
            cursor,
            log,
            log_cut,
            job: view,
        },
        StatusCode::OK,
    ))
}
