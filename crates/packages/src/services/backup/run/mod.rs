//! Take a snapshot now (`BackupInstaller`): dump the plan's source into its restic repository, apply the
//! retention, and record the snapshots the repository holds.

use brokeforge_core::{CredentialKind, ServiceType};
use brokeforge_store::Job;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::repository::{Repository, parse_snapshots, parse_summary};
use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller, job};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan, RunStep};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(BackupInstaller);
}

milestones! {
    pub enum BackupInstallerMilestones {
        PrepareTools => ("prepare_tools", "Preparing restic"),
        Dump => ("dump", "Dumping and uploading"),
        Retention => ("retention", "Applying retention"),
        Record => ("record", "Listing snapshots"),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupRequest {
    pub plan_id: i64,
}

pub struct BackupInstaller;

impl Package for BackupInstaller {
    type Milestones = BackupInstallerMilestones;
    type Request = BackupRequest;
    type Input = Repository;
    const JOB: &'static str = "backup_run";

    fn service_type(&self) -> ServiceType {
        ServiceType::Backup
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, r: &BackupRequest) -> Result<Repository, PackageError> {
        Repository::open(cx, r.plan_id).await
    }

    fn commands(&self, repo: &Repository) -> Result<Plan, PackageError> {
        use BackupInstallerMilestones as M;
        let source = &repo.source;
        let plan = repo.prepare(self.plan().track(M::PrepareTools));
        Ok(plan
            .track(M::Dump)
            .run_step(repo.step_owned(source.backup_args(), 6 * 3600))
            .track(M::Retention)
            .run_step(repo.forget_step())
            .track(M::Record)
            .run_step(RunStep {
                private_output: true,
                ..repo.step("snapshots", &[], 600)
            }))
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        repo: Repository,
        report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        repo.pin_host_key(cx, &report).await?;
        let summary = parse_summary(&report);
        let listed = report
            .outputs
            .last()
            .map(|o| o.stdout_text())
            .unwrap_or_default();
        let mut seen = parse_snapshots(&listed)?;
        if let Some(s) = &summary {
            // restic lists the full id; the summary has the short one.
            for snap in seen.iter_mut().filter(|x| x.snapshot_id.starts_with(&s.snapshot_id)) {
                snap.size_bytes = Some(s.total_bytes_processed);
                snap.duration_ms = Some((s.total_duration * 1000.0).round() as i64);
            }
        }
        cx.store.sync_backup_snapshots(repo.plan.id, &seen).await?;
        Ok(json!({
            "plan": repo.plan.name,
            "snapshot_id": summary.as_ref().map(|s| s.snapshot_id.clone()),
            "size_bytes": summary.as_ref().map(|s| s.total_bytes_processed),
            "snapshots": seen.len(),
        }))
    }
}

impl PackageInstaller for BackupInstaller {}

/// Queue a backup of plan `plan_id` now.
pub async fn run_backup(
    store: &brokeforge_store::Store,
    server_id: i64,
    plan_id: i64,
) -> Result<Job, PackageError> {
    Ok(store
        .enqueue(&job::<BackupInstaller>(server_id, &BackupRequest { plan_id })?)
        .await?)
}

#[cfg(test)]
mod tests {
    use brokeforge_core::Secret;
    use brokeforge_store::{BackupPlan, BackupStorage};
    use serde_json::json;

    use super::*;
    use crate::services::backup::repository::{Source, StorageConfig};

    /// The plan as a user reads it: the helper's settings in variables, no secret anywhere.
    #[test]
    fn plan_snapshot() {
        let config = StorageConfig::S3 {
            endpoint: "https://s3.example.com".into(),
            bucket: "backups".into(),
            region: Some("eu-1".into()),
            path_style: true,
            access_key_id: "AKIAEXAMPLE".into(),
        };
        let repo = Repository {
            plan: BackupPlan {
                id: 3,
                server_id: 7,
                storage_id: 1,
                name: "shop".into(),
                source: json!({"kind": "database", "engine": "mariadb", "schema": "shop"}),
                schedule: None,
                verify_schedule: None,
                retention: json!({"keep_last": 3, "keep_weekly": 4}),
                next_run_at: None,
                next_verify_at: None,
                last_verify: None,
                created_at: 0,
            },
            storage: BackupStorage {
                id: 1,
                user_id: 1,
                name: "offsite".into(),
                kind: "s3".into(),
                configuration: serde_json::to_value(&config).unwrap(),
                created_at: 0,
            },
            config,
            source: Source::Database {
                engine: "mariadb".into(),
                schema: "shop".into(),
            },
            password: Secret::new("RepoPassw0rdRepoPassw0rd"),
            storage_secret: Some(Secret::new("S3SecretKeyS3SecretKey")),
            source_secret: None,
        };
        let plan = BackupInstaller.commands(&repo).unwrap();
        let text = plan.to_string();
        assert!(
            !text.contains("RepoPassw0rd") && !text.contains("S3SecretKey"),
            "{text}"
        );
        assert!(
            text.contains("s3:https://s3.example.com/backups/brokeforge-7-shop"),
            "{text}"
        );
        insta::assert_snapshot!(text);
    }
}
