//! BrokeForge's own scheduled backup: one settings row, claimed by compare-and-set on `next_run_at` so that
//! of several nodes exactly one runs each occurrence. The passphrase is the panel secret
//! [`SELF_BACKUP_PASSPHRASE`] (sealed, and re-sealed by a key rotation like every other).

use brokeforge_core::Secret;
use brokeforge_core::time::now_ms;
use serde::Serialize;
use sqlx::Row;

use crate::{Result, Store, StoreError};

pub const SELF_BACKUP_PASSPHRASE: &str = "self_backup_passphrase";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SelfBackup {
    pub storage_id: i64,
    pub schedule: String,
    pub keep_last: i64,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub next_run_at: i64,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub last_run_at: Option<i64>,
    pub last_ok: Option<bool>,
    pub last_message: Option<String>,
}

impl Store {
    pub async fn self_backup(&self) -> Result<Option<SelfBackup>> {
        let row = sqlx::query(
            "SELECT storage_id, schedule, keep_last, next_run_at, last_run_at, last_ok, last_message FROM self_backup WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SelfBackup {
                storage_id: r.try_get("storage_id")?,
                schedule: r.try_get("schedule")?,
                keep_last: r.try_get("keep_last")?,
                next_run_at: r.try_get("next_run_at")?,
                last_run_at: r.try_get("last_run_at")?,
                last_ok: r.try_get::<Option<i64>, _>("last_ok")?.map(|v| v != 0),
                last_message: r.try_get("last_message")?,
            })
        })
        .transpose()
    }

    /// Turn the scheduled self-backup on (or change it); the passphrase is sealed first, in the same
    /// transaction.
    pub async fn set_self_backup(
        &self,
        storage_id: i64,
        schedule: &str,
        keep_last: i64,
        next_run_at: i64,
        passphrase: &Secret,
    ) -> Result<()> {
        let sealed = self.cipher.seal(
            &format!("store_meta:{SELF_BACKUP_PASSPHRASE}"),
            passphrase.expose().as_bytes(),
        )?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO store_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(format!("secret:{SELF_BACKUP_PASSPHRASE}"))
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO self_backup (id, storage_id, schedule, keep_last, next_run_at, updated_at) VALUES (1, $1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET storage_id = excluded.storage_id, schedule = excluded.schedule, \
             keep_last = excluded.keep_last, next_run_at = excluded.next_run_at, updated_at = excluded.updated_at",
        )
        .bind(storage_id)
        .bind(schedule)
        .bind(keep_last)
        .bind(next_run_at)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn self_backup_passphrase(&self) -> Result<Secret> {
        let plain = self
            .panel_secret(SELF_BACKUP_PASSPHRASE)
            .await?
            .ok_or_else(|| StoreError::NotFound("the self-backup passphrase".into()))?;
        Ok(Secret::new(String::from_utf8(plain.to_vec()).map_err(
            |_| StoreError::InvalidData("self-backup passphrase".into()),
        )?))
    }

    /// Turn it off: the settings and the sealed passphrase go together.
    pub async fn delete_self_backup(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM self_backup WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM store_meta WHERE key = $1")
            .bind(format!("secret:{SELF_BACKUP_PASSPHRASE}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Move the next run from `expected` to `next`; true for the one node whose move it was.
    pub async fn claim_self_backup(&self, expected: i64, next: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE self_backup SET next_run_at = $1 WHERE id = 1 AND next_run_at = $2",
        )
        .bind(next)
        .bind(expected)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn record_self_backup(&self, ok: bool, message: &str) -> Result<()> {
        sqlx::query(
            "UPDATE self_backup SET last_run_at = $1, last_ok = $2, last_message = $3 WHERE id = 1",
        )
        .bind(now_ms())
        .bind(ok as i64)
        .bind(message)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
