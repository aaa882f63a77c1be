//! Master key rotation: every sealed value re-sealed under a new key in one transaction, so the database is
//! either wholly under the old key or wholly under the new one (an interrupted rotation changed nothing).

use sqlx::Row;

use crate::crypto::Cipher;
use crate::servers::credential_context;
use crate::twofactor::totp_context;
use crate::{KEY_CHECK, MasterKey, Result, Store, StoreError};

impl Store {
    /// Re-seal every secret (server keys, service passwords, panel secrets, backup storages' and plans'
    /// secrets, users' TOTP secrets, the key check) under `new`; how many values. BrokeForge must not be writing meanwhile (stop
    /// serve and workers): a secret sealed by another process during the rotation would keep the old key.
    pub async fn rotate_master_key(&self, new: &MasterKey) -> Result<usize> {
        let next = Cipher::new(new);
        let mut tx = self.pool.begin().await?;
        // A write first: it takes SQLite's write lock before anything is read, so no writer can slip in
        // between and the transaction never has to upgrade a read lock.
        sqlx::query("UPDATE store_meta SET value = value WHERE key = $1")
            .bind(KEY_CHECK)
            .execute(&mut *tx)
            .await?;
        let mut count = 0;
        // (select, update, how each row's context is made): every sealed column there is.
        let rows =
            sqlx::query("SELECT server_id, credential, private_key_enc FROM server_credentials")
                .fetch_all(&mut *tx)
                .await?;
        for row in rows {
            let (server_id, credential): (i64, String) =
                (row.try_get("server_id")?, row.try_get("credential")?);
            let kind = credential
                .parse()
                .map_err(|e| StoreError::InvalidData(format!("{e}")))?;
            let context = credential_context(server_id, kind);
            let sealed = self.reseal(
                &next,
                &context,
                &row.try_get::<Vec<u8>, _>("private_key_enc")?,
            )?;
            sqlx::query("UPDATE server_credentials SET private_key_enc = $1 WHERE server_id = $2 AND credential = $3")
                .bind(sealed)
                .bind(server_id)
                .bind(&credential)
                .execute(&mut *tx)
                .await?;
            count += 1;
        }
        let rows = sqlx::query("SELECT server_id, name, value_enc FROM service_secrets")
            .fetch_all(&mut *tx)
            .await?;
        for row in rows {
            let (server_id, name): (i64, String) =
                (row.try_get("server_id")?, row.try_get("name")?);
            let context = format!("service_secrets:{server_id}:{name}");
            let sealed = self.reseal(&next, &context, &row.try_get::<Vec<u8>, _>("value_enc")?)?;
            sqlx::query(
                "UPDATE service_secrets SET value_enc = $1 WHERE server_id = $2 AND name = $3",
            )
            .bind(sealed)
            .bind(server_id)
            .bind(&name)
            .execute(&mut *tx)
            .await?;
            count += 1;
        }
        let rows =
            sqlx::query("SELECT key, value FROM store_meta WHERE key LIKE 'secret:%' OR key = $1")
                .bind(KEY_CHECK)
                .fetch_all(&mut *tx)
                .await?;
        for row in rows {
            let key: String = row.try_get("key")?;
            let context = match key.strip_prefix("secret:") {
                Some(name) => format!("store_meta:{name}"),
                None => KEY_CHECK.to_string(),
            };
            let sealed = self.reseal(&next, &context, &row.try_get::<Vec<u8>, _>("value")?)?;
            sqlx::query("UPDATE store_meta SET value = $1 WHERE key = $2")
                .bind(sealed)
                .bind(&key)
                .execute(&mut *tx)
                .await?;
            count += 1;
        }
        let rows = sqlx::query(
            "SELECT id, user_id, name, secret_enc FROM backup_storages WHERE secret_enc IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let (id, user_id, name): (i64, i64, String) = (
                row.try_get("id")?,
                row.try_get("user_id")?,
                row.try_get("name")?,
            );
            let context = format!("backup_storages:{user_id}:{name}");
            let sealed = self.reseal(&next, &context, &row.try_get::<Vec<u8>, _>("secret_enc")?)?;
            sqlx::query("UPDATE backup_storages SET secret_enc = $1 WHERE id = $2")
                .bind(sealed)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            count += 1;
        }
        let rows = sqlx::query("SELECT id, server_id, name, password_enc FROM backup_plans")
            .fetch_all(&mut *tx)
            .await?;
        for row in rows {
            let (id, server_id, name): (i64, i64, String) = (
                row.try_get("id")?,
                row.try_get("server_id")?,
                row.try_get("name")?,
            );
            let context = format!("backup_plans:{server_id}:{name}");
            let sealed =
                self.reseal(&next, &context, &row.try_get::<Vec<u8>, _>("password_enc")?)?;
            sqlx::query("UPDATE backup_plans SET password_enc = $1 WHERE id = $2")
                .bind(sealed)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            count += 1;
        }
        let rows = sqlx::query(
            "SELECT id, totp_secret_enc, totp_pending_enc FROM users WHERE totp_secret_enc IS NOT NULL OR totp_pending_enc IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let id: i64 = row.try_get("id")?;
            for (col, pending) in [("totp_secret_enc", false), ("totp_pending_enc", true)] {
                let Some(value) = row.try_get::<Option<Vec<u8>>, _>(col)? else {
                    continue;
                };
                let sealed = self.reseal(&next, &totp_context(id, pending), &value)?;
                sqlx::query(&format!("UPDATE users SET {col} = $1 WHERE id = $2"))
                    .bind(sealed)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                count += 1;
            }
        }
        let rows = sqlx::query(
            "SELECT user_id, key, body_enc FROM idempotency_keys WHERE body_enc IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let (user_id, key): (i64, String) = (row.try_get("user_id")?, row.try_get("key")?);
            let context = format!("idempotency_keys:{user_id}:{key}");
            let sealed = self.reseal(&next, &context, &row.try_get::<Vec<u8>, _>("body_enc")?)?;
            sqlx::query(
                "UPDATE idempotency_keys SET body_enc = $1 WHERE user_id = $2 AND key = $3",
            )
            .bind(sealed)
            .bind(user_id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
            count += 1;
        }
        tx.commit().await?;
        Ok(count)
    }

    fn reseal(&self, next: &Cipher, context: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        let plain = self.cipher.open(context, sealed)?;
        next.seal(context, &plain)
    }
}
