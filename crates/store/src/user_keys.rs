//! Users' own SSH public keys, and the servers (and Unix users) BrokeForge put them on.

use brokeforge_core::time::now_ms;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, is_unique_violation};

#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct UserSshKey {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
}

/// A key put on a server for a Unix user (`status`: installing, active, failed, removing).
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct KeyDeployment {
    pub server_id: i64,
    pub key_id: i64,
    pub user_id: i64,
    pub unix_user: String,
    pub status: String,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub created_at: i64,
}

fn key_from(r: &AnyRow) -> Result<UserSshKey> {
    Ok(UserSshKey {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        public_key: r.try_get("public_key")?,
        fingerprint: r.try_get("fingerprint")?,
        created_at: r.try_get("created_at")?,
    })
}

fn deployment_from(r: &AnyRow) -> Result<KeyDeployment> {
    Ok(KeyDeployment {
        server_id: r.try_get("server_id")?,
        key_id: r.try_get("key_id")?,
        user_id: r.try_get("user_id")?,
        unix_user: r.try_get("unix_user")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
    })
}

const KEY_COLS: &str = "id, user_id, name, public_key, fingerprint, created_at";
const DEPLOY_COLS: &str = "server_id, key_id, user_id, unix_user, status, created_at";

impl Store {
    pub async fn add_user_key(
        &self,
        user_id: i64,
        name: &str,
        public_key: &str,
        fingerprint: &str,
    ) -> Result<UserSshKey> {
        let row = sqlx::query(&format!(
            "INSERT INTO user_ssh_keys (user_id, name, public_key, fingerprint, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {KEY_COLS}"
        ))
        .bind(user_id)
        .bind(name)
        .bind(public_key)
        .bind(fingerprint)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("you already added the key {fingerprint}"))
            } else {
                e.into()
            }
        })?;
        key_from(&row)
    }

    pub async fn user_keys(&self, user_id: i64) -> Result<Vec<UserSshKey>> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLS} FROM user_ssh_keys WHERE user_id = $1 ORDER BY id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from).collect()
    }

    /// A key by id, whoever it belongs to (jobs); front ends go through [`Store::user_keys`].
    pub async fn user_key(&self, id: i64) -> Result<UserSshKey> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLS} FROM user_ssh_keys WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("ssh key {id}")))?;
        key_from(&row)
    }

    pub async fn delete_user_key(&self, user_id: i64, id: i64) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM user_ssh_keys WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    /// Record (or re-mark) a key's deployment to a server.
    pub async fn put_key_deployment(
        &self,
        server_id: i64,
        key_id: i64,
        user_id: i64,
        unix_user: &str,
        status: &str,
    ) -> Result<()> {
        let changed = sqlx::query(
            "UPDATE server_user_keys SET status = $1 WHERE server_id = $2 AND key_id = $3 AND unix_user = $4",
        )
        .bind(status)
        .bind(server_id)
        .bind(key_id)
        .bind(unix_user)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 0 {
            sqlx::query(&format!(
                "INSERT INTO server_user_keys ({DEPLOY_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"
            ))
            .bind(server_id)
            .bind(key_id)
            .bind(user_id)
            .bind(unix_user)
            .bind(status)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    pub async fn delete_key_deployment(
        &self,
        server_id: i64,
        key_id: i64,
        unix_user: &str,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM server_user_keys WHERE server_id = $1 AND key_id = $2 AND unix_user = $3",
        )
        .bind(server_id)
        .bind(key_id)
        .bind(unix_user)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Where keys are deployed: on one server, or of one user (either filter may be left out).
    pub async fn key_deployments(
        &self,
        server_id: Option<i64>,
        user_id: Option<i64>,
    ) -> Result<Vec<KeyDeployment>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEPLOY_COLS} FROM server_user_keys WHERE ($1 IS NULL OR server_id = $1) \
             AND ($2 IS NULL OR user_id = $2) ORDER BY server_id, key_id"
        ))
        .bind(server_id)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deployment_from).collect()
    }
}
