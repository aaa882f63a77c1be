//! Drift: checks of whether a server still looks the way BrokeForge left it (a queued `drift_check` job; the
//! newest one's result is the server's report), repair (the packages the drifted items belong to, queued
//! again; they are idempotent), items the user manages by hand (reported, never repaired), and the daily
//! schedule.

use std::collections::BTreeMap;

use brokeforge_core::time::now_ms;
use brokeforge_packages::Package;
use brokeforge_packages::base::package::job;
use brokeforge_packages::catalogue;
use brokeforge_packages::services::server::drift::{
    DriftCheckInstaller, DriftCheckRequest, DriftItem, DriftReport, Repair,
};
use brokeforge_packages::services::sites::common::SiteRef;
use brokeforge_packages::services::sites::tasks::SiteTasksInstaller;
use brokeforge_packages::services::sites::vhost_repair::rewrite_vhost;
use brokeforge_packages::services::webserver::nginx::WebServerConfig;
use brokeforge_packages::services::webserver::php::{PhpSettingsInstaller, PhpSettingsRequest};
use brokeforge_store::{Job, Server};
use serde::Serialize;

use crate::{Domain, DomainError, DomainResult};

/// The server's newest drift report.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DriftView {
    /// The check job it came from.
    pub job_id: i64,
    /// When the check finished (Unix ms).
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub checked_at: Option<i64>,
    #[serde(flatten)]
    pub report: DriftReport,
}

/// One package to queue again, with the items it puts back.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RepairStep {
    pub repair: Repair,
    pub title: String,
    pub items: Vec<String>,
    /// The job, once queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<i64>,
}

/// What a repair does (and, when not a plan, has queued), and what it leaves.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RepairPlan {
    pub job_id: i64,
    pub steps: Vec<RepairStep>,
    /// Drifted items repair leaves alone, with why.
    pub left: Vec<LeftItem>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LeftItem {
    pub item: String,
    pub state: String,
    pub why: String,
}

impl Domain {
    /// Queue a drift check of the server.
    pub async fn check_drift(&self, server: &Server) -> DomainResult<Job> {
        Ok(self
            .store
            .enqueue(&job::<DriftCheckInstaller>(
                server.id,
                &DriftCheckRequest::default(),
            )?)
            .await?)
    }

    /// The newest report, with today's "managed by hand" marks; `None` before the first check.
    pub async fn drift_report(&self, server: &Server) -> DomainResult<Option<DriftView>> {
        let by_hand = self.store.drift_by_hand(server.id).await?;
        self.drift_report_marked(server, &by_hand).await
    }

    async fn drift_report_marked(
        &self,
        server: &Server,
        by_hand: &[String],
    ) -> DomainResult<Option<DriftView>> {
        let Some(job) = self
            .store
            .latest_done_job(server.id, DriftCheckInstaller::JOB)
            .await?
        else {
            return Ok(None);
        };
        let mut report: DriftReport =
            serde_json::from_value(job.result.clone().unwrap_or_default()).map_err(|e| {
                DomainError::Internal(format!("drift report of job {}: {e}", job.id))
            })?;
        for i in &mut report.items {
            i.by_hand = by_hand.contains(&i.item);
        }
        Ok(Some(DriftView {
            job_id: job.id,
            checked_at: job.finished_at,
            report,
        }))
    }

    /// Mark an item of the newest report (or one marked before) as managed by hand, or take the mark away.
    pub async fn set_drift_by_hand(
        &self,
        server: &Server,
        item: &str,
        by_hand: bool,
    ) -> DomainResult<()> {
        let item = item.trim();
        let marks = self.store.drift_by_hand(server.id).await?;
        let known = marks.iter().any(|i| i == item)
            || self
                .drift_report_marked(server, &marks)
                .await?
                .is_some_and(|v| v.report.items.iter().any(|i| i.item == item));
        if !known {
            return Err(DomainError::invalid(
                "item",
                format!(
                    "the newest drift report of {} has no item `{item}`",
                    server.name
                ),
            ));
        }
        self.store
            .set_drift_by_hand(server.id, item, by_hand)
            .await?;
        Ok(())
    }

