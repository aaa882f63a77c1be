//! A restore drill (`BackupVerifyInstaller`): restore the newest snapshot into a scratch schema, count the
//! rows of its largest tables, drop the scratch schema, and record the result on the plan. A drill that
//! cannot restore fails its job with the reason (and records that too).

use std::time::Instant;

use brokeforge_core::time::now_ms;
use brokeforge_core::{CredentialKind, ServiceType, ValidationError};
use brokeforge_store::Job;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::repository::Repository;
use crate::base::executor::{Executor, RunContext, RunReport};
use crate::base::package::{Gather, Package, PackageInstaller, job};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(BackupVerifyInstaller);
}

milestones! {
    pub enum BackupVerifyMilestones {
        PrepareTools => ("prepare_tools", "Preparing restic"),
        Restore => ("restore", "Restoring the newest snapshot into a scratch schema"),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyRequest {
    pub plan_id: i64,
}

pub struct VerifyInput {
    repo: Repository,
    snapshot: String,
    scratch: String,
}

pub struct BackupVerifyInstaller;

impl Package for BackupVerifyInstaller {
    type Milestones = BackupVerifyMilestones;
    type Request = VerifyRequest;
    type Input = VerifyInput;
    const JOB: &'static str = "backup_verify";

    fn service_type(&self) -> ServiceType {
        ServiceType::Backup
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, r: &VerifyRequest) -> Result<VerifyInput, PackageError> {
        let repo = Repository::open(cx, r.plan_id).await?;
        let newest = cx
            .store
            .backup_snapshots(repo.plan.id)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ValidationError::new("plan", "the plan has no snapshot yet: run a backup first")
            })?;
        Ok(VerifyInput {
            scratch: format!("bf_verify_{}", repo.plan.id),
            snapshot: newest.snapshot_id,
            repo,
        })
    }

    fn commands(&self, i: &VerifyInput) -> Result<Plan, PackageError> {
        use BackupVerifyMilestones as M;
        let source = &i.repo.source;
        let plan = i.repo.prepare(self.plan().track(M::PrepareTools));
        Ok(plan.track(M::Restore).run_step(
            i.repo
                .step_owned(source.verify_args(&i.snapshot, &i.scratch), 6 * 3600),
        ))
    }
}

impl PackageInstaller for BackupVerifyInstaller {
    /// Run the drill and record its result on the plan, whether it passed or not.
    async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        request: &VerifyRequest,
    ) -> Result<serde_json::Value, PackageError> {
        let cx = Gather::new(executor.store(), &ctx.server);
        let i = self.gather(&cx, request).await?;
        let started = Instant::now();
        let result = self.install(executor, ctx, self.commands(&i)?).await;
        let duration_ms = started.elapsed().as_millis() as i64;
        let mut record = json!({
            "at": now_ms(),
            "duration_ms": duration_ms,
            "snapshot_id": i.snapshot,
        });
        match result {
            Ok(report) => {
                i.repo.pin_host_key(&cx, &report).await?;
                let tables = row_counts(&report);
                record["ok"] = json!(true);
                record["tables"] = json!(tables);
                executor
                    .store()
                    .set_backup_last_verify(i.repo.plan.id, &record)
                    .await?;
                Ok(record)
            }
            Err(PackageError::Cancelled) => Err(PackageError::Cancelled),
            Err(e) => {
                record["ok"] = json!(false);
                record["error"] = json!(e.to_string());
                executor
                    .store()
                    .set_backup_last_verify(i.repo.plan.id, &record)
                    .await?;
                Err(e)
            }
        }
    }
}

/// `rows<TAB>table<TAB>count` lines the drill printed, as `[{table, rows}]`.
fn row_counts(report: &RunReport) -> Vec<serde_json::Value> {
    report
        .outputs
        .iter()
        .flat_map(|o| {
            o.stdout_text()
                .lines()
                .filter_map(|l| {
                    let mut p = l.split('\t');
                    match (p.next(), p.next(), p.next()) {
                        (Some("rows"), Some(t), Some(n)) => {
                            n.trim().parse::<i64>().ok().map(|n| json!({"table": t, "rows": n}))
                        }
                        _ => None,
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Queue a restore drill of plan `plan_id`.
pub async fn verify_backup(
    store: &brokeforge_store::Store,
    server_id: i64,
    plan_id: i64,
) -> Result<Job, PackageError> {
    Ok(store
        .enqueue(&job::<BackupVerifyInstaller>(server_id, &VerifyRequest { plan_id })?)
        .await?)
}
