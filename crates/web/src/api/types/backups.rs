//! Backups: storages, plans, snapshots.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StorageList {
    pub storages: Vec<brokeforge_store::BackupStorage>,
}

/// A storage defined; an SFTP one's `configuration.public_key` is the key to authorize on the host.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StorageResponse {
    pub storage: brokeforge_store::BackupStorage,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PlanList {
    pub plans: Vec<brokeforge_domain::backups::PlanView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PlanResponse {
    pub plan: brokeforge_store::BackupPlan,
}

/// A plan with its newest snapshot, last restore drill and every snapshot, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PlanDetail {
    pub plan: brokeforge_domain::backups::PlanView,
    pub snapshots: Vec<brokeforge_store::BackupSnapshot>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotList {
    pub snapshots: Vec<brokeforge_store::BackupSnapshot>,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
pub struct RestoreBody {
    pub snapshot: String,
    /// A new schema to restore into; left out, the plan's own schema is overwritten.
    #[serde(default)]
    pub into: Option<String>,
    /// The plan's schema name, to confirm overwriting it.
    #[serde(default)]
    pub confirm: Option<String>,
}
