//! "Test connection" for a storage (`BackupStorageCheckInstaller`): from one of the owner's servers, write a
//! small object to the storage, read it back, delete it. An SFTP server's host key is checked and pinned
//! here as on a first backup.

use brokeforge_core::{CredentialKind, Secret, ServiceType, ValidationError};
use brokeforge_store::{BackupStorage, Job};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::repository::{HELPER, StorageConfig, pin_host_key, prepare_helper};
use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller, job};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan, RunStep};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(BackupStorageCheckInstaller);
}

milestones! {
    pub enum BackupStorageCheckMilestones {
        PrepareTools => ("prepare_tools", "Preparing restic"),
        Check => ("check", "Writing, reading and deleting a test object"),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckRequest {
    pub storage_id: i64,
}

pub struct CheckInput {
    storage: BackupStorage,
    config: StorageConfig,
    secret: Option<Secret>,
}

pub struct BackupStorageCheckInstaller;

impl Package for BackupStorageCheckInstaller {
    type Milestones = BackupStorageCheckMilestones;
    type Request = CheckRequest;
    type Input = CheckInput;
    const JOB: &'static str = "backup_storage_check";

    fn service_type(&self) -> ServiceType {
        ServiceType::Backup
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, r: &CheckRequest) -> Result<CheckInput, PackageError> {
        let storage = cx.store.backup_storage(r.storage_id).await?;
        // Only the storage's owner's servers reach it.
        if storage.user_id != cx.server.user_id {
            return Err(ValidationError::new("storage", "no such storage").into());
        }
        let config = StorageConfig::of(&storage)?;
        if let StorageConfig::Local { server_id, .. } = config
            && server_id != cx.server.id
        {
            return Err(ValidationError::new(
                "storage",
                format!("{} is a directory on another server: check it from there", storage.name),
            )
            .into());
        }
        Ok(CheckInput {
            secret: cx.store.backup_storage_secret(storage.id).await?,
            storage,
            config,
        })
    }

    fn commands(&self, i: &CheckInput) -> Result<Plan, PackageError> {
        use BackupStorageCheckMilestones as M;
        let mut plan = self.plan();
        if let Some(s) = &i.secret {
            plan = plan.secret(s.clone());
        }
        let plan = prepare_helper(plan.track(M::PrepareTools));
        Ok(plan.track(M::Check).run_step(RunStep {
            command: format!(
                "{} bash {HELPER} check",
                i.config.variables(&i.config.root())
            ),
            timeout: std::time::Duration::from_secs(300),
            stdin: Some(i.config.stdin("", i.secret.as_ref())),
            credential: None,
            private_output: false,
        }))
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        i: CheckInput,
        report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        pin_host_key(cx, &i.storage, &i.config, &report).await?;
        Ok(json!({"storage": i.storage.name, "location": i.config.root(), "ok": true}))
    }
}

impl PackageInstaller for BackupStorageCheckInstaller {}

/// Queue a connection check of storage `storage_id` from server `server_id`.
pub async fn check_storage(
    store: &brokeforge_store::Store,
    server_id: i64,
    storage_id: i64,
) -> Result<Job, PackageError> {
    Ok(store
        .enqueue(&job::<BackupStorageCheckInstaller>(server_id, &CheckRequest { storage_id })?)
        .await?)
}
