//! Backups: storages (per user), plans (per server, each its own restic repository with a sealed password)
//! and the snapshots a plan's repository held when it was last listed.

use brokeforge_core::Secret;
use brokeforge_core::time::now_ms;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, is_unique_violation, json};

/// Where backups go. `configuration` is the kind's typed settings (see the backup packages); the access
/// secret stays sealed and is read only by the job that uses it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct BackupStorage {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub kind: String,
    pub configuration: serde_json::Value,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
}

pub struct NewBackupStorage {
    pub user_id: i64,
    pub name: String,
    pub kind: String,
    pub configuration: serde_json::Value,
    pub secret: Option<Secret>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct BackupPlan {
    pub id: i64,
    pub server_id: i64,
    pub storage_id: i64,
    pub name: String,
    pub source: serde_json::Value,
    pub schedule: Option<String>,
    pub verify_schedule: Option<String>,
    pub retention: serde_json::Value,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub next_run_at: Option<i64>,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub next_verify_at: Option<i64>,
    /// The last restore drill: when, how long, row counts, or why it failed.
    pub last_verify: Option<serde_json::Value>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
}

pub struct NewBackupPlan {
    pub server_id: i64,
    pub storage_id: i64,
    pub name: String,
    pub source: serde_json::Value,
    pub schedule: Option<String>,
    pub verify_schedule: Option<String>,
    pub retention: serde_json::Value,
    pub password: Secret,
    pub next_run_at: Option<i64>,
    pub next_verify_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, schemars::JsonSchema)]
pub struct BackupSnapshot {
    pub id: i64,
    pub plan_id: i64,
    /// restic's snapshot id.
    pub snapshot_id: String,
    pub job_id: Option<i64>,
    pub size_bytes: Option<i64>,
    pub duration_ms: Option<i64>,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub taken_at: i64,
}

/// A snapshot as a run saw it in the repository.
#[derive(Debug, Clone)]
pub struct SeenSnapshot {
    pub snapshot_id: String,
    pub taken_at: i64,
    /// Known for the snapshot the run made itself.
    pub job_id: Option<i64>,
    pub size_bytes: Option<i64>,
    pub duration_ms: Option<i64>,
}

const STORAGE_COLS: &str = "id, user_id, name, kind, configuration, created_at";
const PLAN_COLS: &str = "id, server_id, storage_id, name, source, schedule, verify_schedule, retention, next_run_at, next_verify_at, last_verify, created_at";
const SNAPSHOT_COLS: &str = "id, plan_id, snapshot_id, job_id, size_bytes, duration_ms, taken_at";

fn storage_from(row: &AnyRow) -> Result<BackupStorage> {
    Ok(BackupStorage {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        configuration: json(row, "configuration")?,
        created_at: row.try_get("created_at")?,
    })
}

fn plan_from(row: &AnyRow) -> Result<BackupPlan> {
    let last_verify: Option<String> = row.try_get("last_verify")?;
    Ok(BackupPlan {
        id: row.try_get("id")?,
        server_id: row.try_get("server_id")?,
        storage_id: row.try_get("storage_id")?,
        name: row.try_get("name")?,
        source: json(row, "source")?,
        schedule: row.try_get("schedule")?,
        verify_schedule: row.try_get("verify_schedule")?,
        retention: json(row, "retention")?,
        next_run_at: row.try_get("next_run_at")?,
        next_verify_at: row.try_get("next_verify_at")?,
        last_verify: last_verify
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::InvalidData(format!("last_verify: {e}")))?,
        created_at: row.try_get("created_at")?,
    })
}

fn snapshot_from(row: &AnyRow) -> Result<BackupSnapshot> {
    Ok(BackupSnapshot {
        id: row.try_get("id")?,
        plan_id: row.try_get("plan_id")?,
        snapshot_id: row.try_get("snapshot_id")?,
        job_id: row.try_get("job_id")?,
        size_bytes: row.try_get("size_bytes")?,
        duration_ms: row.try_get("duration_ms")?,
        taken_at: row.try_get("taken_at")?,
    })
}

// Sealed to the owner and name (neither changes), so a row copied to another one does not open.
fn storage_context(user_id: i64, name: &str) -> String {
    format!("backup_storages:{user_id}:{name}")
}
fn plan_context(server_id: i64, name: &str) -> String {
    format!("backup_plans:{server_id}:{name}")
}