    /// What repairing the newest report's drift does; with `queue`, it is queued too.
    pub async fn repair_drift(&self, server: &Server, queue: bool) -> DomainResult<RepairPlan> {
        let Some(view) = self.drift_report(server).await? else {
            return Err(DomainError::conflict(
                "no_drift_report",
                format!(
                    "{} has not been checked yet: run a check first",
                    server.name
                ),
            ));
        };
        let mut steps: BTreeMap<Repair, Vec<String>> = BTreeMap::new();
        let mut left = Vec::new();
        for i in view
            .report
            .items
            .iter()
            .filter(|i| i.state.as_str() != "ok")
        {
            match (&i.repair, i.by_hand) {
                (_, true) => left.push(leave(i, "managed by hand")),
                (Some(r), false) => steps.entry(r.clone()).or_default().push(i.item.clone()),
                (None, false) if i.state.as_str() == "unexpected" => left.push(leave(
                    i,
                    "not BrokeForge's: left alone (remove it on the server, or mark it managed by hand)",
                )),
                (None, false) => left.push(leave(i, &i.detail)),
            }
        }
        let mut out = Vec::new();
        for (repair, items) in steps {
            let mut step = RepairStep {
                title: repair.label(),
                repair,
                items,
                job_id: None,
            };
            if queue {
                step.job_id = Some(self.queue_repair(server, &step.repair).await?.id);
            }
            out.push(step);
        }
        Ok(RepairPlan {
            job_id: view.job_id,
            steps: out,
            left,
        })
    }

    async fn queue_repair(&self, server: &Server, repair: &Repair) -> DomainResult<Job> {
        let job = match repair {
            Repair::PhpSettings { version } => {
                // The settings as BrokeForge has them, set again: the installer writes both files.
                let config = WebServerConfig::current(&self.store, server.id).await?;
                let request = PhpSettingsRequest {
                    version: version.clone(),
                    set: config
                        .php_settings
                        .get(version)
                        .cloned()
                        .unwrap_or_default(),
                    unset: Vec::new(),
                };
                job::<PhpSettingsInstaller>(server.id, &request)?
            }
            Repair::Service { name, settings } => {
                return Ok(catalogue::install(&self.store, server.id, name, &settings.0).await?);
            }
            Repair::SiteVhost { site_id, .. } => {
                let site = self.site_on(server, *site_id).await?;
                return Ok(rewrite_vhost(&self.store, &site).await?);
            }
            Repair::SiteTasks { site_id, .. } => {
                let site = self.site_on(server, *site_id).await?;
                job::<SiteTasksInstaller>(server.id, &SiteRef { site_id: site.id })?
            }
        };
        Ok(self.store.enqueue(&job).await?)
    }

    /// A site a repair names, which must be on the server being repaired.
    async fn site_on(
        &self,
        server: &Server,
        site_id: i64,
    ) -> DomainResult<brokeforge_store::ServerSite> {
        let site = self.store.site(site_id).await?;
        if site.server_id != server.id {
            return Err(DomainError::invalid(
                "site",
                "the site is on another server",
            ));
        }
        Ok(site)
    }

    /// Queue a check on provisioned servers whose last one is older than `every_ms` (at most `batch` at a
    /// time). Returns how many were queued.
    pub async fn queue_due_drift_checks(&self, every_ms: i64, batch: i64) -> DomainResult<usize> {
        let due = self
            .store
            .servers_without_recent_job(DriftCheckInstaller::JOB, now_ms() - every_ms, batch)
            .await?;
        for id in &due {
            self.store
                .enqueue(&job::<DriftCheckInstaller>(
                    *id,
                    &DriftCheckRequest::default(),
                )?)
                .await?;
        }
        Ok(due.len())
    }
}

fn leave(i: &DriftItem, why: &str) -> LeftItem {
    LeftItem {
        item: i.item.clone(),
        state: i.state.as_str().into(),
        why: why.into(),
    }
}

impl Domain {
    /// Every 10 minutes, queue checks of servers not checked for `every` (none when it is zero). Several
    /// nodes may both queue one for the same server at once: a check only reads, so that costs one extra read.
    pub async fn run_drift_schedule(
        &self,
        every: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        if every.is_zero() {
            return;
        }
        loop {
            match self
                .queue_due_drift_checks(every.as_millis() as i64, 100)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(servers = n, "drift checks queued"),
                Err(e) => tracing::warn!(error = %e, "queueing drift checks failed; trying again"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(600)) => {}
            }
        }
    }
}
