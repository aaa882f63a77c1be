//! Restore a snapshot (`BackupRestoreInstaller`) into the schema it was taken from, or into a new one (which
//! must not exist yet). Not resumed by itself after a lost worker: a restore half-applied twice is the user's
//! call.

use brokeforge_core::{CredentialKind, ServiceType, ValidationError};
use brokeforge_store::Job;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::repository::Repository;
use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller, job};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan};
use crate::milestones;
use crate::services::database::sql::validate_name;

pub fn register(r: &mut Registry) {
    r.installer(BackupRestoreInstaller);
}

milestones! {
    pub enum BackupRestoreMilestones {
        PrepareTools => ("prepare_tools", "Preparing restic"),
        Restore => ("restore", "Downloading and loading the snapshot"),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreRequest {
    pub plan_id: i64,
    pub snapshot_id: String,
    /// A new schema to restore into; `None` overwrites the plan's own schema.
    #[serde(default)]
    pub into: Option<String>,
}

pub struct RestoreInput {
    repo: Repository,
    snapshot: String,
    target: String,
    new: bool,
}

pub struct BackupRestoreInstaller;

/// A snapshot id as restic prints it (8 to 64 hex digits).
pub fn snapshot_id(id: &str) -> Result<String, ValidationError> {
    let id = id.trim();
    if (8..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(ValidationError::new(
            "snapshot",
            format!("`{id}` is not a snapshot id (8 to 64 hexadecimal digits)"),
        ))
    }
}

impl Package for BackupRestoreInstaller {
    type Milestones = BackupRestoreMilestones;
    type Request = RestoreRequest;
    type Input = RestoreInput;
    const JOB: &'static str = "backup_restore";
    const RESUMABLE: bool = false;

    fn service_type(&self) -> ServiceType {
        ServiceType::Backup
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, r: &RestoreRequest) -> Result<RestoreInput, PackageError> {
        let repo = Repository::open(cx, r.plan_id).await?;
        let snapshot = snapshot_id(&r.snapshot_id)?;
        if r.into.is_some() && matches!(repo.source, super::repository::Source::Redis {}) {
            return Err(ValidationError::new(
                "into",
                "Redis has one data set: a restore replaces it (leave the new name out)",
            )
            .into());
        }
        let (target, new) = match &r.into {
            Some(into) => (validate_name("into", into)?, true),
            None => (repo.source.target().to_string(), false),
        };
        if new && target == repo.source.target() {
            return Err(ValidationError::new(
                "into",
                "that is what the plan backs up: leave --into out to restore over it",
            )
            .into());
        }
        Ok(RestoreInput {
            repo,
            snapshot,
            target,
            new,
        })
    }

    fn commands(&self, i: &RestoreInput) -> Result<Plan, PackageError> {
        use BackupRestoreMilestones as M;
        let source = &i.repo.source;
        let plan = i.repo.prepare(self.plan().track(M::PrepareTools));
        let into = i.new.then_some(i.target.as_str());
        Ok(plan.track(M::Restore).run_step(
            i.repo
                .step_owned(source.restore_args(&i.snapshot, into), 6 * 3600),
        ))
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        i: RestoreInput,
        report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        i.repo.pin_host_key(cx, &report).await?;
        Ok(json!({"plan": i.repo.plan.name, "snapshot_id": i.snapshot, "into": i.target, "new_schema": i.new}))
    }
}

impl PackageInstaller for BackupRestoreInstaller {}

/// Validate and queue a restore.
pub async fn restore_backup(
    store: &brokeforge_store::Store,
    server_id: i64,
    request: &RestoreRequest,
) -> Result<Job, PackageError> {
    snapshot_id(&request.snapshot_id)?;
    if let Some(into) = &request.into {
        validate_name("into", into)?;
    }
    Ok(store
        .enqueue(&job::<BackupRestoreInstaller>(server_id, request)?)
        .await?)
}