impl Store {
    pub async fn create_backup_storage(&self, new: &NewBackupStorage) -> Result<BackupStorage> {
        let sealed = new
            .secret
            .as_ref()
            .map(|s| {
                self.cipher.seal(
                    &storage_context(new.user_id, &new.name),
                    s.expose().as_bytes(),
                )
            })
            .transpose()?;
        let row = sqlx::query(&format!(
            "INSERT INTO backup_storages (user_id, name, kind, configuration, secret_enc, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {STORAGE_COLS}"
        ))
        .bind(new.user_id)
        .bind(&new.name)
        .bind(&new.kind)
        .bind(new.configuration.to_string())
        .bind(sealed)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("you already have a backup storage {}", new.name))
            } else {
                e.into()
            }
        })?;
        storage_from(&row)
    }

    pub async fn backup_storages(&self, user_id: i64) -> Result<Vec<BackupStorage>> {
        let rows = sqlx::query(&format!(
            "SELECT {STORAGE_COLS} FROM backup_storages WHERE user_id = $1 ORDER BY name"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(storage_from).collect()
    }

    pub async fn backup_storage(&self, id: i64) -> Result<BackupStorage> {
        let row = sqlx::query(&format!(
            "SELECT {STORAGE_COLS} FROM backup_storages WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("backup storage {id}")))?;
        storage_from(&row)
    }

    pub async fn backup_storage_by_name(
        &self,
        user_id: i64,
        name: &str,
    ) -> Result<Option<BackupStorage>> {
        let row = sqlx::query(&format!(
            "SELECT {STORAGE_COLS} FROM backup_storages WHERE user_id = $1 AND name = $2"
        ))
        .bind(user_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(storage_from).transpose()
    }

    /// The storage's access secret (S3 secret key, SFTP private key), if it has one.
    pub async fn backup_storage_secret(&self, id: i64) -> Result<Option<Secret>> {
        let row =
            sqlx::query("SELECT user_id, name, secret_enc FROM backup_storages WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("backup storage {id}")))?;
        let sealed: Option<Vec<u8>> = row.try_get("secret_enc")?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let (user_id, name): (i64, String) = (row.try_get("user_id")?, row.try_get("name")?);
        Ok(Some(
            self.cipher
                .open_secret(&storage_context(user_id, &name), &sealed)?,
        ))
    }

    /// Replace a storage's settings (e.g. the SFTP server's host key, pinned on first use).
    pub async fn set_backup_storage_configuration(
        &self,
        id: i64,
        configuration: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query("UPDATE backup_storages SET configuration = $1 WHERE id = $2")
            .bind(configuration.to_string())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Delete a storage no plan uses.
    pub async fn delete_backup_storage(&self, id: i64) -> Result<()> {
        let used: i64 = sqlx::query("SELECT COUNT(*) AS n FROM backup_plans WHERE storage_id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        if used > 0 {
            return Err(StoreError::Conflict(format!(
                "{used} backup plan(s) use this storage: delete them first"
            )));
        }
        let own: i64 = sqlx::query("SELECT COUNT(*) AS n FROM self_backup WHERE storage_id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        if own > 0 {
            return Err(StoreError::Conflict(
                "BrokeForge's own backup goes to this storage: change it first (brokeforge admin self-backup)"
                    .into(),
            ));
        }
        sqlx::query("DELETE FROM backup_storages WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn create_backup_plan(&self, new: &NewBackupPlan) -> Result<BackupPlan> {
        let sealed = self.cipher.seal(
            &plan_context(new.server_id, &new.name),
            new.password.expose().as_bytes(),
        )?;
        let row = sqlx::query(&format!(
            "INSERT INTO backup_plans (server_id, storage_id, name, source, schedule, verify_schedule, retention, password_enc, next_run_at, next_verify_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {PLAN_COLS}"
        ))
        .bind(new.server_id)
        .bind(new.storage_id)
        .bind(&new.name)
        .bind(new.source.to_string())
        .bind(new.schedule.clone())
        .bind(new.verify_schedule.clone())
        .bind(new.retention.to_string())
        .bind(sealed)
        .bind(new.next_run_at)
        .bind(new.next_verify_at)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("the server already has a backup plan {}", new.name))
            } else {
                e.into()
            }
        })?;
        plan_from(&row)
    }

    pub async fn backup_plans(&self, server_id: i64) -> Result<Vec<BackupPlan>> {
        let rows = sqlx::query(&format!(
            "SELECT {PLAN_COLS} FROM backup_plans WHERE server_id = $1 ORDER BY name"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(plan_from).collect()
    }

    pub async fn backup_plan(&self, id: i64) -> Result<BackupPlan> {
        let row = sqlx::query(&format!(
            "SELECT {PLAN_COLS} FROM backup_plans WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("backup plan {id}")))?;
        plan_from(&row)
    }

    pub async fn backup_plan_by_name(
        &self,
        server_id: i64,
        name: &str,
    ) -> Result<Option<BackupPlan>> {
        let row = sqlx::query(&format!(
            "SELECT {PLAN_COLS} FROM backup_plans WHERE server_id = $1 AND name = $2"
        ))
        .bind(server_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(plan_from).transpose()
    }

    /// The plan's repository password.
    pub async fn backup_plan_password(&self, id: i64) -> Result<Secret> {
        let row =
            sqlx::query("SELECT server_id, name, password_enc FROM backup_plans WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("backup plan {id}")))?;
        let sealed: Vec<u8> = row.try_get("password_enc")?;
        let (server_id, name): (i64, String) = (row.try_get("server_id")?, row.try_get("name")?);
        self.cipher
            .open_secret(&plan_context(server_id, &name), &sealed)
    }

    pub async fn delete_backup_plan(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM backup_plans WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Plans whose backup (`verify` false) or restore drill (`verify` true) is due at `now`.
    pub async fn due_backup_plans(&self, now: i64, verify: bool) -> Result<Vec<BackupPlan>> {
        let col = if verify {
            "next_verify_at"
        } else {
            "next_run_at"
        };
        let rows = sqlx::query(&format!(
            "SELECT {PLAN_COLS} FROM backup_plans WHERE {col} IS NOT NULL AND {col} <= $1 ORDER BY {col} LIMIT 500"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(plan_from).collect()
    }

    /// Move a plan's next run (or drill) from `expected` to `next`; false when another node moved it first
    /// (so one due run is queued once, however many nodes look).
    pub async fn advance_backup_plan(
        &self,
        id: i64,
        verify: bool,
        expected: i64,
        next: Option<i64>,
    ) -> Result<bool> {
        let col = if verify {
            "next_verify_at"
        } else {
            "next_run_at"
        };
        let done = sqlx::query(&format!(
            "UPDATE backup_plans SET {col} = $1 WHERE id = $2 AND {col} = $3"
        ))
        .bind(next)
        .bind(id)
        .bind(expected)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_backup_last_verify(&self, id: i64, result: &serde_json::Value) -> Result<()> {
        sqlx::query("UPDATE backup_plans SET last_verify = $1 WHERE id = $2")
            .bind(result.to_string())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Make the plan's snapshot list what the repository holds: rows restic no longer has go, new ones are
    /// added (what is known of existing rows is kept).
    pub async fn sync_backup_snapshots(&self, plan_id: i64, seen: &[SeenSnapshot]) -> Result<()> {
        // Writes only, the first one taking SQLite's write lock: a transaction that read first could not
        // upgrade while another writer is busy ("database is locked").
        let mut tx = self.pool.begin().await?;
        let keep: Vec<String> = (0..seen.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = if keep.is_empty() {
            "DELETE FROM backup_snapshots WHERE plan_id = $1".to_string()
        } else {
            format!(
                "DELETE FROM backup_snapshots WHERE plan_id = $1 AND snapshot_id NOT IN ({})",
                keep.join(", ")
            )
        };
        let mut delete = sqlx::query(&sql).bind(plan_id);
        for s in seen {
            delete = delete.bind(&s.snapshot_id);
        }
        delete.execute(&mut *tx).await?;
        for s in seen {
            sqlx::query(
                "INSERT INTO backup_snapshots (plan_id, snapshot_id, job_id, size_bytes, duration_ms, taken_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (plan_id, snapshot_id) DO NOTHING",
            )
            .bind(plan_id)
            .bind(&s.snapshot_id)
            .bind(s.job_id)
            .bind(s.size_bytes)
            .bind(s.duration_ms)
            .bind(s.taken_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A plan's snapshots, newest first.
    pub async fn backup_snapshots(&self, plan_id: i64) -> Result<Vec<BackupSnapshot>> {
        let rows = sqlx::query(&format!(
            "SELECT {SNAPSHOT_COLS} FROM backup_snapshots WHERE plan_id = $1 ORDER BY taken_at DESC, id DESC"
        ))
        .bind(plan_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(snapshot_from).collect()
    }
}
